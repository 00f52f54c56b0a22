"""The worked examples of docs/spec/{primitives,conventions,quantize,matmul}.md, as assertions.

Every number printed in those examples is asserted here, recomputed from the ``*_reference``
functions, the fast paths or the formulas the specs state, so the documents cannot drift from the
code. Also proven here: the bounded output-scale algorithm of quantize.md (one bit length, one
comparison, one division) equals ``row_output_scale``, with the intermediate widths it states;
and the error precedence the specs state. Deterministic, and fast (well under 5 s).
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from ilsim.arith import (Dyadic, clz, bit_length, div_round, div_round_reference, dyadic_from_scale, dyadic_mul,
                         dyadic_mul_reference, isqrt, isqrt_reference, rshift_round, rshift_round_reference,
                         saturate, saturate_reference)
from ilsim.arith.rounding import Rounding
from ilsim.errors import IlsimError, InputError, WidthError, ZeroRangeError
from ilsim.ops import matmul as mm
from ilsim.ops.matmul import fold_scales, fold_scales_reference
from ilsim.ops.quantize import output_levels, quantize_rows, quantize_rows_reference, row_output_scale

MODES = ("floor", "trunc", "half_up", "half_away", "half_even")


def same(fast, ref):
    """Identical NamedTuples / arrays: values, dtypes, shapes."""
    pairs = zip(fast, ref) if isinstance(ref, tuple) else [(fast, ref)]
    for got, want in pairs:
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)


def both_raise(fast, ref, *args, **kwargs) -> IlsimError:
    """Both paths raise the same error class with the same message; returns the error."""
    with pytest.raises(IlsimError) as want:
        ref(*args, **kwargs)
    with pytest.raises(IlsimError) as got:
        fast(*args, **kwargs)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)
    return want.value


# ----------------------------------------------------------------------------------------------
# primitives.md
# ----------------------------------------------------------------------------------------------

RSHIFT_TABLE = {  # (x, s): results in MODES order
    (5, 1): [2, 2, 3, 3, 2],      # 2.5, tie
    (-5, 1): [-3, -2, -2, -3, -2],  # -2.5, tie
    (6, 2): [1, 1, 2, 2, 2],      # 1.5, tie
    (-6, 2): [-2, -1, -1, -2, -2],  # -1.5, tie
    (-7, 2): [-2, -1, -2, -2, -2],  # -1.75, no tie
}
DIV_TABLE = {  # (a, b): results in MODES order
    (7, 2): [3, 3, 4, 4, 4],      # 3.5, tie
    (-7, 2): [-4, -3, -3, -4, -4],  # -3.5, tie
    (15, 6): [2, 2, 3, 3, 2],     # 2.5, tie
    (-15, 6): [-3, -2, -2, -3, -2],  # -2.5, tie
    (-7, 3): [-3, -2, -2, -2, -2],  # -2.33..., no tie
}


def test_primitives_rshift_round_example():
    for (x, s), want in RSHIFT_TABLE.items():
        assert [rshift_round_reference(x, s, m) for m in MODES] == want
        assert [int(rshift_round(x, s, m)) for m in MODES] == want
        q, rem = x >> s, x - ((x >> s) << s)  # the hardware intermediates of the spec
        assert 0 <= rem < 1 << s and q * (1 << s) + rem == x
    q_r = {(x, s): (x >> s, x - ((x >> s) << s)) for x, s in RSHIFT_TABLE}
    assert list(q_r.values()) == [(2, 1), (-3, 1), (1, 2), (-2, 2), (-2, 1)]
    assert ((-5 + (1 << 0)) >> 1) == -2                  # half_up as add-then-shift
    assert rshift_round_reference(-7, 0, "half_up") == -7  # s = 0 is the identity
    assert int(rshift_round(-5, 70)) == int(rshift_round(-5, 63)) == 0  # s > 63 acts as 63
    with pytest.raises(InputError):
        rshift_round_reference(1, -1)


def test_primitives_div_round_example():
    for (a, b), want in DIV_TABLE.items():
        assert [div_round_reference(a, b, m) for m in MODES] == want
        assert [int(div_round(a, b, m)) for m in MODES] == want
    q_r = [(a // b, a - (a // b) * b, b - (a - (a // b) * b)) for a, b in DIV_TABLE]
    assert q_r == [(3, 1, 1), (-4, 1, 1), (2, 3, 3), (-3, 3, 3), (-3, 2, 1)]
    with pytest.raises(InputError):
        div_round_reference(1, 0)


def test_primitives_dyadic_examples():
    d = dyadic_from_scale(0.1)
    assert (d.m, d.k) == (52429, 19)
    assert Fraction(0.1) == Fraction(3602879701896397, 1 << 55)
    assert Fraction(0.1) * (1 << 19) + Fraction(1, 2) > 52429 > Fraction(0.1) * (1 << 19) - Fraction(1, 2)
    assert int(Fraction(0.1) * (1 << 20) + Fraction(1, 2)) == 104858 >= 1 << 16  # k = 20 does not fit
    d = dyadic_from_scale(300 / 255)
    assert (d.m, d.k) == (38551, 15) and round(float(Fraction(300 / 255) * 2 ** 15), 2) == 38550.59
    d = dyadic_from_scale(65535.4)
    assert (d.m, d.k) == (65535, 0)
    with pytest.raises(InputError, match="does not fit"):
        dyadic_from_scale(65535.6)
    with pytest.raises(InputError, match="rounds to 0"):
        dyadic_from_scale(1e-20)
    with pytest.raises(InputError):
        dyadic_from_scale(0.0)
    # dyadic_mul: 1000 * 0.1 = round(1000 * 52429 / 2^19) = round(100.0006...)
    assert 1000 * 52429 == 52429000
    assert dyadic_mul_reference(1000, Dyadic(52429, 19)) == 100 == int(dyadic_mul(1000, 52429, 19))
    assert dyadic_mul_reference(-3, Dyadic(5, 1)) == -7 == int(dyadic_mul(-3, 5, 1))  # -7.5 -> -7 (half_up)
    with pytest.raises(WidthError):
        dyadic_mul(np.int64(1) << 40, 1 << 22, 0)


def isqrt_trace(n: int):
    """The restoring loop of primitives.md with its registers: [(bit, n >= root + bit, n, root)]."""
    root, bit, rows, widest = 0, 1 << 62, [], 0
    while bit:
        widest = max(widest, n, root + bit)
        take = n >= root + bit
        if take:
            n -= root + bit
            root = (root >> 1) + bit
        else:
            root >>= 1
        rows.append((bit, take, n, root))
        bit >>= 2
    return rows, root, widest


def test_primitives_isqrt_example_and_register_widths():
    rows, root, _ = isqrt_trace(200)
    assert len(rows) == 32 and root == 14 == isqrt_reference(200) == int(isqrt(np.array([200]))[0])
    assert [r for r in rows if r[0] <= 64] == [(64, True, 136, 64), (16, True, 56, 48), (4, True, 4, 28),
                                               (1, False, 4, 14)]
    assert all(not take and root == 0 for bit, take, n, root in rows if bit > 64)
    # registers: n <= 2^62, root + bit < 2^63 (uint63), final root <= 2^31
    widest = 0
    rng = random.Random(7)
    for n in [0, 1, 2, 3, 1 << 62, (1 << 62) - 1, (2 ** 31 - 1) ** 2, (2 ** 31 - 1) ** 2 - 1, (2 ** 31) ** 2 - 1] + \
            [rng.randrange(1 << 62) for _ in range(300)]:
        _, r, w = isqrt_trace(n)
        assert r == isqrt_reference(n)
        widest = max(widest, w)
    assert widest == (1 << 62) + (1 << 60) and widest < 1 << 63
    assert isqrt_reference(1 << 62) == 1 << 31


def test_primitives_bits_and_saturate_examples():
    assert bit_length(-5) == 3 and bit_length(0) == 0 and clz(5, 8) == 5 and clz(0, 8) == 8
    assert saturate_reference(300, 8, True) == 127 == int(saturate(300, 8, True))
    assert saturate_reference(-3, 8, False) == 0 == int(saturate(-3, 8, False))
    assert saturate_reference(-200, 8, True) == -128


def test_primitives_result_widths():
    """round(x / 2^s) of an int w fits int(w - s + 1) for 1 <= s < w, and is -1 or 0 for s >= w;
    round(a / b), b >= 1, fits a's width."""
    w = 8
    for x in range(-(1 << (w - 1)), 1 << (w - 1)):
        for s in range(1, w + 3):
            for m in MODES:
                y = rshift_round_reference(x, s, m)
                if s < w:
                    assert -(1 << (w - s)) <= y < 1 << (w - s)   # int(w - s + 1)
                else:
                    assert y in (-1, 0)
        for b in range(1, 20):
            for m in MODES:
                assert -(1 << (w - 1)) <= div_round_reference(x, b, m) < 1 << (w - 1)


