"""Numba scalar versions of the rounding primitives, for use inside compiled kernels.

Same contracts as :mod:`ilsim.arith.rounding` (int64 operands, |x| < 2^62, shifts clamped to 63),
with the mode passed as an integer code from :data:`MODE_CODE`. Tests hold them equal to the
Python-int references.

They are inlined into the kernels that call them. Numba's on-disk cache (cache=True) keys a kernel
on its own module only, so ilsim keys the whole cache folder on the sources of every module with
compiled code (ilsim.numba_cache_folder): an edit here starts a fresh cache, no kernel keeps the
old code.
"""

from __future__ import annotations

import numba
import numpy as np

from ilsim.arith.rounding import Rounding, as_rounding

FLOOR, TRUNC, HALF_UP, HALF_AWAY, HALF_EVEN = 0, 1, 2, 3, 4
MODE_CODE = {
    Rounding.FLOOR: FLOOR,
    Rounding.TRUNC: TRUNC,
    Rounding.HALF_UP: HALF_UP,
    Rounding.HALF_AWAY: HALF_AWAY,
    Rounding.HALF_EVEN: HALF_EVEN,
}


def mode_code(mode) -> int:
    """The integer code of a rounding mode, for passing into a jitted kernel."""
    return MODE_CODE[as_rounding(mode)]


@numba.njit(cache=True, inline="always")
def _apply_mode(q, rem_nonzero, up, tie, negative, mode):
    """The mode's correction of the floor quotient q, without data-dependent branches (a
    mispredicted branch per element cost more than the division): ``up``/``tie`` (0 or 1) say
    whether the remainder is above / exactly at one half."""
    if mode == FLOOR:
        return q
    if mode == TRUNC:
        return q + (rem_nonzero & negative)
    if mode == HALF_UP:
        return q + up + tie
    if mode == HALF_AWAY:
        return q + up + (tie & (1 - negative))
    return q + up + (tie & (q & 1))  # HALF_EVEN


@numba.njit(cache=True, inline="always")
def rshift_round_i64(x, s, mode):
    """round(x / 2^s) in the coded mode; int64 x with |x| < 2^62, 0 <= s (clamped to 63)."""
    if s <= 0:
        return np.int64(x)
    if s > 63:
        s = 63
    q = x >> s
    rem = x - (q << s)                       # in [0, 2^s)
    half = np.int64(1) << (s - 1)
    return _apply_mode(q, np.int64(rem != 0), np.int64(rem > half), np.int64(rem == half), np.int64(x < 0), mode)


@numba.njit(cache=True, inline="always")
def div_round_i64(a, b, mode):
    """round(a / b) in the coded mode; int64 a with |a| < 2^62, 0 < b < 2^62."""
    q = a // b
    rem = a - q * b                          # in [0, b)
    twice = rem << 1                         # < 2^63
    return _apply_mode(q, np.int64(rem != 0), np.int64(twice > b), np.int64(twice == b), np.int64(a < 0), mode)
