"""Transcription of TFLite's legacy MultiplyByQuantizedMultiplier, which rounds twice.

Offered only as a named mode for hardware teams that must reproduce it; every ilsim operator
rounds once (:func:`ilsim.arith.dyadic.dyadic_mul`). The double rounding is real: x = 7984,
multiplier 1583594044, shift -9 gives 12 here where the exact value rounds to 11
(tensorflow/tensorflow#25087). Semantics follow gemmlowp fixedpoint.h and TFLite
common.h (C integer division truncates toward zero).
"""

from __future__ import annotations

from ilsim.errors import InputError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _c_div(a: int, b: int) -> int:
    """C's signed division: truncate toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def saturating_rounding_doubling_high_mul(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values: round(a*b / 2^31), ties away
    from zero, saturating the single overflow case a == b == INT32_MIN to INT32_MAX."""
    for v in (a, b):
        if not INT32_MIN <= v <= INT32_MAX:
            raise InputError(f"saturating_rounding_doubling_high_mul: {v} is not an int32")
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _c_div(ab + nudge, 1 << 31)


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT: round(x / 2^exponent), ties away from zero, 0 <= exponent <= 31."""
    if not 0 <= exponent <= 31:
        raise InputError(f"rounding_divide_by_pot: exponent must be in [0, 31], got {exponent}")
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def tflite_multiply_by_quantized_multiplier(x: int, quantized_multiplier: int, shift: int) -> int:
    """TFLite's legacy (double-rounding) requantization of an int32 x by multiplier * 2^shift / 2^31."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x * (1 << left), quantized_multiplier), right)
