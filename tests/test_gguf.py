"""GGUF import: llama.cpp files written here with gguf.GGUFWriter (Q/K rows permuted as
convert_hf_to_gguf.py does) load into the Checkpoint the HF checkpoint gives, with its tokenizer,
and every defect is one CheckpointError naming the file and the metadata key or tensor.

Tolerances. F32: weights and FloatLlama logits identical to the original checkpoint. Other types:
weights identical to gguf.quants.dequantize of the stored data, so FloatLlama's logits are
identical (tolerance zero) to those of a checkpoint holding those dequantized weights; each weight
is within its format's worst-case rounding of the original (bounds in ``FORMAT_ERROR``). Against
transformers' own GGUF loader (float32, eager attention): 1e-5 * max(1, max |logit|), the bound of
tests/test_float_model.py (BLAS summation order and RoPE angle precision only).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType, GGUFValueType  # noqa: E402

from ilsim.errors import IlsimError  # noqa: E402
from ilsim.float_model import FloatLlama  # noqa: E402
from ilsim.hf import (Checkpoint, CheckpointError, LlamaConfig, is_gguf_file, load_checkpoint,  # noqa: E402
                      load_gguf, random_llama_weights, resolve_directory, save_checkpoint)
from ilsim.hf.gguf_file import gguf_to_hf_name, unpermute_rope_rows  # noqa: E402

PACKAGE = Path(__file__).parent.parent / "ilsim"
SHIPPED_TOKENIZER = PACKAGE / "models" / "shakespeare-tiny" / "tokenizer.json"
EPS = float(np.float32(1e-5))  # GGUF stores the epsilon as float32
CONFIG = LlamaConfig(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=EPS,
                     rope_theta=10000.0, max_position_embeddings=128, tie_word_embeddings=False,
                     bos_token_id=0, eos_token_ids=(0,))
PROMPT = np.array([0, 17, 442, 8, 8, 3091, 1, 64, 5, 777, 30, 12, 2, 4095, 44, 1])
RELATIVE_LOGIT_TOLERANCE = 1e-5
TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"]
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
SAMPLES = ["To be, or not to be: that is the question.",
           "Line one\nLine two\n\n  indented\tand tabbed\r\nend",
           "Numbers: 12345, 3.14159 and 2024-06-01; x 12 and  7",
           "Unicode: naïve café, Ελληνικά, 日本語, emoji 🙂 and ½",
           "<|endoftext|>special tokens<|endoftext|> in the middle",
           "   leading and trailing spaces   ",
           "It's, they're, we'll: apostrophes' and ''quotes''"]


# ------------------------------------------------------------------ writing GGUF files

def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, transcribed."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_HF_TO_GGUF = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}
_LAYER_TO_GGUF = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                  "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                  "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                  "mlp.down_proj": "ffn_down"}


def hf_to_gguf_name(name: str) -> str:
    if name in _HF_TO_GGUF:
        return _HF_TO_GGUF[name]
    _, _, layer, rest = name.split(".", 3)
    return f"blk.{layer}.{_LAYER_TO_GGUF[rest.removesuffix('.weight')]}.weight"


def encode(values: np.ndarray, qtype: str):
    """(array to store, raw GGML type or None) for ``values`` stored as ``qtype``."""
    if qtype == "F32":
        return values.astype(np.float32), None
    if qtype == "F16":
        with np.errstate(over="ignore"):  # a value past F16's range is stored as inf, as llama.cpp does
            return values.astype(np.float16), None
    kind = GGMLQuantizationType[qtype]
    return gguf.quants.quantize(values.astype(np.float32), kind), kind


def stored_values(values: np.ndarray, qtype: str) -> np.ndarray:
    """What a ``qtype`` tensor holding ``values`` reads back as (row blocks: permuting rows commutes)."""
    data, kind = encode(values, qtype)
    return gguf.quants.dequantize(data, kind or GGMLQuantizationType[qtype]).astype(np.float32)


def tokenizer_metadata(tokenizer_json: dict, pre: str = "gpt2", add_bos: bool = True) -> dict:
    """The tokenizer.ggml.* metadata of a byte-level BPE tokenizer.json, as convert_hf_to_gguf writes it."""
    vocab = tokenizer_json["model"]["vocab"]
    tokens = [None] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    special = {t["id"] for t in tokenizer_json["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer_json["model"]["merges"]]
    return {"tokenizer.ggml.model": ("gpt2", GGUFValueType.STRING),
            "tokenizer.ggml.pre": (pre, GGUFValueType.STRING),
            "tokenizer.ggml.tokens": (tokens, GGUFValueType.ARRAY, GGUFValueType.STRING),
            "tokenizer.ggml.token_type": ([3 if i in special else 1 for i in range(len(tokens))],
                                          GGUFValueType.ARRAY, GGUFValueType.INT32),
            "tokenizer.ggml.merges": (merges, GGUFValueType.ARRAY, GGUFValueType.STRING),
            "tokenizer.ggml.bos_token_id": (0, GGUFValueType.UINT32),
            "tokenizer.ggml.eos_token_id": (0, GGUFValueType.UINT32),
            "tokenizer.ggml.add_bos_token": (add_bos, GGUFValueType.BOOL),
            "tokenizer.chat_template": (CHAT_TEMPLATE, GGUFValueType.STRING)}


def model_metadata(config: LlamaConfig) -> dict:
    u32 = GGUFValueType.UINT32
    return {"general.name": ("tiny test llama", GGUFValueType.STRING),
            "llama.block_count": (config.num_hidden_layers, u32),
            "llama.context_length": (config.max_position_embeddings, u32),
            "llama.embedding_length": (config.hidden_size, u32),
            "llama.feed_forward_length": (config.intermediate_size, u32),
            "llama.attention.head_count": (config.num_attention_heads, u32),
            "llama.attention.head_count_kv": (config.num_key_value_heads, u32),
            "llama.rope.freq_base": (config.rope_theta, GGUFValueType.FLOAT32),
            "llama.attention.layer_norm_rms_epsilon": (config.rms_norm_eps, GGUFValueType.FLOAT32),
            "llama.vocab_size": (config.vocab_size, u32),
            "llama.rope.dimension_count": (config.head_dim, u32)}


def write_gguf(path: Path, weights: dict, *, config: LlamaConfig = CONFIG, qtype: str = "F32",
               tokenizer: dict | None = None, metadata: dict | None = None, tensors: dict | None = None,
               arch: str = "llama") -> Path:
    """Write ``weights`` (HF names) as llama.cpp does: GGUF names, Q/K rows permuted, 1-D tensors
    F32, the rest ``qtype``. ``metadata`` and ``tensors`` (GGUF name -> (array, raw type) or None)
    replace or, with None, delete entries."""
    entries = model_metadata(config) | (tokenizer or {}) | (metadata or {})
    stored = {}
    for name, values in weights.items():
        if name.endswith("q_proj.weight"):
            values = llama_cpp_permute(values, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            values = llama_cpp_permute(values, config.num_key_value_heads)
        stored[hf_to_gguf_name(name)] = encode(values, "F32" if values.ndim == 1 else qtype)
    stored |= tensors or {}
    writer = gguf.GGUFWriter(path, arch=arch)
    for key, entry in entries.items():
        if entry is not None:
            writer.add_key_value(key, entry[0], entry[1], sub_type=entry[2] if len(entry) > 2 else None)
    for name, entry in stored.items():
        if entry is not None:
            writer.add_tensor(name, entry[0], raw_dtype=entry[1])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def shipped_tokenizer() -> dict:
    return json.loads(SHIPPED_TOKENIZER.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tokenizer_meta(shipped_tokenizer) -> dict:
    return tokenizer_metadata(shipped_tokenizer)


@pytest.fixture(scope="module")
def weights() -> dict:
    return random_llama_weights(CONFIG, seed=11)


@pytest.fixture(scope="module")
def gguf_files(tmp_path_factory, weights, tokenizer_meta) -> dict[str, Path]:
    """One file per type; F32 and Q4_1 carry the whole tokenizer (its tests use them), the rest only
    the bos/eos ids (writing 4096 tokens and their merges takes a while)."""
    folder = tmp_path_factory.mktemp("gguf")
    ids_only = {key: tokenizer_meta[key] for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")}
    return {qtype: write_gguf(folder / f"tiny-{qtype}.gguf", weights, qtype=qtype,
                              tokenizer=tokenizer_meta if qtype in ("F32", "Q4_1") else ids_only)
            for qtype in TYPES}


@pytest.fixture(scope="module")
def loaded(gguf_files) -> dict[str, Checkpoint]:
    return {qtype: load_gguf(path) for qtype, path in gguf_files.items()}


def checkpoint_of(weights: dict, config: LlamaConfig = CONFIG) -> Checkpoint:
    return Checkpoint(config, weights, None, Path("in-memory"), {})


def test_the_shipped_tokenizer_is_byte_level_bpe(shipped_tokenizer):
    """The tokenizer metadata below is taken from it, so it has to be what 'gpt2' GGUF files hold."""
    assert shipped_tokenizer["model"]["type"] == "BPE"
    assert shipped_tokenizer["pre_tokenizer"]["type"] == "ByteLevel"
    assert len(shipped_tokenizer["model"]["vocab"]) == CONFIG.vocab_size


# ------------------------------------------------------------------ weights, config and logits

def test_f32_gguf_gives_the_checkpoint_exactly(loaded, weights, gguf_files):
    ckpt = loaded["F32"]
    assert ckpt.config == CONFIG
    assert ckpt.weights.keys() == weights.keys()
    for name, value in weights.items():
        assert ckpt.weights[name].dtype == np.float32 and ckpt.weights[name].flags.c_contiguous
        assert np.array_equal(ckpt.weights[name], value), name
    assert np.array_equal(FloatLlama(ckpt).forward(PROMPT), FloatLlama(checkpoint_of(weights)).forward(PROMPT))
    assert ckpt.directory == gguf_files["F32"] and ckpt.source == ckpt.directory
    assert ckpt.is_gguf and ckpt.file_format == "gguf" and ckpt.tokenizer_path is None
    assert set(ckpt.source_dtypes.values()) == {"F32"} and ckpt.source_dtypes.keys() == weights.keys()
    assert ckpt.chat_template == CHAT_TEMPLATE


# Worst case |stored - original| per element, from each format's rounding (|x| the value, amax the
# largest |x| of its 32-value block, lo/hi the block's extremes): F16 and BF16 round the value to
# 11 and 8 significant bits. Q8_0: q = round(x / d), d = amax / 127 stored as F16: d/2 + 127 * the
# F16 error of d. Q4_0: d = -x_max / 8, q clipped to [-8, 7], so the far end is off by a whole d:
# d (1 + 8 * 2^-11). Q4_1: d = (hi - lo) / 15, offset lo, both F16: d/2 + 15 * d * 2^-11 + |lo| 2^-11.
def _blocks(x):
    return x.reshape(-1, 32)


def _per_block(x, bound):
    return np.repeat(bound, 32).reshape(x.shape)


FORMAT_ERROR = {
    "F16": lambda x: np.abs(x) * 2.0 ** -11 + 2.0 ** -25,
    "BF16": lambda x: np.abs(x) * 2.0 ** -8 + 2.0 ** -134,
    "Q8_0": lambda x: _per_block(x, np.abs(_blocks(x)).max(1) / 127 * (0.5 + 127 * 2.0 ** -11)),
    "Q4_0": lambda x: _per_block(x, np.abs(_blocks(x)).max(1) / 8 * (1 + 8 * 2.0 ** -11)),
    "Q4_1": lambda x: _per_block(x, np.ptp(_blocks(x), 1) / 15 * (0.5 + 15 * 2.0 ** -11)
                                 + np.abs(_blocks(x).min(1)) * 2.0 ** -11),
}


@pytest.mark.parametrize("qtype", TYPES[1:])
def test_other_types_give_the_dequantized_weights_and_their_logits(loaded, weights, qtype):
    ckpt = loaded[qtype]
    assert ckpt.config == CONFIG
    expected = {name: value if value.ndim == 1 else stored_values(value, qtype)
                for name, value in weights.items()}
    for name, value in expected.items():
        assert ckpt.weights[name].dtype == np.float32
        assert np.array_equal(ckpt.weights[name], value), name
        bound = FORMAT_ERROR[qtype](weights[name].astype(np.float64)) * (1 + 1e-6)
        assert np.all(np.abs(ckpt.weights[name] - weights[name]) <= bound), name
    assert np.array_equal(FloatLlama(ckpt).forward(PROMPT), FloatLlama(checkpoint_of(expected)).forward(PROMPT))
    assert ckpt.source_dtypes["model.layers.1.mlp.down_proj.weight"] == qtype
    assert ckpt.source_dtypes["model.norm.weight"] == "F32"


def test_quantized_weights_differ_from_the_original(loaded, weights):
    """The Q4 files are not secretly F32: the bound above is met, but not with zero error."""
    assert not np.array_equal(loaded["Q4_0"].weights["lm_head.weight"], weights["lm_head.weight"])


def test_q_and_k_rows_are_put_back_from_llama_cpp_order():
    w = np.arange(24 * 3, dtype=np.float32).reshape(24, 3)
    for heads in (1, 2, 3, 6, 12):  # head_dim 24 .. 2 (with head_dim 2 the order is the same)
        permuted = llama_cpp_permute(w, heads)
        assert np.array_equal(permuted, w) == (heads == 12)
        assert np.array_equal(unpermute_rope_rows(permuted, heads), w)
    head_dim = 24 // 2
    assert np.array_equal(llama_cpp_permute(w, 2)[[0, 1, 2]], w[[0, head_dim // 2, 1]])


def test_permutation_that_does_not_divide_is_rejected():
    with pytest.raises(CheckpointError, match=r"blk\.0\.attn_k\.weight: cannot undo llama\.cpp's RoPE row "
                                              r"permutation: 30 rows do not split into 4 heads"):
        unpermute_rope_rows(np.zeros((30, 8), np.float32), 4, "blk.0.attn_k.weight")


def test_tied_embeddings_when_output_weight_is_absent(tmp_path, weights, tokenizer_meta):
    tied = {name: w for name, w in weights.items() if name != "lm_head.weight"}
    ckpt = load_gguf(write_gguf(tmp_path / "tied.gguf", tied, tokenizer=tokenizer_meta))
    assert ckpt.config == dataclasses.replace(CONFIG, tie_word_embeddings=True)
    assert "lm_head.weight" not in ckpt.weights and ckpt.lm_head is ckpt.embed_tokens


def test_optional_metadata_takes_its_defaults(tmp_path, weights):
    config = dataclasses.replace(CONFIG, num_key_value_heads=4, bos_token_id=None, eos_token_ids=())
    mha = weights | {f"model.layers.{i}.self_attn.{p}.weight": np.ones((64, 64), np.float32) * (i + 1)
                     for i in range(2) for p in ("k_proj", "v_proj")}
    optional = ("llama.attention.head_count_kv", "llama.rope.freq_base", "llama.vocab_size",
                "llama.rope.dimension_count")
    dropped = dict.fromkeys(optional)
    ckpt = load_gguf(write_gguf(tmp_path / "m.gguf", mha, config=config, metadata=dropped))
    assert ckpt.config == config  # kv heads = heads, theta 1e4, vocab from the embedding, no bos/eos
    assert ckpt.tokenizer_json is None and ckpt.chat_template is None


def test_rope_freqs_of_all_ones_is_accepted(tmp_path, weights):
    ones = {"rope_freqs.weight": (np.ones(CONFIG.head_dim // 2, np.float32), None)}
    ckpt = load_gguf(write_gguf(tmp_path / "f.gguf", weights, tensors=ones))
    assert ckpt.weights.keys() == weights.keys()


def test_tensor_names_map_to_hf_names():
    assert gguf_to_hf_name("blk.12.attn_output.weight") == "model.layers.12.self_attn.o_proj.weight"
    assert gguf_to_hf_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert gguf_to_hf_name("output.weight") == "lm_head.weight"
    for name in ("blk.0.attn_q.bias", "blk.01.attn_q.weight", "blk.0.ffn_gate_exps.weight",
                 "rope_freqs.weight"):
        assert gguf_to_hf_name(name) is None


# ------------------------------------------------------------------ load_checkpoint and sources

def test_load_checkpoint_and_resolve_directory_take_a_gguf_file(gguf_files, loaded, tmp_path):
    path = gguf_files["Q8_0"]
    assert is_gguf_file(path) and not is_gguf_file(path.parent) and not is_gguf_file(tmp_path / "absent")
    assert resolve_directory(path) == path
    ckpt = load_checkpoint(str(path))
    assert ckpt.is_gguf and ckpt.config == CONFIG
    assert all(np.array_equal(ckpt.weights[n], loaded["Q8_0"].weights[n]) for n in ckpt.weights)
    renamed = tmp_path / "model.bin"  # dispatch is by the magic, not the suffix
    renamed.write_bytes(path.read_bytes())
    assert load_checkpoint(renamed).is_gguf


def test_a_file_that_is_not_gguf_is_rejected(tmp_path):
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"PK\x03\x04 not a gguf file at all")
    assert not is_gguf_file(path)
    with pytest.raises(CheckpointError, match=r"weights\.gguf: is a file; expected a checkpoint directory "
                                              r"holding config\.json or a GGUF file"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"weights\.gguf: not a GGUF file \(it starts with "
                                              r"b'PK\\x03\\x04'"):
        load_gguf(path)


def test_hf_directories_carry_their_tokenizer_json_and_chat_template(tmp_path, weights):
    directory = save_checkpoint(tmp_path / "hf", CONFIG, weights)
    bare = load_checkpoint(directory)
    assert bare.tokenizer_json is None and bare.chat_template is None and not bare.is_gguf
    with pytest.raises(CheckpointError, match=r"hf: no tokenizer \(tokenizer\.json is missing\); "
                                              r"export needs it"):
        bare.require_tokenizer_json("export needs it")
    text = SHIPPED_TOKENIZER.read_text(encoding="utf-8")
    (directory / "tokenizer.json").write_text(text, encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    ckpt = load_checkpoint(directory)
    assert ckpt.tokenizer_json == text and ckpt.require_tokenizer_json() == text
    assert ckpt.chat_template == CHAT_TEMPLATE
    (directory / "tokenizer_config.json").write_text(json.dumps({"chat_template": [{"name": "x"}]}))
    (directory / "chat_template.jinja").write_text("{{ jinja }}")
    assert load_checkpoint(directory).chat_template == "{{ jinja }}"


# ------------------------------------------------------------------ the tokenizer

def encode_all(tokenizer_json: str, texts=SAMPLES) -> list[list[int]]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    return [tokenizer.encode(text).ids for text in texts]


def test_tokenizer_encodes_as_the_original_tokenizer_json(loaded):
    ckpt = loaded["F32"]
    assert encode_all(ckpt.tokenizer_json) == encode_all(SHIPPED_TOKENIZER.read_text(encoding="utf-8"))
    assert ckpt.require_tokenizer_json() == ckpt.tokenizer_json


def test_tokenizer_round_trips_text(loaded):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(loaded["Q4_1"].tokenizer_json)
    for text in SAMPLES:
        ids = tokenizer.encode(text).ids
        assert ids[0] == 0  # add_bos_token: BOS (<|endoftext|>, id 0) first
        assert tokenizer.decode(ids, skip_special_tokens=False) == "<|endoftext|>" + text
    assert tokenizer.encode("a<|endoftext|>b").ids[1:] == [tokenizer.token_to_id("a"), 0,
                                                           tokenizer.token_to_id("b")]


def tiny_byte_level(pre: str, extra: dict | None = None) -> dict:
    """A byte-level BPE of the 256 byte symbols plus a few merges chosen so that GPT-2's, Llama 3's
    and SmolLM's splits give different tokens for " 12345"."""
    from tokenizers.pre_tokenizers import ByteLevel

    merges = ["Ġ 1", "1 2", "12 3", "4 5", "Ġ1 2", "x y"]
    tokens = sorted(ByteLevel.alphabet()) + ["Ġ1", "12", "123", "45", "Ġ12", "xy", "xyz", "<s>", "<tool>"]
    types = [1] * (len(tokens) - 2) + [3, 4]
    return {"tokenizer.ggml.model": ("gpt2", GGUFValueType.STRING),
            "tokenizer.ggml.pre": (pre, GGUFValueType.STRING),
            "tokenizer.ggml.tokens": (tokens, GGUFValueType.ARRAY, GGUFValueType.STRING),
            "tokenizer.ggml.token_type": (types, GGUFValueType.ARRAY, GGUFValueType.INT32),
            "tokenizer.ggml.merges": (merges, GGUFValueType.ARRAY, GGUFValueType.STRING),
            "tokenizer.ggml.bos_token_id": (len(tokens) - 2, GGUFValueType.UINT32),
            "tokenizer.ggml.eos_token_id": (len(tokens) - 2, GGUFValueType.UINT32)} | (extra or {})


