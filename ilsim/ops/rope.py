"""Integer rotary position embedding (RoPE) with cos/sin tables made exactly at export.

Contract (docs/spec/rope.md).

Tables (offline, ilsim.export.rope_tables.rope_tables): for position p in [0, P) and pair i in
[0, D/2), cos[p, i] = round_half_up(cos(p * theta^(-2i/D)) * 2^F), sin[p, i] likewise, in
[-2^F, 2^F], made exactly (no libm) at export.

Operator (:func:`di_rope`): x[..., T, D] (one head per trailing [T, D]; rows are tokens) of
declared width ``in_bits`` (``in_signed``), per-row zero point zp (same width) and scale m / 2^k;
positions[T] index table rows. Hugging Face rotate_half pairing (j, j + D/2), exact:
    x' = x - zp                                         int{in_bits + 1}
    y_j       = x'_j * cos[p, j] - x'_{j+D/2} * sin[p, j]    int{in_bits + F + 2}, checked
    y_{j+D/2} = x'_{j+D/2} * cos[p, j] + x'_j * sin[p, j]
    out = quantize_rows(y, m, k + F, bits=out_bits, symmetric=out_symmetric, rounding, zero_rows)
The only rounding is the output quantization (y is exact). k + F must be <= 63.
"""

from __future__ import annotations

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.arith.rounding import DEFAULT_ROUNDING, op_rounding
from ilsim.errors import InputError, WidthError
from ilsim.ops._common import memoized_attrs, require_nonzero_rows, row_scale_arrays
from ilsim.ops.quantize import RowQuant, quantize_rows, quantize_rows_reference, require_zero_rows
from ilsim.widths import (check_width, check_width_int, int_input, require_attr, require_bool_attrs,
                          require_int_attrs, require_shape)

OP = "di_rope"


# --- the operator --------------------------------------------------------------------------------


def y_bits(in_bits: int, table_frac_bits: int) -> int:
    """Declared signed width of y: |x'| < 2^in_bits and |cos|, |sin| <= 2^F, two products summed."""
    return in_bits + table_frac_bits + 2


@memoized_attrs
def check_attrs(in_bits, in_signed, table_frac_bits, out_bits, out_symmetric, mbits, rounding, zero_rows):
    require_int_attrs(OP, in_bits=in_bits, table_frac_bits=table_frac_bits, out_bits=out_bits, mbits=mbits)
    require_bool_attrs(OP, in_signed=in_signed, out_symmetric=out_symmetric)
    require_attr(2 <= in_bits <= 16, OP, f"in_bits must be in [2, 16], got {in_bits}")
    require_attr(0 <= table_frac_bits <= 30, OP, f"table_frac_bits must be in [0, 30], got {table_frac_bits}")
    require_attr(2 <= out_bits <= 16, OP, f"out_bits must be in [2, 16], got {out_bits}")
    require_attr(2 <= mbits <= 30, OP, f"mbits must be in [2, 30], got {mbits}")
    require_attr(y_bits(in_bits, table_frac_bits) + out_bits <= 62, OP,
                 f"in_bits + table_frac_bits + 2 + out_bits must be <= 62, got "
                 f"{y_bits(in_bits, table_frac_bits) + out_bits}")
    require_zero_rows(OP, zero_rows)
    return op_rounding(OP, rounding)


def _inputs(x, zp, m, k, positions, cos, sin, in_bits, in_signed, frac_bits, mbits):
    """Validate every tensor (InputError naming op and tensor)."""
    if np.ndim(x) < 2:
        raise InputError(f"{OP}: x must be [..., T, D] (tokens, head dim), got shape {np.shape(x)}")
    x = int_input(x, OP, "x", bits=in_bits, signed=in_signed)
    t_len, d = x.shape[-2], x.shape[-1]
    require_attr(d % 2 == 0, OP, f"the head dimension D = x.shape[-1] must be even, got {d}")
    rows_shape = x.shape[:-1]
    zp = int_input(zp, OP, "zp", bits=in_bits, signed=in_signed)
    try:
        zp = np.broadcast_to(zp, rows_shape)
    except ValueError:
        raise InputError(f"{OP}: zp shape {zp.shape} does not broadcast to the row shape "
                         f"{rows_shape}") from None
    m, k = row_scale_arrays(m, k, rows_shape, OP, "x", mbits=mbits)
    if int(k.max()) > MAX_SHIFT - frac_bits:
        idx = tuple(int(i) for i in np.argwhere(k > MAX_SHIFT - frac_bits)[0])
        raise InputError(f"{OP}: x scale k[{','.join(map(str, idx))}] = {int(k[idx])}: k + table_frac_bits "
                         f"must be <= 63 (the output shift), so k <= {MAX_SHIFT - frac_bits}")
    positions = int_input(positions, OP, "positions", ndim=1)
    require_shape(positions, (t_len,), OP, "positions")
    cos, sin = check_rope_tables(cos, sin, frac_bits, d)
    bad = (positions < 0) | (positions >= cos.shape[0])
    if bad.any():
        t = int(np.argmax(bad))
        raise InputError(f"{OP}: positions[{t}] = {int(positions[t])} is outside the table's "
                         f"[0, {cos.shape[0]}) positions")
    return x, zp, m, k, positions, cos, sin


