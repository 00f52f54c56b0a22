"""Numba's compiled-kernel cache is keyed on the sources of every module with compiled code, so an
edit of an inlined helper (in another file than the kernel) never leaves a stale kernel."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ilsim


def test_the_cache_folder_follows_any_edit_of_compiled_code(tmp_path):
    package = tmp_path / "pkg"
    for folder in ilsim.COMPILED_SOURCES:
        shutil.copytree(Path(ilsim.__file__).parent / folder, package / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    before = ilsim.numba_cache_folder(package, tmp_path / "cache")
    assert before == ilsim.numba_cache_folder(package, tmp_path / "cache")       # deterministic
    jit = package / "arith" / "jit.py"
    jit.write_text(jit.read_text() + "\n# an edit of an inlined helper\n")
    after = ilsim.numba_cache_folder(package, tmp_path / "cache")
    assert after != before and after.parent == before.parent == tmp_path / "cache" / "numba"


def test_importing_ilsim_points_numba_at_that_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"ILSIM_CACHE": str(tmp_path)}
    code = "import ilsim, numba, os; print(os.environ['NUMBA_CACHE_DIR']); print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    expected = str(ilsim.numba_cache_folder(Path(ilsim.__file__).parent, tmp_path))
    assert out.stdout.split() == [expected, expected]
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")          # the user's choice wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(tmp_path / "mine")] * 2
