"""Rounding right shift and rounding integer division: the two places every result is rounded.

Each function rounds exactly once. The mode is always named; ``HALF_UP`` is the default of
every operator because it is what hardware does with "add 2^(s-1), then arithmetic shift".

Modes (ties are values whose discarded part is exactly one half):
    FLOOR      toward -inf                 (Python ``>>`` and ``//``)
    TRUNC      toward zero                 (C and Verilog ``/`` on signed values)
    HALF_UP    nearest, ties toward +inf   (floor(x / 2^s + 1/2))
    HALF_AWAY  nearest, ties away from 0   (gemmlowp RoundingDivideByPOT)
    HALF_EVEN  nearest, ties to even       (IEEE default, numpy.round)

One implementation: :func:`apply_mode` is the only place a mode corrects a floor quotient, and
:func:`rshift_round_int` / :func:`div_round_int` the only formulas of the two roundings. They are
plain integer code registered with Numba (``register_jitable``): Python calls them on Python ints
(any size) -- that is what the ``*_reference`` functions do after validating their arguments --
and compiled kernels inline the same source on int64 (ilsim.arith.jit, with its int64 ranges).
The array functions apply the same :func:`apply_mode` to int64 arrays whose magnitudes are below
2^62 (checked), with shift amounts in [0, 63]; a shift above 63 gives the same result as 63 for
such inputs, so it is clamped.
"""

from __future__ import annotations

import enum

import numpy as np
from numba.extending import register_jitable

from ilsim.errors import InputError, WidthError


class Rounding(str, enum.Enum):
    FLOOR = "floor"
    TRUNC = "trunc"
    HALF_UP = "half_up"
    HALF_AWAY = "half_away"
    HALF_EVEN = "half_even"


DEFAULT_ROUNDING = Rounding.HALF_UP

#: Integer codes of the modes, as the formulas below (and compiled kernels) take them.
FLOOR, TRUNC, HALF_UP, HALF_AWAY, HALF_EVEN = 0, 1, 2, 3, 4
MODE_CODE = {
    Rounding.FLOOR: FLOOR,
    Rounding.TRUNC: TRUNC,
    Rounding.HALF_UP: HALF_UP,
    Rounding.HALF_AWAY: HALF_AWAY,
    Rounding.HALF_EVEN: HALF_EVEN,
}

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


def mode_code(mode) -> int:
    """The integer code of a rounding mode (a Rounding or its string), as the formulas take it."""
    return MODE_CODE[as_rounding(mode)]


@register_jitable(inline="always")
def apply_mode(q, rem_nonzero, up, tie, negative, mode):
    """The mode's correction of a floor quotient q -- the one place each mode is written.

    Flags are 0/1 integers (ints, int64 scalars or int64 arrays): ``rem_nonzero`` (the discarded
    part is not 0), ``up`` / ``tie`` (it is above / exactly one half), ``negative`` (the dividend
    is below 0). Branch-free in the data (a mispredicted branch per element cost more than the
    division); ``mode`` is a code of :data:`MODE_CODE`.
    """
    if mode == FLOOR:
        return q
    if mode == TRUNC:
        return q + (rem_nonzero & negative)
    if mode == HALF_UP:
        return q + up + tie
    if mode == HALF_AWAY:
        return q + up + (tie & (1 - negative))
    return q + up + (tie & (q & 1))  # HALF_EVEN


@register_jitable(inline="always")
def rshift_round_int(x, s, mode):
    """round(x / 2^s) in the coded mode, for s >= 0 (s = 0 returns x). Exact on Python ints of any
    size; compiled on int64 it needs |x| < 2^62 and s <= 63 (ilsim.arith.jit clamps s)."""
    if s <= 0:
        return x
    q = x >> s
    rem = x - (q << s)                       # in [0, 2^s)
    half = 1 << (s - 1)
    return apply_mode(q, int(rem != 0), int(rem > half), int(rem == half), int(x < 0), mode)


@register_jitable(inline="always")
def div_round_int(a, b, mode):
    """round(a / b) in the coded mode, for b > 0. Exact on Python ints of any size; compiled on
    int64 it needs |a| < 2^62 and b < 2^62 (so 2 * rem < 2^63)."""
    q = a // b
    rem = a - q * b                          # in [0, b)
    return apply_mode(q, int(rem != 0), int(2 * rem > b), int(2 * rem == b), int(a < 0), mode)


def rshift_round_reference(x: int, s: int, mode=DEFAULT_ROUNDING) -> int:
    """round(x / 2^s) for Python ints x (any sign, any size) and s >= 0, in the named mode."""
    code = mode_code(mode)
    if s < 0:
        raise InputError(f"rshift_round: shift must be >= 0, got {s}")
    return rshift_round_int(x, s, code)


def div_round_reference(a: int, b: int, mode=DEFAULT_ROUNDING) -> int:
    """round(a / b) for Python ints a (any sign) and b > 0, in the named mode."""
    code = mode_code(mode)
    if b <= 0:
        raise InputError(f"div_round: divisor must be > 0, got {b}")
    return div_round_int(a, b, code)


def _require_array_limit(x: np.ndarray, what: str) -> None:
    if x.size and (int(x.max()) >= 1 << ARRAY_LIMIT_BITS or int(x.min()) <= -(1 << ARRAY_LIMIT_BITS)):
        raise WidthError(f"{what}: operand magnitude reaches 2^{ARRAY_LIMIT_BITS}; "
                         f"the int64 path is only exact below that")


def _flag(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.int64)


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
    shifted = s > 0                          # s = 0: rem = 0, no correction in any mode
    out = apply_mode(q, _flag(rem != 0), _flag(shifted & (rem > half)), _flag(shifted & (rem == half)),
                     _flag(x < 0), MODE_CODE[mode])
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
    above = rem - (b - rem)                  # sign(2*rem - b) without forming 2*rem
    out = apply_mode(q, _flag(rem != 0), _flag(above > 0), _flag(above == 0), _flag(a < 0), MODE_CODE[mode])
    return np.asarray(out, dtype=np.int64)
