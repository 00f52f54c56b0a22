"""Golden case builders of quantize_rows, di_matmul and di_matmul_av: configurations, seeded random cases, edge cases
and output widths (an OpCases per operator; ilsim.ops.registry names them)."""

from __future__ import annotations

import numpy as np

from ilsim.golden.cases.base import (KBITS, MBITS, SCALE, SHIFT, OpCases, TensorSpec, arr, dyadic, ints, row_scales,
                                     smax, smin)


# ------------------------------------------------------------------------------- quantize_rows

QUANT_IN_BITS = 16


def _quantize_random(rng, cfg):
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = ints(rng, smin(QUANT_IN_BITS), smax(QUANT_IN_BITS), (rows, n), QUANT_IN_BITS, True)
    x[x == 0] = 1  # no accidental zero rows in random cases (zero rows are edge cases)
    m, k = row_scales(rng, rows, 16, 30)
    return _quantize_case({"x": x, "m_in": m, "k_in": k}, cfg, "error")


def _quantize_case(inputs, cfg, zero_rows):
    attrs = {"bits": cfg["bits"], "symmetric": cfg["symmetric"], "in_bits": QUANT_IN_BITS,
             "zero_rows": zero_rows}
    specs = {"x": TensorSpec(QUANT_IN_BITS, True), "m_in": SCALE, "k_in": SHIFT}
    return inputs, attrs, specs, {"in.x": dyadic("in.m_in", "in.k_in"), "out.q": dyadic("out.m", "out.k", "out.zp")}


def _quantize_edges(cfg):
    lo, hi = smin(QUANT_IN_BITS), smax(QUANT_IN_BITS)
    m, k = arr([1 << 15] * 4, MBITS, False), arr([16, 20, 30, 63 - 16], KBITS, False)

    def case(label, rows, zero_rows="error"):
        x = arr(rows, QUANT_IN_BITS, True)
        r = x.shape[0]
        return (label, *_quantize_case({"x": x, "m_in": m[:r], "k_in": k[:r]}, cfg, zero_rows))

    return [
        case("width_extremes", [[lo, hi, 0, -1], [hi, hi, hi, hi], [lo, lo, lo, lo], [lo, 1, -1, hi]]),
        case("zero_range_row", [[0, 0, 0], [5, -5, 0], [0, 0, 0]], zero_rows="zero"),
        case("single_element_rows", [[1], [-1], [hi], [lo]]),
        case("rounding_ties", [[-3, -1, 1, 3, 6], [2, 4, 6, 8, 10]]),
        # m_in = 0: the row's real values are all 0 whatever x holds; q is computed as for any
        # row and the output scale is m' = k' = 0 (docs/spec/quantize.md); beside an ordinary row
        ("zero_input_scale", *_quantize_case({"x": arr([[5, -5, 100], [lo, 0, hi], [1, 2, 3]], QUANT_IN_BITS, True),
                                              "m_in": arr([0, 0, 1 << 15], MBITS, False),
                                              "k_in": arr([16, 63, 20], KBITS, False)}, cfg, "error")),
    ]


def _quantize_outputs(attrs):
    signed = bool(attrs["symmetric"])
    return {"q": TensorSpec(attrs["bits"], signed), "zp": TensorSpec(attrs["bits"], signed),
            "m": SCALE, "k": SHIFT}


QUANTIZE = OpCases(
    configs={f"{'s' if sym else 'a'}{bits}": {"bits": bits, "symmetric": sym}
             for sym in (False, True) for bits in (2, 3, 4, 8)},
    random_case=_quantize_random, edge_cases=_quantize_edges, output_specs=_quantize_outputs)

# ------------------------------------------------------------------------------- di_matmul

