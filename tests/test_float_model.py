"""The NumPy float LLaMA: parity with transformers' LlamaForCausalLM, KV-cache consistency, GQA head
mapping, capture hooks, generation and perplexity.

Tolerance against transformers (float32 both sides, same weights, eager attention): the two
compute the same expressions but BLAS sums in different orders and RoPE angles are formed in
float64 here, float32 there, so each matmul differs by a few ulps of its output and the
differences compound over the layers. The bound is 1e-5 * max(1, max |logit|), about 40 float32
ulps of the largest logit; the variants below measure 2-7 ulps (at most 5e-7 * max |logit|).
A real bug is far outside it: test_parity_tolerance_rejects_a_wrong_rope_theta shows that a small
change of one constant (rope_theta 500 -> 510) exceeds it a hundredfold.
"""

from __future__ import annotations

import numpy as np
import pytest

from ilsim.errors import InputError
from ilsim.float_model import (FloatLlama, KVCache, Recorder, apply_rope, attend, attention_scores,
                               capture_point_names, generate, perplexity, softmax)
from ilsim.hf import LlamaConfig, load_checkpoint, random_llama_weights, save_checkpoint

RELATIVE_LOGIT_TOLERANCE = 1e-5
PROMPT = np.array([3, 17, 42, 8, 8, 91, 0, 64, 5, 77, 30, 12, 2, 59, 44, 1, 95, 23, 6, 70])

CONFIG = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=8, rope_theta=300.0,
                     max_position_embeddings=256)


def logit_bound(reference: np.ndarray) -> float:
    return RELATIVE_LOGIT_TOLERANCE * max(1.0, float(np.abs(reference).max()))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    weights = random_llama_weights(CONFIG, seed=7)
    directory = save_checkpoint(tmp_path_factory.mktemp("float") / "c", CONFIG, weights)
    return load_checkpoint(directory)


@pytest.fixture(scope="module")
def model(checkpoint):
    return FloatLlama(checkpoint)


# ------------------------------------------------------------------ parity with transformers

# name -> (LlamaConfig keyword changes, saved torch dtype, max_shard_size or None)
VARIANTS = {
    "gqa-untied-fp32": ({}, "float32", None),
    "gqa-untied-bf16": ({}, "bfloat16", None),
    "gqa-tied-fp16": ({"tie_word_embeddings": True}, "float16", None),
    "gqa-tied-fp32-sharded": ({"tie_word_embeddings": True}, "float32", "20KB"),
    "mha-bf16-sharded": ({"num_key_value_heads": 4}, "bfloat16", "20KB"),
    "head_dim-not-hidden-over-heads": ({"head_dim": 12, "num_key_value_heads": 1}, "float32", None),
}
HF_BASE = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, rope_theta=500.0, rms_norm_eps=1e-5,
               max_position_embeddings=128, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def transformers(torch):
    return pytest.importorskip("transformers")


