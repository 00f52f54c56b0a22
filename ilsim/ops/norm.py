"""DI-Norm: integer RMSNorm and LayerNorm with an exact floor square root (I-LLM Algorithm 4, adapted).

Contract (docs/spec/norm.md). Input x[..., D] of declared width ``in_bits`` (signed; the residual
stream is symmetric int16) with the per-row scale s_r = m_r / 2^k_r; gain gamma[D] signed
(mbits + 1) bits with the common shift gamma_k (real gain gamma_j / 2^gamma_k); LayerNorm adds a
bias beta[D] of the same width on the same shift; eps = eps_m / 2^eps_k. With F = rms_frac_bits and
G = out_frac_bits, every step in this order, per row (e_r, S or V, ms, r on Python ints):

    e_r = div_round_half_up(eps_m * 2^(2*k_r + 2F), m_r^2 * 2^eps_k)     eps / s_r^2, 2F frac bits
  RMSNorm:                                   LayerNorm (centring exact):
    v_j = x_j                                  v_j = c_j = D*x_j - sum_i x_i      (scale s_r / D)
    ms = floor((S * 2^(2F) + D*e_r) / D)       ms = floor((V * 2^(2F) + D^2*e_r) / D^2)
         S = sum_j x_j^2                            V = D*S - (sum_i x_i)^2 = sum_j c_j^2 / D
    den = r                                    den = D * r
  r = isqrt(ms)                      floor(2^F * rms(x) in x's units), ms and e_r <= 2^62
  y_j = div_round(v_j * gamma_j * 2^(F+G), den, rounding) [+ beta_j * 2^G]   |num| < 2^62, int{y_bits}
  out = quantize_rows(y, 1, G + gamma_k, bits=out_bits, symmetric=out_symmetric, rounding, zero_rows)

y is real-valued y / 2^(G + gamma_k): the input scale cancels (x / rms(x)) except through eps,
exactly as in float. A row with m_r = 0 is all real zeros and is processed as x_r = 0 (residual_add
emits m = 0 for zero rows). r = 0 happens only for an all-zero (RMS) or constant (LayerNorm) row,
whose numerators are 0: then y_j = 0 [+ beta_j * 2^G]; r = 0 for any other row is a WidthError
(rms_frac_bits too small for D). floor(sqrt(floor(z))) = floor(sqrt(z)), so r is the exact real
2^F * rms rounded down once. Checks run in phases (every row's e_r/ms/r, then every numerator,
then every y) in both paths, so the reference and the fast path raise the same first error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.arith.isqrt import ISQRT_MAX, isqrt_reference
from ilsim.arith.jit import mode_code
from ilsim.arith.rounding import DEFAULT_ROUNDING, Rounding, div_round_reference, op_rounding
from ilsim.errors import InputError, WidthError
from ilsim.kernels.norm import eps_in_row_units, mean_square, normalize_rows, rms_roots
from ilsim.ops._common import memoized_attrs, require_nonzero_rows, reshape_rows, row_scale_arrays_any
from ilsim.ops.quantize import RowQuant, quantize_rows_2d, quantize_rows_reference, require_zero_rows
from ilsim.widths import (check_width, check_width_int, int_input, require_attr, require_bool_attrs,
                          require_int_attrs, require_shape, rows_fit)

OP_RMS = "di_rmsnorm"
OP_LN = "di_layernorm"

#: Default eps = 1e-5 (LLaMA-2/3 rms_norm_eps) as the dyadic 42950 / 2^32 = 1.0000076e-5, which
#: is ``dyadic_from_scale(1e-5)`` (a test holds them equal).
DEFAULT_EPS_M = 42950
DEFAULT_EPS_K = 32
#: eps_m is an unsigned 32-bit attribute.
EPS_M_BITS = 32
#: Numerators v * gamma * 2^(F+G) must stay below 2^62 (the exact range of the int64 division).
NUM_LIMIT = 1 << 62


@dataclass(frozen=True)
class NormAttrs:
    """The validated attributes of one DI-Norm call."""

    op: str
    in_bits: int
    eps_m: int
    eps_k: int
    rms_frac_bits: int
    out_frac_bits: int
    out_bits: int
    out_symmetric: bool
    mbits: int
    y_bits: int
    rounding: Rounding
    zero_rows: str
    gamma_k: int


@memoized_attrs
def check_attrs(op, gamma_k, in_bits, eps_m, eps_k, rms_frac_bits, out_frac_bits, out_bits,
                 out_symmetric, mbits, y_bits, rounding, zero_rows) -> NormAttrs:
    """InputError naming ``op`` for any attribute outside its documented range."""
    require_int_attrs(op, gamma_k=gamma_k, in_bits=in_bits, eps_m=eps_m, eps_k=eps_k, rms_frac_bits=rms_frac_bits,
                      out_frac_bits=out_frac_bits, out_bits=out_bits, mbits=mbits, y_bits=y_bits)
    require_bool_attrs(op, out_symmetric=out_symmetric)
    require_attr(2 <= in_bits <= 16, op, f"in_bits must be in [2, 16], got {in_bits}")
    require_attr(2 <= mbits <= 30, op, f"mbits must be in [2, 30], got {mbits}")
    require_attr(0 <= eps_m < 1 << EPS_M_BITS, op, f"eps_m must be in [0, 2^{EPS_M_BITS}), got {eps_m}")
    require_attr(0 <= eps_k <= MAX_SHIFT, op, f"eps_k must be in [0, {MAX_SHIFT}], got {eps_k}")
    require_attr(0 <= rms_frac_bits <= 31, op, f"rms_frac_bits must be in [0, 31], got {rms_frac_bits}")
    require_attr(0 <= out_frac_bits <= 31, op, f"out_frac_bits must be in [0, 31], got {out_frac_bits}")
    require_attr(2 <= out_bits <= 16, op, f"out_bits must be in [2, 16], got {out_bits}")
    require_attr(8 <= y_bits <= 62 - out_bits, op,
                 f"y_bits must be in [8, 62 - out_bits] = [8, {62 - out_bits}], got {y_bits}")
    require_attr(0 <= gamma_k <= MAX_SHIFT - out_frac_bits, op,
                 f"gamma_k must be in [0, 63 - out_frac_bits] = [0, {MAX_SHIFT - out_frac_bits}] "
                 f"(the output shift G + gamma_k is a scale shift), got {gamma_k}")
    require_zero_rows(op, zero_rows)
    mode = op_rounding(op, rounding)
    return NormAttrs(op, int(in_bits), int(eps_m), int(eps_k), int(rms_frac_bits), int(out_frac_bits),
                     int(out_bits), bool(out_symmetric), int(mbits), int(y_bits), mode, zero_rows,
                     int(gamma_k))


def _inputs(attrs: NormAttrs, x, m, k, gamma, beta):
    """Validate the tensors (InputError naming op and tensor); x comes back as int64 [rows, D]."""
    op = attrs.op
    if isinstance(x, np.ndarray) and x.ndim == 2 and rows_fit(x, np.zeros(x.shape[0], dtype=np.int64), m, k,
                                                               attrs.in_bits, True, attrs.mbits):
        d = x.shape[1]
        gamma = int_input(gamma, op, "gamma", bits=attrs.mbits + 1, signed=True, ndim=1)
        require_shape(gamma, (d,), op, "gamma")
        if beta is not None:
            beta = int_input(beta, op, "beta", bits=attrs.mbits + 1, signed=True, ndim=1)
            require_shape(beta, (d,), op, "beta")
        return (np.ascontiguousarray(x, dtype=np.int64), *(np.ascontiguousarray(a, dtype=np.int64) for a in (m, k)),
                gamma, beta)
    if np.ndim(x) < 1:  # checked first: int_input returns a 0-d input as shape (1,)
        raise InputError(f"{op}: x must have at least one dimension (the hidden size), got a scalar")
    x = int_input(x, op, "x", bits=attrs.in_bits, signed=True)
    d = x.shape[-1]
    gamma = int_input(gamma, op, "gamma", bits=attrs.mbits + 1, signed=True, ndim=1)
    require_shape(gamma, (d,), op, "gamma")
    if beta is not None:
        beta = int_input(beta, op, "beta", bits=attrs.mbits + 1, signed=True, ndim=1)
        require_shape(beta, (d,), op, "beta")
    m_rows, k_rows = row_scale_arrays_any(m, k, x.shape[:-1], op, "x", mbits=attrs.mbits)
    return x.reshape(-1, d), m_rows.reshape(-1), k_rows.reshape(-1), gamma, beta


# --- per-row arithmetic on Python ints, shared by both paths ------------------------------------

def ceil_log2(n: int) -> int:
    """ceil(log2(n)) for n >= 1, on Python ints."""
    return (n - 1).bit_length()


def row_root(op: str, row: int, sum_sq: int, divisor: int, e_r: int, rms_frac_bits: int) -> int:
    """r = isqrt(floor((sum_sq * 2^(2F) + divisor * e_r) / divisor)) with the e_r, ms and r checks.

    ``sum_sq`` is S (RMSNorm, divisor D) or V (LayerNorm, divisor D^2). e_r and ms are declared
    in [0, 2^62] (the isqrt range); r = 0 while sum_sq > 0 is a WidthError (F too small for D).
    """
    if e_r > ISQRT_MAX:
        raise WidthError(f"{op}: e[{row}] = {e_r} (eps in the row's units squared, 2F fraction bits) "
                         f"exceeds 2^62; the row scale is too small for eps at this rms_frac_bits")
    ms = mean_square(sum_sq, divisor, e_r, rms_frac_bits)
    if ms > ISQRT_MAX:
        raise WidthError(f"{op}: ms[{row}] = {ms} exceeds 2^62, the isqrt range; lower rms_frac_bits "
                         f"(now {rms_frac_bits})")
    r = isqrt_reference(ms)
    if r == 0 and sum_sq > 0:
        raise WidthError(f"{op}: r[{row}] = 0 for a row whose deviations are not all zero: "
                         f"rms_frac_bits = {rms_frac_bits} is too small for this row")
    return r


def _numerator_message(op: str, row: int, col: int, value: int) -> str:
    return (f"{op}: num[{row},{col}] = {value} (v * gamma * 2^(F+G)) overflows its declared range "
            f"|num| < 2^62; lower rms_frac_bits + out_frac_bits")


def _sum_sq_width(in_bits: int, d: int) -> int:
    """Unsigned width of S = sum x^2: |x| <= 2^(in_bits-1), so S <= D * 2^(2*in_bits-2)."""
    return 2 * in_bits - 1 + ceil_log2(d)


def _sum_width(in_bits: int, d: int) -> int:
    """Signed width of sum x (and of c = D*x - sum x, one bit more)."""
    return in_bits + ceil_log2(d)


def _var_width(in_bits: int, d: int) -> int:
    """Unsigned width of V = sum c^2 / D <= (D-1)^2 (2^in_bits - 1)^2 < 2^(2 in_bits + 2 ceil log2 D)."""
    return 2 * in_bits + 2 * ceil_log2(d)


def _out(attrs: NormAttrs, y, shape, reference: bool) -> RowQuant:
    """quantize_rows(y, 1, G + gamma_k) on the [rows, D] data, reshaped to x's shape."""
    y2d = np.asarray(y, dtype=np.int64).reshape(-1, shape[-1])
    if attrs.zero_rows == "error":
        require_nonzero_rows(y2d, attrs.op, "y")
    shift = attrs.out_frac_bits + attrs.gamma_k
    try:
        if reference:
            out = quantize_rows_reference(y2d, 1, shift, bits=attrs.out_bits, symmetric=attrs.out_symmetric,
                                          in_bits=attrs.y_bits, mbits=attrs.mbits, rounding=attrs.rounding,
                                          zero_rows=attrs.zero_rows, tensor=f"{attrs.op}.y")
        else:  # y is within y_bits (checked) and the attributes were checked as quantize_rows does
            rows = y2d.shape[0]
            out = quantize_rows_2d(y2d, np.ones(rows, dtype=np.int64), np.full(rows, shift, dtype=np.int64),
                                   bits=attrs.out_bits, symmetric=attrs.out_symmetric, mbits=attrs.mbits,
                                   mode=attrs.rounding, zero_rows=attrs.zero_rows, tensor=f"{attrs.op}.y")
    except WidthError as err:  # an output scale outside [2^-64, 2^mbits): name this operator
        raise WidthError(f"{attrs.op}: quantizing y: {err}") from None
    return reshape_rows(out, tuple(shape))


