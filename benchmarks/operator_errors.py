"""Error of every operator against the float math it approximates, over a random sweep.

    python benchmarks/operator_errors.py [--samples 200] [--seed 0] [--json out.json]

For each operator, random real inputs are quantized the way the model does (dynamic per-row
quantization to 8 bits, 16 bits for the residual stream), the integer operator runs, and its
dequantized output is compared with the float result on the *dequantized inputs* (so the table
shows the operator's own error, not the input quantization's). Errors are relative to the
largest |float output| of each sample: max and mean over all elements of all samples.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from ilsim.arith.dyadic import dyadic_from_scale
from ilsim.demo import dequantize_rows as deq, to_rows
from ilsim.export.rope_tables import rope_tables
from ilsim.ops import exp, matmul, norm, residual, rope, softmax, swiglu


def sweep_matmul(rng):
    k = int(rng.integers(16, 300))
    a = to_rows(rng.standard_normal((4, k)))
    w = to_rows(rng.standard_normal((12, k)) * 0.05, symmetric=True)
    out = matmul.di_matmul(a.q, a.zp, a.m, a.k, w.q, w.zp, w.m, w.k, a_bits=8, b_bits=8, b_signed=True)
    return deq(out), deq(a) @ deq(w).T


def _exp_sweep(rng, order: int, lo: float, hi: float):
    scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    d = dyadic_from_scale(scale)
    x = -rng.integers(0, int(12 / scale) + 1, size=64)
    out = exp.di_exp(x, d.m, d.k, order=order, in_bits=24)
    return out.y / out.t_abs, np.exp(x * d.m / 2.0 ** d.k)


def sweep_exp_fine(rng):       # |t| ~ 45 .. 2900: the softmax and sigmoid regime in the model
    return _exp_sweep(rng, 1, 1 / 4096, 1 / 64)


def sweep_exp2_fine(rng):
    return _exp_sweep(rng, 2, 1 / 4096, 1 / 64)


def sweep_exp_coarse(rng):     # |t| ~ 6 .. 45: an 8-bit input fed straight to DI-Exp
    return _exp_sweep(rng, 1, 1 / 64, 1 / 8)


def sweep_softmax(rng):
    logits = rng.standard_normal((4, int(rng.integers(4, 200)))) * rng.uniform(0.5, 4)
    x = to_rows(logits, bits=16, symmetric=True)
    p = softmax.di_softmax(x.q, x.m, x.k, in_bits=16)
    xr = deq(x)
    e = np.exp(xr - xr.max(axis=-1, keepdims=True))
    return p / 256.0, e / e.sum(axis=-1, keepdims=True)


def sweep_swiglu(rng):
    n = int(rng.integers(8, 300))
    g, u = to_rows(rng.standard_normal((4, n)) * 2), to_rows(rng.standard_normal((4, n)))
    out = swiglu.di_swiglu(g.q, g.zp, g.m, g.k, u.q, u.zp, u.m, u.k)
    gr, ur = deq(g), deq(u)
    return deq(out), gr / (1 + np.exp(-gr)) * ur


def sweep_rmsnorm(rng):
    d = int(rng.integers(8, 600))
    x = to_rows(rng.standard_normal((4, d)) * rng.uniform(0.1, 10), bits=16, symmetric=True)
    gain = rng.uniform(0.2, 2.0, size=d)
    gamma_k = 14
    gamma = np.round(gain * (1 << gamma_k)).astype(np.int64)
    out = norm.di_rmsnorm(x.q, x.m, x.k, gamma, gamma_k)
    xr = deq(x)
    return deq(out), xr / np.sqrt(np.mean(xr ** 2, axis=-1, keepdims=True) + 1e-5) * (gamma / 2.0 ** gamma_k)


def sweep_residual(rng):
    d = int(rng.integers(8, 600))
    a = to_rows(rng.standard_normal((4, d)) * 5, bits=16, symmetric=True)
    b = to_rows(rng.standard_normal((4, d)) * 0.5)
    out = residual.residual_add(a.q, a.zp, a.m, a.k, b.q, b.zp, b.m, b.k, a_bits=16, b_bits=8)
    return deq(out), deq(a) + deq(b)


def sweep_rope(rng):
    d = 2 * int(rng.integers(2, 64))
    x = to_rows(rng.standard_normal((4, d)))
    tables = rope_tables(512, d)
    pos = rng.integers(0, 512, size=4)
    out = rope.di_rope(x.q, x.zp, x.m, x.k, pos, tables.cos, tables.sin)
    xr = deq(x)
    inv = 10000.0 ** (-np.arange(d // 2) * 2 / d)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    half = d // 2
    ref = np.concatenate([xr[:, :half] * c - xr[:, half:] * s, xr[:, half:] * c + xr[:, :half] * s], axis=1)
    return deq(out), ref


SWEEPS = {
    "di_matmul (W8A8, out uint8)": sweep_matmul,
    "di_exp order 1 (paper), scale 2^-12..2^-6": sweep_exp_fine,
    "di_exp order 2, scale 2^-12..2^-6": sweep_exp2_fine,
    "di_exp order 1 (paper), coarse scale 2^-6..2^-3": sweep_exp_coarse,
    "di_softmax (int16 in, uint8 out)": sweep_softmax,
    "di_swiglu (uint8 in/out)": sweep_swiglu,
    "di_rmsnorm (int16 in, uint8 out)": sweep_rmsnorm,
    "residual_add (int16 + uint8 -> int16)": sweep_residual,
    "di_rope (uint8 in/out, F=14)": sweep_rope,
}


def run(samples: int, seed: int) -> dict:
    results = {}
    for name, fn in SWEEPS.items():
        rng = np.random.default_rng(seed)
        errs = []
        for _ in range(samples):
            got, want = fn(rng)
            errs.append(np.abs(np.asarray(got, dtype=np.float64) - want).ravel() / max(np.abs(want).max(), 1e-12))
        e = np.concatenate(errs)
        results[name] = {"max_rel_error": float(e.max()), "mean_rel_error": float(e.mean()), "elements": int(e.size)}
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = run(args.samples, args.seed)
    print(f"| operator | max error | mean error | elements |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['max_rel_error']:.2e} | {r['mean_rel_error']:.2e} | {r['elements']:,} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
