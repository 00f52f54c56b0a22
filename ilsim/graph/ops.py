"""Graph operators: for each op, its inputs, params, attributes, shape rules and execution.

One class per op (QONNX style): the validator asks the op what it needs, the interpreter asks it
to run. Execution calls the fast path of ilsim.ops, or its ``*_reference`` twin when the run
context asks for the reference (``Context.reference``), so a whole model can be cross-checked.

Values flowing along edges are ``RowQuant`` (per-row quantized: q, zp, m, k) except the token ids
(an int64 array) and the logits (``WideOut``: p, m, k).
"""

from __future__ import annotations

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS
from ilsim.arith.rounding import DEFAULT_ROUNDING
from ilsim.errors import InputError
from ilsim.graph.format import Graph, GraphError, Node
from ilsim.graph.op_base import REQUIRED, GraphOp, implementation
from ilsim.ops.quantize import RowQuant


def _shape(graph: Graph, node: Node, role: str) -> tuple:
    return tuple(graph.decls[node.params[role]].shape)


def _expect(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise GraphError(f"{where}: {message}")


class EmbeddingOp(GraphOp):
    name = "embedding_lookup"
    inputs = ("ids",)
    params = ("table", "table_m", "table_k")
    attrs = {"bits": (int, REQUIRED)}

    def check_shapes(self, node, graph, where):
        _expect(len(_shape(graph, node, "table")) == 2, where,
                f"table must be a matrix [vocab, hidden], got shape {_shape(graph, node, 'table')}")
        v, d = _shape(graph, node, "table")
        _expect(_shape(graph, node, "table_m") == (v,) and _shape(graph, node, "table_k") == (v,), where,
                "table_m and table_k must have one entry per table row")
        _expect(v == graph.model.vocab_size and d == graph.model.hidden_size, where,
                f"table shape {(v, d)} does not match the model (vocab {graph.model.vocab_size}, "
                f"hidden {graph.model.hidden_size})")

    def input_kind(self, role):
        return "ids"

    def columns(self, node, graph, inputs, where):
        return _shape(graph, node, "table")[1]

    def check_operator_attrs(self, node, graph):
        from ilsim.ops.embedding import check_attrs

        check_attrs(self.attr(node, "bits"), DEFAULT_MBITS)

    def output_width(self, node):
        return self.attr(node, "bits"), True

    def prepare(self, node, params):
        from ilsim.ops.embedding import prepare_table

        return prepare_table(params["table"], params["table_m"], params["table_k"], bits=self.attr(node, "bits"))

    def run(self, node, inputs, params, ctx):
        prepared = ctx.prepared.get(node.name)
        if prepared is not None and not ctx.reference:
            from ilsim.ops.embedding import embedding_lookup_prepared

            return embedding_lookup_prepared(inputs["ids"], prepared, bits=self.attr(node, "bits"))
        fn = implementation("ilsim.ops.embedding", "embedding_lookup", ctx.reference)
        return fn(inputs["ids"], params["table"], params["table_m"], params["table_k"], bits=self.attr(node, "bits"))


class RmsNormOp(GraphOp):
    name = "di_rmsnorm"
    inputs = ("x",)
    params = ("gamma",)
    attrs = {"gamma_k": (int, REQUIRED), "in_bits": (int, 16), "eps_m": (int, REQUIRED), "eps_k": (int, REQUIRED),
             "rms_frac_bits": (int, 8), "out_frac_bits": (int, 8), "out_bits": (int, 8),
             "out_symmetric": (bool, False), "y_bits": (int, 32)}

    def check_operator_attrs(self, node, graph):
        from ilsim.ops.norm import OP_RMS, check_attrs

        attrs = self.attr_values(node)
        check_attrs(OP_RMS, attrs["gamma_k"], attrs["in_bits"], attrs["eps_m"], attrs["eps_k"], attrs["rms_frac_bits"],
                    attrs["out_frac_bits"], attrs["out_bits"], attrs["out_symmetric"], DEFAULT_MBITS, attrs["y_bits"], DEFAULT_ROUNDING, "zero")

    def columns(self, node, graph, inputs, where):
        _expect(inputs["x"] == graph.model.hidden_size, where,
                f"input 'x' has {inputs['x']} values per token, gamma has {graph.model.hidden_size}")
        return inputs["x"]

    def check_shapes(self, node, graph, where):
        _expect(_shape(graph, node, "gamma") == (graph.model.hidden_size,), where,
                f"gamma must have shape ({graph.model.hidden_size},)")

    def run(self, node, inputs, params, ctx):
        x = inputs["x"]
        fn = implementation("ilsim.ops.norm", "di_rmsnorm", ctx.reference)
        attrs = node.attrs
        return fn(x.q, x.m, x.k, params["gamma"], attrs["gamma_k"], in_bits=self.attr(node, "in_bits"),
                  eps_m=attrs["eps_m"], eps_k=attrs["eps_k"], rms_frac_bits=self.attr(node, "rms_frac_bits"),
                  out_frac_bits=self.attr(node, "out_frac_bits"), out_bits=self.attr(node, "out_bits"),
                  out_symmetric=self.attr(node, "out_symmetric"), y_bits=self.attr(node, "y_bits"),
                  zero_rows="zero")


class MatMulOp(GraphOp):
    """A linear layer: activation rows times a per-output-channel quantized weight [N, K].
    ``wide=True`` returns the unquantized product (the logits)."""

    name = "di_matmul"
    inputs = ("a",)
    params = ("b", "b_zp", "b_m")
    attrs = {"b_shift": (int, REQUIRED), "a_bits": (int, REQUIRED), "b_bits": (int, REQUIRED),
             "a_signed": (bool, False), "b_signed": (bool, False), "acc_bits": (int, REQUIRED),
             "out_bits": (int, 8), "out_symmetric": (bool, False), "wide": (bool, False)}

    def check_operator_attrs(self, node, graph):
        """With the int64 bound at the weight's K (when b is a matrix; check_shapes says otherwise)."""
        from ilsim.ops.matmul import OP, OP_WIDE, check_wide_attrs

        attrs = self.attr_values(node)
        b_shape = _shape(graph, node, "b")
        output = None if attrs["wide"] else (attrs["out_bits"], attrs["out_symmetric"], "zero")
        check_wide_attrs(OP_WIDE if attrs["wide"] else OP, attrs["a_bits"], attrs["b_bits"], attrs["a_signed"], attrs["b_signed"],
                         attrs["acc_bits"], DEFAULT_MBITS, DEFAULT_ROUNDING, output,
                         depth=b_shape[1] if len(b_shape) == 2 else None)

    def columns(self, node, graph, inputs, where):
        n, k = _shape(graph, node, "b")
        _expect(inputs["a"] == k, where, f"input 'a' has {inputs['a']} values per token, the weight b "
                                         f"[{n}, {k}] takes K = {k}")
        return n

    def check_shapes(self, node, graph, where):
        b_shape = _shape(graph, node, "b")
        _expect(len(b_shape) == 2, where, f"b must be a matrix [N, K], got shape {b_shape}")
        n, _ = b_shape
        _expect(_shape(graph, node, "b_zp") == (n,) and _shape(graph, node, "b_m") == (n,), where,
                "b_zp and b_m must have one entry per output channel")
        _expect(0 <= node.attrs["b_shift"] <= 63, where, "b_shift must be in [0, 63]")

    def output_kind(self, node):
        return "wide" if self.attr(node, "wide") else "rows"

    def output_width(self, node):
        if self.attr(node, "wide"):
            return node.attrs["acc_bits"] + DEFAULT_MBITS, True
        return super().output_width(node)

    def prepare(self, node, params):
        from ilsim.ops.matmul import prepare_weight

        b = params["b"]
        b_k = np.full(b.shape[0], node.attrs["b_shift"], dtype=np.int64)
        return prepare_weight(b, params["b_zp"], params["b_m"], b_k, b_bits=node.attrs["b_bits"],
                              b_signed=self.attr(node, "b_signed"), op=f"di_matmul {node.name}")

    def run(self, node, inputs, params, ctx):
        a = inputs["a"]
        kw = dict(a_bits=node.attrs["a_bits"], a_signed=self.attr(node, "a_signed"), acc_bits=node.attrs["acc_bits"])
        weight = ctx.prepared.get(node.name)
        if weight is not None and not ctx.reference:
            from ilsim.ops import matmul

            if self.attr(node, "wide"):
                return matmul.di_matmul_wide_prepared(a.q, a.zp, a.m, a.k, weight, **kw)
            return matmul.di_matmul_prepared(a.q, a.zp, a.m, a.k, weight, out_bits=self.attr(node, "out_bits"),
                                             out_symmetric=self.attr(node, "out_symmetric"), zero_rows="zero", **kw)
        b = params["b"]
        b_k = np.full(b.shape[0], node.attrs["b_shift"], dtype=np.int64)
        kw.update(b_bits=node.attrs["b_bits"], b_signed=self.attr(node, "b_signed"))
        args = (a.q, a.zp, a.m, a.k, b, params["b_zp"], params["b_m"], b_k)
        if self.attr(node, "wide"):
            return implementation("ilsim.ops.matmul", "di_matmul_wide", ctx.reference)(*args, **kw)
        fn = implementation("ilsim.ops.matmul", "di_matmul", ctx.reference)
        return fn(*args, out_bits=self.attr(node, "out_bits"), out_symmetric=self.attr(node, "out_symmetric"),
                  zero_rows="zero", **kw)


class SwiGluOp(GraphOp):
    """DI-SwiGLU of the gate and up projections.

    ``sig_shift`` P (graph-level precision choice): both operands are handed to di_swiglu as the
    exact signed differences (x - zp) * 2^P with the scale shift k + P. Every real value is the
    same, but DI-Exp's |t| = round(2^(k+P) / m_f) is 2^P times larger, so the sigmoid resolves
    2^P times finer (at 8-bit activations |t| is otherwise ~20, at 2-bit below 1). A row whose
    multiplier is 0 (an all-zero row) is given scale 1/1: its values are all 0 whatever the scale.
    """

    name = "di_swiglu"
    inputs = ("gate", "up")
    optional_params = ("gate_div_m", "gate_div_k")
    attrs = {"in_bits": (int, 8), "sig_frac_bits": (int, 15), "out_bits": (int, 8), "order": (int, 1),
             "sig_shift": (int, 0)}

    def columns(self, node, graph, inputs, where):
        _expect(inputs["gate"] == inputs["up"], where,
                f"gate has {inputs['gate']} values per token, up has {inputs['up']}")
        for role in self.optional_params:
            if role in node.params:
                _expect(_shape(graph, node, role) == (inputs["gate"],), where,
                        f"{role} must have one entry per gate channel ({inputs['gate']},)")
        return inputs["gate"]

    def check_operator_attrs(self, node, graph):
        from ilsim.ops.swiglu import OP_SWIGLU, check_attrs

        shift = self.attr(node, "sig_shift")
        if not 0 <= shift <= 24:
            raise InputError(f"{OP_SWIGLU}: sig_shift must be in [0, 24], got {shift}")
        check_attrs(OP_SWIGLU, self.attr(node, "in_bits") + 1 + shift, True, self.attr(node, "sig_frac_bits"),
                    self.attr(node, "out_bits"), False, self.attr(node, "order"), "zero", DEFAULT_ROUNDING,
                    operands=2)

    def run(self, node, inputs, params, ctx):
        shift = self.attr(node, "sig_shift")
        widen = implementation("ilsim.ops.swiglu", "centred_operand", ctx.reference)
        g, u = widen(*inputs["gate"], shift), widen(*inputs["up"], shift)
        fn = implementation("ilsim.ops.swiglu", "di_swiglu", ctx.reference)
        return fn(*g, *u, gate_div_m=params.get("gate_div_m"), gate_div_k=params.get("gate_div_k"),
                  in_bits=self.attr(node, "in_bits") + 1 + shift, in_signed=True,
                  sig_frac_bits=self.attr(node, "sig_frac_bits"), out_bits=self.attr(node, "out_bits"),
                  order=self.attr(node, "order"), zero_rows="zero")


class ResidualOp(GraphOp):
    name = "residual_add"
    inputs = ("a", "b")
    attrs = {"a_bits": (int, 16), "b_bits": (int, 16), "a_signed": (bool, True), "b_signed": (bool, False),
             "out_bits": (int, 16)}

    def columns(self, node, graph, inputs, where):
        _expect(inputs["a"] == inputs["b"], where, f"a has {inputs['a']} values per token, b has {inputs['b']}")
        return inputs["a"]

    def check_operator_attrs(self, node, graph):
        from ilsim.ops.residual import check_attrs

        check_attrs(self.attr(node, "a_bits"), self.attr(node, "b_bits"), self.attr(node, "a_signed"),
                    self.attr(node, "b_signed"), self.attr(node, "out_bits"), DEFAULT_MBITS, DEFAULT_ROUNDING, "zero")

    def output_width(self, node):
        return self.attr(node, "out_bits"), True

    def run(self, node, inputs, params, ctx):
        a, b = inputs["a"], inputs["b"]
        fn = implementation("ilsim.ops.residual", "residual_add", ctx.reference)
        return fn(a.q, a.zp, a.m, a.k, b.q, b.zp, b.m, b.k, a_bits=self.attr(node, "a_bits"),
                  b_bits=self.attr(node, "b_bits"), a_signed=self.attr(node, "a_signed"),
                  b_signed=self.attr(node, "b_signed"), out_bits=self.attr(node, "out_bits"), zero_rows="zero")


class HadamardOp(GraphOp):
    """An online Walsh–Hadamard rotation of each row (QuaRot's, before the down projection):
    di_hadamard of size n = ``size`` with its default (proven) intermediate width, so it cannot
    overflow. The size and the attributes are validated at load; the input rows must have n values."""

    name = "di_hadamard"
    inputs = ("x",)
    attrs = {"size": (int, REQUIRED), "in_bits": (int, 8), "in_signed": (bool, False), "out_bits": (int, 8),
             "out_symmetric": (bool, False)}

    def columns(self, node, graph, inputs, where):
        _expect(inputs["x"] == self.attr(node, "size"), where,
                f"input 'x' has {inputs['x']} values per token, the node's size is {self.attr(node, 'size')}")
        return inputs["x"]

    def check_operator_attrs(self, node, graph):
        from ilsim.ops.hadamard import check_attrs, hadamard_factors

        hadamard_factors(self.attr(node, "size"))
        check_attrs(self.attr(node, "in_bits"), self.attr(node, "in_signed"), self.attr(node, "out_bits"),
                    self.attr(node, "out_symmetric"), None, DEFAULT_MBITS, DEFAULT_ROUNDING, "zero")

    def run(self, node, inputs, params, ctx):
        x = inputs["x"]
        size = self.attr(node, "size")
        if x.q.shape[-1] != size:
            raise GraphError(f"di_hadamard {node.name}: its input rows have {x.q.shape[-1]} values, the node's "
                             f"size is {size}")
        fn = implementation("ilsim.ops.hadamard", "di_hadamard", ctx.reference)
        return fn(x.q, x.zp, x.m, x.k, in_bits=self.attr(node, "in_bits"), in_signed=self.attr(node, "in_signed"),
                  out_bits=self.attr(node, "out_bits"), out_symmetric=self.attr(node, "out_symmetric"),
                  zero_rows="zero")


def slice_rows(x: RowQuant, start: int, stop: int) -> RowQuant:
    """Columns [start, stop) of a row-quantized value (its per-row zp and scale are unchanged)."""
    return RowQuant(x.q[:, start:stop], x.zp, x.m, x.k)