def tiny_tokens(tmp_path, pre: str, text: str, extra: dict | None = None) -> list[str]:
    from tokenizers import Tokenizer

    config = dataclasses.replace(CONFIG, vocab_size=265, bos_token_id=263, eos_token_ids=(263,))
    tiny_weights = random_llama_weights(config, seed=1)
    meta = tiny_byte_level(pre, extra)
    ckpt = load_gguf(write_gguf(tmp_path / f"{pre}.gguf", tiny_weights, config=config, tokenizer=meta))
    tokenizer = Tokenizer.from_str(ckpt.tokenizer_json)
    return [tokenizer.id_to_token(i) for i in tokenizer.encode(text).ids]


@pytest.mark.parametrize("pre, expected", [
    # GPT-2's split: " 12345" is one piece, merged by rank: Ġ1, then 45, then Ġ12.
    ("gpt2", ["x", "Ġ12", "3", "45", "Ġ", "xy", "z"]),
    ("gpt-2", ["x", "Ġ12", "3", "45", "Ġ", "xy", "z"]),
    ("default", ["x", "Ġ12", "3", "45", "Ġ", "xy", "z"]),
    # SmolLM (llama.cpp splits \p{N} first): every digit alone, the space before them alone.
    ("smollm", ["x", "Ġ", "1", "2", "3", "4", "5", "Ġ", "xy", "z"]),
    # Llama 3: BOS by default; digits in runs of up to three; the space before them alone.
    ("llama-bpe", ["<s>", "x", "Ġ", "123", "45", "Ġ", "xy", "z"]),
])
def test_pre_tokenizer_follows_tokenizer_ggml_pre(tmp_path, pre, expected):
    assert tiny_tokens(tmp_path, pre, "x 12345 xyz") == expected


