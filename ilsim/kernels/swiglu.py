"""DI-SiLU's and DI-SwiGLU's formulas (the sigmoid, its per-channel scale) and element kernels
(contract: docs/spec/swiglu.md; operators: ilsim.ops.swiglu). The formulas are plain integer code
registered with Numba: the operators' references call them on Python ints, the kernels inline
the same source on int64."""

from __future__ import annotations

import numba
import numpy as np
from numba.extending import register_jitable

from ilsim.arith.bits import bit_length
from ilsim.arith.dyadic import MAX_SHIFT
from ilsim.arith.rounding import HALF_UP, div_round_int, rshift_round_int
from ilsim.kernels.exp import INT64_MAX_K, exp_from_t, t_abs_of_scale
from ilsim.kernels.launch import row_kernel

#: Width of the renormalised sigmoid-input multiplier when gate_div is folded in.
SIGMOID_SCALE_MBITS = 16


@register_jitable(inline="always")
def sigmoid(v, t_abs, frac_bits, order, mode):
    """sigma = round(e1 * 2^F / (e1 + e2)) in [0, 2^F] (mode: a rounding code): e1 = exp(v - M),
    e2 = exp(-M), M = max(v, 0), both by DI-Exp with the scale's |t|. One of the two inputs is
    -|v|, the other 0, so the formula evaluates DI-Exp(-|v|) and DI-Exp(0) and assigns them by
    the sign of v (a select, not a branch); e1 + e2 >= DI-Exp(0) = |t| >= 1. Compiled on int64
    with |t| < 2^32 and F <= 30, e1 * 2^F < 2^62."""
    e_neg = exp_from_t(-abs(v), t_abs, order)
    e_zero = exp_from_t(0, t_abs, order)
    e1 = e_zero if v >= 0 else e_neg
    e2 = e_neg if v >= 0 else e_zero
    return div_round_int(e1 << frac_bits, e1 + e2, mode)


sigmoid_i64 = numba.njit(cache=True, inline="always")(sigmoid)


@register_jitable(inline="always")
def sigmoid_scale(m_g, k_g, div_m, div_k):
    """(m, k) ~= m_g * div_m / 2^(k_g + div_k) with m < 2^16: ONE half-up rounding, unchecked.

    P = m_g * div_m (exact; < 2^60 for uint30 x uint30), K = k_g + div_k; s = max(0, bits(P) - 16,
    K - 63); m = round_half_up(P / 2^s), k = K - s; a rounding carry m = 2^16 becomes 2^15 with
    k - 1 (exact). The caller refuses k < 0 and m = 0 (:func:`sigmoid_scale_reference`).
    """
    product = m_g * div_m
    shift_total = k_g + div_k
    s = max(0, bit_length(product) - SIGMOID_SCALE_MBITS, shift_total - MAX_SHIFT)
    m = rshift_round_int(product, s, HALF_UP)
    if m == 1 << SIGMOID_SCALE_MBITS:
        m >>= 1
        s += 1
    return m, shift_total - s


@numba.njit(cache=True)
def sigmoid_scales_kernel(m_g, k_g, div_m, div_k, m, k):
    for r in range(m_g.size):
        for j in range(div_m.size):
            m[r, j], k[r, j] = sigmoid_scale(m_g[r], k_g[r], div_m[j], div_k[j])


@row_kernel
def silu_products(x, zp, t_abs, frac_bits, order, mode, w):
    rows, n_cols = x.shape
    per_channel = t_abs.shape[1] > 1
    for r in numba.prange(rows):
        for j in range(n_cols):
            x_prime = x[r, j] - zp[r]
            t = t_abs[r, j] if per_channel else t_abs[r, 0]
            w[r, j] = x_prime * sigmoid(x_prime, t, frac_bits, order, mode)


@row_kernel
def swiglu_products(gate, gate_zp, up, up_zp, t_abs, frac_bits, order, mode, w):
    rows, n_cols = gate.shape
    per_channel = t_abs.shape[1] > 1
    for r in numba.prange(rows):
        for j in range(n_cols):
            g_prime = gate[r, j] - gate_zp[r]
            t = t_abs[r, j] if per_channel else t_abs[r, 0]
            w[r, j] = g_prime * sigmoid(g_prime, t, frac_bits, order, mode) * (up[r, j] - up_zp[r])


@numba.njit(cache=True, inline="always")
def sigmoid_t_abs_i64(m_g, k_g, div_m, div_k, t_limit):
    """|t| of the per-channel sigmoid scale: :func:`sigmoid_scale` then DI-Exp's |t| formula, on
    int64 (m_g * div_m < 2^60). Returns 0 where the Python path must decide (an error, or k > 61
    where 2^k leaves int64)."""
    m, k = sigmoid_scale(m_g, k_g, div_m, div_k)
    if k < 0 or m == 0 or k > INT64_MAX_K:
        return np.int64(0)
    t_abs = t_abs_of_scale(m, k)
    if t_abs > t_limit:
        return np.int64(0)
    return t_abs


@row_kernel
def swiglu_gate_div_products(gate, gate_zp, up, up_zp, m_g, k_g, div_m, div_k, t_limit, frac_bits, order,
                            mode, w, bad):
    """The SwiGLU element loop with the per-channel sigmoid constant computed in place (bad[r] = 1
    where a constant needs the Python path; that row's w is then not meaningful)."""
    rows, n_cols = gate.shape
    for r in numba.prange(rows):
        flag = 0
        for j in range(n_cols):
            t = sigmoid_t_abs_i64(m_g[r], k_g[r], div_m[j], div_k[j], t_limit)
            if t == 0:
                flag = 1
                t = 1
            g_prime = gate[r, j] - gate_zp[r]
            w[r, j] = g_prime * sigmoid(g_prime, t, frac_bits, order, mode) * (up[r, j] - up_zp[r])
        bad[r] = flag
