"""Hugging Face LLaMA checkpoints (offline, float side): config, safetensors, validated loading.

    LlamaConfig        the supported architecture, parsed and validated from config.json
    load_checkpoint    a local directory, GGUF file or Hub id -> Checkpoint (float32 weights, HF names)
    load_gguf          a llama.cpp GGUF file -> Checkpoint (dequantized, tokenizer from its metadata)
    is_gguf_file       whether a path is a GGUF file (starts with b"GGUF")
    Checkpoint.layer   one decoder layer's weights as a LayerWeights
    Checkpoint.require_tokenizer_json   the tokenizer.json text, or a CheckpointError saying where it is missing
    save_checkpoint    write a checkpoint (F32/F16/BF16, single or sharded)
"""

from ilsim.hf.checkpoint import (Checkpoint, LayerWeights, expected_shapes, is_gguf_file, load_checkpoint,
                                 resolve_directory, save_checkpoint)
from ilsim.hf.config import LlamaConfig
from ilsim.hf.gguf_file import load_gguf
from ilsim.hf.safetensors_file import CheckpointError
from ilsim.hf.synthetic import random_llama_weights

__all__ = ["Checkpoint", "CheckpointError", "LayerWeights", "LlamaConfig", "expected_shapes", "is_gguf_file",
           "load_checkpoint", "load_gguf", "random_llama_weights", "resolve_directory", "save_checkpoint"]
