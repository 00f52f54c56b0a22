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


#: The FSBR smoothing pairs of a LLaMA layer (DESIGN.md section 1), in the order they are applied.
FSBR_PAIRS = ("qk", "norm_qkv", "v_o", "norm_gate_up", "gate_up", "up_down")


def _balance(a_absmax: np.ndarray, b_absmax: np.ndarray, lo: float = 1e-5, hi: float = 1e5) -> np.ndarray:
    """s with a * s and b / s having equal maxima per channel: s = sqrt(b / a)."""
    return np.clip(np.sqrt(np.maximum(b_absmax, 1e-8) / np.maximum(a_absmax, 1e-8)), lo, hi)


def smooth_layer(w: dict, stats: dict, num_heads: int, num_kv_heads: int, head_dim: int,
                 alpha: float = 0.5, pairs=FSBR_PAIRS, input_div: dict | None = None,
                 factors: dict | None = None, factors_out: dict | None = None) -> np.ndarray:
    """Apply the FSBR factors of one layer in place; return the gate divisor [I].

    The factors are the closed-form ones below, except for a pair whose factor ``factors`` gives
    (learned FSBR, export/fsbr.py), in the shape ``factors_out`` receives: qk [Hkv, d] (equal on
    each RoPE pair (i, i + d/2)), norm_qkv [hidden], v_o [Hkv, d], norm_gate_up [hidden],
    gate_up [I], up_down [I]. ``factors_out``, when given, receives the factor each applied pair
    used (so the closed-form ones, when none are given, initialise learned FSBR).

    ``input_div``, when given, receives per input channel the factor each linear layer's input
    is divided by (attn_in: q/k/v, o_in: o, mlp_in: gate/up, down_in: down; ones where no pair
    applies), so that a calibration Hessian H of the unsmoothed input becomes D⁻¹ H D⁻¹.

    ``w`` holds float64 arrays: q, k, v, o, gate, up, down ([out, in]) and the norm gains
    attn_norm, mlp_norm; ``stats`` the calibration maxima of the *unsmoothed* model (see
    calibrate.py). Each pair leaves the layer's real-valued function unchanged:
      qk            q channel (h, i) * s_i, k channel (g, i) / s_i; s shared by the RoPE pair
                    (i, i + d/2) and by the heads of a kv group, s = sqrt(max|k| / max|q|)
      norm_qkv      attn_norm / s, columns of q, k, v * s   (SmoothQuant, alpha)
      v_o           v channel (g, i) / s, o columns (h, i) * s for every head h of group g
      norm_gate_up  mlp_norm / s, columns of gate, up * s
      gate_up       gate row j * s_j, up row j / s_j, and the sigmoid sees gate / s_j:
                    x1 s sigmoid(x1 s / s) x2 / s = x1 sigmoid(x1) x2; s = sqrt(max|up| / max|gate|)
      up_down       up row j / s_j, down column j * s_j  (the SwiGLU output is linear in up)
    """
    unknown = set(pairs) - set(FSBR_PAIRS)
    if unknown:
        raise InputError(f"unknown smoothing pairs {sorted(unknown)}; known: {', '.join(FSBR_PAIRS)}")
    group = num_heads // num_kv_heads
    half = head_dim // 2
    a = dict(stats)  # maxima, updated as factors move ranges
    given = factors or {}
    used = {}

    def chosen(pair: str, closed_form, shape) -> np.ndarray:
        """The given factor of ``pair`` (checked against ``shape``) or the closed-form one."""
        if pair in given:
            s = np.asarray(given[pair], dtype=np.float64)
            if s.shape != tuple(shape) or not np.all(np.isfinite(s)) or not np.all(s > 0):
                raise InputError(f"smoothing: the given {pair} factor must be finite, positive and of shape "
                                 f"{tuple(shape)}, got shape {s.shape}")
        else:
            s = closed_form()
        used[pair] = s
        return s

    gate_div = np.ones(w["gate"].shape[0])
    div = {"attn_in": np.ones(w["q"].shape[1]), "o_in": np.ones(w["o"].shape[1]),
           "mlp_in": np.ones(w["gate"].shape[1]), "down_in": np.ones(w["down"].shape[1])}
    if "qk" in pairs:
        def closed_form():
            q_abs = a["q"].reshape(num_kv_heads, group, head_dim).max(axis=1)  # [Hkv, d]
            k_abs = a["k"].reshape(num_kv_heads, head_dim)
            s = _balance(q_abs, k_abs)
            s = np.maximum(s[:, :half], s[:, half:])
            return np.concatenate([s, s], axis=1)                              # RoPE pairs share s
        s = chosen("qk", closed_form, (num_kv_heads, head_dim))
        if not np.array_equal(s[:, :half], s[:, half:]):
            raise InputError("smoothing: the given qk factor differs within a RoPE pair (i, i + d/2)")
        w["q"] *= np.repeat(s, group, axis=0).reshape(-1, 1)
        w["k"] /= s.reshape(-1, 1)
    if "norm_qkv" in pairs:
        s = chosen("norm_qkv", lambda: smoothing_factors(a["attn_in"], [w["q"], w["k"], w["v"]], alpha),
                   w["attn_norm"].shape)
        w["attn_norm"] /= s
        div["attn_in"] = div["attn_in"] * s
        for name in ("q", "k", "v"):
            w[name] *= s
    if "v_o" in pairs:
        def closed_form():
            o_abs = a["o_in"].reshape(num_kv_heads, group, head_dim).max(axis=1)  # [Hkv, d]
            wo_abs = np.abs(w["o"]).max(axis=0).reshape(num_kv_heads, group, head_dim).max(axis=1)
            return np.clip(np.maximum(o_abs, 1e-8) ** alpha / np.maximum(wo_abs, 1e-8) ** (1 - alpha), 1e-5, 1e5)
        s = chosen("v_o", closed_form, (num_kv_heads, head_dim))
        w["v"] /= s.reshape(-1, 1)
        per_o_column = np.repeat(s[:, None, :], group, axis=1).reshape(-1)
        w["o"] *= per_o_column.reshape(1, -1)
        div["o_in"] = div["o_in"] * per_o_column
    if "norm_gate_up" in pairs:
        s = chosen("norm_gate_up", lambda: smoothing_factors(a["mlp_in"], [w["gate"], w["up"]], alpha),
                   w["mlp_norm"].shape)
        w["mlp_norm"] /= s
        div["mlp_in"] = div["mlp_in"] * s
        w["gate"] *= s
        w["up"] *= s
    if "gate_up" in pairs:
        s = chosen("gate_up", lambda: _balance(a["gate"], a["up"]), gate_div.shape)
        w["gate"] *= s[:, None]
        w["up"] /= s[:, None]
        gate_div = 1.0 / s
    if "up_down" in pairs:
        s = chosen("up_down", lambda: smoothing_factors(a["down_in"], [w["down"]], alpha), (w["down"].shape[1],))
        w["up"] /= s[:, None]
        w["down"] *= s
        div["down_in"] = div["down_in"] * s
    if input_div is not None:
        input_div.update(div)
    if factors_out is not None:
        factors_out.update(used)
    return gate_div
