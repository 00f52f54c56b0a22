"""The rounding formulas of :mod:`ilsim.arith.rounding`, compiled for int64 kernels.

Not a second implementation: :func:`rshift_round_i64` and :func:`div_round_i64` compile the same
source (``rshift_round_int``, ``div_round_int``, ``apply_mode``) that the Python-int references run.
What this module adds is the int64 domain: |x| < 2^62, divisors below 2^62, shifts clamped to 63
(a shift of 63 or more gives the same result for such x). The mode is an integer code
(:data:`MODE_CODE`, :func:`mode_code`).

Numba's on-disk cache (cache=True) keys a kernel on its own file only, while these formulas are
inlined from other files; ilsim therefore keys the whole cache folder on the sources of every
module (ilsim.numba_cache_folder): an edit of a formula starts a fresh cache, no kernel keeps the
old code.
"""

from __future__ import annotations

import numba

from ilsim.arith.rounding import (FLOOR, HALF_AWAY, HALF_EVEN, HALF_UP, MODE_CODE, TRUNC, div_round_int,
                                  mode_code, rshift_round_int)

__all__ = ["FLOOR", "TRUNC", "HALF_UP", "HALF_AWAY", "HALF_EVEN", "MODE_CODE", "mode_code",
           "rshift_round_i64", "div_round_i64"]


@numba.njit(cache=True, inline="always")
def rshift_round_i64(x, s, mode):
    """:func:`~ilsim.arith.rounding.rshift_round_int` on int64: |x| < 2^62, s >= 0 clamped to 63."""
    return rshift_round_int(x, min(s, 63), mode)


div_round_i64 = numba.njit(cache=True, inline="always")(div_round_int)
div_round_i64.__doc__ = ":func:`~ilsim.arith.rounding.div_round_int` compiled: int64 a with |a| < 2^62, 0 < b < 2^62."
