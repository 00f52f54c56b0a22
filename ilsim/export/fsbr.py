"""Learned FSBR (I-LLM, arXiv 2405.17849; OmniQuant-style block reconstruction), offline, with torch.

    factors = learn_fsbr(checkpoint, calib_ids, ExportOptions(wbits=4, abits=4, method="fsbr"))

Per decoder layer, one block after the other (block i + 1 learns on block i's fake-quant output):

  parameters  log s of the six smoothing pairs in smoothing.py's parametrisation (qk per kv-group
              channel with one factor per RoPE pair (i, i + d/2), norm_qkv and norm_gate_up per
              hidden channel, v_o per kv-group channel, gate_up (the SwiGLU gate divisor
              x1 sigmoid(x1 / s) x2) and up_down per intermediate channel), initialised from the
              closed-form factors (alpha ``smooth_alpha``) of the float calibration maxima, clamped
              to [1e-5, 1e5] as those are; and per output channel of each of the seven linears a
              clip ratio c = 0.45 + 0.57 sigmoid(phi) in (0.45, 1.02), initialised exactly on the
              clipping search's choice (weights.py: a ratio in [0.5, 1]) for the closed-form-smoothed
              weight. A ratio a little above 1 is a grid a little wider than the row's range, which
              may round the row better for the block's output.
  block       the layer as ilsim's fake-quant model (ilsim/fakequant.py) computes it at the export's
              widths: the smoothed weights with 1/sqrt(head_dim) folded into W_q (and, after
              ``rotate``, W_down Hᵀ / n, and W_q / head_dim with the per-head query/key Hadamard)
              quantized per output channel, asymmetric, at their bits with
              the learned clipping; per-token asymmetric activation quantization at ``abits`` on
              the norm outputs, the q/k/gate/up outputs, the attention output, the SwiGLU output
              (and H a, the online Hadamard's output), v symmetric; queries and keys after RoPE at
              ``abits`` per head and token (with the per-head Hadamard: RoPE's output at
              ``rope_out_bits``, then H, then ``abits``); the scores at ``score_bits`` symmetric, the clipped
              softmax's probabilities on the 2^-p_frac_bits grid; o/down outputs and the residual
              stream at ``residual_bits``. Scales stay float (the integer model's dyadic scales and
              gains differ by < 2^-15 relative). Every rounding is a straight-through estimator.
  loss        MSE between the float layer's output on the float input and the fake-quant layer's
              output on the fake-quant input (the previous learned blocks' output, starting from
              the quantized embedding table).
  optimiser   AdamW, weight decay ``fsbr_weight_decay`` (0), lr ``fsbr_lr_smooth`` (5e-3, the
              paper's) for the factors and ``fsbr_lr_clip`` (1e-2) for the clip ratios;
              ``fsbr_epochs`` passes over ``fsbr_calib_windows`` windows of ``calib_context`` tokens
              in batches of ``fsbr_batch``, in order (nothing is random).
  selection   the block loss on all learning windows is measured at the closed-form start and
              after each epoch, and the parameters with the lowest are kept (the start itself, the
              ``smooth`` export's factors and clipping, when learning never went below it). The
              straight-through gradients are noisy: a 1% change of the factors re-rounds many
              weights, and on small models the loss jumps between epochs rather than falling.

Arithmetic in ``fsbr_dtype`` (float64 by default) on ``fsbr_threads`` torch threads (1 by default:
a fixed split of the work, and on a shared 2-core machine two threads were 10-20x slower, not
faster) with torch's deterministic algorithms, so repeated exports on one machine are
byte-identical. Across machines torch's BLAS kernels may sum in another order (~1e-16 relative
in float64, ~1e-7 in float32); a difference that moves a value across a rounding threshold
changes one straight-through gradient and from then on the learned factors, so a graph learned
here is reproducible on another machine only in float64 and only with high probability, not by
construction as the other methods are (not yet checked on a second machine). With ``gptq`` GPTQ
chooses each weight's grid itself: the learned factors are kept, the learned clipping is not.

torch is imported only inside this module's functions: ``pip install 'ilsim[calibrate]'``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ilsim.errors import InputError

#: The seven linear layers of a LLaMA decoder layer, by their weight class (ExportOptions.weight_bits).
LINEARS = ("q", "k", "v", "o", "gate", "up", "down")
CLIP_LO, CLIP_HI = 0.45, 1.02       # clip ratio c = CLIP_LO + (CLIP_HI - CLIP_LO) sigmoid(phi): the search's
#                                     grid [0.5, 1] lies inside, so learning starts exactly on its choice
FACTOR_LOG_RANGE = math.log(1e5)    # |log s| <= this: smoothing.py's clamp to [1e-5, 1e5]
INSTALL_HINT = "pip install 'ilsim[calibrate]'"


def require_torch(method: str = "fsbr"):
    """The torch module, or a one-line InputError naming the extra that installs it."""
    try:
        import torch
    except ImportError:
        raise InputError(f"method {method} needs torch: {INSTALL_HINT}") from None
    return torch


@dataclass
class LayerFactors:
    """Learned FSBR of one decoder layer.

    ``smooth`` maps each learned pair to its factor in smooth_layer's shapes (float64; give it as
    ``smooth_layer(..., factors=smooth)``); ``clip`` maps each linear (LINEARS) to its per-output-
    channel clip ratio in (0.45, 1.02) (the one-entry grid of quantize_weight). ``epoch_losses`` holds
    the block MSE on the learning windows after each epoch, ``loss_start`` the same with the
    closed-form start; the returned parameters are those of the lowest (``best_epoch``, 0 for the
    start itself), whose MSE is ``loss_end``."""

    smooth: dict
    clip: dict
    loss_start: float
    loss_end: float
    epoch_losses: list = field(default_factory=list)
    best_epoch: int = 0


@dataclass(frozen=True)
class BlockSpec:
    """What the fake-quant block needs of the model and the export options."""

    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    abits: int
    inner_bits: int          # q/k before RoPE, gate/up (ExportOptions.inner_width)
    act_bits: int            # the SwiGLU output (into the online Hadamard, or the down projection)
    wbits: dict              # linear -> weight bits
    score_bits: int
    p_bits: int
    p_frac_bits: int
    softmax_clip: float
    residual_bits: int
    pairs: tuple
    online_hadamard: bool
    qk_hadamard: bool = False  # queries and keys rotated per head after RoPE (ExportOptions.uses_qk_hadamard)
    rope_out_bits: int = 16

    @classmethod
    def from_options(cls, cfg, opts, online_hadamard: bool) -> "BlockSpec":
        return cls(heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
                   eps=float(cfg.rms_norm_eps), abits=opts.abits, inner_bits=opts.inner_width(),
                   act_bits=opts.swiglu_out_width(online_hadamard),
                   wbits={name: opts.weight_bits(name) for name in LINEARS}, score_bits=opts.score_bits,
                   p_bits=opts.p_bits, p_frac_bits=opts.p_frac_bits, softmax_clip=float(opts.clip),
                   residual_bits=opts.residual_bits, pairs=tuple(opts.smooth_pairs),
                   online_hadamard=online_hadamard, qk_hadamard=opts.uses_qk_hadamard(cfg.head_dim),
                   rope_out_bits=opts.rope_out_bits)


# ------------------------------------------------------------------ quantizers (torch, straight-through)

def round_ste(x):
    """round half to even (as np.round) forward, identity backward."""
    return x + (x.round() - x).detach()


def fake_quant_asym(x, bits: int):
    """Per-row (last axis) asymmetric quantize-dequantize, as fakequant.fake_quant_rows."""
    import torch

    levels = (1 << bits) - 1
    lo = torch.clamp(x.amin(dim=-1, keepdim=True), max=0.0)
    hi = torch.clamp(x.amax(dim=-1, keepdim=True), min=0.0)
    step = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
    zp = round_ste(-lo / step)
    q = torch.clamp(round_ste(x / step) + zp, 0, levels)
    return (q - zp) * step


def fake_quant_sym(x, bits: int):
    """Per-row (last axis) symmetric quantize-dequantize, as fakequant.fake_quant_rows."""
    import torch

    levels = (1 << (bits - 1)) - 1
    amax = x.abs().amax(dim=-1, keepdim=True)
    step = torch.where(amax > 0, amax / levels, torch.ones_like(amax))
    return round_ste(x / step) * step


def fake_quant_weight(w, clip, bits: int):
    """Per output channel (row) asymmetric quantize-dequantize on the grid of clip ratio ``clip``
    [N] (weights.quantize_rows): lo = min(0, c min w), hi = max(0, c max w), (hi - lo) / (2^b - 1)."""
    import torch

    levels = (1 << bits) - 1
    c = clip[:, None]
    lo = torch.clamp(w.amin(dim=1, keepdim=True) * c, max=0.0)
    hi = torch.clamp(w.amax(dim=1, keepdim=True) * c, min=0.0)
    step = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
    zp = torch.clamp(round_ste(-lo / step), 0, levels)
    q = torch.clamp(round_ste(w / step) + zp, 0, levels)
    return (q - zp) * step


# ------------------------------------------------------------------ the block

def smoothed_weights(weights: dict, factors: dict, spec: BlockSpec, hadamard=None) -> dict:
    """The layer's float weights with the smoothing ``factors`` applied as smooth_layer applies
    them (differentiable in the factors), 1/sqrt(head_dim) folded into W_q, and W_down Hᵀ / n
    when ``hadamard`` (the ±1 matrix H) is given; plus ``gate_div`` (None without gate_up)."""
    group = spec.heads // spec.kv_heads
    w = dict(weights)
    f = factors
    if "qk" in f:
        w["q"] = w["q"] * f["qk"].repeat_interleave(group, dim=0).reshape(-1, 1)
        w["k"] = w["k"] / f["qk"].reshape(-1, 1)
    if "norm_qkv" in f:
        w["attn_norm"] = w["attn_norm"] / f["norm_qkv"]
        for name in ("q", "k", "v"):
            w[name] = w[name] * f["norm_qkv"]
    if "v_o" in f:
        w["v"] = w["v"] / f["v_o"].reshape(-1, 1)
        w["o"] = w["o"] * f["v_o"][:, None, :].expand(spec.kv_heads, group, spec.head_dim).reshape(1, -1)
    if "norm_gate_up" in f:
        w["mlp_norm"] = w["mlp_norm"] / f["norm_gate_up"]
        w["gate"] = w["gate"] * f["norm_gate_up"]
        w["up"] = w["up"] * f["norm_gate_up"]
    w["gate_div"] = None
    if "gate_up" in f:
        w["gate"] = w["gate"] * f["gate_up"][:, None]
        w["up"] = w["up"] / f["gate_up"][:, None]
        w["gate_div"] = 1.0 / f["gate_up"]
    if "up_down" in f:
        w["up"] = w["up"] / f["up_down"][:, None]
        w["down"] = w["down"] * f["up_down"]
    w["q"] = w["q"] / (math.sqrt(spec.head_dim) * (spec.head_dim if spec.qk_hadamard else 1))
    if hadamard is not None:
        w["down"] = w["down"] @ hadamard.T / hadamard.shape[0]
    return w


def block_forward(x, w: dict, spec: BlockSpec, rope: tuple, quant: bool, hadamard=None):
    """One decoder layer on x [B, T, hidden] (positions 0 .. T-1 of each window).

    ``quant`` False: the float layer (FloatLlama's; ``w`` the unsmoothed weights with W_q already
    divided by sqrt(head_dim), no clip on the scores). True: the fake-quant layer (module
    docstring), ``w`` from smoothed_weights with the weights already fake-quantized, ``rope`` the
    export's cos/sin tables [T, head_dim / 2]."""
    import torch

    h, hkv, d = spec.heads, spec.kv_heads, spec.head_dim
    group, half = h // hkv, d // 2
    a, res = spec.abits, spec.residual_bits
    ident = lambda v, *_: v  # noqa: E731
    fq = fake_quant_asym if quant else ident
    fq_sym = fake_quant_sym if quant else ident
    cos, sin = rope
    batch, tokens, _ = x.shape

    def norm(v, gain):
        return fq(v * torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + spec.eps) * gain, a)

    def heads_of(v, n):
        return v.reshape(batch, tokens, n, d).transpose(1, 2)                  # [B, n, T, d]

    qk_h = None
    if quant and spec.qk_hadamard:
        from ilsim.ops.hadamard import hadamard_matrix

        qk_h = torch.as_tensor(hadamard_matrix(d).astype(np.float64), dtype=x.dtype)

    def rotary(v):
        v1, v2 = v[..., :half], v[..., half:]
        rot = torch.cat([v1 * cos - v2 * sin, v2 * cos + v1 * sin], dim=-1)
        if qk_h is not None:        # di_rope at rope_out_bits, then di_hadamard per head
            rot = fq(rot, spec.rope_out_bits) @ qk_h.T
        return fq(rot, a)

    x_norm = norm(x, w["attn_norm"])
    q = rotary(heads_of(fq(x_norm @ w["q"].T, spec.inner_bits), h))
    k = rotary(heads_of(fq(x_norm @ w["k"].T, spec.inner_bits), hkv))
    v = heads_of(fq_sym(x_norm @ w["v"].T, a), hkv)
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    causal = torch.ones(tokens, tokens, dtype=torch.bool).tril()
    scores = torch.where(causal, q @ k.transpose(-1, -2), torch.zeros((), dtype=x.dtype))
    scores = fq_sym(scores, spec.score_bits)
    scores = torch.where(causal, scores, torch.full((), -1e30, dtype=x.dtype))
    scores = scores - scores.amax(dim=-1, keepdim=True)
    if quant:
        scores = torch.clamp(scores, min=-spec.softmax_clip)
    e = torch.where(causal, torch.exp(scores), torch.zeros((), dtype=x.dtype))
    p = e / e.sum(dim=-1, keepdim=True)
    if quant:
        unit = float(1 << spec.p_frac_bits)
        p = torch.clamp(round_ste(p * unit) / unit, max=((1 << spec.p_bits) - 1) / unit)
    attn = fq((p @ v).transpose(1, 2).reshape(batch, tokens, h * d), a)
    x = fq_sym(x + fq(attn @ w["o"].T, res), res)
    x_norm = norm(x, w["mlp_norm"])
    gate = fq(x_norm @ w["gate"].T, spec.inner_bits)
    up = fq(x_norm @ w["up"].T, spec.inner_bits)
    arg = gate if w.get("gate_div") is None else gate * w["gate_div"]
    act = fq(gate * torch.sigmoid(arg) * up, spec.act_bits)
    if quant and hadamard is not None:
        act = fq(act @ hadamard.T, a)
    return fq_sym(x + fq(act @ w["down"].T, res), res)