# ----------------------------------------------------------------------------------------------
# quantize.md
# ----------------------------------------------------------------------------------------------

def bounded_scale(m_in: int, k_in: int, value_range: int, d: int, mbits: int, widths: dict | None = None):
    """The bounded algorithm of quantize.md, on explicit widths. Returns (m', k') or the name of
    the WidthError row_output_scale raises ("k<0" / "m=0")."""
    num = m_in * value_range
    if num == 0:
        return 0, 0
    a, b = num.bit_length(), d.bit_length()
    t0 = mbits - 1 - a + b
    c = d * ((1 << (mbits + 1)) - 1)

    def fits(t):  # round_half_up(num * 2^t / d) < 2^mbits  <=>  num * 2^(t+1) < c
        e = t + 1
        lhs = num << e if e >= 0 else num >> -e
        if widths is not None:
            widths["cmp"] = max(widths.get("cmp", 0), lhs.bit_length(), c.bit_length())
        return lhs < c

    if b == 1:  # d = 1: t in {t0 - 1, t0}
        t = t0 if fits(t0) else t0 - 1
    else:       # d = 2^b - 1 >= 3: t in {t0, t0 + 1}
        t = t0 + 1 if fits(t0 + 1) else t0
    if widths is not None:
        widths["t0"], widths["t"] = t0, t  # before the clamp
    if k_in + t > 63:
        t = 63 - k_in
    if k_in + t < 0:
        return "k<0"
    if t >= 0:
        y = (num << t) + (d - 1) // 2
        pre = y
    else:
        s = -t
        pre = num + (d << (s - 1))
        y = pre >> s
    if widths is not None:
        widths["pre"] = max(widths.get("pre", 0), pre.bit_length())
        widths["y"] = max(widths.get("y", 0), y.bit_length())
    m = y // d
    if m == 0:
        return "m=0"
    return m, k_in + t


