"""Loading HF LLaMA checkpoints: exact dtype widening, sharding, the layer accessor, Hub resolution
from the offline cache, and a clear CheckpointError (naming file and tensor) for every defect."""

from __future__ import annotations

import json
import shutil
import struct

import numpy as np
import pytest

from ilsim.errors import InputError
from ilsim.hf import (CheckpointError, LlamaConfig, expected_shapes, load_checkpoint,
                      random_llama_weights, save_checkpoint)
from ilsim.hf.safetensors_file import narrow_float32_to_bf16_bits, read_header, widen_to_float32

CONFIG = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=4, rope_theta=500.0,
                     max_position_embeddings=64)


def hf_config(**changes) -> dict:
    """A config.json dictionary of CONFIG with ``changes`` applied (a None value deletes the key)."""
    raw = CONFIG.to_hf_dict() | changes
    return {k: v for k, v in raw.items() if v is not None or k not in changes}


@pytest.fixture
def weights():
    return random_llama_weights(CONFIG, seed=3)


@pytest.fixture
def ckpt_dir(tmp_path, weights):
    return save_checkpoint(tmp_path / "ckpt", CONFIG, weights)


def write_raw_safetensors(path, header: dict, data: bytes, header_length: int | None = None) -> None:
    encoded = json.dumps(header).encode()
    declared = len(encoded) if header_length is None else header_length
    path.write_bytes(struct.pack("<Q", declared) + encoded + data)


def rewrite_config(directory, **changes) -> None:
    (directory / "config.json").write_text(json.dumps(hf_config(**changes)))


# ------------------------------------------------------------------ round trips and dtypes

def test_f32_checkpoint_round_trips_bit_exactly(ckpt_dir, weights):
    ckpt = load_checkpoint(ckpt_dir)
    assert ckpt.config == CONFIG
    assert ckpt.weights.keys() == weights.keys()
    for name, value in weights.items():
        assert ckpt.weights[name].dtype == np.float32
        assert np.array_equal(ckpt.weights[name], value), name
    assert set(ckpt.source_dtypes.values()) == {"F32"}
    assert ckpt.directory == ckpt_dir and ckpt.tokenizer_path is None


def test_bf16_widening_is_the_high_half_of_a_float32():
    bits = np.array([0x3F80, 0xC000, 0x0001, 0x8000, 0x7F7F, 0x3F81], dtype="<u2")
    widened = widen_to_float32(bits.view(np.uint8), "BF16", (6,))
    expected = np.array([1.0, -2.0, 2.0 ** -133, -0.0, 3.3895313892515355e38, 1.0 + 2 ** -7])
    assert np.array_equal(widened, expected.astype(np.float32))
    assert np.signbit(widened[3])


def test_bf16_narrowing_rounds_to_nearest_ties_to_even():
    values = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -(1 + 2 ** -8), 1 + 2 ** -9],
                      dtype=np.float32)
    # bf16 keeps 7 fraction bits: 1 + 2^-8 is the tie between 1 and 1 + 2^-7 (even: 1);
    # 1 + 3*2^-8 ties between 1 + 2^-7 and 1 + 2^-6 (even: 1 + 2^-6); a hair above a tie rounds up.
    expected = np.array([1.0, 1 + 2 ** -6, 1 + 2 ** -7, -1.0, 1.0], dtype=np.float32)
    narrowed = narrow_float32_to_bf16_bits(values)
    assert np.array_equal(widen_to_float32(narrowed.view(np.uint8), "BF16", (5,)), expected)


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_half_precision_checkpoints_load_as_their_exact_stored_values(tmp_path, weights, dtype):
    ckpt = load_checkpoint(save_checkpoint(tmp_path / dtype, CONFIG, weights, dtype=dtype))
    assert set(ckpt.source_dtypes.values()) == {dtype}
    for name, value in weights.items():
        if dtype == "F16":
            stored = value.astype(np.float16).astype(np.float32)
        else:
            stored = widen_to_float32(narrow_float32_to_bf16_bits(value).view(np.uint8), "BF16", value.shape)
        assert ckpt.weights[name].dtype == np.float32
        assert np.array_equal(ckpt.weights[name], stored), name
        assert np.allclose(ckpt.weights[name], value, rtol=2 ** -8, atol=0)  # bf16 relative step 2^-8


