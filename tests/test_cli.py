"""The command line end to end on a tiny checkpoint with a character tokenizer: export, inspect,
generate (integer and float), ppl, audit, ops; and each bad input reported in one clear line."""

import json

import numpy as np
import pytest

from ilsim.cli import main
from ilsim.hf import LlamaConfig, random_llama_weights, save_checkpoint

CHARS = [chr(c) for c in range(32, 95)]  # space .. '^': upper-case text and punctuation
CONFIG = LlamaConfig(vocab_size=len(CHARS) + 1, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=96,
                     tie_word_embeddings=True, bos_token_id=None, eos_token_ids=())
TEXT = ("TO BE, OR NOT TO BE, THAT IS THE QUESTION: WHETHER 'TIS NOBLER IN THE MIND TO SUFFER "
        "THE SLINGS AND ARROWS OF OUTRAGEOUS FORTUNE, OR TO TAKE ARMS AGAINST A SEA OF TROUBLES. ") * 4


def char_tokenizer_json() -> str:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate(CHARS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tok.to_str()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ckpt = root / "tiny-llama"
    save_checkpoint(ckpt, CONFIG, random_llama_weights(CONFIG, seed=3))
    (ckpt / "tokenizer.json").write_text(char_tokenizer_json())
    (root / "calib.txt").write_text(TEXT)
    (root / "empty.txt").write_text("  \n")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ILSIM_CACHE", str(tmp_path / "cache"))


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys, *argv) -> str:
    """stderr of a command that must fail with status 2 (an ilsim error, or argparse's usage error)."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    return capsys.readouterr().err


@pytest.fixture(scope="module")
def graph_path(workspace):
    out = workspace / "w8a8.ilsim"
    assert main(["export", str(workspace / "tiny-llama"), str(out), "--wbits", "8", "--abits", "8",
                 "--calib", str(workspace / "calib.txt"), "--json"]) == 0
    return out


def test_export_then_inspect(graph_path, capsys):
    info = run_json(capsys, "inspect", str(graph_path), "--nodes")
    assert info["model"]["num_layers"] == 2 and info["ops"]["attention"] == 2
    assert info["parameters"] > 0 and info["bytes"] == graph_path.stat().st_size
    assert info["parameters_by_width"]["uint8"] > 0
    assert len(info["node_list"]) == info["nodes"]


def test_generate_from_a_graph_is_deterministic(graph_path, capsys):
    a = run_json(capsys, "generate", str(graph_path), "--prompt", "TO BE", "--max-new-tokens", "6")
    b = run_json(capsys, "generate", str(graph_path), "--prompt", "TO BE", "--max-new-tokens", "6")
    assert a["new_ids"] == b["new_ids"] and len(a["new_ids"]) == 6 and a["mode"] == "integer W8A8"


def test_generate_reference_mode_gives_the_same_tokens(graph_path, capsys):
    fast = run_json(capsys, "generate", str(graph_path), "--prompt", "TO", "--max-new-tokens", "3")
    ref = run_json(capsys, "generate", str(graph_path), "--prompt", "TO", "--max-new-tokens", "3", "--reference")
    assert fast["new_ids"] == ref["new_ids"]


def test_generate_from_a_checkpoint_exports_and_caches(workspace, capsys, tmp_path):
    src = str(workspace / "tiny-llama")
    out = run_json(capsys, "generate", src, "--prompt", "TO BE", "--max-new-tokens", "4", "--wbits", "4")
    assert out["mode"] == "integer W4A8" and len(out["new_ids"]) == 4
    assert len(list((tmp_path / "cache").glob("*.ilsim"))) == 1
    run_json(capsys, "generate", src, "--prompt", "TO BE", "--max-new-tokens", "4", "--wbits", "4")
    assert len(list((tmp_path / "cache").glob("*.ilsim"))) == 1
    flt = run_json(capsys, "generate", src, "--prompt", "TO BE", "--max-new-tokens", "4", "--float")
    assert flt["mode"] == "float" and len(flt["new_ids"]) == 4


def test_ppl_integer_and_float(workspace, graph_path, capsys):
    text = str(workspace / "calib.txt")
    it = run_json(capsys, "ppl", str(graph_path), "--text", text, "--context", "64")
    fl = run_json(capsys, "ppl", str(workspace / "tiny-llama"), "--text", text, "--context", "64", "--float")
    assert it["windows"] == fl["windows"] > 0
    assert it["perplexity"] > 0 and 0 <= it["top1_accuracy"] <= 1
    # random weights give an absurd perplexity for both; the integer model must track the float one
    assert abs(np.log(it["perplexity"]) - np.log(fl["perplexity"])) < 0.1


def test_generate_traces_chosen_nodes_to_npz(graph_path, capsys, tmp_path):
    out = tmp_path / "trace.npz"
    run_json(capsys, "generate", str(graph_path), "--prompt", "TO BE", "--max-new-tokens", "2",
             "--trace", "layers.1.*_proj", "--trace-out", str(out))
    arrays = np.load(out)
    assert "layers.1.q_proj/0/q" in arrays and "layers.1.down_proj/1/m" in arrays
    assert not any(name.startswith("layers.0.") for name in arrays)
    assert arrays["layers.1.q_proj/0/q"].shape[0] == 5  # the prefill call: 5 prompt tokens
    assert "matched no node" in fails(capsys, "generate", str(graph_path), "--prompt", "TO", "--trace", "nope*",
                                      "--trace-out", str(out))


def test_golden_model_trace_from_the_cli(graph_path, capsys, tmp_path):
    out = run_json(capsys, "golden", "model", str(graph_path), str(tmp_path / "trace"), "--prompt", "TO BE",
                   "--new-tokens", "1", "--layers", "1", "--formats", "npy")
    manifest = json.loads((tmp_path / "trace" / "manifest.json").read_text())
    assert out["vectors"] == len(manifest["vectors"]) > 0 and out["prompt_ids"] == manifest["prompt_ids"]
    assert not any(v["node"].startswith("layers.0.") for v in manifest["vectors"])
    assert "usage" in fails(capsys, "golden", "ops", "a", "b")


def test_audit_reports_every_value_inside_its_width(graph_path, capsys):
    out = run_json(capsys, "audit", str(graph_path), "--prompt", "TO BE", "--max-new-tokens", "2")
    assert out["over_width"] == [] and len(out["values"]) > 10


def test_ops_list_and_demo(capsys):
    listing = run_json(capsys, "ops")
    assert "di_matmul" in listing["ops"] and listing["ops"]["di_exp"] == "docs/spec/exp.md"
    demo = run_json(capsys, "ops", "--demo")
    assert {d["op"] for d in demo["demos"]} >= {"di_matmul", "di_exp", "di_softmax", "di_rmsnorm"}
    for d in demo["demos"]:
        assert d["max_abs_error"] < 0.1, d["op"]


def test_bad_inputs_are_one_line_errors(workspace, graph_path, capsys, tmp_path):
    assert "unknown model 'no-such-model'" in fails(capsys, "generate", "no-such-model", "--prompt", "x")
    assert "the file is empty" in fails(capsys, "ppl", str(graph_path), "--text", str(workspace / "empty.txt"))
    assert "no such file" in fails(capsys, "ppl", str(graph_path), "--text", str(tmp_path / "absent.txt"))
    long_prompt = "A" * 95
    assert "exceeds the model's context of 96" in fails(capsys, "generate", str(graph_path), "--prompt",
                                                       long_prompt, "--max-new-tokens", "5")
    bad = tmp_path / "bad.ilsim"
    bad.write_bytes(graph_path.read_bytes()[:1000])
    assert "truncated or corrupt" in fails(capsys, "inspect", str(bad))
    assert "override" in fails(capsys, "export", str(workspace / "tiny-llama"), str(tmp_path / "x.ilsim"),
                               "--override", "down:8")


def test_unknown_architecture_and_nan_weights_are_named(workspace, tmp_path, capsys):
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    cfg = json.loads((workspace / "tiny-llama" / "config.json").read_text())
    (gpt / "config.json").write_text(json.dumps(cfg | {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    err = fails(capsys, "export", str(gpt), str(tmp_path / "g.ilsim"))
    assert "config.json" in err and "gpt2" in err.lower()

    nan_dir = tmp_path / "nan"
    weights = random_llama_weights(CONFIG, seed=3)
    weights["model.layers.1.mlp.up_proj.weight"][2, 3] = np.nan
    save_checkpoint(nan_dir, CONFIG, weights)
    (nan_dir / "tokenizer.json").write_text(char_tokenizer_json())
    err = fails(capsys, "export", str(nan_dir), str(tmp_path / "n.ilsim"), "--calib", str(workspace / "calib.txt"))
    assert "model.layers.1.mlp.up_proj.weight" in err and "NaN" in err
    assert not (tmp_path / "n.ilsim").exists()


def test_ppl_labels_a_graph_with_its_own_widths_and_fake_quant_tracks_integer(workspace, tmp_path, capsys):
    w4a4 = tmp_path / "w4a4.ilsim"
    run_json(capsys, "export", str(workspace / "tiny-llama"), str(w4a4), "--wbits", "4", "--abits", "4",
             "--calib", str(workspace / "calib.txt"))
    text = str(workspace / "calib.txt")
    it = run_json(capsys, "ppl", str(w4a4), "--text", text, "--context", "64")
    fq = run_json(capsys, "ppl", str(w4a4), "--text", text, "--context", "64", "--fake-quant")
    assert it["mode"] == "integer W4A4" and fq["mode"] == "fake-quant W4A4"
    assert it["windows"] == fq["windows"] and abs(np.log(it["perplexity"]) - np.log(fq["perplexity"])) < 0.2
    assert "--wbits/--abits/--method apply to a checkpoint" in fails(capsys, "ppl", str(w4a4), "--text", text, "--wbits", "8")
    assert "exclude each other" in fails(capsys, "ppl", str(w4a4), "--text", text, "--float", "--fake-quant")


def test_ppl_on_a_text_shorter_than_the_window_uses_the_text_length_and_says_so(workspace, graph_path, tmp_path,
                                                                                 capsys):
    short = tmp_path / "short.txt"
    short.write_text("TO BE, OR NOT TO BE.")
    out = run_json(capsys, "ppl", str(graph_path), "--text", str(short))
    assert out["context"] == 20 and out["windows"] == 1 and out["predicted_tokens"] == 19
    assert "fewer than the window" in out["notes"][0]
    assert main(["ppl", str(graph_path), "--text", str(short)]) == 0
    assert "using one window of 20 tokens" in capsys.readouterr().err
    assert "--context 500" in fails(capsys, "ppl", str(graph_path), "--text", str(short), "--context", "500")
    assert "--max-tokens: -300 is outside" in fails(capsys, "ppl", str(graph_path), "--text", str(short),
                                                    "--max-tokens", "-300")


def test_counts_prompts_and_destinations_are_checked_before_any_work(workspace, graph_path, tmp_path, capsys):
    outside = "--max-new-tokens: -5 is outside [0, inf]"
    assert outside in fails(capsys, "generate", str(graph_path), "--prompt", "TO", "--max-new-tokens", "-5")
    assert outside in fails(capsys, "generate", str(workspace / "tiny-llama"), "--float", "--prompt", "TO",
                            "--max-new-tokens", "-5")
    assert "--max-new-tokens: -1 is outside" in fails(capsys, "audit", str(graph_path), "--max-new-tokens", "-1")
    text = str(workspace / "calib.txt")
    assert "--max-tokens: -300 is outside [2, inf]" in fails(capsys, "ppl", str(graph_path), "--text", text,
                                                             "--max-tokens", "-300")
    assert "--max-tokens: 0 is outside" in fails(capsys, "ppl", str(graph_path), "--text", text, "--max-tokens", "0")
    assert "--context: 0 is outside" in fails(capsys, "ppl", str(graph_path), "--text", text, "--context", "0")
    assert "--context: 0 is outside" in fails(capsys, "export", str(workspace / "tiny-llama"),
                                              str(tmp_path / "c.ilsim"), "--context", "0")
    assert "--wbits: 9 is outside [2, 8]" in fails(capsys, "export", str(workspace / "tiny-llama"),
                                                   str(tmp_path / "w.ilsim"), "--wbits", "9")
    assert "--sparsity: 1.5 is outside" in fails(capsys, "export", str(workspace / "tiny-llama"),
                                                 str(tmp_path / "s.ilsim"), "--sparsity", "1.5")
    assert "--wbits/--abits/--method apply to a checkpoint" in fails(capsys, "ppl", str(graph_path), "--text", text,
                                                                     "--wbits", "4")
    assert not list(tmp_path.glob("*.ilsim"))
    assert "--prompt is empty" in fails(capsys, "generate", str(graph_path), "--prompt", "  ")
    src = str(workspace / "tiny-llama")
    assert "is a directory" in fails(capsys, "export", src, str(tmp_path))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert "is a file, not a directory" in fails(capsys, "export", src, str(blocker / "sub" / "g.ilsim"))


def test_export_prunes_with_the_pattern_given_and_refuses_a_bad_one(capsys, workspace, tmp_path):
    out = tmp_path / "sparse.ilsim"
    run_json(capsys, "export", str(workspace / "tiny-llama"), str(out), "--wbits", "4", "--abits", "8",
             "--method", "sparsegpt", "--sparsity-pattern", "2:4", "--calib", str(workspace / "calib.txt"))
    from ilsim.graph.files import load_graph

    pruning = load_graph(out).quant["report"]["pruning"]
    assert pruning["pattern"] == "2:4" and pruning["sparsity"] == 0.5
    assert "sparsity pattern must be 'unstructured' or 'N:M'" in fails(
        capsys, "export", str(workspace / "tiny-llama"), str(tmp_path / "bad.ilsim"), "--method", "wanda",
        "--sparsity-pattern", "2-4", "--calib", str(workspace / "calib.txt"))
    assert not (tmp_path / "bad.ilsim").exists()


def test_a_directory_given_as_a_file_is_called_a_directory(graph_path, tmp_path, capsys):
    assert "is a directory, not a graph file" in fails(capsys, "inspect", str(tmp_path))
    assert "is a directory, not a file" in fails(capsys, "ppl", str(graph_path), "--text", str(tmp_path))


def test_a_corrupt_tokenizer_is_a_one_line_error(workspace, tmp_path, capsys):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(workspace / "tiny-llama", ckpt)
    (ckpt / "tokenizer.json").write_text('{"model": {"type": "NoSuchModel"}}')
    err = fails(capsys, "generate", str(ckpt), "--float", "--prompt", "TO")
    assert "corrupt tokenizer" in err and str(ckpt) in err and "Traceback" not in err
    err = fails(capsys, "export", str(ckpt), str(tmp_path / "g.ilsim"), "--calib", str(workspace / "calib.txt"))
    assert "corrupt tokenizer" in err and not (tmp_path / "g.ilsim").exists()
