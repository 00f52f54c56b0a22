"""Export: float checkpoint -> calibrated, smoothed / rotated, quantized integer graph.

    graph = export_model(checkpoint, calib_ids, ExportOptions(wbits=4, abits=8, method="rotate+gptq"))

Steps (offline, floats allowed): optionally rotate the model (QuaRot, export/rotate.py: folded
into the weights, plus an online integer Hadamard before each down projection), calibrate the
float model, apply the closed-form FSBR smoothing factors (folded into weights and norm gains),
fold 1/sqrt(head_dim) into W_q, quantize every linear per output channel (asymmetric, one shared
dyadic shift; round-to-nearest with a clipping search, or GPTQ against the calibration Hessian
of the layer's actual input), quantize the norm gains, the embedding table and the gate divisors
to dyadic integers, make the RoPE tables, derive every accumulator width from its exact worst
case, and emit the nodes.

Methods (``ExportOptions.method``, '+'-joined, applied in this order whatever the spelling):
    rotate   residual-stream and value/output rotations folded offline, online di_hadamard on the
             down projection's input and on each head's queries and keys after RoPE
    smooth   closed-form FSBR smoothing of the pairs in ``smooth_pairs`` (alpha ``smooth_alpha``)
    fsbr     learned FSBR (export/fsbr.py, needs torch: pip install 'ilsim[calibrate]'): the smoothing
             factors of those pairs and the per-channel weight clipping learned block by block from
             the closed-form start (so smooth+fsbr is fsbr); with gptq, GPTQ chooses its own grid
             and only the learned factors are kept
    kd       knowledge-distillation quantization-aware training (LLM-QAT; export/kd.py, needs
             torch): the linear weights fine-tuned through the export's own quantizers with the
             float model as teacher, then rounded to nearest on the min/max grid they trained on
    wanda    prune (export/prune.py) by |W| x input norm, ``sparsity`` / ``sparsity_pattern``, then
             quantize with the mask held (round-to-nearest, or GPTQ with gptq)
    gptq     GPTQ weight rounding (export/gptq.py) instead of round-to-nearest
    sparsegpt  SparseGPT: prune and GPTQ-quantize in one pass (``sparsity`` / ``sparsity_pattern``)
    rtn      none of these: round-to-nearest with the clipping search
kd combines with rotate and smooth only; wanda and sparsegpt exclude each other; sparsegpt
includes GPTQ (so gptq+sparsegpt is refused as redundant).
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, dyadic_from_scale
from ilsim.errors import InputError
from ilsim.export.calibrate import calibrate
from ilsim.export.embedding_table import quantize_embedding_table
from ilsim.export.gptq import gptq_quantize_weight, sparsegpt_quantize_weight
from ilsim.export.prune import wanda_mask
from ilsim.export.rope_tables import rope_tables
from ilsim.export.rotate import down_weight_for_online_hadamard, rotate_checkpoint
from ilsim.export.smoothing import FSBR_PAIRS, smooth_layer
from ilsim.export.weights import quantize_weight
from ilsim.graph.format import Graph, ModelInfo, Node, declare

MBITS = DEFAULT_MBITS
#: The export methods, in the order they apply (module docstring).
METHODS = ("rotate", "smooth", "fsbr", "kd", "wanda", "gptq", "sparsegpt")
#: Methods that need the calibration Hessians of the linear layers' inputs.
HESSIAN_METHODS = ("wanda", "gptq", "sparsegpt")
#: Methods that prune the seven linear layers of each decoder layer.
PRUNING_METHODS = ("wanda", "sparsegpt")
DEFAULT_METHOD = "rotate+gptq"


def parse_method(text: str) -> tuple[str, ...]:
    """'rotate+gptq' -> ('rotate', 'gptq') in METHODS order; 'rtn' -> (); InputError otherwise."""
    parts = [part.strip() for part in str(text).split("+") if part.strip()]
    unknown = [part for part in parts if part not in METHODS + ("rtn",)]
    if unknown or not parts:
        raise InputError(f"export: unknown method {text!r}; methods: {', '.join(METHODS)}, rtn, joined with '+' "
                         "(e.g. rotate+smooth+gptq)")
    if "rtn" in parts and len(parts) > 1:
        raise InputError(f"export: method {text!r}: rtn means none of the others and cannot be combined")
    chosen = tuple(m for m in METHODS if m in parts)
    if "wanda" in chosen and "sparsegpt" in chosen:
        raise InputError(f"export: method {text!r}: wanda and sparsegpt are two ways to prune; choose one")
    if "gptq" in chosen and "sparsegpt" in chosen:
        raise InputError(f"export: method {text!r}: sparsegpt already quantizes with GPTQ; drop gptq")
    if "kd" in chosen and set(chosen) - {"rotate", "smooth", "kd"}:
        raise InputError(f"export: method {text!r}: kd combines with rotate and smooth only (its weights are "
                         "rounded on the grid they were trained on)")
    return chosen


@dataclass
class ExportOptions:
    """Bit widths and export choices. ``overrides`` maps a tensor class to its weight bits:
    q, k, v, o, gate, up, down, lm_head (e.g. {"down": 8})."""

    wbits: int = 8
    abits: int = 8
    overrides: dict = field(default_factory=dict)
    lm_head_bits: int = 8
    embed_bits: int = 8
    residual_bits: int = 16
    score_bits: int = 16
    # Attention probabilities as uint16 at 2^-15 (F = n - 1: never saturates). At 8 bits (2^-8,
    # the paper's width) every probability below 2^-9 is zero: on SmolLM2-135M that alone cost
    # +3-4 % perplexity at W8A8 (docs/export.md, "Attention probabilities").
    p_bits: int = 16
    p_frac_bits: int = 15
    rope_frac_bits: int = 14
    clip: int = 15
    exp_order: int = 1
    sig_frac_bits: int = 15
    sig_shift: int | None = None       # default: the most di_swiglu allows (swiglu_shift)
    # abits is the width of every matmul input: the linear layers' and both attention matmuls'
    # (q, k after RoPE; v). Values that feed no matmul -- q and k before RoPE, gate and up into
    # SwiGLU -- are at max(abits, inner_bits), as the paper keeps its non-linear operators at 8
    # bits; the SwiGLU output into an online Hadamard at max(abits, hadamard_in_bits); the head's
    # input (the final norm's output) at max(abits, head_abits), as the quantization literature
    # keeps the head in high precision. The widths themselves: inner_width, swiglu_out_width, head_width.
    inner_bits: int = 8
    head_abits: int = 8
    hadamard_in_bits: int = 16          # the SwiGLU output into the online Hadamard (method rotate)
    # Method rotate also rotates each head's queries and keys after RoPE by the Hadamard matrix of
    # size head_dim (QuaRot's; the attention op's qk_hadamard), di_rope's output at rope_out_bits
    # before it. On SmolLM2-135M at W4A4 (fake-quant, 1,024 tokens) it took the ratio 2.12 -> 1.83.
    qk_hadamard: bool = True
    rope_out_bits: int = 16
    rms_frac_bits: int = 8
    norm_out_frac_bits: int = 8
    smooth_alpha: float = 0.5
    smooth_pairs: tuple = FSBR_PAIRS
    calib_context: int = 256
    calib_windows: int = 16
    max_positions: int | None = None
    method: str = DEFAULT_METHOD
    rotate_seed: int = 0
    gptq_percdamp: float = 0.01
    gptq_act_order: bool = True
    gptq_calib_windows: int = 48        # GPTQ's Hessians want more tokens than the maxima (K up to 1536)
    fsbr_epochs: int = 2                # learned FSBR (export/fsbr.py): passes over the learning windows
    fsbr_lr_smooth: float = 5e-3        # AdamW learning rate of the log smoothing factors (the paper's)
    fsbr_lr_clip: float = 1e-2          # AdamW learning rate of the clip-ratio logits (the paper's)
    fsbr_weight_decay: float = 0.0
    fsbr_calib_windows: int = 16        # windows of calib_context tokens the blocks learn on
    fsbr_batch: int = 2                 # windows per AdamW step
    fsbr_dtype: str = "float64"         # torch arithmetic: float64 (reproducible) or float32 (faster)
    fsbr_threads: int = 1               # torch threads while learning (the result may depend on it)
    sparsity: float = 0.5               # wanda / sparsegpt: the fraction of each linear's weights pruned
    sparsity_pattern: str = "unstructured"   # or "N:M": N kept in every M (2:4); sparsity is then 1 - N/M
    kd_steps: int = 100                 # kd (export/kd.py): AdamW steps
    kd_lr: float = 1e-4                 # AdamW learning rate of the weights (LLM-QAT: 2e-5 over thousands of
    #                                     steps; shakespeare-tiny W4A4, 50 steps: fake-quant ratio 1.043 -> 1.020)
    kd_windows: int = 8                 # calibration windows of calib_context tokens the student learns on
    kd_batch: int = 1                   # windows per step
    kd_dtype: str = "float32"           # torch arithmetic: float32 (fast) or float64
    kd_threads: int = 1                 # torch threads while training (the result may depend on it)

    def weight_bits(self, cls: str) -> int:
        if cls == "lm_head":
            return self.overrides.get("lm_head", self.lm_head_bits)
        return self.overrides.get(cls, self.wbits)

    def inner_width(self) -> int:
        """q and k before RoPE, gate and up (the SwiGLU inputs)."""
        return max(self.abits, self.inner_bits)

    def swiglu_out_width(self, online_hadamard: bool) -> int:
        """The SwiGLU output: into the online Hadamard, or (without one) the down projection's input."""
        return max(self.abits, self.hadamard_in_bits) if online_hadamard else self.abits

    def uses_qk_hadamard(self, head_dim: int) -> bool:
        """Whether the export rotates queries and keys per head: method rotate, qk_hadamard, and
        a head size with a Hadamard matrix (ilsim.ops.hadamard)."""
        from ilsim.ops.hadamard import hadamard_factors

        if not (self.qk_hadamard and "rotate" in parse_method(self.method)):
            return False
        try:
            hadamard_factors(head_dim)
        except InputError:
            return False
        return True

    def head_width(self) -> int:
        """The head's input (the final norm's output)."""
        return max(self.abits, self.head_abits)

    def validate(self) -> None:
        for name in ("wbits", "abits", "lm_head_bits", "embed_bits", "inner_bits", "head_abits"):
            if not 2 <= getattr(self, name) <= 8:
                raise InputError(f"export: {name} must be in [2, 8], got {getattr(self, name)}")
        for cls, bits in self.overrides.items():
            if cls not in ("q", "k", "v", "o", "gate", "up", "down", "lm_head"):
                raise InputError(f"export: unknown weight class {cls!r} in overrides")
            if not 2 <= bits <= 8:
                raise InputError(f"export: override {cls}={bits} must be in [2, 8]")
        if not 2 <= self.hadamard_in_bits <= 16:
            raise InputError(f"export: hadamard_in_bits must be in [2, 16], got {self.hadamard_in_bits}")
        if not 2 <= self.rope_out_bits <= 16:
            raise InputError(f"export: rope_out_bits must be in [2, 16], got {self.rope_out_bits}")
        methods = parse_method(self.method)
        if self.fsbr_epochs < 0 or min(self.fsbr_calib_windows, self.fsbr_batch, self.fsbr_threads) < 1:
            raise InputError(f"export: fsbr_epochs must be >= 0 and fsbr_calib_windows, fsbr_batch, fsbr_threads "
                             f">= 1, got {self.fsbr_epochs}, {self.fsbr_calib_windows}, {self.fsbr_batch}, "
                             f"{self.fsbr_threads}")
        if not (self.fsbr_lr_smooth > 0 and self.fsbr_lr_clip > 0 and self.fsbr_weight_decay >= 0):
            raise InputError("export: fsbr learning rates must be > 0 and fsbr_weight_decay >= 0")
        if self.fsbr_dtype not in ("float32", "float64"):
            raise InputError(f"export: fsbr_dtype must be float32 or float64, got {self.fsbr_dtype!r}")
        if self.kd_dtype not in ("float32", "float64"):
            raise InputError(f"export: kd_dtype must be float32 or float64, got {self.kd_dtype!r}")
        if min(self.kd_steps + 1, self.kd_windows, self.kd_batch, self.kd_threads) < 1 or not self.kd_lr > 0:
            raise InputError(f"export: kd_steps must be >= 0, kd_windows, kd_batch, kd_threads >= 1 and kd_lr > 0, "
                             f"got {self.kd_steps}, {self.kd_windows}, {self.kd_batch}, {self.kd_threads}, {self.kd_lr}")
        self.sparsity_spec()
        for method in ("fsbr", "kd"):
            if method in methods:
                from ilsim.export.fsbr import require_torch

                require_torch(method)

    def sparsity_spec(self):
        """The checked prune.Sparsity of ``sparsity`` and ``sparsity_pattern``."""
        from ilsim.export.prune import parse_sparsity

        pattern = str(self.sparsity_pattern)
        return parse_sparsity(None if ":" in pattern else self.sparsity, pattern)


