"""Hugging Face LLaMA checkpoints: find, read and validate them; float32 weights in HF names.

A checkpoint is a directory with config.json, the weights as one ``model.safetensors`` or as
shards listed in ``model.safetensors.index.json`` (stored F32, F16 or BF16; all widened exactly
to float32), and optionally ``tokenizer.json`` and a chat template (``tokenizer_config.json``'s
"chat_template" string, else ``chat_template.jinja``). ``load_checkpoint`` takes such a
directory, a Hub id, which huggingface_hub resolves (from its cache alone when HF_HUB_OFFLINE is
set), or a llama.cpp GGUF file (any file starting with the magic b"GGUF"; see
:mod:`ilsim.hf.gguf_file`), which yields the same Checkpoint in HF names and layout.

Validation, each failure a CheckpointError naming the file and tensor: every tensor the config
implies is present with the shape it implies; no unknown tensor (it would be silently ignored,
e.g. a bias); every value finite. Tied embeddings (tie_word_embeddings true) have no
``lm_head.weight``; a file that stores one anyway is accepted only if it equals the embedding.
Untied ones must have it. Weights keep HF's orientation: a linear layer is [out, in].
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilsim.hf.config import LlamaConfig
from ilsim.hf.safetensors_file import CheckpointError, read_tensors, write_safetensors

__all__ = ["Checkpoint", "CheckpointError", "LayerWeights", "LlamaConfig", "expected_shapes",
           "is_gguf_file", "load_checkpoint", "save_checkpoint", "resolve_directory"]

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
#: The first four bytes of every GGUF file.
GGUF_MAGIC = b"GGUF"
#: The GGUF metadata key that names the tokenizer; a file without it carries none.
GGUF_TOKENIZER_KEY = "tokenizer.ggml.model"
#: What is fetched from the Hub: config, safetensors weights and tokenizer (never *.bin).
HUB_PATTERNS = [CONFIG_FILE, "*.safetensors", INDEX_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE,
                CHAT_TEMPLATE_FILE, "special_tokens_map.json", "generation_config.json"]
#: Non-persistent buffers some older exports saved; they carry nothing the config does not.
IGNORED_TENSOR = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

LAYER_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
LAYER_NORMS = ("input_layernorm", "post_attention_layernorm")


@dataclass(frozen=True)
class LayerWeights:
    """One decoder layer's float32 weights; linears are [out_features, in_features] as in HF."""
    index: int
    q_proj: np.ndarray      # [heads * head_dim, hidden]
    k_proj: np.ndarray      # [kv_heads * head_dim, hidden]
    v_proj: np.ndarray      # [kv_heads * head_dim, hidden]
    o_proj: np.ndarray      # [hidden, heads * head_dim]
    gate_proj: np.ndarray   # [intermediate, hidden]
    up_proj: np.ndarray     # [intermediate, hidden]
    down_proj: np.ndarray   # [hidden, intermediate]
    input_layernorm: np.ndarray           # [hidden], gain of the norm before attention
    post_attention_layernorm: np.ndarray  # [hidden], gain of the norm before the MLP


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint: config, float32 weights under their HF names, and where it lives.

    ``directory`` is the checkpoint directory, or for a GGUF checkpoint the .gguf file itself
    (``source`` says the same under a name that fits both; ``file_format`` is "safetensors" or
    "gguf", and ``is_gguf`` tells them apart).
    ``tokenizer_json`` is the tokenizer as tokenizer.json text: the directory's file, or the one
    built from the GGUF metadata; None when there is none (``require_tokenizer_json`` raises).
    ``tokenizer_path`` is the directory's tokenizer.json, None for GGUF files. ``source_dtypes``
    holds the stored dtype of each tensor: safetensors F32/F16/BF16, or a GGML type name (F32,
    F16, BF16, Q8_0, Q4_0, Q4_1, ...) for GGUF.
    """
    config: LlamaConfig
    weights: dict[str, np.ndarray]
    tokenizer_path: Path | None
    directory: Path
    source_dtypes: dict[str, str]  # tensor name -> stored dtype (safetensors or GGML type name)
    tokenizer_json: str | None = None
    chat_template: str | None = None  # the Jinja chat template, as text, when the model has one
    file_format: str = "safetensors"  # or "gguf"

    @property
    def source(self) -> Path:
        """Where the checkpoint was loaded from: its directory, or its .gguf file."""
        return self.directory

    @property
    def is_gguf(self) -> bool:
        """True when the checkpoint was read from a GGUF file."""
        return self.file_format == "gguf"

    def require_tokenizer_json(self, purpose: str = "") -> str:
        """``tokenizer_json``, or a CheckpointError naming the file (and for GGUF the metadata key
        ``tokenizer.ggml.model``) that should have held it; ``purpose`` says why it is needed."""
        if self.tokenizer_json is not None:
            return self.tokenizer_json
        if self.is_gguf:
            missing = f"no tokenizer (the GGUF metadata has no {GGUF_TOKENIZER_KEY!r} key)"
        else:
            missing = f"no tokenizer ({TOKENIZER_FILE} is missing)"
        raise CheckpointError(f"{self.directory}: {missing}" + (f"; {purpose}" if purpose else ""))

    def layer(self, index: int) -> LayerWeights:
        """The weights of decoder layer ``index`` (0-based)."""
        if not 0 <= index < self.config.num_hidden_layers:
            raise IndexError(f"layer {index} out of range: the model has {self.config.num_hidden_layers}")
        prefix = f"model.layers.{index}."
        linears = {name.split(".")[1]: self.weights[f"{prefix}{name}.weight"] for name in LAYER_LINEARS}
        norms = {name: self.weights[f"{prefix}{name}.weight"] for name in LAYER_NORMS}
        return LayerWeights(index=index, **linears, **norms)

    @property
    def embed_tokens(self) -> np.ndarray:
        """[vocab, hidden] token embedding table."""
        return self.weights["model.embed_tokens.weight"]

    @property
    def final_norm(self) -> np.ndarray:
        """[hidden] gain of the norm after the last layer."""
        return self.weights["model.norm.weight"]

    @property
    def lm_head(self) -> np.ndarray:
        """[vocab, hidden] output projection; the embedding table itself when tied."""
        if self.config.tie_word_embeddings:
            return self.embed_tokens
        return self.weights["lm_head.weight"]


#: the name of a decoder layer's tensor, its index captured
_LAYER_NAME = re.compile(r"model\.layers\.(\d+)\.")


def expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name the checkpoint of ``config`` must hold, with its shape."""
    hidden, inter = config.hidden_size, config.intermediate_size
    q_width = config.num_attention_heads * config.head_dim
    kv_width = config.num_key_value_heads * config.head_dim
    per_layer = {"self_attn.q_proj": (q_width, hidden), "self_attn.k_proj": (kv_width, hidden),
                 "self_attn.v_proj": (kv_width, hidden), "self_attn.o_proj": (hidden, q_width),
                 "mlp.gate_proj": (inter, hidden), "mlp.up_proj": (inter, hidden),
                 "mlp.down_proj": (hidden, inter), "input_layernorm": (hidden,),
                 "post_attention_layernorm": (hidden,)}
    shapes = {"model.embed_tokens.weight": (config.vocab_size, hidden)}
    for i in range(config.num_hidden_layers):
        shapes.update({f"model.layers.{i}.{name}.weight": shape for name, shape in per_layer.items()})
    shapes["model.norm.weight"] = (hidden,)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (config.vocab_size, hidden)
    return shapes


