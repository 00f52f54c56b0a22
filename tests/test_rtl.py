"""RTL client (rtl/): golden hex files, Verilator lint, and the cocotb benches of requant.v and
isqrt.v on Icarus (and on Verilator where cocotb can drive the installed one).

The golden-file checks always run. The simulation tests skip when `iverilog` is not on PATH or
cocotb is not importable (install: apt-get install -y iverilog; pip install cocotb); the lint test
when `verilator` is not on PATH (apt-get install -y verilator); the Verilator benches when its
version is older than cocotb 2 supports (5.036).
"""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

RTL = Path(__file__).resolve().parent.parent / "rtl"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


golden = _load("rtl_golden", RTL / "golden.py")

_missing = [what for what, ok in (
    ("iverilog not on PATH", shutil.which("iverilog") and shutil.which("vvp")),
    ("cocotb not importable", importlib.util.find_spec("cocotb") and importlib.util.find_spec("cocotb_tools")),
) if not ok]
needs_sim = pytest.mark.skipif(bool(_missing), reason="RTL simulation needs Icarus Verilog and cocotb: "
                               + ", ".join(_missing) + " (apt-get install -y iverilog; pip install cocotb)")


def test_committed_vectors_regenerate_byte_identical(tmp_path):
    golden.write_golden(tmp_path)
    for sub in ("requant", "isqrt", "isqrt64"):
        names = sorted(p.name for p in (RTL / "vectors" / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / sub).iterdir())
        for name in names:
            assert (tmp_path / sub / name).read_bytes() == (RTL / "vectors" / sub / name).read_bytes(), name


def test_vectors_cover_the_edges():
    d = RTL / "vectors" / "requant"
    xs, ms, ks, ys = (golden.read_hex(d / f"{n}.hex", n) for n in ("x", "m", "k", "y"))
    cases = list(zip(xs, ms, ks))
    assert [golden.requant_reference(*c) for c in cases] == ys
    ties = [(x, m, k) for x, m, k in cases if k and (x * m) % (1 << k) == 1 << (k - 1)]
    assert any(x * m > 0 for x, m, k in ties) and any(x * m < 0 for x, m, k in ties)
    assert {1, golden.K_MAX} <= {k for _, _, k in ties}
    assert {0, golden.K_MAX} <= set(ks)
    assert 127 in ys and -128 in ys
    assert -(1 << 31) in xs and (1 << 31) - 1 in xs and 0 in ms and (1 << 16) - 1 in ms
    ns = golden.read_hex(RTL / "vectors" / "isqrt" / "n.hex", "n")
    rs = golden.read_hex(RTL / "vectors" / "isqrt" / "r.hex", "r")
    import math
    assert rs == [math.isqrt(n) for n in ns]
    assert {(1 << 32) - 1, 0, (1 << 31), 65535 ** 2, 65535 ** 2 - 1, 65535 ** 2 + 1} <= set(ns)
    ns = golden.read_hex(RTL / "vectors" / "isqrt64" / "n.hex", "n64")
    rs = golden.read_hex(RTL / "vectors" / "isqrt64" / "r.hex", "r64")
    assert rs == [math.isqrt(n) for n in ns] and max(ns) == 1 << 62
    assert {(1 << 62) - 1, (1 << 31) ** 2 - 1, ((1 << 31) - 1) ** 2 + 1} <= set(ns)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return _load("rtl_tb_run", RTL / "tb" / "run.py"), tmp_path_factory.mktemp("rtl_sim")


_tb = _load("rtl_tb_run_probe", RTL / "tb" / "run.py") if not _missing else None
SIMS = ["icarus",
        pytest.param("verilator", marks=pytest.mark.skipif(
            _tb is None or "verilator" not in _tb.simulators(),
            reason=f"cocotb 2 drives Verilator >= 5.036; installed: {_tb and _tb.verilator_version()}")),
        pytest.param("verilator-cpp", marks=pytest.mark.skipif(
            _tb is None or "verilator-cpp" not in _tb.simulators(),
            reason="the C++ bench runs where Verilator is installed and cocotb cannot drive it"))]


@pytest.mark.skipif(not shutil.which("verilator"), reason="verilator not on PATH (apt-get install -y verilator)")
@pytest.mark.parametrize("name", ["requant", "isqrt", "isqrt64", "requant_bug", "requant_trunc"])
def test_rtl_is_lint_clean_under_verilator(name):
    tb = _load("rtl_tb_run_lint", RTL / "tb" / "run.py") if _tb is None else _tb
    status, messages = tb.lint(name)
    assert status == 0, messages


@needs_sim
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("name", ["requant", "isqrt", "isqrt64"])
def test_bench_passes(bench, name, sim):
    run, build = bench
    n, failed = run.run(name, build_root=build, sim=sim)
    assert n == 1 and failed == 0, f"{name} bench failed on {sim}; see {build / name / 'sim.log'}"


@needs_sim
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("name", ["requant_bug", "requant_trunc"])
def test_bench_catches_wrong_rounding(bench, name, sim):
    run, build = bench
    n, failed = run.run(name, build_root=build, sim=sim)
    assert n == 1 and failed == 1, f"{name}: the bench did not catch the deliberately wrong rounding on {sim}"