def test_llama3_takes_a_whole_word_token_without_merges(tmp_path):
    assert tiny_tokens(tmp_path, "llama3", "xyz") == ["<s>", "xyz"]
    assert tiny_tokens(tmp_path, "gpt2", "xyz") == ["xy", "z"]


def test_control_and_user_defined_tokens_are_matched_whole(tmp_path):
    assert tiny_tokens(tmp_path, "gpt2", "<s>x<tool>y") == ["<s>", "x", "<tool>", "y"]


def test_add_bos_and_add_eos_tokens(tmp_path):
    both = {"tokenizer.ggml.add_bos_token": (True, GGUFValueType.BOOL),
            "tokenizer.ggml.add_eos_token": (True, GGUFValueType.BOOL)}
    assert tiny_tokens(tmp_path, "gpt2", "xy", both) == ["<s>", "xy", "<s>"]
    off = {"tokenizer.ggml.add_bos_token": (False, GGUFValueType.BOOL)}
    assert tiny_tokens(tmp_path, "llama3", "xy", off) == ["xy"]


def sentencepiece_metadata() -> dict:
    """A 'llama' (SentencePiece) vocabulary: <unk>, <s>, </s>, the 256 byte tokens, and pieces
    trained here on a little Shakespeare, scored best-first as SentencePiece does."""
    from tokenizers import SentencePieceBPETokenizer

    text = (PACKAGE / "data" / "shakespeare_test.txt").read_text(encoding="utf-8")
    trainer = SentencePieceBPETokenizer()
    trainer.train_from_iterator([text[:30000]], vocab_size=400, min_frequency=2, show_progress=False)
    pieces = [t for t, _ in sorted(trainer.get_vocab().items(), key=lambda item: item[1])]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    return {"tokenizer.ggml.model": ("llama", GGUFValueType.STRING),
            "tokenizer.ggml.tokens": (tokens, GGUFValueType.ARRAY, GGUFValueType.STRING),
            "tokenizer.ggml.scores": (scores, GGUFValueType.ARRAY, GGUFValueType.FLOAT32),
            "tokenizer.ggml.token_type": (types, GGUFValueType.ARRAY, GGUFValueType.INT32),
            "tokenizer.ggml.bos_token_id": (1, GGUFValueType.UINT32),
            "tokenizer.ggml.eos_token_id": (2, GGUFValueType.UINT32),
            "tokenizer.ggml.unknown_token_id": (0, GGUFValueType.UINT32)}