# --- scalar reference ---------------------------------------------------------------------------

def _normalize_reference(attrs: NormAttrs, v_rows, gamma, beta, dens, den_scale) -> list[list[int]]:
    """y[r][j] = div_round(v * gamma * 2^(F+G), den_scale * r) [+ beta * 2^G], then the y check."""
    op, fg, g_bits = attrs.op, attrs.rms_frac_bits + attrs.out_frac_bits, attrs.out_frac_bits
    nums = []
    for r, row in enumerate(v_rows):  # phase 2: every numerator
        num_row = []
        for j, v in enumerate(row):
            num = (v * gamma[j]) << fg
            if abs(num) >= NUM_LIMIT:
                raise WidthError(_numerator_message(op, r, j, num))
            num_row.append(num)
        nums.append(num_row)
    if any(den_scale * den >= NUM_LIMIT for den in dens):  # only for absurd D
        raise WidthError(f"{op}: den = D * r reaches 2^62")
    bias = [b << g_bits for b in beta] if beta is not None else [0] * len(gamma)
    y = []
    for r, num_row in enumerate(nums):  # phase 3: divide (den = 0 only for all-zero numerators)
        if dens[r] == 0:
            y.append(list(bias))
        else:
            y.append([div_round_reference(num, den_scale * dens[r], attrs.rounding) + bias[j]
                      for j, num in enumerate(num_row)])
    for r, y_row in enumerate(y):
        for j, value in enumerate(y_row):
            check_width_int(value, attrs.y_bits, True, op, f"y[{r},{j}]")
    return y


