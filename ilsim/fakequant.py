"""Float "fake-quant" execution of an integer graph: the same quantizer, float arithmetic.

Runs a graph's nodes in float64 with the graph's own (dequantized) weights, and rounds every
value to the grid the integer model uses at the same point (per-row dynamic quantization at the
node's declared width, the softmax output at 2^-p_frac_bits, ...). Everything between two
quantization points is exact float math: real RMSNorm, RoPE, softmax (with the clip), SiLU.
Comparing its perplexity with the integer run's shows what integer-only arithmetic costs on top
of the quantizer itself. Offline/evaluation only.
"""

from __future__ import annotations

import numpy as np

from ilsim.graph.format import Graph
from ilsim.ops.hadamard import hadamard_matrix, hadamard_transform_float


def fake_quant_rows(x: np.ndarray, bits: int, symmetric: bool) -> np.ndarray:
    """Per-row dynamic quantize-dequantize, as quantize_rows does (range holds 0; zero rows stay 0)."""
    if symmetric:
        levels = (1 << (bits - 1)) - 1
        amax = np.abs(x).max(axis=-1, keepdims=True)
        step = np.where(amax > 0, amax / levels, 1.0)
        return np.round(x / step) * step
    levels = (1 << bits) - 1
    lo = np.minimum(x.min(axis=-1, keepdims=True), 0.0)
    hi = np.maximum(x.max(axis=-1, keepdims=True), 0.0)
    step = np.where(hi > lo, (hi - lo) / levels, 1.0)
    zp = np.round(-lo / step)
    q = np.clip(np.round(x / step) + zp, 0, levels)
    return (q - zp) * step


def _rows_scale(m, k) -> np.ndarray:
    return np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64))


class FakeQuantLM:
    """A CausalLM (ilsim.float_model protocol: forward, new_cache) over a graph, in float64."""

    def __init__(self, graph: Graph):
        self.graph = graph
        c = graph.constants
        self.weights = {}
        for node in graph.nodes:
            p, a = node.params, node.attrs
            if node.op == "di_matmul":
                scale = c[p["b_m"]].astype(np.float64) / 2.0 ** a["b_shift"]
                self.weights[node.name] = scale[:, None] * (c[p["b"]].astype(np.float64)
                                                            - c[p["b_zp"]].astype(np.float64)[:, None])
            elif node.op == "embedding_lookup":
                self.weights[node.name] = (_rows_scale(c[p["table_m"]], c[p["table_k"]])[:, None]
                                           * c[p["table"]].astype(np.float64))
            elif node.op == "di_rmsnorm":
                self.weights[node.name] = c[p["gamma"]].astype(np.float64) / 2.0 ** a["gamma_k"]
            elif node.op == "di_swiglu" and "gate_div_m" in p:
                self.weights[node.name] = _rows_scale(c[p["gate_div_m"]], c[p["gate_div_k"]])
            elif node.op == "attention":
                f = 2.0 ** a.get("rope_frac_bits", 14)
                self.weights[node.name] = (c[p["cos"]] / f, c[p["sin"]] / f)

    def new_cache(self) -> dict:
        return {"length": 0}

    def forward(self, ids, cache: dict | None = None) -> np.ndarray:
        cache = cache if cache is not None else self.new_cache()
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        start = cache["length"]
        positions = np.arange(start, start + ids.size)
        values = {self.graph.inputs[0]: ids}
        for node in self.graph.nodes:
            x = {role: values[name] for role, name in node.inputs.items()}
            values[node.outputs[0]] = self._run(node, x, positions, cache)
        cache["length"] = start + ids.size
        return values[self.graph.outputs[0]]

    def _run(self, node, x, positions, cache):
        a, w = node.attrs, self.weights.get(node.name)
        if node.op == "embedding_lookup":
            return w[x["ids"]]
        if node.op == "di_rmsnorm":
            v = x["x"]
            eps = a["eps_m"] / 2.0 ** a["eps_k"]
            y = v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * w
            return fake_quant_rows(y, a.get("out_bits", 8), a.get("out_symmetric", False))
        if node.op == "di_matmul":
            y = x["a"] @ w.T
            if a.get("wide"):
                return y
            return fake_quant_rows(y, a.get("out_bits", 8), a.get("out_symmetric", False))
        if node.op == "residual_add":
            return fake_quant_rows(x["a"] + x["b"], a.get("out_bits", 16), True)
        if node.op == "di_swiglu":
            g, u = x["gate"], x["up"]
            arg = g * w if w is not None else g
            return fake_quant_rows(g / (1.0 + np.exp(-arg)) * u, a.get("out_bits", 8), False)
        if node.op == "di_hadamard":  # the unnormalized H x, as the integer op (1/n is in the next scales)
            return fake_quant_rows(hadamard_transform_float(x["x"]), a.get("out_bits", 8),
                                   a.get("out_symmetric", False))
        if node.op == "attention":
            return self._attention(node, x, positions, cache)
        raise ValueError(f"fake-quant: no float semantics for op {node.op}")

    def _attention(self, node, x, positions, cache):
        a = node.attrs
        h, hkv, d = a["num_heads"], a["num_kv_heads"], a["head_dim"]
        cos_t, sin_t = self.weights[node.name]
        cos, sin = cos_t[positions], sin_t[positions]
        qk_bits, half = a.get("qk_bits", 8), d // 2

        hadamard = hadamard_matrix(d).astype(np.float64) if a.get("qk_hadamard", 0) else None

        def rope(v):
            rot = np.concatenate([v[:, :half] * cos - v[:, half:] * sin, v[:, half:] * cos + v[:, :half] * sin], 1)
            if hadamard is not None:   # di_rope at rope_out_bits, then di_hadamard (the ±1 matrix) per head
                rot = fake_quant_rows(rot, a.get("rope_out_bits", 16), False) @ hadamard.T
            return fake_quant_rows(rot, qk_bits, False)

        store = cache.setdefault(node.name, {"k": [[] for _ in range(hkv)], "v": []})
        for g in range(hkv):
            store["k"][g].append(rope(x["k"][:, g * d:(g + 1) * d]))
        store["v"].append(x["v"])
        values = np.concatenate(store["v"], axis=0)
        causal = np.arange(values.shape[0])[None, :] <= positions[:, None]
        clip = a.get("clip_num", 15) / a.get("clip_den", 1)
        p_scale = 2.0 ** a.get("p_frac_bits", 8)
        p_max = ((1 << a.get("p_bits", 8)) - 1) / p_scale
        heads = []
        for head in range(h):
            g = head // (h // hkv)
            keys = np.concatenate(store["k"][g], axis=0)
            q = rope(x["q"][:, head * d:(head + 1) * d])
            s = np.where(causal, q @ keys.T, 0.0)
            s = fake_quant_rows(s, a.get("score_bits", 16), True)
            s = np.where(causal, s, -np.inf)
            s = np.maximum(s - s.max(axis=-1, keepdims=True), -clip)
            e = np.where(causal, np.exp(s), 0.0)
            p = np.minimum(np.round(e / e.sum(axis=-1, keepdims=True) * p_scale) / p_scale, p_max)
            heads.append(p @ values[:, g * d:(g + 1) * d])
        return fake_quant_rows(np.concatenate(heads, axis=1), a.get("out_bits", 8), False)
