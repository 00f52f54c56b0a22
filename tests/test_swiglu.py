"""DI-SiLU and DI-SwiGLU (docs/spec/swiglu.md): fast == reference, the integer sigmoid's range and
symmetry, the stated accuracy bounds, the gate_div fold, zero rows, errors."""

from fractions import Fraction
import math

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ilsim.arith.jit import mode_code
from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.ops.exp import exp_t_abs_reference
from ilsim.ops.quantize import output_levels
from ilsim.ops.registry import get_op
from ilsim.kernels.swiglu import sigmoid_i64
from ilsim.ops.swiglu import (di_silu, di_silu_float, di_silu_reference, di_swiglu, di_swiglu_float,
                              di_swiglu_reference, sigmoid_reference, sigmoid_scale_reference)
from ilsim.testing.cases_nonlinear import (assert_fast_equals_reference, di_silu_cases, di_swiglu_cases,
                                           exp_scales)

#: As in tests/test_exp.py (derived in docs/spec/exp.md).
EPS_POLY = {1: 0.0615, 2: 0.0027}
RHO = {1: 1.0, 2: 0.5}
#: Largest error of sigma's division in units of 2^-F: half for the nearest modes, one otherwise.
DIV_ERR = {"half_up": 0.5, "half_away": 0.5, "half_even": 0.5, "floor": 1.0, "trunc": 1.0}


def silu_both(case):
    return assert_fast_equals_reference(di_silu, di_silu_reference, case)


def swiglu_both(case):
    return assert_fast_equals_reference(di_swiglu, di_swiglu_reference, case)


# ---------------------------------------------------------------- fast == reference

@given(di_silu_cases())
def test_silu_fast_equals_reference_bit_for_bit(case):
    silu_both(case)


@given(di_swiglu_cases())
def test_swiglu_fast_equals_reference_bit_for_bit(case):
    swiglu_both(case)


@pytest.mark.parametrize("in_bits", range(2, 9))
@settings(max_examples=6)
@given(data=st.data())
def test_fast_equals_reference_for_every_input_width(in_bits, data):
    silu_both(data.draw(di_silu_cases(in_bits=in_bits)))
    swiglu_both(data.draw(di_swiglu_cases(in_bits=in_bits)))


def test_registry_lists_di_silu_and_di_swiglu():
    for name, fast, ref, flt in (("di_silu", di_silu, di_silu_reference, di_silu_float),
                                 ("di_swiglu", di_swiglu, di_swiglu_reference, di_swiglu_float)):
        op = get_op(name)
        assert op.fast is fast and op.reference is ref and op.float_meaning is flt


def test_results_identical_for_one_thread_and_all_threads():
    rng = np.random.default_rng(2)
    g, u = rng.integers(0, 256, size=(2, 48, 173))
    kw = dict(gate_div_m=rng.integers(1 << 15, 1 << 16, size=173), gate_div_k=16, order=2)
    previous = numba.get_num_threads()
    results = []
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            results.append((di_swiglu(g, 128, 40000, 20, u, 120, 50000, 21, **kw), di_silu(g, 100, 40000, 20)))
    finally:
        numba.set_num_threads(previous)
    for one, many in zip(*results):
        assert all(np.array_equal(a, b) for a, b in zip(one, many))


# ---------------------------------------------------------------- the integer sigmoid

@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("rounding", ["half_up", "floor", "half_even"])
@given(scale=exp_scales(20), frac_bits=st.sampled_from([1, 7, 15, 16, 30]))
def test_sigma_in_range_monotone_symmetric_and_half_at_zero(order, rounding, scale, frac_bits):
    """sigma in [0, 2^F]; sigma(0) == 2^(F-1) exactly; non-decreasing in v; sigma(v) + sigma(-v)
    is 2^F within one unit (two roundings of complementary quotients); jitted == reference."""
    t_abs = exp_t_abs_reference(*scale)
    full = 1 << frac_bits
    v = np.arange(-300, 301)
    sig = [sigmoid_reference(int(a), t_abs, frac_bits, order, rounding) for a in v]
    code = mode_code(rounding)
    assert sig == [sigmoid_i64(np.int64(a), np.int64(t_abs), np.int64(frac_bits), order, code) for a in v]
    sig = np.array(sig, dtype=np.int64)
    assert sig.min() >= 0 and sig.max() <= full
    assert sig[300] == full // 2
    assert np.all(np.diff(sig) >= 0)
    assert np.all(np.abs(sig + sig[::-1] - full) <= 1)


