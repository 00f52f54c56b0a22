"""DI-SiLU and DI-SwiGLU: integer sigmoid-gated activations (paper Algorithm 3), requantized per row.

Contract (docs/spec/swiglu.md). Inputs are per-row quantized tensors (DI-MatMul outputs):
x[..., N] of ``in_bits`` (unsigned unless ``in_signed``) with per-row zero point zp_r (same width)
and scale s_r = m_r / 2^k_r (m uint30 >= 1, k in [0, 63]); rows are x.shape[:-1].
    x'    = x - zp_r                                       signed in_bits + 1, |x'| <= 2^in_bits - 1
Sigmoid of x' at scale s (M = max(x', 0) PER ELEMENT, not the paper's row max):
    |t|   = DI-Exp's constant of s                         uint32 (order 2: < 2^26)
    e1    = DI-Exp(x' - M),  e2 = DI-Exp(-M)               uint32, in [0, |t|]; one of them is |t|
    sigma = div_round(e1 * 2^F, e1 + e2, rounding)         uint F + 1, in [0, 2^F]; F = sig_frac_bits
SiLU:    w = x' * sigma                                    signed in_bits + F + 1, scale s_r * 2^-F
SwiGLU:  w = g' * sigma(g' at s_sig[r, j]) * u'           signed 2 * in_bits + F + 1,
                                                          scale s_g,r * s_u,r * 2^-F
    s_sig = s_g,r without ``gate_div``; with the per-channel FSBR factor gate_div_j = dm_j / 2^dk_j,
    s_sig[r, j] = m_g,r * dm_j / 2^(k_g,r + dk_j) renormalised to a 16-bit m with ONE half-up
    rounding (:func:`sigmoid_scale_reference`).
Output: ilsim.ops.quantize.quantize_rows(w) to ``out_bits`` (asymmetric unless ``out_symmetric``,
data rounding ``rounding``, ``zero_rows`` policy), with the row's output scale computed from the
exact wide scale above by one half-up rounding (ilsim.ops.quantize.row_output_scale, mbits 16).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.arith.rounding import DEFAULT_ROUNDING, as_rounding, mode_code
from ilsim.errors import InputError, WidthError
from ilsim.kernels.rowquant import row_min_max, shifted_differences
from ilsim.kernels.swiglu import (sigmoid, sigmoid_scale, sigmoid_scales_kernel, silu_products, swiglu_gate_div_products,
                                  swiglu_products)
from ilsim.ops.exp import (SCALE_MBITS, exp_t_abs_checked, exp_t_abs_checked_reference, first_index, require_int_attr,
                           require_order, scale_input, shaped_input, shift_input, t_abs_limit)
from ilsim.ops._common import memoized_attrs
from ilsim.ops.quantize import (RowQuant, output_levels, quantize_rows_2d, quantize_rows_reference,
                                require_zero_rows, row_output_scale)
from ilsim.widths import check_width, int_range, require_attr, require_shape, rows_fit

OP_SILU = "di_silu"
OP_SWIGLU = "di_swiglu"
#: The two exponentials of the sigmoid are uint32: |t| <= 2^32 - 1, so e1 * 2^F < 2^62 for F <= 30.
SIGMOID_EXP_BITS = 32
#: Output scale multiplier width (as DI-MatMul's outputs).
OUT_MBITS = DEFAULT_MBITS
#: quantize_rows gets this fixed in-range scale: its q and zp do not depend on the scale, and
#: the row's real output scale is computed here, exactly, from the wide scale (one rounding).
_NEUTRAL_M, _NEUTRAL_K = 1 << (OUT_MBITS - 1), MAX_SHIFT


# ---------------------------------------------------------------- sigmoid
#
# The formulas (sigmoid, sigmoid_scale) are written once, in ilsim.kernels.swiglu: the references
# below call them on Python ints, the kernels inline the same source on int64.

def sigmoid_reference(v: int, t_abs: int, frac_bits: int, order: int, mode=DEFAULT_ROUNDING) -> int:
    """:func:`sigmoid` on Python ints, with a named rounding mode."""
    return sigmoid(int(v), int(t_abs), int(frac_bits), int(order), mode_code(mode))


def sigmoid_scale_reference(m_g: int, k_g: int, div_m: int, div_k: int, op: str, where: str) -> tuple[int, int]:
    """:func:`sigmoid_scale` on Python ints, checked: k < 0 (the scale rounds to >= 2^16) is an
    InputError, m = 0 (scale < 2^-64) a WidthError."""
    m, k = sigmoid_scale(int(m_g), int(k_g), int(div_m), int(div_k))
    product, shift_total = m_g * div_m, k_g + div_k
    if k < 0:
        raise InputError(f"{op}: sigmoid input scale {where} = {product}/2^{shift_total} rounds to 2^16 or more "
                         f"(a negative shift), too large for DI-Exp")
    if m == 0:
        raise WidthError(f"{op}: sigmoid input scale {where} = {product}/2^{shift_total} rounds to 0 "
                         f"with a shift <= {MAX_SHIFT}")
    return m, k


def sigmoid_scales(m_g: np.ndarray, k_g: np.ndarray, div_m: np.ndarray, div_k: np.ndarray, op: str):
    """:func:`sigmoid_scale` for rows x channels (m_g, k_g: [R]; div: [N]), checked: the first
    offending pair (C order) raises :func:`sigmoid_scale_reference`'s error."""
    m = np.empty((m_g.size, div_m.size), dtype=np.int64)
    k = np.empty((m_g.size, div_m.size), dtype=np.int64)
    sigmoid_scales_kernel(m_g, k_g, div_m, div_k, m, k)
    bad = (k < 0) | (m == 0)
    if bad.any():
        r, j = first_index(bad)
        sigmoid_scale_reference(int(m_g[r]), int(k_g[r]), int(div_m[j]), int(div_k[j]), op, f"[{r},{j}]")
        raise AssertionError("unreachable: the reference must raise")  # pragma: no cover
    return m, k


