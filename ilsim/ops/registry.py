"""The operator registry: the one table that says where each operator's pieces live.

Every consumer asks this table -- the graph (which node type serves an operator), the golden
vectors (which case builders), the hypothesis strategies, the CLI's ``ilsim ops`` and the docs
index (tests/test_registry.py holds docs/spec/README.md to it). An operator ``name`` has:
    <module>.<name>             the fast path (NumPy/Numba)
    <module>.<name>_reference   the scalar reference on Python ints, same signature
    <module>.<name>_float       its float meaning (offline/tests only, never on the integer path)
    <module>.check_*attrs       its attribute checks (what the reference and the fast path run first)
    ilsim.kernels.<op>          its element formulas (shared by reference and fast path) and kernels
    <cases>.<name>_cases()      a hypothesis strategy of keyword-argument dicts (test extra)
    <golden>                    its golden-vector builders ("module:OBJECT", an OpCases)
    <graph>                     the graph node type that runs it ("module:Class"), if any
    docs/spec/<spec>            the written contract
Operators return a NamedTuple of integer arrays (or one array); tools compare them field by field.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from ilsim.errors import InputError


@dataclass(frozen=True)
class OpEntry:
    module: str
    spec: str
    cases: str | None = None
    golden: str | None = None
    graph: str | None = None


_CASES = "ilsim.testing.cases_"
_GOLDEN = "ilsim.golden.cases."

#: In the order golden vectors are written (ilsim golden ops, the manifest).
OPS: dict[str, OpEntry] = {
    "quantize_rows": OpEntry("ilsim.ops.quantize", "quantize.md", _CASES + "quantize", _GOLDEN + "core:QUANTIZE"),
    "di_matmul": OpEntry("ilsim.ops.matmul", "matmul.md", _CASES + "matmul", _GOLDEN + "core:MATMUL",
                         graph="ilsim.graph.ops:MatMulOp"),
    "di_exp": OpEntry("ilsim.ops.exp", "exp.md", _CASES + "nonlinear", _GOLDEN + "nonlinear:EXP"),
    "di_softmax": OpEntry("ilsim.ops.softmax", "softmax.md", _CASES + "nonlinear", _GOLDEN + "nonlinear:SOFTMAX"),
    "di_rmsnorm": OpEntry("ilsim.ops.norm", "norm.md", _CASES + "norm", _GOLDEN + "norm:RMSNORM",
                          graph="ilsim.graph.ops:RmsNormOp"),
    "residual_add": OpEntry("ilsim.ops.residual", "residual.md", _CASES + "norm", _GOLDEN + "norm:RESIDUAL",
                            graph="ilsim.graph.ops:ResidualOp"),
    "di_swiglu": OpEntry("ilsim.ops.swiglu", "swiglu.md", _CASES + "nonlinear", _GOLDEN + "nonlinear:SWIGLU",
                         graph="ilsim.graph.ops:SwiGluOp"),
    "di_matmul_av": OpEntry("ilsim.ops.matmul", "matmul.md", _CASES + "matmul", _GOLDEN + "core:MATMUL_AV"),
    "di_silu": OpEntry("ilsim.ops.swiglu", "swiglu.md", _CASES + "nonlinear", _GOLDEN + "nonlinear:SILU"),
    "di_layernorm": OpEntry("ilsim.ops.norm", "norm.md", _CASES + "norm", _GOLDEN + "norm:LAYERNORM"),
    "di_rope": OpEntry("ilsim.ops.rope", "rope.md", _CASES + "norm", _GOLDEN + "positional:ROPE"),
    "embedding_lookup": OpEntry("ilsim.ops.embedding", "embedding.md", _CASES + "norm",
                                _GOLDEN + "positional:EMBEDDING", graph="ilsim.graph.ops:EmbeddingOp"),
    "di_hadamard": OpEntry("ilsim.ops.hadamard", "hadamard.md", _CASES + "hadamard", _GOLDEN + "positional:HADAMARD",
                           graph="ilsim.graph.ops:HadamardOp"),
    # the composite of the graph: its per-step operators have the vectors and strategies above
    "attention": OpEntry("ilsim.ops.attention", "graph.md", graph="ilsim.graph.attention:AttentionOp"),
}


def resolve(path: str):
    """The object named by ``"package.module:NAME"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class OpDef:
    name: str
    fast: Callable
    reference: Callable
    float_meaning: Callable | None
    spec: str

    def cases(self, **kwargs):
        """The hypothesis strategy of keyword-argument dicts for this operator (needs hypothesis)."""
        entry = OPS[self.name]
        if entry.cases is None:
            raise InputError(f"operator {self.name!r} has no case strategy")
        return getattr(importlib.import_module(entry.cases), f"{self.name}_cases")(**kwargs)


def get_op(name: str) -> OpDef:
    """The operator called ``name``; InputError listing the known ones otherwise."""
    if name not in OPS:
        raise InputError(f"unknown operator {name!r}; known: {', '.join(sorted(OPS))}")
    entry = OPS[name]
    module = importlib.import_module(entry.module)
    return OpDef(name=name, fast=getattr(module, name), reference=getattr(module, f"{name}_reference"),
                 float_meaning=getattr(module, f"{name}_float", None), spec=f"docs/spec/{entry.spec}")


def op_names() -> list[str]:
    """Every registered operator, in registry order."""
    return list(OPS)


def names_with(field: str) -> list[str]:
    """The operators whose entry has ``field`` ("cases", "golden", "graph"), in registry order."""
    return [name for name, entry in OPS.items() if getattr(entry, field) is not None]
