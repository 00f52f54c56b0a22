"""Deterministic golden cases: seeded random cases plus a fixed list of edge cases per operator.

Every case is drawn from ``numpy.random.default_rng`` seeded with a value derived from the run's
seed, the operator and the bit-width configuration only (never from the order of other ops), so
``--ops di_exp`` writes the same di_exp vectors as a run over every operator. No hypothesis here:
the same command always writes the same cases.

A case is a keyword-argument dict for the operator's fast path (``ilsim.ops.registry.get_op``)
plus the declared width of every tensor in it, which the writers need (hex digit count) and the
manifest records. Sizes stay small (rows <= 4, length <= 24) so that RTL benches can replay them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ilsim.errors import InputError
from ilsim.ops._common import storage_dtype

#: Default number of seeded random cases per (operator, configuration).
DEFAULT_CASES = 4
#: Default run seed.
DEFAULT_SEED = 0
#: m of a dyadic scale is uint16 in the row scales drawn here (k <= 63 fits 6 bits).
MBITS, KBITS = 16, 6


@dataclass(frozen=True)
class TensorSpec:
    """The declared width of one tensor: ``bits``-bit two's complement if ``signed``, else unsigned."""
    bits: int
    signed: bool


@dataclass
class GoldenCase:
    """One vector: operator, configuration, case name, inputs/attributes and declared widths."""
    op: str
    config: str
    name: str
    kind: str                      # "random" or "edge"
    inputs: dict                   # tensor name -> integer ndarray
    attrs: dict                    # attribute name -> JSON-able scalar
    input_specs: dict              # tensor name -> TensorSpec
    scales: dict = field(default_factory=dict)  # "in.x"/"out.q" -> its scale, see _dyadic

    def kwargs(self) -> dict:
        return {**self.inputs, **self.attrs}


@dataclass(frozen=True)
class OpCases:
    """Per operator: its configurations, a random-case and edge-case builder, its output widths."""
    configs: dict                  # config name -> dict of width attributes
    random_case: Callable          # (rng, cfg) -> (inputs, attrs, specs, scales)
    edge_cases: Callable           # (cfg) -> list of (label, inputs, attrs, specs, scales)
    output_specs: Callable         # (attrs) -> {field: TensorSpec}


def case_seed(seed: int, op: str, config: str) -> int:
    """The rng seed of one (operator, configuration): sha256 of the three, first 8 bytes."""
    digest = hashlib.sha256(f"{int(seed)}/{op}/{config}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _ints(rng, lo: int, hi: int, shape, bits: int, signed: bool) -> np.ndarray:
    """Integers uniform in [lo, hi] (inclusive) in the storage dtype of the declared width."""
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64).astype(storage_dtype(bits, signed))


def _arr(values, bits: int, signed: bool) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).astype(storage_dtype(bits, signed))


def _smin(bits: int) -> int:
    return -(1 << (bits - 1))


def _smax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def _row_scales(rng, rows: int, k_lo: int, k_hi: int):
    """Per-row dyadic scales m / 2^k, m uint16 normalised (>= 2^15), k in [k_lo, k_hi]."""
    m = _ints(rng, 1 << 15, (1 << 16) - 1, (rows,), MBITS, False)
    k = _ints(rng, k_lo, k_hi, (rows,), KBITS, False)
    return m, k


def _dyadic(m, k, zp=None) -> dict:
    """A tensor's real meaning m / 2^k * (v - zp): each part a tensor ("in.m", "out.k"), an attribute
    ("attr.gamma_k") or an integer; per-row tensors apply to the rows (all axes but the last)."""
    return {"m": m, "k": k} if zp is None else {"m": m, "k": k, "zp": zp}


SCALE = TensorSpec(MBITS, False)
SHIFT = TensorSpec(KBITS, False)


# ------------------------------------------------------------------------------- quantize_rows

QUANT_IN_BITS = 16


def _quantize_random(rng, cfg):
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = _ints(rng, _smin(QUANT_IN_BITS), _smax(QUANT_IN_BITS), (rows, n), QUANT_IN_BITS, True)
    x[x == 0] = 1  # no accidental zero rows in random cases (zero rows are edge cases)
    m, k = _row_scales(rng, rows, 16, 30)
    return _quantize_case({"x": x, "m_in": m, "k_in": k}, cfg, "error")


