"""The attention operator: integer RoPE, an integer KV cache, DI-MatMul scores, causal
DI-ClippedSoftmax and the probability-value product, for grouped-query attention.

Composite contract (docs/spec/graph.md, "attention"), per call with T new tokens at positions
p_0..p_{T-1} (consecutive, continuing the cache):
  k, v, q        RowQuant [T, Hkv*d], [T, Hkv*d] (symmetric), [T, H*d], one scale per token
  per kv head g: k_g = heads(k[:, g*d:(g+1)*d])                       -> appended to the K cache
                 v rows are appended to the V cache as they are (symmetric, per-token scale)
  per head h (kv head g = h // (H / Hkv)), over the S cached positions:
    q_h    = heads(q[:, h*d:(h+1)*d])                                   (qk_bits, per row)
    s_h    = di_matmul_wide(q_h, K_g)                                   [T, S], row scale
    s_h    = 0 where position s > p_t (causal; 0 is inside every dynamic range, so the masked
             entries do not change the row's quantization)
    sq_h   = quantize_rows(s_h, symmetric, score_bits)
    prob_h = di_softmax(sq_h, clip, mask = causal)                      p_bits, scale 2^-p_frac_bits
    o_h    = di_matmul_av accumulator (prob_h, V_g)                     [T, d], scale 2^-(F + kref)
  out = quantize_rows(concat_h o_h, out_bits)  — every head shares the row scale, because the V
        cache's per-token scales (and so kref) are shared by all kv heads.
where heads(x) = di_rope(x, positions) at qk_bits, or, with ``qk_hadamard`` = 1,
  heads(x) = di_hadamard(di_rope(x, positions) at rope_out_bits, size d) at qk_bits
(QuaRot's rotation of queries and keys: (H q)·(H k) = d (q·k) with the ±1 matrix H, so the
scores are unchanged up to the factor d, which the exporter folds into W_q with the 1/sqrt(d)
of scaled dot-product attention; the rotation spreads a head's outlier channels before the
qk_bits quantization).
A score row whose values are all zero gets scale 1/1 before the softmax (all inputs equal: the
softmax is uniform whatever the scale), so no zero multiplier reaches DI-Exp.

Execution: every step above works row by row (one row = one token of one head), except the
folds over the cache (kref of K_g, kref of V), which are shared by the heads of a kv group. So
the op runs each step once for all heads (RoPE) or once per kv group (the heads of a group
stacked as rows), which gives the same integers as the per-head loop the contract describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.arith.rounding import DEFAULT_ROUNDING
from ilsim.errors import IlsimError, InputError, WidthError
from ilsim.kernels import attention as attention_kernels
from ilsim.ops import hadamard as hadamard_op
from ilsim.ops import matmul, quantize, rope, softmax
from ilsim.ops._common import row_scale_arrays
from ilsim.ops.hadamard import hadamard_factors
from ilsim.ops.matmul import fold_scales
from ilsim.ops.quantize import RowQuant, quantize_rows_2d
from ilsim.ops.rope import y_bits as rope_y_bits
from ilsim.ops.softmax import softmax_rows
from ilsim.widths import int_operand, rows_fit

OP = "attention"


@dataclass(frozen=True)
class AttentionAttrs:
    """The attention operator's attributes: the one declaration of their names, types and
    defaults (the graph node's attribute table is derived from it)."""

    num_heads: int                 # H query heads
    num_kv_heads: int              # Hkv key/value heads, H a multiple of Hkv
    head_dim: int                  # d, even
    score_acc_bits: int            # declared width of the q.k accumulator
    in_bits: int = 8               # q and k inputs (unsigned)
    v_bits: int = 8                # v input (signed, symmetric)
    qk_bits: int = 8               # rotated q and k as the scores take them
    rope_frac_bits: int = 14       # F of the cos/sin tables
    score_bits: int = 16           # requantized scores (symmetric)
    clip_num: int = 15             # the softmax clip c = clip_num / clip_den
    clip_den: int = 1
    p_bits: int = 8                # probabilities: uint p_bits at 2^-p_frac_bits
    p_frac_bits: int = 8
    av_acc_bits: int = 48          # declared width of the probability-value accumulator
    out_bits: int = 8              # the output (asymmetric, one scale per token)
    exp_order: int = 1             # DI-Exp's order
    qk_hadamard: int = 0           # 1: per-head Walsh-Hadamard of rotated q and k
    rope_out_bits: int = 16        # di_rope's width before that Hadamard


def _pick(module, name: str, reference: bool):
    """The operator ``name`` of ``module``: its fast path, or its ``*_reference`` twin."""
    return getattr(module, f"{name}_reference" if reference else name)


class KVCache:
    """Integer K and V caches of one attention node, preallocated for ``capacity`` positions,
    one [capacity, head_dim] block per kv head (so a head's rows are contiguous)."""

    def __init__(self, num_kv_heads: int, head_dim: int, capacity: int, k_dtype, v_dtype):
        self.length = 0
        self.k_q = np.zeros((num_kv_heads, capacity, head_dim), dtype=k_dtype)
        self.k_zp = np.zeros((num_kv_heads, capacity), dtype=np.int64)
        self.k_m = np.zeros((num_kv_heads, capacity), dtype=np.int64)
        self.k_k = np.zeros((num_kv_heads, capacity), dtype=np.int64)
        self.v_q = np.zeros((num_kv_heads, capacity, head_dim), dtype=v_dtype)
        self.v_m = np.zeros(capacity, dtype=np.int64)
        self.v_k = np.zeros(capacity, dtype=np.int64)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.k_q, self.k_zp, self.k_m, self.k_k, self.v_q, self.v_m, self.v_k))


