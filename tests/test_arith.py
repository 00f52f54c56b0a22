"""Integer primitives: every array and jitted path equals its Python-int reference, and each
reference is proven against exact rational arithmetic."""

from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ilsim.arith import (Dyadic, Rounding, bit_length, bit_length_array, clz, div_round,
                         div_round_reference, dyadic_from_scale, dyadic_mul, dyadic_mul_reference, isqrt,
                         isqrt_reference, rshift_round, rshift_round_reference, saturate, saturate_reference)
from ilsim.arith.jit import div_round_i64, mode_code, rshift_round_i64
from ilsim.arith.legacy import (rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
                                tflite_multiply_by_quantized_multiplier)
from ilsim.errors import InputError, WidthError
from ilsim.testing.strategies import tie_division_cases, tie_shift_cases

MODES = list(Rounding)
LIMIT = (1 << 62) - 1
x62 = st.one_of(st.sampled_from([0, 1, -1, LIMIT, -LIMIT, 1 << 61, -(1 << 61)]), st.integers(-LIMIT, LIMIT))


def exact_round(value: Fraction, mode: Rounding) -> int:
    """The definition of each mode, on exact rationals."""
    fl = math.floor(value)
    frac = value - fl
    if mode is Rounding.FLOOR:
        return fl
    if mode is Rounding.TRUNC:
        return math.trunc(value)
    if frac != Fraction(1, 2):
        return fl + (frac > Fraction(1, 2))
    if mode is Rounding.HALF_UP:
        return fl + 1
    if mode is Rounding.HALF_AWAY:
        return fl + 1 if value > 0 else fl
    return fl + (fl % 2)  # HALF_EVEN


@given(st.one_of(x62, tie_shift_cases().map(lambda c: c[0])), st.integers(0, 70), st.sampled_from(MODES))
def test_rshift_round_reference_is_exact_rounding_of_the_rational(x, s, mode):
    assert rshift_round_reference(x, s, mode) == exact_round(Fraction(x, 1 << s), mode)


@given(tie_shift_cases(), st.sampled_from(MODES))
def test_rshift_round_all_paths_agree_on_exact_ties(case, mode):
    x, s = case
    expected = rshift_round_reference(x, s, mode)
    assert expected == exact_round(Fraction(x, 1 << s), mode)
    assert int(rshift_round(np.array([x]), s, mode)[0]) == expected
    assert int(rshift_round_i64(np.int64(x), np.int64(s), mode_code(mode))) == expected


@given(x62, st.integers(0, 100), st.sampled_from(MODES))
def test_rshift_round_array_and_jit_equal_reference(x, s, mode):
    expected = rshift_round_reference(x, s, mode)
    assert int(rshift_round(np.array([x], dtype=np.int64), np.array([s]), mode)[0]) == expected
    assert int(rshift_round_i64(np.int64(x), np.int64(s), mode_code(mode))) == expected


@given(st.one_of(x62, tie_division_cases().map(lambda c: c[0])),
       st.one_of(st.integers(1, LIMIT), st.sampled_from([1, 2, 3, 255, 256])), st.sampled_from(MODES))
def test_div_round_all_paths_equal_exact_rounding(a, b, mode):
    expected = exact_round(Fraction(a, b), mode)
    assert div_round_reference(a, b, mode) == expected
    assert int(div_round(np.array([a]), np.array([b]), mode)[0]) == expected
    assert int(div_round_i64(np.int64(a), np.int64(b), mode_code(mode))) == expected


@given(tie_division_cases(), st.sampled_from(MODES))
def test_div_round_exact_ties_both_signs(case, mode):
    a, b = case
    for num in (a, -a):
        expected = exact_round(Fraction(num, b), mode)
        assert div_round_reference(num, b, mode) == expected
        assert int(div_round(np.array([num]), b, mode)[0]) == expected


def test_negative_odd_inputs_floor_versus_trunc():
    # Python floors, C truncates: -7 / 2 is -4 under floor, -3 under trunc.
    assert rshift_round_reference(-7, 1, Rounding.FLOOR) == -4
    assert rshift_round_reference(-7, 1, Rounding.TRUNC) == -3
    assert div_round_reference(-7, 2, Rounding.FLOOR) == -4
    assert div_round_reference(-7, 2, Rounding.TRUNC) == -3
    # -2.5 under each rounding-to-nearest mode
    assert [rshift_round_reference(-5, 1, m) for m in ("half_up", "half_away", "half_even")] == [-2, -3, -2]


def test_rounding_primitives_reject_negative_shifts_zero_divisors_and_unknown_modes():
    with pytest.raises(InputError, match="shift must be >= 0"):
        rshift_round_reference(5, -1)
    with pytest.raises(InputError, match="shift must be >= 0"):
        rshift_round(np.array([5]), -1)
    with pytest.raises(InputError, match="divisor must be > 0"):
        div_round(np.array([5]), np.array([0]))
    with pytest.raises(InputError, match="unknown rounding mode"):
        rshift_round_reference(5, 1, "nearest")


def test_array_paths_refuse_operands_at_or_above_2_pow_62():
    with pytest.raises(WidthError, match="2\\^62"):
        rshift_round(np.array([1 << 62]), 3)
    with pytest.raises(WidthError, match="2\\^62"):
        div_round(np.array([-(1 << 62)]), 3)


@given(st.integers(-(1 << 40), 1 << 40), st.integers(2, 32), st.booleans())
def test_saturate_clamps_to_the_declared_range(x, bits, signed):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    assert saturate_reference(x, bits, signed) == min(max(x, lo), hi)
    assert int(saturate(np.array([x]), bits, signed)[0]) == saturate_reference(x, bits, signed)


