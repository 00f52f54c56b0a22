"""Per-output-channel weight quantization with a clipping search (offline, float).

For each output channel j (row j of an nn.Linear weight [N, K]) and each clip ratio c in a grid,
    lo = min(0, c * min_k w[j, k]),  hi = max(0, c * max_k w[j, k])        (range holds 0)
    s  = (hi - lo) / (2^b - 1),  zp = round(-lo / s),  q = clamp(round(w / s) + zp, 0, 2^b - 1)
and the ratio with the smallest squared reconstruction error sum_k (s (q - zp) - w)^2 wins.
The winning scales become dyadic numbers that share one shift k for the whole matrix, so the
integer path folds them without a run-time rounding: m_j = round(s_j * 2^k) < 2^mbits.
Weights are unsigned b-bit with a per-channel zero point (asymmetric): at 2 bits this keeps four
levels where a symmetric grid has three.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import math

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.errors import InputError

DEFAULT_CLIP_GRID = tuple(1.0 - 0.025 * i for i in range(21))  # 1.0 down to 0.5


@dataclass(frozen=True)
class QuantWeight:
    """real(w[j, k]) = m[j] / 2^shift * (q[j, k] - zp[j]); q unsigned ``bits`` wide."""

    q: np.ndarray      # [N, K] uint8
    zp: np.ndarray     # [N] int64, in [0, 2^bits - 1]
    m: np.ndarray      # [N] int64, in [0, 2^mbits)
    shift: int
    bits: int

    def dequantize(self) -> np.ndarray:
        scale = self.m.astype(np.float64) / float(1 << self.shift)
        return scale[:, None] * (self.q.astype(np.float64) - self.zp[:, None])


def quantize_rows(w: np.ndarray, clip: float, levels: int):
    """Round-to-nearest on the grid of clip ratio ``clip`` (module docstring), per row of ``w``:
    (q, zp, scale, squared error per row), all float64; a row with a zero range gets scale 1."""
    lo = np.minimum(w.min(axis=1) * clip, 0.0)
    hi = np.maximum(w.max(axis=1) * clip, 0.0)
    scale = (hi - lo) / levels
    scale = np.where(scale > 0, scale, 1.0)
    zp = np.clip(np.round(-lo / scale), 0, levels)
    q = np.clip(np.round(w / scale[:, None]) + zp[:, None], 0, levels)
    err = ((q - zp[:, None]) * scale[:, None] - w) ** 2
    return q, zp, scale, err.sum(axis=1)


def common_shift(scales: np.ndarray, mbits: int = DEFAULT_MBITS) -> int:
    """The largest k in [0, 63] with round(s * 2^k) < 2^mbits for every scale (exact rationals)."""
    largest = Fraction(float(np.max(scales)))
    if largest <= 0:
        return MAX_SHIFT
    k = MAX_SHIFT
    while k > 0 and math.floor(largest * (1 << k) + Fraction(1, 2)) >= 1 << mbits:
        k -= 1
    if math.floor(largest * (1 << k) + Fraction(1, 2)) >= 1 << mbits:
        raise InputError(f"weight scale {float(largest)} does not fit {mbits} bits with a shift >= 0")
    return k


def dyadic_scales(scales: np.ndarray, mbits: int = DEFAULT_MBITS) -> tuple[np.ndarray, int]:
    """Per-row scales as m_j / 2^k with one shared k = common_shift(scales, mbits) and
    m_j = floor(s_j 2^k + 1/2) (exact rationals, ties up), int64 in [0, 2^mbits)."""
    shift = common_shift(scales, mbits)
    m = np.array([math.floor(Fraction(float(s)) * (1 << shift) + Fraction(1, 2)) for s in scales],
                 dtype=np.int64)
    return m, shift


def quantize_weight(w: np.ndarray, bits: int, *, clip_grid=DEFAULT_CLIP_GRID, mbits: int = DEFAULT_MBITS,
                    name: str = "weight") -> QuantWeight:
    """Quantize a float [N, K] weight per output channel (asymmetric, clipping search, shared shift)."""
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.size == 0:
        raise InputError(f"{name}: expected a non-empty 2-D weight, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise InputError(f"{name}: weight holds NaN or Inf")
    if not 2 <= bits <= 8:
        raise InputError(f"{name}: weight bits must be in [2, 8], got {bits}")
    levels = (1 << bits) - 1
    best_q, best_zp, best_scale, best_err = quantize_rows(w, clip_grid[0], levels)
    for clip in clip_grid[1:]:
        q, zp, scale, err = quantize_rows(w, clip, levels)
        better = err < best_err
        best_q[better], best_zp[better], best_scale[better], best_err[better] = \
            q[better], zp[better], scale[better], err[better]
    m, shift = dyadic_scales(best_scale, mbits)
    zero_rows = ~np.any(w != 0, axis=1)
    m[zero_rows] = 0
    return QuantWeight(q=best_q.astype(np.uint8), zp=best_zp.astype(np.int64), m=m, shift=shift, bits=bits)
