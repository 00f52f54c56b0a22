"""The graph operator interface: what a node type declares (inputs, params, attributes, widths)
and does (check, prepare, run), and the per-call run context. The node types themselves are in
ops.py (one class per op) and attention.py; the registry of operators (ilsim.ops.registry) says
which class serves each node type.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from ilsim.errors import InputError
from ilsim.graph.format import Graph, GraphError, Node

REQUIRED = object()


def implementation(module: str, name: str, reference: bool):
    """The fast path ``module.name`` or its scalar reference ``module.name_reference``."""
    mod = importlib.import_module(module)
    return getattr(mod, f"{name}_reference" if reference else name)


@dataclass
class Context:
    """Per-call run state: positions of the tokens, the per-node caches, and the mode."""

    positions: np.ndarray
    caches: dict = field(default_factory=dict)
    reference: bool = False
    prepared: dict = field(default_factory=dict)   # node name -> what GraphOp.prepare returned


class GraphOp:
    """Base class. Subclasses declare ``inputs``, ``params``, ``optional_params`` and ``attrs``
    (name -> (type, default or REQUIRED)) and implement ``run``."""

    name = ""
    rowwise = True        # each output row depends only on the same row of the inputs
    inputs: tuple = ()
    params: tuple = ()
    optional_params: tuple = ()
    attrs: dict = {}

    def check_attrs(self, node: Node, where: str, graph: Graph) -> None:
        unknown = set(node.attrs) - set(self.attrs)
        if unknown:
            raise GraphError(f"{where}: unknown attributes {sorted(unknown)} for op {self.name}")
        for key, (kind, default) in self.attrs.items():
            if key not in node.attrs:
                if default is REQUIRED:
                    raise GraphError(f"{where}: op {self.name} needs attribute {key!r}")
                continue
            value = node.attrs[key]
            ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if not ok:
                raise GraphError(f"{where}: attribute {key!r} must be {kind.__name__}, got {value!r}")
        try:
            self.check_operator_attrs(node, graph)
        except InputError as err:
            raise GraphError(f"{where}: {err}") from None

    def check_operator_attrs(self, node: Node, graph: Graph) -> None:
        """Every operator call ``run`` makes, its attributes checked by the operator module's own
        check (the code its reference and its fast path run first): InputError for any value the
        reference would refuse, so a node loads only if both paths accept it. Called once at load,
        after the attribute types are checked; ``graph`` gives the sizes some bounds need."""

    def attr_values(self, node: Node) -> dict:
        """Every attribute of the op: the node's value, or the default."""
        return {key: self.attr(node, key) for key in self.attrs}

    def attr(self, node: Node, key: str):
        kind, default = self.attrs[key]
        return node.attrs.get(key, default)

    def check_shapes(self, node: Node, graph: Graph, where: str) -> None:
        """Op-specific consistency of param shapes with attributes and the model."""

    def input_kind(self, role: str) -> str:
        """What the input ``role`` takes: "rows" (RowQuant) or "ids" (the token ids)."""
        return "rows"

    def columns(self, node: Node, graph: Graph, inputs: dict, where: str) -> int | None:
        """The number of values per token (row) of the output, given those of the inputs (role ->
        count; None for the token ids); GraphError where the inputs' counts do not fit the node."""
        return next(iter(inputs.values()))

    def output_kind(self, node: Node) -> str:
        """What the node produces: "rows" (RowQuant) or "wide" (WideOut: unquantized, the logits)."""
        return "rows"

    def output_width(self, node: Node) -> tuple[int, bool]:
        """(bits, signed) declared for the node's output integers (its q, or p for a wide output)."""
        signed = self.attr(node, "out_symmetric") if "out_symmetric" in self.attrs else False
        return self.attr(node, "out_bits"), bool(signed)

    def prepare(self, node: Node, params: dict):
        """Per-node work done once per graph for the fast path (validated, folded weights), or
        None. The interpreter passes the result to ``run`` as ``ctx.prepared[node.name]``."""
        return None

    def run(self, node: Node, inputs: dict, params: dict, ctx: Context):
        raise NotImplementedError