def _rmsnorm_reference(attrs: NormAttrs, x, m, k, gamma) -> RowQuant:
    shape = np.shape(x)
    x2d, m_rows, k_rows, gamma_arr, _ = _inputs(attrs, x, m, k, gamma, None)
    d, f = x2d.shape[1], attrs.rms_frac_bits
    gamma_list = gamma_arr.tolist()
    x_rows, roots = [], []
    for r, (row, m_r, k_r) in enumerate(zip(x2d.tolist(), m_rows.tolist(), k_rows.tolist())):
        if m_r == 0:
            row = [0] * d  # a zero scale: every real value of the row is 0
        s = check_width_int(sum(v * v for v in row), _sum_sq_width(attrs.in_bits, d), False, attrs.op,
                            f"S[{r}]")
        e_r = eps_in_row_units(attrs.eps_m, attrs.eps_k, m_r, k_r, f)
        roots.append(row_root(attrs.op, r, s, d, e_r, f))
        x_rows.append(row)
    y = _normalize_reference(attrs, x_rows, gamma_list, None, roots, 1)
    return _out(attrs, y, shape, reference=True)


def _layernorm_reference(attrs: NormAttrs, x, m, k, gamma, beta) -> RowQuant:
    shape = np.shape(x)
    x2d, m_rows, k_rows, gamma_arr, beta_arr = _inputs(attrs, x, m, k, gamma, beta)
    d, f, op = x2d.shape[1], attrs.rms_frac_bits, attrs.op
    c_rows, roots = [], []
    for r, (row, m_r, k_r) in enumerate(zip(x2d.tolist(), m_rows.tolist(), k_rows.tolist())):
        if m_r == 0:
            row = [0] * d
        total = check_width_int(sum(row), _sum_width(attrs.in_bits, d), True, op, f"sum[{r}]")
        c_row = [check_width_int(d * v - total, _sum_width(attrs.in_bits, d) + 1, True, op, f"c[{r},{j}]")
                 for j, v in enumerate(row)]
        s = check_width_int(sum(v * v for v in row), _sum_sq_width(attrs.in_bits, d), False, op, f"S[{r}]")
        var = check_width_int(d * s - total * total, _var_width(attrs.in_bits, d), False, op, f"V[{r}]")
        e_r = eps_in_row_units(attrs.eps_m, attrs.eps_k, m_r, k_r, f)
        roots.append(row_root(op, r, var, d * d, e_r, f))
        c_rows.append(c_row)
    y = _normalize_reference(attrs, c_rows, gamma_arr.tolist(), beta_arr.tolist(), roots, d)
    return _out(attrs, y, shape, reference=True)


