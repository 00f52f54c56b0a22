"""Quantized token embedding: a gather of symmetric per-row quantized table rows.

Contract (docs/spec/embedding.md). table[V, D] is signed int{bits}, symmetric (zp = 0), with a
per-row dyadic scale (table_m[V], table_k[V]): real(table[v, j]) = table_m[v] / 2^table_k[v] *
table[v, j]. For ids[...] (every id in [0, V), else InputError naming the first bad id and its
position) the output is the RowQuant
    q = table[ids]   (int{bits}),   zp = 0,   m = table_m[ids],   k = table_k[ids]
No arithmetic and no rounding happen at run time.

Offline (:func:`quantize_embedding_table`, export time, floats allowed there): per row,
s = absmax / (2^(bits-1) - 1) exactly (a Fraction), (m, k) = dyadic_from_scale(s, mbits), and
q_j = clamp(round_half_up(f_j * 2^k / m), -d, d) with d = 2^(bits-1) - 1, decided exactly (the
comparison of f_j * 2^k with (q +- 1/2) * m is exact in float64). An all-zero row gets q = 0,
m = 0, k = 0 (like quantize_rows with zero_rows="zero").
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS, dyadic_from_scale
from ilsim.errors import InputError
from ilsim.ops._common import row_scale_arrays, storage_dtype
from ilsim.ops.quantize import RowQuant
from ilsim.widths import int_input, int_operand, is_int, require_attr

OP = "embedding_lookup"
TABLE_OP = "quantize_embedding_table"


class EmbeddingTable(NamedTuple):
    """A symmetric per-row quantized table: real[v, j] = m[v] / 2^k[v] * q[v, j]."""

    q: np.ndarray
    m: np.ndarray
    k: np.ndarray


def check_attrs(bits, mbits, op=OP):
    for name, value in dict(bits=bits, mbits=mbits).items():
        require_attr(is_int(value), op,
                     f"{name} must be an int, got {value!r}")
    require_attr(2 <= bits <= 16, op, f"bits must be in [2, 16], got {bits}")
    require_attr(2 <= mbits <= 30, op, f"mbits must be in [2, 30], got {mbits}")


def prepare_table(table, table_m, table_k, *, bits=8, mbits=DEFAULT_MBITS) -> EmbeddingTable:
    """Validate a table once (int{bits} [V, D], its kept dtype; scales [V]) for
    :func:`embedding_lookup_prepared`."""
    check_attrs(bits, mbits)
    table = int_operand(table, OP, "table", bits=bits, signed=True, ndim=2)
    table_m, table_k = row_scale_arrays(table_m, table_k, (table.shape[0],), OP, "table", mbits=mbits)
    return EmbeddingTable(table, table_m, table_k)


def _ids(ids, vocab: int) -> np.ndarray:
    """Validate ids (InputError naming op and tensor); ids in [0, V) with the first bad one named."""
    if np.ndim(ids) < 1:  # checked first: int_input returns a 0-d input as shape (1,)
        raise InputError(f"{OP}: ids must have at least one dimension, got a scalar")
    ids = int_input(ids, OP, "ids")
    bad = (ids < 0) | (ids >= vocab)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(f"{OP}: ids[{','.join(map(str, pos))}] = {int(ids[pos])} is outside the "
                         f"vocabulary [0, {vocab})")
    return ids


def _inputs(ids, table, table_m, table_k, bits, mbits):
    """Validate every input: the table first, then the ids."""
    prepared = prepare_table(table, table_m, table_k, bits=bits, mbits=mbits)
    return (_ids(ids, prepared.q.shape[0]), *prepared)


def _pack(q, m, k, ids_shape, d, bits) -> RowQuant:
    return RowQuant(q=np.array(q, dtype=np.int64).reshape(ids_shape + (d,)).astype(storage_dtype(bits, True)),
                    zp=np.zeros(ids_shape, dtype=np.int64),
                    m=np.array(m, dtype=np.int64).reshape(ids_shape),
                    k=np.array(k, dtype=np.int64).reshape(ids_shape))


def embedding_lookup_reference(ids, table, table_m, table_k, *, bits=8, mbits=DEFAULT_MBITS) -> RowQuant:
    """Scalar reference: for each id in order, copy its table row and its scale."""
    ids, table, table_m, table_k = _inputs(ids, table, table_m, table_k, bits, mbits)
    rows, m_list, k_list = table.tolist(), table_m.tolist(), table_k.tolist()
    q, m, k = [], [], []
    for token in ids.reshape(-1).tolist():
        q.append(list(rows[token]))
        m.append(m_list[token])
        k.append(k_list[token])
    return _pack(q, m, k, ids.shape, table.shape[1], bits)


def embedding_lookup(ids, table, table_m, table_k, *, bits=8, mbits=DEFAULT_MBITS) -> RowQuant:
    """Gather table rows and their scales for ids[...]: q int{bits} [..., D], zp = 0, m, k [...]."""
    prepared = prepare_table(table, table_m, table_k, bits=bits, mbits=mbits)
    return embedding_lookup_prepared(ids, prepared, bits=bits)


def embedding_lookup_prepared(ids, prepared: EmbeddingTable, *, bits=8) -> RowQuant:
    """:func:`embedding_lookup` on a :func:`prepare_table` result (only the ids are validated)."""
    ids = _ids(ids, prepared.q.shape[0])
    return RowQuant(q=prepared.q[ids].astype(storage_dtype(bits, True), copy=False),
                    zp=np.zeros(ids.shape, dtype=np.int64), m=prepared.m[ids], k=prepared.k[ids])


def embedding_lookup_float(ids, table, table_m, table_k, *, bits=8, mbits=DEFAULT_MBITS) -> np.ndarray:
    """Float meaning (tests only): the dequantized rows m / 2^k * table[ids], in float64."""
    ids = np.asarray(ids)
    scale = np.asarray(table_m, dtype=np.float64) / np.exp2(np.asarray(table_k, dtype=np.float64))
    return np.asarray(table, dtype=np.float64)[ids] * scale[ids][..., None]


# --- offline: float table -> integer table with per-row dyadic scales ----------------------------

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