def scale_outcome(m_in, k_in, value_range, d, mbits):
    try:
        return row_output_scale(m_in, k_in, value_range, d, mbits)
    except WidthError as err:
        return "k<0" if "is >= 2^" in str(err) else "m=0"


def search_t(num: int, d: int, mbits: int) -> int:
    """The definition: the largest t with round_half_up(num * 2^t / d) < 2^mbits (exact rationals)."""
    def rounded(t):
        return int(Fraction(num) * Fraction(2) ** t / d + Fraction(1, 2))
    t = -num.bit_length() - 2  # num * 2^t < 1/4: rounds to 0; rounded() is non-decreasing in t
    assert rounded(t) == 0
    while rounded(t + 1) < 1 << mbits:
        t += 1
    return t


def test_quantize_bounded_scale_algorithm_equals_row_output_scale_small_exhaustive():
    for mbits in (2, 3, 5):
        for d in (1, 3, 7, 255):
            for m_in in range(1 << mbits):
                for value_range in range(1, 130):
                    for k_in in (0, 63):
                        assert bounded_scale(m_in, k_in, value_range, d, mbits) == \
                            scale_outcome(m_in, k_in, value_range, d, mbits)


def test_quantize_bounded_scale_algorithm_widths_random():
    rng = random.Random(1)
    for _ in range(3000):
        mbits, n = rng.randint(2, 30), rng.randint(2, 16)
        in_bits = rng.randint(2, 62 - n)
        symmetric = rng.random() < 0.3
        d = output_levels(n, symmetric)
        r_max = (1 << (in_bits - 1)) if symmetric else (1 << in_bits) - 1
        value_range = rng.choice([1, r_max, rng.randint(1, r_max), rng.randint(1, min(r_max, 1 << 12))])
        m_in = rng.choice([1, (1 << mbits) - 1, 1 << (mbits - 1), rng.randint(1, (1 << mbits) - 1)])
        k_in = rng.choice([0, 63, rng.randint(0, 63)])
        widths = {}
        got = bounded_scale(m_in, k_in, value_range, d, mbits, widths)
        assert got == scale_outcome(m_in, k_in, value_range, d, mbits)
        num = m_in * value_range
        assert num < 1 << (in_bits + mbits)
        # t (before the clamp) is the definition's t, one step from t0 at most, in the stated range
        t0, t = widths["t0"], widths["t"]
        assert t == search_t(num, d, mbits)
        assert t - t0 in ((-1, 0) if d == 1 else (0, 1))
        assert -(in_bits + 1) <= t <= mbits + n - 1
        assert widths["cmp"] <= n + mbits + 1
        if "y" in widths:
            assert widths["y"] <= n + mbits
            assert widths["pre"] <= max(in_bits + mbits, n + mbits)


def quantize_trace(row, m_in, k_in, *, bits, symmetric=False, mbits=16, rounding="half_up"):
    """The per-row intermediates of quantize.md, from its formulas."""
    d = output_levels(bits, symmetric)
    if symmetric:
        lo, hi, value_range = None, None, max(abs(v) for v in row)
        zp = 0
    else:
        lo, hi = min(0, min(row)), max(0, max(row))
        value_range = hi - lo
        zp = div_round_reference(-lo * d, value_range, "half_up")
    pre = [div_round_reference(v * d, value_range, rounding) + zp for v in row]
    q = pre if symmetric else [min(max(v, 0), d) for v in pre]
    num = m_in * value_range
    a, b = num.bit_length(), d.bit_length()
    return dict(d=d, lo=lo, hi=hi, R=value_range, zp=zp, pre=pre, q=q, num=num, a=a, b=b,
                t0=mbits - 1 - a + b, scale=bounded_scale(m_in, k_in, value_range, d, mbits))


