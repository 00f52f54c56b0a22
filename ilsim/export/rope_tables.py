"""RoPE's cos/sin tables, made exactly at export (docs/spec/rope.md, "Tables").

For position p in [0, P) and pair i in [0, D/2),
    cos[p, i] = round_half_up(cos(p * theta^(-2i/D)) * 2^F),  sin[p, i] likewise,
in [-2^F, 2^F] (int{F+2} storage). They are computed without libm, so every platform gets the
same integers: the frequencies and their cos/sin with the ``decimal`` module (exp, ln and a
Taylor series after reduction modulo 2*pi, at 60 digits), then the angle-addition recurrence on
128-bit fixed-point Python ints with a proven error bound, and every rounding decision is
certified against that bound (an entry too close to a tie is recomputed directly at 120 digits).
The operator that reads them is ilsim.ops.rope.di_rope.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal, localcontext
from typing import NamedTuple

import numpy as np

from ilsim.errors import IlsimError
from ilsim.ops._common import storage_dtype
from ilsim.widths import is_int, require_attr

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


def rope_float_tables(max_positions: int, head_dim: int, theta: float = 10000.0):
    """float64 cos/sin of p * theta^(-2i/D) with libm (tests only: the comparison for the tables)."""
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.arange(max_positions, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(angles), np.sin(angles)