def test_sharded_checkpoint_loads_the_same_weights(tmp_path, weights, ckpt_dir):
    sharded = save_checkpoint(tmp_path / "sharded", CONFIG, weights, max_shard_tensors=4)
    assert not (sharded / "model.safetensors").exists()
    assert len(list(sharded.glob("model-*-of-*.safetensors"))) == -(-len(weights) // 4)
    single, split = load_checkpoint(ckpt_dir), load_checkpoint(sharded)
    assert single.weights.keys() == split.weights.keys()
    assert all(np.array_equal(single.weights[n], split.weights[n]) for n in single.weights)


def test_layer_accessor_returns_each_named_tensor_of_the_layer(ckpt_dir, weights):
    ckpt = load_checkpoint(ckpt_dir)
    layer = ckpt.layer(1)
    assert layer.index == 1
    for field in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert layer.__dict__[field] is ckpt.weights[f"model.layers.1.self_attn.{field}.weight"]
    for field in ("gate_proj", "up_proj", "down_proj"):
        assert layer.__dict__[field] is ckpt.weights[f"model.layers.1.mlp.{field}.weight"]
    assert layer.input_layernorm is ckpt.weights["model.layers.1.input_layernorm.weight"]
    assert layer.post_attention_layernorm is ckpt.weights["model.layers.1.post_attention_layernorm.weight"]
    assert layer.q_proj.shape == (16, 16) and layer.k_proj.shape == (8, 16)
    assert layer.down_proj.shape == (16, 24)
    assert ckpt.lm_head is ckpt.weights["lm_head.weight"] and ckpt.final_norm.shape == (16,)
    with pytest.raises(IndexError, match="layer 2 out of range"):
        ckpt.layer(2)


def test_tokenizer_path_is_found_when_present(ckpt_dir):
    (ckpt_dir / "tokenizer.json").write_text("{}")
    assert load_checkpoint(ckpt_dir).tokenizer_path == ckpt_dir / "tokenizer.json"


def test_stale_rotary_inv_freq_buffers_are_ignored(tmp_path, weights):
    extra = weights | {"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(2, np.float32)}
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c", CONFIG, extra))
    assert ckpt.weights.keys() == weights.keys()


# ------------------------------------------------------------------ tied and untied embeddings

def test_tied_checkpoint_has_no_lm_head_and_uses_the_embedding(tmp_path, weights):
    tied = LlamaConfig(**{**CONFIG.__dict__, "tie_word_embeddings": True})
    tied_weights = {n: w for n, w in weights.items() if n != "lm_head.weight"}
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "tied", tied, tied_weights))
    assert "lm_head.weight" not in ckpt.weights
    assert ckpt.lm_head is ckpt.embed_tokens


def test_tied_checkpoint_storing_an_identical_lm_head_is_accepted(tmp_path, weights):
    tied = LlamaConfig(**{**CONFIG.__dict__, "tie_word_embeddings": True})
    copy = weights | {"lm_head.weight": weights["model.embed_tokens.weight"].copy()}
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "tied", tied, copy))
    assert "lm_head.weight" not in ckpt.weights and ckpt.lm_head is ckpt.embed_tokens


def test_tied_checkpoint_with_a_different_lm_head_is_rejected(ckpt_dir):
    rewrite_config(ckpt_dir, tie_word_embeddings=True)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'lm_head\.weight' is present and "
                                              r"differs .*tie_word_embeddings=true"):
        load_checkpoint(ckpt_dir)


def test_untied_checkpoint_without_lm_head_is_rejected(tmp_path, weights):
    no_head = {n: w for n, w in weights.items() if n != "lm_head.weight"}
    directory = save_checkpoint(tmp_path / "c", CONFIG, no_head)
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\) 'lm_head\.weight' \(config\.json says "
                                              r"tie_word_embeddings=false"):
        load_checkpoint(directory)


