"""The attention composite: its all-heads fast path gives the per-group operator steps' integers
(the contract), over prefill and decode calls, GQA groupings and widths; and the same bits for
any thread count."""

import numba
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ilsim.errors import IlsimError
from ilsim.graph.attention import AttentionOp
from ilsim.ops.attention import AttentionAttrs, KVCache, _all_heads, _append, _heads_by_group
from ilsim.ops.quantize import RowQuant

OP = AttentionOp()


def _row_quant(rng, tokens, width, bits, symmetric, k_range):
    hi = (1 << (bits - 1)) - 1 if symmetric else (1 << bits) - 1
    lo = -hi if symmetric else 0
    q = rng.integers(lo, hi + 1, size=(tokens, width))
    zp = np.zeros(tokens, dtype=np.int64) if symmetric else rng.integers(0, hi + 1, size=tokens)
    m = rng.integers(1 << 15, 1 << 16, size=tokens)
    k = rng.integers(*k_range, size=tokens)
    return RowQuant(q, zp, m, k)


@st.composite
def attention_cases(draw):
    kv_heads = draw(st.integers(1, 3))
    group = draw(st.integers(1, 3))
    head_dim = draw(st.sampled_from([2, 4, 8]))
    bits = draw(st.sampled_from([2, 4, 8]))
    calls = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))   # prefill, then decodes
    attrs = {key: default for key, (_, default) in OP.attrs.items()}
    attrs.update(num_heads=kv_heads * group, num_kv_heads=kv_heads, head_dim=head_dim, in_bits=bits,
                 v_bits=bits, qk_bits=bits, score_acc_bits=2 * bits + 4,
                 clip_num=draw(st.sampled_from([1, 15, 1000])), exp_order=draw(st.sampled_from([1, 2])),
                 p_bits=draw(st.sampled_from([4, 8, 16])), p_frac_bits=draw(st.sampled_from([4, 8, 15])),
                 score_bits=draw(st.sampled_from([8, 16])))
    attrs["p_frac_bits"] = min(attrs["p_frac_bits"], attrs["p_bits"])
    k_lo = draw(st.integers(18, 40))   # real values from about 2^-2 to 2^-24: valid scales, mostly
    return attrs, calls, draw(st.integers(0, 2**32 - 1)), (k_lo, k_lo + draw(st.integers(1, 8)))


def _run(attrs, calls, seed, k_range, fast: bool):
    """Outputs (or the error type) of each call, feeding the same random q, k, v rows."""
    rng = np.random.default_rng(seed)
    h, hkv, d, bits = attrs["num_heads"], attrs["num_kv_heads"], attrs["head_dim"], attrs["qk_bits"]
    cache = KVCache(hkv, d, sum(calls), np.uint8, np.int8)
    outs, start = [], 0
    for t in calls:
        q = _row_quant(rng, t, h * d, bits, False, k_range)
        k = _row_quant(rng, t, hkv * d, bits, False, k_range)
        v = _row_quant(rng, t, hkv * d, bits, True, k_range)
        kr = RowQuant(k.q.reshape(t, hkv, d).transpose(1, 0, 2), k.zp, np.broadcast_to(k.m, (hkv, t)),
                      np.broadcast_to(k.k, (hkv, t)))
        kr = RowQuant(kr.q, np.broadcast_to(kr.zp, (hkv, t)), kr.m, kr.k)
        qr = RowQuant(q.q.reshape(t, h, d).transpose(1, 0, 2), np.broadcast_to(q.zp, (h, t)),
                      np.broadcast_to(q.m, (h, t)), np.broadcast_to(q.k, (h, t)))
        _append(cache, kr, v, AttentionAttrs(**attrs), "attn")
        positions = np.arange(start, start + t)
        start += t
        try:
            at = AttentionAttrs(**attrs)
            out = _all_heads(at, qr, cache, positions) if fast else \
                _heads_by_group(at, qr, cache, positions, reference=True)
        except IlsimError as err:
            outs.append(type(err).__name__)
            break
        outs.append(out)
    return outs


def _assert_same(fast, ref):
    assert len(fast) == len(ref)
    for got, want in zip(fast, ref):
        if isinstance(want, str):
            assert isinstance(got, str)  # both refuse (the op then reports the per-group error)
            continue
        for name, a, b in zip(want._fields, got, want):
            assert a.dtype == b.dtype and np.array_equal(a, b), name


@given(attention_cases())
def test_all_heads_path_equals_the_per_group_reference_steps(case):
    attrs, calls, seed, k_range = case
    _assert_same(_run(attrs, calls, seed, k_range, fast=True), _run(attrs, calls, seed, k_range, fast=False))


