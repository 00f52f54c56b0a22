"""The evaluation harness on a tiny checkpoint: float, fake-quant and integer for each
configuration, perplexity per text, generation agreement on plain and chat prompts, export time
and memory, and its JSON, markdown and plot outputs."""

import json

import numpy as np
import pytest

from ilsim.cli import main
from ilsim.evaluate import leading_agreement, parse_configs, render_chat
from ilsim.errors import InputError
from ilsim.hf import LlamaConfig, random_llama_weights, save_checkpoint

from test_cli import CHARS, TEXT, char_tokenizer_json

CONFIG = LlamaConfig(vocab_size=len(CHARS) + 1, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                     tie_word_embeddings=True, bos_token_id=None, eos_token_ids=())
TEMPLATE = ("{% for m in messages %}<{{ m['role'] | upper }}>{{ m['content'] | upper }}{% endfor %}"
            "{% if add_generation_prompt %}<ASSISTANT>{% endif %}")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ckpt = root / "tiny-chat"
    save_checkpoint(ckpt, CONFIG, random_llama_weights(CONFIG, seed=5))
    (ckpt / "tokenizer.json").write_text(char_tokenizer_json())
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    (root / "calib.txt").write_text(TEXT)
    (root / "a.txt").write_text(TEXT[::-1])
    (root / "b.txt").write_text(TEXT[40:] + TEXT[:40])
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILSIM_CACHE", str(tmp_path / "cache"))


def test_eval_runs_every_engine_and_writes_json_markdown_and_plot(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    argv = ["eval", str(checkpoint / "tiny-chat"), "--configs", "w8a8,w4a4", "--text", str(checkpoint / "a.txt"),
            "--text", str(checkpoint / "b.txt"), "--context", "64", "--max-tokens", "256", "--new-tokens", "4",
            "--calib", str(checkpoint / "calib.txt"), "--json-out", str(out / "r.json"),
            "--markdown", str(out / "r.md"), "--plot", str(out / "r.png"), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "r.json").read_text())
    assert [t["windows"] for t in report["float"]["texts"]] == [4, 4]
    kinds = [p["kind"] for p in report["prompts"]]
    assert "plain" in kinds and "chat" in kinds
    chat = next(p for p in report["prompts"] if p["kind"] == "chat")
    assert len(chat["ids"]) > len(chat["text"])                    # the template's tags are in the ids
    assert [c["config"] for c in report["configs"]] == ["W8A8", "W4A4"]
    for c in report["configs"]:
        assert c["export_seconds"] > 0 and c["export_peak_mb"] > 10 and c["graph_bytes"] > 0
        for engine in ("fake_quant", "integer"):
            run = c[engine]
            assert len(run["agreement"]) == len(report["prompts"])
            assert all(0 <= a <= 4 for a in run["agreement"])
            for mine, flt in zip(run["texts"], report["float"]["texts"]):
                assert mine["windows"] == flt["windows"] and mine["perplexity"] > 0
    w8 = report["configs"][0]["integer"]["texts"][0]["perplexity"]
    assert abs(np.log(w8) - np.log(report["float"]["texts"][0]["perplexity"])) < 0.1
    table = (out / "r.md").read_text()
    assert table.count("\n") == 2 + 2 * 2 and "| W4A4 |" in table
    assert (out / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_options_are_checked(checkpoint, capsys):
    src = str(checkpoint / "tiny-chat")
    assert main(["eval", src, "--configs", "w9a8"]) == 2
    assert "w9a8" in capsys.readouterr().err
    assert main(["eval", src, "--configs", "w8a8", "--context", "4096", "--text", str(checkpoint / "a.txt")]) == 2
    assert "exceeds the model's 128 positions" in capsys.readouterr().err


def test_parse_configs_and_agreement():
    assert parse_configs("w8a8, W4A4") == [(8, 8), (4, 4)]
    with pytest.raises(InputError):
        parse_configs("8/8")
    assert leading_agreement([1, 2, 3], [1, 2, 4]) == 2
    assert leading_agreement([1, 2, 3], [1, 2, 3]) == 3 and leading_agreement([1], [2]) == 0


def test_render_chat_uses_the_model_template():
    assert render_chat(TEMPLATE, "hi", {}) == "<USER>HI<ASSISTANT>"


def test_a_rerun_with_the_same_inputs_reuses_every_cell(checkpoint, tmp_path, monkeypatch):
    from ilsim import evaluate as ev

    kw = dict(context=64, max_tokens=128, new_tokens=3, calib=str(checkpoint / "calib.txt"),
              work_dir=tmp_path / "work", progress=False)
    first = ev.evaluate(str(checkpoint / "tiny-chat"), [(8, 8)], [str(checkpoint / "a.txt")], **kw)

    def no_export(*args, **kwargs):
        raise AssertionError("the export was run again")

    monkeypatch.setattr(ev, "export_in_child", no_export)
    monkeypatch.setattr(ev, "measure_texts", no_export)
    again = ev.evaluate(str(checkpoint / "tiny-chat"), [(8, 8)], [str(checkpoint / "a.txt")], **kw)
    assert again.configs == first.configs and again.float_run == first.float_run
    with pytest.raises(AssertionError, match="run again"):     # other inputs: computed, not reused
        ev.evaluate(str(checkpoint / "tiny-chat"), [(8, 8)], [str(checkpoint / "a.txt")], **dict(kw, context=32))
