"""DI-ClippedSoftmax (docs/spec/softmax.md): fast == reference, row sums, argmax, the stated
accuracy bound, clip boundaries, masks, saturation, errors."""

from fractions import Fraction
import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ilsim.errors import InputError, WidthError
from ilsim.ops.exp import exp_t_abs_reference
from ilsim.ops.registry import get_op
from ilsim.ops.softmax import clip_int_reference, di_softmax, di_softmax_float, di_softmax_reference
from ilsim.testing.cases_nonlinear import assert_fast_equals_reference, di_softmax_cases

#: As in tests/test_exp.py (derived in docs/spec/exp.md): relative error of the 2^f approximation
#: and the rounding of each e_j in its own units.
EPS_POLY = {1: 0.0615, 2: 0.0027}
RHO = {1: 1.0, 2: 0.5}


def both(case):
    return assert_fast_equals_reference(di_softmax, di_softmax_reference, case)


def rows_of(case, p):
    """(x rows, keep rows, p rows, m per row, k per row) as 2-D/1-D arrays."""
    x = np.asarray(case["x"])
    n = x.shape[-1]
    keep = np.ones(x.shape, bool) if case["mask"] is None else np.broadcast_to(case["mask"], x.shape)
    m = np.broadcast_to(case["m"], x.shape[:-1]).reshape(-1)
    k = np.broadcast_to(case["k"], x.shape[:-1]).reshape(-1)
    return x.reshape(-1, n), keep.reshape(-1, n), p.reshape(-1, n).astype(np.int64), m, k


# ---------------------------------------------------------------- fast == reference

@given(di_softmax_cases())
def test_fast_equals_reference_bit_for_bit(case):
    both(case)


@pytest.mark.parametrize("in_bits", range(2, 17))
@settings(max_examples=6)
@given(data=st.data())
def test_fast_equals_reference_for_every_input_width(in_bits, data):
    both(data.draw(di_softmax_cases(in_bits=in_bits)))


def test_registry_lists_di_softmax():
    op = get_op("di_softmax")
    assert op.fast is di_softmax and op.reference is di_softmax_reference
    assert op.float_meaning is di_softmax_float


def test_results_identical_for_one_thread_and_all_threads():
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 15), 1 << 15, size=(96, 131))
    m = rng.integers(1 << 15, 1 << 16, size=96)
    causal = np.arange(131)[None, :] <= np.arange(96)[:, None] + 35
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = di_softmax(x, m, 24, mask=causal, order=2)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = di_softmax(x, m, 24, mask=causal, order=2)
    finally:
        numba.set_num_threads(previous)
    assert np.array_equal(one, many)


# ---------------------------------------------------------------- properties

@given(di_softmax_cases())
def test_rows_sum_to_2_to_the_f_within_half_an_lsb_per_element(case):
    """Each p_j = round(e_j 2^F / S) is off by at most 1/2 from e_j 2^F / S, and those sum to 2^F,
    so |sum_j p_j - 2^F| <= N/2 (N kept elements); a saturated element (only when F = n, at most
    one per row) removes one more unit."""
    p = both(case)
    if p is None:
        return
    _, keep, p, _, _ = rows_of(case, p)
    full, p_max = 1 << case["out_frac_bits"], (1 << case["out_bits"]) - 1
    for r in range(p.shape[0]):
        n_kept = int(keep[r].sum())
        saturated = int(case["out_frac_bits"] >= case["out_bits"] and p[r].max() == p_max)
        assert abs(int(p[r].sum()) - full) <= n_kept / 2 + saturated
        assert np.all(p[r][~keep[r]] == 0)


@given(di_softmax_cases())
def test_argmax_is_preserved(case):
    """e is non-decreasing in d and p in e, so the largest kept x gets the largest p."""
    p = both(case)
    if p is None:
        return
    x, keep, p, _, _ = rows_of(case, p)
    for r in range(p.shape[0]):
        top = int(np.argmax(np.where(keep[r], x[r], np.iinfo(np.int64).min)))
        assert p[r, top] == p[r].max()