def check_attrs(at: AttentionAttrs, max_positions: int) -> None:
    """The attributes ``at`` of every operator call of the
    contract (di_rope, di_hadamard, di_matmul_wide, quantize_rows, di_softmax, di_matmul_av_wide,
    quantize_rows), checked by the operators' own checks, with the int64 bound of the longest
    probability-value sum (``max_positions``): InputError for any value the reference refuses."""
    h, hkv, d = at.num_heads, at.num_kv_heads, at.head_dim
    if not (1 <= hkv <= h and h % hkv == 0):
        raise InputError(f"attention: num_heads {h} must be a positive multiple of num_kv_heads {hkv}")
    if d < 2 or d % 2:
        raise InputError(f"attention: head_dim {d} must be even and >= 2 for RoPE")
    if at.qk_hadamard not in (0, 1):
        raise InputError(f"attention: qk_hadamard must be 0 or 1, got {at.qk_hadamard!r}")
    if at.clip_num < 1 or at.clip_den < 1:
        raise InputError(f"attention: the softmax clip clip_num / clip_den = {at.clip_num} / {at.clip_den} "
                         "must have clip_num >= 1 and clip_den >= 1")
    if at.qk_hadamard and not 2 <= at.rope_out_bits <= 16:
        raise InputError(f"attention: rope_out_bits must be in [2, 16] (di_hadamard's in_bits), got "
                         f"{at.rope_out_bits}")
    rope.check_attrs(at.in_bits, False, at.rope_frac_bits, rope_out_width(at), False, DEFAULT_MBITS, DEFAULT_ROUNDING,
                     "zero")
    if at.qk_hadamard:
        try:
            hadamard_factors(d)
        except IlsimError as err:
            raise InputError(f"attention: qk_hadamard needs a Hadamard size: head_dim {d}: {err}") from None
        hadamard_op.check_attrs(at.rope_out_bits, False, at.qk_bits, False, None, DEFAULT_MBITS, DEFAULT_ROUNDING,
                                "zero")
    matmul.check_wide_attrs(matmul.OP_WIDE, at.qk_bits, at.qk_bits, False, False, at.score_acc_bits, DEFAULT_MBITS,
                            DEFAULT_ROUNDING, depth=d)
    quantize.check_attrs(at.score_bits, True, at.score_acc_bits + DEFAULT_MBITS, DEFAULT_MBITS, "zero")
    softmax.check_attrs(at.score_bits, Fraction(at.clip_num, at.clip_den), at.p_bits, at.p_frac_bits,
                        at.exp_order, 32)
    matmul.check_av_attrs(matmul.OP_AV_WIDE, at.p_bits, at.p_frac_bits, at.v_bits, at.av_acc_bits, DEFAULT_MBITS,
                          DEFAULT_ROUNDING, depth=max_positions)
    quantize.check_attrs(at.out_bits, False, at.av_acc_bits, DEFAULT_MBITS, "zero")


