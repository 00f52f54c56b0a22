"""benchmarks/ablation.py --quick: every method x scheme cell runs (in worker processes), the
reports are written, and a second run reads every cell from the cache."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "ablation.py"


def _run(tmp_path, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", "--work-dir", str(tmp_path / "work"),
                           "--json", str(tmp_path / "out.json"), "--markdown", str(tmp_path / "out.md"), *extra],
                          capture_output=True, text=True, timeout=1200)


def test_quick_sweep_fills_every_cell_and_resumes_from_the_cache(tmp_path):
    pytest.importorskip("torch")          # illm (learned FSBR) and kd need it
    pytest.importorskip("matplotlib")
    first = _run(tmp_path, "--plot", str(tmp_path / "out.png"), "--workers", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads((tmp_path / "out.json").read_text())
    cells = {(c["method"], c["config"]): c for c in report["cells"]}
    assert set(cells) == {(m, s) for m in ("illm", "kd", "sparsegpt", "sparsegpt-2:4")
                          for s in ("W2A2", "W4A4", "W6A6", "W8A8")}
    for (method, scheme), cell in cells.items():
        assert "error" not in cell, (method, scheme, cell.get("error"))
        assert cell["integer"]["texts"][0]["perplexity"] > 1 and cell["fake_quant"]["texts"][0]["perplexity"] > 1
        assert len(cell["agreement"]) == 2 and cell["export"]["seconds"] > 0 and cell["export"]["peak_mb"] > 0
        rep = cell["export"]["report"]
        if method.startswith("sparsegpt"):
            assert rep["pruning"]["sparsity"] == 0.5 and rep["pruning"]["pattern"] == method.partition("-")[2] \
                or (method == "sparsegpt" and rep["pruning"]["pattern"] == "unstructured")
        if method == "kd":
            assert len(rep["kd"]["step_losses"]) == 3
    table = (tmp_path / "out.md").read_text()
    assert table.count("\n") == 2 + 1 + 16 and "| float |" in table
    assert (tmp_path / "out.png").stat().st_size > 10_000
    assert report["machine"]["cpu"] and report["settings"]["workers"] == 2
    graphs = list((tmp_path / "work").glob("*.ilsim"))
    assert graphs == []                                   # deleted once measured
    again = _run(tmp_path, "--workers", "2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "out.json").read_text())["cells"] == report["cells"]
    assert json.loads((tmp_path / "out.json").read_text())["settings"]["seconds"] < 60


def test_unknown_methods_and_options_are_one_line_errors(tmp_path):
    bad = _run(tmp_path, "--methods", "illm,awq")
    assert bad.returncode == 2 and "unknown method(s) ['awq']" in bad.stderr
    bad = _run(tmp_path, "--set", "wbits=4")
    assert bad.returncode == 2 and "--set 'wbits=4'" in bad.stderr
