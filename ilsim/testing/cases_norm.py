"""Hypothesis strategies of keyword-argument dicts for DI-Norm, residual add, RoPE and embedding.

Each ``<op>_cases(**kw)`` draws a complete call (inputs and attributes) aimed at the edges:
extremes of every width, all-zero, constant, one-hot and all-extreme rows, zero-scale rows,
hidden sizes that are not powers of two (1, 3, 576, 1000 ...), eps = 0 and > 0, every rounding
mode and attribute value, rounding ties built on purpose, and extreme shift spreads.
Keyword arguments pin a choice (e.g. ``in_bits=16``) instead of drawing it.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ilsim.arith.rounding import Rounding
from ilsim.ops.norm import DEFAULT_EPS_K, DEFAULT_EPS_M
from ilsim.export.rope_tables import rope_tables
from ilsim.testing.strategies import QUANT_BITS, int_arrays, ints, multipliers
from ilsim.widths import int_range

ROUNDINGS = tuple(r.value for r in Rounding)
ZERO_ROWS = ("error", "zero", "zero")
#: Hidden sizes: tiny, odd, prime, powers of two and the non-powers of two of real models.
SMALL_HIDDEN = (1, 2, 3, 4, 5, 7, 8, 12, 13, 16, 31, 33, 64)
BIG_HIDDEN = (576, 1000)
#: Input widths of the norm and the residual add: the int16 residual stream and W2A2..W8A8.
STREAM_BITS = QUANT_BITS + (16,)
#: eps choices (eps_m, eps_k): 0, the default 1e-5, 1e-6, 1, and a coarse dyadic.
EPS_CHOICES = ((0, 0), (DEFAULT_EPS_M, DEFAULT_EPS_K), (34360, 35), (1, 0), (3, 4))
#: Above this many elements, arrays are drawn from a seeded generator (hypothesis is too slow there).
_SEEDED_ABOVE = 512


def _pick(draw, value, strategy):
    return draw(strategy) if value is None else value


@st.composite
def edge_rows(draw, bits: int, signed: bool, shape: tuple) -> np.ndarray:
    """An int64 array of the declared width whose rows are edge patterns part of the time:
    all-zero, constant, all-min, all-max, one-hot extreme, alternating extremes, or a row whose
    absmax is the full range (what symmetric per-token quantization produces)."""
    lo, hi = int_range(bits, signed)
    size = int(np.prod(shape, dtype=np.int64))
    if size > _SEEDED_ABOVE:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        arr = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    else:
        arr = draw(int_arrays(bits, signed, shape=shape, row_patterns=True))
    flat = arr.reshape(-1, shape[-1])
    for r in range(flat.shape[0]):
        pattern = draw(st.sampled_from(["keep"] * 5 + ["one_hot", "alternate", "full", "zero", "lo"]))
        if pattern == "one_hot":
            flat[r] = 0
            flat[r, draw(st.integers(0, shape[-1] - 1))] = draw(st.sampled_from([lo, hi, 1]))
        elif pattern == "alternate":
            flat[r] = np.where(np.arange(shape[-1]) % 2 == 0, hi, lo)
        elif pattern == "full":
            flat[r, draw(st.integers(0, shape[-1] - 1))] = draw(st.sampled_from([lo, hi]))
        elif pattern == "zero":
            flat[r] = 0
        elif pattern == "lo":
            flat[r] = lo
    return arr


def _hidden(draw, d, max_d, allow_big):
    if d is not None:
        return d
    choices = [st.sampled_from(SMALL_HIDDEN), st.integers(1, max_d)]
    if allow_big:
        big = draw(st.integers(0, 9)) == 0  # 1 in 10 draws: a real-model, non-power-of-two size
        if big:
            return draw(st.sampled_from(BIG_HIDDEN))
    return draw(st.one_of(*choices))


def _rows_shape(draw, max_rows):
    rows = draw(st.integers(1, max_rows))
    return draw(st.sampled_from([(rows,), (rows,), (), (2, rows)]))


@st.composite
def _row_scales(draw, rows_shape, mbits: int, max_shift: int, zero_m: bool = True, min_shift: int = 0):
    """Per-row (m, k): normalised and extreme multipliers (m = 0 sometimes), shifts with the ends favoured."""
    n = int(np.prod(rows_shape, dtype=np.int64)) if rows_shape else 1
    m_choices = st.one_of(multipliers(mbits), st.just(0)) if zero_m else multipliers(mbits)
    k_choices = st.one_of(st.sampled_from([min_shift, max_shift]), st.integers(min_shift, max_shift))
    m = np.array([draw(m_choices) for _ in range(n)], dtype=np.int64).reshape(rows_shape)
    k = np.array([draw(k_choices) for _ in range(n)], dtype=np.int64).reshape(rows_shape)
    return m, k


@st.composite
def gains(draw, d: int, mbits: int) -> np.ndarray:
    """gamma (or beta) [D] of width int(mbits+1): uniform, constant, extremes, zeros, normalised."""
    lo, hi = int_range(mbits + 1, True)
    pattern = draw(st.sampled_from(["mixed", "mixed", "normalised", "const", "hi", "lo", "odd", "zero_some"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if pattern == "mixed" and d <= 64:
        return np.array([draw(ints(mbits + 1, True)) for _ in range(d)], dtype=np.int64)
    if pattern in ("mixed", "normalised"):
        return rng.integers(1 << (mbits - 1), hi + 1, size=d) * rng.choice([-1, 1, 1, 1], size=d)
    if pattern == "const":
        return np.full(d, draw(st.integers(lo, hi)), dtype=np.int64)
    if pattern == "hi":
        return np.full(d, hi, dtype=np.int64)
    if pattern == "lo":
        return np.full(d, lo, dtype=np.int64)
    if pattern == "odd":
        return rng.integers(lo // 2, hi // 2 + 1, size=d) * 2 + 1
    g = rng.integers(lo, hi + 1, size=d)
    g[rng.random(d) < 0.5] = 0
    return g


# --- DI-Norm -------------------------------------------------------------------------------------

#: Rows whose division y = x*gamma*2^(F+G) / r is an exact tie for suitable gamma (F = G = 0,
#: eps = 0, D = 4): [5,0,0,0] gives r = 2 (ties for odd gamma); [5,-5,5,0] gives r = 4 (ties
#: for gamma = 2 mod 4). Negative variants tie on the negative side.
TIE_ROWS = ([5, 0, 0, 0], [-5, 0, 0, 0], [5, -5, 5, 0], [-5, 5, -5, 0])


@st.composite
def _norm_cases(draw, layer: bool, in_bits=None, d=None, max_rows=4, max_d=40, allow_big=True,
                rounding=None, zero_rows=None, ties=None):
    in_bits = _pick(draw, in_bits, st.sampled_from(STREAM_BITS))
    ties = _pick(draw, ties, st.integers(0, 3).map(lambda v: v == 0)) and in_bits >= 4
    mbits = draw(st.sampled_from([16, 16, 16, 4, 8, 12, 24]))
    if ties:
        rows_shape, d = (len(TIE_ROWS),), 4
        x = np.array(TIE_ROWS, dtype=np.int64)
        f, g = 0, 0
        eps_m, eps_k = 0, 0
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        base = rng.integers(-(1 << (mbits - 2)), 1 << (mbits - 2), size=d)
        gamma = base * 4 + draw(st.sampled_from([1, 2, 3]))
    else:
        rows_shape = _rows_shape(draw, max_rows)
        d = _hidden(draw, d, max_d, allow_big)
        x = draw(edge_rows(in_bits, True, rows_shape + (d,)))
        f = draw(st.sampled_from([8, 8, 0, 1, 4, 12, 16]))
        g = draw(st.sampled_from([8, 8, 0, 1, 4, 12]))
        eps_m, eps_k = draw(st.one_of(st.sampled_from(EPS_CHOICES),
                                      st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 63))))
        gamma = draw(gains(d, mbits))
    m, k = draw(_row_scales(rows_shape, mbits, max_shift=draw(st.sampled_from([16, 24, 24, 40])),
                            zero_m=not ties))
    out_bits = draw(st.one_of(st.just(8), st.integers(2, 16)))
    case = dict(x=x, m=m, k=k, gamma=gamma,
                gamma_k=draw(st.one_of(st.sampled_from([0, mbits - 1, mbits, mbits - 1, mbits, 63 - g]),
                                       st.integers(0, mbits + 8))),
                in_bits=in_bits, eps_m=eps_m, eps_k=eps_k, rms_frac_bits=f, out_frac_bits=g,
                out_bits=out_bits, out_symmetric=draw(st.booleans()), mbits=mbits,
                y_bits=draw(st.sampled_from([32, 32, 40, 62 - out_bits])),
                rounding=_pick(draw, rounding, st.sampled_from(ROUNDINGS)),
                zero_rows=_pick(draw, zero_rows, st.sampled_from(ZERO_ROWS)))
    if layer:
        case["beta"] = draw(gains(d, mbits))
    return case


def di_rmsnorm_cases(**kw):
    """Keyword-argument dicts for :func:`ilsim.ops.norm.di_rmsnorm` (pin any choice by keyword:
    in_bits, d, max_rows, max_d, allow_big, rounding, zero_rows, ties)."""
    return _norm_cases(layer=False, **kw)


def di_layernorm_cases(**kw):
    """Keyword-argument dicts for :func:`ilsim.ops.norm.di_layernorm` (same keywords as RMSNorm)."""
    return _norm_cases(layer=True, **kw)


# --- residual add --------------------------------------------------------------------------------

@st.composite
def residual_add_cases(draw, a_bits=None, b_bits=None, max_rows=4, max_n=40, rounding=None, ties=None):
    """Keyword-argument dicts for :func:`ilsim.ops.residual.residual_add`: both operand widths and
    signedness, per-row zero points at the width's edges, shift spreads from 0 to 63, and
    alignment ties: b_m = odd * 2^(s-1) with b_k - a_k = s makes every odd (b - b_zp) a tie."""
    a_bits = _pick(draw, a_bits, st.sampled_from(STREAM_BITS))
    b_bits = _pick(draw, b_bits, st.sampled_from(STREAM_BITS))
    a_signed, b_signed = draw(st.booleans()), draw(st.booleans())
    mbits = draw(st.sampled_from([16, 16, 16, 4, 8, 12, 24]))
    rows_shape = _rows_shape(draw, max_rows)
    n = _hidden(draw, None, max_n, allow_big=True)
    a = draw(edge_rows(a_bits, a_signed, rows_shape + (n,)))
    b = draw(edge_rows(b_bits, b_signed, rows_shape + (n,)))
    n_rows = int(np.prod(rows_shape, dtype=np.int64))
    a_zp = np.array([draw(st.one_of(st.just(0), ints(a_bits, a_signed))) for _ in range(n_rows)],
                    dtype=np.int64).reshape(rows_shape)  # the residual stream is mostly symmetric
    b_zp = np.array([draw(ints(b_bits, b_signed)) for _ in range(n_rows)], dtype=np.int64).reshape(rows_shape)
    spread = draw(st.sampled_from(["moderate", "moderate", "extreme", "equal"]))
    max_shift, min_shift = (63, 0) if spread == "extreme" else (40, mbits)  # mostly real scales < 1
    a_m, a_k = draw(_row_scales(rows_shape, mbits, max_shift, min_shift=min_shift))
    b_m, b_k = draw(_row_scales(rows_shape, mbits, max_shift, min_shift=min_shift))
    if spread == "equal":
        b_k = a_k.copy()
    if _pick(draw, ties, st.booleans()):
        s = draw(st.integers(1, mbits))
        odd = draw(st.integers(0, (1 << (mbits - s)) - 1)) * 2 + 1  # odd * 2^(s-1) < 2^mbits
        b_m = np.full(rows_shape, odd << (s - 1), dtype=np.int64)
        a_k = np.minimum(a_k, 63 - s)
        b_k = a_k + s
    return dict(a=a, a_zp=a_zp, a_m=a_m, a_k=a_k, b=b, b_zp=b_zp, b_m=b_m, b_k=b_k, a_bits=a_bits,
                b_bits=b_bits, a_signed=a_signed, b_signed=b_signed,
                out_bits=draw(st.one_of(st.just(16), st.integers(2, 16))), mbits=mbits,
                rounding=_pick(draw, rounding, st.sampled_from(ROUNDINGS)),
                zero_rows=draw(st.sampled_from(ZERO_ROWS)))


# --- RoPE ----------------------------------------------------------------------------------------

@st.composite
def rope_table_cases(draw, positions: int, half: int, frac_bits: int):
    """(cos, sin) int tables: real ones from :func:`rope_tables`, or random with +-2^F extremes."""
    kind = draw(st.sampled_from(["real", "real", "random", "extreme"]))
    if kind == "real":
        theta = draw(st.sampled_from([10000.0, 500000.0, 10.0]))
        tables = rope_tables(positions, 2 * half, theta=theta, frac_bits=frac_bits)
        return tables.cos.astype(np.int64), tables.sin.astype(np.int64)
    one = 1 << frac_bits
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "random":
        return (rng.integers(-one, one + 1, size=(positions, half)),
                rng.integers(-one, one + 1, size=(positions, half)))
    return (rng.choice([-one, one, 0], size=(positions, half)),
            rng.choice([-one, one, 0], size=(positions, half)))


@st.composite
def di_rope_cases(draw, in_bits=None, max_tokens=5, rounding=None):
    """Keyword-argument dicts for :func:`ilsim.ops.rope.di_rope`: widths 2..8 (and 16), signed or
    unsigned with per-row zero points, one or several heads, even head dims from 2, real and
    extreme tables, positions 0 and the last row, every table_frac_bits and attribute."""
    in_bits = _pick(draw, in_bits, st.one_of(st.sampled_from(QUANT_BITS), st.just(16)))
    in_signed = draw(st.booleans())
    out_bits = draw(st.one_of(st.just(8), st.integers(2, 16)))
    frac_bits = draw(st.sampled_from([14, 14, 0, 1, 8, 12, 16, min(30, 60 - in_bits - out_bits)]))
    mbits = draw(st.sampled_from([16, 16, 4, 8, 24]))
    t_len = draw(st.integers(1, max_tokens))
    d = draw(st.sampled_from([2, 4, 6, 8, 10, 12, 16, 64]))
    lead = draw(st.sampled_from([(), (), (1,), (3,)]))
    x = draw(edge_rows(in_bits, in_signed, lead + (t_len, d)))
    n_rows = int(np.prod(lead + (t_len,), dtype=np.int64))
    zp = np.array([draw(ints(in_bits, in_signed)) for _ in range(n_rows)],
                  dtype=np.int64).reshape(lead + (t_len,))
    max_shift = min(40, 63 - frac_bits)
    min_shift = draw(st.sampled_from([0, min(mbits, max_shift), min(mbits, max_shift)]))
    m, k = draw(_row_scales(lead + (t_len,), mbits, max_shift=max_shift, min_shift=min_shift))
    n_pos = draw(st.integers(1, 12))
    cos, sin = draw(rope_table_cases(n_pos, d // 2, frac_bits))
    positions = np.array([draw(st.one_of(st.sampled_from([0, n_pos - 1]), st.integers(0, n_pos - 1)))
                          for _ in range(t_len)], dtype=np.int64)
    return dict(x=x, zp=zp, m=m, k=k, positions=positions, cos=cos, sin=sin, in_bits=in_bits,
                in_signed=in_signed, table_frac_bits=frac_bits, out_bits=out_bits,
                out_symmetric=draw(st.booleans()), mbits=mbits,
                rounding=_pick(draw, rounding, st.sampled_from(ROUNDINGS)),
                zero_rows=draw(st.sampled_from(ZERO_ROWS)))


# --- embedding -----------------------------------------------------------------------------------

@st.composite
def embedding_lookup_cases(draw, bits=None, max_vocab=12, max_d=16):
    """Keyword-argument dicts for :func:`ilsim.ops.embedding.embedding_lookup`: every width,
    extreme and zero rows, zero and extreme scales, ids at 0 and V - 1, 1-D and 2-D id arrays."""
    bits = _pick(draw, bits, st.sampled_from(STREAM_BITS))
    mbits = draw(st.sampled_from([16, 16, 4, 8, 30]))
    vocab = draw(st.integers(1, max_vocab))
    d = draw(st.integers(1, max_d))
    table = draw(edge_rows(bits, True, (vocab, d)))
    table_m, table_k = draw(_row_scales((vocab,), mbits, max_shift=63))
    ids_shape = draw(st.sampled_from([(1,), (5,), (2, 3)]))
    n = int(np.prod(ids_shape))
    ids = np.array([draw(st.one_of(st.sampled_from([0, vocab - 1]), st.integers(0, vocab - 1)))
                    for _ in range(n)], dtype=np.int64).reshape(ids_shape)
    return dict(ids=ids, table=table, table_m=table_m, table_k=table_k, bits=bits, mbits=mbits)