@pytest.fixture(scope="module")
def sentencepiece_gguf(tmp_path_factory, weights) -> Path:
    meta = sentencepiece_metadata()
    config = dataclasses.replace(CONFIG, vocab_size=len(meta["tokenizer.ggml.tokens"][0]), bos_token_id=1,
                                 eos_token_ids=(2,))
    path = tmp_path_factory.mktemp("spm") / "spm.gguf"
    return write_gguf(path, random_llama_weights(config, seed=2), config=config, tokenizer=meta)


def test_sentencepiece_tokenizer_round_trips_with_byte_fallback(sentencepiece_gguf):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(load_gguf(sentencepiece_gguf).tokenizer_json)
    for text in SAMPLES[:4] + ["Thou art more lovely and more temperate"]:
        ids = tokenizer.encode(text).ids
        assert ids[0] == 1  # "llama" vocabularies add BOS unless the file says otherwise
        assert tokenizer.decode(ids) == text
    assert tokenizer.encode("é").ids == [1, tokenizer.token_to_id("▁"), 3 + 0xC3, 3 + 0xA9]


# ------------------------------------------------------------------ transformers' GGUF loader

@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("torch")
    pytest.importorskip("accelerate", reason="transformers' GGUF loader needs accelerate")
    return pytest.importorskip("transformers")