def load_checkpoint(source: str | os.PathLike, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> Checkpoint:
    """Load and validate a checkpoint from a local directory, a GGUF file or a Hugging Face Hub id."""
    directory = resolve_directory(source, revision=revision, cache_dir=cache_dir)
    if is_gguf_file(directory):
        from ilsim.hf.gguf_file import load_gguf

        return load_gguf(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE} (not a Hugging Face checkpoint directory)")
    config = LlamaConfig.from_file(config_path)
    weights, dtypes, files = _read_weight_files(directory)
    _drop_ignored_and_tied_copies(config, weights, files)
    _check_tensor_names(config, weights, files, directory)
    _check_shapes_and_values(config, weights, files)
    tokenizer = directory / TOKENIZER_FILE
    tokenizer_path = tokenizer if tokenizer.is_file() else None
    return Checkpoint(config, weights, tokenizer_path, directory, {name: dtypes[name] for name in weights},
                      tokenizer_json=_read_text(tokenizer_path) if tokenizer_path else None,
                      chat_template=_read_chat_template(directory))


def is_gguf_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a readable file that starts with the GGUF magic b"GGUF"."""
    try:
        with open(path, "rb") as f:
            return f.read(len(GGUF_MAGIC)) == GGUF_MAGIC
    except OSError:  # a directory, a missing or unreadable path: not a GGUF file
        return False


def resolve_directory(source: str | os.PathLike, *, revision: str | None = None,
                      cache_dir: str | os.PathLike | None = None) -> Path:
    """A local directory or GGUF file as is; otherwise a Hub id, downloaded (or found in the cache)
    by snapshot."""
    path = Path(source).expanduser()
    if path.is_dir() or (path.is_file() and is_gguf_file(path)):
        return path
    if path.exists():
        raise CheckpointError(f"{path}: is a file; expected a checkpoint directory holding {CONFIG_FILE} "
                              f"or a GGUF file (starting with {GGUF_MAGIC!r})")
    if not _HUB_ID.fullmatch(str(source)):
        raise CheckpointError(f"{source}: no such directory (and not a Hugging Face Hub id)")
    return _snapshot_from_hub(str(source), revision, cache_dir)


def _snapshot_from_hub(repo_id: str, revision: str | None, cache_dir) -> Path:
    from huggingface_hub import snapshot_download

    offline = _hub_offline()
    try:
        return Path(snapshot_download(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                                      allow_patterns=HUB_PATTERNS, local_files_only=offline))
    except Exception as exc:  # the hub raises many unrelated classes (HTTP, validation, cache misses)
        where = ("offline (HF_HUB_OFFLINE is set), so only the local Hugging Face cache was searched"
                 if offline else "online")
        raise CheckpointError(f"{repo_id}: not a local directory, and resolving it as a Hugging Face Hub "
                              f"id failed {where}: {type(exc).__name__}: {exc}") from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read ({exc})") from None


def _read_chat_template(directory: Path) -> str | None:
    """tokenizer_config.json's "chat_template" when it is a string, else chat_template.jinja, else None.
    (A list of named templates, which some repositories hold, is not a single template: None.)"""
    config_path = directory / TOKENIZER_CONFIG_FILE
    if config_path.is_file():
        try:
            template = json.loads(_read_text(config_path)).get("chat_template")
        except (ValueError, AttributeError) as exc:
            raise CheckpointError(f"{config_path}: not a JSON object ({type(exc).__name__}: {exc})") from None
        if isinstance(template, str):
            return template
    jinja = directory / CHAT_TEMPLATE_FILE
    return _read_text(jinja) if jinja.is_file() else None


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return flag or bool(constants.HF_HUB_OFFLINE)


def _read_weight_files(directory: Path):
    """(weights, dtype per tensor, file per tensor) from model.safetensors or the sharded index."""
    single, index = directory / SINGLE_FILE, directory / INDEX_FILE
    if single.is_file():
        shards = {single: None}
    elif index.is_file():
        shards = _shards_from_index(index)
    else:
        raise CheckpointError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE} (only safetensors "
                              "checkpoints are supported; convert *.bin with save_pretrained("
                              "safe_serialization=True))")
    weights, dtypes, files = {}, {}, {}
    for path, names in shards.items():
        tensors, stored = read_tensors(path, names)
        for name in tensors:
            if name in weights:
                raise CheckpointError(f"{path}: tensor {name!r} also appears in {files[name]}")
            files[name] = path
        weights.update(tensors)
        dtypes.update(stored)
    return weights, dtypes, files


def _shards_from_index(index: Path) -> dict[Path, list[str]]:
    """Shard file -> the tensor names the index assigns to it."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: corrupt shard index ({type(exc).__name__}: {exc})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: weight_map must be a non-empty object")
    shards: dict[Path, list[str]] = {}
    for name, file_name in weight_map.items():
        shard = index.parent / str(file_name)
        if Path(str(file_name)).name != file_name or not shard.is_file():
            raise CheckpointError(f"{index}: shard {file_name!r} (holding tensor {name!r}) does not exist")
        shards.setdefault(shard, []).append(name)
    return shards


