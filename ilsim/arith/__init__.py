"""Integer primitives. Each states its rounding and saturation in its first docstring line."""

from ilsim.arith.bits import bit_length, bit_length_array, clz
from ilsim.arith.dyadic import DEFAULT_MBITS, Dyadic, dyadic_from_scale, dyadic_mul, dyadic_mul_reference
from ilsim.arith.isqrt import ISQRT_MAX, isqrt, isqrt_reference
from ilsim.arith.legacy import tflite_multiply_by_quantized_multiplier
from ilsim.arith.rounding import (DEFAULT_ROUNDING, Rounding, div_round, div_round_reference,
                                  rshift_round, rshift_round_reference)
from ilsim.arith.saturate import saturate, saturate_reference

__all__ = [
    "DEFAULT_MBITS", "DEFAULT_ROUNDING", "Dyadic", "ISQRT_MAX", "Rounding", "bit_length",
    "bit_length_array", "clz", "div_round", "div_round_reference", "dyadic_from_scale", "dyadic_mul",
    "dyadic_mul_reference", "isqrt", "isqrt_reference", "rshift_round", "rshift_round_reference",
    "saturate", "saturate_reference", "tflite_multiply_by_quantized_multiplier",
]