def _matmul_case(inputs, cfg, zero_rows):
    attrs = {"a_bits": cfg["a_bits"], "b_bits": cfg["b_bits"], "acc_bits": 32, "out_bits": cfg["out_bits"],
             "zero_rows": zero_rows}
    a_spec, b_spec = TensorSpec(cfg["a_bits"], False), TensorSpec(cfg["b_bits"], True)
    specs = {"a": a_spec, "a_zp": a_spec, "a_m": SCALE, "a_k": SHIFT,
             "b": b_spec, "b_zp": b_spec, "b_m": SCALE, "b_k": SHIFT}
    scales = {"in.a": dyadic("in.a_m", "in.a_k", "in.a_zp"), "in.b": dyadic("in.b_m", "in.b_k", "in.b_zp"),
              "out.q": dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _matmul_random(rng, cfg):
    ab, bb = cfg["a_bits"], cfg["b_bits"]
    m_rows, depth, n_out = int(rng.integers(1, 5)), int(rng.integers(1, 25)), int(rng.integers(1, 9))
    a = ints(rng, 0, (1 << ab) - 1, (m_rows, depth), ab, False)
    a_zp = ints(rng, 0, (1 << ab) - 1, (m_rows,), ab, False)
    a[:, 0] = np.where(a_zp == a[:, 0], (a_zp.astype(np.int64) + 1) % (1 << ab), a[:, 0])  # no zero row
    b = ints(rng, smin(bb), smax(bb), (n_out, depth), bb, True)
    b[:, 0] = np.where(b[:, 0] == 0, 1, b[:, 0])
    a_m, a_k = row_scales(rng, m_rows, 16, 24)
    b_m, b_k = row_scales(rng, n_out, 16, 24)
    inputs = {"a": a, "a_zp": a_zp, "a_m": a_m, "a_k": a_k,
              "b": b, "b_zp": np.zeros(n_out, dtype=b.dtype), "b_m": b_m, "b_k": b_k}
    return _matmul_case(inputs, cfg, "zero")


def _matmul_edges(cfg):
    ab, bb = cfg["a_bits"], cfg["b_bits"]
    amax, bmin, bmax = (1 << ab) - 1, smin(bb), smax(bb)
    depth = 24
    scale = {"a_m": arr([1 << 15] * 2, MBITS, False), "a_k": arr([16, 16], KBITS, False),
             "b_m": arr([(1 << 16) - 1] * 2, MBITS, False), "b_k": arr([16, 24], KBITS, False)}

    def case(label, a, a_zp, b):
        inputs = {"a": arr(a, ab, False), "a_zp": arr(a_zp, ab, False), "b": arr(b, bb, True),
                  "b_zp": arr([0] * len(b), bb, True), **scale}
        return (label, *_matmul_case(inputs, cfg, "zero"))

    return [
        # |acc| at its largest: (a - zp) = +-(2^a_bits - 1) against b = -2^(b_bits - 1) on every term
        case("largest_accumulator", [[amax] * depth, [0] * depth], [0, amax], [[bmin] * depth, [bmax] * depth]),
        case("zero_range_row", [[3 % (amax + 1)] * depth, [amax] * depth], [3 % (amax + 1), 0],
             [[bmax] * depth, [bmin] * depth]),
        case("width_extremes", [[0, amax] * (depth // 2), [amax, 0] * (depth // 2)], [0, amax],
             [[bmin, bmax] * (depth // 2), [bmax, bmin] * (depth // 2)]),
    ]


def _matmul_outputs(attrs):
    return {"q": TensorSpec(attrs["out_bits"], False), "zp": TensorSpec(attrs["out_bits"], False),
            "m": SCALE, "k": SHIFT}


MATMUL = OpCases(
    configs={f"w{b}a{a}o{o}": {"a_bits": a, "b_bits": b, "out_bits": o}
             for a, b, o in ((8, 8, 8), (8, 4, 8), (4, 4, 4), (8, 2, 8), (2, 2, 2))},
    random_case=_matmul_random, edge_cases=_matmul_edges, output_specs=_matmul_outputs)

# ------------------------------------------------------------------------------- di_matmul_av

def _matmul_av_case(inputs, cfg, zero_rows):
    attrs = {"p_bits": cfg["p_bits"], "p_frac_bits": cfg.get("p_frac_bits", cfg["p_bits"]), "v_bits": cfg["v_bits"],
             "acc_bits": 48,
             "out_bits": cfg["out_bits"], "out_symmetric": cfg["out_symmetric"], "zero_rows": zero_rows}
    specs = {"p": TensorSpec(cfg["p_bits"], False), "v": TensorSpec(cfg["v_bits"], True), "v_m": SCALE,
             "v_k": SHIFT}
    scales = {"in.p": dyadic(1, "attr.p_frac_bits"), "out.q": dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _matmul_av_random(rng, cfg):
    pb, vb = cfg["p_bits"], cfg["v_bits"]
    m_rows, t, d = int(rng.integers(1, 5)), int(rng.integers(1, 25)), int(rng.integers(1, 9))
    p = ints(rng, 0, (1 << pb) - 1, (m_rows, t), pb, False)
    p[:, 0] = np.where(p[:, 0] == 0, 1, p[:, 0])
    v = ints(rng, smin(vb), smax(vb), (t, d), vb, True)
    v[0, :] = np.where(v[0, :] == 0, 1, v[0, :])
    v_m, v_k = row_scales(rng, t, 16, 24)
    return _matmul_av_case({"p": p, "v": v, "v_m": v_m, "v_k": v_k}, cfg, "zero")


def _matmul_av_edges(cfg):
    pb, vb = cfg["p_bits"], cfg["v_bits"]
    pmax, vmin, vmax = (1 << pb) - 1, smin(vb), smax(vb)
    t = 24

    def case(label, p, v, v_m, v_k):
        inputs = {"p": arr(p, pb, False), "v": arr(v, vb, True), "v_m": arr(v_m, MBITS, False),
                  "v_k": arr(v_k, KBITS, False)}
        return (label, *_matmul_av_case(inputs, cfg, "zero"))

    return [
        # |acc| at its largest: p = 2^p_bits - 1 against v = -2^(v_bits - 1) and m = 2^16 - 1 on every term
        case("largest_accumulator", [[pmax] * t, [0] * t], [[vmin, vmax]] * t, [(1 << 16) - 1] * t, [16] * t),
        case("zero_row", [[0] * 4, [pmax, 0, 1, pmax]], [[vmax, vmin, 0], [vmin, vmax, 1], [0, 0, 0], [1, -1, vmax]],
             [1 << 15] * 4, [16, 20, 24, 16]),
        case("width_extremes", [[0, pmax] * (t // 2), [pmax, 0] * (t // 2)], [[vmin, vmax], [vmax, vmin]] * (t // 2),
             [1 << 15, (1 << 16) - 1] * (t // 2), [16, 24] * (t // 2)),
    ]


def _matmul_av_outputs(attrs):
    signed = bool(attrs["out_symmetric"])
    return {"q": TensorSpec(attrs["out_bits"], signed), "zp": TensorSpec(attrs["out_bits"], signed),
            "m": SCALE, "k": SHIFT}


MATMUL_AV = OpCases(
    configs={**{f"p{p}v{v}o{o}{'s' if sym else 'a'}": {"p_bits": p, "v_bits": v, "out_bits": o, "out_symmetric": sym}
                for p, v, o, sym in ((8, 8, 8, False), (8, 8, 8, True), (8, 4, 4, False), (4, 2, 2, True))},
             # the exporter's attention probabilities: uint16 at 2^-15
             "p16f15v8o8a": {"p_bits": 16, "p_frac_bits": 15, "v_bits": 8, "out_bits": 8, "out_symmetric": False}},
    random_case=_matmul_av_random, edge_cases=_matmul_av_edges, output_specs=_matmul_av_outputs)