def _drop_ignored_and_tied_copies(config: LlamaConfig, weights: dict, files: dict) -> None:
    for name in [n for n in weights if IGNORED_TENSOR.fullmatch(n)]:
        del weights[name]
    if config.tie_word_embeddings and "lm_head.weight" in weights:
        embed = weights.get("model.embed_tokens.weight")
        if embed is None or not np.array_equal(weights["lm_head.weight"], embed):
            raise CheckpointError(f"{files['lm_head.weight']}: tensor 'lm_head.weight' is present and "
                                  "differs from model.embed_tokens.weight, but config.json says "
                                  "tie_word_embeddings=true")
        del weights["lm_head.weight"]


# The checks below name each tensor by ``labels[name]`` when given (a GGUF file's own tensor name
# beside the HF one), else by its HF name; ``config_name`` is what the shapes were derived from.

def _check_tensor_names(config: LlamaConfig, weights: dict, files: dict, directory: Path,
                        labels: dict[str, str] | None = None, config_name: str = CONFIG_FILE) -> None:
    """Every tensor ``config`` implies is a key of ``weights`` and no other is. The layer count is
    compared first, so a config that implies absurd sizes (10^6 layers) costs nothing to refuse."""
    layers = {int(m.group(1)) for m in map(_LAYER_NAME.match, weights) if m}
    stored = max(layers) + 1 if layers else 0
    if config.num_hidden_layers > stored + 1:
        raise CheckpointError(f"{directory}: {config_name} says num_hidden_layers={config.num_hidden_layers}, but "
                              f"the checkpoint holds tensors of {stored} layer(s)")
    expected = expected_shapes(config)
    missing = [name for name in expected if name not in weights]
    if missing:
        hint = (f" ({config_name} says tie_word_embeddings=false, so the checkpoint needs its own lm_head)"
                if missing == ["lm_head.weight"] else "")
        raise CheckpointError(f"{directory}: missing tensor(s) {_name_list(missing, labels)}{hint}")
    unexpected = [name for name in weights if name not in expected]
    if unexpected:
        raise CheckpointError(f"{files[unexpected[0]]}: unexpected tensor(s) {_name_list(unexpected, labels)} "
                              f"for a LLaMA model with {config.num_hidden_layers} layers "
                              "(loading would silently ignore them)")


