"""Residual add of two per-row quantized tensors onto the symmetric int16 residual stream.

Contract (docs/spec/residual.md). Inputs a[..., N] (width a_bits, signedness a_signed; the
residual stream) and b[..., N] (width b_bits; a sublayer output), each with a per-row zero point
(same width as its tensor) and a per-row dyadic scale m / 2^k. Per row, on the exact grid 2^-kref:

    A = (a - a_zp) * a_m          int(a_bits + 1 + mbits)     exact
    B = (b - b_zp) * b_m          int(b_bits + 1 + mbits)     exact
    kref = min(a_k, b_k)                                      (the coarser of the two grids)
    A' = rshift_round(A, a_k - kref),  B' = rshift_round(B, b_k - kref)   one shift is 0: the finer
         operand is rounded once, in ``rounding``, onto the grid 2^-kref
    S = A' + B'                   int(max(a_bits, b_bits) + mbits + 2), checked
    out = quantize_rows(S, 1, kref, bits=out_bits, symmetric=True, rounding, zero_rows)

The output is symmetric signed int{out_bits} (zp = 0) with a normalised per-row scale. The grid
2^-kref is 2^mbits-ish finer than either quantization step when m is normalised, so the one
alignment rounding costs at most 1/2 (nearest modes) or 1 (floor/trunc) unit of 2^-kref.
"""

from __future__ import annotations

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS
from ilsim.arith.rounding import DEFAULT_ROUNDING, mode_code, op_rounding
from ilsim.errors import InputError, WidthError
from ilsim.kernels.residual import aligned, aligned_sums
from ilsim.ops._common import memoized_attrs, require_nonzero_rows, reshape_rows, row_scale_arrays_any
from ilsim.ops.quantize import RowQuant, quantize_rows_2d, quantize_rows_reference, require_zero_rows
from ilsim.widths import (check_width, check_width_int, int_input, int_operand, int_range, require_attr,
                          require_bool_attrs, require_int_attrs, rows_fit)

OP = "residual_add"


def sum_bits(a_bits: int, b_bits: int, mbits: int) -> int:
    """Declared signed width of S: |(v - zp) * m| < 2^(bits + mbits), the sum of two one bit more."""
    return max(a_bits, b_bits) + mbits + 2


@memoized_attrs
def check_attrs(a_bits, b_bits, a_signed, b_signed, out_bits, mbits, rounding, zero_rows):
    require_int_attrs(OP, a_bits=a_bits, b_bits=b_bits, out_bits=out_bits, mbits=mbits)
    require_bool_attrs(OP, a_signed=a_signed, b_signed=b_signed)
    require_attr(2 <= a_bits <= 16, OP, f"a_bits must be in [2, 16], got {a_bits}")
    require_attr(2 <= b_bits <= 16, OP, f"b_bits must be in [2, 16], got {b_bits}")
    require_attr(2 <= out_bits <= 16, OP, f"out_bits must be in [2, 16], got {out_bits}")
    require_attr(2 <= mbits <= 30, OP, f"mbits must be in [2, 30], got {mbits}")
    require_attr(sum_bits(a_bits, b_bits, mbits) + out_bits <= 62, OP,
                 f"max(a_bits, b_bits) + mbits + 2 + out_bits must be <= 62, got "
                 f"{sum_bits(a_bits, b_bits, mbits) + out_bits}")
    require_zero_rows(OP, zero_rows)
    return op_rounding(OP, rounding)


def _operand(v, zp, m, k, bits, signed, mbits, name, shape=None):
    """Validate one operand: v int{bits}, zp per row (same width), (m, k) per row; rows flattened."""
    if rows_fit(v, zp, m, k, bits, signed, mbits) and (shape is None or v.shape == tuple(shape)):
        return np.ascontiguousarray(v), *(np.ascontiguousarray(a, dtype=np.int64) for a in (zp, m, k))
    if np.ndim(v) < 1:  # checked first: int_input returns a 0-d input as shape (1,)
        raise InputError(f"{OP}: {name} must have at least one dimension, got a scalar")
    v = int_operand(v, OP, name, bits=bits, signed=signed)
    if shape is not None and v.shape != shape:
        raise InputError(f"{OP}: {name} must have the shape of a, {shape}, got {v.shape}")
    rows_shape = v.shape[:-1]
    zp = int_input(zp, OP, f"{name}_zp", bits=bits, signed=signed)
    try:
        zp = np.broadcast_to(zp, rows_shape or (1,))  # () : one row (int_input makes 0-d arrays 1-d)
    except ValueError:
        raise InputError(f"{OP}: {name}_zp shape {zp.shape} does not broadcast to the row shape "
                         f"{rows_shape}") from None
    m, k = row_scale_arrays_any(m, k, rows_shape, OP, name, mbits=mbits)
    return v.reshape(-1, v.shape[-1]), zp.reshape(-1), m.reshape(-1), k.reshape(-1)