# --- fast path ----------------------------------------------------------------------------------


def _check_numerators(op: str, v2d: np.ndarray, gamma: np.ndarray, shift: int) -> None:
    """WidthError at the first (row-major) |v * gamma * 2^shift| >= 2^62, found without forming it.

    |v| * |g| << shift < 2^62  <=>  |v| * |g| <= L = (2^62 - 1) >> shift  <=>  |v| <= L // |g|.
    """
    limit = (NUM_LIMIT - 1) >> shift
    abs_g = np.abs(gamma)
    over = (abs_g != 0) & (np.abs(v2d) > limit // np.maximum(abs_g, 1))
    if over.any():
        r, j = (int(i) for i in np.argwhere(over)[0])
        raise WidthError(_numerator_message(op, r, j, (int(v2d[r, j]) * int(gamma[j])) << shift))


def _roots(op: str, sum_sq: list[int], divisor: int, e_rows: list[int], f: int) -> np.ndarray:
    return np.array([row_root(op, r, s, divisor, e, f) for r, (s, e) in enumerate(zip(sum_sq, e_rows))],
                    dtype=np.int64)


def _normalize_fast(attrs: NormAttrs, v2d, gamma, beta, den) -> np.ndarray:
    fg = attrs.rms_frac_bits + attrs.out_frac_bits
    _check_numerators(attrs.op, v2d, gamma, fg)
    if (den >= NUM_LIMIT).any():  # D * r <= 2^31 * D: only for absurd D; keeps div_round_i64 exact
        raise WidthError(f"{attrs.op}: den = D * r reaches 2^62")
    y = np.empty_like(v2d)
    bias = np.zeros_like(gamma) if beta is None else beta
    normalize_rows(v2d, gamma, bias, den, np.int64(fg), np.int64(attrs.out_frac_bits),
                    mode_code(attrs.rounding), y)
    check_width(y, attrs.y_bits, True, attrs.op, "y")
    return y


def _eps_rows(attrs: NormAttrs, m_rows, k_rows) -> list[int]:
    return [eps_in_row_units(attrs.eps_m, attrs.eps_k, m_r, k_r, attrs.rms_frac_bits)
            for m_r, k_r in zip(m_rows.tolist(), k_rows.tolist())]


def _rms_roots(attrs: NormAttrs, s: np.ndarray, m_rows: np.ndarray, k_rows: np.ndarray, d: int) -> np.ndarray:
    """Every row's r = isqrt(ms): the Numba kernel where int64 holds each step, the per-row
    Python ints (exactly the reference's functions, in row order) for the others."""
    roots = np.empty(s.shape[0], dtype=np.int64)
    status = np.empty(s.shape[0], dtype=np.int8)
    rms_roots(np.ascontiguousarray(s, dtype=np.int64), m_rows, k_rows, d, attrs.eps_m, attrs.eps_k,
                      attrs.rms_frac_bits, roots, status)
    for r in np.flatnonzero(status).tolist():
        e_r = eps_in_row_units(attrs.eps_m, attrs.eps_k, int(m_rows[r]), int(k_rows[r]), attrs.rms_frac_bits)
        roots[r] = row_root(attrs.op, r, int(s[r]), d, e_r, attrs.rms_frac_bits)
    return roots


def _rmsnorm_fast(attrs: NormAttrs, x, m, k, gamma) -> RowQuant:
    shape = np.shape(x)
    x2d, m_rows, k_rows, gamma, _ = _inputs(attrs, x, m, k, gamma, None)
    x2d = np.where((m_rows == 0)[:, None], 0, x2d)
    d = x2d.shape[1]
    s = check_width((x2d * x2d).sum(axis=1), _sum_sq_width(attrs.in_bits, d), False, attrs.op, "S")
    roots = _rms_roots(attrs, s, m_rows, k_rows, d)
    y = _normalize_fast(attrs, x2d, gamma, None, roots)
    return _out(attrs, y, shape, reference=False)


def _layernorm_fast(attrs: NormAttrs, x, m, k, gamma, beta) -> RowQuant:
    shape = np.shape(x)
    x2d, m_rows, k_rows, gamma, beta = _inputs(attrs, x, m, k, gamma, beta)
    x2d = np.where((m_rows == 0)[:, None], 0, x2d)
    d, op = x2d.shape[1], attrs.op
    total = check_width(x2d.sum(axis=1), _sum_width(attrs.in_bits, d), True, op, "sum")
    c = check_width(d * x2d - total[:, None], _sum_width(attrs.in_bits, d) + 1, True, op, "c")
    s = check_width((x2d * x2d).sum(axis=1), _sum_sq_width(attrs.in_bits, d), False, op, "S")
    var = [d * s_r - t * t for s_r, t in zip(s.tolist(), total.tolist())]  # Python ints: may pass 2^63
    for r, v in enumerate(var):
        check_width_int(v, _var_width(attrs.in_bits, d), False, op, f"V[{r}]")
    roots = _roots(op, var, d * d, _eps_rows(attrs, m_rows, k_rows), attrs.rms_frac_bits)
    y = _normalize_fast(attrs, c, gamma, beta, d * roots)
    return _out(attrs, y, shape, reference=False)


# --- public API ---------------------------------------------------------------------------------

def di_rmsnorm(x, m, k, gamma, gamma_k, *, in_bits=16, eps_m=DEFAULT_EPS_M, eps_k=DEFAULT_EPS_K,
               rms_frac_bits=8, out_frac_bits=8, out_bits=8, out_symmetric=False, mbits=DEFAULT_MBITS,
               y_bits=32, rounding=DEFAULT_ROUNDING, zero_rows="error") -> RowQuant:
    """Integer RMSNorm of x[..., D] (int{in_bits}, per-row scale m/2^k) with gain gamma/2^gamma_k.

    Output: per-row quantized RowQuant (uint{out_bits} asymmetric, or int{out_bits} symmetric).
    r = isqrt(floor(2^(2F) * (mean x^2 + eps/s^2))) exact; y = round(x*gamma*2^(F+G) / r) in
    ``rounding``, int{y_bits}; then quantize_rows. Fast path: Numba kernel, parallel over rows.
    """
    attrs = check_attrs(OP_RMS, gamma_k, in_bits, eps_m, eps_k, rms_frac_bits, out_frac_bits, out_bits,
                         out_symmetric, mbits, y_bits, rounding, zero_rows)
    return _rmsnorm_fast(attrs, x, m, k, gamma)


def di_rmsnorm_reference(x, m, k, gamma, gamma_k, *, in_bits=16, eps_m=DEFAULT_EPS_M, eps_k=DEFAULT_EPS_K,
                         rms_frac_bits=8, out_frac_bits=8, out_bits=8, out_symmetric=False,
                         mbits=DEFAULT_MBITS, y_bits=32, rounding=DEFAULT_ROUNDING,
                         zero_rows="error") -> RowQuant:
    """Scalar reference of :func:`di_rmsnorm` on Python ints, one loop per row, in contract order."""
    attrs = check_attrs(OP_RMS, gamma_k, in_bits, eps_m, eps_k, rms_frac_bits, out_frac_bits, out_bits,
                         out_symmetric, mbits, y_bits, rounding, zero_rows)
    return _rmsnorm_reference(attrs, x, m, k, gamma)


def di_rmsnorm_float(x, m, k, gamma, gamma_k, *, in_bits=16, eps_m=DEFAULT_EPS_M, eps_k=DEFAULT_EPS_K,
                     rms_frac_bits=8, out_frac_bits=8, out_bits=8, out_symmetric=False,
                     mbits=DEFAULT_MBITS, y_bits=32, rounding=DEFAULT_ROUNDING,
                     zero_rows="error") -> np.ndarray:
    """Float meaning (tests only): x_real / sqrt(mean(x_real^2) + eps) * gamma_real, in float64
    (NaN where it is undefined: an all-zero row with eps = 0)."""
    xr = _dequantize_rows(x, m, k)
    eps = eps_m / 2.0 ** eps_k
    g = np.asarray(gamma, dtype=np.float64) / 2.0 ** gamma_k
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN for a zero row with eps = 0
        return xr / np.sqrt(np.mean(xr * xr, axis=-1, keepdims=True) + eps) * g


def di_layernorm(x, m, k, gamma, beta, gamma_k, *, in_bits=16, eps_m=DEFAULT_EPS_M, eps_k=DEFAULT_EPS_K,
                 rms_frac_bits=8, out_frac_bits=8, out_bits=8, out_symmetric=False, mbits=DEFAULT_MBITS,
                 y_bits=32, rounding=DEFAULT_ROUNDING, zero_rows="error") -> RowQuant:
    """Integer LayerNorm of x[..., D]: exact centring c = D*x - sum x, gain gamma and bias beta
    (both / 2^gamma_k). r = isqrt(floor(2^(2F) * (var x + eps/s^2))) exact;
    y = round(c*gamma*2^(F+G) / (D*r)) + beta*2^G, int{y_bits}; then quantize_rows."""
    attrs = check_attrs(OP_LN, gamma_k, in_bits, eps_m, eps_k, rms_frac_bits, out_frac_bits, out_bits,
                         out_symmetric, mbits, y_bits, rounding, zero_rows)
    return _layernorm_fast(attrs, x, m, k, gamma, beta)


def di_layernorm_reference(x, m, k, gamma, beta, gamma_k, *, in_bits=16, eps_m=DEFAULT_EPS_M,
                           eps_k=DEFAULT_EPS_K, rms_frac_bits=8, out_frac_bits=8, out_bits=8,
                           out_symmetric=False, mbits=DEFAULT_MBITS, y_bits=32,
                           rounding=DEFAULT_ROUNDING, zero_rows="error") -> RowQuant:
    """Scalar reference of :func:`di_layernorm` on Python ints, one loop per row, in contract order."""
    attrs = check_attrs(OP_LN, gamma_k, in_bits, eps_m, eps_k, rms_frac_bits, out_frac_bits, out_bits,
                         out_symmetric, mbits, y_bits, rounding, zero_rows)
    return _layernorm_reference(attrs, x, m, k, gamma, beta)


def di_layernorm_float(x, m, k, gamma, beta, gamma_k, *, in_bits=16, eps_m=DEFAULT_EPS_M,
                       eps_k=DEFAULT_EPS_K, rms_frac_bits=8, out_frac_bits=8, out_bits=8,
                       out_symmetric=False, mbits=DEFAULT_MBITS, y_bits=32, rounding=DEFAULT_ROUNDING,
                       zero_rows="error") -> np.ndarray:
    """Float meaning (tests only): (x - mean) / sqrt(var + eps) * gamma + beta on the real values
    (NaN where it is undefined: a constant row with eps = 0)."""
    xr = _dequantize_rows(x, m, k)
    eps = eps_m / 2.0 ** eps_k
    g = np.asarray(gamma, dtype=np.float64) / 2.0 ** gamma_k
    b = np.asarray(beta, dtype=np.float64) / 2.0 ** gamma_k
    centred = xr - xr.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN for a constant row with eps = 0
        return centred / np.sqrt(np.mean(centred * centred, axis=-1, keepdims=True) + eps) * g + b


def _dequantize_rows(x, m, k) -> np.ndarray:
    """x * m / 2^k in float64 with per-row (broadcast) m, k: the real input of the float meaning."""
    x = np.asarray(x, dtype=np.float64)
    scale = np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64))
    return x * np.broadcast_to(scale, x.shape[:-1])[..., None]

