"""GPTQ (Frantar et al., arXiv 2210.17323) onto the weight grid ilsim stores. Offline, float64.

A linear layer y = x W^T (W [N, K], rows = output channels) sees calibration inputs X [n, K];
its output error for a quantized W^ is sum_j (w_j - w^_j) H (w_j - w^_j)^T with
H = 2 X^T X / n (:class:`HessianAccumulator`). GPTQ quantizes W one input column at a time and
moves each column's rounding error onto the columns not yet quantized, through the upper
Cholesky factor U of H^-1 (Algorithm 1 of the paper):

    err_j = (w_j - q_j) / U[j, j];   W[:, j+1:] -= err_j U[j, j+1:]

in lazy blocks of ``block_size`` columns (a column block updates the rest of W with one matrix
product). As in the authors' reference (IST-DASLab/gptq, gptq.py): H gets
percdamp * mean(diag H) on its diagonal; a dead input (diag H = 0) gets diag 1 and weight 0;
with ``act_order`` the columns go in order of decreasing diag H (a stable sort) and the codes
are put back in the original order.
Rows are independent, so they are processed in chunks of ROW_CHUNK rows (a chunk's block of
errors stays in cache).

The grid is the one :func:`ilsim.export.weights.quantize_weight` stores, fixed before the column
loop so that the error feedback sees exactly the values that get stored: per output channel j,
unsigned ``bits``, zero point zp_j and scale s_j = m_j / 2^shift (m_j < 2^mbits, one shift for
the matrix, exact rationals), and every code is

    q = clamp(round_half_even(w / s_j) + zp_j, 0, 2^bits - 1),   w^ = s_j (q - zp_j)

where w^ is exactly representable in float64 and equals QuantWeight.dequantize() bit for bit.
The per-channel clip ratio is chosen from ``clip_grid`` (GPTQ_CLIP_GRID: every other ratio of
quantize_weight's grid) by one of ``CLIP_SEARCHES``:
    "hessian"  smallest (w - w^) H (w - w^)^T of round-to-nearest on the ratio's grid. The
               default: on the outlier-channel layer of tests/test_gptq.py the GPTQ output error
               is about half that of "mse" at 2-4 bits; on SmolLM2-135M layers (3 layers x
               q/o/gate/down + lm_head, 2048 calibration tokens) it was lower at 3-4 bits
               (geometric mean 0.0013 vs 0.0025 relative at 4 bits), about equal at 2 and 8, and
               never chose a clip that cut a weight of a large input channel: "mse" did on one
               down_proj, with 160x the output error at 4 bits
    "mse"      smallest sum (w - w^)^2, quantize_weight's own criterion
The grid ignores weights of dead inputs (they are stored as 0 whatever the grid).
"""

from __future__ import annotations

import numpy as np

from ilsim.arith.dyadic import DEFAULT_MBITS
from ilsim.errors import InputError
from ilsim.export.weights import DEFAULT_CLIP_GRID, QuantWeight, dyadic_scales, quantize_rows

CLIP_SEARCHES = ("hessian", "mse")
#: Every other ratio of quantize_weight's grid (1.0 down to 0.5 in steps of 0.05): half the search
#: time; on SmolLM2-135M layers the GPTQ output error was within 1% of the 21-ratio grid's.
GPTQ_CLIP_GRID = DEFAULT_CLIP_GRID[::2]
#: Damping (fractions of mean(diag H)) tried in turn, after percdamp, while the dampened H or its
#: inverse is not positive definite. A Gram matrix is PSD, so only rounding needs them; an H with
#: an eigenvalue below -mean(diag H) is not a Hessian and raises.
DAMP_RETRIES = (0.1, 1.0)
#: Rows per chunk (grid search and column loop): a block's errors, 128 x 2048 float64, are 2 MiB.
ROW_CHUNK = 2048


