"""Verify another implementation against a golden-vector directory (``ilsim golden ops OUT``).

Two ways in:

    from ilsim.golden.verify import verify_callable, verify_results
    report = verify_callable("golden/ops", "di_exp", my_di_exp)      # a Python callable
    report = verify_results("golden/ops", "my_results")               # files your kernel/RTL wrote
    assert report.ok, report.format_text()

``verify_callable`` feeds every vector of one operator (inputs from the vector's files, scalar
attributes from the manifest) to ``fn(**kwargs)`` with ilsim's keyword signature and compares
each output field bit for bit. ``verify_results`` reads what another implementation wrote in the
golden directory's own layout, ``RESULTS/<op>/<case>/out.<field>.npy`` (or ``.hex``, same
``$readmemh`` format and declared width as the golden file), and compares them the same way.

The report gives, per vector, the first mismatch (field, index, expected and actual value and
bits, the inputs) and in all: vectors, output elements compared and mismatching elements.
Unreadable, missing or mis-shaped result files are an InputError naming every such file.
"""

from __future__ import annotations

import copy
import json
import typing
from collections import namedtuple
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ilsim.errors import InputError
from ilsim.golden.model import MODEL_FORMAT
from ilsim.golden.ops import MANIFEST, MANIFEST_FORMAT, verify_golden_dir
from ilsim.golden.writers import hex_digits
from ilsim.hf.safetensors_file import read_tensors
from ilsim.ops.registry import get_op
from ilsim.testing.bitexact import Mismatch, _summarise_inputs, first_mismatch, output_fields, to_bits

#: Most problems listed in one InputError message (the rest are counted).
MAX_LISTED_PROBLEMS = 20


@dataclass
class VectorResult:
    """One golden vector checked: its first mismatch (None: bit exact) and counts."""

    op: str
    case: str
    elements: int = 0                 # output elements compared
    mismatches: int = 0               # output elements that differ (a whole field if unusable)
    mismatch: Mismatch | None = None  # the first difference
    inputs: str = ""                  # summary of the inputs and attributes

    @property
    def ok(self) -> bool:
        return self.mismatch is None

    def describe(self) -> str:
        if self.ok:
            return f"{self.op}/{self.case}: ok ({self.elements} elements)"
        return (f"{self.op}/{self.case}: {self.mismatches} of {self.elements} elements differ; first: "
                f"{self.mismatch.describe()}\n  inputs: {self.inputs}")

    def to_dict(self) -> dict:
        out = {"op": self.op, "case": self.case, "elements": self.elements, "mismatches": self.mismatches,
               "ok": self.ok}
        if self.mismatch is not None:
            m = self.mismatch
            out["first_mismatch"] = {
                "field": m.field, "index": list(m.index), "expected": m.expected, "actual": m.actual,
                "expected_bits": None if m.expected is None else to_bits(m.expected, m.bits),
                "actual_bits": None if m.actual is None else to_bits(m.actual, m.bits),
                "reason": m.reason, "description": m.describe(), "inputs": self.inputs}
        return out


