"""Complete validation of a graph: declarations, stored tensors, nodes, edges and attributes.

Run on every load and before every save, so the interpreter only ever sees a well-formed graph.
Every failure is a GraphError naming the file and the node or tensor.
"""

from __future__ import annotations

import numpy as np

from ilsim.graph.format import Graph, GraphError
from ilsim.graph.node_types import GRAPH_OPS
from ilsim.widths import int_range


#: what a value along an edge holds, in words
KINDS = {"ids": "the token ids", "rows": "per-row quantized integers", "wide": "unquantized logits (a wide di_matmul)"}


def _check_constant(src: str, name: str, array: np.ndarray, decl) -> None:
    if str(array.dtype) != decl.dtype:
        raise GraphError(f"{src}: tensor {name!r} is stored as {array.dtype}, declared {decl.dtype}")
    if tuple(array.shape) != tuple(decl.shape):
        raise GraphError(f"{src}: tensor {name!r} has shape {tuple(array.shape)}, declared {tuple(decl.shape)}")
    try:
        lo, hi = int_range(decl.bits, decl.signed)
    except Exception:
        raise GraphError(f"{src}: tensor {name!r} declares an invalid width {decl.bits}") from None
    info = np.iinfo(array.dtype)
    if lo < info.min or hi > info.max:
        raise GraphError(f"{src}: tensor {name!r} declares {decl.bits}-bit values that {decl.dtype} cannot hold")
    if array.size and (int(array.min()) < lo or int(array.max()) > hi):
        bad = np.argwhere((array < lo) | (array > hi))[0]
        idx = tuple(int(i) for i in bad)
        raise GraphError(f"{src}: tensor {name!r}{list(idx)} = {int(array[idx])} is outside its declared "
                         f"{'signed' if decl.signed else 'unsigned'} {decl.bits}-bit range [{lo}, {hi}]")


def validate_graph(graph: Graph) -> None:
    """Raise GraphError on the first defect: constants vs declarations, unknown ops, attributes,
    dangling or duplicate edges, missing outputs, and each op's own shape rules."""

    src = graph.source
    missing = sorted(set(graph.decls) - set(graph.constants))
    if missing:
        raise GraphError(f"{src}: constants declared but absent: {missing[:5]}")
    undeclared = sorted(set(graph.constants) - set(graph.decls))
    if undeclared:
        raise GraphError(f"{src}: constants without a declaration: {undeclared[:5]}")
    for name, decl in graph.decls.items():
        _check_constant(src, name, graph.constants[name], decl)

    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise GraphError(f"{src}: a graph has one input (the token ids) and one output (the logits), got "
                         f"inputs {graph.inputs} and outputs {graph.outputs}")
    produced = {graph.inputs[0]: "ids"}      # value name -> its kind (GraphOp.input_kind / output_kind)
    columns = {graph.inputs[0]: None}        # value name -> values per token (GraphOp.columns)
    names = set()
    for node in graph.nodes:
        where = f"{src}: node {node.name!r}"
        if node.name in names:
            raise GraphError(f"{where}: duplicate node name")
        names.add(node.name)
        if node.op not in GRAPH_OPS:
            raise GraphError(f"{where}: unknown op {node.op!r} (known: {', '.join(sorted(GRAPH_OPS))})")
        op = GRAPH_OPS[node.op]
        if set(node.inputs) != set(op.inputs):
            raise GraphError(f"{where}: op {node.op} takes inputs {sorted(op.inputs)}, got {sorted(node.inputs)}")
        allowed = set(op.params) | set(op.optional_params)
        if not set(op.params) <= set(node.params) <= allowed:
            raise GraphError(f"{where}: op {node.op} takes params {sorted(op.params)} "
                             f"(optional {sorted(op.optional_params)}), got {sorted(node.params)}")
        for role, value in node.inputs.items():
            if value not in produced:
                raise GraphError(f"{where}: input {role!r} reads {value!r}, which no earlier node produces")
            if produced[value] != op.input_kind(role):
                raise GraphError(f"{where}: input {role!r} takes {KINDS[op.input_kind(role)]}, but {value!r} "
                                 f"holds {KINDS[produced[value]]}")
        for role, const in node.params.items():
            if const not in graph.constants:
                raise GraphError(f"{where}: param {role!r} names tensor {const!r}, which the file does not hold")
        if len(node.outputs) != 1:
            raise GraphError(f"{where}: every op has exactly one output, got {node.outputs}")
        if node.outputs[0] in produced:
            raise GraphError(f"{where}: output {node.outputs[0]!r} is already produced by another node")
        op.check_attrs(node, where, graph)
        op.check_shapes(node, graph, where)
        columns[node.outputs[0]] = op.columns(node, graph, {role: columns[v] for role, v in node.inputs.items()},
                                              where)
        produced[node.outputs[0]] = op.output_kind(node)
    out = graph.outputs[0]
    if out not in produced:
        raise GraphError(f"{src}: graph output {out!r} is not produced by any node")


def require_logits_output(graph: Graph) -> None:
    """GraphError unless the graph's output is the logits of a language model: a wide di_matmul."""

    out = graph.outputs[0]
    node = next((n for n in graph.nodes if out in n.outputs), None)
    if node is None or GRAPH_OPS[node.op].output_kind(node) != "wide":
        raise GraphError(f"{graph.source}: graph output {out!r} is not the logits of a language model (a wide "
                         f"di_matmul, wide = true){'' if node is None else f'; node {node.name!r} produces it'}")
