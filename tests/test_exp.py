"""DI-Exp (docs/spec/exp.md): fast == reference, edges, the stated error bounds, errors."""

from fractions import Fraction
import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ilsim.errors import InputError, WidthError
from ilsim.kernels.exp import exp_elements
from ilsim.ops.exp import (ORDER2_A2, ORDER2_C, ORDER2_T_BITS, di_exp, di_exp_float,
                           di_exp_reference, exp_from_t_reference, exp_t_abs_reference, log2e_multiplier)
from ilsim.ops.registry import get_op
from ilsim.testing.cases_nonlinear import TIE_SCALES, assert_fast_equals_reference, di_exp_cases, exp_scales

#: Max relative error of the 2^f approximations on f in (-1, 0] (derived in docs/spec/exp.md and
#: re-derived on a grid in test_polynomial_error_bounds):
#: order 1: (1 + f/2) / 2^f - 1 <= 0.0615; order 2: |P(f) / 2^f - 1| <= 0.0027.
EPS_POLY = {1: 0.0615, 2: 0.0027}
#: The integer rounding of y, in units of y: order 1 floors twice (< 1), order 2 rounds once (<= 1/2).
RHO = {1: 1.0, 2: 0.5}


def both(case):
    return assert_fast_equals_reference(di_exp, di_exp_reference, case)


# ---------------------------------------------------------------- fast == reference

@given(di_exp_cases())
def test_fast_equals_reference_bit_for_bit(case):
    both(case)


@pytest.mark.parametrize("in_bits", range(2, 17))
@settings(max_examples=8)
@given(data=st.data())
def test_fast_equals_reference_for_every_input_width(in_bits, data):
    both(data.draw(di_exp_cases(in_bits=in_bits)))


@pytest.mark.parametrize("order", [1, 2])
def test_exhaustive_small_t_sweep_matches_reference_including_order2_ties(order):
    """Every x in [-(70|t| + 3), 0] for |t| in 1..48 and a few large |t|: covers q >= 64, r = 0,
    r = t + 1, and (order 2) exact ties of the half-up rounding, which the test counts."""
    ties = 0
    for t_abs in list(range(1, 49)) + [(1 << 20) + 7, (1 << ORDER2_T_BITS) - 1]:
        lo = -min(70 * t_abs + 3, 1 << 16)
        x = np.arange(lo, 1, dtype=np.int64)
        out = np.empty_like(x)
        exp_elements(x, np.full(x.size, t_abs, dtype=np.int64), order, out)
        expected = [exp_from_t_reference(v, t_abs, order) for v in x.tolist()]
        assert out.tolist() == expected
        if order == 2:  # the formula without the q > bits(|t|) short cut, and its ties
            for v, y in zip(x.tolist(), expected):
                q, r = v // -t_abs, v + (v // -t_abs) * t_abs
                num = (t_abs * t_abs << ORDER2_C) + (r * t_abs << (ORDER2_C - 1)) + ORDER2_A2 * r * (t_abs + r)
                den = t_abs << (ORDER2_C + q)
                assert y == (2 * num + den) // (2 * den)
                ties += (2 * num) % (2 * den) == den
    if order == 2:
        assert ties > 0


def test_registry_lists_di_exp():
    op = get_op("di_exp")
    assert op.fast is di_exp and op.reference is di_exp_reference and op.float_meaning is di_exp_float


def test_results_identical_for_one_thread_and_all_threads():
    rng = np.random.default_rng(7)
    x = -rng.integers(0, 1 << 15, size=(64, 257))
    m = rng.integers(1 << 15, 1 << 16, size=(64, 1))
    k = rng.integers(20, 34, size=(64, 1))
    for order in (1, 2):
        previous = numba.get_num_threads()
        try:
            numba.set_num_threads(1)
            one = di_exp(x, m, k, order=order)
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
            many = di_exp(x, m, k, order=order)
        finally:
            numba.set_num_threads(previous)
        assert np.array_equal(one.y, many.y) and np.array_equal(one.t_abs, many.t_abs)


