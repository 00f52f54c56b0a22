"""The graph's node types: one GraphOp instance per operator that the operator registry
(ilsim.ops.registry, ``OpEntry.graph``) says runs as a graph node. The validator, the
interpreter and the golden model writer look node types up here; nothing else lists them."""

from __future__ import annotations

from ilsim.graph.op_base import GraphOp
from ilsim.ops.registry import OPS, names_with, resolve

GRAPH_OPS: dict[str, GraphOp] = {name: resolve(OPS[name].graph)() for name in names_with("graph")}