# ------------------------------------------------------------------ config.json

def test_config_derives_head_dim_and_defaults_kv_heads():
    config = LlamaConfig.from_dict(hf_config(head_dim=None, num_key_value_heads=None))
    assert config.head_dim == 4 and config.num_key_value_heads == 4 and config.kv_group_size == 1


def test_config_reads_transformers5_rope_parameters_and_eos_lists():
    raw = hf_config(rope_theta=None, rope_scaling=None, eos_token_id=[5, 7], bos_token_id=None,
                    rope_parameters={"rope_theta": 1234.5, "rope_type": "default"})
    config = LlamaConfig.from_dict(raw)
    assert config.rope_theta == 1234.5 and config.eos_token_ids == (5, 7) and config.bos_token_id == 1
    assert LlamaConfig.from_dict(hf_config(eos_token_id=None) | {"eos_token_id": None}).eos_token_ids == ()


def test_config_round_trips_through_to_hf_dict():
    assert LlamaConfig.from_dict(CONFIG.to_hf_dict()) == CONFIG


@pytest.mark.parametrize("changes, message", [
    ({"model_type": "mistral"}, r"model_type 'mistral' is not supported"),
    ({"architectures": ["MistralForCausalLM"]}, r"architectures \['MistralForCausalLM'\] is not supported"),
    ({"hidden_act": "gelu"}, r"hidden_act 'gelu' is not supported"),
    ({"rope_scaling": {"type": "linear", "factor": 2.0}},
     r"rope_scaling \{'type': 'linear', 'factor': 2\.0\} is not supported"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}},
     r"rope_parameters\.rope_type 'llama3' is not supported"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 7.0}}, r"rope_theta=500\.0 disagrees"),
    ({"attention_bias": True}, r"attention_bias=True is not supported"),
    ({"hidden_size": None}, r"required key 'hidden_size' is missing"),
    ({"num_hidden_layers": 0}, r"num_hidden_layers=0 must be a positive integer"),
    ({"num_key_value_heads": 3}, r"num_attention_heads=4 is not a multiple of num_key_value_heads=3"),
    ({"hidden_size": 18, "head_dim": None}, r"hidden_size=18 is not divisible by num_attention_heads=4"),
    ({"head_dim": 5}, r"head_dim=5 is odd"),
    ({"rms_norm_eps": -1.0}, r"rms_norm_eps=-1\.0 must be a positive finite number"),
    ({"tie_word_embeddings": "yes"}, r"tie_word_embeddings='yes' must be true or false"),
    ({"eos_token_id": "2"}, r"eos_token_id='2' must be a token id"),
])
def test_bad_config_is_rejected_naming_the_file_key_and_value(ckpt_dir, changes, message):
    rewrite_config(ckpt_dir, **changes)
    with pytest.raises(CheckpointError, match=r"config\.json: " + message):
        load_checkpoint(ckpt_dir)


def test_config_that_is_not_json_is_rejected(ckpt_dir):
    (ckpt_dir / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        load_checkpoint(ckpt_dir)


def test_directory_without_config_is_rejected(ckpt_dir):
    (ckpt_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"ckpt: no config\.json"):
        load_checkpoint(ckpt_dir)


def test_checkpoint_error_is_an_input_error():
    assert issubclass(CheckpointError, InputError)


# ------------------------------------------------------------------ tensors

def test_missing_tensor_is_named(tmp_path, weights):
    del weights["model.layers.1.mlp.up_proj.weight"]
    directory = save_checkpoint(tmp_path / "c", CONFIG, weights)
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\) 'model\.layers\.1\.mlp\.up_proj\."
                                              r"weight'"):
        load_checkpoint(directory)


