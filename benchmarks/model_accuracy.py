"""Perplexity and top-1 accuracy of the shipped model: float, and each bit-width configuration
both integer-only and as float fake-quant of the same quantizer (same graph, float arithmetic).

    python benchmarks/model_accuracy.py [--model shakespeare-tiny] [--text FILE] [--tokens 8192]
                                        [--configs W8A8,W6A6,W4A8,W4A4,W2A2] [--json out.json]
                                        [--svg docs/model_accuracy.svg]

The text defaults to the shipped held-out test split (whole plays never seen in training or
calibration). Windows of --context tokens, non-overlapping; the same token ids for every row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from ilsim.export.build import ExportOptions
from ilsim.export.run import export_checkpoint, read_text_file
from ilsim.fakequant import FakeQuantLM
from ilsim.float_model import perplexity
from ilsim.model import DATA_DIR, IntegerLM, load_float_model, resolve_checkpoint_source

DEFAULT_CONFIGS = "W8A8,W6A6,W4A8,W4A4,W3A8,W2A8,W2A2"


def parse_config(text: str) -> tuple[int, int]:
    w, a = text.upper().lstrip("W").split("A")
    return int(w), int(a)


def svg_chart(rows: list[dict], path: str) -> None:
    """A grouped bar chart of perplexity (log scale) per configuration, as a plain SVG file."""
    width, height, left, bottom, top = 760, 360, 60, 50, 20
    plot_h = height - bottom - top
    values = [r[key] for r in rows for key in ("int_ppl", "fq_ppl") if r.get(key)]
    lo, hi = np.log10(min(values) * 0.8), np.log10(max(values) * 1.25)
    bar_w = (width - left - 20) / (len(rows) * 3)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{left}" y="14">perplexity on held-out Shakespeare (log scale); '
             f'dark: integer-only, light: float fake-quant</text>']
    for tick in np.arange(np.floor(lo), np.ceil(hi) + 0.01, 0.25):
        if lo <= tick <= hi:
            y = top + plot_h * (1 - (tick - lo) / (hi - lo))
            parts.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                         f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{10 ** tick:.3g}</text>')
    for i, r in enumerate(rows):
        x0 = left + i * 3 * bar_w + bar_w / 2
        for j, (key, colour) in enumerate((("int_ppl", "#1f4e79"), ("fq_ppl", "#8fb4d9"))):
            v = r.get(key)
            if not v:
                continue
            y = top + plot_h * (1 - (np.log10(v) - lo) / (hi - lo))
            parts.append(f'<rect x="{x0 + j * bar_w:.1f}" y="{y:.1f}" width="{bar_w * 0.95:.1f}" '
                         f'height="{top + plot_h - y:.1f}" fill="{colour}"/>')
        parts.append(f'<text x="{x0 + bar_w:.1f}" y="{height - bottom + 16}" text-anchor="middle">{r["config"]}</text>')
    parts.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(parts))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="shakespeare-tiny")
    parser.add_argument("--text", default=str(DATA_DIR / "shakespeare_test.txt"))
    parser.add_argument("--tokens", type=int, default=8192, help="first N tokens of the text")
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--exp-order", type=int, default=1)
    parser.add_argument("--json")
    parser.add_argument("--svg")
    args = parser.parse_args(argv)

    source = resolve_checkpoint_source(args.model)
    float_model, tok = load_float_model(args.model)
    ids = tok.encode(read_text_file(args.text))[: args.tokens]
    start = time.perf_counter()
    base = perplexity(float_model, ids, args.context)
    rows = [{"config": "float", "int_ppl": None, "int_top1": None, "fq_ppl": base.perplexity,
             "fq_top1": base.top1_accuracy, "seconds": time.perf_counter() - start}]
    print(f"float: ppl {base.perplexity:.3f} top-1 {100 * base.top1_accuracy:.2f}%", file=sys.stderr)
    for text in args.configs.split(","):
        wbits, abits = parse_config(text)
        start = time.perf_counter()
        graph = export_checkpoint(source, ExportOptions(wbits=wbits, abits=abits, exp_order=args.exp_order))
        export_s = time.perf_counter() - start
        fq = perplexity(FakeQuantLM(graph), ids, args.context)
        start = time.perf_counter()
        it = perplexity(IntegerLM(graph), ids, args.context)
        rows.append({"config": text, "int_ppl": it.perplexity, "int_top1": it.top1_accuracy,
                     "fq_ppl": fq.perplexity, "fq_top1": fq.top1_accuracy,
                     "int_vs_float": it.perplexity / base.perplexity - 1, "export_seconds": export_s,
                     "seconds": time.perf_counter() - start})
        print(f"{text}: integer ppl {it.perplexity:.3f} ({100 * rows[-1]['int_vs_float']:+.2f}% vs float), "
              f"fake-quant {fq.perplexity:.3f}", file=sys.stderr)

    print(f"{base.predicted_tokens} predictions, {base.windows} windows of {args.context} tokens, "
          f"DI-Exp order {args.exp_order}\n")
    print("| config | integer-only ppl | vs float | integer top-1 | fake-quant ppl | fake-quant top-1 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["config"] == "float":
            print(f"| float | — | — | — | {r['fq_ppl']:.3f} | {100 * r['fq_top1']:.2f}% |")
        else:
            print(f"| {r['config']} | {r['int_ppl']:.3f} | {100 * r['int_vs_float']:+.2f}% | "
                  f"{100 * r['int_top1']:.2f}% | {r['fq_ppl']:.3f} | {100 * r['fq_top1']:.2f}% |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    if args.svg:
        svg_chart([r for r in rows if r["config"] != "float"], args.svg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
