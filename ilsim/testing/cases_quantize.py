"""Case strategies for dynamic per-row quantization (``quantize_rows``)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ilsim.testing.strategies import int_arrays, row_scales, shapes_2d


@st.composite
def quantize_rows_cases(draw, allow_zero_rows: bool = True):
    """Keyword arguments for quantize_rows: wide inputs (up to in_bits), all widths and modes."""
    bits = draw(st.sampled_from([2, 3, 4, 5, 6, 7, 8, 16]))
    in_bits = draw(st.sampled_from([2, 8, 17, 32, 62 - bits]))
    shape = draw(shapes_2d(max_rows=5, max_cols=9))
    x = draw(int_arrays(in_bits, signed=True, shape=shape, row_patterns=allow_zero_rows))
    m, _ = draw(row_scales(shape[:-1]))
    if draw(st.integers(0, 3)) == 0:      # a zero input scale (m_in = 0) on some rows: a legal input
        m = np.where(np.array(draw(st.lists(st.booleans(), min_size=shape[0], max_size=shape[0]))), 0, m)
    # shifts that keep the output scale in [2^-64, 2^16) for most ranges (the edges of that
    # window are WidthErrors by contract, and tests check both paths raise them alike)
    k_lo = max(0, in_bits + 2 - bits)
    k_hi = max(k_lo, 47 - bits)
    k = draw(st.lists(st.integers(k_lo, k_hi), min_size=shape[0], max_size=shape[0]))
    return dict(x=x, m_in=m, k_in=np.array(k, dtype=np.int64), bits=bits, in_bits=in_bits,
                symmetric=draw(st.booleans()),
                rounding=draw(st.sampled_from(["half_up", "half_away", "half_even", "floor", "trunc"])),
                zero_rows="zero")
