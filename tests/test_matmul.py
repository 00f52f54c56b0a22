"""DI-MatMul family (docs/spec/matmul.md): each test is named after the property it proves."""

from __future__ import annotations

import inspect

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ilsim.errors import IlsimError, InputError, WidthError
from ilsim.kernels.intdot import run_linear
from ilsim.ops import matmul as mm
from ilsim.ops.quantize import output_levels
from ilsim.ops.registry import get_op
from ilsim.testing.cases_matmul import (OUT_BITS, di_matmul_av_cases, di_matmul_av_wide_cases,
                                        di_matmul_cases, di_matmul_wide_cases, exact_accumulator,
                                        matmul_accumulate_cases)
from ilsim.testing.strategies import QUANT_BITS

FAMILY = ("matmul_accumulate", "di_matmul_wide", "di_matmul", "di_matmul_av_wide", "di_matmul_av")
NEAREST = ("half_up", "half_away", "half_even")
ACC_KEYS = ("a", "a_zp", "b", "b_zp", "a_bits", "b_bits", "a_signed", "b_signed", "acc_bits")
WIDE_KEYS = ACC_KEYS + ("a_m", "a_k", "b_m", "b_k", "mbits", "rounding")


def _pick(case: dict, keys) -> dict:
    return {key: case[key] for key in keys}


def assert_identical(fast, ref) -> None:
    """Same type, and every array field equal in values, dtype and shape."""
    assert type(fast) is type(ref)
    pairs = zip(fast, ref) if isinstance(ref, tuple) else [(fast, ref)]
    for got, want in pairs:
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert np.array_equal(got, want)


def assert_same_outcome(name: str, case: dict):
    """The fast path returns what the reference returns, or raises the same error and message."""
    fast, reference = getattr(mm, name), getattr(mm, f"{name}_reference")
    try:
        want = reference(**case)
    except IlsimError as err:
        with pytest.raises(IlsimError) as info:
            fast(**case)
        assert type(info.value) is type(err)
        assert str(info.value) == str(err)
        return None
    got = fast(**case)
    assert_identical(got, want)
    return got


# ----------------------------------------------------------------------------------------------
# fast path == reference, bit for bit (including the errors)
# ----------------------------------------------------------------------------------------------

@given(matmul_accumulate_cases(valid_only=False, bits=QUANT_BITS + (16,)))
def test_accumulate_fast_path_equals_reference_bit_for_bit(case):
    assert_same_outcome("matmul_accumulate", case)


@given(di_matmul_wide_cases(valid_only=False))
def test_wide_fast_path_equals_reference_bit_for_bit(case):
    assert_same_outcome("di_matmul_wide", case)


@given(di_matmul_cases(valid_only=False))
def test_di_matmul_fast_path_equals_reference_bit_for_bit(case):
    assert_same_outcome("di_matmul", case)


@pytest.mark.parametrize("out_bits", OUT_BITS)
@settings(max_examples=12)
@given(data=st.data())
def test_di_matmul_fast_path_equals_reference_for_every_output_width(out_bits, data):
    case = data.draw(di_matmul_cases(out_bits=out_bits))
    assert assert_same_outcome("di_matmul", case) is not None  # valid cases never raise


def _prepared(name: str, case: dict):
    """Call di_matmul(_wide)_prepared on a case, the weight prepared in its storage dtype."""
    b = np.asarray(case["b"])
    storage = b.astype(np.int64).astype(mm.storage_dtype(case["b_bits"], case.get("b_signed", True)))
    weight = mm.prepare_weight(storage, case["b_zp"], case["b_m"], case["b_k"], b_bits=case["b_bits"],
                               b_signed=case.get("b_signed", True), mbits=case.get("mbits", mm.DEFAULT_MBITS),
                               rounding=case.get("rounding", mm.DEFAULT_ROUNDING))
    rest = {key: value for key, value in case.items()
            if key not in ("b", "b_zp", "b_m", "b_k", "b_bits", "b_signed", "mbits", "rounding")}
    return getattr(mm, f"{name}_prepared")(weight=weight, **rest)


@pytest.mark.parametrize("name", ["di_matmul_wide", "di_matmul"])
@given(data=st.data())
def test_prepared_weight_path_equals_reference_bit_for_bit(name, data):
    case = data.draw(di_matmul_cases() if name == "di_matmul" else di_matmul_wide_cases())
    want = getattr(mm, f"{name}_reference")(**case)
    assert_identical(_prepared(name, case), want)


