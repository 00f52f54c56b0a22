r"""llama.cpp GGUF files of LLaMA models, read into the same Checkpoint a Hugging Face directory gives.

``load_gguf(path)`` reads the file with the ``gguf`` package (llama.cpp's own reader) and returns a
Checkpoint in HF names and layout, float32 weights, with ``directory`` set to the file itself:

    config       from the ``llama.*`` metadata (below); errors name the file and the metadata key
    weights      dequantized by ``gguf.quants.dequantize`` (any type it handles: F32, F16, BF16,
                 Q8_0, Q4_0, Q4_1, the K-quants, ...), [out, in] as in HF; Q and K rows put back
                 from llama.cpp's RoPE order (``unpermute_rope_rows``); ``source_dtypes`` holds the
                 GGML type names
    tokenizer    ``tokenizer_json``: a tokenizers-library tokenizer.json built from the
                 ``tokenizer.ggml.*`` metadata (below); None when ``tokenizer.ggml.model`` is absent
                 (``Checkpoint.require_tokenizer_json`` then raises, naming the file and that key)
    chat         ``chat_template``: ``tokenizer.chat_template``, as text

Metadata -> LlamaConfig: block_count, embedding_length, feed_forward_length, attention.head_count,
attention.layer_norm_rms_epsilon and context_length are required; attention.head_count_kv
(default head_count), attention.key_length (head_dim; default embedding_length / head_count),
rope.freq_base (default 10000) and vocab_size (default: the number of tokenizer tokens, else the
embedding's rows) are optional. tie_word_embeddings is true when ``output.weight`` is absent.
bos/eos come from tokenizer.ggml.bos_token_id / eos_token_id (None / () when absent). Rejected,
each with the key: general.architecture other than "llama"; llama.expert_count > 0 (Mixtral is
"llama" too); RoPE scaling (rope.scaling.type other than "none", rope.scaling.factor or
rope.scale_linear other than 0 or 1); rope.dimension_count or attention.value_length other than
head_dim; missing required keys; values of the wrong type. A ``rope_freqs.weight`` tensor (Llama
3.1's frequency factors) is accepted only when all ones, as it changes RoPE otherwise.

Tokenizer: tokenizer.ggml.model "gpt2" is byte-level BPE (tokens, merges), with the pre-tokenizer
named by tokenizer.ggml.pre: "default" (also when absent), "gpt2"/"gpt-2": GPT-2's regex, as
transformers builds it (llama.cpp itself falls back to a different regex for "default" and warns
that quality suffers); "llama3"/"llama-v3"/"llama-bpe": Llama 3's regex (and its merges are
ignored for whole-word tokens, as llama.cpp and Llama 3's tokenizer.json do); "smollm": each number
character (\p{N}: digits, "½", "²", ...) alone first, then GPT-2's regex (llama.cpp's split, and
SmolLM's own tokenizer.json; transformers' GGUF loader omits the first step). "llama" is
SentencePiece BPE: tokens with scores, merges derived from the scores as transformers' GGUF
converter does, byte fallback, "▁" for spaces (prefixed unless tokenizer.ggml.add_space_prefix is
false). In both, token_type 3 (control) and 2 (unknown) become special added tokens and 4
(user-defined) plain added tokens, matched whole in the text; tokenizer.ggml.add_bos_token
(default: true for "llama" and Llama 3, false otherwise, as in llama.cpp) prepends
tokenizer.ggml.bos_token_id, add_eos_token appends the eos token.

Every defect (not a GGUF file, truncated, corrupt, unsupported tensor type, unknown or missing
tensor, wrong shape, NaN/Inf) is one CheckpointError naming the file and the key or tensor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ilsim.hf.config import LlamaConfig
from ilsim.hf.safetensors_file import CheckpointError
from ilsim.hf.weights import (GGUF_MAGIC, GGUF_TOKENIZER_KEY, Checkpoint, _check_finite, _check_shapes,
                              _check_tensor_names, expected_shapes)

__all__ = ["load_gguf", "gguf_to_hf_name", "unpermute_rope_rows", "SUPPORTED_PRE_TOKENIZERS"]

SUPPORTED_ARCHITECTURE = "llama"
#: Llama 3.1-style RoPE frequency factors; accepted only when all ones.
ROPE_FREQS = "rope_freqs.weight"
_GLOBAL_TENSORS = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                   "output.weight": "lm_head.weight"}
_LAYER_TENSORS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                  "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                  "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                  "ffn_down": "mlp.down_proj"}
_LAYER_TENSOR = re.compile(r"blk\.(0|[1-9][0-9]*)\.([a-z_]+)\.weight")

# GPT-2's split, as in tokenizers' ByteLevel(use_regex=True) and llama.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2.
# Llama 3's split, as in its tokenizer.json (llama.cpp spells the case-insensitive group out).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_GPT2_PRE, _LLAMA3_PRE, _SMOLLM_PRE = "gpt2", "llama3", "smollm"
#: tokenizer.ggml.pre values of byte-level BPE files -> the split they use.
SUPPORTED_PRE_TOKENIZERS = {"default": _GPT2_PRE, "gpt2": _GPT2_PRE, "gpt-2": _GPT2_PRE,
                            "llama3": _LLAMA3_PRE, "llama-v3": _LLAMA3_PRE, "llama-bpe": _LLAMA3_PRE,
                            "smollm": _SMOLLM_PRE}
# llama.cpp's token types (tokenizer.ggml.token_type).
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4
_REQUIRED = object()


def is_gguf_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a readable file that starts with the GGUF magic b"GGUF"."""
    try:
        with open(path, "rb") as f:
            return f.read(len(GGUF_MAGIC)) == GGUF_MAGIC
    except OSError:  # a directory, a missing or unreadable path: not a GGUF file
        return False


