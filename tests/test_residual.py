"""residual_add: fast path == scalar reference bit for bit (ties in the alignment shift, extreme
shift spreads), accuracy against the float sum with a derived bound, width and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.ops.registry import get_op
from ilsim.ops.residual import residual_add, residual_add_float, residual_add_reference
from ilsim.testing.cases_norm import residual_add_cases
from ilsim.testing.parity import assert_same, outcome
from ilsim.testing.bounds import dequantize, requantization_bound

DIRECTED = ("floor", "trunc")




# --- bit exactness -----------------------------------------------------------------------------

@given(residual_add_cases())
def test_fast_equals_reference(case):
    assert_same(outcome(residual_add, case), outcome(residual_add_reference, case))


@given(residual_add_cases(ties=True))
def test_fast_equals_reference_on_alignment_ties(case):
    assert_same(outcome(residual_add, case), outcome(residual_add_reference, case))


@given(residual_add_cases(a_bits=16, b_bits=8))
def test_fast_equals_reference_on_the_int16_stream_plus_uint8_sublayer(case):
    assert_same(outcome(residual_add, case), outcome(residual_add_reference, case))


TIE_CASE = dict(a=np.array([[32767, 0, 0]]), a_zp=0, a_m=1, a_k=0,
                b=np.array([[0, 1, -1]]), b_zp=0, b_m=1, b_k=1, b_bits=8, b_signed=True)


@pytest.mark.parametrize("rounding, expected", [
    ("half_up", [32767, 1, 0]), ("half_away", [32767, 1, -1]), ("half_even", [32767, 0, 0]),
    ("floor", [32767, 0, -1]), ("trunc", [32767, 0, 0]),
])
def test_an_alignment_tie_rounds_in_the_named_mode(rounding, expected):
    # B = +-1 on the grid 2^-1 aligned to 2^0: exactly +-1/2. |S| max = 32767 = d, so q == S.
    for fn in (residual_add, residual_add_reference):
        out = fn(**TIE_CASE, rounding=rounding)
        assert out.q.tolist() == [expected]
        assert out.zp.tolist() == [0] and out.q.dtype == np.int16


@pytest.mark.parametrize("a_k, b_k", [(0, 63), (63, 0), (63, 63), (0, 0), (31, 32)])
def test_extreme_shift_spreads_fast_equals_reference(a_k, b_k):
    rng = np.random.default_rng(a_k * 64 + b_k)
    a = rng.integers(-32768, 32768, (3, 7))
    b = rng.integers(0, 256, (3, 7))
    kw = dict(a=a, a_zp=0, a_m=[65535, 1, 32768], a_k=a_k, b=b, b_zp=[0, 255, 128], b_m=[65535, 40000, 1],
              b_k=b_k, mbits=16, out_bits=16)
    for rounding in ("half_up", "half_even", "floor", "trunc", "half_away"):
        assert_same(outcome(residual_add, dict(kw, rounding=rounding)),
                    outcome(residual_add_reference, dict(kw, rounding=rounding)))


def test_one_dimensional_operands_are_one_row():
    kw = dict(a=np.array([100, -200, 300]), a_zp=0, a_m=40000, a_k=20, b=np.array([1, 2, 250]), b_zp=128,
              b_m=50000, b_k=24)
    out = residual_add(**kw)
    assert out.q.shape == (3,) and out.m.shape == ()
    assert_same(out, residual_add_reference(**kw))


def test_zero_rows_follow_the_policy():
    kw = dict(a=np.array([[0, 0], [5, 6]]), a_zp=0, a_m=40000, a_k=20, b=np.array([[7, 7], [1, 2]]),
              b_zp=[7, 0], b_m=40000, b_k=20)
    out = residual_add(**kw)
    assert out.q[0].tolist() == [0, 0] and out.m[0] == 0 and out.k[0] == 0
    for fn in (residual_add, residual_add_reference):
        with pytest.raises(ZeroRangeError, match=r"residual_add: row 0 of S is all zeros"):
            fn(**kw, zero_rows="error")


def test_registry_lists_residual_add():
    op = get_op("residual_add")
    assert op.fast is residual_add and op.reference is residual_add_reference
    assert op.float_meaning is residual_add_float and op.spec == "docs/spec/residual.md"


# --- accuracy against the float sum ------------------------------------------------------------
#
# Stated bound, per element, with step = m'/2^k' of the output row (k' < 63):
#   alignment: one operand is rounded once onto 2^-kref: <= 2^-kref (directed modes; 1/2 of it
#   for the nearest modes);
#   quantize_rows (symmetric): |q - S*d/R| <= 1 and the scale has relative error <= 2^-mbits
#   (m' >= 2^(mbits-1), rounded half up), so |deq - S_real| <= step * (1 + (d + 1) * 2^(1 - mbits)).
#   Total: |deq - (a_real + b_real)| <= their sum (+ 1e-9 relative float64 slack).

@given(residual_add_cases())
def test_sum_is_within_the_stated_bound_of_the_float_sum(case):
    try:
        out = residual_add(**case)
    except (WidthError, ZeroRangeError):
        return
    ref = residual_add_float(**case)
    a_k = np.broadcast_to(case["a_k"], out.m.shape)
    b_k = np.broadcast_to(case["b_k"], out.m.shape)
    kref = np.minimum(a_k, b_k).astype(np.float64)
    align = np.exp2(-kref) * (1 if case["rounding"] in DIRECTED else 0.5)
    bound = align + requantization_bound(out, case["out_bits"], True, case["mbits"])
    err = np.abs(dequantize(out) - ref)
    ok = err <= bound[..., None] + 1e-9 * (np.abs(ref) + 1)
    assert np.all(ok[out.k < 63])


# --- width and input errors --------------------------------------------------------------------

def test_an_output_scale_above_2_mbits_is_a_width_error_naming_op_and_tensor():
    kw = dict(a=np.array([[32767, -32768]]), a_zp=0, a_m=65535, a_k=0, b=np.array([[255, 0]]), b_zp=0,
              b_m=65535, b_k=0)
    for fn in (residual_add, residual_add_reference):
        with pytest.raises(WidthError, match=r"residual_add: quantizing S: .*output scale of row 0 is >= 2\^16"):
            fn(**kw)


GOOD = dict(a=np.array([[1, -2, 3]]), a_zp=0, a_m=[40000], a_k=[20], b=np.array([[4, 5, 6]]), b_zp=[3],
            b_m=[50000], b_k=[22])


@pytest.mark.parametrize("change, pattern", [
    (dict(a=np.array([[1.5, 2, 3]])), r"residual_add: a must be an integer array, got dtype float64"),
    (dict(a=np.int64(1)), r"residual_add: a must have at least one dimension"),
    (dict(a=np.zeros((1, 0), dtype=np.int64), b=np.zeros((1, 0), dtype=np.int64)), r"residual_add: a is empty"),
    (dict(b=np.array([[4, 5]])), r"residual_add: b must have the shape of a, \(1, 3\), got \(1, 2\)"),
    (dict(b=np.array([[4, 5, 256]])), r"residual_add: b\[0,2\] = 256 is outside its declared width uint8"),
    (dict(a=np.array([[1, -2, 40000]])), r"residual_add: a\[0,2\] = 40000 is outside its declared width int16"),
    (dict(b_zp=[-1]), r"residual_add: b_zp\[0\] = -1 is outside its declared width uint8"),
    (dict(b_zp=[1, 2]), r"residual_add: b_zp shape \(2,\) does not broadcast to the row shape \(1,\)"),
    (dict(a_m=[1 << 16]), r"residual_add: a.m\[0\] = 65536 is outside its declared width uint16"),
    (dict(b_k=[64]), r"residual_add: b.k must be in \[0, 63\]"),
    (dict(a_bits=17), r"residual_add: a_bits must be in \[2, 16\], got 17"),
    (dict(b_bits=1), r"residual_add: b_bits must be in \[2, 16\], got 1"),
    (dict(out_bits=17), r"residual_add: out_bits must be in \[2, 16\], got 17"),
    (dict(mbits=30), r"residual_add: max\(a_bits, b_bits\) \+ mbits \+ 2 \+ out_bits must be <= 62, got 64"),
    (dict(a_signed="yes"), r"residual_add: a_signed must be a bool"),
    (dict(rounding="nearest"), r"residual_add: unknown rounding mode 'nearest'"),
    (dict(zero_rows="drop"), r"residual_add: zero_rows must be one of"),
])
def test_bad_input_is_an_input_error_naming_op_and_tensor(change, pattern):
    kw = dict(GOOD, **change)
    for fn in (residual_add, residual_add_reference):
        with pytest.raises(InputError, match=pattern):
            fn(**kw)
