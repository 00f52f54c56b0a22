"""Check another implementation of an ilsim operator bit for bit.

    from ilsim.testing import assert_bit_exact
    assert_bit_exact("di_exp", my_di_exp)              # raises BitExactMismatch on the first miss

The checker draws operator cases from the operator's public hypothesis strategy (edges included),
runs ilsim's fast path and your callable on the same keyword arguments, and compares every output
field with exact equality. On a mismatch hypothesis shrinks the case to a small one, and the error
reports the field, the index, the inputs, and the expected and actual values with their bits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ilsim.errors import IlsimError
from ilsim.ops.registry import get_op


class BitExactMismatch(AssertionError):
    """An implementation under test disagrees with ilsim on at least one bit."""


@dataclass(frozen=True)
class Mismatch:
    """The first difference between an expected and an actual operator output."""

    field: str
    index: tuple
    expected: int | None
    actual: int | None
    reason: str
    bits: int = 64

    def describe(self) -> str:
        where = f"{self.field}[{','.join(map(str, self.index))}]" if self.index else self.field
        if self.expected is None or self.actual is None:
            return f"{where}: {self.reason}"
        return (f"{where}: expected {self.expected} ({to_bits(self.expected, self.bits)}), "
                f"got {self.actual} ({to_bits(self.actual, self.bits)})")


def to_bits(value: int, bits: int) -> str:
    """Two's complement hex of ``value`` at ``bits`` bits, e.g. to_bits(-1, 8) == '0xff'."""
    digits = (bits + 3) // 4
    return f"0x{value & ((1 << bits) - 1):0{digits}x}"


def output_fields(result: Any) -> dict[str, np.ndarray]:
    """An operator result as named arrays: a NamedTuple's fields, a tuple's positions, or 'out'."""
    if hasattr(result, "_fields"):
        return {name: _as_array(v) for name, v in zip(result._fields, result)}
    if isinstance(result, (tuple, list)):
        return {str(i): _as_array(v) for i, v in enumerate(result)}
    return {"out": _as_array(result)}


def _as_array(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def first_mismatch(expected: Any, actual: Any) -> Mismatch | None:
    """The first field and index where ``actual`` differs from ``expected``, or None if identical.

    Values are compared as exact integers (the actual dtype may differ, e.g. int32 for int8);
    a float array, a missing field or a different shape is a mismatch.
    """
    exp_fields, act_fields = output_fields(expected), output_fields(actual)
    if len(act_fields) != len(exp_fields):
        return Mismatch("result", (), None, None,
                        f"expected {len(exp_fields)} outputs ({', '.join(exp_fields)}), got {len(act_fields)}")
    for (name, exp), act in zip(exp_fields.items(), act_fields.values()):
        bits = exp.dtype.itemsize * 8
        if act.dtype.kind not in "iub":
            return Mismatch(name, (), None, None, f"expected integers, got dtype {act.dtype}")
        if exp.shape != act.shape:
            return Mismatch(name, (), None, None, f"expected shape {exp.shape}, got {act.shape}")
        diff = exp.astype(np.int64) != act.astype(np.int64)
        if act.dtype == np.uint64:
            diff |= act > np.iinfo(np.int64).max
        if diff.any():
            idx = tuple(int(i) for i in np.argwhere(diff)[0])
            return Mismatch(name, idx, int(exp[idx]), int(act[idx]), "value", bits)
    return None


def _summarise_inputs(case: dict) -> str:
    parts = []
    for key, value in case.items():
        if isinstance(value, np.ndarray) and value.size > 16:
            parts.append(f"{key}=<{value.dtype} array {value.shape}>")
        else:
            parts.append(f"{key}={value.tolist() if isinstance(value, np.ndarray) else value!r}")
    return ", ".join(parts)


def check_case(op: str, implementation: Callable, case: dict) -> Mismatch | None:
    """Run ilsim's ``op`` and ``implementation`` on one case; the first mismatch or None."""
    opdef = get_op(op)
    try:
        expected = opdef.fast(**copy.deepcopy(case))
    except IlsimError as err:
        try:
            implementation(**copy.deepcopy(case))
        except Exception:  # noqa: BLE001 - any refusal agrees with ours
            return None
        return Mismatch("result", (), None, None, f"ilsim refuses this case ({err}) but the implementation accepted it")
    actual = implementation(**copy.deepcopy(case))
    return first_mismatch(expected, actual)


def assert_bit_exact(op: str, implementation: Callable, *, max_examples: int = 200,
                     derandomize: bool = True, cases=None, **case_options) -> None:
    """Check ``implementation`` against ilsim's ``op`` on generated cases; raise on the first miss.

    ``implementation`` takes the same keyword arguments as the ilsim operator (see its contract in
    docs/spec/) and returns the same outputs (a NamedTuple, tuple or array; any integer dtype).
    ``cases`` overrides the operator's default hypothesis strategy of keyword-argument dicts;
    ``case_options`` are passed to the default one (e.g. ``order=1`` for di_exp, to check an
    implementation of only that variant).
    Deterministic by default (``derandomize=True``): the same cases on every run.
    """
    from hypothesis import HealthCheck, given, settings

    strategy = cases if cases is not None else get_op(op).cases(**case_options)

    @settings(max_examples=max_examples, derandomize=derandomize, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(strategy)
    def run(case):
        mismatch = check_case(op, implementation, case)
        if mismatch is not None:
            raise BitExactMismatch(f"{op}: {mismatch.describe()}\n  inputs: {_summarise_inputs(case)}")

    run()
