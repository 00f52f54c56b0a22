"""Worked examples, bounded algorithms and error precedence of docs/spec/norm.md, rope.md,
residual.md, embedding.md and hadamard.md, recomputed from the code so the pages cannot drift.

Each worked example in those pages is the fenced block that follows a line
``<!-- worked-example: NAME -->``: one ``name = value`` per line, the value a Python literal, and
anything after two or more spaces a comment (comments hold formulas, never computed numbers).
Every test here recomputes the example from the module's functions (the ``*_reference`` function,
the fast function and the per-row helpers the reference uses) and asserts that the block holds
exactly these names with exactly these values, and that the reference and the fast path return
the example's output. ``python tests/test_spec_examples_norm.py`` prints the blocks (to regenerate
a page after a deliberate change of bits, with a spec version bump).
"""

from __future__ import annotations

from fractions import Fraction
import math
import random

import numpy as np
import pytest

from ilsim.arith.isqrt import ISQRT_MAX, isqrt_reference
from ilsim.arith.rounding import div_round_reference, rshift_round_reference
from ilsim.export.embedding_table import quantize_embedding_table
from ilsim.export.rope_tables import rope_tables
from ilsim.ops import embedding, hadamard, norm, residual, rope
from ilsim.ops.quantize import output_levels, quantize_rows_reference, row_output_scale
from spec_pages import assert_page_holds, block, doc_examples
from ilsim.testing.parity import assert_same, outcome, refused



# --- reading the pages ---------------------------------------------------------------------------







def as_lists(out) -> dict:
    """A one-row-or-more RowQuant as plain lists (q keeps its shape)."""
    return dict(out_q=out.q.tolist(), out_zp=out.zp.tolist(), out_m=out.m.tolist(), out_k=out.k.tolist())


def quantize_steps(y: list[int], m_in: int, k_in: int, *, bits: int, symmetric: bool, mbits: int,
                   rounding="half_up") -> dict:
    """quantize_rows' intermediates for one row (docs/spec/quantize.md), from its own helpers."""
    d = output_levels(bits, symmetric)
    if symmetric:
        lo, rng = 0, max(abs(v) for v in y)
        hi = rng
    else:
        lo, hi = min(0, min(y)), max(0, max(y))
        rng = hi - lo
    zp = 0 if symmetric else div_round_reference(-lo * d, rng)
    q = [div_round_reference(v * d, rng, rounding) + zp for v in y]
    if not symmetric:
        q = [min(max(v, 0), d) for v in q]
    m_out, k_out = row_output_scale(m_in, k_in, rng, d, mbits)
    steps = dict(d=d, lo=lo, hi=hi, R=rng, zp_out=zp, q_out=q, t_scale=k_out - k_in, m_out=m_out, k_out=k_out)
    if symmetric:
        del steps["lo"], steps["hi"]
    return steps


def both_paths(fast, reference, **case):
    """Run both paths; assert they agree bit for bit (values and dtypes); return the result."""
    ref, got = outcome(reference, case), outcome(fast, case)
    assert_same(got, ref)
    return ref


def check_quantized(out, steps: dict) -> None:
    """The operator's output row equals the quantize_rows intermediates."""
    assert out.q.reshape(-1).tolist() == steps["q_out"]
    assert out.zp.reshape(-1).tolist() == [steps["zp_out"]]
    assert out.m.reshape(-1).tolist() == [steps["m_out"]]
    assert out.k.reshape(-1).tolist() == [steps["k_out"]]


# --- the bounded per-row algorithms of norm.md ---------------------------------------------------

def scaled_quotient(n: int, divisor: int, p: int, qmax: int):
    """floor(n * 2^p / divisor) by restoring long division (norm.md, "Bounded per-row algorithm"),
    or None as soon as the quotient is known to exceed qmax. Registers: remainder < 2 * divisor,
    quotient <= qmax + 1 (qmax = 2^63: a 64-bit unsigned register)."""
    q, rem = divmod(n, divisor)
    if q > qmax:
        return None
    for _ in range(p):
        if q > qmax >> 1:  # the next doubling passes qmax whatever the remaining bits are
            return None
        rem <<= 1
        bit = int(rem >= divisor)
        rem -= bit * divisor
        q = (q << 1) | bit
        assert 0 <= rem < divisor and q <= qmax + 1
    return q if q <= qmax else None