def test_unexpected_tensor_is_named(tmp_path, weights):
    weights["model.layers.0.self_attn.q_proj.bias"] = np.zeros(16, np.float32)
    weights["model.layers.2.input_layernorm.weight"] = np.ones(16, np.float32)
    directory = save_checkpoint(tmp_path / "c", CONFIG, weights)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unexpected tensor\(s\) "
                                              r"'model\.layers\.0\.self_attn\.q_proj\.bias', "
                                              r"'model\.layers\.2\.input_layernorm\.weight' .*2 layers"):
        load_checkpoint(directory)


def test_shape_that_disagrees_with_config_is_named(tmp_path, weights):
    weights["model.layers.0.self_attn.k_proj.weight"] = np.zeros((16, 16), np.float32)
    directory = save_checkpoint(tmp_path / "c", CONFIG, weights)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor 'model\.layers\.0\.self_attn\."
                                              r"k_proj\.weight' has shape \[16, 16\], but config\.json "
                                              r"implies \[8, 16\]"):
        load_checkpoint(directory)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_value_is_named_with_its_index(tmp_path, weights, bad):
    weights["model.norm.weight"][5] = bad
    directory = save_checkpoint(tmp_path / "c", CONFIG, weights)
    with pytest.raises(CheckpointError, match=r"tensor 'model\.norm\.weight' has 1 non-finite value\(s\) "
                                              r"\(NaN/Inf\), first at \[5\]"):
        load_checkpoint(directory)


def test_a_huge_finite_weight_is_named_before_the_exporter_squares_it(tmp_path, weights):
    weights["model.layers.0.mlp.up_proj.weight"][2, 3] = np.float32(3e38)
    directory = save_checkpoint(tmp_path / "c", CONFIG, weights)
    with pytest.raises(CheckpointError, match=r"tensor 'model\.layers\.0\.mlp\.up_proj\.weight' has 1 value\(s\) "
                                              r"above 2\^60 in magnitude, first at \[2, 3\]"):
        load_checkpoint(directory)


def test_bf16_overflow_to_inf_is_caught(tmp_path, weights):
    weights["model.norm.weight"][0] = np.float32(3.4e38)  # rounds up past the largest bf16 to inf
    directory = save_checkpoint(tmp_path / "c", CONFIG, weights, dtype="BF16")
    with pytest.raises(CheckpointError, match=r"'model\.norm\.weight' has 1 non-finite"):
        load_checkpoint(directory)


def test_truncated_file_is_reported_with_the_tensor(ckpt_dir):
    path = ckpt_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: tensor '.*': truncated file: data ends "
                                              r"at byte \d+ .*declared up to byte \d+"):
        load_checkpoint(ckpt_dir)


def test_file_shorter_than_its_header_length_field(ckpt_dir):
    (ckpt_dir / "model.safetensors").write_bytes(b"\x01\x02\x03")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated safetensors file \(3 bytes"):
        load_checkpoint(ckpt_dir)


def test_header_length_past_the_end_of_file(ckpt_dir):
    write_raw_safetensors(ckpt_dir / "model.safetensors", {}, b"", header_length=10_000)
    with pytest.raises(CheckpointError, match=r"corrupt safetensors header: declares 10000 header bytes"):
        load_checkpoint(ckpt_dir)


def test_header_that_is_not_json(ckpt_dir):
    path = ckpt_dir / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 4) + b"{{{{")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: corrupt safetensors header: "
                                              r"not valid JSON"):
        load_checkpoint(ckpt_dir)


@pytest.mark.parametrize("entry, message", [
    ({"dtype": "I8", "shape": [2], "data_offsets": [0, 2]},
     r"dtype 'I8' is not supported \(supported: F32, F16, BF16\)"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 4]},
     r"data_offsets \[0, 4\] hold 4 bytes but shape \[2\] of F32 needs 8"),
    ({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}, r"corrupt shape \[-2\]"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}, r"corrupt data_offsets \[8, 0\]"),
    ({"shape": [2]}, r"corrupt header entry"),
])
def test_bad_header_entry_is_named(tmp_path, entry, message):
    path = tmp_path / "x.safetensors"
    write_raw_safetensors(path, {"w": entry}, bytes(8))
    with pytest.raises(CheckpointError, match=r"x\.safetensors: tensor 'w': " + message):
        read_header(path)


