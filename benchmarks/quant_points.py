"""Which quantization point costs what: fake-quant perplexity of a graph with chosen points exact.

    python benchmarks/quant_points.py MODEL_OR_GRAPH --text ilsim/data/eval_pydoc.txt --max-tokens 2048 \\
        --wbits 8 --abits 8 --method rotate+gptq --exact all --exact p --exact swiglu --exact attn_norm,mlp_norm

Exports MODEL at the given widths and method (or loads a graph file), then runs the fake-quant model
(ilsim.fakequant: the graph's own weights and grids, float arithmetic) once per ``--exact`` set,
with the listed quantization points left in float, and prints perplexity and its ratio to the float
model's. Names in a set (comma-separated): an op (di_matmul, di_rmsnorm, di_swiglu, di_hadamard,
residual_add, attention, embedding_lookup), a node-name suffix (q_proj, swiglu, final_norm,
down_hadamard, ...), ``p`` (attention probabilities at 2^-30 instead of the graph's p_frac_bits),
``clip`` (no softmax clip), or ``all`` alone for the graph as it is. Offline analysis: floats
everywhere; nothing here is the integer path. Differences under ~0.3 % on 2,048 tokens are noise
(one flipped rounding moves a 135M model's perplexity by that much).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

import ilsim.fakequant as fakequant
from ilsim.fakequant import FakeQuantLM
from ilsim.float_model import FloatLlama, perplexity

EXACT_P_FRAC_BITS = 30


class PartialFakeQuantLM(FakeQuantLM):
    """FakeQuantLM with the quantization points named in ``exact`` left unrounded."""

    def __init__(self, graph, exact: set[str]):
        super().__init__(graph)
        self.exact = exact

    def _is_exact(self, node) -> bool:
        return node.op in self.exact or any(node.name.endswith(name) for name in self.exact)

    def _run(self, node, x, positions, cache):
        rounding = fakequant.fake_quant_rows
        if self._is_exact(node):
            fakequant.fake_quant_rows = lambda values, bits, symmetric: values
        try:
            return super()._run(node, x, positions, cache)
        finally:
            fakequant.fake_quant_rows = rounding

    def _attention(self, node, x, positions, cache):
        attrs = dict(node.attrs)
        if "p" in self.exact:
            attrs.update(p_frac_bits=EXACT_P_FRAC_BITS, p_bits=EXACT_P_FRAC_BITS + 1)
        if "clip" in self.exact:
            attrs.update(clip_num=10**6, clip_den=1)
        return super()._attention(dataclasses.replace(node, attrs=attrs), x, positions, cache)


def main(argv=None) -> int:
    from ilsim.export.build import ExportOptions
    from ilsim.export.run import export_checkpoint, read_text_file
    from ilsim.graph.files import load_graph
    from ilsim.hf.checkpoint import load_checkpoint
    from ilsim.model import is_graph_file, resolve_checkpoint_source
    from ilsim.tokenizer import Tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a checkpoint, GGUF file or model name (exported here)")
    parser.add_argument("--graph", help="use this exported graph of MODEL instead of exporting")
    parser.add_argument("--text", required=True)
    parser.add_argument("--max-tokens", type=int, default=2048)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--wbits", type=int, default=8)
    parser.add_argument("--abits", type=int, default=8)
    parser.add_argument("--method", default=None)
    parser.add_argument("--exact", action="append", default=None, metavar="NAMES")
    args = parser.parse_args(argv)

    source = resolve_checkpoint_source(args.model)
    ckpt = load_checkpoint(source)
    tokenizer = Tokenizer(ckpt.require_tokenizer_json("the text must be tokenized"), str(ckpt.directory))
    ids = np.asarray(tokenizer.encode(read_text_file(args.text)), dtype=np.int64)[:args.max_tokens]
    if args.graph and is_graph_file(args.graph):
        graph = load_graph(args.graph)
    else:
        options = ExportOptions(wbits=args.wbits, abits=args.abits,
                                **({"method": args.method} if args.method else {}))
        graph = export_checkpoint(source, options, progress=True)
    float_ppl = perplexity(FloatLlama(ckpt, dtype=np.float64), ids, args.context).perplexity
    print(f"float {float_ppl:.4f} ({ids.size} tokens of {args.text}, windows of {args.context})")
    for names in args.exact or ["all"]:
        exact = set() if names == "all" else {name.strip() for name in names.split(",") if name.strip()}
        start = time.perf_counter()
        ppl = perplexity(PartialFakeQuantLM(graph, exact), ids, args.context).perplexity
        print(f"exact {names:50s} fake-quant {ppl:10.4f}  ratio {ppl / float_ppl:.4f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