def test_prepared_weight_keeps_its_dtype_and_is_validated_once():
    b = np.array([[0, 255], [7, 9]], dtype=np.uint8)
    weight = mm.prepare_weight(b, [0, 3], [40000, 50000], [20, 22], b_bits=8, b_signed=False)
    assert weight.b.dtype == np.uint8 and weight.kref == 20 and weight.max_abs_b == 255
    with pytest.raises(InputError, match=r"^di_matmul: b\[0,1\] = 255 is outside its declared width int8"):
        mm.prepare_weight(b, [0, 3], [40000, 50000], [20, 22], b_bits=8, b_signed=True)


@given(di_matmul_av_wide_cases(valid_only=False))
def test_av_wide_fast_path_equals_reference_bit_for_bit(case):
    assert_same_outcome("di_matmul_av_wide", case)


@given(di_matmul_av_cases(valid_only=False))
def test_av_fast_path_equals_reference_bit_for_bit(case):
    assert_same_outcome("di_matmul_av", case)


@pytest.mark.parametrize("out_bits", OUT_BITS)
@settings(max_examples=12)
@given(data=st.data())
def test_av_fast_path_equals_reference_for_every_output_width(out_bits, data):
    case = data.draw(di_matmul_av_cases(out_bits=out_bits))
    assert assert_same_outcome("di_matmul_av", case) is not None


# ----------------------------------------------------------------------------------------------
# the accumulator is the exact integer product; both kernels are used and agree
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("widths", [QUANT_BITS, (16,)], ids=["2-8 bits (int32 kernel)", "16 bits (int64 kernel)"])
@settings(max_examples=50)
@given(data=st.data())
def test_accumulator_equals_exact_python_int_product(widths, data):
    case = data.draw(matmul_accumulate_cases(bits=widths, max_k=64))
    acc = mm.matmul_accumulate(**case)
    assert np.array_equal(acc.astype(object), exact_accumulator(case))


def _extreme_case(a_diff: int, b_diff: int, depth: int, bits: int = 16) -> dict:
    """One-row, one-column operands with a - a_zp = a_diff and b - b_zp = b_diff everywhere."""
    return dict(a=np.full((1, depth), a_diff), a_zp=np.zeros(1, dtype=np.int64),
                b=np.full((1, depth), b_diff), b_zp=np.zeros(1, dtype=np.int64),
                a_bits=bits, b_bits=bits, a_signed=False, b_signed=False, acc_bits=62)


def test_int32_kernel_is_chosen_exactly_below_2_pow_31_and_both_are_exact():
    # 2 * 32768 * 32767 = 2^31 - 2^16 < 2^31: int32; 2 * 32768 * 32768 = 2^31: int64
    below, at = _extreme_case(32768, 32767, 2), _extreme_case(32768, 32768, 2)
    assert mm.accumulator_kernel(2, 32768, 32767) == "int32"
    assert mm.accumulator_kernel(2, 32768, 32768) == "int64"
    assert mm.matmul_accumulate(**below)[0, 0] == (1 << 31) - (1 << 16)
    assert mm.matmul_accumulate(**at)[0, 0] == 1 << 31
    # 16-bit extremes over a long K: the int64 kernel, exact beyond 2^40
    wide = _extreme_case(65535, 65535, 300)
    assert mm.accumulator_kernel(300, 65535, 65535) == "int64"
    assert int(mm.matmul_accumulate(**wide)[0, 0]) == 300 * 65535 * 65535


@settings(max_examples=40)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 70), st.integers(0, 2 ** 32 - 1))
def test_int32_and_int64_kernels_agree_where_both_are_exact(m, n, depth, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-255, 256, size=(m, depth)).astype(np.int16)
    b = rng.integers(-255, 256, size=(n, depth)).astype(np.int16)
    a[0, :] = -255  # an extreme row and column: |acc| up to depth * 255^2 < 2^31
    b[0, :] = 255
    assert mm.accumulator_kernel(depth, 255, 255) == "int32"
    zp, ones, row_sum = np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64), a.sum(axis=1, dtype=np.int64)
    (narrow, bad_narrow), (wide, bad_wide) = (run_linear(a, row_sum, b, zp, ones, 62, w) for w in (False, True))
    assert not bad_narrow.any() and not bad_wide.any()
    assert np.array_equal(narrow, wide)
    assert np.array_equal(wide, a.astype(np.int64) @ b.astype(np.int64).T)