def accuracy_bound(case, r, x_row, keep_row, ideal_row, p_row):
    """The stated bound of docs/spec/softmax.md for one row, per element (see that derivation):
    |p_j 2^-F - pi_j| <= (eta_j A_j + rho/T) + pi_j * sum_i (eta_i A_i + rho/T) + 2^-(F+1)
                         (+ 2^-F where p_j saturated),
    A_j = exp(max(v_j - v_max, -c)), eta_j = (1 + eps_P) exp(|d_j s| delta + s/2 [clipped]) - 1."""
    m, k = int(np.broadcast_to(case["m"], np.shape(case["x"])[:-1]).reshape(-1)[r]), \
        int(np.broadcast_to(case["k"], np.shape(case["x"])[:-1]).reshape(-1)[r])
    t_abs, s = exp_t_abs_reference(m, k), m / 2.0 ** k
    delta = abs(float(Fraction(1 << k, t_abs * m)) * math.log(2) - 1)
    clip = case["clip"]
    row_max = x_row[keep_row].max()
    d = (x_row - row_max).astype(np.float64)
    if clip is not None:
        d = np.maximum(d, -clip_int_reference(Fraction(clip), m, k))
    clipped_slack = s / 2 if clip is not None else 0.0
    log_a = (x_row - row_max) * s
    if clip is not None:
        log_a = np.maximum(log_a, -float(Fraction(clip)))
    # eta_j A_j, written as a difference of exponentials so that it cannot overflow
    # over: a vacuous (infinite) bound for absurd scales is still a bound; invalid: masked elements
    # above the kept maximum give inf - inf here, and np.where below drops them
    with np.errstate(over="ignore", invalid="ignore"):
        eta_a = (1 + EPS_POLY[case["order"]]) * np.exp(log_a + np.abs(d * s) * delta + clipped_slack) - np.exp(log_a)
    err = np.where(keep_row, eta_a + RHO[case["order"]] / t_abs, 0.0)
    F, n = case["out_frac_bits"], case["out_bits"]
    saturated = (F >= n) & (p_row == (1 << n) - 1)
    return err + ideal_row * err.sum() + 2.0 ** -(F + 1) + np.where(saturated, 2.0 ** -F, 0.0) + 1e-12


@pytest.mark.parametrize("order", [1, 2])
@given(data=st.data())
def test_accuracy_against_clipped_float_softmax_within_the_stated_bound(order, data):
    case = data.draw(di_softmax_cases(order=order))
    p = both(case)
    if p is None:
        return
    ideal = di_softmax_float(**case)
    x, keep, p, _, _ = rows_of(case, p)
    ideal = ideal.reshape(x.shape)
    got = p / 2.0 ** case["out_frac_bits"]
    for r in range(x.shape[0]):
        bound = accuracy_bound(case, r, x[r], keep[r], ideal[r], p[r])
        assert np.all(np.abs(got[r] - ideal[r]) <= bound)


def test_accuracy_of_a_typical_attention_row():
    """Int16 logits over +-8 (s = 2^-12), clip 15, 8-bit output with F = 8: a regression guard on
    fixed data (measured 1.56 LSB for order 1, 0.56 LSB for order 2)."""
    rng = np.random.default_rng(11)
    x = rng.integers(-(1 << 15), 1 << 15, size=(32, 200))
    m, k = 1 << 15, 27  # s = 2^-12
    ideal = di_softmax_float(x, m, k)
    for order, lsb in ((1, 2.0), (2, 1.0)):
        p = di_softmax(x, m, k, order=order)
        assert np.abs(p / 256.0 - ideal).max() <= lsb / 256


# ---------------------------------------------------------------- edges

def test_clip_boundary_d_equal_to_and_one_past_minus_c_int():
    """d == -c_int is kept as is; d == -c_int - 1 saturates to -c_int: both get the same p."""
    m, k, clip = 40000, 32, Fraction(15, 2)  # |t| = 74698: e(-c) ~ 42 is well above 0
    c_int = clip_int_reference(clip, m, k)
    assert c_int == (15 * (1 << k) * 2 + 2 * m) // (2 * 2 * m)  # round_half_up(c 2^k / m)
    x = np.array([[0, -c_int, -c_int - 1, -c_int + 1, -c_int - 50000]])
    for order in (1, 2):
        p = both(dict(x=x, m=m, k=k, in_bits=22, clip=clip, out_bits=16, out_frac_bits=16, mask=None,
                      order=order, sum_bits=32))
        assert p[0, 1] == p[0, 2] == p[0, 4] > 0 and p[0, 3] >= p[0, 1]
        unclipped = di_softmax(x, m, k, in_bits=22, clip=None, out_bits=16, out_frac_bits=16, order=order)
        assert unclipped[0, 2] <= unclipped[0, 1] and unclipped[0, 4] < p[0, 4]