def gguf_to_hf_name(name: str) -> str | None:
    """The HF LLaMA name of GGUF tensor ``name`` (``blk.3.attn_q.weight`` ->
    ``model.layers.3.self_attn.q_proj.weight``), or None when it is not one of a LLaMA model's."""
    if name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[name]
    match = _LAYER_TENSOR.fullmatch(name)
    if match and match.group(2) in _LAYER_TENSORS:
        return f"model.layers.{match.group(1)}.{_LAYER_TENSORS[match.group(2)]}.weight"
    return None


def unpermute_rope_rows(weight: np.ndarray, n_head: int, where: str = "tensor") -> np.ndarray:
    """Undo convert_hf_to_gguf.py's row order of a Q or K projection [n_head * head_dim, in].

    llama.cpp rotates adjacent channel pairs, HF's rotate_half rotates the two halves of each
    head, so the converter stores head row (i, i + head_dim/2) as rows (2i, 2i + 1):
    ``w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)``.
    This is its inverse (reshape as (n_head, head_dim/2, 2), swap back), exact. ``n_head`` is the
    number of query heads for Q, of key/value heads for K; ``where`` names the tensor in errors.
    """
    rows = weight.shape[0]
    if n_head <= 0 or rows % (2 * n_head):
        raise CheckpointError(f"{where}: cannot undo llama.cpp's RoPE row permutation: {rows} rows do not "
                              f"split into {n_head} heads of an even number of rows")
    half = rows // n_head // 2
    unpermuted = weight.reshape(n_head, half, 2, *weight.shape[1:]).swapaxes(1, 2)
    return np.ascontiguousarray(unpermuted.reshape(weight.shape))


