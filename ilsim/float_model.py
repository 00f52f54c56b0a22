"""A NumPy float LLaMA: the reference the integer model is calibrated against and compared with.

It computes what transformers' LlamaForCausalLM computes (eager attention), in float32 by default
or float64, with one forward written top to bottom like llama2.c's run.c:

    x = embed[ids]
    per layer:  h = RMSNorm(x) ; q, k, v = h Wq^T, h Wk^T, h Wv^T ; RoPE(q, k) (rotate_half)
                x += o_proj(causal softmax(q k^T / sqrt(head_dim)) v)   (GQA, KV cache)
                h = RMSNorm(x) ; x += down_proj(silu(gate_proj(h)) * up_proj(h))
    logits = RMSNorm(x) lm_head^T      (lm_head = embed when tied)

Capture points: ``forward(..., hook=fn)`` calls ``fn(name, array)`` at each point below, in this
order, with arrays it must not modify (copy to keep them; :class:`Recorder` does). ``{i}`` is the
layer; T is the number of tokens in this call, S the cached plus new positions.

    model.layers.{i}.input_layernorm.input            [T, hidden]   residual stream into the layer
    model.layers.{i}.self_attn.{q,k,v}_proj.input     [T, hidden]   (one array, three names)
    model.layers.{i}.self_attn.q_rope.output          [heads, T, head_dim]     q after RoPE
    model.layers.{i}.self_attn.k_rope.output          [kv_heads, T, head_dim]  k after RoPE
    model.layers.{i}.self_attn.v_proj.output          [kv_heads, T, head_dim]
    model.layers.{i}.self_attn.scores.output          [heads, T, S]  q k^T / sqrt(head_dim), -inf masked
    model.layers.{i}.self_attn.probs.output           [heads, T, S]  softmax of the scores
    model.layers.{i}.self_attn.o_proj.input           [T, heads * head_dim]
    model.layers.{i}.post_attention_layernorm.input   [T, hidden]
    model.layers.{i}.mlp.{gate,up}_proj.input         [T, hidden]   (one array, two names)
    model.layers.{i}.mlp.{gate,up}_proj.output        [T, intermediate]
    model.layers.{i}.mlp.down_proj.input              [T, intermediate]  silu(gate) * up
    model.norm.input                                  [T, hidden]
    lm_head.input                                     [T, hidden]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Callable, Protocol

import numpy as np

from ilsim.errors import InputError
from ilsim.hf.checkpoint import Checkpoint, LayerWeights

Hook = Callable[[str, np.ndarray], None]

_LAYER_POINTS = ("input_layernorm.input", "self_attn.q_proj.input", "self_attn.k_proj.input",
                 "self_attn.v_proj.input", "self_attn.q_rope.output", "self_attn.k_rope.output",
                 "self_attn.v_proj.output", "self_attn.scores.output", "self_attn.probs.output",
                 "self_attn.o_proj.input", "post_attention_layernorm.input", "mlp.gate_proj.input",
                 "mlp.up_proj.input", "mlp.gate_proj.output", "mlp.up_proj.output", "mlp.down_proj.input")


def capture_point_names(num_layers: int) -> list[str]:
    """Every name a forward passes to its hook, in the order it passes them."""
    names = [f"model.layers.{i}.{point}" for i in range(num_layers) for point in _LAYER_POINTS]
    return names + ["model.norm.input", "lm_head.input"]


class Recorder:
    """A hook that keeps a copy of each captured array whose name matches a pattern (fnmatch)."""

    def __init__(self, *patterns: str):
        self.patterns = patterns or ("*",)
        self.records: dict[str, list[np.ndarray]] = {}

    def __call__(self, name: str, value: np.ndarray) -> None:
        if any(fnmatchcase(name, pattern) for pattern in self.patterns):
            self.records.setdefault(name, []).append(np.array(value, copy=True))


def _no_hook(name: str, value: np.ndarray) -> None:
    pass


class KVCache:
    """Keys and values after RoPE, per layer [kv_heads, capacity, head_dim]; ``length`` are valid.

    Capacity grows by doubling. A forward writes its T positions at [length, length + T) in every
    layer, then advances ``length`` once at the end.
    """

    def __init__(self, num_layers: int, kv_heads: int, head_dim: int, dtype, capacity: int = 64):
        self.length = 0
        self.keys = [np.zeros((kv_heads, capacity, head_dim), dtype) for _ in range(num_layers)]
        self.values = [np.zeros((kv_heads, capacity, head_dim), dtype) for _ in range(num_layers)]

    def append(self, layer: int, keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store [kv_heads, T, head_dim] at the current length; return the [kv_heads, length+T, d] views."""
        end = self.length + keys.shape[1]
        if end > self.keys[layer].shape[1]:
            self._grow(layer, end)
        self.keys[layer][:, self.length:end] = keys
        self.values[layer][:, self.length:end] = values
        return self.keys[layer][:, :end], self.values[layer][:, :end]

    def _grow(self, layer: int, needed: int) -> None:
        kv_heads, capacity, head_dim = self.keys[layer].shape
        new_capacity = max(needed, 2 * capacity)
        for store in (self.keys, self.values):
            grown = np.zeros((kv_heads, new_capacity, head_dim), store[layer].dtype)
            grown[:, :capacity] = store[layer]
            store[layer] = grown