# ----------------------------------------------------------------------------------------------
# results do not depend on the number of threads
# ----------------------------------------------------------------------------------------------

def _thread_cases():
    rng = np.random.default_rng(7)
    cases = []
    for m in (1, 3, 37):  # decode (split over columns) and prefill (split over rows)
        n, depth = 53, 301
        ops = dict(a=rng.integers(0, 256, size=(m, depth)), a_zp=rng.integers(0, 256, size=m),
                   b=rng.integers(-128, 128, size=(n, depth)), b_zp=np.zeros(n, dtype=np.int64),
                   a_bits=8, b_bits=8)
        scales = dict(a_m=rng.integers(1 << 15, 1 << 16, size=m), a_k=rng.integers(30, 40, size=m),
                      b_m=rng.integers(1 << 15, 1 << 16, size=n), b_k=rng.integers(10, 14, size=n))
        cases.append(("matmul_accumulate", ops))
        cases.append(("matmul_accumulate", dict(  # the int64 kernel: 16-bit data
            ops, a=rng.integers(0, 1 << 16, size=(m, depth)),
            b=rng.integers(-(1 << 15), 1 << 15, size=(n, depth)), a_bits=16, b_bits=16, acc_bits=62)))
        cases.append(("di_matmul", dict(ops, **scales)))
        av = dict(p=rng.integers(0, 256, size=(m, depth)), v=rng.integers(-128, 128, size=(depth, 29)),
                  v_m=rng.integers(1 << 15, 1 << 16, size=depth), v_k=rng.integers(10, 14, size=depth))
        cases.append(("di_matmul_av_wide", av))
        cases.append(("di_matmul_av", av))
    return cases


def test_results_do_not_depend_on_the_thread_count():
    max_threads = numba.config.NUMBA_NUM_THREADS
    before = numba.get_num_threads()
    try:
        for name, case in _thread_cases():
            numba.set_num_threads(1)
            single = getattr(mm, name)(**case)
            numba.set_num_threads(max_threads)
            multi = getattr(mm, name)(**case)
            assert_identical(multi, single)
            assert_identical(multi, getattr(mm, f"{name}_reference")(**case))
    finally:
        numba.set_num_threads(before)


# ----------------------------------------------------------------------------------------------
# accuracy against the float meaning, with the bounds derived in docs/spec/matmul.md
# ----------------------------------------------------------------------------------------------

def _rounding_error(rounding) -> float:
    """|round(x) - x| bound of one rounding: 1/2 in the nearest modes, below 1 in floor/trunc."""
    return 0.5 if str(getattr(rounding, "value", rounding)) in NEAREST else 1.0


def _float_slack(case: dict) -> np.ndarray:
    """float64 evaluation error of the _float meaning: at most K * 2^-53 * sum_k |real(a)||real(b)|,
    below 1e-12 times that sum for K < 2^30; we allow 1e-12 * sum (plus the smallest normal)."""
    abs_a = np.abs(case["a"] - case["a_zp"][:, None])
    abs_b = np.abs(case["b"] - case["b_zp"][:, None])
    a_real = mm._real_rows(abs_a, np.zeros(len(abs_a), dtype=np.int64), case["a_m"], case["a_k"])
    b_real = mm._real_rows(abs_b, np.zeros(len(abs_b), dtype=np.int64), case["b_m"], case["b_k"])
    return 1e-12 * (a_real @ b_real.T) + np.finfo(np.float64).tiny


def _column_fold_error(case: dict, acc: np.ndarray, row_scale: np.ndarray) -> np.ndarray:
    """S_i * |acc[i, j]| * e_f, zero in the columns whose shift equals kref (exact)."""
    folded = case["b_k"] > case["b_k"].min()
    e_f = _rounding_error(case["rounding"])
    return row_scale[:, None] * np.abs(acc.astype(np.float64)) * (e_f * folded)[None, :]


@given(di_matmul_wide_cases())
def test_wide_output_matches_float_within_the_column_fold_bound(case):
    wide = mm.di_matmul_wide(**case)
    row_scale = wide.m.astype(np.float64) * np.ldexp(1.0, -wide.k)
    real = row_scale[:, None] * wide.p.astype(np.float64)
    want = mm.di_matmul_wide_float(**case)
    acc = mm.matmul_accumulate(**_pick(case, ACC_KEYS))
    bound = _column_fold_error(case, acc, row_scale) + _float_slack(case)
    assert np.all(np.abs(real - want) <= bound)


