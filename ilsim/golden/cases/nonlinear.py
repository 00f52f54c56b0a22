"""Golden case builders of di_exp, di_softmax, di_swiglu and di_silu: configurations, seeded random cases, edge cases
and output widths (an OpCases per operator; ilsim.ops.registry names them)."""

from __future__ import annotations

from ilsim.golden.cases.base import (KBITS, MBITS, SCALE, SHIFT, OpCases, TensorSpec, arr, dyadic, ints, row_scales,
                                     smax, smin)


# ------------------------------------------------------------------------------- di_exp

def _exp_case(inputs, cfg):
    attrs = {"in_bits": cfg["in_bits"], "out_bits": cfg["out_bits"], "order": cfg["order"]}
    specs = {"x": TensorSpec(cfg["in_bits"], True), "m": SCALE, "k": SHIFT}
    return inputs, attrs, specs, {"in.x": dyadic("in.m", "in.k"), "out.y": {"divisor": "out.t_abs"}}


def _exp_scale_k(cfg) -> tuple[int, int]:
    """k range of the row scales m / 2^k (m in [2^15, 2^16)): |t| ~ 2^(k - 16) / 1.4375 stays
    >= 1 at k_lo and fits out_bits (and 2^26 for order 2) at k_hi."""
    return (17, 16 + (15 if cfg["out_bits"] <= 16 else 25))


def _exp_random(rng, cfg):
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = ints(rng, smin(cfg["in_bits"]), 0, (rows, n), cfg["in_bits"], True)
    m, k = row_scales(rng, rows, 22, 30)  # |t| ~ 45 .. 11400: the fine regime the model feeds
    return _exp_case({"x": x, "m": m.reshape(rows, 1), "k": k.reshape(rows, 1)}, cfg)


def _exp_edges(cfg):
    lo = smin(cfg["in_bits"])
    k_lo, k_hi = _exp_scale_k(cfg)
    m = arr([[1 << 15], [(1 << 16) - 1], [1 << 15]], MBITS, False)
    k = arr([[k_lo], [k_hi], [k_hi]], KBITS, False)
    x = arr([[0, -1, -2, lo], [0, -1, lo + 1, lo], [lo, lo, 0, 0]], cfg["in_bits"], True)
    return [("width_extremes", *_exp_case({"x": x, "m": m, "k": k}, cfg))]


def _exp_outputs(attrs):
    return {"y": TensorSpec(attrs["out_bits"], False), "t_abs": TensorSpec(attrs["out_bits"], False)}


EXP = OpCases(
    configs={f"i{i}o{o}r{r}": {"in_bits": i, "out_bits": o, "order": r}
             for i, o in ((16, 32), (8, 16)) for r in (1, 2)},
    random_case=_exp_random, edge_cases=_exp_edges, output_specs=_exp_outputs)

# ------------------------------------------------------------------------------- di_softmax

SOFTMAX_IN_BITS = 16


def _softmax_case(inputs, cfg):
    attrs = {"in_bits": SOFTMAX_IN_BITS, "clip": cfg["clip"], "out_bits": cfg["out_bits"],
             "out_frac_bits": cfg.get("frac", cfg["out_bits"]), "order": cfg["order"]}
    specs = {"x": TensorSpec(SOFTMAX_IN_BITS, True), "m": SCALE, "k": SHIFT}
    return inputs, attrs, specs, {"in.x": dyadic("in.m", "in.k"),
                                  "out.p": dyadic(1, cfg.get("frac", cfg["out_bits"]))}


def _softmax_random(rng, cfg):
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = ints(rng, smin(SOFTMAX_IN_BITS), smax(SOFTMAX_IN_BITS), (rows, n), SOFTMAX_IN_BITS, True)
    m, k = row_scales(rng, rows, 22, 30)
    return _softmax_case({"x": x, "m": m, "k": k}, cfg)


def _softmax_edges(cfg):
    lo, hi = smin(SOFTMAX_IN_BITS), smax(SOFTMAX_IN_BITS)
    m, k = arr([1 << 15] * 4, MBITS, False), arr([18, 18, 28, 30], KBITS, False)
    # scale 2^15 / 2^18 = 1/8: the clip of 15 is c_int = 120 input steps below the row max
    clip_row = [0, -119, -120, -121, -1000]

    def case(label, rows):
        x = arr(rows, SOFTMAX_IN_BITS, True)
        return (label, *_softmax_case({"x": x, "m": m[:x.shape[0]], "k": k[:x.shape[0]]}, cfg))

    return [
        case("width_extremes", [[lo, hi, 0, -1, 1], [hi] * 5, [lo] * 5, [lo, lo, lo, lo, hi]]),
        case("clip_boundary", [clip_row, [v + 7 for v in clip_row]]),
        case("uniform_row", [[7] * 24]),
    ]


def _softmax_outputs(attrs):
    return {"p": TensorSpec(attrs["out_bits"], False)}


SOFTMAX = OpCases(
    configs={**{f"o{o}r{r}{'c15' if c else 'noclip'}": {"out_bits": o, "order": r, "clip": c}
                for o in (8, 4) for r in (1, 2) for c in (15, None)},
             # the exporter's attention probabilities: uint16 at 2^-15
             "o16f15r1c15": {"out_bits": 16, "frac": 15, "order": 1, "clip": 15}},
    random_case=_softmax_random, edge_cases=_softmax_edges, output_specs=_softmax_outputs)

# ------------------------------------------------------------------------------- di_swiglu

