"""DI-MatMul throughput against float32 sgemm on the same shapes, measured side by side.

    python benchmarks/matmul_throughput.py [--repeat 7] [--threads N] [--json out.json]

For each shape (M tokens x K inputs -> N outputs: SmolLM-135M's projections and its LM head, at
prefill M=128 and decode M=1), times in one run:
- numpy float32 A @ W^T (BLAS sgemm) on the same values;
- the whole DI-MatMul as a model runs it (``di_matmul_prepared``: the weight validated and its
  scales folded once, then per call the exact integer accumulation, the fold and the dynamic
  per-token requantization);
- the exact accumulator alone (``matmul_accumulate``, one-shot API: validates b every call).
Reports giga-operations per second (2*M*K*N / time) and the ratios to sgemm: the best call of
--repeat interleaved rounds (each engine timed in every round, after a pause that lets the other
engine's threads go to sleep), after one warm-up call each. Operands: uint8 activations with
per-row zero points, uint8 weights with per-channel zero points (W8A8, as exported).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numba
import numpy as np

from ilsim.ops.matmul import di_matmul_prepared, matmul_accumulate, prepare_weight

SHAPES = [  # (label, M, K, N, times per layer: 0 for the LM head, once per forward)
    ("q/o proj, prefill", 128, 576, 576, 2),
    ("k/v proj, prefill", 128, 576, 192, 2),
    ("gate/up proj, prefill", 128, 576, 1536, 2),
    ("down proj, prefill", 128, 1536, 576, 1),
    ("lm head, prefill", 128, 576, 49152, 0),
    ("q/o proj, decode", 1, 576, 576, 2),
    ("k/v proj, decode", 1, 576, 192, 2),
    ("gate/up proj, decode", 1, 576, 1536, 2),
    ("down proj, decode", 1, 1536, 576, 1),
    ("lm head, decode", 1, 576, 49152, 0),
]


#: Pause before switching engines, so the other engine's threads (OpenBLAS and OpenMP spin for a
#: while after a call) are asleep and do not take the cores from the one being timed.
QUIESCE_S = 0.15
#: Calls timed per engine per round (the best one counts).
CALLS_PER_ROUND = 3


def best_times(fns: dict, rounds: int) -> dict:
    """Smallest wall time of each function, measured in ``rounds`` interleaved rounds (after one
    warm-up call each), so that a slow phase of a shared machine hits every engine alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(QUIESCE_S)
            for _ in range(CALLS_PER_ROUND):
                start = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench(repeat: int, shapes=SHAPES) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n, per_layer in shapes:
        a = rng.integers(0, 256, size=(m, k)).astype(np.uint8)
        a_zp = rng.integers(100, 156, size=m)
        w = rng.integers(0, 256, size=(n, k)).astype(np.uint8)
        w_zp = rng.integers(100, 156, size=n)
        a_m, a_k = np.full(m, 40000), np.full(m, 20)
        w_m, w_k = rng.integers(1 << 15, 1 << 16, size=n), np.full(n, 22)
        weight = prepare_weight(w, w_zp, w_m, w_k, b_bits=8, b_signed=False)
        af, wf = a.astype(np.float32), w.astype(np.float32)
        ops = 2.0 * m * k * n
        best = best_times({"sgemm": lambda: af @ wf.T,
                           "di_matmul": lambda: di_matmul_prepared(a, a_zp, a_m, a_k, weight, a_bits=8),
                           "accumulate": lambda: matmul_accumulate(a, a_zp, w, w_zp, a_bits=8, b_bits=8,
                                                                   b_signed=False)}, repeat)
        t_sgemm, t_full, t_acc = best["sgemm"], best["di_matmul"], best["accumulate"]
        rows.append({"shape": label, "M": m, "K": k, "N": n, "per_layer": per_layer,
                     "sgemm_gops": ops / t_sgemm / 1e9, "di_matmul_gops": ops / t_full / 1e9,
                     "accumulate_gops": ops / t_acc / 1e9,
                     "di_matmul_vs_sgemm": t_sgemm / t_full, "accumulate_vs_sgemm": t_sgemm / t_acc})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, help="Numba threads (default: all)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    rows = bench(args.repeat)
    print(f"Numba threads: {numba.get_num_threads()}")
    print("| shape | M x K x N | sgemm GFLOP/s | DI-MatMul GOP/s | DI-MatMul / sgemm | "
          "one-shot accumulate / sgemm |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['M']}x{r['K']}x{r['N']} | {r['sgemm_gops']:.1f} | {r['di_matmul_gops']:.1f} | "
              f"{r['di_matmul_vs_sgemm']:.2f}x | {r['accumulate_vs_sgemm']:.2f}x |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