def check_quantize(x, m_in, k_in, want: dict, **kwargs):
    """Both paths give want's q/zp/m'/k'; the formula trace gives every intermediate in want."""
    ref = quantize_rows_reference(np.array([x]), m_in, k_in, **kwargs)
    same(quantize_rows(np.array([x]), m_in, k_in, **kwargs), ref)
    tr = quantize_trace(x, m_in, k_in, **{k: v for k, v in kwargs.items() if k != "in_bits"})
    assert ref.q[0].tolist() == tr["q"] and int(ref.zp[0]) == tr["zp"]
    assert (int(ref.m[0]), int(ref.k[0])) == tr["scale"]
    for key, value in want.items():
        got = (int(ref.m[0]), int(ref.k[0])) if key == "scale" else tr[key]
        assert got == value, key


def test_quantize_example_asymmetric():
    x = [-100, 0, 50, 200]
    check_quantize(x, 1, 0, dict(d=255, lo=-100, hi=200, R=300, zp=85, pre=[0, 85, 128, 255], q=[0, 85, 128, 255],
                                 num=300, a=9, b=8, t0=14, scale=(38551, 15)), bits=8)
    assert Fraction(50 * 255, 300) == Fraction(85, 2)  # 42.5: the tie, half_up -> 43
    assert [div_round_reference(v * 255, 300) for v in x] == [-85, 0, 43, 170]
    assert int(Fraction(300 * 2 ** 16, 255) + Fraction(1, 2)) == 77101  # v(16) rounded
    assert Fraction(300 * 2 ** 15, 255) == Fraction(9830400, 255)  # 38550.59 -> 38551
    c = 255 * (2 ** 17 - 1)
    assert c == 33423105 and (300 << 16) == 19660800 < c and (300 << 17) >= c  # fits(15), not fits(16)
    assert (300 << 15) + 127 == 9830527 and divmod(9830527, 255) == (38551, 22)   # Y, m'
    # the same row with the other rounding modes (the zero point is always half_up)
    assert quantize_rows_reference(np.array([x]), 1, 0, bits=8, rounding="half_even").q[0].tolist() == [0, 85, 127, 255]
    assert quantize_rows_reference(np.array([x]), 1, 0, bits=8, rounding="floor").q[0].tolist() == [0, 85, 127, 255]


def test_quantize_example_clamp():
    check_quantize([-1, 0, 509], 1, 0, dict(R=510, zp=1, pre=[1, 1, 256], q=[1, 1, 255], t0=14,
                                            scale=(32768, 14)), bits=8)
    assert (510 << 16) == 33423360 >= 33423105  # not fits(15): t = t0 = 14
    assert divmod((510 << 14) + 127, 255) == (32768, 127)
    check_quantize([-1, 6], 1, 0, dict(R=7, zp=36, pre=[-1, 254], q=[0, 254]), bits=8, rounding="floor")
    assert div_round_reference(-255, 7, "floor") == -37 and div_round_reference(255, 7) == 36  # -36.43, 36.43


def test_quantize_example_symmetric_two_bit_takes_the_down_step():
    check_quantize([131071, -5], 1, 5, dict(d=1, R=131071, pre=[1, 0], q=[1, 0], num=131071, a=17, b=1, t0=-1,
                                            scale=(32768, 3)), bits=2, symmetric=True, in_bits=18)
    assert (131071 >> 0) >= 1 * (2 ** 17 - 1)  # fits(-1) fails: num * 2^0 >= c = 131071
    assert ((131071 + (1 << 1)) >> 2) // 1 == 32768  # t = -2, s = 2
    assert Fraction(32768, 2 ** 3) == 4096 and f"{131071 / 32:.2f}" == "4095.97"


def test_quantize_example_zero_input_scale():
    """m_in = 0: q and zp as for any row, m' = k' = 0, whatever k_in; no scale error."""
    x = np.array([[-100, 0, 50, 200]])
    for k_in in (0, 5, 63):
        out = quantize_rows_reference(x, 0, k_in, bits=8)
        same(quantize_rows(x, 0, k_in, bits=8), out)
        assert out.q[0].tolist() == [0, 85, 128, 255] and int(out.zp[0]) == 85
        assert (int(out.m[0]), int(out.k[0])) == (0, 0)
    # a row whose non-zero scale would be an error is not one when m_in = 0
    big = np.array([[1 << 40]])
    both_raise(quantize_rows, quantize_rows_reference, big, 65535, 0, bits=8)
    out = quantize_rows_reference(big, 0, 0, bits=8)
    same(quantize_rows(big, 0, 0, bits=8), out)
    assert (out.q.tolist(), out.zp.tolist(), out.m.tolist(), out.k.tolist()) == ([[255]], [0], [0], [0])


