"""The PyTorch port in clients/torch (ilsim_torch) checked bit for bit against ilsim.

Uses the public checker ilsim.testing.assert_bit_exact (every registered operator) and, for
matmul_accumulate (not in the operator registry), the same hypothesis cases and the public
first_mismatch. Wrappers convert ilsim's numpy keyword arguments to torch tensors, call the port
and return numpy arrays in ilsim's structure. Runs on CPU; on CUDA too when one is present.
"""

from __future__ import annotations

import copy
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "clients" / "torch"))
import ilsim_torch as it  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402

from ilsim.ops import matmul as ilsim_matmul  # noqa: E402
from ilsim.ops.quantize import RowQuant  # noqa: E402
from ilsim.ops.exp import ExpOut  # noqa: E402
from ilsim.ops.matmul import WideOut  # noqa: E402
from ilsim.testing import assert_bit_exact, first_mismatch  # noqa: E402
from ilsim.testing.cases_matmul import di_matmul_wide_cases, matmul_accumulate_cases  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
N = 120  # examples per operator and device


def _to_torch(kwargs: dict, device: str) -> dict:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(np.array(value, copy=True))  # keeps 0-d shapes.to(device)
        else:
            out[key] = value
    return out


def _np(value):
    return value.detach().cpu().numpy()


def wrap(fn, result_type, device):
    """A callable with ilsim's numpy signature around a port function."""
    def call(**kwargs):
        result = fn(**_to_torch(kwargs, device))
        if result_type is None:
            return _np(result)
        return result_type(*(_np(v) for v in result))
    return call


@pytest.mark.parametrize("device", DEVICES)
def test_matmul_accumulate(device):
    impl = wrap(it.matmul_accumulate, None, device)

    @settings(max_examples=N, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(matmul_accumulate_cases())
    def run(case):
        expected = ilsim_matmul.matmul_accumulate(**copy.deepcopy(case))
        mismatch = first_mismatch(expected, impl(**copy.deepcopy(case)))
        assert mismatch is None, mismatch.describe()

    run()


@pytest.mark.parametrize("device", DEVICES)
def test_di_matmul_wide(device):
    impl = wrap(it.di_matmul_wide, WideOut, device)

    @settings(max_examples=N, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(di_matmul_wide_cases())
    def run(case):
        expected = ilsim_matmul.di_matmul_wide(**copy.deepcopy(case))
        mismatch = first_mismatch(expected, impl(**copy.deepcopy(case)))
        assert mismatch is None, mismatch.describe()

    run()


@pytest.mark.parametrize("device", DEVICES)
def test_di_matmul(device):
    assert_bit_exact("di_matmul", wrap(it.di_matmul, RowQuant, device), max_examples=N)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("device", DEVICES)
def test_di_exp(device, order):
    assert_bit_exact("di_exp", wrap(it.di_exp, ExpOut, device), order=order, max_examples=N)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("device", DEVICES)
def test_di_softmax(device, order):
    assert_bit_exact("di_softmax", wrap(it.di_softmax, None, device), order=order, max_examples=N)


@pytest.mark.parametrize("device", DEVICES)
def test_di_rmsnorm(device):
    assert_bit_exact("di_rmsnorm", wrap(it.di_rmsnorm, RowQuant, device), max_examples=N)


# --- a few hand-checked edges of the torch arithmetic itself -------------------------------------

@pytest.mark.parametrize("mode", it.ROUNDINGS)
def test_div_round_and_rshift_round_match_python_ints(mode):
    a = list(range(-40, 41)) + [-(1 << 61) - 3, (1 << 61) + 5, -(1 << 40), 7 << 50]
    for b in (1, 2, 3, 4, 7, 8, 1 << 20):
        got = it.div_round(torch.tensor(a), torch.tensor(b), mode).tolist()
        assert got == [it.div_round_int(v, b, mode) for v in a]
    for s in (0, 1, 2, 5, 40, 61, 62, 63):
        got = it.rshift_round(torch.tensor(a), torch.tensor(s), mode).tolist()
        assert got == [it.rshift_round_int(v, s, mode) for v in a]


def test_isqrt_exact_at_edges():
    import math
    values = [0, 1, 2, 3, 4, (1 << 62), (1 << 62) - 1] + [n * n + d for n in (3, 1 << 20, (1 << 31) - 1)
                                                          for d in (-1, 0, 1)]
    assert it.isqrt(torch.tensor(values)).tolist() == [math.isqrt(v) for v in values]


def test_worked_example_quantize_rows():
    out = it.quantize_rows(torch.tensor([[-100, 0, 50, 200]]), 1, 0, bits=8)
    assert out.q.tolist() == [[0, 85, 128, 255]] and out.zp.tolist() == [85]
    assert (out.m.tolist(), out.k.tolist()) == ([38551], [15])


def test_softmax_accepts_fraction_clip_and_refuses_float():
    x = torch.tensor([[0, -3, -100]])
    it.di_softmax(x, 1, 2, clip=Fraction(15, 2))
    with pytest.raises(it.InputError):
        it.di_softmax(x, 1, 2, clip=7.5)


@pytest.mark.parametrize("device", DEVICES)
def test_quantize_rows(device):
    assert_bit_exact("quantize_rows", wrap(it.quantize_rows, RowQuant, device), max_examples=N)


@pytest.mark.parametrize("device", DEVICES)
def test_di_matmul_refuses_what_ilsim_refuses(device):
    """valid_only=False draws accumulator / shift overflows and zero rows: both must refuse alike."""
    assert_bit_exact("di_matmul", wrap(it.di_matmul, RowQuant, device), max_examples=N, valid_only=False)


def test_broadcast_matmul_path_equals_mm():
    """The multiply-sum used on CUDA (no integer GEMM there), checked on CPU against torch.mm."""
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-255, 256, (9, 33), generator=g)
    b = torch.randint(-255, 256, (7, 33), generator=g)
    assert torch.equal(it._int_matmul_nt_broadcast(a, b, chunk_elems=100), torch.mm(a, b.t()))


GOLDEN_OPS = Path(__file__).resolve().parents[1] / "golden" / "ops"
PORTED = {"quantize_rows": (it.quantize_rows, RowQuant), "di_matmul": (it.di_matmul, RowQuant),
          "di_exp": (it.di_exp, ExpOut), "di_softmax": (it.di_softmax, None), "di_rmsnorm": (it.di_rmsnorm, RowQuant)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", sorted(PORTED))
def test_port_matches_the_committed_golden_vectors(device, op):
    from ilsim.golden.verify import verify_callable

    fn, result_type = PORTED[op]
    report = verify_callable(GOLDEN_OPS, op, wrap(fn, result_type, device))
    assert report.ok, report.format_text()
    assert report.summary()["vectors"] > 0