@pytest.mark.parametrize("n_cols", [1, 3, 7, 10])
def test_all_equal_rows_are_uniform(n_cols):
    """e = |t| everywhere, so p = round(2^F / N) exactly."""
    x = np.full((2, n_cols), -123)
    p = both(dict(x=x, m=50000, k=30, in_bits=16, clip=15, out_bits=8, out_frac_bits=7, mask=None,
                  order=1, sum_bits=32))
    assert np.all(p == (2 * 128 + n_cols) // (2 * n_cols))


@pytest.mark.parametrize("out_bits", [2, 5, 8, 16])
def test_one_hot_rows_saturate_only_when_f_equals_n(out_bits):
    """A row whose other elements underflow to e = 0 has p = 2^F at its maximum: kept when
    F = n - 1, saturated to 2^n - 1 when F = n."""
    x = np.array([[32767, -32768, -32768], [-32768, 32767, 0]])
    m, k = 1 << 15, 15  # s = 1: every other e is exp(-32767) -> 0
    for frac_bits, top in ((out_bits - 1, 1 << (out_bits - 1)), (out_bits, (1 << out_bits) - 1)):
        p = both(dict(x=x, m=m, k=k, in_bits=16, clip=None, out_bits=out_bits, out_frac_bits=frac_bits,
                      mask=None, order=1, sum_bits=32))
        assert p.tolist() == [[top, 0, 0], [0, top, 0]]


def test_masked_elements_are_zero_and_do_not_influence_the_rest():
    rng = np.random.default_rng(5)
    x = rng.integers(-3000, 3000, size=(6, 9))
    causal = np.arange(9)[None, :] <= np.arange(6)[:, None] + 3
    p = both(dict(x=x, m=40000, k=24, in_bits=16, clip=15, out_bits=8, out_frac_bits=8, mask=causal,
                  order=2, sum_bits=32))
    assert np.all(p[~causal] == 0)
    for r in range(6):
        kept = x[r][causal[r]]
        alone = di_softmax(kept, 40000, 24, order=2)
        assert np.array_equal(p[r][causal[r]], alone)
    big_masked = x.copy()
    big_masked[~causal] = 32767  # larger than every kept value: must not become the row max
    assert np.array_equal(di_softmax(big_masked, 40000, 24, mask=causal, order=2), p)


def test_mask_broadcasts_and_keeps_every_row():
    x = np.arange(12).reshape(2, 2, 3) - 20
    mask = np.array([True, False, True])
    p = di_softmax(x, 40000, 24, mask=mask)
    assert np.all(p[..., 1] == 0) and np.array_equal(p, di_softmax_reference(x, 40000, 24, mask=mask))


# ---------------------------------------------------------------- errors

def test_sum_over_its_declared_width_is_a_width_error_naming_op_and_tensor():
    x = np.zeros((2, 4), np.int64)
    m, k = 40000, 23
    assert exp_t_abs_reference(m, k) == 146  # 4 * 146 > 255
    for impl in (di_softmax, di_softmax_reference):
        with pytest.raises(WidthError, match=r"di_softmax: S\[0\] = 584 overflows its declared width uint8"):
            impl(x, m, k, sum_bits=8)
        with pytest.raises(WidthError, match=r"di_softmax: t_abs\[1\] .* overflows its declared width uint8"):
            impl(x, np.array([40000, 400]), k, sum_bits=8)


@pytest.mark.parametrize("kwargs, message", [
    (dict(clip=7.5), r"di_softmax: clip must be a positive int or fractions.Fraction \(exact\), got float"),
    (dict(clip=True), r"clip must be a positive int or fractions.Fraction"),
    (dict(clip=0), r"di_softmax: clip must be > 0, got 0"),
    (dict(clip=Fraction(-1, 2)), r"di_softmax: clip must be > 0"),
    (dict(mask=np.ones((2, 5), np.int64)), r"di_softmax: mask must be a bool array \(True = keep\), got dtype int64"),
    (dict(mask=np.ones((3, 5), bool)), r"di_softmax: mask of shape \(3, 5\) does not broadcast to x's shape \(2, 5\)"),
    (dict(mask=np.array([[True] * 5, [False] * 5])), r"di_softmax: mask keeps no element of row 1;"),
    (dict(x=np.array(3)), r"di_softmax: x must have at least one dimension"),
    (dict(x=np.zeros((2, 5))), r"di_softmax: x must be an integer array, got dtype float64"),
    (dict(x=np.full((2, 5), 40000)), r"di_softmax: x\[0,0\] = 40000 is outside its declared width int16"),
    (dict(m=np.ones(3, np.int64)),
     r"di_softmax: the row scale m \(3,\) / k \(\) must be a scalar or have the row shape"),
    (dict(m=0), r"di_softmax: m = 0; a scale multiplier must be >= 1"),
    (dict(k=70), r"di_softmax: k = 70 is outside \[0, 63\]"),
    (dict(k=3), r"di_softmax: the scale 40000/2\^3 of t_abs\[0\] is too large for DI-Exp"),
    (dict(out_frac_bits=0), r"di_softmax: out_frac_bits must be an integer in \[1, 8\]"),
    (dict(out_frac_bits=9), r"out_frac_bits must be an integer in \[1, 8\]"),
    (dict(out_bits=17), r"di_softmax: out_bits must be an integer in \[2, 16\]"),
    (dict(sum_bits=33), r"di_softmax: sum_bits must be an integer in \[2, 32\]"),
    (dict(in_bits=33), r"di_softmax: in_bits must be an integer in \[2, 32\]"),
    (dict(order=0), r"di_softmax: order must be one of \(1, 2\)"),
])
def test_bad_inputs_raise_input_errors_naming_op_and_tensor(kwargs, message):
    case = dict(x=np.zeros((2, 5), np.int64), m=40000, k=24)
    case.update(kwargs)
    errors = []
    for impl in (di_softmax, di_softmax_reference):
        with pytest.raises(InputError, match=message) as info:
            impl(**case)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