def test_quantize_example_zero_rows():
    x = np.array([[0, 0], [1, 2]])
    for m_in in ([7, 7], [0, 7], [0, 0]):
        err = both_raise(quantize_rows, quantize_rows_reference, x, m_in, 5, bits=8)
        assert isinstance(err, ZeroRangeError) and "row 0 of x" in str(err)
        out = quantize_rows_reference(x, m_in, 5, bits=8, zero_rows="zero")
        same(quantize_rows(x, m_in, 5, bits=8, zero_rows="zero"), out)
        assert out.q.tolist() == [[0, 0], [128, 255]] and out.zp.tolist() == [0, 0]
        assert out.m.tolist()[0] == 0 and out.k.tolist()[0] == 0
    # the zero row is reported before any scale error of an earlier row
    x = np.array([[1 << 40], [0]])
    err = both_raise(quantize_rows, quantize_rows_reference, x, [65535, 1], [0, 0], bits=8)
    assert isinstance(err, ZeroRangeError) and "row 1" in str(err)


def test_quantize_example_scale_clamp_and_errors():
    x = np.array([[-100, 0, 50, 200]])
    out = quantize_rows_reference(x, 1, 60, bits=8)
    same(quantize_rows(x, 1, 60, bits=8), out)
    assert (int(out.m[0]), int(out.k[0])) == (9, 63)  # t = 15 clamped to 3: round(300 * 8 / 255) = round(9.41)
    assert divmod((300 << 3) + 127, 255) == (9, 232)
    assert (1 << 24) == 16777216 < 33423105 and divmod((1 << 0) + 127, 255) == (0, 128)  # the m' = 0 row
    err = both_raise(quantize_rows, quantize_rows_reference, np.array([[0, 1]]), 1, 63, bits=8)
    assert isinstance(err, WidthError) and "rounds to 0" in str(err)
    err = both_raise(quantize_rows, quantize_rows_reference, np.array([[1 << 40]]), 65535, 0, bits=8)
    assert isinstance(err, WidthError) and "k' would be -33" in str(err)
    assert bounded_scale(65535, 0, 1 << 40, 255, 16) == "k<0"
    num = 65535 << 40
    assert (num.bit_length(), 16 - 1 - 56 + 8) == (56, -33)  # t0 = -33
    assert not (num >> 31) < 255 * (2 ** 17 - 1)            # fits(t0 + 1 = -32) fails: t = t0 = -33
    assert search_t(num, 255, 16) == -33


def test_quantize_value_widths():
    """R fits uint(in_bits); zp in [0, d]; before the clamp q lies in [0, d + 1] (nearest modes),
    [-1, d] (floor), [0, d] (trunc): the clamp only ever moves d + 1 or -1 by one step."""
    want = {"floor": (-1, 0), "trunc": (0, 0), "half_up": (0, 1), "half_away": (0, 1), "half_even": (0, 1)}
    seen = {mode: (0, 0) for mode in MODES}
    rows = [[x1, x2] for x1 in range(-12, 13) for x2 in range(-12, 13)]
    rng = random.Random(3)
    rows += [[rng.randint(-(1 << 20), 1 << 20) for _ in range(3)] for _ in range(1500)]
    for row in rows:
        lo, hi = min(0, min(row)), max(0, max(row))
        if hi == lo:
            continue
        for n in (2, 3, 8):
            d = (1 << n) - 1
            zp = div_round_reference(-lo * d, hi - lo)
            assert 0 <= zp <= d
            for mode in MODES:
                for v in row:
                    pre = div_round_reference(v * d, hi - lo, mode) + zp
                    low, high = seen[mode]
                    seen[mode] = (min(low, pre), max(high, pre - d))
    assert seen == want
    for in_bits in (2, 8, 48):
        assert ((1 << (in_bits - 1)) - 1) - (-(1 << (in_bits - 1))) == (1 << in_bits) - 1  # max R, asymmetric