def sigma_error(v, t_abs, m, k, order, frac_bits, rounding):
    """The stated bound on |sigma 2^-F - sigmoid(v)| (docs/spec/swiglu.md):
    exp(-|v|) ((1 + eps_P) exp(|v| delta) - 1) + rho / |t| + div_err 2^-F."""
    delta = abs(float(Fraction(1 << k, t_abs * m)) * math.log(2) - 1)
    a = np.abs(v)
    with np.errstate(over="ignore"):
        poly = (1 + EPS_POLY[order]) * np.exp(a * (delta - 1)) - np.exp(-a)
    return poly + RHO[order] / t_abs + DIV_ERR[rounding] * 2.0 ** -frac_bits


@pytest.mark.parametrize("order", [1, 2])
@given(scale=exp_scales(24), frac_bits=st.sampled_from([8, 15, 30]))
def test_sigma_accuracy_within_the_stated_bound(order, scale, frac_bits):
    m, k = scale
    t_abs = exp_t_abs_reference(m, k)
    xp = np.arange(-2000, 2001, 7)
    v = xp * (m / 2.0 ** k)
    sig = np.array([sigmoid_reference(int(a), t_abs, frac_bits, order) for a in xp]) / 2.0 ** frac_bits
    bound = sigma_error(v, t_abs, m, k, order, frac_bits, "half_up") + 1e-12
    assert np.all(np.abs(sig - 0.5 * (1 + np.tanh(v / 2))) <= bound)


# ---------------------------------------------------------------- accuracy of the activations

def dequantized(rq):
    zp = rq.zp[..., None]
    scale = (rq.m / np.exp2(rq.k.astype(np.float64)))[..., None]
    return (rq.q.astype(np.float64) - zp) * scale


def requant_error(rq, wide_scale_rows, w_range_rows, out_bits, symmetric, rounding):
    """Half a step of the exact output scale (a whole step for floor/trunc data rounding), plus
    the output scale's own rounding times |q - zp|; that scale's relative error is asserted
    <= 2^-15 (m' normalised to 16 bits)."""
    levels = output_levels(out_bits, symmetric)
    exact = wide_scale_rows * w_range_rows / levels
    got = rq.m / np.exp2(rq.k.astype(np.float64))
    live = (rq.m >= 1 << 15)
    assert np.all(np.abs(got - exact)[live] <= exact[live] * 2.0 ** -15)
    qz = np.abs(rq.q.astype(np.float64) - rq.zp[..., None])
    return exact[..., None] * DIV_ERR[rounding] + np.abs(got - exact)[..., None] * qz


@pytest.mark.parametrize("order", [1, 2])
@given(data=st.data())
def test_silu_accuracy_within_the_stated_bound(order, data):
    """|out - silu(v)| <= |v| sigma_err(v) + requantization error (docs/spec/swiglu.md)."""
    case = data.draw(di_silu_cases(order=order))
    rq = silu_both(case)
    if rq is None:
        return
    x = np.asarray(case["x"])
    rows = x.shape[:-1]
    m, k = np.broadcast_to(case["m"], rows), np.broadcast_to(case["k"], rows)
    zp = np.broadcast_to(case["zp"], rows)
    xp = (x - zp[..., None]).astype(np.float64)
    s = (m / np.exp2(k.astype(np.float64)))
    v = xp * s[..., None]
    bound = np.zeros(x.shape)
    for idx in np.ndindex(*rows):
        t_abs = exp_t_abs_reference(int(m[idx]), int(k[idx]))
        bound[idx] = np.abs(v[idx]) * sigma_error(v[idx], t_abs, int(m[idx]), int(k[idx]), order,
                                                  case["sig_frac_bits"], case["rounding"])
    w_range = _w_range(di_silu_w(case), case["out_symmetric"])
    bound += requant_error(rq, s * 2.0 ** -case["sig_frac_bits"], w_range, case["out_bits"], case["out_symmetric"],
                           case["rounding"])
    ideal = di_silu_float(**case)
    assert np.all(np.abs(dequantized(rq) - ideal) <= bound + 1e-12 * (1 + np.abs(ideal)))


