"""Integer RoPE: the exact cos/sin tables (no libm), di_rope fast path == scalar reference bit for
bit, accuracy against float RoPE with a stated bound, width and input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import ilsim.export.rope_tables as rope_module
from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.ops.quantize import RowQuant, quantize_rows
from ilsim.ops.registry import get_op
from ilsim.export.rope_tables import rope_float_tables, rope_tables, rope_tables_direct
from ilsim.ops.rope import di_rope, di_rope_float, di_rope_reference
from ilsim.testing.cases_norm import di_rope_cases
from ilsim.testing.parity import assert_same, outcome
from ilsim.testing.bounds import dequantize, requantization_bound




# --- tables ------------------------------------------------------------------------------------

def test_tables_are_the_pinned_integers_on_every_platform():
    # cos(1) * 2^14 = 8852.3, sin(1) * 2^14 = 13786.7, cos(2) * 2^14 = -6817.9 ...; the same bits everywhere
    t = rope_tables(3, 4, theta=10000.0, frac_bits=14)
    assert t.cos.tolist() == [[16384, 16384], [8852, 16383], [-6818, 16381]]
    assert t.sin.tolist() == [[0, 0], [13787, 164], [14898, 328]]
    assert t.cos.dtype == np.int16 and t.sin.dtype == np.int16
    big = rope_tables(2, 4, theta=500000.0, frac_bits=30)
    assert big.cos.tolist() == [[1 << 30, 1 << 30], [580145183, 1073740750]]
    assert big.sin.tolist() == [[0, 0], [903522590, 1518500]]
    assert big.cos.dtype == np.int32


@pytest.mark.parametrize("positions, head_dim, theta, frac_bits", [
    (4096, 64, 10000.0, 14), (300, 128, 500000.0, 14), (1000, 16, 10000.0, 30), (50, 2, 10.0, 0),
])
def test_tables_are_within_one_unit_of_float64_cos_and_in_range(positions, head_dim, theta, frac_bits):
    t = rope_tables(positions, head_dim, theta=theta, frac_bits=frac_bits)
    cos, sin = rope_float_tables(positions, head_dim, theta)
    one = 1 << frac_bits
    # exact rounding is within 1/2 unit; float64 angles are off by < p * 2^-52 rad: 1 unit covers both
    assert np.abs(t.cos - cos * one).max() <= 1 and np.abs(t.sin - sin * one).max() <= 1
    assert np.abs(t.cos).max() <= one and np.abs(t.sin).max() <= one
    assert t.cos[0].tolist() == [one] * (head_dim // 2) and not t.sin[0].any()


@pytest.mark.parametrize("theta, frac_bits", [(10000.0, 14), (500000.0, 20), (3.5, 1), ("10000", 8)])
def test_recurrence_tables_equal_direct_decimal_evaluation(theta, frac_bits):
    fast = rope_tables(40, 12, theta=theta, frac_bits=frac_bits)
    direct = rope_tables_direct(40, 12, theta=theta, frac_bits=frac_bits)
    assert np.array_equal(fast.cos, direct.cos) and np.array_equal(fast.sin, direct.sin)


def test_uncertain_entries_fall_back_to_direct_evaluation(monkeypatch):
    expected = rope_tables(20, 6, frac_bits=14)
    monkeypatch.setattr(rope_module, "_round_fixed_half_up", lambda fixed, frac_bits, error: None)
    forced = rope_tables(20, 6, frac_bits=14)
    assert np.array_equal(forced.cos, expected.cos) and np.array_equal(forced.sin, expected.sin)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(max_positions=0, head_dim=4), r"rope_tables: max_positions must be in \[1, 2\^24\], got 0"),
    (dict(max_positions=4, head_dim=5), r"rope_tables: head_dim must be even and >= 2, got 5"),
    (dict(max_positions=4, head_dim=4, frac_bits=31), r"rope_tables: frac_bits must be in \[0, 30\], got 31"),
    (dict(max_positions=4, head_dim=4, theta=0.0), r"rope_tables: theta must be a finite number > 0"),
    (dict(max_positions=4, head_dim=4, theta=float("inf")), r"rope_tables: theta must be a finite number > 0"),
    (dict(max_positions=4, head_dim=4, theta="abc"), r"rope_tables: theta must be a finite number > 0"),
    (dict(max_positions=4.0, head_dim=4), r"rope_tables: max_positions must be an int"),
])
def test_bad_table_arguments_are_input_errors(kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        rope_tables(**kwargs)


# --- the operator: bit exactness ---------------------------------------------------------------

@given(di_rope_cases())
def test_fast_equals_reference(case):
    assert_same(outcome(di_rope, case), outcome(di_rope_reference, case))


def test_heads_broadcast_the_per_token_scales_and_equal_per_head_calls():
    rng = np.random.default_rng(3)
    t = rope_tables(16, 8)
    x = rng.integers(0, 256, (3, 5, 8))
    kw = dict(zp=rng.integers(0, 256, 5), m=rng.integers(1 << 15, 1 << 16, 5), k=rng.integers(16, 30, 5),
              positions=np.array([0, 1, 7, 15, 3]), cos=t.cos, sin=t.sin)
    whole = di_rope(x, **kw)
    assert whole.q.shape == (3, 5, 8) and whole.m.shape == (3, 5)
    assert_same(whole, di_rope_reference(x, **kw))
    for h in range(3):
        single = di_rope(x[h], **kw)
        assert_same(RowQuant(*(f[h] for f in whole)), single)


def test_position_zero_is_the_identity_rotation():
    rng = np.random.default_rng(4)
    t = rope_tables(4, 10)
    x = rng.integers(0, 256, (6, 10))
    zp = rng.integers(0, 256, 6)
    m, k = rng.integers(1 << 15, 1 << 16, 6), rng.integers(16, 30, 6)
    rotated = di_rope(x, zp, m, k, np.zeros(6, dtype=np.int64), t.cos, t.sin, zero_rows="zero")
    plain = quantize_rows(x - zp[:, None], m, k, bits=8, in_bits=10, zero_rows="zero")
    assert_same(rotated, plain)


def test_registry_lists_di_rope():
    op = get_op("di_rope")
    assert op.fast is di_rope and op.reference is di_rope_reference
    assert op.float_meaning is di_rope_float and op.spec == "docs/spec/rope.md"


# --- accuracy ----------------------------------------------------------------------------------
#
# Stated bound. y is exact, so the only error against the float RoPE of the dequantized input with
# the tables' real values (di_rope_float) is the output quantization: with step = m'/2^k' (k' < 63),
#   |q - zp - y*d/R| <= 1 and the scale's relative error <= 2^-mbits (m' >= 2^(mbits-1), half up):
#   |deq - y_real| <= step * (1 + (d + 1) * 2^(1 - mbits))       (+ 1e-9 relative float64 slack).
# Against the true rotation, the tables add |cos_table / 2^F - cos| <= 2^-(F+1) per entry:
#   + (|x'_j| + |x'_{j+D/2}|) * s * 2^-(F+1).

@given(di_rope_cases())
def test_rope_is_within_the_stated_bound_of_float_rope(case):
    try:
        out = di_rope(**case)
    except (WidthError, ZeroRangeError):
        return
    ref = di_rope_float(**case)
    bound = requantization_bound(out, case["out_bits"], case["out_symmetric"], case["mbits"])
    err = np.abs(dequantize(out) - ref)
    ok = err <= bound[..., None] + 1e-9 * (np.abs(ref) + 1)
    assert np.all(ok[out.k < 63])


def test_rope_with_real_tables_is_within_the_stated_bound_of_the_true_rotation():
    rng = np.random.default_rng(5)
    frac_bits, theta, d = 14, 10000.0, 64
    t = rope_tables(2048, d, theta=theta, frac_bits=frac_bits)
    x = rng.integers(0, 256, (16, d))
    zp = rng.integers(100, 156, 16)
    m, k = rng.integers(1 << 15, 1 << 16, 16), rng.integers(20, 24, 16)
    positions = rng.integers(0, 2048, 16)
    out = di_rope(x, zp, m, k, positions, t.cos, t.sin)
    s = m / np.exp2(k.astype(np.float64))
    real = (x - zp[:, None]) * s[:, None]
    cos, sin = rope_float_tables(2048, d, theta)
    c, sn = cos[positions], sin[positions]
    first, second = real[:, : d // 2], real[:, d // 2:]
    true = np.concatenate([first * c - second * sn, second * c + first * sn], axis=1)
    step = out.m / np.exp2(out.k.astype(np.float64))
    pair = np.abs(first) + np.abs(second)
    table_term = np.concatenate([pair, pair], axis=1) * 2.0 ** -(frac_bits + 1)
    bound = step[:, None] * (1 + 256 * 2.0 ** -15) + table_term + 1e-9
    assert np.all(np.abs(dequantize(out) - true) <= bound)


# --- width and input errors --------------------------------------------------------------------

T4 = rope_tables(4, 4, frac_bits=14)
GOOD = dict(x=np.array([[10, 20, 30, 40], [1, 2, 3, 4]]), zp=[5, 0], m=[40000, 50000], k=[20, 22],
            positions=[0, 3], cos=T4.cos, sin=T4.sin)


def test_an_output_scale_above_2_mbits_is_a_width_error_naming_op_and_tensor():
    kw = dict(GOOD, m=[65535, 65535], k=[0, 0], out_bits=2)  # real output step ~ 65535 * 60 / 3
    for fn in (di_rope, di_rope_reference):
        with pytest.raises(WidthError, match=r"di_rope: quantizing y: .*output scale of row 0 is >= 2\^16"):
            fn(**kw)


@pytest.mark.parametrize("change, pattern", [
    (dict(x=np.array([[1.0, 2, 3, 4]])), r"di_rope: x must be an integer array, got dtype float64"),
    (dict(x=np.array([1, 2, 3, 4])), r"di_rope: x must be \[..., T, D\] \(tokens, head dim\), got shape \(4,\)"),
    (dict(x=np.array([[1, 2, 3], [1, 2, 3]]), cos=T4.cos[:, :1], sin=T4.sin[:, :1]),
     r"di_rope: the head dimension D = x.shape\[-1\] must be even, got 3"),
    (dict(x=np.array([[1, 2, 3, 256], [1, 2, 3, 4]])), r"di_rope: x\[0,3\] = 256 is outside its declared width uint8"),
    (dict(zp=[5, -1]), r"di_rope: zp\[1\] = -1 is outside its declared width uint8"),
    (dict(zp=[1, 2, 3]), r"di_rope: zp shape \(3,\) does not broadcast to the row shape \(2,\)"),
    (dict(k=[20, 50]), r"di_rope: x scale k\[1\] = 50: k \+ table_frac_bits must be <= 63"),
    (dict(positions=[0, 4]), r"di_rope: positions\[1\] = 4 is outside the table's \[0, 4\) positions"),
    (dict(positions=[-1, 0]), r"di_rope: positions\[0\] = -1 is outside the table's \[0, 4\) positions"),
    (dict(positions=[0, 1, 2]), r"di_rope: positions must have shape \(2,\), got \(3,\)"),
    (dict(cos=T4.cos[:, :1]), r"di_rope: cos must have shape \(4, 2\), got \(4, 1\)"),
    (dict(sin=T4.sin[:3]), r"di_rope: sin must have shape \(4, 2\), got \(3, 2\)"),
    (dict(cos=T4.cos.astype(np.int64) + 1), r"di_rope: cos\[0,0\] = 16385 is outside \[-2\^F, 2\^F\]"),
    (dict(sin=np.full((4, 2), 1 << 16)), r"di_rope: sin\[0,0\] = 65536 is outside its declared width int16"),
    (dict(in_bits=17), r"di_rope: in_bits must be in \[2, 16\], got 17"),
    (dict(table_frac_bits=31), r"di_rope: table_frac_bits must be in \[0, 30\], got 31"),
    (dict(in_bits=16, table_frac_bits=30, out_bits=16), r"di_rope: in_bits \+ table_frac_bits \+ 2 \+ out_bits"),
    (dict(in_signed=0), r"di_rope: in_signed must be a bool"),
    (dict(rounding="up"), r"di_rope: unknown rounding mode 'up'"),
    (dict(zero_rows="nan"), r"di_rope: zero_rows must be one of"),
])
def test_bad_input_is_an_input_error_naming_op_and_tensor(change, pattern):
    kw = dict(GOOD, **change)
    for fn in (di_rope, di_rope_reference):
        with pytest.raises(InputError, match=pattern):
            fn(**kw)
