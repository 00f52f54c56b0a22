"""The committed regression set golden/ is what ilsim writes today, byte for byte.

A failure here means an operator's bits, the exporter's choices (for the model trace) or the
writer's format changed. If the change is meant, regenerate with the commands below (see
golden/README.md) and review the diff:

    ilsim golden ops golden/ops --cases 2 --formats npy hex
    ilsim golden model golden/model --prompt "To be" --new-tokens 1 --layers 0 --formats npy hex
"""

from __future__ import annotations

import json
from pathlib import Path

from ilsim.cli import main
from ilsim.golden import MANIFEST, verify_golden_dir

COMMITTED = Path(__file__).resolve().parent.parent / "golden" / "ops"
#: The arguments of `ilsim golden ops OUT ...` that wrote golden/ops (keep in sync with golden/README.md).
REGEN_ARGS = ["--cases", "2", "--formats", "npy", "hex"]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_set_matches_its_manifest():
    assert (COMMITTED / MANIFEST).is_file(), "golden/ops/manifest.json is missing"
    assert verify_golden_dir(COMMITTED) == []
    manifest = json.loads((COMMITTED / MANIFEST).read_text())
    assert manifest["cases_per_config"] == 2 and manifest["seed"] == 0
    assert manifest["formats"] == ["npy", "hex"]


def assert_same_tree(committed_dir: Path, fresh_dir: Path, hint: str) -> None:
    committed, fresh = _tree(committed_dir), _tree(fresh_dir)
    missing, extra = sorted(set(committed) - set(fresh)), sorted(set(fresh) - set(committed))
    changed = sorted(name for name in set(committed) & set(fresh) if committed[name] != fresh[name])
    assert not missing, f"committed files no longer written: {missing[:10]} ({hint})"
    assert not extra, f"new files not committed: {extra[:10]} ({hint})"
    assert not changed, f"{len(changed)} files differ, e.g. {changed[:10]} ({hint})"
    assert committed[MANIFEST] == fresh[MANIFEST]


def test_regenerating_writes_the_committed_bytes(tmp_path, capsys):
    out = tmp_path / "ops"
    assert main(["golden", "ops", str(out), *REGEN_ARGS]) == 0
    capsys.readouterr()
    assert_same_tree(COMMITTED, out, "regenerate with `ilsim golden ops golden/ops " + " ".join(REGEN_ARGS)
                     + "` and review the diff")


COMMITTED_MODEL = COMMITTED.parent / "model"
#: The arguments of `ilsim golden model OUT ...` that wrote golden/model (the shipped model at W8A8).
MODEL_ARGS = ["--prompt", "To be", "--new-tokens", "1", "--layers", "0", "--formats", "npy", "hex"]


def test_regenerating_the_model_trace_writes_the_committed_bytes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ILSIM_CACHE", str(tmp_path / "cache"))  # export the shipped model afresh
    out = tmp_path / "model"
    assert main(["golden", "model", str(out), *MODEL_ARGS, "--json"]) == 0
    capsys.readouterr()
    assert verify_golden_dir(COMMITTED_MODEL) == []
    assert_same_tree(COMMITTED_MODEL, out, "regenerate with `ilsim golden model golden/model "
                     + " ".join(MODEL_ARGS) + "` and review the diff")
