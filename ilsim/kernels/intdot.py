"""Numba kernel of the DI-MatMul accumulation with its per-column epilogue.

For activation differences a' [M, K] (a - a_zp, int16 or int32) and raw weights b [N, K] (their
storage dtype, signed or unsigned) with per-column zero points b_zp and folded multipliers b_m':

    raw[i, j] = sum_k a'[i, k] * b[j, k]                       (int32 or int64 accumulator)
    acc[i, j] = raw[i, j] - b_zp[j] * row_sum[i]              row_sum[i] = sum_k a'[i, k]
              = sum_k a'[i, k] * (b[j, k] - b_zp[j])          exactly (int64)
    p[i, j]   = acc[i, j] * b_m'[j]                           (only when acc is in its width)

Exactness: the caller proves K * max|a'| * max|b| < 2^31 before choosing the int32 accumulator
(no partial sum can wrap) and < 2^63 for int64; b_zp * row_sum is bounded the same way. An acc
outside [acc_lo, acc_hi] (its declared width) is not multiplied: the column is flagged in
``bad`` and the caller reports the first offending element. Within the width, |acc * b_m'| <
2^(acc_bits - 1 + mbits) <= 2^61, so p cannot wrap.

Work is split by output column j; each (i, j) is one sequential dot product over k, so the
result does not depend on the thread count. The inner loop is a plain integer reduction, which
LLVM vectorises (widening multiply-add), reading b once per column.
"""

from __future__ import annotations

import numba
import numpy as np

#: Below this many multiply-adds the serial kernel is used.
PARALLEL_MIN_MACS = 1 << 15


@numba.njit(cache=True, inline="always")
def _dot_i32(a, b, i, j):
    """sum_k a[i, k] * b[j, k] in int32. Every step is cast back to int32: Numba would otherwise
    widen int32 arithmetic to int64; in int32 LLVM vectorises the reduction as a widening
    multiply-add (vpmaddwd). The caller proves no partial sum reaches 2^31."""
    s = np.int32(0)
    for t in range(a.shape[1]):
        s = np.int32(s + np.int32(np.int32(a[i, t]) * np.int32(b[j, t])))
    return np.int64(s)


@numba.njit(cache=True, inline="always")
def _dot_i64(a, b, i, j):
    """sum_k a[i, k] * b[j, k] in int64 (the caller proves no partial sum reaches 2^63)."""
    s = np.int64(0)
    for t in range(a.shape[1]):
        s += np.int64(a[i, t]) * np.int64(b[j, t])
    return s


@numba.njit(cache=True, inline="always")
def _epilogue(raw, i, j, b_zp, b_mf, row_sum, acc_lo, acc_hi, p):
    """acc = raw - b_zp[j] * row_sum[i]; p[i, j] = acc * b_mf[j] if acc is in its width.
    Returns 1 where it is not (p[i, j] = 0 then)."""
    acc = raw - np.int64(b_zp[j]) * row_sum[i]
    if acc < acc_lo or acc > acc_hi:
        p[i, j] = 0
        return 1
    p[i, j] = acc * np.int64(b_mf[j])
    return 0


@numba.njit(cache=True, inline="always")
def _column(a, b, b_zp, b_mf, row_sum, acc_lo, acc_hi, p, j, wide):
    """Column j of p; returns 1 where an acc left its width. ``wide`` picks the int64 sum (the
    choice is made once per column, outside the row loop)."""
    flag = 0
    if wide:
        for i in range(a.shape[0]):
            flag |= _epilogue(_dot_i64(a, b, i, j), i, j, b_zp, b_mf, row_sum, acc_lo, acc_hi, p)
    else:
        for i in range(a.shape[0]):
            flag |= _epilogue(_dot_i32(a, b, i, j), i, j, b_zp, b_mf, row_sum, acc_lo, acc_hi, p)
    return flag


@numba.njit(cache=True, parallel=True)
def linear_parallel(a, b, b_zp, b_mf, row_sum, acc_lo, acc_hi, p, bad, wide):
    """p[i, j] = (sum_k a[i,k] * (b[j,k] - b_zp[j])) * b_mf[j], columns spread over threads."""
    for j in numba.prange(b.shape[0]):
        bad[j] = _column(a, b, b_zp, b_mf, row_sum, acc_lo, acc_hi, p, j, wide)


@numba.njit(cache=True)
def linear_serial(a, b, b_zp, b_mf, row_sum, acc_lo, acc_hi, p, bad, wide):
    """:func:`linear_parallel` on one thread (identical results)."""
    for j in range(b.shape[0]):
        bad[j] = _column(a, b, b_zp, b_mf, row_sum, acc_lo, acc_hi, p, j, wide)


@numba.njit(cache=True)
def activation_differences(a, a_zp, out, row_sum):
    """out[i, k] = a[i, k] - a_zp[i] (out's dtype holds it), row_sum[i] = sum_k out[i, k];
    returns max |out| (0 for an empty array)."""
    rows, depth = a.shape
    biggest = np.int64(0)
    for i in range(rows):
        z = np.int64(a_zp[i])
        total = np.int64(0)
        for t in range(depth):
            v = np.int64(a[i, t]) - z
            out[i, t] = v
            total += v
            biggest = max(biggest, abs(v))
        row_sum[i] = total
    return biggest


def run_linear(a_diff: np.ndarray, row_sum: np.ndarray, b: np.ndarray, b_zp: np.ndarray, b_mf: np.ndarray,
               acc_bits: int, wide: bool) -> tuple[np.ndarray, np.ndarray]:
    """(p [M, N] int64, bad [N] int8) for validated operands (a_diff and its row sums from
    :func:`activation_differences`); ``wide`` selects the int64 accumulator (the caller has
    proved which one is exact)."""
    rows, cols = a_diff.shape[0], b.shape[0]
    p = np.empty((rows, cols), dtype=np.int64)
    bad = np.empty(cols, dtype=np.int8)
    acc_hi = (1 << (acc_bits - 1)) - 1
    kernel = linear_parallel if rows * cols * a_diff.shape[1] >= PARALLEL_MIN_MACS else linear_serial
    kernel(a_diff, b, b_zp, b_mf, row_sum, np.int64(-acc_hi - 1), np.int64(acc_hi), p, bad, bool(wide))
    return p, bad
