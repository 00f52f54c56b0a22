"""A LLaMA checkpoint in memory, whatever file it came from: float32 weights in HF names and
layout (LayerWeights, Checkpoint), the shapes a config implies, and the checks every reader runs
(tensor names, shapes, finite values), each failure a CheckpointError naming the file and tensor.
The readers are checkpoint.py (HF folders and the hub) and gguf_file.py (llama.cpp files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilsim.hf.config import LlamaConfig
from ilsim.hf.safetensors_file import CheckpointError

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
GGUF_MAGIC = b"GGUF"
#: The GGUF metadata key that names the tokenizer; a file without it carries none.
GGUF_TOKENIZER_KEY = "tokenizer.ggml.model"
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


