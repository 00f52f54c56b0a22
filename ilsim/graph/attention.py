"""The attention graph op: integer RoPE, an integer KV cache, DI-MatMul scores, causal
DI-ClippedSoftmax and the probability-value product, for grouped-query attention.

Composite contract (docs/spec/graph.md, "attention"), per call with T new tokens at positions
p_0..p_{T-1} (consecutive, continuing the cache):
  k, v, q        RowQuant [T, Hkv*d], [T, Hkv*d] (symmetric), [T, H*d], one scale per token
  per kv head g: k_g = di_rope(k[:, g*d:(g+1)*d], positions)      -> appended to the K cache
                 v rows are appended to the V cache as they are (symmetric, per-token scale)
  per head h (kv head g = h // (H / Hkv)), over the S cached positions:
    q_h    = di_rope(q[:, h*d:(h+1)*d], positions)                      (qk_bits, per row)
    s_h    = di_matmul_wide(q_h, K_g)                                   [T, S], row scale
    s_h    = 0 where position s > p_t (causal; 0 is inside every dynamic range, so the masked
             entries do not change the row's quantization)
    sq_h   = quantize_rows(s_h, symmetric, score_bits)
    prob_h = di_softmax(sq_h, clip, mask = causal)                      p_bits, scale 2^-p_frac_bits
    o_h    = di_matmul_av accumulator (prob_h, V_g)                     [T, d], scale 2^-(F + kref)
  out = quantize_rows(concat_h o_h, out_bits)  — every head shares the row scale, because the V
        cache's per-token scales (and so kref) are shared by all kv heads.
The 1/sqrt(d) of scaled dot-product attention is folded into W_q at export.
A score row whose values are all zero gets scale 1/1 before the softmax (all inputs equal: the
softmax is uniform whatever the scale), so no zero multiplier reaches DI-Exp.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ilsim.errors import InputError
from ilsim.graph.format import GraphError
from ilsim.graph.ops import MBITS, REQUIRED, GraphOp, implementation, register
from ilsim.ops.quantize import RowQuant


class KVCache:
    """Integer K and V caches of one attention node, preallocated for ``capacity`` positions."""

    def __init__(self, num_kv_heads: int, head_dim: int, capacity: int, k_dtype, v_dtype):
        self.length = 0
        self.k_q = np.zeros((num_kv_heads, capacity, head_dim), dtype=k_dtype)
        self.k_zp = np.zeros((num_kv_heads, capacity), dtype=np.int64)
        self.k_m = np.zeros((num_kv_heads, capacity), dtype=np.int64)
        self.k_k = np.zeros((num_kv_heads, capacity), dtype=np.int64)
        self.v_q = np.zeros((capacity, num_kv_heads * head_dim), dtype=v_dtype)
        self.v_m = np.zeros(capacity, dtype=np.int64)
        self.v_k = np.zeros(capacity, dtype=np.int64)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.k_q, self.k_zp, self.k_m, self.k_k, self.v_q, self.v_m, self.v_k))


class AttentionOp(GraphOp):
    name = "attention"
    inputs = ("q", "k", "v")
    params = ("cos", "sin")
    attrs = {
        "num_heads": (int, REQUIRED), "num_kv_heads": (int, REQUIRED), "head_dim": (int, REQUIRED),
        "in_bits": (int, 8), "v_bits": (int, 8), "qk_bits": (int, 8), "rope_frac_bits": (int, 14),
        "score_acc_bits": (int, REQUIRED), "score_bits": (int, 16), "clip_num": (int, 15), "clip_den": (int, 1),
        "p_bits": (int, 8), "p_frac_bits": (int, 8), "av_acc_bits": (int, 48), "out_bits": (int, 8),
        "exp_order": (int, 1),
    }

    def check_shapes(self, node, graph, where):
        a = node.attrs
        h, hkv, d = a["num_heads"], a["num_kv_heads"], a["head_dim"]
        if hkv < 1 or h % hkv:
            raise GraphError(f"{where}: num_heads {h} is not a multiple of num_kv_heads {hkv}")
        if d % 2:
            raise GraphError(f"{where}: head_dim {d} must be even for RoPE")
        for role in ("cos", "sin"):
            shape = tuple(graph.decls[node.params[role]].shape)
            if len(shape) != 2 or shape[1] != d // 2 or shape[0] < graph.model.max_positions:
                raise GraphError(f"{where}: {role} table has shape {shape}, needs "
                                 f"({graph.model.max_positions}, {d // 2})")

    def output_width(self, node):
        return self.attr(node, "out_bits"), False

    def new_cache(self, node, capacity: int) -> KVCache:
        a = node.attrs
        return KVCache(a["num_kv_heads"], a["head_dim"], capacity, np.uint8 if self.attr(node, "qk_bits") <= 8
                       else np.uint16, np.int8 if self.attr(node, "v_bits") <= 8 else np.int16)

    def run(self, node, inputs, params, ctx):
        a = {key: self.attr(node, key) for key in self.attrs}
        q, k, v = inputs["q"], inputs["k"], inputs["v"]
        h_count, hkv, d = a["num_heads"], a["num_kv_heads"], a["head_dim"]
        cache: KVCache = ctx.caches[node.name]
        positions = np.asarray(ctx.positions, dtype=np.int64)
        t = positions.shape[0]
        start = cache.length
        if not np.array_equal(positions, np.arange(start, start + t)):
            raise InputError(f"attention {node.name}: positions {positions.tolist()[:4]}... must continue "
                             f"the cache at {start}")
        if start + t > cache.k_q.shape[1]:
            raise InputError(f"attention {node.name}: {start + t} positions exceed the context of "
                             f"{cache.k_q.shape[1]}")
        rope = implementation("ilsim.ops.rope", "di_rope", ctx.reference)
        wide = implementation("ilsim.ops.matmul", "di_matmul_wide", ctx.reference)
        requant = implementation("ilsim.ops.quantize", "quantize_rows", ctx.reference)
        softmax = implementation("ilsim.ops.softmax", "di_softmax", ctx.reference)
        av_wide = implementation("ilsim.ops.matmul", "di_matmul_av_wide", ctx.reference)
        cos, sin = params["cos"], params["sin"]

        def rotate(x: RowQuant, head: int) -> RowQuant:
            return rope(x.q[:, head * d:(head + 1) * d], x.zp, x.m, x.k, positions, cos, sin,
                        in_bits=a["in_bits"], in_signed=False, table_frac_bits=a["rope_frac_bits"],
                        out_bits=a["qk_bits"], zero_rows="zero")

        stop = start + t
        for g in range(hkv):
            kr = rotate(k, g)
            cache.k_q[g, start:stop], cache.k_zp[g, start:stop] = kr.q, kr.zp
            cache.k_m[g, start:stop], cache.k_k[g, start:stop] = kr.m, kr.k
        cache.v_q[start:stop], cache.v_m[start:stop], cache.v_k[start:stop] = v.q, v.m, v.k
        cache.length = stop

        causal = np.arange(stop)[None, :] <= positions[:, None]          # [T, S]
        clip = Fraction(a["clip_num"], a["clip_den"])
        heads, row_scale = [], None
        for h in range(h_count):
            g = h // (h_count // hkv)
            qr = rotate(q, h)
            scores = wide(qr.q, qr.zp, qr.m, qr.k, cache.k_q[g, :stop], cache.k_zp[g, :stop],
                          cache.k_m[g, :stop], cache.k_k[g, :stop], a_bits=a["qk_bits"], b_bits=a["qk_bits"],
                          a_signed=False, b_signed=False, acc_bits=a["score_acc_bits"])
            masked = np.where(causal, scores.p, 0)
            sq = requant(masked, scores.m, scores.k, bits=a["score_bits"], symmetric=True,
                         in_bits=a["score_acc_bits"] + MBITS, zero_rows="zero")
            flat = sq.m == 0
            sm, sk = np.where(flat, 1, sq.m), np.where(flat, 0, sq.k)
            probs = softmax(sq.q, sm, sk, in_bits=a["score_bits"], clip=clip, out_bits=a["p_bits"],
                            out_frac_bits=a["p_frac_bits"], mask=causal, order=a["exp_order"])
            o = av_wide(probs, cache.v_q[:stop, g * d:(g + 1) * d], cache.v_m[:stop], cache.v_k[:stop],
                        p_bits=a["p_bits"], p_frac_bits=a["p_frac_bits"], v_bits=a["v_bits"],
                        acc_bits=a["av_acc_bits"])
            heads.append(o.p)
            row_scale = (o.m, o.k)
        out = np.concatenate(heads, axis=1)
        return requant(out, row_scale[0], row_scale[1], bits=a["out_bits"], in_bits=a["av_acc_bits"],
                       zero_rows="zero")


register(AttentionOp())