def test_index_naming_a_missing_shard(tmp_path, weights):
    directory = save_checkpoint(tmp_path / "s", CONFIG, weights, max_shard_tensors=8)
    (directory / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"index\.json: shard 'model-00002-of-00003\.safetensors' "
                                              r"\(holding tensor '.*'\) does not exist"):
        load_checkpoint(directory)


def test_index_naming_a_tensor_its_shard_lacks(tmp_path, weights):
    directory = save_checkpoint(tmp_path / "s", CONFIG, weights, max_shard_tensors=8)
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00003.safetensors"
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"model-00001-of-00003\.safetensors: missing tensor\(s\) "
                                              r"'model\.norm\.weight'"):
        load_checkpoint(directory)


def test_corrupt_index(tmp_path, weights):
    directory = save_checkpoint(tmp_path / "s", CONFIG, weights, max_shard_tensors=8)
    (directory / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(CheckpointError, match=r"index\.json: corrupt shard index \(KeyError"):
        load_checkpoint(directory)


def test_pytorch_bin_only_checkpoint_is_rejected_with_advice(ckpt_dir):
    (ckpt_dir / "model.safetensors").rename(ckpt_dir / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"no model\.safetensors or model\.safetensors\.index\.json.*"
                                              r"safe_serialization=True"):
        load_checkpoint(ckpt_dir)


def test_expected_shapes_cover_every_tensor_of_the_config():
    shapes = expected_shapes(CONFIG)
    assert len(shapes) == 2 + 9 * CONFIG.num_hidden_layers + 1
    assert shapes["model.layers.1.self_attn.o_proj.weight"] == (16, 16)
    assert shapes["model.layers.0.mlp.down_proj.weight"] == (16, 24)


# ------------------------------------------------------------------ sources: paths and the Hub

def test_missing_local_path_is_rejected(tmp_path):
    with pytest.raises(CheckpointError, match=r"no such directory \(and not a Hugging Face Hub id\)"):
        load_checkpoint(tmp_path / "nowhere")


def test_file_given_as_source_is_rejected(ckpt_dir):
    with pytest.raises(CheckpointError, match=r"config\.json: is a file; expected a checkpoint directory"):
        load_checkpoint(ckpt_dir / "config.json")


def make_hub_cache(cache_dir, repo_id: str, checkpoint_dir) -> None:
    """Lay ``checkpoint_dir`` out as huggingface_hub's cache holds a downloaded snapshot."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(checkpoint_dir, repo / "snapshots" / commit)


def test_hub_id_resolves_from_the_offline_cache(tmp_path, ckpt_dir, weights, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    make_hub_cache(tmp_path / "hub", "someone/tiny-llama", ckpt_dir)
    ckpt = load_checkpoint("someone/tiny-llama", cache_dir=tmp_path / "hub")
    assert ckpt.config == CONFIG and np.array_equal(ckpt.lm_head, weights["lm_head.weight"])
    assert "snapshots" in ckpt.directory.parts


def test_hub_id_missing_from_the_offline_cache_explains_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"someone/absent: not a local directory, and resolving it as a "
                                              r"Hugging Face Hub id failed offline \(HF_HUB_OFFLINE is set"):
        load_checkpoint("someone/absent", cache_dir=tmp_path / "hub")


def test_offline_flag_is_passed_to_snapshot_download(tmp_path, ckpt_dir, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(ckpt_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    load_checkpoint("org/model", revision="v1")
    assert calls[0]["local_files_only"] is True and calls[0]["revision"] == "v1"
    assert "*.safetensors" in calls[0]["allow_patterns"] and "*.bin" not in calls[0]["allow_patterns"]


def test_a_config_implying_a_million_layers_is_refused_before_any_allocation(ckpt_dir):
    import resource

    rewrite_config(ckpt_dir, num_hidden_layers=10 ** 6)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match=r"num_hidden_layers=1000000, but the checkpoint holds tensors of 2 "):
        load_checkpoint(ckpt_dir)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000   # KiB: far below 100 MB
