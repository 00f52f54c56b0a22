"""DI-Norm (RMSNorm and LayerNorm): fast path == scalar reference bit for bit, accuracy against the
float norm with a derived bound, width errors, input errors and thread invariance."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

from ilsim.arith import dyadic_from_scale
from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.ops import norm
from ilsim.ops.norm import (DEFAULT_EPS_K, DEFAULT_EPS_M, di_layernorm, di_layernorm_float,
                            di_layernorm_reference, di_rmsnorm, di_rmsnorm_float, di_rmsnorm_reference)
from ilsim.ops.registry import get_op
from ilsim.testing.cases_norm import TIE_ROWS, di_layernorm_cases, di_rmsnorm_cases
from ilsim.testing.parity import assert_same, outcome
from ilsim.testing.bounds import dequantize, requantization_bound

DIRECTED = ("floor", "trunc")




def residual_rows(rng, rows, d, bits=16):
    """Rows as the symmetric int16 residual stream has them: absmax at the full range."""
    hi = (1 << (bits - 1)) - 1
    x = np.round(rng.standard_normal((rows, d)) * hi / 4).clip(-hi, hi).astype(np.int64)
    x[np.arange(rows), rng.integers(0, d, rows)] = rng.choice([-hi, hi], rows)
    return x


# --- bit exactness -----------------------------------------------------------------------------

@given(di_rmsnorm_cases())
def test_rmsnorm_fast_equals_reference(case):
    assert_same(outcome(di_rmsnorm, case), outcome(di_rmsnorm_reference, case))


@given(di_layernorm_cases())
def test_layernorm_fast_equals_reference(case):
    assert_same(outcome(di_layernorm, case), outcome(di_layernorm_reference, case))


@given(di_rmsnorm_cases(in_bits=16, max_d=64))
def test_rmsnorm_on_the_int16_residual_stream_fast_equals_reference(case):
    assert_same(outcome(di_rmsnorm, case), outcome(di_rmsnorm_reference, case))


@pytest.mark.parametrize("d", [1, 3, 576, 1000])
@pytest.mark.parametrize("op", ["rms", "ln"])
def test_hidden_sizes_that_are_not_powers_of_two_fast_equals_reference(d, op):
    rng = np.random.default_rng(d)
    x = residual_rows(rng, 5, d)
    x[1] = 0
    x[2] = -32768
    m = np.array([40000, 0, 65535, 1, 32768])
    k = np.array([30, 0, 24, 16, 40])
    gamma = rng.integers(-(1 << 16), 1 << 16, d)
    kw = dict(x=x, m=m, k=k, gamma=gamma, gamma_k=16, zero_rows="zero")
    if op == "ln":
        kw["beta"] = rng.integers(-(1 << 16), 1 << 16, d)
        assert_same(di_layernorm(**kw), di_layernorm_reference(**kw))
    else:
        assert_same(di_rmsnorm(**kw), di_rmsnorm_reference(**kw))


@pytest.mark.parametrize("rounding", ["floor", "trunc", "half_up", "half_away", "half_even"])
def test_exact_ties_in_the_division_match_in_every_mode(rounding):
    x = np.array(TIE_ROWS)
    gamma = np.array([1, 3, 6, -6])  # odd: ties for r = 2; 2 mod 4: ties for r = 4
    kw = dict(x=x, m=40000, k=20, gamma=gamma, gamma_k=0, in_bits=8, eps_m=0, eps_k=0, rms_frac_bits=0,
              out_frac_bits=0, out_bits=8, rounding=rounding)
    # the case really ties: r = isqrt(floor(S / 4)) and 2 * (num mod r) == r for some element
    roots = [math.isqrt(sum(v * v for v in row) // 4) for row in TIE_ROWS]
    assert roots == [2, 2, 4, 4]
    assert any(2 * ((v * g) % r) == r for row, r in zip(TIE_ROWS, roots) for v, g in zip(row, gamma) if v)
    assert_same(di_rmsnorm(**kw), di_rmsnorm_reference(**kw))


def test_numba_kernel_gives_the_same_bits_on_one_thread_and_on_all():
    rng = np.random.default_rng(7)
    x = residual_rows(rng, 64, 300)
    kw = dict(x=x, m=rng.integers(1 << 15, 1 << 16, 64), k=rng.integers(20, 32, 64),
              gamma=rng.integers(-(1 << 16), 1 << 16, 300), gamma_k=16, rounding="half_even")
    ln_kw = dict(kw, beta=rng.integers(-(1 << 16), 1 << 16, 300))
    default = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = di_rmsnorm(**kw), di_layernorm(**ln_kw)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = di_rmsnorm(**kw), di_layernorm(**ln_kw)
    finally:
        numba.set_num_threads(default)
    for a, b in zip(one, many):
        assert_same(a, b)


# --- properties of the contract ----------------------------------------------------------------

def test_default_eps_is_the_dyadic_of_1e_minus_5():
    d = dyadic_from_scale(1e-5)
    assert (d.m, d.k) == (DEFAULT_EPS_M, DEFAULT_EPS_K)
    llama1 = dyadic_from_scale(1e-6)  # the value docs/spec/norm.md gives for LLaMA-1
    assert (llama1.m, llama1.k) == (34360, 35)


@given(st.data())
def test_with_eps_zero_the_input_scale_cancels(data):
    case = data.draw(di_rmsnorm_cases(zero_rows="zero"))
    case.update(eps_m=0, eps_k=0)
    other = dict(case, m=np.where(np.asarray(case["m"]) == 0, 0, (1 << case["mbits"]) - 1), k=7)
    assert_same(outcome(di_rmsnorm, case), outcome(di_rmsnorm, other))


@given(st.data())
def test_layernorm_is_invariant_to_a_constant_shift_of_the_row(data):
    case = data.draw(di_layernorm_cases(in_bits=8, zero_rows="zero"))
    x = np.asarray(case["x"]).clip(-100, 100)  # room to shift inside int8
    m = np.where(np.asarray(case["m"]) == 0, 1, case["m"])  # zero-scale rows are not shifted data
    shift = data.draw(st.integers(-27, 27))
    case.update(x=x, m=m, eps_m=0, eps_k=0)
    assert_same(outcome(di_layernorm, case), outcome(di_layernorm, dict(case, x=x + shift)))


def test_a_zero_scale_row_is_a_zero_row():
    x = np.array([[5, -3, 2], [7, 7, 7]])
    out = di_rmsnorm(x, [0, 40000], [0, 20], [65535, 65535, 65535], 16, in_bits=8, zero_rows="zero")
    assert np.array_equal(out.q[0], [0, 0, 0]) and out.m[0] == 0
    with pytest.raises(ZeroRangeError, match=r"di_rmsnorm: row 0 of y is all zeros"):
        di_rmsnorm_reference(x, [0, 40000], [0, 20], [65535, 65535, 65535], 16, in_bits=8)


def test_all_zero_row_with_eps_zero_gives_zeros_and_layernorm_gives_beta():
    x = np.zeros((1, 4), dtype=np.int64)
    rms = di_rmsnorm_reference(x, 40000, 20, [1, 2, 3, 4], 0, in_bits=8, eps_m=0, eps_k=0, zero_rows="zero")
    assert not rms.q.any() and rms.m[0] == 0
    beta = np.array([-4, 0, 4, 8])
    kw = dict(x=x, m=40000, k=20, gamma=[1, 2, 3, 4], beta=beta, gamma_k=0, in_bits=8, eps_m=0, eps_k=0,
              out_symmetric=True)
    out = di_layernorm(**kw)
    assert_same(out, di_layernorm_reference(**kw))
    assert np.allclose(dequantize(out)[0], beta, atol=0.5 * out.m[0] / 2.0 ** out.k[0])


def test_registry_lists_the_norms():
    for name, fast, ref in (("di_rmsnorm", di_rmsnorm, di_rmsnorm_reference),
                            ("di_layernorm", di_layernorm, di_layernorm_reference)):
        op = get_op(name)
        assert op.fast is fast and op.reference is ref and op.float_meaning is not None
        assert op.spec == "docs/spec/norm.md"


# --- accuracy against the float norm -----------------------------------------------------------
#
# Stated bound, per element j of a row with scale s = m/2^k > 0 (x in its integer units):
#   rho = sqrt(mean_sq + eps / s^2) with mean_sq = mean(x^2) (RMS) or mean((x - mean x)^2) (LN);
#   a = 2^F * rho. The integer ms lies in (a^2 - 1.5, a^2 + 0.5] (floor: -1, e_r half up: +-1/2),
#   so r = isqrt(ms) satisfies |r - a| <= 1 + 1.5 / a and
#       |v*g*2^F / r - v*g*2^F / a| <= |n_j| * (1 + 1.5/a) / (a - 1 - 1.5/a)      (n_j = ref_j - beta_j)
#   y rounds once: <= 2^-(G + gamma_k) (directed modes; 1/2 of it for nearest).
#   quantize_rows: |q - zp - y*d/R| <= 1 and the scale m'/2^k' has relative error <= 2^-mbits
#   (m' >= 2^(mbits-1), rounded half up; k' < 63), so with step = m'/2^k':
#       |deq - y_real| <= step * (1 + (d + 1) * 2^(1 - mbits)).
#   Total: |deq_j - ref_j| <= the sum of the three terms (+ 1e-9 relative float64 slack).
# Checked on rows with m > 0, a > 4 and k' < 63.

def norm_error_bound(case, out, ref, layer: bool):
    x = np.asarray(case["x"], dtype=np.float64).reshape(-1, ref.shape[-1])
    scale = (np.broadcast_to(np.asarray(case["m"], dtype=np.float64), out.m.shape).reshape(-1)
             / np.exp2(np.broadcast_to(np.asarray(case["k"], dtype=np.float64), out.m.shape).reshape(-1)))
    eps = case["eps_m"] / 2.0 ** case["eps_k"]
    centred = x - x.mean(axis=1, keepdims=True) if layer else x
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.sqrt((centred ** 2).mean(axis=1) + eps / scale ** 2)
    a = 2.0 ** case["rms_frac_bits"] * rho
    ref2 = ref.reshape(x.shape)
    beta = np.asarray(case.get("beta", np.zeros(x.shape[1])), dtype=np.float64) / 2.0 ** case["gamma_k"]
    with np.errstate(divide="ignore", invalid="ignore"):
        root_term = np.abs(ref2 - beta) * ((1 + 1.5 / a) / (a - 1 - 1.5 / a))[:, None]
    y_term = 2.0 ** -(case["out_frac_bits"] + case["gamma_k"]) * (1 if case["rounding"] in DIRECTED else 0.5)
    quant_term = requantization_bound(out, case["out_bits"], case["out_symmetric"], case["mbits"]).reshape(-1)
    bound = root_term + y_term + quant_term[:, None]
    checked = (scale > 0) & (a > 4) & (out.k.reshape(-1) < 63)
    return bound, checked


def check_accuracy(case, fast, float_fn, layer):
    try:
        out = fast(**case)
    except (WidthError, ZeroRangeError):
        return
    ref = float_fn(**case)
    bound, checked = norm_error_bound(case, out, ref, layer)
    err = np.abs(dequantize(out).reshape(bound.shape) - ref.reshape(bound.shape))
    slack = 1e-9 * (np.abs(ref.reshape(bound.shape)) + 1)
    assert np.all((err <= bound + slack)[checked]), (err - bound)[checked].max()


@given(di_rmsnorm_cases(zero_rows="zero"))
def test_rmsnorm_is_within_the_stated_bound_of_float_rmsnorm(case):
    check_accuracy(case, di_rmsnorm, di_rmsnorm_float, layer=False)


@given(di_layernorm_cases(zero_rows="zero"))
def test_layernorm_is_within_the_stated_bound_of_float_layernorm(case):
    check_accuracy(case, di_layernorm, di_layernorm_float, layer=True)


@pytest.mark.parametrize("d", [1, 3, 576, 1000, 4096])
def test_int16_residual_rows_are_within_about_one_output_step_of_float(d):
    # Defaults (F = G = 8) on int16 rows with a full-range absmax: a >= 2^8 * 32767 / sqrt(D), so
    # the root term is below 2^-14 relative for D <= 4096, and the error is about one output step.
    rng = np.random.default_rng(d)
    x = residual_rows(rng, 8, d)
    gamma = rng.integers(1 << 15, 1 << 16, d)
    case = dict(x=x, m=rng.integers(1 << 15, 1 << 16, 8), k=rng.integers(24, 32, 8), gamma=gamma, gamma_k=16,
                eps_m=DEFAULT_EPS_M, eps_k=DEFAULT_EPS_K, rms_frac_bits=8, out_frac_bits=8, out_bits=8,
                out_symmetric=False, mbits=16, rounding="half_up")
    out = di_rmsnorm(**case)
    err = np.abs(dequantize(out) - di_rmsnorm_float(**case))
    step = (out.m / np.exp2(out.k))[:, None]
    assert np.all(err <= 1.01 * step)
    check_accuracy(case, di_rmsnorm, di_rmsnorm_float, layer=False)


# --- width errors ------------------------------------------------------------------------------

def both_raise(kw, layer, error, pattern):
    fns = (di_layernorm, di_layernorm_reference) if layer else (di_rmsnorm, di_rmsnorm_reference)
    messages = []
    for fn in fns:
        with pytest.raises(error, match=pattern) as info:
            fn(**kw)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


FULL = dict(x=np.full((1, 4), -32768), m=40000, k=30, gamma=[65535] * 4, gamma_k=16)


@pytest.mark.parametrize("layer", [False, True])
def test_ms_above_2_62_is_a_width_error(layer):
    x = np.array([[-32768, 32767, -32768, 32767]])
    kw = dict(FULL, x=x, rms_frac_bits=17)
    if layer:
        kw["beta"] = [0] * 4
    both_raise(kw, layer, WidthError, r"di_(rms|layer)norm: ms\[0\] = \d+ exceeds 2\^62")


def test_eps_in_a_tiny_row_scale_above_2_62_is_a_width_error():
    both_raise(dict(FULL, m=1, k=63), False, WidthError, r"di_rmsnorm: e\[0\] = \d+ .*exceeds 2\^62")


def test_numerator_above_2_62_is_a_width_error():
    both_raise(dict(FULL, out_frac_bits=31, gamma_k=0), False, WidthError,
               r"di_rmsnorm: num\[0,0\] = -?\d+ .*overflows its declared range \|num\| < 2\^62")


def test_y_outside_y_bits_is_a_width_error():
    both_raise(dict(FULL, y_bits=16), False, WidthError,
               r"di_rmsnorm: y\[0,0\] = -?\d+ overflows its declared width int16")


def test_zero_root_for_a_nonzero_row_is_a_width_error():
    x = np.zeros((1, 8), dtype=np.int64)
    x[0, 3] = 1  # S = 1, ms = floor(1 * 2^0 / 8) = 0
    both_raise(dict(x=x, m=40000, k=20, gamma=[1] * 8, gamma_k=0, in_bits=8, eps_m=0, eps_k=0,
                    rms_frac_bits=0), False, WidthError, r"di_rmsnorm: r\[0\] = 0 for a row")


# --- input errors ------------------------------------------------------------------------------

GOOD = dict(x=np.array([[1, -2, 3]]), m=[40000], k=[20], gamma=[100, 200, 300], gamma_k=8, in_bits=8)


@pytest.mark.parametrize("change, pattern", [
    (dict(x=np.array([[1.0, 2.0, 3.0]])), r"di_rmsnorm: x must be an integer array, got dtype float64"),
    (dict(x=np.int64(3)), r"di_rmsnorm: x must have at least one dimension"),
    (dict(x=np.zeros((0, 3), dtype=np.int64)), r"di_rmsnorm: x is empty"),
    (dict(x=np.array([[1, -200, 3]])), r"di_rmsnorm: x\[0,1\] = -200 is outside its declared width int8"),
    (dict(gamma=[1, 2]), r"di_rmsnorm: gamma must have shape \(3,\), got \(2,\)"),
    (dict(gamma=[1, 2, 1 << 16]), r"di_rmsnorm: gamma\[2\] = 65536 is outside its declared width int17"),
    (dict(m=[-1]), r"di_rmsnorm: x.m\[0\] = -1 is outside its declared width uint16"),
    (dict(k=[64]), r"di_rmsnorm: x.k must be in \[0, 63\]"),
    (dict(m=[1, 2]), r"di_rmsnorm: x scale shapes \(2,\)/\(1,\) do not broadcast"),
    (dict(in_bits=17), r"di_rmsnorm: in_bits must be in \[2, 16\], got 17"),
    (dict(gamma_k=60), r"di_rmsnorm: gamma_k must be in \[0, 63 - out_frac_bits\] = \[0, 55\]"),
    (dict(eps_m=-1), r"di_rmsnorm: eps_m must be in \[0, 2\^32\)"),
    (dict(eps_k=64), r"di_rmsnorm: eps_k must be in \[0, 63\]"),
    (dict(rms_frac_bits=32), r"di_rmsnorm: rms_frac_bits must be in \[0, 31\]"),
    (dict(out_bits=1), r"di_rmsnorm: out_bits must be in \[2, 16\]"),
    (dict(y_bits=60), r"di_rmsnorm: y_bits must be in \[8, 62 - out_bits\] = \[8, 54\]"),
    (dict(rounding="banana"), r"di_rmsnorm: unknown rounding mode 'banana'"),
    (dict(zero_rows="skip"), r"di_rmsnorm: zero_rows must be one of"),
    (dict(out_symmetric=1), r"di_rmsnorm: out_symmetric must be a bool"),
    (dict(in_bits=8.0), r"di_rmsnorm: in_bits must be an int"),
])
def test_bad_rmsnorm_input_is_an_input_error_naming_op_and_tensor(change, pattern):
    kw = dict(GOOD, **change)
    for fn in (di_rmsnorm, di_rmsnorm_reference):
        with pytest.raises(InputError, match=pattern):
            fn(**kw)


@pytest.mark.parametrize("beta, pattern", [
    ([1, 2], r"di_layernorm: beta must have shape \(3,\), got \(2,\)"),
    ([0, 0, -(1 << 17)], r"di_layernorm: beta\[2\] = -131072 is outside its declared width int17"),
    (np.array([0.5, 0, 0]), r"di_layernorm: beta must be an integer array"),
])
def test_bad_layernorm_beta_is_an_input_error(beta, pattern):
    kw = dict(GOOD, beta=beta)
    for fn in (di_layernorm, di_layernorm_reference):
        with pytest.raises(InputError, match=pattern):
            fn(**kw)


def test_floats_stay_out_of_the_integer_path():
    # the per-row helpers take and return Python ints only
    assert isinstance(norm.eps_in_row_units(DEFAULT_EPS_M, DEFAULT_EPS_K, 40000, 30, 8), int)
    assert isinstance(norm.row_root("op", 0, 10**9, 7, 3, 8), int)