def di_silu_w(case):
    """The wide product w of the SiLU contract, recomputed on Python ints from its definition."""
    x = np.asarray(case["x"])
    rows = x.shape[:-1]
    zp = np.broadcast_to(case["zp"], rows)
    m, k = np.broadcast_to(case["m"], rows), np.broadcast_to(case["k"], rows)
    w = np.zeros(x.shape, dtype=np.int64)
    for idx in np.ndindex(*x.shape):
        r = idx[:-1]
        t_abs = exp_t_abs_reference(int(m[r]), int(k[r]))
        xp = int(x[idx]) - int(zp[r])
        w[idx] = xp * sigmoid_reference(xp, t_abs, case["sig_frac_bits"], case["order"], case["rounding"])
    return w


def _w_range(w, symmetric):
    if symmetric:
        return np.abs(w).max(axis=-1).astype(np.float64)
    return (np.maximum(w.max(axis=-1), 0) - np.minimum(w.min(axis=-1), 0)).astype(np.float64)


@pytest.mark.parametrize("order", [1, 2])
@given(data=st.data())
def test_swiglu_accuracy_within_the_stated_bound(order, data):
    """|out - g sigmoid(g div) u| <= |g u| (sigma_err(v') + |v' - g div| / 4) + requantization
    error, v' = g' * s_sig the sigmoid input at its renormalised dyadic scale (docs/spec/swiglu.md)."""
    case = data.draw(di_swiglu_cases(order=order))
    rq = swiglu_both(case)
    if rq is None:
        return
    gate, up = np.asarray(case["gate"]), np.asarray(case["up"])
    rows = gate.shape[:-1]
    b = {name: np.broadcast_to(case[name], rows) for name in ("gate_zp", "gate_m", "gate_k", "up_zp", "up_m", "up_k")}
    s_g = b["gate_m"] / np.exp2(b["gate_k"].astype(np.float64))
    s_u = b["up_m"] / np.exp2(b["up_k"].astype(np.float64))
    gp = (gate - b["gate_zp"][..., None]).astype(np.float64)
    g, u = gp * s_g[..., None], (up - b["up_zp"][..., None]) * s_u[..., None]
    has_div = case.get("gate_div_m") is not None
    div = (np.asarray(case["gate_div_m"]) / np.exp2(np.asarray(case["gate_div_k"], np.float64))) if has_div else 1.0
    bound = np.zeros(gate.shape)
    w = np.zeros(gate.shape, dtype=np.int64)
    for idx in np.ndindex(*gate.shape):
        r, j = idx[:-1], idx[-1]
        mg, kg = int(b["gate_m"][r]), int(b["gate_k"][r])
        if has_div:
            ms, ks = sigmoid_scale_reference(mg, kg, int(case["gate_div_m"][j]), int(case["gate_div_k"][j]), "t", "")
        else:
            ms, ks = mg, kg
        t_abs = exp_t_abs_reference(ms, ks)
        v_sig = gp[idx] * ms / 2.0 ** ks
        v_true = g[idx] * (div[j] if has_div else 1.0)
        err = sigma_error(np.array(v_sig), t_abs, ms, ks, order, case["sig_frac_bits"], case["rounding"])
        bound[idx] = abs(g[idx] * u[idx]) * (err + abs(v_sig - v_true) / 4)
        g_int = int(gate[idx]) - int(b["gate_zp"][r])
        w[idx] = g_int * sigmoid_reference(g_int, t_abs, case["sig_frac_bits"], order, case["rounding"]) * \
            (int(up[idx]) - int(b["up_zp"][r]))
    wide = s_g * s_u * 2.0 ** -case["sig_frac_bits"]
    bound += requant_error(rq, wide, _w_range(w, case["out_symmetric"]), case["out_bits"], case["out_symmetric"],
                           case["rounding"])
    ideal = di_swiglu_float(**case)
    assert np.all(np.abs(dequantized(rq) - ideal) <= bound + 1e-12 * (1 + np.abs(ideal)))


# ---------------------------------------------------------------- gate_div, zero rows