def _attention(q: RowQuant, k: RowQuant, v: RowQuant, positions, cos, sin, cache: KVCache, at: AttentionAttrs, name: str,
               tables_checked: bool, reference: bool) -> RowQuant:
    """One call of the contract for T new tokens; the cache grows by T positions."""
    positions = np.asarray(positions, dtype=np.int64)
    t = positions.shape[0]
    start = cache.length
    if not np.array_equal(positions, np.arange(start, start + t)):
        raise InputError(f"attention {name}: positions {positions.tolist()[:4]}... must continue "
                         f"the cache at {start}")
    if start + t > cache.k_q.shape[1]:
        raise InputError(f"attention {name}: {start + t} positions exceed the context of "
                         f"{cache.k_q.shape[1]}")
    # the table rows of these positions only (di_rope reads cos[positions], sin[positions])
    cos, sin = cos[start:start + t], sin[start:start + t]
    rope_op = _pick(rope, "di_rope", reference)

    def rotate(x: RowQuant, heads: int) -> RowQuant:
        """di_rope of every head at once: rows [heads, T], each with its token's scale."""
        per_head = x.q.reshape(t, heads, at.head_dim).transpose(1, 0, 2)
        return rope_op(per_head, x.zp, x.m, x.k, np.arange(t, dtype=np.int64), cos, sin, in_bits=at.in_bits,
                       in_signed=False, table_frac_bits=at.rope_frac_bits, out_bits=rope_out_width(at),
                       zero_rows="zero")

    def rotate_any(x: RowQuant, heads: int) -> RowQuant:
        fast = None if reference else _rotate_all_heads(x, heads, cos, sin, at, tables_checked)
        return head_hadamard(rotate(x, heads) if fast is None else fast, at, reference)

    _append(cache, rotate_any(k, at.num_kv_heads), v, at, name)
    qr = rotate_any(q, at.num_heads)                               # [H, T, d]
    if reference:
        return _heads_by_group(at, qr, cache, positions, reference=True)
    try:
        return _all_heads(at, qr, cache, positions)
    except IlsimError as fast_error:
        # report the error exactly as the per-group steps of the contract do
        _heads_by_group(at, qr, cache, positions, reference=False)
        raise AssertionError(f"attention {name}: the all-heads path raised {fast_error!r} where "
                             f"the per-group path did not") from fast_error


def attention(q: RowQuant, k: RowQuant, v: RowQuant, positions, cos, sin, cache: KVCache, at: AttentionAttrs, *,
                 name: str = "attention", tables_checked: bool = False) -> RowQuant:
    """Fast path of the contract: RoPE of all heads by one kernel call where the inputs allow, then
    one kernel call per step for all heads (the per-group operator calls report any error)."""
    return _attention(q, k, v, positions, cos, sin, cache, at, name, tables_checked, reference=False)


def attention_reference(q: RowQuant, k: RowQuant, v: RowQuant, positions, cos, sin, cache: KVCache, at: AttentionAttrs,
                           *, name: str = "attention", tables_checked: bool = False) -> RowQuant:
    """Scalar reference of the contract: every step an operator's ``*_reference`` call, per kv group."""
    return _attention(q, k, v, positions, cos, sin, cache, at, name, tables_checked, reference=True)


def rope_out_width(at: AttentionAttrs) -> int:
    """di_rope's output width: qk_bits, or rope_out_bits when the per-head Hadamard follows."""
    return at.rope_out_bits if at.qk_hadamard else at.qk_bits


def head_hadamard(r: RowQuant, at: AttentionAttrs, reference: bool) -> RowQuant:
    """The rotated heads r [heads, T, d] as the cache and the scores take them: r itself, or with
    ``qk_hadamard`` di_hadamard of each row (size d, rope_out_bits in, qk_bits out, asymmetric)."""
    if not at.qk_hadamard:
        return r
    hadamard = _pick(hadamard_op, "di_hadamard", reference)
    return hadamard(r.q, r.zp, r.m, r.k, in_bits=at.rope_out_bits, in_signed=False, out_bits=at.qk_bits,
                    out_symmetric=False, zero_rows="zero")


