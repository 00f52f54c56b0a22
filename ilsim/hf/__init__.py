"""Hugging Face LLaMA checkpoints (offline, float side): config, safetensors, validated loading.

    LlamaConfig        the supported architecture, parsed and validated from config.json
    load_checkpoint    a local directory or Hub id -> Checkpoint (float32 weights, HF names)
    Checkpoint.layer   one decoder layer's weights as a LayerWeights
    save_checkpoint    write a checkpoint (F32/F16/BF16, single or sharded)
"""

from ilsim.hf.checkpoint import (Checkpoint, LayerWeights, expected_shapes, load_checkpoint,
                                 resolve_directory, save_checkpoint)
from ilsim.hf.config import LlamaConfig
from ilsim.hf.safetensors_file import CheckpointError
from ilsim.hf.synthetic import random_llama_weights

__all__ = ["Checkpoint", "CheckpointError", "LayerWeights", "LlamaConfig", "expected_shapes",
           "load_checkpoint", "random_llama_weights", "resolve_directory", "save_checkpoint"]