def randomize_like_synthetic(torch, model, seed: int) -> None:
    """Re-draw HF's parameters at the scale of random_llama_weights: attention far from uniform."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim == 1:
                param.copy_(1 + 0.1 * noise)
            elif "embed_tokens" in name:
                param.copy_(noise)
            else:
                param.copy_(noise / param.shape[1] ** 0.5)


@pytest.fixture(scope="module", params=list(VARIANTS))
def hf_pair(request, tmp_path_factory, torch, transformers):
    """(variant name, HF model in float32 loaded from the saved files, our checkpoint of them)."""
    changes, saved_dtype, shard_size = VARIANTS[request.param]
    config = transformers.LlamaConfig(**(HF_BASE | changes))
    torch.manual_seed(0)
    source = transformers.LlamaForCausalLM(config).eval()
    randomize_like_synthetic(torch, source, seed=len(request.param))
    directory = tmp_path_factory.mktemp(request.param)
    source.to(getattr(torch, saved_dtype)).save_pretrained(
        directory, safe_serialization=True, **({"max_shard_size": shard_size} if shard_size else {}))
    hf = transformers.LlamaForCausalLM.from_pretrained(directory, attn_implementation="eager")
    hf = hf.float().eval()  # bf16/fp16 values widen exactly; both sides then compute in float32
    return request.param, hf, load_checkpoint(directory)


def hf_logits(torch, hf, ids) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.tensor(np.asarray(ids))[None]).logits[0].numpy()


def test_checkpoint_variant_is_what_was_asked_for(hf_pair):
    name, _, ckpt = hf_pair
    changes, saved_dtype, shard_size = VARIANTS[name]
    stored = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}[saved_dtype]
    assert set(ckpt.source_dtypes.values()) == {stored}
    assert (ckpt.directory / "model.safetensors.index.json").exists() == (shard_size is not None)
    assert ckpt.config.tie_word_embeddings == changes.get("tie_word_embeddings", False)
    assert ckpt.config.rope_theta == 500.0


def test_logits_match_transformers(hf_pair, torch):
    name, hf, ckpt = hf_pair
    expected = hf_logits(torch, hf, PROMPT)
    ours = FloatLlama(ckpt).forward(PROMPT)
    diff = float(np.abs(ours - expected).max())
    print(f"{name}: max |logit diff| = {diff:.3g} (max |logit| {np.abs(expected).max():.3g})")
    assert ours.dtype == np.float32 and ours.shape == (len(PROMPT), 96)
    assert diff <= logit_bound(expected)


def test_float64_model_matches_transformers_within_the_float32_bound(hf_pair, torch):
    _, hf, ckpt = hf_pair
    expected = hf_logits(torch, hf, PROMPT)
    ours = FloatLlama(ckpt, dtype=np.float64).forward(PROMPT)
    assert ours.dtype == np.float64
    assert np.abs(ours - expected).max() <= logit_bound(expected)


def test_prefill_then_decode_with_cache_matches_transformers_full_forward(hf_pair, torch):
    _, hf, ckpt = hf_pair
    expected = hf_logits(torch, hf, PROMPT)
    model = FloatLlama(ckpt)
    cache = model.new_cache()
    rows = [model.forward(PROMPT[:12], cache)]
    rows += [model.forward(PROMPT[t:t + 1], cache) for t in range(12, 20)]
    assert cache.length == len(PROMPT)
    assert np.abs(np.concatenate(rows) - expected).max() <= logit_bound(expected)


def test_captured_linear_and_norm_inputs_match_transformers_module_inputs(hf_pair, torch):
    _, hf, ckpt = hf_pair
    seen = {}

    def keep_input(name):
        def pre_hook(_module, args):  # must return None, or torch replaces the module's input
            seen[f"{name}.input"] = args[0][0].detach().numpy().copy()
        return pre_hook

    handles = [module.register_forward_pre_hook(keep_input(name)) for name, module in hf.named_modules()
               if isinstance(module, torch.nn.Linear) or name.endswith("norm")]
    try:
        hf_logits(torch, hf, PROMPT)
    finally:
        for handle in handles:
            handle.remove()
    recorder = Recorder("*.input")
    FloatLlama(ckpt).forward(PROMPT, hook=recorder)
    assert seen.keys() == recorder.records.keys()
    for name, (ours,) in recorder.records.items():
        scale = max(1.0, float(np.abs(seen[name]).max()))
        assert np.abs(ours - seen[name]).max() <= RELATIVE_LOGIT_TOLERANCE * scale, name


def test_greedy_generation_matches_transformers(hf_pair, torch):
    _, hf, ckpt = hf_pair
    with torch.no_grad():
        out = hf.generate(torch.tensor(PROMPT[:6])[None], max_new_tokens=10, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    expected = out[0, 6:].numpy()
    assert np.array_equal(FloatLlama(ckpt).generate(PROMPT[:6], 10, stop_at_eos=False), expected)


def test_checkpoint_written_by_ilsim_gives_the_same_logits_in_transformers(checkpoint, transformers, torch):
    """save_checkpoint's config.json (top-level rope_theta, no rope_parameters) reads back in HF."""
    hf = transformers.LlamaForCausalLM.from_pretrained(checkpoint.directory, attn_implementation="eager")
    hf.eval()
    expected = hf_logits(torch, hf, PROMPT)
    assert np.abs(FloatLlama(checkpoint).forward(PROMPT) - expected).max() <= logit_bound(expected)


def test_parity_tolerance_rejects_a_wrong_rope_theta(hf_pair, torch):
    _, hf, ckpt = hf_pair
    expected = hf_logits(torch, hf, PROMPT)
    model = FloatLlama(ckpt)
    head_dim = ckpt.config.head_dim
    model.inv_freq = 1.0 / 510.0 ** (np.arange(0, head_dim, 2) / head_dim)  # theta 500 -> 510
    assert np.abs(model.forward(PROMPT) - expected).max() > 100 * logit_bound(expected)


