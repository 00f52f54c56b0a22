"""The safetensors container under every checkpoint and graph: tensors tile the data section (no
overlap, gap or trailing byte), shapes and nesting are bounded, metadata is a string map; and a
graph file's sha256 catches any changed byte."""

import json
import struct

import numpy as np
import pytest

from ilsim.graph.files import load_graph, save_graph

from ilsim.graph.format import GraphError
from ilsim.hf.safetensors_file import CheckpointError, read_header, write_safetensors


def raw_file(path, header: dict, data: bytes):
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def two_tensors():
    return {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}


def test_a_well_formed_file_reads(tmp_path):
    assert set(read_header(raw_file(tmp_path / "ok.safetensors", two_tensors(), bytes(16))).tensors) == {"a", "b"}


@pytest.mark.parametrize("edit, data_bytes, message", [
    (lambda h: h["b"].update(data_offsets=[0, 8]), 16, "'b'.*overlaps tensor 'a'|'a'.*overlaps tensor 'b'"),
    (lambda h: h["b"].update(data_offsets=[12, 20]), 20, r"a gap in the data section: bytes \[8, 12\)"),
    (lambda h: None, 24, "8 bytes after the last tensor"),
    (lambda h: h["a"].update(shape=[0, 2 ** 62], data_offsets=[0, 0]) or h["b"].update(data_offsets=[0, 8]), 8,
     "beyond the supported limits"),
    (lambda h: h.update(__metadata__=["x"]), 16, "__metadata__ must map names to strings"),
    (lambda h: h["a"].update(shape=[True, 2]), 16, "corrupt shape"),
])
def test_a_bad_layout_is_refused_naming_the_tensor(tmp_path, edit, data_bytes, message):
    header = two_tensors()
    edit(header)
    with pytest.raises(CheckpointError, match=message):
        read_header(raw_file(tmp_path / "bad.safetensors", header, bytes(data_bytes)))


def test_a_header_nested_too_deeply_is_refused(tmp_path):
    blob = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    with pytest.raises(CheckpointError, match="nested too deeply|not valid JSON"):
        read_header(path)


def test_the_writer_tiles_its_data(tmp_path):
    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"x": np.zeros((3, 5), np.float32), "y": np.ones(7, np.float32), "z": np.zeros(0, np.float32)})
    assert set(read_header(path).tensors) == {"x", "y", "z"}


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    from ilsim.export.build import ExportOptions, export_model
    from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint

    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=16,
                         tie_word_embeddings=True)
    root = tmp_path_factory.mktemp("layout")
    save_checkpoint(root / "ckpt", config, random_llama_weights(config, seed=0))
    graph = export_model(load_checkpoint(root / "ckpt"), np.arange(64) % 40, ExportOptions(calib_context=16,
                                                                                       calib_windows=2))
    return save_graph(graph, root / "g.ilsim")


def test_pointing_one_tensor_at_anothers_bytes_is_refused(graph_file, tmp_path):
    data = graph_file.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["layers.1.q_proj.b"]["data_offsets"] = header["layers.0.q_proj.b"]["data_offsets"]
    path = raw_file(tmp_path / "alias.ilsim", header, data[8 + n:])
    with pytest.raises(GraphError, match="overlaps"):
        load_graph(path)


def test_one_changed_data_byte_fails_the_checksum(graph_file, tmp_path):
    data = bytearray(graph_file.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    begin = 8 + n + header["layers.0.q_proj.b"]["data_offsets"][0]
    data[begin] ^= 1                      # still a valid uint8 weight: only the checksum can tell
    path = tmp_path / "flipped.ilsim"
    path.write_bytes(bytes(data))
    with pytest.raises(GraphError, match="does not match the sha256"):
        load_graph(path)