# ---------------------------------------------------------------- edges

@pytest.mark.parametrize("order", [1, 2])
def test_x_zero_gives_exactly_t_abs_and_q_64_gives_zero(order):
    m, k = 40000, 30
    t_abs = exp_t_abs_reference(m, k)
    x = np.array([0, -64 * t_abs, -64 * t_abs - 1, -100 * t_abs], dtype=np.int64)
    for impl in (di_exp, di_exp_reference):
        out = impl(x, m, k, in_bits=40, order=order)
        assert out.y.tolist() == [t_abs, 0, 0, 0] and out.t_abs.tolist() == t_abs


@pytest.mark.parametrize("order", [1, 2])
def test_largest_scale_is_t_abs_one_and_its_rounding_ties_go_up(order):
    """|t| = round(2^k / m_f) has exact ties only at 2^k / m_f = 1/2 (m_f = 2^(k+1)); half-up gives
    |t| = 1, the largest scale DI-Exp accepts (half-even would give 0). y is then 1 at x = 0; at
    x = -1 the value is exactly 1/2: order 1 floors it to 0, order 2 rounds it half up to 1."""
    assert len(TIE_SCALES) > 10
    for m, k in TIE_SCALES:
        assert log2e_multiplier(m) == 1 << (k + 1)
        assert exp_t_abs_reference(m, k) == 1
        out = both(dict(x=np.array([0, -1, -2, -32768]), m=m, k=k, order=order))
        assert out.y.tolist() == [1, 0 if order == 1 else 1, 0, 0]


