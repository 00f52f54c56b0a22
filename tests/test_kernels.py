"""The Numba kernels behind the fast paths, held to the Python-int contracts they implement."""

import numba
import numpy as np
import pytest
from hypothesis import given, strategies as st

from ilsim.arith.bits import bit_length_i64
from ilsim.errors import WidthError
from ilsim.kernels.rowquant import (ROW_OK, ROW_PYTHON, SCALE_LIMIT_BITS, quantize_rows_parallel,
                                    quantize_rows_serial, row_output_scale_i64)
from ilsim.ops.quantize import output_levels, row_output_scale


def _python_scale(m_in, k_in, value_range, levels, mbits):
    try:
        return row_output_scale(m_in, k_in, value_range, levels, mbits)
    except WidthError:
        return None


def _edge_ints(lo: int, hi: int):
    """Integers in [lo, hi], weighted to the ends and to powers of two (and one either side)."""
    powers = [v for p in range(hi.bit_length() + 1) for v in ((1 << p) - 1, 1 << p, (1 << p) + 1)
              if lo <= v <= hi]
    return st.one_of(st.sampled_from([lo, hi] + powers), st.integers(lo, hi))


@st.composite
def _scale_cases(draw):
    bits = draw(st.integers(2, 16))
    symmetric = draw(st.booleans())
    mbits = draw(st.integers(2, 30))
    m_in = draw(_edge_ints(0, (1 << mbits) - 1))
    value_range = draw(_edge_ints(0, (1 << 62) - 1))
    k_in = draw(_edge_ints(0, 63))
    return m_in, k_in, value_range, output_levels(bits, symmetric), mbits


@given(_scale_cases())
def test_row_output_scale_kernel_equals_python_or_defers_to_it(case):
    m_in, k_in, value_range, levels, mbits = case
    m_out, k_out, status = row_output_scale_i64(m_in, k_in, value_range, levels, mbits)
    expected = _python_scale(m_in, k_in, value_range, levels, mbits)
    if status == ROW_OK:
        assert expected == (m_out, k_out)
    else:
        assert status == ROW_PYTHON
        # deferred only where int64 could not hold m_in * R, or where Python raises
        assert expected is None or (m_in * value_range).bit_length() > SCALE_LIMIT_BITS - 1


@given(st.integers(0, (1 << 62) - 1))
def test_bit_length_kernel(x):
    assert bit_length_i64(x) == x.bit_length()


def _run(kernel, x, m, k, levels, symmetric, mode, mbits, dtype):
    rows, n = x.shape
    out = (np.empty((rows, n), dtype), *(np.empty(rows, np.int64) for _ in range(3)), np.empty(rows, np.int8))
    kernel(x, m, k, np.int64(levels), symmetric, np.int64(mode), np.int64(mbits), *out)
    return out


def test_row_kernel_identical_serial_parallel_and_any_thread_count():
    rng = np.random.default_rng(3)
    x = rng.integers(-(1 << 40), 1 << 40, size=(67, 301))
    x[5] = 0                                   # a zero row
    x[6] = rng.integers(0, 3, size=301)        # a tiny range
    m = rng.integers(1 << 15, 1 << 16, size=67)
    k = rng.integers(30, 50, size=67)
    before = numba.get_num_threads()
    try:
        for symmetric in (False, True):
            for mode in range(5):
                serial = _run(quantize_rows_serial, x, m, k, 255 if not symmetric else 127, symmetric, mode, 16,
                              np.int8 if symmetric else np.uint8)
                for threads in (1, numba.config.NUMBA_NUM_THREADS):
                    numba.set_num_threads(threads)
                    parallel = _run(quantize_rows_parallel, x, m, k, 255 if not symmetric else 127, symmetric,
                                    mode, 16, np.int8 if symmetric else np.uint8)
                    for a, b in zip(serial, parallel):
                        assert np.array_equal(a, b)
    finally:
        numba.set_num_threads(before)


@st.composite
def _root_cases(draw):
    d = draw(_edge_ints(1, 1 << 14))
    frac_bits = draw(st.integers(0, 16))
    rows = draw(st.integers(1, 4))
    sums = [draw(_edge_ints(0, (1 << 50) - 1)) for _ in range(rows)]
    ms = [draw(_edge_ints(0, (1 << 30) - 1)) for _ in range(rows)]
    ks = [draw(_edge_ints(0, 63)) for _ in range(rows)]
    return d, frac_bits, draw(_edge_ints(1, (1 << 30) - 1)), draw(_edge_ints(0, 63)), sums, ms, ks


