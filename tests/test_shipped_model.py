"""The model and held-out text that ship inside the package (scripts/train_tiny_llama.py wrote them).

Cheap checks, no torch: the folder is a well-formed Hugging Face LLaMA checkpoint whose tensors
match its config, its tokenizer round-trips text, the evaluation texts are there, and a small
NumPy forward pass shows the weights are the trained ones (held-out perplexity far below chance).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from tokenizers import Tokenizer

import ilsim

PKG = Path(ilsim.__file__).resolve().parent
MODEL = PKG / "models" / "shakespeare-tiny"
DATA = PKG / "data"

MACBETH = "ALL:\nFair is foul, and foul is fair:\nHover through the fog and filthy air.\n"


@pytest.fixture(scope="module")
def config():
    return json.loads((MODEL / "config.json").read_text())


@pytest.fixture(scope="module")
def tensors():
    with safe_open(str(MODEL / "model.safetensors"), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_file(str(MODEL / "tokenizer.json"))


def expected_shapes(c):
    h, i, d = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    kv = c["num_key_value_heads"] * d
    shapes = {"model.embed_tokens.weight": (c["vocab_size"], h), "model.norm.weight": (h,)}
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}."
        shapes.update({
            p + "self_attn.q_proj.weight": (c["num_attention_heads"] * d, h),
            p + "self_attn.k_proj.weight": (kv, h),
            p + "self_attn.v_proj.weight": (kv, h),
            p + "self_attn.o_proj.weight": (h, c["num_attention_heads"] * d),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
        })
    return shapes


def test_folder_is_complete_and_small():
    names = {p.name for p in MODEL.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= names
    assert sum(p.stat().st_size for p in MODEL.iterdir()) < 10 * 2**20


def test_config_is_a_llama_config(config):
    c = config
    assert c["architectures"] == ["LlamaForCausalLM"] and c["model_type"] == "llama"
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "vocab_size", "bos_token_id",
                "eos_token_id"):
        assert isinstance(c[key], int) and c[key] >= 0, key
    assert c["hidden_size"] % c["num_attention_heads"] == 0
    assert c["head_dim"] == c["hidden_size"] // c["num_attention_heads"]
    # grouped-query attention: fewer K/V heads than query heads, dividing them
    assert c["num_key_value_heads"] < c["num_attention_heads"]
    assert c["num_attention_heads"] % c["num_key_value_heads"] == 0
    assert c["hidden_act"] == "silu" and c["tie_word_embeddings"] is True
    assert 0 < c["rms_norm_eps"] < 1e-3 and c["rope_theta"] > 0
    assert c.get("rope_scaling") is None
    assert c["torch_dtype"] in ("float16", "float32")  # readable by NumPy, hence by ilsim


def test_weights_match_config(config, tensors):
    shapes = expected_shapes(config)
    assert set(tensors) == set(shapes)  # tied embeddings: no lm_head.weight
    dtype = {"float16": np.float16, "float32": np.float32}[config["torch_dtype"]]
    for name, t in tensors.items():
        assert t.shape == shapes[name], name
        assert t.dtype == dtype, name
        assert np.isfinite(t).all(), name
        assert np.abs(t).max() > 0, name


def test_tokenizer_round_trips(config, tokenizer):
    assert tokenizer.get_vocab_size() == config["vocab_size"]
    assert tokenizer.token_to_id("<|endoftext|>") == config["bos_token_id"] == config["eos_token_id"]
    for text in (MACBETH, "  Exit, pursued by a bear.  ", "Café naïve — “quoted” 😀"):
        ids = tokenizer.encode(text).ids
        assert ids[0] == config["bos_token_id"]  # BOS in front, as LLaMA tokenizers do
        assert max(ids) < config["vocab_size"]
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
    # trained on English verse: common words are single tokens, so text compresses well
    assert len(tokenizer.encode(MACBETH).ids) < len(MACBETH) / 2.5


def test_data_files():
    for name, lo, hi in (("shakespeare_test.txt", 100_000, 160_000),
                         ("shakespeare_calib.txt", 40_000, 70_000)):
        raw = (DATA / name).read_bytes()
        assert lo <= len(raw) <= hi, name
        text = raw.decode("utf-8")
        assert ":\n" in text and "*" not in text and "_" not in text and "#" not in text
    # the held-out plays named in the split, each from its title on
    assert (DATA / "shakespeare_test.txt").read_text(encoding="utf-8").startswith("Macbeth\n")
    assert "\n\nThe Tempest\n\nACT I\n" in (DATA / "shakespeare_test.txt").read_text(encoding="utf-8")
    assert (DATA / "shakespeare_calib.txt").read_text(encoding="utf-8").startswith("Julius Caesar\n")
    assert "shakespeare_test.txt" in (DATA / "README.md").read_text()


def _forward_nll(c, w, ids):
    """Mean next-token NLL of a float32 NumPy LLaMA (the Hugging Face computation) on ids."""
    f = {k: v.astype(np.float32) for k, v in w.items()}
    d, nh, nkv = c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    t = len(ids)

    def norm(x, g):
        return g * (x / np.sqrt((x * x).mean(-1, keepdims=True) + c["rms_norm_eps"]))

    inv = 1.0 / c["rope_theta"] ** (np.arange(0, d, 2, dtype=np.float32) / d)
    ang = np.outer(np.arange(t, dtype=np.float32), inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x):  # [heads, t, d]
        return x * cos + np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1) * sin

    x = f["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), 1)
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}."
        a = norm(x, f[p + "input_layernorm.weight"])
        q = rope((a @ f[p + "self_attn.q_proj.weight"].T).reshape(t, nh, d).transpose(1, 0, 2))
        k = rope((a @ f[p + "self_attn.k_proj.weight"].T).reshape(t, nkv, d).transpose(1, 0, 2))
        v = (a @ f[p + "self_attn.v_proj.weight"].T).reshape(t, nkv, d).transpose(1, 0, 2)
        k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        y = (s / s.sum(-1, keepdims=True)) @ v
        x = x + y.transpose(1, 0, 2).reshape(t, nh * d) @ f[p + "self_attn.o_proj.weight"].T
        m = norm(x, f[p + "post_attention_layernorm.weight"])
        g = m @ f[p + "mlp.gate_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (m @ f[p + "mlp.up_proj.weight"].T)) @ f[p + "mlp.down_proj.weight"].T
    logits = norm(x, f["model.norm.weight"]) @ f["model.embed_tokens.weight"].T
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-logp[np.arange(t - 1), ids[1:]].mean())


def test_trained_weights_predict_held_out_text(config, tensors, tokenizer):
    text = (DATA / "shakespeare_test.txt").read_text(encoding="utf-8")
    ids = np.array(tokenizer.encode(text).ids[: config["max_position_embeddings"]])
    ppl = math.exp(_forward_nll(config, tensors, ids))
    # chance is vocab_size (4096); the shipped weights give about 59 on these first 256 tokens
    # (the model card reports the whole file)
    assert ppl < 120, ppl