# ---------------------------------------------------------------- validation

@memoized_attrs
def check_attrs(op, in_bits, in_signed, sig_frac_bits, out_bits, out_symmetric, order, zero_rows, rounding,
           operands: int) -> int:
    """Check the attributes; returns the declared width of w (signed)."""
    require_int_attr(in_bits, 2, 16, op, "in_bits")
    require_int_attr(sig_frac_bits, 1, 30, op, "sig_frac_bits")
    require_int_attr(out_bits, 2, 16, op, "out_bits")
    require_attr(isinstance(in_signed, (bool, np.bool_)), op, f"in_signed must be a bool, got {in_signed!r}")
    require_attr(isinstance(out_symmetric, (bool, np.bool_)), op,
                 f"out_symmetric must be a bool, got {out_symmetric!r}")
    require_order(order, op)
    require_zero_rows(op, zero_rows)
    try:
        as_rounding(rounding)
    except InputError as err:
        raise InputError(f"{op}: {err}") from None
    w_bits = operands * in_bits + sig_frac_bits + 1
    require_attr(w_bits + out_bits <= 62, op, f"the product w is int{w_bits}; requantizing it to {out_bits} bits "
                                              f"needs w_bits + out_bits <= 62 (lower sig_frac_bits)")
    return w_bits


class _Operand(NamedTuple):
    """A validated per-row quantized input: values [..., N]; zp, m, k of the row shape."""

    values: np.ndarray
    zp: np.ndarray
    m: np.ndarray
    k: np.ndarray


