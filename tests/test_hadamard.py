"""di_hadamard: the matrix (H Hᵀ = n I for every supported size to 4096, the Kronecker, Sylvester
and Paley conventions, the factorization), fast path == scalar reference bit for bit (extremes,
zero rows, requantization ties, narrow declared widths), thread-count independence, accuracy
against the float transform with a derived bound, input errors, and the graph op."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings

from ilsim.errors import InputError, WidthError, ZeroRangeError
from ilsim.fakequant import FakeQuantLM
from ilsim.graph.format import Graph, GraphError, ModelInfo, Node, declare
from ilsim.graph.validate import validate_graph
from ilsim.interpreter import Interpreter
from ilsim.kernels.hadamard import run_hadamard_rows
from ilsim.ops.hadamard import (MAX_BASE, base_orders, di_hadamard, di_hadamard_float, di_hadamard_reference,
                                hadamard_base, hadamard_factors, hadamard_matrix, hadamard_transform_float,
                                paley_construction, sylvester_matrix, t_bits_bound)
from ilsim.ops.registry import get_op
from ilsim.testing.cases_hadamard import di_hadamard_cases
from ilsim.testing.parity import assert_same, outcome
from ilsim.testing.bounds import dequantize, requantization_bound

DIRECTED = ("floor", "trunc")
#: Every supported size up to 4096.
SIZES_TO_4096 = sorted(b << p for b in base_orders() for p in range(13) if b << p <= 4096)
#: Sizes whose Gram matrix is formed in full (float32 BLAS: exact, every entry is below n <= 2^24).
FULL_GRAM = sorted({n for n in SIZES_TO_4096 if n <= 1024} | {1536, 2304, 3072})




# --- the matrix ----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", FULL_GRAM)
def test_gram_matrix_is_n_times_identity(n):
    h = hadamard_matrix(n)
    assert h.dtype == np.int8 and h.shape == (n, n) and np.all(np.abs(h) == 1)
    hf = h.astype(np.float32)
    assert np.array_equal(hf @ hf.T, np.float32(n) * np.eye(n, dtype=np.float32))


def test_every_supported_size_to_4096_is_orthogonal():
    # H Hᵀ = n I checked exactly as H (Hᵀ X) = n X for a random integer X [n, 2] (Freivalds): a
    # wrong Gram matrix passes with probability <= 2^-42 per column; products stay below 2^53.
    rng = np.random.default_rng(0)
    assert len(SIZES_TO_4096) > 100 and 4096 in SIZES_TO_4096
    for n in SIZES_TO_4096:
        h = hadamard_matrix(n).astype(np.float64)
        x = rng.integers(-(1 << 21), 1 << 21, size=(n, 2)).astype(np.float64)
        assert np.array_equal(h @ (h.T @ x), n * x), n


def test_the_matrix_is_the_kronecker_product_of_base_and_sylvester():
    for n in (24, 40, 56, 96, 576, 1536):
        b, s = hadamard_factors(n)
        h = hadamard_matrix(n)
        hb, hs = hadamard_base(b), sylvester_matrix(s)
        blocks = h.reshape(b, s, b, s)  # H[i1·s + i2, j1·s + j2] = H_b[i1, j1] · H_s[i2, j2]
        assert np.array_equal(blocks, hb[:, None, :, None] * hs[None, :, None, :])


def test_sylvester_is_natural_order_popcount_parity():
    for s in (1, 2, 4, 64, 256):
        idx = np.arange(s)
        parity = np.array([[bin(i & j).count("1") % 2 for j in idx] for i in idx])
        assert np.array_equal(sylvester_matrix(s), 1 - 2 * parity)


def _chi(q):
    squares = {a * a % q for a in range(1, q)}
    return lambda a: 0 if a % q == 0 else (1 if a % q in squares else -1)


def test_paley_conventions_as_the_spec_states_them():
    for b in base_orders()[1:]:
        kind, q = paley_construction(b)
        chi = _chi(q)
        h = hadamard_base(b).astype(np.int64)
        assert np.array_equal(h @ h.T, b * np.eye(b, dtype=np.int64)), b
        if kind == "paley1":  # H = I + C, C[0] = [0, 1...], C[1 + a][0] = -1, C[1 + a][1 + c] = chi(a - c)
            assert b == q + 1 and q % 4 == 3
            c = h - np.eye(b, dtype=np.int64)
            assert np.array_equal(c, -c.T)
            assert np.all(h[0] == 1) and np.all(h[1:, 0] == -1)
            assert all(c[1 + a, 1 + cc] == chi(a - cc) for a in range(q) for cc in range(q))
        else:  # H[2i + a, 2j + e] = C[i][j] B[a][e] (C[i][j] != 0), A[a][e] on the diagonal
            assert b == 2 * (q + 1) and q % 4 == 1
            assert np.array_equal(h, h.T)
            blocks = h.reshape(q + 1, 2, q + 1, 2).transpose(0, 2, 1, 3)
            assert np.all(blocks[np.arange(q + 1), np.arange(q + 1)] == [[1, -1], [-1, -1]])
            assert np.array_equal(blocks[0, 1:], np.tile([[1, 1], [1, -1]], (q, 1, 1)))
            assert np.array_equal(blocks[1:, 0], np.tile([[1, 1], [1, -1]], (q, 1, 1)))
            for a in range(q):
                for cc in range(q):
                    if a != cc:
                        assert np.array_equal(blocks[1 + a, 1 + cc], chi(a - cc) * np.array([[1, 1], [1, -1]]))


#: H_12 (Paley I, q = 11) written out, so a hardware engineer can compare bits: '+' = 1, '-' = -1.
H12 = ["++++++++++++", "-+-+---+++-+", "-++-+---+++-", "--++-+---+++", "-+-++-+---++", "-++-++-+---+",
       "-+++-++-+---", "--+++-++-+--", "---+++-++-+-", "----+++-++-+", "-+---+++-++-", "--+---+++-++"]


def test_h12_is_pinned():
    got = ["".join("+" if v > 0 else "-" for v in row) for row in hadamard_base(12)]
    assert got == H12


def test_supported_base_orders_and_their_constructions():
    assert base_orders() == (1, 12, 20, 28, 36, 44, 60, 68, 76, 84, 108, 124, 132, 140, 148, 164, 180, 196,
                             204, 212, 220, 228, 252)
    assert [paley_construction(b) for b in (12, 20, 28, 36, 44, 60)] == [
        ("paley1", 11), ("paley1", 19), ("paley2", 13), ("paley2", 17), ("paley1", 43), ("paley1", 59)]
    for b in (52, 92, 100, 116, 156, 172, 236, 244, 256, 24, 4, MAX_BASE + 8):
        assert paley_construction(b) is None


@pytest.mark.parametrize("n, factors", [
    (1, (1, 1)), (2, (1, 2)), (64, (1, 64)), (12, (12, 1)), (24, (12, 2)), (576, (36, 16)),
    (1536, (12, 128)), (2304, (36, 64)), (3072, (12, 256)), (14336, (28, 512)), (13824, (108, 128)),
    (8960, (140, 64)), (1 << 24, (1, 1 << 24)),
])
def test_factorization_takes_the_largest_power_of_two(n, factors):
    assert tuple(hadamard_factors(n)) == factors


def test_the_target_model_sizes_are_supported():
    assert hadamard_factors(64) == (1, 64) and hadamard_factors(576) == (36, 16)
    assert hadamard_factors(1536) == (12, 128)


@pytest.mark.parametrize("n", [3, 6, 10, 52, 92, 104, 11008, 172 * 128])
def test_unsupported_sizes_are_input_errors_naming_op_and_n(n):
    with pytest.raises(InputError, match=rf"di_hadamard: n = {n} is not a supported Hadamard size; supported: "
                                         r"n = 2\^p or n = b·2\^p \(p >= 0, n <= 2\^24\) with b in \{12, 20, 28, "):
        hadamard_factors(n)


@pytest.mark.parametrize("n", [0, -4, 2.0, True, "12", (1 << 24) + 12, 1 << 25])
def test_non_sizes_are_input_errors(n):
    with pytest.raises(InputError, match=r"di_hadamard: n must be an int in \[1, 2\^24\]"):
        hadamard_factors(n)


@pytest.mark.parametrize("n", [1, 2, 12, 20, 28, 36, 48, 64, 96, 576, 1536])
def test_float_transform_is_the_matrix_product_and_normalizes_to_orthogonal(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, 3, n))
    h = hadamard_matrix(n).astype(np.float64)
    assert np.allclose(hadamard_transform_float(x), x @ h.T, rtol=1e-12, atol=1e-9)
    y = hadamard_transform_float(x, normalized=True)
    assert np.allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
    w = rng.standard_normal((5, n))  # folding: W x = (W Hᵀ / n)(H x)
    assert np.allclose((hadamard_transform_float(w) / n) @ hadamard_transform_float(x[0, 0]), w @ x[0, 0])


# --- bit exactness -------------------------------------------------------------------------------

@given(di_hadamard_cases())
def test_fast_equals_reference(case):
    assert_same(outcome(di_hadamard, case), outcome(di_hadamard_reference, case))


@given(di_hadamard_cases(ties=True))
def test_fast_equals_reference_on_requantization_ties(case):
    assert_same(outcome(di_hadamard, case), outcome(di_hadamard_reference, case))


@given(di_hadamard_cases(t_bits="narrow"))
def test_fast_equals_reference_with_a_narrow_declared_width(case):
    assert_same(outcome(di_hadamard, case), outcome(di_hadamard_reference, case))


@settings(max_examples=20)
@given(di_hadamard_cases(in_bits=16, n=576, max_rows=2))
def test_fast_equals_reference_at_576_and_16_bits(case):
    assert_same(outcome(di_hadamard, case), outcome(di_hadamard_reference, case))


TIE = dict(zp=0, m=1 << 15, k=20, in_bits=4, in_signed=True, out_bits=4, out_symmetric=True)


@pytest.mark.parametrize("rounding, positive, negative", [
    ("half_up", [7, 4], [-7, -3]), ("half_away", [7, 4], [-7, -4]), ("half_even", [7, 4], [-7, -4]),
    ("floor", [7, 3], [-7, -4]), ("trunc", [7, 3], [-7, -3]),
])
def test_a_requantization_tie_rounds_in_the_named_mode(rounding, positive, negative):
    # q - zp = [3, 1] -> t = [4, 2]; symmetric 4-bit: d = 7, R = 4, t·d/R = [7, 3.5]
    for fn in (di_hadamard, di_hadamard_reference):
        assert fn(np.array([3, 1]), **TIE, rounding=rounding).q.tolist() == positive
        assert fn(np.array([-3, -1]), **TIE, rounding=rounding).q.tolist() == negative


def test_the_largest_transform_reaches_the_declared_bound():
    # uint8 at zp = 0 against 255 everywhere: t_0 = 64 · 255 = 16320 < 2^14, within int15 = t_bits_bound
    q = np.full((1, 64), 255)
    kw = dict(zp=0, m=1 << 15, k=30, in_bits=8)
    assert t_bits_bound(8, 64) == 15
    assert_same(di_hadamard(q, **kw), di_hadamard_reference(q, **kw))
    for fn in (di_hadamard, di_hadamard_reference):
        with pytest.raises(WidthError, match=r"di_hadamard: t\[0,0\] = 16320 overflows its declared width int14"):
            fn(q, **kw, t_bits=14)


def test_zero_rows_follow_the_policy():
    q = np.array([[7, 7, 7, 7], [7, 0, 1, 2]])
    kw = dict(zp=[7, 3], m=40000, k=20, in_bits=4)
    out = di_hadamard(q, **kw)
    assert out.q[0].tolist() == [0, 0, 0, 0] and out.zp[0] == 0 and out.m[0] == 0 and out.k[0] == 0
    assert_same(out, di_hadamard_reference(q, **kw))
    for fn in (di_hadamard, di_hadamard_reference):
        with pytest.raises(ZeroRangeError, match=r"di_hadamard: row 0 of t is all zeros"):
            fn(q, **kw, zero_rows="error")


def test_one_dimensional_input_is_one_row():
    kw = dict(q=np.arange(12), zp=5, m=50000, k=24, in_bits=4)
    out = di_hadamard(**kw)
    assert out.q.shape == (12,) and out.m.shape == ()
    assert_same(out, di_hadamard_reference(**kw))


def test_results_do_not_depend_on_the_thread_count_or_the_kernel():
    rng = np.random.default_rng(5)
    q = rng.integers(0, 256, size=(67, 1536)).astype(np.uint8)
    zp = rng.integers(0, 256, size=67)
    q[3] = zp[3]
    b, s = hadamard_factors(1536)
    lo, hi = -(1 << 19), (1 << 19) - 1
    serial = run_hadamard_rows(q, zp, hadamard_base(b), s, lo, hi, parallel=False)
    before = numba.get_num_threads()
    try:
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            parallel = run_hadamard_rows(q, zp, hadamard_base(b), s, lo, hi, parallel=True)
            assert np.array_equal(serial[0], parallel[0]) and np.array_equal(serial[1], parallel[1])
            out = di_hadamard(q, zp, 1 << 15, 30)
            if threads == 1:
                first = out
            assert_same(out, first)
    finally:
        numba.set_num_threads(before)
    exact = (q.astype(np.float64) - zp[:, None]) @ hadamard_matrix(1536).astype(np.float64).T  # < 2^19: exact
    assert np.array_equal(serial[0], exact.astype(np.int64)) and not serial[1].any()


def test_registry_lists_di_hadamard():
    op = get_op("di_hadamard")
    assert op.fast is di_hadamard and op.reference is di_hadamard_reference
    assert op.float_meaning is di_hadamard_float and op.spec == "docs/spec/hadamard.md"


# --- accuracy against the float transform --------------------------------------------------------
#
# Stated bound, per element, with step = m'/2^k' of the output row (k' < 63) and d the output
# levels: t is exact, so only quantize_rows errs: |q - zp - t·d/R| <= 1 (one rounding; the clamp
# of an asymmetric code costs at most the zero point's 1/2 more) and m' has relative error
# <= 2^-mbits (m' >= 2^(mbits-1), rounded half up), so
#     |deq - H·real(q)| <= step · (1 + (d + 1) · 2^(1 - mbits))     (+ 1e-9 relative float64 slack)

@given(di_hadamard_cases())
def test_output_is_within_the_stated_bound_of_the_float_transform(case):
    try:
        out = di_hadamard(**case)
    except (WidthError, ZeroRangeError):
        return
    ref = di_hadamard_float(**case)
    bound = requantization_bound(out, case["out_bits"], case["out_symmetric"], case["mbits"])
    err = np.abs(dequantize(out) - ref)
    ok = err <= bound[..., None] + 1e-9 * (np.abs(ref) + 1)
    assert np.all(ok[out.k < 63])


# --- input errors --------------------------------------------------------------------------------

GOOD = dict(q=np.array([[1, 2, 3, 4]]), zp=[3], m=[40000], k=[20], in_bits=4)


@pytest.mark.parametrize("change, error, pattern", [
    (dict(q=np.array([[1.5, 2, 3, 4]])), InputError, r"di_hadamard: q must be an integer array, got dtype float64"),
    (dict(q=np.int64(1)), InputError, r"di_hadamard: q must have at least one dimension"),
    (dict(q=np.zeros((1, 0), dtype=np.int64)), InputError, r"di_hadamard: q is empty"),
    (dict(q=np.array([[1, 2, 3, 16]])), InputError, r"di_hadamard: q\[0,3\] = 16 is outside its declared width uint4"),
    (dict(q=np.array([[1, 2, 3]])), InputError, r"di_hadamard: n = 3 is not a supported Hadamard size"),
    (dict(q=np.ones((1, 52), dtype=np.int64)), InputError, r"di_hadamard: n = 52 is not a supported Hadamard size"),
    (dict(zp=[-1]), InputError, r"di_hadamard: zp\[0\] = -1 is outside its declared width uint4"),
    (dict(zp=[1, 2]), InputError, r"di_hadamard: zp shape \(2,\) does not broadcast to the row shape \(1,\)"),
    (dict(m=[1 << 16]), InputError, r"di_hadamard: q.m\[0\] = 65536 is outside its declared width uint16"),
    (dict(k=[64]), InputError, r"di_hadamard: q.k must be in \[0, 63\]"),
    (dict(in_bits=17), InputError, r"di_hadamard: in_bits must be in \[2, 16\], got 17"),
    (dict(out_bits=1), InputError, r"di_hadamard: out_bits must be in \[2, 16\], got 1"),
    (dict(mbits=31), InputError, r"di_hadamard: mbits must be in \[2, 30\], got 31"),
    (dict(t_bits=55), InputError, r"di_hadamard: t_bits must be None or in \[2, 62 - out_bits\] = \[2, 54\]"),
    (dict(t_bits=8.0), InputError, r"di_hadamard: t_bits must be an int"),
    (dict(in_signed=1), InputError, r"di_hadamard: in_signed must be a bool"),
    (dict(rounding="nearest"), InputError, r"di_hadamard: unknown rounding mode 'nearest'"),
    (dict(zero_rows="drop"), InputError, r"di_hadamard: zero_rows must be one of"),
    (dict(t_bits=2), WidthError, r"di_hadamard: t\[0,2\] = -4 overflows its declared width int2"),
    (dict(m=[65535], k=[0], in_bits=16, q=np.array([[65535, 0, 0, 0]]), zp=[0]), WidthError,
     r"di_hadamard: quantizing t: .*output scale of row 0 is >= 2\^16"),
])
def test_bad_input_raises_the_same_error_from_both_paths(change, error, pattern):
    kw = dict(GOOD, **change)
    for fn in (di_hadamard, di_hadamard_reference):
        with pytest.raises(error, match=pattern):
            fn(**kw)
    assert_same(outcome(di_hadamard, kw), outcome(di_hadamard_reference, kw))


# --- the graph op --------------------------------------------------------------------------------

def _graph(size=12, d=12, **attrs) -> Graph:
    """tokens -> embedding_lookup (int8 rows of d values) -> di_hadamard (size) -> output."""
    rng = np.random.default_rng(1)
    table = rng.integers(-127, 128, size=(16, d)).astype(np.int8)
    table[0] = 0
    table_m = np.full(16, 1 << 15, dtype=np.uint16)
    table_k = np.full(16, 20, dtype=np.uint8)
    table_m[0], table_k[0] = 0, 0
    constants = {"table": table, "table_m": table_m, "table_k": table_k}
    decls = {"table": declare(table, 8, True), "table_m": declare(table_m, 16, False),
             "table_k": declare(table_k, 6, False)}
    nodes = [Node("embed", "embedding_lookup", {"ids": "tokens"},
                  {"table": "table", "table_m": "table_m", "table_k": "table_k"}, {"bits": 8}, ["h"]),
             Node("rotate", "di_hadamard", {"x": "h"}, {}, {"size": size, "in_bits": 8, "in_signed": True, **attrs},
                  ["logits"])]
    model = ModelInfo(vocab_size=16, hidden_size=d, num_layers=0, num_heads=1, num_kv_heads=1, head_dim=d,
                      max_positions=8)
    return Graph(model=model, nodes=nodes, constants=constants, decls=decls)


def test_graph_op_runs_fast_and_reference_alike_and_as_the_operator():
    graph = _graph(out_bits=6, out_symmetric=True)
    validate_graph(graph)
    ids = [3, 0, 15, 7]
    fast = Interpreter(graph).forward(ids, Interpreter(graph).new_state())
    ref_interp = Interpreter(graph, reference=True)
    assert_same(fast, ref_interp.forward(ids, ref_interp.new_state()))
    table = graph.constants["table"].astype(np.int64)[ids]
    direct = di_hadamard(table, 0, graph.constants["table_m"][ids], graph.constants["table_k"][ids], in_bits=8,
                         in_signed=True, out_bits=6, out_symmetric=True)
    assert_same(fast, direct)
    assert fast.q[1].tolist() == [0] * 12  # the all-zero embedding row stays a zero row


def test_graph_op_float_semantics_agree_with_the_integer_run():
    # both quantize the same real H·x per row: the integer run within its stated bound (above),
    # fake-quant within one of its float steps; so within the sum of the two
    graph = _graph(out_bits=8)
    ids = [1, 2, 5]
    out = Interpreter(graph).forward(ids, Interpreter(graph).new_state())
    fq = FakeQuantLM(graph).forward(ids)
    x = graph.constants["table"].astype(np.float64)[ids] * 2.0 ** -5
    exact = x @ hadamard_matrix(12).astype(np.float64).T
    step_int = out.m / np.exp2(out.k.astype(np.float64))
    step_fq = (np.maximum(exact.max(-1), 0) - np.minimum(exact.min(-1), 0)) / 255
    bound = step_int * (1 + 256 * 2.0 ** -15) + step_fq
    assert np.all(np.abs(dequantize(out) - fq) <= bound[:, None] + 1e-12)


@pytest.mark.parametrize("attrs, pattern", [
    (dict(size=52), r"node 'rotate': di_hadamard: n = 52 is not a supported Hadamard size"),
    (dict(size=0), r"node 'rotate': di_hadamard: n must be an int"),
    (dict(out_bits=17), r"node 'rotate': di_hadamard: out_bits must be in \[2, 16\]"),
    (dict(in_bits=1), r"node 'rotate': di_hadamard: in_bits must be in \[2, 16\]"),
    (dict(size=True), r"attribute 'size' must be int"),
    (dict(t_bits=20), r"unknown attributes \['t_bits'\]"),
])
def test_graph_op_attributes_are_validated_at_load(attrs, pattern):
    graph = _graph(**attrs) if "size" not in attrs else _graph(size=attrs.pop("size"), **attrs)
    with pytest.raises(GraphError, match=pattern):
        validate_graph(graph)


def test_graph_op_refuses_rows_of_another_size():
    graph = _graph(size=16, d=12)
    with pytest.raises(GraphError, match=r"node 'rotate': input 'x' has 12 values per token, the node's size is 16"):
        validate_graph(graph)                    # at load
    for reference in (False, True):              # and at run time, for a graph never validated
        interp = Interpreter(graph, reference=reference)
        with pytest.raises(GraphError, match=r"di_hadamard rotate: its input rows have 12 values, the node's size is 16"):
            interp.forward([1], interp.new_state())


@pytest.mark.parametrize("n,in_bits,out_bits", [
    (704, 16, 8), (704, 16, 2), (1536, 16, 4),     # the down projection's input: shipped model, SmolLM2
    (32, 16, 8), (32, 16, 2), (64, 16, 4),          # queries and keys per head: shipped model, SmolLM2
])
def test_fast_equals_reference_at_every_size_the_exporter_uses(n, in_bits, out_bits):
    """The exporter's di_hadamard sizes (intermediate size, head size of the shipped model and of
    SmolLM2-135M) at its widths (16-bit input; 2..8-bit output), on rows that reach both extremes."""
    rng = np.random.default_rng(n + out_bits)
    hi = (1 << in_bits) - 1
    q = rng.integers(0, hi + 1, size=(5, n))
    q[0], q[1, ::2], q[1, 1::2] = hi, 0, hi
    zp = np.array([0, hi, 12345, 0, hi])
    m, k = rng.integers(1 << 15, 1 << 16, size=5), rng.integers(30, 44, size=5)
    kw = dict(in_bits=in_bits, out_bits=out_bits)
    assert_same(di_hadamard(q, zp, m, k, **kw), di_hadamard_reference(q, zp, m, k, **kw))
