"""Knowledge-distillation quantization-aware training (LLM-QAT, arXiv 2305.17888), offline, with torch.

    checkpoint, factors, report = learn_kd(checkpoint, calib_ids, ExportOptions(method="kd", ...))

The student is the whole network as ilsim's fake-quant model computes it at the export's widths:
the embedding table as the export quantizes it, every decoder layer as learned FSBR's block
(export/fsbr.py: per-token activation quantizers at the graph's widths, queries and keys after RoPE
(and their per-head Hadamard with ``rotate``), the scores, the 16-bit probabilities, the online
Hadamard, the residual stream), the final norm's output at the head's width and the head's weight
as the export rounds it. Trained: the seven linear weights of every layer (float, before their
quantizer); fixed: the embedding, the norm gains, the head and, with ``smooth``, the closed-form
smoothing factors (computed once, on the float model's calibration maxima, and handed to the export
with the trained weights). Each trained weight is quantized per output channel, asymmetric, on the
min/max grid (clip ratio 1), and the export rounds the trained weights to nearest on exactly that
grid (clip ratio 1 per row), so the quantizer the student trains through is the one the graph
stores (its scales become dyadic, < 2^-15 relative). Every rounding is a straight-through estimator.

  teacher    the float model (the same checkpoint before training), its logits on the same windows
  loss       KL(teacher || student) over the vocabulary, mean over tokens (LLM-QAT's logit
             distillation; the data are the calibration text's windows, not generated text)
  optimiser  AdamW (no weight decay), lr ``kd_lr``, ``kd_steps`` steps of ``kd_batch`` windows,
             cycling in order over ``kd_windows`` windows of ``calib_context`` tokens
  selection  the loss over all training windows is measured before and after training; the trained
             weights are kept only when it fell (else the export is plain min/max round-to-nearest)

Arithmetic in ``kd_dtype`` (float32 by default: a full model's backward pass in float64 is twice as
slow) on ``kd_threads`` torch threads with torch's deterministic algorithms: repeated exports on one
machine are byte-identical; on another machine a different summation order may flip a rounding
during training (as for learned FSBR). The teacher's log-probabilities are computed once:
kd_windows x calib_context x vocab values in kd_dtype (SmolLM2-135M, 8 x 256 x 49152: 0.4 GB).

torch is imported only inside this module's functions: ``pip install 'ilsim[calibrate]'``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np

from ilsim.errors import InputError
from ilsim.export.fsbr import LINEARS, BlockSpec, LayerFactors, block_forward, block_tables, closed_form_start, \
    fake_quant_asym, quantized_block_weights, require_torch, _deterministic, _layer_arrays

#: checkpoint weight names of the trained linears, by LINEARS class
WEIGHT_NAMES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def learn_kd(checkpoint, calib_ids: np.ndarray, opts, stats: list | None = None,
             progress: Callable[[int, int], None] | None = None):
    """Distil ``checkpoint`` (already rotated when the method has ``rotate``) into its fake-quant
    student; (the checkpoint with the trained linear weights, one LayerFactors per layer with the
    smoothing factors used and clip ratio 1 per row, a report dict: losses, steps, seconds).
    ``stats``: the calibration maxima (needed with ``smooth``)."""
    from ilsim.export.build import parse_method
    from ilsim.export.weights import quantize_weight
    from ilsim.export.embedding_table import quantize_embedding_table

    torch = require_torch("kd")
    started = time.perf_counter()
    methods = parse_method(opts.method)
    dtype = {"float32": torch.float32, "float64": torch.float64}[opts.kd_dtype]
    cfg = checkpoint.config
    spec = BlockSpec.from_options(cfg, opts, online_hadamard="rotate" in methods)
    context = opts.calib_context
    ids = np.asarray(calib_ids, dtype=np.int64)
    count = min(ids.size // context, opts.kd_windows)
    if count < 1:
        raise InputError(f"kd: calibration text has {ids.size} tokens, fewer than one window of {context}")
    if "smooth" in methods and stats is None:
        raise InputError("kd: with smooth, the calibration maxima are needed (stats)")
    windows = ids[:count * context].reshape(count, context)

    layers = [_layer_arrays(checkpoint, i) for i in range(cfg.num_hidden_layers)]
    factors = []
    for i, w in enumerate(layers):
        f = closed_form_start(w, stats[i].absmax, spec, opts.smooth_alpha)[0] if "smooth" in methods else {}
        factors.append(f)
    table = quantize_embedding_table(checkpoint.embed_tokens, bits=opts.embed_bits)
    embed_q = table.q.astype(np.float64) * (table.m.astype(np.float64) / np.exp2(table.k.astype(np.float64)))[:, None]
    head = np.asarray(checkpoint.lm_head, dtype=np.float64)
    head_q = quantize_weight(head, opts.weight_bits("lm_head"), name="lm_head").dequantize()
    final_gain = np.asarray(checkpoint.final_norm, dtype=np.float64)
    head_bits = opts.head_width()

    with _deterministic(torch, opts.kd_threads):
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=dtype)  # noqa: E731
        rope_q, rope_f, hadamard = block_tables(t, cfg, opts, context, spec)
        fixed = [{key: t(w[key]) for key in ("attn_norm", "mlp_norm")} for w in layers]
        trained = [{name: t(w[name]).requires_grad_(True) for name in LINEARS} for w in layers]
        smooth = [{pair: t(s) for pair, s in f.items()} for f in factors]
        clips = [{name: torch.ones(w[name].shape[0], dtype=dtype) for name in LINEARS} for w in layers]
        embed_float, embed_student = t(np.asarray(checkpoint.embed_tokens, dtype=np.float64)), t(embed_q)
        head_float, head_student, gain = t(head), t(head_q), t(final_gain)
        eps = float(cfg.rms_norm_eps)

        def final(x, quant: bool, weight):
            y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * gain
            return (fake_quant_asym(y, head_bits) if quant else y) @ weight.T

        def teacher(batch):
            x = embed_float[torch.as_tensor(batch)]
            for w in layers:
                tw = {key: t(val) for key, val in w.items()}
                tw["q"] = tw["q"] / math.sqrt(cfg.head_dim)
                x = block_forward(x, tw, spec, rope_f, quant=False)
            return torch.log_softmax(final(x, False, head_float), dim=-1)

        def student(batch):
            x = embed_student[torch.as_tensor(batch)]
            for i in range(cfg.num_hidden_layers):
                w = quantized_block_weights(dict(fixed[i], **trained[i]), smooth[i], clips[i], spec, hadamard)
                x = block_forward(x, w, spec, rope_q, quant=True, hadamard=hadamard)
            return torch.log_softmax(final(x, True, head_student), dim=-1)

        def kl(log_t, log_s):
            return (log_t.exp() * (log_t - log_s)).sum(dim=-1).mean()

        batches = [slice(b, min(b + opts.kd_batch, count)) for b in range(0, count, opts.kd_batch)]
        with torch.no_grad():
            targets = [teacher(windows[b]) for b in batches]

        def total_loss() -> float:
            with torch.no_grad():
                return float(sum(kl(targets[j], student(windows[b])) * (b.stop - b.start)
                                 for j, b in enumerate(batches)) / count)

        loss_start = total_loss()
        optimizer = torch.optim.AdamW([w for layer in trained for w in layer.values()], lr=opts.kd_lr,
                                      weight_decay=0.0)
        step_losses = []
        for step in range(opts.kd_steps):
            j = step % len(batches)
            loss = kl(targets[j], student(windows[batches[j]]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step_losses.append(loss.item())
            if progress is not None:
                progress(step + 1, opts.kd_steps)
        loss_end = total_loss() if opts.kd_steps else loss_start

    kept = loss_end < loss_start
    weights = dict(checkpoint.weights)
    if kept:
        for i, layer in enumerate(trained):
            for name, value in layer.items():
                weights[f"model.layers.{i}.{WEIGHT_NAMES[name]}.weight"] = value.detach().numpy().astype(np.float64)
    out = dataclasses.replace(checkpoint, weights=weights)
    learned = [LayerFactors(smooth=dict(f), clip={name: np.ones(layers[i][name].shape[0]) for name in LINEARS},
                            loss_start=loss_start, loss_end=min(loss_start, loss_end))
               for i, f in enumerate(factors)]
    report = {"loss_start": loss_start, "loss_end": loss_end, "kept": bool(kept), "steps": opts.kd_steps,
              "windows": count, "tokens_per_step": opts.kd_batch * context,
              "step_losses": [round(v, 6) for v in step_losses], "seconds": time.perf_counter() - started}
    return out, learned, report