def _operand(op, name, v, zp, m, k, in_bits, in_signed, shape=None) -> _Operand:
    """One quantized operand: values, per-row zero point, per-row scale (all validated)."""
    if rows_fit(v, zp, m, k, in_bits, in_signed, SCALE_MBITS, MAX_SHIFT, min_m=1) and (shape is None or
                                                                                    v.shape == tuple(shape)):
        return _Operand(*(np.ascontiguousarray(a, dtype=np.int64) for a in (v, zp, m, k)))
    v = shaped_input(v, op, name, bits=in_bits, signed=in_signed)
    require_attr(v.ndim >= 1, op, f"{name} must have at least one dimension, got a scalar")
    if shape is not None:
        require_shape(v, shape, op, name)
    rows_shape = v.shape[:-1]
    zp = shaped_input(zp, op, f"{name}_zp", bits=in_bits, signed=in_signed)
    m, k = scale_input(m, op, f"{name}_m"), shift_input(k, op, f"{name}_k")
    out = []
    for arr, label in ((zp, "zp"), (m, "m"), (k, "k")):
        try:
            out.append(np.ascontiguousarray(np.broadcast_to(arr, rows_shape)))
        except ValueError:
            raise InputError(f"{op}: {name}_{label} of shape {arr.shape} must be a scalar or have the row "
                             f"shape {rows_shape}") from None
    return _Operand(v, *out)


def _gate_div(op, gate_div_m, gate_div_k, n_cols):
    """The optional per-channel FSBR factor (both or neither), broadcast to [N]."""
    if gate_div_m is None and gate_div_k is None:
        return None
    require_attr(gate_div_m is not None and gate_div_k is not None, op,
                 "gate_div_m and gate_div_k must be given together")
    m, k = scale_input(gate_div_m, op, "gate_div_m"), shift_input(gate_div_k, op, "gate_div_k")
    try:
        return (np.ascontiguousarray(np.broadcast_to(m, (n_cols,))),
                np.ascontiguousarray(np.broadcast_to(k, (n_cols,))))
    except ValueError:
        raise InputError(f"{op}: gate_div_m {m.shape} / gate_div_k {k.shape} must be scalars or have the "
                         f"channel shape ({n_cols},)") from None


# ---------------------------------------------------------------- the requantization step

def _value_range(w_row: list, symmetric: bool) -> int:
    """R of quantize_rows: max |w| (symmetric) or max(0, max w) - min(0, min w)."""
    if symmetric:
        return max(abs(v) for v in w_row)
    return max(0, max(w_row)) - min(0, min(w_row))


def _requantize(op, w, w_bits, wide_m, wide_k, out_bits, out_symmetric, rounding, zero_rows, reference):
    """quantize_rows(w) for q and zp; the output scale from the exact wide scale (wide_m / 2^wide_k,
    Python ints per row, possibly wider than quantize_rows accepts), one half-up rounding."""
    w_rows = w.reshape(-1, w.shape[-1])  # 2-D: quantize_rows wants one scale entry per row
    neutral_m = np.full(w_rows.shape[0], _NEUTRAL_M, dtype=np.int64)
    neutral_k = np.full(w_rows.shape[0], _NEUTRAL_K, dtype=np.int64)
    if reference:
        check_width(w, w_bits, True, op, "w")
        rq = quantize_rows_reference(w_rows, neutral_m, neutral_k, bits=out_bits, symmetric=out_symmetric,
                                     in_bits=w_bits, rounding=rounding, zero_rows=zero_rows,
                                     tensor=f"{op} product w")
        ranges = [_value_range(row, out_symmetric) for row in w_rows.tolist()]
    else:  # one pass for the row extremes: the width check, then the row ranges
        lo, hi = np.empty(w_rows.shape[0], dtype=np.int64), np.empty(w_rows.shape[0], dtype=np.int64)
        row_min_max(w_rows, lo, hi)
        w_lo, w_hi = int_range(w_bits, True)
        if int(lo.min()) < w_lo or int(hi.max()) > w_hi:
            check_width(w, w_bits, True, op, "w")
        # w is within w_bits and w_bits + out_bits <= 62 (checked): quantize_rows' checks hold
        rq = quantize_rows_2d(w_rows, neutral_m, neutral_k, bits=out_bits, symmetric=bool(out_symmetric),
                              mbits=DEFAULT_MBITS, mode=as_rounding(rounding), zero_rows=zero_rows,
                              tensor=f"{op} product w")
        ranges = (np.maximum(np.abs(lo), np.abs(hi)) if out_symmetric
                  else np.maximum(hi, 0) - np.minimum(lo, 0)).tolist()
    levels = output_levels(out_bits, out_symmetric)
    scales = [row_output_scale(m_r, k_r, ranges[r], levels, OUT_MBITS, op, str(r))
              for r, (m_r, k_r) in enumerate(zip(wide_m, wide_k))]
    rows_shape = w.shape[:-1]
    m_out = np.array([s[0] for s in scales], dtype=np.int64).reshape(rows_shape)
    k_out = np.array([s[1] for s in scales], dtype=np.int64).reshape(rows_shape)
    return RowQuant(rq.q.reshape(w.shape), rq.zp.reshape(rows_shape), m_out, k_out)