def load_gguf(path: str | os.PathLike) -> Checkpoint:
    """Read and validate the LLaMA GGUF file ``path`` into a Checkpoint (see the module docstring)."""
    path = Path(path).expanduser()
    reader = _open_reader(path)
    meta = _Metadata(reader.fields, path)
    tensors, labels, rope_freqs = _map_tensor_names(reader.tensors, path)
    tokens = meta.strings("tokenizer.ggml.tokens", default=None)
    config = _config_from_metadata(meta, tensors, tokens)
    files = {name: path for name in tensors}
    _check_tensor_names(config, tensors, files, path, labels, config_name="the GGUF metadata")
    shapes = {name: tuple(int(d) for d in reversed(tensor.shape.tolist())) for name, tensor in tensors.items()}
    _check_shapes(config, shapes, files, labels, config_name="the GGUF metadata")
    if rope_freqs is not None:
        _check_rope_freqs(rope_freqs, config, path)
    weights, dtypes = {}, {}
    for name in expected_shapes(config):
        weights[name] = _dequantize(tensors[name], path)
        dtypes[name] = tensors[name].tensor_type.name
        _check_finite(name, weights[name], path, labels)
    for i in range(config.num_hidden_layers):
        for proj, heads in (("q_proj", config.num_attention_heads), ("k_proj", config.num_key_value_heads)):
            name = f"model.layers.{i}.self_attn.{proj}.weight"
            weights[name] = unpermute_rope_rows(weights[name], heads, f"{path}: tensor {labels[name]}")
    tokenizer_json = _tokenizer_json(meta, tokens, config)
    chat_template = meta.string("tokenizer.chat_template", default=None)
    return Checkpoint(config, weights, None, path, dtypes, tokenizer_json=tokenizer_json,
                      chat_template=chat_template, file_format="gguf")


# ------------------------------------------------------------------ file and metadata

def _open_reader(path: Path):
    """A gguf.GGUFReader of ``path``; every way the file can be unreadable is one CheckpointError."""
    import gguf

    try:
        with open(path, "rb") as f:
            magic = f.read(len(GGUF_MAGIC))
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read GGUF file ({exc.strerror})") from None
    if magic != GGUF_MAGIC:
        raise CheckpointError(f"{path}: not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # the reader raises ValueError, IndexError, KeyError, ... on damaged files
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise CheckpointError(f"{path}: truncated or corrupt GGUF file ({size} bytes; the gguf reader "
                              f"failed with {detail})") from None
    if reader.byte_order != "I":
        raise CheckpointError(f"{path}: the GGUF file is in the other byte order (big-endian); "
                              "only little-endian files are supported")
    return reader


def _describe_type(types) -> str:
    names = [t.name for t in types]
    return " of ".join(names) if names else "unknown"


class _Metadata:
    """Typed access to GGUF key/value metadata; a missing key or a wrong type is a CheckpointError
    naming the file and the key. ``default=_REQUIRED`` (the default) makes a key required."""

    def __init__(self, fields, path: Path):
        from gguf import GGUFValueType as T

        self._fields, self._path = fields, path
        self._ints = {T.UINT8, T.INT8, T.UINT16, T.INT16, T.UINT32, T.INT32, T.UINT64, T.INT64}
        self._floats = self._ints | {T.FLOAT32, T.FLOAT64}
        self._string, self._bool, self._array = T.STRING, T.BOOL, T.ARRAY

    def __contains__(self, key: str) -> bool:
        return key in self._fields

    def error(self, key: str, problem: str) -> CheckpointError:
        return CheckpointError(f"{self._path}: metadata key {key!r} {problem}")

    def _scalar(self, key: str, allowed: set, expected: str, default):
        field = self._fields.get(key)
        if field is None:
            if default is _REQUIRED:
                raise self.error(key, "is required but missing")
            return None
        if len(field.types) != 1 or field.types[0] not in allowed:
            raise self.error(key, f"has type {_describe_type(field.types)}, expected {expected}")
        return field.parts[field.data[0]]

    def _array_parts(self, key: str, allowed: set, expected: str, default):
        field = self._fields.get(key)
        if field is None:
            if default is _REQUIRED:
                raise self.error(key, "is required but missing")
            return None
        element_ok = len(field.types) == 2 and field.types[1] in allowed
        if not field.types or field.types[0] != self._array or not (element_ok or len(field.types) == 1):
            raise self.error(key, f"has type {_describe_type(field.types)}, expected an array of {expected}")
        return [field.parts[i] for i in field.data] if element_ok else []

    def integer(self, key: str, default=_REQUIRED, minimum: int = 0) -> int:
        raw = self._scalar(key, self._ints, "an integer", default)
        if raw is None:
            return default
        value = int(raw[0])
        if value < minimum:
            raise self.error(key, f"is {value}, expected an integer >= {minimum}")
        return value

    def number(self, key: str, default=_REQUIRED, positive: bool = True) -> float:
        raw = self._scalar(key, self._floats, "a number", default)
        if raw is None:
            return default
        value = float(raw[0])
        if not np.isfinite(value) or (positive and value <= 0):
            raise self.error(key, f"is {value!r}, expected a {'positive ' if positive else ''}finite number")
        return value

    def boolean(self, key: str, default=_REQUIRED) -> bool:
        raw = self._scalar(key, {self._bool}, "a boolean", default)
        return default if raw is None else bool(raw[0])

    def string(self, key: str, default=_REQUIRED) -> str:
        raw = self._scalar(key, {self._string}, "a string", default)
        return default if raw is None else self._decode(key, raw)

    def strings(self, key: str, default=_REQUIRED) -> list[str] | None:
        parts = self._array_parts(key, {self._string}, "strings", default)
        return default if parts is None else [self._decode(key, part) for part in parts]

    def numbers(self, key: str, integer: bool, default=_REQUIRED) -> np.ndarray | None:
        allowed = self._ints if integer else self._floats
        parts = self._array_parts(key, allowed, "integers" if integer else "numbers", default)
        if parts is None:
            return default
        dtype = np.int64 if integer else np.float64
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

    def _decode(self, key: str, raw: np.ndarray) -> str:
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(key, f"holds a string that is not valid UTF-8 ({exc})") from None


# ------------------------------------------------------------------ config and tensors

def _map_tensor_names(reader_tensors, path: Path):
    """(HF name -> reader tensor, HF name -> label naming both, the rope_freqs tensor or None)."""
    tensors, labels, unknown, rope_freqs = {}, {}, [], None
    for tensor in reader_tensors:
        if tensor.name == ROPE_FREQS:
            rope_freqs = tensor
            continue
        hf_name = gguf_to_hf_name(tensor.name)
        if hf_name is None:
            unknown.append(tensor.name)
            continue
        tensors[hf_name] = tensor
        labels[hf_name] = f"{tensor.name!r} ({hf_name})"
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5]) + (f" and {len(unknown) - 5} more"
                                                           if len(unknown) > 5 else "")
        raise CheckpointError(f"{path}: unknown tensor(s) {shown}: not part of a LLaMA model "
                              "(loading would silently ignore them)")
    return tensors, labels, rope_freqs