def _quantization_bound(out, row_scale: np.ndarray, ranges: np.ndarray, levels: int, rounding,
                        mbits: int, out_bits: int) -> np.ndarray:
    """Per-row bound of |s' (q - zp) - S x| for x in the row: step * e_q + d * 2^-(k'+1).

    step = S R / d is the exact output step; s' = m'/2^k' is within 2^-(k'+1) of it (one half-up
    rounding of m'), and |q - zp| <= d. Zero-range rows (zero_rows="zero") have no step: 0.
    Where m' is normalised (>= 2^(mbits-1)) and out_bits < mbits, d * 2^-(k'+1) <= step / 2,
    so the bound is at most one step in the nearest modes: asserted here too.
    """
    step = row_scale * ranges.astype(np.float64) / levels
    scale_rounding = levels * np.ldexp(1.0, -(out.k + 1))
    bound = np.where(ranges > 0, step * _rounding_error(rounding) + scale_rounding, 0.0)
    normalised = (out.m >= 1 << (mbits - 1)) & (ranges > 0)
    if out_bits < mbits:
        assert np.all(scale_rounding[normalised] <= step[normalised] * (0.5 + 1e-12))
    return bound


def _dequantized(out) -> np.ndarray:
    scale = out.m.astype(np.float64) * np.ldexp(1.0, -out.k)
    return scale[:, None] * (out.q.astype(np.float64) - out.zp[:, None])


def _row_ranges(x: np.ndarray, symmetric: bool) -> np.ndarray:
    if symmetric:
        return np.abs(x).max(axis=1)
    return np.maximum(x.max(axis=1), 0) - np.minimum(x.min(axis=1), 0)


@given(di_matmul_cases())
def test_di_matmul_output_is_within_one_step_plus_the_fold_bound_of_float(case):
    out = mm.di_matmul(**case)
    want = mm.di_matmul_float(**case)
    wide = mm.di_matmul_wide(**_pick(case, WIDE_KEYS))
    acc = mm.matmul_accumulate(**_pick(case, ACC_KEYS))
    row_scale = wide.m.astype(np.float64) * np.ldexp(1.0, -wide.k)
    levels = output_levels(case["out_bits"], case["out_symmetric"])
    quant = _quantization_bound(out, row_scale, _row_ranges(wide.p, case["out_symmetric"]), levels,
                                case["rounding"], case["mbits"], case["out_bits"])
    bound = quant[:, None] + _column_fold_error(case, acc, row_scale) + _float_slack(case)
    assert np.all(np.abs(_dequantized(out) - want) <= bound)


def _av_exact(case: dict):
    """The exact accumulator, its row scale S and its column-fold error bound (spec section 4)."""
    v_m_folded, kref = mm.fold_scales_reference(case["v_m"].tolist(), case["v_k"].tolist(),
                                                case["rounding"])
    p, v = np.array(case["p"].tolist(), dtype=object), np.array(case["v"].tolist(), dtype=object)
    acc = (p * np.array(v_m_folded, dtype=object)[None, :]).dot(v)
    folded = np.array([int(k > kref) for k in case["v_k"].tolist()], dtype=object)
    fold_terms = (p * folded[None, :]).dot(np.abs(v)).astype(np.float64)
    row_scale = np.full(p.shape[0], np.ldexp(1.0, -(case["p_frac_bits"] + kref)))
    fold = row_scale[:, None] * _rounding_error(case["rounding"]) * fold_terms
    real_p = case["p"] * np.ldexp(1.0, -case["p_frac_bits"])
    real_abs_v = np.abs(case["v"]) * (case["v_m"] * np.ldexp(1.0, -case["v_k"]))[:, None]
    slack = 1e-12 * (real_p @ real_abs_v) + np.finfo(np.float64).tiny
    return acc, row_scale, fold, slack


@given(di_matmul_av_wide_cases())
def test_av_wide_output_matches_float_within_the_fold_bound(case):
    wide = mm.di_matmul_av_wide(**case)
    acc, row_scale, fold, slack = _av_exact(case)
    assert np.array_equal(wide.p.astype(object), acc)
    assert np.all(wide.m == 1) and np.allclose(np.ldexp(1.0, -wide.k), row_scale, rtol=0)
    real = row_scale[:, None] * wide.p.astype(np.float64)
    assert np.all(np.abs(real - mm.di_matmul_av_wide_float(**case)) <= fold + slack)


