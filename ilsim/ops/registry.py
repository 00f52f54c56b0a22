"""The operator registry: one entry per operator, naming where its pieces live.

Each operator ``name`` has, by convention:
    <module>.<name>             the fast path (NumPy/Numba)
    <module>.<name>_reference   the scalar reference on Python ints, same signature
    <module>.<name>_float       its float meaning (offline/tests only, never on the integer path)
    <cases>.<name>_cases()      a hypothesis strategy of keyword-argument dicts (test extra)
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
    cases: str
    spec: str


OPS: dict[str, OpEntry] = {
    "quantize_rows": OpEntry("ilsim.ops.quantize", "ilsim.testing.cases_quantize", "quantize.md"),
    "di_matmul": OpEntry("ilsim.ops.matmul", "ilsim.testing.cases_matmul", "matmul.md"),
    "di_matmul_av": OpEntry("ilsim.ops.matmul", "ilsim.testing.cases_matmul", "matmul.md"),
    "di_exp": OpEntry("ilsim.ops.exp", "ilsim.testing.cases_nonlinear", "exp.md"),
    "di_softmax": OpEntry("ilsim.ops.softmax", "ilsim.testing.cases_nonlinear", "softmax.md"),
    "di_silu": OpEntry("ilsim.ops.swiglu", "ilsim.testing.cases_nonlinear", "swiglu.md"),
    "di_swiglu": OpEntry("ilsim.ops.swiglu", "ilsim.testing.cases_nonlinear", "swiglu.md"),
    "di_rmsnorm": OpEntry("ilsim.ops.norm", "ilsim.testing.cases_norm", "norm.md"),
    "di_layernorm": OpEntry("ilsim.ops.norm", "ilsim.testing.cases_norm", "norm.md"),
    "residual_add": OpEntry("ilsim.ops.residual", "ilsim.testing.cases_norm", "residual.md"),
    "di_rope": OpEntry("ilsim.ops.rope", "ilsim.testing.cases_norm", "rope.md"),
    "embedding_lookup": OpEntry("ilsim.ops.embedding", "ilsim.testing.cases_norm", "embedding.md"),
    "di_hadamard": OpEntry("ilsim.ops.hadamard", "ilsim.testing.cases_hadamard", "hadamard.md"),
}


@dataclass(frozen=True)
class OpDef:
    name: str
    fast: Callable
    reference: Callable
    float_meaning: Callable | None
    spec: str

    def cases(self, **kwargs):
        """The hypothesis strategy of keyword-argument dicts for this operator (needs hypothesis)."""
        module = importlib.import_module(OPS[self.name].cases)
        return getattr(module, f"{self.name}_cases")(**kwargs)


def get_op(name: str) -> OpDef:
    """The operator called ``name``; InputError listing the known ones otherwise."""
    if name not in OPS:
        raise InputError(f"unknown operator {name!r}; known: {', '.join(sorted(OPS))}")
    entry = OPS[name]
    module = importlib.import_module(entry.module)
    return OpDef(name=name, fast=getattr(module, name), reference=getattr(module, f"{name}_reference"),
                 float_meaning=getattr(module, f"{name}_float", None), spec=f"docs/spec/{entry.spec}")


def op_names() -> list[str]:
    return list(OPS)