def _quantize_case(inputs, cfg, zero_rows):
    attrs = {"bits": cfg["bits"], "symmetric": cfg["symmetric"], "in_bits": QUANT_IN_BITS,
             "zero_rows": zero_rows}
    specs = {"x": TensorSpec(QUANT_IN_BITS, True), "m_in": SCALE, "k_in": SHIFT}
    return inputs, attrs, specs, {"in.x": _dyadic("in.m_in", "in.k_in"), "out.q": _dyadic("out.m", "out.k", "out.zp")}


def _quantize_edges(cfg):
    lo, hi = _smin(QUANT_IN_BITS), _smax(QUANT_IN_BITS)
    m, k = _arr([1 << 15] * 4, MBITS, False), _arr([16, 20, 30, 63 - 16], KBITS, False)

    def case(label, rows, zero_rows="error"):
        x = _arr(rows, QUANT_IN_BITS, True)
        r = x.shape[0]
        return (label, *_quantize_case({"x": x, "m_in": m[:r], "k_in": k[:r]}, cfg, zero_rows))

    return [
        case("width_extremes", [[lo, hi, 0, -1], [hi, hi, hi, hi], [lo, lo, lo, lo], [lo, 1, -1, hi]]),
        case("zero_range_row", [[0, 0, 0], [5, -5, 0], [0, 0, 0]], zero_rows="zero"),
        case("single_element_rows", [[1], [-1], [hi], [lo]]),
        case("rounding_ties", [[-3, -1, 1, 3, 6], [2, 4, 6, 8, 10]]),
        # m_in = 0: the row's real values are all 0 whatever x holds; q is computed as for any
        # row and the output scale is m' = k' = 0 (docs/spec/quantize.md); beside an ordinary row
        ("zero_input_scale", *_quantize_case({"x": _arr([[5, -5, 100], [lo, 0, hi], [1, 2, 3]], QUANT_IN_BITS, True),
                                              "m_in": _arr([0, 0, 1 << 15], MBITS, False),
                                              "k_in": _arr([16, 63, 20], KBITS, False)}, cfg, "error")),
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
    scales = {"in.a": _dyadic("in.a_m", "in.a_k", "in.a_zp"), "in.b": _dyadic("in.b_m", "in.b_k", "in.b_zp"),
              "out.q": _dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _matmul_random(rng, cfg):
    ab, bb = cfg["a_bits"], cfg["b_bits"]
    m_rows, depth, n_out = int(rng.integers(1, 5)), int(rng.integers(1, 25)), int(rng.integers(1, 9))
    a = _ints(rng, 0, (1 << ab) - 1, (m_rows, depth), ab, False)
    a_zp = _ints(rng, 0, (1 << ab) - 1, (m_rows,), ab, False)
    a[:, 0] = np.where(a_zp == a[:, 0], (a_zp.astype(np.int64) + 1) % (1 << ab), a[:, 0])  # no zero row
    b = _ints(rng, _smin(bb), _smax(bb), (n_out, depth), bb, True)
    b[:, 0] = np.where(b[:, 0] == 0, 1, b[:, 0])
    a_m, a_k = _row_scales(rng, m_rows, 16, 24)
    b_m, b_k = _row_scales(rng, n_out, 16, 24)
    inputs = {"a": a, "a_zp": a_zp, "a_m": a_m, "a_k": a_k,
              "b": b, "b_zp": np.zeros(n_out, dtype=b.dtype), "b_m": b_m, "b_k": b_k}
    return _matmul_case(inputs, cfg, "zero")


def _matmul_edges(cfg):
    ab, bb = cfg["a_bits"], cfg["b_bits"]
    amax, bmin, bmax = (1 << ab) - 1, _smin(bb), _smax(bb)
    depth = 24
    scale = {"a_m": _arr([1 << 15] * 2, MBITS, False), "a_k": _arr([16, 16], KBITS, False),
             "b_m": _arr([(1 << 16) - 1] * 2, MBITS, False), "b_k": _arr([16, 24], KBITS, False)}

    def case(label, a, a_zp, b):
        inputs = {"a": _arr(a, ab, False), "a_zp": _arr(a_zp, ab, False), "b": _arr(b, bb, True),
                  "b_zp": _arr([0] * len(b), bb, True), **scale}
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


# ------------------------------------------------------------------------------- di_exp

def _exp_case(inputs, cfg):
    attrs = {"in_bits": cfg["in_bits"], "out_bits": cfg["out_bits"], "order": cfg["order"]}
    specs = {"x": TensorSpec(cfg["in_bits"], True), "m": SCALE, "k": SHIFT}
    return inputs, attrs, specs, {"in.x": _dyadic("in.m", "in.k"), "out.y": {"divisor": "out.t_abs"}}


def _exp_scale_k(cfg) -> tuple[int, int]:
    """k range of the row scales m / 2^k (m in [2^15, 2^16)): |t| ~ 2^(k - 16) / 1.4375 stays
    >= 1 at k_lo and fits out_bits (and 2^26 for order 2) at k_hi."""
    return (17, 16 + (15 if cfg["out_bits"] <= 16 else 25))


def _exp_random(rng, cfg):
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = _ints(rng, _smin(cfg["in_bits"]), 0, (rows, n), cfg["in_bits"], True)
    m, k = _row_scales(rng, rows, 22, 30)  # |t| ~ 45 .. 11400: the fine regime the model feeds
    return _exp_case({"x": x, "m": m.reshape(rows, 1), "k": k.reshape(rows, 1)}, cfg)


def _exp_edges(cfg):
    lo = _smin(cfg["in_bits"])
    k_lo, k_hi = _exp_scale_k(cfg)
    m = _arr([[1 << 15], [(1 << 16) - 1], [1 << 15]], MBITS, False)
    k = _arr([[k_lo], [k_hi], [k_hi]], KBITS, False)
    x = _arr([[0, -1, -2, lo], [0, -1, lo + 1, lo], [lo, lo, 0, 0]], cfg["in_bits"], True)
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
    return inputs, attrs, specs, {"in.x": _dyadic("in.m", "in.k"),
                                  "out.p": _dyadic(1, cfg.get("frac", cfg["out_bits"]))}


def _softmax_random(rng, cfg):
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = _ints(rng, _smin(SOFTMAX_IN_BITS), _smax(SOFTMAX_IN_BITS), (rows, n), SOFTMAX_IN_BITS, True)
    m, k = _row_scales(rng, rows, 22, 30)
    return _softmax_case({"x": x, "m": m, "k": k}, cfg)


def _softmax_edges(cfg):
    lo, hi = _smin(SOFTMAX_IN_BITS), _smax(SOFTMAX_IN_BITS)
    m, k = _arr([1 << 15] * 4, MBITS, False), _arr([18, 18, 28, 30], KBITS, False)
    # scale 2^15 / 2^18 = 1/8: the clip of 15 is c_int = 120 input steps below the row max
    clip_row = [0, -119, -120, -121, -1000]

    def case(label, rows):
        x = _arr(rows, SOFTMAX_IN_BITS, True)
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


# ------------------------------------------------------------------------------- di_rmsnorm

NORM_IN_BITS = 16
GAMMA_BITS = MBITS + 1


def _rmsnorm_case(inputs, cfg, zero_rows):
    attrs = {"gamma_k": 14, "in_bits": NORM_IN_BITS, "out_bits": cfg["out_bits"],
             "out_symmetric": cfg["out_symmetric"], "zero_rows": zero_rows}
    specs = {"x": TensorSpec(NORM_IN_BITS, True), "m": SCALE, "k": SHIFT, "gamma": TensorSpec(GAMMA_BITS, True)}
    return inputs, attrs, specs, {"in.x": _dyadic("in.m", "in.k"), "in.gamma": _dyadic(1, "attr.gamma_k"),
                          "out.q": _dyadic("out.m", "out.k", "out.zp")}


def _rmsnorm_random(rng, cfg):
    rows, d = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = _ints(rng, _smin(NORM_IN_BITS), _smax(NORM_IN_BITS), (rows, d), NORM_IN_BITS, True)
    x[x == 0] = 1
    m, k = _row_scales(rng, rows, 8, 24)
    gamma = _ints(rng, -(1 << 15), 1 << 15, (d,), GAMMA_BITS, True)
    gamma[gamma == 0] = 1 << 14
    return _rmsnorm_case({"x": x, "m": m, "k": k, "gamma": gamma}, cfg, "error")


def _rmsnorm_edges(cfg):
    lo, hi = _smin(NORM_IN_BITS), _smax(NORM_IN_BITS)
    gmin, gmax = _smin(GAMMA_BITS), _smax(GAMMA_BITS)
    m, k = _arr([1 << 15] * 4, MBITS, False), _arr([8, 16, 24, 30], KBITS, False)

    def case(label, rows, gamma, zero_rows="error"):
        x = _arr(rows, NORM_IN_BITS, True)
        r = x.shape[0]
        inputs = {"x": x, "m": m[:r], "k": k[:r], "gamma": _arr(gamma, GAMMA_BITS, True)}
        return (label, *_rmsnorm_case(inputs, cfg, zero_rows))

    return [
        case("width_extremes", [[lo, hi, 1, -1], [lo] * 4, [hi, 0, 0, 0], [1, 0, 0, 0]], [gmin, gmax, gmax, gmin]),
        case("zero_range_row", [[0, 0, 0, 0], [3, -3, 3, -3]], [1 << 14] * 4, zero_rows="zero"),
    ]


def _rmsnorm_outputs(attrs):
    signed = bool(attrs["out_symmetric"])
    return {"q": TensorSpec(attrs["out_bits"], signed), "zp": TensorSpec(attrs["out_bits"], signed),
            "m": SCALE, "k": SHIFT}


RMSNORM = OpCases(
    configs={f"{'s' if sym else 'a'}{o}": {"out_bits": o, "out_symmetric": sym}
             for sym in (False, True) for o in (8, 4)},
    random_case=_rmsnorm_random, edge_cases=_rmsnorm_edges, output_specs=_rmsnorm_outputs)


# ------------------------------------------------------------------------------- residual_add

RESIDUAL_A_BITS = 16


def _residual_case(inputs, cfg, zero_rows):
    attrs = {"a_bits": RESIDUAL_A_BITS, "b_bits": cfg["b_bits"], "a_signed": True, "b_signed": False,
             "out_bits": cfg["out_bits"], "zero_rows": zero_rows}
    a_spec, b_spec = TensorSpec(RESIDUAL_A_BITS, True), TensorSpec(cfg["b_bits"], False)
    specs = {"a": a_spec, "a_zp": a_spec, "a_m": SCALE, "a_k": SHIFT,
             "b": b_spec, "b_zp": b_spec, "b_m": SCALE, "b_k": SHIFT}
    scales = {"in.a": _dyadic("in.a_m", "in.a_k", "in.a_zp"), "in.b": _dyadic("in.b_m", "in.b_k", "in.b_zp"),
              "out.q": _dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _residual_random(rng, cfg):
    bb = cfg["b_bits"]
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    a = _ints(rng, _smin(RESIDUAL_A_BITS), _smax(RESIDUAL_A_BITS), (rows, n), RESIDUAL_A_BITS, True)
    b = _ints(rng, 0, (1 << bb) - 1, (rows, n), bb, False)
    b_zp = _ints(rng, 0, (1 << bb) - 1, (rows,), bb, False)
    a_m, a_k = _row_scales(rng, rows, 20, 40)
    b_m, b_k = _row_scales(rng, rows, 20, 40)
    inputs = {"a": a, "a_zp": np.zeros(rows, dtype=a.dtype), "a_m": a_m, "a_k": a_k,
              "b": b, "b_zp": b_zp, "b_m": b_m, "b_k": b_k}
    return _residual_case(inputs, cfg, "zero")


def _residual_edges(cfg):
    bb = cfg["b_bits"]
    lo, hi, bmax = _smin(RESIDUAL_A_BITS), _smax(RESIDUAL_A_BITS), (1 << bb) - 1
    m_hi = (1 << 16) - 1

    def case(label, a, b, b_zp, a_k, b_k, a_m=m_hi, b_m=m_hi):
        rows = len(a)
        inputs = {"a": _arr(a, RESIDUAL_A_BITS, True), "a_zp": _arr([0] * rows, RESIDUAL_A_BITS, True),
                  "a_m": _arr([a_m] * rows, MBITS, False), "a_k": _arr(a_k, KBITS, False),
                  "b": _arr(b, bb, False), "b_zp": _arr(b_zp, bb, False),
                  "b_m": _arr([b_m] * rows, MBITS, False), "b_k": _arr(b_k, KBITS, False)}
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


# ------------------------------------------------------------------------------- di_swiglu

def _swiglu_case(inputs, cfg, zero_rows):
    attrs = {"in_bits": cfg["in_bits"], "order": cfg["order"], "out_bits": cfg["out_bits"],
             "zero_rows": zero_rows}
    spec = TensorSpec(cfg["in_bits"], False)
    specs = {"gate": spec, "gate_zp": spec, "gate_m": SCALE, "gate_k": SHIFT,
             "up": spec, "up_zp": spec, "up_m": SCALE, "up_k": SHIFT}
    scales = {"in.gate": _dyadic("in.gate_m", "in.gate_k", "in.gate_zp"),
              "in.up": _dyadic("in.up_m", "in.up_k", "in.up_zp"), "out.q": _dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _swiglu_random(rng, cfg):
    ib = cfg["in_bits"]
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    gate, up = (_ints(rng, 0, (1 << ib) - 1, (rows, n), ib, False) for _ in range(2))
    gate_zp, up_zp = (_ints(rng, 0, (1 << ib) - 1, (rows,), ib, False) for _ in range(2))
    # gate scales 2^-(k - 16) with k in [22, 30]: |t| of the sigmoid's DI-Exp in ~45 .. 11400
    gate_m, gate_k = _row_scales(rng, rows, 22, 30)
    up_m, up_k = _row_scales(rng, rows, 16, 24)
    inputs = {"gate": gate, "gate_zp": gate_zp, "gate_m": gate_m, "gate_k": gate_k,
              "up": up, "up_zp": up_zp, "up_m": up_m, "up_k": up_k}
    return _swiglu_case(inputs, cfg, "zero")


def _swiglu_edges(cfg):
    ib = cfg["in_bits"]
    vmax = (1 << ib) - 1
    spec = dict(bits=ib, signed=False)

    def case(label, gate, gate_zp, up, up_zp, gate_k):
        rows = len(gate)
        inputs = {"gate": _arr(gate, **spec), "gate_zp": _arr(gate_zp, **spec),
                  "gate_m": _arr([1 << 15] * rows, MBITS, False), "gate_k": _arr(gate_k, KBITS, False),
                  "up": _arr(up, **spec), "up_zp": _arr(up_zp, **spec),
                  "up_m": _arr([1 << 15] * rows, MBITS, False), "up_k": _arr([20] * rows, KBITS, False)}
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


# ------------------------------------------------------------------------------- di_matmul_av

def _matmul_av_case(inputs, cfg, zero_rows):
    attrs = {"p_bits": cfg["p_bits"], "p_frac_bits": cfg.get("p_frac_bits", cfg["p_bits"]), "v_bits": cfg["v_bits"],
             "acc_bits": 48,
             "out_bits": cfg["out_bits"], "out_symmetric": cfg["out_symmetric"], "zero_rows": zero_rows}
    specs = {"p": TensorSpec(cfg["p_bits"], False), "v": TensorSpec(cfg["v_bits"], True), "v_m": SCALE,
             "v_k": SHIFT}
    scales = {"in.p": _dyadic(1, "attr.p_frac_bits"), "out.q": _dyadic("out.m", "out.k", "out.zp")}
    return inputs, attrs, specs, scales


def _matmul_av_random(rng, cfg):
    pb, vb = cfg["p_bits"], cfg["v_bits"]
    m_rows, t, d = int(rng.integers(1, 5)), int(rng.integers(1, 25)), int(rng.integers(1, 9))
    p = _ints(rng, 0, (1 << pb) - 1, (m_rows, t), pb, False)
    p[:, 0] = np.where(p[:, 0] == 0, 1, p[:, 0])
    v = _ints(rng, _smin(vb), _smax(vb), (t, d), vb, True)
    v[0, :] = np.where(v[0, :] == 0, 1, v[0, :])
    v_m, v_k = _row_scales(rng, t, 16, 24)
    return _matmul_av_case({"p": p, "v": v, "v_m": v_m, "v_k": v_k}, cfg, "zero")


def _matmul_av_edges(cfg):
    pb, vb = cfg["p_bits"], cfg["v_bits"]
    pmax, vmin, vmax = (1 << pb) - 1, _smin(vb), _smax(vb)
    t = 24

    def case(label, p, v, v_m, v_k):
        inputs = {"p": _arr(p, pb, False), "v": _arr(v, vb, True), "v_m": _arr(v_m, MBITS, False),
                  "v_k": _arr(v_k, KBITS, False)}
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


# ------------------------------------------------------------------------------- di_silu

def _silu_case(inputs, cfg, zero_rows):
    attrs = {"in_bits": cfg["in_bits"], "order": cfg["order"], "out_bits": cfg["out_bits"], "zero_rows": zero_rows}
    spec = TensorSpec(cfg["in_bits"], False)
    specs = {"x": spec, "zp": spec, "m": SCALE, "k": SHIFT}
    return inputs, attrs, specs, {"in.x": _dyadic("in.m", "in.k", "in.zp"), "out.q": _dyadic("out.m", "out.k", "out.zp")}


def _silu_random(rng, cfg):
    ib = cfg["in_bits"]
    rows, n = int(rng.integers(1, 5)), int(rng.integers(1, 25))
    x = _ints(rng, 0, (1 << ib) - 1, (rows, n), ib, False)
    zp = _ints(rng, 0, (1 << ib) - 1, (rows,), ib, False)
    m, k = _row_scales(rng, rows, 22, 30)  # as the swiglu gate: |t| of the sigmoid's DI-Exp ~45 .. 11400
    return _silu_case({"x": x, "zp": zp, "m": m, "k": k}, cfg, "zero")


def _silu_edges(cfg):
    ib = cfg["in_bits"]
    vmax = (1 << ib) - 1

    def case(label, x, zp, k):
        rows = len(x)
        inputs = {"x": _arr(x, ib, False), "zp": _arr(zp, ib, False),
                  "m": _arr([1 << 15] * rows, MBITS, False), "k": _arr(k, KBITS, False)}
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


# ------------------------------------------------------------------------------- di_layernorm

def _layernorm_case(inputs, cfg, zero_rows):
    attrs = {"gamma_k": 14, "in_bits": NORM_IN_BITS, "out_bits": cfg["out_bits"],
             "out_symmetric": cfg["out_symmetric"], "zero_rows": zero_rows}
    gspec = TensorSpec(GAMMA_BITS, True)
    specs = {"x": TensorSpec(NORM_IN_BITS, True), "m": SCALE, "k": SHIFT, "gamma": gspec, "beta": gspec}
    return inputs, attrs, specs, {"in.x": _dyadic("in.m", "in.k"), "in.gamma": _dyadic(1, "attr.gamma_k"),
                                  "in.beta": _dyadic(1, "attr.gamma_k"),
                                  "out.q": _dyadic("out.m", "out.k", "out.zp")}


def _layernorm_random(rng, cfg):
    rows, d = int(rng.integers(1, 5)), int(rng.integers(2, 25))
    x = _ints(rng, _smin(NORM_IN_BITS), _smax(NORM_IN_BITS), (rows, d), NORM_IN_BITS, True)
    x[:, 0] = np.where(x[:, 0] == x[:, 1], x[:, 1] ^ 1, x[:, 0])  # no accidental constant rows
    m, k = _row_scales(rng, rows, 8, 24)
    gamma = _ints(rng, -(1 << 15), 1 << 15, (d,), GAMMA_BITS, True)
    gamma[gamma == 0] = 1 << 14
    beta = _ints(rng, -(1 << 15), 1 << 15, (d,), GAMMA_BITS, True)
    return _layernorm_case({"x": x, "m": m, "k": k, "gamma": gamma, "beta": beta}, cfg, "zero")


def _layernorm_edges(cfg):
    lo, hi = _smin(NORM_IN_BITS), _smax(NORM_IN_BITS)
    gmin, gmax = _smin(GAMMA_BITS), _smax(GAMMA_BITS)
    m, k = _arr([1 << 15] * 4, MBITS, False), _arr([8, 16, 24, 30], KBITS, False)

    def case(label, rows, gamma, beta):
        x = _arr(rows, NORM_IN_BITS, True)
        r = x.shape[0]
        inputs = {"x": x, "m": m[:r], "k": k[:r], "gamma": _arr(gamma, GAMMA_BITS, True),
                  "beta": _arr(beta, GAMMA_BITS, True)}
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
    random_case=_layernorm_random, edge_cases=_layernorm_edges, output_specs=_rmsnorm_outputs)


# ------------------------------------------------------------------------------- di_rope

ROPE_FRAC_BITS = 14
ROPE_POSITIONS = 16


def _rope_tables(d):
    from ilsim.ops.rope import rope_tables
    tables = rope_tables(ROPE_POSITIONS, d, frac_bits=ROPE_FRAC_BITS)
    spec = dict(bits=ROPE_FRAC_BITS + 2, signed=True)
    return _arr(tables.cos, **spec), _arr(tables.sin, **spec)


def _rope_case(inputs, cfg):
    attrs = {"in_bits": cfg["in_bits"], "in_signed": cfg["in_signed"], "table_frac_bits": ROPE_FRAC_BITS,
             "out_bits": cfg["out_bits"], "out_symmetric": cfg["out_symmetric"], "zero_rows": "zero"}
    spec = TensorSpec(cfg["in_bits"], cfg["in_signed"])
    tspec = TensorSpec(ROPE_FRAC_BITS + 2, True)
    specs = {"x": spec, "zp": spec, "m": SCALE, "k": SHIFT, "positions": TensorSpec(16, False),
             "cos": tspec, "sin": tspec}
    return inputs, attrs, specs, {"in.x": _dyadic("in.m", "in.k", "in.zp"), "in.cos": _dyadic(1, "attr.table_frac_bits"),
                                  "in.sin": _dyadic(1, "attr.table_frac_bits"),
                                  "out.q": _dyadic("out.m", "out.k", "out.zp")}


def _rope_lims(cfg):
    ib = cfg["in_bits"]
    return (_smin(ib), _smax(ib)) if cfg["in_signed"] else (0, (1 << ib) - 1)


def _rope_random(rng, cfg):
    ib, (lo, hi) = cfg["in_bits"], _rope_lims(cfg)
    t_len, d = int(rng.integers(1, 5)), 2 * int(rng.integers(1, 9))
    x = _ints(rng, lo, hi, (t_len, d), ib, cfg["in_signed"])
    zp = _ints(rng, lo, hi, (t_len,), ib, cfg["in_signed"])
    m, k = _row_scales(rng, t_len, 16, 24)
    positions = _ints(rng, 0, ROPE_POSITIONS - 1, (t_len,), 16, False)
    cos, sin = _rope_tables(d)
    return _rope_case({"x": x, "zp": zp, "m": m, "k": k, "positions": positions, "cos": cos, "sin": sin}, cfg)


def _rope_edges(cfg):
    ib, (lo, hi) = cfg["in_bits"], _rope_lims(cfg)
    d = 8
    cos, sin = _rope_tables(d)
    last = ROPE_POSITIONS - 1
    # positions 0 (identity rotation) and the last table row; |x - zp| at its widest; a zero row
    x = _arr([[hi] * 4 + [lo] * 4, [lo, hi] * 4, [hi] * 8, [lo] * 4 + [hi] * 4], ib, cfg["in_signed"])
    zp = _arr([lo, hi, hi, lo], ib, cfg["in_signed"])
    inputs = {"x": x, "zp": zp, "m": _arr([(1 << 16) - 1, 1 << 15, 1 << 15, (1 << 16) - 1], MBITS, False),
              "k": _arr([16, 20, 24, 16], KBITS, False), "positions": _arr([0, last, 0, last], 16, False),
              "cos": cos, "sin": sin}
    return [("positions_and_extremes", *_rope_case(inputs, cfg))]


ROPE = OpCases(
    configs={f"{'s' if sgn else 'u'}{i}o{o}{'s' if sym else 'a'}":
             {"in_bits": i, "in_signed": sgn, "out_bits": o, "out_symmetric": sym}
             for i, sgn, o, sym in ((8, False, 8, False), (8, True, 8, True), (4, False, 4, False), (16, True, 8, True))},
    random_case=_rope_random, edge_cases=_rope_edges, output_specs=_rmsnorm_outputs)


# ------------------------------------------------------------------------------- embedding_lookup

EMBED_VOCAB = 16


def _embedding_case(inputs, cfg):
    specs = {"ids": TensorSpec(16, False), "table": TensorSpec(cfg["bits"], True), "table_m": SCALE,
             "table_k": SHIFT}
    return inputs, {"bits": cfg["bits"]}, specs, {"in.table": _dyadic("in.table_m", "in.table_k"),
                                                  "out.q": _dyadic("out.m", "out.k", "out.zp")}


def _embedding_table(rng, bits, d):
    table = _ints(rng, _smin(bits) + 1, _smax(bits), (EMBED_VOCAB, d), bits, True)
    table[0, :] = _smax(bits)
    table[EMBED_VOCAB - 1, :] = -_smax(bits)
    table_m, table_k = _row_scales(rng, EMBED_VOCAB, 8, 30)
    return table, table_m, table_k


def _embedding_random(rng, cfg):
    d, n = int(rng.integers(1, 25)), int(rng.integers(1, 9))
    table, table_m, table_k = _embedding_table(rng, cfg["bits"], d)
    ids = _ints(rng, 0, EMBED_VOCAB - 1, (n,), 16, False)
    return _embedding_case({"ids": ids, "table": table, "table_m": table_m, "table_k": table_k}, cfg)


def _embedding_edges(cfg):
    rng = np.random.default_rng(case_seed(DEFAULT_SEED, "embedding_lookup_edges", str(cfg["bits"])))
    table, table_m, table_k = _embedding_table(rng, cfg["bits"], 8)
    table[1, :] = 0  # an all-zero row (m = 0, k = 0 as the offline quantizer writes it)
    table_m[1], table_k[1] = 0, 0
    table[2, :] = _smin(cfg["bits"])
    last = EMBED_VOCAB - 1
    ids = _arr([[0, last, 1], [2, last, 0]], 16, False)
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
    return inputs, attrs, specs, {"in.q": _dyadic("in.m", "in.k", "in.zp"),
                                  "out.q": _dyadic("out.m", "out.k", "out.zp")}


def _hadamard_lims(cfg):
    ib = cfg["in_bits"]
    return (_smin(ib), _smax(ib)) if cfg["in_signed"] else (0, (1 << ib) - 1)


def _hadamard_random(rng, cfg):
    ib, n, (lo, hi) = cfg["in_bits"], cfg["n"], _hadamard_lims(cfg)
    rows = int(rng.integers(1, 5))
    q = _ints(rng, lo, hi, (rows, n), ib, cfg["in_signed"])
    zp = _ints(rng, lo, hi, (rows,), ib, cfg["in_signed"])
    q[:, 0] = np.where(q[:, 0] == zp, np.where(zp == lo, hi, lo), q[:, 0])  # no accidental zero rows
    m, k = _row_scales(rng, rows, 16, 24)
    return _hadamard_case({"q": q, "zp": zp, "m": m, "k": k}, cfg, "error")


def _hadamard_edges(cfg):
    ib, n, sgn, (lo, hi) = cfg["in_bits"], cfg["n"], cfg["in_signed"], _hadamard_lims(cfg)
    c = (hi - lo) // 3

    def case(label, q, zp, k):
        rows = len(q)
        m = [(1 << 16) - 1 if r % 2 == 0 else 1 << 15 for r in range(rows)]  # the widest and the smallest m
        inputs = {"q": _arr(q, ib, sgn), "zp": _arr(zp, ib, sgn), "m": _arr(m, MBITS, False),
                  "k": _arr(k, KBITS, False)}
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


GOLDEN_OPS: dict[str, OpCases] = {
    "quantize_rows": QUANTIZE,
    "di_matmul": MATMUL,
    "di_exp": EXP,
    "di_softmax": SOFTMAX,
    "di_rmsnorm": RMSNORM,
    "residual_add": RESIDUAL,
    "di_swiglu": SWIGLU,
    "di_matmul_av": MATMUL_AV,
    "di_silu": SILU,
    "di_layernorm": LAYERNORM,
    "di_rope": ROPE,
    "embedding_lookup": EMBEDDING,
    "di_hadamard": HADAMARD,
}


def golden_op_names() -> list[str]:
    return list(GOLDEN_OPS)


def op_cases(op: str) -> OpCases:
    if op not in GOLDEN_OPS:
        raise InputError(f"golden: no golden cases for operator {op!r}; available: {', '.join(GOLDEN_OPS)}")
    return GOLDEN_OPS[op]


def generate_cases(op: str, n_random: int = DEFAULT_CASES, seed: int = DEFAULT_SEED) -> list[GoldenCase]:
    """Every case of ``op``: per configuration, its edge cases, then ``n_random`` seeded random cases."""
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise InputError(f"golden: cases per configuration must be an int >= 0, got {n_random!r}")
    spec = op_cases(op)
    out = []
    for config, cfg in spec.configs.items():
        for label, inputs, attrs, specs, scales in spec.edge_cases(cfg):
            out.append(GoldenCase(op, config, f"{config}_edge_{label}", "edge", inputs, attrs, specs, scales))
        rng = np.random.default_rng(case_seed(seed, op, config))
        for i in range(n_random):
            inputs, attrs, specs, scales = spec.random_case(rng, cfg)
            out.append(GoldenCase(op, config, f"{config}_rand_{i:03d}", "random", inputs, attrs, specs, scales))
    return out
