"""Quantized embedding: lookup fast path == scalar reference bit for bit, the offline table
quantizer rounds exactly (ties half up) within half a step, and every bad input is named."""

from __future__ import annotations

from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from ilsim.errors import InputError
from ilsim.export.embedding_table import quantize_embedding_table
from ilsim.ops.embedding import embedding_lookup, embedding_lookup_float, embedding_lookup_reference
from ilsim.ops.registry import get_op
from ilsim.testing.cases_norm import embedding_lookup_cases
from ilsim.testing.parity import assert_same, outcome


@given(embedding_lookup_cases())
def test_lookup_fast_equals_reference(case):
    assert_same(outcome(embedding_lookup, case), outcome(embedding_lookup_reference, case))


def test_lookup_gathers_rows_and_scales():
    table = np.array([[1, -2], [3, 4], [-127, 127]])
    out = embedding_lookup([[2, 0], [2, 1]], table, [10, 20, 30], [1, 2, 3])
    assert out.q.tolist() == [[[-127, 127], [1, -2]], [[-127, 127], [3, 4]]]
    assert out.q.dtype == np.int8 and out.zp.tolist() == [[0, 0], [0, 0]]
    assert out.m.tolist() == [[30, 10], [30, 20]] and out.k.tolist() == [[3, 1], [3, 2]]
    real = embedding_lookup_float([[2, 0], [2, 1]], table, [10, 20, 30], [1, 2, 3])
    assert real[0, 0].tolist() == [-127 * 30 / 8, 127 * 30 / 8]


def test_registry_lists_embedding_lookup():
    op = get_op("embedding_lookup")
    assert op.fast is embedding_lookup and op.reference is embedding_lookup_reference
    assert op.float_meaning is embedding_lookup_float and op.spec == "docs/spec/embedding.md"


# --- the offline table quantizer ---------------------------------------------------------------

def exact_quantize_row(row, m, k, levels):
    """The contract on Fractions: clamp(floor(f * 2^k / m + 1/2), -d, d)."""
    return [max(-levels, min(levels, math.floor(Fraction(v) * (1 << k) / m + Fraction(1, 2)))) for v in row]


finite_tables = hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 9)),
                           elements=st.one_of(st.floats(-1e3, 1e3, allow_subnormal=True), st.just(0.0),
                                              st.sampled_from([1e-30, -2.5, 0.5, 1.5])))


@given(finite_tables, st.sampled_from([2, 4, 8, 16]), st.sampled_from([4, 16, 30]))
def test_table_quantizer_rounds_exactly_and_within_half_a_step(table, bits, mbits):
    try:
        out = quantize_embedding_table(table, bits=bits, mbits=mbits)
    except InputError as err:  # a row scale absmax/d outside [2^-64, 2^mbits): no dyadic m/2^k
        assert "does not fit" in str(err) or "rounds to 0" in str(err)
        return
    levels = (1 << (bits - 1)) - 1
    for v in range(table.shape[0]):
        m, k = int(out.m[v]), int(out.k[v])
        if m == 0:
            assert not table[v].any() and not out.q[v].any() and k == 0
            continue
        assert out.q[v].tolist() == exact_quantize_row(table[v].tolist(), m, k, levels)
        step = Fraction(m, 1 << k)
        # half a step, except where the saturating clamp acts: the dyadic scale is relatively at most
        # 1/(2^mbits - 1/2) below absmax/d, so a clamped element is off by <= d*(s - step) <= d*step/(2^mbits - 2)
        for f, q in zip(table[v].tolist(), out.q[v].tolist()):
            err = abs(q * step - Fraction(f))
            assert err <= step / 2 or (abs(q) == levels and err <= levels * step / (2**mbits - 2))


def test_table_quantizer_ties_round_half_up():
    table = np.array([[1.0, 0.0, 0.0]])
    out = quantize_embedding_table(table, bits=8)
    m, k = int(out.m[0]), int(out.k[0])
    tie = (21 * m) / 2.0 ** (k + 1)  # exactly (10 + 1/2) steps, representable in float64
    table = np.array([[1.0, tie, -tie]])
    again = quantize_embedding_table(table, bits=8)
    assert (int(again.m[0]), int(again.k[0])) == (m, k)
    assert again.q[0].tolist() == [127, 11, -10]


def test_all_zero_rows_get_zero_scale():
    out = quantize_embedding_table(np.array([[0.0, 0.0], [0.5, -1.0]], dtype=np.float32), bits=4)
    assert out.q[0].tolist() == [0, 0] and out.m[0] == 0 and out.k[0] == 0
    assert out.q[1].tolist() == [4, -7] and out.q.dtype == np.int8


@pytest.mark.parametrize("table, kwargs, pattern", [
    (np.array([[1, 2]]), {}, r"quantize_embedding_table: float_table must be a float array, got dtype int64"),
    (np.array([1.0, 2.0]), {}, r"quantize_embedding_table: float_table must be a non-empty \[V, D\] array"),
    (np.array([[1.0, np.nan]]), {}, r"quantize_embedding_table: float_table\[0,1\] = nan is not finite"),
    (np.array([[1.0]]), dict(bits=1), r"quantize_embedding_table: bits must be in \[2, 16\], got 1"),
    (np.array([[1e300]]), {}, r"quantize_embedding_table: row 0: .*does not fit 16 bits"),
])
def test_bad_float_tables_are_input_errors(table, kwargs, pattern):
    with pytest.raises(InputError, match=pattern):
        quantize_embedding_table(table, **kwargs)


# --- lookup input errors -----------------------------------------------------------------------

GOOD = dict(ids=np.array([0, 2]), table=np.array([[1, 2], [3, 4], [5, 6]]), table_m=[1, 2, 3], table_k=[0, 1, 2])


@pytest.mark.parametrize("change, pattern", [
    (dict(ids=np.array([0, 3, 5])), r"embedding_lookup: ids\[1\] = 3 is outside the vocabulary \[0, 3\)"),
    (dict(ids=np.array([[0, 1], [-1, 0]])), r"embedding_lookup: ids\[1,0\] = -1 is outside the vocabulary"),
    (dict(ids=np.array([0.0, 1.0])), r"embedding_lookup: ids must be an integer array, got dtype float64"),
    (dict(ids=np.int64(1)), r"embedding_lookup: ids must have at least one dimension"),
    (dict(ids=np.zeros(0, dtype=np.int64)), r"embedding_lookup: ids is empty"),
    (dict(table=np.array([1, 2, 3])), r"embedding_lookup: table must have 2 dimension\(s\), got shape \(3,\)"),
    (dict(table=np.array([[1, 2], [3, 4], [5, 128]])),
     r"embedding_lookup: table\[2,1\] = 128 is outside its declared width int8"),
    (dict(table_m=[1, 2]), r"embedding_lookup: table scale shapes \(2,\)/\(3,\) do not broadcast"),
    (dict(table_k=[0, 1, 64]), r"embedding_lookup: table.k must be in \[0, 63\]"),
    (dict(bits=17), r"embedding_lookup: bits must be in \[2, 16\], got 17"),
    (dict(mbits=True), r"embedding_lookup: mbits must be an int"),
])
def test_bad_lookup_input_is_an_input_error_naming_op_and_tensor(change, pattern):
    kw = dict(GOOD, **change)
    for fn in (embedding_lookup, embedding_lookup_reference):
        with pytest.raises(InputError, match=pattern):
            fn(**kw)
