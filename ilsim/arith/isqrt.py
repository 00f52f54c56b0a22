"""Floor integer square root, exact for every 0 <= n <= 2^62, with no floating point.

The algorithm is the restoring digit-by-digit method that hardware uses: 32 iterations of
compare-subtract on two bits of n at a time (the loop runs over the fixed 32 bit pairs of a
64-bit word, so its length does not depend on the data). Tests prove it equal to
``math.isqrt`` at every power of two, every perfect square and its neighbours, and on random
inputs over the whole range.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import register_jitable

from ilsim.errors import InputError

ISQRT_MAX = 1 << 62


@register_jitable
def isqrt_restoring(n):
    """floor(sqrt(n)) for 0 <= n <= 2^62 by the restoring bit-pair method: the one source, run on
    Python ints by :func:`isqrt_reference` and compiled on int64 as :func:`isqrt_i64`."""
    root = 0
    bit = 1 << 62  # the highest power of four in range
    while bit:
        if n >= root + bit:
            n -= root + bit
            root = (root >> 1) + bit
        else:
            root >>= 1
        bit >>= 2
    return root


def isqrt_reference(n: int) -> int:
    """floor(sqrt(n)) for a Python int 0 <= n <= 2^62 (InputError outside)."""
    if not 0 <= n <= ISQRT_MAX:
        raise InputError(f"isqrt: input must be in [0, 2^62], got {n}")
    return isqrt_restoring(n)


#: :func:`isqrt_restoring` compiled, for one int64 in [0, 2^62].
isqrt_i64 = numba.njit(cache=True)(isqrt_restoring)


@numba.njit(cache=True)
def _isqrt_array(flat, out):
    for i in range(flat.size):
        out[i] = isqrt_i64(flat[i])


def isqrt(n) -> np.ndarray:
    """Element-wise floor square root of an int64 array with every element in [0, 2^62]."""
    a = np.asarray(n)
    if a.dtype.kind not in "iu":
        raise InputError(f"isqrt: input must be an integer array, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (int(a.min()) < 0 or int(a.max()) > ISQRT_MAX):
        raise InputError(f"isqrt: every element must be in [0, 2^62]; got range [{int(a.min())}, {int(a.max())}]")
    flat = np.ascontiguousarray(a).reshape(-1)
    out = np.empty_like(flat)
    _isqrt_array(flat, out)
    return out.reshape(a.shape)