def _rotate_all_heads(x: RowQuant, heads: int, cos, sin, at: AttentionAttrs, tables_checked) -> RowQuant | None:
    """di_rope's integers for x [T, heads*d] by one kernel call, or None where the operator must
    decide (inputs or results outside their widths, tables not checked at prepare): di_rope then
    runs and reports any error as the contract says."""
    frac, d, t = at.rope_frac_bits, at.head_dim, x.q.shape[0]
    if not tables_checked or not rows_fit(x.q, x.zp, x.m, x.k, at.in_bits, False, DEFAULT_MBITS, MAX_SHIFT - frac):
        return None
    y = np.empty((heads, t, d), dtype=np.int64)
    bad = np.empty(heads * t, dtype=np.int8)
    attention_kernels.rotate(x.q, x.zp, cos, sin, heads, *_width_bounds(rope_y_bits(at.in_bits, frac)), y, bad)
    if bad.any():
        return None
    rows_m = np.broadcast_to(np.asarray(x.m, dtype=np.int64), (heads, t)).reshape(-1)
    rows_k = np.broadcast_to(np.asarray(x.k, dtype=np.int64) + frac, (heads, t)).reshape(-1)
    try:
        out = quantize_rows_2d(y.reshape(heads * t, d), rows_m, rows_k, bits=rope_out_width(at), symmetric=False,
                               mbits=DEFAULT_MBITS, mode=DEFAULT_ROUNDING, zero_rows="zero", tensor="di_rope.y")
    except IlsimError:
        return None
    return RowQuant(out.q.reshape(heads, t, d), *(f.reshape(heads, t) for f in out[1:]))


def _append(cache: KVCache, kr: RowQuant, v: RowQuant, at: AttentionAttrs, name: str) -> None:
    """Append the rotated keys [Hkv, T, d] and the values (checked against v_bits) to the cache."""
    hkv, d = at.num_kv_heads, at.head_dim
    v_q = int_operand(v.q, f"attention {name}", "v", bits=at.v_bits, signed=True, ndim=2)
    v_m, v_k = row_scale_arrays(v.m, v.k, (v_q.shape[0],), f"attention {name}", "v", mbits=DEFAULT_MBITS)
    start, stop = cache.length, cache.length + v_q.shape[0]
    cache.k_q[:, start:stop], cache.k_zp[:, start:stop] = kr.q, kr.zp
    cache.k_m[:, start:stop], cache.k_k[:, start:stop] = kr.m, kr.k
    cache.v_q[:, start:stop] = v_q.reshape(-1, hkv, d).transpose(1, 0, 2)
    cache.v_m[start:stop], cache.v_k[start:stop] = v_m, v_k
    cache.length = stop


def _causal(positions: np.ndarray, stop: int, group: int) -> np.ndarray:
    """keep[(h, t), s] = s <= p_t for the rows of ``group`` heads: [group * T, stop]."""
    return np.tile(np.arange(stop)[None, :] <= positions[:, None], (group, 1))


def _softmax_input(sq: RowQuant):
    """A zero score row gets scale 1/1 (its softmax is uniform whatever the scale)."""
    flat = sq.m == 0
    return np.where(flat, 1, sq.m), np.where(flat, 0, sq.k)


def _heads_by_group(at: AttentionAttrs, qr: RowQuant, cache: KVCache, positions: np.ndarray, reference: bool):
    """The contract's steps as operator calls, the heads of one kv group stacked as rows."""
    wide = _pick(matmul, "di_matmul_wide", reference)
    requant = _pick(quantize, "quantize_rows", reference)
    softmax_op = _pick(softmax, "di_softmax", reference)
    av_wide = _pick(matmul, "di_matmul_av_wide", reference)
    h_count, hkv, d = at.num_heads, at.num_kv_heads, at.head_dim
    group, t, stop = h_count // hkv, positions.shape[0], cache.length
    causal = _causal(positions, stop, group)
    clip = Fraction(at.clip_num, at.clip_den)
    out = np.empty((t, h_count, d), dtype=np.int64)
    row_scale = None
    for g in range(hkv):
        heads = slice(g * group, (g + 1) * group)                     # this group's rows: [G*T]
        rows = (qr.q[heads].reshape(group * t, d), qr.zp[heads].reshape(-1), qr.m[heads].reshape(-1),
                qr.k[heads].reshape(-1))
        scores = wide(*rows, cache.k_q[g, :stop], cache.k_zp[g, :stop], cache.k_m[g, :stop],
                      cache.k_k[g, :stop], a_bits=at.qk_bits, b_bits=at.qk_bits, a_signed=False,
                      b_signed=False, acc_bits=at.score_acc_bits)
        masked = np.where(causal, scores.p, 0)
        sq = requant(masked, scores.m, scores.k, bits=at.score_bits, symmetric=True,
                     in_bits=at.score_acc_bits + DEFAULT_MBITS, zero_rows="zero")
        probs = softmax_op(sq.q, *_softmax_input(sq), in_bits=at.score_bits, clip=clip, out_bits=at.p_bits,
                        out_frac_bits=at.p_frac_bits, mask=causal, order=at.exp_order)
        o = av_wide(probs, cache.v_q[g, :stop], cache.v_m[:stop], cache.v_k[:stop], p_bits=at.p_bits,
                    p_frac_bits=at.p_frac_bits, v_bits=at.v_bits, acc_bits=at.av_acc_bits)
        out[:, heads] = o.p.reshape(group, t, d).transpose(1, 0, 2)
        row_scale = (o.m[:t], o.k[:t])   # m = 1, k = p_frac_bits + kref(V): the same for every row
    return requant(out.reshape(t, h_count * d), row_scale[0], row_scale[1], bits=at.out_bits,
                   in_bits=at.av_acc_bits, zero_rows="zero")