# ---- dyadic numbers --------------------------------------------------------------------------

scales = st.one_of(
    st.floats(min_value=1e-12, max_value=6.0e4, allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, 0.5, 2.0 ** -20, 1.0 / 3, 0.1, 65535.0, 1e-18]),
)


@given(scales, st.integers(2, 30))
def test_dyadic_from_scale_meets_its_error_bound(scale, mbits):
    exact = Fraction(scale)
    if exact * 2 + 1 >= 2 * (1 << mbits):  # needs k < 0
        with pytest.raises(InputError):
            dyadic_from_scale(scale, mbits)
        return
    d = dyadic_from_scale(scale, mbits)
    assert 0 < d.m < 1 << mbits and 0 <= d.k <= 63
    err = abs(d.as_fraction() - exact)
    assert err <= Fraction(1, 1 << (d.k + 1))
    if d.k < 63:
        assert d.m >= 1 << (mbits - 1)
        assert err / exact <= 1 / (Fraction(1 << mbits) - Fraction(1, 2))
    # k is maximal: one more bit of shift would overflow mbits
    if d.k < 63:
        assert math.floor(exact * (1 << (d.k + 1)) + Fraction(1, 2)) >= 1 << mbits


def test_dyadic_from_scale_is_deterministic_and_rejects_bad_scales():
    assert dyadic_from_scale(0.1) == Dyadic(52429, 19)
    assert dyadic_from_scale(1.0) == Dyadic(32768, 15)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError):
            dyadic_from_scale(bad)
    with pytest.raises(InputError, match="rounds to 0"):
        dyadic_from_scale(1e-30)
    with pytest.raises(InputError):
        Dyadic(-1, 3)
    with pytest.raises(InputError):
        Dyadic(1, 64)


@given(st.integers(-(1 << 40), 1 << 40), st.integers(0, (1 << 16) - 1), st.integers(0, 63), st.sampled_from(MODES))
def test_dyadic_mul_rounds_once(x, m, k, mode):
    expected = exact_round(Fraction(x * m, 1 << k), mode)
    assert dyadic_mul_reference(x, Dyadic(m, k), mode) == expected
    assert int(dyadic_mul(np.array([x]), m, k, mode)[0]) == expected


def test_dyadic_mul_refuses_a_product_that_would_wrap():
    with pytest.raises(WidthError, match="my_tensor"):
        dyadic_mul(np.array([1 << 50]), 1 << 15, 3, what="my_tensor")


def test_tflite_legacy_double_rounding_differs_from_single_rounding():
    # tensorflow/tensorflow#25087: the legacy two-step result is 12, the exact value rounds to 11.
    x, multiplier, shift = 7984, 1583594044, -9
    assert tflite_multiply_by_quantized_multiplier(x, multiplier, shift) == 12
    assert rshift_round_reference(x * multiplier, 31 - shift, Rounding.HALF_AWAY) == 11
    assert exact_round(Fraction(x * multiplier, 1 << (31 - shift)), Rounding.HALF_UP) == 11


def test_tflite_legacy_primitives_follow_gemmlowp():
    int32_min = -(1 << 31)
    assert saturating_rounding_doubling_high_mul(int32_min, int32_min) == (1 << 31) - 1
    # RoundingDivideByPOT rounds ties away from zero
    assert rounding_divide_by_pot(5, 1) == 3 and rounding_divide_by_pot(-5, 1) == -3
    assert rounding_divide_by_pot(-7, 2) == -2 and rounding_divide_by_pot(6, 2) == 2


# ---- integer square root ---------------------------------------------------------------------

def isqrt_edge_inputs():
    vals = {0, 1, 2, 3, 4, (1 << 62) - 1, 1 << 62}
    for e in range(63):
        vals.update({(1 << e) - 1, 1 << e, (1 << e) + 1})
    for r in (1, 2, 3, 255, 256, 65535, 65536, (1 << 31) - 1, 1 << 31):
        vals.update({r * r - 1, r * r, r * r + 1})
    return sorted(v for v in vals if 0 <= v <= 1 << 62)


def test_isqrt_is_exact_on_every_edge():
    edges = isqrt_edge_inputs()
    expected = [math.isqrt(v) for v in edges]
    assert [isqrt_reference(v) for v in edges] == expected
    assert isqrt(np.array(edges, dtype=np.int64)).tolist() == expected


@given(st.integers(0, 1 << 62))
def test_isqrt_equals_math_isqrt(n):
    assert isqrt_reference(n) == math.isqrt(n)
    assert int(isqrt(np.array([n]))[0]) == math.isqrt(n)


def test_isqrt_rejects_out_of_domain_inputs():
    with pytest.raises(InputError):
        isqrt_reference(-1)
    with pytest.raises(InputError):
        isqrt_reference((1 << 62) + 1)
    with pytest.raises(InputError, match="integer array"):
        isqrt(np.array([4.0]))


# ---- bit length and clz ----------------------------------------------------------------------

@given(st.integers(-(1 << 62), 1 << 62))
def test_bit_length_array_equals_python_bit_length(x):
    assert int(bit_length_array(np.array([x]))[0]) == bit_length(x) == abs(x).bit_length()


@given(st.integers(1, 64).flatmap(lambda w: st.tuples(st.just(w), st.integers(0, (1 << w) - 1))))
def test_clz_counts_leading_zeros_of_the_word(case):
    width, x = case
    assert clz(x, width) == width - x.bit_length()
    assert clz(0, width) == width