def _check_shapes(config: LlamaConfig, shapes: dict[str, tuple[int, ...]], files: dict,
                  labels: dict[str, str] | None = None, config_name: str = CONFIG_FILE) -> None:
    """``shapes[name]`` (every name ``config`` implies) is the shape ``config`` implies."""
    for name, shape in expected_shapes(config).items():
        if tuple(shapes[name]) != shape:
            raise CheckpointError(f"{files[name]}: tensor {_label(name, labels)} has shape "
                                  f"{list(shapes[name])}, but {config_name} implies {list(shape)}")


#: the largest weight magnitude accepted: 2^60, far beyond any trained model's, and small enough
#: that the exporter's float arithmetic (squares and sums of weights, in float32 or float64) cannot
#: overflow -- above it a corrupt or hostile value would turn into Inf and NaN without a name
MAX_ABS_WEIGHT = 2.0 ** 60


def _check_finite(name: str, tensor: np.ndarray, file, labels: dict[str, str] | None = None) -> None:
    """Every value of ``tensor`` is finite and at most MAX_ABS_WEIGHT in magnitude; the error gives
    the count and the first bad index."""
    finite = np.isfinite(tensor)
    if not finite.all():
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise CheckpointError(f"{file}: tensor {_label(name, labels)} has {int((~finite).sum())} non-finite "
                              f"value(s) (NaN/Inf), first at {list(first)} = {tensor[first]}")
    huge = np.abs(tensor) > MAX_ABS_WEIGHT
    if huge.any():
        first = tuple(int(i) for i in np.argwhere(huge)[0])
        raise CheckpointError(f"{file}: tensor {_label(name, labels)} has {int(huge.sum())} value(s) above 2^60 "
                              f"in magnitude, first at {list(first)} = {tensor[first]:.6g} (not a trained weight)")


def _check_shapes_and_values(config: LlamaConfig, weights: dict, files: dict) -> None:
    _check_shapes(config, {name: tensor.shape for name, tensor in weights.items()}, files)
    for name in expected_shapes(config):
        _check_finite(name, weights[name], files[name])


def _label(name: str, labels: dict[str, str] | None) -> str:
    return labels[name] if labels and name in labels else repr(name)


def _name_list(names: list[str], labels: dict[str, str] | None = None, limit: int = 5) -> str:
    shown = ", ".join(_label(n, labels) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def save_checkpoint(directory: str | os.PathLike, config: LlamaConfig, weights: dict[str, np.ndarray],
                    dtype: str = "F32", max_shard_tensors: int | None = None) -> Path:
    """Write ``config`` and ``weights`` as an HF checkpoint (config.json + safetensors); return the dir.

    ``dtype`` is the stored dtype (F32, F16, BF16; narrowing rounds to nearest even).
    ``max_shard_tensors`` splits the weights into shards of at most that many tensors, with an index.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n", encoding="utf-8")
    names = sorted(weights)
    if max_shard_tensors is None:
        write_safetensors(directory / SINGLE_FILE, weights, dtype)
        return directory
    groups = [names[i:i + max_shard_tensors] for i in range(0, len(names), max_shard_tensors)]
    weight_map = {}
    for number, group in enumerate(groups, start=1):
        file_name = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(directory / file_name, {n: weights[n] for n in group}, dtype)
        weight_map.update({n: file_name for n in group})
    index = {"metadata": {}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return directory