def test_conventions_error_precedence_quantize_rows():
    bad_x = np.array([[1 << 50]])  # outside in_bits = 48
    # attributes before tensors: a bad attribute wins over a bad x
    err = both_raise(quantize_rows, quantize_rows_reference, bad_x, 1, 0, bits=1)
    assert "bits must be in [2, 16]" in str(err)
    err = both_raise(quantize_rows, quantize_rows_reference, bad_x, 1, 0, bits=8, rounding="nearest")
    assert str(err).startswith("quantize_rows: unknown rounding mode")
    # x before its scale
    err = both_raise(quantize_rows, quantize_rows_reference, bad_x, -1, 0, bits=8)
    assert "x[0,0]" in str(err)
    err = both_raise(quantize_rows, quantize_rows_reference, np.array([[1]]), -1, 64, bits=8)
    assert "x scale.m" in str(err)


# ----------------------------------------------------------------------------------------------
# matmul.md
# ----------------------------------------------------------------------------------------------

A = np.array([[12, 200, 37], [0, 255, 100]])
A_ZP = np.array([30, 128])
A_M, A_K = np.array([45000, 0]), np.array([25, 10])
B = np.array([[5, -7, 3], [-128, 127, 64], [9, 0, -20]])
B_ZP = np.array([0, 1, 0])
B_M, B_K = np.array([40000, 12346, 30001]), np.array([20, 22, 21])
KW = dict(a_bits=8, b_bits=8)  # a unsigned, b signed, acc_bits 32, mbits 16, half_up, out_bits 8
ARGS = (A, A_ZP, A_M, A_K, B, B_ZP, B_M, B_K)


def test_matmul_example_accumulate():
    a_diff = (A - A_ZP[:, None]).tolist()
    b_diff = (B - B_ZP[:, None]).tolist()
    assert a_diff == [[-18, 170, 7], [-128, 127, -28]]
    assert b_diff == [[5, -7, 3], [-129, 126, 63], [9, 0, -20]]
    want = [[-1259, 24183, -302], [-1613, 30750, -592]]
    acc = mm.matmul_accumulate_reference(A, A_ZP, B, B_ZP, **KW)
    same(mm.matmul_accumulate(A, A_ZP, B, B_ZP, **KW), acc)
    assert acc.tolist() == want and acc.dtype == np.int32
    assert -18 * 5 + 170 * -7 + 7 * 3 == -1259
    # declared bound: K (2^a_bits - 1)(2^b_bits - 1) = 195075 < 2^18
    assert 3 * 255 * 255 == 195075 and (195075).bit_length() == 18
    # int32 cannot overflow with 8-bit operands for K <= 33025
    assert 33025 * 255 ** 2 < 1 << 31 <= 33026 * 255 ** 2


