"""Golden case builders of di_rope, embedding_lookup and di_hadamard: configurations, seeded random cases, edge cases
and output widths (an OpCases per operator; ilsim.ops.registry names them)."""

from __future__ import annotations

import numpy as np

from ilsim.golden.cases.base import (DEFAULT_SEED, KBITS, MBITS, SCALE, SHIFT, OpCases, TensorSpec, arr, case_seed,
                                     dyadic, ints, row_scales, rowquant_outputs, smax, smin)


# ------------------------------------------------------------------------------- di_rope

ROPE_FRAC_BITS = 14
ROPE_POSITIONS = 16


def _rope_tables(d):
    from ilsim.export.rope_tables import rope_tables
    tables = rope_tables(ROPE_POSITIONS, d, frac_bits=ROPE_FRAC_BITS)
    spec = dict(bits=ROPE_FRAC_BITS + 2, signed=True)
    return arr(tables.cos, **spec), arr(tables.sin, **spec)


def _rope_case(inputs, cfg):
    attrs = {"in_bits": cfg["in_bits"], "in_signed": cfg["in_signed"], "table_frac_bits": ROPE_FRAC_BITS,
             "out_bits": cfg["out_bits"], "out_symmetric": cfg["out_symmetric"], "zero_rows": "zero"}
    spec = TensorSpec(cfg["in_bits"], cfg["in_signed"])
    tspec = TensorSpec(ROPE_FRAC_BITS + 2, True)
    specs = {"x": spec, "zp": spec, "m": SCALE, "k": SHIFT, "positions": TensorSpec(16, False),
             "cos": tspec, "sin": tspec}
    return inputs, attrs, specs, {"in.x": dyadic("in.m", "in.k", "in.zp"), "in.cos": dyadic(1, "attr.table_frac_bits"),
                                  "in.sin": dyadic(1, "attr.table_frac_bits"),
                                  "out.q": dyadic("out.m", "out.k", "out.zp")}


def _rope_lims(cfg):
    ib = cfg["in_bits"]
    return (smin(ib), smax(ib)) if cfg["in_signed"] else (0, (1 << ib) - 1)


def _rope_random(rng, cfg):
    ib, (lo, hi) = cfg["in_bits"], _rope_lims(cfg)
    t_len, d = int(rng.integers(1, 5)), 2 * int(rng.integers(1, 9))
    x = ints(rng, lo, hi, (t_len, d), ib, cfg["in_signed"])
    zp = ints(rng, lo, hi, (t_len,), ib, cfg["in_signed"])
    m, k = row_scales(rng, t_len, 16, 24)
    positions = ints(rng, 0, ROPE_POSITIONS - 1, (t_len,), 16, False)
    cos, sin = _rope_tables(d)
    return _rope_case({"x": x, "zp": zp, "m": m, "k": k, "positions": positions, "cos": cos, "sin": sin}, cfg)


def _rope_edges(cfg):
    ib, (lo, hi) = cfg["in_bits"], _rope_lims(cfg)
    d = 8
    cos, sin = _rope_tables(d)
    last = ROPE_POSITIONS - 1
    # positions 0 (identity rotation) and the last table row; |x - zp| at its widest; a zero row
    x = arr([[hi] * 4 + [lo] * 4, [lo, hi] * 4, [hi] * 8, [lo] * 4 + [hi] * 4], ib, cfg["in_signed"])
    zp = arr([lo, hi, hi, lo], ib, cfg["in_signed"])
    inputs = {"x": x, "zp": zp, "m": arr([(1 << 16) - 1, 1 << 15, 1 << 15, (1 << 16) - 1], MBITS, False),
              "k": arr([16, 20, 24, 16], KBITS, False), "positions": arr([0, last, 0, last], 16, False),
              "cos": cos, "sin": sin}
    return [("positions_and_extremes", *_rope_case(inputs, cfg))]


ROPE = OpCases(
    configs={f"{'s' if sgn else 'u'}{i}o{o}{'s' if sym else 'a'}":
             {"in_bits": i, "in_signed": sgn, "out_bits": o, "out_symmetric": sym}
             for i, sgn, o, sym in ((8, False, 8, False), (8, True, 8, True), (4, False, 4, False), (16, True, 8, True))},
    random_case=_rope_random, edge_cases=_rope_edges, output_specs=rowquant_outputs)

# ------------------------------------------------------------------------------- embedding_lookup

EMBED_VOCAB = 16


def _embedding_case(inputs, cfg):
    specs = {"ids": TensorSpec(16, False), "table": TensorSpec(cfg["bits"], True), "table_m": SCALE,
             "table_k": SHIFT}
    return inputs, {"bits": cfg["bits"]}, specs, {"in.table": dyadic("in.table_m", "in.table_k"),
                                                  "out.q": dyadic("out.m", "out.k", "out.zp")}


def _embedding_table(rng, bits, d):
    table = ints(rng, smin(bits) + 1, smax(bits), (EMBED_VOCAB, d), bits, True)
    table[0, :] = smax(bits)
    table[EMBED_VOCAB - 1, :] = -smax(bits)
    table_m, table_k = row_scales(rng, EMBED_VOCAB, 8, 30)
    return table, table_m, table_k


def _embedding_random(rng, cfg):
    d, n = int(rng.integers(1, 25)), int(rng.integers(1, 9))
    table, table_m, table_k = _embedding_table(rng, cfg["bits"], d)
    ids = ints(rng, 0, EMBED_VOCAB - 1, (n,), 16, False)
    return _embedding_case({"ids": ids, "table": table, "table_m": table_m, "table_k": table_k}, cfg)


