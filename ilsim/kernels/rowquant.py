"""Numba kernel of quantize_rows (docs/spec/quantize.md): ranges, zero points, codes and the
per-row output scale in one pass per row, no Python work per row.

Same integer contract as :func:`ilsim.ops.quantize.quantize_rows_reference`; the caller has
validated the inputs (x within in_bits, in_bits + bits <= 62, so |x * d| < 2^62 and every
int64 step below is exact). Rows are independent, so the result does not depend on how rows
are split over threads.

The output scale is computed here when m_in * R < 2^61 (then every shifted numerator and
divisor stays below 2^62); a row outside that, or one whose scale is an error, gets a status
code and the caller finishes it with the Python-int :func:`row_output_scale`, which computes
the same value or raises the same error.
"""

from __future__ import annotations

import numba
import numpy as np

from ilsim.arith.bits import bit_length_i64
from ilsim.arith.dyadic import MAX_SHIFT
from ilsim.arith.jit import HALF_UP, div_round_i64
from ilsim.kernels.launch import row_kernel

#: Per-row status codes written by the kernel.
ROW_OK, ROW_ZERO, ROW_PYTHON = 0, 1, 2
#: The kernel computes m_in * R itself only below this bound.
SCALE_LIMIT_BITS = 61
#: Below this many elements the serial kernel is used (thread dispatch costs more than it saves).
PARALLEL_MIN_ELEMENTS = 1 << 14


@numba.njit(cache=True, inline="always")
def _scaled_quotient(num, t, levels):
    """round_half_up(num * 2^t / levels) for num < 2^61, the t row_output_scale explores."""
    if t >= 0:
        return div_round_i64(num << t, levels, HALF_UP)
    return div_round_i64(num, levels << -t, HALF_UP)


@numba.njit(cache=True)
def row_output_scale_i64(m_in, k_in, value_range, levels, mbits):
    """(m', k', status): :func:`ilsim.ops.quantize.row_output_scale` on int64.

    status ROW_OK: (m', k') equal the Python-int result. ROW_PYTHON: m_in * R >= 2^61 or the
    Python function would raise; the caller must run it for this row.
    """
    if m_in == 0 or value_range == 0:
        return np.int64(0), np.int64(0), ROW_OK
    if bit_length_i64(m_in) + bit_length_i64(value_range) > SCALE_LIMIT_BITS:
        return np.int64(0), np.int64(0), ROW_PYTHON
    num = m_in * value_range
    hi_m = np.int64(1) << mbits
    t = mbits - 1 - (bit_length_i64(num) - bit_length_i64(levels))
    while _scaled_quotient(num, t, levels) >= hi_m:
        t -= 1
    while _scaled_quotient(num, t + 1, levels) < hi_m:
        t += 1
    if k_in + t > MAX_SHIFT:
        t = MAX_SHIFT - k_in
    if k_in + t < 0:
        return np.int64(0), np.int64(0), ROW_PYTHON
    m_out = _scaled_quotient(num, t, levels)
    if m_out == 0:
        return np.int64(0), np.int64(0), ROW_PYTHON
    return np.int64(m_out), np.int64(k_in + t), ROW_OK


@numba.njit(cache=True, inline="always")
def _quantize_row(x, m_in, k_in, levels, symmetric, mode, mbits, r, q, zp, m_out, k_out, status):
    """Row r of the contract; writes q[r], zp[r], m_out[r], k_out[r], status[r]."""
    n = x.shape[1]
    lo = np.int64(0)
    hi = np.int64(0)
    for j in range(n):
        v = np.int64(x[r, j])
        if symmetric:
            v = -v if v < 0 else v
        if v > hi:
            hi = v
        if v < lo:
            lo = v
    value_range = hi - lo
    if value_range == 0:
        for j in range(n):
            q[r, j] = 0
        zp[r] = 0
        m_out[r] = 0
        k_out[r] = 0
        status[r] = ROW_ZERO
        return
    z = np.int64(0) if symmetric else div_round_i64(-lo * levels, value_range, HALF_UP)
    for j in range(n):
        v = div_round_i64(np.int64(x[r, j]) * levels, value_range, mode) + z
        if not symmetric:
            v = min(max(v, np.int64(0)), levels)
        q[r, j] = v
    zp[r] = z
    m_r, k_r, st = row_output_scale_i64(np.int64(m_in[r]), np.int64(k_in[r]), value_range, levels, mbits)
    m_out[r] = m_r
    k_out[r] = k_r
    status[r] = st
    # the range is needed by the caller only for rows it finishes in Python
    if st != ROW_OK:
        m_out[r] = value_range


@numba.njit(cache=True)
def quantize_rows_serial(x, m_in, k_in, levels, symmetric, mode, mbits, q, zp, m_out, k_out, status):
    """Every row of x [rows, N] (any integer dtype) into q (its storage dtype) and the row arrays."""
    for r in range(x.shape[0]):
        _quantize_row(x, m_in, k_in, levels, symmetric, mode, mbits, r, q, zp, m_out, k_out, status)


@numba.njit(cache=True, parallel=True)
def quantize_rows_parallel(x, m_in, k_in, levels, symmetric, mode, mbits, q, zp, m_out, k_out, status):
    """:func:`quantize_rows_serial` with rows spread over threads (identical results)."""
    for r in numba.prange(x.shape[0]):
        _quantize_row(x, m_in, k_in, levels, symmetric, mode, mbits, r, q, zp, m_out, k_out, status)


def run_quantize_rows(x2d: np.ndarray, m_in: np.ndarray, k_in: np.ndarray, levels: int, symmetric: bool,
                      mode_code: int, mbits: int, q_dtype) -> tuple:
    """Run the kernel on validated 2-D data; returns (q, zp, m, k, status) with, for rows whose
    status is not ROW_OK, the row's range R in m (the caller finishes those rows)."""
    rows, n = x2d.shape
    q = np.empty((rows, n), dtype=q_dtype)
    zp = np.empty(rows, dtype=np.int64)
    m_out = np.empty(rows, dtype=np.int64)
    k_out = np.empty(rows, dtype=np.int64)
    status = np.empty(rows, dtype=np.int8)
    kernel = quantize_rows_parallel if rows > 1 and x2d.size >= PARALLEL_MIN_ELEMENTS else quantize_rows_serial
    kernel(x2d, np.ascontiguousarray(m_in, dtype=np.int64), np.ascontiguousarray(k_in, dtype=np.int64),
           np.int64(levels), bool(symmetric), np.int64(mode_code), np.int64(mbits), q, zp, m_out, k_out, status)
    return q, zp, m_out, k_out, status


@row_kernel
def row_min_max(x, lo, hi):
    """lo[r], hi[r] = min and max of row r of x [rows, N] (N >= 1), as int64."""
    for r in numba.prange(x.shape[0]):
        a = np.int64(x[r, 0])
        b = a
        for j in range(1, x.shape[1]):
            v = np.int64(x[r, j])
            a = min(a, v)
            b = max(b, v)
        lo[r] = a
        hi[r] = b


@row_kernel
def shifted_differences(q, zp, shift, out):
    """out[r, j] = (q[r, j] - zp[r]) << shift, in int64 (the caller bounds it below 2^62)."""
    for r in numba.prange(q.shape[0]):
        z = np.int64(zp[r])
        for j in range(q.shape[1]):
            out[r, j] = (np.int64(q[r, j]) - z) << shift
