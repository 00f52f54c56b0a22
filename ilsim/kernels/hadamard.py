"""Numba kernel of di_hadamard's transform (docs/spec/hadamard.md): t = (H_b ⊗ H_s)(x - zp) per row.

Row r of x (n = b·s values, any integer dtype) is read as a b×s matrix X (element j1·s + j2 is
X[j1, j2]); the kernel writes T = H_b · X · H_s, i.e. t = (H_b ⊗ H_s)(x - zp), in two passes:
    1. base pass:  t[i1·s + i2] = sum_j1 H_b[i1, j1] · (x[j1·s + i2] - zp)      (b·n adds/subs)
    2. butterflies: the in-place fast Walsh–Hadamard transform of each of the b segments of
       length s (Sylvester order, H_s symmetric):  (u, v) <- (u + v, u - v)  (n·log2 s adds/subs)
Every partial sum of either pass is a signed sum of at most n terms |x - zp| < 2^17, so below
2^41: int64 is exact (the caller bounds in_bits <= 16 and n <= 2^24). Rows are independent, so
the result does not depend on how rows are split over threads; serial == parallel.
"""

from __future__ import annotations

import numba
import numpy as np

#: Below this many elements the serial kernel is used (thread dispatch costs more than it saves).
PARALLEL_MIN_ELEMENTS = 1 << 14


@numba.njit(cache=True, inline="always")
def _transform_row(x, zp, base, s, lo, hi, r, t):
    """Row r: t[r] = (H_b ⊗ H_s)(x[r] - zp[r]); returns 1 if an element of t[r] leaves [lo, hi]."""
    b = base.shape[0]
    z = np.int64(zp[r])
    if b == 1:
        for j in range(s):
            t[r, j] = np.int64(x[r, j]) - z
    else:
        for i1 in range(b):
            out = i1 * s
            for i2 in range(s):
                t[r, out + i2] = 0
            for j1 in range(b):
                h = base[i1, j1]
                src = j1 * s
                for i2 in range(s):
                    t[r, out + i2] += h * (np.int64(x[r, src + i2]) - z)
    half = 1
    while half < s:
        for seg in range(b):
            start = seg * s
            for block in range(start, start + s, 2 * half):
                for j in range(block, block + half):
                    u = t[r, j]
                    v = t[r, j + half]
                    t[r, j] = u + v
                    t[r, j + half] = u - v
        half *= 2
    flag = np.int8(0)
    for j in range(b * s):
        if t[r, j] < lo or t[r, j] > hi:
            flag = np.int8(1)
    return flag


@numba.njit(cache=True)
def hadamard_rows_serial(x, zp, base, s, lo, hi, t, bad):
    """Every row of x [rows, b·s] into t [rows, b·s] (int64); bad[r] = 1 where t[r] leaves [lo, hi]."""
    for r in range(x.shape[0]):
        bad[r] = _transform_row(x, zp, base, s, lo, hi, r, t)


@numba.njit(cache=True, parallel=True)
def hadamard_rows_parallel(x, zp, base, s, lo, hi, t, bad):
    """:func:`hadamard_rows_serial` with rows spread over threads (identical results)."""
    for r in numba.prange(x.shape[0]):
        bad[r] = _transform_row(x, zp, base, s, lo, hi, r, t)


def run_hadamard_rows(x2d: np.ndarray, zp: np.ndarray, base: np.ndarray, s: int, lo: int, hi: int,
                      parallel: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(t, bad) for validated x2d [rows, b·s], zp [rows], base H_b [b, b] (±1); ``parallel=None``
    picks the parallel kernel for more than one row and at least PARALLEL_MIN_ELEMENTS elements."""
    rows, n = x2d.shape
    t = np.empty((rows, n), dtype=np.int64)
    bad = np.empty(rows, dtype=np.int8)
    if parallel is None:
        parallel = rows > 1 and x2d.size >= PARALLEL_MIN_ELEMENTS
    kernel = hadamard_rows_parallel if parallel else hadamard_rows_serial
    kernel(np.ascontiguousarray(x2d), np.ascontiguousarray(zp, dtype=np.int64),
           np.ascontiguousarray(base, dtype=np.int64), np.int64(s), np.int64(lo), np.int64(hi), t, bad)
    return t, bad
