"""The embedding table, quantized at export (docs/spec/embedding.md, "Offline"): floats allowed
here; the integer table it returns is what ilsim.ops.embedding.embedding_lookup gathers from."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, dyadic_from_scale
from ilsim.errors import InputError
from ilsim.ops._common import storage_dtype
from ilsim.ops.embedding import EmbeddingTable, check_attrs

TABLE_OP = "quantize_embedding_table"


def _round_rows_exact(values: np.ndarray, m: np.ndarray, k: np.ndarray) -> np.ndarray:
    """round_half_up(values * 2^k / m) per row, exactly, for |values * 2^k / m| below 2^40.

    t = values * 2^k is exact (np.ldexp scales by a power of two) and the boundaries
    (q +- 1/2) * m = (2q +- 1) * m / 2 are exact float64 integers-halves (|(2q+1) m| < 2^53), so
    the comparisons that fix the float guess are exact: the result is floor(t / m + 1/2).
    """
    t = np.ldexp(values, k[:, None].astype(np.int32))
    mf = m[:, None].astype(np.float64)
    q = np.floor(t / mf + 0.5)
    for _ in range(2):  # the guess is off by at most one; two passes prove it
        q = np.where(t >= (2 * q + 1) * mf / 2, q + 1, q)
        q = np.where(t < (2 * q - 1) * mf / 2, q - 1, q)
    return q.astype(np.int64)


def quantize_embedding_table(float_table, bits: int = 8, mbits: int = DEFAULT_MBITS) -> EmbeddingTable:
    """Symmetric per-row quantization of a float table [V, D] (export time; floats allowed here).

    Per row: s = absmax / (2^(bits-1) - 1) as an exact Fraction, (m, k) = dyadic_from_scale(s, mbits),
    q = clamp(round_half_up(f * 2^k / m), -d, d) decided exactly; all-zero rows: q = 0, m = k = 0.
    Deterministic on every platform (exact rational scale, exact rounding decisions).
    """
    check_attrs(bits, mbits, op=TABLE_OP)
    table = np.asarray(float_table)
    if table.dtype.kind != "f":
        raise InputError(f"{TABLE_OP}: float_table must be a float array, got dtype {table.dtype}")
    table = table.astype(np.float64)  # exact widening of float16/32
    if table.ndim != 2 or table.size == 0:
        raise InputError(f"{TABLE_OP}: float_table must be a non-empty [V, D] array, got shape {table.shape}")
    if not np.isfinite(table).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(table))[0])
        raise InputError(f"{TABLE_OP}: float_table[{idx[0]},{idx[1]}] = {table[idx]} is not finite")
    levels = (1 << (bits - 1)) - 1
    absmax = np.abs(table).max(axis=1)
    m = np.zeros(table.shape[0], dtype=np.int64)
    k = np.zeros(table.shape[0], dtype=np.int64)
    for v, a in enumerate(absmax.tolist()):
        if a == 0:
            continue
        try:
            scale = dyadic_from_scale(Fraction(a) / levels, mbits=mbits)
        except InputError as err:
            raise InputError(f"{TABLE_OP}: row {v}: {err}") from None
        m[v], k[v] = scale.m, scale.k
    q = np.zeros(table.shape, dtype=np.int64)
    live = m > 0
    if live.any():
        q[live] = np.clip(_round_rows_exact(table[live], m[live], k[live]), -levels, levels)
    return EmbeddingTable(q=q.astype(storage_dtype(bits, True)), m=m, k=k)
