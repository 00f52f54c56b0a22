"""DI-MatMul throughput against float32 sgemm on the same shapes, measured side by side.

    python benchmarks/matmul_throughput.py [--repeat 5] [--threads N] [--json out.json]

For each shape (M tokens x K inputs -> N outputs; SmolLM-135M's projections at prefill M=128 and
decode M=1), times: numpy float32 A @ W^T (BLAS sgemm), ilsim's exact integer accumulator
(matmul_accumulate, the Numba int kernel) and the whole DI-MatMul (accumulate, fold per-channel
scales, dynamic per-token requantization). Reports giga-operations per second (2*M*K*N / time)
and the ratio to sgemm. Best of --repeat runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numba
import numpy as np

from ilsim.ops.matmul import di_matmul, matmul_accumulate

SHAPES = [  # (label, M, K, N)
    ("q/o proj, prefill", 128, 576, 576),
    ("gate/up proj, prefill", 128, 576, 1536),
    ("down proj, prefill", 128, 1536, 576),
    ("q/o proj, decode", 1, 576, 576),
    ("gate/up proj, decode", 1, 576, 1536),
    ("down proj, decode", 1, 1536, 576),
]


def best_time(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def bench(repeat: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for label, m, k, n in SHAPES:
        a = rng.integers(0, 256, size=(m, k), dtype=np.int64).astype(np.uint8)
        a_zp = rng.integers(100, 156, size=m)
        w = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
        w_zp = np.zeros(n, dtype=np.int64)
        af, wf = a.astype(np.float32), w.astype(np.float32)
        ops = 2.0 * m * k * n
        t_sgemm = best_time(lambda: af @ wf.T, repeat)
        t_acc = best_time(lambda: matmul_accumulate(a, a_zp, w, w_zp, a_bits=8, b_bits=8), repeat)
        a_m, a_k = np.full(m, 40000), np.full(m, 20)
        w_m, w_k = rng.integers(1 << 15, 1 << 16, size=n), np.full(n, 22)
        t_full = best_time(lambda: di_matmul(a, a_zp, a_m, a_k, w, w_zp, w_m, w_k, a_bits=8, b_bits=8), repeat)
        rows.append({"shape": label, "M": m, "K": k, "N": n,
                     "sgemm_gops": ops / t_sgemm / 1e9, "accumulate_gops": ops / t_acc / 1e9,
                     "di_matmul_gops": ops / t_full / 1e9,
                     "accumulate_vs_sgemm": t_sgemm / t_acc, "di_matmul_vs_sgemm": t_sgemm / t_full})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, help="Numba threads (default: all)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
    rows = bench(args.repeat)
    print(f"Numba threads: {numba.get_num_threads()}")
    print("| shape | M x K x N | sgemm GFLOP/s | int accumulate GOP/s | DI-MatMul GOP/s | accumulate / sgemm | DI-MatMul / sgemm |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['M']}x{r['K']}x{r['N']} | {r['sgemm_gops']:.1f} | {r['accumulate_gops']:.1f} | "
              f"{r['di_matmul_gops']:.1f} | {r['accumulate_vs_sgemm']:.2f}x | {r['di_matmul_vs_sgemm']:.2f}x |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