def eps_bounded(eps_m: int, eps_k: int, m_r: int, k_r: int, f: int):
    """e_r by the bounded algorithm; None where the reference raises WidthError e[r] (e_r > 2^62)."""
    if m_r == 0:
        return 0
    msq = m_r * m_r                                   # < 2^60
    sh = 2 * k_r + 2 * f - eps_k                      # in [-63, 188]
    if sh < 0:
        j = -sh
        return (eps_m // msq + (1 << (j - 1))) >> j   # rshift_round(floor(eps_m / m^2), -sh), half up
    p_val = scaled_quotient(eps_m, msq, sh + 1, 1 << 63)
    return None if p_val is None else (p_val + 1) >> 1


def ms_bounded(sum_sq: int, divisor: int, e_r: int, f: int):
    """ms = floor(sum_sq * 2^(2F) / divisor) + e_r; None where the reference raises ms[r] (> 2^62)."""
    a_val = scaled_quotient(sum_sq, divisor, 2 * f, ISQRT_MAX)
    if a_val is None or a_val + e_r > ISQRT_MAX:
        return None
    return a_val + e_r


def reference_e(eps_m, eps_k, m_r, k_r, f):
    e_r = norm.eps_in_row_units(eps_m, eps_k, m_r, k_r, f)
    return None if e_r > ISQRT_MAX else e_r


def reference_ms(sum_sq, divisor, e_r, f):
    ms = ((sum_sq << (2 * f)) + divisor * e_r) // divisor
    return None if ms > ISQRT_MAX else ms


def test_scaled_quotient_is_exact_up_to_its_limit():
    rng = random.Random(7)
    for _ in range(3000):
        divisor = rng.choice([1, 2, 3, rng.randrange(1, 1 << 20), rng.randrange(1, 1 << 60)])
        p = rng.randrange(0, 70)
        exact_target = rng.choice([(1 << 63) - 1, 1 << 63, (1 << 63) + 1, (1 << 63) + 2, rng.randrange(1 << 66)])
        n = (exact_target * divisor) >> p  # a dividend whose quotient lands near the target
        exact = (n << p) // divisor
        for qmax in (1 << 62, 1 << 63):
            assert scaled_quotient(n, divisor, p, qmax) == (exact if exact <= qmax else None)


def test_bounded_eps_equals_the_reference_on_every_corner():
    eps_ms = [0, 1, 2, 3, 34360, 42950, 1 << 31, (1 << 32) - 1]
    scales = [1, 2, 3, 255, 40000, (1 << 15) - 1, 1 << 15, (1 << 16) - 1, (1 << 30) - 1]
    for eps_m in eps_ms:
        for eps_k in (0, 1, 31, 32, 35, 62, 63):
            for m_r in scales:
                for k_r in (0, 1, 20, 31, 32, 63):
                    for f in (0, 1, 8, 16, 31):
                        assert eps_bounded(eps_m, eps_k, m_r, k_r, f) == reference_e(eps_m, eps_k, m_r, k_r, f)
    rng = random.Random(11)
    for _ in range(3000):
        args = (rng.randrange(1 << 32), rng.randrange(64), rng.randrange(1, 1 << 30), rng.randrange(64),
                rng.randrange(32))
        assert eps_bounded(*args) == reference_e(*args)


def test_bounded_ms_equals_the_reference_on_every_corner():
    for d in (1, 2, 3, 4, 5, 576, 1000, 8192, 12345):
        for divisor in (d, d * d):
            top = divisor * (1 << 30)  # S <= D 2^30 (int16), V <= D^2 2^30
            for f in (0, 1, 8, 15, 16, 17, 31):
                for e_r in (0, 1, 450, (1 << 40) + 3, ISQRT_MAX - 1, ISQRT_MAX):
                    for s in (0, 1, divisor - 1, divisor, divisor + 1, divisor * ((1 << 15) - 1) ** 2, top):
                        assert ms_bounded(s, divisor, e_r, f) == reference_ms(s, divisor, e_r, f)


# --- norm.md -------------------------------------------------------------------------------------

def ex_rmsnorm() -> dict:
    x, m, k = [100, -200, 300, 400], 40000, 20
    gamma, gamma_k = [32768, 24576, -49152, 65535], 15
    f = g = 8
    eps_m, eps_k, d = norm.DEFAULT_EPS_M, norm.DEFAULT_EPS_K, len(x)
    s = sum(v * v for v in x)
    sh = 2 * k + 2 * f - eps_k
    eps_num, eps_den = eps_m << (2 * k + 2 * f), (m * m) << eps_k
    p_val = scaled_quotient(eps_m, m * m, sh + 1, 1 << 63)
    e_r = norm.eps_in_row_units(eps_m, eps_k, m, k, f)
    assert e_r == div_round_reference(eps_num, eps_den) == (p_val + 1) >> 1 == eps_bounded(eps_m, eps_k, m, k, f)
    a_val = (s << (2 * f)) // d
    ms = a_val + e_r
    assert ms == ((s << (2 * f)) + d * e_r) // d == ms_bounded(s, d, e_r, f)
    r = norm.row_root(norm.OP_RMS, 0, s, d, e_r, f)
    assert r == isqrt_reference(ms) and r * r <= ms < (r + 1) ** 2
    num = [(v * gm) << (f + g) for v, gm in zip(x, gamma)]
    y = [div_round_reference(n, r) for n in num]
    shift = g + gamma_k
    steps = quantize_steps(y, 1, shift, bits=8, symmetric=False, mbits=16)
    case = dict(x=np.array([x]), m=m, k=k, gamma=np.array(gamma), gamma_k=gamma_k)
    out = both_paths(norm.di_rmsnorm, norm.di_rmsnorm_reference, **case)
    check_quantized(out, steps)
    # step 8 is exactly this call (all its arguments)
    assert_same(out, quantize_rows_reference(np.array([y]), 1, shift, bits=8, symmetric=False, in_bits=32,
                                             mbits=16, rounding="half_up", zero_rows="error",
                                             tensor="di_rmsnorm.y"))
    step = steps["m_out"] / 2.0 ** steps["k_out"]
    real_out = [step * (v - steps["zp_out"]) for v in steps["q_out"]]
    float_ref = norm.di_rmsnorm_float(**case)[0].tolist()
    assert max(abs(a - b) for a, b in zip(real_out, float_ref)) <= step
    rms_float = math.sqrt(s / d + (eps_m / 2 ** eps_k) / (m / 2 ** k) ** 2)  # float meaning of r / 2^F
    return dict(x=x, m=m, k=k, gamma=gamma, gamma_k=gamma_k, S=s, sh=sh, eps_num=eps_num,
                eps_num_bits=eps_num.bit_length(), eps_den=eps_den, P=p_val, e_r=e_r, A=a_val, ms=ms, r=r,
                rms=r / 2 ** f, rms_float=round(rms_float, 4), num=num, y=y, k_in=shift, **steps,
                step=round(step, 5), real_out=[round(v, 4) for v in real_out],
                float_ref=[round(v, 4) for v in float_ref])


def ex_layernorm() -> dict:
    x, m, k = [100, -200, 300, 400], 40000, 20
    gamma, beta, gamma_k = [32768, 24576, -49152, 65535], [0, 4096, -8192, 256], 15
    f = g = 8
    eps_m, eps_k, d = norm.DEFAULT_EPS_M, norm.DEFAULT_EPS_K, len(x)
    sum_x = sum(x)
    c = [d * v - sum_x for v in x]
    s = sum(v * v for v in x)
    var = d * s - sum_x * sum_x
    assert var * d == sum(v * v for v in c)
    e_r = norm.eps_in_row_units(eps_m, eps_k, m, k, f)
    a_val = (var << (2 * f)) // (d * d)
    ms = a_val + e_r
    assert ms == ms_bounded(var, d * d, e_r, f)
    r = norm.row_root(norm.OP_LN, 0, var, d * d, e_r, f)
    assert r == isqrt_reference(ms)
    den = d * r
    num = [(v * gm) << (f + g) for v, gm in zip(c, gamma)]
    y = [div_round_reference(n, den) + (b << g) for n, b in zip(num, beta)]
    shift = g + gamma_k
    steps = quantize_steps(y, 1, shift, bits=8, symmetric=False, mbits=16)
    case = dict(x=np.array([x]), m=m, k=k, gamma=np.array(gamma), beta=np.array(beta), gamma_k=gamma_k)
    check_quantized(both_paths(norm.di_layernorm, norm.di_layernorm_reference, **case), steps)
    return dict(x=x, beta=beta, sum_x=sum_x, c=c, S=s, V=var, e_r=e_r, A=a_val, ms=ms, r=r, den=den, num=num,
                y=y, **steps)


def test_rmsnorm_worked_example():
    assert_page_holds("norm.md", "rmsnorm", ex_rmsnorm())


def test_layernorm_worked_example():
    assert_page_holds("norm.md", "layernorm", ex_layernorm())


GAIN = np.array([32768, 24576, -49152, 65535])


def assert_first_error(fast, reference, expected: str, **case):
    """Both paths refuse the case with the same error type and message, containing ``expected``."""
    ref = outcome(reference, case)
    assert refused(ref), f"the reference accepted the case (expected {expected!r})"
    assert_same(outcome(fast, case), ref)
    assert expected in ref[2], ref[2]


RMS = (norm.di_rmsnorm, norm.di_rmsnorm_reference)
LN = (norm.di_layernorm, norm.di_layernorm_reference)


@pytest.mark.parametrize("expected, case", [
    # attributes first, in the documented order, before any tensor
    ("unknown rounding mode", dict(x=np.array([[1.0, 2, 3, 4]]), m=1, k=0, gamma=GAIN, gamma_k=15, rounding="no")),
    ("in_bits must be", dict(x=np.array([[1, 2, 3, 4]]), m=1, k=0, gamma=GAIN, gamma_k=15, in_bits=1, mbits=1)),
    # tensors: x, then gamma, then the scales
    ("x[0,3] = 70000", dict(x=np.array([[1, 2, 3, 70000]]), m=-1, k=0, gamma=np.array([1 << 20, 0, 0, 0]),
                            gamma_k=15)),
    ("gamma[0] = 1048576", dict(x=np.array([[1, 2, 3, 4]]), m=-1, k=0, gamma=np.array([1 << 20, 0, 0, 0]),
                                gamma_k=15)),
    # per row, in row order: e_r, ms, r; an earlier row's ms error beats a later row's e error
    ("ms[0] =", dict(x=np.array([[1000, 2, 3, 4], [1, 0, 0, 0]]), m=np.array([1 << 15, 1]), k=np.array([0, 63]),
                     gamma=GAIN, gamma_k=15, rms_frac_bits=31, out_frac_bits=0)),
    # every row's e/ms/r before any numerator: row 1's e error beats row 0's numerator error
    ("e[1] =", dict(x=np.array([[1, 0, 0, 0], [1, 0, 0, 0]]), m=np.array([1 << 15, 1]), k=np.array([0, 63]),
                    gamma=GAIN, gamma_k=0, rms_frac_bits=31, out_frac_bits=31)),
    # every numerator (row-major) before any y: row 1's numerator beats row 0's y
    ("num[1,0] =", dict(x=np.array([[1000, 0, 0, 0], [30000, 0, 0, 0]]), m=1, k=0, gamma=np.array([300, 0, 0, 0]),
                        gamma_k=0, out_frac_bits=31, y_bits=8)),
    # every y before the zero-row check
    ("y[0,0] =", dict(x=np.array([[1000, 2, 3, 4], [0, 0, 0, 0]]), m=1, k=0, gamma=GAIN, gamma_k=15, y_bits=8)),
    # the zero-row check before any output scale
    ("row 1 of y is all zeros", dict(x=np.array([[1000] + [0] * 63, [0] * 64]), m=1, k=0,
                                     gamma=np.full(64, 65535), gamma_k=0, out_frac_bits=0, out_bits=2)),
    # output scale >= 2^mbits, then below 2^-64
    ("quantizing y: quantize_rows: output scale of row 0 is >= 2^16",
     dict(x=np.array([[1000] + [0] * 63]), m=1, k=0, gamma=np.full(64, 65535), gamma_k=0, out_frac_bits=0,
          out_bits=2)),
    ("quantizing y: quantize_rows: output scale of row 0 is below 2^-64",
     dict(x=np.array([[1, 0, 0, 0]]), m=1, k=31, gamma=np.array([1, 0, 0, 0]), gamma_k=32, rms_frac_bits=0,
          out_frac_bits=31, eps_m=1, eps_k=0)),
])
def test_rmsnorm_error_precedence_is_the_same_in_both_paths(expected, case):
    assert_first_error(*RMS, expected, **case)


def test_layernorm_error_precedence_is_the_same_in_both_paths():
    beta = np.array([0, 4096, -8192, 256])
    assert_first_error(*LN, "beta[0] = 70000", x=np.array([[1, 2, 3, 4]]), m=-1, k=0, gamma=GAIN,
                       beta=np.array([70000, 0, 0, 0]), gamma_k=15)
    assert_first_error(*LN, "e[1] =", x=np.array([[1, 0, 0, 0], [1, 0, 0, 0]]), m=np.array([1 << 15, 1]),
                       k=np.array([0, 63]), gamma=GAIN, beta=beta, gamma_k=0, rms_frac_bits=31, out_frac_bits=31)


# --- rope.md -------------------------------------------------------------------------------------

def ex_rope() -> dict:
    tables = rope_tables(3, 4, theta=10000.0, frac_bits=14)
    assert tables.cos.tolist() == [[16384, 16384], [8852, 16383], [-6818, 16381]]
    assert tables.sin.tolist() == [[0, 0], [13787, 164], [14898, 328]]
    x, zp, m, k, p, f = [130, 120, 100, 140], 128, 50000, 20, 1, 14
    cos_p, sin_p = tables.cos[p].tolist(), tables.sin[p].tolist()
    xc = [v - zp for v in x]
    first, second = xc[:2], xc[2:]
    first_cos = [a * c for a, c in zip(first, cos_p)]
    second_sin = [b * s for b, s in zip(second, sin_p)]
    second_cos = [b * c for b, c in zip(second, cos_p)]
    first_sin = [a * s for a, s in zip(first, sin_p)]
    y = [a - b for a, b in zip(first_cos, second_sin)] + [a + b for a, b in zip(second_cos, first_sin)]
    steps = quantize_steps(y, m, k + f, bits=8, symmetric=False, mbits=16)
    case = dict(x=np.array([[x]]), zp=zp, m=m, k=k, positions=np.array([p]), cos=tables.cos, sin=tables.sin)
    out = both_paths(rope.di_rope, rope.di_rope_reference, **case)
    check_quantized(out, steps)
    assert_same(out, quantize_rows_reference(np.array([[y]]), m, k + f, bits=8, symmetric=False, in_bits=24,
                                             mbits=16, rounding="half_up", zero_rows="zero", tensor="di_rope.y"))
    return dict(x=x, zp=zp, m=m, k=k, position=p, cos_p=cos_p, sin_p=sin_p, xc=xc, first_cos=first_cos,
                second_sin=second_sin, second_cos=second_cos, first_sin=first_sin, y=y, k_in=k + f, **steps)


def test_rope_worked_example():
    assert_page_holds("rope.md", "rope", ex_rope())


def test_rope_error_precedence_is_the_same_in_both_paths():
    tables = rope_tables(3, 4, frac_bits=14)
    good = dict(x=np.array([[[130, 120, 100, 140]]]), zp=128, m=50000, k=20, positions=np.array([1]),
                cos=tables.cos, sin=tables.sin)
    both = (rope.di_rope, rope.di_rope_reference)
    # attributes before tensors
    assert_first_error(*both, "in_bits must be", **{**good, "x": np.array([[[1.5]]])}, in_bits=20)
    # x, then zp, then the scales, then k + F, then positions' shape, then the tables, then positions' range
    assert_first_error(*both, "x[0,0,3] = 256", **{**good, "x": np.array([[[1, 2, 3, 256]]]), "zp": 300})
    assert_first_error(*both, "zp = 300", **{**good, "zp": 300, "k": 60})
    assert_first_error(*both, "k + table_frac_bits must be <= 63", **{**good, "k": 50, "positions": np.array([9])})
    assert_first_error(*both, "positions must have shape (1,)", **{**good, "positions": np.array([0, 9]),
                                                                   "cos": tables.cos.astype(np.int64) + 1})
    assert_first_error(*both, "cos[0,0] = 16385", **{**good, "positions": np.array([9]),
                                                     "cos": tables.cos.astype(np.int64) + 1})
    assert_first_error(*both, "positions[0] = 9", **{**good, "positions": np.array([9])})


# --- residual.md ---------------------------------------------------------------------------------

def ex_residual() -> dict:
    a, a_zp, a_m, a_k = [1000, -2000, 3, 0], 0, 40001, 30
    b, b_zp, b_m, b_k = [200, 100, 128, 129], 128, 50000, 26
    kref = min(a_k, b_k)
    big_a = [(v - a_zp) * a_m for v in a]
    big_b = [(v - b_zp) * b_m for v in b]
    a_al = [rshift_round_reference(v, a_k - kref, "half_up") for v in big_a]
    b_al = [rshift_round_reference(v, b_k - kref, "half_up") for v in big_b]
    s = [u + v for u, v in zip(a_al, b_al)]
    steps = quantize_steps(s, 1, kref, bits=16, symmetric=True, mbits=16)
    case = dict(a=np.array([a]), a_zp=a_zp, a_m=a_m, a_k=a_k, b=np.array([b]), b_zp=b_zp, b_m=b_m, b_k=b_k)
    out = both_paths(residual.residual_add, residual.residual_add_reference, **case)
    check_quantized(out, steps)
    assert_same(out, quantize_rows_reference(np.array([s]), 1, kref, bits=16, symmetric=True, in_bits=34,
                                             mbits=16, rounding="half_up", zero_rows="zero",
                                             tensor="residual_add.S"))
    return dict(a=a, a_zp=a_zp, a_m=a_m, a_k=a_k, b=b, b_zp=b_zp, b_m=b_m, b_k=b_k, kref=kref, A=big_a, B=big_b,
                A_al=a_al, B_al=b_al, S=s, **steps)


def test_residual_worked_example():
    assert_page_holds("residual.md", "residual", ex_residual())


def test_residual_alignment_shift_may_be_clamped_to_the_operand_width():
    """residual.md: a shift s >= v of an operand |A| < 2^(v-1) gives the result of s = v, in every mode."""
    for v in (2 + 2 + 1, 8 + 16 + 1, 16 + 16 + 1, 16 + 30 + 1):
        top = (1 << (v - 1)) - 1
        for a_val in (0, 1, -1, 2, -2, top, -top, top // 3, -(top // 3)):
            for mode in ("floor", "trunc", "half_up", "half_away", "half_even"):
                at_v = rshift_round_reference(a_val, v, mode)
                assert all(rshift_round_reference(a_val, s, mode) == at_v for s in range(v, 64))


def test_residual_error_precedence_is_the_same_in_both_paths():
    good = dict(a=np.array([[1000, -2000, 3, 0]]), a_zp=0, a_m=40001, a_k=30, b=np.array([[200, 100, 128, 129]]),
                b_zp=128, b_m=50000, b_k=26)
    both = (residual.residual_add, residual.residual_add_reference)
    assert_first_error(*both, "a_bits must be", **{**good, "a": np.array([[0.5]])}, a_bits=40)
    # every check of a (values, zp, scales) before any check of b
    assert_first_error(*both, "a[0,0] = 40000", **{**good, "a": np.array([[40000, 0, 0, 0]]), "b": np.array([[1]])})
    assert_first_error(*both, "a.k must be in", **{**good, "a_k": 64, "b": np.array([[1]])})
    # b: values, then its shape against a, then its zero point, then its scales
    assert_first_error(*both, "b[0,0] = 300", **{**good, "b": np.array([[300]]), "b_zp": 999})
    assert_first_error(*both, "b must have the shape of a", **{**good, "b": np.array([[1]]), "b_zp": 999})
    assert_first_error(*both, "b_zp = 999", **{**good, "b_zp": 999, "b_m": -1})
    # an all-zero row (zero_rows="error") before any output scale
    assert_first_error(*both, "row 1 of S is all zeros",
                       **{**good, "a": np.array([[30000, 0, 0, 0], [0, 0, 0, 0]]), "a_m": 65535, "a_k": 0,
                          "b": np.array([[128, 128, 128, 128], [128, 128, 128, 128]]), "b_k": 0},
                       zero_rows="error")
    assert_first_error(*both, "quantizing S: quantize_rows: output scale of row 0 is >= 2^16",
                       **{**good, "a": np.array([[-32768, 0, 0, 0]]), "a_m": 65535, "a_k": 0,
                          "b": np.array([[0, 128, 128, 128]]), "b_m": 65535, "b_k": 0})


# --- embedding.md --------------------------------------------------------------------------------

def ex_embedding() -> dict:
    float_table = [[0.5, -0.25, 0.125, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, -3.0, 0.1]]
    ids = [2, 0, 1, 2]
    table = quantize_embedding_table(np.array(float_table), bits=8, mbits=16)
    levels = 127
    absmax = [max(abs(v) for v in row) for row in float_table]
    for row, a, m_v, k_v, q_row in zip(float_table, absmax, table.m.tolist(), table.k.tolist(), table.q.tolist()):
        if a == 0:
            assert (m_v, k_v, q_row) == (0, 0, [0] * len(row))
            continue
        scale = Fraction(a) / levels
        assert abs(Fraction(m_v, 1 << k_v) - scale) <= Fraction(1, 1 << (k_v + 1))
        for f_v, q_v in zip(row, q_row):  # q = clamp(round_half_up(f 2^k / m), -d, d), exactly
            assert q_v == max(-levels, min(levels, math.floor(Fraction(f_v) * (1 << k_v) / m_v + Fraction(1, 2))))
    case = dict(ids=np.array(ids), table=table.q, table_m=table.m, table_k=table.k, bits=8, mbits=16)
    out = both_paths(embedding.embedding_lookup, embedding.embedding_lookup_reference, **case)
    assert out.q.tolist() == [table.q[i].tolist() for i in ids]
    return dict(float_table=float_table, absmax=absmax, table_q=table.q.tolist(), table_m=table.m.tolist(),
                table_k=table.k.tolist(), ids=ids, **as_lists(out))


def test_embedding_worked_example():
    assert_page_holds("embedding.md", "embedding", ex_embedding())


def test_embedding_error_precedence_is_the_same_in_both_paths():
    table = np.array([[1, 2], [3, 4], [5, 6]])
    both = (embedding.embedding_lookup, embedding.embedding_lookup_reference)
    assert_first_error(*both, "bits must be an int", ids=np.array([9]), table=table, table_m=np.ones(3, int),
                       table_k=np.zeros(3, int), bits=8.0)
    # the table, then its scales, then the ids
    assert_first_error(*both, "table[2,1] = 600", ids=np.array([9]), table=np.array([[1, 2], [3, 4], [5, 600]]),
                       table_m=-np.ones(3, int), table_k=np.zeros(3, int))
    assert_first_error(*both, "table.m", ids=np.array([9]), table=table, table_m=-np.ones(3, int),
                       table_k=np.zeros(3, int))
    assert_first_error(*both, "ids[1,0] = 3", ids=np.array([[0, 1], [3, -1]]), table=table,
                       table_m=np.ones(3, int), table_k=np.zeros(3, int))


# --- hadamard.md ---------------------------------------------------------------------------------

def butterfly_stages(t: list[int], b: int, s: int) -> list[list[int]]:
    """The fast path's butterflies on b segments of length s: the vector after each stage."""
    t, stages, half = list(t), [], 1
    while half < s:
        for seg in range(b):
            for block_start in range(seg * s, seg * s + s, 2 * half):
                for j in range(block_start, block_start + half):
                    t[j], t[j + half] = t[j] + t[j + half], t[j] - t[j + half]
        stages.append(list(t))
        half *= 2
    return stages


def matrix_transform(n: int, xc: list[int]) -> list[int]:
    """The reference's t: sum_j H_n[i, j] x'_j on Python ints."""
    return [sum(h * v for h, v in zip(row, xc)) for row in hadamard.hadamard_matrix(n).tolist()]


def ex_hadamard8() -> dict:
    q, zp, m, k = [130, 120, 100, 140, 128, 129, 0, 255], 128, 50000, 20
    xc = [v - zp for v in q]
    assert hadamard.hadamard_factors(8) == (1, 8)
    h1, h2, h4 = butterfly_stages(xc, 1, 8)
    assert h4 == matrix_transform(8, xc)
    t_bits = hadamard.t_bits_bound(8, 8)
    assert all(abs(v) < 1 << (t_bits - 1) for v in h4)
    steps = quantize_steps(h4, m, k, bits=8, symmetric=False, mbits=16)
    case = dict(q=np.array([q]), zp=zp, m=m, k=k)
    out = both_paths(hadamard.di_hadamard, hadamard.di_hadamard_reference, **case)
    check_quantized(out, steps)
    assert_same(out, quantize_rows_reference(np.array([h4]), m, k, bits=8, symmetric=False, in_bits=t_bits,
                                             mbits=16, rounding="half_up", zero_rows="zero", tensor="di_hadamard.t"))
    return dict(q=q, zp=zp, m=m, k=k, xc=xc, stage_h1=h1, stage_h2=h2, stage_h4=h4, t_bits=t_bits, **steps)


def ex_hadamard24() -> dict:
    xc = [3, -1, 0, 2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, -2, 0, 0, 0, 0, 5, 0, 0, 0]
    zp, m, k = 128, 50000, 20
    q = [v + zp for v in xc]
    b, s = hadamard.hadamard_factors(24)
    base = hadamard.hadamard_base(b).tolist()
    x_mat = [xc[j1 * s:(j1 + 1) * s] for j1 in range(b)]  # element j1 * s + j2 is X[j1][j2]
    base_pass = [[sum(base[i1][j1] * x_mat[j1][j2] for j1 in range(b)) for j2 in range(s)] for i1 in range(b)]
    flat = [v for row in base_pass for v in row]
    (t,) = butterfly_stages(flat, b, s)
    assert t == matrix_transform(24, xc)
    t_bits = hadamard.t_bits_bound(8, 24)
    steps = quantize_steps(t, m, k, bits=8, symmetric=False, mbits=16)
    out = both_paths(hadamard.di_hadamard, hadamard.di_hadamard_reference, q=np.array([q]), zp=zp, m=m, k=k)
    check_quantized(out, steps)
    return dict(q=q, zp=zp, m=m, k=k, xc=xc, b=b, s=s, X=x_mat, base_pass=base_pass, t=t, t_bits=t_bits,
                **steps)


def ex_hadamard_fold() -> dict:
    w = [1.0, 2.0, 3.0, 4.0]  # one output channel of the consumer layer, n = 4
    x = [0.5, -1.0, 2.0, 0.25]  # real input of the transform
    hx = hadamard.hadamard_transform_float(np.array(x)).tolist()
    w_fold = (hadamard.hadamard_transform_float(np.array(w)) / 4).tolist()
    wx = float(np.dot(w, x))
    assert wx == float(np.dot(w_fold, hx))  # exact here: every value is a short binary fraction
    assert hx == (hadamard.hadamard_matrix(4).astype(np.float64) @ np.array(x)).tolist()
    return dict(W=w, x_real=x, Hx=hx, W_fold=w_fold, Wx=wx, W_fold_Hx=float(np.dot(w_fold, hx)))


def test_hadamard_worked_examples():
    assert_page_holds("hadamard.md", "hadamard8", ex_hadamard8())
    assert_page_holds("hadamard.md", "hadamard24", ex_hadamard24())
    assert_page_holds("hadamard.md", "hadamard-fold", ex_hadamard_fold())


def test_hadamard_error_precedence_is_the_same_in_both_paths():
    both = (hadamard.di_hadamard, hadamard.di_hadamard_reference)
    assert_first_error(*both, "t_bits must be", q=np.array([[0.5]]), zp=0, m=1, k=0, t_bits=61)
    # q's values, then n, then zp, then the scales
    assert_first_error(*both, "q[0,2] = 256", q=np.array([[1, 2, 256]]), zp=300, m=1, k=0)
    assert_first_error(*both, "n = 3 is not a supported", q=np.array([[1, 2, 3]]), zp=300, m=1, k=0)
    assert_first_error(*both, "zp = 300", q=np.array([[1, 2, 3, 4]]), zp=300, m=-1, k=0)
    # a narrow t_bits: the first t outside it in row-major order
    assert_first_error(*both, "t[1,0] =", q=np.array([[128, 128, 128, 129], [255, 255, 255, 255]]), zp=128, m=1,
                       k=0, t_bits=4)
    # then an all-zero row of t (zero_rows="error"), then the output scale
    assert_first_error(*both, "row 0 of t is all zeros", q=np.array([[128] * 4, [0] * 4]), zp=128, m=65535, k=0,
                       zero_rows="error")
    assert_first_error(*both, "quantizing t: quantize_rows: output scale of row 0 is >= 2^16",
                       q=np.array([[0] * 4]), zp=128, m=65535, k=0)


EXAMPLES = {"norm.md": (("rmsnorm", ex_rmsnorm), ("layernorm", ex_layernorm)),
            "rope.md": (("rope", ex_rope),),
            "residual.md": (("residual", ex_residual),),
            "embedding.md": (("embedding", ex_embedding),),
            "hadamard.md": (("hadamard8", ex_hadamard8), ("hadamard24", ex_hadamard24),
                            ("hadamard-fold", ex_hadamard_fold))}


def test_every_worked_example_block_of_these_pages_is_checked():
    for page, examples in EXAMPLES.items():
        assert sorted(doc_examples(page)) == sorted(name for name, _ in examples), page


if __name__ == "__main__":
    for page, examples in EXAMPLES.items():
        for name, fn in examples:
            print(f"## {page}\n<!-- worked-example: {name} -->\n```\n{block(fn())}\n```\n")
