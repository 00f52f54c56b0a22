"""Quantized token embedding: a gather of symmetric per-row quantized table rows.

Contract (docs/spec/embedding.md). table[V, D] is signed int{bits}, symmetric (zp = 0), with a
per-row dyadic scale (table_m[V], table_k[V]): real(table[v, j]) = table_m[v] / 2^table_k[v] *
table[v, j]. For ids[...] (every id in [0, V), else InputError naming the first bad id and its
position) the output is the RowQuant
    q = table[ids]   (int{bits}),   zp = 0,   m = table_m[ids],   k = table_k[ids]
No arithmetic and no rounding happen at run time.

Offline (ilsim.export.embedding_table.quantize_embedding_table, export time, floats allowed
there): per row,
s = absmax / (2^(bits-1) - 1) exactly (a Fraction), (m, k) = dyadic_from_scale(s, mbits), and
q_j = clamp(round_half_up(f_j * 2^k / m), -d, d) with d = 2^(bits-1) - 1, decided exactly (the
comparison of f_j * 2^k with (q +- 1/2) * m is exact in float64). An all-zero row gets q = 0,
m = 0, k = 0 (like quantize_rows with zero_rows="zero").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS
from ilsim.errors import InputError
from ilsim.ops._common import row_scale_arrays, storage_dtype
from ilsim.ops.quantize import RowQuant
from ilsim.widths import int_input, int_operand, is_int, require_attr

OP = "embedding_lookup"


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
