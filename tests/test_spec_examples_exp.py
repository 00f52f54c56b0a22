"""Worked examples, bounded algorithms and error precedence of docs/spec/exp.md, softmax.md and
swiglu.md, recomputed from the code so the pages cannot drift.

Each worked example in those pages is the fenced block that follows a line
``<!-- worked-example: NAME -->``: one ``name = value`` per line, the value a Python literal, and
anything after two or more spaces a comment (comments hold formulas, never computed numbers).
Every example test recomputes its block from the module's functions (the ``*_reference``
function, the fast function and the per-scale / per-element helpers they use), asserts that the
page holds exactly these names with exactly these values, and that the reference and the fast
path return the example's output. ``python tests/test_spec_examples_exp.py`` prints the blocks
(to regenerate a page after a deliberate change of bits, with a spec version bump).
"""

from __future__ import annotations

from fractions import Fraction
import random

import numpy as np
import pytest

from ilsim.arith.rounding import div_round_reference, rshift_round_reference
from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.ops import exp, softmax, swiglu
from ilsim.ops.quantize import output_levels, row_output_scale
from spec_pages import assert_page_holds
from ilsim.testing.parity import assert_same, outcome



# --- reading the pages ---------------------------------------------------------------------------





def both_paths(fast, reference, **case):
    """Run both paths; assert they agree bit for bit (values and dtypes); return the result."""
    ref, got = outcome(reference, case), outcome(fast, case)
    assert_same(got, ref)
    return ref


def r2(values):
    return [round(float(v), 2) for v in values]


# --- the bounded algorithms the pages state ------------------------------------------------------

def t_abs_bounded(m: int, k: int) -> int:
    """exp.md "Per scale": uint64 / uint31 division, half up by comparing rem with m_f - rem."""
    m_f = m + (m >> 1) - (m >> 4)
    q0, rem = divmod(1 << k, m_f)
    assert m_f < 1 << 31 and q0 <= 1 << 63 and rem < m_f
    t_abs = q0 + int(rem >= m_f - rem)
    assert t_abs <= 1 << 63
    return t_abs


def exp_order2_bounded(x: int, t_abs: int) -> int:
    """exp.md order 2 as shift-then-divide, asserting the widths of its table."""
    q, r = (-x) // t_abs, x + ((-x) // t_abs) * t_abs
    if q > t_abs.bit_length():
        return 0
    n = (t_abs * t_abs << 9) + (r * t_abs << 8) + 87 * r * (t_abs + r)
    assert (t_abs * t_abs) << 8 <= n <= (t_abs * t_abs) << 9 < 1 << 61
    dividend = n + (t_abs << (8 + q))
    assert dividend < 1 << 62 and (dividend >> (9 + q)) < 1 << 53
    return (dividend >> (9 + q)) // t_abs


def clip_sat_bounded(clip: Fraction, m: int, k: int, in_bits: int) -> int:
    """softmax.md "Bounded clip algorithm": min(c_int, 2^in_bits) on words of W bits."""
    c_num, c_den = clip.numerator, clip.denominator
    width = in_bits + c_den.bit_length() + 31
    b = c_den * m
    assert b < 1 << (c_den.bit_length() + 30)
    if k + c_num.bit_length() >= width:
        return 1 << in_bits
    a = c_num << k
    assert 2 * a < 1 << width and ((1 << (in_bits + 1)) - 1) * b < 1 << width
    if 2 * a >= ((1 << (in_bits + 1)) - 1) * b:
        return 1 << in_bits
    assert 2 * a + b < 1 << width
    return (2 * a + b) // (2 * b)


def output_scale_rounded(num: int, d: int, t: int) -> int:
    """swiglu.md: round_half_up(num 2^t / d) by a shift (and add) and a short division by d."""
    if t >= 0:
        return ((num << (t + 1)) + d) // (2 * d)
    return ((num + (d << (-t - 1))) >> -t) // d


