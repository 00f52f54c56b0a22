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
from pathlib import Path

import numpy as np

from ilsim.hf.config import LlamaConfig
from ilsim.hf.gguf_file import is_gguf_file, load_gguf
from ilsim.hf.safetensors_file import CheckpointError, read_tensors, write_safetensors
from ilsim.hf.weights import (CONFIG_FILE, GGUF_MAGIC, TOKENIZER_FILE, Checkpoint, LayerWeights,
                              _check_shapes_and_values, _check_tensor_names, expected_shapes)

__all__ = ["Checkpoint", "CheckpointError", "LayerWeights", "LlamaConfig", "expected_shapes",
           "is_gguf_file", "load_checkpoint", "save_checkpoint", "resolve_directory"]

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
#: The first four bytes of every GGUF file.
#: What is fetched from the Hub: config, safetensors weights and tokenizer (never *.bin).
HUB_PATTERNS = [CONFIG_FILE, "*.safetensors", INDEX_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE,
                CHAT_TEMPLATE_FILE, "special_tokens_map.json", "generation_config.json"]
#: Non-persistent buffers some older exports saved; they carry nothing the config does not.
IGNORED_TENSOR = re.compile(r"model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

def load_checkpoint(source: str | os.PathLike, *, revision: str | None = None,
                    cache_dir: str | os.PathLike | None = None) -> Checkpoint:
    """Load and validate a checkpoint from a local directory, a GGUF file or a Hugging Face Hub id."""
    directory = resolve_directory(source, revision=revision, cache_dir=cache_dir)
    if is_gguf_file(directory):

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
