"""The residual add's alignment formula and its kernel (contract: docs/spec/residual.md; operator:
ilsim.ops.residual). The formula is plain integer code registered with Numba: the reference calls
it on Python ints, the kernel inlines the same source on int64."""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import register_jitable

from ilsim.arith.rounding import rshift_round_int
from ilsim.kernels.launch import row_kernel


@register_jitable(inline="always")
def aligned(v, zp, m, shift, mode):
    """rshift_round((v - zp) * m, shift) in the coded mode: one operand's value on the common grid
    2^-kref (shift = k - kref >= 0). Exact on Python ints; compiled, |(v - zp) * m| < 2^62 and
    shift <= 63 (the attribute limits give both)."""
    return rshift_round_int((v - zp) * m, shift, mode)


@row_kernel
def aligned_sums(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, mode, lo, hi, total, bad):
    """total[r, j] = rshift_round((a - a_zp) * a_m, a_k - kref) + rshift_round((b - b_zp) * b_m, b_k - kref);
    bad[r] = 1 where a sum leaves [lo, hi]. |(v - zp) * m| < 2^(16 + 1 + 30) by the attribute
    limits: exact in int64, below 2^62 as the compiled rounding requires; shifts <= 63."""
    for r in numba.prange(a.shape[0]):
        kref = min(a_k[r], b_k[r])
        flag = np.int8(0)
        for j in range(a.shape[1]):
            v = (aligned(np.int64(a[r, j]), a_zp[r], a_m[r], a_k[r] - kref, mode)
                 + aligned(np.int64(b[r, j]), b_zp[r], b_m[r], b_k[r] - kref, mode))
            total[r, j] = v
            if v < lo or v > hi:
                flag = np.int8(1)
        bad[r] = flag
