"""A whole exported model: integer run == scalar-reference run bit for bit, prefill + decode ==
one prefill, close to the float model, and the graph file validated and saved atomically."""

import json
import os

import numpy as np
import pytest

from ilsim.errors import InputError
from ilsim.export.build import ExportOptions, export_model
from ilsim.fakequant import FakeQuantLM
from ilsim.float_model import FloatLlama
from ilsim.graph import format as graph_format
from ilsim.graph.files import load_graph, save_graph
from ilsim.graph.format import GraphError
from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint
from ilsim.interpreter import Interpreter
from ilsim.model import IntegerLM

CONFIG = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                     tie_word_embeddings=True, rope_theta=500.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(path, CONFIG, random_llama_weights(CONFIG, seed=0))
    return load_checkpoint(path)


def calibration_ids():
    return np.random.default_rng(1).integers(0, CONFIG.vocab_size, size=256)


@pytest.fixture(scope="module")
def graph_file(checkpoint, tmp_path_factory):
    graph = export_model(checkpoint, calibration_ids(), ExportOptions(calib_context=32, calib_windows=4))
    return save_graph(graph, tmp_path_factory.mktemp("graph") / "tiny.ilsim")


def prompt(n=12, seed=2):
    return np.random.default_rng(seed).integers(0, CONFIG.vocab_size, size=n)


def real_logits(out):
    return out.p.astype(np.float64) * (out.m / np.exp2(out.k))[:, None]


def test_fast_and_reference_runs_give_identical_logits(graph_file):
    graph = load_graph(graph_file)
    fast = Interpreter(graph).forward(prompt(), Interpreter(graph).new_state())
    ref_interp = Interpreter(graph, reference=True)
    ref = ref_interp.forward(prompt(), ref_interp.new_state())
    for name, a, b in zip(fast._fields, fast, ref):
        assert a.dtype == b.dtype and np.array_equal(a, b), name


def test_prefill_then_decode_equals_one_prefill(graph_file):
    graph = load_graph(graph_file)
    interp = Interpreter(graph)
    whole = interp.forward(prompt(), interp.new_state())
    state = interp.new_state()
    interp.forward(prompt()[:7], state)
    rows = [interp.forward(prompt()[t:t + 1], state) for t in range(7, 12)]
    for t, row in enumerate(rows, start=7):
        assert np.array_equal(row.p[0], whole.p[t]) and row.k[0] == whole.k[t] and row.m[0] == whole.m[t]


def test_w8a8_integer_logits_track_the_float_model(graph_file, checkpoint):
    graph = load_graph(graph_file)
    interp = Interpreter(graph)
    got = real_logits(interp.forward(prompt(), interp.new_state()))
    want = FloatLlama(checkpoint, dtype=np.float64).forward(prompt())
    fake = FakeQuantLM(graph).forward(prompt())
    # Random weights give near-uniform logits; correlation is the meaningful check here. The
    # shipped trained model's perplexity is measured by `ilsim eval shakespeare-tiny` (README).
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.995
    assert np.corrcoef(fake.ravel(), want.ravel())[0, 1] > 0.995


def test_bit_width_audit_stays_inside_declared_widths(graph_file):
    interp = Interpreter(load_graph(graph_file), audit=True)
    interp.forward(prompt(), interp.new_state())
    assert interp.widths
    for name, record in interp.widths.items():
        assert record.used_bits() <= record.bits, name


def test_trace_keeps_the_chosen_node_outputs(graph_file):
    interp = Interpreter(load_graph(graph_file), trace=("layers.0.*",))
    interp.forward(prompt(), interp.new_state())
    assert "layers.0.q_proj" in interp.traced and "layers.1.q_proj" not in interp.traced


def test_token_ids_and_context_are_checked(graph_file):
    interp = Interpreter(load_graph(graph_file))
    with pytest.raises(InputError, match="outside the vocabulary"):
        interp.forward([1, CONFIG.vocab_size], interp.new_state())
    with pytest.raises(InputError, match="exceed the context"):
        interp.forward(np.zeros(65, dtype=np.int64), interp.new_state())
    with pytest.raises(InputError, match="integer array"):
        interp.forward(np.array([1.0, 2.0]), interp.new_state())


def test_integer_lm_needs_a_tokenizer(graph_file):
    with pytest.raises(InputError, match="no tokenizer"):
        IntegerLM(load_graph(graph_file))


@pytest.mark.parametrize("bits", [(4, 8), (4, 4), (2, 2)])
def test_low_bit_exports_run_and_stay_exact(checkpoint, bits):
    wbits, abits = bits
    graph = export_model(checkpoint, calibration_ids(), ExportOptions(wbits=wbits, abits=abits, calib_context=32,
                                                                      calib_windows=2))
    fast = Interpreter(graph).forward(prompt(6), Interpreter(graph).new_state())
    ref_i = Interpreter(graph, reference=True)
    ref = ref_i.forward(prompt(6), ref_i.new_state())
    assert all(np.array_equal(a, b) for a, b in zip(fast, ref))