# ---------------------------------------------------------------- sigmoid-input constants

def _sigmoid_t_abs_reference(op, m, k, gate_div, order):
    """|t| of the sigmoid input scale, as nested lists: per row ([R][1]) or per row and channel ([R][N])."""
    m_rows, k_rows = m.reshape(-1).tolist(), k.reshape(-1).tolist()
    if gate_div is None:
        return [[exp_t_abs_checked_reference(m_r, k_r, SIGMOID_EXP_BITS, order, op, f"sigmoid t_abs[{r},0]")]
                for r, (m_r, k_r) in enumerate(zip(m_rows, k_rows))]
    div_m, div_k = gate_div[0].tolist(), gate_div[1].tolist()
    scales = [[sigmoid_scale_reference(m_r, k_r, dm, dk, op, f"[{r},{j}]")
               for j, (dm, dk) in enumerate(zip(div_m, div_k))]
              for r, (m_r, k_r) in enumerate(zip(m_rows, k_rows))]
    return [[exp_t_abs_checked_reference(ms, ks, SIGMOID_EXP_BITS, order, op, f"sigmoid t_abs[{r},{j}]")
             for j, (ms, ks) in enumerate(row)] for r, row in enumerate(scales)]


def _sigmoid_t_abs(op, m, k, gate_div, order) -> np.ndarray:
    """Fast twin of :func:`_sigmoid_t_abs_reference`: an int64 array [R, 1] or [R, N]."""
    m_rows, k_rows = m.reshape(-1), k.reshape(-1)
    if gate_div is None:
        m2, k2 = m_rows[:, None], k_rows[:, None]
    else:
        m2, k2 = sigmoid_scales(m_rows, k_rows, gate_div[0], gate_div[1], op)
    return exp_t_abs_checked(m2, k2, SIGMOID_EXP_BITS, order, op, "sigmoid t_abs")


# ---------------------------------------------------------------- DI-SiLU

def _silu_inputs(x, zp, m, k, in_bits, in_signed, sig_frac_bits, out_bits, out_symmetric, order, zero_rows,
                 rounding):
    w_bits = check_attrs(OP_SILU, in_bits, in_signed, sig_frac_bits, out_bits, out_symmetric, order, zero_rows,
                    rounding, operands=1)
    return (w_bits, *_operand(OP_SILU, "x", x, zp, m, k, in_bits, in_signed))