@dataclass
class VerifyReport:
    """Every vector checked, and the summary."""

    golden_dir: str
    vectors: list[VectorResult] = field(default_factory=list)

    @property
    def failed(self) -> list[VectorResult]:
        return [v for v in self.vectors if not v.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict:
        return {"vectors": len(self.vectors), "elements": sum(v.elements for v in self.vectors),
                "mismatches": sum(v.mismatches for v in self.vectors), "failed_vectors": len(self.failed),
                "ok": self.ok}

    def to_dict(self) -> dict:
        return {"golden_dir": self.golden_dir, "summary": self.summary(),
                "vectors": [v.to_dict() for v in self.vectors]}

    def format_text(self) -> str:
        s = self.summary()
        lines = [v.describe() for v in self.failed]
        lines.append(f"{s['vectors']} vectors, {s['elements']} output elements, {s['mismatches']} mismatching "
                     f"elements in {s['failed_vectors']} vectors: {'OK, bit exact' if s['ok'] else 'MISMATCH'}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------- reading files

def load_manifest(golden_dir) -> dict:
    """The manifest of a golden directory; InputError if absent or not an ilsim golden manifest."""
    path = Path(golden_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"verify: {golden_dir} is not a golden-vector directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"verify: {path}: unreadable manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in (MANIFEST_FORMAT, MODEL_FORMAT):
        raise InputError(f"verify: {path}: not an {MANIFEST_FORMAT} or {MODEL_FORMAT} manifest")
    return manifest


def _check_golden(golden_dir) -> dict:
    manifest = load_manifest(golden_dir)
    problems = verify_golden_dir(golden_dir)
    if problems:
        raise InputError(f"verify: golden directory {golden_dir} does not match its manifest: "
                         + _list_problems(problems))
    return manifest


def _list_problems(problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    return shown + (f"; ... and {more} more" if more > 0 else "")


def vector_dir(vec: dict) -> str:
    """Where a vector's files live, relative to the golden directory: ``<op>/<case>`` for operator
    vectors, ``model/<step>/<node>`` for a model trace's nodes."""
    return f"{vec['op']}/{vec['case']}" if "case" in vec else f"model/{vec['step']}/{vec['node']}"


def vector_label(vec: dict) -> str:
    """The case name of an operator vector, or ``<step>/<node>`` of a model trace's node."""
    return vec["case"] if "case" in vec else f"{vec['step']}/{vec['node']}"


def _golden_tensor(golden_dir: Path, vec: dict, tensor: dict) -> np.ndarray:
    """A tensor of a golden vector, from its .npy, else its .hex, else the case's .safetensors."""
    stem = f"{vector_dir(vec)}/{tensor['name']}"
    files = vec["files"]
    if f"{stem}.npy" in files:
        return np.load(golden_dir / f"{stem}.npy", allow_pickle=False)
    if f"{stem}.hex" in files:
        arr = read_hex_strict(golden_dir / f"{stem}.hex", tensor)
        return arr.astype(tensor["dtype"])
    st = f"{vector_dir(vec)}.safetensors"
    if st in files:
        return read_tensors(golden_dir / st, names=[tensor["name"]])[0][tensor["name"]]
    raise InputError(f"verify: golden vector {vector_dir(vec)} has no npy, hex or safetensors file "
                     f"for {tensor['name']} (formats h only?)")


def read_hex_strict(path: Path, tensor: dict) -> np.ndarray:
    """A $readmemh file of ``tensor`` (its manifest entry: bits, signed, shape) as int64.

    Each line holds one value of at most hex_digits(bits) hex digits (``//`` comments and blank
    lines are skipped); the low ``bits`` bits are taken, sign-extended if signed. Anything else, or
    a value count other than the shape's, is an InputError naming the file and line."""
    bits, signed, shape = int(tensor["bits"]), bool(tensor["signed"]), tuple(tensor["shape"])
    digits = hex_digits(bits)
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a hex text file (non-ASCII bytes)") from None
    values = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):
            raise InputError(f"{path}: line {lineno}: address lines ({line!r}) are not supported; "
                             f"write one value per line from element 0")
        try:
            v = int(line, 16)
        except ValueError:
            raise InputError(f"{path}: line {lineno}: {line!r} is not a hex number") from None
        if line.startswith(("0x", "0X", "-", "+")) or len(line) > digits:
            raise InputError(f"{path}: line {lineno}: {line!r} is not {digits} hex digit(s) "
                             f"(declared {'int' if signed else 'uint'}{bits})")
        v &= (1 << bits) - 1
        if signed and v >> (bits - 1):
            v -= 1 << bits
        values.append(v)
    expected = int(np.prod(shape, dtype=np.int64))
    if len(values) != expected:
        raise InputError(f"{path}: {len(values)} values, expected {expected} (shape {list(shape)} in the manifest)")
    return np.array(values, dtype=np.int64).reshape(shape)


def _read_result(path: Path, tensor: dict) -> np.ndarray:
    """One result file (.npy or .hex) checked against the golden tensor's manifest entry."""
    shape = tuple(tensor["shape"])
    if path.suffix == ".hex":
        return read_hex_strict(path, tensor)
    try:
        with open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise InputError(f"{path}: not a valid .npy file (no .npy header)")
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        if isinstance(err, InputError):
            raise
        raise InputError(f"{path}: not a valid .npy file ({err})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{path}: not a single .npy array")
    if arr.dtype.kind not in "iub":
        raise InputError(f"{path}: dtype {arr.dtype}, expected integers")
    if arr.shape != shape:
        raise InputError(f"{path}: shape {list(arr.shape)}, expected {list(shape)} (the golden {tensor['name']})")
    return arr


# ------------------------------------------------------------------------------- comparing

def _vectors(manifest: dict, ops) -> list[dict]:
    names = list(dict.fromkeys(v["op"] for v in manifest["vectors"]))
    if ops is None:
        return list(manifest["vectors"])
    ops = [ops] if isinstance(ops, str) else list(ops)
    missing = [op for op in ops if op not in names]
    if missing:
        raise InputError(f"verify: no vectors for operator(s) {', '.join(missing)} in the golden directory; "
                         f"it has: {', '.join(names) or 'none'}")
    return [v for v in manifest["vectors"] if v["op"] in ops]


def _out_tensors(vec: dict) -> list[dict]:
    return [t for t in vec["tensors"] if t["name"].startswith("out.")]


def _field_order(op: str, names: list[str]) -> list[str]:
    """The operator's result fields in its NamedTuple order (for positional tuples), else ``names``."""
    try:
        ret = typing.get_type_hints(get_op(op).fast).get("return")
    except Exception:  # noqa: BLE001 - no usable annotation: keep the manifest's order
        ret = None
    fields = list(getattr(ret, "_fields", ()))
    return fields if sorted(fields) == sorted(names) else names


def _declared_bits(m: Mismatch, tensor: dict) -> Mismatch:
    """Show the bits at the tensor's declared width when both values fit it, else the storage width."""
    if m.expected is None or m.actual is None:
        return m
    bits, signed = int(tensor["bits"]), bool(tensor["signed"])
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if lo <= m.expected <= hi and lo <= m.actual <= hi:
        return replace(m, bits=bits)
    return replace(m, bits=m.bits if lo <= m.actual <= hi else 64)


def compare_outputs(op: str, case: str, vec: dict, expected: dict, actual, inputs: str = "") -> VectorResult:
    """Compare ``actual`` (a NamedTuple, dict, tuple in the operator's field order, or one array when
    there is one output) with ``expected`` ({field: array}) of one vector."""
    tensors = {t["name"][4:]: t for t in _out_tensors(vec)}
    order = _field_order(op, list(expected))
    result = VectorResult(op, case, elements=sum(int(np.asarray(expected[f]).size) for f in order), inputs=inputs)
    if isinstance(actual, dict):
        got = {str(k): v for k, v in actual.items()}
    elif hasattr(actual, "_fields"):
        got = dict(zip(actual._fields, actual))
    elif isinstance(actual, (tuple, list)):
        got = dict(zip(order, actual)) if len(actual) == len(order) else {str(i): v for i, v in enumerate(actual)}
    else:
        got = {order[0]: actual} if len(order) == 1 else {"result": actual}
    if sorted(got) != sorted(order):
        result.mismatches = result.elements
        result.mismatch = Mismatch("result", (), None, None,
                                   f"expected outputs {', '.join(order)}, got {', '.join(got) or 'none'}")
        return result
    Out = namedtuple("Out", order)  # noqa: PYI024 - a throwaway record for first_mismatch
    exp_t = Out(*(np.asarray(expected[f]) for f in order))
    act_t = Out(*(got[f] for f in order))
    for f, exp, act in zip(order, exp_t, output_fields(act_t).values()):
        if act.dtype.kind in "iub" and act.shape == exp.shape:
            diff = exp.astype(np.int64) != act.astype(np.int64)
            if act.dtype == np.uint64:
                diff |= act > np.iinfo(np.int64).max
            result.mismatches += int(diff.sum())
        else:
            result.mismatches += int(exp.size)
    m = first_mismatch(exp_t, act_t)
    if m is not None:
        result.mismatch = _declared_bits(m, tensors[m.field]) if m.field in tensors else m
    return result


def _load_case(golden_dir: Path, vec: dict) -> tuple[dict, dict]:
    """(kwargs for the operator, expected outputs {field: array}) of one golden vector."""
    kwargs, expected = {}, {}
    for t in vec["tensors"]:
        arr = _golden_tensor(golden_dir, vec, t)
        role, name = t["name"].split(".", 1)
        (kwargs if role == "in" else expected)[name] = arr
    kwargs.update(vec["attributes"])
    return kwargs, expected


def verify_callable(golden_dir, op: str, fn) -> VerifyReport:
    """Run ``fn(**kwargs)`` on every golden vector of ``op`` and compare each output bit for bit.

    ``kwargs`` are the vector's input tensors (numpy arrays in their storage dtype) and scalar
    attributes, exactly as ilsim's ``op`` takes them (docs/spec/). ``fn`` returns the outputs as a
    NamedTuple or dict with the operator's field names, a tuple in the operator's field order, or
    one array for a single-output operator; any integer dtype (torch tensors too). An exception from
    ``fn`` counts as a mismatch of that vector, with its message.
    """
    golden_dir = Path(golden_dir)
    manifest = _check_golden(golden_dir)
    report = VerifyReport(str(golden_dir))
    for vec in _vectors(manifest, [op]):
        kwargs, expected = _load_case(golden_dir, vec)
        summary = _summarise_inputs(kwargs)
        try:
            actual = fn(**copy.deepcopy(kwargs))
        except Exception as err:  # noqa: BLE001 - the implementation's failure is the report
            res = VectorResult(op, vec["case"], elements=sum(int(a.size) for a in expected.values()),
                               inputs=summary)
            res.mismatches = res.elements
            res.mismatch = Mismatch("result", (), None, None,
                                    f"the implementation raised {type(err).__name__}: {err}")
            report.vectors.append(res)
            continue
        report.vectors.append(compare_outputs(op, vec["case"], vec, expected, actual, summary))
    return report


def verify_results(golden_dir, results_dir, ops=None) -> VerifyReport:
    """Compare result files another implementation wrote with the golden outputs.

    For every vector (of ``ops``, default every operator in the manifest) and output field, reads
    ``results_dir/<op>/<case>/out.<field>.npy`` (a model trace: ``results_dir/model/<step>/<node>/``),
    or ``.hex`` when there is no .npy. A missing,
    unreadable or mis-shaped file is an InputError that names every such file.
    """
    golden_dir, results_dir = Path(golden_dir), Path(results_dir)
    manifest = _check_golden(golden_dir)
    if not results_dir.is_dir():
        raise InputError(f"verify: results directory {results_dir} does not exist")
    vectors = _vectors(manifest, ops)
    problems, loaded = [], []
    for vec in vectors:
        actual = {}
        for t in _out_tensors(vec):
            case_dir = results_dir / vector_dir(vec)
            npy, hexf = case_dir / f"{t['name']}.npy", case_dir / f"{t['name']}.hex"
            path = npy if npy.is_file() else hexf if hexf.is_file() else None
            if path is None:
                problems.append(f"{npy}: missing (nor {hexf.name})")
                continue
            try:
                actual[t["name"][4:]] = _read_result(path, t)
            except InputError as err:
                problems.append(str(err))
        loaded.append((vec, actual))
    if problems:
        raise InputError(f"verify: {len(problems)} bad result file(s) in {results_dir}: " + _list_problems(problems))
    report = VerifyReport(str(golden_dir))
    for vec, actual in loaded:
        kwargs, expected = _load_case(golden_dir, vec)
        report.vectors.append(compare_outputs(vec["op"], vector_label(vec), vec, expected, actual,
                                              _summarise_inputs(kwargs)))
    return report
