"""Row kernels compiled twice -- serial and parallel -- and launched by the size of the work.

Waking Numba's thread pool costs tens of microseconds (far more on a loaded machine), more than a
decode step's single row of work; rows are independent, so the serial and the parallel loop give
the same integers and the choice is only about speed. The kernel body is written once, its row
loop with ``numba.prange`` (which runs as ``range`` in the serial compilation).
"""

from __future__ import annotations

import types

import numba

#: Below this many elements (or with one row) the serial compilation runs.
PARALLEL_MIN_ELEMENTS = 1 << 14


def _renamed(body, suffix: str):
    """A copy of ``body`` under another name: Numba's on-disk cache names its files after the
    function (and does not key on the compile flags), so the two compilations stay apart."""
    fn = types.FunctionType(body.__code__, body.__globals__, body.__name__ + suffix, body.__defaults__,
                            body.__closure__)
    fn.__qualname__ = body.__qualname__ + suffix
    fn.__doc__ = body.__doc__
    fn.__module__ = body.__module__
    return fn


class RowKernel:
    """One kernel body, compiled serially and in parallel; calling it picks by the size of its
    first argument (an array [rows, ...]): parallel for more than one row and at least
    :data:`PARALLEL_MIN_ELEMENTS` elements."""

    def __init__(self, body):
        self.py_func = body
        self.serial = numba.njit(cache=True)(_renamed(body, "_serial"))
        self.parallel = numba.njit(cache=True, parallel=True)(_renamed(body, "_parallel"))
        self.__doc__ = body.__doc__

    def __call__(self, *args):
        work = args[0]
        wide = work.ndim > 0 and work.shape[0] > 1 and work.size >= PARALLEL_MIN_ELEMENTS
        return (self.parallel if wide else self.serial)(*args)


def row_kernel(body) -> RowKernel:
    """Decorator: ``@row_kernel`` over a kernel body whose row loop uses ``numba.prange``."""
    return RowKernel(body)
