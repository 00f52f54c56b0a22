"""DI-ClippedSoftmax: integer softmax over the last axis (paper Algorithm 2, Eq. 10).

Contract (docs/spec/softmax.md). Input x[..., N], signed ``in_bits``, with one real scale
s_r = m_r / 2^k_r per row r (m uint30 >= 1, k in [0, 63]; scalar or shape x.shape[:-1]).
``mask`` (optional, bool, broadcastable to x; True = keep) drops elements; every row keeps one.
Per row, on Python ints:
    c_int = div_round(c_num * 2^k, c_den * m, half_up)    clip c = c_num / c_den > 0 (exact), in
                                                          input units; clip=None: no clamp
    |t|   = DI-Exp's constant of the row scale            uint ``sum_bits`` (order 2: < 2^26)
Per kept element j (masked elements give p_j = 0):
    d_j = max(x_j - max_kept(x), -c_int)                  signed in_bits + 1; the clamp is the
                                                          clipping saturation
    e_j = DI-Exp(d_j) with the row's |t|                  uint sum_bits, in [0, |t|]
    S   = sum_kept e_j                                    uint sum_bits (checked: WidthError)
    p_j = min(div_round(e_j * 2^F, S, half_up), 2^n - 1)  uint n = ``out_bits``, scale 2^-F,
                                                          F = ``out_frac_bits``
S >= |t| >= 1 because the row maximum has d = 0 and e = |t| exactly. The saturation at 2^n - 1
can only act when F >= n (p_j <= 2^F always).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ilsim.arith.rounding import div_round, div_round_reference
from ilsim.errors import InputError
from ilsim.kernels.softmax import probability, softmax_rows_kernel
from ilsim.ops._common import storage_dtype
from ilsim.ops.exp import (SCALE_MBITS, exp_from_t_reference, exp_t_abs_checked,
                           exp_t_abs_checked_reference, first_index, indexed, require_int_attr,
                           require_order, scale_input, shaped_input, shift_input)
from ilsim.widths import check_width_int, require_attr

OP = "di_softmax"
#: Rows are at most this long, so that an int64 partial sum of uint32 terms cannot wrap.
MAX_ROW_LENGTH = (1 << 31) - 1


# ---------------------------------------------------------------- attributes

def clip_fraction(clip) -> Fraction | None:
    """The clip attribute as an exact positive Fraction (None: no clipping). Floats are refused:
    write Fraction('7.5') or Fraction(15, 2), so the threshold is the same on every machine."""
    if clip is None:
        return None
    exact = isinstance(clip, (int, np.integer, Fraction)) and not isinstance(clip, (bool, np.bool_))
    require_attr(exact, OP, f"clip must be a positive int or fractions.Fraction (exact), got "
                            f"{type(clip).__name__} {clip!r}; write e.g. Fraction('7.5')")
    c = Fraction(int(clip)) if isinstance(clip, np.integer) else Fraction(clip)
    require_attr(c > 0, OP, f"clip must be > 0, got {clip}")
    return c


def clip_int_reference(clip: Fraction | None, m: int, k: int) -> int | None:
    """c_int = round_half_up(c * 2^k / m) on Python ints: the clip in the row's input units."""
    if clip is None:
        return None
    return div_round_reference(clip.numerator << k, clip.denominator * m)