def output_scale_bounded(m_wide: int, k_wide: int, value_range: int, d: int):
    """swiglu.md "Bounded output-scale algorithm": (m', k', t0, t) or the error it raises."""
    num = m_wide * value_range
    t0 = 15 - num.bit_length() + d.bit_length()
    candidates = [t for t in (t0 - 1, t0, t0 + 1) if output_scale_rounded(num, d, t) < 1 << 16]
    t = max(candidates)
    assert output_scale_rounded(num, d, t + 1) >= 1 << 16  # the largest such t overall
    t = min(t, 63 - k_wide)
    if k_wide + t < 0:
        return WidthError, None, t0, t
    m_out = output_scale_rounded(num, d, t)
    if m_out == 0:
        return WidthError, None, t0, t
    return m_out, k_wide + t, t0, t


# --- exp.md --------------------------------------------------------------------------------------

EXP_M, EXP_K = 32768, 21
EXP_X = [0, -1, -22, -45, -100, -1000, -32768]


def exp_scale_example() -> dict:
    m_f = exp.log2e_multiplier(EXP_M)
    q0, rem = divmod(1 << EXP_K, m_f)
    t_abs = exp.exp_t_abs_checked_reference(EXP_M, EXP_K, 32, 1, "di_exp", "t_abs")
    assert t_abs == t_abs_bounded(EXP_M, EXP_K) == exp.exp_t_abs_reference(EXP_M, EXP_K)
    assert exp.exp_t_abs(np.array([EXP_M]), np.array([EXP_K])).tolist() == [t_abs]
    return dict(m=EXP_M, k=EXP_K, m_f=m_f, q0=q0, rem=rem, t_abs=t_abs)


