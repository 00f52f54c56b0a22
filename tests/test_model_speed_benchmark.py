"""benchmarks/model_speed.py end to end on a tiny model: it runs, prints its tables and writes JSON
with every key and positive measurements. No speed ratio is asserted (timings vary by machine)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "model_speed.py"
TINY = ["--layers", "2", "--hidden", "64", "--intermediate", "128", "--heads", "4", "--kv-heads", "2",
        "--vocab", "4096", "--prompt-tokens", "16", "--decode-tokens", "4", "--repeat", "1", "--threads", "1",
        "--skip-matmul", "--configs", "w8a8,w4a4"]
ENGINE_KEYS = ("prefill_tok_s", "decode_tok_s", "prefill_s", "decode_s", "peak_rss_bytes", "run_bytes",
               "baseline_rss_bytes", "weights_bytes", "kv_bytes", "memory_ratio")
INTEGER_KEYS = ("export_s", "matrix_bytes", "matrix_bytes_packed", "graph_file_bytes",
                "prefill_vs_float_ref", "decode_vs_float_ref")


def _have_transformers() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))


def _positive(result: dict, keys) -> None:
    for key in keys:
        assert result[key] > 0, (result["label"], key, result[key])


def test_tiny_run_writes_complete_json(tmp_path):
    out = tmp_path / "model_speed.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), *TINY, "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| engine | prefill tok/s | decode tok/s |" in proc.stdout
    assert "| target | goal | measured | status |" in proc.stdout
    assert "Machine:" in proc.stdout

    results = json.loads(out.read_text())
    assert set(results) >= {"settings", "machine", "engines", "matmul", "golden", "targets"}
    assert results["settings"]["layers"] == 2 and results["settings"]["configs"] == ["w8a8", "w4a4"]
    assert results["machine"]["threads"] == 1 and results["machine"]["cores"] >= 1
    assert results["matmul"] == {"skipped": "--skip-matmul"}

    engines = results["engines"]
    assert set(engines) == {"w8a8", "w4a4", "float", "transformers"}
    for key in ("w8a8", "w4a4", "float"):
        _positive(engines[key], ENGINE_KEYS)
    for key in ("w8a8", "w4a4"):
        _positive(engines[key], INTEGER_KEYS)
    assert engines["w4a4"]["matrix_bytes_packed"] < engines["w4a4"]["matrix_bytes"]
    assert engines["float"]["prefill_vs_float_ref"] == 1.0

    if _have_transformers():
        _positive(engines["transformers"], ENGINE_KEYS)
        for key in ("w8a8", "w4a4", "float"):
            _positive(engines[key], ("prefill_vs_transformers", "decode_vs_transformers"))
    else:
        assert "skipped" in engines["transformers"]

    for cfg in ("w8a8", "w4a4"):
        golden = results["golden"][cfg]
        assert golden["seconds"] > 0 and golden["bytes"] > 0 and golden["files"] > 0
        assert golden["prompt_tokens"] + golden["new_tokens"] == 16

    targets = results["targets"]
    assert len(targets) == 1 + 3 * 2
    assert all(t["status"] in ("PASS", "MISS", "n/a") for t in targets)
    assert targets[0]["status"] == "n/a"  # DI-MatMul skipped