# ------------------------------------------------------------------ learning

@contextlib.contextmanager
def _deterministic(torch, threads: int):
    """torch's deterministic algorithms on and ``threads`` intra-op threads, for the duration
    (the previous settings restored)."""
    before, before_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        torch.set_num_threads(before_threads)


def _grid_clip(w: np.ndarray, bits: int) -> np.ndarray:
    """Per row, the clip ratio weights.quantize_weight's search picks (the first of the smallest errors)."""
    from ilsim.export.weights import DEFAULT_CLIP_GRID, quantize_rows

    levels = (1 << bits) - 1
    errors = np.stack([quantize_rows(w, clip, levels)[3] for clip in DEFAULT_CLIP_GRID])
    return np.asarray(DEFAULT_CLIP_GRID, dtype=np.float64)[np.argmin(errors, axis=0)]


def _layer_arrays(checkpoint, i: int) -> dict:
    lw = checkpoint.layer(i)
    w = {"q": lw.q_proj, "k": lw.k_proj, "v": lw.v_proj, "o": lw.o_proj, "gate": lw.gate_proj, "up": lw.up_proj,
         "down": lw.down_proj, "attn_norm": lw.input_layernorm, "mlp_norm": lw.post_attention_layernorm}
    return {key: np.array(val, dtype=np.float64) for key, val in w.items()}


