"""The attention graph node: its attributes, shape rules, KV cache and the call of the attention
operator (ilsim.ops.attention, where the composite contract and its arithmetic live; contract in
docs/spec/graph.md, "attention")."""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import get_type_hints

import numpy as np

from ilsim.graph.format import GraphError
from ilsim.graph.op_base import REQUIRED, GraphOp
from ilsim.ops.attention import AttentionAttrs, KVCache, attention, attention_reference, check_attrs
from ilsim.ops.rope import check_rope_tables


class AttentionOp(GraphOp):
    name = "attention"
    rowwise = False       # a token attends to every cached position
    inputs = ("q", "k", "v")
    params = ("cos", "sin")
    attrs = {f.name: (get_type_hints(AttentionAttrs)[f.name], REQUIRED if f.default is MISSING else f.default)
             for f in fields(AttentionAttrs)}

    def check_operator_attrs(self, node, graph):
        """Every operator call of the contract checked by the operators' own checks
        (:func:`ilsim.ops.attention.check_attrs`), with the int64 bound of the longest
        probability-value sum at the model's max_positions."""
        check_attrs(self.typed_attrs(node), graph.model.max_positions)

    def typed_attrs(self, node) -> AttentionAttrs:
        return AttentionAttrs(**self.attr_values(node))

    def check_shapes(self, node, graph, where):
        at = node.attrs
        h, hkv, d = at["num_heads"], at["num_kv_heads"], at["head_dim"]
        m = graph.model
        if (h, hkv, d) != (m.num_heads, m.num_kv_heads, m.head_dim):
            raise GraphError(f"{where}: num_heads, num_kv_heads, head_dim = {(h, hkv, d)} do not match the "
                             f"model's {(m.num_heads, m.num_kv_heads, m.head_dim)}")
        for role in ("cos", "sin"):
            shape = tuple(graph.decls[node.params[role]].shape)
            if len(shape) != 2 or shape[1] != d // 2 or shape[0] < graph.model.max_positions:
                raise GraphError(f"{where}: {role} table has shape {shape}, needs "
                                 f"({graph.model.max_positions}, {d // 2})")

    def columns(self, node, graph, inputs, where):
        """q has num_heads x head_dim values per token, k and v num_kv_heads x head_dim: the sizes
        checked against the file's own tensors (the projections that produce them)."""
        at = node.attrs
        for role, heads in (("q", at["num_heads"]), ("k", at["num_kv_heads"]), ("v", at["num_kv_heads"])):
            if inputs[role] != heads * at["head_dim"]:
                raise GraphError(f"{where}: input {role!r} has {inputs[role]} values per token, the attention "
                                 f"needs {heads} heads x {at['head_dim']} = {heads * at['head_dim']}")
        return inputs["q"]

    def output_width(self, node):
        return self.attr(node, "out_bits"), False

    def prepare(self, node, params):
        """The RoPE tables checked once (di_rope checks them on every call): True."""
        check_rope_tables(params["cos"], params["sin"], self.attr(node, "rope_frac_bits"), node.attrs["head_dim"])
        return True

    def new_cache(self, node, capacity: int) -> KVCache:
        at = node.attrs
        return KVCache(at["num_kv_heads"], at["head_dim"], capacity, np.uint8 if self.attr(node, "qk_bits") <= 8
                       else np.uint16, np.int8 if self.attr(node, "v_bits") <= 8 else np.int16)

    def run(self, node, inputs, params, ctx):
        step = attention_reference if ctx.reference else attention
        return step(inputs["q"], inputs["k"], inputs["v"], ctx.positions, params["cos"], params["sin"],
                    ctx.caches[node.name], self.typed_attrs(node), name=node.name,
                    tables_checked=bool(ctx.prepared.get(node.name)))
