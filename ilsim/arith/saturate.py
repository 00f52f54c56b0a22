"""Saturating cast to an n-bit range: the only place a value is clamped, and always on purpose."""

from __future__ import annotations

import numpy as np

from ilsim.widths import int_range


def saturate_reference(x: int, bits: int, signed: bool) -> int:
    """min(max(x, lo), hi) for the n-bit signed (two's complement) or unsigned range."""
    lo, hi = int_range(bits, signed)
    return lo if x < lo else hi if x > hi else x


def saturate(x, bits: int, signed: bool) -> np.ndarray:
    """Array version of :func:`saturate_reference` (int64 in, int64 out)."""
    lo, hi = int_range(bits, signed)
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)
