"""The LLaMA architecture parameters ilsim supports, parsed from a Hugging Face config.json.

Supported: model_type "llama" (architectures, when given, ["LlamaForCausalLM"]), SiLU gated MLP,
plain RoPE (rope_scaling null, or transformers >= 5's rope_parameters with rope_type "default"),
no attention or MLP biases, grouped-query attention. Anything else raises CheckpointError naming
config.json, the key and its value, rather than loading a model that would compute something else.
Keys absent from the file take transformers' LlamaConfig defaults, except the five sizes, which
must be present.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ilsim.hf.safetensors_file import CheckpointError

SUPPORTED_MODEL_TYPE = "llama"
SUPPORTED_ARCHITECTURE = "LlamaForCausalLM"
_REQUIRED_SIZES = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads")


@dataclass(frozen=True)
class LlamaConfig:
    """Shape and constants of a LLaMA model. ``head_dim`` = hidden_size // heads when not given."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_ids: tuple[int, ...] = (2,)
    hidden_act: str = "silu"

    @property
    def kv_group_size(self) -> int:
        """Query heads per key/value head (1 = multi-head attention)."""
        return self.num_attention_heads // self.num_key_value_heads

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "LlamaConfig":
        """Read and validate ``path`` (a config.json)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read config ({exc.strerror})") from None
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise CheckpointError(f"{path}: expected a JSON object, got {type(raw).__name__}")
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict, source: str = "config.json") -> "LlamaConfig":
        """Validate a config.json dictionary; errors name ``source``, the key and its value."""
        _check_architecture(raw, source)
        _check_unsupported_features(raw, source)
        sizes = {key: _positive_int(raw, key, source) for key in _REQUIRED_SIZES}
        kv_heads = _positive_int(raw, "num_key_value_heads", source, default=sizes["num_attention_heads"])
        head_dim = _head_dim(raw, sizes, source)
        if sizes["num_attention_heads"] % kv_heads:
            raise CheckpointError(f"{source}: num_attention_heads={sizes['num_attention_heads']} is not a "
                                  f"multiple of num_key_value_heads={kv_heads}")
        return cls(**sizes, num_key_value_heads=kv_heads, head_dim=head_dim,
                   rms_norm_eps=_positive_float(raw, "rms_norm_eps", source, 1e-6),
                   rope_theta=_rope_theta(raw, source),
                   max_position_embeddings=_positive_int(raw, "max_position_embeddings", source, 2048),
                   tie_word_embeddings=_bool(raw, "tie_word_embeddings", source, False),
                   bos_token_id=_bos_token_id(raw, source),
                   eos_token_ids=_eos_token_ids(raw, source),
                   hidden_act="silu")

    def to_hf_dict(self) -> dict:
        """A config.json dictionary that transformers' LlamaConfig reads back to the same model."""
        fields = asdict(self)
        eos = fields.pop("eos_token_ids")
        return {"architectures": [SUPPORTED_ARCHITECTURE], "model_type": SUPPORTED_MODEL_TYPE, **fields,
                "eos_token_id": eos[0] if len(eos) == 1 else list(eos) if eos else None,
                "rope_scaling": None, "attention_bias": False, "mlp_bias": False}


def _check_architecture(raw: dict, source: str) -> None:
    model_type = raw.get("model_type")
    if model_type != SUPPORTED_MODEL_TYPE:
        raise CheckpointError(f"{source}: model_type {model_type!r} is not supported "
                              f"(ilsim loads {SUPPORTED_MODEL_TYPE!r} checkpoints only)")
    architectures = raw.get("architectures")
    if architectures is not None and architectures != [SUPPORTED_ARCHITECTURE]:
        raise CheckpointError(f"{source}: architectures {architectures!r} is not supported "
                              f"(expected [{SUPPORTED_ARCHITECTURE!r}])")


def _check_unsupported_features(raw: dict, source: str) -> None:
    """Reject settings that change the computation in ways the float and integer models lack."""
    if raw.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{source}: hidden_act {raw['hidden_act']!r} is not supported (only 'silu')")
    if raw.get("rope_scaling") is not None:
        raise CheckpointError(f"{source}: rope_scaling {raw['rope_scaling']!r} is not supported "
                              "(only plain RoPE: rope_scaling null)")
    for key in ("attention_bias", "mlp_bias"):
        if raw.get(key, False):
            raise CheckpointError(f"{source}: {key}={raw[key]!r} is not supported (LLaMA has no biases)")


def _rope_theta(raw: dict, source: str) -> float:
    """rope_theta from transformers >= 5's rope_parameters, else the top-level key (default 1e4)."""
    params = raw.get("rope_parameters")
    if params is None:
        return _positive_float(raw, "rope_theta", source, 10000.0)
    if not isinstance(params, dict):
        raise CheckpointError(f"{source}: rope_parameters {params!r} is not an object")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise CheckpointError(f"{source}: rope_parameters.rope_type {rope_type!r} is not supported "
                              "(only 'default', plain RoPE)")
    theta = _positive_float(params, "rope_theta", f"{source} rope_parameters", 10000.0)
    if "rope_theta" in raw and raw["rope_theta"] != theta:
        raise CheckpointError(f"{source}: rope_theta={raw['rope_theta']!r} disagrees with "
                              f"rope_parameters.rope_theta={theta!r}")
    return theta


def _head_dim(raw: dict, sizes: dict, source: str) -> int:
    heads, hidden = sizes["num_attention_heads"], sizes["hidden_size"]
    if raw.get("head_dim") is not None:
        head_dim = _positive_int(raw, "head_dim", source)
    elif hidden % heads:
        raise CheckpointError(f"{source}: hidden_size={hidden} is not divisible by "
                              f"num_attention_heads={heads} and head_dim is not given")
    else:
        head_dim = hidden // heads
    if head_dim % 2:
        raise CheckpointError(f"{source}: head_dim={head_dim} is odd; RoPE rotates pairs of channels")
    return head_dim


def _positive_int(raw: dict, key: str, source: str, default: int | None = None) -> int:
    if key not in raw or raw[key] is None:
        if default is None:
            raise CheckpointError(f"{source}: required key {key!r} is missing")
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise CheckpointError(f"{source}: {key}={value!r} must be a positive integer")
    return value


def _positive_float(raw: dict, key: str, source: str, default: float) -> float:
    value = raw.get(key, default)
    if value is None:
        value = default
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (is_number and math.isfinite(value) and value > 0):
        raise CheckpointError(f"{source}: {key}={value!r} must be a positive finite number")
    return float(value)


def _bool(raw: dict, key: str, source: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise CheckpointError(f"{source}: {key}={value!r} must be true or false")
    return value


def _bos_token_id(raw: dict, source: str) -> int | None:
    value = raw.get("bos_token_id", 1)
    if value is not None and not _is_token_id(value):
        raise CheckpointError(f"{source}: bos_token_id={value!r} must be a token id or null")
    return value


def _eos_token_ids(raw: dict, source: str) -> tuple[int, ...]:
    """eos_token_id as a tuple: one id, a list of ids (LLaMA 3), or () when null."""
    value = raw.get("eos_token_id", 2)
    ids = [] if value is None else value if isinstance(value, list) else [value]
    if not all(_is_token_id(i) for i in ids):
        raise CheckpointError(f"{source}: eos_token_id={value!r} must be a token id, a list of them, or null")
    return tuple(ids)


def _is_token_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
