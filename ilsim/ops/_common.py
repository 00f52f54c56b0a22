"""Shared pieces of the operator modules: storage dtypes, attribute parsing, row-scale arrays."""

from __future__ import annotations

import functools

import numpy as np

from ilsim.arith.dyadic import MAX_SHIFT
from ilsim.errors import InputError, ZeroRangeError
from ilsim.widths import int_input


@functools.lru_cache(maxsize=256, typed=True)
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


def row_scale_arrays_any(m, k, rows_shape: tuple, op: str, name: str, mbits: int):
    """:func:`row_scale_arrays` for any row shape, including () (a 1-D tensor is one row).

    int_input returns a 0-d input as shape (1,), which does not broadcast to (); a single row is
    therefore validated as (1,) and reshaped back to ().
    """
    if tuple(rows_shape) == ():
        m_arr, k_arr = row_scale_arrays(m, k, (1,), op, name, mbits=mbits)
        return m_arr.reshape(()), k_arr.reshape(())
    return row_scale_arrays(m, k, rows_shape, op, name, mbits=mbits)


def reshape_rows(out, shape: tuple):
    """A per-row NamedTuple (q[rows, N], then per-row fields [rows]) reshaped to q.shape == shape
    and per-row fields of shape[:-1] (quantize_rows is called on 2-D data; see row_scale_arrays_any)."""
    q, *per_row = out
    return type(out)(q.reshape(shape), *(f.reshape(shape[:-1]) for f in per_row))


def require_nonzero_rows(x2d, op: str, tensor: str) -> None:
    """ZeroRangeError naming ``op`` and the first all-zero row of ``x2d`` [rows, N], if any.

    Operators with ``zero_rows="error"`` call this before quantize_rows, so that the reference
    and the fast path report the same first error whatever else is wrong with later rows.
    """
    zero = ~np.any(np.asarray(x2d) != 0, axis=1)
    if zero.any():
        r = int(np.argmax(zero))
        raise ZeroRangeError(f"{op}: row {r} of {tensor} is all zeros: a zero range has no output scale "
                             f"(pass zero_rows='zero' to quantize it to zeros)")


def memoized_attrs(check):
    """Cache an attribute check's result per argument values (``typed``: 1, True and np.int64(1)
    are different keys, as the checks treat them differently). Errors are not cached: a bad
    attribute raises on every call. Unhashable arguments skip the cache."""
    cached = functools.lru_cache(maxsize=1024, typed=True)(check)

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        try:
            hash((args, tuple(kwargs.items())))
        except TypeError:
            return check(*args, **kwargs)
        return cached(*args, **kwargs)

    return wrapper
