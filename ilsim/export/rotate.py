"""QuaRot-style rotations (arXiv 2404.00456), offline: an equivalent float model whose activations
have no outlier channels.

An orthogonal Q (Q Qᵀ = I) leaves a linear chain unchanged, x W = (x Q)(Qᵀ W), while spreading
a channel that is large in every token over all channels. Row vectors, HF layout (a linear layer
computes y = x Wᵀ with W [out, in]):

    residual stream    x~ = x Q              Q = diag(±1) H_d / sqrt(d), d = hidden size, seeded signs
    embedding          E' = E Q
    norm -> linear     W' = W diag(g) Q      the RMSNorm gain g folded first (RMSNorm(x Q) = RMSNorm(x) Q,
                                             since an orthogonal Q keeps the mean square); gains become 1
    linear -> stream   W' = Qᵀ W             o_proj and down_proj write into the rotated stream
    lm head            W' = W diag(g_final) Q  (tied embeddings become untied)
    values, per head   W_v[g]' = Rᵀ W_v[g],  W_o[:, h]' = W_o[:, h] R   for every head h of kv group g,
                       R = H_head_dim / sqrt(head_dim): attention mixes positions, not the head's
                       channels, so P (v R) = (P v) R and the o projection undoes R.
All of this is folded into the weights (``rotate_checkpoint``): the result is again a LLaMA
checkpoint that FloatLlama runs to the same logits (to float rounding), so calibration, smoothing
and every later export step see it as an ordinary model.

The one rotation that cannot be folded is on the down projection's input, the SwiGLU output
(element-wise, so nothing before it can carry a rotation): the integer graph applies an exact
integer Walsh-Hadamard transform there (op di_hadamard, t = a Hᵀ for rows a) and the down weights
take the inverse, W_down' = W_down Hᵀ / n (``down_weight_for_online_hadamard``), since Hᵀ H = n I.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ilsim.errors import InputError
from ilsim.ops.hadamard import hadamard_factors, hadamard_matrix, hadamard_transform_float

DEFAULT_SEED = 0


def random_hadamard(n: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Q = diag(s) H_n / sqrt(n) with seeded signs s in {-1, +1}: orthogonal, float64 [n, n]."""
    try:
        hadamard_factors(n)
    except InputError as err:
        raise InputError(f"rotation: no Hadamard matrix of size {n} ({err})") from None
    signs = np.where(np.random.default_rng(seed).integers(0, 2, n) == 0, -1.0, 1.0)
    return signs[:, None] * hadamard_matrix(n).astype(np.float64) / np.sqrt(n)


def rotate_checkpoint(checkpoint, *, seed: int = DEFAULT_SEED, values: bool = True):
    """A new Checkpoint computing the same function with a rotated residual stream (and, with
    ``values``, rotated value/output head channels); norm gains folded into the next weights."""
    cfg = checkpoint.config
    d, heads, kv_heads, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    q = random_hadamard(d, seed)
    r = hadamard_matrix(hd).astype(np.float64) / np.sqrt(hd) if values else None
    w = {name: np.asarray(value, dtype=np.float64) for name, value in checkpoint.weights.items()}
    out = {"model.embed_tokens.weight": w["model.embed_tokens.weight"] @ q}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        g_attn, g_mlp = w[p + "input_layernorm.weight"], w[p + "post_attention_layernorm.weight"]
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            out[p + name + ".weight"] = (w[p + name + ".weight"] * g_attn) @ q
        for name in ("mlp.gate_proj", "mlp.up_proj"):
            out[p + name + ".weight"] = (w[p + name + ".weight"] * g_mlp) @ q
        out[p + "self_attn.o_proj.weight"] = q.T @ w[p + "self_attn.o_proj.weight"]
        out[p + "mlp.down_proj.weight"] = q.T @ w[p + "mlp.down_proj.weight"]
        if values:
            v = out[p + "self_attn.v_proj.weight"].reshape(kv_heads, hd, d)
            out[p + "self_attn.v_proj.weight"] = np.einsum("ji,gjk->gik", r, v).reshape(kv_heads * hd, d)
            o = out[p + "self_attn.o_proj.weight"].reshape(d, heads, hd)
            out[p + "self_attn.o_proj.weight"] = (o @ r).reshape(d, heads * hd)
        out[p + "input_layernorm.weight"] = np.ones(d)
        out[p + "post_attention_layernorm.weight"] = np.ones(d)
    head = checkpoint.lm_head.astype(np.float64)
    out["lm_head.weight"] = (head * w["model.norm.weight"]) @ q
    out["model.norm.weight"] = np.ones(d)
    config = dataclasses.replace(cfg, tie_word_embeddings=False)
    return dataclasses.replace(checkpoint, config=config, weights=out)


def down_weight_for_online_hadamard(w_down: np.ndarray) -> np.ndarray:
    """W_down Hᵀ / n: the down projection that takes the integer transform t = a Hᵀ of its input."""
    n = w_down.shape[1]
    return hadamard_transform_float(np.asarray(w_down, dtype=np.float64)) / n