class _Progress:
    """A tqdm progress bar on stderr, called as ``bar(done, total)`` (silent when disabled)."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled, self._bar = label, total, enabled, None

    def __call__(self, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        total = total or self.total
        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.label, file=sys.stderr, leave=False)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self._bar.close()


def signed_bits_for(magnitude: int) -> int:
    """Bits of a signed integer that holds every value in [-magnitude, magnitude]."""
    return max(2, int(magnitude).bit_length() + 1)


def swiglu_shift(in_bits: int, out_bits: int, opts: "ExportOptions") -> int:
    """The largest sig_shift P that di_swiglu allows: shifted operands (in_bits + 1 + P) within 16
    bits, and the product w (2 (in_bits + 1 + P) + sig_frac_bits + 1 bits) requantizable to
    out_bits (w_bits + out_bits <= 62)."""
    fit = (61 - opts.sig_frac_bits - out_bits) // 2 - in_bits - 1
    return max(0, min(15 - in_bits, fit))


def quantize_gain(gain: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """A float gain vector as signed (MBITS + 1)-bit integers with one shared shift k:
    gamma_j = round(g_j * 2^k), k the largest in [0, 55] with every |gamma_j| < 2^MBITS."""
    g = np.asarray(gain, dtype=np.float64)
    if not np.all(np.isfinite(g)):
        raise InputError(f"export: norm gain {name} holds NaN or Inf")
    top = Fraction(float(np.abs(g).max())) if g.size else Fraction(0)
    k = 55
    while k > 0 and math.floor(top * (1 << k) + Fraction(1, 2)) >= 1 << MBITS:
        k -= 1
    q = np.array([math.floor(Fraction(float(v)) * (1 << k) + Fraction(1, 2)) for v in g], dtype=np.int64)
    if np.abs(q).max(initial=0) >= 1 << MBITS:
        raise InputError(f"export: norm gain {name} has |g| = {float(top)} >= 2^{MBITS}")
    return q.astype(np.int32), k


@dataclass
class PruningTally:
    """What the pruned linears hold: weights, pruned ones (the masks), stored zeros (codes equal
    to the zero point: the pruned ones and any that rounded to 0), and their sparse-storage bits."""

    weights: int = 0
    pruned: int = 0
    zeros: int = 0
    storage_bits: float = 0.0
    dense_bits: int = 0
    pattern: str = ""

    def add(self, name: str, qw, mask: np.ndarray, sparsity) -> None:
        from ilsim.export.prune import effective_bits

        zero = qw.q.astype(np.int64) == qw.zp[:, None]
        if not np.all(zero[mask]):
            raise AssertionError(f"export: {name}: a pruned weight is not stored as its zero point")
        pruned = int(mask.sum())
        self.weights += mask.size
        self.pruned += pruned
        self.zeros += int(zero.sum())
        self.storage_bits += effective_bits(qw.bits, pruned, mask.size, sparsity) * mask.size
        self.dense_bits += qw.bits * mask.size
        self.pattern = sparsity.pattern

    def report(self) -> dict:
        """The graph's record (``graph.quant["report"]["pruning"]``)."""
        return {"pattern": self.pattern, "weights": self.weights, "pruned": self.pruned,
                "sparsity": self.pruned / self.weights, "zero_weights": self.zeros,
                "effective_bits": self.storage_bits / self.weights, "dense_bits": self.dense_bits / self.weights}


