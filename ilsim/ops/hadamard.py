"""Integer Walsh–Hadamard transform (DI-Hadamard): t = H_n (q - zp) exactly, then per-row requantization.

Contract (docs/spec/hadamard.md). Input rows q[..., n] of declared width ``in_bits``
(``in_signed``) with a per-row zero point zp (same width) and scale m / 2^k. Per row:
    x' = q - zp                                   int{in_bits + 1}, exact
    t  = H_n x'                                   int{t_bits}, exact, checked
    out = quantize_rows(t, m, k, bits=out_bits, symmetric=out_symmetric, rounding, zero_rows)
t_bits defaults to in_bits + 1 + ceil(log2 n), a bound (|t| <= n (2^in_bits - 1)), so the default
check cannot fail; a narrower declared t_bits is checked element by element. The only rounding is
quantize_rows' own. Real meaning: real(out) ~= H_n real(q), the *unnormalized* transform; the
1/n (or 1/sqrt n) of an orthogonal rotation is folded offline into the consumer's scales.

The matrix (:func:`hadamard_matrix`): n = b · 2^p with p as large as possible,
    H_n = H_b ⊗ H_{2^p}         (np.kron order: H_n[i1·2^p + i2, j1·2^p + j2] = H_b[i1, j1] H_{2^p}[i2, j2])
H_{2^p}[i, j] = (-1)^popcount(i & j) (Sylvester, natural order); H_1 = [1]; for b = 4u (u odd)
Paley I with q = b - 1 when that is a prime, else Paley II with q = b/2 - 1 when that is a
prime (:func:`hadamard_base`). Every construction is by rule, on Python ints.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS
from ilsim.arith.rounding import DEFAULT_ROUNDING, op_rounding
from ilsim.errors import InputError, WidthError
from ilsim.kernels.hadamard import run_hadamard_rows
from ilsim.ops._common import memoized_attrs, require_nonzero_rows, reshape_rows, row_scale_arrays_any
from ilsim.ops.quantize import RowQuant, quantize_rows_2d, quantize_rows_reference, require_zero_rows
from ilsim.widths import (check_width, check_width_int, int_input, int_operand, int_range, is_int, require_attr,
                          require_bool_attrs, require_int_attrs, rows_fit)

OP = "di_hadamard"
#: Largest transform size (keeps t within 41 bits at in_bits = 16).
MAX_SIZE = 1 << 24
#: Largest Paley base order b considered (b = 4u, u odd, 12 <= b <= MAX_BASE).
MAX_BASE = 252


class HadamardFactors(NamedTuple):
    """n = b · s: the base order b (1 or a Paley order) and the power of two s = 2^p."""

    b: int
    s: int


# --- the matrix ----------------------------------------------------------------------------------

def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, math.isqrt(q) + 1))


def paley_construction(b: int) -> tuple[str, int] | None:
    """("paley1", q) or ("paley2", q) for a supported base order b = 4u (u odd, 12 <= b <= MAX_BASE):
    Paley I when q = b - 1 is a prime, else Paley II when q = b/2 - 1 is a prime; None otherwise."""
    if not (is_int(b) and 12 <= b <= MAX_BASE and b % 4 == 0 and (b // 4) % 2 == 1):
        return None
    if _is_prime(b - 1):
        return "paley1", b - 1
    if _is_prime(b // 2 - 1):
        return "paley2", b // 2 - 1
    return None


def base_orders() -> tuple[int, ...]:
    """Every supported base order b: 1 and the Paley orders up to MAX_BASE, ascending."""
    return (1,) + tuple(b for b in range(12, MAX_BASE + 1, 8) if paley_construction(b))


def _conference(q: int) -> list[list[int]]:
    """C = [[0, 1ᵀ], [±1, Q]] of order q + 1 with Q[a][c] = chi(a - c) (chi: the quadratic character
    mod the prime q); the first column is -1 for q = 3 mod 4 (antisymmetric C), +1 for q = 1 mod 4."""
    squares = {(a * a) % q for a in range(1, q)}
    chi = [0] + [1 if a in squares else -1 for a in range(1, q)]
    sign = -1 if q % 4 == 3 else 1
    rows = [[0] + [1] * q]
    for a in range(q):
        rows.append([sign] + [chi[(a - c) % q] for c in range(q)])
    return rows


@functools.lru_cache(maxsize=None)
def _base_cached(b: int) -> np.ndarray:
    if b == 1:
        h = [[1]]
    else:
        kind, q = paley_construction(b)
        c = _conference(q)
        if kind == "paley1":  # H = I + C
            h = [[c[i][j] + (i == j) for j in range(q + 1)] for i in range(q + 1)]
        else:  # each 0 of C -> [[1, -1], [-1, -1]], each ±1 -> ±[[1, 1], [1, -1]]
            zero, one = ((1, -1), (-1, -1)), ((1, 1), (1, -1))
            h = [[c[i][j] * one[a][e] if c[i][j] else zero[a][e] for j in range(q + 1) for e in (0, 1)]
                 for i in range(q + 1) for a in (0, 1)]
    out = np.array(h, dtype=np.int8)
    out.setflags(write=False)
    return out


def hadamard_base(b: int) -> np.ndarray:
    """H_b (int8 ±1, read-only) for a supported base order b (see :func:`base_orders`)."""
    if b != 1 and paley_construction(b) is None:
        raise InputError(f"{OP}: b = {b!r} is not a supported base order; supported: {_orders_text()}")
    return _base_cached(int(b))


def sylvester_matrix(s: int) -> np.ndarray:
    """Sylvester's H_s (int8), s a power of two: H_1 = [1], H_2m = [[H_m, H_m], [H_m, -H_m]];
    equivalently H_s[i, j] = (-1)^popcount(i & j) (natural order)."""
    if not is_int(s) or s < 1 or s & (s - 1):
        raise InputError(f"{OP}: Sylvester order s must be a power of two, got {s!r}")
    h = np.ones((1, 1), dtype=np.int8)
    while h.shape[0] < s:
        h = np.block([[h, h], [h, -h]])
    return h


def _orders_text() -> str:
    return ", ".join(map(str, base_orders()[1:]))


def hadamard_factors(n) -> HadamardFactors:
    """(b, s) with n = b · s, s = 2^p the largest power of two that leaves a supported base order b.

    InputError naming the operator and n for any other n: supported are 1 <= n <= 2^24 with
    n = 2^p or n = b · 2^p, b in :func:`base_orders`.
    """
    if not is_int(n) or not 1 <= n <= MAX_SIZE:
        raise InputError(f"{OP}: n must be an int in [1, 2^24], got {n!r}")
    n = int(n)
    s = n & -n
    b = n // s
    if b > 1:  # odd part u > 1: the base is b = 4u
        b, s = 4 * b, s // 4
    if s < 1 or (b > 1 and paley_construction(b) is None):
        raise InputError(f"{OP}: n = {n} is not a supported Hadamard size; supported: n = 2^p or n = b·2^p "
                         f"(p >= 0, n <= 2^24) with b in {{{_orders_text()}}}")
    return HadamardFactors(b, s)


def hadamard_matrix(n) -> np.ndarray:
    """H_n = H_b ⊗ H_s (int8 ±1, H Hᵀ = n I): the exact matrix di_hadamard applies (n² bytes)."""
    b, s = hadamard_factors(n)
    return np.kron(hadamard_base(b), sylvester_matrix(s)).astype(np.int8)


def hadamard_transform_float(x, *, normalized: bool = False) -> np.ndarray:
    """H_n applied to the last axis of x in float64 (n = x.shape[-1]); divided by sqrt(n) if
    ``normalized`` (then orthogonal). Applied to the rows of a weight W it gives W Hᵀ (offline
    folding: W x = (W Hᵀ / n)(H x)). Butterflies for H_s, a matrix product for H_b."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1:
        raise InputError(f"{OP}: hadamard_transform_float needs at least one dimension, got a scalar")
    n = x.shape[-1]
    b, s = hadamard_factors(n)
    lead = x.shape[:-1]
    y = x.reshape(-1, b, s)
    half = 1
    while half < s:  # H_s = H_2 ⊗ ... ⊗ H_2: one H_2 per bit of the column index
        v = y.reshape(y.shape[0], b, s // (2 * half), 2, half)
        y = np.stack([v[:, :, :, 0] + v[:, :, :, 1], v[:, :, :, 0] - v[:, :, :, 1]], axis=3).reshape(-1, b, s)
        half *= 2
    if b > 1:
        y = hadamard_base(b).astype(np.float64) @ y
    y = y.reshape(lead + (n,))
    return y / np.sqrt(n) if normalized else y


# --- the operator --------------------------------------------------------------------------------

def t_bits_bound(in_bits: int, n: int) -> int:
    """in_bits + 1 + ceil(log2 n): |t| <= n (2^in_bits - 1) < 2^(in_bits + ceil(log2 n))."""
    return in_bits + 1 + (n - 1).bit_length()


@memoized_attrs
def check_attrs(in_bits, in_signed, out_bits, out_symmetric, t_bits, mbits, rounding, zero_rows):
    """InputError naming the operator unless every attribute is in its range; the rounding mode."""
    require_int_attrs(OP, in_bits=in_bits, out_bits=out_bits, mbits=mbits)
    require_bool_attrs(OP, in_signed=in_signed, out_symmetric=out_symmetric)
    require_attr(2 <= in_bits <= 16, OP, f"in_bits must be in [2, 16], got {in_bits}")
    require_attr(2 <= out_bits <= 16, OP, f"out_bits must be in [2, 16], got {out_bits}")
    require_attr(2 <= mbits <= 30, OP, f"mbits must be in [2, 30], got {mbits}")
    if t_bits is not None:
        require_int_attrs(OP, t_bits=t_bits)
        require_attr(2 <= t_bits <= 62 - out_bits, OP,
                     f"t_bits must be None or in [2, 62 - out_bits] = [2, {62 - out_bits}], got {t_bits}")
    require_zero_rows(OP, zero_rows)
    return op_rounding(OP, rounding)


def _inputs_that_fit(q, zp, m, k, in_bits, in_signed, mbits):
    """The validated tuple of :func:`_inputs` by one pass (:func:`ilsim.widths.rows_fit`) when q, zp,
    m, k are plain integer arrays of the row shape within their widths; None otherwise (then the
    detailed validation runs and names any error)."""
    if not (isinstance(q, np.ndarray) and q.ndim >= 1 and q.size):
        return None
    rows_shape = q.shape[:-1]
    if not all(isinstance(a, np.ndarray) and a.shape == rows_shape for a in (zp, m, k)):
        return None
    q2, zp2, m2, k2 = q.reshape(-1, q.shape[-1]), zp.reshape(-1), m.reshape(-1), k.reshape(-1)
    if not rows_fit(q2, zp2, m2, k2, in_bits, in_signed, mbits):
        return None
    zp2, m2, k2 = (np.ascontiguousarray(a, dtype=np.int64) for a in (zp2, m2, k2))
    return np.ascontiguousarray(q2), zp2, m2, k2, q.shape, hadamard_factors(q.shape[-1])


def _inputs(q, zp, m, k, in_bits, in_signed, mbits):
    """Validated (q [rows, n], zp [rows], m [rows], k [rows], shape, factors); InputError naming op and tensor."""
    if np.ndim(q) < 1:
        raise InputError(f"{OP}: q must have at least one dimension, got a scalar")
    fast = _inputs_that_fit(q, zp, m, k, in_bits, in_signed, mbits)
    if fast is not None:
        return fast
    q = int_operand(q, OP, "q", bits=in_bits, signed=in_signed)
    factors = hadamard_factors(q.shape[-1])
    rows_shape = q.shape[:-1]
    zp = int_input(zp, OP, "zp", bits=in_bits, signed=in_signed)
    try:
        zp = np.broadcast_to(zp, rows_shape or (1,))  # () : one row (int_input makes 0-d arrays 1-d)
    except ValueError:
        raise InputError(f"{OP}: zp shape {zp.shape} does not broadcast to the row shape {rows_shape}") from None
    m, k = row_scale_arrays_any(m, k, rows_shape, OP, "q", mbits=mbits)
    return (q.reshape(-1, q.shape[-1]), zp.reshape(-1), m.reshape(-1), k.reshape(-1), q.shape, factors)


def _out(t2d, m, k, shape, width, out_bits, out_symmetric, mbits, mode, zero_rows, reference: bool) -> RowQuant:
    """quantize_rows(t, m, k) of the [rows, n] transform, reshaped to q's shape."""
    if zero_rows == "error":
        require_nonzero_rows(t2d, OP, "t")
    try:
        if reference:
            out = quantize_rows_reference(t2d, m, k, bits=out_bits, symmetric=out_symmetric, in_bits=width,
                                          mbits=mbits, rounding=mode, zero_rows=zero_rows, tensor=f"{OP}.t")
        else:  # t is within width (checked), width + out_bits <= 62, m and k validated
            out = quantize_rows_2d(t2d, m, k, bits=out_bits, symmetric=out_symmetric, mbits=mbits, mode=mode,
                                   zero_rows=zero_rows, tensor=f"{OP}.t")
    except WidthError as err:  # an output scale outside [2^-64, 2^mbits): name this operator
        raise WidthError(f"{OP}: quantizing t: {err}") from None
    return reshape_rows(out, tuple(shape))


def di_hadamard_reference(q, zp, m, k, *, in_bits=8, in_signed=False, out_bits=8, out_symmetric=False,
                          t_bits=None, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING,
                          zero_rows="zero") -> RowQuant:
    """Scalar reference of the module contract: t_i = sum_j H_n[i, j] (q_j - zp) on Python ints (O(n²))."""
    mode = check_attrs(in_bits, in_signed, out_bits, out_symmetric, t_bits, mbits, rounding, zero_rows)
    x, zp, m, k, shape, _ = _inputs(q, zp, m, k, in_bits, in_signed, mbits)
    n = shape[-1]
    width = t_bits_bound(in_bits, n) if t_bits is None else t_bits
    h = hadamard_matrix(n).tolist()
    t = []
    for r, (row, z) in enumerate(zip(x.tolist(), zp.tolist())):
        centred = [v - z for v in row]
        t.append([check_width_int(sum(hij * v for hij, v in zip(h_row, centred)), width, True, OP, f"t[{r},{i}]")
                  for i, h_row in enumerate(h)])
    t2d = np.array(t, dtype=np.int64).reshape(-1, n)
    return _out(t2d, m, k, shape, width, out_bits, out_symmetric, mbits, mode, zero_rows, reference=True)


def di_hadamard(q, zp, m, k, *, in_bits=8, in_signed=False, out_bits=8, out_symmetric=False, t_bits=None,
                mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING, zero_rows="zero") -> RowQuant:
    """H_n (q - zp) per row, exact (int{t_bits}), requantized per row by quantize_rows(t, m, k).

    Fast path: the Numba kernel ilsim.kernels.hadamard (H_b pass, then butterflies for H_{2^p}).
    Output uint{out_bits} asymmetric or int{out_bits} symmetric; real meaning H_n · real(q).
    """
    mode = check_attrs(in_bits, in_signed, out_bits, out_symmetric, t_bits, mbits, rounding, zero_rows)
    x, zp, m, k, shape, (b, s) = _inputs(q, zp, m, k, in_bits, in_signed, mbits)
    width = t_bits_bound(in_bits, shape[-1]) if t_bits is None else t_bits
    lo, hi = int_range(width, True)
    t2d, bad = run_hadamard_rows(x, zp, hadamard_base(b), s, lo, hi)
    if bad.any():  # name the first element outside the declared width
        check_width(t2d, width, True, OP, "t")
    return _out(t2d, m, k, shape, width, out_bits, out_symmetric, mbits, mode, zero_rows, reference=False)


def di_hadamard_float(q, zp, m, k, *, in_bits=8, in_signed=False, out_bits=8, out_symmetric=False,
                      t_bits=None, mbits=DEFAULT_MBITS, rounding=DEFAULT_ROUNDING, zero_rows="zero") -> np.ndarray:
    """Float meaning (tests only): H_n (unnormalized) applied to each dequantized row, in float64."""
    q = np.asarray(q, dtype=np.float64)
    rows = q.shape[:-1]
    scale = np.broadcast_to(np.asarray(m, dtype=np.float64) / np.exp2(np.asarray(k, dtype=np.float64)), rows)
    real = (q - np.broadcast_to(np.asarray(zp, dtype=np.float64), rows)[..., None]) * scale[..., None]
    return hadamard_transform_float(real)


__all__ = ["HadamardFactors", "base_orders", "check_attrs", "di_hadamard", "di_hadamard_float", "di_hadamard_reference",
           "hadamard_base", "hadamard_factors", "hadamard_matrix", "hadamard_transform_float",
           "paley_construction", "sylvester_matrix", "t_bits_bound"]
