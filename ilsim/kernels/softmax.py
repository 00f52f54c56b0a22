"""DI-ClippedSoftmax's output formula and its row kernel (contract: docs/spec/softmax.md;
operator: ilsim.ops.softmax). The probability formula is plain integer code registered with
Numba: the operator's reference calls it on Python ints, the kernel inlines the same source."""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import register_jitable

from ilsim.arith.rounding import HALF_UP, div_round_int
from ilsim.kernels.exp import exp_from_t
from ilsim.kernels.launch import row_kernel


@register_jitable(inline="always")
def probability(e, total, frac_bits, p_max):
    """p = min(round_half_up(e * 2^F / S), p_max): one element's output from its exponential e and
    its row's sum S >= 1 (the one source for the reference and the kernel; e * 2^F < 2^62)."""
    return min(div_round_int(e << frac_bits, total, HALF_UP), p_max)


@row_kernel
def softmax_rows_kernel(x, keep, t_abs, neg_clip, order, frac_bits, p_max, p, sums):
    """Per row: the kept maximum, e = exp_from_t(max(x - max, -c), |t|) and its sum S (sums[r],
    checked by the caller against sum_bits), then p = probability(e, S); masked elements 0."""
    rows, n_cols = x.shape
    for r in numba.prange(rows):
        row_max = np.int64(0)
        found = False
        for j in range(n_cols):
            if keep[r, j] and (not found or x[r, j] > row_max):
                row_max = x[r, j]
                found = True
        total = np.int64(0)
        for j in range(n_cols):
            if keep[r, j]:
                e = exp_from_t(max(x[r, j] - row_max, neg_clip[r]), t_abs[r], order)
                p[r, j] = e
                total += e
            else:
                p[r, j] = 0
        sums[r] = total
        for j in range(n_cols):
            if keep[r, j]:
                p[r, j] = probability(p[r, j], total, frac_bits, p_max)