class HessianAccumulator:
    """H = 2/n sum_t x_t x_t^T over every calibration vector x_t [K] seen so far (float64).

    ``add(x)`` takes x [..., K] (a token batch [T, K] or [B, T, K]); n counts vectors (tokens).
    The authors' code keeps a running mean that counts sequences; the scale of H does not change
    GPTQ (damping is relative to mean(diag H)), and a plain sum divided once rounds less.
    """

    def __init__(self, k: int, name: str = "hessian"):
        if not isinstance(k, (int, np.integer)) or k < 1:
            raise InputError(f"{name}: HessianAccumulator needs a positive channel count, got {k!r}")
        self.k, self.name = int(k), name
        self._sum = np.zeros((self.k, self.k), dtype=np.float64)
        self.n_samples = 0

    def add(self, x: np.ndarray) -> None:
        """Accumulate x [..., K]; InputError for a wrong last dimension or a non-finite value."""
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[-1] != self.k:
            raise InputError(f"{self.name}: expected inputs [..., {self.k}], got shape {x.shape}")
        x = x.reshape(-1, self.k).astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise InputError(f"{self.name}: calibration input holds NaN or Inf")
        self._sum += x.T @ x
        self.n_samples += x.shape[0]

    @property
    def hessian(self) -> np.ndarray:
        """2/n sum x x^T, [K, K] float64 (a new array); InputError before any input."""
        if self.n_samples == 0:
            raise InputError(f"{self.name}: no calibration input was added")
        return self._sum * (2.0 / self.n_samples)