class _GraphBuilder:
    """Collects constants (with declarations) and nodes."""

    def __init__(self):
        self.constants, self.decls, self.nodes = {}, {}, []
        self.pruning = PruningTally()

    def const(self, name: str, array: np.ndarray, bits: int, signed: bool) -> str:
        self.constants[name] = np.ascontiguousarray(array)
        self.decls[name] = declare(self.constants[name], bits, signed)
        return name

    def node(self, name, op, inputs, outputs, params=None, attrs=None) -> str:
        self.nodes.append(Node(name=name, op=op, inputs=inputs, params=params or {}, attrs=attrs or {},
                               outputs=[outputs]))
        return outputs

    def linear(self, name: str, a: str, w: np.ndarray, wbits: int, abits: int, out_bits: int,
               out_symmetric: bool = False, wide: bool = False, hessian: np.ndarray | None = None,
               opts: "ExportOptions | None" = None, clip: np.ndarray | None = None, prune: bool = False) -> str:
        """A di_matmul node. The weight is pruned when ``prune`` and the method prunes (wanda's
        mask, or sparsegpt's while it quantizes), then rounded by GPTQ against ``hessian`` when
        the method has gptq, else to nearest on the grid of the per-row clip ratios ``clip``
        (learned FSBR, kd: the one-entry grid, a ratio per row, which quantize_rows broadcasts) or
        the clipping search's. A pruned weight is stored as its row's zero point (exactly 0)."""
        methods = parse_method(opts.method) if opts is not None else ()
        prune = prune and any(m in methods for m in PRUNING_METHODS)
        mask = None
        if prune and hessian is None:
            raise InputError(f"export: {name}: pruning needs the layer's calibration Hessian")
        if prune and "wanda" in methods:
            mask = wanda_mask(w, hessian, opts.sparsity_spec(), name)
        if prune and "sparsegpt" in methods:
            qw, mask = sparsegpt_quantize_weight(w, hessian, wbits, opts.sparsity_spec(),
                                                 percdamp=opts.gptq_percdamp, name=name)
        elif hessian is not None and "gptq" in methods:
            qw = gptq_quantize_weight(w, hessian, wbits, percdamp=opts.gptq_percdamp,
                                      act_order=opts.gptq_act_order, mask=mask, name=name)
        else:
            grid = {} if clip is None else {"clip_grid": (np.asarray(clip, dtype=np.float64),)}
            qw = quantize_weight(w if mask is None else np.where(mask, 0.0, w), wbits, name=name, **grid)
        if prune:
            self.pruning.add(name, qw, mask, opts.sparsity_spec())
        b = self.const(f"{name}.b", qw.q, wbits, False)
        b_zp = self.const(f"{name}.b_zp", qw.zp.astype(np.uint8), wbits, False)
        b_m = self.const(f"{name}.b_m", qw.m.astype(np.uint16), MBITS, False)
        max_b = int(np.abs(qw.q.astype(np.int64) - qw.zp[:, None]).max())
        acc = w.shape[1] * ((1 << abits) - 1) * max(max_b, 1)
        attrs = {"b_shift": qw.shift, "a_bits": abits, "b_bits": wbits, "acc_bits": signed_bits_for(acc)}
        if wide:
            attrs["wide"] = True
        else:
            attrs.update(out_bits=out_bits, out_symmetric=out_symmetric)
        return self.node(name, "di_matmul", {"a": a}, f"{name}.out", {"b": b, "b_zp": b_zp, "b_m": b_m}, attrs)

    def rmsnorm(self, name: str, x: str, gain: np.ndarray, eps_d, opts: ExportOptions, out_bits: int) -> str:
        gamma, gamma_k = quantize_gain(gain, name)
        g = self.const(f"{name}.gamma", gamma, MBITS + 1, True)
        d = gain.shape[0]
        y_bits = math.isqrt(d).bit_length() + 1 + MBITS + 1 + opts.norm_out_frac_bits + 1
        attrs = {"gamma_k": gamma_k, "in_bits": opts.residual_bits, "eps_m": eps_d.m, "eps_k": eps_d.k,
                 "rms_frac_bits": opts.rms_frac_bits, "out_frac_bits": opts.norm_out_frac_bits,
                 "out_bits": out_bits, "y_bits": min(y_bits, 62 - out_bits)}
        return self.node(name, "di_rmsnorm", {"x": x}, f"{name}.out", {"gamma": g}, attrs)