def di_silu_reference(x, zp, m, k, *, in_bits: int = 8, in_signed: bool = False, sig_frac_bits: int = 15,
                      out_bits: int = 8, out_symmetric: bool = False, order: int = 1, zero_rows: str = "error",
                      rounding=DEFAULT_ROUNDING) -> RowQuant:
    """Scalar reference of the SiLU contract: w = x' * sigma(x'), then quantize_rows_reference."""
    w_bits, x, zp, m, k = _silu_inputs(x, zp, m, k, in_bits, in_signed, sig_frac_bits, out_bits, out_symmetric,
                                       order, zero_rows, rounding)
    t_abs = _sigmoid_t_abs_reference(OP_SILU, m, k, None, order)
    zp_rows = zp.reshape(-1).tolist()
    w = []
    for r, row in enumerate(x.reshape(-1, x.shape[-1]).tolist()):
        for v in row:
            x_prime = v - zp_rows[r]
            w.append(x_prime * sigmoid_reference(x_prime, t_abs[r][0], sig_frac_bits, order, rounding))
    w = np.array(w, dtype=np.int64).reshape(x.shape)
    wide_k = [k_r + sig_frac_bits for k_r in k.reshape(-1).tolist()]
    return _requantize(OP_SILU, w, w_bits, m.reshape(-1).tolist(), wide_k, out_bits, out_symmetric, rounding,
                       zero_rows, reference=True)


def di_silu(x, zp, m, k, *, in_bits: int = 8, in_signed: bool = False, sig_frac_bits: int = 15,
            out_bits: int = 8, out_symmetric: bool = False, order: int = 1, zero_rows: str = "error",
            rounding=DEFAULT_ROUNDING) -> RowQuant:
    """Fast path of the SiLU contract: a parallel Numba element loop, then quantize_rows."""
    w_bits, x, zp, m, k = _silu_inputs(x, zp, m, k, in_bits, in_signed, sig_frac_bits, out_bits, out_symmetric,
                                       order, zero_rows, rounding)
    t_abs = _sigmoid_t_abs(OP_SILU, m, k, None, order)
    x2 = x.reshape(-1, x.shape[-1])
    w = np.empty(x2.shape, dtype=np.int64)
    silu_products(x2, zp.reshape(-1), t_abs, sig_frac_bits, order, mode_code(rounding), w)
    wide_k = (k.reshape(-1) + sig_frac_bits).tolist()
    return _requantize(OP_SILU, w.reshape(x.shape), w_bits, m.reshape(-1).tolist(), wide_k, out_bits,
                       out_symmetric, rounding, zero_rows, reference=False)


def _sigmoid_float(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def _row_scale_float(m, k):
    scale = np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64))
    return scale[..., None] if scale.ndim else scale


def _dequant_float(v, zp, m, k):
    zp = np.asarray(zp, dtype=np.float64)
    return (np.asarray(v, dtype=np.float64) - (zp[..., None] if zp.ndim else zp)) * _row_scale_float(m, k)


def di_silu_float(x, zp, m, k, *, in_bits: int = 8, in_signed: bool = False, sig_frac_bits: int = 15,
                  out_bits: int = 8, out_symmetric: bool = False, order: int = 1, zero_rows: str = "error",
                  rounding=DEFAULT_ROUNDING) -> np.ndarray:
    """The float meaning (tests only): silu(v) = v * sigmoid(v), v = (x - zp) * m / 2^k per row."""
    v = _dequant_float(x, zp, m, k)
    return v * _sigmoid_float(v)


# ---------------------------------------------------------------- DI-SwiGLU

def _swiglu_inputs(gate, gate_zp, gate_m, gate_k, up, up_zp, up_m, up_k, gate_div_m, gate_div_k, in_bits,
                   in_signed, sig_frac_bits, out_bits, out_symmetric, order, zero_rows, rounding):
    w_bits = check_attrs(OP_SWIGLU, in_bits, in_signed, sig_frac_bits, out_bits, out_symmetric, order, zero_rows,
                    rounding, operands=2)
    g = _operand(OP_SWIGLU, "gate", gate, gate_zp, gate_m, gate_k, in_bits, in_signed)
    u = _operand(OP_SWIGLU, "up", up, up_zp, up_m, up_k, in_bits, in_signed, shape=g.values.shape)
    return w_bits, g, u, _gate_div(OP_SWIGLU, gate_div_m, gate_div_k, g.values.shape[-1])


