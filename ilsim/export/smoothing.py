"""Closed-form smoothing factors (SmoothQuant / FSBR initialisation), offline.

For an activation X feeding weights W_1..W_n along channel j, the factor
    s_j = max|X_j|^alpha / max_i max|W_i[:, j]|^(1 - alpha),   clipped to [1e-5, 1e5]
moves quantization difficulty from activations to weights: X'_j = X_j / s_j, W'_i[:, j] = W_i[:, j] s_j,
and X' W'^T = X W^T exactly in real arithmetic. The factors fold into the producer (a norm gain,
or the output channels of a linear layer), so they cost nothing at run time.
"""

from __future__ import annotations

import numpy as np

from ilsim.errors import InputError


def smoothing_factors(act_absmax: np.ndarray, weights: list[np.ndarray], alpha: float = 0.5,
                      lo: float = 1e-5, hi: float = 1e5) -> np.ndarray:
    """Per-channel s_j for activation channel maxima ``act_absmax`` [K] and consumer weights [N_i, K]."""
    act = np.asarray(act_absmax, dtype=np.float64)
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"smoothing alpha must be in [0, 1], got {alpha}")
    w_absmax = np.max(np.stack([np.abs(np.asarray(w, dtype=np.float64)).max(axis=0) for w in weights]), axis=0)
    if w_absmax.shape != act.shape:
        raise InputError(f"smoothing: activation has {act.shape[0]} channels, weights have {w_absmax.shape[0]}")
    act = np.maximum(act, 1e-8)
    w_absmax = np.maximum(w_absmax, 1e-8)
    return np.clip(act ** alpha / w_absmax ** (1.0 - alpha), lo, hi)
