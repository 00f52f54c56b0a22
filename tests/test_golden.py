"""Golden-vector writer (ilsim.golden, ``ilsim golden ops``): determinism, manifest integrity, the
hex format's two's complement round trip, atomic writing, and that every written output is the
scalar reference's too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ilsim
from ilsim.cli import main
from ilsim.errors import InputError
from ilsim.golden import (MANIFEST, generate_cases, golden_op_names, hex_lines, parse_hex, read_hex,
                          verify_golden_dir, write_golden_ops)
from ilsim.golden import ops as golden_ops
from ilsim.golden.ops import run_case
from safetensors.numpy import load_file

ALL_FORMATS = ["npy", "safetensors", "hex", "h"]
REQUIRED_OPS = {"quantize_rows", "di_matmul", "di_exp", "di_softmax", "di_rmsnorm"}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden") / "ops"
    write_golden_ops(out, n_cases=1, seed=7, formats=ALL_FORMATS)
    return out


def test_required_operators_have_golden_cases():
    assert REQUIRED_OPS <= set(golden_op_names())


def test_two_runs_write_identical_bytes(golden_dir, tmp_path):
    again = tmp_path / "again"
    write_golden_ops(again, n_cases=1, seed=7, formats=ALL_FORMATS)
    first, second = _tree(golden_dir), _tree(again)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)


def test_manifest_lists_every_file_with_its_sha256(golden_dir):
    manifest = json.loads((golden_dir / MANIFEST).read_text())
    assert manifest["ilsim_version"] == ilsim.__version__
    assert manifest["spec_version"] == ilsim.SPEC_VERSION
    assert manifest["seed"] == 7 and manifest["cases_per_config"] == 1
    assert verify_golden_dir(golden_dir) == []
    listed = {rel for vec in manifest["vectors"] for rel in vec["files"]}
    on_disk = set(_tree(golden_dir)) - {MANIFEST}
    assert listed == on_disk
    assert {vec["op"] for vec in manifest["vectors"]} == set(golden_op_names())
    assert {vec["kind"] for vec in manifest["vectors"]} == {"edge", "random"}


def test_manifest_records_shapes_dtypes_widths_and_scales(golden_dir):
    manifest = json.loads((golden_dir / MANIFEST).read_text())
    vec = next(v for v in manifest["vectors"] if v["op"] == "di_matmul" and v["config"] == "w4a8o8")
    tensors = {t["name"]: t for t in vec["tensors"]}
    assert tensors["in.b"]["bits"] == 4 and tensors["in.b"]["signed"] is True
    assert tensors["in.b"]["dtype"] == "int8" and tensors["in.b"]["hex_digits"] == 1
    assert tensors["in.a"]["scale"] == {"m": "in.a_m", "k": "in.a_k", "zp": "in.a_zp"}
    assert tensors["out.q"]["scale"] == {"m": "out.m", "k": "out.k", "zp": "out.zp"}
    assert vec["attributes"]["a_bits"] == 8 and vec["attributes"]["b_bits"] == 4
    for t in vec["tensors"]:
        arr = np.load(golden_dir / "di_matmul" / vec["case"] / f"{t['name']}.npy")
        assert list(arr.shape) == t["shape"] and str(arr.dtype) == t["dtype"]


def test_corrupted_file_is_reported_by_verify(golden_dir, tmp_path):
    copy = tmp_path / "copy"
    write_golden_ops(copy, ops=["di_exp"], n_cases=0, formats=["hex"])
    victim = sorted(copy.rglob("*.hex"))[0]
    victim.write_text(victim.read_text() + "00\n")
    assert any("sha256 differs" in p for p in verify_golden_dir(copy))


@pytest.mark.parametrize("bits", [2, 4, 5, 8, 16, 17, 32])
def test_hex_round_trips_negative_values(bits):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = np.array([lo, lo + 1, -1, 0, 1, hi], dtype=np.int64)
    text = hex_lines(values, bits, signed=True)
    digits = (bits + 3) // 4
    assert all(len(line) == digits and line == line.lower() for line in text.splitlines())
    assert np.array_equal(parse_hex(text, bits, signed=True), values)


def test_hex_is_twos_complement_masked_to_whole_digits():
    assert hex_lines(np.array([-1, -8, 7]), 4, signed=True) == "f\n8\n7\n"
    assert hex_lines(np.array([-1, -16]), 5, signed=True) == "ff\nf0\n"  # 5 bits -> 2 digits, sign-extended
    assert hex_lines(np.array([[-32768, 32767], [-1, 0]]), 16, signed=True) == "8000\n7fff\nffff\n0000\n"
    assert hex_lines(np.array([255]), 8, signed=False) == "ff\n"


def test_hex_refuses_values_outside_the_declared_width():
    with pytest.raises(InputError, match=r"outside the declared int4 range \[-8, 7\]"):
        hex_lines(np.array([8]), 4, signed=True)


def test_written_hex_npy_and_safetensors_hold_the_same_integers(golden_dir):
    manifest = json.loads((golden_dir / MANIFEST).read_text())
    for vec in manifest["vectors"][::7]:
        root = golden_dir / vec["op"]
        st = load_file(root / f"{vec['case']}.safetensors")  # the official reader: an independent check
        for t in vec["tensors"]:
            arr = np.load(root / vec["case"] / f"{t['name']}.npy")
            hexed = read_hex(root / vec["case"] / f"{t['name']}.hex", t["bits"], t["signed"], t["shape"])
            assert np.array_equal(arr.astype(np.int64), hexed), (vec["case"], t["name"])
            assert np.array_equal(st[t["name"]], arr) and st[t["name"]].dtype == arr.dtype


def test_some_edge_vector_holds_negative_hex(golden_dir):
    x = np.load(golden_dir / "quantize_rows" / "a8_edge_width_extremes" / "in.x.npy")
    text = (golden_dir / "quantize_rows" / "a8_edge_width_extremes" / "in.x.hex").read_text()
    assert x.min() == -32768 and "8000\n" in text and "ffff\n" in text


def test_every_golden_output_equals_the_scalar_reference():
    for op in golden_op_names():
        for case in generate_cases(op, n_random=1, seed=3):
            fast, ref = run_case(case), run_case(case, reference=True)
            assert fast.keys() == ref.keys()
            for name in fast:
                assert np.array_equal(fast[name], ref[name]) and fast[name].dtype == ref[name].dtype, \
                    (case.name, name)


def test_an_operator_alone_writes_the_same_vectors_as_a_full_run(golden_dir, tmp_path):
    alone = tmp_path / "alone"
    write_golden_ops(alone, ops=["di_softmax"], n_cases=1, seed=7, formats=ALL_FORMATS)
    full = _tree(golden_dir)
    assert all(full[name] == data for name, data in _tree(alone).items() if name != MANIFEST)


def test_the_seed_changes_random_cases_only():
    def inputs(case):
        return {n: (a.shape, a.tolist()) for n, a in case.inputs.items()}

    one, two = generate_cases("di_exp", 2, seed=1), generate_cases("di_exp", 2, seed=2)
    assert [c.name for c in one] == [c.name for c in two]
    for a, b in zip(one, two):
        assert (inputs(a) == inputs(b)) == (a.kind == "edge"), a.name


def test_more_cases_only_append_to_each_configuration():
    few = {c.name: c for c in generate_cases("di_softmax", 1, seed=4)}
    more = {c.name: c for c in generate_cases("di_softmax", 3, seed=4)}
    assert set(few) < set(more)
    for name, case in few.items():
        assert all(np.array_equal(case.inputs[n], more[name].inputs[n]) for n in case.inputs)


def test_an_error_mid_write_leaves_no_output_and_no_temporary(tmp_path, monkeypatch):
    real_write_case, calls = golden_ops.write_case, []

    def failing_write_case(root, case, formats):
        calls.append(case.name)
        if len(calls) == 5:
            raise RuntimeError("disk full")
        return real_write_case(root, case, formats)

    monkeypatch.setattr(golden_ops, "write_case", failing_write_case)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        write_golden_ops(out, ops=["quantize_rows"], n_cases=1)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_error_mid_write_keeps_the_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_golden_ops(out, ops=["di_exp"], n_cases=0, formats=["hex"])
    before = _tree(out)

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(golden_ops, "write_case", fail)
    with pytest.raises(RuntimeError):
        write_golden_ops(out, ops=["di_exp"], n_cases=2, formats=["hex"])
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_rerun_replaces_a_golden_directory(tmp_path):
    out = tmp_path / "out"
    write_golden_ops(out, ops=["di_exp"], n_cases=0, formats=["hex"])
    write_golden_ops(out, ops=["di_exp"], n_cases=0, formats=["npy"])
    assert {p.suffix for p in out.rglob("*") if p.is_file()} == {".npy", ".json"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_directory_without_a_manifest_is_not_replaced(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="not a golden-vector directory"):
        write_golden_ops(out, ops=["di_exp"], n_cases=0)
    assert (out / "notes.txt").read_text() == "keep"


@pytest.mark.parametrize("kwargs, message", [
    ({"ops": ["nope"]}, "no golden cases for operator 'nope'"),
    ({"formats": ["csv"]}, "unknown format"),
    ({"n_cases": -1}, "cases per configuration"),
    ({"seed": -3}, "seed must be an int"),
])
def test_bad_arguments_are_input_errors(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        write_golden_ops(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_cli_golden_ops_json(tmp_path, capsys):
    out = tmp_path / "g"
    assert main(["golden", "ops", str(out), "--ops", "di_exp", "--cases", "1", "--seed", "5", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ops"] == ["di_exp"] and payload["vectors"] > 0
    assert verify_golden_dir(out) == []
    assert main(["golden", "ops", str(tmp_path / "h"), "--ops", "bogus"]) == 2
    assert "no golden cases for operator 'bogus'" in capsys.readouterr().err
