"""Hypothesis strategies of keyword-argument dicts for DI-Exp, DI-ClippedSoftmax, DI-SiLU, DI-SwiGLU.

Each ``<op>_cases(**kw)`` draws ``dict``s that call the operator directly: ``op(**case)``. They aim
at the edges of each contract: every input width, scales from the largest allowed (|t| = 1,
including the only exact ties of |t| = round(2^k / m_f)) to the smallest that still fits, shifts
of 62 and 63 (the Python-int path), x = 0, the most negative x, exact multiples of t (r = 0) and
their neighbours (r = t + 1), q >= 64, clip boundaries (d == -c_int and -c_int - 1), all-equal
and one-hot rows, causal and random masks, zero points at both ends, zero rows, every attribute.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from hypothesis import strategies as st

from ilsim.testing.parity import assert_fast_equals_reference  # noqa: F401 (re-exported)

from ilsim.arith.rounding import Rounding
from ilsim.ops.exp import ORDER2_T_BITS, ORDERS, SCALE_MBITS, exp_t_abs_reference, log2e_multiplier
from ilsim.ops.softmax import clip_int_reference
from ilsim.ops.swiglu import SIGMOID_EXP_BITS
from ilsim.testing.strategies import edge_values, int_arrays, multipliers, shapes_2d
from ilsim.widths import int_range


def _smallest_m(target: int) -> int | None:
    """The smallest m in [1, 2^30) with m_f(m) >= target (m_f is non-decreasing in m)."""
    lo, hi = 1, (1 << SCALE_MBITS) - 1
    if log2e_multiplier(hi) < target:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if log2e_multiplier(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _tie_scales() -> list[tuple[int, int]]:
    """(m, k) with m_f = 2^(k+1): 2^k / m_f is exactly 1/2, the only ties of |t|'s rounding (|t| = 1)."""
    out = []
    for k in range(0, 29):
        m = _smallest_m(1 << (k + 1))
        if m is not None and log2e_multiplier(m) == 1 << (k + 1):
            out.append((m, k))
    return out


#: Scales whose |t| = round(2^k / m_f) is an exact tie (2^k / m_f = 1/2, |t| = 1 with half-up).
TIE_SCALES = _tie_scales()


def _largest_k(m: int, limit: int) -> int | None:
    """The largest k in [0, 63] with 1 <= |t|(m, k) <= limit (|t| is non-decreasing in k)."""
    best = None
    for k in range(64):
        t_abs = exp_t_abs_reference(m, k)
        if t_abs > limit:
            break
        if t_abs >= 1:
            best = k
    return best