def _config_from_metadata(meta: _Metadata, tensors: dict, tokens: list[str] | None) -> LlamaConfig:
    architecture = meta.string("general.architecture")
    if architecture != SUPPORTED_ARCHITECTURE:
        raise meta.error("general.architecture", f"is {architecture!r}; ilsim loads "
                                                  f"{SUPPORTED_ARCHITECTURE!r} GGUF files only")
    _reject_unsupported_features(meta)
    prefix = SUPPORTED_ARCHITECTURE + "."
    layers = meta.integer(prefix + "block_count", minimum=1)
    hidden = meta.integer(prefix + "embedding_length", minimum=1)
    intermediate = meta.integer(prefix + "feed_forward_length", minimum=1)
    heads = meta.integer(prefix + "attention.head_count", minimum=1)
    kv_heads = meta.integer(prefix + "attention.head_count_kv", default=heads, minimum=1)
    if heads % kv_heads:
        raise meta.error(prefix + "attention.head_count_kv", f"is {kv_heads}, which does not divide "
                                                            f"{prefix}attention.head_count={heads}")
    head_dim = _head_dim(meta, hidden, heads)
    embedding = tensors.get("model.embed_tokens.weight")
    default_vocab = len(tokens) if tokens else int(embedding.shape[-1]) if embedding is not None else _REQUIRED
    vocab = meta.integer(prefix + "vocab_size", default=default_vocab, minimum=1)
    if tokens is not None and len(tokens) > vocab:
        raise meta.error("tokenizer.ggml.tokens", f"holds {len(tokens)} tokens, more than the model's "
                                                  f"vocabulary of {vocab}")
    bos = _token_id(meta, "tokenizer.ggml.bos_token_id", vocab)
    eos = _token_id(meta, "tokenizer.ggml.eos_token_id", vocab)
    return LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       head_dim=head_dim,
                       rms_norm_eps=meta.number(prefix + "attention.layer_norm_rms_epsilon"),
                       rope_theta=meta.number(prefix + "rope.freq_base", default=10000.0),
                       max_position_embeddings=meta.integer(prefix + "context_length", minimum=1),
                       tie_word_embeddings="lm_head.weight" not in tensors,
                       bos_token_id=bos, eos_token_ids=() if eos is None else (eos,), hidden_act="silu")