def test_matmul_fold_shift_of_mbits_or_more():
    """s = mbits gives 0 or 1 (1 only in the nearest modes); s > mbits gives 0 in every mode."""
    for mbits in (4, 16):
        top = 1 << mbits
        for mode in MODES:
            sample = set(range(0, top, 97)) | {top // 2 - 1, top // 2, top // 2 + 1, top - 1}
            at = {rshift_round_reference(m, mbits, mode) for m in sample}
            assert at == ({0} if mode in ("floor", "trunc") else {0, 1})
            tie = rshift_round_reference(top // 2, mbits, mode)
            assert tie == (1 if mode in ("half_up", "half_away") else 0)
            assert rshift_round_reference(top // 2 + 1, mbits, mode) == (0 if mode in ("floor", "trunc") else 1)
            assert {rshift_round_reference(m, s, mode) for m in range(0, top, 7) for s in (mbits + 1, 63)} == {0}


def test_matmul_example_wide():
    folded, kref = fold_scales_reference(B_M.tolist(), B_K.tolist(), "half_up")
    assert (folded, kref) == ([40000, 3087, 15001], 20)
    f_fast, k_fast = fold_scales(B_M, B_K, Rounding.HALF_UP)
    assert f_fast.tolist() == folded and int(k_fast) == kref
    assert Fraction(12346, 4) == Fraction(6173, 2) and Fraction(30001, 2) == Fraction(30001, 2)  # 3086.5, 15000.5: ties
    assert fold_scales_reference(B_M.tolist(), B_K.tolist(), "half_even")[0] == [40000, 3086, 15000]
    wide = mm.di_matmul_wide_reference(*ARGS, **KW)
    same(mm.di_matmul_wide(*ARGS, **KW), wide)
    assert wide.p.tolist() == [[-50360000, 74652921, -4530302], [-64520000, 94925250, -8880592]]
    assert wide.p.dtype == np.int64  # int48 storage
    assert wide.m.tolist() == [45000, 0] and wide.k.tolist() == [45, 30]
    assert 24183 * 3087 == 74652921


def test_matmul_example_di_matmul():
    out = mm.di_matmul_reference(*ARGS, **KW)
    same(mm.di_matmul(*ARGS, **KW), out)
    assert out.q.tolist() == [[0, 255, 94], [0, 255, 89]]
    assert out.zp.tolist() == [103, 103] and out.m.tolist() == [42078, 0] and out.k.tolist() == [26, 0]
    p = mm.di_matmul_wide_reference(*ARGS, **KW).p.tolist()
    t0 = quantize_trace(p[0], 45000, 45, bits=8)
    assert (t0["lo"], t0["hi"], t0["R"], t0["zp"], t0["pre"], t0["q"]) == \
        (-50360000, 74652921, 125012921, 103, [0, 255, 94], [0, 255, 94])
    assert (t0["num"], t0["a"], t0["b"], t0["t0"], t0["scale"]) == (5625581445000, 43, 8, -20, (42078, 26))
    assert [div_round_reference(v * 255, 125012921) for v in p[0]] == [-103, 152, -9]
    assert div_round_reference(50360000 * 255, 125012921) == 103
    # fits(t0 + 1) with t0 + 1 = -19: num >> 18 < c
    assert 5625581445000 >> 18 == 21459890 < 33423105
    assert ((5625581445000 + (255 << 18)) >> 19) // 255 == 42078
    assert [f"{float(Fraction(v * 255, 125012921)):.3f}" for v in p[0]] == ["-102.724", "152.276", "-9.241"]
    assert [f"{float(Fraction(v * 255, 159445250)):.3f}" for v in p[1]] == ["-103.187", "151.813", "-14.203"]
    assert f"{42078 / 2 ** 26:.8f}" == f"{float(Fraction(45000, 1 << 45) * 125012921 / 255):.8f}" == "0.00062701"
    t1 = quantize_trace(p[1], 0, 30, bits=8)
    assert (t1["lo"], t1["hi"], t1["R"], t1["zp"], t1["pre"], t1["scale"]) == \
        (-64520000, 94925250, 159445250, 103, [0, 255, 89], (0, 0))
    assert [div_round_reference(v * 255, 159445250) for v in p[1]] == [-103, 152, -14]


def test_matmul_example_widths():
    """Declared widths of the example's intermediates hold (and the stated data bounds)."""
    acc = mm.matmul_accumulate_reference(A, A_ZP, B, B_ZP, **KW)
    assert int(np.abs(acc).max()) <= 195075 < 1 << 31
    p = mm.di_matmul_wide_reference(*ARGS, **KW).p
    assert int(np.abs(p).max()) < (1 << 31) * ((1 << 16) - 1) < 1 << 47


P_AV = np.array([[200, 50, 6], [0, 128, 128]])
V_AV = np.array([[10, -20, 5], [-128, 127, 0], [3, 0, -7]])
V_M, V_K = np.array([50000, 40000, 33334]), np.array([18, 17, 19])


def test_matmul_example_av():
    folded, kref = fold_scales_reference(V_M.tolist(), V_K.tolist(), "half_up")
    assert (folded, kref) == ([25000, 40000, 8334], 17)  # 33334 / 4 = 8333.5, a tie
    w = [[pt * folded[t] for t, pt in enumerate(row)] for row in P_AV.tolist()]
    assert w == [[5000000, 2000000, 50004], [0, 5120000, 1066752]]
    wide = mm.di_matmul_av_wide_reference(P_AV, V_AV, V_M, V_K)
    same(mm.di_matmul_av_wide(P_AV, V_AV, V_M, V_K), wide)
    assert wide.p.tolist() == [[-205849988, 154000000, 24649972], [-652159744, 650240000, -7467264]]
    assert wide.m.tolist() == [1, 1] and wide.k.tolist() == [25, 25] and wide.p.dtype == np.int64
    out = mm.di_matmul_av_reference(P_AV, V_AV, V_M, V_K)
    same(mm.di_matmul_av(P_AV, V_AV, V_M, V_K), out)
    assert out.q.tolist() == [[0, 255, 163], [0, 255, 127]]
    assert out.zp.tolist() == [146, 128] and out.m.tolist() == [44099, 39902] and out.k.tolist() == [20, 18]
    tr = quantize_trace(wide.p.tolist()[0], 1, 25, bits=8)
    assert (tr["R"], tr["zp"], tr["num"], tr["a"], tr["t0"], tr["scale"]) == \
        (359849988, 146, 359849988, 29, -6, (44099, 20))
    assert [div_round_reference(v * 255, 359849988) for v in wide.p.tolist()[0]] == [-146, 109, 17]
    assert 359849988 >> 4 == 22490624 < 33423105  # fits(-5): t = -5
    assert f"{float(Fraction(205849988 * 255, 359849988)):.3f}" == "145.871"
    tr = quantize_trace(wide.p.tolist()[1], 1, 25, bits=8)
    assert (tr["R"], tr["zp"], tr["a"], tr["t0"], tr["scale"]) == (1302399744, 128, 31, -8, (39902, 18))
    assert f"{float(Fraction(652159744 * 255, 1302399744)):.3f}" == "127.688"
    assert Fraction(33334, 4) == Fraction(16667, 2)  # 8333.5: the tie
    # no accumulator overflow with the defaults for T <= 65794
    assert 65794 * 255 * 65535 * 128 < 1 << 47 <= 65795 * 255 * 65535 * 128


def test_matmul_error_precedence():
    good = dict(zip(("a", "a_zp", "a_m", "a_k", "b", "b_zp", "b_m", "b_k"), ARGS))
    fast, ref = mm.di_matmul, mm.di_matmul_reference

    def err(**change):
        kwargs = {**good, **KW, **change}
        e = both_raise(fast, ref, **kwargs)
        return str(e)

    # 1. attributes before tensors; among attributes: rounding, mbits, acc_bits, out_*, a_bits, ...
    assert "unknown rounding" in err(rounding="x", a_bits=1, a=np.array([[999]]))
    assert "mbits" in err(mbits=1, a_bits=1)
    assert "out_bits" in err(out_bits=1, a_bits=1)
    assert "a_bits" in err(a_bits=1, b=np.array([[999]]))
    # 2. tensors: a, b, K, a_zp, b_zp, int64 bound, a_m, a_k, b_m, b_k (not argument order)
    assert "b[0,0]" in err(b=np.array([[999, 0, 0]] * 3), a_zp=np.array([999, 0]), a_m=np.array([-1, 0]))
    assert "a_zp[0]" in err(a_zp=np.array([999, 0]), a_m=np.array([-1, 0]))
    assert "b_zp[0]" in err(b_zp=np.array([999, 0, 0]), a_m=np.array([-1, 0]))
    assert "K (last axis)" in err(b=B[:, :2], a_zp=np.array([999, 0]))
    assert "a_m" in err(a_m=np.array([-1, 0]), b_k=np.array([64, 0, 0]))
    # 3. output shift before acc width
    e = err(a_k=np.array([63, 0]), acc_bits=8)
    assert "k[0] = a_k[0] + kref = 63 + 20 = 83" in e
    # 4. acc in row-major order
    assert "acc[0,1]" in err(acc_bits=15)
    # 5. the zero row (quantize_rows) before a later row's scale error
    e = err(a=np.array([[30, 30, 30], [0, 255, 100]]))
    assert e.startswith("quantize_rows: row 0 of di_matmul p is all zeros")


def test_matmul_av_error_precedence():
    good = dict(p=P_AV, v=V_AV, v_m=V_M, v_k=V_K)

    def err(**change):
        return str(both_raise(mm.di_matmul_av, mm.di_matmul_av_reference, **{**good, **change}))

    assert "p_bits" in err(p_bits=0, v=np.array([[999]]))
    assert "v[0,0]" in err(v=np.array([[999, 0, 0]] + [[0, 0, 0]] * 2), v_m=np.array([-1, 0, 0]))
    assert "k[0] = p_frac_bits + kref = 8 + 60 = 68" in err(v_k=np.array([60, 61, 62]), acc_bits=8)
    assert "acc[0,0]" in err(acc_bits=20)


def test_matmul_prepared_attribute_order_is_di_matmuls():
    """di_matmul and di_matmul_prepared check out_bits before a_bits, alike."""
    w = mm.prepare_weight(B, B_ZP, B_M, B_K, b_bits=8)
    with pytest.raises(InputError, match="out_bits"):
        mm.di_matmul_prepared(A, A_ZP, A_M, A_K, w, a_bits=1, out_bits=1)
    with pytest.raises(InputError, match="out_bits"):
        mm.di_matmul(*ARGS, a_bits=1, b_bits=8, out_bits=1)
    with pytest.raises(InputError, match="out_bits"):  # attributes before the tensor a_zp
        mm.di_matmul_prepared(A, np.array([999, 0]), A_M, A_K, w, a_bits=8, out_bits=1)
    out = mm.di_matmul_prepared(A, A_ZP, A_M, A_K, w, a_bits=8)
    same(out, mm.di_matmul_reference(*ARGS, **KW))


def test_conventions_examples():
    assert -7 // 2 == -4 and -7 >> 1 == -4 and int(-7 / 2) == -3
    out = quantize_rows_reference(np.array([[-100, 0, 50, 200]]), 1, 0, bits=8)
    m, k, zp, q = int(out.m[0]), int(out.k[0]), int(out.zp[0]), int(out.q[0, 2])
    assert (m, k, zp, q) == (38551, 15, 85, 128)
    assert str(float(Fraction(m, 1 << k) * (q - zp))).startswith("50.588")
