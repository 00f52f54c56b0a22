"""Calibration: per-channel activation maxima of every smoothing pair, from float forwards.

The float reference model runs on calibration windows; a hook keeps, for each layer, the
running max |x| per channel at the points the smoothing pairs need, and (``hessians=True``, for
GPTQ) the input Hessian 2/n sum x xᵀ of each group of linear layers that share an input:
attn_in (q, k, v), o_in (o), mlp_in (gate, up), down_in (down). Offline only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ilsim.errors import InputError

# capture point (after "model.layers.{i}.") -> statistic name
_POINTS = {
    "self_attn.q_proj.input": "attn_in",          # [T, hidden]      norm output into q/k/v
    "self_attn.q_rope.output": "q",               # [H, T, d]        queries after RoPE
    "self_attn.k_rope.output": "k",               # [Hkv, T, d]      keys after RoPE
    "self_attn.v_proj.output": "v",               # [Hkv, T, d]
    "self_attn.o_proj.input": "o_in",             # [T, H*d]         attention output
    "mlp.gate_proj.input": "mlp_in",              # [T, hidden]      norm output into gate/up
    "mlp.gate_proj.output": "gate",               # [T, intermediate]
    "mlp.up_proj.output": "up",                   # [T, intermediate]
    "mlp.down_proj.input": "down_in",             # [T, intermediate]
}


#: Statistics whose Hessian GPTQ needs: the inputs of the layer's linear layers.
HESSIAN_STATS = ("attn_in", "o_in", "mlp_in", "down_in")


@dataclass
class LayerStats:
    """Per-channel max |activation| of one layer; head-shaped points are [heads, head_dim].
    ``hessians`` maps a HESSIAN_STATS name to its HessianAccumulator when they were asked for."""

    absmax: dict = field(default_factory=dict)
    hessians: dict = field(default_factory=dict)

    def update(self, stat: str, value: np.ndarray) -> None:
        v = np.abs(np.asarray(value, dtype=np.float64))
        reduced = v.max(axis=1) if v.ndim == 3 else v.reshape(-1, v.shape[-1]).max(axis=0)
        old = self.absmax.get(stat)
        self.absmax[stat] = reduced if old is None else np.maximum(old, reduced)


def calibrate(model, token_ids: np.ndarray, context: int, max_windows: int | None = None,
              progress: Callable[[int, int], None] | None = None, hessians: bool = False) -> list[LayerStats]:
    """Run ``model`` (a FloatLlama) on consecutive windows of ``context`` tokens and return one
    LayerStats per layer (with input Hessians when ``hessians``). Needs at least one full window."""
    from ilsim.export.gptq import HessianAccumulator

    ids = np.asarray(token_ids, dtype=np.int64)
    windows = ids.size // context
    if windows < 1:
        raise InputError(f"calibration text has {ids.size} tokens, fewer than one window of {context}")
    if max_windows is not None:
        windows = min(windows, max_windows)
    layers = [LayerStats() for _ in range(model.config.num_hidden_layers)]

    def hook(name: str, value: np.ndarray) -> None:
        if not name.startswith("model.layers."):
            return
        _, _, index, point = name.split(".", 3)
        stat = _POINTS.get(point)
        if stat is not None:
            layer = layers[int(index)]
            layer.update(stat, value)
            if hessians and stat in HESSIAN_STATS:
                if stat not in layer.hessians:
                    layer.hessians[stat] = HessianAccumulator(value.shape[-1], f"layer {index} {stat} Hessian")
                layer.hessians[stat].add(value)

    for w in range(windows):
        model.forward(ids[w * context:(w + 1) * context], hook=hook)
        if progress is not None:
            progress(w + 1, windows)
    return layers
