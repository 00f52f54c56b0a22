"""Files and folders are replaced whole: a killed writer leaves the old or the new complete tree,
its temporaries are removed by the next run, and what is written has the umask's permissions."""

import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

from ilsim import fileio
from ilsim.golden import verify_golden_dir


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tree(root, files: dict):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_replace_dir_swaps_the_trees_and_leaves_nothing_beside(tmp_path):
    out = tree(tmp_path / "out", {"a": "old", "b": "old"})
    new = tree(fileio.temp_dir(out), {"a": "new"})
    fileio.replace_dir(new, out)
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_crash_after_the_swap_still_leaves_the_new_tree_in_place(tmp_path, monkeypatch):
    out = tree(tmp_path / "out", {"a": "old"})
    new = tree(fileio.temp_dir(out), {"a": "new"})

    def killed(path, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(fileio.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        fileio.replace_dir(new, out)
    assert (out / "a").read_text() == "new"


def test_the_next_run_restores_an_old_tree_a_dead_process_moved_aside(tmp_path):
    out = tmp_path / "out"
    aside = tree(tmp_path / f".out.old-{dead_pid()}-x" / "out", {"a": "old"})
    fileio.clean_stale(out)
    assert (out / "a").read_text() == "old" and not aside.parent.exists()


def test_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "model.ilsim"
    dead = tmp_path / f".model.ilsim.tmp-{dead_pid()}-abc"
    dead.write_text("partial")
    dead_dir = tree(tmp_path / f".model.ilsim.tmp-{dead_pid()}-def", {"x": "1"})
    live = tmp_path / f".model.ilsim.tmp-{os.getpid()}-ghi"
    live.write_text("mine")
    other = tmp_path / f".other.tmp-{dead_pid()}-x"
    other.write_text("not this target's")
    fileio.clean_stale(target)
    assert not dead.exists() and not dead_dir.exists() and live.exists() and other.exists()


def test_created_files_and_folders_follow_the_umask(tmp_path):
    from ilsim.golden import write_golden_ops

    old = os.umask(0o022)
    try:
        f = fileio.temp_file(tmp_path / "x")
        d = fileio.temp_dir(tmp_path / "y")
        write_golden_ops(tmp_path / "golden", ops=["quantize_rows"], n_cases=1, formats=["npy"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(f.stat().st_mode) == 0o644 and stat.S_IMODE(d.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "golden").stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in (tmp_path / "golden").rglob("*") if p.is_file())


def test_a_saved_graph_follows_the_umask(tmp_path):
    import numpy as np

    from ilsim.export.build import ExportOptions, export_model
    from ilsim.graph.files import save_graph
    from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint

    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=16)
    save_checkpoint(tmp_path / "c", config, random_llama_weights(config, seed=0))
    graph = export_model(load_checkpoint(tmp_path / "c"), np.arange(64) % 32, ExportOptions(calib_context=16,
                                                                                        calib_windows=2))
    old = os.umask(0o022)
    try:
        path = save_graph(graph, tmp_path / "g.ilsim")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_killing_golden_ops_at_random_moments_never_leaves_out_missing_or_partial(tmp_path):
    out = tmp_path / "golden"
    argv = [sys.executable, "-m", "ilsim.cli", "golden", "ops", str(out), "--ops", "quantize_rows", "di_exp",
            "--cases", "1", "--formats", "npy", "hex"]
    subprocess.run(argv, check=True, capture_output=True)
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + rng.uniform(0.5, 4.0)
        while proc.poll() is None and time.monotonic() < deadline:
            assert (out / "manifest.json").is_file() and verify_golden_dir(out) == []
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert (out / "manifest.json").is_file() and verify_golden_dir(out) == []
    subprocess.run(argv, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden"]   # the killed runs' temporaries are gone


def test_a_damaged_cached_graph_is_rebuilt(tmp_path, monkeypatch, capsys):
    from ilsim.hf import LlamaConfig, random_llama_weights, save_checkpoint
    from ilsim.model import load_integer_model
    from tests.test_cli import char_tokenizer_json

    monkeypatch.setenv("ILSIM_CACHE", str(tmp_path / "cache"))
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=32,
                         bos_token_id=None, eos_token_ids=())
    save_checkpoint(tmp_path / "c", config, random_llama_weights(config, seed=0))
    (tmp_path / "c" / "tokenizer.json").write_text(char_tokenizer_json())
    calib = tmp_path / "calib.txt"
    calib.write_text("TO BE, OR NOT TO BE, THAT IS THE QUESTION. " * 8)
    first = load_integer_model(str(tmp_path / "c"), calib=str(calib))
    cached = next((tmp_path / "cache").rglob("*.ilsim"))
    cached.write_bytes(cached.read_bytes()[:500])
    again = load_integer_model(str(tmp_path / "c"), calib=str(calib))
    assert "rebuilding the damaged cached graph" in capsys.readouterr().err
    assert again.generate(again.encode("TO"), 3) == first.generate(first.encode("TO"), 3)
