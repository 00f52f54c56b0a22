"""Golden case builders of di_rmsnorm, residual_add and di_layernorm: configurations, seeded random cases, edge cases
and output widths (an OpCases per operator; ilsim.ops.registry names them)."""

from __future__ import annotations

import numpy as np

from ilsim.golden.cases.base import (KBITS, MBITS, SCALE, SHIFT, OpCases, TensorSpec, arr, dyadic, ints, row_scales,
                                     rowquant_outputs, smax, smin)


# ------------------------------------------------------------------------------- di_rmsnorm

NORM_IN_BITS = 16
GAMMA_BITS = MBITS + 1


def _rmsnorm_case(inputs, cfg, zero_rows):
    attrs = {"gamma_k": 14, "in_bits": NORM_IN_BITS, "out_bits": cfg["out_bits"],
             "out_symmetric": cfg["out_symmetric"], "zero_rows": zero_rows}
    specs = {"x": TensorSpec(NORM_IN_BITS, True), "m": SCALE, "k": SHIFT, "gamma": TensorSpec(GAMMA_BITS, True)}
    return inputs, attrs, specs, {"in.x": dyadic("in.m", "in.k"), "in.gamma": dyadic(1, "attr.gamma_k"),
                          "out.q": dyadic("out.m", "out.k", "out.zp")}


def _rmsnorm_random(rng, cfg):
    rows, d = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = ints(rng, smin(NORM_IN_BITS), smax(NORM_IN_BITS), (rows, d), NORM_IN_BITS, True)
    x[x == 0] = 1
    m, k = row_scales(rng, rows, 8, 24)
    gamma = ints(rng, -(1 << 15), 1 << 15, (d,), GAMMA_BITS, True)
    gamma[gamma == 0] = 1 << 14
    return _rmsnorm_case({"x": x, "m": m, "k": k, "gamma": gamma}, cfg, "error")


def _rmsnorm_edges(cfg):
    lo, hi = smin(NORM_IN_BITS), smax(NORM_IN_BITS)
    gmin, gmax = smin(GAMMA_BITS), smax(GAMMA_BITS)
    m, k = arr([1 << 15] * 4, MBITS, False), arr([8, 16, 24, 30], KBITS, False)

    def case(label, rows, gamma, zero_rows="error"):
        x = arr(rows, NORM_IN_BITS, True)
        r = x.shape[0]
        inputs = {"x": x, "m": m[:r], "k": k[:r], "gamma": arr(gamma, GAMMA_BITS, True)}
        return (label, *_rmsnorm_case(inputs, cfg, zero_rows))

    return [
        case("width_extremes", [[lo, hi, 1, -1], [lo] * 4, [hi, 0, 0, 0], [1, 0, 0, 0]], [gmin, gmax, gmax, gmin]),
        case("zero_range_row", [[0, 0, 0, 0], [3, -3, 3, -3]], [1 << 14] * 4, zero_rows="zero"),
    ]


RMSNORM = OpCases(
    configs={f"{'s' if sym else 'a'}{o}": {"out_bits": o, "out_symmetric": sym}
             for sym in (False, True) for o in (8, 4)},
    random_case=_rmsnorm_random, edge_cases=_rmsnorm_edges, output_specs=rowquant_outputs)

# ------------------------------------------------------------------------------- residual_add

RESIDUAL_A_BITS = 16