# ------------------------------------------------------------------ the KV cache

def test_prefill_plus_decode_equals_full_forward(model):
    ids = np.arange(30) * 7 % 96
    full = model.forward(ids)
    cache = model.new_cache()
    rows = [model.forward(ids[:9], cache)] + [model.forward(ids[t:t + 1], cache) for t in range(9, 30)]
    assert np.abs(np.concatenate(rows) - full).max() <= logit_bound(full)


def test_last_token_logits_are_the_last_row_of_all_logits(model):
    ids = np.random.default_rng(5).integers(0, model.config.vocab_size, size=9)
    every, last = model.forward(ids), model.forward(ids, logits="last")
    assert last.shape == (1, every.shape[1])
    # float: BLAS may sum a one-row product in another order, hence the bound, not equality
    assert np.abs(last - every[-1:]).max() <= logit_bound(every)
    with pytest.raises(InputError, match="logits must be 'all' or 'last'"):
        model.forward(ids, logits="middle")


def test_chunked_prefill_across_cache_growth_equals_full_forward(model):
    ids = np.arange(150) * 11 % 96  # the cache starts with room for 64 positions and must grow twice
    full = model.forward(ids)
    cache = model.new_cache()
    rows = [model.forward(ids[a:b], cache) for a, b in [(0, 50), (50, 51), (51, 120), (120, 150)]]
    assert cache.length == 150 and cache.keys[0].shape[1] >= 150
    assert np.abs(np.concatenate(rows) - full).max() <= logit_bound(full)


def test_cache_holds_keys_after_rope_at_their_positions(model):
    recorder = Recorder("*.k_rope.output", "*.v_proj.output")
    cache = model.new_cache()
    model.forward(np.array([5, 6, 7]), cache, hook=recorder)
    model.forward(np.array([8]), cache, hook=recorder)
    for layer in range(CONFIG.num_hidden_layers):
        keys = recorder.records[f"model.layers.{layer}.self_attn.k_rope.output"]
        values = recorder.records[f"model.layers.{layer}.self_attn.v_proj.output"]
        assert np.array_equal(cache.keys[layer][:, :4], np.concatenate(keys, axis=1))
        assert np.array_equal(cache.values[layer][:, :4], np.concatenate(values, axis=1))


def test_float64_and_float32_models_agree(model, checkpoint):
    ids = np.arange(40) % 96
    full64 = FloatLlama(checkpoint, dtype=np.float64).forward(ids)
    assert np.abs(full64 - model.forward(ids)).max() <= logit_bound(full64)


# ------------------------------------------------------------------ attention pieces

def test_grouped_query_attention_maps_query_head_h_to_kv_head_h_over_group(model):
    rng = np.random.default_rng(0)
    heads, kv_heads, tokens, start, head_dim = 6, 2, 3, 4, 8
    q = rng.standard_normal((heads, tokens, head_dim))
    keys = rng.standard_normal((kv_heads, start + tokens, head_dim))
    values = rng.standard_normal((kv_heads, start + tokens, head_dim))
    out = attend(softmax(attention_scores(q, keys, start)), values)
    for h in range(heads):
        kv = h // (heads // kv_heads)
        for t in range(tokens):
            visible = start + t + 1
            weights = softmax(q[h, t] @ keys[kv, :visible].T / np.sqrt(head_dim))
            assert np.allclose(out[h, t], weights @ values[kv, :visible], rtol=1e-12, atol=1e-12)


def test_rope_rotates_channel_pairs_i_and_i_plus_half(model):
    positions = np.array([0, 1, 17])
    cos, sin = model.rope_tables(positions)
    x = np.random.default_rng(1).standard_normal((2, 3, CONFIG.head_dim)).astype(np.float32)
    rotated = apply_rope(x, cos, sin)
    assert np.array_equal(rotated[:, 0], x[:, 0])  # position 0 is the identity
    half = CONFIG.head_dim // 2
    for j in range(half):
        angle = positions[2] * CONFIG.rope_theta ** (-2 * j / CONFIG.head_dim)
        a, b = x[:, 2, j], x[:, 2, j + half]
        assert np.allclose(rotated[:, 2, j], a * np.cos(angle) - b * np.sin(angle), atol=1e-5)
        assert np.allclose(rotated[:, 2, j + half], b * np.cos(angle) + a * np.sin(angle), atol=1e-5)


