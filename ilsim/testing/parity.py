"""Fast path versus scalar reference: the comparison every operator's property tests make.

Two implementations agree when they return identical arrays (values, dtypes and shapes) field by
field, or both refuse the input with the same error type and message.
"""

from __future__ import annotations

import numpy as np

from ilsim.errors import IlsimError


def outcome(fn, kw: dict):
    """``fn(**kw)``, or ("raised", error type, message) when it refuses the input."""
    try:
        return fn(**kw)
    except IlsimError as err:
        return "raised", type(err), str(err)


def assert_same(fast, ref) -> None:
    """Identical outcomes: the same refusal, or the same fields with equal dtype, shape and values."""
    if not hasattr(fast, "_fields") or not hasattr(ref, "_fields"):
        if isinstance(fast, np.ndarray) and isinstance(ref, np.ndarray):
            assert fast.dtype == ref.dtype and fast.shape == ref.shape and np.array_equal(fast, ref)
            return
        assert not hasattr(fast, "_fields") and not hasattr(ref, "_fields"), (fast, ref)
        assert fast == ref
        return
    assert fast._fields == ref._fields
    for name, a, b in zip(fast._fields, fast, ref):
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        assert np.array_equal(a, b), name


def assert_fast_equals_reference(fast, reference, case: dict):
    """Run both implementations on ``case`` and assert they agree; return the reference result
    (None when both refused)."""
    expected, got = outcome(reference, case), outcome(fast, case)
    assert_same(got, expected)
    return None if refused(expected) else expected


def refused(result) -> bool:
    """True for the ("raised", type, message) outcome of a refused input."""
    return type(result) is tuple and len(result) == 3 and isinstance(result[0], str) and result[0] == "raised"
