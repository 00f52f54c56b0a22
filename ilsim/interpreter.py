"""The integer interpreter: runs a graph node by node on integer tensors, with a KV cache.

    interp = Interpreter(graph)                 # or Interpreter(graph, reference=True)
    state = interp.new_state()
    logits = interp.forward(prompt_ids, state)  # prefill: WideOut [T, vocab]
    logits = interp.forward([next_id], state)   # decode: one token at a time

No floating point is used anywhere in forward(): every node is an integer operator from
ilsim.ops. ``trace`` captures chosen node outputs; ``audit`` records, per value, the largest
magnitude seen against its declared width.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from ilsim.errors import IlsimError, InputError
from ilsim.graph.format import Graph
from ilsim.graph.op_base import Context
from ilsim.graph.node_types import GRAPH_OPS
from ilsim.widths import int_input


def last_row(value):
    """The last token's row of an edge value: a per-row tuple (RowQuant, WideOut) or an id array."""
    if isinstance(value, tuple):
        return type(value)(*(field[-1:] for field in value))
    return value[-1:]


@dataclass
class WidthRecord:
    """Largest and smallest value seen in a value's integer tensor, against its declared width."""

    bits: int
    signed: bool
    lo: int = 0
    hi: int = 0

    def update(self, array: np.ndarray) -> None:
        if array.size:
            self.lo = min(self.lo, int(array.min()))
            self.hi = max(self.hi, int(array.max()))

    def used_bits(self) -> int:
        """Bits needed for the values seen (sign bit included when signed)."""
        magnitude = max(abs(self.lo), abs(self.hi))
        return magnitude.bit_length() + (1 if self.signed else 0)


@dataclass
class State:
    """Everything that persists between forward calls: the caches and the next position."""

    caches: dict
    position: int = 0
    capacity: int = 0


@dataclass
class Interpreter:
    graph: Graph
    reference: bool = False
    trace: tuple = ()                 # glob patterns of node names whose outputs to keep
    audit: bool = False
    traced: dict = field(default_factory=dict)
    widths: dict = field(default_factory=dict)
    prepared: dict = field(default_factory=dict)   # node name -> GraphOp.prepare result (fast path)

    def __post_init__(self):
        if not self.reference:
            for node in self.graph.nodes:
                params = {role: self.graph.constants[name] for role, name in node.params.items()}
                prepared = GRAPH_OPS[node.op].prepare(node, params)
                if prepared is not None:
                    self.prepared[node.name] = prepared

    def new_state(self, capacity: int | None = None) -> State:
        capacity = capacity or self.graph.model.max_positions
        caches = {n.name: GRAPH_OPS[n.op].new_cache(n, capacity) for n in self.graph.nodes if n.op == "attention"}
        return State(caches=caches, capacity=capacity)

    def forward(self, token_ids, state: State, logits: str = "all"):
        """Run the graph on new tokens (continuing ``state``); returns the graph's output value.

        ``logits="last"`` computes the output node (the LM head) for the last token only, as
        generation needs; its inputs are the last rows of the values it would otherwise read, so
        the result is the last row of the ``"all"`` result, bit for bit.
        """
        if logits not in ("all", "last"):
            raise InputError(f"forward: logits must be 'all' or 'last', got {logits!r}")
        ids = int_input(np.asarray(token_ids).reshape(-1), "forward", "token_ids")
        vocab = self.graph.model.vocab_size
        if int(ids.min()) < 0 or int(ids.max()) >= vocab:
            bad = int(np.argmax((ids < 0) | (ids >= vocab)))
            raise InputError(f"token id {int(ids[bad])} at position {bad} is outside the vocabulary [0, {vocab})")
        t = ids.shape[0]
        if state.position + t > state.capacity:
            raise InputError(f"{state.position + t} tokens exceed the context of {state.capacity} positions")
        ctx = Context(positions=np.arange(state.position, state.position + t, dtype=np.int64),
                      caches=state.caches, reference=self.reference, prepared=self.prepared)
        values = {self.graph.inputs[0]: ids}
        for node in self.graph.nodes:
            op = GRAPH_OPS[node.op]
            inputs = {role: values[name] for role, name in node.inputs.items()}
            if logits == "last" and self.graph.outputs[0] in node.outputs:
                if not op.rowwise:
                    raise InputError(f"forward: logits='last' needs a row-wise output node, {node.name} is {node.op}")
                inputs = {role: last_row(value) for role, value in inputs.items()}
            params = {role: self.graph.constants[name] for role, name in node.params.items()}
            try:
                out = op.run(node, inputs, params, ctx)
            except IlsimError as err:   # the same error, told where: file and node
                raise type(err)(f"{self.graph.source}: node {node.name!r} ({node.op}): {err}") from None
            values[node.outputs[0]] = out
            self.observe(node, inputs, out)
        state.position += t
        return values[self.graph.outputs[0]]

    def observe(self, node, inputs: dict, out) -> None:
        """Called after every node with its input values and its output: keeps traced outputs and
        the width audit. Subclasses may extend it (the golden model-trace writer does)."""
        if self.trace and any(fnmatch.fnmatchcase(node.name, pat) for pat in self.trace):
            self.traced.setdefault(node.name, []).append(out)
        if self.audit:
            self._audit(node, out)

    def _audit(self, node, out) -> None:
        bits, signed = GRAPH_OPS[node.op].output_width(node)
        record = self.widths.setdefault(node.outputs[0], WidthRecord(bits, signed))
        record.update(np.asarray(out[0]))