@given(di_matmul_av_cases())
def test_av_output_is_within_one_step_plus_the_fold_bound_of_float(case):
    out = mm.di_matmul_av(**case)
    want = mm.di_matmul_av_float(**case)
    acc, row_scale, fold, slack = _av_exact(case)
    levels = output_levels(case["out_bits"], case["out_symmetric"])
    ranges = _row_ranges(acc, case["out_symmetric"]).astype(np.int64)
    quant = _quantization_bound(out, row_scale, ranges, levels, case["rounding"], case["mbits"],
                                case["out_bits"])
    assert np.all(np.abs(_dequantized(out) - want) <= quant[:, None] + fold + slack)


# ----------------------------------------------------------------------------------------------
# worked examples (hand-computed)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rounding, folded", [
    ("half_up", [5, 3, 3, 2]), ("half_away", [5, 3, 3, 2]), ("half_even", [5, 2, 3, 2]),
    ("floor", [5, 2, 3, 1]), ("trunc", [5, 2, 3, 1]),
])
def test_column_fold_rounds_each_multiplier_once_in_the_named_mode(rounding, folded):
    # b_m / 2^(b_k - kref) = 5, 5/2 (a tie), 6/2, 7/4; with acc = 1 the product p is b_m' itself
    case = dict(a=[[1]], a_zp=[0], a_m=[3], a_k=[7], b=[[1], [1], [1], [1]], b_zp=[0, 0, 0, 0],
                b_m=[5, 5, 6, 7], b_k=[1, 2, 2, 3], a_bits=8, b_bits=8, rounding=rounding)
    for fn in (mm.di_matmul_wide, mm.di_matmul_wide_reference):
        out = fn(**case)
        assert out.p.tolist() == [folded]
        assert out.m.tolist() == [3] and out.k.tolist() == [8]  # k = a_k + kref = 7 + 1


def test_di_matmul_worked_example_with_rounding_ties():
    # p = [255, 0, -255]: R = 510, d = 255, zp = round(127.5) = 128, q = [256 -> 255, 128, -127 + 128]
    # scale 1 * 510 / 255 = 2 = 32768 / 2^14
    case = dict(a=[[1]], a_zp=[0], a_m=[1], a_k=[0], b=[[255], [0], [-255]], b_zp=[0, 0, 0],
                b_m=[1, 1, 1], b_k=[0, 0, 0], a_bits=8, b_bits=16)
    for fn in (mm.di_matmul, mm.di_matmul_reference):
        out = fn(**case)
        assert out.q.tolist() == [[255, 128, 1]] and out.q.dtype == np.uint8
        assert out.zp.tolist() == [128] and out.m.tolist() == [32768] and out.k.tolist() == [14]


def test_av_worked_example():
    # v_m' = [3, round(5/2) = 3] with kref = 4; acc = [2*3*10 + 4*3*(-1)] = [48]; scale 2^-(8+4)
    case = dict(p=[[2, 4]], v=[[10], [-1]], v_m=[3, 5], v_k=[4, 5], out_symmetric=True)
    for fn in (mm.di_matmul_av, mm.di_matmul_av_reference):
        out = fn(**case)
        # symmetric 8-bit: d = 127, q = round(48 * 127 / 48) = 127; m'/2^k' = 48 / 127 / 2^12
        assert out.q.tolist() == [[127]] and out.q.dtype == np.int8 and out.zp.tolist() == [0]
        assert abs(out.m[0] / 2.0 ** out.k[0] - 48 / 127 / 2 ** 12) <= 2.0 ** -(out.k[0] + 1)


# ----------------------------------------------------------------------------------------------
# overflow: every declared width is checked, never wrapped
# ----------------------------------------------------------------------------------------------

BASE = dict(a=np.full((2, 3), 255), a_zp=np.zeros(2, dtype=np.int64), a_m=[40000, 50000],
            a_k=[20, 21], b=np.full((2, 3), 127), b_zp=np.zeros(2, dtype=np.int64),
            b_m=[60000, 33000], b_k=[12, 13], a_bits=8, b_bits=8, a_signed=False, b_signed=True)
AV_BASE = dict(p=np.full((2, 3), 255), v=np.full((3, 2), -128), v_m=[40000, 50000, 60000],
               v_k=[12, 13, 14])