def test_gate_div_of_one_equals_no_gate_div():
    """gate_div = 2^15 / 2^15 renormalises exactly back to the gate scale: identical results."""
    rng = np.random.default_rng(4)
    g, u = rng.integers(0, 256, size=(2, 5, 11))
    args = (g, 130, 45000, 21, u, 127, 52000, 20)
    plain = di_swiglu(*args)
    ones = di_swiglu(*args, gate_div_m=np.full(11, 1 << 15), gate_div_k=np.full(11, 15))
    assert all(np.array_equal(a, b) for a, b in zip(plain, ones))
    scaled = di_swiglu(*args, gate_div_m=np.full(11, 1 << 15), gate_div_k=np.full(11, 17))
    assert not np.array_equal(plain.q, scaled.q)


def test_sigmoid_scale_renormalisation_rounds_once_half_up_with_carry():
    # P = 0x1FFFF8 (21 bits): s = 5, P / 32 = 65535.75 -> 65536 (half up) -> carry: 2^15, k - 6
    m, k = sigmoid_scale_reference(0x1FFFF8, 10, 1, 20, "op", "[0,0]")
    assert (m, k) == (1 << 15, 30 - 6)
    # an exact tie: P / 2^s = 40000.5 rounds up
    m, k = sigmoid_scale_reference(80001, 3, 1, 4, "op", "")
    assert (m, k) == (40001, 6)
    # no rounding when P already fits 16 bits
    assert sigmoid_scale_reference(300, 9, 200, 7, "op", "") == (60000, 16)


@pytest.mark.parametrize("impls", [(di_silu, di_silu_reference), (di_swiglu, di_swiglu_reference)])
def test_zero_rows_policy(impls):
    x = np.array([[7, 7, 7], [1, 200, 9]])
    if impls[0] is di_silu:
        args = (x, 7, 40000, 20)
    else:
        args = (x, 7, 40000, 20, np.full((2, 3), 3), 0, 50000, 21)
    for impl in impls:
        with pytest.raises(ZeroRangeError, match=r"quantize_rows: row 0 of di_s\w+ product w is all zeros"):
            impl(*args)
        out = impl(*args, zero_rows="zero")
        assert out.q[0].tolist() == [0, 0, 0] and out.zp[0] == 0 and out.m[0] == 0 and out.k[0] == 0
        assert out.m[1] >= 1 << 15


# ---------------------------------------------------------------- errors

def test_sigmoid_t_abs_over_32_bits_is_a_width_error_naming_op_and_tensor():
    x = np.array([[1, 2, 3]])
    for impl in (di_silu, di_silu_reference):
        with pytest.raises(WidthError, match=r"di_silu: sigmoid t_abs\[0,0\] .* overflows its declared width uint32"):
            impl(x, 0, 1, 40)
        with pytest.raises(WidthError, match=r"di_silu: sigmoid t_abs\[0,0\] .*order-2 numerator"):
            impl(x, 0, 1, 30, order=2)
    for impl in (di_swiglu, di_swiglu_reference):
        with pytest.raises(WidthError, match=r"di_swiglu: sigmoid input scale \[0,1\] = 1/2\^126 rounds to 0"):
            impl(x, 0, 1, 63, x, 0, 40000, 20, gate_div_m=np.array([1, 1, 1]), gate_div_k=np.array([0, 63, 63]))


