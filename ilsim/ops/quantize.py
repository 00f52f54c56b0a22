"""Dynamic per-token (per-row) quantization of an integer tensor: the step after every DI-MatMul.

Contract (docs/spec/quantize.md). Input: an integer tensor x[..., N] of declared width
``in_bits`` (signed) whose row r has the real scale s_r = m_r / 2^k_r. Output, per row:
n-bit integers q, a zero point zp and a new dyadic scale (m', k') with
    real value of x[r, j]  ~=  m'_r / 2^k'_r * (q[r, j] - zp_r).

Asymmetric (default), unsigned n-bit output, d = 2^n - 1:
    lo = min(0, min_j x_j),  hi = max(0, max_j x_j),  R = hi - lo      (the range holds 0)
    zp  = round(-lo * d / R)                                          in [0, d]
    q_j = clamp(round(x_j * d / R) + zp, 0, d)                        (x_j = 0 maps to zp exactly)
Symmetric, signed n-bit output, d = 2^(n-1) - 1:
    R = max_j |x_j|,  zp = 0,  q_j = round(x_j * d / R)               in [-d, d], no clamp needed
Data rounding: the ``rounding`` attribute (default half up), once per element.
Scale: m' / 2^k' = round(m_r * R * 2^t / d) / 2^(k_r + t) with t the largest integer that keeps
m' < 2^mbits (so m' >= 2^(mbits-1)), rounded once, half up, computed on Python ints. k' must land in [0, 63]
(a smaller t is used for tiny scales; a k' below 0 is a WidthError).
A row with R == 0 (all zeros) has no scale: ``zero_rows="error"`` raises ZeroRangeError naming
the row; ``zero_rows="zero"`` emits q = zp = 0 with scale m' = 0, k' = 0.
Widths: in_bits + n <= 62 so that x * d is exact in int64; checked.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.arith.jit import mode_code
from ilsim.arith.rounding import DEFAULT_ROUNDING, Rounding, div_round_reference, op_rounding
from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.kernels.rowquant import ROW_PYTHON, ROW_ZERO, run_quantize_rows
from ilsim.ops._common import reshape_rows, row_scale_arrays, storage_dtype
from ilsim.widths import int_input, require_attr, require_bool_attrs, require_int_attrs

OP = "quantize_rows"
ZERO_ROW_POLICIES = ("error", "zero")


def require_zero_rows(op: str, zero_rows: str) -> None:
    """InputError naming ``op`` unless ``zero_rows`` is one of ZERO_ROW_POLICIES."""
    require_attr(zero_rows in ZERO_ROW_POLICIES, op,
                 f"zero_rows must be one of {ZERO_ROW_POLICIES}, got {zero_rows!r}")


class RowQuant(NamedTuple):
    """A per-row quantized tensor: real[r, j] = m[r] / 2^k[r] * (q[r, j] - zp[r])."""

    q: np.ndarray
    zp: np.ndarray
    m: np.ndarray
    k: np.ndarray


def output_levels(bits: int, symmetric: bool) -> int:
    """d: the largest output magnitude, 2^n - 1 (asymmetric) or 2^(n-1) - 1 (symmetric)."""
    return (1 << (bits - 1)) - 1 if symmetric else (1 << bits) - 1


def row_output_scale(m_in: int, k_in: int, value_range: int, levels: int, mbits: int,
                     op: str = OP, row: str = "") -> tuple[int, int]:
    """(m', k') = round(m_in * R * 2^t / d) / 2^(k_in + t), normalised to mbits bits, one rounding.

    Python ints throughout. t is the largest integer with m' < 2^mbits (then m' >= 2^(mbits-1));
    if that makes k' = k_in + t exceed 63, t = 63 - k_in instead (m' then has fewer bits).
    A k' below 0 would need a scale >= 2^mbits: WidthError.
    """
    num = m_in * value_range
    if num == 0:
        return 0, 0
    hi_m = 1 << mbits

    def rounded(t: int) -> int:
        """round_half_up(num * 2^t / levels) = floor((2 num 2^t + levels) / (2 levels)), exactly."""
        if t >= 0:
            return ((num << (t + 1)) + levels) // (levels << 1)
        divisor = levels << -t
        return ((num << 1) + divisor) // (divisor << 1)

    t = mbits - 1 - (num.bit_length() - levels.bit_length())
    while rounded(t) >= hi_m:
        t -= 1
    while rounded(t + 1) < hi_m:
        t += 1
    if k_in + t > MAX_SHIFT:
        t = MAX_SHIFT - k_in
    if k_in + t < 0:
        raise WidthError(f"{op}: output scale of row {row} is >= 2^{mbits} (k' would be {k_in + t})")
    m_out = rounded(t)
    if m_out == 0:
        raise WidthError(f"{op}: output scale of row {row} is below 2^-{MAX_SHIFT + 1} and rounds to 0")
    return m_out, k_in + t


def check_attrs(bits: int, symmetric: bool, in_bits: int, mbits: int, zero_rows: str):
    """InputError naming the operator unless every attribute has its type and range."""
    require_int_attrs(OP, bits=bits, in_bits=in_bits, mbits=mbits)
    require_bool_attrs(OP, symmetric=symmetric)
    require_attr(2 <= bits <= 16, OP, f"bits must be in [2, 16], got {bits}")
    require_attr(2 <= in_bits and in_bits + bits <= 62, OP,
                 f"in_bits must be >= 2 with in_bits + bits <= 62, got in_bits={in_bits}, bits={bits}")
    require_attr(2 <= mbits <= 30, OP, f"mbits must be in [2, 30], got {mbits}")
    require_zero_rows(OP, zero_rows)


def _inputs(x, m_in, k_in, bits, symmetric, in_bits, mbits, zero_rows, tensor):
    check_attrs(bits, symmetric, in_bits, mbits, zero_rows)
    x = int_input(x, OP, tensor, bits=in_bits, signed=True)
    if x.ndim < 1:
        raise InputError(f"{OP}: {tensor} must have at least one dimension, got a scalar")
    m_in, k_in = row_scale_arrays(m_in, k_in, x.shape[:-1], OP, f"{tensor} scale", mbits=mbits)
    return x, m_in, k_in


def quantize_rows_reference(x, m_in, k_in, *, bits: int, symmetric: bool = False, in_bits: int = 48,
                            mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                            zero_rows: str = "error", tensor: str = "x") -> RowQuant:
    """Scalar reference of the module contract: one Python-int loop per row."""
    mode = op_rounding(OP, rounding)
    x, m_in, k_in = _inputs(x, m_in, k_in, bits, symmetric, in_bits, mbits, zero_rows, tensor)
    levels = output_levels(bits, symmetric)
    rows = x.reshape(-1, x.shape[-1]).tolist()
    m_rows, k_rows = m_in.reshape(-1).tolist(), k_in.reshape(-1).tolist()
    # every row's range first, so a zero row is reported before any scale error (as the fast path)
    ranges = []
    for r, row in enumerate(rows):
        lo = 0 if symmetric else min(0, min(row))
        value_range = max(abs(v) for v in row) if symmetric else max(0, max(row)) - lo
        if value_range == 0 and zero_rows == "error":
            raise ZeroRangeError(f"{OP}: row {r} of {tensor} is all zeros: a zero range has no scale "
                                 f"(pass zero_rows='zero' to quantize it to zeros)")
        ranges.append((lo, value_range))
    q_out, zp_out, m_out, k_out = [], [], [], []
    for r, row in enumerate(rows):
        lo, value_range = ranges[r]
        if value_range == 0:
            q_out.append([0] * len(row)), zp_out.append(0), m_out.append(0), k_out.append(0)
            continue
        zp = 0 if symmetric else div_round_reference(-lo * levels, value_range)
        q_row = []
        for v in row:
            q = div_round_reference(v * levels, value_range, mode) + zp
            if not symmetric:
                q = min(max(q, 0), levels)
            q_row.append(q)
        m_r, k_r = row_output_scale(m_rows[r], k_rows[r], value_range, levels, mbits, OP, str(r))
        q_out.append(q_row), zp_out.append(zp), m_out.append(m_r), k_out.append(k_r)
    return _pack(q_out, zp_out, m_out, k_out, x.shape, bits, symmetric)


def _pack(q, zp, m, k, shape, bits, symmetric) -> RowQuant:
    rows_shape = shape[:-1]
    return RowQuant(
        q=np.array(q, dtype=np.int64).reshape(shape).astype(storage_dtype(bits, symmetric)),
        zp=np.array(zp, dtype=np.int64).reshape(rows_shape),
        m=np.array(m, dtype=np.int64).reshape(rows_shape),
        k=np.array(k, dtype=np.int64).reshape(rows_shape),
    )


def quantize_rows(x, m_in, k_in, *, bits: int, symmetric: bool = False, in_bits: int = 48,
                  mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                  zero_rows: str = "error", tensor: str = "x") -> RowQuant:
    """Fast path of the module contract: the Numba row kernel (ilsim.kernels.rowquant); rows
    whose scale needs more than int64 (or raises) are finished by :func:`row_output_scale`."""
    mode = op_rounding(OP, rounding)
    x, m_in, k_in = _inputs(x, m_in, k_in, bits, symmetric, in_bits, mbits, zero_rows, tensor)
    flat = x.reshape(-1, x.shape[-1])
    return reshape_rows(quantize_rows_2d(flat, m_in.reshape(-1), k_in.reshape(-1), bits=bits, symmetric=symmetric,
                                       mbits=mbits, mode=mode, zero_rows=zero_rows, tensor=tensor), x.shape)


def quantize_rows_2d(flat: np.ndarray, m_in: np.ndarray, k_in: np.ndarray, *, bits: int, symmetric: bool,
                     mbits: int, mode: Rounding, zero_rows: str, tensor: str, op: str = OP) -> RowQuant:
    """quantize_rows on validated inputs: flat [rows, N] of any integer dtype within in_bits
    (in_bits + bits <= 62), m_in, k_in [rows] in range. Used by operators that have checked
    their own inputs; errors name ``op`` and ``tensor`` like the public function's."""
    levels = output_levels(bits, symmetric)
    q, zp, m_out, k_out, status = run_quantize_rows(flat, m_in, k_in, levels, symmetric, mode_code(mode),
                                                    mbits, storage_dtype(bits, symmetric))
    if status.any():
        zero = status == ROW_ZERO
        if zero.any() and zero_rows == "error":
            r = int(np.argmax(zero))
            raise ZeroRangeError(f"{op}: row {r} of {tensor} is all zeros: a zero range has no scale "
                                 f"(pass zero_rows='zero' to quantize it to zeros)")
        for r in np.flatnonzero(status == ROW_PYTHON).tolist():
            value_range = int(m_out[r])
            m_out[r], k_out[r] = row_output_scale(int(m_in[r]), int(k_in[r]), value_range, levels, mbits, op, str(r))
    return RowQuant(q, zp, m_out, k_out)

