"""The public bit-exactness checker finds a wrong rounding and passes a right implementation."""

import numpy as np
import pytest
from hypothesis import strategies as st

from ilsim.arith.rounding import div_round
from ilsim.ops.quantize import RowQuant, quantize_rows
from ilsim.testing import BitExactMismatch, assert_bit_exact, first_mismatch, to_bits


def test_a_correct_implementation_passes():
    assert_bit_exact("quantize_rows", quantize_rows, max_examples=30)


def test_a_wrong_tie_rounding_is_caught_with_index_and_bits():
    def quantize_rows_half_even(x, m_in, k_in, *, bits, symmetric=False, rounding="half_up", **kw):
        out = quantize_rows(x, m_in, k_in, bits=bits, symmetric=symmetric, rounding=rounding, **kw)
        if rounding != "half_up" or symmetric:
            return out
        # the bug: ties to even instead of half up in the element rounding
        flat = np.asarray(x, dtype=np.int64).reshape(-1, np.shape(x)[-1])
        lo = np.minimum(flat.min(axis=1), 0)
        value_range = np.maximum(np.maximum(flat.max(axis=1), 0) - lo, 1)
        d = (1 << bits) - 1
        q = div_round(flat * d, value_range[:, None], "half_even") + out.zp.reshape(-1, 1)
        q = np.clip(q, 0, d).reshape(out.q.shape).astype(out.q.dtype)
        q[np.broadcast_to((out.m == 0)[..., None], q.shape)] = 0
        return RowQuant(q, out.zp, out.m, out.k)

    # A tie must be drawn for the bug to show: the worked example of docs/spec/quantize.md has one
    # (50 * 255 / 300 = 42.5), so the check is deterministic whatever hypothesis version runs it.
    tie = dict(x=np.array([[-100, 0, 50, 200]]), m_in=np.array([1]), k_in=np.array([0]), bits=8)
    with pytest.raises(BitExactMismatch) as info:
        assert_bit_exact("quantize_rows", quantize_rows_half_even, cases=st.just(tie), max_examples=5)
    message = str(info.value)
    assert "quantize_rows: q[" in message and "expected" in message and "0x" in message
    assert "inputs: x=" in message


def test_first_mismatch_reports_shape_dtype_and_count_problems():
    exp = RowQuant(np.array([[1, 2]], dtype=np.uint8), np.array([0]), np.array([1]), np.array([0]))
    assert first_mismatch(exp, exp) is None
    assert "shape" in first_mismatch(exp, RowQuant(np.array([1, 2]), *exp[1:])).reason
    assert "integers" in first_mismatch(exp, RowQuant(exp.q.astype(float), *exp[1:])).reason
    assert "outputs" in first_mismatch(exp, exp.q).reason
    miss = first_mismatch(exp, RowQuant(np.array([[1, 3]]), *exp[1:]))
    assert (miss.field, miss.index, miss.expected, miss.actual) == ("q", (0, 1), 2, 3)


def test_to_bits_is_twos_complement_at_the_width():
    assert to_bits(-1, 8) == "0xff" and to_bits(5, 16) == "0x0005" and to_bits(-128, 8) == "0x80"


def my_di_exp(x, m, k, *, in_bits=16, out_bits=32, order=1):
    """The README's example: DI-Exp (paper Algorithm 1) written from docs/spec/exp.md."""
    x = np.asarray(x, dtype=np.int64)
    m, k = np.asarray(m, dtype=object), np.asarray(k, dtype=object)
    m_f = m + (m >> 1) - (m >> 4)                      # m * 1.4375 ~ m * log2(e)
    t_abs = ((1 << k) + m_f // 2) // m_f               # round(2^k / m_f), ties up
    t_abs = np.broadcast_to(t_abs, np.broadcast_shapes(m.shape, k.shape)).astype(np.int64)
    t = -np.broadcast_to(t_abs, x.shape)
    q = x // t                                          # floor division: q >= 0
    r = x - q * t                                       # r in (t, 0]
    y = ((r >> 1) - t) >> np.minimum(q, 63)
    return y, t_abs


def test_readme_example_user_di_exp_passes():
    assert_bit_exact("di_exp", my_di_exp, order=1, max_examples=100)


def test_readme_example_floor_instead_of_round_is_caught():
    def floor_t(x, m, k, **kw):
        m_obj, k_obj = np.asarray(m, dtype=object), np.asarray(k, dtype=object)
        m_f = m_obj + (m_obj >> 1) - (m_obj >> 4)
        t_abs = np.broadcast_to((1 << k_obj) // m_f, np.broadcast_shapes(m_obj.shape, k_obj.shape))
        x = np.asarray(x, dtype=np.int64)
        t = -np.broadcast_to(t_abs.astype(np.int64), x.shape)
        q = x // t
        return ((x - q * t) >> 1) - t >> np.minimum(q, 63), t_abs.astype(np.int64)

    with pytest.raises(BitExactMismatch, match="di_exp: "), np.errstate(divide="ignore"):
        assert_bit_exact("di_exp", floor_t, order=1, max_examples=100)  # floor can make t = 0
