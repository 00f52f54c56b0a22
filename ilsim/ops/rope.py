"""Integer rotary position embedding (RoPE) with cos/sin tables made exactly at export.

Contract (docs/spec/rope.md).

Tables (offline, :func:`rope_tables`): for position p in [0, P) and pair i in [0, D/2),
    cos[p, i] = round_half_up(cos(p * theta^(-2i/D)) * 2^F),  sin[p, i] likewise,
in [-2^F, 2^F] (int{F+2} storage). They are computed without libm, so every platform gets the
same integers: the frequencies and their cos/sin with the ``decimal`` module (exp, ln and a
Taylor series after reduction modulo 2*pi, at 60 digits), then the angle-addition recurrence on
128-bit fixed-point Python ints with a proven error bound, and every rounding decision is
certified against that bound (an entry too close to a tie is recomputed directly at 120 digits).

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

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from typing import NamedTuple

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.arith.rounding import DEFAULT_ROUNDING, op_rounding
from ilsim.errors import IlsimError, InputError, WidthError
from ilsim.ops._common import memoized_attrs, require_nonzero_rows, row_scale_arrays, storage_dtype
from ilsim.ops.quantize import RowQuant, quantize_rows, quantize_rows_reference, require_zero_rows
from ilsim.widths import (check_width, check_width_int, int_input, is_int, require_attr, require_bool_attrs,
                          require_int_attrs, require_shape)

OP = "di_rope"
TABLE_OP = "rope_tables"

#: Decimal digits for the frequencies and the base cos/sin (errors ~1e-58, far below 2^-FIXED_BITS).
DECIMAL_DIGITS = 60
#: Fraction bits of the fixed-point recurrence.
FIXED_BITS = 128
#: Largest table the recurrence's error bound is stated for.
MAX_POSITIONS = 1 << 24


class RopeTables(NamedTuple):
    """cos and sin [max_positions, head_dim / 2], integers with frac_bits fraction bits."""

    cos: np.ndarray
    sin: np.ndarray


# --- offline tables (exact decimal and integer arithmetic, no libm) ------------------------------

def _decimal_pi(digits: int) -> Decimal:
    """pi to ``digits`` significant digits (the series of the Python decimal documentation)."""
    with localcontext() as ctx:
        ctx.prec = digits + 5
        three = Decimal(3)
        last, t, s, n, na, d, da = 0, three, three, 1, 0, 0, 24
        while s != last:
            last = s
            n, na = n + na, na + 8
            d, da = d + da, da + 32
            t = (t * n) / d
            s += t
        ctx.prec = digits
        return +s


def decimal_cos_sin(angle: Decimal, digits: int = DECIMAL_DIGITS) -> tuple[Decimal, Decimal]:
    """(cos, sin) of a Decimal angle to about ``digits`` digits: reduce modulo 2*pi into [-pi, pi],
    then the Taylor series of both, summed until a term is below 10^-(digits + 5)."""
    with localcontext() as ctx:
        extra = max(0, angle.adjusted()) + 10  # digits lost in the reduction
        ctx.prec = digits + extra
        two_pi = 2 * _decimal_pi(digits + extra)
        reduced = angle - (angle / two_pi).to_integral_value() * two_pi
        ctx.prec = digits + 10
        cos_sum, sin_sum = Decimal(0), Decimal(0)
        term, n = Decimal(1), 0  # term = reduced^n / n!
        tiny = Decimal(10) ** -(digits + 5)
        while True:
            if n % 4 == 0:
                cos_sum += term
            elif n % 4 == 1:
                sin_sum += term
            elif n % 4 == 2:
                cos_sum -= term
            else:
                sin_sum -= term
            n += 1
            term = term * reduced / n
            if n > 4 and abs(term) < tiny:
                break
        ctx.prec = digits
        return +cos_sum, +sin_sum


def inverse_frequency(theta, pair: int, head_dim: int, digits: int = DECIMAL_DIGITS) -> Decimal:
    """theta^(-2*pair/head_dim) = exp(-(2*pair/head_dim) * ln(theta)), correctly rounded exp/ln."""
    with localcontext() as ctx:
        ctx.prec = digits + 10
        exponent = Decimal(-2 * pair) / Decimal(head_dim) * _decimal(theta).ln()
        value = exponent.exp()
        ctx.prec = digits
        return +value


def _decimal(theta) -> Decimal:
    if isinstance(theta, Decimal):
        return theta
    if isinstance(theta, str):
        return Decimal(theta)
    return Decimal(theta)  # int or float: the exact value of the binary number


def _round_decimal_half_up(value: Decimal, frac_bits: int, digits: int) -> int:
    """round_half_up(value * 2^frac_bits) for a Decimal known to ~digits digits; certified."""
    with localcontext() as ctx:
        ctx.prec = digits + 10
        scaled = value * (1 << frac_bits) + Decimal("0.5")
        floor = int(scaled.to_integral_value(rounding=ROUND_FLOOR))
        margin = Decimal(10) ** -(digits - 15)
        if scaled - floor < margin or floor + 1 - scaled < margin:
            raise IlsimError(f"{TABLE_OP}: cannot decide the rounding of {value} * 2^{frac_bits}")
        return floor


def _round_fixed_half_up(fixed: int, frac_bits: int, error: int) -> int | None:
    """round_half_up(fixed / 2^(FIXED_BITS - frac_bits)), or None if the true value (within
    ``error`` units of ``fixed``) could round the other way."""
    drop = FIXED_BITS - frac_bits
    shifted = fixed + (1 << (drop - 1))
    rem = shifted & ((1 << drop) - 1)
    if rem <= error or rem >= (1 << drop) - error:
        return None
    return shifted >> drop


def _to_fixed(value: Decimal) -> int:
    with localcontext() as ctx:
        ctx.prec = DECIMAL_DIGITS + 50
        return int((value * (1 << FIXED_BITS)).to_integral_value(rounding=ROUND_HALF_EVEN))


def _check_table_args(max_positions, head_dim, theta, frac_bits):
    for name, value in dict(max_positions=max_positions, head_dim=head_dim, frac_bits=frac_bits).items():
        require_attr(is_int(value), TABLE_OP,
                     f"{name} must be an int, got {value!r}")
    require_attr(1 <= max_positions <= MAX_POSITIONS, TABLE_OP,
                 f"max_positions must be in [1, 2^24], got {max_positions}")
    require_attr(head_dim >= 2 and head_dim % 2 == 0, TABLE_OP,
                 f"head_dim must be even and >= 2, got {head_dim}")
    require_attr(0 <= frac_bits <= 30, TABLE_OP, f"frac_bits must be in [0, 30], got {frac_bits}")
    ok = isinstance(theta, (int, float, str, Decimal)) and not isinstance(theta, bool)
    if ok:
        try:
            value = _decimal(theta)
            ok = value.is_finite() and value > 0
        except ArithmeticError:
            ok = False
    require_attr(ok, TABLE_OP, f"theta must be a finite number > 0, got {theta!r}")


def rope_tables_direct(max_positions: int, head_dim: int, theta=10000.0, frac_bits: int = 14,
                       digits: int = 2 * DECIMAL_DIGITS) -> RopeTables:
    """The same tables evaluated entry by entry in Decimal (slow; the certified fallback and a
    cross-check of :func:`rope_tables` in tests)."""
    _check_table_args(max_positions, head_dim, theta, frac_bits)
    half = head_dim // 2
    cos_tab = np.zeros((max_positions, half), dtype=np.int64)
    sin_tab = np.zeros((max_positions, half), dtype=np.int64)
    for i in range(half):
        w = inverse_frequency(theta, i, head_dim, digits)
        for p in range(max_positions):
            c, s = _direct_entry(w, p, frac_bits, digits)
            cos_tab[p, i], sin_tab[p, i] = c, s
    return _pack_tables(cos_tab, sin_tab, frac_bits)


def _direct_entry(w: Decimal, p: int, frac_bits: int, digits: int) -> tuple[int, int]:
    with localcontext() as ctx:
        ctx.prec = digits + 10
        angle = w * p
    c, s = decimal_cos_sin(angle, digits)
    return _round_decimal_half_up(c, frac_bits, digits), _round_decimal_half_up(s, frac_bits, digits)


def rope_tables(max_positions: int, head_dim: int, theta=10000.0, frac_bits: int = 14) -> RopeTables:
    """cos/sin [max_positions, head_dim/2] = round_half_up(cos|sin(p * theta^(-2i/head_dim)) * 2^F).

    Offline (export). Identical on every platform: no libm. Per pair i, the base rotation
    (cos w, sin w) is computed in Decimal and fixed to 128 fraction bits; positions follow by the
    integer recurrence (c, s) <- floor((c*Cw - s*Sw) / 2^128), floor((s*Cw + c*Sw) / 2^128). Its
    error after p steps is below 3p + 4 units of 2^-128 (each step adds < 2^-0.5 from the base
    rounding and < 2^0.5 from the floors; the rotation keeps earlier errors' size). Each entry's
    rounding is certified against that bound; an uncertain one is evaluated directly in Decimal.
    """
    _check_table_args(max_positions, head_dim, theta, frac_bits)
    half = head_dim // 2
    cos_tab = np.zeros((max_positions, half), dtype=np.int64)
    sin_tab = np.zeros((max_positions, half), dtype=np.int64)
    for i in range(half):
        w = inverse_frequency(theta, i, head_dim)
        cw, sw = decimal_cos_sin(w)
        fixed_cw, fixed_sw = _to_fixed(cw), _to_fixed(sw)
        c, s = 1 << FIXED_BITS, 0
        cos_col, sin_col = [], []
        for p in range(max_positions):
            error = 3 * p + 4
            c_q = _round_fixed_half_up(c, frac_bits, error)
            s_q = _round_fixed_half_up(s, frac_bits, error)
            if c_q is None or s_q is None:
                c_q, s_q = _direct_entry(inverse_frequency(theta, i, head_dim, 2 * DECIMAL_DIGITS), p,
                                         frac_bits, 2 * DECIMAL_DIGITS)
            cos_col.append(c_q)
            sin_col.append(s_q)
            c, s = (c * fixed_cw - s * fixed_sw) >> FIXED_BITS, (s * fixed_cw + c * fixed_sw) >> FIXED_BITS
        cos_tab[:, i] = cos_col
        sin_tab[:, i] = sin_col
    return _pack_tables(cos_tab, sin_tab, frac_bits)


def _pack_tables(cos_tab, sin_tab, frac_bits) -> RopeTables:
    dtype = storage_dtype(frac_bits + 2, True)
    return RopeTables(cos=cos_tab.astype(dtype), sin=sin_tab.astype(dtype))


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


def rope_float_tables(max_positions: int, head_dim: int, theta: float = 10000.0):
    """float64 cos/sin of p * theta^(-2i/D) with libm (tests only: the comparison for the tables)."""
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.arange(max_positions, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(angles), np.sin(angles)


__all__ = ["RopeTables", "di_rope", "di_rope_float", "di_rope_reference", "decimal_cos_sin",
           "inverse_frequency", "rope_tables", "rope_tables_direct", "rope_float_tables"]
