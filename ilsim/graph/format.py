"""The ilsim graph file: one safetensors file holding the integer tensors, with the graph (JSON)
and the tokenizer in its metadata. Written atomically; validated completely on load.

Layout (docs/spec/graph.md):
    metadata["ilsim.format"]    = "ilsim-graph"
    metadata["ilsim.graph"]     = JSON: version, model, quant, declarations, inputs, outputs, nodes
    metadata["ilsim.tokenizer"] = the tokenizer.json text (optional)
    tensors                     = every constant named in the graph's "constants" table
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ilsim import SPEC_VERSION, __version__
from ilsim.errors import InputError

FORMAT_NAME = "ilsim-graph"
FORMAT_VERSION = 1
_DTYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64"}


class GraphError(InputError):
    """A graph file or graph object that breaks the format; the message names file, node or tensor."""


@dataclass(frozen=True)
class ConstDecl:
    """A constant tensor's declaration: storage dtype, shape and the width its values must fit."""

    dtype: str
    shape: tuple
    bits: int
    signed: bool


@dataclass
class Node:
    """One operator application. ``inputs`` name values, ``params`` name constants."""

    name: str
    op: str
    inputs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    outputs: list = field(default_factory=list)


@dataclass
class ModelInfo:
    """What the interpreter and the tokenizer side need to know about the model."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    max_positions: int
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    name: str = ""


@dataclass
class Graph:
    model: ModelInfo
    nodes: list
    constants: dict            # name -> np.ndarray
    decls: dict                # name -> ConstDecl
    inputs: list = field(default_factory=lambda: ["tokens"])
    outputs: list = field(default_factory=lambda: ["logits"])
    quant: dict = field(default_factory=dict)
    tokenizer_json: str | None = None
    source: str = "<memory>"

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise GraphError(f"{self.source}: no node named {name!r}")

    def parameter_count(self) -> int:
        return int(sum(a.size for a in self.constants.values()))


def declare(array: np.ndarray, bits: int, signed: bool) -> ConstDecl:
    """The declaration of a constant stored in ``array`` with values of the given width."""
    return ConstDecl(dtype=str(array.dtype), shape=tuple(int(s) for s in array.shape), bits=bits, signed=signed)


def graph_to_json(graph: Graph) -> str:
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "spec_version": SPEC_VERSION,
        "ilsim_version": __version__,
        "model": asdict(graph.model),
        "quant": graph.quant,
        "inputs": graph.inputs,
        "outputs": graph.outputs,
        "constants": {name: {"dtype": d.dtype, "shape": list(d.shape), "bits": d.bits, "signed": d.signed}
                      for name, d in sorted(graph.decls.items())},
        "nodes": [asdict(n) for n in graph.nodes],
    }
    return json.dumps(doc, indent=1, sort_keys=True)


def check_destination(path) -> Path:
    """InputError unless a graph file can be written at ``path``: not an existing directory, and
    every existing ancestor a directory (so a long export is never run into an unwritable place)."""
    from ilsim.errors import InputError

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the graph file's path (e.g. {path / 'model.ilsim'})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{path}: cannot be written, {parent} is a file, not a directory")
            if not os.access(parent, os.W_OK):
                raise InputError(f"{path}: cannot be written, no permission to write in {parent}")
            break
    return path


def content_digest(graph_json: str, tokenizer_json: str | None, constants: dict) -> str:
    """sha256 over the graph JSON, the tokenizer text and every constant (sorted by name: name,
    dtype, shape, then its bytes in C order, little-endian): stored in the file's metadata as
    ``ilsim.sha256`` and checked on load, so no corrupted byte (data or JSON) changes a model silently."""
    h = hashlib.sha256()
    for text in (graph_json, tokenizer_json or ""):
        blob = text.encode("utf-8")
        h.update(len(blob).to_bytes(8, "little") + blob)
    for name in sorted(constants):
        array = np.ascontiguousarray(constants[name])
        array = array.astype(array.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode("utf-8"))
        h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def write_graph(graph: Graph, path) -> Path:
    """Write ``graph`` to ``path`` atomically (temp file in the same folder, fsync, rename): an
    interrupted or failed write leaves no file at ``path`` or the previous one intact. The bytes
    depend only on the graph (sorted tensors and keys), so a write is reproducible. No operator
    semantics here: :func:`ilsim.graph.files.save_graph` validates, then calls this."""
    from ilsim.fileio import replace_file, temp_file
    from ilsim.hf.safetensors_file import write_safetensors

    path = check_destination(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ilsim.format": FORMAT_NAME, "ilsim.graph": graph_to_json(graph)}
    if graph.tokenizer_json is not None:
        metadata["ilsim.tokenizer"] = graph.tokenizer_json
    metadata["ilsim.sha256"] = content_digest(metadata["ilsim.graph"], graph.tokenizer_json, graph.constants)
    tmp = temp_file(path)
    try:
        write_safetensors(tmp, graph.constants, dtype=None, metadata=metadata)
        replace_file(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise GraphError(message)


def _parse_doc(doc, src: str) -> Graph:
    """The Graph of a graph JSON document, its format and version checked first, then its schema."""
    from ilsim.graph.schema import SchemaError, check_document, short_repr

    _require(isinstance(doc, dict), f"{src}: graph JSON must be an object, got {type(doc).__name__}")
    _require(doc.get("format") == FORMAT_NAME, f"{src}: not an ilsim graph (format {short_repr(doc.get('format'))})")
    version = doc.get("version")
    _require(type(version) is int and version == FORMAT_VERSION,
             f"{src}: graph format version {short_repr(version)} is not supported (this ilsim reads version "
             f"{FORMAT_VERSION})")
    try:
        check_document(doc, _DTYPES)
    except SchemaError as err:
        raise GraphError(f"{src}: {err}") from None
    model = ModelInfo(**doc["model"])
    decls = {name: ConstDecl(d["dtype"], tuple(d["shape"]), d["bits"], d["signed"])
             for name, d in doc["constants"].items()}
    nodes = [Node(name=n["name"], op=n["op"], inputs=dict(n.get("inputs", {})), params=dict(n.get("params", {})),
                  attrs=dict(n.get("attrs", {})), outputs=list(n.get("outputs", [])))
             for n in doc["nodes"]]
    return Graph(model=model, nodes=nodes, constants={}, decls=decls, inputs=list(doc["inputs"]),
                 outputs=list(doc["outputs"]), quant=dict(doc.get("quant", {})), source=src)


def read_graph(path) -> Graph:
    """Read a graph file: its container, JSON schema, declared-vs-stored tensors and checksum. Any
    defect is a GraphError naming the file (and the tensor). Operator semantics are checked above
    this layer: :func:`ilsim.graph.files.load_graph` reads, then validates."""
    from ilsim.hf.safetensors_file import (INTEGER_FILE_DTYPES, CheckpointError, read_header,
                                           read_integer_tensors)

    path = Path(path)
    src = str(path)
    if path.is_dir():
        raise GraphError(f"{src}: is a directory, not a graph file")
    if not path.is_file():
        raise GraphError(f"{src}: no such graph file")
    try:
        header = read_header(path, INTEGER_FILE_DTYPES)
        metadata = header.metadata
        _require(metadata.get("ilsim.format") == FORMAT_NAME,
                 f"{src}: safetensors file without ilsim graph metadata (not an ilsim graph)")
        try:
            doc = json.loads(metadata["ilsim.graph"])
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise GraphError(f"{src}: graph JSON is missing or corrupt ({err})") from None
        except RecursionError:
            raise GraphError(f"{src}: graph JSON is nested too deeply") from None
        graph = _parse_doc(doc, src)
        names = set(header.tensors)
        missing = sorted(set(graph.decls) - names)
        extra = sorted(names - set(graph.decls))
        _require(not missing, f"{src}: constants declared but not stored: {missing[:5]}")
        _require(not extra, f"{src}: tensors stored but not declared: {extra[:5]}")
        graph.constants = read_integer_tensors(header)
        stored = metadata.get("ilsim.sha256")
        if stored is not None and stored != content_digest(metadata["ilsim.graph"], metadata.get("ilsim.tokenizer"),
                                                           graph.constants):
            raise GraphError(f"{src}: corrupt graph file: its content (graph JSON, tokenizer or tensor bytes) does "
                             "not match the sha256 stored when it was saved")
    except CheckpointError as err:
        raise GraphError(f"{src}: truncated or corrupt graph file ({err})") from None
    except OSError as err:
        raise GraphError(f"{src}: cannot read graph file ({err})") from None
    graph.tokenizer_json = metadata.get("ilsim.tokenizer")
    return graph
