"""Build and run the cocotb benches on Icarus Verilog, and on Verilator where cocotb can drive it.

    python rtl/tb/run.py [--sim icarus|verilator|verilator-cpp ...] [requant|isqrt|isqrt64|requant_bug|requant_trunc ...]
    python rtl/tb/run.py --lint          # verilator --lint-only -Wall on every unit and parameter set

Default: requant isqrt isqrt64, on every simulator of ``simulators()``: Icarus, and Verilator when
installed -- through cocotb where its version is at least VERILATOR_FOR_COCOTB, else through the
plain C++ bench tb/verilator_tb.cpp (cocotb 2 cannot drive older Verilators).

Exit status 0 when every named bench ran as expected. `requant_bug` and `requant_trunc` build
requant.v with ROUNDING_BUG=1 (ties round down) / 2 (truncation) and are expected to FAIL the bench.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from cocotb_tools.runner import get_runner

TB = Path(__file__).resolve().parent
RTL = TB.parent

BENCHES = {  # name -> (toplevel, verilog file, test module, parameters)
    "requant": ("requant", "requant.v", "test_requant", {}),
    "requant_bug": ("requant", "requant.v", "test_requant", {"ROUNDING_BUG": 1}),    # ties round down
    "requant_trunc": ("requant", "requant.v", "test_requant", {"ROUNDING_BUG": 2}),  # no rounding
    "isqrt": ("isqrt", "isqrt.v", "test_isqrt", {}),
    "isqrt64": ("isqrt", "isqrt.v", "test_isqrt", {"N_BITS": 64}),
}

EXPECT_FAIL = {"requant_bug", "requant_trunc"}
#: the oldest Verilator that cocotb 2 supports
VERILATOR_FOR_COCOTB = (5, 36)


def verilator_version() -> tuple[int, int] | None:
    """(major, minor) of the verilator on PATH, or None."""
    if not shutil.which("verilator"):
        return None
    out = subprocess.run(["verilator", "--version"], capture_output=True, text=True).stdout
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def simulators() -> list[str]:
    """icarus; with Verilator installed also "verilator" (cocotb) when cocotb can drive it, else
    "verilator-cpp" (the plain C++ bench tb/verilator_tb.cpp, any Verilator 5)."""
    version = verilator_version()
    if version is None:
        return ["icarus"]
    return ["icarus", "verilator" if version >= VERILATOR_FOR_COCOTB else "verilator-cpp"]


def run_cpp(name: str, build_root: Path | None = None, vectors: Path | None = None) -> tuple[int, int]:
    """Build the bench's unit with Verilator and tb/verilator_tb.cpp, run it on the golden vectors:
    (1, 0) when every case matches, (1, 1) otherwise (the output names the first mismatches)."""
    top, src, _module, params = BENCHES[name]
    build_dir = Path(build_root or RTL / "sim_build") / f"{name}-verilator-cpp"
    if top == "requant":
        defines, sub = ["-DUNIT_REQUANT", f"-DOUT_BITS={params.get('OUT_BITS', 8)}"], "requant"
    else:
        n_bits = params.get("N_BITS", 32)
        defines, sub = ["-DUNIT_ISQRT", f"-DR_BITS={n_bits // 2}"], {32: "isqrt", 64: "isqrt64"}[n_bits]
    argv = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-Mdir", str(build_dir), "--top-module", top,
            *(f"-G{key}={value}" for key, value in params.items()), str(RTL / src), str(TB / "verilator_tb.cpp"),
            "-CFLAGS", " ".join(defines), "-o", "bench"]
    build = subprocess.run(argv, capture_output=True, text=True)
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "build.log").write_text(build.stdout + build.stderr)
    if build.returncode != 0:
        raise RuntimeError(f"verilator build of {name} failed; see {build_dir / 'build.log'}")
    bench = subprocess.run([str(build_dir / "bench"), str(Path(vectors or RTL / "vectors") / sub)],
                           capture_output=True, text=True)
    (build_dir / "sim.log").write_text(bench.stdout + bench.stderr)
    return 1, int(bench.returncode != 0)


def lint(name: str) -> tuple[int, str]:
    """``verilator --lint-only -Wall`` of one bench's unit with its parameters: (status, messages)."""
    top, src, _module, params = BENCHES[name]
    argv = ["verilator", "--lint-only", "-Wall", "--top-module", top,
            *(f"-G{key}={value}" for key, value in params.items()), str(RTL / src)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def run(name: str, build_root: Path | None = None, vectors: Path | None = None, sim: str = "icarus") -> tuple[int, int]:
    """Build and run one bench on ``sim``; returns (tests run, tests failed) from cocotb's results XML
    (or from the C++ bench's exit status for "verilator-cpp")."""
    if sim == "verilator-cpp":
        return run_cpp(name, build_root, vectors)
    top, src, module, params = BENCHES[name]
    build_dir = Path(build_root or RTL / "sim_build") / (name if sim == "icarus" else f"{name}-{sim}")
    runner = get_runner(sim)
    runner.build(sources=[RTL / src], hdl_toplevel=top, parameters=params, build_dir=build_dir,
                 always=True, timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    if str(TB) not in sys.path:  # the runner passes this process's sys.path to the simulator as PYTHONPATH
        sys.path.insert(0, str(TB))
    env = {}
    if vectors is not None:
        env["RTL_VECTORS"] = str(vectors)
    # Under pytest the runner judges the results itself and calls sys.exit; hide pytest from it so
    # that this function always returns the counts (the expected-failure benches need them).
    pytest_test = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        results = runner.test(test_module=module, hdl_toplevel=top, build_dir=build_dir, test_dir=build_dir,
                              extra_env=env, results_xml=str(build_dir / "results.xml"),
                              log_file=build_dir / "sim.log")
    finally:
        if pytest_test is not None:
            os.environ["PYTEST_CURRENT_TEST"] = pytest_test
    cases = list(ET.parse(results).getroot().iter("testcase"))
    failed = sum(1 for c in cases if c.find("failure") is not None or c.find("error") is not None)
    return len(cases), failed


def main(argv) -> int:
    args = list(argv)
    if "--lint" in args:
        ok = True
        for name in BENCHES:
            status, messages = lint(name)
            print(f"lint {name}: {'clean' if status == 0 else 'WARNINGS'}" + ("" if status == 0 else "\n" + messages))
            ok &= status == 0
        return 0 if ok else 1
    sims = []
    while "--sim" in args:
        i = args.index("--sim")
        sims.append(args[i + 1])
        del args[i:i + 2]
    ok = True
    for sim in sims or simulators():
        for name in args or ["requant", "isqrt", "isqrt64"]:
            n, failed = run(name, sim=sim)
            expect_fail = name in EXPECT_FAIL
            good = n > 0 and (failed > 0 if expect_fail else failed == 0)
            print(f"{sim} {name}: {n} test(s), {failed} failed -> {'as expected' if good else 'UNEXPECTED'}")
            ok &= good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