def check_rope_tables(cos, sin, frac_bits: int, d: int):
    """Validate the tables (InputError naming op and table): int{F+2} [P, D/2] with every entry in
    [-2^F, 2^F], sin of cos's shape. Returns them as int64 arrays."""
    tables = []
    for name, table in (("cos", cos), ("sin", sin)):
        table = int_input(table, OP, name, bits=frac_bits + 2, signed=True, ndim=2)
        require_shape(table, (table.shape[0], d // 2), OP, name)
        over = np.abs(table) > (1 << frac_bits)
        if over.any():
            idx = tuple(int(i) for i in np.argwhere(over)[0])
            raise InputError(f"{OP}: {name}[{idx[0]},{idx[1]}] = {int(table[idx])} is outside "
                             f"[-2^F, 2^F] for table_frac_bits F = {frac_bits}")
        tables.append(table)
    require_shape(tables[1], tables[0].shape, OP, "sin")
    return tables[0], tables[1]


def _out(y, m, k, attrs, reference: bool) -> RowQuant:
    in_bits, frac_bits, out_bits, out_symmetric, mbits, mode, zero_rows = attrs
    quantize = quantize_rows_reference if reference else quantize_rows
    if zero_rows == "error":
        require_nonzero_rows(y.reshape(-1, y.shape[-1]), OP, "y")
    try:
        return quantize(y, m, k + frac_bits, bits=out_bits, symmetric=out_symmetric,
                        in_bits=y_bits(in_bits, frac_bits), mbits=mbits, rounding=mode, zero_rows=zero_rows,
                        tensor=f"{OP}.y")
    except WidthError as err:  # an output scale outside [2^-64, 2^mbits): name this operator
        raise WidthError(f"{OP}: quantizing y: {err}") from None


def di_rope_reference(x, zp, m, k, positions, cos, sin, *, in_bits=8, in_signed=False, table_frac_bits=14,
                      out_bits=8, out_symmetric=False, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                      zero_rows="zero") -> RowQuant:
    """Scalar reference of the module contract: per row, exact rotate_half products on Python ints."""
    mode = check_attrs(in_bits, in_signed, table_frac_bits, out_bits, out_symmetric, mbits, rounding,
                        zero_rows)
    x, zp, m, k, positions, cos, sin = _inputs(x, zp, m, k, positions, cos, sin, in_bits, in_signed,
                                               table_frac_bits, mbits)
    t_len, d = x.shape[-2], x.shape[-1]
    half, width = d // 2, y_bits(in_bits, table_frac_bits)
    pos, cos_rows, sin_rows = positions.tolist(), cos.tolist(), sin.tolist()
    y = []
    for r, (row, z) in enumerate(zip(x.reshape(-1, d).tolist(), zp.reshape(-1).tolist())):
        p = pos[r % t_len]  # rows are [..., T] flattened: the token index is the last row index
        centred = [v - z for v in row]
        y_row = [0] * d
        for j in range(half):
            c, s = cos_rows[p][j], sin_rows[p][j]
            first, second = centred[j], centred[j + half]
            y_row[j] = check_width_int(first * c - second * s, width, True, OP, f"y[{r},{j}]")
            y_row[j + half] = check_width_int(second * c + first * s, width, True, OP, f"y[{r},{j + half}]")
        y.append(y_row)
    attrs = (in_bits, table_frac_bits, out_bits, out_symmetric, mbits, mode, zero_rows)
    return _out(np.array(y, dtype=np.int64).reshape(x.shape), m, k, attrs, reference=True)


def di_rope(x, zp, m, k, positions, cos, sin, *, in_bits=8, in_signed=False, table_frac_bits=14,
            out_bits=8, out_symmetric=False, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
            zero_rows="zero") -> RowQuant:
    """Integer RoPE of x[..., T, D] (HF rotate_half pairing), exact products, then per-row quantization.

    y = (x - zp) rotated by the table entries of each token's position, exact int{in_bits + F + 2};
    output quantize_rows(y, m, k + F): uint{out_bits} asymmetric or int{out_bits} symmetric.
    """
    mode = check_attrs(in_bits, in_signed, table_frac_bits, out_bits, out_symmetric, mbits, rounding,
                        zero_rows)
    x, zp, m, k, positions, cos, sin = _inputs(x, zp, m, k, positions, cos, sin, in_bits, in_signed,
                                               table_frac_bits, mbits)
    half = x.shape[-1] // 2
    centred = x - zp[..., None]
    first, second = centred[..., :half], centred[..., half:]
    c, s = cos[positions], sin[positions]  # [T, D/2], broadcast over leading head dims
    y = np.concatenate([first * c - second * s, second * c + first * s], axis=-1)
    check_width(y.reshape(-1, x.shape[-1]), y_bits(in_bits, table_frac_bits), True, OP, "y")
    attrs = (in_bits, table_frac_bits, out_bits, out_symmetric, mbits, mode, zero_rows)
    return _out(y, m, k, attrs, reference=False)


def di_rope_float(x, zp, m, k, positions, cos, sin, *, in_bits=8, in_signed=False, table_frac_bits=14,
                  out_bits=8, out_symmetric=False, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                  zero_rows="zero") -> np.ndarray:
    """Float meaning (tests only): rotate_half RoPE of the dequantized x by the tables' real values
    cos / 2^F, sin / 2^F, in float64."""
    x = np.asarray(x, dtype=np.float64)
    rows = x.shape[:-1]
    scale = np.broadcast_to(np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64)), rows)
    real = (x - np.broadcast_to(np.asarray(zp, dtype=np.float64), rows)[..., None]) * scale[..., None]
    pos = np.asarray(positions)
    c = np.asarray(cos, dtype=np.float64)[pos] / 2.0 ** table_frac_bits
    s = np.asarray(sin, dtype=np.float64)[pos] / 2.0 ** table_frac_bits
    half = x.shape[-1] // 2
    first, second = real[..., :half], real[..., half:]
    return np.concatenate([first * c - second * s, second * c + first * s], axis=-1)


__all__ = ["check_rope_tables", "di_rope", "di_rope_float", "di_rope_reference", "y_bits"]