def closed_form_start(w: dict, absmax: dict, spec: BlockSpec, alpha: float) -> tuple[dict, dict]:
    """(factors, clip ratios) where learning starts: the closed-form factors smooth_layer applies
    and, per linear, the clipping search's ratios on the weight the export then quantizes."""
    from ilsim.export.rotate import down_weight_for_online_hadamard
    from ilsim.export.smoothing import smooth_layer

    smoothed = {key: val.copy() for key, val in w.items()}
    factors: dict = {}
    smooth_layer(smoothed, absmax, spec.heads, spec.kv_heads, spec.head_dim, alpha, spec.pairs,
                 factors_out=factors)
    smoothed["q"] /= math.sqrt(spec.head_dim) * (spec.head_dim if spec.qk_hadamard else 1)
    if spec.online_hadamard:
        smoothed["down"] = down_weight_for_online_hadamard(smoothed["down"])
    return factors, {name: _grid_clip(smoothed[name], spec.wbits[name]) for name in LINEARS}


class _Parameters:
    """The learned tensors of one layer: log factors (qk: one per RoPE pair) and clip logits."""

    def __init__(self, torch, factors: dict, clips: dict, dtype):
        self.log = {}
        for pair, s in factors.items():
            s = np.asarray(s, dtype=np.float64)
            if pair == "qk":
                s = s[:, :s.shape[1] // 2]
            self.log[pair] = torch.tensor(np.log(s), dtype=dtype, requires_grad=True)
        self.phi = {}
        for name, c in clips.items():
            u = (np.asarray(c, dtype=np.float64) - CLIP_LO) / (CLIP_HI - CLIP_LO)
            self.phi[name] = torch.tensor(np.log(u / (1 - u)), dtype=dtype, requires_grad=True)

    def factors(self, torch) -> dict:
        out = {}
        for pair, log in self.log.items():
            s = torch.exp(torch.clamp(log, -FACTOR_LOG_RANGE, FACTOR_LOG_RANGE))
            out[pair] = torch.cat([s, s], dim=1) if pair == "qk" else s
        return out

    def clips(self, torch) -> dict:
        return {name: CLIP_LO + (CLIP_HI - CLIP_LO) * torch.sigmoid(phi) for name, phi in self.phi.items()}


def quantized_block_weights(weights: dict, factors: dict, clips: dict, spec: BlockSpec, hadamard=None) -> dict:
    """smoothed_weights with every linear fake-quantized at its bits with its clip ratios."""
    w = smoothed_weights(weights, factors, spec, hadamard)
    for name in LINEARS:
        w[name] = fake_quant_weight(w[name], clips[name], spec.wbits[name])
    return w


def block_tables(t, cfg, opts, context: int, spec: BlockSpec) -> tuple:
    """What block_forward needs besides the weights, as tensors made by ``t``: the export's RoPE
    tables (cos, sin at 2^-rope_frac_bits, [context, head_dim / 2]) for the fake-quant block, the
    float angles' (cos, sin) for the float block, and the ±1 Hadamard matrix of the down
    projection's online transform (None without one)."""
    from ilsim.ops.hadamard import hadamard_matrix
    from ilsim.export.rope_tables import rope_tables

    tables = rope_tables(context, cfg.head_dim, cfg.rope_theta, opts.rope_frac_bits)
    unit = float(1 << opts.rope_frac_bits)
    rope_q = (t(tables.cos / unit), t(tables.sin / unit))
    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
    angles = np.outer(np.arange(context, dtype=np.float64), inv_freq)
    rope_f = (t(np.cos(angles)), t(np.sin(angles)))
    hadamard = t(hadamard_matrix(cfg.intermediate_size).astype(np.float64)) if spec.online_hadamard else None
    return rope_q, rope_f, hadamard


def learn_fsbr(checkpoint, calib_ids: np.ndarray, opts, progress: Callable[[int, int], None] | None = None,
               stats: list | None = None) -> list[LayerFactors]:
    """Learn the smoothing factors and weight clipping of every layer of ``checkpoint`` (the model
    the export quantizes: already rotated when ``opts.method`` has ``rotate``, whose online
    Hadamard before down_proj is then part of the block) on windows of ``calib_ids``; one
    LayerFactors per layer. ``stats``: the float calibration maxima (calibrate.py) of this
    checkpoint, computed here when not given. ``progress(done, total)`` after each layer."""
    from ilsim.export.build import parse_method
    from ilsim.float_model import FloatLlama
    from ilsim.export.embedding_table import quantize_embedding_table

    torch = require_torch()
    dtype = {"float32": torch.float32, "float64": torch.float64}[opts.fsbr_dtype]
    cfg = checkpoint.config
    spec = BlockSpec.from_options(cfg, opts, online_hadamard="rotate" in parse_method(opts.method))
    ids = np.asarray(calib_ids, dtype=np.int64)
    context = opts.calib_context
    count = min(ids.size // context, opts.fsbr_calib_windows)
    if count < 1:
        raise InputError(f"fsbr: calibration text has {ids.size} tokens, fewer than one window of {context}")
    windows = ids[:count * context].reshape(count, context)
    if stats is None:
        from ilsim.export.calibrate import calibrate

        stats = calibrate(FloatLlama(checkpoint, dtype=np.float64), ids, context, opts.calib_windows)

    used, windows = np.unique(windows, return_inverse=True)     # the table is quantized per row
    windows = windows.reshape(count, context)
    table = quantize_embedding_table(np.asarray(checkpoint.embed_tokens)[used], bits=opts.embed_bits)
    table_scale = table.m.astype(np.float64) / np.exp2(table.k.astype(np.float64))
    with _deterministic(torch, opts.fsbr_threads):
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        x_float = t(np.asarray(checkpoint.embed_tokens, dtype=np.float64)[used][windows])
        x_quant = t(table.q[windows].astype(np.float64) * table_scale[windows][..., None])
        rope_q, rope_f, hadamard = block_tables(t, cfg, opts, context, spec)
        batches = [slice(b, min(b + opts.fsbr_batch, count)) for b in range(0, count, opts.fsbr_batch)]
        out = []
        for i in range(cfg.num_hidden_layers):
            w_np = _layer_arrays(checkpoint, i)
            start_f, start_c = closed_form_start(w_np, stats[i].absmax, spec, opts.smooth_alpha)
            weights = {key: t(val) for key, val in w_np.items()}
            float_w = dict(weights, q=weights["q"] / math.sqrt(cfg.head_dim))
            with torch.no_grad():
                y_float = torch.cat([block_forward(x_float[b], float_w, spec, rope_f, quant=False) for b in batches])
            layer, x_quant = _learn_layer(torch, weights, start_f, start_c, x_quant, y_float, spec, rope_q,
                                          hadamard, batches, opts, dtype)
            out.append(layer)
            x_float = y_float
            if progress is not None:
                progress(i + 1, cfg.num_hidden_layers)
    return out


def _learn_layer(torch, weights, start_f, start_c, x_quant, y_float, spec, rope, hadamard, batches, opts, dtype):
    """Train one block; (LayerFactors, the block's fake-quant output on ``x_quant`` with them)."""
    params = _Parameters(torch, start_f, start_c, dtype)

    def evaluate(factors: dict, clips: dict):
        """(block MSE on every window, the fake-quant output, the parameters as float64 arrays)."""
        with torch.no_grad():
            w = quantized_block_weights(weights, factors, clips, spec, hadamard)
            y = torch.cat([block_forward(x_quant[b], w, spec, rope, quant=True, hadamard=hadamard) for b in batches])
            arrays = ({k: np.asarray(v.detach().numpy(), dtype=np.float64) for k, v in factors.items()},
                      {k: np.asarray(v.detach().numpy(), dtype=np.float64) for k, v in clips.items()})
            return float(torch.mean((y - y_float) ** 2)), y, arrays

    loss_start, best_out, _ = evaluate({k: torch.as_tensor(v, dtype=dtype) for k, v in start_f.items()},
                                       {k: torch.as_tensor(v, dtype=dtype) for k, v in start_c.items()})
    best = (start_f, start_c)       # exactly the closed-form start, not its round trip through dtype
    best_loss, best_epoch = loss_start, 0
    groups = [{"params": list(params.log.values()), "lr": opts.fsbr_lr_smooth},
              {"params": list(params.phi.values()), "lr": opts.fsbr_lr_clip}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=opts.fsbr_weight_decay)
    epoch_losses = []
    for epoch in range(1, opts.fsbr_epochs + 1):
        for b in batches:
            w = quantized_block_weights(weights, params.factors(torch), params.clips(torch), spec, hadamard)
            loss = torch.mean((block_forward(x_quant[b], w, spec, rope, quant=True, hadamard=hadamard)
                               - y_float[b]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loss, out, arrays = evaluate(params.factors(torch), params.clips(torch))
        epoch_losses.append(loss)
        if loss < best_loss:
            best_loss, best_epoch, best_out, best = loss, epoch, out, arrays
    layer = LayerFactors(smooth=dict(best[0]), clip=dict(best[1]), loss_start=loss_start, loss_end=best_loss,
                         epoch_losses=epoch_losses, best_epoch=best_epoch)
    return layer, best_out
