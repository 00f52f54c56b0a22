"""Dynamic per-row quantization: fast == reference, values in range, scale exact to its bound."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, strategies as st

from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.ops.quantize import (output_levels, quantize_rows, quantize_rows_reference,
                                row_output_scale)
from ilsim.testing.cases_quantize import quantize_rows_cases


def assert_same(a, b):
    for name, x, y in zip(a._fields, a, b):
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y), name


def outcome(fn, case):
    try:
        return fn(**case)
    except WidthError as e:
        return e


@given(quantize_rows_cases())
def test_fast_path_equals_reference(case):
    fast, ref = outcome(quantize_rows, case), outcome(quantize_rows_reference, case)
    if isinstance(ref, WidthError):  # both paths refuse the same rows with the same words
        assert isinstance(fast, WidthError) and str(fast) == str(ref)
    else:
        assert_same(fast, ref)


@given(quantize_rows_cases())
def test_outputs_in_range_and_zero_maps_to_zero_point(case):
    out = outcome(quantize_rows, case)
    if isinstance(out, WidthError):
        return
    bits, symmetric = case["bits"], case["symmetric"]
    q = out.q.astype(np.int64)
    d = output_levels(bits, symmetric)
    lo, hi = (-d, d) if symmetric else (0, d)
    assert q.min() >= lo and q.max() <= hi
    assert out.zp.min() >= 0 and out.zp.max() <= (0 if symmetric else d)
    x = case["x"].reshape(-1, case["x"].shape[-1])
    zero_elems = x == 0
    zp_b = np.broadcast_to(out.zp.reshape(-1, 1), x.shape)
    assert np.array_equal(q.reshape(x.shape)[zero_elems], zp_b[zero_elems])


@given(quantize_rows_cases(allow_zero_rows=False))
def test_dequantized_rows_are_within_one_step_of_the_input(case):
    # Exact rational check. Per element: |x*d/R - round(.)| <= 1/2; the zero point adds no error
    # (x = 0 maps to zp exactly), and the asymmetric clamp moves an edge element by < 1 step
    # (half of it the zp rounding, half the element's own). So |deq - x| <= 1 step of R/d in x
    # units; and the output scale m'/2^k' differs from s*R/d by <= 2^-(k'+1) (one half-up rounding
    # of the normalised multiplier), which the bound below adds in relative terms.
    out = quantize_rows(**case)
    x = case["x"].reshape(-1, case["x"].shape[-1])
    m_in = np.broadcast_to(case["m_in"], x.shape[:-1]).reshape(-1)
    k_in = np.broadcast_to(case["k_in"], x.shape[:-1]).reshape(-1)
    d = output_levels(case["bits"], case["symmetric"])
    q = out.q.reshape(x.shape).astype(np.int64)
    for r in range(x.shape[0]):
        s_in = Fraction(int(m_in[r]), 1 << int(k_in[r]))
        if s_in == 0:
            continue
        row = [int(v) for v in x[r]]
        value_range = max(abs(v) for v in row) if case["symmetric"] else max(0, max(row)) - min(0, min(row))
        s_out = Fraction(int(out.m.reshape(-1)[r]), 1 << int(out.k.reshape(-1)[r]))
        exact_step = s_in * value_range / d
        assert abs(s_out - exact_step) <= Fraction(1, 1 << (int(out.k.reshape(-1)[r]) + 1))
        for j, v in enumerate(row):
            deq = s_out * (int(q[r, j]) - int(out.zp.reshape(-1)[r]))
            err = abs(deq - s_in * v)
            bound = exact_step + abs(s_out - exact_step) * (d + 1)
            assert err <= bound, (r, j, float(err), float(bound))


def test_row_output_scale_is_normalised_and_one_rounding():
    for m_in, k_in, value_range, levels in [(1, 0, 1, 255), (65535, 40, (1 << 47) - 1, 255),
                                            (40000, 10, 300, 15), (1, 0, 3, 1)]:
        m, k = row_output_scale(m_in, k_in, value_range, levels, mbits=16)
        assert 1 << 15 <= m < 1 << 16
        exact = Fraction(m_in * value_range, levels) / (1 << k_in) * (1 << k)
        assert abs(m - exact) <= Fraction(1, 2)


def test_worked_example_from_the_spec():
    out = quantize_rows(np.array([[-100, 0, 50, 200]]), [1], [0], bits=8)
    # R = 300, zp = round(100 * 255 / 300) = 85, q(50) = round(42.5) + 85 = 128 (half up)
    assert out.q.tolist() == [[0, 85, 128, 255]] and out.zp.tolist() == [85]
    assert (out.m.tolist(), out.k.tolist()) == ([38551], [15])  # 300/255 = 1.17647 ~ 38551/2^15


def test_zero_range_row_is_an_error_naming_the_row_unless_policy_zero():
    x = np.array([[1, 2], [0, 0]])
    for impl in (quantize_rows, quantize_rows_reference):
        with pytest.raises(ZeroRangeError, match="row 1 of acts is all zeros"):
            impl(x, 1, 0, bits=8, tensor="acts")
        out = impl(x, 1, 0, bits=8, zero_rows="zero")
        assert out.q[1].tolist() == [0, 0] and out.m[1] == 0 and out.zp[1] == 0


@pytest.mark.parametrize("impl", [quantize_rows, quantize_rows_reference])
def test_bad_inputs_are_named(impl):
    x = np.array([[1, 2]])
    with pytest.raises(InputError, match="x must be an integer array"):
        impl(x.astype(np.float32), 1, 0, bits=8)
    with pytest.raises(InputError, match="outside its declared width"):
        impl(np.array([[1 << 20]]), 1, 0, bits=8, in_bits=16)
    with pytest.raises(InputError, match="is empty"):
        impl(np.zeros((0, 3), dtype=np.int64), 1, 0, bits=8)
    with pytest.raises(InputError, match="do not broadcast"):
        impl(x, [1, 2, 3], [0, 0, 0], bits=8)
    with pytest.raises(InputError, match="bits must be in"):
        impl(x, 1, 0, bits=1)
    with pytest.raises(InputError, match="in_bits \\+ bits <= 62"):
        impl(x, 1, 0, bits=16, in_bits=48)
    with pytest.raises(InputError, match="k must be in"):
        impl(x, 1, 64, bits=8)
    with pytest.raises(InputError, match="zero_rows"):
        impl(x, 1, 0, bits=8, zero_rows="skip")


@pytest.mark.parametrize("impl", [quantize_rows, quantize_rows_reference])
def test_output_scale_too_large_is_a_width_error(impl):
    # R * m / d >= 2^16 with k_in = 0 needs a negative shift: refused, not wrapped.
    with pytest.raises(WidthError, match="output scale of row 0"):
        impl(np.array([[(1 << 40)]]), (1 << 16) - 1, 0, bits=8)


@given(st.integers(2, 8))
def test_extreme_rows_hit_both_ends_of_the_range(bits):
    lo, hi = -(1 << 47), (1 << 47) - 1
    out = quantize_rows(np.array([[lo, hi]]), 1, 40, bits=bits)
    assert out.q.tolist() == [[0, (1 << bits) - 1]]


def test_zero_row_is_reported_before_a_scale_error_in_both_paths():
    # row 0 needs a scale >= 2^16 (WidthError), row 1 is all zeros (ZeroRangeError): both paths
    # check every row's range first, so both raise the ZeroRangeError.
    x = np.array([[1 << 40, 1], [0, 0]])
    for impl in (quantize_rows, quantize_rows_reference):
        with pytest.raises(ZeroRangeError, match="row 1"):
            impl(x, (1 << 16) - 1, 0, bits=8)
