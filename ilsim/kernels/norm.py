"""DI-Norm's formulas (eps in row units, the mean square) and its kernels (contract:
docs/spec/norm.md; operators: ilsim.ops.norm). The formulas are plain integer code registered
with Numba: the references call them on Python ints, the kernels inline the same source on
int64 after their range guards."""

from __future__ import annotations

import numba
from numba.extending import register_jitable

from ilsim.arith.bits import bit_length_i64
from ilsim.arith.isqrt import ISQRT_MAX, isqrt_i64
from ilsim.arith.jit import div_round_i64
from ilsim.arith.rounding import HALF_UP, div_round_int
from ilsim.kernels.launch import row_kernel


@register_jitable(inline="always")
def eps_in_row_units(eps_m, eps_k, m_r, k_r, rms_frac_bits):
    """e_r = round_half_up(eps / s_r^2 * 2^(2F)) = div_round(eps_m * 2^(2k_r + 2F), m_r^2 * 2^eps_k).

    eps expressed in the row's integer units squared, with 2F fraction bits, rounded once half up.
    A zero-scale row (m_r = 0) is all real zeros; it gets e_r = 0. Written with 2^eps_k cancelled
    (the same rational, so the same rounding): exact on Python ints; compiled (the RMS kernel),
    the caller first checks that the shifted operands stay below 2^62.
    """
    if m_r == 0:
        return 0
    shift = 2 * k_r + 2 * rms_frac_bits - eps_k
    if shift >= 0:
        return div_round_int(eps_m << shift, m_r * m_r, HALF_UP)
    return div_round_int(eps_m, (m_r * m_r) << -shift, HALF_UP)


@register_jitable(inline="always")
def mean_square(sum_sq, divisor, e_r, rms_frac_bits):
    """ms = floor((sum_sq * 2^(2F) + divisor * e_r) / divisor): the mean square with eps, 2F
    fraction bits (its isqrt is the row's r). Exact on Python ints; compiled, the caller first
    checks the operands' bit lengths."""
    return ((sum_sq << (2 * rms_frac_bits)) + divisor * e_r) // divisor


@row_kernel
def normalize_rows(v, gamma, beta, den, shift, beta_shift, mode, out):
    """out[r, j] = div_round(v[r, j] * gamma[j] << shift, den[r]) + (beta[j] << beta_shift);
    den[r] == 0 only where v[r] is all zeros (then out = beta << beta_shift). |v*gamma << shift| < 2^62
    is checked by the caller."""
    rows, cols = v.shape
    for r in numba.prange(rows):
        d = den[r]
        for j in range(cols):
            bias = beta[j] << beta_shift
            if d == 0:
                out[r, j] = bias
            else:
                out[r, j] = div_round_i64((v[r, j] * gamma[j]) << shift, d, mode) + bias


@numba.njit(cache=True)
def rms_roots(sum_sq, m, k, d, eps_m, eps_k, frac_bits, roots, status):
    """roots[r] = row_root(S[r], D, eps_in_row_units(...)) where every step fits int64 (then
    status[r] = 0); status[r] = 1 leaves the row to the Python-int functions (wider values, or
    an error they report)."""
    for r in range(sum_sq.shape[0]):
        status[r] = 1
        if m[r] != 0:   # eps_in_row_units' operands must stay below 2^62 on int64
            shift = 2 * k[r] + 2 * frac_bits - eps_k
            m_sq_bits = 2 * bit_length_i64(m[r])
            fits = (bit_length_i64(eps_m) + shift <= 61 and m_sq_bits <= 61) if shift >= 0 \
                else m_sq_bits - shift <= 61
            if not fits:
                continue
        e = eps_in_row_units(eps_m, eps_k, m[r], k[r], frac_bits)
        if bit_length_i64(sum_sq[r]) + 2 * frac_bits > 61 or bit_length_i64(d) + bit_length_i64(e) > 61:
            continue
        ms = mean_square(sum_sq[r], d, e, frac_bits)
        if ms > ISQRT_MAX:
            continue
        root = isqrt_i64(ms)
        if root == 0 and sum_sq[r] > 0:
            continue
        roots[r] = root
        status[r] = 0
