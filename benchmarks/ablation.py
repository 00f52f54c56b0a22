"""Ablation 2: the I-LLM method against knowledge-distillation-based and pruning-based quantization.

    python benchmarks/ablation.py --model shakespeare-tiny --methods illm,kd,sparsegpt,sparsegpt-2:4 \\
        --configs w2a2,w4a4,w6a6,w8a8 --json out.json --markdown out.md --plot out.png
    python benchmarks/ablation.py --quick --json out.json          # a minute or two: what CI runs

For each method (METHODS: an export method of ilsim with its options) and each scheme WnAm, one
*cell*: export the model (timed, its peak memory its own: every cell runs in a fresh worker
process), then on each evaluation text the integer run's perplexity and top-1 next-token accuracy
(float_model.perplexity over consecutive windows of ``--context`` tokens), the fake-quant run's
(the same graph in float arithmetic: what the quantizer alone costs), and the integer run's greedy
continuation of each prompt (ilsim.evaluate's prompt set), compared with the float model's: the
number of leading tokens they share. The float model is one more cell. Every method's graph is an
ordinary ilsim graph on the same interpreter (tests/test_export_methods.py proves fast ==
reference and a clean width audit for each).

Cells run in parallel worker processes (``--workers``, all cores by default; each worker gets
cores / workers threads). Each finished cell is cached in ``--work-dir`` (default: the cache,
ablation/<model>) under the sha256 of everything it depends on -- the model file, the texts'
token ids, the prompts, the options, ilsim's version and the sha256 of its sources -- so a killed
sweep resumes where it stopped and a rerun computes nothing. Exported graphs are deleted once
their cell is measured (``--keep-graphs`` keeps them).

Writes JSON (``--json``), a markdown table (``--markdown``) and a plot (``--plot``: perplexity per
scheme per method, one panel per text, log scale; matplotlib). Offline measurement code: floats
are fine here; the integer run itself is integer-only.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

#: name -> (export method, export options, what it is)
METHODS = {
    "illm": ("fsbr", {}, "I-LLM: learned FSBR (the six smoothing pairs and the weight clipping learned block by "
                         "block), round-to-nearest"),
    "illm-closed": ("smooth", {}, "I-LLM with FSBR's closed-form smoothing factors (nothing learned)"),
    "ilsim": ("rotate+gptq", {}, "ilsim's default export: QuaRot rotations and GPTQ"),
    "kd": ("kd", {}, "LLM-QAT: the weights fine-tuned through the export's quantizers, float model as teacher "
                     "(KL on logits, calibration text)"),
    "sparsegpt": ("sparsegpt", {"sparsity_pattern": "unstructured", "sparsity": 0.5},
                  "SparseGPT: 50 % unstructured pruning and GPTQ in one pass"),
    "sparsegpt-2:4": ("sparsegpt", {"sparsity_pattern": "2:4"}, "SparseGPT: 2:4 pruning and GPTQ in one pass"),
    "wanda": ("wanda", {"sparsity_pattern": "unstructured", "sparsity": 0.5},
              "Wanda: 50 % unstructured pruning by |W| x input norm, then round-to-nearest"),
    "wanda-2:4": ("wanda", {"sparsity_pattern": "2:4"}, "Wanda 2:4, then round-to-nearest"),
}
DEFAULT_METHODS = "illm,kd,sparsegpt,sparsegpt-2:4"
DEFAULT_CONFIGS = "w2a2,w4a4,w6a6,w8a8"
#: --quick: small budgets everywhere, so that the whole sweep on the shipped model takes about a minute
QUICK_OPTIONS = {"calib_context": 64, "calib_windows": 2, "gptq_calib_windows": 4, "fsbr_epochs": 1,
                 "fsbr_calib_windows": 2, "kd_steps": 3, "kd_windows": 2}
QUICK = {"model": "shakespeare-tiny", "max_tokens": 128, "context": 64, "new_tokens": 4, "prompts": 2,
         "text": "shakespeare_test.txt"}


def parse_methods(text: str) -> list[str]:
    from ilsim.errors import InputError

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown or not names:
        raise InputError(f"ablation: unknown method(s) {unknown or text!r}; known: {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def parse_sets(items: list[str]) -> dict:
    """--set key=value (ExportOptions fields; ints, floats and strings) -> dict; InputError otherwise."""
    from ilsim.errors import InputError
    from ilsim.export.build import ExportOptions

    fields = {f.name: f for f in dataclasses.fields(ExportOptions)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields or key in ("wbits", "abits", "method"):
            raise InputError(f"ablation: --set {item!r}: expected KEY=VALUE with KEY an export option "
                             "(not wbits, abits or method)")
        for cast in (int, float, str):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
    return out


# ---------------------------------------------------------------- the cells (run in worker processes)

def run_cell(cell: dict) -> dict:
    """One cell, in a fresh process: the float model's runs, or one method x scheme's export and runs."""
    from ilsim.evaluate import _greedy, measure_texts
    from ilsim.float_model import FloatLlama
    from ilsim.hf.checkpoint import load_checkpoint

    notes = []
    texts = {path: np.asarray(ids, dtype=np.int64) for path, ids in cell["texts"].items()}
    prompts = [_Prompt(ids) for ids in cell["prompts"]]
    start = time.perf_counter()
    if cell["kind"] == "float":
        model = FloatLlama(load_checkpoint(cell["source"]))
        return {"texts": [dataclasses.asdict(t) for t in measure_texts(model, texts, cell["context"], notes.append)],
                "continuations": _greedy("float", model, prompts, cell["new_tokens"]),
                "seconds": time.perf_counter() - start, "notes": notes}
    from ilsim.export.build import ExportOptions
    from ilsim.export.run import export_checkpoint
    from ilsim.fakequant import FakeQuantLM
    from ilsim.graph.files import load_graph, save_graph
    from ilsim.model import IntegerLM

    options = ExportOptions(wbits=cell["wbits"], abits=cell["abits"], method=cell["method"], **cell["options"])
    graph = export_checkpoint(cell["source"], options, calib=cell["calib"], progress=False)
    export_seconds = time.perf_counter() - start
    export_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    path = Path(cell["graph_path"])
    save_graph(graph, path)
    graph_bytes = path.stat().st_size
    graph = load_graph(path)          # what a user of the file runs
    report = graph.quant.get("report", {})
    result = {"export": {"seconds": export_seconds, "peak_mb": export_peak_mb, "graph_bytes": graph_bytes,
                         "report": report}, "notes": notes}
    t0 = time.perf_counter()
    integer = IntegerLM(graph)
    result["integer"] = {"texts": [dataclasses.asdict(t) for t in measure_texts(integer, texts, cell["context"],
                                                                              notes.append)],
                         "continuations": _greedy("integer", integer, prompts, cell["new_tokens"]),
                         "seconds": time.perf_counter() - t0}
    del integer
    t0 = time.perf_counter()
    result["fake_quant"] = {"texts": [dataclasses.asdict(t) for t in measure_texts(FakeQuantLM(graph), texts,
                                                                                  cell["context"], notes.append)],
                            "seconds": time.perf_counter() - t0}
    if not cell["keep_graph"]:
        path.unlink()
    return result


@dataclasses.dataclass
class _Prompt:
    ids: list


def _run_guarded(item: tuple) -> tuple:
    """(key, run_cell's result), with an error as a value (a one-line message) rather than a dead pool."""
    key, cell = item
    try:
        return key, run_cell(cell)
    except Exception as err:  # noqa: BLE001 -- reported per cell; the sweep goes on
        return key, {"error": f"{type(err).__name__}: {err}"}


# ---------------------------------------------------------------- the sweep

def sweep(model: str, methods: list[str], configs: list[tuple[int, int]], texts: list[str], *, context: int,
          max_tokens: int, new_tokens: int, calib: str | None, options: dict, workers: int, work_dir,
          keep_graphs: bool = False, prompt_count: int | None = None, progress: bool = True) -> dict:
    """Run (or read from the cache) every cell; the report as a dict (the JSON document)."""
    from tqdm import tqdm

    from ilsim.errors import InputError
    from ilsim.evaluate import (CellCache, _special_tokens, _text_ids, build_prompts, config_name,
                                leading_agreement, machine_info)
    from ilsim.export.build import ExportOptions
    from ilsim.hf.checkpoint import load_checkpoint
    from ilsim.model import cache_dir, resolve_checkpoint_source, source_identity
    from ilsim.tokenizer import Tokenizer

    started = time.perf_counter()
    source = resolve_checkpoint_source(model)
    ckpt = load_checkpoint(source)
    tokenizer = Tokenizer(ckpt.require_tokenizer_json("the ablation needs it"), str(ckpt.directory))
    if context > ckpt.config.max_position_embeddings:
        raise InputError(f"ablation: --context {context} exceeds the model's {ckpt.config.max_position_embeddings}")
    for name in methods:          # every cell's options are valid before any work starts
        for wbits, abits in configs:
            ExportOptions(wbits=wbits, abits=abits, method=METHODS[name][0],
                          **dict(METHODS[name][1], **options)).validate()
    text_ids = {path: _text_ids(tokenizer, path, max_tokens) for path in texts}
    prompts = build_prompts(tokenizer, ckpt.chat_template, _special_tokens(ckpt, tokenizer))[:prompt_count]
    work = Path(work_dir) if work_dir else cache_dir() / "ablation" / Path(str(ckpt.directory)).stem
    work.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps({p: ids.tolist() for p, ids in text_ids.items()}).encode()).hexdigest()
    cache = CellCache(work, {"source": source_identity(Path(source)), "texts": digest, "context": context,
                             "prompts": [p.ids for p in prompts], "new_tokens": new_tokens})
    shared = {"source": str(source), "texts": {p: ids.tolist() for p, ids in text_ids.items()},
              "prompts": [p.ids for p in prompts], "context": context, "new_tokens": new_tokens, "calib": calib,
              "keep_graph": keep_graphs}
    cells = {("float", ""): {"kind": "float"}}
    for name in methods:
        method, method_options = METHODS[name][:2]
        for wbits, abits in configs:
            cells[(name, config_name(wbits, abits))] = {"kind": "quant", "name": name, "method": method,
                                                       "options": dict(method_options, **options),
                                                       "wbits": wbits, "abits": abits}
    results, todo = {}, {}
    for key, cell in cells.items():
        cached = cache.get(dict(cell, calib=calib))
        if cached is not None:
            results[key] = cached
        else:
            todo[key] = dict(shared, **cell, graph_path=str(cache.path(dict(cell, calib=calib)).with_suffix(".ilsim")))
    bar = tqdm(total=len(cells), initial=len(results), desc="ablation", disable=not progress, file=sys.stderr)
    if todo:
        threads = str(max(1, (os.cpu_count() or 1) // max(1, min(workers, len(todo)))))
        saved = {var: os.environ.get(var) for var in THREAD_VARS}
        os.environ.update({var: threads for var in THREAD_VARS})
        try:
            # a fresh process per cell (maxtasksperchild=1), so that its peak memory is its own
            with multiprocessing.get_context("spawn").Pool(min(workers, len(todo)), maxtasksperchild=1) as pool:
                # the float cell first, then the slowest methods' cells (learned ones) first
                order = sorted(todo, key=lambda k: (k[0] != "float", METHODS.get(k[0], ("",))[0] not in
                                                    ("fsbr", "kd")))
                for key, result in pool.imap_unordered(_run_guarded, [(key, todo[key]) for key in order]):
                    if "error" not in result:
                        cache.put(dict(cells[key], calib=calib), result)
                    results[key] = result
                    bar.set_postfix_str(f"{key[0]} {key[1]}".strip())
                    bar.update(1)
        finally:
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
    bar.close()
    float_run = results[("float", "")]
    if "error" in float_run:
        raise InputError(f"ablation: the float model failed: {float_run['error']}")
    rows = []
    for (name, config), result in results.items():
        if name == "float":
            continue
        row = {"method": name, "export_method": cells[(name, config)]["method"],
               "options": cells[(name, config)]["options"], "config": config, **result}
        if "integer" in result:
            row["agreement"] = [leading_agreement(f, o) for f, o in
                                zip(float_run["continuations"], result["integer"]["continuations"])]
        rows.append(row)
    order = {name: i for i, name in enumerate(methods)}
    rows.sort(key=lambda r: (order[r["method"]], [config_name(*c) for c in configs].index(r["config"])))
    return {"model": model, "machine": machine_info(),
            "settings": {"methods": {name: {"export_method": METHODS[name][0], "options": METHODS[name][1],
                                            "what": METHODS[name][2]} for name in methods},
                         "configs": [config_name(*c) for c in configs], "texts": list(texts),
                         "context": context, "max_tokens": max_tokens, "new_tokens": new_tokens,
                         "calibration": calib or "default", "options": options, "workers": workers,
                         "seconds": time.perf_counter() - started},
            "prompts": [p.ids for p in prompts], "float": float_run, "cells": rows}


THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ---------------------------------------------------------------- reports

def _ppl(v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) and v < 1e4 else f"{v:.3g}"


def markdown_table(report: dict) -> str:
    """One row per method and scheme: integer perplexity per text (and its ratio to float), the
    fake-quant perplexity, integer top-1 (mean over texts), generation agreement, export time and
    memory, and what pruning or distillation did."""
    texts = [Path(t["text"]).stem for t in report["float"]["texts"]]
    n_new = report["settings"]["new_tokens"]
    head = (f"| method | scheme | integer ppl ({' / '.join(texts)}) | integer / float | fake-quant ppl | "
            f"integer top-1 | gen. agreement (mean of {n_new}; prompts at all {n_new}) | export s | peak MB | "
            "pruned / eff. bits | KD loss |")
    lines = [head, "|" + "---|" * 11]
    floats = report["float"]["texts"]
    lines.append(f"| float | - | {' / '.join(_ppl(t['perplexity']) for t in floats)} | 1 | - | "
                 f"{100 * np.mean([t['top1'] for t in floats]):.2f}% | - | - | - | - | - |")
    for row in report["cells"]:
        if "error" in row:
            lines.append(f"| {row['method']} | {row['config']} | error: {row['error']} |" + " |" * 8)
            continue
        it, fq = row["integer"]["texts"], row["fake_quant"]["texts"]
        ratios = [a["perplexity"] / b["perplexity"] for a, b in zip(it, floats)]
        agree = row["agreement"]
        rep = row["export"]["report"]
        pruning = rep.get("pruning")
        pruned = f"{100 * pruning['sparsity']:.1f}% {pruning['pattern']} / {pruning['effective_bits']:.2f}" \
            if pruning else "-"
        kd = rep.get("kd")
        kd_text = f"{kd['loss_start']:.3g} → {kd['loss_end']:.3g}{'' if kd['kept'] else ' (not kept)'}" if kd else "-"
        lines.append(f"| {row['method']} | {row['config']} | {' / '.join(_ppl(t['perplexity']) for t in it)} | "
                     f"{' / '.join(f'{r:.3f}' if r < 1e3 else f'{r:.3g}' for r in ratios)} | "
                     f"{' / '.join(_ppl(t['perplexity']) for t in fq)} | "
                     f"{100 * np.mean([t['top1'] for t in it]):.2f}% | "
                     f"{np.mean(agree):.1f}; {sum(a == n_new for a in agree)} of {len(agree)} | "
                     f"{row['export']['seconds']:.0f} | {row['export']['peak_mb']:.0f} | {pruned} | {kd_text} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path) -> None:
    """Integer perplexity (solid) and fake-quant (dashed) per scheme, one line per method, one
    panel per text, log scale; the float model dotted."""
    from ilsim.errors import InputError

    try:
        import matplotlib
    except ImportError:
        raise InputError("the plot needs matplotlib: pip install 'ilsim[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floats = report["float"]["texts"]
    configs = report["settings"]["configs"]
    methods = list(report["settings"]["methods"])
    fig, axes = plt.subplots(1, len(floats), figsize=(4.2 * len(floats), 4.2), dpi=120, squeeze=False)
    for i, (ax, f) in enumerate(zip(axes[0], floats)):
        ax.axhline(f["perplexity"], color="black", linestyle=":", linewidth=1, label="float")
        for j, method in enumerate(methods):
            rows = {r["config"]: r for r in report["cells"] if r["method"] == method and "error" not in r}
            xs = [c for c in configs if c in rows]
            ax.plot(xs, [rows[c]["integer"]["texts"][i]["perplexity"] for c in xs], "o-", color=f"C{j}",
                    label=f"{method}: integer")
            ax.plot(xs, [rows[c]["fake_quant"]["texts"][i]["perplexity"] for c in xs], "x--", color=f"C{j}",
                    alpha=0.5, label=f"{method}: fake-quant")
        ax.set_yscale("log")
        ax.set_title(Path(f["text"]).stem, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        if i == 0:
            ax.set_ylabel("perplexity (log scale)")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{report['model']}: perplexity per scheme and method ({report['settings']['context']}-token windows)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write_atomic(path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None) -> int:
    from ilsim.errors import IlsimError
    from ilsim.evaluate import default_texts, parse_configs
    from ilsim.resources import DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="methods:\n" + "\n".join(f"  {k:14s} {v[2]}" for k, v in METHODS.items()))
    parser.add_argument("--model", help="shipped or fetched model name, checkpoint or GGUF (default shakespeare-tiny)")
    parser.add_argument("--methods", default=DEFAULT_METHODS, help=f"comma-separated (default {DEFAULT_METHODS})")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"comma-separated WnAm (default {DEFAULT_CONFIGS})")
    parser.add_argument("--text", action="append", help="evaluation text, repeatable (default: the shipped ones)")
    parser.add_argument("--context", type=int, default=None, help="perplexity window (default 512; --quick 64)")
    parser.add_argument("--max-tokens", type=int, default=None, help="first N tokens of each text (default 4096)")
    parser.add_argument("--new-tokens", type=int, default=None, help="greedy tokens per prompt (default 32)")
    parser.add_argument("--calib", help="calibration text (default: the model's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an export option for every cell, e.g. kd_steps=40 (repeatable)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel cells (default: all cores)")
    parser.add_argument("--work-dir", help="cell cache and graphs (default: the cache, ablation/<model>)")
    parser.add_argument("--keep-graphs", action="store_true", help="keep each cell's exported graph")
    parser.add_argument("--quick", action="store_true",
                        help="a minute or two: small budgets, one text (shakespeare_test), the shipped model")
    parser.add_argument("--json", help="write the report as JSON")
    parser.add_argument("--markdown", help="write the table as markdown")
    parser.add_argument("--plot", help="write the plot (.png / .svg)")
    args = parser.parse_args(argv)
    try:
        options = parse_sets(args.set)
        if args.quick:
            options = dict(QUICK_OPTIONS, **options)
        model = args.model or QUICK["model"]
        context = args.context or (QUICK["context"] if args.quick else 512)
        max_tokens = args.max_tokens if args.max_tokens is not None else (QUICK["max_tokens"] if args.quick else 4096)
        new_tokens = args.new_tokens or (QUICK["new_tokens"] if args.quick else 32)
        if min(context, new_tokens, args.workers) < 1 or max_tokens < 0:
            raise IlsimError("ablation: --context, --new-tokens and --workers must be >= 1, --max-tokens >= 0")
        texts = args.text or ([str(DATA_DIR / QUICK["text"])] if args.quick else default_texts())
        report = sweep(model, parse_methods(args.methods), parse_configs(args.configs), texts, context=context, max_tokens=max_tokens, new_tokens=new_tokens,
                       calib=args.calib, options=options, workers=args.workers, work_dir=args.work_dir,
                       keep_graphs=args.keep_graphs, prompt_count=QUICK["prompts"] if args.quick else None)
    except IlsimError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = markdown_table(report)
    print(f"{report['model']} on {report['machine']['cpu']} ({', '.join(report['machine']['isa'])}; "
          f"{report['machine']['cores']} cores), {report['settings']['seconds']:.0f} s\n")
    print(table)
    if args.json:
        _write_atomic(args.json, json.dumps(report, indent=1) + "\n")
    if args.markdown:
        _write_atomic(args.markdown, table)
    if args.plot:
        plot(report, args.plot)
    failed = [f"{r['method']} {r['config']}: {r['error']}" for r in report["cells"] if "error" in r]
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
