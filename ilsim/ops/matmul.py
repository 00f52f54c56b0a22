"""DI-MatMul: exact integer matrix products with dynamic per-token output quantization.

Contract (docs/spec/matmul.md); I-LLM (arXiv 2405.17849), the DI-MatMul section.
Operands are 2-D (the interpreter loops heads). Five functions, each with a ``*_reference``
twin on Python ints (same signature) and a ``*_float`` meaning (tests only):

``matmul_accumulate``  acc[i, j] = sum_k (a[i, k] - a_zp[i]) * (b[j, k] - b_zp[j]), exact,
    a: [M, K] a_bits (unsigned by default), per-row zero point a_zp: [M] of the same width;
    b: [N, K] b_bits (signed by default; nn.Linear layout, or K for Q.K^T), b_zp: [N];
    acc: signed ``acc_bits`` (default 32), checked (WidthError names ``acc[i,j]``).
``di_matmul_wide``     the accumulator with the per-column scale of b folded in:
    kref = min_j b_k[j];  b_m'[j] = rshift_round(b_m[j], b_k[j] - kref)   (``rounding``, once)
    p[i, j] = acc[i, j] * b_m'[j]                  signed acc_bits + mbits (holds by construction)
    m[i] = a_m[i],  k[i] = a_k[i] + kref           (k[i] <= 63, else WidthError)
    so that  real(a) @ real(b)^T  ~=  m[i] / 2^k[i] * p[i, j].
``di_matmul``          quantize_rows(p, m, k, bits=out_bits, symmetric=out_symmetric,
    in_bits=acc_bits + mbits, ...): the paper's dynamic per-token output quantization.
``di_matmul_av_wide``  attention probabilities times values: p: [M, T] unsigned p_bits with the
    fixed scale 2^-p_frac_bits; v: [T, D] signed v_bits, per-token symmetric, scale (v_m, v_k)[t]:
    kref = min_t v_k[t];  v_m'[t] = rshift_round(v_m[t], v_k[t] - kref)
    acc[i, d] = sum_t (p[i, t] * v_m'[t]) * v[t, d]      signed acc_bits (default 48), checked
    -> WideOut(acc, m = 1, k = p_frac_bits + kref)       (k <= 63, else WidthError)
``di_matmul_av``       quantize_rows(acc, 1, p_frac_bits + kref, bits=out_bits, in_bits=acc_bits, ...).

Exactness of the fast path: the linear accumulation runs in ilsim.kernels.intdot on a' = a - a_zp
(int16/int32) and b in its own dtype, with b's zero point applied through the row sums of a'.
An int32 accumulator is used only when K * max|a'| * max|b| < 2^31 (Python ints, from the
data), so no partial sum can wrap; otherwise int64, which the declared-width bound
K * (2^a_bits - 1) * (2^b_bits - 1) < 2^63 (an InputError when broken) keeps exact. The width
check of acc is fused into the kernel. ``prepare_weight`` validates and folds a weight once for
``di_matmul_prepared`` / ``di_matmul_wide_prepared`` (a model's layers); same bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, MAX_SHIFT
from ilsim.arith.rounding import DEFAULT_ROUNDING, op_rounding, rshift_round, rshift_round_reference
from ilsim.errors import InputError, WidthError
from ilsim.ops._common import memoized_attrs, storage_dtype
from ilsim.ops.quantize import (RowQuant, quantize_rows, quantize_rows_2d, quantize_rows_reference,
                                require_zero_rows)
from ilsim.kernels.intdot import activation_differences, run_linear
from ilsim.widths import (check_width, check_width_int, int_input, int_operand, is_int, require_attr,
                          require_shape, rows_fit)

OP_ACC = "matmul_accumulate"
OP_WIDE = "di_matmul_wide"
OP = "di_matmul"
OP_AV = "di_matmul_av"
OP_AV_WIDE = "di_matmul_av_wide"

#: Operand widths accepted (2..8 in the I-LLM configurations; 16 for wider experiments).
MIN_OPERAND_BITS, MAX_OPERAND_BITS = 2, 16
#: Accumulator and product widths stay below 2^62 so every int64 step has headroom.
MAX_WIDE_BITS = 62
#: An int32 accumulator is exact while every partial sum stays below this bound.
INT32_EXACT_LIMIT = 1 << 31
#: An int64 accumulator is exact while every partial sum stays below this bound.
INT64_EXACT_LIMIT = 1 << 63


class WideOut(NamedTuple):
    """A product with one dyadic scale per row: real[i, j] = m[i] / 2^k[i] * p[i, j]."""

    p: np.ndarray
    m: np.ndarray
    k: np.ndarray


# ----------------------------------------------------------------------------------------------
# Validation (shared by every fast path and reference, so both reject the same inputs alike)
# ----------------------------------------------------------------------------------------------

def _int_attr(value, lo: int, hi: int, op: str, name: str) -> int:
    """An integer attribute in [lo, hi] (bools and floats rejected), returned as a Python int."""
    ok = is_int(value)
    require_attr(ok and lo <= int(value) <= hi, op,
                 f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def _rounding_attr(rounding, op: str):
    """The named rounding mode; an unknown name is an InputError naming the operator."""
    return op_rounding(op, rounding)


def _bool_attr(value, op: str, name: str) -> bool:
    """A bool attribute (0/1 and strings rejected)."""
    require_attr(isinstance(value, (bool, np.bool_)), op, f"{name} must be a bool, got {value!r}")
    return bool(value)


def max_abs_difference(bits: int) -> int:
    """Largest |x - zp| for x and zp of one declared width: 2^bits - 1 (signed or unsigned)."""
    return (1 << bits) - 1


def _require_exact_int64(terms: int, max_term: int, op: str, what: str) -> None:
    """InputError unless terms * max_term < 2^63, the bound that keeps an int64 sum exact."""
    bound = terms * max_term
    require_attr(bound < INT64_EXACT_LIMIT, op,
                 f"{what}: the declared widths allow a sum of {terms} products of magnitude up to "
                 f"{max_term}, which may reach 2^{bound.bit_length() - 1}; the int64 accumulation "
                 f"is only exact below 2^63 (reduce the widths or the reduction length)")


class _Operands(NamedTuple):
    a: np.ndarray
    a_zp: np.ndarray
    b: np.ndarray
    b_zp: np.ndarray


def _operands(op, a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits) -> _Operands:
    """Validate attributes, then a: [M, K], a_zp: [M], b: [N, K], b_zp: [N] against their widths."""
    a_bits = _int_attr(a_bits, MIN_OPERAND_BITS, MAX_OPERAND_BITS, op, "a_bits")
    b_bits = _int_attr(b_bits, MIN_OPERAND_BITS, MAX_OPERAND_BITS, op, "b_bits")
    a_signed = _bool_attr(a_signed, op, "a_signed")
    b_signed = _bool_attr(b_signed, op, "b_signed")
    _int_attr(acc_bits, 2, MAX_WIDE_BITS, op, "acc_bits")
    a = int_input(a, op, "a", bits=a_bits, signed=a_signed, ndim=2)
    b = int_input(b, op, "b", bits=b_bits, signed=b_signed, ndim=2)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"{op}: a is [M, K] = {a.shape} and b is [N, K] = {b.shape}: "
                         f"their K (last axis) must match")
    a_zp = int_input(a_zp, op, "a_zp", bits=a_bits, signed=a_signed, ndim=1)
    require_shape(a_zp, (a.shape[0],), op, "a_zp")
    b_zp = int_input(b_zp, op, "b_zp", bits=b_bits, signed=b_signed, ndim=1)
    require_shape(b_zp, (b.shape[0],), op, "b_zp")
    _require_exact_int64(a.shape[1], max_abs_difference(a_bits) * max_abs_difference(b_bits), op, "acc")
    return _Operands(a, a_zp, b, b_zp)


def _scale_vector(m, k, length: int, op: str, name: str, mbits: int):
    """Validate one dyadic scale per row/column: {name}_m in [0, 2^mbits), {name}_k in [0, 63]."""
    m_arr = int_input(m, op, f"{name}_m", bits=mbits, signed=False, ndim=1)
    require_shape(m_arr, (length,), op, f"{name}_m")
    k_arr = int_input(k, op, f"{name}_k", ndim=1)
    require_shape(k_arr, (length,), op, f"{name}_k")
    if int(k_arr.min()) < 0 or int(k_arr.max()) > MAX_SHIFT:
        raise InputError(f"{op}: {name}_k must be in [0, {MAX_SHIFT}], got range "
                         f"[{int(k_arr.min())}, {int(k_arr.max())}]")
    return m_arr, k_arr


def _output_attrs(op, out_bits, out_symmetric, zero_rows, in_bits: int) -> None:
    """The attributes handed to quantize_rows, checked here so the error names this operator."""
    out_bits = _int_attr(out_bits, 2, 16, op, "out_bits")
    _bool_attr(out_symmetric, op, "out_symmetric")
    require_zero_rows(op, zero_rows)
    require_attr(in_bits + out_bits <= MAX_WIDE_BITS, op,
                 f"the quantized input width ({in_bits} bits) + out_bits ({out_bits}) must be "
                 f"<= {MAX_WIDE_BITS}, got {in_bits + out_bits}")


def check_wide_attrs(op, a_bits, b_bits, a_signed, b_signed, acc_bits, mbits, rounding, output: tuple | None = None,
                     depth: int | None = None):
    """The attributes of di_matmul_wide (and, with ``output`` = (out_bits, out_symmetric, zero_rows),
    of di_matmul), checked as their references check them: InputError naming ``op``. With ``depth``
    (the reduction length K) also the bound that keeps the int64 accumulation exact. The graph
    checks every node with this at load. Returns (rounding mode, mbits, acc_bits)."""
    mode = _rounding_attr(rounding, op)
    mbits = _int_attr(mbits, 2, 30, op, "mbits")
    acc_bits = _int_attr(acc_bits, 2, MAX_WIDE_BITS - mbits, op, f"acc_bits (with mbits={mbits})")
    if output is not None:
        _output_attrs(op, *output, in_bits=acc_bits + mbits)
    a_bits = _int_attr(a_bits, MIN_OPERAND_BITS, MAX_OPERAND_BITS, op, "a_bits")
    b_bits = _int_attr(b_bits, MIN_OPERAND_BITS, MAX_OPERAND_BITS, op, "b_bits")
    _bool_attr(a_signed, op, "a_signed")
    _bool_attr(b_signed, op, "b_signed")
    if depth is not None:
        _require_exact_int64(depth, max_abs_difference(a_bits) * max_abs_difference(b_bits), op, "acc")
    return mode, mbits, acc_bits


def check_av_attrs(op, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding, output: tuple | None = None,
                   depth: int | None = None):
    """The attributes of di_matmul_av_wide (with ``output``: of di_matmul_av), checked as their
    references check them; with ``depth`` (the number of positions T) also the int64 bound.
    Returns (rounding mode, p_bits, p_frac_bits, v_bits, mbits, acc_bits)."""
    mode = _rounding_attr(rounding, op)
    p_bits = _int_attr(p_bits, 1, 16, op, "p_bits")
    p_frac_bits = _int_attr(p_frac_bits, 0, MAX_SHIFT, op, "p_frac_bits")
    v_bits = _int_attr(v_bits, MIN_OPERAND_BITS, MAX_OPERAND_BITS, op, "v_bits")
    mbits = _int_attr(mbits, 2, 30, op, "mbits")
    acc_bits = _int_attr(acc_bits, 2, MAX_WIDE_BITS, op, "acc_bits")
    if output is not None:
        _output_attrs(op, *output, in_bits=acc_bits)
    if depth is not None:
        max_weight = ((1 << p_bits) - 1) * ((1 << mbits) - 1)
        _require_exact_int64(depth, max_weight * (1 << (v_bits - 1)), op, "acc")
    return mode, p_bits, p_frac_bits, v_bits, mbits, acc_bits


class _WideInputs(NamedTuple):
    x: _Operands
    a_m: np.ndarray
    a_k: np.ndarray
    b_m: np.ndarray
    b_k: np.ndarray
    mode: object


def _wide_inputs(op, a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                 acc_bits, mbits, rounding, output: tuple | None = None) -> _WideInputs:
    """Validate attributes (and, for di_matmul, the ``output`` attributes), then the tensors."""
    mode, mbits, acc_bits = check_wide_attrs(op, a_bits, b_bits, a_signed, b_signed, acc_bits, mbits, rounding,
                                             output)
    x = _operands(op, a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits)
    a_m, a_k = _scale_vector(a_m, a_k, x.a.shape[0], op, "a", mbits)
    b_m, b_k = _scale_vector(b_m, b_k, x.b.shape[0], op, "b", mbits)
    return _WideInputs(x, a_m, a_k, b_m, b_k, mode)


# ----------------------------------------------------------------------------------------------
# Scale arithmetic (a few integers per row / column)
# ----------------------------------------------------------------------------------------------

def fold_scales_reference(m: list[int], k: list[int], mode) -> tuple[list[int], int]:
    """(m', kref): kref = min k; m'[j] = round(m[j] / 2^(k[j] - kref)) in ``mode``, one rounding.

    m'[j] / 2^kref approximates m[j] / 2^k[j]; m'[j] <= m[j] (so m' keeps m's width), with
    |m'[j] - m[j] / 2^(k[j]-kref)| <= 1/2 in the nearest modes, < 1 in floor/trunc, 0 where k[j] = kref.
    """
    kref = min(k)
    return [rshift_round_reference(mj, kj - kref, mode) for mj, kj in zip(m, k)], kref


def fold_scales(m: np.ndarray, k: np.ndarray, mode) -> tuple[np.ndarray, np.ndarray]:
    """Array twin of :func:`fold_scales_reference` along the last axis (int64 in and out): for
    every row of [..., S] scales, kref = min k and m' = rshift_round(m, k - kref); kref has the
    row shape (0-d for one vector of scales)."""
    kref = k.min(axis=-1)
    return rshift_round(m, k - kref[..., None], mode), kref


def _output_shifts(k_rows: list[int], kref: int, op: str, what: str) -> list[int]:
    """k[i] = k_rows[i] + kref on Python ints; WidthError naming the first row above 63.

    ``what`` names k_rows[i] in the message, e.g. "a_k[{i}]" or "p_frac_bits".
    """
    out = [k + kref for k in k_rows]
    for i, k in enumerate(out):
        if k > MAX_SHIFT:
            raise WidthError(f"{op}: output scale shift k[{i}] = {what.format(i=i)} + kref = "
                             f"{k_rows[i]} + {kref} = {k} exceeds {MAX_SHIFT}")
    return out


# ----------------------------------------------------------------------------------------------
# The probability-value product's kernel (the linear layers' is ilsim.kernels.intdot)
# ----------------------------------------------------------------------------------------------

@numba.njit(cache=True, parallel=True)
def _dot_i64(a, b, out):
    """out[i, j] = sum_k a[i, k] * b[j, k] in int64; the caller proves every partial sum stays
    below 2^63. The flat prange over (i, j) splits rows or columns, whichever there are more of."""
    rows, cols = out.shape
    depth = a.shape[1]
    for idx in numba.prange(rows * cols):
        i = idx // cols
        j = idx - i * cols
        s = np.int64(0)
        for t in range(depth):
            s += np.int64(a[i, t]) * np.int64(b[j, t])
        out[i, j] = s


def _max_abs(x: np.ndarray) -> int:
    return max(abs(int(x.max())), abs(int(x.min())))


def accumulator_kernel(depth: int, max_abs_a: int, max_abs_b: int) -> str:
    """'int32' when depth * max|a| * max|b| < 2^31 (Python ints), else 'int64'."""
    return "int32" if depth * max_abs_a * max_abs_b < INT32_EXACT_LIMIT else "int64"


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_k a[i, k] * b[j, k] in int64 (the caller has proved it exact)."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int64)
    _dot_i64(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    return out


def _difference_dtype(*bits: int):
    """int16 holds x - zp for widths up to 15 bits (|x - zp| <= 2^15 - 1); int32 above."""
    return np.int16 if max(bits) <= 15 else np.int32


class LinearWeight(NamedTuple):
    """A validated weight operand b [N, K] with its column scales folded once, reusable across
    calls (a model's linear layers): see :func:`prepare_weight`."""

    b: np.ndarray        # [N, K], its own integer dtype, C-contiguous, within (bits, signed)
    b_zp: np.ndarray     # [N] int64
    b_mf: np.ndarray     # [N] int64: b_m' = rshift_round(b_m[j], b_k[j] - kref), one rounding
    kref: int
    max_abs_b: int       # max |b[j, k]| (Python int), for the int32 accumulator proof
    bits: int
    signed: bool
    mbits: int
    mode: object


def _linear_weight(b, b_zp, b_mf, kref: int, bits: int, signed: bool, mbits: int, mode) -> LinearWeight:
    b = np.ascontiguousarray(b)
    return LinearWeight(b, b_zp, b_mf, int(kref), _max_abs(b), bits, signed, mbits, mode)


def prepare_weight(b, b_zp, b_m, b_k, *, b_bits: int, b_signed: bool = True, mbits: int = DEFAULT_MBITS,
                   rounding=DEFAULT_ROUNDING, op: str = OP) -> LinearWeight:
    """Validate a weight operand of :func:`di_matmul_prepared` once (b [N, K] within b_bits,
    b_zp [N] of the same width, b_m [N] in [0, 2^mbits), b_k [N] in [0, 63]) and fold its
    column scales. b keeps its own dtype (no int64 copy)."""
    mode = _rounding_attr(rounding, op)
    mbits = _int_attr(mbits, 2, 30, op, "mbits")
    b_bits = _int_attr(b_bits, MIN_OPERAND_BITS, MAX_OPERAND_BITS, op, "b_bits")
    b_signed = _bool_attr(b_signed, op, "b_signed")
    b = int_operand(b, op, "b", bits=b_bits, signed=b_signed, ndim=2)
    b_zp = int_input(b_zp, op, "b_zp", bits=b_bits, signed=b_signed, ndim=1)
    require_shape(b_zp, (b.shape[0],), op, "b_zp")
    b_m, b_k = _scale_vector(b_m, b_k, b.shape[0], op, "b", mbits)
    b_mf, kref = fold_scales(b_m, b_k, mode)
    return _linear_weight(b, b_zp, b_mf, kref, b_bits, b_signed, mbits, mode)


def _linear(a, a_zp, w: LinearWeight, a_bits: int, acc_bits: int, op: str) -> np.ndarray:
    """p[i, j] = acc[i, j] * b_m'[j] (int64), acc = (a - a_zp) @ (b - b_zp)^T exact and checked
    against signed acc_bits (WidthError naming the first acc[i,j] outside it)."""
    a_diff = np.empty(a.shape, dtype=_difference_dtype(a_bits, w.bits))
    row_sum = np.empty(a.shape[0], dtype=np.int64)
    max_abs_a = int(activation_differences(a, a_zp, a_diff, row_sum))
    wide = accumulator_kernel(a.shape[1], max_abs_a, w.max_abs_b) == "int64"
    p, bad = run_linear(a_diff, row_sum, w.b, w.b_zp, w.b_mf, acc_bits, wide)
    if bad.any():  # rare: recompute acc exactly to name its first element outside the width
        acc = a_diff.astype(np.int64) @ (w.b.astype(np.int64) - w.b_zp[:, None]).T
        check_width(acc, acc_bits, True, op, "acc")
    return p


def _accumulate(x: _Operands, a_bits: int, b_bits: int, b_signed: bool, acc_bits: int, op: str) -> np.ndarray:
    """Fast exact accumulator (int64 array) of (a - a_zp) @ (b - b_zp)^T, width-checked."""
    ones = np.ones(x.b.shape[0], dtype=np.int64)
    w = _linear_weight(x.b, x.b_zp, ones, 0, b_bits, b_signed, DEFAULT_MBITS, DEFAULT_ROUNDING)
    return _linear(x.a, x.a_zp, w, a_bits, acc_bits, op)


def _accumulate_reference(x: _Operands, acc_bits: int, op: str) -> list[list[int]]:
    """Python-int accumulator rows, each element checked against signed acc_bits."""
    a_rows, b_rows = x.a.tolist(), x.b.tolist()
    a_zp, b_zp = x.a_zp.tolist(), x.b_zp.tolist()
    acc = []
    for i, a_row in enumerate(a_rows):
        a_diff = [v - a_zp[i] for v in a_row]
        acc_row = []
        for j, b_row in enumerate(b_rows):
            total = 0
            for av, bv in zip(a_diff, b_row):
                total += av * (bv - b_zp[j])
            acc_row.append(check_width_int(total, acc_bits, True, op, f"acc[{i},{j}]"))
        acc.append(acc_row)
    return acc


# ----------------------------------------------------------------------------------------------
# matmul_accumulate
# ----------------------------------------------------------------------------------------------

def matmul_accumulate_reference(a, a_zp, b, b_zp, *, a_bits: int, b_bits: int, a_signed: bool = False,
                                b_signed: bool = True, acc_bits: int = 32) -> np.ndarray:
    """acc[i, j] = sum_k (a[i,k] - a_zp[i]) * (b[j,k] - b_zp[j]) on Python ints; signed acc_bits, checked."""
    x = _operands(OP_ACC, a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits)
    acc = _accumulate_reference(x, acc_bits, OP_ACC)
    return np.array(acc, dtype=np.int64).astype(storage_dtype(acc_bits, True))


def matmul_accumulate(a, a_zp, b, b_zp, *, a_bits: int, b_bits: int, a_signed: bool = False,
                      b_signed: bool = True, acc_bits: int = 32) -> np.ndarray:
    """Fast path of :func:`matmul_accumulate_reference`: Numba int32/int64 kernel, then the width check."""
    x = _operands(OP_ACC, a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits)
    acc = _accumulate(x, a_bits, b_bits, b_signed, acc_bits, OP_ACC)
    return acc.astype(storage_dtype(acc_bits, True))


def matmul_accumulate_float(a, a_zp, b, b_zp, *, a_bits: int, b_bits: int, a_signed: bool = False,
                            b_signed: bool = True, acc_bits: int = 32) -> np.ndarray:
    """(a - a_zp) @ (b - b_zp)^T in float64 (tests only; exact while sums stay below 2^53)."""
    x = _operands(OP_ACC, a, a_zp, b, b_zp, a_bits, b_bits, a_signed, b_signed, acc_bits)
    return (x.a - x.a_zp[:, None]).astype(np.float64) @ (x.b - x.b_zp[:, None]).astype(np.float64).T


# ----------------------------------------------------------------------------------------------
# di_matmul_wide
# ----------------------------------------------------------------------------------------------

def _wide_reference(op, w: _WideInputs, acc_bits: int, mbits: int) -> WideOut:
    b_m_folded, kref = fold_scales_reference(w.b_m.tolist(), w.b_k.tolist(), w.mode)
    k_out = _output_shifts(w.a_k.tolist(), kref, op, "a_k[{i}]")
    acc = _accumulate_reference(w.x, acc_bits, op)
    p = []
    for i, acc_row in enumerate(acc):
        p.append([check_width_int(v * b_m_folded[j], acc_bits + mbits, True, op, f"p[{i},{j}]")
                  for j, v in enumerate(acc_row)])
    return WideOut(p=np.array(p, dtype=np.int64).astype(storage_dtype(acc_bits + mbits, True)),
                   m=w.a_m.copy(), k=np.array(k_out, dtype=np.int64))


def _wide_from_weight(op, a, a_zp, a_m, a_k, w: LinearWeight, a_bits: int, acc_bits: int) -> WideOut:
    """The fast di_matmul_wide on validated operands and a prepared weight."""
    k_out = _output_shifts(a_k.tolist(), w.kref, op, "a_k[{i}]")
    # |acc| <= 2^(acc_bits-1) and b_m' < 2^mbits with acc_bits + mbits <= 62: p holds its width
    p = _linear(a, a_zp, w, a_bits, acc_bits, op)
    return WideOut(p=p.astype(storage_dtype(acc_bits + w.mbits, True), copy=False), m=a_m.copy(),
                   k=np.array(k_out, dtype=np.int64))


def _wide_fast(op, w: _WideInputs, a_bits: int, b_bits: int, b_signed: bool, acc_bits: int,
               mbits: int) -> WideOut:
    b_m_folded, kref = fold_scales(w.b_m, w.b_k, w.mode)
    weight = _linear_weight(w.x.b, w.x.b_zp, b_m_folded, kref, b_bits, b_signed, mbits, w.mode)
    return _wide_from_weight(op, w.x.a, w.x.a_zp, w.a_m, w.a_k, weight, a_bits, acc_bits)


def di_matmul_wide_reference(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
                             a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32,
                             mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING) -> WideOut:
    """p[i, j] = acc[i, j] * rshift_round(b_m[j], b_k[j] - kref) (signed acc_bits + mbits), with the
    row scale m[i] = a_m[i], k[i] = a_k[i] + kref <= 63; Python ints, one rounding per column."""
    w = _wide_inputs(OP_WIDE, a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed,
                     b_signed, acc_bits, mbits, rounding)
    return _wide_reference(OP_WIDE, w, acc_bits, mbits)


def di_matmul_wide(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
                   a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32,
                   mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING) -> WideOut:
    """Fast path of :func:`di_matmul_wide_reference` (Numba accumulator, vectorised fold)."""
    w = _wide_inputs(OP_WIDE, a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed,
                     b_signed, acc_bits, mbits, rounding)
    return _wide_fast(OP_WIDE, w, a_bits, b_bits, b_signed, acc_bits, mbits)


def _real_rows(x: np.ndarray, zp: np.ndarray, m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """float64 m[r] / 2^k[r] * (x[r, :] - zp[r]) (tests only)."""
    scale = m.astype(np.float64) * np.ldexp(1.0, -k)
    return scale[:, None] * (x - zp[:, None]).astype(np.float64)


def di_matmul_wide_float(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
                         a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32,
                         mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING) -> np.ndarray:
    """real(a) @ real(b)^T in float64: what m[i] / 2^k[i] * p[i, j] approximates (tests only)."""
    w = _wide_inputs(OP_WIDE, a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed,
                     b_signed, acc_bits, mbits, rounding)
    return _real_rows(w.x.a, w.x.a_zp, w.a_m, w.a_k) @ _real_rows(w.x.b, w.x.b_zp, w.b_m, w.b_k).T


# ----------------------------------------------------------------------------------------------
# di_matmul
# ----------------------------------------------------------------------------------------------

def _di_matmul_inputs(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                      acc_bits, mbits, rounding, out_bits, out_symmetric, zero_rows) -> _WideInputs:
    return _wide_inputs(OP, a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                        acc_bits, mbits, rounding, output=(out_bits, out_symmetric, zero_rows))


def di_matmul_reference(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
                        a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32,
                        mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING, out_bits: int = 8,
                        out_symmetric: bool = False, zero_rows: str = "error") -> RowQuant:
    """DI-MatMul on Python ints: :func:`di_matmul_wide_reference`, then quantize_rows_reference
    (out_bits per token, dynamic range from the integer row min/max, one rounding per element)."""
    w = _di_matmul_inputs(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                          acc_bits, mbits, rounding, out_bits, out_symmetric, zero_rows)
    wide = _wide_reference(OP, w, acc_bits, mbits)
    return quantize_rows_reference(wide.p, wide.m, wide.k, bits=out_bits, symmetric=out_symmetric,
                                   in_bits=acc_bits + mbits, mbits=mbits, rounding=rounding,
                                   zero_rows=zero_rows, tensor="di_matmul p")


def di_matmul(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
              a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32,
              mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING, out_bits: int = 8,
              out_symmetric: bool = False, zero_rows: str = "error") -> RowQuant:
    """Fast path of :func:`di_matmul_reference`."""
    w = _di_matmul_inputs(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                          acc_bits, mbits, rounding, out_bits, out_symmetric, zero_rows)
    wide = _wide_fast(OP, w, a_bits, b_bits, b_signed, acc_bits, mbits)
    return quantize_rows_2d(wide.p, wide.m, wide.k, bits=out_bits, symmetric=bool(out_symmetric),
                            mbits=mbits, mode=w.mode, zero_rows=zero_rows, tensor="di_matmul p")


def di_matmul_float(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, *, a_bits: int, b_bits: int,
                    a_signed: bool = False, b_signed: bool = True, acc_bits: int = 32,
                    mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING, out_bits: int = 8,
                    out_symmetric: bool = False, zero_rows: str = "error") -> np.ndarray:
    """real(a) @ real(b)^T in float64: what the dequantized output approximates (tests only)."""
    _di_matmul_inputs(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits, b_bits, a_signed, b_signed,
                      acc_bits, mbits, rounding, out_bits, out_symmetric, zero_rows)
    return di_matmul_wide_float(a, a_zp, a_m, a_k, b, b_zp, b_m, b_k, a_bits=a_bits, b_bits=b_bits,
                                a_signed=a_signed, b_signed=b_signed, acc_bits=acc_bits, mbits=mbits,
                                rounding=rounding)


# ----------------------------------------------------------------------------------------------
# di_matmul with a prepared weight (a model's linear layers: the weight is validated once)
# ----------------------------------------------------------------------------------------------

@memoized_attrs
def _prepared_attrs(op, a_bits, a_signed, acc_bits, mbits: int, b_bits: int, depth: int, output):
    """The activation-side attributes against a prepared weight, checked (and, for di_matmul,
    the ``output`` attributes (out_bits, out_symmetric, zero_rows)); returns them normalised."""
    # the same checks, in the same order, as di_matmul's (the weight's b_bits, b_signed, mbits and
    # rounding were checked when it was prepared; b_signed and rounding are passed for their types)
    _mode, _mbits, acc_bits = check_wide_attrs(op, a_bits, b_bits, a_signed, True, acc_bits, mbits, DEFAULT_ROUNDING,
                                               output, depth=depth)
    return int(a_bits), bool(a_signed), acc_bits


def _prepared_activations(op, a, a_zp, a_m, a_k, w: LinearWeight, a_bits, a_signed, acc_bits, output=None):
    """Validate the activation side against a prepared weight (same checks as _wide_inputs)."""
    a_bits, a_signed, acc_bits = _prepared_attrs(op, a_bits, a_signed, acc_bits, w.mbits, w.bits, w.b.shape[1],
                                                 output)
    if rows_fit(a, a_zp, a_m, a_k, a_bits, a_signed, w.mbits, MAX_SHIFT) and a.shape[1] == w.b.shape[1]:
        return (np.ascontiguousarray(a), *(np.ascontiguousarray(v, dtype=np.int64) for v in (a_zp, a_m, a_k)),
                a_bits, acc_bits)
    a = int_operand(a, op, "a", bits=a_bits, signed=a_signed, ndim=2)
    if a.shape[1] != w.b.shape[1]:
        raise InputError(f"{op}: a is [M, K] = {a.shape} and b is [N, K] = {w.b.shape}: "
                         f"their K (last axis) must match")
    a_zp = int_input(a_zp, op, "a_zp", bits=a_bits, signed=a_signed, ndim=1)
    require_shape(a_zp, (a.shape[0],), op, "a_zp")
    a_m, a_k = _scale_vector(a_m, a_k, a.shape[0], op, "a", w.mbits)
    return a, a_zp, a_m, a_k, a_bits, acc_bits


def di_matmul_wide_prepared(a, a_zp, a_m, a_k, weight: LinearWeight, *, a_bits: int, a_signed: bool = False,
                            acc_bits: int = 32) -> WideOut:
    """:func:`di_matmul_wide` with b, b_zp, b_m, b_k given as a :func:`prepare_weight` result
    (its b_bits, b_signed, mbits and rounding apply). Same bits as di_matmul_wide_reference."""
    a, a_zp, a_m, a_k, a_bits, acc_bits = _prepared_activations(OP_WIDE, a, a_zp, a_m, a_k, weight, a_bits,
                                                                a_signed, acc_bits)
    return _wide_from_weight(OP_WIDE, a, a_zp, a_m, a_k, weight, a_bits, acc_bits)


def di_matmul_prepared(a, a_zp, a_m, a_k, weight: LinearWeight, *, a_bits: int, a_signed: bool = False,
                       acc_bits: int = 32, out_bits: int = 8, out_symmetric: bool = False,
                       zero_rows: str = "error") -> RowQuant:
    """:func:`di_matmul` with a :func:`prepare_weight` result (its b_bits, b_signed, mbits and
    rounding apply): the accumulation kernel, then the per-token requantization kernel."""
    a, a_zp, a_m, a_k, a_bits, acc_bits = _prepared_activations(OP, a, a_zp, a_m, a_k, weight, a_bits,
                                                                a_signed, acc_bits,
                                                                output=(out_bits, out_symmetric, zero_rows))
    wide = _wide_from_weight(OP, a, a_zp, a_m, a_k, weight, a_bits, acc_bits)
    return quantize_rows_2d(wide.p, wide.m, wide.k, bits=out_bits, symmetric=bool(out_symmetric),
                            mbits=weight.mbits, mode=weight.mode, zero_rows=zero_rows, tensor="di_matmul p")


# ----------------------------------------------------------------------------------------------
# di_matmul_av
# ----------------------------------------------------------------------------------------------

class _AvInputs(NamedTuple):
    p: np.ndarray
    v: np.ndarray
    v_m: np.ndarray
    v_k: np.ndarray
    p_frac_bits: int
    mode: object


def _av_inputs(op, p, v, v_m, v_k, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding,
               output: tuple | None = None) -> _AvInputs:
    """Validate attributes (and, for di_matmul_av, the ``output`` attributes), then the tensors."""
    mode, p_bits, p_frac_bits, v_bits, mbits, acc_bits = check_av_attrs(op, p_bits, p_frac_bits, v_bits, acc_bits,
                                                                         mbits, rounding, output)
    p = int_input(p, op, "p", bits=p_bits, signed=False, ndim=2)
    v = int_input(v, op, "v", bits=v_bits, signed=True, ndim=2)
    if p.shape[1] != v.shape[0]:
        raise InputError(f"{op}: p is [M, T] = {p.shape} and v is [T, D] = {v.shape}: "
                         f"their T (p's columns, v's rows) must match")
    v_m, v_k = _scale_vector(v_m, v_k, v.shape[0], op, "v", mbits)
    max_weight = ((1 << p_bits) - 1) * ((1 << mbits) - 1)  # p * v_m', unsigned p_bits + mbits
    _require_exact_int64(v.shape[0], max_weight * (1 << (v_bits - 1)), op, "acc")
    return _AvInputs(p, v, v_m, v_k, p_frac_bits, mode)


def _av_wide_reference(op, x: _AvInputs, acc_bits: int) -> WideOut:
    v_m_folded, kref = fold_scales_reference(x.v_m.tolist(), x.v_k.tolist(), x.mode)
    k_rows = _output_shifts([x.p_frac_bits] * x.p.shape[0], kref, op, "p_frac_bits")
    v_rows = x.v.tolist()
    acc = []
    for i, p_row in enumerate(x.p.tolist()):
        weights = [pt * v_m_folded[t] for t, pt in enumerate(p_row)]  # unsigned p_bits + mbits
        acc_row = []
        for d in range(x.v.shape[1]):
            total = 0
            for t, wt in enumerate(weights):
                total += wt * v_rows[t][d]
            acc_row.append(check_width_int(total, acc_bits, True, op, f"acc[{i},{d}]"))
        acc.append(acc_row)
    return WideOut(p=np.array(acc, dtype=np.int64).astype(storage_dtype(acc_bits, True)),
                   m=np.ones(len(acc), dtype=np.int64), k=np.array(k_rows, dtype=np.int64))


def _av_wide_fast(op, x: _AvInputs, acc_bits: int) -> WideOut:
    v_m_folded, kref = fold_scales(x.v_m, x.v_k, x.mode)
    kref = int(kref)
    k_rows = _output_shifts([x.p_frac_bits] * x.p.shape[0], kref, op, "p_frac_bits")
    weights = x.p * v_m_folded[None, :]  # < 2^(p_bits + mbits) <= 2^46: exact in int64
    v_t = np.ascontiguousarray(x.v.T).astype(np.int16)  # signed v_bits <= 16 fits int16
    acc = check_width(_dot(weights, v_t), acc_bits, True, op, "acc")
    return WideOut(p=acc.astype(storage_dtype(acc_bits, True)), m=np.ones(acc.shape[0], dtype=np.int64),
                   k=np.array(k_rows, dtype=np.int64))


def di_matmul_av_wide_reference(p, v, v_m, v_k, *, p_bits: int = 8, p_frac_bits: int = 8,
                                v_bits: int = 8, acc_bits: int = 48, mbits: int = DEFAULT_MBITS,
                                rounding=DEFAULT_ROUNDING) -> WideOut:
    """acc[i, d] = sum_t (p[i,t] * rshift_round(v_m[t], v_k[t] - kref)) * v[t,d] on Python ints,
    signed acc_bits, checked; row scale m = 1, k = p_frac_bits + kref (<= 63)."""
    x = _av_inputs(OP_AV_WIDE, p, v, v_m, v_k, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding)
    return _av_wide_reference(OP_AV_WIDE, x, acc_bits)


def di_matmul_av_wide(p, v, v_m, v_k, *, p_bits: int = 8, p_frac_bits: int = 8, v_bits: int = 8,
                      acc_bits: int = 48, mbits: int = DEFAULT_MBITS, rounding=DEFAULT_ROUNDING) -> WideOut:
    """Fast path of :func:`di_matmul_av_wide_reference`: int64 Numba accumulation over T."""
    x = _av_inputs(OP_AV_WIDE, p, v, v_m, v_k, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding)
    return _av_wide_fast(OP_AV_WIDE, x, acc_bits)


def di_matmul_av_wide_float(p, v, v_m, v_k, *, p_bits: int = 8, p_frac_bits: int = 8, v_bits: int = 8,
                            acc_bits: int = 48, mbits: int = DEFAULT_MBITS,
                            rounding=DEFAULT_ROUNDING) -> np.ndarray:
    """(p / 2^p_frac_bits) @ real(v) in float64: what m / 2^k * acc approximates (tests only)."""
    x = _av_inputs(OP_AV_WIDE, p, v, v_m, v_k, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding)
    real_p = x.p.astype(np.float64) * np.ldexp(1.0, -x.p_frac_bits)
    return real_p @ _real_rows(x.v, np.zeros(x.v.shape[0], dtype=np.int64), x.v_m, x.v_k)


def di_matmul_av_reference(p, v, v_m, v_k, *, p_bits: int = 8, p_frac_bits: int = 8, v_bits: int = 8,
                           acc_bits: int = 48, mbits: int = DEFAULT_MBITS, out_bits: int = 8,
                           out_symmetric: bool = False, rounding=DEFAULT_ROUNDING,
                           zero_rows: str = "error") -> RowQuant:
    """di_matmul_av_wide_reference, then quantize_rows_reference(acc, 1, p_frac_bits + kref,
    bits=out_bits, in_bits=acc_bits): dynamic per-token output, one rounding per element."""
    x = _av_inputs(OP_AV, p, v, v_m, v_k, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding,
                   output=(out_bits, out_symmetric, zero_rows))
    wide = _av_wide_reference(OP_AV, x, acc_bits)
    return quantize_rows_reference(wide.p, wide.m, wide.k, bits=out_bits, symmetric=out_symmetric,
                                   in_bits=acc_bits, mbits=mbits, rounding=rounding,
                                   zero_rows=zero_rows, tensor="di_matmul_av acc")


def di_matmul_av(p, v, v_m, v_k, *, p_bits: int = 8, p_frac_bits: int = 8, v_bits: int = 8,
                 acc_bits: int = 48, mbits: int = DEFAULT_MBITS, out_bits: int = 8,
                 out_symmetric: bool = False, rounding=DEFAULT_ROUNDING,
                 zero_rows: str = "error") -> RowQuant:
    """Fast path of :func:`di_matmul_av_reference`."""
    x = _av_inputs(OP_AV, p, v, v_m, v_k, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding,
                   output=(out_bits, out_symmetric, zero_rows))
    wide = _av_wide_fast(OP_AV, x, acc_bits)
    return quantize_rows(wide.p, wide.m, wide.k, bits=out_bits, symmetric=out_symmetric,
                         in_bits=acc_bits, mbits=mbits, rounding=rounding, zero_rows=zero_rows,
                         tensor="di_matmul_av acc")


def di_matmul_av_float(p, v, v_m, v_k, *, p_bits: int = 8, p_frac_bits: int = 8, v_bits: int = 8,
                       acc_bits: int = 48, mbits: int = DEFAULT_MBITS, out_bits: int = 8,
                       out_symmetric: bool = False, rounding=DEFAULT_ROUNDING,
                       zero_rows: str = "error") -> np.ndarray:
    """(p / 2^p_frac_bits) @ real(v) in float64: what the dequantized output approximates (tests only)."""
    _av_inputs(OP_AV, p, v, v_m, v_k, p_bits, p_frac_bits, v_bits, acc_bits, mbits, rounding,
               output=(out_bits, out_symmetric, zero_rows))
    return di_matmul_av_wide_float(p, v, v_m, v_k, p_bits=p_bits, p_frac_bits=p_frac_bits,
                                   v_bits=v_bits, acc_bits=acc_bits, mbits=mbits, rounding=rounding)


__all__ = [
    "LinearWeight", "WideOut", "accumulator_kernel", "di_matmul", "di_matmul_av", "di_matmul_av_float",
    "di_matmul_av_reference", "di_matmul_av_wide", "di_matmul_av_wide_float", "di_matmul_av_wide_reference",
    "di_matmul_float", "di_matmul_prepared", "di_matmul_reference", "di_matmul_wide", "di_matmul_wide_float",
    "di_matmul_wide_prepared", "di_matmul_wide_reference", "fold_scales", "fold_scales_reference",
    "matmul_accumulate",
    "matmul_accumulate_float", "matmul_accumulate_reference", "max_abs_difference", "prepare_weight",
]
