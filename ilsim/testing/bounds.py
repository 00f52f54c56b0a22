"""Accuracy-bound helpers shared by the operators' tests (floats: measurement code only).

Every operator that ends in a per-row requantization (quantize_rows' contract) errs against its
float meaning by at most one output step plus the scale's own rounding:
    |deq - exact| <= step · (1 + (d + 1) · 2^(1 - mbits))
with step = m'/2^k' of the row and d the output levels: the code is off by at most one step (one
rounding; an asymmetric clamp costs at most half a step more) and m' >= 2^(mbits-1) is rounded
once, so its relative error is at most 2^-mbits.
"""

from __future__ import annotations

import numpy as np

from ilsim.ops.quantize import output_levels


def dequantize(out) -> np.ndarray:
    """Real values m/2^k (q - zp) of a RowQuant, float64."""
    step = out.m.astype(np.float64) / np.exp2(out.k.astype(np.float64))
    return (out.q.astype(np.float64) - out.zp[..., None]) * step[..., None]


def requantization_bound(out, out_bits: int, out_symmetric: bool, mbits: int) -> np.ndarray:
    """Per row: the largest |dequantized - exact| the output requantization allows (module doc)."""
    levels = output_levels(out_bits, out_symmetric)
    step = out.m.astype(np.float64) / np.exp2(out.k.astype(np.float64))
    return step * (1 + (levels + 1) * 2.0 ** (1 - mbits))
