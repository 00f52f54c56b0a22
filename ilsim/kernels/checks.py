"""Numba range checks of a per-row quantized operand, for the operators' fast validation.

One call checks q [rows, N] and its per-row zp, m, k [rows] against their declared ranges; the
caller falls back to the detailed (NumPy) validation whenever this says no, so every error
message still comes from one place.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _row_within(q, zp, m, k, i, q_lo, q_hi, m_lo, m_hi, k_hi):
    """Row i: q[i, :] and zp[i] in [q_lo, q_hi], m[i] in [m_lo, m_hi], k[i] in [0, k_hi]."""
    if zp[i] < q_lo or zp[i] > q_hi or m[i] < m_lo or m[i] > m_hi or k[i] < 0 or k[i] > k_hi:
        return False
    for j in range(q.shape[1]):
        if q[i, j] < q_lo or q[i, j] > q_hi:
            return False
    return True


@numba.njit(cache=True)
def rows_within(q, zp, m, k, q_lo, q_hi, m_lo, m_hi, k_hi):
    """True when every row is within its ranges (see :func:`_row_within`); stops at the first that is not."""
    for i in range(q.shape[0]):
        if not _row_within(q, zp, m, k, i, q_lo, q_hi, m_lo, m_hi, k_hi):
            return False
    return True


@numba.njit(cache=True, parallel=True)
def rows_within_parallel(q, zp, m, k, q_lo, q_hi, m_lo, m_hi, k_hi):
    """:func:`rows_within` with rows spread over threads (for large operands)."""
    ok = np.empty(q.shape[0], dtype=np.bool_)
    for i in numba.prange(q.shape[0]):
        ok[i] = _row_within(q, zp, m, k, i, q_lo, q_hi, m_lo, m_hi, k_hi)
    return ok.all()