def test_all_heads_path_does_not_depend_on_the_thread_count(monkeypatch):
    from ilsim.kernels import launch

    attrs = {key: default for key, (_, default) in OP.attrs.items()}
    attrs.update(num_heads=6, num_kv_heads=2, head_dim=8, score_acc_bits=24)
    before = numba.get_num_threads()
    try:
        monkeypatch.setattr(launch, "PARALLEL_MIN_ELEMENTS", 1 << 62)     # serial compilations
        serial = _run(attrs, [37, 1, 1], 5, (20, 26), fast=True)
        monkeypatch.setattr(launch, "PARALLEL_MIN_ELEMENTS", 0)           # parallel ones,
        numba.set_num_threads(1)                                          # on one thread
        single = _run(attrs, [37, 1, 1], 5, (20, 26), fast=True)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)             # and on all
        multi = _run(attrs, [37, 1, 1], 5, (20, 26), fast=True)
    finally:
        numba.set_num_threads(before)
    _assert_same(multi, single)
    _assert_same(multi, serial)
    _assert_same(multi, _run(attrs, [37, 1, 1], 5, (20, 26), fast=False))


@given(st.integers(1, 4), st.sampled_from([2, 4, 8]), st.integers(1, 6), st.sampled_from([2, 4, 8]),
       st.integers(0, 2**32 - 1))
def test_rope_of_all_heads_at_once_equals_di_rope(heads, head_dim, tokens, bits, seed):
    from ilsim.ops.attention import _rotate_all_heads
    from ilsim.export.rope_tables import rope_tables
    from ilsim.ops.rope import di_rope

    rng = np.random.default_rng(seed)
    attrs = {key: default for key, (_, default) in OP.attrs.items()}
    attrs.update(head_dim=head_dim, in_bits=bits, qk_bits=bits)
    tables = rope_tables(16, head_dim, theta=10000.0, frac_bits=attrs["rope_frac_bits"])
    start = int(rng.integers(0, 16 - tokens + 1))
    cos, sin = tables.cos[start:start + tokens], tables.sin[start:start + tokens]
    x = _row_quant(rng, tokens, heads * head_dim, bits, False, (18, 30))
    got = _rotate_all_heads(x, heads, cos, sin, AttentionAttrs(**attrs), tables_checked=True)
    want = di_rope(x.q.reshape(tokens, heads, head_dim).transpose(1, 0, 2), x.zp, x.m, x.k,
                   np.arange(tokens), cos, sin, in_bits=bits, in_signed=False,
                   table_frac_bits=attrs["rope_frac_bits"], out_bits=bits, zero_rows="zero")
    assert got is not None
    for name, a, b in zip(want._fields, got, want):
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@given(st.integers(1, 4), st.sampled_from([2, 4, 8, 12]), st.integers(1, 6), st.sampled_from([2, 4, 8]),
       st.sampled_from([8, 16]), st.integers(0, 2**32 - 1))
def test_rope_then_head_hadamard_of_all_heads_equals_the_operators(heads, head_dim, tokens, bits, rope_out, seed):
    """qk_hadamard: the fast path (all heads' RoPE by one kernel, then di_hadamard's fast path)
    gives the integers of di_rope's and di_hadamard's scalar references, per head."""
    from ilsim.ops.attention import _rotate_all_heads, head_hadamard
    from ilsim.ops.hadamard import di_hadamard_reference
    from ilsim.export.rope_tables import rope_tables
    from ilsim.ops.rope import di_rope_reference

    rng = np.random.default_rng(seed)
    attrs = {key: default for key, (_, default) in OP.attrs.items()}
    attrs.update(head_dim=head_dim, in_bits=bits, qk_bits=bits, qk_hadamard=1, rope_out_bits=rope_out)
    tables = rope_tables(16, head_dim, theta=10000.0, frac_bits=attrs["rope_frac_bits"])
    start = int(rng.integers(0, 16 - tokens + 1))
    cos, sin = tables.cos[start:start + tokens], tables.sin[start:start + tokens]
    x = _row_quant(rng, tokens, heads * head_dim, bits, False, (18, 30))
    rotated = _rotate_all_heads(x, heads, cos, sin, AttentionAttrs(**attrs), tables_checked=True)
    assert rotated is not None and int(rotated.q.max()) < 1 << rope_out
    got = head_hadamard(rotated, AttentionAttrs(**attrs), reference=False)
    r = di_rope_reference(x.q.reshape(tokens, heads, head_dim).transpose(1, 0, 2), x.zp, x.m, x.k,
                          np.arange(tokens), cos, sin, in_bits=bits, in_signed=False,
                          table_frac_bits=attrs["rope_frac_bits"], out_bits=rope_out, zero_rows="zero")
    want = di_hadamard_reference(r.q, r.zp, r.m, r.k, in_bits=rope_out, out_bits=bits, zero_rows="zero")
    assert all(np.array_equal(a, b) for a, b in zip(head_hadamard(r, AttentionAttrs(**attrs), reference=True), want))
    for name, a, b in zip(want._fields, got, want):
        assert a.dtype == b.dtype and np.array_equal(a, b), name