def _reject_unsupported_features(meta: _Metadata) -> None:
    """Keys whose values make the model compute something ilsim's LLaMA does not."""
    prefix = SUPPORTED_ARCHITECTURE + "."
    experts = meta.integer(prefix + "expert_count", default=0)
    if experts > 0:
        raise meta.error(prefix + "expert_count", f"is {experts}: mixture-of-experts models (Mixtral) "
                                                 "are not supported")
    scaling = meta.string(prefix + "rope.scaling.type", default="none")
    if scaling != "none":
        raise meta.error(prefix + "rope.scaling.type", f"is {scaling!r}; only plain RoPE ('none') is supported")
    for key in (prefix + "rope.scaling.factor", prefix + "rope.scale_linear"):
        factor = meta.number(key, default=1.0, positive=False)
        if factor not in (0.0, 1.0):  # llama.cpp reads 0 as "no scaling"
            raise meta.error(key, f"is {factor!r}: RoPE scaling is not supported (only 1, or 0 for none)")


def _head_dim(meta: _Metadata, hidden: int, heads: int) -> int:
    prefix = SUPPORTED_ARCHITECTURE + "."
    if prefix + "attention.key_length" in meta:
        head_dim = meta.integer(prefix + "attention.key_length", minimum=1)
        source = prefix + "attention.key_length"
    elif hidden % heads:
        raise meta.error(prefix + "embedding_length", f"is {hidden}, not a multiple of "
                                                     f"{prefix}attention.head_count={heads}, and "
                                                     f"{prefix}attention.key_length is not given")
    else:
        head_dim, source = hidden // heads, prefix + "embedding_length"
    if head_dim % 2:
        raise meta.error(source, f"gives head_dim {head_dim}, which is odd; RoPE rotates pairs of channels")
    for key in (prefix + "attention.value_length", prefix + "rope.dimension_count"):
        value = meta.integer(key, default=head_dim, minimum=1)
        if value != head_dim:
            raise meta.error(key, f"is {value}, but head_dim is {head_dim} (ilsim needs them equal: "
                                  "full-width RoPE, values as wide as keys)")
    return head_dim


def _token_id(meta: _Metadata, key: str, vocab: int) -> int | None:
    token = meta.integer(key, default=None)
    if token is not None and token >= vocab:
        raise meta.error(key, f"is {token}, outside the vocabulary of {vocab} tokens")
    return token


def _dequantize(tensor, path: Path) -> np.ndarray:
    """The float32 values of a reader tensor, in their own array (not a view of the file)."""
    from gguf.quants import dequantize

    data = np.asarray(tensor.data)  # a plain view: slicing a np.memmap costs ~5 us a slice in gguf's row loop
    try:
        values = dequantize(data, tensor.tensor_type)
    except NotImplementedError as exc:
        raise CheckpointError(f"{path}: tensor {tensor.name!r} has GGML type {tensor.tensor_type.name}, "
                              f"which is not supported ({exc})") from None
    values = np.ascontiguousarray(values, dtype=np.float32)
    return values.copy() if np.may_share_memory(values, data) else values