@pytest.mark.parametrize("name", ["matmul_accumulate", "di_matmul_wide", "di_matmul"])
def test_accumulator_beyond_acc_bits_raises_width_error_naming_op_and_acc(name):
    case = dict(BASE, acc_bits=16)  # 3 * 255 * 127 = 97155 > 2^15 - 1
    if name == "matmul_accumulate":
        case = _pick(case, ACC_KEYS)
    for fn in (getattr(mm, name), getattr(mm, f"{name}_reference")):
        with pytest.raises(WidthError, match=rf"^{name}: acc\[0,0\] = 97155 overflows its declared "
                                             r"width int16 \[-32768, 32767\]$"):
            fn(**case)


@pytest.mark.parametrize("name", ["di_matmul_av_wide", "di_matmul_av"])
def test_av_accumulator_beyond_acc_bits_raises_width_error_naming_op_and_acc(name):
    # acc = 255 * (-128) * (40000 + 50000/2 + 60000/4) = -2611200000 < -2^31
    case = dict(AV_BASE, acc_bits=32)
    for fn in (getattr(mm, name), getattr(mm, f"{name}_reference")):
        with pytest.raises(WidthError, match=rf"^{name}: acc\[0,0\] = -2611200000 overflows its "
                                             r"declared width int32"):
            fn(**case)


def test_accumulator_at_its_extreme_fits_and_its_product_fits_acc_plus_mbits():
    # acc = 2 * (0 - 128) * (127 - (-1)) = -32768 = -2^15 exactly fills int16; p = acc * (2^16 - 1)
    case = dict(a=[[0, 0]], a_zp=[128], a_m=[1], a_k=[0], b=[[127, 127]], b_zp=[-1],
                b_m=[65535], b_k=[0], a_bits=8, b_bits=8, acc_bits=16, mbits=16)
    for fn in (mm.di_matmul_wide, mm.di_matmul_wide_reference):
        out = fn(**case)
        assert out.p.tolist() == [[-32768 * 65535]] and out.p.dtype == np.int32


@pytest.mark.parametrize("name", ["di_matmul_wide", "di_matmul"])
def test_output_shift_above_63_raises_width_error_naming_the_row(name):
    case = dict(BASE, a_k=[51, 52])  # k = a_k + kref = 51 + 12 = 63 for row 0, 64 for row 1
    for fn in (getattr(mm, name), getattr(mm, f"{name}_reference")):
        with pytest.raises(WidthError, match=rf"^{name}: output scale shift k\[1\] = a_k\[1\] \+ kref = "
                                             r"52 \+ 12 = 64 exceeds 63$"):
            fn(**case)


@pytest.mark.parametrize("name", ["di_matmul_av_wide", "di_matmul_av"])
def test_av_output_shift_above_63_raises_width_error(name):
    case = dict(AV_BASE, p_frac_bits=52)  # 52 + kref 12 = 64
    for fn in (getattr(mm, name), getattr(mm, f"{name}_reference")):
        with pytest.raises(WidthError, match=rf"^{name}: output scale shift k\[0\] = "
                                             r"p_frac_bits \+ kref = 52 \+ 12 = 64 exceeds 63$"):
            fn(**case)


def test_output_scale_of_2_pow_mbits_or_more_raises_width_error():
    # real output step 65535 * 97155 * 2^-12 / 255 is far above 2^16 with a_k = 0
    case = dict(BASE, a_m=[65535, 65535], a_k=[0, 0], b_k=[0, 0])
    for fn in (mm.di_matmul, mm.di_matmul_reference):
        with pytest.raises(WidthError, match=r"^quantize_rows: output scale of row 0 is >= 2\^16"):
            fn(**case)


# ----------------------------------------------------------------------------------------------
# bad input: InputError naming the operator and the tensor or attribute
# ----------------------------------------------------------------------------------------------