SILU_BAD = [
    (dict(in_bits=1), r"di_silu: in_bits must be an integer in \[2, 16\]"),
    (dict(sig_frac_bits=0), r"di_silu: sig_frac_bits must be an integer in \[1, 30\]"),
    (dict(in_bits=16, sig_frac_bits=30, out_bits=16), r"di_silu: the product w is int47; requantizing it to 16 bits"),
    (dict(zero_rows="skip"), r"di_silu: zero_rows must be one of \('error', 'zero'\)"),
    (dict(rounding="nearest"), r"di_silu: unknown rounding mode 'nearest'"),
    (dict(order=4), r"di_silu: order must be one of \(1, 2\)"),
    (dict(in_signed=1), r"di_silu: in_signed must be a bool"),
    (dict(out_symmetric="yes"), r"di_silu: out_symmetric must be a bool"),
    (dict(x=np.zeros((2, 3))), r"di_silu: x must be an integer array, got dtype float64"),
    (dict(x=np.full((2, 3), 256)), r"di_silu: x\[0,0\] = 256 is outside its declared width uint8"),
    (dict(x=np.full((2, 3), -1)), r"outside its declared width uint8"),
    (dict(x=np.array(5)), r"di_silu: x must have at least one dimension"),
    (dict(zp=300), r"di_silu: x_zp = 300 is outside its declared width uint8"),
    (dict(zp=np.array([1, 2, 3])), r"di_silu: x_zp of shape \(3,\) must be a scalar or have the row shape \(2,\)"),
    (dict(m=0), r"di_silu: x_m = 0; a scale multiplier must be >= 1"),
    (dict(k=64), r"di_silu: x_k = 64 is outside \[0, 63\]"),
    (dict(m=60000, k=3), r"di_silu: the scale 60000/2\^3 of sigmoid t_abs\[0,0\] is too large for DI-Exp"),
]


@pytest.mark.parametrize("kwargs, message", SILU_BAD)
def test_silu_bad_inputs_raise_input_errors_naming_op_and_tensor(kwargs, message):
    case = dict(x=np.ones((2, 3), np.int64), zp=0, m=40000, k=20)
    case.update(kwargs)
    errors = []
    for impl in (di_silu, di_silu_reference):
        with pytest.raises(InputError, match=message) as info:
            impl(**case)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


SWIGLU_BAD = [
    (dict(up=np.ones((2, 4), np.int64)), r"di_swiglu: up must have shape \(2, 3\), got \(2, 4\)"),
    (dict(gate_div_m=np.ones(3, np.int64)), r"di_swiglu: gate_div_m and gate_div_k must be given together"),
    (dict(gate_div_m=np.ones(4, np.int64), gate_div_k=3),
     r"di_swiglu: gate_div_m \(4,\) / gate_div_k \(\) must be scalars or have the channel shape \(3,\)"),
    (dict(gate_div_m=0, gate_div_k=3), r"di_swiglu: gate_div_m = 0; a scale multiplier must be >= 1"),
    (dict(gate_div_m=60000, gate_div_k=0, gate_k=0),
     r"di_swiglu: sigmoid input scale \[0,0\] = 2400000000/2\^0 rounds to 2\^16 or more \(a negative shift\), too large"),
    (dict(up_m=np.array([1, 0])), r"di_swiglu: up_m\[1\] = 0; a scale multiplier must be >= 1"),
    (dict(in_bits=12, sig_frac_bits=30, out_bits=8), r"di_swiglu: the product w is int55; requantizing it to 8 bits"),
]


@pytest.mark.parametrize("kwargs, message", SWIGLU_BAD)
def test_swiglu_bad_inputs_raise_input_errors_naming_op_and_tensor(kwargs, message):
    case = dict(gate=np.ones((2, 3), np.int64), gate_zp=0, gate_m=40000, gate_k=20,
                up=np.ones((2, 3), np.int64), up_zp=0, up_m=40000, up_k=20)
    case.update(kwargs)
    errors = []
    for impl in (di_swiglu, di_swiglu_reference):
        with pytest.raises(InputError, match=message) as info:
            impl(**case)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


@given(st.integers(-(1 << 40), 1 << 40), st.integers(1, (1 << 32) - 1), st.integers(1, 30), st.sampled_from([1, 2]),
       st.sampled_from(["half_up", "half_away", "half_even", "floor", "trunc"]))
def test_sigmoid_kernel_equals_reference_and_exp_of_zero_is_t(v, t_abs, frac_bits, order, mode):
    from ilsim.arith.jit import mode_code
    from ilsim.ops.exp import ORDER2_T_BITS, exp_from_t_reference
    from ilsim.ops.swiglu import sigmoid_reference

    if order == 2:
        t_abs = t_abs % ((1 << ORDER2_T_BITS) - 1) + 1
    assert exp_from_t_reference(0, t_abs, order) == t_abs   # what the kernel's single exp relies on
    assert sigmoid_i64(v, t_abs, frac_bits, order, mode_code(mode)) == sigmoid_reference(v, t_abs, frac_bits,
                                                                                        order, mode)
