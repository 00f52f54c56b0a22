"""DI-Exp: the integer exponential of I-LLM (paper Algorithm 1), for inputs x <= 0.

Contract (docs/spec/exp.md). Input: x <= 0, signed ``in_bits``, with a real scale s = m / 2^k
(m uint30 >= 1, k in [0, 63]) that broadcasts against x (scalar, per row [..., 1], per element).
Per scale, on Python ints:
    m_f = m + (m >> 1) - (m >> 4)               m * 1.4375 ~ m * log2(e), floors
    |t| = div_round(2^k, m_f, half_up)          t = -|t|; |t| = 0 (scale too large) is an InputError
Per element (q >= 0 and r in (t, 0], so x = q*t + r exactly):
    q = floor(x / t)    r = x - q*t    f = r / |t| in (-1, 0]
    order 1 (paper):  y = ((r >> 1) - t) >> q             arithmetic shifts, i.e. floors
    order 2 (ours):   y = round_half_up(|t| * P(f) / 2^q), P(f) = 1 + f/2 + (87/512) f (1 + f)
                      = (512 T^2 + 256 r T + 87 r (T + r) + D/2) // D,  T = |t|, D = T * 2^(9 + q)
Output y: uint ``out_bits`` in [0, |t|] with implicit scale 1/|t|, so y / |t| ~= exp(x * s);
|t| must fit out_bits (WidthError otherwise), and order 2 needs |t| < 2^26 (its numerator then
stays below 2^62; WidthError otherwise). Also returned: t_abs = |t| (int64, the scale's shape).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ilsim.arith.dyadic import MAX_SHIFT
from ilsim.arith.rounding import div_round
from ilsim.errors import InputError
from ilsim.kernels.exp import (INT64_MAX_K, ORDER2_A2, ORDER2_C, ORDER2_T_BITS, exp_elements, exp_from_t, exp_from_t_i64,
                               exp_t_abs_i64, log2e_multiplier, t_abs_of_scale)
from ilsim.ops._common import storage_dtype
from ilsim.widths import check_width_int, int_input, is_int, require_attr

OP = "di_exp"
ORDERS = (1, 2)
#: Scale multipliers m are uint30 (the widest m that quantize_rows emits), m >= 1.
SCALE_MBITS = 30
_T_STORE_CAP = 1 << 62  # fast path stores |t| clamped here; anything this large is already an error


class ExpOut(NamedTuple):
    """DI-Exp result: y (uint out_bits) with real value y / t_abs ~= exp(x * m / 2^k)."""

    y: np.ndarray
    t_abs: np.ndarray


# ---------------------------------------------------------------- attributes and indices

def require_int_attr(value, lo: int, hi: int, op: str, name: str) -> int:
    """InputError unless ``value`` is a Python/NumPy int (not bool) in [lo, hi]; returns int(value)."""
    ok = is_int(value)
    require_attr(ok and lo <= int(value) <= hi, op, f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def require_order(order, op: str) -> int:
    ok = isinstance(order, (int, np.integer)) and not isinstance(order, (bool, np.bool_))
    require_attr(ok and int(order) in ORDERS, op, f"order must be one of {ORDERS}, got {order!r}")
    return int(order)


def indexed(name: str, idx: tuple) -> str:
    """``name[i,j]`` for a multi-index (just ``name`` for the empty index of a 0-d array)."""
    return f"{name}[{','.join(str(int(i)) for i in idx)}]" if idx else name


def first_index(mask: np.ndarray) -> tuple:
    """Multi-index of the first True of ``mask`` in C order (mask must hold one)."""
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(mask)), mask.shape))


# ---------------------------------------------------------------- the per-scale constant |t|
#
# The formulas live with the kernels (ilsim.kernels.exp: log2e_multiplier, t_abs_of_scale,
# exp_from_t), written once as plain integer code: the reference below calls them on Python
# ints, the kernels inline the same source on int64.

def exp_t_abs_reference(m: int, k: int) -> int:
    """|t| = round_half_up(2^k / m_f) on Python ints (:func:`t_abs_of_scale`), 0 <= k <= 63."""
    return t_abs_of_scale(int(m), int(k))


def t_abs_limit(out_bits: int, order: int) -> int:
    """Largest allowed |t|: y in [0, |t|] must fit uint out_bits, and order 2 needs |t| < 2^26."""
    limit = (1 << out_bits) - 1
    return min(limit, (1 << ORDER2_T_BITS) - 1) if order == 2 else limit


def exp_t_abs_checked_reference(m: int, k: int, out_bits: int, order: int, op: str, tensor: str) -> int:
    """|t| for the scale m / 2^k, checked: 0 is an InputError, above :func:`t_abs_limit` a WidthError."""
    t_abs = exp_t_abs_reference(m, k)
    if t_abs == 0:
        raise InputError(f"{op}: the scale {m}/2^{k} of {tensor} is too large for DI-Exp: "
                         f"|t| = round(2^{k} / m_f) = round(2^{k} / {log2e_multiplier(m)}) = 0 "
                         f"(needs 2^k / m_f >= 1/2)")
    check_width_int(t_abs, out_bits, False, op, f"{tensor} (|t| of scale {m}/2^{k}; y in [0, |t|])")
    if order == 2:
        check_width_int(t_abs, ORDER2_T_BITS, False, op,
                        f"{tensor} (|t| of scale {m}/2^{k}; the order-2 numerator needs |t| < 2^{ORDER2_T_BITS})")
    return t_abs


def exp_t_abs(m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Vectorised :func:`exp_t_abs_reference` over int64 arrays of one shape (values above
    2^62, possible only for k >= 62, are stored as 2^62: no out_bits admits them)."""
    m_f = log2e_multiplier(m)
    t_abs = np.empty(m.shape, dtype=np.int64)
    small = k <= INT64_MAX_K
    t_abs[small] = div_round(np.left_shift(np.int64(1), k[small]), m_f[small])
    big = ~small
    if big.any():  # 2^62 and 2^63 are Python ints: one exact division per distinct scale
        pairs = np.stack([m[big], k[big]], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        values = [min(exp_t_abs_reference(int(mm), int(kk)), _T_STORE_CAP) for mm, kk in uniq.tolist()]
        t_abs[big] = np.array(values, dtype=np.int64)[inverse.reshape(-1)]
    return t_abs


def exp_t_abs_checked(m: np.ndarray, k: np.ndarray, out_bits: int, order: int, op: str,
                      tensor: str) -> np.ndarray:
    """Fast twin of :func:`exp_t_abs_checked_reference` over arrays m, k of one shape: raises the
    reference's error for the first offending scale in C order (named ``tensor[index]``)."""
    t_abs = exp_t_abs(m, k)
    bad = (t_abs == 0) | (t_abs > t_abs_limit(out_bits, order))
    if bad.any():
        idx = first_index(bad)
        exp_t_abs_checked_reference(int(m[idx]), int(k[idx]), out_bits, order, op, indexed(tensor, idx))
        raise AssertionError("unreachable: the reference check must raise")  # pragma: no cover
    return t_abs


# ---------------------------------------------------------------- the per-element exponential

def exp_from_t_reference(x: int, t_abs: int, order: int) -> int:
    """:func:`exp_from_t` on Python ints (the scalar reference's element step)."""
    return exp_from_t(int(x), int(t_abs), int(order))


# ---------------------------------------------------------------- DI-Exp

def shaped_input(v, op: str, name: str, **kwargs) -> np.ndarray:
    """:func:`ilsim.widths.int_input`, keeping the shape of a 0-d input (a scalar stays 0-d)."""
    return int_input(v, op, name, **kwargs).reshape(np.shape(v))


def scale_input(v, op: str, name: str, mbits: int = SCALE_MBITS) -> np.ndarray:
    """A multiplier array: uint mbits and >= 1 (a zero scale has no exponent)."""
    arr = shaped_input(v, op, name, bits=mbits, signed=False)
    if int(arr.min()) < 1:
        idx = first_index(arr < 1)
        raise InputError(f"{op}: {indexed(name, idx)} = 0; a scale multiplier must be >= 1")
    return arr


def shift_input(v, op: str, name: str) -> np.ndarray:
    """A shift array: integers in [0, 63]."""
    arr = shaped_input(v, op, name)
    if int(arr.min()) < 0 or int(arr.max()) > MAX_SHIFT:
        idx = first_index((arr < 0) | (arr > MAX_SHIFT))
        raise InputError(f"{op}: {indexed(name, idx)} = {int(arr[idx])} is outside [0, {MAX_SHIFT}]")
    return arr


def check_attrs(in_bits, out_bits, order) -> None:
    """DI-Exp's attributes: in_bits and out_bits integers in [2, 62], order 1 or 2 (InputError)."""
    require_int_attr(in_bits, 2, 62, OP, "in_bits")
    require_int_attr(out_bits, 2, 62, OP, "out_bits")
    require_order(order, OP)


def _inputs(x, m, k, in_bits, out_bits, order):
    """Validate di_exp's inputs; returns x, and m, k broadcast to the scale shape."""
    check_attrs(in_bits, out_bits, order)
    x = shaped_input(x, OP, "x", bits=in_bits, signed=True)
    if x.size and int(x.max()) > 0:
        idx = first_index(x > 0)
        raise InputError(f"{OP}: {indexed('x', idx)} = {int(x[idx])} is positive; DI-Exp takes x <= 0 "
                         f"(subtract the row maximum first)")
    m = scale_input(m, OP, "m")
    k = shift_input(k, OP, "k")
    try:
        scale_shape = np.broadcast_shapes(m.shape, k.shape)
        ok = np.broadcast_shapes(scale_shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise InputError(f"{OP}: scale shapes m {m.shape} and k {k.shape} must broadcast to x's shape {x.shape}")
    return x, np.broadcast_to(m, scale_shape), np.broadcast_to(k, scale_shape)


def di_exp_reference(x, m, k, *, in_bits: int = 16, out_bits: int = 32, order: int = 1) -> ExpOut:
    """Scalar reference of the module contract: Python ints, one loop per scale and per element."""
    x, m, k = _inputs(x, m, k, in_bits, out_bits, order)
    t_abs = np.zeros(m.shape, dtype=np.int64)
    for idx in np.ndindex(*m.shape):
        t_abs[idx] = exp_t_abs_checked_reference(int(m[idx]), int(k[idx]), out_bits, order, OP,
                                                 indexed("t_abs", idx))
    t_per_element = np.broadcast_to(t_abs, x.shape).reshape(-1).tolist()
    y = [exp_from_t_reference(v, t, order) for v, t in zip(x.reshape(-1).tolist(), t_per_element)]
    y = np.array(y, dtype=np.int64).reshape(x.shape)
    return ExpOut(y.astype(storage_dtype(out_bits, False)), t_abs)


def di_exp(x, m, k, *, in_bits: int = 16, out_bits: int = 32, order: int = 1) -> ExpOut:
    """Fast path of the module contract: |t| vectorised per scale, a parallel Numba element loop."""
    x, m, k = _inputs(x, m, k, in_bits, out_bits, order)
    t_abs = exp_t_abs_checked(m, k, out_bits, order, OP, "t_abs")
    t_per_element = np.ascontiguousarray(np.broadcast_to(t_abs, x.shape)).reshape(-1)
    y = np.empty(x.size, dtype=np.int64)
    exp_elements(x.reshape(-1), t_per_element, order, y)
    return ExpOut(y.reshape(x.shape).astype(storage_dtype(out_bits, False)), t_abs)


def di_exp_float(x, m, k, *, in_bits: int = 16, out_bits: int = 32, order: int = 1) -> np.ndarray:
    """The float meaning (tests only): exp(x * m / 2^k), what y / t_abs approximates."""
    scale = np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64))
    return np.exp(np.asarray(x, dtype=np.float64) * scale)


__all__ = ["ExpOut", "INT64_MAX_K", "ORDER2_A2", "ORDER2_C", "ORDER2_T_BITS", "di_exp", "di_exp_reference",
           "di_exp_float", "exp_from_t", "exp_from_t_reference", "exp_from_t_i64", "exp_t_abs", "exp_t_abs_checked",
           "exp_t_abs_checked_reference", "exp_t_abs_i64", "exp_t_abs_reference", "log2e_multiplier", "t_abs_limit"]
