"""Public testing API: hypothesis strategies for quantized tensors and operator cases, and
:func:`assert_bit_exact`, which checks another implementation of an operator against ilsim.

Needs the test extra (``pip install ilsim[test]``) for hypothesis.
"""

from ilsim.testing.bitexact import (BitExactMismatch, Mismatch, assert_bit_exact, check_case,
                                    first_mismatch, to_bits)

__all__ = ["BitExactMismatch", "Mismatch", "assert_bit_exact", "check_case", "first_mismatch", "to_bits"]
