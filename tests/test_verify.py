"""The verification harness (ilsim.golden.verify, ``ilsim verify``): a correct implementation
passes, a wrong one is caught with field, index and bits, and bad result files are clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ilsim.cli import main
from ilsim.errors import InputError
from ilsim.golden import MANIFEST, golden_op_names, hex_lines, write_golden_ops
from ilsim.golden.ops import output_fields
from ilsim.golden.verify import load_manifest, verify_callable, verify_results
from ilsim.ops.registry import get_op


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "ops"
    write_golden_ops(out, n_cases=1, seed=11, formats=["npy", "hex"])
    return out


def write_results(golden_dir: Path, results_dir: Path, fmt: str = "npy", fn=None) -> None:
    """What another implementation would write: ilsim's fast path (or ``fn(op, kwargs)``) on every
    golden vector, as results_dir/<op>/<case>/out.<field>.<fmt>."""
    manifest = load_manifest(golden_dir)
    for vec in manifest["vectors"]:
        case_dir = golden_dir / vec["op"] / vec["case"]
        kwargs = {t["name"][3:]: np.load(case_dir / f"{t['name']}.npy")
                  for t in vec["tensors"] if t["name"].startswith("in.")} | vec["attributes"]
        outs = output_fields(fn(vec["op"], kwargs) if fn else get_op(vec["op"]).fast(**kwargs))
        widths = {t["name"][4:]: t for t in vec["tensors"] if t["name"].startswith("out.")}
        dest = results_dir / vec["op"] / vec["case"]
        dest.mkdir(parents=True, exist_ok=True)
        for name, arr in outs.items():
            if fmt == "npy":
                np.save(dest / f"out.{name}.npy", arr)
            else:
                (dest / f"out.{name}.hex").write_text(hex_lines(arr, widths[name]["bits"], widths[name]["signed"]))


def _half_even(op, **kwargs):
    return get_op(op).fast(**kwargs, rounding="half_even")


@pytest.fixture(scope="module")
def results(golden, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results") / "impl"
    write_results(golden, out)
    return out


@pytest.mark.parametrize("op", golden_op_names())
def test_ilsim_fast_path_and_reference_pass(golden, op):
    for fn in (get_op(op).fast, get_op(op).reference):
        report = verify_callable(golden, op, fn)
        assert report.ok, report.format_text()
        s = report.summary()
        assert s["vectors"] > 0 and s["elements"] > 0 and s["mismatches"] == 0


def test_results_as_plain_tuple_dict_or_torch_are_accepted(golden):
    fast = get_op("di_exp").fast
    assert verify_callable(golden, "di_exp", lambda **kw: tuple(fast(**kw))).ok
    assert verify_callable(golden, "di_exp", lambda **kw: fast(**kw)._asdict()).ok
    assert verify_callable(golden, "di_softmax", get_op("di_softmax").fast).ok  # one array, field "p"
    torch = pytest.importorskip("torch")
    assert verify_callable(golden, "di_exp",
                           lambda **kw: tuple(torch.from_numpy(np.asarray(v)) for v in fast(**kw))).ok


def test_half_even_instead_of_half_up_is_caught_with_index_and_bits(golden):
    report = verify_callable(golden, "quantize_rows", lambda **kw: _half_even("quantize_rows", **kw))
    assert not report.ok
    failed = {v.case: v for v in report.failed}
    tie = failed["s3_edge_rounding_ties"]
    m = tie.mismatch
    assert (m.field, m.index, m.expected, m.actual) == ("q", (0, 0), -1, -2)
    text = tie.describe()
    assert "q[0,0]: expected -1 (0x7), got -2 (0x6)" in text  # declared int3 bits
    assert "x=[[-3, -1, 1, 3, 6], [2, 4, 6, 8, 10]]" in text and "symmetric=True" in text
    s = report.summary()
    assert s["mismatches"] == sum(v.mismatches for v in report.failed) > 0
    assert s["failed_vectors"] == len(failed) < s["vectors"]
    assert "MISMATCH" in report.format_text()
    first = report.to_dict()["vectors"]
    entry = next(v for v in first if v["case"] == "s3_edge_rounding_ties")["first_mismatch"]
    assert entry["index"] == [0, 0] and entry["expected_bits"] == "0x7" and entry["actual_bits"] == "0x6"


def test_wrong_shapes_dtypes_fields_and_exceptions_are_mismatches(golden):
    fast = get_op("di_exp").fast

    def float_y(**kw):
        out = fast(**kw)
        return out._replace(y=out.y.astype(np.float64))

    def boom(**kw):
        raise RuntimeError("kernel fault")

    cases = {
        "float_y": (float_y, "expected integers"),
        "short": (lambda **kw: {"y": fast(**kw).y}, "expected outputs y, t_abs"),
        "shape": (lambda **kw: fast(**kw)._replace(t_abs=np.zeros((9, 9), np.int64)), "expected shape"),
        "raise": (boom, "raised RuntimeError: kernel fault"),
    }
    for name, (fn, message) in cases.items():
        report = verify_callable(golden, "di_exp", fn)
        assert len(report.failed) == len(report.vectors), name
        assert message in report.failed[0].describe(), (name, report.failed[0].describe())


def test_value_outside_the_declared_width_shows_full_bits(golden):
    fast = get_op("di_softmax").fast
    report = verify_callable(golden, "di_softmax", lambda **kw: fast(**kw).astype(np.int64) + 256)
    assert "(0x0000000000000" in report.failed[0].describe()


def test_unknown_operator_and_not_a_golden_dir(golden, tmp_path):
    only_exp = tmp_path / "only_exp"
    write_golden_ops(only_exp, ops=["di_exp"], n_cases=0, formats=["npy"])
    with pytest.raises(InputError, match="no vectors for operator"):
        verify_callable(only_exp, "di_rope", get_op("di_rope").fast)
    with pytest.raises(InputError, match="no manifest.json"):
        verify_callable(tmp_path, "di_exp", get_op("di_exp").fast)


def test_a_corrupted_golden_dir_is_refused(golden, tmp_path):
    copy = tmp_path / "g"
    shutil.copytree(golden, copy)
    victim = copy / "di_exp" / "i16o32r1_edge_width_extremes" / "out.y.npy"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x07")
    with pytest.raises(InputError, match="does not match its manifest.*out.y.npy: sha256 differs"):
        verify_results(copy, copy)


# ------------------------------------------------------------------------------- results dir

def test_results_dir_of_a_correct_implementation_passes(golden, results):
    report = verify_results(golden, results)
    assert report.ok, report.format_text()
    assert report.summary()["vectors"] == len(load_manifest(golden)["vectors"])
    assert verify_results(golden, golden).ok  # the golden dir itself is laid out as results


def test_hex_results_pass_and_half_even_results_fail(golden, tmp_path):
    write_results(golden, tmp_path / "hex", fmt="hex")
    assert verify_results(golden, tmp_path / "hex").ok
    write_results(golden, tmp_path / "bad", fn=lambda op, kw: _half_even(op, **kw) if op == "quantize_rows"
                  else get_op(op).fast(**kw))
    report = verify_results(golden, tmp_path / "bad")
    assert {v.op for v in report.failed} == {"quantize_rows"}
    assert "q[0,0]: expected -1 (0x7), got -2 (0x6)" in {v.case: v for v in report.failed}[
        "s3_edge_rounding_ties"].describe()
    assert verify_results(golden, tmp_path / "bad", ops=["di_exp", "di_matmul"]).ok


def _copy(results: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "r"
    shutil.copytree(results, dst)
    return dst


CASE = Path("di_matmul") / "w4a8o8_edge_largest_accumulator"


def test_missing_result_file_is_named(results, golden, tmp_path):
    r = _copy(results, tmp_path)
    (r / CASE / "out.q.npy").unlink()
    with pytest.raises(InputError, match=r"1 bad result file.*w4a8o8_edge_largest_accumulator/out\.q\.npy: missing"):
        verify_results(golden, r)


def test_corrupt_npy_is_named(results, golden, tmp_path):
    r = _copy(results, tmp_path)
    (r / CASE / "out.zp.npy").write_bytes(b"not numpy at all")
    with pytest.raises(InputError, match=r"out\.zp\.npy: not a valid \.npy file"):
        verify_results(golden, r)


def test_mis_shaped_and_float_npy_are_named(results, golden, tmp_path):
    r = _copy(results, tmp_path)
    np.save(r / CASE / "out.q.npy", np.zeros((5, 5), np.uint8))
    np.save(r / CASE / "out.m.npy", np.zeros(2, np.float32))
    with pytest.raises(InputError) as err:
        verify_results(golden, r)
    msg = str(err.value)
    assert "2 bad result file(s)" in msg
    assert "out.q.npy: shape [5, 5], expected [2, 2]" in msg and "out.m.npy: dtype float32, expected integers" in msg


def test_bad_hex_files_are_named_with_the_line(results, golden, tmp_path):
    r = _copy(results, tmp_path)
    case = r / CASE
    (case / "out.q.npy").unlink()
    (case / "out.q.hex").write_text("01\nzz\n02\n03\n")
    with pytest.raises(InputError, match=r"out\.q\.hex: line 2: 'zz' is not a hex number"):
        verify_results(golden, r)
    (case / "out.q.hex").write_text("01\n02\n03\n")
    with pytest.raises(InputError, match=r"out\.q\.hex: 3 values, expected 4 \(shape \[2, 2\]"):
        verify_results(golden, r)
    (case / "out.q.hex").write_text("01\n02\n103\n04\n")
    with pytest.raises(InputError, match=r"line 3: '103' is not 2 hex digit"):
        verify_results(golden, r)


def test_missing_results_dir(golden, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        verify_results(golden, tmp_path / "nowhere")


# ------------------------------------------------------------------------------- CLI

def test_cli_exit_codes(golden, results, tmp_path, capsys):
    assert main(["verify", str(golden), "--results", str(results)]) == 0
    assert "OK, bit exact" in capsys.readouterr().out
    assert main(["verify", str(golden), "--results", str(results), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"]["ok"] is True and payload["summary"]["mismatches"] == 0

    r = _copy(results, tmp_path)
    q = np.load(r / CASE / "out.q.npy")
    q[1, 0] ^= 1
    np.save(r / CASE / "out.q.npy", q)
    assert main(["verify", str(golden), "--results", str(r), "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["summary"]["mismatches"] == 1 and payload["summary"]["failed_vectors"] == 1
    bad = [v for v in payload["vectors"] if not v["ok"]]
    assert bad[0]["case"] == CASE.name and bad[0]["first_mismatch"]["index"] == [1, 0]
    assert main(["verify", str(golden), "--results", str(r), "--ops", "di_exp"]) == 0
    capsys.readouterr()

    (r / CASE / "out.k.npy").unlink()
    assert main(["verify", str(golden), "--results", str(r)]) == 2
    assert "out.k.npy: missing" in capsys.readouterr().err
    assert main(["verify", str(tmp_path), "--results", str(r)]) == 2
    assert f"no {MANIFEST}" in capsys.readouterr().err


def test_model_traces_verify_from_result_files(tmp_path):
    """The committed model trace: its own outputs pass; one changed logit is found with its bits."""
    import shutil

    from ilsim.golden.verify import verify_results

    golden = Path(__file__).resolve().parents[1] / "golden" / "model"
    results = tmp_path / "results"
    shutil.copytree(golden, results)
    assert verify_results(golden, results).ok
    path = results / "model" / "1" / "lm_head" / "out.p.npy"
    logits = np.load(path)
    logits[0, 5] += 1
    np.save(path, logits)
    report = verify_results(golden, results)
    assert not report.ok and report.summary()["mismatches"] == 1
    assert "1/lm_head" in report.format_text() and "p[0,5]" in report.format_text()