# ------------------------------------------------------------------ hooks

def test_hook_sees_every_capture_point_once_in_order_with_documented_shapes(model):
    calls = []
    model.forward(np.array([1, 2, 3, 4, 5]), hook=lambda name, value: calls.append((name, value.shape)))
    assert [name for name, _ in calls] == capture_point_names(CONFIG.num_hidden_layers)
    shapes = dict(calls)
    c = CONFIG
    assert shapes["model.layers.1.self_attn.q_rope.output"] == (c.num_attention_heads, 5, c.head_dim)
    assert shapes["model.layers.1.self_attn.k_rope.output"] == (c.num_key_value_heads, 5, c.head_dim)
    assert shapes["model.layers.0.self_attn.probs.output"] == (c.num_attention_heads, 5, 5)
    assert shapes["model.layers.0.mlp.down_proj.input"] == (5, c.intermediate_size)
    assert shapes["lm_head.input"] == (5, c.hidden_size)


def test_hook_scores_are_masked_and_probs_are_their_softmax_with_a_cache(model):
    recorder = Recorder("model.layers.0.self_attn.scores.output", "model.layers.0.self_attn.probs.output")
    cache = model.new_cache()
    model.forward(np.array([9, 8, 7]), cache)
    model.forward(np.array([6, 5]), cache, hook=recorder)
    (scores,) = recorder.records["model.layers.0.self_attn.scores.output"]
    (probs,) = recorder.records["model.layers.0.self_attn.probs.output"]
    assert scores.shape == (CONFIG.num_attention_heads, 2, 5)
    assert np.isneginf(scores[:, 0, 4]).all() and np.isfinite(scores[:, 1]).all()
    assert np.allclose(probs.sum(axis=-1), 1, atol=1e-6) and (probs[:, 0, 4] == 0).all()
    assert list(recorder.records) == ["model.layers.0.self_attn.scores.output",
                                      "model.layers.0.self_attn.probs.output"]


def test_recorder_keeps_copies_not_views(model):
    recorder = Recorder("model.norm.input")
    model.forward(np.array([1, 2]), hook=recorder)
    model.forward(np.array([3, 4]), hook=recorder)
    first, second = recorder.records["model.norm.input"]
    assert not np.shares_memory(first, second) and not np.array_equal(first, second)


# ------------------------------------------------------------------ generation

def test_greedy_generation_is_the_argmax_of_repeated_full_forwards(model):
    ids = [4, 40, 14]
    expected = list(ids)
    for _ in range(8):
        expected.append(int(np.argmax(model.forward(np.array(expected))[-1])))
    assert model.generate(ids, 8, stop_at_eos=False).tolist() == expected[3:]


def test_sampling_repeats_with_a_seed_and_top_k_1_is_greedy(model):
    ids = [10, 20, 30]
    first = model.generate(ids, 12, temperature=1.5, top_k=20, rng=123, stop_at_eos=False)
    again = model.generate(ids, 12, temperature=1.5, top_k=20, rng=np.random.default_rng(123),
                           stop_at_eos=False)
    other = model.generate(ids, 12, temperature=1.5, top_k=20, rng=124, stop_at_eos=False)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.array_equal(model.generate(ids, 6, temperature=0.7, top_k=1, stop_at_eos=False),
                          model.generate(ids, 6, stop_at_eos=False))


def test_top_k_samples_only_among_the_k_largest_logits(model):
    ids = [11, 12]
    logits = model.forward(np.array(ids))[-1]
    allowed = set(np.argsort(logits)[-3:].tolist())
    for seed in range(30):
        (token,) = generate(model, ids, 1, temperature=5.0, top_k=3, rng=seed)
        assert token in allowed


def test_generation_stops_after_a_stop_token_and_honours_zero_tokens(model):
    ids = [1, 2, 3]
    greedy = model.generate(ids, 5, stop_at_eos=False)
    assert generate(model, ids, 5, stop_tokens=(int(greedy[1]),)).tolist() == greedy[:2].tolist()
    assert generate(model, ids, 0).tolist() == []