def exp_order1_example() -> dict:
    t_abs = exp.exp_t_abs_reference(EXP_M, EXP_K)
    q = [(-x) // t_abs for x in EXP_X]
    r = [x + qq * t_abs for x, qq in zip(EXP_X, q)]
    r_half = [v >> 1 for v in r]
    shifted = [v + t_abs for v in r_half]
    y = [s >> qq for s, qq in zip(shifted, q)]
    assert y == [exp.exp_from_t_reference(x, t_abs, 1) for x in EXP_X]
    out = both_paths(exp.di_exp, exp.di_exp_reference, x=np.array(EXP_X), m=EXP_M, k=EXP_K)
    assert out.y.tolist() == y and out.t_abs.tolist() == t_abs
    ideal = r2(exp.di_exp_float(np.array(EXP_X), EXP_M, EXP_K) * t_abs)
    return dict(x=EXP_X, q=q, r=r, r_half=r_half, shifted=shifted, y=y, ideal=ideal)


def exp_order2_example() -> dict:
    t_abs = exp.exp_t_abs_reference(EXP_M, EXP_K)
    q = [(-x) // t_abs for x in EXP_X]
    r = [x + qq * t_abs for x, qq in zip(EXP_X, q)]
    big, den, rnd, y = [], [], [], []
    for x, qq, rr in zip(EXP_X, q, r):
        if qq > t_abs.bit_length():
            big.append(None), den.append(None), rnd.append(None), y.append(0)
            continue
        n = (t_abs * t_abs << exp.ORDER2_C) + (rr * t_abs << (exp.ORDER2_C - 1)) + exp.ORDER2_A2 * rr * (t_abs + rr)
        d = t_abs << (exp.ORDER2_C + qq)
        big.append(n), den.append(d), rnd.append(n + d // 2), y.append((n + d // 2) // d)
    assert y == [exp.exp_from_t_reference(x, t_abs, 2) for x in EXP_X]
    assert y == [exp_order2_bounded(x, t_abs) for x in EXP_X]
    out = both_paths(exp.di_exp, exp.di_exp_reference, x=np.array(EXP_X), m=EXP_M, k=EXP_K, order=2)
    assert out.y.tolist() == y
    return dict(x=EXP_X, q=q, r=r, N=big, D=den, N_rnd=rnd, y=y)


def exp_edges_example() -> dict:
    tie = both_paths(exp.di_exp, exp.di_exp_reference, x=np.array([0, -1]), m=3, k=1)
    zero = both_paths(exp.di_exp, exp.di_exp_reference, x=np.array([0]), m=5, k=1)
    assert 1 << 2 < exp.log2e_multiplier(5) and t_abs_bounded(5, 1) == 0
    return dict(tie_m_f=exp.log2e_multiplier(3), tie_t_abs=int(tie.t_abs), zero_m_f=exp.log2e_multiplier(5),
                zero_error=zero[1].__name__)


@pytest.mark.parametrize("name, build", [("exp-scale", exp_scale_example), ("exp-order1", exp_order1_example),
                                         ("exp-order2", exp_order2_example), ("exp-edges", exp_edges_example)])
def test_exp_worked_examples(name, build):
    assert_page_holds("exp.md", name, build())


def test_exp_bounded_t_abs_and_zero_test():
    rng = random.Random(5)
    scales = [(m, k) for m in (1, 2, 3, 5, 11, 22, 32767, 32768, 65535, (1 << 30) - 1) for k in range(64)]
    scales += [(rng.randrange(1, 1 << 30), rng.randrange(64)) for _ in range(2000)]
    for m, k in scales:
        t_abs = t_abs_bounded(m, k)
        assert t_abs == exp.exp_t_abs_reference(m, k)
        assert (t_abs == 0) == (1 << (k + 1) < exp.log2e_multiplier(m))


def test_exp_element_widths_and_shift_then_divide():
    for t_abs in list(range(1, 40)) + [45, 1000, (1 << 20) + 7, (1 << 26) - 1]:
        xs = list(range(-min(70 * t_abs + 3, 5000), 1)) + [-(1 << 15), -(1 << 40)]
        for x in xs:
            r = x + ((-x) // t_abs) * t_abs
            assert -(t_abs - 1) <= r <= 0 and -abs(x) <= r
            shifted = (r >> 1) + t_abs
            assert (t_abs + 1) // 2 <= shifted <= t_abs
            assert exp_order2_bounded(x, t_abs) == exp.exp_from_t_reference(x, t_abs, 2)


# --- softmax.md ----------------------------------------------------------------------------------

SM_X = [100, 40, -900, 95, 300, 0]
SM_KEEP = [True, True, True, True, False, True]
SM_CLIP = Fraction(5, 2)


def softmax_example() -> dict:
    m, k, frac = EXP_M, EXP_K, 8
    a, b = SM_CLIP.numerator << k, SM_CLIP.denominator * m
    c_int = softmax.clip_int_reference(SM_CLIP, m, k)
    assert c_int == clip_sat_bounded(SM_CLIP, m, k, 16) == (2 * a + b) // (2 * b)
    assert softmax._clip_int_bounded(SM_CLIP, np.array([m]), np.array([k]), 1 << 16).tolist() == [c_int]
    t_abs = exp.exp_t_abs_checked_reference(m, k, 32, 1, "di_softmax", "t_abs")
    mu = max(v for v, keep in zip(SM_X, SM_KEEP) if keep)
    diff = [v - mu if keep else None for v, keep in zip(SM_X, SM_KEEP)]
    d = [None if v is None else max(v, -c_int) for v in diff]
    q = [None if v is None else (-v) // t_abs for v in d]
    r = [None if v is None else v + qq * t_abs for v, qq in zip(d, q)]
    e = [None if v is None else ((rr >> 1) + t_abs) >> qq for v, qq, rr in zip(d, q, r)]
    assert e == [None if v is None else exp.exp_from_t_reference(v, t_abs, 1) for v in d]
    total = sum(v for v in e if v is not None)
    e_f = [None if v is None else v << frac for v in e]
    p = [0 if v is None else min(div_round_reference(v, total), 255) for v in e_f]
    case = dict(x=np.array([SM_X]), m=m, k=k, clip=SM_CLIP, mask=np.array(SM_KEEP), out_bits=8, out_frac_bits=frac)
    assert both_paths(softmax.di_softmax, softmax.di_softmax_reference, **case).tolist() == [p]
    e2 = [None if v is None else exp.exp_from_t_reference(v, t_abs, 2) for v in d]
    assert both_paths(softmax.di_softmax, softmax.di_softmax_reference, **case, order=2).tolist() == [p]
    assert abs(sum(p) - (1 << frac)) <= sum(SM_KEEP) / 2
    ideal = r2(softmax.di_softmax_float(np.array([SM_X]), m, k, clip=SM_CLIP, mask=np.array(SM_KEEP))[0] * (1 << frac))
    return dict(m=m, k=k, A=a, B=b, c_int=c_int, t_abs=t_abs, x=SM_X, keep=SM_KEEP, mu=mu, diff=diff, d=d, q=q, r=r,
                e=e, S=total, e_F=e_f, p=p, p_sum=sum(p), ideal=ideal, e_ord2=e2)


def test_softmax_worked_example():
    assert_page_holds("softmax.md", "softmax-row", softmax_example())


def test_softmax_bounded_clip_equals_reference_and_fast_path():
    clips = [Fraction(15), Fraction(5, 2), Fraction(7, 3), Fraction(1, 1000), Fraction(10 ** 30),
             Fraction(1, 3 ** 40), Fraction(2 ** 61 + 1, 2 ** 31 - 1)]
    ms = np.array([1, 2, 3, 32767, 32768, 52429, 65535, (1 << 30) - 1], dtype=np.int64)
    ks = np.arange(64, dtype=np.int64)
    mm, kk = (a.reshape(-1) for a in np.meshgrid(ms, ks))
    for clip in clips:
        for in_bits in (2, 8, 16, 32):
            cap = 1 << in_bits
            fast = softmax._clip_int_bounded(clip, mm, kk, cap).tolist()
            for m, k, got in zip(mm.tolist(), kk.tolist(), fast):
                expected = min(softmax.clip_int_reference(clip, m, k), cap)
                assert clip_sat_bounded(clip, m, k, in_bits) == expected == got


# --- swiglu.md -----------------------------------------------------------------------------------

def quantize_row(w: list[int], d: int) -> dict:
    lo, hi = min(0, min(w)), max(0, max(w))
    rng = hi - lo
    zp = div_round_reference(-lo * d, rng)
    q = [min(max(div_round_reference(v * d, rng) + zp, 0), d) for v in w]
    return dict(R=rng, zp_out=zp, q=q)


def output_scale_steps(m_wide: int, k_wide: int, rng: int, d: int, shifted_name: bool = True) -> dict:
    m_out, k_out = row_output_scale(m_wide, k_wide, rng, d, 16)
    b_m, b_k, t0, t = output_scale_bounded(m_wide, k_wide, rng, d)
    assert (b_m, b_k) == (m_out, k_out) and t == k_out - k_wide and t < 0
    num = m_wide * rng
    shifted = (num + (d << (-t - 1))) >> -t
    assert shifted // d == m_out
    return dict(m_wide=m_wide, k_wide=k_wide, num=num, t0=t0, t=t, shifted=shifted, m_out=m_out, k_out=k_out)


def silu_example() -> dict:
    m, k, zp, frac, d = EXP_M, EXP_K, 128, 15, output_levels(8, False)
    x = [128, 192, 64, 255]
    t_abs = exp.exp_t_abs_checked_reference(m, k, swiglu.SIGMOID_EXP_BITS, 1, "di_silu", "sigmoid t_abs[0,0]")
    x_p = [v - zp for v in x]
    big = [max(v, 0) for v in x_p]
    e1 = [exp.exp_from_t_reference(v - mm, t_abs, 1) for v, mm in zip(x_p, big)]
    e2 = [exp.exp_from_t_reference(-mm, t_abs, 1) for mm in big]
    e1_f = [v << frac for v in e1]
    den = [a + b for a, b in zip(e1, e2)]
    sigma = [div_round_reference(a, b) for a, b in zip(e1_f, den)]
    assert sigma == [swiglu.sigmoid_reference(v, t_abs, frac, 1) for v in x_p]
    ideal = r2(swiglu._sigmoid_float(np.array(x_p) * m / 2 ** k) * (1 << frac))
    w = [v * s for v, s in zip(x_p, sigma)]
    quant = quantize_row(w, d)
    scale = output_scale_steps(m, k + frac, quant["R"], d)
    case = dict(x=np.array([x]), zp=zp, m=m, k=k)
    out = both_paths(swiglu.di_silu, swiglu.di_silu_reference, **case)
    assert out.q.tolist() == [quant["q"]] and out.zp.tolist() == [quant["zp_out"]]
    assert out.m.tolist() == [scale["m_out"]] and out.k.tolist() == [scale["k_out"]]
    sigma2 = [swiglu.sigmoid_reference(v, t_abs, frac, 2) for v in x_p]
    out2 = both_paths(swiglu.di_silu, swiglu.di_silu_reference, **case, order=2)
    assert all(np.array_equal(a, b) for a, b in zip(out2, out)) and sigma2 == sigma
    return dict(m=m, k=k, zp=zp, t_abs=t_abs, x=x, x_p=x_p, M=big, e1=e1, e2=e2, e1_F=e1_f, den=den, sigma=sigma,
                sigma_ideal=ideal, w=w, **quant, **scale, sigma_ord2=sigma2)


def swiglu_example() -> dict:
    gm, gk, gzp, um, uk, uzp, frac, d = 52429, 22, 128, 32768, 22, 120, 15, output_levels(8, False)
    div_m, div_k = [32768, 49152, 49152], [15, 15, 15]
    gate, up = [168, 88, 228], [130, 100, 200]
    big_p = [gm * v for v in div_m]
    big_k = [gk + v for v in div_k]
    s = [max(0, p.bit_length() - 16, kk - 63) for p, kk in zip(big_p, big_k)]
    m_sig = [rshift_round_reference(p, sh) for p, sh in zip(big_p, s)]
    assert all(v < 1 << 16 for v in m_sig)  # no carry in this example
    k_sig = [kk - sh for kk, sh in zip(big_k, s)]
    assert [swiglu.sigmoid_scale_reference(gm, gk, a, b, "di_swiglu", "") for a, b in zip(div_m, div_k)] == \
        list(zip(m_sig, k_sig))
    fast_m, fast_k = swiglu.sigmoid_scales(np.array([gm]), np.array([gk]), np.array(div_m), np.array(div_k), "di_swiglu")
    assert fast_m.tolist() == [m_sig] and fast_k.tolist() == [k_sig]
    m_f = [exp.log2e_multiplier(v) for v in m_sig]
    t_abs = [exp.exp_t_abs_reference(a, b) for a, b in zip(m_sig, k_sig)]
    assert [t_abs] == swiglu._sigmoid_t_abs_reference("di_swiglu", np.array([gm]), np.array([gk]),
                                                      (np.array(div_m), np.array(div_k)), 1)
    g_p, u_p = [v - gzp for v in gate], [v - uzp for v in up]
    e1 = [exp.exp_from_t_reference(min(v, 0), t, 1) for v, t in zip(g_p, t_abs)]
    e2 = [exp.exp_from_t_reference(-max(v, 0), t, 1) for v, t in zip(g_p, t_abs)]
    sigma = [div_round_reference(a << frac, a + b) for a, b in zip(e1, e2)]
    assert sigma == [swiglu.sigmoid_reference(v, t, frac, 1) for v, t in zip(g_p, t_abs)]
    ideal = r2(swiglu._sigmoid_float(np.array(g_p) * np.array(m_sig) / 2.0 ** np.array(k_sig)) * (1 << frac))
    w = [a * b * c for a, b, c in zip(g_p, sigma, u_p)]
    quant = quantize_row(w, d)
    scale = output_scale_steps(gm * um, gk + uk + frac, quant["R"], d)
    case = dict(gate=np.array([gate]), gate_zp=gzp, gate_m=gm, gate_k=gk, up=np.array([up]), up_zp=uzp, up_m=um,
                up_k=uk, gate_div_m=np.array(div_m), gate_div_k=np.array(div_k))
    out = both_paths(swiglu.di_swiglu, swiglu.di_swiglu_reference, **case)
    assert out.q.tolist() == [quant["q"]] and out.zp.tolist() == [quant["zp_out"]]
    assert out.m.tolist() == [scale["m_out"]] and out.k.tolist() == [scale["k_out"]]
    sigma2 = [swiglu.sigmoid_reference(v, t, frac, 2) for v, t in zip(g_p, t_abs)]
    q2 = quantize_row([a * b * c for a, b, c in zip(g_p, sigma2, u_p)], d)["q"]
    out2 = both_paths(swiglu.di_swiglu, swiglu.di_swiglu_reference, **case, order=2)
    assert out2.q.tolist() == [q2]
    return dict(gate_m=gm, gate_k=gk, up_m=um, up_k=uk, div_m=div_m, P=big_p, K=big_k, s=s, m_sig=m_sig,
                k_sig=k_sig, m_f=m_f, t_abs=t_abs, gate=gate, up=up, g_p=g_p, u_p=u_p, e1=e1, e2=e2, sigma=sigma,
                sigma_ideal=ideal, w=w, **quant, **scale, sigma_ord2=sigma2, q_ord2=q2)


@pytest.mark.parametrize("name, build", [("silu-row", silu_example), ("swiglu-row", swiglu_example)])
def test_swiglu_worked_examples(name, build):
    assert_page_holds("swiglu.md", name, build())


def test_output_scale_bounded_equals_row_output_scale():
    rng = random.Random(9)
    cases = []
    for _ in range(3000):
        m_wide = rng.choice([rng.randrange(1, 1 << 30), rng.randrange(1, 1 << 60), 1, (1 << 60) - 1])
        value_range = rng.choice([1, 2, 3, rng.randrange(1, 1 << 20), rng.randrange(1, 1 << 60)])
        d = rng.choice([1, 3, 7, 127, 255, 32767, 65535])
        k_wide = rng.choice([0, 5, 30, 63, 64, 93, 120, 156, rng.randrange(157)])
        cases.append((m_wide, k_wide, value_range, d))
    for m_wide, k_wide, value_range, d in cases:
        try:
            expected = row_output_scale(m_wide, k_wide, value_range, d, 16)
        except WidthError:
            expected = (WidthError, None)
        b_m, b_k, t0, t = output_scale_bounded(m_wide, k_wide, value_range, d)
        assert (b_m, b_k) == expected
        assert t0 - 1 <= t or t == 63 - k_wide


def test_sigmoid_scale_k_below_zero_threshold_and_gate_div_of_one():
    # k_sig < 0 exactly when P / 2^K >= 2^16 - 1/2 (swiglu.md)
    assert swiglu.sigmoid_scale_reference(2 * 65535 - 1, 1, 1, 0, "op", "") == (65535, 0)   # 65534.5
    for p, kk in ((65536, 0), (2 * 65535 + 1, 1)):                                          # 65536, 65535.5
        with pytest.raises(InputError, match="too large for DI-Exp"):
            swiglu.sigmoid_scale_reference(p, kk, 1, 0, "op", "")
    # gate_div = 2^15 / 2^15 keeps a 16-bit m_g exactly, but not a short one
    assert swiglu.sigmoid_scale_reference(52429, 20, 1 << 15, 15, "op", "") == (52429, 20)
    assert swiglu.sigmoid_scale_reference(1, 8, 1 << 15, 15, "op", "") == (32768, 23)
    assert (exp.exp_t_abs_reference(1, 8), exp.exp_t_abs_reference(32768, 23)) == (256, 178)


def test_swiglu_widths_of_the_product():
    for in_bits in (2, 8, 16):
        for frac in (1, 15, 30):
            top = ((1 << in_bits) - 1) << frac
            assert top <= (1 << (in_bits + frac)) - 1                    # SiLU w in int(in_bits + F + 1)
            assert ((1 << in_bits) - 1) * top <= (1 << (2 * in_bits + frac)) - 1
            assert (((1 << 32) - 1) << frac) < 1 << 62                   # e1 * 2^F


# --- error precedence (exp.md, softmax.md, swiglu.md) --------------------------------------------

def _x(*rows):
    return np.array(rows)


PRECEDENCE = [
    # DI-Exp: x width before x sign; x before m; t_abs scales in C order; a 0-d scale is "t_abs"
    ("exp", dict(x=_x(1, -70000), m=0, k=70), InputError, "x[1] = -70000 is outside"),
    ("exp", dict(x=_x(1, -3), m=0, k=70), InputError, "x[0] = 1 is positive"),
    ("exp", dict(x=_x(-1), m=0, k=70), InputError, "m = 0; a scale multiplier"),
    ("exp", dict(x=_x(-1, -3), m=np.array([5, 32768]), k=np.array([1, 63]), out_bits=8), InputError,
     "of t_abs[0] is too large"),
    ("exp", dict(x=_x(-1, -3), m=np.array([32768, 5]), k=np.array([63, 1]), out_bits=8), WidthError,
     "t_abs[0] (|t| of scale 32768/2^63"),
    ("exp", dict(x=np.array(-1), m=1, k=40, out_bits=30, order=2), WidthError, "overflows its declared width uint30"),
    ("exp", dict(x=np.array(-1), m=1, k=30, out_bits=32, order=2), WidthError, "t_abs (|t| of scale 1/2^30; the order-2"),
    # DI-ClippedSoftmax: attributes (clip last), x, mask, m/k, every t_abs, then every S
    ("softmax", dict(x=_x([1, 2]), m=5, k=1, out_bits=20, clip=1.5), InputError, "out_bits must be"),
    ("softmax", dict(x=_x([1, 2]), m=5, k=1, clip=1.5), InputError, "clip must be"),
    ("softmax", dict(x=_x([1, 70000]), m=0, k=1, mask=np.array([[False, False]])), InputError, "x[0,1] = 70000"),
    ("softmax", dict(x=_x([1, 2], [3, 4]), m=0, k=1, mask=np.array([[True, True], [False, False]])), InputError,
     "mask keeps no element of row 1"),
    ("softmax", dict(x=np.ones((2, 40), int), m=np.array([32768, 5]), k=np.array([21, 1]), sum_bits=6),
     InputError, "of t_abs[1] is too large"),
    ("softmax", dict(x=np.ones((2, 40), int), m=np.array([32768, 5]), k=np.array([21, 21]), sum_bits=7),
     WidthError, "t_abs[1] (|t| of scale 5/2^21"),
    ("softmax", dict(x=np.ones((2, 40), int), m=np.array([32768, 32768]), k=np.array([20, 21]), sum_bits=7),
     WidthError, "S[0] = 880"),
    ("softmax", dict(x=np.ones(40, int), m=32768, k=21, sum_bits=7), WidthError, "S = 1800"),
    ("softmax", dict(x=np.ones((2, 3, 40), int), m=5, k=1), InputError, "of t_abs[0,0] is too large"),
    # DI-SiLU / DI-SwiGLU
    ("silu", dict(x=_x([300]), zp=0, m=0, k=1, sig_frac_bits=0), InputError, "sig_frac_bits must be"),
    ("silu", dict(x=_x([300]), zp=0, m=0, k=1), InputError, "x[0,0] = 300"),
    ("silu", dict(x=_x([3], [4]), zp=0, m=np.array([5, 1]), k=np.array([1, 40])), InputError,
     "of sigmoid t_abs[0,0] is too large"),
    ("silu", dict(x=_x([0, 0], [200, 3]), zp=0, m=np.array([1, (1 << 30) - 1]), k=np.array([0, 0])), InputError,
     "of sigmoid t_abs[1,0] is too large"),
    ("silu", dict(x=_x([9, 0], [200, 3]), zp=0, m=np.array([1, 1]), k=np.array([63, 63])), WidthError,
     "sigmoid t_abs[0,0]"),
    ("swiglu", dict(gate=_x([300, 4]), gate_zp=0, gate_m=1, gate_k=10, up=_x([3]), up_zp=0, up_m=0, up_k=10),
     InputError, "gate[0,0] = 300"),
    ("swiglu", dict(gate=_x([3, 4]), gate_zp=0, gate_m=1, gate_k=10, up=_x([3]), up_zp=0, up_m=0, up_k=10),
     InputError, "up must have shape (1, 2)"),
    ("swiglu", dict(gate=_x([3, 4]), gate_zp=0, gate_m=1, gate_k=62, up=_x([3, 4]), up_zp=0, up_m=1, up_k=10,
                    gate_div_m=np.array([1, 1]), gate_div_k=np.array([0, 63])), WidthError,
     "sigmoid input scale [0,1] = 1/2^125 rounds to 0"),
    ("swiglu", dict(gate=_x([3, 4]), gate_zp=0, gate_m=1, gate_k=0, up=_x([3, 4]), up_zp=0, up_m=1, up_k=10,
                    gate_div_m=np.array([1, 1 << 29]), gate_div_k=np.array([0, 0])), InputError,
     "sigmoid input scale [0,1] = 536870912/2^0 rounds to 2^16 or more"),
    ("swiglu", dict(gate=_x([3, 4]), gate_zp=0, gate_m=1, gate_k=10, up=_x([3, 4]), up_zp=0, up_m=1, up_k=10,
                    gate_div_m=np.array([1, 65535]), gate_div_k=np.array([40, 0])), WidthError,
     "sigmoid t_abs[0,0] (|t| of scale 1/2^50"),
    ("swiglu", dict(gate=_x([250, 5], [250, 5]), gate_zp=0, gate_m=1, gate_k=0, up=_x([250, 5], [0, 0]), up_zp=0,
                    up_m=np.array([(1 << 30) - 1, 1]), up_k=0, out_bits=2), ZeroRangeError,
     "quantize_rows: row 1 of di_swiglu product w is all zeros"),
    ("swiglu", dict(gate=_x([250, 5], [250, 5]), gate_zp=0, gate_m=1, gate_k=0, up=_x([250, 5], [1, 0]), up_zp=0,
                    up_m=np.array([1, (1 << 30) - 1]), up_k=np.array([63, 0]), out_bits=2), WidthError,
     "output scale of row 1 is >= 2^16"),
]
PAIRS = {"exp": (exp.di_exp, exp.di_exp_reference), "softmax": (softmax.di_softmax, softmax.di_softmax_reference),
         "silu": (swiglu.di_silu, swiglu.di_silu_reference), "swiglu": (swiglu.di_swiglu, swiglu.di_swiglu_reference)}


@pytest.mark.parametrize("op, case, error, message", PRECEDENCE)
def test_error_precedence_is_the_documented_one_in_both_paths(op, case, error, message):
    fast, reference = PAIRS[op]
    got = both_paths(fast, reference, **case)
    assert got[0] == "raised" and got[1] is error and message in got[2], got


def _print_blocks() -> None:  # pragma: no cover - a helper for regenerating the pages
    for name, build in [("exp-scale", exp_scale_example), ("exp-order1", exp_order1_example),
                        ("exp-order2", exp_order2_example), ("exp-edges", exp_edges_example),
                        ("softmax-row", softmax_example), ("silu-row", silu_example),
                        ("swiglu-row", swiglu_example)]:
        values = build()
        width = max(map(len, values))
        print(f"<!-- worked-example: {name} -->")
        print("\n".join(f"{key.ljust(width)} = {value!r}" for key, value in values.items()))
        print()


if __name__ == "__main__":  # pragma: no cover
    _print_blocks()