def _swiglu_case(inputs, cfg, zero_rows):
    attrs = {"in_bits": cfg["in_bits"], "order": cfg["order"], "out_bits": cfg["out_bits"],
             "zero_rows": zero_rows}
    spec = TensorSpec(cfg["in_bits"], False)
    specs = {"gate": spec, "gate_zp": spec, "gate_m": SCALE, "gate_k": SHIFT,
             "up": spec, "up_zp": spec, "up_m": SCALE, "up_k": SHIFT}
    scales = {"in.gate": dyadic("in.gate_m", "in.gate_k", "in.gate_zp"),
              "in.up": dyadic("in.up_m", "in.up_k", "in.up_zp"), "out.q": dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _swiglu_random(rng, cfg):
    ib = cfg["in_bits"]
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    gate, up = (ints(rng, 0, (1 << ib) - 1, (rows, n), ib, False) for _ in range(2))
    gate_zp, up_zp = (ints(rng, 0, (1 << ib) - 1, (rows,), ib, False) for _ in range(2))
    # gate scales 2^-(k - 16) with k in [22, 30]: |t| of the sigmoid's DI-Exp in ~45 .. 11400
    gate_m, gate_k = row_scales(rng, rows, 22, 30)
    up_m, up_k = row_scales(rng, rows, 16, 24)
    inputs = {"gate": gate, "gate_zp": gate_zp, "gate_m": gate_m, "gate_k": gate_k,
              "up": up, "up_zp": up_zp, "up_m": up_m, "up_k": up_k}
    return _swiglu_case(inputs, cfg, "zero")


def _swiglu_edges(cfg):
    ib = cfg["in_bits"]
    vmax = (1 << ib) - 1
    spec = dict(bits=ib, signed=False)

    def case(label, gate, gate_zp, up, up_zp, gate_k):
        rows = len(gate)
        inputs = {"gate": arr(gate, **spec), "gate_zp": arr(gate_zp, **spec),
                  "gate_m": arr([1 << 15] * rows, MBITS, False), "gate_k": arr(gate_k, KBITS, False),
                  "up": arr(up, **spec), "up_zp": arr(up_zp, **spec),
                  "up_m": arr([1 << 15] * rows, MBITS, False), "up_k": arr([20] * rows, KBITS, False)}
        return (label, *_swiglu_case(inputs, cfg, "zero"))

    return [
        # |g'| and |u'| at 2^in_bits - 1: the widest w, at the coarsest and finest sigmoid scale
        case("width_extremes", [[vmax, 0, vmax, 0], [vmax, 0, vmax, 0]], [0, vmax],
             [[vmax, vmax, 0, 0], [0, 0, vmax, vmax]], [0, vmax], [17, 30]),
        case("zero_range_row", [[3 % (vmax + 1)] * 3, [vmax, 1, 0]], [3 % (vmax + 1), 0],
             [[vmax] * 3, [vmax, vmax, 0]], [0, 0], [24, 24]),
    ]


def _swiglu_outputs(attrs):
    return {"q": TensorSpec(attrs["out_bits"], False), "zp": TensorSpec(attrs["out_bits"], False),
            "m": SCALE, "k": SHIFT}


SWIGLU = OpCases(
    configs={f"i{i}o{o}r{r}": {"in_bits": i, "out_bits": o, "order": r}
             for i, o in ((8, 8), (4, 4)) for r in (1, 2)},
    random_case=_swiglu_random, edge_cases=_swiglu_edges, output_specs=_swiglu_outputs)

# ------------------------------------------------------------------------------- di_silu

def _silu_case(inputs, cfg, zero_rows):
    attrs = {"in_bits": cfg["in_bits"], "order": cfg["order"], "out_bits": cfg["out_bits"], "zero_rows": zero_rows}
    spec = TensorSpec(cfg["in_bits"], False)
    specs = {"x": spec, "zp": spec, "m": SCALE, "k": SHIFT}
    return inputs, attrs, specs, {"in.x": dyadic("in.m", "in.k", "in.zp"), "out.q": dyadic("out.m", "out.k", "out.zp")}


def _silu_random(rng, cfg):
    ib = cfg["in_bits"]
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = ints(rng, 0, (1 << ib) - 1, (rows, n), ib, False)
    zp = ints(rng, 0, (1 << ib) - 1, (rows,), ib, False)
    m, k = row_scales(rng, rows, 22, 30)  # as the swiglu gate: |t| of the sigmoid's DI-Exp ~45 .. 11400
    return _silu_case({"x": x, "zp": zp, "m": m, "k": k}, cfg, "zero")


def _silu_edges(cfg):
    ib = cfg["in_bits"]
    vmax = (1 << ib) - 1

    def case(label, x, zp, k):
        rows = len(x)
        inputs = {"x": arr(x, ib, False), "zp": arr(zp, ib, False),
                  "m": arr([1 << 15] * rows, MBITS, False), "k": arr(k, KBITS, False)}
        return (label, *_silu_case(inputs, cfg, "zero"))

    return [
        # |x - zp| = 2^in_bits - 1 both ways, at the coarsest and finest sigmoid scale
        case("width_extremes", [[vmax, 0, vmax, 0], [vmax, 0, 1, vmax]], [0, vmax], [17, 30]),
        case("zero_range_row", [[3 % (vmax + 1)] * 3, [vmax, 1, 0]], [3 % (vmax + 1), 0], [24, 24]),
    ]


SILU = OpCases(
    configs={f"i{i}o{o}r{r}": {"in_bits": i, "out_bits": o, "order": r}
             for i, o in ((8, 8), (4, 4)) for r in (1, 2)},
    random_case=_silu_random, edge_cases=_silu_edges, output_specs=_swiglu_outputs)
