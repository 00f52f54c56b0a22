"""Random LLaMA weights for tests and examples (no torch needed).

Scaled so activations stay of order one through the layers (linear weights ~ N(0, 1/fan_in),
embeddings ~ N(0, 1), norm gains ~ 1 + N(0, 0.1^2)); attention is then far from uniform, so a
wrong RoPE, mask or head mapping changes the logits visibly, unlike HF's 0.02 initialisation.
"""

from __future__ import annotations

import numpy as np

from ilsim.hf.checkpoint import expected_shapes
from ilsim.hf.config import LlamaConfig


def random_llama_weights(config: LlamaConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 weights under HF names for ``config``, drawn from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, shape in expected_shapes(config).items():
        if len(shape) == 1:
            values = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "model.embed_tokens.weight":
            values = rng.standard_normal(shape)
        else:
            values = rng.standard_normal(shape) / np.sqrt(shape[1])
        weights[name] = values.astype(np.float32)
    return weights
