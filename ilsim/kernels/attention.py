"""Numba kernels of the attention composite's two products, for every head at once.

The composite contract (ilsim.ops.attention) is written per head; these kernels compute the
same integers with one call per step instead of one per head. Rows are r = h * T + t (head h,
new token t); head h reads kv head g = h // group. Both are exact int64 sums (the caller's
widths keep every partial sum below 2^62) with the declared accumulator width checked per
element: an element outside it sets bad[r] and is not used, so the caller can report it.

``scores``: for every cached position s < S (masked ones too, as the per-head DI-MatMul does)
    acc[r, s] = sum_c (q[h, t, c] - q_zp[h, t]) * (K[g, s, c] - k_zp[g, s])
    p[r, s]   = acc[r, s] * k_mf[g, s]          (k_mf: K's per-position multipliers, folded)
``values``: out[t, h*d + c] = sum_s (probs[r, s] * v_mf[s]) * V[g, s, c]
"""

from __future__ import annotations

import numba
import numpy as np

from ilsim.kernels.launch import row_kernel


@row_kernel
def scores(q, q_zp, k_cache, k_zp, k_mf, group, stop, acc_lo, acc_hi, p, bad):
    """p [H*T, stop] from q [H, T, d], q_zp [H, T] and the cache's first ``stop`` positions."""
    heads, tokens, depth = q.shape
    for r in numba.prange(heads * tokens):
        h = r // tokens
        t = r - h * tokens
        g = h // group
        zq = np.int64(q_zp[h, t])
        flag = np.int8(0)
        for s in range(stop):
            zk = np.int64(k_zp[g, s])
            acc = np.int64(0)
            for c in range(depth):
                acc += (np.int64(q[h, t, c]) - zq) * (np.int64(k_cache[g, s, c]) - zk)
            if acc < acc_lo or acc > acc_hi:
                flag = np.int8(1)
                p[r, s] = 0
            else:
                p[r, s] = acc * k_mf[g, s]
        bad[r] = flag


@row_kernel
def values(probs, v_mf, v_cache, group, tokens, stop, acc_lo, acc_hi, out, bad):
    """out [T, H*d] (int64) from probs [H*T, stop] and the V cache [Hkv, capacity, d]."""
    rows = probs.shape[0]
    depth = v_cache.shape[2]
    for r in numba.prange(rows):
        h = r // tokens
        t = r - h * tokens
        g = h // group
        acc = np.zeros(depth, dtype=np.int64)
        for s in range(stop):
            weight = np.int64(probs[r, s]) * v_mf[s]
            if weight != 0:
                for c in range(depth):
                    acc[c] += weight * np.int64(v_cache[g, s, c])
        flag = np.int8(0)
        for c in range(depth):
            if acc[c] < acc_lo or acc[c] > acc_hi:
                flag = np.int8(1)
            out[t, h * depth + c] = acc[c]
        bad[r] = flag


@row_kernel
def rotate(x, zp, cos, sin, heads, y_lo, y_hi, y, bad):
    """Integer RoPE (HF rotate_half pairing) of every head of x [T, heads*d]:
        y[h, t, j]       = x'_j * cos[t, j] - x'_{j+d/2} * sin[t, j]
        y[h, t, j + d/2] = x'_{j+d/2} * cos[t, j] + x'_j * sin[t, j],   x' = x[t, h*d + .] - zp[t]
    with cos, sin the table rows of the tokens' positions; bad[h*T + t] = 1 where a y leaves
    [y_lo, y_hi] (its declared width)."""
    tokens = x.shape[0]
    depth = y.shape[2]
    half = depth // 2
    for r in numba.prange(heads * tokens):
        h = r // tokens
        t = r - h * tokens
        z = np.int64(zp[t])
        base = h * depth
        flag = np.int8(0)
        for j in range(half):
            first = np.int64(x[t, base + j]) - z
            second = np.int64(x[t, base + j + half]) - z
            c = np.int64(cos[t, j])
            s = np.int64(sin[t, j])
            a = first * c - second * s
            b = second * c + first * s
            y[h, t, j] = a
            y[h, t, j + half] = b
            if a < y_lo or a > y_hi or b < y_lo or b > y_hi:
                flag = np.int8(1)
        bad[r] = flag
