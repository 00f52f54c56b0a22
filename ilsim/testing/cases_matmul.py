"""Hypothesis strategies of keyword-argument dicts for the DI-MatMul family (ilsim.ops.matmul).

Each ``<op>_cases(**kw)`` draws a dict that can be passed as ``op(**case)``. They aim at the
edges on purpose: every operand width 2..8 (16 on request), signed and unsigned activations,
symmetric (b_zp = 0) and asymmetric weights, K = 1 and sizes that are not powers of two,
maximal accumulators (every operand at the extreme that makes |x - zp| = 2^bits - 1), accumulator
widths exactly as tight as the data allows, zero-range rows, per-column shift spreads whose
folded multipliers are exact rounding ties, and every rounding mode and output width.

With ``valid_only=True`` (the default) a case never raises; with ``valid_only=False`` some cases
overflow their accumulator or output shift, or hit a zero-range row with zero_rows="error", so
that tests can check that the fast path and the reference fail alike.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

from ilsim.arith.rounding import Rounding
from ilsim.errors import WidthError
from ilsim.ops.matmul import fold_scales_reference
from ilsim.ops.quantize import output_levels, row_output_scale
from ilsim.testing.strategies import QUANT_BITS, edge_values, int_arrays, multipliers
from ilsim.widths import int_range

#: Reduction lengths: 1, small primes, powers of two and their neighbours.
DEPTHS = (1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 32, 33)
ROUNDINGS = tuple(r.value for r in Rounding)
OUT_BITS = (2, 3, 4, 5, 6, 7, 8, 16)
MBITS = (16, 16, 16, 2, 3, 8, 12, 20, 30)


def signed_width(value: int) -> int:
    """The smallest signed width (>= 2) that holds ``value``."""
    return max(2, (abs(value) - (value < 0)).bit_length() + 1)


def _depth(max_k: int):
    """A reduction length K (or T) in [1, max_k], the sizes of DEPTHS favoured."""
    return st.one_of(st.sampled_from([k for k in DEPTHS if k <= max_k]), st.integers(1, max_k))


@st.composite
def _zero_points(draw, x: np.ndarray, bits: int, signed: bool, symmetric: bool = False) -> np.ndarray:
    """One zero point per row of x: 0 when symmetric, else an edge, a random value, or the row's
    own first element (which makes a constant row an all-zero difference: a zero-range row)."""
    if symmetric:
        return np.zeros(x.shape[0], dtype=np.int64)
    lo, hi = int_range(bits, signed)
    zps = []
    for row in x:
        choice = draw(st.sampled_from(["edge", "random", "random", "own"]))
        if choice == "edge":
            zps.append(draw(st.sampled_from(edge_values(bits, signed))))
        elif choice == "own":
            zps.append(int(row[0]))
        else:
            zps.append(draw(st.integers(lo, hi)))
    return np.array(zps, dtype=np.int64)


def _extreme_operands(shape, bits: int, signed: bool, sign: int, symmetric: bool):
    """Operand and zero points with every difference x - zp at its extreme of ``sign``."""
    lo, hi = int_range(bits, signed)
    if symmetric:  # zp = 0: the largest |x| is |lo| for signed, hi for unsigned
        value = hi if sign > 0 else lo
        return np.full(shape, value, dtype=np.int64), np.zeros(shape[0], dtype=np.int64)
    x, zp = (hi, lo) if sign > 0 else (lo, hi)
    return np.full(shape, x, dtype=np.int64), np.full(shape[0], zp, dtype=np.int64)


@st.composite
def _operand_kwargs(draw, a_bits=None, b_bits=None, bits=QUANT_BITS, max_m=6, max_n=7, max_k=33,
                    a_signed=None, b_signed=None):
    """Operands a, a_zp, b, b_zp with their widths and signedness (anything given is kept)."""
    a_bits = draw(st.sampled_from(bits)) if a_bits is None else a_bits
    b_bits = draw(st.sampled_from(bits)) if b_bits is None else b_bits
    a_signed = draw(st.booleans()) if a_signed is None else a_signed
    b_signed = draw(st.sampled_from([True, True, False])) if b_signed is None else b_signed
    weight_symmetric = draw(st.booleans())
    m, n, k = draw(st.integers(1, max_m)), draw(st.integers(1, max_n)), draw(_depth(max_k))
    pattern = draw(st.sampled_from(["random"] * 4 + ["max", "min", "mixed"]))
    if pattern == "random":
        a = draw(int_arrays(a_bits, a_signed, shape=(m, k)))
        b = draw(int_arrays(b_bits, b_signed, shape=(n, k)))
        a_zp = draw(_zero_points(a, a_bits, a_signed))
        b_zp = draw(_zero_points(b, b_bits, b_signed, symmetric=weight_symmetric))
    else:  # maximal accumulators: |acc| = K * max|a'| * max|b'|, of either sign, or mixed per row
        sign_b = 1 if pattern != "min" else -1
        a, a_zp = _extreme_operands((m, k), a_bits, a_signed, 1, False)
        b, b_zp = _extreme_operands((n, k), b_bits, b_signed, sign_b, weight_symmetric)
        if pattern == "mixed":
            neg_a, neg_zp = _extreme_operands((m, k), a_bits, a_signed, -1, False)
            flip = np.array(draw(st.lists(st.booleans(), min_size=m, max_size=m)))
            a[flip], a_zp[flip] = neg_a[flip], neg_zp[flip]
    return dict(a=a, a_zp=a_zp, b=b, b_zp=b_zp, a_bits=a_bits, b_bits=b_bits,
                a_signed=a_signed, b_signed=b_signed)


def exact_accumulator(case: dict) -> np.ndarray:
    """(a - a_zp) @ (b - b_zp)^T on Python ints (object array): the value the op must produce."""
    a = np.array((case["a"] - case["a_zp"][:, None]).tolist(), dtype=object)
    b = np.array((case["b"] - case["b_zp"][:, None]).tolist(), dtype=object)
    return a.dot(b.T)


def _needed_acc_bits(acc: np.ndarray) -> int:
    return signed_width(max(int(acc.max()), -int(acc.min()) - 1, 0) if acc.size else 0)


@st.composite
def _acc_bits(draw, needed: int, limit: int, valid_only: bool):
    """An accumulator width <= limit: the tight one, the default 32, the limit, or one too small."""
    options = [needed, needed, limit, draw(st.integers(needed, limit))]
    if 32 <= limit and needed <= 32:
        options.append(32)
    if not valid_only and needed > 2:
        options.append(needed - 1)
    return draw(st.sampled_from([o for o in options if 2 <= o <= limit] or [limit]))


@st.composite
def matmul_accumulate_cases(draw, valid_only: bool = True, **kw):
    """kwargs for matmul_accumulate; ``kw`` fixes a_bits, b_bits, bits, max_m, max_n, max_k, signs."""
    case = draw(_operand_kwargs(**kw))
    needed = _needed_acc_bits(exact_accumulator(case))
    case["acc_bits"] = draw(_acc_bits(needed, 62, valid_only))
    return case


@st.composite
def column_scales(draw, n: int, mbits: int, max_kref: int = 24):
    """Per-column (m, k): kref drawn, then each k = kref + a spread that is 0, small, or beyond
    mbits (the folded multiplier then rounds to 0 or 1); some m are exact ties for their shift."""
    kref = draw(st.integers(0, max_kref))
    spread = draw(st.sampled_from(["none", "small", "wide"]))
    m, k = [], []
    for _ in range(n):
        shift = {"none": 0, "small": draw(st.integers(0, 3)),
                 "wide": draw(st.integers(0, mbits + 2))}[spread]
        if shift and shift <= mbits and draw(st.booleans()):
            high = draw(st.integers(0, (1 << (mbits - shift)) - 1))
            m.append((high << shift) | (1 << (shift - 1)))  # shifted-out bits are exactly 10...0
        else:
            m.append(draw(st.one_of(multipliers(mbits), st.just(0))))
        k.append(kref + shift)
    if spread != "none":
        k[draw(st.integers(0, n - 1))] = kref  # kref is attained
    return np.array(m, dtype=np.int64), np.array(k, dtype=np.int64)


@st.composite
def _row_scales(draw, rows: int, mbits: int, max_k: int):
    m = [draw(st.one_of(multipliers(mbits), st.just(0))) for _ in range(rows)]
    k = [draw(st.one_of(st.sampled_from([0, max_k]), st.integers(0, max_k))) for _ in range(rows)]
    return np.array(m, dtype=np.int64), np.array(k, dtype=np.int64)


@st.composite
def _wide_kwargs(draw, valid_only: bool, out_bits: int, **kw):
    case = draw(_operand_kwargs(**kw))
    acc = exact_accumulator(case)
    needed = _needed_acc_bits(acc)
    mbits_options = [mb for mb in MBITS if needed + mb + out_bits <= 62]
    mbits = draw(st.sampled_from(mbits_options))
    case["acc_bits"] = draw(_acc_bits(needed, 62 - mbits - out_bits, valid_only))
    case["mbits"] = mbits
    case["rounding"] = draw(st.sampled_from(ROUNDINGS))
    case["b_m"], case["b_k"] = draw(column_scales(len(case["b"]), mbits))
    kref = int(case["b_k"].min())
    max_ak = 63 - kref + (0 if valid_only else draw(st.sampled_from([0, 0, 0, 0, 0, 1])))
    case["a_m"], case["a_k"] = draw(_row_scales(len(case["a"]), mbits, max_ak))
    return case


@st.composite
def di_matmul_wide_cases(draw, valid_only: bool = True, **kw):
    """kwargs for di_matmul_wide (operands as matmul_accumulate_cases, plus scales and rounding)."""
    return draw(_wide_kwargs(valid_only, 0, **kw))


def folded_product(case: dict) -> np.ndarray:
    """p of di_matmul_wide on Python ints (object array), for choosing zero_rows in valid cases."""
    m_folded, _ = fold_scales_reference(case["b_m"].tolist(), case["b_k"].tolist(), case["rounding"])
    return exact_accumulator(case) * np.array(m_folded, dtype=object)[None, :]


def _row_ranges(x: np.ndarray, symmetric: bool) -> list[int]:
    """The per-row range R that quantize_rows derives (symmetric: max|x|; else hi - lo with 0 inside)."""
    if symmetric:
        return [int(max(abs(v) for v in row)) for row in x.tolist()]
    return [int(max(0, max(row)) - min(0, min(row))) for row in x.tolist()]


def _scale_fits(m_in: int, k_in: int, value_range: int, levels: int, mbits: int) -> bool:
    """Whether quantize_rows can represent this row's output scale (k' in [0, 63], m' > 0)."""
    try:
        row_output_scale(m_in, k_in, value_range, levels, mbits)
    except WidthError:
        return False
    return True