# ------------------------------------------------------------------ perplexity

class UniformModel:
    """Zero logits: perplexity exactly vocab, argmax always token 0."""

    def __init__(self, vocab):
        self.vocab = vocab

    def forward(self, ids, cache=None):
        return np.zeros((len(ids), self.vocab), np.float32)


def test_perplexity_of_uniform_logits_is_the_vocabulary_size():
    ids = np.array([0, 5, 0, 0, 7, 1, 0, 0, 3, 9, 4])  # context 4: windows [0,5,0,0] [7,1,0,0]; 3 dropped
    result = perplexity(UniformModel(10), ids, context=4)
    assert result.windows == 2 and result.predicted_tokens == 6
    assert result.perplexity == pytest.approx(10.0, rel=1e-12)
    assert result.top1_accuracy == pytest.approx(4 / 6)  # targets 5,0,0 | 1,0,0: four zeros


def test_perplexity_equals_the_direct_token_by_token_computation(model):
    ids = np.arange(37) * 5 % 96
    result = perplexity(model, ids, context=12)
    nll, correct = [], 0
    for w in range(3):
        window = ids[12 * w:12 * (w + 1)]
        logits = model.forward(window).astype(np.float64)
        for t in range(11):
            log_probs = logits[t] - np.log(np.exp(logits[t] - logits[t].max()).sum()) - logits[t].max()
            nll.append(-log_probs[window[t + 1]])
            correct += int(np.argmax(logits[t]) == window[t + 1])
    assert result.windows == 3 and result.predicted_tokens == 33
    assert result.mean_nll == pytest.approx(np.mean(nll), rel=1e-12)
    assert result.perplexity == pytest.approx(np.exp(np.mean(nll)), rel=1e-12)
    assert result.top1_accuracy == correct / 33


def test_perplexity_reports_progress_per_window(model):
    seen = []
    perplexity(model, np.arange(20) % 96, context=6, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


# ------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("ids, message", [
    (np.array([1, 96]), r"ids\[1\] = 96 is outside the vocabulary \[0, 96\)"),
    (np.array([-1]), r"ids\[0\] = -1 is outside the vocabulary"),
    (np.array([], dtype=np.int64), r"ids must be a non-empty 1-D integer array, got dtype int64 shape \[0\]"),
    (np.array([1.0, 2.0]), r"ids must be .*, got dtype float64 shape \[2\]"),
    (np.array([[1, 2]]), r"ids must be .*, got dtype int64 shape \[1, 2\]"),
])
def test_bad_ids_are_rejected(model, ids, message):
    with pytest.raises(InputError, match=r"FloatLlama\.forward: " + message):
        model.forward(ids)


def test_cache_from_another_model_is_rejected(model):
    foreign = KVCache(num_layers=2, kv_heads=3, head_dim=8, dtype=np.float32)
    with pytest.raises(InputError, match=r"cache was not made by this model's new_cache\(\)"):
        model.forward(np.array([1]), foreign)


def test_unsupported_dtype_is_rejected(checkpoint):
    with pytest.raises(InputError, match=r"FloatLlama: dtype float16 is not supported"):
        FloatLlama(checkpoint, dtype=np.float16)


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -0.5}, r"temperature=-0\.5 must be finite and >= 0"),
    ({"temperature": float("nan")}, r"temperature=nan must be finite"),
    ({"top_k": 0}, r"top_k=0 must be a positive integer or None"),
    ({"max_new_tokens": -1}, r"max_new_tokens=-1 must be a non-negative integer"),
])
def test_bad_sampling_settings_are_rejected(model, kwargs, message):
    with pytest.raises(InputError, match=r"generate: " + message):
        generate(model, [1, 2], **({"max_new_tokens": 3} | kwargs))


@pytest.mark.parametrize("ids, context, message", [
    (np.arange(5), 8, r"token_ids must be a 1-D integer array of at least context=8 tokens, "
                      r"got dtype int64 shape \[5\]"),
    (np.arange(10), 1, r"context=1 must be an integer >= 2"),
    (np.arange(10.0), 4, r"token_ids must be .*, got dtype float64 shape \[10\]"),
])
def test_bad_perplexity_inputs_are_rejected(model, ids, context, message):
    with pytest.raises(InputError, match=r"perplexity: " + message):
        perplexity(model, ids, context)
