"""Declared bit widths: the integer range of a width, and the checks that make overflow loud.

Every tensor an operator reads or writes has a declared width (bits, signed or not). Inputs are
validated against it (:func:`int_input`); intermediates and outputs are checked against theirs
(:func:`check_width`). A violation raises with the operator, the tensor, the first offending
index and its value; nothing ever wraps silently.
"""

from __future__ import annotations

import numpy as np

from ilsim.errors import InputError, WidthError
from ilsim.kernels.checks import rows_within, rows_within_parallel


def int_range(bits: int, signed: bool) -> tuple[int, int]:
    """Inclusive [lo, hi] of a two's complement (signed) or unsigned integer of ``bits`` bits."""
    if bits < 1 or (signed and bits < 2):
        raise InputError(f"invalid width: {bits}-bit {'signed' if signed else 'unsigned'}")
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def describe(bits: int, signed: bool) -> str:
    lo, hi = int_range(bits, signed)
    return f"{'int' if signed else 'uint'}{bits} [{lo}, {hi}]"


def _first_outside(a: np.ndarray, lo: int, hi: int):
    bad = np.argwhere((a < lo) | (a > hi))
    idx = tuple(int(i) for i in bad[0])
    return idx, int(a[idx])


def _element(name: str, idx: tuple) -> str:
    """'x[1,2]' for an element of an array, plain 'x' for a scalar (0-d) tensor."""
    return f"{name}[{','.join(map(str, idx))}]" if idx else name


def check_width(a, bits: int, signed: bool, op: str, tensor: str) -> np.ndarray:
    """Raise WidthError unless every element of ``a`` fits the declared width; returns ``a``."""
    lo, hi = int_range(bits, signed)
    arr = np.asarray(a)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        idx, val = _first_outside(arr, lo, hi)
        raise WidthError(f"{op}: {_element(tensor, idx)} = {val} overflows its declared "
                         f"width {describe(bits, signed)}")
    return a


def check_width_int(value: int, bits: int, signed: bool, op: str, tensor: str) -> int:
    """Scalar (Python int) twin of :func:`check_width`, used by the scalar references."""
    lo, hi = int_range(bits, signed)
    if not lo <= value <= hi:
        raise WidthError(f"{op}: {tensor} = {value} overflows its declared width {describe(bits, signed)}")
    return value


def int_operand(x, op: str, name: str, bits: int | None = None, signed: bool = True,
                ndim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Validate an operator input and return it C-contiguous in its own integer dtype.

    Rejects (InputError, naming ``op`` and ``name``): non-integer dtypes (bool and float
    included), the wrong number of dimensions, empty arrays (unless allowed), uint64 values of
    2^63 or more, and values outside the declared width when ``bits`` is given.
    """
    if isinstance(x, (bool, float)) or (isinstance(x, np.ndarray) and x.dtype.kind not in "iu"):
        dtype = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise InputError(f"{op}: {name} must be an integer array, got dtype {dtype}")
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise InputError(f"{op}: {name} must be an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{op}: {name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise InputError(f"{op}: {name} is empty (shape {arr.shape})")
    lo, hi = int_range(bits, signed) if bits is not None else (-(1 << 63), (1 << 63) - 1)
    dtype_range = np.iinfo(arr.dtype)
    if arr.size and (dtype_range.min < lo or dtype_range.max > hi):  # else every value of the dtype fits
        lo_seen, hi_seen = _min_max(arr)
        if arr.dtype == np.uint64 and hi_seen >= 1 << 63:
            raise InputError(f"{op}: {name} holds a uint64 value >= 2^63, outside every supported width")
        if lo_seen < lo or hi_seen > hi:
            idx, val = _first_outside(arr, lo, hi)
            raise InputError(f"{op}: {_element(name, idx)} = {val} is outside its declared "
                             f"width {describe(bits, signed)}")
    return np.ascontiguousarray(arr).reshape(arr.shape)  # keeps a 0-d input 0-d


#: Up to this many elements, Python's min/max on a list beats two NumPy reductions.
_SMALL = 32


def _min_max(arr: np.ndarray) -> tuple[int, int]:
    """(min, max) of a non-empty integer array, as Python ints."""
    if arr.size <= _SMALL:
        values = arr.ravel().tolist()
        return min(values), max(values)
    return int(arr.min()), int(arr.max())


def int_input(x, op: str, name: str, bits: int | None = None, signed: bool = True,
              ndim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """:func:`int_operand`, returned as a C-contiguous int64 array."""
    arr = int_operand(x, op, name, bits, signed, ndim, allow_empty)
    return np.ascontiguousarray(arr, dtype=np.int64).reshape(arr.shape)


def _plain_ints(x, ndim: int) -> bool:
    """A NumPy integer array (bool and uint64 excluded) of ``ndim`` dimensions, not empty."""
    return (isinstance(x, np.ndarray) and x.dtype.kind in "iu" and x.dtype != np.uint64 and x.ndim == ndim
            and x.size > 0)


def rows_fit(q, zp, m, k, bits: int, signed: bool, mbits: int, max_shift: int = 63, min_m: int = 0) -> bool:
    """Fast acceptance test of a per-row quantized operand: q a 2-D integer array [rows, N] of
    ``bits`` (signed or not), zp [rows] of the same width, m [rows] in [0, 2^mbits), k [rows] in
    [0, max_shift], all plain integer arrays. True means the detailed validation (int_input and
    friends) would accept them; False means nothing: run the detailed validation, which raises
    the precise error (or accepts a form this test does not cover, such as broadcast scales)."""
    if not (_plain_ints(q, 2) and _plain_ints(zp, 1) and _plain_ints(m, 1) and _plain_ints(k, 1)):
        return False
    rows = q.shape[0]
    if zp.shape[0] != rows or m.shape[0] != rows or k.shape[0] != rows:
        return False
    lo, hi = int_range(bits, signed)
    check = rows_within_parallel if q.size >= 1 << 16 else rows_within
    return bool(check(q, zp, m, k, lo, hi, min_m, (1 << mbits) - 1, max_shift))


def require_shape(arr: np.ndarray, shape: tuple, op: str, name: str) -> None:
    """InputError unless ``arr.shape == shape``."""
    if tuple(arr.shape) != tuple(shape):
        raise InputError(f"{op}: {name} must have shape {tuple(shape)}, got {tuple(arr.shape)}")


def is_int(value) -> bool:
    """A Python or NumPy integer that is not a bool: what an integer attribute must be."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def require_int_attrs(op: str, **values) -> None:
    """InputError naming ``op`` and the attribute unless every value is an integer (bools refused)."""
    for name, value in values.items():
        require_attr(is_int(value), op, f"{name} must be an int, got {value!r}")


def require_bool_attrs(op: str, **values) -> None:
    """InputError naming ``op`` and the attribute unless every value is a bool."""
    for name, value in values.items():
        require_attr(isinstance(value, (bool, np.bool_)), op, f"{name} must be a bool, got {value!r}")


def require_attr(cond: bool, op: str, message: str) -> None:
    """InputError with the operator's name unless ``cond`` holds (attribute checks)."""
    if not cond:
        raise InputError(f"{op}: {message}")
