"""The evaluation harness: float, fake-quant and integer runs of one model at several widths.

    ilsim eval smollm2-135m --configs w8a8,w6a6,w4a8,w4a4,w2a2 --json out.json

For the float model and for each configuration (an export at WnAm, timed, in its own process so
that its peak memory is its own), on each text: perplexity and top-1 next-token accuracy over
consecutive non-overlapping windows of ``context`` tokens (float_model.perplexity), for the float
model, the fake-quant run of the exported graph (same quantizer, float arithmetic: ilsim.fakequant)
and the integer run; and on a fixed prompt set (plain prompts, plus chat-template prompts when
the model has a chat template) the greedy continuation of the fake-quant and integer runs
compared with the float model's: the number of leading tokens equal to the float continuation.

Results are a JSON document (``EvalReport.to_dict``), a markdown table and a plot (matplotlib).
Each cell (the float run; each configuration's export; each engine of each configuration) is
cached in the work folder under a key of everything it depends on (the model file's identity,
the texts' token ids, the prompts, the options, the ilsim version), written as soon as it is
done: a killed run resumes where it stopped, and a rerun with the same inputs computes nothing.
Offline measurement code: floats are fine here; the integer run itself is integer-only.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import re
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ilsim.errors import InputError

#: Plain prompts: the model continues them.
PLAIN_PROMPTS = (
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colours are",
    "Water boils at a temperature of",
    "import numpy as np\n\n# Compute the mean of each row of a matrix\n",
)
#: Chat prompts: rendered with the model's own chat template (skipped for models without one).
CHAT_PROMPTS = (
    "What is the capital of France?",
    "Write a haiku about the ocean.",
    "Explain in one sentence what a prime number is.",
    "Give me three tips for staying focused while studying.",
)
CONFIG_RE = re.compile(r"w([2-8])a([2-8])", re.IGNORECASE)


def parse_configs(text: str) -> list[tuple[int, int]]:
    """'w8a8,w4a4' -> [(8, 8), (4, 4)]; InputError for anything else."""
    configs = []
    for item in (part.strip() for part in text.split(",")):
        match = CONFIG_RE.fullmatch(item)
        if not match:
            raise InputError(f"--configs: {item!r} is not a configuration like w8a8 (weight and activation "
                             "bits, each 2..8)")
        configs.append((int(match.group(1)), int(match.group(2))))
    if not configs:
        raise InputError("--configs: no configuration given")
    return configs


def config_name(wbits: int, abits: int) -> str:
    return f"W{wbits}A{abits}"


def render_chat(template: str, user_text: str, tokens: dict) -> str:
    """The chat template applied to one user message with the generation prompt, as transformers
    renders it (jinja2 sandbox, trim_blocks, lstrip_blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise InputError(f"chat template: {message}")

    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=[{"role": "user", "content": user_text}],
                                            add_generation_prompt=True, **tokens)


@dataclass
class Prompt:
    kind: str        # "plain" or "chat"
    text: str        # what the user wrote
    ids: list[int]   # the token ids fed to the model


def build_prompts(tokenizer, chat_template: str | None, special_tokens: dict) -> list[Prompt]:
    prompts = [Prompt("plain", p, [int(i) for i in tokenizer.encode(p)]) for p in PLAIN_PROMPTS]
    if chat_template:
        for p in CHAT_PROMPTS:
            rendered = render_chat(chat_template, p, special_tokens)
            prompts.append(Prompt("chat", p, [int(i) for i in tokenizer.encode(rendered)]))
    return [p for p in prompts if p.ids]


def leading_agreement(reference: list[int], other: list[int]) -> int:
    """How many leading tokens of ``other`` equal ``reference`` (up to the first divergence)."""
    n = 0
    for a, b in zip(reference, other):
        if a != b:
            break
        n += 1
    return n


@dataclass
class TextResult:
    text: str
    tokens: int
    context: int
    windows: int
    perplexity: float
    top1: float


@dataclass
class RunResult:
    """One engine (float, fake-quant or integer) of one configuration."""
    engine: str
    texts: list[TextResult] = field(default_factory=list)
    agreement: list[int] = field(default_factory=list)   # per prompt; empty for the float model
    continuations: list[list[int]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ConfigResult:
    config: str
    wbits: int
    abits: int
    export_seconds: float
    export_peak_mb: float
    graph_bytes: int
    fake_quant: RunResult | None
    integer: RunResult | None


@dataclass
class EvalReport:
    model: str
    machine: dict
    settings: dict
    prompts: list[Prompt]
    float_run: RunResult
    configs: list[ConfigResult]

    def to_dict(self) -> dict:
        return {"model": self.model, "machine": self.machine, "settings": self.settings,
                "prompts": [asdict(p) for p in self.prompts], "float": asdict(self.float_run),
                "configs": [asdict(c) for c in self.configs]}


def machine_info() -> dict:
    """CPU model, ISA flags of interest, cores and library versions: numbers are stated with these."""
    import platform

    import numba

    cpu, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
        all_flags = re.search(r"flags\s*:\s*(.*)", text).group(1).split()
        wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")
        flags = [f for f in wanted if f in all_flags]
    except (OSError, AttributeError):
        pass
    return {"cpu": cpu, "isa": flags, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "platform": platform.platform()}


def _text_ids(tokenizer, path: str, max_tokens: int) -> np.ndarray:
    from ilsim.export.run import read_text_file

    ids = np.asarray(tokenizer.encode(read_text_file(path)), dtype=np.int64)
    return ids[:max_tokens] if max_tokens else ids


def window_for(ids: np.ndarray, context: int, path: str, note) -> int:
    """``context``, or the text's length when the text is shorter than one window (said in ``note``)."""
    if ids.size >= context:
        return context
    if ids.size < 2:
        raise InputError(f"text {path}: {ids.size} token(s); perplexity needs at least 2")
    note(f"text {path} has {ids.size} tokens, fewer than the window of {context}: "
         f"using one window of {ids.size} tokens")
    return int(ids.size)


def measure_texts(model, texts: dict[str, np.ndarray], context: int, note) -> list[TextResult]:
    from ilsim.float_model import perplexity

    results = []
    for path, ids in texts.items():
        window = window_for(ids, context, path, note)
        r = perplexity(model, ids, window)
        results.append(TextResult(path, int(ids.size), window, r.windows, r.perplexity, r.top1_accuracy))
    return results


def _export_worker(source: str, wbits: int, abits: int, calib: str | None, method: str | None, out: str,
                   queue) -> None:
    """Child process: export and save one graph; report time, peak RSS and size (or the error)."""
    try:
        from ilsim.export.build import ExportOptions
        from ilsim.export.run import export_checkpoint
        from ilsim.graph.files import save_graph

        start = time.perf_counter()
        options = ExportOptions(wbits=wbits, abits=abits, **({"method": method} if method else {}))
        graph = export_checkpoint(source, options, calib=calib, progress=False)
        path = save_graph(graph, out)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        queue.put({"seconds": seconds, "peak_mb": peak_mb, "bytes": path.stat().st_size})
    except BaseException as err:  # reported to the parent, which raises it as one line
        queue.put({"error": f"{type(err).__name__}: {err}"})


def export_in_child(source: str, wbits: int, abits: int, calib: str | None, out: Path,
                    method: str | None = None) -> dict:
    """Export in a fresh process (spawn): its wall time and its own peak resident memory."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_export_worker, args=(source, wbits, abits, calib, method, str(out), queue))
    child.start()
    result = None
    while result is None:
        try:
            result = queue.get(timeout=1.0)
        except Exception:  # queue.Empty: still working, unless the child died without a word
            if not child.is_alive():
                result = {"error": f"the export process exited with status {child.exitcode} and no result"}
    child.join()
    if "error" in result:
        raise InputError(f"export {config_name(wbits, abits)} of {source} failed: {result['error']}")
    return result


class CellCache:
    """JSON results of finished cells in ``folder``, each under the sha256 of its inputs."""

    def __init__(self, folder: Path, common: dict):
        from ilsim import SPEC_VERSION, __version__

        self.folder = folder
        self.common = dict(common, ilsim=__version__, spec=SPEC_VERSION, code=_code_digest())

    def path(self, cell: dict) -> Path:
        key = json.dumps(dict(self.common, **cell), sort_keys=True, default=str)
        return self.folder / f"cell-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"

    def get(self, cell: dict):
        path = self.path(cell)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None            # absent or damaged (a killed write): computed again

    def put(self, cell: dict, value: dict) -> None:
        _write_text_atomic(self.path(cell), json.dumps(value, sort_keys=True))


def _code_digest() -> str:
    """sha256 of ilsim's own Python sources: any edit of the code invalidates every cached cell."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _run_from_dict(d: dict) -> RunResult:
    return RunResult(d["engine"], [TextResult(**t) for t in d["texts"]], d["agreement"], d["continuations"],
                     d["seconds"])


def _greedy(engine: str, model, prompts: list[Prompt], new_tokens: int) -> list[list[int]]:
    from ilsim.float_model import generate

    out = []
    for p in prompts:
        if engine == "integer":
            out.append([int(t) for t in model.generate(p.ids, new_tokens, stop_at_eos=False)])
        else:
            out.append([int(t) for t in generate(model, np.array(p.ids), new_tokens)])
    return out


def evaluate(model_spec: str, configs: list[tuple[int, int]], texts: list[str], *, context: int = 512,
             max_tokens: int = 4096, new_tokens: int = 32, calib: str | None = None, method: str | None = None,
             work_dir: str | os.PathLike | None = None, engines=("fake_quant", "integer"),
             progress: bool = True, note=None) -> EvalReport:
    """Run the harness; see the module docstring. ``note(msg)`` receives remarks (stderr by default)."""
    from tqdm import tqdm

    from ilsim.fakequant import FakeQuantLM
    from ilsim.graph.files import load_graph
    from ilsim.hf.checkpoint import load_checkpoint
    from ilsim.float_model import FloatLlama
    from ilsim.model import IntegerLM, cache_dir, resolve_checkpoint_source, source_identity
    from ilsim.tokenizer import Tokenizer

    from ilsim.export.build import DEFAULT_METHOD, parse_method

    note = note or (lambda msg: print(f"note: {msg}", file=sys.stderr))
    parse_method(method or DEFAULT_METHOD)
    for engine in engines:
        if engine not in ("fake_quant", "integer"):
            raise InputError(f"eval: unknown engine {engine!r} (fake_quant, integer)")
    source = resolve_checkpoint_source(model_spec)
    ckpt = load_checkpoint(source)
    tokenizer = Tokenizer(ckpt.require_tokenizer_json("eval needs it"), str(ckpt.directory))
    model_context = ckpt.config.max_position_embeddings
    if context > model_context:
        raise InputError(f"eval: --context {context} exceeds the model's {model_context} positions")
    if new_tokens < 1:
        raise InputError(f"eval: --new-tokens must be >= 1, got {new_tokens}")
    if max_tokens < 0:
        raise InputError(f"eval: --max-tokens must be >= 0 (0: the whole text), got {max_tokens}")
    text_ids = {path: _text_ids(tokenizer, path, max_tokens) for path in texts}
    special = _special_tokens(ckpt, tokenizer)
    prompts = build_prompts(tokenizer, ckpt.chat_template, special)
    longest = max(len(p.ids) for p in prompts) + new_tokens
    if longest > model_context:
        raise InputError(f"eval: a prompt plus {new_tokens} new tokens needs {longest} positions, more than the "
                         f"model's {model_context}")
    work = Path(work_dir) if work_dir else cache_dir() / "eval" / Path(str(ckpt.directory)).stem
    work.mkdir(parents=True, exist_ok=True)

    digest = hashlib.sha256(json.dumps({p: ids.tolist() for p, ids in text_ids.items()}).encode()).hexdigest()
    cache = CellCache(work, {"source": source_identity(Path(source)), "texts": digest, "context": context,
                             "prompts": [p.ids for p in prompts], "new_tokens": new_tokens})
    steps = 1 + len(configs) * (1 + len(engines))
    bar = tqdm(total=steps, desc="eval", disable=not progress, file=sys.stderr)
    start = time.perf_counter()
    cached = cache.get({"cell": "float"})
    if cached is not None:
        float_run = _run_from_dict(cached)
    else:
        float_model = FloatLlama(ckpt)
        float_run = RunResult("float", measure_texts(float_model, text_ids, context, note))
        float_run.continuations = _greedy("float", float_model, prompts, new_tokens)
        float_run.seconds = time.perf_counter() - start
        del float_model
        cache.put({"cell": "float"}, asdict(float_run))
    bar.update(1)

    results = []
    for wbits, abits in configs:
        name = config_name(wbits, abits)
        bar.set_postfix_str(f"export {name}")
        graph_path = work / f"{(method or DEFAULT_METHOD).replace('+', '-')}-{name.lower()}.ilsim"
        export_cell = {"cell": "export", "config": name, "method": method or DEFAULT_METHOD, "calib": calib}
        exported = cache.get(export_cell)
        if exported is None or not graph_path.is_file() or graph_path.stat().st_size != exported["bytes"]:
            exported = export_in_child(str(source), wbits, abits, calib, graph_path, method)
            cache.put(export_cell, exported)
        bar.update(1)
        graph = None
        runs = {}
        for engine in engines:
            bar.set_postfix_str(f"{engine} {name}")
            cell = dict(export_cell, cell=engine, graph_bytes=exported["bytes"])
            cached = cache.get(cell)
            if cached is not None:
                runs[engine] = _run_from_dict(cached)
                bar.update(1)
                continue
            graph = graph or load_graph(graph_path)
            t0 = time.perf_counter()
            model = IntegerLM(graph) if engine == "integer" else FakeQuantLM(graph)
            run = RunResult(engine, measure_texts(model, text_ids, context, note))
            run.continuations = _greedy(engine, model, prompts, new_tokens)
            run.agreement = [leading_agreement(f, o) for f, o in zip(float_run.continuations, run.continuations)]
            run.seconds = time.perf_counter() - t0
            runs[engine] = run
            cache.put(cell, asdict(run))
            del model
            bar.update(1)
        results.append(ConfigResult(name, wbits, abits, exported["seconds"], exported["peak_mb"], exported["bytes"],
                                    runs.get("fake_quant"), runs.get("integer")))
    bar.close()
    settings = {"context": context, "max_tokens": max_tokens, "new_tokens": new_tokens, "texts": list(texts),
                "calibration": calib or "default", "method": method or DEFAULT_METHOD, "engines": list(engines),
                "seconds": time.perf_counter() - start}
    return EvalReport(str(model_spec), machine_info(), settings, prompts, float_run, results)


def _special_tokens(ckpt, tokenizer) -> dict:
    """bos_token / eos_token strings for chat templates that use them."""
    out = {}
    cfg = ckpt.config
    if cfg.bos_token_id is not None:
        out["bos_token"] = tokenizer.decode_special([cfg.bos_token_id])
    if cfg.eos_token_ids:
        out["eos_token"] = tokenizer.decode_special([cfg.eos_token_ids[0]])
    return out


# ---------------------------------------------------------------- reports

def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if math.isfinite(a) and b > 0 else "inf"


def _fmt_ppl(v: float) -> str:
    return f"{v:.3f}" if v < 1e4 else f"{v:.4g}"


def markdown_table(report: EvalReport) -> str:
    """One row per configuration and text: float / fake-quant / integer perplexity, the ratio
    integer/float, top-1, and generation agreement (tokens equal to the float continuation)."""
    n_new = report.settings["new_tokens"]
    lines = ["| config | text | float ppl | fake-quant ppl | integer ppl | integer / float | float top-1 | "
             "integer top-1 | integer gen. agreement (mean, min / prompts at all " + str(n_new) + ") | "
             "export s | export peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    floats = {t.text: t for t in report.float_run.texts}
    for c in report.configs:
        for i, t in enumerate(report.float_run.texts):
            fq = c.fake_quant.texts[i] if c.fake_quant else None
            it = c.integer.texts[i] if c.integer else None
            agree = ""
            if i == 0 and c.integer:
                a = c.integer.agreement
                agree = f"{np.mean(a):.1f}, {min(a)} / {sum(x == n_new for x in a)} of {len(a)}"
            lines.append(
                f"| {c.config if i == 0 else ''} | {Path(t.text).name} | {_fmt_ppl(floats[t.text].perplexity)} | "
                f"{_fmt_ppl(fq.perplexity) if fq else '-'} | {_fmt_ppl(it.perplexity) if it else '-'} | "
                f"{_ratio(it.perplexity, t.perplexity) if it else '-'} | {100 * t.top1:.2f}% | "
                f"{f'{100 * it.top1:.2f}%' if it else '-'} | {agree} | "
                f"{f'{c.export_seconds:.1f}' if i == 0 else ''} | {f'{c.export_peak_mb:.0f}' if i == 0 else ''} |")
    return "\n".join(lines) + "\n"


def plot(report: EvalReport, path: str | os.PathLike) -> None:
    """Perplexity per configuration (log scale): fake-quant dashed, integer solid, float dotted,
    one colour per text."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("the plot needs matplotlib: pip install 'ilsim[eval]' (JSON and markdown were written)") \
            from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.config for c in report.configs]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, t in enumerate(report.float_run.texts):
        colour = f"C{i}"
        label = Path(t.text).stem
        ax.axhline(t.perplexity, color=colour, linestyle=":", linewidth=1)
        if all(c.fake_quant for c in report.configs):
            ax.plot(names, [c.fake_quant.texts[i].perplexity for c in report.configs], "o--", color=colour,
                    alpha=0.6, label=f"{label}: fake-quant")
        if all(c.integer for c in report.configs):
            ax.plot(names, [c.integer.texts[i].perplexity for c in report.configs], "s-", color=colour,
                    label=f"{label}: integer")
    ax.set_yscale("log")
    ax.set_ylabel("perplexity (log scale); dotted: float")
    ax.set_title(f"{report.model}: perplexity per configuration ({report.settings['context']}-token windows)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary_text(report: EvalReport) -> str:
    lines = [f"{report.model} on {report.machine['cpu']} ({report.machine['cores']} cores)"]
    for t in report.float_run.texts:
        lines.append(f"  float  {Path(t.text).name}: ppl {_fmt_ppl(t.perplexity)}, top-1 {100 * t.top1:.2f}%")
    for c in report.configs:
        parts = []
        for i, t in enumerate(report.float_run.texts):
            it = c.integer.texts[i] if c.integer else None
            fq = c.fake_quant.texts[i] if c.fake_quant else None
            parts.append(f"{Path(t.text).stem} " + (f"int {_fmt_ppl(it.perplexity)} (x{_ratio(it.perplexity, t.perplexity)})"
                                                    if it else "") + (f" fq {_fmt_ppl(fq.perplexity)}" if fq else ""))
        agree = f"; gen agreement {c.integer.agreement}" if c.integer else ""
        lines.append(f"  {c.config}: " + "; ".join(parts) + agree + f"; export {c.export_seconds:.1f} s, "
                     f"{c.export_peak_mb:.0f} MB")
    return "\n".join(lines)


def _write_text_atomic(path, text: str) -> None:
    from ilsim.fileio import replace_file, temp_file

    path = Path(path)
    tmp = temp_file(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        replace_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_reports(report: EvalReport, json_path=None, markdown_path=None, plot_path=None) -> None:
    """Each file written whole (temporary file, then rename)."""
    if json_path:
        _write_text_atomic(json_path, json.dumps(report.to_dict(), indent=1) + "\n")
    if markdown_path:
        _write_text_atomic(markdown_path, markdown_table(report))
    if plot_path:
        plot(report, plot_path)


def default_texts() -> list[str]:
    """The shipped evaluation texts (ilsim/data/README.md): none of them is calibration text."""
    from ilsim.resources import DATA_DIR

    found = sorted(str(p) for p in DATA_DIR.glob("eval_*.txt"))
    return found + [str(DATA_DIR / "shakespeare_test.txt")]