def _clip_int_bounded(clip: Fraction | None, m: np.ndarray, k: np.ndarray, cap: int) -> np.ndarray:
    """Vectorised min(c_int, cap) per row (cap = 2^in_bits: a clamp below -cap never acts).
    Exact: int64 where c_num * 2^k and c_den * m stay below 2^62, Python ints elsewhere."""
    out = np.full(m.shape, cap, dtype=np.int64)
    if clip is None:
        return out
    num, den = clip.numerator, clip.denominator
    fits = (k <= 61 - num.bit_length()) & (den.bit_length() + SCALE_MBITS <= 61)  # both operands < 2^62
    if fits.any():
        out[fits] = np.minimum(div_round(np.left_shift(np.int64(num), k[fits]), den * m[fits]), cap)
    rest = ~fits
    if rest.any():
        pairs = np.stack([m[rest], k[rest]], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        values = [min(clip_int_reference(clip, int(mm), int(kk)), cap) for mm, kk in uniq.tolist()]
        out[rest] = np.array(values, dtype=np.int64)[inverse.reshape(-1)]
    return out


def check_attrs(in_bits, clip, out_bits, out_frac_bits, order, sum_bits) -> Fraction | None:
    """DI-ClippedSoftmax's attributes, checked as the reference checks them (InputError naming the
    operator); the graph checks every node with this at load. Returns the clip as a Fraction."""
    require_int_attr(in_bits, 2, 32, OP, "in_bits")
    require_int_attr(out_bits, 2, 16, OP, "out_bits")
    require_int_attr(out_frac_bits, 1, out_bits, OP, "out_frac_bits")
    require_int_attr(sum_bits, 2, 32, OP, "sum_bits")
    require_order(order, OP)
    return clip_fraction(clip)


def _inputs(x, m, k, in_bits, clip, out_bits, out_frac_bits, mask, order, sum_bits):
    """Validate; returns x, keep (bool, x's shape), m, k (row shape) and the clip Fraction."""
    clip = check_attrs(in_bits, clip, out_bits, out_frac_bits, order, sum_bits)
    x = shaped_input(x, OP, "x", bits=in_bits, signed=True)
    require_attr(x.ndim >= 1, OP, "x must have at least one dimension (the softmax axis), got a scalar")
    require_attr(x.shape[-1] <= MAX_ROW_LENGTH, OP, f"rows longer than {MAX_ROW_LENGTH} are not supported")
    keep = _keep_mask(mask, x.shape)
    rows_shape = x.shape[:-1]
    m, k = scale_input(m, OP, "m"), shift_input(k, OP, "k")
    try:
        m, k = np.broadcast_to(m, rows_shape), np.broadcast_to(k, rows_shape)
    except ValueError:
        raise InputError(f"{OP}: the row scale m {m.shape} / k {k.shape} must be a scalar or have the "
                         f"row shape x.shape[:-1] = {rows_shape}") from None
    return x, keep, m, k, clip


def _keep_mask(mask, shape) -> np.ndarray:
    """The keep mask broadcast to x's shape (all True when mask is None); every row keeps one."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(mask)
    require_attr(arr.dtype == np.bool_, OP, f"mask must be a bool array (True = keep), got dtype {arr.dtype}")
    try:
        keep = np.broadcast_to(arr, shape)
    except ValueError:
        raise InputError(f"{OP}: mask of shape {arr.shape} does not broadcast to x's shape {shape}") from None
    empty = ~keep.any(axis=-1)
    if empty.any():
        idx = first_index(empty)
        row = f"row {','.join(map(str, idx))}" if idx else "the row"
        raise InputError(f"{OP}: mask keeps no element of {row}; a softmax row needs at least one kept element")
    return keep


# ---------------------------------------------------------------- DI-ClippedSoftmax


def di_softmax_reference(x, m, k, *, in_bits: int = 16, clip=15, out_bits: int = 8, out_frac_bits: int = 8,
                         mask=None, order: int = 1, sum_bits: int = 32):
    """Scalar reference of the module contract: per-row constants first, then one loop per row."""
    x, keep, m, k, clip = _inputs(x, m, k, in_bits, clip, out_bits, out_frac_bits, mask, order, sum_bits)
    rows_shape, n_cols = x.shape[:-1], x.shape[-1]
    row_index = list(np.ndindex(*rows_shape))
    t_abs = [exp_t_abs_checked_reference(int(m[i]), int(k[i]), sum_bits, order, OP, indexed("t_abs", i))
             for i in row_index]
    c_int = [clip_int_reference(clip, int(m[i]), int(k[i])) for i in row_index]
    p_max = (1 << out_bits) - 1
    x_rows, keep_rows = x.reshape(-1, n_cols).tolist(), keep.reshape(-1, n_cols).tolist()
    p_rows = []
    for r, i in enumerate(row_index):
        kept = [j for j in range(n_cols) if keep_rows[r][j]]
        row_max = max(x_rows[r][j] for j in kept)
        e = {}
        for j in kept:
            d = x_rows[r][j] - row_max
            if c_int[r] is not None:
                d = max(d, -c_int[r])
            e[j] = exp_from_t_reference(d, t_abs[r], order)
        total = check_width_int(sum(e.values()), sum_bits, False, OP, indexed("S", i))
        p_rows.append([probability(e[j], total, out_frac_bits, p_max) if j in e else 0 for j in range(n_cols)])
    p = np.array(p_rows, dtype=np.int64).reshape(x.shape)
    return p.astype(storage_dtype(out_bits, False))


def di_softmax(x, m, k, *, in_bits: int = 16, clip=15, out_bits: int = 8, out_frac_bits: int = 8,
               mask=None, order: int = 1, sum_bits: int = 32):
    """Fast path of the module contract: per-row constants vectorised, one parallel Numba row loop."""
    x, keep, m, k, clip = _inputs(x, m, k, in_bits, clip, out_bits, out_frac_bits, mask, order, sum_bits)
    rows_shape, n_cols = x.shape[:-1], x.shape[-1]
    p = softmax_rows(x.reshape(-1, n_cols), np.ascontiguousarray(keep).reshape(-1, n_cols), m.reshape(-1),
                     k.reshape(-1), clip=clip, in_bits=in_bits, out_bits=out_bits, out_frac_bits=out_frac_bits,
                     order=order, sum_bits=sum_bits, rows_shape=rows_shape)
    return p.reshape(x.shape)


def softmax_rows(x2, keep2, m, k, *, clip: Fraction | None, in_bits: int, out_bits: int, out_frac_bits: int,
                 order: int, sum_bits: int, rows_shape: tuple | None = None) -> np.ndarray:
    """di_softmax on validated inputs: x2 [rows, N] (any integer dtype, within in_bits), keep2 bool
    [rows, N] keeping one element per row at least, m, k [rows] int64 in range, clip a Fraction or
    None. Errors name rows by their index in ``rows_shape`` (default: (rows,))."""
    rows_shape = (x2.shape[0],) if rows_shape is None else rows_shape
    t_abs = exp_t_abs_checked(m.reshape(rows_shape), k.reshape(rows_shape), sum_bits, order, OP, "t_abs")
    neg_clip = -_clip_int_bounded(clip, m, k, 1 << in_bits)
    p = np.empty(x2.shape, dtype=np.int64)
    sums = np.empty(x2.shape[0], dtype=np.int64)
    softmax_rows_kernel(x2, keep2, t_abs.reshape(-1), neg_clip, order, out_frac_bits, (1 << out_bits) - 1, p, sums)
    sums = sums.reshape(rows_shape)
    over = sums > (1 << sum_bits) - 1
    if over.any():
        i = first_index(over)
        check_width_int(int(sums[i]), sum_bits, False, OP, indexed("S", i))
    return p.astype(storage_dtype(out_bits, False))


def di_softmax_float(x, m, k, *, in_bits: int = 16, clip=15, out_bits: int = 8, out_frac_bits: int = 8,
                     mask=None, order: int = 1, sum_bits: int = 32) -> np.ndarray:
    """The float meaning (tests only): softmax over kept elements of max(v - max v, -clip),
    v = x * m / 2^k per row; masked elements 0. Probabilities (p * 2^-F approximates them)."""
    x = np.asarray(x, dtype=np.float64)
    scale = np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64))
    v = x * np.asarray(scale)[..., None] if np.ndim(scale) else x * scale
    keep = np.ones(x.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask), x.shape)
    v_max = np.max(np.where(keep, v, -np.inf), axis=-1, keepdims=True)
    d = v - v_max
    if clip is not None:
        d = np.maximum(d, -float(Fraction(clip)))
    e = np.where(keep, np.exp(np.where(keep, d, 0.0)), 0.0)
    return e / e.sum(axis=-1, keepdims=True)