def _fitting_shifts(k_in: int, k_max: int) -> list[int]:
    """Shifts to try for an output scale: k_in first, then upward to k_max, then downward."""
    return [k_in] + list(range(k_in + 1, k_max + 1)) + list(range(k_in - 1, -1, -1))


@st.composite
def di_matmul_cases(draw, valid_only: bool = True, out_bits=None, **kw):
    """kwargs for di_matmul: di_matmul_wide_cases plus out_bits (2..8, 16), symmetry, zero_rows.

    Row shifts a_k are moved (as little as possible) so that every row's output scale is
    representable: a real output scale >= 2^mbits (k' < 0) is quantize_rows' own error, covered
    by its tests and by a dedicated test of this operator, not drawn here.
    """
    out_bits = draw(st.sampled_from(OUT_BITS)) if out_bits is None else out_bits
    case = draw(_wide_kwargs(valid_only, out_bits, **kw))
    case["out_bits"] = out_bits
    case["out_symmetric"] = draw(st.booleans())
    p = folded_product(case)
    kref = int(case["b_k"].min())
    levels = output_levels(out_bits, case["out_symmetric"])
    a_m, a_k = case["a_m"].copy(), case["a_k"].copy()
    for i, value_range in enumerate(_row_ranges(p, case["out_symmetric"])):
        if a_k[i] + kref > 63:
            continue  # an output-shift overflow drawn on purpose (valid_only=False)
        fits = [k for k in _fitting_shifts(int(a_k[i]), 63 - kref)
                if _scale_fits(int(a_m[i]), k + kref, value_range, levels, case["mbits"])]
        if fits:
            a_k[i] = fits[0]
        else:
            a_m[i] = 0  # a zero row scale is always representable
    case["a_m"], case["a_k"] = a_m, a_k
    has_zero_row = bool(np.any(np.all(p == 0, axis=1)))
    case["zero_rows"] = "zero" if (valid_only and has_zero_row) else draw(
        st.sampled_from(["zero", "zero", "error"]))
    return case