def test_transformers_gguf_loader_gives_the_same_logits(transformers, loaded, gguf_files):
    """Q4_1: both dequantize and un-permute Q/K themselves (F32 = the original checkpoint, above,
    whose parity with transformers tests/test_float_model.py holds)."""
    import torch

    qtype = "Q4_1"
    path = gguf_files[qtype]
    hf = transformers.LlamaForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                                       attn_implementation="eager")
    hf.eval()
    with torch.no_grad():
        expected = hf(torch.tensor(PROMPT)[None]).logits[0].numpy()
    ours = FloatLlama(loaded[qtype]).forward(PROMPT)
    assert np.abs(ours - expected).max() <= RELATIVE_LOGIT_TOLERANCE * max(1.0, np.abs(expected).max())


def test_transformers_gguf_tokenizer_gives_the_same_ids(transformers, loaded, gguf_files):
    path = gguf_files["F32"]
    hf = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert [hf(text).input_ids for text in SAMPLES] == encode_all(loaded["F32"].tokenizer_json)


def test_transformers_sentencepiece_gguf_tokenizer_gives_the_same_ids(transformers, sentencepiece_gguf):
    path = sentencepiece_gguf
    hf = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    texts = SAMPLES + ["Thou art more lovely and more temperate", " leading space", "<s>inline</s>"]
    assert [hf(text).input_ids for text in texts] == encode_all(load_gguf(path).tokenizer_json, texts)