BAD_DI_MATMUL = [
    ("float operand", dict(a=np.full((2, 3), 1.0)), r"a must be an integer array, got dtype float64"),
    ("bool operand", dict(b=np.ones((2, 3), dtype=bool)), r"b must be an integer array, got dtype bool"),
    ("1-D operand", dict(a=np.ones(3, dtype=np.int64)), r"a must have 2 dimension\(s\), got shape \(3,\)"),
    ("empty operand", dict(a=np.zeros((0, 3), dtype=np.int64), a_zp=np.zeros(0, dtype=np.int64)),
     r"a is empty \(shape \(0, 3\)\)"),
    ("value outside width", dict(a=np.full((2, 3), 256)), r"a\[0,0\] = 256 is outside its declared width uint8"),
    ("signed value in unsigned", dict(a=np.full((2, 3), -1)), r"a\[0,0\] = -1 is outside its declared width uint8"),
    ("weight outside width", dict(b=np.full((2, 3), 128)), r"b\[0,0\] = 128 is outside its declared width int8"),
    ("a_zp outside width", dict(a_zp=[0, 256]), r"a_zp\[1\] = 256 is outside its declared width uint8"),
    ("b_zp outside width", dict(b_zp=[-129, 0]), r"b_zp\[0\] = -129 is outside its declared width int8"),
    ("K mismatch", dict(b=np.ones((2, 4), dtype=np.int64)), r"their K \(last axis\) must match"),
    ("a_zp length", dict(a_zp=[0, 0, 0]), r"a_zp must have shape \(2,\), got \(3,\)"),
    ("b_zp length", dict(b_zp=[0]), r"b_zp must have shape \(2,\), got \(1,\)"),
    ("scalar zero point", dict(b_zp=0), r"b_zp must have 1 dimension\(s\)"),
    ("a_m length", dict(a_m=[1]), r"a_m must have shape \(2,\), got \(1,\)"),
    ("b_k length", dict(b_k=[1, 2, 3]), r"b_k must have shape \(2,\), got \(3,\)"),
    ("multiplier outside mbits", dict(b_m=[65536, 1]), r"b_m\[0\] = 65536 is outside its declared width uint16"),
    ("negative multiplier", dict(a_m=[-1, 1]), r"a_m\[0\] = -1 is outside its declared width uint16"),
    ("negative shift", dict(a_k=[-1, 0]), r"a_k must be in \[0, 63\], got range \[-1, 0\]"),
    ("shift above 63", dict(b_k=[0, 64]), r"b_k must be in \[0, 63\], got range \[0, 64\]"),
    ("float scale", dict(a_m=[1.5, 2.0]), r"a_m must be an integer array, got dtype float64"),
    ("a_bits too small", dict(a_bits=1), r"a_bits must be an integer in \[2, 16\], got 1"),
    ("b_bits too large", dict(b_bits=17), r"b_bits must be an integer in \[2, 16\], got 17"),
    ("float width", dict(a_bits=8.0), r"a_bits must be an integer in \[2, 16\], got 8.0"),
    ("bool width", dict(b_bits=True), r"b_bits must be an integer in \[2, 16\], got True"),
    ("non-bool signedness", dict(a_signed="no"), r"a_signed must be a bool, got 'no'"),
    ("acc_bits + mbits above 62", dict(acc_bits=47), r"acc_bits \(with mbits=16\) must be an integer in \[2, 46\], got 47"),
    ("acc + mbits + out above 62", dict(acc_bits=40), r"out_bits \(8\) must be <= 62, got 64"),
    ("mbits above 30", dict(mbits=31), r"mbits must be an integer in \[2, 30\], got 31"),
    ("out_bits too small", dict(out_bits=1), r"out_bits must be an integer in \[2, 16\], got 1"),
    ("out_bits too large", dict(out_bits=17), r"out_bits must be an integer in \[2, 16\], got 17"),
    ("non-bool symmetry", dict(out_symmetric=1), r"out_symmetric must be a bool, got 1"),
    ("unknown zero_rows", dict(zero_rows="skip"), r"zero_rows must be one of \('error', 'zero'\), got 'skip'"),
]


@pytest.mark.parametrize("what, change, message", BAD_DI_MATMUL, ids=[b[0] for b in BAD_DI_MATMUL])
def test_bad_di_matmul_input_raises_input_error_naming_op_and_tensor(what, change, message):
    case = dict(BASE, **change)
    for fn in (mm.di_matmul, mm.di_matmul_reference, mm.di_matmul_float):
        with pytest.raises(InputError, match=rf"^di_matmul: .*{message}"):
            fn(**case)


def test_unknown_rounding_mode_raises_input_error_in_every_path():
    for fn in (mm.di_matmul, mm.di_matmul_reference, mm.di_matmul_wide, mm.di_matmul_wide_reference):
        name = fn.__name__.removesuffix("_reference")
        with pytest.raises(InputError, match=rf"^{name}: unknown rounding mode 'nearest'; expected one of: floor"):
            fn(**dict(BASE, rounding="nearest"))


