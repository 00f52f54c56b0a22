"""Hypothesis strategy of keyword-argument dicts for the integer Walsh–Hadamard transform ``di_hadamard``.

Edges on purpose: every supported kind of size (1, powers of two, Paley I and II bases alone and
times a power of two, 576 = 36·16), input widths 2..8 and 16, signed and unsigned, zero points at
the width's extremes, rows at the extremes (|t| reaches n (2^in_bits - 1), the declared bound),
rows equal to their zero point (t = 0: the zero-row policy), and rows whose transform is an
exact rounding tie of the requantization: q - zp = c (3 e_0 + e_1) gives t in {±4c, ±2c}, so
t·d/R = ±d/2 with d odd (both signs, both output kinds). Keyword arguments pin a choice.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from ilsim.testing.cases_norm import ROUNDINGS, ZERO_ROWS, edge_rows
from ilsim.testing.strategies import QUANT_BITS, ints, multipliers
from ilsim.widths import int_range

#: Transform sizes drawn: 1, powers of two, Paley bases (12, 20: Paley I; 28, 36: Paley II) and
#: base × 2^p (24, 48, 96, 192 = 12·2^p), and 576 = 36·16 (the target model's hidden size).
SIZES = (1, 2, 12, 20, 24, 28, 36, 48, 64, 96, 128, 192)
BIG_SIZES = (576,)
IN_BITS = QUANT_BITS + (16,)


def _pick(draw, value, strategy):
    return draw(strategy) if value is None else value


@st.composite
def _tie_rows(draw, rows: int, n: int, in_bits: int, in_signed: bool):
    """(q, zp) whose rows are zp + c (3 e_0 + e_1) · sign: a requantization tie at t = ±2c."""
    lo, hi = int_range(in_bits, in_signed)
    q = np.empty((rows, n), dtype=np.int64)
    zp = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        c = draw(st.integers(1, (hi - lo) // 3))
        negative = draw(st.booleans())
        zp[r] = hi if negative else lo
        sign = -1 if negative else 1
        q[r] = zp[r]
        q[r, 0] = zp[r] + sign * 3 * c
        q[r, 1] = zp[r] + sign * c
    return q, zp


@st.composite
def di_hadamard_cases(draw, in_bits=None, n=None, max_rows=4, rounding=None, ties=None, t_bits=None):
    """Keyword-argument dicts for :func:`ilsim.ops.hadamard.di_hadamard` (pin in_bits, n, rounding,
    ties or t_bits by keyword; ``t_bits`` None leaves the default bound, "narrow" draws a declared
    width below it so that large rows overflow it)."""
    in_bits = _pick(draw, in_bits, st.sampled_from(IN_BITS))
    in_signed = draw(st.booleans())
    n = _pick(draw, n, st.sampled_from(SIZES + BIG_SIZES))
    out_bits = draw(st.one_of(st.just(8), st.integers(2, 16)))
    mbits = draw(st.sampled_from([16, 16, 16, 4, 8, 24]))
    ties = _pick(draw, ties, st.integers(0, 3).map(lambda v: v == 0)) and n >= 2
    lead = draw(st.sampled_from([(), (), (1,), (2,)]))
    rows = draw(st.integers(1, max_rows))
    rows_shape = lead + (rows,) if lead else (rows,)
    if draw(st.integers(0, 5)) == 0:
        rows_shape = ()  # a 1-D input: one row
    n_rows = int(np.prod(rows_shape, dtype=np.int64))
    if ties:
        q, zp = draw(_tie_rows(n_rows, n, in_bits, in_signed))
    else:
        q = draw(edge_rows(in_bits, in_signed, (n_rows, n)))
        zp = np.array([draw(ints(in_bits, in_signed)) for _ in range(n_rows)], dtype=np.int64)
        for r in range(n_rows):
            pattern = draw(st.sampled_from(["keep"] * 6 + ["zp", "far"]))
            if pattern == "zp":  # the row equals its zero point: t = 0
                q[r] = zp[r]
            elif pattern == "far":  # |q - zp| = 2^in_bits - 1 everywhere: |t| up to the bound
                lo, hi = int_range(in_bits, in_signed)
                zp[r] = draw(st.sampled_from([lo, hi]))
                q[r] = hi if zp[r] == lo else lo
    m = np.array([draw(st.one_of(multipliers(mbits), st.just(0))) for _ in range(n_rows)], dtype=np.int64)
    # shifts that keep most output scales in [2^-64, 2^mbits); 0 is the edge where they leave it
    k = np.array([draw(st.one_of(st.sampled_from([0, 40]), st.integers(16, 40))) for _ in range(n_rows)],
                 dtype=np.int64)
    case = dict(q=q.reshape(rows_shape + (n,)), zp=zp.reshape(rows_shape), m=m.reshape(rows_shape),
                k=k.reshape(rows_shape), in_bits=in_bits, in_signed=in_signed, out_bits=out_bits,
                out_symmetric=draw(st.booleans()), mbits=mbits,
                rounding=_pick(draw, rounding, st.sampled_from(ROUNDINGS)),
                zero_rows=draw(st.sampled_from(ZERO_ROWS)))
    if t_bits == "narrow":
        bound = in_bits + 1 + (n - 1).bit_length()
        case["t_bits"] = draw(st.integers(2, bound - 1))
    elif t_bits is not None:
        case["t_bits"] = t_bits
    return case