def _embedding_edges(cfg):
    rng = np.random.default_rng(case_seed(DEFAULT_SEED, "embedding_lookup_edges", str(cfg["bits"])))
    table, table_m, table_k = _embedding_table(rng, cfg["bits"], 8)
    table[1, :] = 0  # an all-zero row (m = 0, k = 0 as the offline quantizer writes it)
    table_m[1], table_k[1] = 0, 0
    table[2, :] = smin(cfg["bits"])
    last = EMBED_VOCAB - 1
    ids = arr([[0, last, 1], [2, last, 0]], 16, False)
    return [("ids_0_and_last", *_embedding_case({"ids": ids, "table": table, "table_m": table_m,
                                                 "table_k": table_k}, cfg))]


def _embedding_outputs(attrs):
    return {"q": TensorSpec(attrs["bits"], True), "zp": TensorSpec(attrs["bits"], True), "m": SCALE, "k": SHIFT}


EMBEDDING = OpCases(
    configs={f"b{b}": {"bits": b} for b in (8, 4, 16)},
    random_case=_embedding_random, edge_cases=_embedding_edges, output_specs=_embedding_outputs)

# ------------------------------------------------------------------------------- di_hadamard

def _hadamard_case(inputs, cfg, zero_rows):
    attrs = {"in_bits": cfg["in_bits"], "in_signed": cfg["in_signed"], "out_bits": cfg["out_bits"],
             "out_symmetric": cfg["out_symmetric"], "zero_rows": zero_rows}
    spec = TensorSpec(cfg["in_bits"], cfg["in_signed"])
    specs = {"q": spec, "zp": spec, "m": SCALE, "k": SHIFT}
    return inputs, attrs, specs, {"in.q": dyadic("in.m", "in.k", "in.zp"),
                                  "out.q": dyadic("out.m", "out.k", "out.zp")}


def _hadamard_lims(cfg):
    ib = cfg["in_bits"]
    return (smin(ib), smax(ib)) if cfg["in_signed"] else (0, (1 << ib) - 1)


def _hadamard_random(rng, cfg):
    ib, n, (lo, hi) = cfg["in_bits"], cfg["n"], _hadamard_lims(cfg)
    rows = int(rng.integers(1, 5))
    q = ints(rng, lo, hi, (rows, n), ib, cfg["in_signed"])
    zp = ints(rng, lo, hi, (rows,), ib, cfg["in_signed"])
    q[:, 0] = np.where(q[:, 0] == zp, np.where(zp == lo, hi, lo), q[:, 0])  # no accidental zero rows
    m, k = row_scales(rng, rows, 16, 24)
    return _hadamard_case({"q": q, "zp": zp, "m": m, "k": k}, cfg, "error")


def _hadamard_edges(cfg):
    ib, n, sgn, (lo, hi) = cfg["in_bits"], cfg["n"], cfg["in_signed"], _hadamard_lims(cfg)
    c = (hi - lo) // 3

    def case(label, q, zp, k):
        rows = len(q)
        m = [(1 << 16) - 1 if r % 2 == 0 else 1 << 15 for r in range(rows)]  # the widest and the smallest m
        inputs = {"q": arr(q, ib, sgn), "zp": arr(zp, ib, sgn), "m": arr(m, MBITS, False),
                  "k": arr(k, KBITS, False)}
        return (label, *_hadamard_case(inputs, cfg, "zero"))

    alternate = [hi if j % 2 else lo for j in range(n)]
    tie = [lo + 3 * c, lo + c] + [lo] * (n - 2)
    return [
        # |q - zp| = 2^in_bits - 1 everywhere: |t_0| = n (2^in_bits - 1), the declared bound's reach
        # where row 0 of H is all ones (Sylvester, Paley I)
        case("largest_transform", [[hi] * n, [lo] * n, alternate], [lo, hi, lo], [16, 20, 24]),
        # a row equal to its zero point transforms to t = 0 (zero_rows="zero": q = zp = m = k = 0)
        case("zero_row", [[hi] * n, alternate], [hi, lo], [16, 16]),
        # q - zp = ±c (3 e_0 + e_1): t in {±4c, ±2c}, a requantization tie t·d/R = ±d/2 (d odd)
        case("rounding_ties", [tie, [hi - (v - lo) for v in tie]], [lo, hi], [20, 20]),
    ]


def _hadamard_outputs(attrs):
    signed = bool(attrs["out_symmetric"])
    return {"q": TensorSpec(attrs["out_bits"], signed), "zp": TensorSpec(attrs["out_bits"], signed),
            "m": SCALE, "k": SHIFT}


HADAMARD = OpCases(
    configs={f"n{n}{'s' if sgn else 'u'}{i}o{o}{'s' if sym else 'a'}":
             {"n": n, "in_bits": i, "in_signed": sgn, "out_bits": o, "out_symmetric": sym}
             for n, i, sgn, o, sym in ((16, 8, False, 8, False), (12, 8, False, 8, False), (24, 8, True, 8, True),
                                       (28, 4, False, 4, False),
                                       # the exporter's query/key rotation: 16-bit RoPE output, head size 64
                                       (64, 16, False, 8, False))},
    random_case=_hadamard_random, edge_cases=_hadamard_edges, output_specs=_hadamard_outputs)