def _swiglu_wide_scale(g, u, sig_frac_bits):
    """Per-row wide output scale s_g * s_u * 2^-F as Python ints (m_g * m_u, k_g + k_u + F)."""
    wide_m = [a * b for a, b in zip(g.m.reshape(-1).tolist(), u.m.reshape(-1).tolist())]
    wide_k = [a + b + sig_frac_bits for a, b in zip(g.k.reshape(-1).tolist(), u.k.reshape(-1).tolist())]
    return wide_m, wide_k


def di_swiglu_reference(gate, gate_zp, gate_m, gate_k, up, up_zp, up_m, up_k, *, gate_div_m=None,
                        gate_div_k=None, in_bits: int = 8, in_signed: bool = False, sig_frac_bits: int = 15,
                        out_bits: int = 8, out_symmetric: bool = False, order: int = 1,
                        zero_rows: str = "error", rounding=DEFAULT_ROUNDING) -> RowQuant:
    """Scalar reference of the SwiGLU contract: w = g' * sigma(g') * u', then quantize_rows_reference."""
    w_bits, g, u, gate_div = _swiglu_inputs(gate, gate_zp, gate_m, gate_k, up, up_zp, up_m, up_k, gate_div_m,
                                            gate_div_k, in_bits, in_signed, sig_frac_bits, out_bits,
                                            out_symmetric, order, zero_rows, rounding)
    t_abs = _sigmoid_t_abs_reference(OP_SWIGLU, g.m, g.k, gate_div, order)
    n_cols = g.values.shape[-1]
    g_zp, u_zp = g.zp.reshape(-1).tolist(), u.zp.reshape(-1).tolist()
    g_rows, u_rows = g.values.reshape(-1, n_cols).tolist(), u.values.reshape(-1, n_cols).tolist()
    w = []
    for r in range(len(g_rows)):
        for j in range(n_cols):
            g_prime, u_prime = g_rows[r][j] - g_zp[r], u_rows[r][j] - u_zp[r]
            t = t_abs[r][j] if gate_div is not None else t_abs[r][0]
            w.append(g_prime * sigmoid_reference(g_prime, t, sig_frac_bits, order, rounding) * u_prime)
    w = np.array(w, dtype=np.int64).reshape(g.values.shape)
    wide_m, wide_k = _swiglu_wide_scale(g, u, sig_frac_bits)
    return _requantize(OP_SWIGLU, w, w_bits, wide_m, wide_k, out_bits, out_symmetric, rounding, zero_rows,
                       reference=True)


def _swiglu_products(g, u, gate_div, sig_frac_bits, order, rounding) -> np.ndarray:
    """w = g' * sigma(g') * u' as int64 [rows, N]: fused per-channel constants when gate_div is
    given (the NumPy constants and their errors only if a row needs them), else per-row |t|."""
    n_cols = g.values.shape[-1]
    rows = g.values.size // n_cols
    w = np.empty((rows, n_cols), dtype=np.int64)
    args = (g.values.reshape(-1, n_cols), g.zp.reshape(-1), u.values.reshape(-1, n_cols), u.zp.reshape(-1))
    if gate_div is not None:
        bad = np.empty(rows, dtype=np.int8)
        swiglu_gate_div_products(*args, g.m.reshape(-1), g.k.reshape(-1), gate_div[0], gate_div[1],
                                t_abs_limit(SIGMOID_EXP_BITS, order), sig_frac_bits, order, mode_code(rounding),
                                w, bad)
        if not bad.any():
            return w
    t_abs = _sigmoid_t_abs(OP_SWIGLU, g.m, g.k, gate_div, order)
    swiglu_products(*args, t_abs, sig_frac_bits, order, mode_code(rounding), w)
    return w


