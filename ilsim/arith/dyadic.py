"""Dyadic numbers m / 2^k: how every real scale is carried through the integer path.

A scale is converted to a dyadic number *offline only* (export), with exact rational arithmetic
(``fractions.Fraction``), so the same float gives the same (m, k) on every machine. At run time a
dyadic number is applied with one multiply and one rounding shift: :func:`dyadic_mul`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import math

import numpy as np

from ilsim.arith.rounding import DEFAULT_ROUNDING, rshift_round, rshift_round_reference
from ilsim.errors import InputError, WidthError

#: Default multiplier width: the authors' code stores scales as m = round(s * 2^16).
DEFAULT_MBITS = 16
#: Shifts are kept in [0, MAX_SHIFT] so that no negative or undefined shift ever happens.
MAX_SHIFT = 63


@dataclass(frozen=True)
class Dyadic:
    """The rational m / 2^k, with 0 <= m and 0 <= k <= 63."""

    m: int
    k: int

    def __post_init__(self):
        if not isinstance(self.m, int) or not isinstance(self.k, int):
            raise InputError(f"Dyadic needs Python ints, got m={self.m!r}, k={self.k!r}")
        if self.m < 0 or not 0 <= self.k <= MAX_SHIFT:
            raise InputError(f"Dyadic needs m >= 0 and 0 <= k <= {MAX_SHIFT}, got m={self.m}, k={self.k}")

    def as_fraction(self) -> Fraction:
        return Fraction(self.m, 1 << self.k)

    def __float__(self) -> float:  # for display and offline comparisons only
        return self.m / (1 << self.k)


def dyadic_from_scale(scale, mbits: int = DEFAULT_MBITS, max_shift: int = MAX_SHIFT) -> Dyadic:
    """Nearest m / 2^k to a positive real scale, with m < 2^mbits and k as large as allowed.

    Exact: the scale is taken as the rational it denotes (a float is exactly a dyadic rational),
    and m = floor(scale * 2^k + 1/2) (round half up). k is the largest value in [0, max_shift]
    for which m still fits mbits bits. Error bound, proven in tests:
        |m / 2^k - scale| <= 2^-(k+1), and when k < max_shift also
        |m / 2^k - scale| / scale <= 1 / (2^mbits - 1/2).
    Raises InputError for a scale that is not finite and positive, needs k < 0, or rounds to m = 0.
    """
    if isinstance(scale, float) and not math.isfinite(scale):
        raise InputError(f"dyadic_from_scale: scale must be finite, got {scale}")
    s = Fraction(scale)
    if s <= 0:
        raise InputError(f"dyadic_from_scale: scale must be > 0, got {scale}")
    if not 1 <= mbits <= 62:
        raise InputError(f"dyadic_from_scale: mbits must be in [1, 62], got {mbits}")
    limit = 1 << mbits

    def rounded(k: int) -> int:
        v = s * (1 << k)
        return math.floor(v + Fraction(1, 2))

    if rounded(0) >= limit:
        raise InputError(f"dyadic_from_scale: scale {scale} does not fit {mbits} bits with a shift >= 0")
    # the largest k with rounded(k) < limit: start from the bit length estimate, then adjust
    k = max(0, min(max_shift, mbits - 1 - (s.numerator.bit_length() - s.denominator.bit_length())))
    while k < max_shift and rounded(k + 1) < limit:
        k += 1
    while rounded(k) >= limit:
        k -= 1
    m = rounded(k)
    if m == 0:
        raise InputError(f"dyadic_from_scale: scale {scale} is below 2^-{max_shift + 1} and rounds to 0")
    return Dyadic(m, k)


def dyadic_mul_reference(x: int, d: Dyadic, mode=DEFAULT_ROUNDING) -> int:
    """round(x * m / 2^k): one multiply, one rounding shift (never two roundings)."""
    return rshift_round_reference(x * d.m, d.k, mode)


def dyadic_mul(x, m, k, mode=DEFAULT_ROUNDING, what: str = "dyadic_mul") -> np.ndarray:
    """Array version of :func:`dyadic_mul_reference`: x, m, k broadcast; |x * m| must stay < 2^62.

    The product bound is checked from the operands' maxima on Python ints before multiplying,
    so an overflow raises WidthError naming ``what`` instead of wrapping.
    """
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    if x.size and m.size:
        bound = max(abs(int(x.max())), abs(int(x.min()))) * max(abs(int(m.max())), abs(int(m.min())))
        if bound >= 1 << 62:
            raise WidthError(f"{what}: product x*m may reach {bound.bit_length()} bits (limit 62)")
    return rshift_round(x * m, k, mode)