@pytest.mark.parametrize("change, message", [
    (dict(acc_bits=63), r"acc_bits must be an integer in \[2, 62\], got 63"),
    (dict(a=np.ones((2, 3, 1), dtype=np.int64)), r"a must have 2 dimension\(s\)"),
    (dict(b=[[1, 2], [3, 4]]), r"a is \[M, K\] = \(2, 3\) and b is \[N, K\] = \(2, 2\)"),
])
def test_bad_accumulate_input_raises_input_error_naming_op(change, message):
    case = dict(_pick(BASE, ACC_KEYS[:-1]), **change)
    for fn in (mm.matmul_accumulate, mm.matmul_accumulate_reference, mm.matmul_accumulate_float):
        with pytest.raises(InputError, match=rf"^matmul_accumulate: {message}"):
            fn(**case)


BAD_AV = [
    ("float probabilities", dict(p=np.full((2, 3), 0.5)), r"p must be an integer array, got dtype float64"),
    ("negative probability", dict(p=np.full((2, 3), -1)), r"p\[0,0\] = -1 is outside its declared width uint8"),
    ("value outside width", dict(v=np.full((3, 2), 128)), r"v\[0,0\] = 128 is outside its declared width int8"),
    ("T mismatch", dict(v=np.ones((4, 2), dtype=np.int64)), r"p is \[M, T\] = \(2, 3\) and v is \[T, D\] = \(4, 2\)"),
    ("v_m length", dict(v_m=[1, 2]), r"v_m must have shape \(3,\), got \(2,\)"),
    ("v_k range", dict(v_k=[0, 0, 64]), r"v_k must be in \[0, 63\]"),
    ("empty values", dict(v=np.zeros((3, 0), dtype=np.int64)), r"v is empty"),
    ("p_frac_bits above 63", dict(p_frac_bits=64), r"p_frac_bits must be an integer in \[0, 63\], got 64"),
    ("p_bits above 16", dict(p_bits=17), r"p_bits must be an integer in \[1, 16\], got 17"),
    ("v_bits below 2", dict(v_bits=1), r"v_bits must be an integer in \[2, 16\], got 1"),
    ("acc + out above 62", dict(acc_bits=56), r"out_bits \(8\) must be <= 62, got 64"),
    ("int64 bound of the declared widths",
     dict(p=np.ones((1, 5), dtype=np.int64), v=np.ones((5, 1), dtype=np.int64), v_m=[1] * 5, v_k=[0] * 5,
          p_bits=16, v_bits=16, mbits=30, acc_bits=40),
     r"acc: the declared widths allow a sum of 5 products .* only exact below 2\^63"),
    ("unknown rounding", dict(rounding="nearest"), r"unknown rounding mode 'nearest'"),
]


@pytest.mark.parametrize("what, change, message", BAD_AV, ids=[b[0] for b in BAD_AV])
def test_bad_av_input_raises_input_error_naming_op_and_tensor(what, change, message):
    case = dict(AV_BASE, **change)
    names = ["di_matmul_av"] + (["di_matmul_av_wide"] if what != "acc + out above 62" else [])
    for name in names:
        for suffix in ("", "_reference", "_float"):
            with pytest.raises(InputError, match=rf"^{name}: .*{message}"):
                getattr(mm, name + suffix)(**case)


# ----------------------------------------------------------------------------------------------
# the pieces every operator must have
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILY)
def test_reference_and_float_meaning_share_the_fast_path_signature(name):
    fast = inspect.signature(getattr(mm, name))
    assert inspect.signature(getattr(mm, f"{name}_reference")).parameters == fast.parameters
    assert inspect.signature(getattr(mm, f"{name}_float")).parameters == fast.parameters


@pytest.mark.parametrize("name", ["di_matmul", "di_matmul_av"])
def test_registry_resolves_every_piece_of_the_operator(name):
    op = get_op(name)
    assert op.fast is getattr(mm, name)
    assert op.reference is getattr(mm, f"{name}_reference")
    assert op.float_meaning is getattr(mm, f"{name}_float")
    assert op.spec == "docs/spec/matmul.md"

    @settings(max_examples=3)
    @given(op.cases())
    def draws_valid_cases(case):
        assert_identical(op.fast(**case), op.reference(**case))

    draws_valid_cases()