def _layer_hessians(stats, input_div: dict, online_hadamard: bool) -> dict:
    """The calibration Hessians of one layer's linear inputs after smoothing (inputs divided by
    D per channel: D⁻¹ H D⁻¹) and, for the down projection with an online Hadamard (inputs
    t = a Hᵀ), H_had H Hᵀ_had. Empty when the calibration kept none (GPTQ not asked for)."""
    from ilsim.ops.hadamard import hadamard_transform_float

    out = {}
    for stat, acc in stats.hessians.items():
        inv = 1.0 / input_div[stat]
        hess = acc.hessian * inv[:, None] * inv[None, :]
        if stat == "down_in" and online_hadamard:
            hess = hadamard_transform_float(hadamard_transform_float(hess).T).T
        out[stat] = hess
    return out


def export_model(checkpoint, calib_ids: np.ndarray, opts: ExportOptions | None = None,
                 tokenizer_json: str | None = None, progress: bool = False, name: str = "") -> Graph:
    """Build the integer graph of ``checkpoint`` at the widths in ``opts``."""
    from ilsim.float_model import FloatLlama

    opts = opts or ExportOptions()
    opts.validate()
    methods = parse_method(opts.method)
    if "rotate" in methods:
        checkpoint = rotate_checkpoint(checkpoint, seed=opts.rotate_seed)
    pairs = opts.smooth_pairs if "smooth" in methods or "fsbr" in methods else ()
    cfg = checkpoint.config
    # float64: BLAS kernels differ between CPUs (AVX2 / AVX-512) in their summation order; in
    # float32 that moved calibration maxima by ~1e-7 and flipped weight roundings, so the same
    # checkpoint exported to different graphs on different machines. In float64 the difference is
    # ~1e-16 relative, far below any rounding threshold the export has in practice.
    model = FloatLlama(checkpoint, dtype=np.float64)
    hessians = any(m in methods for m in HESSIAN_METHODS)
    windows = max(opts.calib_windows, opts.gptq_calib_windows) if hessians else opts.calib_windows
    stats = calibrate(model, calib_ids, opts.calib_context, windows,
                      progress=_Progress("calibrate", 0, progress), hessians=hessians)
    del model
    learned = None
    if "fsbr" in methods:
        from ilsim.export.fsbr import learn_fsbr

        learned = learn_fsbr(checkpoint, calib_ids, opts, progress=_Progress("fsbr", cfg.num_hidden_layers, progress),
                             stats=stats)
    kd_report = None
    if "kd" in methods:
        from ilsim.export.kd import learn_kd

        checkpoint, learned, kd_report = learn_kd(checkpoint, calib_ids, opts, stats=stats,
                                                  progress=_Progress("kd", opts.kd_steps, progress))
    eps_d = dyadic_from_scale(cfg.rms_norm_eps, 32)
    h, hkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    max_positions = opts.max_positions or cfg.max_position_embeddings
    a, res = opts.abits, opts.residual_bits
    inner, head_a = opts.inner_width(), opts.head_width()
    act_bits = opts.swiglu_out_width(online_hadamard="rotate" in methods)
    qk_hadamard = opts.uses_qk_hadamard(d)
    gb = _GraphBuilder()

    table = quantize_embedding_table(checkpoint.embed_tokens, bits=opts.embed_bits)
    emb = gb.node("embed", "embedding_lookup", {"ids": "tokens"}, "h.embed",
                  {"table": gb.const("embed.table", table.q, opts.embed_bits, True),
                   "table_m": gb.const("embed.table_m", table.m.astype(np.uint16), MBITS, False),
                   "table_k": gb.const("embed.table_k", table.k.astype(np.uint8), 6, False)},
                  {"bits": opts.embed_bits})
    rope = rope_tables(max_positions, d, cfg.rope_theta, opts.rope_frac_bits)
    cos = gb.const("rope.cos", rope.cos.astype(np.int32), opts.rope_frac_bits + 2, True)
    sin = gb.const("rope.sin", rope.sin.astype(np.int32), opts.rope_frac_bits + 2, True)

    score_acc = signed_bits_for(d * ((1 << a) - 1) ** 2)
    av_acc = signed_bits_for(max_positions * ((1 << opts.p_bits) - 1) * ((1 << MBITS) - 1)
                             * ((1 << (a - 1)) - 1))
    stream = emb
    bar = _Progress("export", cfg.num_hidden_layers, progress)
    for i in range(cfg.num_hidden_layers):
        lw = checkpoint.layer(i)
        w = {"q": lw.q_proj, "k": lw.k_proj, "v": lw.v_proj, "o": lw.o_proj, "gate": lw.gate_proj,
             "up": lw.up_proj, "down": lw.down_proj, "attn_norm": lw.input_layernorm,
             "mlp_norm": lw.post_attention_layernorm}
        w = {key: np.array(val, dtype=np.float64) for key, val in w.items()}
        input_div = {}
        gate_div = smooth_layer(w, stats[i].absmax, h, hkv, d, opts.smooth_alpha, pairs, input_div,
                                factors=learned[i].smooth if learned else None)
        clip = learned[i].clip if learned else {}
        w["q"] /= math.sqrt(d) * (d if qk_hadamard else 1)     # (H q)·(H k) = d (q·k)
        if "rotate" in methods:
            w["down"] = down_weight_for_online_hadamard(w["down"])
        hess = _layer_hessians(stats[i], input_div, online_hadamard="rotate" in methods)
        lin = functools.partial(gb.linear, opts=opts, prune=True)
        p = f"layers.{i}"
        x = gb.rmsnorm(f"{p}.attn_norm", stream, w["attn_norm"], eps_d, opts, a)
        q = lin(f"{p}.q_proj", x, w["q"], opts.weight_bits("q"), a, inner, hessian=hess.get("attn_in"),
                clip=clip.get("q"))
        k = lin(f"{p}.k_proj", x, w["k"], opts.weight_bits("k"), a, inner, hessian=hess.get("attn_in"),
                clip=clip.get("k"))
        v = lin(f"{p}.v_proj", x, w["v"], opts.weight_bits("v"), a, a, out_symmetric=True,
                hessian=hess.get("attn_in"), clip=clip.get("v"))
        attn = gb.node(f"{p}.attention", "attention", {"q": q, "k": k, "v": v}, f"{p}.attention.out",
                       {"cos": cos, "sin": sin},
                       {"num_heads": h, "num_kv_heads": hkv, "head_dim": d, "in_bits": inner, "v_bits": a,
                        "qk_bits": a, "rope_frac_bits": opts.rope_frac_bits, "score_acc_bits": score_acc,
                        "score_bits": opts.score_bits, "clip_num": opts.clip, "clip_den": 1,
                        "p_bits": opts.p_bits, "p_frac_bits": opts.p_frac_bits, "av_acc_bits": av_acc,
                        "out_bits": a, "exp_order": opts.exp_order,
                        **({"qk_hadamard": 1, "rope_out_bits": opts.rope_out_bits} if qk_hadamard else {})})
        o = lin(f"{p}.o_proj", attn, w["o"], opts.weight_bits("o"), a, res, hessian=hess.get("o_in"),
                clip=clip.get("o"))
        stream = gb.node(f"{p}.attn_residual", "residual_add", {"a": stream, "b": o}, f"h.{i}.attn",
                         attrs={"a_bits": res, "b_bits": res, "out_bits": res})
        x = gb.rmsnorm(f"{p}.mlp_norm", stream, w["mlp_norm"], eps_d, opts, a)
        gate = lin(f"{p}.gate_proj", x, w["gate"], opts.weight_bits("gate"), a, inner, hessian=hess.get("mlp_in"),
                   clip=clip.get("gate"))
        up = lin(f"{p}.up_proj", x, w["up"], opts.weight_bits("up"), a, inner, hessian=hess.get("mlp_in"),
                 clip=clip.get("up"))
        div = [dyadic_from_scale(float(s)) for s in gate_div]
        act = gb.node(f"{p}.swiglu", "di_swiglu", {"gate": gate, "up": up}, f"{p}.swiglu.out",
                      {"gate_div_m": gb.const(f"{p}.swiglu.gate_div_m",
                                              np.array([v.m for v in div], dtype=np.uint16), MBITS, False),
                       "gate_div_k": gb.const(f"{p}.swiglu.gate_div_k",
                                              np.array([v.k for v in div], dtype=np.uint8), 6, False)},
                      {"in_bits": inner, "sig_frac_bits": opts.sig_frac_bits, "out_bits": act_bits,
                       "order": opts.exp_order,
                       "sig_shift": opts.sig_shift if opts.sig_shift is not None else swiglu_shift(inner, act_bits, opts)})
        if "rotate" in methods:
            act = gb.node(f"{p}.down_hadamard", "di_hadamard", {"x": act}, f"{p}.down_hadamard.out",
                          attrs={"size": w["down"].shape[1], "in_bits": act_bits, "out_bits": a})
        down = lin(f"{p}.down_proj", act, w["down"], opts.weight_bits("down"), a, res, hessian=hess.get("down_in"),
                   clip=clip.get("down"))
        stream = gb.node(f"{p}.mlp_residual", "residual_add", {"a": stream, "b": down}, f"h.{i}.mlp",
                         attrs={"a_bits": res, "b_bits": res, "out_bits": res})
        bar(i + 1)
    x = gb.rmsnorm("final_norm", stream, checkpoint.final_norm, eps_d, opts, head_a)
    gb.linear("lm_head", x, checkpoint.lm_head.astype(np.float64), opts.weight_bits("lm_head"), head_a, 0, wide=True)
    gb.nodes[-1].outputs = ["logits"]

    info = ModelInfo(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
                     num_heads=h, num_kv_heads=hkv, head_dim=d, max_positions=max_positions,
                     bos_token_id=cfg.bos_token_id, eos_token_id=(cfg.eos_token_ids[0] if cfg.eos_token_ids else None),
                     name=name)
    quant = {key: (list(val) if isinstance(val, tuple) else val) for key, val in asdict(opts).items()}
    report = {}
    if gb.pruning.weights:
        report["pruning"] = gb.pruning.report()
    if kd_report is not None:
        report["kd"] = kd_report
    if report:
        quant["report"] = report
    return Graph(model=info, nodes=gb.nodes, constants=gb.constants, decls=gb.decls, quant=quant,
                 tokenizer_json=tokenizer_json, source=name or "<export>")
