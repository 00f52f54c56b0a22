"""A small graph file mutated thousands of times, in its bytes and in its JSON fields: every
outcome is a clean load (of the same content) or an ilsim error -- never another exception, a hang
or a silent change of meaning. The CLI turns those errors into one line and exit status 2."""

import copy
import json
import os
import random

import numpy as np
import pytest

from ilsim.cli import main
from ilsim.errors import IlsimError
from ilsim.export.build import ExportOptions, export_model
from ilsim.graph.files import load_graph, save_graph
from ilsim.graph.format import GraphError, content_digest, graph_to_json
from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint
from ilsim.interpreter import Interpreter

CONFIG = LlamaConfig(vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                     num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=16,
                     tie_word_embeddings=True, rope_theta=500.0)
DEEP = os.environ.get("ILSIM_HYPOTHESIS_PROFILE") == "deep"
BYTE_MUTATIONS = 20_000 if DEEP else 2_000
JSON_MUTATIONS = 10_000 if DEEP else 1_000


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    save_checkpoint(root / "ckpt", CONFIG, random_llama_weights(CONFIG, seed=0))
    ids = np.random.default_rng(1).integers(0, CONFIG.vocab_size, size=64)
    graph = export_model(load_checkpoint(root / "ckpt"), ids,
                         ExportOptions(method="rotate", calib_context=16, calib_windows=2))
    return save_graph(graph, root / "tiny.ilsim")


def digest(graph) -> str:
    return content_digest(graph_to_json(graph), graph.tokenizer_json, graph.constants)


def outcome(path):
    """'error' (an ilsim error at load or at run), or the digest of what loaded and ran."""
    try:
        graph = load_graph(path)
    except GraphError:
        return "error", None
    try:
        interp = Interpreter(graph)
        interp.forward(np.arange(3), interp.new_state())
    except IlsimError:
        return "run error", graph
    return digest(graph), graph


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    pos = rng.randrange(len(data))
    if kind == 0:                                   # flip bits of one byte
        return data[:pos] + bytes([data[pos] ^ rng.randrange(1, 256)]) + data[pos + 1:]
    if kind == 1:                                   # truncate
        return data[:pos]
    if kind == 2:                                   # insert bytes
        return data[:pos] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9))) + data[pos:]
    stop = min(len(data), pos + rng.randrange(1, 64))   # overwrite a run
    return data[:pos] + bytes(rng.randrange(256) for _ in range(stop - pos)) + data[stop:]


def test_byte_mutations_are_refused_or_change_nothing(graph_file, tmp_path):
    data = graph_file.read_bytes()
    original = digest(load_graph(graph_file))
    rng = random.Random(0)
    path = tmp_path / "m.ilsim"
    loaded = 0
    for _ in range(BYTE_MUTATIONS):
        path.write_bytes(mutate_bytes(data, rng))
        result, _graph = outcome(path)
        if result not in ("error", "run error"):
            assert result == original, "a corrupted file loaded with a different meaning"
            loaded += 1
    assert loaded < BYTE_MUTATIONS // 10   # almost every mutation is caught (padding bytes may not matter)


# ---- JSON fields: the schema and the operators' checks below the checksum -----------------------

WILD = [None, True, False, 0, -1, 1, 2, 7, 8, 16, 17, 63, 64, 65, 2 ** 31, 2 ** 62, 2 ** 63, 2 ** 64, -2 ** 63,
        1.5, float("1e300"), "", "eight", "x" * 2000, [], [0], [0, 2 ** 62], [[1]], {}, {"a": 1}, [1] * 5]


def leaves(doc, path=()):
    """Every (path, value) inside the document."""
    yield path, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from leaves(value, path + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from leaves(value, path + (i,))


def set_at(doc, path, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def delete_at(doc, path):
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]


def mutate_json(doc, rng: random.Random):
    doc = copy.deepcopy(doc)
    paths = [p for p, _ in leaves(doc) if p]
    path = rng.choice(paths)
    kind = rng.randrange(5)
    if kind == 0:
        delete_at(doc, path)
    elif kind == 1:                                 # a neighbouring integer or a sign flip
        old = dict(leaves(doc))[path]
        if type(old) is int:
            set_at(doc, path, rng.choice([old - 1, old + 1, -old, old * 2, 0]))
        else:
            set_at(doc, path, rng.choice(WILD))
    elif kind == 2:
        set_at(doc, path, rng.choice(WILD))
    elif kind == 3 and isinstance(dict(leaves(doc))[path[:-1]], dict):
        set_at(doc, path[:-1] + ("extra_" + str(rng.randrange(10)),), rng.choice(WILD))
    else:                                           # a deep nest
        nest = 0
        for _ in range(rng.choice([10, 100_000])):
            nest = [nest]
        set_at(doc, path, nest)
    return doc


def write_with_json(graph_file, path, doc):
    """The file with its graph JSON replaced and the checksum recomputed, as a buggy exporter
    would write it (so the checks below the checksum are what stands in the way)."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    with safe_open(str(graph_file), framework="numpy") as fh:
        meta = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    try:
        text = json.dumps(doc)
    except RecursionError:
        text = "[" * 100_000 + "]" * 100_000
    meta["ilsim.graph"] = text
    meta["ilsim.sha256"] = content_digest(text, meta.get("ilsim.tokenizer"), tensors)
    save_file(tensors, str(path), metadata=meta)


def test_json_mutations_are_refused_or_run_alike_on_both_paths(graph_file, tmp_path):
    from safetensors import safe_open

    with safe_open(str(graph_file), framework="numpy") as fh:
        doc = json.loads(fh.metadata()["ilsim.graph"])
    rng = random.Random(1)
    path = tmp_path / "m.ilsim"
    errors = 0
    for _ in range(JSON_MUTATIONS):
        write_with_json(graph_file, path, mutate_json(doc, rng))
        result, graph = outcome(path)
        if result == "error":
            errors += 1
            continue
        interp = Interpreter(graph, reference=True)
        try:
            interp.forward(np.arange(3), interp.new_state())
            ref = "ran"
        except IlsimError:
            ref = "run error"
        assert (result == "run error") == (ref == "run error"), f"fast: {result}, reference: {ref}"
    assert errors > JSON_MUTATIONS // 2


@pytest.mark.parametrize("seed", range(6))
def test_the_cli_reports_a_corrupt_graph_in_one_line_with_status_2(graph_file, tmp_path, seed, capsys):
    rng = random.Random(seed)
    path = tmp_path / "bad.ilsim"
    data = graph_file.read_bytes()
    while True:
        path.write_bytes(mutate_bytes(data, rng))
        if outcome(path)[0] == "error":
            break
    for argv in (["inspect", str(path)], ["generate", str(path), "--prompt", "x", "--max-new-tokens", "2"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().count("\n") == 0 and str(path) in err, err
