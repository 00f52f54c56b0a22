"""``ilsim golden ops``: run every golden case through ilsim's fast path and write the vectors.

Layout of OUT (see docs/golden.md):
    OUT/manifest.json                         every vector: op, attributes, tensors, sha256 of files
    OUT/<op>/<case>/{in,out}.<tensor>.npy     one .npy per tensor
    OUT/<op>/<case>/{in,out}.<tensor>.hex     one $readmemh file per tensor
    OUT/<op>/<case>.safetensors               all tensors of the case, integer dtypes
    OUT/<op>/<case>.h                         optional C header (format "h")
Writing is deterministic (same arguments, same bytes) and atomic: everything is written into a
temporary directory beside OUT, the manifest last, and renamed to OUT only when complete.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import ilsim
from ilsim.errors import InputError
from ilsim.fileio import clean_stale, replace_dir, temp_dir
from ilsim.golden.cases import (DEFAULT_CASES, DEFAULT_SEED, GoldenCase, TensorSpec, generate_cases,
                                golden_op_names, op_cases)
from ilsim.golden.writers import DEFAULT_FORMATS, FORMATS, hex_digits, sha256_file, write_case_files
from ilsim.ops.registry import get_op

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "ilsim-golden-ops"
MANIFEST_VERSION = 1


def output_fields(result) -> dict[str, np.ndarray]:
    """An operator's result as {field: array}: NamedTuple fields, or "p" for a single array."""
    if isinstance(result, tuple) and hasattr(result, "_fields"):
        return {f: np.asarray(v) for f, v in zip(result._fields, result)}
    return {"p": np.asarray(result)}


def run_case(case: GoldenCase, reference: bool = False) -> dict[str, np.ndarray]:
    """The operator's outputs on ``case`` (fast path; ``reference=True``: the scalar reference)."""
    op = get_op(case.op)
    return output_fields((op.reference if reference else op.fast)(**case.kwargs()))


def _tensor_entry(name: str, arr: np.ndarray, spec: TensorSpec, scale) -> dict:
    entry = {"name": name, "role": "input" if name.startswith("in.") else "output",
             "shape": list(arr.shape), "dtype": str(arr.dtype), "bits": spec.bits, "signed": spec.signed,
             "hex_digits": hex_digits(spec.bits)}
    if scale is not None:
        entry["scale"] = scale
    return entry


def write_case(root: Path, case: GoldenCase, formats) -> dict:
    """Run and write one case under root/<op>/; its manifest entry (file paths relative to root)."""
    outputs = run_case(case)
    out_specs = op_cases(case.op).output_specs(case.attrs)
    tensors = {f"in.{n}": a for n, a in case.inputs.items()} | {f"out.{n}": a for n, a in outputs.items()}
    specs = {f"in.{n}": s for n, s in case.input_specs.items()} | {f"out.{n}": s for n, s in out_specs.items()}
    paths = write_case_files(root / case.op, case.name, tensors, specs, formats)
    return {
        "op": case.op, "config": case.config, "case": case.name, "kind": case.kind,
        "spec": get_op(case.op).spec, "attributes": dict(sorted(case.attrs.items())),
        "tensors": [_tensor_entry(n, np.asarray(tensors[n]), specs[n], case.scales.get(n)) for n in sorted(tensors)],
        "files": {p.relative_to(root).as_posix(): sha256_file(p) for p in paths},
    }


def _check_args(ops, formats) -> tuple[list[str], list[str]]:
    ops = list(golden_op_names() if not ops else ops)
    for op in ops:
        op_cases(op)
    if len(set(ops)) != len(ops):
        raise InputError(f"golden: operator listed twice in {ops}")
    formats = list(DEFAULT_FORMATS if not formats else formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"golden: unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    return ops, [f for f in FORMATS if f in formats]


def build_manifest(root: Path, ops, n_cases: int, seed: int, formats) -> dict:
    vectors = [write_case(root, case, formats) for op in ops for case in generate_cases(op, n_cases, seed)]
    return {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION,
            "ilsim_version": ilsim.__version__, "spec_version": ilsim.SPEC_VERSION,
            "seed": int(seed), "cases_per_config": int(n_cases), "formats": list(formats), "ops": list(ops),
            "vectors": vectors}


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished tmp in place of out; an existing out must be a golden directory (it has a
    manifest). At every instant out is the old or the new complete tree (ilsim.fileio.replace_dir)."""
    if out.exists() and not (out / MANIFEST).is_file():
        raise InputError(f"golden: {out} exists and is not a golden-vector directory (no {MANIFEST}); "
                         f"refusing to replace it")
    replace_dir(tmp, out)


def write_golden_ops(out, ops=None, n_cases: int = DEFAULT_CASES, seed: int = DEFAULT_SEED,
                     formats=None) -> dict:
    """Write the golden vectors of ``ops`` (default: all) to directory ``out``; returns the manifest.

    Same arguments, same bytes. Atomic: the files and then manifest.json go into a temporary
    directory beside ``out``, renamed to ``out`` only when complete; on any error it is removed
    and ``out`` is left as it was.
    """
    out = Path(out)
    ops, formats = _check_args(ops, formats)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"golden: seed must be an int >= 0, got {seed!r}")
    if isinstance(n_cases, bool) or not isinstance(n_cases, int) or n_cases < 0:
        raise InputError(f"golden: cases per configuration must be an int >= 0, got {n_cases!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)          # a killed run's temporaries, and its old tree if it died mid-replace
    if out.exists() and not (out / MANIFEST).is_file():
        raise InputError(f"golden: {out} exists and is not a golden-vector directory (no {MANIFEST}); "
                         f"refusing to replace it")
    tmp = temp_dir(out)
    try:
        manifest = build_manifest(tmp, ops, n_cases, seed, formats)
        text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def verify_golden_dir(out) -> list[str]:
    """Problems found in a golden directory: files missing, or whose sha256 differs from the manifest."""
    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    problems = []
    for vec in manifest["vectors"]:
        for rel, digest in vec["files"].items():
            path = out / rel
            if not path.is_file():
                problems.append(f"{rel}: missing")
            elif sha256_file(path) != digest:
                problems.append(f"{rel}: sha256 differs from the manifest")
    return problems