def output_error(w: np.ndarray, w_hat: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """Per output row (w - w^) H (w - w^)^T: with H = 2 X^T X / n, the sum over rows is
    2/n ||X W^T - X W^^T||^2, the layer's output error on the calibration set."""
    e = np.asarray(w_hat, dtype=np.float64) - np.asarray(w, dtype=np.float64)
    return np.einsum("nk,nk->n", e @ np.asarray(hessian, dtype=np.float64), e)


def gptq_quantize_weight(w: np.ndarray, hessian: np.ndarray, bits: int, *, block_size: int = 128,
                         percdamp: float = 0.01, act_order: bool = False, clip_grid=GPTQ_CLIP_GRID,
                         clip_search: str = "hessian", mbits: int = DEFAULT_MBITS, mask: np.ndarray | None = None,
                         name: str = "weight") -> QuantWeight:
    """Quantize a float [N, K] weight per output channel with GPTQ against ``hessian`` [K, K].

    Returns the QuantWeight that quantize_weight would return for the same grid format (so the
    two are interchangeable in an export), with codes chosen by GPTQ's error feedback on exactly
    the stored dyadic grid. ``mask`` [N, K] (True: pruned, e.g. Wanda's): the grid is chosen
    with those weights at 0, they are stored as their row's zero point (exactly 0), and their
    error w - 0 is fed forward like any rounding error (SparseGPT's update with a given mask). Deterministic. InputError naming ``name`` for a bad shape, bits,
    option, a non-finite value, a negative diagonal, an all-zero H, or an H that stays
    indefinite after DAMP_RETRIES.
    """
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != np.shape(w):
            raise InputError(f"{name}: mask shape {mask.shape} differs from the weight's {np.shape(w)}")
    return _gptq(w, hessian, bits, block_size, percdamp, act_order, clip_grid, clip_search, mbits, name,
                 fixed=mask)[0]


def sparsegpt_quantize_weight(w: np.ndarray, hessian: np.ndarray, bits: int, sparsity, *, block_size: int = 128,
                              percdamp: float = 0.01, clip_grid=GPTQ_CLIP_GRID, clip_search: str = "hessian",
                              mbits: int = DEFAULT_MBITS, name: str = "weight") -> tuple[QuantWeight, np.ndarray]:
    """SparseGPT (arXiv 2301.00774): prune and quantize w [N, K] in one GPTQ pass (export/prune.py
    describes the mask selection); (the QuantWeight, the mask [N, K], True where pruned).

    As in the authors' code: the grid is chosen on the dense weight, columns go in their own
    order (no act_order: N:M groups are consecutive input channels), the mask of an unstructured
    block is chosen when the block starts, an N:M group's when its first column is reached.
    ``block_size`` must be a multiple of M. Pruned weights are stored as the zero point (exactly 0)."""
    from ilsim.export.prune import check_shape

    check_shape(np.asarray(w), sparsity, name)
    if sparsity.structured and block_size % sparsity.group:
        raise InputError(f"{name}: block_size {block_size} must be a multiple of {sparsity.group} for "
                         f"{sparsity.pattern} sparsity")
    return _gptq(w, hessian, bits, block_size, percdamp, False, clip_grid, clip_search, mbits, name, prune=sparsity)


def _gptq(w, hessian, bits, block_size, percdamp, act_order, clip_grid, clip_search, mbits, name, *,
          fixed=None, prune=None) -> tuple[QuantWeight, np.ndarray]:
    """GPTQ with an optional fixed mask or SparseGPT's mask selection; (QuantWeight, mask)."""
    w = np.array(w, dtype=np.float64)  # a copy: dead columns are zeroed in it
    h = _check_inputs(w, hessian, bits, block_size, percdamp, clip_search, mbits, name)
    levels = (1 << bits) - 1
    dead = np.diag(h) == 0
    w[:, dead] = 0.0
    h[dead, dead] = 1.0
    # the grid of the weights that remain (a fixed mask's are 0); the loop starts from the dense
    # weights, so the pruned ones' error w - 0 is fed forward like any rounding error
    zp, scale = _choose_grid(w if fixed is None else np.where(fixed, 0.0, w), h, levels, clip_grid, clip_search)
    try:
        m, shift = dyadic_scales(scale, mbits)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    m[~np.any(w != 0, axis=1)] = 0
    zp[m == 0] = 0
    q = np.zeros(w.shape, dtype=np.uint8)
    pruned = np.zeros(w.shape, dtype=bool) if fixed is None else fixed.copy()
    active = np.flatnonzero(m > 0)
    if active.size:
        perm = np.argsort(-np.diag(h), kind="stable") if act_order else np.arange(w.shape[1])
        u = _inverse_hessian_factor(h[np.ix_(perm, perm)], percdamp, name)
        s = m[active].astype(np.float64) / float(1 << shift)   # exact: m < 2^mbits, shift <= 63
        for start in range(0, active.size, ROW_CHUNK):
            rows = active[start:start + ROW_CHUNK]
            codes, chunk_mask = _gptq_rows(w[np.ix_(rows, perm)], u, s[start:start + ROW_CHUNK],
                                           zp[rows].astype(np.float64), levels, block_size,
                                           fixed=None if fixed is None else fixed[np.ix_(rows, perm)], prune=prune)
            q[np.ix_(rows, perm)] = codes
            pruned[np.ix_(rows, perm)] = chunk_mask
    return QuantWeight(q=q, zp=zp.astype(np.int64), m=m, shift=shift, bits=bits), pruned


def _check_inputs(w, hessian, bits, block_size, percdamp, clip_search, mbits, name) -> np.ndarray:
    """Validate everything; return H as a symmetric float64 copy."""
    if w.ndim != 2 or w.size == 0:
        raise InputError(f"{name}: expected a non-empty 2-D weight, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise InputError(f"{name}: weight holds NaN or Inf")
    if not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise InputError(f"{name}: weight bits must be in [2, 8], got {bits}")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise InputError(f"{name}: block_size must be a positive integer, got {block_size!r}")
    if not np.isfinite(percdamp) or percdamp < 0:
        raise InputError(f"{name}: percdamp must be finite and >= 0, got {percdamp}")
    if not isinstance(mbits, (int, np.integer)) or not 1 <= mbits <= 62:
        raise InputError(f"{name}: mbits must be in [1, 62], got {mbits!r}")
    if clip_search not in CLIP_SEARCHES:
        raise InputError(f"{name}: clip_search must be one of {CLIP_SEARCHES}, got {clip_search!r}")
    h = np.array(hessian, dtype=np.float64)
    k = w.shape[1]
    if h.shape != (k, k):
        raise InputError(f"{name}: hessian must be [{k}, {k}] for a weight of shape {w.shape}, got {h.shape}")
    if not np.all(np.isfinite(h)):
        raise InputError(f"{name}: hessian holds NaN or Inf")
    top = np.abs(h).max()
    if top == 0:
        raise InputError(f"{name}: hessian is all zero (no calibration input reached this layer)")
    if np.abs(h - h.T).max() > 1e-6 * top:
        raise InputError(f"{name}: hessian is not symmetric")
    if np.diag(h).min() < 0:
        raise InputError(f"{name}: hessian has a negative diagonal entry, so it is not positive semidefinite")
    return (h + h.T) * 0.5


def _choose_grid(w: np.ndarray, h: np.ndarray, levels: int, clip_grid, clip_search: str):
    """Per-row (zp, float scale) of the clip ratio that wins ``clip_search`` (first wins ties)."""
    n = w.shape[0]
    best_zp, best_scale = np.zeros(n), np.ones(n)
    for start in range(0, n, ROW_CHUNK):
        chunk = w[start:start + ROW_CHUNK]
        best_err = np.full(chunk.shape[0], np.inf)
        for clip in clip_grid:
            q, zp, scale, sq_err = quantize_rows(chunk, clip, levels)
            err = sq_err if clip_search == "mse" else output_error(chunk, (q - zp[:, None]) * scale[:, None], h)
            better = err < best_err
            best_err[better] = err[better]
            best_zp[start:start + chunk.shape[0]][better] = zp[better]
            best_scale[start:start + chunk.shape[0]][better] = scale[better]
    return best_zp, best_scale


def _inverse_hessian_factor(h: np.ndarray, percdamp: float, name: str) -> np.ndarray:
    """Upper U with U^T U = (H + damp I)^-1, damp = percdamp * mean(diag H), retried with the
    larger DAMP_RETRIES while H + damp I or its inverse is not positive definite."""
    mean_diag = float(np.mean(np.diag(h)))
    eye = np.eye(h.shape[0])
    fractions = (percdamp,) + tuple(f for f in DAMP_RETRIES if f > percdamp)
    for fraction in fractions:
        hd = h + (fraction * mean_diag) * eye
        try:
            np.linalg.cholesky(hd)                      # raises unless positive definite
            hinv = np.linalg.inv(hd)
            hinv = (hinv + hinv.T) * 0.5
            u = np.linalg.cholesky(hinv).T
        except np.linalg.LinAlgError:
            continue
        if np.all(np.isfinite(u)) and np.all(np.diag(u) > 0):
            return u
    raise InputError(f"{name}: hessian is not positive definite even with damping "
                     f"{', '.join(f'{f:g}' for f in fractions)} x mean(diag H) on its diagonal")


def _gptq_rows(w: np.ndarray, u: np.ndarray, scale: np.ndarray, zp: np.ndarray, levels: int,
               block_size: int, fixed: np.ndarray | None = None, prune=None) -> tuple[np.ndarray, np.ndarray]:
    """GPTQ's column loop on rows w [R, K] (columns already in processing order) with the fixed
    per-row grid (scale, zp); returns the codes [R, K] uint8 and the pruned mask [R, K]: ``fixed``
    (given), or SparseGPT's selection by ``prune`` (a prune.Sparsity), or none. A pruned weight's
    code is its row's zero point.

    Works on W^T, so that a column is one contiguous row of memory. Within a block the updates
    are left-looking: column i takes the feedback of the block's earlier columns when it is
    reached (one matrix-vector product, W[:, i] - err[:, i1:i] U[i1:i, i]) instead of every
    column pushing a rank-1 update onto the rest of the block; the same sums, in another order,
    and half the memory traffic. Across blocks: one matrix product, as in the paper."""
    from ilsim.export.prune import group_mask, lowest_mask, prune_count

    wt = np.ascontiguousarray(w.T)            # [K, R], updated in place
    k, r = wt.shape
    qt = np.empty(wt.shape, dtype=np.uint8)
    mt = np.zeros((k, r), dtype=bool) if fixed is None else np.ascontiguousarray(fixed.T)
    diag = np.diag(u)
    for i1 in range(0, k, block_size):
        i2 = min(i1 + block_size, k)
        err = np.empty((i2 - i1, r))
        if prune is not None and not prune.structured:     # the block's mask: lowest w² / U_jj², all rows
            scores = (wt[i1:i2] / diag[i1:i2, None]) ** 2
            mt[i1:i2] = lowest_mask(scores, prune_count(scores.size, prune.fraction))
        for i in range(i1, i2):
            if prune is not None and prune.structured and (i - i1) % prune.group == 0:
                j2 = i + prune.group                        # the group's values with the feedback so far
                cols = wt[i:j2] - u[i1:i, i:j2].T @ err[:i - i1] if i > i1 else wt[i:j2]
                mt[i:j2] = group_mask(((cols / diag[i:j2, None]) ** 2).T, prune.keep, prune.group).T
            col = wt[i] - u[i1:i, i] @ err[:i - i1] if i > i1 else wt[i]
            code = np.where(mt[i], zp, np.clip(np.rint(col / scale) + zp, 0, levels))
            qt[i] = code
            err[i - i1] = (col - (code - zp) * scale) / u[i, i]
        if i2 < k:
            wt[i2:] -= u[i1:i2, i2:].T @ err
    return qt.T, mt.T