# ------------------------------------------------------------------ defects, each one CheckpointError

def expect_error(path: Path, pattern: str):
    with pytest.raises(CheckpointError, match=pattern) as caught:
        load_gguf(path)
    message = str(caught.value)
    assert isinstance(caught.value, IlsimError) and "\n" not in message
    assert message.startswith(str(path)), message
    return message


def test_truncated_file(tmp_path, gguf_files):
    data = gguf_files["Q4_0"].read_bytes()
    for cut in (len(data) - 100, 40, 6):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        expect_error(path, rf"truncated or corrupt GGUF file \({cut} bytes; the gguf reader failed with ")


def test_unsupported_tensor_type(tmp_path, weights):
    bad = {"blk.0.attn_norm.weight": (np.ones(64, np.int32), None)}
    expect_error(write_gguf(tmp_path / "i32.gguf", weights, tensors=bad),
                 r"tensor 'blk\.0\.attn_norm\.weight' has GGML type I32, which is not supported")


def test_architecture_other_than_llama(tmp_path, weights):
    expect_error(write_gguf(tmp_path / "a.gguf", weights, arch="qwen2"),
                 r"metadata key 'general\.architecture' is 'qwen2'; ilsim loads 'llama' GGUF files only")


U32, F32, STR, ARR = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING, GGUFValueType.ARRAY