def _inputs(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed, mbits):
    shape = np.shape(a)
    ops_a = _operand(a, a_zp, a_m, a_k, a_bits, a_signed, mbits, "a")
    ops_b = _operand(b, b_zp, b_m, b_k, b_bits, b_signed, mbits, "b", shape=tuple(shape))
    return shape, ops_a, ops_b


def _out(s, shape, kref, out_bits, mbits, s_bits, mode, zero_rows, reference: bool) -> RowQuant:
    """quantize_rows(S, 1, kref, symmetric) on the [rows, N] sums, reshaped to a's shape."""
    s2d = np.asarray(s, dtype=np.int64).reshape(-1, shape[-1])
    if zero_rows == "error":
        require_nonzero_rows(s2d, OP, "S")
    kref = np.asarray(kref, dtype=np.int64).reshape(-1)
    try:
        if reference:
            out = quantize_rows_reference(s2d, 1, kref, bits=out_bits, symmetric=True, in_bits=s_bits,
                                          mbits=mbits, rounding=mode, zero_rows=zero_rows, tensor=f"{OP}.S")
        else:  # S is within s_bits (checked) and kref in [0, 63]: quantize_rows' checks hold
            out = quantize_rows_2d(s2d, np.ones(s2d.shape[0], dtype=np.int64), kref, bits=out_bits,
                                   symmetric=True, mbits=mbits, mode=mode, zero_rows=zero_rows, tensor=f"{OP}.S")
    except WidthError as err:  # an output scale outside [2^-64, 2^mbits): name this operator
        raise WidthError(f"{OP}: quantizing S: {err}") from None
    return reshape_rows(out, tuple(shape))


def residual_add_reference(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits=16, b_bits=8, a_signed=True,
                           b_signed=False, out_bits=16, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                           zero_rows="zero") -> RowQuant:
    """Scalar reference of the module contract on Python ints: one loop per row and element."""
    mode = check_attrs(a_bits, b_bits, a_signed, b_signed, out_bits, mbits, rounding, zero_rows)
    code = mode_code(mode)
    shape, (a2, azp, am, ak), (b2, bzp, bm, bk) = _inputs(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits,
                                                          b_bits, a_signed, b_signed, mbits)
    s_bits = sum_bits(a_bits, b_bits, mbits)
    sums, krefs = [], []
    rows = zip(a2.tolist(), azp.tolist(), am.tolist(), ak.tolist(),
               b2.tolist(), bzp.tolist(), bm.tolist(), bk.tolist())
    for r, (a_row, a_z, a_mr, a_kr, b_row, b_z, b_mr, b_kr) in enumerate(rows):
        kref = min(a_kr, b_kr)
        s_row = []
        for j, (av, bv) in enumerate(zip(a_row, b_row)):
            a_aligned = aligned(av, a_z, a_mr, a_kr - kref, code)
            b_aligned = aligned(bv, b_z, b_mr, b_kr - kref, code)
            s_row.append(check_width_int(a_aligned + b_aligned, s_bits, True, OP, f"S[{r},{j}]"))
        sums.append(s_row)
        krefs.append(kref)
    return _out(sums, shape, krefs, out_bits, mbits, s_bits, mode, zero_rows, reference=True)


def residual_add(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits=16, b_bits=8, a_signed=True,
                 b_signed=False, out_bits=16, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                 zero_rows="zero") -> RowQuant:
    """a + b of two per-row quantized tensors, requantized to symmetric int{out_bits} per row.

    Both operands are aligned onto the coarser grid 2^-min(a_k, b_k) with one rounding shift
    (``rounding``) of the finer one, summed exactly, then quantized (quantize_rows, symmetric).
    """
    mode = check_attrs(a_bits, b_bits, a_signed, b_signed, out_bits, mbits, rounding, zero_rows)
    shape, (a2, azp, am, ak), (b2, bzp, bm, bk) = _inputs(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits,
                                                          b_bits, a_signed, b_signed, mbits)
    s_bits = sum_bits(a_bits, b_bits, mbits)
    kref = np.minimum(ak, bk)
    total = np.empty(a2.shape, dtype=np.int64)
    bad = np.empty(a2.shape[0], dtype=np.int8)
    lo, hi = int_range(s_bits, True)
    aligned_sums(a2, azp, am, ak, b2, bzp, bm, bk, mode_code(mode), np.int64(lo), np.int64(hi), total, bad)
    if bad.any():  # name the first sum outside the width
        check_width(total, s_bits, True, OP, "S")
    return _out(total, shape, kref, out_bits, mbits, s_bits, mode, zero_rows, reference=False)


def residual_add_float(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits=16, b_bits=8, a_signed=True,
                       b_signed=False, out_bits=16, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                       zero_rows="zero") -> np.ndarray:
    """Float meaning (tests only): the sum of the two dequantized tensors, in float64."""
    def real(v, zp, m, k):
        v = np.asarray(v, dtype=np.float64)
        rows = v.shape[:-1]
        scale = np.broadcast_to(np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64)),
                                rows)
        return (v - np.broadcast_to(np.asarray(zp, dtype=np.float64), rows)[..., None]) * scale[..., None]
    return real(a, a_zp, a_m, a_k) + real(b, b_zp, b_m, b_k)