def _residual_case(inputs, cfg, zero_rows):
    attrs = {"a_bits": RESIDUAL_A_BITS, "b_bits": cfg["b_bits"], "a_signed": True, "b_signed": False,
             "out_bits": cfg["out_bits"], "zero_rows": zero_rows}
    a_spec, b_spec = TensorSpec(RESIDUAL_A_BITS, True), TensorSpec(cfg["b_bits"], False)
    specs = {"a": a_spec, "a_zp": a_spec, "a_m": SCALE, "a_k": SHIFT,
             "b": b_spec, "b_zp": b_spec, "b_m": SCALE, "b_k": SHIFT}
    scales = {"in.a": dyadic("in.a_m", "in.a_k", "in.a_zp"), "in.b": dyadic("in.b_m", "in.b_k", "in.b_zp"),
              "out.q": dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _residual_random(rng, cfg):
    bb = cfg["b_bits"]
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    a = ints(rng, smin(RESIDUAL_A_BITS), smax(RESIDUAL_A_BITS), (rows, n), RESIDUAL_A_BITS, True)
    b = ints(rng, 0, (1 << bb) - 1, (rows, n), bb, False)
    b_zp = ints(rng, 0, (1 << bb) - 1, (rows,), bb, False)
    a_m, a_k = row_scales(rng, rows, 20, 40)
    b_m, b_k = row_scales(rng, rows, 20, 40)
    inputs = {"a": a, "a_zp": np.zeros(rows, dtype=a.dtype), "a_m": a_m, "a_k": a_k,
              "b": b, "b_zp": b_zp, "b_m": b_m, "b_k": b_k}
    return _residual_case(inputs, cfg, "zero")


def _residual_edges(cfg):
    bb = cfg["b_bits"]
    lo, hi, bmax = smin(RESIDUAL_A_BITS), smax(RESIDUAL_A_BITS), (1 << bb) - 1
    m_hi = (1 << 16) - 1

    def case(label, a, b, b_zp, a_k, b_k, a_m=m_hi, b_m=m_hi):
        rows = len(a)
        inputs = {"a": arr(a, RESIDUAL_A_BITS, True), "a_zp": arr([0] * rows, RESIDUAL_A_BITS, True),
                  "a_m": arr([a_m] * rows, MBITS, False), "a_k": arr(a_k, KBITS, False),
                  "b": arr(b, bb, False), "b_zp": arr(b_zp, bb, False),
                  "b_m": arr([b_m] * rows, MBITS, False), "b_k": arr(b_k, KBITS, False)}
        return (label, *_residual_case(inputs, cfg, "zero"))

    return [
        # largest |S|: both operands at their extremes, same grid
        case("width_extremes", [[hi, lo, 0, -1], [lo, lo, lo, lo]], [[bmax, 0, 0, bmax], [0, 0, 0, 0]],
             [0, bmax], [20, 20], [20, 20]),
        # b on a grid 2^-1 .. 2^-20 finer than a: the alignment rounds b once, odd values give ties
        case("alignment_rounding", [[1, -1, 3, -3], [1, -1, 3, -3]], [[1, 2, 3, bmax], [1, 2, 3, bmax]],
             [2, 2], [20, 20], [21, 40]),
        case("zero_range_row", [[0, 0, 0], [5, -5, 0]], [[7 % (bmax + 1)] * 3, [0, 1, 2]],
             [7 % (bmax + 1), 0], [24, 24], [24, 24]),
    ]


def _residual_outputs(attrs):
    return {"q": TensorSpec(attrs["out_bits"], True), "zp": TensorSpec(attrs["out_bits"], True),
            "m": SCALE, "k": SHIFT}


RESIDUAL = OpCases(
    configs={f"b{b}o{o}": {"b_bits": b, "out_bits": o} for b, o in ((8, 16), (4, 16), (8, 8))},
    random_case=_residual_random, edge_cases=_residual_edges, output_specs=_residual_outputs)

# ------------------------------------------------------------------------------- di_layernorm

def _layernorm_case(inputs, cfg, zero_rows):
    attrs = {"gamma_k": 14, "in_bits": NORM_IN_BITS, "out_bits": cfg["out_bits"],
             "out_symmetric": cfg["out_symmetric"], "zero_rows": zero_rows}
    gspec = TensorSpec(GAMMA_BITS, True)
    specs = {"x": TensorSpec(NORM_IN_BITS, True), "m": SCALE, "k": SHIFT, "gamma": gspec, "beta": gspec}
    return inputs, attrs, specs, {"in.x": dyadic("in.m", "in.k"), "in.gamma": dyadic(1, "attr.gamma_k"),
                                  "in.beta": dyadic(1, "attr.gamma_k"),
                                  "out.q": dyadic("out.m", "out.k", "out.zp")}


def _layernorm_random(rng, cfg):
    rows, d = int(rng.integers(1, 5)), int(rng.integers(2, 25))
    x = ints(rng, smin(NORM_IN_BITS), smax(NORM_IN_BITS), (rows, d), NORM_IN_BITS, True)
    x[:, 0] = np.where(x[:, 0] == x[:, 1], x[:, 1] ^ 1, x[:, 0])  # no accidental constant rows
    m, k = row_scales(rng, rows, 8, 24)
    gamma = ints(rng, -(1 << 15), 1 << 15, (d,), GAMMA_BITS, True)
    gamma[gamma == 0] = 1 << 14
    beta = ints(rng, -(1 << 15), 1 << 15, (d,), GAMMA_BITS, True)
    return _layernorm_case({"x": x, "m": m, "k": k, "gamma": gamma, "beta": beta}, cfg, "zero")


def _layernorm_edges(cfg):
    lo, hi = smin(NORM_IN_BITS), smax(NORM_IN_BITS)
    gmin, gmax = smin(GAMMA_BITS), smax(GAMMA_BITS)
    m, k = arr([1 << 15] * 4, MBITS, False), arr([8, 16, 24, 30], KBITS, False)

    def case(label, rows, gamma, beta):
        x = arr(rows, NORM_IN_BITS, True)
        r = x.shape[0]
        inputs = {"x": x, "m": m[:r], "k": k[:r], "gamma": arr(gamma, GAMMA_BITS, True),
                  "beta": arr(beta, GAMMA_BITS, True)}
        return (label, *_layernorm_case(inputs, cfg, "zero"))

    return [
        # largest centred values: one element at one extreme, the rest at the other
        case("width_extremes", [[lo, hi, 1, -1], [lo, hi, hi, hi], [hi, lo, lo, lo], [1, 0, 0, 0]],
             [gmin, gmax, gmax, gmin], [gmax, gmin, 0, 1]),
        # constant rows: variance 0, the output is beta alone
        case("zero_range_row", [[0, 0, 0, 0], [lo, lo, lo, lo], [3, -3, 3, -3]], [1 << 14] * 4, [0, 1 << 14, -1, gmin]),
    ]


LAYERNORM = OpCases(
    configs={f"{'s' if sym else 'a'}{o}": {"out_bits": o, "out_symmetric": sym}
             for sym in (False, True) for o in (8, 4)},
    random_case=_layernorm_random, edge_cases=_layernorm_edges, output_specs=rowquant_outputs)