# (metadata key, its new entry or None to delete it, what the error says after "metadata key ")
@pytest.mark.parametrize("key, entry, pattern", [
    ("llama.expert_count", (8, U32), r"'llama\.expert_count' is 8: mixture-of-experts"),
    ("llama.rope.scaling.type", ("linear", STR), r"'llama\.rope\.scaling\.type' is 'linear'"),
    ("llama.rope.scaling.factor", (4.0, F32), r"'llama\.rope\.scaling\.factor' is 4\.0: RoPE scaling"),
    ("llama.block_count", None, r"'llama\.block_count' is required but missing"),
    ("llama.attention.layer_norm_rms_epsilon", None, r"'llama\.attention\.layer_norm_rms_epsilon' is required"),
    ("llama.block_count", ("2", STR), r"'llama\.block_count' has type STRING, expected an integer"),
    ("llama.attention.head_count_kv", ([2, 2], ARR, U32),
     r"'llama\.attention\.head_count_kv' has type ARRAY of UINT32, expected an integer"),
    ("llama.rope.freq_base", (-1.0, F32), r"'llama\.rope\.freq_base' is -1\.0, expected a positive"),
    ("llama.attention.head_count_kv", (3, U32),
     r"'llama\.attention\.head_count_kv' is 3, which does not divide llama\.attention\.head_count=4"),
    ("llama.attention.key_length", (15, U32), r"'llama\.attention\.key_length' gives head_dim 15, which is odd"),
    ("llama.rope.dimension_count", (8, U32), r"'llama\.rope\.dimension_count' is 8, but head_dim is 16"),
    ("tokenizer.ggml.bos_token_id", (5000, U32), r"'tokenizer\.ggml\.bos_token_id' is 5000, outside"),
    ("tokenizer.ggml.bos_token_id", None,
     r"'tokenizer\.ggml\.add_bos_token' is true but tokenizer\.ggml\.bos_token_id is missing"),
    ("tokenizer.ggml.model", ("bert", STR), r"'tokenizer\.ggml\.model' is 'bert'; supported"),
    ("tokenizer.ggml.pre", ("qwen2", STR),
     r"'tokenizer\.ggml\.pre' is 'qwen2', which is not supported \(supported: 'default', 'gpt2'"),
    ("tokenizer.ggml.merges", (["Ġ t", "he"], ARR, STR), r"'tokenizer\.ggml\.merges' entry 1 is 'he', not two"),
    ("tokenizer.ggml.token_type", ([1, 1], ARR, GGUFValueType.INT32),
     r"'tokenizer\.ggml\.token_type' holds 2 entries for 4096 tokens"),
])
def test_bad_metadata_names_the_key(tmp_path, weights, tokenizer_meta, key, entry, pattern):
    tokenizer = tokenizer_meta if key.startswith("tokenizer.ggml.") else None
    expect_error(write_gguf(tmp_path / "m.gguf", weights, tokenizer=tokenizer, metadata={key: entry}),
                 r"m\.gguf: metadata key " + pattern)


