"""Hypothesis strategies that aim at the edges on purpose.

Every integer strategy here mixes uniform draws with the values where integer code breaks:
the extremes of the width and their neighbours, zero, +-1, and (for rounding) exact ties.
Use them in your own property tests; they are public API.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ilsim.widths import int_range

#: Activation and weight widths the I-LLM configurations use (W2A2 .. W8A8).
QUANT_BITS = (2, 3, 4, 5, 6, 7, 8)


def edge_values(bits: int, signed: bool) -> list[int]:
    """The values of an n-bit range where bugs live: both ends, their neighbours, 0, +-1."""
    lo, hi = int_range(bits, signed)
    vals = {lo, lo + 1, hi - 1, hi, 0, 1, -1, hi // 2, (hi // 2) + 1, lo // 2}
    return sorted(v for v in vals if lo <= v <= hi)


def ints(bits: int, signed: bool = True) -> st.SearchStrategy[int]:
    """One integer of the declared width, edges drawn about half the time."""
    lo, hi = int_range(bits, signed)
    return st.one_of(st.sampled_from(edge_values(bits, signed)), st.integers(lo, hi))


def shapes_2d(max_rows: int = 6, max_cols: int = 12, min_rows: int = 1, min_cols: int = 1):
    """(rows, cols) with small and odd sizes favoured (hidden sizes that are not powers of two)."""
    return st.tuples(st.integers(min_rows, max_rows), st.integers(min_cols, max_cols))


@st.composite
def int_arrays(draw, bits: int, signed: bool = True, shape=None, row_patterns: bool = True):
    """An int64 array of the declared width; with ``row_patterns`` some rows are made constant,
    all-extreme or all-zero (the zero-range row), because per-row code breaks on those."""
    if shape is None:
        shape = draw(shapes_2d())
    shape = tuple(shape)
    arr = draw(hnp.arrays(np.int64, shape, elements=ints(bits, signed)))
    if row_patterns and arr.ndim >= 1 and arr.size:
        lo, hi = int_range(bits, signed)
        flat = arr.reshape(-1, shape[-1])
        for r in range(flat.shape[0]):
            pattern = draw(st.sampled_from(["keep"] * 6 + ["const", "lo", "hi", "zero"]))
            if pattern == "const":
                flat[r] = draw(st.integers(lo, hi))
            elif pattern == "lo":
                flat[r] = lo
            elif pattern == "hi":
                flat[r] = hi
            elif pattern == "zero":
                flat[r] = 0
    return arr


def nonzero_rows(arr: np.ndarray) -> bool:
    """True when no row of ``arr`` is all zeros (for contracts that reject zero-range rows)."""
    return bool(arr.size) and bool(np.all(np.any(arr.reshape(-1, arr.shape[-1]) != 0, axis=1)))


def multipliers(mbits: int = 16) -> st.SearchStrategy[int]:
    """A dyadic multiplier m: normalised [2^(mbits-1), 2^mbits) mostly, plus 1 and the extremes."""
    return st.one_of(st.sampled_from([1, 1 << (mbits - 1), (1 << mbits) - 1]),
                     st.integers(1 << (mbits - 1), (1 << mbits) - 1), st.integers(1, (1 << mbits) - 1))


def shifts(max_shift: int = 40) -> st.SearchStrategy[int]:
    """A shift amount k in [0, max_shift], with 0, 1 and the maximum favoured."""
    return st.one_of(st.sampled_from([0, 1, max_shift]), st.integers(0, max_shift))


@st.composite
def row_scales(draw, rows_shape, mbits: int = 16, max_shift: int = 40):
    """Per-row dyadic scales (m, k) as int64 arrays of ``rows_shape``."""
    n = int(np.prod(rows_shape, dtype=np.int64)) if rows_shape else 1
    m = np.array([draw(multipliers(mbits)) for _ in range(n)], dtype=np.int64).reshape(rows_shape)
    k = np.array([draw(shifts(max_shift)) for _ in range(n)], dtype=np.int64).reshape(rows_shape)
    return m, k


@st.composite
def tie_shift_cases(draw, max_bits: int = 61):
    """(x, s) with |x| < 2^(max_bits + 1) whose s shifted-out bits are exactly 100...0 (a rounding
    tie), either sign; s in [1, max_bits]."""
    s = draw(st.integers(1, max_bits))
    high_bits = max_bits - s
    high = draw(st.integers(-(1 << high_bits), (1 << high_bits) - 1))
    return (high << s) + (1 << (s - 1)), s


@st.composite
def tie_division_cases(draw, max_bits: int = 40):
    """(a, b) with a / b exactly halfway between two integers (b even), either sign."""
    half_b = draw(st.integers(1, (1 << (max_bits // 2)) - 1))
    b = 2 * half_b
    q = draw(st.integers(-(1 << (max_bits // 2)), 1 << (max_bits // 2)))
    return q * b + half_b, b
