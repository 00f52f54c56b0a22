"""Models a user names on the command line: graph files, checkpoints, hub ids, the shipped model.

    lm = load_integer_model("shakespeare-tiny", wbits=8, abits=8)   # exported once, then cached
    ids = lm.encode("To be, or not to be")
    out = lm.generate(ids, max_new_tokens=20)                        # greedy, integer argmax

``IntegerLM`` wraps the interpreter. Its ``generate`` is integer-only end to end (the argmax is
taken on the integer logits). Its ``forward`` returns float64 logits (p * m / 2^k) for metrics
such as perplexity, which are measurements of the integer model, not part of its inference.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilsim.errors import InputError
from ilsim.graph.files import load_graph, save_graph
from ilsim.graph.format import Graph, GraphError
from ilsim.interpreter import Interpreter, State
from ilsim.resources import MODELS_DIR
from ilsim.tokenizer import Tokenizer

DEFAULT_MODEL = "shakespeare-tiny"
GRAPH_SUFFIX = ".ilsim"


def shipped_models() -> list[str]:
    """Names of the models that ship inside the package."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").is_file())


def cache_dir() -> Path:
    """Where exported graphs of checkpoints are cached ($ILSIM_CACHE or ~/.cache/ilsim)."""
    from ilsim import cache_root

    return cache_root()


def resolve_checkpoint_source(spec: str | None) -> str:
    """A shipped model name -> its folder; a fetched model's name (ilsim.zoo) -> its cached file;
    anything else is passed on (a directory, a .gguf file or a hub id)."""
    from ilsim.zoo import REMOTE_MODELS, fetched_path

    spec = spec or DEFAULT_MODEL
    if spec in shipped_models():
        return str(MODELS_DIR / spec)
    if spec in REMOTE_MODELS:
        return str(fetched_path(spec))
    if Path(spec).exists() or "/" in spec:
        return spec
    known = ", ".join(shipped_models()) or "none"
    raise InputError(f"unknown model {spec!r}: not a graph file, a checkpoint directory, a .gguf file, a hub id "
                     f"(owner/name), a shipped model (shipped: {known}) or a fetchable one "
                     f"({', '.join(sorted(REMOTE_MODELS))}; see `ilsim fetch`)")


def is_graph_file(spec: str | None) -> bool:
    """True for an existing file that is not a GGUF checkpoint: an ilsim graph (validated on load)."""
    if spec is None or not Path(spec).is_file():
        return False
    from ilsim.hf.checkpoint import is_gguf_file

    return not is_gguf_file(spec)


def graph_quant_label(graph: Graph) -> str:
    """'W4A8' etc. from the widths a graph was exported with (its own record, not CLI defaults)."""
    quant = graph.quant or {}
    wbits, abits = quant.get("wbits"), quant.get("abits")
    return f"W{wbits}A{abits}" if wbits is not None and abits is not None else "unknown widths"


@dataclass
class IntegerLM:
    """An integer graph ready to run: the CausalLM interface of ilsim.float_model plus generation."""

    graph: Graph
    reference: bool = False

    def __post_init__(self):
        from ilsim.graph.validate import require_logits_output

        require_logits_output(self.graph)
        self.interpreter = Interpreter(self.graph, reference=self.reference)
        self.tokenizer = Tokenizer(self.graph.tokenizer_json, self.graph.source)

    @property
    def context(self) -> int:
        return self.graph.model.max_positions

    def encode(self, text: str) -> np.ndarray:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def new_cache(self) -> State:
        return self.interpreter.new_state()

    def forward_int(self, ids, cache: State | None = None, logits: str = "all"):
        """Integer logits (WideOut: p, m, k) for ``ids`` (``logits="last"``: the last token's
        only), continuing ``cache`` when given."""
        state = cache if cache is not None else self.new_cache()
        return self.interpreter.forward(ids, state, logits=logits)

    def forward(self, ids, cache: State | None = None) -> np.ndarray:
        """float64 logits p * m / 2^k, for measurements (perplexity, accuracy)."""
        out = self.forward_int(ids, cache)
        scale = out.m.astype(np.float64) / np.exp2(out.k.astype(np.float64))
        return out.p.astype(np.float64) * scale[:, None]

    def generate(self, ids, max_new_tokens: int, stop_at_eos: bool = True) -> list[int]:
        """Greedy decoding on integer logits: prefill, then one token at a time with the KV cache.
        Ties go to the lowest token id. Returns the new token ids."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            raise InputError("generate: the prompt is empty")
        if ids.size + max_new_tokens > self.context:
            raise InputError(f"generate: prompt ({ids.size} tokens) + {max_new_tokens} new tokens exceeds "
                             f"the context of {self.context} positions")
        state = self.new_cache()
        logits = self.forward_int(ids, state, logits="last")
        new = []
        eos = self.graph.model.eos_token_id
        for _ in range(max_new_tokens):
            token = int(np.argmax(logits.p[-1]))
            new.append(token)
            if stop_at_eos and eos is not None and token == eos:
                break
            logits = self.forward_int([token], state)
        return new


def source_identity(source: Path) -> list[str]:
    """'name:size:mtime' of a checkpoint's files (a directory's, or one .gguf file's): what
    identifies its bytes cheaply, for cache keys."""
    files = [source] if source.is_file() else [source / name for name in sorted(os.listdir(source))]
    return [f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files if p.is_file()]


def graph_cache_path(source: Path, options: dict) -> Path:
    """A cache file name from the checkpoint's files (source_identity) and the export options."""
    h = hashlib.sha256()
    for entry in source_identity(source):
        h.update(entry.encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    from ilsim import SPEC_VERSION, __version__
    h.update(f"{__version__}/{SPEC_VERSION}".encode())
    return cache_dir() / f"{source.stem if source.is_file() else source.name}-{h.hexdigest()[:16]}{GRAPH_SUFFIX}"


def load_integer_model(spec: str | None = None, *, wbits: int = 8, abits: int = 8, calib: str | None = None,
                       reference: bool = False, progress: bool = False, **export_kw) -> IntegerLM:
    """An IntegerLM from a graph file, or from a checkpoint exported at (wbits, abits) and cached."""
    if is_graph_file(spec):
        return IntegerLM(load_graph(spec), reference=reference)
    from ilsim.export.build import ExportOptions
    from ilsim.export.run import export_checkpoint
    from ilsim.hf.checkpoint import resolve_directory

    source = resolve_directory(resolve_checkpoint_source(spec))
    options = ExportOptions(wbits=wbits, abits=abits, **export_kw)
    key = dict(vars(options), calib=calib)
    path = graph_cache_path(Path(source), key)
    if path.is_file():
        try:
            return IntegerLM(load_graph(path), reference=reference)
        except GraphError as err:       # a damaged cache entry is rebuilt, not reported forever
            print(f"ilsim: rebuilding the damaged cached graph ({err})", file=sys.stderr)
    graph = export_checkpoint(str(source), options, calib=calib, progress=progress)
    save_graph(graph, path)
    return IntegerLM(load_graph(path), reference=reference)


def load_float_model(spec: str | None = None):
    """(FloatLlama, Tokenizer) for a checkpoint directory, hub id or shipped model name."""
    from ilsim.float_model import FloatLlama
    from ilsim.hf.checkpoint import load_checkpoint

    if is_graph_file(spec):
        raise InputError(f"{spec}: a graph file has no float model; pass its checkpoint instead")
    ckpt = load_checkpoint(resolve_checkpoint_source(spec))
    return FloatLlama(ckpt), Tokenizer(ckpt.require_tokenizer_json(), str(ckpt.directory))