@st.composite
def _probabilities(draw, m: int, t: int, p_bits: int, p_frac_bits: int) -> np.ndarray:
    """Rows of p: softmax-like (sum near 2^p_frac_bits), one-hot, all at the maximum, or all zero."""
    hi = (1 << p_bits) - 1
    rows = []
    for _ in range(m):
        kind = draw(st.sampled_from(["random", "random", "softmax", "onehot", "max", "zero"]))
        if kind == "max":
            rows.append([hi] * t)
        elif kind == "zero":
            rows.append([0] * t)
        elif kind == "onehot":
            row = [0] * t
            row[draw(st.integers(0, t - 1))] = min(hi, 1 << p_frac_bits)
            rows.append(row)
        elif kind == "softmax":
            budget = min(hi * t, 1 << p_frac_bits)
            cuts = sorted(draw(st.lists(st.integers(0, budget), min_size=t - 1, max_size=t - 1)))
            parts = [b - a for a, b in zip([0] + cuts, cuts + [budget])]
            rows.append([min(hi, v) for v in parts])
        else:
            rows.append(draw(st.lists(st.one_of(st.sampled_from([0, 1, hi]), st.integers(0, hi)),
                                      min_size=t, max_size=t)))
    return np.array(rows, dtype=np.int64)


@st.composite
def di_matmul_av_cases(draw, valid_only: bool = True, out_bits=None, p_bits=None, v_bits=None,
                       max_m: int = 6, max_t: int = 33, max_d: int = 9):
    """kwargs for di_matmul_av: probabilities, per-token symmetric values and their scales."""
    p_bits = draw(st.sampled_from([8, 8, 2, 3, 4, 5, 6, 7, 16])) if p_bits is None else p_bits
    v_bits = draw(st.sampled_from(QUANT_BITS + (16,))) if v_bits is None else v_bits
    out_bits = draw(st.sampled_from(OUT_BITS)) if out_bits is None else out_bits
    p_frac_bits = draw(st.one_of(st.sampled_from([p_bits, p_bits - 1, 0]), st.integers(0, p_bits + 2)))
    m, t, d = draw(st.integers(1, max_m)), draw(_depth(max_t)), draw(st.integers(1, max_d))
    p = draw(_probabilities(m, t, p_bits, p_frac_bits))
    v = draw(int_arrays(v_bits, True, shape=(t, d)))
    if draw(st.integers(0, 4)) == 0:  # maximal accumulator: every v at its most negative value
        v[:] = int_range(v_bits, True)[0]
    # mbits for which even the declared worst-case accumulator leaves room for out_bits
    mbits_options = [mb for mb in MBITS if out_bits + signed_width(
        t * ((1 << p_bits) - 1) * ((1 << mb) - 1) * (1 << (v_bits - 1))) <= 62]
    mbits = draw(st.sampled_from(mbits_options or [2]))
    v_m, v_k = draw(column_scales(t, mbits))
    rounding = draw(st.sampled_from(ROUNDINGS))
    v_m_folded, kref = fold_scales_reference(v_m.tolist(), v_k.tolist(), rounding)
    weights = np.array(p.tolist(), dtype=object) * np.array(v_m_folded, dtype=object)[None, :]
    acc = weights.dot(np.array(v.tolist(), dtype=object))
    needed = _needed_acc_bits(acc)
    out_symmetric = draw(st.booleans())
    levels = output_levels(out_bits, out_symmetric)
    ranges = _row_ranges(acc, out_symmetric)
    fits = [f for f in _fitting_shifts(min(p_frac_bits, 63 - kref), 63 - kref)
            if all(_scale_fits(1, f + kref, r, levels, mbits) for r in ranges)]
    assume(fits)
    p_frac_bits = fits[0]
    if not valid_only and kref and draw(st.integers(0, 9)) == 9:
        p_frac_bits = 64 - kref  # the output shift p_frac_bits + kref leaves [0, 63]
    acc_bits = draw(_acc_bits(needed, 62 - out_bits, valid_only))
    has_zero_row = bool(np.any(np.all(acc == 0, axis=1)))
    zero_rows = "zero" if (valid_only and has_zero_row) else draw(st.sampled_from(["zero", "zero", "error"]))
    return dict(p=p, v=v, v_m=v_m, v_k=v_k, p_bits=p_bits, p_frac_bits=p_frac_bits, v_bits=v_bits,
                acc_bits=acc_bits, mbits=mbits, out_bits=out_bits,
                out_symmetric=out_symmetric, rounding=rounding, zero_rows=zero_rows)


#: The keyword arguments of di_matmul_av_wide (di_matmul_av without the output attributes).
AV_WIDE_KEYS = ("p", "v", "v_m", "v_k", "p_bits", "p_frac_bits", "v_bits", "acc_bits", "mbits", "rounding")


def di_matmul_av_wide_cases(valid_only: bool = True, **kw):
    """kwargs for di_matmul_av_wide: di_matmul_av_cases without the output attributes."""
    return di_matmul_av_cases(valid_only=valid_only, **kw).map(
        lambda case: {key: case[key] for key in AV_WIDE_KEYS})


__all__ = ["column_scales", "di_matmul_av_cases", "di_matmul_av_wide_cases", "di_matmul_cases",
           "di_matmul_wide_cases",
           "exact_accumulator", "matmul_accumulate_cases", "signed_width"]
