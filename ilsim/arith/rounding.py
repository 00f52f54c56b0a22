"""Rounding right shift and rounding integer division: the two places every result is rounded.

Each function rounds exactly once. The mode is always named; ``HALF_UP`` is the default of
every operator because it is what hardware does with "add 2^(s-1), then arithmetic shift".

Modes (ties are values whose discarded part is exactly one half):
    FLOOR      toward -inf                 (Python ``>>`` and ``//``)
    TRUNC      toward zero                 (C and Verilog ``/`` on signed values)
    HALF_UP    nearest, ties toward +inf   (floor(x / 2^s + 1/2))
    HALF_AWAY  nearest, ties away from 0   (gemmlowp RoundingDivideByPOT)
    HALF_EVEN  nearest, ties to even       (IEEE default, numpy.round)

The ``*_reference`` functions work on Python ints (any size). The array functions work on int64
arrays whose magnitudes are below 2^62 (checked), with shift amounts in [0, 63]; a shift above
63 gives the same result as 63 for such inputs, so it is clamped.
"""

from __future__ import annotations

import enum

import numpy as np

from ilsim.errors import InputError, WidthError


class Rounding(str, enum.Enum):
    FLOOR = "floor"
    TRUNC = "trunc"
    HALF_UP = "half_up"
    HALF_AWAY = "half_away"
    HALF_EVEN = "half_even"


DEFAULT_ROUNDING = Rounding.HALF_UP

#: Largest magnitude (exclusive) accepted by the int64 array paths: x < 2^62 leaves headroom
#: for the rounding offset and the remainder computation.
ARRAY_LIMIT_BITS = 62


def as_rounding(mode) -> Rounding:
    """Accept a Rounding member or its string value; anything else is an InputError."""
    try:
        return Rounding(mode)
    except ValueError:
        names = ", ".join(r.value for r in Rounding)
        raise InputError(f"unknown rounding mode {mode!r}; expected one of: {names}") from None


def op_rounding(op: str, mode) -> Rounding:
    """:func:`as_rounding` for an operator's ``rounding`` attribute: the error names ``op``."""
    try:
        return as_rounding(mode)
    except InputError as err:
        raise InputError(f"{op}: {err}") from None


def _round_quotient(q: int, twice_rem: int, divisor: int, negative: bool, mode: Rounding) -> int:
    """Given floor quotient q and remainder r (0 <= r < divisor, passed as 2r), apply the mode."""
    if mode is Rounding.FLOOR:
        return q
    if mode is Rounding.TRUNC:
        return q + 1 if (twice_rem and negative) else q
    if twice_rem > divisor:
        return q + 1
    if twice_rem < divisor:
        return q
    # exact tie
    if mode is Rounding.HALF_UP:
        return q + 1
    if mode is Rounding.HALF_AWAY:
        return q if negative else q + 1
    return q + (q & 1)  # HALF_EVEN


def rshift_round_reference(x: int, s: int, mode=DEFAULT_ROUNDING) -> int:
    """round(x / 2^s) for Python ints x (any sign, any size) and s >= 0, in the named mode."""
    mode = as_rounding(mode)
    if s < 0:
        raise InputError(f"rshift_round: shift must be >= 0, got {s}")
    if s == 0:
        return x
    q = x >> s
    rem = x - (q << s)
    return _round_quotient(q, 2 * rem, 1 << s, x < 0, mode)


def div_round_reference(a: int, b: int, mode=DEFAULT_ROUNDING) -> int:
    """round(a / b) for Python ints a (any sign) and b > 0, in the named mode."""
    mode = as_rounding(mode)
    if b <= 0:
        raise InputError(f"div_round: divisor must be > 0, got {b}")
    q = a // b
    rem = a - q * b
    return _round_quotient(q, 2 * rem, b, a < 0, mode)


def _require_array_limit(x: np.ndarray, what: str) -> None:
    if x.size and (int(x.max()) >= 1 << ARRAY_LIMIT_BITS or int(x.min()) <= -(1 << ARRAY_LIMIT_BITS)):
        raise WidthError(f"{what}: operand magnitude reaches 2^{ARRAY_LIMIT_BITS}; "
                         f"the int64 path is only exact below that")


def _round_quotient_array(q, rem_nonzero, cmp_half, negative, mode: Rounding):
    """Apply the mode to floor quotient q; cmp_half is -1/0/+1 as the remainder is below/at/above half."""
    if mode is Rounding.FLOOR:
        return q
    if mode is Rounding.TRUNC:
        return q + (rem_nonzero & negative)
    up = cmp_half > 0
    tie = cmp_half == 0
    if mode is Rounding.HALF_UP:
        return q + (up | tie)
    if mode is Rounding.HALF_AWAY:
        return q + (up | (tie & ~negative))
    return q + (up | (tie & ((q & 1) == 1)))


def rshift_round(x, s, mode=DEFAULT_ROUNDING) -> np.ndarray:
    """Array version of :func:`rshift_round_reference`; x and s broadcast, |x| < 2^62, s >= 0."""
    mode = as_rounding(mode)
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if s.size and int(s.min()) < 0:
        raise InputError(f"rshift_round: shift must be >= 0, got {int(s.min())}")
    _require_array_limit(x, "rshift_round")
    s = np.minimum(s, 63)
    q = x >> s
    rem = x - (q << s)  # in [0, 2^s); no overflow because |x| < 2^62
    half = np.left_shift(np.int64(1), np.maximum(s - 1, 0))
    cmp_half = np.where(s > 0, np.sign(rem - half), -1)
    out = _round_quotient_array(q, rem != 0, cmp_half, x < 0, mode)
    return np.asarray(out, dtype=np.int64)


def div_round(a, b, mode=DEFAULT_ROUNDING) -> np.ndarray:
    """Array version of :func:`div_round_reference`; a and b broadcast, |a| < 2^62, 0 < b < 2^62."""
    mode = as_rounding(mode)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if b.size and int(b.min()) <= 0:
        raise InputError(f"div_round: divisor must be > 0, got {int(b.min())}")
    _require_array_limit(a, "div_round")
    _require_array_limit(b, "div_round")
    q = a // b
    rem = a - q * b  # in [0, b)
    cmp_half = np.sign(rem - (b - rem))  # sign(2*rem - b) without forming 2*rem
    out = _round_quotient_array(q, rem != 0, cmp_half, a < 0, mode)
    return np.asarray(out, dtype=np.int64)