@given(_root_cases())
def test_rms_root_kernel_equals_the_python_row_functions_or_defers(case):
    from ilsim.kernels.norm import rms_roots
    from ilsim.ops.norm import eps_in_row_units, row_root

    d, frac_bits, eps_m, eps_k, sums, ms, ks = case
    roots, status = np.empty(len(sums), np.int64), np.empty(len(sums), np.int8)
    rms_roots(np.array(sums), np.array(ms), np.array(ks), d, eps_m, eps_k, frac_bits, roots, status)
    for r, (s, m, k) in enumerate(zip(sums, ms, ks)):
        try:
            want = row_root("op", r, s, d, eps_in_row_units(eps_m, eps_k, m, k, frac_bits), frac_bits)
        except WidthError:
            want = None
        if status[r] == 0:
            assert want == roots[r]
        else:
            assert status[r] == 1   # the Python functions take this row (and raise where want is None)



@given(st.integers(2, 16), st.booleans(), st.integers(2, 30), st.integers(1, 300), st.integers(0, 2**32 - 1),
       st.sampled_from([np.uint8, np.int8, np.int16, np.int64, np.uint16]))
def test_fast_operand_check_accepts_only_what_the_detailed_validation_accepts(bits, signed, mbits, cols, seed,
                                                                             dtype):
    from ilsim.errors import InputError
    from ilsim.ops._common import row_scale_arrays
    from ilsim.widths import int_input, int_range, rows_fit

    rng = np.random.default_rng(seed)
    lo, hi = int_range(bits, signed)
    info = np.iinfo(dtype)
    rows = int(rng.integers(1, 70))      # both the serial and the parallel check (>= 2^16 elements)
    cols = cols if rows * cols < 1 << 16 or rng.integers(2) else (1 << 16) // rows + 1
    q = rng.integers(max(lo, info.min), min(hi, info.max) + 1, size=(rows, cols)).astype(dtype)
    zp = rng.integers(lo, hi + 1, size=rows)
    m = rng.integers(0, 1 << mbits, size=rows)
    k = rng.integers(0, 64, size=rows)
    # one value just outside its range, in one of the four arrays (or none)
    where = int(rng.integers(0, 5))
    row = int(rng.integers(0, rows))
    if where == 0 and (lo - 1 >= info.min or hi + 1 <= info.max):
        q[row, int(rng.integers(0, cols))] = lo - 1 if lo - 1 >= info.min else hi + 1
    elif where == 1:
        zp[row] = hi + 1
    elif where == 2:
        m[row] = 1 << mbits
    elif where == 3:
        k[row] = 64
    try:
        int_input(q, "op", "q", bits=bits, signed=signed)
        int_input(zp, "op", "zp", bits=bits, signed=signed)
        row_scale_arrays(m, k, (rows,), "op", "x", mbits=mbits)
        accepted = True
    except InputError:
        accepted = False
    assert rows_fit(q, zp, m, k, bits, signed, mbits) == accepted


# --- row kernels: one body, a serial and a parallel compilation, identical integers --------------

ROW_KERNEL_OPS = ("di_exp", "di_softmax", "di_silu", "di_swiglu", "di_rmsnorm", "di_layernorm", "residual_add")


@pytest.mark.parametrize("name", ROW_KERNEL_OPS)
def test_row_kernels_give_the_same_integers_serial_and_parallel(name, monkeypatch):
    """Each operator's fast path with every RowKernel forced serial, then forced parallel: the
    same outcome on the operator's own edge-seeking cases (rows are independent)."""
    from hypothesis import settings

    from ilsim.kernels import launch
    from ilsim.ops.registry import get_op
    from ilsim.testing.parity import assert_same, outcome

    op = get_op(name)

    @settings(max_examples=25)
    @given(op.cases())
    def check(kw):
        monkeypatch.setattr(launch, "PARALLEL_MIN_ELEMENTS", 1 << 62)
        serial = outcome(op.fast, kw)
        monkeypatch.setattr(launch, "PARALLEL_MIN_ELEMENTS", 0)
        parallel = outcome(op.fast, kw)
        assert_same(parallel, serial)

    check()


def test_a_row_kernel_picks_serial_for_small_work_and_keeps_its_own_cache_name():
    from ilsim.kernels.launch import PARALLEL_MIN_ELEMENTS
    from ilsim.kernels.norm import normalize_rows

    assert normalize_rows.serial.py_func.__qualname__ != normalize_rows.parallel.py_func.__qualname__
    v = np.arange(-8, 8, dtype=np.int64).reshape(2, 8)
    for rows in (v, np.repeat(v, PARALLEL_MIN_ELEMENTS // 8, axis=0)):
        out = np.empty_like(rows)
        normalize_rows(rows, np.ones(8, np.int64), np.zeros(8, np.int64), np.full(rows.shape[0], 3, np.int64),
                       np.int64(2), np.int64(0), np.int64(2), out)
        want = [[(2 * (x << 2) + 3) // 6 for x in row] for row in rows.tolist()]   # half up of 4x / 3
        assert out.tolist() == want
