"""Bit length and count-leading-zeros, the normalisation step of every dynamic scale."""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import overload

from ilsim.errors import InputError


def bit_length(x: int) -> int:
    """Number of bits of |x| (0 for 0), as Python's int.bit_length. Inside compiled code (a
    formula registered with Numba) it is :func:`bit_length_i64`, for x >= 0."""
    return int(x).bit_length()


@numba.njit(cache=True, inline="always")
def bit_length_i64(x):
    """Bits of a non-negative int64 (0 for 0): Python's int.bit_length, by halving search."""
    n = 0
    for step in (32, 16, 8, 4, 2, 1):
        if x >= np.int64(1) << step:
            x >>= step
            n += step
    return n + (1 if x > 0 else 0)


@overload(bit_length, inline="always")
def _bit_length_compiled(x):
    return lambda x: bit_length_i64(x)


def clz(x: int, width: int) -> int:
    """Leading zeros of x as an unsigned width-bit word; x must be in [0, 2^width)."""
    if not 0 <= x < 1 << width:
        raise InputError(f"clz: {x} is not an unsigned {width}-bit value")
    return width - int(x).bit_length()


def bit_length_array(x) -> np.ndarray:
    """Element-wise bit length of |x| for an int64 array (|x| < 2^63), without floating point."""
    a = np.abs(np.asarray(x, dtype=np.int64))
    out = np.zeros(a.shape, dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = a >= (np.int64(1) << shift)
        out += np.where(big, shift, 0)
        a = np.where(big, a >> shift, a)
    return out + (a > 0)
