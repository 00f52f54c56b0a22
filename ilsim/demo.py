"""``ilsim ops --demo``: every operator on a small sample, integer outputs beside their meaning.

Each sample starts from real numbers, quantizes them the way the model does (dynamic per-row
quantization of an integer tensor), runs the integer operator, and shows the integer output,
its dequantized value and the float result the operator approximates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ilsim.arith.dyadic import dyadic_from_scale
from ilsim.export.embedding_table import quantize_embedding_table
from ilsim.export.rope_tables import rope_tables
from ilsim.ops import embedding, exp, matmul, norm, quantize, residual, rope, softmax, swiglu

FIXED = 1 << 12  # real inputs are first written as integers with 12 fraction bits


@dataclass
class DemoResult:
    op: str
    note: str
    inputs: dict
    integer: dict
    dequantized: list
    float_meaning: list

    def max_abs_error(self) -> float:
        return float(np.max(np.abs(np.asarray(self.dequantized) - np.asarray(self.float_meaning))))


def to_rows(values, bits=8, symmetric=False):
    """Real rows -> RowQuant via quantize_rows of their 12-fraction-bit integers."""
    x = np.round(np.asarray(values, dtype=np.float64) * FIXED).astype(np.int64)
    rows = x.shape[:-1]
    return quantize.quantize_rows(x, np.ones(rows, np.int64), np.full(rows, 12, np.int64), bits=bits,
                                  symmetric=symmetric, in_bits=32)


def dequantize_rows(rq) -> np.ndarray:
    return (rq.m / np.exp2(rq.k))[..., None] * (rq.q.astype(np.float64) - rq.zp[..., None])


def _round(a, digits=4):
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def demo_quantize() -> DemoResult:
    x = np.array([[-1.5, -0.25, 0.0, 0.8, 2.0, 3.1]])
    rq = to_rows(x)
    return DemoResult("quantize_rows", "dynamic per-token quantization to uint8 (asymmetric)",
                      {"x": _round(x)}, {"q": rq.q.tolist(), "zp": rq.zp.tolist(), "m": rq.m.tolist(),
                                         "k": rq.k.tolist()}, _round(dequantize_rows(rq)), _round(x))


def demo_matmul() -> DemoResult:
    rng = np.random.default_rng(0)
    a_real = rng.standard_normal((2, 8))
    w_real = rng.standard_normal((3, 8)) * 0.5
    a = to_rows(a_real)
    w = to_rows(w_real, symmetric=True)
    out = matmul.di_matmul(a.q, a.zp, a.m, a.k, w.q, w.zp, w.m, w.k, a_bits=8, b_bits=8, b_signed=True)
    return DemoResult("di_matmul", "uint8 activations x int8 per-channel weights -> uint8 per token",
                      {"a": _round(a_real, 3), "w": _round(w_real, 3)},
                      {"q": out.q.tolist(), "zp": out.zp.tolist(), "m": out.m.tolist(), "k": out.k.tolist()},
                      _round(dequantize_rows(out)), _round(dequantize_rows(a) @ dequantize_rows(w).T))


def demo_exp() -> DemoResult:
    x_real = np.array([0.0, -0.5, -1.0, -2.0, -4.0, -8.0])
    d = dyadic_from_scale(1 / 64)
    x = np.round(x_real * 64).astype(np.int64)
    out = exp.di_exp(x, d.m, d.k)
    return DemoResult("di_exp", "shift-based exp of x <= 0 at scale 1/64 (paper Algorithm 1)",
                      {"x": x.tolist(), "scale": f"{d.m}/2^{d.k}"},
                      {"y": out.y.tolist(), "t_abs": out.t_abs.tolist()},
                      _round(out.y / out.t_abs), _round(np.exp(x_real)))


def demo_softmax() -> DemoResult:
    logits = np.array([[2.0, 1.0, 0.1, -1.0, 3.0]])
    d = dyadic_from_scale(1 / 256)
    x = np.round(logits * 256).astype(np.int64)
    p = softmax.di_softmax(x, d.m, d.k)
    e = np.exp(logits - logits.max())
    return DemoResult("di_softmax", "DI-ClippedSoftmax, clip 15, uint8 output at scale 2^-8",
                      {"x": x.tolist(), "scale": f"{d.m}/2^{d.k}"}, {"p": p.tolist()},
                      _round(p / 256.0), _round(e / e.sum()))


def demo_swiglu() -> DemoResult:
    g_real = np.array([[-3.0, -1.0, 0.0, 0.5, 2.0, 4.0]])
    u_real = np.array([[1.0, -2.0, 0.5, 1.5, -0.5, 1.0]])
    g, u = to_rows(g_real), to_rows(u_real)
    out = swiglu.di_swiglu(g.q, g.zp, g.m, g.k, u.q, u.zp, u.m, u.k)
    gr, ur = dequantize_rows(g), dequantize_rows(u)
    return DemoResult("di_swiglu", "silu(gate) * up with the DI-Exp sigmoid (paper Algorithm 3)",
                      {"gate": _round(g_real), "up": _round(u_real)},
                      {"q": out.q.tolist(), "zp": out.zp.tolist(), "m": out.m.tolist(), "k": out.k.tolist()},
                      _round(dequantize_rows(out)), _round(gr / (1 + np.exp(-gr)) * ur))


def demo_rmsnorm() -> DemoResult:
    x_real = np.array([[0.5, -1.25, 2.0, 0.0, -0.75, 3.0, 1.0]])
    x = to_rows(x_real, bits=16, symmetric=True)
    gain = np.array([1.0, 0.5, 2.0, 1.0, 1.5, 0.25, 1.0])
    gamma_k = 14
    gamma = np.round(gain * (1 << gamma_k)).astype(np.int64)
    out = norm.di_rmsnorm(x.q, x.m, x.k, gamma, gamma_k)
    xr = dequantize_rows(x)
    ref = xr / np.sqrt(np.mean(xr ** 2, axis=-1, keepdims=True) + 1e-5) * gain
    return DemoResult("di_rmsnorm", "integer RMSNorm with an exact isqrt (paper Algorithm 4)",
                      {"x": _round(x_real), "gain": _round(gain)},
                      {"q": out.q.tolist(), "zp": out.zp.tolist(), "m": out.m.tolist(), "k": out.k.tolist()},
                      _round(dequantize_rows(out)), _round(ref))


def demo_residual() -> DemoResult:
    a_real = np.array([[10.0, -3.5, 0.25, 7.0]])
    b_real = np.array([[0.1, 0.2, -0.3, 0.05]])
    a, b = to_rows(a_real, bits=16, symmetric=True), to_rows(b_real)
    out = residual.residual_add(a.q, a.zp, a.m, a.k, b.q, b.zp, b.m, b.k, a_bits=16, b_bits=8)
    return DemoResult("residual_add", "int16 stream + uint8 branch with different dyadic scales",
                      {"a": _round(a_real), "b": _round(b_real)},
                      {"q": out.q.tolist(), "m": out.m.tolist(), "k": out.k.tolist()},
                      _round(dequantize_rows(out)), _round(dequantize_rows(a) + dequantize_rows(b)))


def demo_rope() -> DemoResult:
    x_real = np.array([[1.0, 0.5, -0.5, 2.0]])
    x = to_rows(x_real)
    tables = rope_tables(8, 4)
    pos = np.array([3])
    out = rope.di_rope(x.q, x.zp, x.m, x.k, pos, tables.cos, tables.sin)
    xr = dequantize_rows(x)
    ang = 3 * 10000.0 ** (-np.arange(2) * 2 / 4)
    c, s = np.cos(ang), np.sin(ang)
    ref = np.concatenate([xr[:, :2] * c - xr[:, 2:] * s, xr[:, 2:] * c + xr[:, :2] * s], axis=1)
    return DemoResult("di_rope", "rotary embedding at position 3 with 14-fraction-bit tables",
                      {"x": _round(x_real), "position": 3},
                      {"q": out.q.tolist(), "zp": out.zp.tolist(), "m": out.m.tolist(), "k": out.k.tolist()},
                      _round(dequantize_rows(out)), _round(ref))


def demo_embedding() -> DemoResult:
    table_real = np.array([[0.1, -0.2, 0.3], [1.0, 0.0, -1.0], [0.05, 0.5, 0.25]])
    t = quantize_embedding_table(table_real, bits=8)
    ids = np.array([2, 0])
    out = embedding.embedding_lookup(ids, t.q, t.m, t.k)
    return DemoResult("embedding_lookup", "int8 table with one dyadic scale per row",
                      {"ids": ids.tolist()}, {"q": out.q.tolist(), "m": out.m.tolist(), "k": out.k.tolist()},
                      _round(dequantize_rows(out)), _round(table_real[ids]))


DEMOS = (demo_quantize, demo_matmul, demo_exp, demo_softmax, demo_swiglu, demo_rmsnorm, demo_residual,
         demo_rope, demo_embedding)


def run_demos() -> list[DemoResult]:
    return [demo() for demo in DEMOS]


def format_demo(result: DemoResult) -> str:
    lines = [f"== {result.op}: {result.note}"]
    lines += [f"   input  {name} = {value}" for name, value in result.inputs.items()]
    lines += [f"   int    {name} = {value}" for name, value in result.integer.items()]
    lines.append(f"   value  = {result.dequantized}")
    lines.append(f"   float  = {result.float_meaning}")
    lines.append(f"   max |value - float| = {result.max_abs_error():.4g}")
    return "\n".join(lines)