class FloatLlama:
    """The float forward of a checkpoint. ``dtype`` is np.float32 (default) or np.float64."""

    def __init__(self, checkpoint: Checkpoint, dtype=np.float32):
        if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InputError(f"FloatLlama: dtype {np.dtype(dtype)} is not supported (float32 or float64)")
        self.config = checkpoint.config
        self.dtype = np.dtype(dtype)
        # Weights are shared with the checkpoint in float32, converted once for float64.
        self.embed_tokens = _as_dtype(checkpoint.embed_tokens, self.dtype)
        layer_count = self.config.num_hidden_layers
        self.layers = [_cast_layer(checkpoint.layer(i), self.dtype) for i in range(layer_count)]
        self.final_norm = _as_dtype(checkpoint.final_norm, self.dtype)
        tied = self.config.tie_word_embeddings
        self.lm_head = self.embed_tokens if tied else _as_dtype(checkpoint.lm_head, self.dtype)
        head_dim = self.config.head_dim
        exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
        self.inv_freq = 1.0 / self.config.rope_theta ** exponents  # theta^(-2j/d), float64

    def new_cache(self) -> KVCache:
        """An empty KV cache for this model."""
        c = self.config
        return KVCache(c.num_hidden_layers, c.num_key_value_heads, c.head_dim, self.dtype)

    def forward(self, ids, cache: KVCache | None = None, hook: Hook | None = None,
                logits: str = "all") -> np.ndarray:
        """Logits [T, vocab] for token ids [T], continuing ``cache`` (and extending it) when given;
        ``logits="last"``: the last token's only ([1, vocab]), as generation needs."""
        if logits not in ("all", "last"):
            raise InputError(f"forward: logits must be 'all' or 'last', got {logits!r}")
        ids = self._check_ids(ids)
        start = 0 if cache is None else self._check_cache(cache)
        emit = hook or _no_hook
        cos, sin = self.rope_tables(np.arange(start, start + len(ids)))
        x = self.embed_tokens[ids]
        for layer in self.layers:
            x = x + self._attention(layer, x, cos, sin, cache, start, emit)
            x = x + self._mlp(layer, x, emit)
        if logits == "last":
            x = x[-1:]
        emit("model.norm.input", x)
        x = rms_norm(x, self.final_norm, self.config.rms_norm_eps)
        emit("lm_head.input", x)
        if cache is not None:
            cache.length += len(ids)
        return x @ self.lm_head.T

    def _attention(self, layer: LayerWeights, x, cos, sin, cache, start: int, emit: Hook) -> np.ndarray:
        prefix = f"model.layers.{layer.index}.self_attn."
        c, tokens = self.config, x.shape[0]
        emit(f"model.layers.{layer.index}.input_layernorm.input", x)
        h = rms_norm(x, layer.input_layernorm, c.rms_norm_eps)
        for proj in ("q_proj", "k_proj", "v_proj"):
            emit(f"{prefix}{proj}.input", h)
        q = split_heads(h @ layer.q_proj.T, c.num_attention_heads)
        k = split_heads(h @ layer.k_proj.T, c.num_key_value_heads)
        v = split_heads(h @ layer.v_proj.T, c.num_key_value_heads)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        emit(f"{prefix}q_rope.output", q)
        emit(f"{prefix}k_rope.output", k)
        emit(f"{prefix}v_proj.output", v)
        keys, values = (k, v) if cache is None else cache.append(layer.index, k, v)
        scores = attention_scores(q, keys, start)
        emit(f"{prefix}scores.output", scores)
        probs = softmax(scores)
        emit(f"{prefix}probs.output", probs)
        heads_out = attend(probs, values)
        merged = heads_out.transpose(1, 0, 2).reshape(tokens, c.num_attention_heads * c.head_dim)
        emit(f"{prefix}o_proj.input", merged)
        return merged @ layer.o_proj.T

    def _mlp(self, layer: LayerWeights, x, emit: Hook) -> np.ndarray:
        prefix = f"model.layers.{layer.index}."
        emit(f"{prefix}post_attention_layernorm.input", x)
        h = rms_norm(x, layer.post_attention_layernorm, self.config.rms_norm_eps)
        emit(f"{prefix}mlp.gate_proj.input", h)
        emit(f"{prefix}mlp.up_proj.input", h)
        gate, up = h @ layer.gate_proj.T, h @ layer.up_proj.T
        emit(f"{prefix}mlp.gate_proj.output", gate)
        emit(f"{prefix}mlp.up_proj.output", up)
        act = silu(gate) * up
        emit(f"{prefix}mlp.down_proj.input", act)
        return act @ layer.down_proj.T

    def rope_tables(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cos, sin [T, head_dim] for ``positions``: angle p * theta^(-2j/d), the half repeated.

        Angles are formed in float64 and rounded once to the model dtype.
        """
        angles = np.outer(positions.astype(np.float64), self.inv_freq)
        angles = np.concatenate([angles, angles], axis=-1)
        return np.cos(angles).astype(self.dtype), np.sin(angles).astype(self.dtype)

    def generate(self, ids, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
                 rng: np.random.Generator | int | None = None, stop_at_eos: bool = True) -> np.ndarray:
        """New token ids after ``ids`` (see :func:`generate`); stops at an EOS id when ``stop_at_eos``."""
        stop = self.config.eos_token_ids if stop_at_eos else ()
        return generate(self, ids, max_new_tokens, temperature=temperature, top_k=top_k, rng=rng,
                        stop_tokens=stop)

    def _check_ids(self, ids) -> np.ndarray:
        array = np.asarray(ids)
        if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"FloatLlama.forward: ids must be a non-empty 1-D integer array, got "
                             f"dtype {array.dtype} shape {list(array.shape)}")
        bad = (array < 0) | (array >= self.config.vocab_size)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"FloatLlama.forward: ids[{i}] = {int(array[i])} is outside the vocabulary "
                             f"[0, {self.config.vocab_size})")
        return array.astype(np.int64)

    def _check_cache(self, cache: KVCache) -> int:
        """The cache's length, after checking new_cache() of this model made it."""
        c = self.config
        expected = (c.num_hidden_layers, c.num_key_value_heads, c.head_dim, self.dtype)
        keys = cache.keys[0] if cache.keys else np.zeros((0, 0, 0))
        layout = (len(cache.keys), keys.shape[0], keys.shape[2], keys.dtype)
        if layout != expected:
            raise InputError("FloatLlama.forward: cache was not made by this model's new_cache(): its "
                             f"(layers, kv_heads, head_dim, dtype) are {layout}, the model's {expected}")
        return cache.length


def _as_dtype(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=dtype)


def _cast_layer(layer: LayerWeights, dtype: np.dtype) -> LayerWeights:
    arrays = {f.name: _as_dtype(getattr(layer, f.name), dtype) for f in dataclasses.fields(layer)
              if f.name != "index"}
    return LayerWeights(index=layer.index, **arrays)


def rms_norm(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    """x / sqrt(mean(x^2) + eps) * gain, per row (HF LlamaRMSNorm)."""
    mean_square = np.mean(x * x, axis=-1, keepdims=True)
    return (x * (1.0 / np.sqrt(mean_square + x.dtype.type(eps)))) * gain


def split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """[T, heads * d] -> [heads, T, d]."""
    return x.reshape(x.shape[0], heads, -1).transpose(1, 0, 2)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1] (the HF/NeoX halves layout)."""
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


def attention_scores(q: np.ndarray, keys: np.ndarray, start: int) -> np.ndarray:
    """q [heads, T, d] against keys [kv_heads, S, d] -> [heads, T, S] scaled scores, future at -inf.

    Query head h reads key/value head h // (heads / kv_heads) (HF repeat_kv). Query t sits at
    position start + t and sees keys 0 .. start + t.
    """
    heads, tokens, head_dim = q.shape
    kv_heads, positions = keys.shape[0], keys.shape[1]
    grouped = q.reshape(kv_heads, (heads // kv_heads) * tokens, head_dim)
    scores = (grouped @ keys.transpose(0, 2, 1)).reshape(heads, tokens, positions)
    scores = scores * scores.dtype.type(1.0 / math.sqrt(head_dim))
    future = np.arange(positions)[None, :] > (start + np.arange(tokens))[:, None]
    scores[:, future] = -np.inf
    return scores


def attend(probs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """probs [heads, T, S] times values [kv_heads, S, d] -> [heads, T, d], heads grouped as above."""
    heads, tokens, positions = probs.shape
    kv_heads = values.shape[0]
    out = probs.reshape(kv_heads, (heads // kv_heads) * tokens, positions) @ values
    return out.reshape(heads, tokens, values.shape[2])


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, max subtracted first; -inf entries get probability 0."""
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x) as x / (1 + e^-x); e^-x overflowing to inf gives the correct limit -0."""
    with np.errstate(over="ignore"):
        return x / (1 + np.exp(-x))


# ---------------------------------------------------------------- generation and perplexity

class CausalLM(Protocol):
    """What :func:`generate` and :func:`perplexity` need; FloatLlama and the interpreter provide it."""

    def forward(self, ids, cache=None) -> np.ndarray: ...

    def new_cache(self): ...


def generate(model: CausalLM, ids, max_new_tokens: int, *, temperature: float = 0.0,
             top_k: int | None = None, rng: np.random.Generator | int | None = None,
             stop_tokens=()) -> np.ndarray:
    """Prefill ``ids``, then decode up to ``max_new_tokens`` one at a time; return the new ids.

    temperature 0 is greedy (argmax, lowest id on ties). Otherwise sample from
    softmax(logits / temperature) restricted to the ``top_k`` largest logits (all of them when
    None; ties with the k-th are kept), drawing from ``rng`` (a Generator, or a seed; None = seed 0,
    so runs repeat). Stops after emitting a token in ``stop_tokens`` (it is included).
    """
    _check_sampling(max_new_tokens, temperature, top_k)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    cache = model.new_cache()
    logits = model.forward(ids, cache)[-1]
    new_ids: list[int] = []
    while len(new_ids) < max_new_tokens:
        token = next_token(logits, temperature, top_k, rng)
        new_ids.append(token)
        if token in stop_tokens or len(new_ids) == max_new_tokens:
            break
        logits = model.forward(np.array([token]), cache)[-1]
    return np.array(new_ids, dtype=np.int64)


def _check_sampling(max_new_tokens: int, temperature: float, top_k: int | None) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise InputError(f"generate: max_new_tokens={max_new_tokens!r} must be a non-negative integer")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise InputError(f"generate: temperature={temperature!r} must be finite and >= 0 (0 = greedy)")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise InputError(f"generate: top_k={top_k!r} must be a positive integer or None")


def next_token(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """One token from a [vocab] logit row: argmax when temperature is 0, else a seeded sample."""
    if temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < scaled.size:
        kth_largest = np.partition(scaled, -top_k)[-top_k]
        scaled = np.where(scaled >= kth_largest, scaled, -np.inf)
    probs = softmax(scaled)
    return int(rng.choice(probs.size, p=probs))


@dataclass(frozen=True)
class PerplexityResult:
    """exp(mean_nll) over ``predicted_tokens`` predictions in ``windows`` windows, and top-1 accuracy."""
    perplexity: float
    mean_nll: float           # nats per predicted token
    top1_accuracy: float      # fraction of predictions whose argmax is the actual next token
    predicted_tokens: int
    windows: int


def perplexity(model: CausalLM, token_ids, context: int, progress: Callable[[int, int], None] | None = None
               ) -> PerplexityResult:
    """Perplexity and top-1 next-token accuracy of ``model`` on ``token_ids``, in chunked windows.

    Chunked, not sliding: the ids are cut into consecutive non-overlapping windows of ``context``
    tokens and a remainder shorter than ``context`` is dropped (the GPTQ / OmniQuant / I-LLM
    WikiText2 protocol, there with context 2048). Each window is one fresh forward; within it,
    tokens 1 .. context-1 are predicted from those before them in the window, so each window
    contributes context - 1 predictions. ``progress(done, total)`` is called after each window.
    """
    ids = np.asarray(token_ids)
    if not isinstance(context, int) or context < 2:
        raise InputError(f"perplexity: context={context!r} must be an integer >= 2")
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer) or ids.size < context:
        raise InputError(f"perplexity: token_ids must be a 1-D integer array of at least context={context} "
                         f"tokens, got dtype {ids.dtype} shape {list(ids.shape)}")
    windows = ids.size // context
    nll_sum, correct = 0.0, 0
    for w in range(windows):
        window = ids[w * context:(w + 1) * context]
        logits = model.forward(window).astype(np.float64)[:-1]
        targets = window[1:]
        nll_sum += float(np.sum(_log_sum_exp(logits) - logits[np.arange(len(targets)), targets]))
        correct += int(np.sum(np.argmax(logits, axis=-1) == targets))
        if progress is not None:
            progress(w + 1, windows)
    predicted = windows * (context - 1)
    mean_nll = nll_sum / predicted
    return PerplexityResult(math.exp(mean_nll), mean_nll, correct / predicted, predicted, windows)


def _log_sum_exp(rows: np.ndarray) -> np.ndarray:
    top = rows.max(axis=-1)
    return top + np.log(np.sum(np.exp(rows - top[:, None]), axis=-1))