@st.composite
def exp_scales(draw, t_bits: int, min_t_bits: int = 0):
    """A scale (m, k) for DI-Exp with 2^min_t_bits <= |t| <= 2^t_bits - 1 where possible: ties
    (|t| = 1), the largest |t| allowed, shifts 62/63, and normalised 16-bit or 30-bit multipliers."""
    limit = (1 << t_bits) - 1
    kind = draw(st.sampled_from(["random"] * 5 + ["tie", "max", "big_k"]))
    if kind == "tie" and min_t_bits == 0:
        return draw(st.sampled_from(TIE_SCALES))
    if kind == "big_k":
        k = draw(st.sampled_from([62, 63]))
        m_min = _smallest_m(-(-(1 << k) // limit))  # m_f >= 2^k / limit keeps |t| near or below limit
        if m_min is not None:
            m = draw(st.integers(m_min, (1 << SCALE_MBITS) - 1))
            if 1 << min_t_bits <= exp_t_abs_reference(m, k) <= limit:
                return m, k
    m = draw(st.one_of(multipliers(16), multipliers(16), multipliers(SCALE_MBITS)))
    k_max = _largest_k(m, limit)
    if k_max is None:
        return TIE_SCALES[0]
    if kind == "max" or exp_t_abs_reference(m, k_max) < 1 << min_t_bits:
        return m, k_max
    k_min = next(k for k in range(k_max + 1) if exp_t_abs_reference(m, k) >= 1 << min_t_bits)
    return m, draw(st.integers(k_min, k_max))


def _scale_arrays(draw, scale_shape, t_bits, min_t_bits=0):
    n = int(np.prod(scale_shape, dtype=np.int64))
    pairs = [draw(exp_scales(t_bits, min_t_bits)) for _ in range(n)]
    m = np.array([p[0] for p in pairs], dtype=np.int64).reshape(scale_shape)
    k = np.array([p[1] for p in pairs], dtype=np.int64).reshape(scale_shape)
    return m, k


def _shape(draw, max_rows, max_cols, max_dims=3):
    rows, cols = draw(shapes_2d(max_rows=max_rows, max_cols=max_cols))
    ndim = draw(st.integers(1, max_dims))
    if ndim == 1:
        return (cols,)
    if ndim == 2:
        return (rows, cols)
    return (draw(st.integers(1, 2)), rows, cols)


# ---------------------------------------------------------------- DI-Exp

def _exp_value(draw, t_abs: int, lo: int) -> int:
    """One x <= 0 of the width's range [lo, 0], aimed at DI-Exp's edges for this |t|."""
    kind = draw(st.sampled_from(["uniform"] * 4 + ["zero", "lo", "minus1", "r0", "r_t1", "deep"]))
    if kind in ("r0", "r_t1"):  # r = 0 (an exact multiple of t) or r = t + 1, for some q in [0, 70]
        q = draw(st.integers(0, 70))
        value = -q * t_abs if kind == "r0" else -(q * t_abs + t_abs - 1)
    elif kind == "deep":        # q >= 64
        value = -(64 * t_abs + draw(st.integers(0, 3 * t_abs)))
    else:
        value = {"zero": 0, "lo": lo, "minus1": -1}.get(kind, lo - 1)
    return value if lo <= value <= 0 else draw(st.integers(lo, 0))


@st.composite
def di_exp_cases(draw, in_bits=None, out_bits=None, order=None, max_rows: int = 4, max_cols: int = 9):
    """kwargs for di_exp: x <= 0 of in_bits 2..16 (and wider), scalar / per-row / per-element scales."""
    if in_bits is None:
        in_bits = draw(st.one_of(st.integers(2, 16), st.sampled_from([17, 24, 32, 62])))
    if order is None:
        order = draw(st.sampled_from(ORDERS))
    if out_bits is None:
        out_bits = draw(st.one_of(st.sampled_from([32, 32, 16, 8, 2, 48, 62]), st.integers(2, 62)))
    t_bits = min(out_bits, ORDER2_T_BITS) if order == 2 else out_bits
    shape = _shape(draw, max_rows, max_cols)
    layout = draw(st.sampled_from(["scalar", "python_int", "row", "element", "column"]))
    scale_shape = {"scalar": (), "python_int": (), "row": shape[:-1] + (1,), "element": shape,
                   "column": shape[-1:]}[layout]
    m, k = _scale_arrays(draw, scale_shape, t_bits)
    lo = int_range(in_bits, True)[0]
    t_abs = np.vectorize(exp_t_abs_reference, otypes=[object])(m, k)
    t_full = np.broadcast_to(t_abs, shape).reshape(-1)
    x = np.array([_exp_value(draw, int(t), lo) for t in t_full], dtype=np.int64).reshape(shape)
    if layout == "python_int":
        m, k = int(m), int(k)
    return dict(x=x, m=m, k=k, in_bits=in_bits, out_bits=out_bits, order=order)


# ---------------------------------------------------------------- DI-ClippedSoftmax

def _clips():
    return st.one_of(st.sampled_from([15, None, 1, Fraction(15, 2), Fraction(1, 3), Fraction(31, 4)]),
                     st.integers(1, 40),
                     st.builds(Fraction, st.integers(1, 200), st.integers(1, 16)))


def _softmax_row(draw, row: np.ndarray, lo: int, hi: int, c_int: int | None) -> None:
    """Rewrite one row in place with a softmax edge pattern."""
    n = row.size
    pattern = draw(st.sampled_from(["keep"] * 4 + ["equal", "one_hot", "clip_edge", "extremes"]))
    if pattern == "equal":
        row[:] = draw(st.integers(lo, hi))
    elif pattern == "one_hot":
        row[:] = draw(st.sampled_from([lo, lo // 2, 0]))
        row[draw(st.integers(0, n - 1))] = hi
    elif pattern == "extremes":
        row[:] = [draw(st.sampled_from([lo, hi])) for _ in range(n)]
    elif pattern == "clip_edge" and c_int is not None:
        top = draw(st.integers(lo, hi))
        row[0] = top
        for j in range(1, n):  # d exactly at the clamp, one past it, one inside it
            v = top - c_int + draw(st.sampled_from([0, -1, 1, 0]))
            row[j] = v if lo <= v <= top else top
        perm = draw(st.permutations(list(range(n))))
        row[:] = row[perm]


def _softmax_mask(draw, shape) -> np.ndarray | None:
    kind = draw(st.sampled_from(["none", "none", "causal", "random"]))
    if kind == "none":
        return None
    n = shape[-1]
    if kind == "causal":
        if len(shape) == 1:
            return np.ones(n, dtype=bool)
        q = shape[-2]
        return np.arange(n)[None, :] <= np.arange(q)[:, None] + max(n - q, 0)
    keep = np.array([draw(st.booleans()) for _ in range(int(np.prod(shape)))], dtype=bool).reshape(shape)
    flat = keep.reshape(-1, n)
    for r in range(flat.shape[0]):
        if not flat[r].any():
            flat[r, draw(st.integers(0, n - 1))] = True
    return keep


@st.composite
def di_softmax_cases(draw, in_bits=None, order=None, max_rows: int = 4, max_cols: int = 12):
    """kwargs for di_softmax: rows with ties, one-hot, clip-edge and extreme patterns; masks; every
    output width 2..8 and 16 with out_frac_bits n (saturating), n - 1 and below."""
    if in_bits is None:
        in_bits = draw(st.one_of(st.integers(2, 16), st.integers(17, 32)))
    if order is None:
        order = draw(st.sampled_from(ORDERS))
    out_bits = draw(st.one_of(st.integers(2, 8), st.just(16)))
    out_frac_bits = draw(st.sampled_from([out_bits, out_bits - 1, max(1, out_bits - 2), 1])) if out_bits > 1 else 1
    out_frac_bits = max(1, out_frac_bits)
    sum_bits = draw(st.one_of(st.sampled_from([32, 32, 24, 16]), st.integers(2, 32)))
    shape = _shape(draw, max_rows, max_cols)
    t_bits = max(1, min(sum_bits - shape[-1].bit_length(), 20, ORDER2_T_BITS))  # N * |t| fits sum_bits
    per_row = draw(st.booleans())
    m, k = _scale_arrays(draw, shape[:-1] if per_row else (), t_bits)
    clip = draw(_clips())
    lo, hi = int_range(in_bits, True)
    x = draw(int_arrays(in_bits, True, shape=shape))
    rows, m_rows, k_rows = x.reshape(-1, shape[-1]), np.broadcast_to(m, shape[:-1]).reshape(-1), \
        np.broadcast_to(k, shape[:-1]).reshape(-1)
    for r in range(rows.shape[0]):
        c_int = None if clip is None else clip_int_reference(Fraction(clip), int(m_rows[r]), int(k_rows[r]))
        _softmax_row(draw, rows[r], lo, hi, c_int)
    return dict(x=x, m=m, k=k, in_bits=in_bits, clip=clip, out_bits=out_bits, out_frac_bits=out_frac_bits,
                mask=_softmax_mask(draw, shape), order=order, sum_bits=sum_bits)


# ---------------------------------------------------------------- DI-SiLU and DI-SwiGLU

def _act_attrs(draw, operands: int, in_bits=None, order=None):
    if in_bits is None:
        in_bits = draw(st.one_of(st.integers(2, 8), st.sampled_from([12, 16])))
    out_bits = draw(st.one_of(st.integers(2, 8), st.just(16)))
    limit = 62 - out_bits - operands * in_bits - 1  # w_bits + out_bits <= 62
    sig_frac_bits = min(draw(st.one_of(st.sampled_from([15, 15, 1, 8, 16, 30]), st.integers(1, 30))), limit)
    return dict(in_bits=in_bits, in_signed=draw(st.booleans()), sig_frac_bits=sig_frac_bits, out_bits=out_bits,
                out_symmetric=draw(st.booleans()),
                order=draw(st.sampled_from(ORDERS)) if order is None else order,
                zero_rows=draw(st.sampled_from(["error", "zero"])),
                rounding=draw(st.sampled_from([r.value for r in Rounding] + ["half_up"] * 3)))


def _zero_points(draw, rows_shape, bits, signed):
    lo, hi = int_range(bits, signed)
    if draw(st.booleans()):
        return draw(st.sampled_from(edge_values(bits, signed)))
    n = int(np.prod(rows_shape, dtype=np.int64))
    vals = [draw(st.one_of(st.sampled_from([lo, hi, (lo + hi + 1) // 2]), st.integers(lo, hi))) for _ in range(n)]
    return np.array(vals, dtype=np.int64).reshape(rows_shape)


def _operand_case(draw, prefix, shape, attrs, t_bits, min_t_bits=0):
    bits, signed = attrs["in_bits"], attrs["in_signed"]
    per_row = draw(st.booleans())
    m, k = _scale_arrays(draw, shape[:-1] if per_row else (), t_bits, min_t_bits)
    return {prefix: draw(int_arrays(bits, signed, shape=shape)),
            f"{prefix}_zp": _zero_points(draw, shape[:-1], bits, signed), f"{prefix}_m": m, f"{prefix}_k": k}


def _sigmoid_t_bits(order: int) -> int:
    return min(SIGMOID_EXP_BITS, ORDER2_T_BITS) if order == 2 else SIGMOID_EXP_BITS


@st.composite
def di_silu_cases(draw, in_bits=None, order=None, max_rows: int = 4, max_cols: int = 12):
    """kwargs for di_silu: every input width/signedness, zero points at both ends, zero rows,
    sigmoid scales from |t| = 1 up, every rounding mode and output format."""
    attrs = _act_attrs(draw, 1, in_bits, order)
    shape = _shape(draw, max_rows, max_cols)
    t_bits = min(_sigmoid_t_bits(attrs["order"]), draw(st.sampled_from([12, 20, 26, 32])))
    case = _operand_case(draw, "x", shape, attrs, t_bits)
    return dict(x=case["x"], zp=case["x_zp"], m=case["x_m"], k=case["x_k"], **attrs)


@st.composite
def di_swiglu_cases(draw, in_bits=None, order=None, max_rows: int = 4, max_cols: int = 12):
    """kwargs for di_swiglu: as di_silu_cases for gate and up, with the per-channel FSBR gate_div
    factor absent or present (scaling the sigmoid input by 2^-5 .. 2^4)."""
    attrs = _act_attrs(draw, 2, in_bits, order)
    shape = _shape(draw, max_rows, max_cols)
    with_div = draw(st.booleans())
    t_bits = min(_sigmoid_t_bits(attrs["order"]) - (6 if with_div else 0), draw(st.sampled_from([12, 20, 32])))
    case = _operand_case(draw, "gate", shape, attrs, t_bits, min_t_bits=5 if with_div else 0)
    case.update(_operand_case(draw, "up", shape, attrs, draw(st.sampled_from([12, 20, 32]))))
    if with_div:
        n = shape[-1]
        div_m = np.array([draw(st.one_of(st.integers(1 << 15, (1 << 16) - 1), st.sampled_from([1 << 15, 65535])))
                          for _ in range(n)], dtype=np.int64)
        div_k = np.array([draw(st.integers(12, 20)) for _ in range(n)], dtype=np.int64)
        case.update(gate_div_m=div_m, gate_div_k=div_k)
    return dict(**case, **attrs)


# ---------------------------------------------------------------- checking a case
