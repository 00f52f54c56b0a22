"""DI-Exp's formulas and its element kernel (contract: docs/spec/exp.md; operator: ilsim.ops.exp).

The formulas are plain integer code registered with Numba (``register_jitable``): the operator's
Python-int reference calls them as they are, and the compiled kernels (this one, the softmax's,
the SiLU's and SwiGLU's) inline the very same source on int64, within the bounds each states.
"""

from __future__ import annotations

import numba
from numba.extending import register_jitable

from ilsim.arith.rounding import HALF_UP, div_round_int
from ilsim.kernels.launch import row_kernel

#: Order-2 polynomial P(f) = 1 + f/2 + (A2 / 2^C) f (1 + f): P(0) = 1 and P(-1) = 1/2 exactly.
ORDER2_C = 9
ORDER2_A2 = 87
#: Order 2 needs 2 * bits(|t|) + C + 1 <= 62 for its numerator: |t| is uint26.
ORDER2_T_BITS = (61 - ORDER2_C) // 2
#: 2^k fits int64 (with div_round's |a| < 2^62) for k <= 61.
INT64_MAX_K = 61
_C_ONE = 1 << ORDER2_C          # 1.0 and 0.5 at the coefficients' scale 2^C
_C_HALF = 1 << (ORDER2_C - 1)


@register_jitable(inline="always")
def log2e_multiplier(m):
    """m_f = m + (m >> 1) - (m >> 4): m * 1.4375 (log2 e = 1.0111b), each shift a floor.
    Ints, int64 scalars in kernels, or int64 arrays."""
    return m + (m >> 1) - (m >> 4)


@register_jitable(inline="always")
def t_abs_of_scale(m, k):
    """|t| = round_half_up(2^k / m_f), for m >= 1 and 0 <= k <= 63 (0: scale too large).
    Exact on Python ints; compiled (:func:`exp_t_abs_i64`) it needs k <= INT64_MAX_K."""
    return div_round_int(1 << k, log2e_multiplier(m), HALF_UP)


@register_jitable(inline="always")
def exp_from_t(x, t_abs, order):
    """y ~= |t| * 2^(x / |t|): the contract's element formula, for x <= 0 and 1 <= |t| <= 2^62 - 1
    (order 2: |t| < 2^26), x >= -2^61. The one source of DI-Exp's element arithmetic: exact on
    Python ints (the operator's reference) and, with the same bounds, on int64 in kernels
    (:func:`exp_from_t_i64`, inlined into DI-Exp, DI-Softmax, DI-SiLU and DI-SwiGLU).

    q = floor(x / t) >= 0 and r = x - q*t in (t, 0], t = -|t|. Order 1: ((r >> 1) + |t|) >> q.
    Order 2: round_half_up(N / D), N = 512 T^2 + 256 r T + 87 r (T + r), D = T * 2^(9 + q).
    Shifts of 63 or more give 0, as the unbounded ones do (the shifted values are below 2^62), and
    order 2 is 0 once 2^(q-1) > |t| (the quotient is below 1/2), which also bounds D below 2^61.
    """
    q = (-x) // t_abs               # both operands >= 0, so this is floor(x / t)
    r = x + q * t_abs
    if order == 1:
        if q >= 63:                 # (r >> 1) + |t| <= |t| < 2^62
            return 0
        return ((r >> 1) + t_abs) >> q
    if q >= 63 or (q >= 1 and (t_abs >> (q - 1)) == 0):
        return 0
    numerator = t_abs * t_abs * _C_ONE + r * t_abs * _C_HALF + ORDER2_A2 * r * (t_abs + r)
    denominator = t_abs << (ORDER2_C + q)
    return (numerator + (denominator >> 1)) // denominator   # half up: D is even


#: :func:`t_abs_of_scale` compiled, for 1 <= m < 2^30 and 0 <= k <= INT64_MAX_K.
exp_t_abs_i64 = numba.njit(cache=True, inline="always")(t_abs_of_scale)
#: :func:`exp_from_t` compiled on int64 (same bounds).
exp_from_t_i64 = numba.njit(cache=True, inline="always")(exp_from_t)


@row_kernel
def exp_elements(x, t_abs, order, out):
    """out[i] = exp_from_t(x[i], t_abs[i], order) over flat int64 arrays (x <= 0, |t| checked)."""
    for i in numba.prange(x.size):
        out[i] = exp_from_t(x[i], t_abs[i], order)