def _width_bounds(bits: int) -> tuple[np.int64, np.int64]:
    hi = (1 << (bits - 1)) - 1
    return np.int64(-hi - 1), np.int64(hi)


def _all_heads(at: AttentionAttrs, qr: RowQuant, cache: KVCache, positions: np.ndarray):
    """The same integers as :func:`_heads_by_group` with one kernel call per step for all heads.
    Raises an IlsimError where any step would fail (the caller then reports it per group)."""
    h_count, hkv, d = at.num_heads, at.num_kv_heads, at.head_dim
    group, t, stop = h_count // hkv, positions.shape[0], cache.length
    rows = h_count * t
    # scores: fold K's per-position scales per kv group, then every head's exact products
    k_mf, k_ref = fold_scales(cache.k_m[:, :stop], cache.k_k[:, :stop], DEFAULT_ROUNDING)   # per kv group
    k_out = qr.k + k_ref[np.arange(h_count) // group][:, None]       # [H, T]
    if int(k_out.max()) > MAX_SHIFT:
        raise WidthError("attention: a score row's scale shift exceeds 63")
    p = np.empty((rows, stop), dtype=np.int64)
    bad = np.empty(rows, dtype=np.int8)
    attention_kernels.scores(qr.q, qr.zp, cache.k_q, cache.k_zp, k_mf, group, stop,
                             *_width_bounds(at.score_acc_bits), p, bad)
    if bad.any():
        raise WidthError("attention: a score accumulator overflows its width")
    causal = _causal(positions, stop, h_count)
    p[~causal] = 0
    sq = quantize_rows_2d(p, qr.m.reshape(-1), k_out.reshape(-1), bits=at.score_bits, symmetric=True,
                          mbits=DEFAULT_MBITS, mode=DEFAULT_ROUNDING, zero_rows="zero", tensor="scores")
    sm, sk = _softmax_input(sq)
    probs = softmax_rows(sq.q, causal, sm, sk, clip=Fraction(at.clip_num, at.clip_den),
                         in_bits=at.score_bits, out_bits=at.p_bits, out_frac_bits=at.p_frac_bits,
                         order=at.exp_order, sum_bits=32)
    # values: V's per-position scales fold once (shared by every kv head)
    max_weight = ((1 << at.p_bits) - 1) * ((1 << DEFAULT_MBITS) - 1)
    if stop * max_weight * (1 << (at.v_bits - 1)) >= 1 << 63:
        raise InputError("attention: the probability-value sum may leave int64")
    v_mf, v_ref = fold_scales(cache.v_m[:stop], cache.v_k[:stop], DEFAULT_ROUNDING)
    out = np.empty((t, h_count * d), dtype=np.int64)
    bad = np.empty(rows, dtype=np.int8)
    attention_kernels.values(probs, v_mf, cache.v_q, group, t, stop, *_width_bounds(at.av_acc_bits), out, bad)
    if bad.any():
        raise WidthError("attention: a probability-value accumulator overflows its width")
    k_final = at.p_frac_bits + int(v_ref)
    if k_final > MAX_SHIFT:
        raise WidthError("attention: the output scale shift exceeds 63")
    return quantize_rows_2d(out, np.ones(t, dtype=np.int64), np.full(t, k_final, dtype=np.int64),
                            bits=at.out_bits, symmetric=False, mbits=DEFAULT_MBITS, mode=DEFAULT_ROUNDING,
                            zero_rows="zero", tensor="out")

