"""benchmarks/quant_points.py on the shipped model: leaving every quantization point exact gives
the float model's perplexity (the fake-quant model is then float), and the graph as exported
differs from it."""

import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quant_points.py"
EVERY_POINT = "di_matmul,di_rmsnorm,di_swiglu,di_hadamard,residual_add,attention,embedding_lookup,p,clip"


def _load():
    spec = importlib.util.spec_from_file_location("quant_points", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_point_exact_leaves_only_the_weights_and_all_points_cost_more(capsys):
    bench = _load()
    assert bench.main(["shakespeare-tiny", "--text", "ilsim/data/shakespeare_test.txt", "--max-tokens", "300",
                       "--context", "100", "--wbits", "8", "--abits", "4", "--method", "smooth",
                       "--exact", "all", "--exact", EVERY_POINT]) == 0
    out = capsys.readouterr().out
    ratios = [float(r) for r in re.findall(r"ratio (\d+\.\d+)", out)]
    assert len(ratios) == 2, out
    # every activation point exact: only the (8-bit) weights and the embedding table remain quantized
    assert abs(ratios[1] - 1) < 0.01, out
    assert ratios[0] > ratios[1], out
