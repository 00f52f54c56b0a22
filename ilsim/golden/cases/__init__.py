"""Deterministic golden cases: seeded random cases plus a fixed list of edge cases per operator.

Every case is drawn from ``numpy.random.default_rng`` seeded with a value derived from the run's
seed, the operator and the bit-width configuration only (never from the order of other ops), so
``--ops di_exp`` writes the same di_exp vectors as a run over every operator. No hypothesis here:
the same command always writes the same cases.

A case is a keyword-argument dict for the operator's fast path (``ilsim.ops.registry.get_op``)
plus the declared width of every tensor in it, which the writers need (hex digit count) and the
manifest records. Sizes stay small (rows <= 4, length <= 24) so that RTL benches can replay them.

The builders live by family (core.py, nonlinear.py, norm.py, positional.py, on base.py); which
operator has which builder is the operator registry's to say (``OpEntry.golden``).
"""


from __future__ import annotations

import numpy as np

from ilsim.errors import InputError
from ilsim.golden.cases.base import (DEFAULT_CASES, DEFAULT_SEED, KBITS, MBITS, GoldenCase, OpCases, TensorSpec,
                                     case_seed)
from ilsim.ops.registry import OPS, names_with, resolve

__all__ = ["DEFAULT_CASES", "DEFAULT_SEED", "KBITS", "MBITS", "GoldenCase", "OpCases", "TensorSpec", "case_seed",
           "generate_cases", "golden_op_names", "op_cases"]


def golden_op_names() -> list[str]:
    """The operators with golden vectors, in the registry's order (the manifest's)."""
    return names_with("golden")


def op_cases(op: str) -> OpCases:
    """The case builders the registry names for ``op``; InputError for an operator without them."""
    entry = OPS.get(op)
    if entry is None or entry.golden is None:
        raise InputError(f"golden: no golden cases for operator {op!r}; available: {', '.join(golden_op_names())}")
    return resolve(entry.golden)


def generate_cases(op: str, n_random: int = DEFAULT_CASES, seed: int = DEFAULT_SEED) -> list[GoldenCase]:
    """Every case of ``op``: per configuration, its edge cases, then ``n_random`` seeded random cases."""
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise InputError(f"golden: cases per configuration must be an int >= 0, got {n_random!r}")
    spec = op_cases(op)
    out = []
    for config, cfg in spec.configs.items():
        for label, inputs, attrs, specs, scales in spec.edge_cases(cfg):
            out.append(GoldenCase(op, config, f"{config}_edge_{label}", "edge", inputs, attrs, specs, scales))
        rng = np.random.default_rng(case_seed(seed, op, config))
        for i in range(n_random):
            inputs, attrs, specs, scales = spec.random_case(rng, cfg)
            out.append(GoldenCase(op, config, f"{config}_rand_{i:03d}", "random", inputs, attrs, specs, scales))
    return out
