"""Model traces (ilsim.golden.model): every node's inputs and output on a prefill + decode run of a
tiny exported model, deterministic, with a sha256 manifest, and equal to a plain interpreter run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ilsim.errors import InputError
from ilsim.export.build import ExportOptions, export_model
from ilsim.golden import MANIFEST, read_hex, verify_golden_dir
from ilsim.golden.model import MODEL_FORMAT, write_model_golden
from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint
from ilsim.interpreter import Interpreter

CONFIG = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                     tie_word_embeddings=True, rope_theta=500.0)
PROMPT = [3, 17, 42, 5, 60, 1]
NEW = 2


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(path, CONFIG, random_llama_weights(CONFIG, seed=0))
    calib = np.random.default_rng(1).integers(0, CONFIG.vocab_size, size=256)
    return export_model(load_checkpoint(path), calib, ExportOptions(calib_context=32, calib_windows=4))


@pytest.fixture(scope="module")
def trace(graph, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "trace"
    manifest = write_model_golden(graph, out, PROMPT, new_tokens=NEW, formats=("npy", "hex"))
    return out, manifest


def _plain_run(graph):
    """Logits of every call of a plain Interpreter run (prefill, then decode on the greedy tokens)."""
    interp = Interpreter(graph)
    state = interp.new_state()
    feed, logits, generated = PROMPT, [], []
    for _ in range(NEW + 1):
        logits.append(interp.forward(feed, state))
        generated.append(int(np.argmax(logits[-1].p[-1])))
        feed = [generated[-1]]
    return logits, generated


def test_manifest_lists_every_node_of_every_step_and_its_files_hash(trace, graph):
    out, manifest = trace
    assert manifest["format"] == MODEL_FORMAT
    assert json.loads((out / MANIFEST).read_text()) == json.loads(json.dumps(manifest))
    assert verify_golden_dir(out) == []
    assert [s["kind"] for s in manifest["steps"]] == ["prefill"] + ["decode"] * NEW
    assert manifest["steps"][1]["input_ids"] == [manifest["generated_ids"][0]]
    keys = [(v["step"], v["node"]) for v in manifest["vectors"]]
    assert keys == [(s, n.name) for s in range(NEW + 1) for n in graph.nodes]
    for step in range(NEW + 1):  # decode steps are written too
        assert (out / "model" / str(step) / "lm_head" / "out.p.npy").is_file()
        assert (out / "model" / str(step) / "embed" / "in.ids.hex").is_file()
        assert (out / "model" / str(step) / "layers.1.attention" / "in.q.q.npy").is_file()
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    assert written == {f for v in manifest["vectors"] for f in v["files"]}


def test_recorded_outputs_equal_a_plain_interpreter_run(trace, graph):
    out, manifest = trace
    logits, generated = _plain_run(graph)
    assert manifest["generated_ids"] == generated
    for step, ref in enumerate(logits):
        for field in ("p", "m", "k"):
            got = np.load(out / "model" / str(step) / "lm_head" / f"out.{field}.npy")
            assert np.array_equal(got, getattr(ref, field)), (step, field)
    # each node's recorded input is its producer's recorded output (same step)
    vec = {(v["step"], v["node"]): v for v in manifest["vectors"]}
    node = graph.node("layers.0.attn_residual")
    for step in range(NEW + 1):
        for field in ("q", "zp", "m", "k"):
            a = np.load(out / "model" / str(step) / node.name / f"in.b.{field}.npy")
            b = np.load(out / "model" / str(step) / "layers.0.o_proj" / f"out.{field}.npy")
            assert np.array_equal(a, b)
    # hex files hold the same integers at their declared widths
    t = {e["name"]: e for e in vec[(1, "lm_head")]["tensors"]}["out.p"]
    assert t["bits"] == graph.node("lm_head").attrs["acc_bits"] + 16 and t["signed"]
    hexed = read_hex(out / "model" / "1" / "lm_head" / "out.p.hex", t["bits"], True, t["shape"])
    assert np.array_equal(hexed, logits[1].p)
    ids = {e["name"]: e for e in vec[(0, "embed")]["tensors"]}["in.ids"]
    assert ids["bits"] == 6 and not ids["signed"] and ids["shape"] == [len(PROMPT)]


def test_rerun_is_byte_identical(trace, graph, tmp_path):
    out, _ = trace
    again = tmp_path / "again"
    write_model_golden(graph, again, PROMPT, new_tokens=NEW, formats=("npy", "hex"))
    assert _tree(again) == _tree(out)
    write_model_golden(graph, again, PROMPT, new_tokens=NEW, formats=("npy", "hex"))  # replaces itself
    assert _tree(again) == _tree(out)
    assert [p.name for p in tmp_path.iterdir()] == ["again"]  # no temporary directories left


def test_layer_selection_keeps_embed_final_norm_and_lm_head(graph, tmp_path):
    manifest = write_model_golden(graph, tmp_path / "l1", PROMPT[:3], new_tokens=1, layers=[1],
                                  formats=("npy",))
    nodes = {v["node"] for v in manifest["vectors"] if v["step"] == 1}
    assert {"embed", "final_norm", "lm_head", "layers.1.attention"} <= nodes
    assert not any(n.startswith("layers.0.") for n in nodes)
    assert not list((tmp_path / "l1").rglob("*.hex"))


def test_bad_arguments_and_foreign_directories_are_refused(graph, tmp_path):
    with pytest.raises(InputError):
        write_model_golden(graph, tmp_path / "a", PROMPT, layers=[5])
    with pytest.raises(InputError):
        write_model_golden(graph, tmp_path / "a", [], new_tokens=1)
    with pytest.raises(InputError):
        write_model_golden(graph, tmp_path / "a", [1] * 60, new_tokens=10)
    with pytest.raises(InputError):
        write_model_golden(graph, tmp_path / "a", [99])
    other = tmp_path / "other"
    other.mkdir()
    (other / MANIFEST).write_text('{"format": "ilsim-golden-ops"}')
    with pytest.raises(InputError):
        write_model_golden(graph, other, PROMPT, new_tokens=0)
    assert (other / MANIFEST).read_text() == '{"format": "ilsim-golden-ops"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]
