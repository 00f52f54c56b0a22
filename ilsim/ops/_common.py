"""Shared pieces of the operator modules: storage dtypes, attribute parsing, row-scale arrays."""

from __future__ import annotations

import numpy as np

from ilsim.arith.dyadic import MAX_SHIFT
from ilsim.errors import InputError
from ilsim.widths import int_input


def storage_dtype(bits: int, signed: bool) -> np.dtype:
    """The smallest NumPy integer dtype that holds every value of the declared width."""
    for width, signed_type, unsigned_type in ((8, np.int8, np.uint8), (16, np.int16, np.uint16),
                                              (32, np.int32, np.uint32)):
        if bits <= width:
            return np.dtype(signed_type if signed else unsigned_type)
    if bits <= (64 if signed else 63):
        return np.dtype(np.int64)
    raise InputError(f"no storage dtype for a {bits}-bit {'signed' if signed else 'unsigned'} value")


def row_scale_arrays(m, k, rows_shape: tuple, op: str, name: str, mbits: int):
    """Validate per-row dyadic scale arrays (m in [0, 2^mbits), k in [0, 63]) broadcast to rows_shape."""
    m_arr = int_input(m, op, f"{name}.m", bits=mbits, signed=False, allow_empty=True)
    k_arr = int_input(k, op, f"{name}.k", allow_empty=True)
    if k_arr.size and (int(k_arr.min()) < 0 or int(k_arr.max()) > MAX_SHIFT):
        raise InputError(f"{op}: {name}.k must be in [0, {MAX_SHIFT}], got range "
                         f"[{int(k_arr.min())}, {int(k_arr.max())}]")
    try:
        m_arr = np.broadcast_to(m_arr, rows_shape)
        k_arr = np.broadcast_to(k_arr, rows_shape)
    except ValueError:
        raise InputError(f"{op}: {name} scale shapes {np.shape(m)}/{np.shape(k)} do not broadcast "
                         f"to the row shape {rows_shape}") from None
    return np.ascontiguousarray(m_arr), np.ascontiguousarray(k_arr)