def test_no_tokenizer_is_reported_by_the_helper(tmp_path, weights):
    ckpt = load_gguf(write_gguf(tmp_path / "bare.gguf", weights))
    assert ckpt.tokenizer_json is None
    with pytest.raises(CheckpointError, match=r"bare\.gguf: no tokenizer \(the GGUF metadata has no "
                                              r"'tokenizer\.ggml\.model' key\); to tokenize text") as caught:
        ckpt.require_tokenizer_json("to tokenize text")
    assert str(caught.value).startswith(str(tmp_path / "bare.gguf"))


@pytest.mark.parametrize("qtype, bad", [("F32", np.nan), ("F16", 1e5)])  # 1e5 overflows F16 to inf
def test_non_finite_value_names_the_tensor(tmp_path, weights, qtype, bad):
    broken = dict(weights)
    broken["model.layers.1.mlp.down_proj.weight"] = weights["model.layers.1.mlp.down_proj.weight"].copy()
    broken["model.layers.1.mlp.down_proj.weight"][3, 7] = bad
    expect_error(write_gguf(tmp_path / "nan.gguf", broken, qtype=qtype),
                 r"tensor 'blk\.1\.ffn_down\.weight' \(model\.layers\.1\.mlp\.down_proj\.weight\) has 1 "
                 r"non-finite value\(s\) \(NaN/Inf\), first at \[3, 7\]")


def test_wrong_shape_names_the_tensor(tmp_path, weights):
    bad = {"blk.0.attn_k.weight": (np.zeros((64, 64), np.float32), None)}
    expect_error(write_gguf(tmp_path / "s.gguf", weights, tensors=bad),
                 r"tensor 'blk\.0\.attn_k\.weight' \(model\.layers\.0\.self_attn\.k_proj\.weight\) has shape "
                 r"\[64, 64\], but the GGUF metadata implies \[32, 64\]")


def test_missing_tensor_is_named(tmp_path, weights):
    expect_error(write_gguf(tmp_path / "m.gguf", weights, tensors={"blk.1.ffn_up.weight": None}),
                 r"missing tensor\(s\) 'model\.layers\.1\.mlp\.up_proj\.weight'")


def test_unknown_tensors_are_named(tmp_path, weights):
    bias = {"blk.0.attn_q.bias": (np.zeros(64, np.float32), None)}
    expect_error(write_gguf(tmp_path / "u.gguf", weights, tensors=bias),
                 r"unknown tensor\(s\) 'blk\.0\.attn_q\.bias': not part of a LLaMA model")
    extra_layer = {"blk.2.attn_norm.weight": (np.ones(64, np.float32), None)}
    expect_error(write_gguf(tmp_path / "x.gguf", weights, tensors=extra_layer),
                 r"unexpected tensor\(s\) 'blk\.2\.attn_norm\.weight' "
                 r"\(model\.layers\.2\.input_layernorm\.weight\) for a LLaMA model with 2 layers")


def test_rope_freqs_that_change_rope_are_rejected(tmp_path, weights):
    factors = {"rope_freqs.weight": (np.linspace(1, 8, CONFIG.head_dim // 2).astype(np.float32), None)}
    expect_error(write_gguf(tmp_path / "r.gguf", weights, tensors=factors),
                 r"tensor 'rope_freqs\.weight' holds RoPE frequency factors \(shape \[8\]\) that are not all 1")