def di_swiglu(gate, gate_zp, gate_m, gate_k, up, up_zp, up_m, up_k, *, gate_div_m=None, gate_div_k=None,
              in_bits: int = 8, in_signed: bool = False, sig_frac_bits: int = 15, out_bits: int = 8,
              out_symmetric: bool = False, order: int = 1, zero_rows: str = "error",
              rounding=DEFAULT_ROUNDING) -> RowQuant:
    """Fast path of the SwiGLU contract: a parallel Numba element loop, then quantize_rows."""
    w_bits, g, u, gate_div = _swiglu_inputs(gate, gate_zp, gate_m, gate_k, up, up_zp, up_m, up_k, gate_div_m,
                                            gate_div_k, in_bits, in_signed, sig_frac_bits, out_bits,
                                            out_symmetric, order, zero_rows, rounding)
    w = _swiglu_products(g, u, gate_div, sig_frac_bits, order, rounding)
    wide_m, wide_k = _swiglu_wide_scale(g, u, sig_frac_bits)
    return _requantize(OP_SWIGLU, w.reshape(g.values.shape), w_bits, wide_m, wide_k, out_bits, out_symmetric,
                       rounding, zero_rows, reference=False)


def di_swiglu_float(gate, gate_zp, gate_m, gate_k, up, up_zp, up_m, up_k, *, gate_div_m=None, gate_div_k=None,
                    in_bits: int = 8, in_signed: bool = False, sig_frac_bits: int = 15, out_bits: int = 8,
                    out_symmetric: bool = False, order: int = 1, zero_rows: str = "error",
                    rounding=DEFAULT_ROUNDING) -> np.ndarray:
    """The float meaning (tests only): g * sigmoid(g * gate_div) * u with g, u the real inputs
    (gate_div_j = gate_div_m / 2^gate_div_k, 1 when absent)."""
    g = _dequant_float(gate, gate_zp, gate_m, gate_k)
    u = _dequant_float(up, up_zp, up_m, up_k)
    div = 1.0
    if gate_div_m is not None:
        div = np.asarray(gate_div_m, np.float64) / np.exp2(np.asarray(gate_div_k, np.float64))
    return g * _sigmoid_float(g * div) * u


# ---------------------------------------------------------------- centred operands (the graph's sig_shift)

def centred_operand_reference(q, zp, m, k, shift: int):
    """(v, 0, m', k'): the exact signed differences v = (q - zp) * 2^P of a per-row quantized
    operand with the scale shift k + P (P = ``shift``, 0..24), so every real value is unchanged
    while DI-Exp's |t| grows 2^P-fold. A row with multiplier 0 (all values 0) gets scale 1/1.
    Python ints; |q - zp| < 2^16, so |v| < 2^40. This is how the graph's di_swiglu node feeds the
    operator (docs/spec/graph.md, di_swiglu ``sig_shift``)."""
    q, zp = np.asarray(q), np.asarray(zp)
    zp_rows = np.broadcast_to(zp, q.shape[:-1]).reshape(-1).tolist()
    rows = q.reshape(-1, q.shape[-1]).tolist()
    v = np.array([[(x - zp_rows[r]) << shift for x in row] for r, row in enumerate(rows)],
                 dtype=np.int64).reshape(q.shape)
    return _centred_scale(v, zp, m, k, shift)


def centred_operand(q, zp, m, k, shift: int):
    """Fast twin of :func:`centred_operand_reference`: one Numba pass for (q - zp) << P."""
    v = np.empty(np.shape(q), dtype=np.int64)
    shifted_differences(q, zp, np.int64(shift), v)
    return _centred_scale(v, zp, m, k, shift)


def _centred_scale(v, zp, m, k, shift):
    zero = np.asarray(m) == 0
    return v, np.zeros_like(zp), np.where(zero, 1, m), np.where(zero, 0, np.asarray(k) + shift)