# ---- the graph file ---------------------------------------------------------------------------

def rewrite_graph_json(path, edit, rehash=True):
    """Load the stored graph JSON and constants, apply ``edit(doc, tensors)``, write them back raw
    (with the checksum recomputed unless ``rehash`` is False)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(path), framework="numpy") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    doc = json.loads(meta["ilsim.graph"])
    edit(doc, tensors)
    meta["ilsim.graph"] = json.dumps(doc)
    if rehash:   # as a faulty exporter would write it: the checks below the checksum must catch the defect
        meta["ilsim.sha256"] = graph_format.content_digest(meta["ilsim.graph"], meta.get("ilsim.tokenizer"), tensors)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("edit, message", [
    (lambda d, t: d.update(version=99), "version 99 is not supported"),
    (lambda d, t: d["nodes"][3].update(op="conv2d"), "unknown op 'conv2d'"),
    (lambda d, t: d["nodes"][3]["inputs"].update(a="nowhere"), "which no earlier node produces"),
    (lambda d, t: d["nodes"][3]["attrs"].pop("acc_bits"), "needs attribute 'acc_bits'"),
    (lambda d, t: d["nodes"][3]["attrs"].update(acc_bits="32"), "node .*acc_bits.* must be an integer"),
    (lambda d, t: d["nodes"][3]["attrs"].update(colour=1), "unknown attributes"),
    (lambda d, t: d.update(outputs=["missing"]), "graph output 'missing'"),
    (lambda d, t: t.update({"layers.0.q_proj.b": t["layers.0.q_proj.b"].astype(np.int16)}),
     "stored as int16, declared uint8"),
    (lambda d, t: d["constants"]["layers.0.q_proj.b"].update(bits=2), "outside its declared"),
    (lambda d, t: t.pop("rope.cos"), "declared but not stored"),
    (lambda d, t: t.update(extra=np.zeros(3, dtype=np.int8)), "stored but not declared"),
])
def test_a_defective_graph_is_refused_with_the_node_or_tensor_named(graph_file, tmp_path, edit, message):
    path = tmp_path / "bad.ilsim"
    path.write_bytes(graph_file.read_bytes())
    rewrite_graph_json(path, edit)
    with pytest.raises(GraphError, match=message):
        load_graph(path)


def test_an_edit_without_a_new_checksum_is_refused_as_corrupt(graph_file, tmp_path):
    path = tmp_path / "edited.ilsim"
    path.write_bytes(graph_file.read_bytes())
    rewrite_graph_json(path, lambda d, t: d["nodes"][3]["attrs"].update(out_bits=7), rehash=False)
    with pytest.raises(GraphError, match="does not match the sha256"):
        load_graph(path)


def test_truncated_and_garbage_files_are_graph_errors(graph_file, tmp_path):
    data = graph_file.read_bytes()
    truncated = tmp_path / "truncated.ilsim"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphError, match="truncated or corrupt"):
        load_graph(truncated)
    garbage = tmp_path / "garbage.ilsim"
    garbage.write_bytes(b"\x00\x01not a graph")
    with pytest.raises(GraphError):
        load_graph(garbage)
    with pytest.raises(GraphError, match="no such graph file"):
        load_graph(tmp_path / "absent.ilsim")


def test_a_failed_save_leaves_the_previous_file_and_no_partial(graph_file, tmp_path, monkeypatch):
    target = tmp_path / "model.ilsim"
    target.write_bytes(graph_file.read_bytes())
    before = target.read_bytes()
    graph = load_graph(graph_file)

    def explode(path, tensors, dtype=None, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"half")
        raise KeyboardInterrupt("interrupted mid-write")

    import ilsim.hf.safetensors_file
    monkeypatch.setattr(ilsim.hf.safetensors_file, "write_safetensors", explode)
    with pytest.raises(KeyboardInterrupt):
        save_graph(graph, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.ilsim"]


def test_saving_is_deterministic(graph_file, tmp_path):
    graph = load_graph(graph_file)
    a, b = save_graph(graph, tmp_path / "a.ilsim"), save_graph(graph, tmp_path / "b.ilsim")
    assert a.read_bytes() == b.read_bytes()
    assert graph_format.FORMAT_VERSION == 1


def test_last_token_logits_are_the_last_row_of_all_logits(graph_file):
    graph = load_graph(graph_file)
    interp = Interpreter(graph)
    every = interp.forward(prompt(), interp.new_state())
    last = interp.forward(prompt(), interp.new_state(), logits="last")
    for name, a, b in zip(every._fields, every, last):
        assert b.shape[0] == 1 and b.dtype == a.dtype and np.array_equal(a[-1:], b), name
    with pytest.raises(InputError, match="logits must be 'all' or 'last'"):
        interp.forward(prompt(), interp.new_state(), logits="first")