def _check_rope_freqs(tensor, config: LlamaConfig, path: Path) -> None:
    factors = _dequantize(tensor, path)
    if factors.shape != (config.head_dim // 2,) or not np.all(factors == 1.0):
        raise CheckpointError(f"{path}: tensor {ROPE_FREQS!r} holds RoPE frequency factors (shape "
                              f"{list(factors.shape)}) that are not all 1, which changes RoPE "
                              "(Llama 3.1-style scaling); this is not supported")


# ------------------------------------------------------------------ tokenizer

def _tokenizer_json(meta: _Metadata, tokens: list[str] | None, config: LlamaConfig) -> str | None:
    """The tokenizer the metadata describes, as tokenizer.json text; None without tokenizer.ggml.model."""
    model = meta.string(GGUF_TOKENIZER_KEY, default=None)
    if model is None:
        return None
    if model not in ("gpt2", "llama"):
        raise meta.error(GGUF_TOKENIZER_KEY, f"is {model!r}; supported: 'gpt2' (byte-level BPE) and "
                                             "'llama' (SentencePiece BPE)")
    if tokens is None:
        raise meta.error("tokenizer.ggml.tokens", f"is required by {GGUF_TOKENIZER_KEY}={model!r} but missing")
    types = meta.numbers("tokenizer.ggml.token_type", integer=True, default=None)
    if types is not None and len(types) != len(tokens):
        raise meta.error("tokenizer.ggml.token_type", f"holds {len(types)} entries for {len(tokens)} tokens")
    if model == "gpt2":
        tokenizer, bos_default = _byte_level_bpe(meta, tokens)
    else:
        tokenizer, bos_default = _sentencepiece_bpe(meta, tokens), True
    _add_special_tokens(tokenizer, tokens, types)
    _set_post_processor(meta, tokenizer, tokens, config, bos_default)
    return tokenizer.to_str()


def _byte_level_bpe(meta: _Metadata, tokens: list[str]):
    """(byte-level BPE tokenizer, whether llama.cpp adds BOS by default for its pre-tokenizer)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    pre = meta.string("tokenizer.ggml.pre", default="default")
    if pre not in SUPPORTED_PRE_TOKENIZERS:
        raise meta.error("tokenizer.ggml.pre", f"is {pre!r}, which is not supported (supported: "
                                               f"{', '.join(repr(p) for p in SUPPORTED_PRE_TOKENIZERS)})")
    split = SUPPORTED_PRE_TOKENIZERS[pre]
    merges = [_merge_pair(meta, i, merge) for i, merge in
              enumerate(meta.strings("tokenizer.ggml.merges"))]
    options = dict(vocab=_vocab(tokens), merges=merges)
    if split == _LLAMA3_PRE:
        options["ignore_merges"] = True
    model = _bpe_model(meta, models.BPE, options)
    tokenizer = Tokenizer(model)
    if split == _LLAMA3_PRE:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif split == _SMOLLM_PRE:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer, split == _LLAMA3_PRE


def _merge_pair(meta: _Metadata, index: int, merge: str) -> tuple[str, str]:
    parts = merge.split(" ")
    if len(parts) != 2 or not all(parts):
        raise meta.error("tokenizer.ggml.merges", f"entry {index} is {merge!r}, not two tokens separated "
                                                  "by one space")
    return parts[0], parts[1]


def _vocab(tokens: list[str]) -> dict[str, int]:
    """Token -> id; a token listed twice keeps its last id, as in llama.cpp and transformers."""
    return {token: index for index, token in enumerate(tokens)}


def _bpe_model(meta: _Metadata, bpe, kwargs: dict):
    try:
        return bpe(**kwargs)
    except Exception as exc:  # tokenizers raises its own exception type for inconsistent vocab/merges
        raise meta.error("tokenizer.ggml.merges", f"does not fit tokenizer.ggml.tokens ({exc})") from None


def _sentencepiece_bpe(meta: _Metadata, tokens: list[str]):
    """SentencePiece BPE as transformers' GGUF converter builds it (LlamaTokenizer): merges from the
    scores, byte fallback for pieces outside the vocabulary, "▁" for spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    scores = meta.numbers("tokenizer.ggml.scores", integer=False)
    if len(scores) != len(tokens):
        raise meta.error("tokenizer.ggml.scores", f"holds {len(scores)} scores for {len(tokens)} tokens")
    vocab = _vocab(tokens)
    unk = meta.integer("tokenizer.ggml.unknown_token_id", default=None)
    unk_token = tokens[unk] if unk is not None and unk < len(tokens) else "<unk>" if "<unk>" in vocab else None
    model = _bpe_model(meta, models.BPE, dict(vocab=vocab, merges=_merges_from_scores(tokens, scores, vocab),
                                              unk_token=unk_token, fuse_unk=True, byte_fallback=True))
    tokenizer = Tokenizer(model)
    prefix_space = meta.boolean("tokenizer.ggml.add_space_prefix", default=True)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first" if prefix_space else "never", split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix_space else []))
    return tokenizer


def _merges_from_scores(tokens: list[str], scores: np.ndarray, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """BPE merges that rebuild SentencePiece's score order (transformers' ``generate_merges``): every
    split of a token into two vocabulary tokens is a merge, ranked by the token's score (highest
    first), then by the lengths of its two parts (longest first); a token's own splits in
    vocabulary order of (left, right)."""
    scored = dict(zip(tokens, (float(s) for s in scores)))
    candidates = []
    for token, score in scored.items():
        splits = [(token[:i], token[i:]) for i in range(1, len(token))
                  if token[:i] in vocab and token[i:] in vocab]
        splits.sort(key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
        candidates.extend((left, right, score) for left, right in splits)
    candidates.sort(key=lambda c: (c[2], len(c[0]), len(c[1])), reverse=True)
    return [(left, right) for left, right, _ in candidates]


def _add_special_tokens(tokenizer, tokens: list[str], types: np.ndarray | None) -> None:
    """Control and unknown tokens as special added tokens, user-defined ones as plain added tokens:
    both are matched whole in the text, as llama.cpp does."""
    from tokenizers import AddedToken

    if types is None:
        return
    special = [AddedToken(tokens[i], special=True, normalized=False)
               for i in np.flatnonzero((types == _CONTROL) | (types == _UNKNOWN))]
    user = [AddedToken(tokens[i], special=False, normalized=False)
            for i in np.flatnonzero(types == _USER_DEFINED)]
    if special:
        tokenizer.add_special_tokens(special)
    if user:
        tokenizer.add_tokens(user)


def _set_post_processor(meta: _Metadata, tokenizer, tokens: list[str], config: LlamaConfig,
                        bos_default: bool) -> None:
    """Prepend BOS (tokenizer.ggml.add_bos_token) and append EOS (add_eos_token) on encode."""
    from tokenizers import processors

    bos = _end_token(meta, "bos", bos_default, config.bos_token_id, tokens)
    eos = _end_token(meta, "eos", False, config.eos_token_ids[0] if config.eos_token_ids else None, tokens)
    if bos is None and eos is None:
        return
    single = ([f"{bos[0]}:0"] if bos else []) + ["$A:0"] + ([f"{eos[0]}:0"] if eos else [])
    pair = single + ([f"{bos[0]}:1"] if bos else []) + ["$B:1"] + ([f"{eos[0]}:1"] if eos else [])
    ends = sorted({end for end in (bos, eos) if end is not None})
    try:
        tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=ends)
    except Exception as exc:  # a token the template syntax cannot spell (it contains ':' or a space)
        raise meta.error("tokenizer.ggml.tokens", f"has BOS/EOS token(s) {[end[0] for end in ends]} that a "
                                                  f"TemplateProcessing post-processor cannot use ({exc})") from None


def _end_token(meta: _Metadata, side: str, default: bool, token_id: int | None,
               tokens: list[str]) -> tuple[str, int] | None:
    """(text, id) of the BOS or EOS token when tokenizer.ggml.add_{side}_token says to add it."""
    key = f"tokenizer.ggml.add_{side}_token"
    if not meta.boolean(key, default=default):
        return None
    if token_id is None or token_id >= len(tokens):
        found = "missing" if token_id is None else f"{token_id}, beyond the {len(tokens)} tokens"
        raise meta.error(key, f"is true but tokenizer.ggml.{side}_token_id is {found}")
    return tokens[token_id], token_id