@pytest.mark.parametrize("k", [61, 62, 63])
def test_shifts_61_to_63_use_exact_python_division(k):
    """2^62 and 2^63 do not fit int64: |t| is computed on Python ints and must be exact."""
    for m in (94207 // 1, 65535, (1 << 30) - 1, 1 << 29):
        t_abs = exp_t_abs_reference(m, k)
        assert t_abs == (2 * (1 << k) + log2e_multiplier(m)) // (2 * log2e_multiplier(m))
        case = dict(x=np.array([[0, -1, -t_abs, -(1 << 61)]]), m=np.array([[m]]), k=np.array([[k]]),
                    in_bits=62, out_bits=62)
        out = both(case)
        assert out.t_abs.tolist() == [[t_abs]] and out.y[0, 0] == t_abs


def test_scale_shapes_scalar_row_and_element():
    x = -np.arange(12, dtype=np.int64).reshape(3, 4)
    scalar = di_exp(x, 50000, 24)
    assert scalar.t_abs.shape == () and scalar.y.shape == (3, 4)
    row = di_exp(x, np.full((3, 1), 50000), np.full((3, 1), 24))
    assert row.t_abs.shape == (3, 1) and np.array_equal(row.y, scalar.y)
    element = di_exp(x, np.full((3, 4), 50000), 24)
    assert element.t_abs.shape == (3, 4) and np.array_equal(element.y, scalar.y)


@pytest.mark.parametrize("order", [1, 2])
@given(scale=exp_scales(16), in_bits=st.integers(2, 16))
def test_y_is_monotone_non_decreasing_in_x(order, scale, in_bits):
    m, k = scale
    x = np.arange(-(1 << (in_bits - 1)), 1, dtype=np.int64)
    y = di_exp(x, m, k, in_bits=in_bits, order=order).y.astype(np.int64)
    assert np.all(np.diff(y) >= 0)
    assert int(y.max()) <= exp_t_abs_reference(m, k) and int(y.min()) >= 0


# ---------------------------------------------------------------- accuracy (stated bound)

def test_polynomial_error_bounds():
    """The offline derivation of EPS_POLY: P1(f) = 1 + f/2 >= 2^f with max relative error 6.15%;
    P2(f) = 1 + f/2 + (87/512) f (1 + f) with |P2 / 2^f - 1| <= 0.27%; both exact at f = 0 and
    f = -1 (so y is continuous across q), and P2 is increasing (P2' >= 1/2 - 87/512 > 0)."""
    a2 = Fraction(ORDER2_A2, 1 << ORDER2_C)

    def p2(f):
        return 1 + f / 2 + a2 * f * (1 + f)

    assert p2(Fraction(0)) == 1 and p2(Fraction(-1)) == Fraction(1, 2)
    assert Fraction(1, 2) - a2 > 0
    f = np.linspace(-1.0, 0.0, 200_001)
    rel1 = (1 + f / 2) / np.exp2(f) - 1
    rel2 = (1 + f / 2 + float(a2) * f * (1 + f)) / np.exp2(f) - 1
    assert rel1.min() >= -1e-15 and rel1.max() <= EPS_POLY[1]
    assert np.abs(rel2).max() <= EPS_POLY[2] and np.abs(rel2).max() > 0.0026


def test_order2_numerator_stays_below_2_to_62():
    """The width claim behind |t| < 2^26: for the largest |t| and every q that is not short-cut
    to 0 (q <= bits(|t|)), numerator + denominator / 2 < 2^62."""
    t_abs = (1 << ORDER2_T_BITS) - 1
    worst = (t_abs * t_abs << ORDER2_C) + ((t_abs << (ORDER2_C + t_abs.bit_length())) >> 1)
    assert worst < 1 << 62


def exponent_error(m: int, k: int, t_abs: int) -> float:
    """delta = |ln 2 * 2^k / (|t| m) - 1|: the relative error of the exponent DI-Exp evaluates."""
    return abs(float(Fraction(1 << k, t_abs * m)) * math.log(2) - 1)


def delta_bound(m: int, t_abs: int) -> float:
    """The spec's bound on delta from m_f = m * 1.4375 (+15/16 .. -1/2) and |t|'s rounding (1/2)."""
    hi = math.log(2) * (1.4375 + 15 / (16 * m)) * (1 + 1 / (2 * t_abs)) - 1
    lo = 1 - math.log(2) * (1.4375 - 1 / (2 * m)) * (1 - 1 / (2 * t_abs))
    return max(hi, lo)


@pytest.mark.parametrize("order", [1, 2])
@given(data=st.data())
def test_accuracy_within_the_stated_bound(order, data):
    """|y/|t| - exp(x s)| <= exp(x s) * ((1 + eps_P) * exp(|x s| * delta) - 1) + rho / |t|."""
    case = data.draw(di_exp_cases(order=order))
    out = di_exp(**case)
    m = np.broadcast_to(case["m"], np.shape(out.t_abs))
    k = np.broadcast_to(case["k"], np.shape(out.t_abs))
    delta = np.vectorize(exponent_error)(m, k, out.t_abs)
    assert np.all(delta <= np.vectorize(delta_bound)(m, out.t_abs) + 1e-12)
    x = np.asarray(case["x"], dtype=np.float64)
    xs = np.abs(x) * np.broadcast_to(m / np.exp2(k.astype(np.float64)), x.shape)  # |x s|
    t = np.broadcast_to(out.t_abs, x.shape).astype(np.float64)
    got = out.y.astype(np.float64) / t
    ideal = di_exp_float(**case)
    # exp(-|xs|) ((1 + eps) exp(|xs| delta) - 1), written so that it cannot overflow
    with np.errstate(over="ignore"):
        rel = (1 + EPS_POLY[order]) * np.exp(xs * (np.broadcast_to(delta, x.shape) - 1)) - np.exp(-xs)
    bound = rel + RHO[order] / t + 1e-12
    assert np.all(np.abs(got - ideal) <= bound)


@pytest.mark.parametrize("order, worst", [(1, 0.0615 + 0.004), (2, 0.0027 + 0.004)])
def test_relative_accuracy_for_a_fine_scale_near_zero(order, worst):
    """With |t| ~ 2^20 and |x s| <= 1 the floors are negligible: the relative error is eps_P plus
    |x s| * delta (delta ~ 0.36%, the log2 e ~ 1.4375 approximation)."""
    m, k = 46341, 36
    t_abs = exp_t_abs_reference(m, k)
    x = -np.arange(0, int(2 ** k / m) + 1, 97, dtype=np.int64)
    y = di_exp(x, m, k, in_bits=32, order=order).y / t_abs
    rel = np.abs(y / di_exp_float(x, m, k) - 1)
    assert rel.max() <= worst


# ---------------------------------------------------------------- errors

def test_t_abs_over_out_bits_is_a_width_error_naming_op_and_tensor():
    for impl in (di_exp, di_exp_reference):
        with pytest.raises(WidthError, match=r"di_exp: t_abs .*scale 1/2\^40.* overflows its declared width uint32"):
            impl(np.array([0, -1]), 1, 40)
        with pytest.raises(WidthError, match=r"di_exp: t_abs\[1\] .*order-2 numerator needs \|t\| < 2\^26"):
            impl(np.array([[0, -1]]), np.array([40000, 40000]), np.array([20, 45]), order=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=np.array([0, 3, -1]), m=40000, k=20), r"di_exp: x\[1\] = 3 is positive"),
    (dict(x=np.array([0.0, -1.0]), m=40000, k=20), r"di_exp: x must be an integer array, got dtype float64"),
    (dict(x=np.array([True]), m=40000, k=20), r"di_exp: x must be an integer array, got dtype bool"),
    (dict(x=np.array([-200]), m=40000, k=20, in_bits=8), r"di_exp: x\[0\] = -200 is outside its declared width int8"),
    (dict(x=np.zeros((0, 3), np.int64), m=40000, k=20), r"di_exp: x is empty"),
    (dict(x=np.array([0]), m=0, k=20), r"di_exp: m = 0; a scale multiplier must be >= 1"),
    (dict(x=np.array([0]), m=-3, k=20), r"di_exp: m = -3 is outside its declared width uint30"),
    (dict(x=np.array([0]), m=1 << 30, k=20), r"outside its declared width uint30"),
    (dict(x=np.array([0]), m=40000, k=64), r"di_exp: k = 64 is outside \[0, 63\]"),
    (dict(x=np.array([0]), m=40000, k=-1), r"di_exp: k = -1 is outside \[0, 63\]"),
    (dict(x=np.zeros((2, 3), np.int64), m=np.ones(2, np.int64), k=20), r"must broadcast to x's shape \(2, 3\)"),
    (dict(x=np.zeros(3, np.int64), m=np.ones((2, 3), np.int64), k=20), r"must broadcast to x's shape \(3,\)"),
    (dict(x=np.array([0]), m=40000, k=5), r"di_exp: the scale 40000/2\^5 of t_abs is too large for DI-Exp"),
    (dict(x=np.array([0]), m=40000, k=20, order=3), r"di_exp: order must be one of \(1, 2\)"),
    (dict(x=np.array([0]), m=40000, k=20, order=True), r"order must be one of"),
    (dict(x=np.array([0]), m=40000, k=20, in_bits=1), r"di_exp: in_bits must be an integer in \[2, 62\]"),
    (dict(x=np.array([0]), m=40000, k=20, out_bits=63), r"di_exp: out_bits must be an integer in \[2, 62\]"),
])
def test_bad_inputs_raise_input_errors_naming_op_and_tensor(kwargs, message):
    errors = []
    for impl in (di_exp, di_exp_reference):
        with pytest.raises(InputError, match=message) as info:
            impl(**kwargs)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


@given(st.integers(1, (1 << 30) - 1), st.integers(0, 61))
def test_jitted_t_abs_equals_reference(m, k):
    from ilsim.ops.exp import exp_t_abs_i64

    assert exp_t_abs_i64(m, k) == exp_t_abs_reference(m, k)
