"""Model traces: every node's inputs and output on a real run of an integer graph (prefill, then
greedy decode steps), written as golden vectors with a manifest (docs/golden.md, "Model traces").

Layout of OUT:
    OUT/manifest.json                                   steps, prompt/generated ids, every vector
    OUT/model/<step>/<node>/in.<role>.<field>.<ext>     a node's inputs (RowQuant q zp m k, WideOut p m k)
    OUT/model/<step>/<node>/in.ids.<ext>                the token ids (the embedding's input)
    OUT/model/<step>/<node>/out.<field>.<ext>           its output
    OUT/model/<step>/<node>.safetensors, .h             with those formats
Step 0 is the prefill on the prompt, step s >= 1 the decode call on the token chosen after step
s - 1 (integer argmax of the last logits row, ties to the lowest id, as IntegerLM.generate).
Deterministic and atomic like ``write_golden_ops`` (temporary directory beside OUT, manifest last).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

import ilsim
from ilsim.errors import InputError
from ilsim.golden.cases import KBITS, MBITS, TensorSpec
from ilsim.fileio import clean_stale, replace_dir, temp_dir
from ilsim.golden.ops import MANIFEST
from ilsim.golden.writers import FORMATS, hex_digits, sha256_file, write_case_files
from ilsim.graph.format import Graph
from ilsim.graph.node_types import GRAPH_OPS
from ilsim.interpreter import Interpreter
from ilsim.ops._common import storage_dtype

MODEL_FORMAT = "ilsim-golden-model"
MODEL_FORMAT_VERSION = 1
DEFAULT_MODEL_FORMATS = ("npy", "hex")
SCALE_SPECS = {"m": TensorSpec(MBITS, False), "k": TensorSpec(KBITS, False)}
_LAYER = re.compile(r"^layers\.(\d+)\.")


def _value_tensors(prefix: str, value, spec: TensorSpec) -> tuple[dict, dict, dict]:
    """{name: array}, {name: TensorSpec}, {name: scale} of one value: RowQuant (q zp m k), WideOut
    (p m k) or a plain array (token ids, named ``prefix`` itself). ``spec`` is the width of q / p."""
    if not (isinstance(value, tuple) and hasattr(value, "_fields")):
        return {prefix: np.asarray(value)}, {prefix: spec}, {}
    fields = dict(zip(value._fields, value))
    main = "q" if "q" in fields else "p"
    specs = {main: spec, **({"zp": spec} if "zp" in fields else {}), **SCALE_SPECS}
    scale = {"m": f"{prefix}.m", "k": f"{prefix}.k"} | ({"zp": f"{prefix}.zp"} if "zp" in fields else {})
    return ({f"{prefix}.{f}": np.asarray(a) for f, a in fields.items()},
            {f"{prefix}.{f}": specs[f] for f in fields}, {f"{prefix}.{main}": scale})


def _to_storage(name: str, node: str, arr: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """``arr`` in the storage dtype of its declared width; a value outside the width is an error."""
    lo, hi = (-(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1) if spec.signed else (0, (1 << spec.bits) - 1)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise InputError(f"golden model: node {node!r} tensor {name} holds values in [{int(arr.min())}, "
                         f"{int(arr.max())}], outside its declared {'int' if spec.signed else 'uint'}{spec.bits}")
    return np.ascontiguousarray(arr.astype(storage_dtype(spec.bits, spec.signed)))


def _op_spec(op: str) -> str:
    from ilsim.ops.registry import OPS, get_op

    return get_op(op).spec if op in OPS else "docs/spec/graph.md"


def graph_sha256(graph: Graph) -> str:
    """A digest of the graph's nodes, model info, declarations and constant values."""
    h = hashlib.sha256()
    doc = {"model": asdict(graph.model), "nodes": [asdict(n) for n in graph.nodes], "inputs": graph.inputs,
           "outputs": graph.outputs, "decls": {k: asdict(v) for k, v in sorted(graph.decls.items())}}
    h.update(json.dumps(doc, sort_keys=True, default=list).encode())
    for name in sorted(graph.constants):
        arr = np.ascontiguousarray(graph.constants[name])
        h.update(f"{name}:{arr.dtype}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class TracingInterpreter(Interpreter):
    """An Interpreter that also hands each selected node's inputs and output to
    ``record(node, inputs, output)``."""

    def __init__(self, graph: Graph, reference: bool = False, select=None, record=None):
        super().__init__(graph, reference=reference)
        self.select = select or (lambda node: True)
        self.record = record

    def observe(self, node, inputs: dict, out) -> None:
        super().observe(node, inputs, out)
        if self.record is not None and self.select(node):
            self.record(node, inputs, out)


def _check_args(graph: Graph, prompt_ids, new_tokens, layers, formats):
    ids = np.asarray(prompt_ids)
    if ids.ndim > 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise InputError("golden model: prompt_ids must be a non-empty 1-d sequence of token ids")
    ids = ids.astype(np.int64).reshape(-1)
    if isinstance(new_tokens, bool) or not isinstance(new_tokens, int) or new_tokens < 0:
        raise InputError(f"golden model: new_tokens must be an int >= 0, got {new_tokens!r}")
    if ids.size + new_tokens > graph.model.max_positions:
        raise InputError(f"golden model: prompt ({ids.size} tokens) + {new_tokens} decode steps exceed the "
                         f"context of {graph.model.max_positions} positions")
    if layers is not None:
        layers = sorted(set(int(i) for i in layers))
        bad = [i for i in layers if not 0 <= i < graph.model.num_layers]
        if bad:
            raise InputError(f"golden model: layer {bad[0]} is not in [0, {graph.model.num_layers})")
    formats = list(DEFAULT_MODEL_FORMATS if not formats else formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"golden: unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    return ids, layers, [f for f in FORMATS if f in formats]


def _widths(graph: Graph) -> dict[str, TensorSpec]:
    """Declared width of every value: a node output's from its op, the token ids' from the vocabulary."""
    widths = {graph.inputs[0]: TensorSpec(max(1, (graph.model.vocab_size - 1).bit_length()), False)}
    for node in graph.nodes:
        widths[node.outputs[0]] = TensorSpec(*GRAPH_OPS[node.op].output_width(node))
    return widths


def _build(root: Path, graph: Graph, ids: np.ndarray, new_tokens: int, layers, formats, reference: bool) -> dict:
    widths = _widths(graph)
    vectors, steps = [], []
    step = {"n": 0}

    def select(node) -> bool:
        match = _LAYER.match(node.name)
        return layers is None or match is None or int(match.group(1)) in layers

    def record(node, inputs, out) -> None:
        tensors, specs, scales = {}, {}, {}
        parts = [(f"in.{role}", inputs[role], widths[name]) for role, name in node.inputs.items()]
        for prefix, value, width in parts + [("out", out, widths[node.outputs[0]])]:
            t, s, sc = _value_tensors(prefix, value, width)
            tensors.update(t)
            specs.update(s)
            scales.update(sc)
        tensors = {n: _to_storage(n, node.name, a, specs[n]) for n, a in tensors.items()}
        step_dir = root / "model" / str(step["n"])
        paths = write_case_files(step_dir, node.name, tensors, specs, formats)
        entries = []
        for n in sorted(tensors):
            e = {"name": n, "role": "input" if n.startswith("in.") else "output", "shape": list(tensors[n].shape),
                 "dtype": str(tensors[n].dtype), "bits": specs[n].bits, "signed": specs[n].signed,
                 "hex_digits": hex_digits(specs[n].bits)}
            if n in scales:
                e["scale"] = scales[n]
            entries.append(e)
        vectors.append({"step": step["n"], "node": node.name, "op": node.op, "spec": _op_spec(node.op),
                        "attributes": dict(sorted(node.attrs.items())), "params": dict(sorted(node.params.items())),
                        "inputs": dict(sorted(node.inputs.items())), "output": node.outputs[0],
                        "tensors": entries,
                        "files": {p.relative_to(root).as_posix(): sha256_file(p) for p in paths}})

    interp = TracingInterpreter(graph, reference=reference, select=select, record=record)
    state = interp.new_state()
    feed, generated, position = ids, [], 0
    for n in range(new_tokens + 1):
        step["n"] = n
        logits = interp.forward(feed, state)
        steps.append({"step": n, "kind": "prefill" if n == 0 else "decode",
                      "input_ids": [int(i) for i in feed], "positions": [position, position + len(feed)]})
        position += len(feed)
        generated.append(int(np.argmax(logits.p[-1])))
        feed = np.array([generated[-1]], dtype=np.int64)
    return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
            "ilsim_version": ilsim.__version__, "spec_version": ilsim.SPEC_VERSION,
            "model": asdict(graph.model), "graph_sha256": graph_sha256(graph), "reference": bool(reference),
            "prompt_ids": [int(i) for i in ids], "new_tokens": int(new_tokens), "generated_ids": generated,
            "layers": layers, "formats": list(formats), "steps": steps, "vectors": vectors}


def write_model_golden(lm_or_graph, out_dir, prompt_ids, new_tokens: int = 2, layers=None,
                       formats=DEFAULT_MODEL_FORMATS, reference: bool | None = None) -> dict:
    """Trace a model run into ``out_dir``: prefill on ``prompt_ids``, then ``new_tokens`` greedy decode
    steps; every node's inputs and output per call (``layers``: only those layers' nodes, plus the
    nodes outside layers: embed, final_norm, lm_head). Returns the manifest.

    ``lm_or_graph``: an IntegerLM (its graph and, unless ``reference`` is given, its mode) or a Graph.
    ``reference=True`` runs the scalar references (same bits, slower). Same arguments, same bytes;
    atomic like :func:`ilsim.golden.write_golden_ops`. An existing ``out_dir`` is replaced only if it
    is a previous model trace (its manifest has format ``ilsim-golden-model``).
    """
    graph = getattr(lm_or_graph, "graph", lm_or_graph)
    if not isinstance(graph, Graph):
        raise InputError(f"golden model: need an IntegerLM or a Graph, got {type(lm_or_graph).__name__}")
    if reference is None:
        reference = bool(getattr(lm_or_graph, "reference", False))
    ids, layers, formats = _check_args(graph, prompt_ids, new_tokens, layers, formats)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    if out.exists():
        try:
            kind = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind != MODEL_FORMAT:
            raise InputError(f"golden model: {out} exists and is not a model-trace directory (no {MANIFEST} "
                             f"of format {MODEL_FORMAT}); refusing to replace it")
    tmp = temp_dir(out)
    try:
        manifest = _build(tmp, graph, ids, new_tokens, layers, formats, bool(reference))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest
