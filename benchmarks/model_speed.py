"""End-to-end speed and memory of the integer-only model at SmolLM-135M's shape, against float.

    python benchmarks/model_speed.py --json docs/results/model_speed.json

Builds a model of SmolLM-135M's shape (hidden 576, intermediate 1536, 30 layers, 9 heads, 3 KV
heads, head_dim 64, vocab 49152, tied embeddings) with seeded random weights (matrices
0.02 * N(0, 1), norm gains 1 + 0.1 * N(0, 1), float32), writes it as a Hugging Face checkpoint
with the shipped shakespeare-tiny tokenizer (its ids are < 4096; export needs it for calibration),
exports it at W8A8 and W4A4, and reports:

1. DI-MatMul throughput on the model's projection shapes (prefill M=128, decode M=1) as a ratio to
   float32 sgemm, from benchmarks/matmul_throughput.py's ``bench``.
2. Prefill tokens/s (a --prompt-tokens prompt, default 128, best of --repeat, a fresh cache each)
   and decode tokens/s (--decode-tokens single-token steps, default 32, on the prefilled cache) of
   the integer interpreter, as a ratio to ilsim's NumPy float reference (FloatLlama) and to Hugging
   Face transformers LlamaForCausalLM in float32 on the same checkpoint and thread count.
   Token ids are seeded random ids < 4096; decode feeds fixed seeded ids (the same for every
   engine), not its own argmax, so every engine does the same work. Prefill computes the last
   position's logits only, as generation does (ilsim ``logits="last"``, transformers
   ``logits_to_keep=1``); every other layer runs on all 128 tokens.
3. Peak resident memory of each engine (process peak, and "run" memory: peak minus the resident
   size after imports, before loading the model; it includes Numba compilation when its cache is
   cold), the integer weights and KV cache bytes, and the time to export.
4. Golden model-trace generation time for a 16-token run: ilsim.golden.model.write_model_golden on
   an 8-token prompt plus 8 greedy decode steps (16 tokens in all), every layer.

Each engine (and each export, trace and the DI-MatMul table) runs in its own fresh subprocess, so
peak RSS is per engine. The engines run --rounds times (default 2), in reversed order every other
round, and the fastest prefill and decode of each count (the largest memory), so that a slow phase
of a shared machine does not land on one engine only; all of them get the same thread count (--threads, default: all cores) via
NUMBA_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS and
torch.set_num_threads. Every engine starts with a warm-up (an 8-token prefill and 2 decode steps
on a separate cache) so that JIT compilation is not timed.

Prints Markdown tables, a machine line and the targets (PASS/MISS); --json writes the same content.
At full size it takes about 7 minutes on 2 cores (two ~40 s exports, two rounds of the four
engine runs, two golden traces). Shape options (--layers, --hidden, ...) shrink the model for smoke tests.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import inspect
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULT_PREFIX = "MODEL_SPEED_RESULT "
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CONFIGS = {"w8a8": (8, 8), "w4a4": (4, 4)}
TOKENIZER_IDS = 4096          # ids of the shipped tokenizer; prompt ids are drawn below this
GOLDEN_PROMPT, GOLDEN_NEW = 8, 8
#: The miniature model whose run loads the integer kernels before the baseline memory is taken:
#: big enough that a prompt-length prefill takes the same (parallel) kernels as the real model.
WARMUP_SHAPE = {"layers": 2, "hidden": 128, "intermediate": 512, "heads": 2, "kv_heads": 1, "vocab": 4096}
WARMUP_PROMPT, WARMUP_DECODE = 8, 2
MB = 1 << 20
TARGETS = {"matmul_m128": 0.7, "decode_vs_transformers": 1.0, "prefill_vs_transformers": 0.5,
           "memory_ratio": 1.5}
SMOLLM_135M = {"layers": 30, "hidden": 576, "intermediate": 1536, "heads": 9, "kv_heads": 3, "vocab": 49152}


# ---------------------------------------------------------------------------------------------
# Shared helpers (both the driver and the workers)

def seeded_ids(count: int, vocab: int, seed: int) -> np.ndarray:
    """``count`` token ids below min(vocab, the tokenizer's 4096), from a fixed seed."""
    return np.random.default_rng(seed).integers(0, min(vocab, TOKENIZER_IDS), size=count, dtype=np.int64)


def current_rss() -> int:
    """Resident bytes of this process now (/proc/self/statm; the peak so far where there is none)."""
    statm = Path("/proc/self/statm")
    if statm.is_file():
        return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return peak_rss()


def peak_rss() -> int:
    """Peak resident bytes of this process: VmHWM from /proc/self/status (reset by exec, unlike
    ru_maxrss, which Linux carries over from the parent that forked the worker), else ru_maxrss."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


# ---------------------------------------------------------------------------------------------
# Engines: prefill(ids) -> state on a fresh cache, decode(state, id) -> state, bytes of weights/KV

class IntegerEngine:
    """ilsim's integer interpreter on an exported graph (no floating point in forward)."""

    def __init__(self, graph_path: str, capacity: int):
        from ilsim.graph.files import load_graph
        from ilsim.interpreter import Interpreter

        self.graph = load_graph(graph_path)
        self.interpreter = Interpreter(self.graph)
        self.capacity = capacity

    def prefill(self, ids: np.ndarray):
        state = self.interpreter.new_state(self.capacity)
        self.interpreter.forward(ids, state, logits="last")
        return state

    def decode(self, state, token: int):
        self.interpreter.forward(np.array([token], dtype=np.int64), state)
        return state

    def weight_bytes(self) -> dict:
        """Stored bytes of every constant, of the weight matrices alone, and of the matrices at
        their declared bit width (what a packed store would need)."""
        consts, decls = self.graph.constants, self.graph.decls
        matrices = [n for n, a in consts.items() if a.ndim == 2 and not n.startswith("rope.")]
        return {"weights_bytes": int(sum(a.nbytes for a in consts.values())),
                "matrix_bytes": int(sum(consts[n].nbytes for n in matrices)),
                "matrix_bytes_packed": int(sum(consts[n].size * decls[n].bits for n in matrices) // 8)}

    @staticmethod
    def kv_bytes(state) -> int:
        return int(sum(c.nbytes() for c in state.caches.values()))


class FloatEngine:
    """ilsim's NumPy float32 reference forward (FloatLlama) with its growing KV cache."""

    def __init__(self, checkpoint_dir: str):
        from ilsim.float_model import FloatLlama
        from ilsim.hf.checkpoint import load_checkpoint

        self.checkpoint = load_checkpoint(checkpoint_dir)
        self.model = FloatLlama(self.checkpoint)

    def prefill(self, ids: np.ndarray):
        cache = self.model.new_cache()
        self.model.forward(ids, cache, logits="last")
        return cache

    def decode(self, cache, token: int):
        self.model.forward(np.array([token], dtype=np.int64), cache)
        return cache

    def weight_bytes(self) -> dict:
        return {"weights_bytes": int(sum(a.nbytes for a in self.checkpoint.weights.values()))}

    @staticmethod
    def kv_bytes(cache) -> int:
        return int(sum(a.nbytes for a in cache.keys + cache.values))


class TransformersEngine:
    """Hugging Face transformers LlamaForCausalLM in float32, gradients off, with past_key_values."""

    def __init__(self, checkpoint_dir: str, threads: int, torch, transformers):
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        self.torch = torch
        # transformers 5 takes dtype=; 4.x (setup.cfg allows >= 4.45) takes torch_dtype=.
        dtype_arg = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
        self.model = transformers.LlamaForCausalLM.from_pretrained(checkpoint_dir, **{dtype_arg: torch.float32})
        self.model.eval()
        if self.model.dtype != torch.float32:
            raise RuntimeError(f"transformers loaded the model as {self.model.dtype}, not float32")
        self.tokens = 0
        # the last position's logits only, as generate() asks (renamed in transformers 4.50)
        params = inspect.signature(self.model.forward).parameters
        keep = "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep"
        self.last_only = {keep: 1} if keep in params else {}

    def prefill(self, ids: np.ndarray):
        self.tokens = len(ids)
        return self.model(self.torch.from_numpy(ids)[None], use_cache=True, **self.last_only).past_key_values

    def decode(self, past, token: int):
        self.tokens += 1
        ids = self.torch.tensor([[token]], dtype=self.torch.int64)
        return self.model(ids, past_key_values=past, use_cache=True).past_key_values

    def weight_bytes(self) -> dict:
        return {"weights_bytes": int(sum(p.numel() * p.element_size() for p in self.model.parameters()))}

    def kv_bytes(self, past) -> int:
        """Float32 K and V for every cached token, computed from the config (the Cache API varies
        across transformers versions)."""
        c = self.model.config
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        return 2 * c.num_hidden_layers * c.num_key_value_heads * head_dim * self.tokens * 4


def best_of(fn, repeat: int):
    """(best seconds, last result) of ``repeat`` calls of ``fn``."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(make_engine, spec: dict) -> dict:
    """Baseline RSS, load, warm-up, timed prefill (best of repeat) and decode, memory footprint.
    Call it right after the engine's imports."""
    baseline_rss, baseline_peak = current_rss(), peak_rss()
    start = time.perf_counter()
    engine = make_engine()
    load_s = time.perf_counter() - start
    loaded_rss = current_rss()
    prompt = seeded_ids(spec["prompt_tokens"], spec["vocab"], seed=1)
    steps = seeded_ids(spec["decode_tokens"], spec["vocab"], seed=2)
    warm = engine.prefill(prompt[:WARMUP_PROMPT])
    for token in steps[:WARMUP_DECODE]:
        warm = engine.decode(warm, int(token))
    del warm
    prefill_s, state = best_of(lambda: engine.prefill(prompt), spec["repeat"])
    start = time.perf_counter()
    for token in steps:
        state = engine.decode(state, int(token))
    decode_s = time.perf_counter() - start
    result = {"load_s": load_s, "prefill_s": prefill_s, "decode_s": decode_s,
              "prefill_tok_s": len(prompt) / prefill_s, "decode_tok_s": len(steps) / decode_s,
              "kv_bytes": engine.kv_bytes(state), **engine.weight_bytes(),
              "baseline_rss_bytes": baseline_rss, "baseline_peak_bytes": baseline_peak,
              "loaded_rss_bytes": loaded_rss}
    result["peak_rss_bytes"] = peak_rss()
    result["run_bytes"] = result["peak_rss_bytes"] - baseline_rss
    result["memory_ratio"] = result["run_bytes"] / (result["weights_bytes"] + result["kv_bytes"])
    return result


# ---------------------------------------------------------------------------------------------
# Workers: one per subprocess, each prints one RESULT_PREFIX + JSON line

def worker_export(spec: dict) -> dict:
    """Export the checkpoint at (wbits, abits), timed; save the graph for the other workers."""
    from ilsim.export.build import ExportOptions
    from ilsim.export.run import export_checkpoint
    from ilsim.graph.files import save_graph

    options = ExportOptions(wbits=spec["wbits"], abits=spec["abits"])
    start = time.perf_counter()
    graph = export_checkpoint(spec["checkpoint"], options)
    export_s = time.perf_counter() - start
    path = save_graph(graph, spec["graph"])
    result = {"export_s": export_s, "export_peak_rss_bytes": peak_rss(), "graph_file_bytes": path.stat().st_size}
    save_graph(export_checkpoint(spec["warmup_checkpoint"], options), spec["warmup_graph"])
    return result


def worker_integer(spec: dict) -> dict:
    """The integer interpreter on the exported graph, KV cache preallocated for prompt + decode."""
    capacity = spec["prompt_tokens"] + spec["decode_tokens"]
    before = current_rss()
    warm_kernels(IntegerEngine(spec["warmup_graph"], capacity), spec)
    result = measure(lambda: IntegerEngine(spec["graph"], capacity), spec)
    result["kernels_bytes"] = result["baseline_rss_bytes"] - before
    return result


def warm_kernels(engine: "IntegerEngine", spec: dict) -> None:
    """Run the miniature model at the same widths through the benchmark's calls (prompt-length
    prefill, decode), so Numba's compiled kernels are loaded before the baseline RSS: like
    torch's kernels, which arrive with its import, they do not grow with the model."""
    prompt = seeded_ids(spec["prompt_tokens"], TOKENIZER_IDS, seed=4)
    state = engine.prefill(prompt[:WARMUP_PROMPT])
    engine.decode(state, int(prompt[0]))
    state = engine.prefill(prompt)
    engine.decode(state, int(prompt[0]))
    del engine, state
    gc.collect()


def worker_float(spec: dict) -> dict:
    """ilsim's NumPy float32 reference on the checkpoint."""
    import ilsim.float_model  # noqa: F401  (imported before measure() takes the baseline RSS)
    import ilsim.hf.checkpoint  # noqa: F401

    return measure(lambda: FloatEngine(spec["checkpoint"]), spec)


def worker_transformers(spec: dict) -> dict:
    """transformers on the checkpoint; a "skipped" note when torch or transformers is missing."""
    try:
        import torch
        import transformers
    except ImportError as err:
        return {"skipped": f"torch/transformers not importable: {err}"}
    return measure(lambda: TransformersEngine(spec["checkpoint"], spec["threads"], torch, transformers), spec)


def worker_golden(spec: dict) -> dict:
    """Time a model trace: 8-token prompt + 8 decode steps, all layers, into spec["out"]."""
    from ilsim.golden.model import write_model_golden
    from ilsim.graph.files import load_graph

    graph = load_graph(spec["graph"])
    prompt = seeded_ids(GOLDEN_PROMPT, graph.model.vocab_size, seed=3)
    start = time.perf_counter()
    manifest = write_model_golden(graph, spec["out"], prompt, new_tokens=GOLDEN_NEW)
    seconds = time.perf_counter() - start
    files = [p for p in Path(spec["out"]).rglob("*") if p.is_file()]
    return {"seconds": seconds, "bytes": int(sum(p.stat().st_size for p in files)), "files": len(files),
            "vectors": len(manifest["vectors"]), "prompt_tokens": GOLDEN_PROMPT, "new_tokens": GOLDEN_NEW}


def worker_matmul(spec: dict) -> dict:
    """benchmarks/matmul_throughput.py's bench(repeat), loaded from next to this file."""
    path = Path(__file__).resolve().parent / "matmul_throughput.py"
    module_spec = importlib.util.spec_from_file_location("matmul_throughput", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return {"rows": module.bench(spec["repeat"])}


class WorkerError(RuntimeError):
    """A measurement subprocess failed; the message holds its exit code and the end of its stderr."""


WORKERS = {"export": worker_export, "integer": worker_integer, "float": worker_float,
           "transformers": worker_transformers, "golden": worker_golden, "matmul": worker_matmul}


def run_worker(kind: str, spec: dict) -> dict:
    """Run one worker in a fresh interpreter with the thread variables set; its JSON result."""
    env = dict(os.environ, **{var: str(spec["threads"]) for var in THREAD_VARS})
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--spec", json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise WorkerError(f"{kind} worker ({spec.get('label', '')}) failed with exit code "
                           f"{proc.returncode}:\n{tail}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


# ---------------------------------------------------------------------------------------------
# Driver

def write_checkpoint(directory: Path, shape: dict) -> Path:
    """A random-weight checkpoint of ``shape`` (layers, hidden, intermediate, heads, kv_heads,
    vocab), with the shipped tokenizer copied in."""
    import ilsim.model
    from ilsim.hf.checkpoint import expected_shapes, save_checkpoint
    from ilsim.hf.config import LlamaConfig

    config = LlamaConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"],
                         intermediate_size=shape["intermediate"], num_hidden_layers=shape["layers"],
                         num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
                         head_dim=shape["hidden"] // shape["heads"], rms_norm_eps=1e-5, rope_theta=100000.0,
                         max_position_embeddings=2048, tie_word_embeddings=True, bos_token_id=0,
                         eos_token_ids=(0,))
    rng = np.random.default_rng(0)
    weights = {}
    for name, shape in expected_shapes(config).items():
        values = 1.0 + 0.1 * rng.standard_normal(shape) if len(shape) == 1 else 0.02 * rng.standard_normal(shape)
        weights[name] = values.astype(np.float32)
    out = save_checkpoint(directory, config, weights)
    tokenizer = Path(ilsim.model.MODELS_DIR) / "shakespeare-tiny" / "tokenizer.json"
    if not tokenizer.is_file():
        raise FileNotFoundError(f"{tokenizer}: the shipped tokenizer is missing (export needs one)")
    shutil.copy(tokenizer, out / "tokenizer.json")
    return out


def package_version(name: str) -> str:
    """The installed version of a distribution, without importing it."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info(threads: int) -> dict:
    """CPU model, core count, threads and library versions."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            **{pkg: package_version(pkg) for pkg in ("numpy", "numba", "torch", "transformers")}}


def matmul_summary(rows: list[dict]) -> dict:
    """Worst M=128 shape, and the per-layer aggregate: total sgemm time / total DI-MatMul time
    over one layer's projections at M=128 (each shape counted as often as a layer has it)."""
    prefill = [r for r in rows if r["M"] == 128]
    if not prefill:
        return {}

    def seconds(r: dict, key: str) -> float:
        return r.get("per_layer", 1) * 2.0 * r["M"] * r["K"] * r["N"] / (r[key] * 1e9)

    layer = [r for r in prefill if r.get("per_layer", 1)]
    return {"m128_min_ratio": min(r["di_matmul_vs_sgemm"] for r in prefill),
            "m128_layer_ratio": (sum(seconds(r, "sgemm_gops") for r in layer)
                                 / sum(seconds(r, "di_matmul_gops") for r in layer))}


def merge_rounds(best: dict | None, new: dict) -> dict:
    """One engine over several rounds: the fastest prefill and decode, the largest memory; each
    round's speeds kept under "rounds"."""
    if "skipped" in new:
        return new
    speeds = {k: new[k] for k in ("prefill_tok_s", "decode_tok_s")}
    if best is None:
        return dict(new, rounds=[speeds])
    merged = dict(best, rounds=best["rounds"] + [speeds])
    for phase in ("prefill", "decode"):
        if new[f"{phase}_tok_s"] > best[f"{phase}_tok_s"]:
            merged.update({f"{phase}_tok_s": new[f"{phase}_tok_s"], f"{phase}_s": new[f"{phase}_s"]})
    if new["run_bytes"] > best["run_bytes"]:
        merged.update({k: new[k] for k in ("run_bytes", "peak_rss_bytes", "baseline_rss_bytes", "memory_ratio",
                                           "kernels_bytes") if k in new})
    return merged


def add_ratios(engines: dict) -> None:
    """Prefill/decode ratios of every engine to the float reference and to transformers."""
    for base_key, suffix in (("float", "float_ref"), ("transformers", "transformers")):
        base = engines.get(base_key, {})
        for result in engines.values():
            for phase in ("prefill", "decode"):
                if "skipped" not in result and base.get(f"{phase}_tok_s"):
                    result[f"{phase}_vs_{suffix}"] = result[f"{phase}_tok_s"] / base[f"{phase}_tok_s"]


def check(name: str, value, target: float, at_most: bool = False) -> dict:
    """One target row: ``value`` >= ``target`` (or <= with ``at_most``); n/a when not measured."""
    met = value is not None and (value <= target if at_most else value >= target)
    status = "n/a" if value is None else ("PASS" if met else "MISS")
    goal = f"{'<=' if at_most else '>='} {target}x"
    return {"target": name, "goal": goal, "value": value, "status": status}


def evaluate_targets(engines: dict, configs: list[str], matmul: dict) -> list[dict]:
    """The issue's targets with PASS / MISS (n/a where the measurement was skipped)."""
    summary = matmul.get("summary", {})
    targets = [check("DI-MatMul vs sgemm, M=128 (a layer's projections)", summary.get("m128_layer_ratio"),
                     TARGETS["matmul_m128"])]
    for cfg in configs:
        r = engines[cfg]
        targets += [check(f"{cfg} decode vs transformers", r.get("decode_vs_transformers"),
                          TARGETS["decode_vs_transformers"]),
                    check(f"{cfg} prefill vs transformers", r.get("prefill_vs_transformers"),
                          TARGETS["prefill_vs_transformers"]),
                    check(f"{cfg} run memory / (weights + KV)", r["memory_ratio"], TARGETS["memory_ratio"],
                          at_most=True)]
    return targets


def fmt(value, spec: str = ".1f", suffix: str = "") -> str:
    """``value`` formatted, or "-" when it was not measured."""
    return "-" if value is None else f"{value:{spec}}{suffix}"


def engine_table(engines: dict) -> list[str]:
    """One row per engine: speed, ratios, memory, export time."""
    lines = ["| engine | prefill tok/s | decode tok/s | prefill vs float ref | decode vs float ref | "
             "prefill vs transformers | decode vs transformers | peak RSS MB | run MB | weights+KV MB | "
             "run / (weights+KV) | export s |", "|" + "---|" * 12]
    for r in engines.values():
        if "skipped" in r:
            lines.append(f"| {r['label']} | skipped: {r['skipped']} |" + " |" * 10)
            continue
        ratios = " | ".join(fmt(r.get(f"{phase}_vs_{base}"), ".2f", "x")
                            for base in ("float_ref", "transformers") for phase in ("prefill", "decode"))
        lines.append(
            f"| {r['label']} | {fmt(r['prefill_tok_s'])} | {fmt(r['decode_tok_s'])} | {ratios} | "
            f"{r['peak_rss_bytes'] / MB:.0f} | {r['run_bytes'] / MB:.0f} | "
            f"{(r['weights_bytes'] + r['kv_bytes']) / MB:.1f} | {r['memory_ratio']:.2f}x | {fmt(r.get('export_s'))} |")
    return lines


def matmul_table(matmul: dict) -> list[str]:
    """The DI-MatMul vs sgemm rows and the M=128 summary."""
    if "skipped" in matmul:
        return [f"DI-MatMul: skipped ({matmul['skipped']})"]
    lines = ["DI-MatMul on SmolLM-135M's projection shapes (benchmarks/matmul_throughput.py), best of --repeat:",
             "", "| shape | M x K x N | sgemm GFLOP/s | DI-MatMul GOP/s | DI-MatMul / sgemm |", "|---|---|---|---|---|"]
    for r in matmul["rows"]:
        lines.append(f"| {r['shape']} | {r['M']}x{r['K']}x{r['N']} | {r['sgemm_gops']:.1f} | "
                     f"{r['di_matmul_gops']:.1f} | {r['di_matmul_vs_sgemm']:.2f}x |")
    s = matmul["summary"]
    if s:
        lines.append(f"M=128: one layer's projections together {s['m128_layer_ratio']:.2f}x of sgemm "
                     f"(worst single shape {s['m128_min_ratio']:.2f}x)")
    return lines


def report(results: dict) -> str:
    """The Markdown report of ``results``."""
    s, m = results["settings"], results["machine"]
    lines = [f"Model: {s['layers']} layers, hidden {s['hidden']}, intermediate {s['intermediate']}, "
             f"{s['heads']} heads / {s['kv_heads']} KV heads, vocab {s['vocab']}, tied embeddings, random weights; "
             f"prompt {s['prompt_tokens']} tokens (best of {s['repeat']}), decode {s['decode_tokens']} tokens; "
             f"each engine run {s['rounds']} times, the fastest counts", ""]
    lines += engine_table(results["engines"]) + [""]
    kernels = [r["kernels_bytes"] for r in results["engines"].values() if "kernels_bytes" in r]
    lines += ["run MB = peak RSS minus the RSS before the model is loaded (after imports; for ilsim also after "
              f"its Numba kernels were loaded by a run of a 2-layer miniature: {max(kernels, default=0) / MB:.0f} MB, "
              "a fixed cost like torch's compiled kernels, which its import brings); weights+KV = stored weight "
              "bytes + KV cache bytes at the end of decode (integer: preallocated for prompt + decode).", ""]
    lines += matmul_table(results["matmul"]) + [""]
    for cfg, g in results["golden"].items():
        lines.append(f"Golden model trace ({cfg}, {g['prompt_tokens']}-token prompt + {g['new_tokens']} decode "
                     f"steps, all layers): {g['seconds']:.1f} s, {g['bytes'] / MB:.1f} MB in {g['files']} files")
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads; Python {m['python']}, "
                  f"numpy {m['numpy']}, numba {m['numba']}, torch {m['torch']}, transformers {m['transformers']}", ""]
    lines += ["| target | goal | measured | status |", "|---|---|---|---|"]
    lines += [f"| {t['target']} | {t['goal']} | {fmt(t['value'], '.2f', 'x')} | {t['status']} |"
              for t in results["targets"]]
    return "\n".join(lines)


def run_all(args, workdir: Path) -> dict:
    """Every measurement, each in its own subprocess; the results dictionary."""
    configs = args.configs
    base = {"threads": args.threads, "repeat": args.repeat, "prompt_tokens": args.prompt_tokens,
            "decode_tokens": args.decode_tokens, "vocab": args.vocab}
    shape = {k: getattr(args, k) for k in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab")}
    checkpoint = str(write_checkpoint(workdir / "checkpoint", shape))
    warmup_checkpoint = str(write_checkpoint(workdir / "warmup-checkpoint", WARMUP_SHAPE))
    matmul = {"skipped": "--skip-matmul"}
    if not args.skip_matmul:
        matmul = run_worker("matmul", dict(base, label="DI-MatMul"))
        matmul["summary"] = matmul_summary(matmul["rows"])
    golden, exported, runs = {}, {}, {}
    for cfg in configs:
        wbits, abits = CONFIGS[cfg]
        spec = dict(base, label=cfg, checkpoint=checkpoint, graph=str(workdir / f"{cfg}.ilsim"),
                    warmup_checkpoint=warmup_checkpoint, warmup_graph=str(workdir / f"warmup-{cfg}.ilsim"),
                    wbits=wbits, abits=abits, out=str(workdir / f"golden-{cfg}"))
        exported[cfg] = run_worker("export", spec)
        golden[cfg] = run_worker("golden", spec)
        runs[cfg] = ("integer", spec, f"ilsim {cfg.upper()} (integer)")
    runs["float"] = ("float", dict(base, label="float", checkpoint=checkpoint), "ilsim float reference (NumPy f32)")
    runs["transformers"] = ("transformers", dict(base, label="transformers", checkpoint=checkpoint),
                            "transformers LlamaForCausalLM (torch f32)")
    engines = {}
    for round_index in range(args.rounds):   # every engine once per round, the order reversed each round
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            kind, spec, label = runs[name]
            if kind == "transformers" and args.skip_transformers:
                engines[name] = {"label": label, "skipped": "--skip-transformers"}
                continue
            result = run_worker(kind, spec)
            engines[name] = merge_rounds(engines.get(name), {"label": label, **result, **exported.get(name, {})})
    engines = {name: engines[name] for name in runs}
    add_ratios(engines)
    settings = {k: getattr(args, k) for k in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab",
                                               "prompt_tokens", "decode_tokens", "repeat", "rounds", "threads")}
    return {"settings": dict(settings, configs=configs), "machine": machine_info(args.threads),
            "engines": engines, "matmul": matmul, "golden": golden,
            "targets": evaluate_targets(engines, configs, matmul)}


def validate(args, parser: argparse.ArgumentParser) -> None:
    """Reject arguments that cannot describe a run."""
    cores = os.cpu_count() or 1
    if not 1 <= args.threads <= cores:
        parser.error(f"--threads must be in [1, {cores}], got {args.threads}")
    for name in ("repeat", "rounds", "decode_tokens", "layers", "hidden", "intermediate", "heads", "kv_heads", "vocab"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.prompt_tokens < WARMUP_PROMPT or args.prompt_tokens + args.decode_tokens > 2048:
        parser.error(f"--prompt-tokens must be >= {WARMUP_PROMPT} and prompt + decode tokens <= 2048")
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown or not args.configs:
        parser.error(f"--configs: unknown or empty {unknown or ''} (choose from {', '.join(CONFIGS)})")
    if args.decode_tokens < WARMUP_DECODE:
        parser.error(f"--decode-tokens must be >= {WARMUP_DECODE}")
    if args.hidden % args.heads or args.heads % args.kv_heads or (args.hidden // args.heads) % 2:
        parser.error("--hidden must be a multiple of --heads (even head_dim), --heads a multiple of --kv-heads")


def parse_args(argv):
    """The command line; worker invocations (--worker KIND --spec JSON) skip the run checks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for every engine")
    parser.add_argument("--repeat", type=int, default=3, help="prefill timing: best of this many")
    parser.add_argument("--rounds", type=int, default=2,
                        help="run every engine this many times, in alternating order; the fastest run counts")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--configs", default="w8a8,w4a4", help="comma-separated: w8a8, w4a4",
                        type=lambda text: [c.strip().lower() for c in text.split(",") if c.strip()])
    parser.add_argument("--workdir", help="where checkpoint, graphs and traces go (kept); default: a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the default temp dir")
    parser.add_argument("--json", help="write the results as JSON here")
    for name, value in SMOLLM_135M.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=value, help=f"shape (default {value})")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--skip-matmul", action="store_true")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.worker:
        validate(args, parser)
    return args


def main(argv=None) -> int:
    """Run the benchmark (or, with --worker, one measurement in this process)."""
    args = parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(WORKERS[args.worker](json.loads(args.spec))))
        return 0
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="ilsim-model-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = run_all(args, workdir)
    except WorkerError as err:
        print(f"model_speed: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"kept {workdir}", file=sys.stderr)
    print(report(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
