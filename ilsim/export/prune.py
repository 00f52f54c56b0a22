"""Pruning for export (offline, float64): Wanda's masks and the sparsity patterns SparseGPT uses.

Two families prune the seven linear layers of every decoder layer (never the embedding or the
head, as both papers do) before or while they are quantized; a pruned weight is stored as the
code equal to its row's zero point, so it dequantizes to exactly 0 and the graph stays an ordinary
ilsim graph (the integer path is unchanged):

  wanda      (Sun et al., arXiv 2306.11695) the mask first: score |W_jk| · ||X_k||_2 with the
             input-channel norms of the calibration inputs (the square roots of the Hessian's
             diagonal, up to a constant factor that does not change any ranking); per output row,
             the lowest-scoring weights are pruned. Then the weights are quantized with the mask
             held: round-to-nearest (0 rounds to the zero point) or, with ``gptq``, GPTQ with the
             pruned weights forced to 0 and their error fed forward like any other.
  sparsegpt  (Frantar & Alistarh, arXiv 2301.00774) pruning and quantization in one GPTQ pass
             (export/gptq.py): at the start of each block of columns, the weights with the
             lowest w² / [U]_jj² (U the Cholesky factor of H⁻¹) are pruned over the whole block
             (all rows at once, "adaptive mask selection"); for N:M, at every M-th column, the
             M - N lowest of each row's group, on the values the block's feedback has reached.

``pattern``: "unstructured" prunes round(sparsity · size) weights of each comparison group (a row
for wanda, a block of columns for sparsegpt), the lowest scores first and among equal scores the
lowest index (a stable sort, so the mask is deterministic); "N:M" keeps N of every M consecutive
weights of a row along the input dimension (NVIDIA's 2:4: two non-zeros in each four), so
``sparsity`` is 1 - N/M and the input size must be a multiple of M.

Storage: :func:`effective_bits` counts what a sparse format would store per weight: the codes of
the kept weights plus the positions (a 1-bit mask per weight for unstructured, ceil(log2 M) bits
per kept weight for N:M); the per-row scale and zero point (24 bits per row) come on top for
every method alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ilsim.errors import InputError

UNSTRUCTURED = "unstructured"


@dataclass(frozen=True)
class Sparsity:
    """What to prune: ``fraction`` of the weights, unstructured or ``keep`` of every ``group``."""

    fraction: float
    keep: int = 0           # N of N:M (0: unstructured)
    group: int = 0          # M of N:M

    @property
    def structured(self) -> bool:
        return self.group > 0

    @property
    def pattern(self) -> str:
        return f"{self.keep}:{self.group}" if self.structured else UNSTRUCTURED


def parse_sparsity(fraction: float, pattern: str) -> Sparsity:
    """A checked Sparsity; InputError naming the bad value. N:M fixes the fraction at 1 - N/M (a
    ``fraction`` that disagrees is an error)."""
    pattern = str(pattern).strip()
    if pattern == UNSTRUCTURED:
        if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
            raise InputError(f"export: sparsity must be in [0, 1), got {fraction!r}")
        return Sparsity(float(fraction))
    parts = pattern.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise InputError(f"export: sparsity pattern must be 'unstructured' or 'N:M' (e.g. 2:4), got {pattern!r}")
    keep, group = int(parts[0]), int(parts[1])
    if not 1 <= keep < group <= 64:
        raise InputError(f"export: sparsity pattern {pattern}: needs 1 <= N < M <= 64")
    implied = 1.0 - keep / group
    if fraction not in (None, implied) and not math.isclose(float(fraction), implied, abs_tol=1e-12):
        raise InputError(f"export: sparsity {fraction} disagrees with pattern {pattern} (which prunes {implied:g})")
    return Sparsity(implied, keep, group)


def prune_count(size: int, fraction: float) -> int:
    """How many of ``size`` weights an unstructured comparison group prunes: round half to even
    of fraction · size (exact for the fractions and sizes of a model: 0.5 · even)."""
    return int(np.round(fraction * size))


def lowest_mask(scores: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the ``count`` lowest entries of ``scores`` (any shape; ties: lowest flat index)."""
    flat = scores.reshape(-1)
    mask = np.zeros(flat.size, dtype=bool)
    if count > 0:
        mask[np.argsort(flat, kind="stable")[:count]] = True
    return mask.reshape(scores.shape)


def group_mask(scores: np.ndarray, keep: int, group: int) -> np.ndarray:
    """N:M along the last axis: in every ``group`` consecutive entries the group - keep lowest
    (ties: lowest index) are True. The last axis must be a multiple of ``group``."""
    shape = scores.shape
    grouped = scores.reshape(-1, shape[-1] // group, group)
    order = np.argsort(grouped, axis=-1, kind="stable")[..., :group - keep]
    mask = np.zeros(grouped.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask.reshape(shape)


def check_shape(w: np.ndarray, sparsity: Sparsity, name: str) -> None:
    if sparsity.structured and w.shape[1] % sparsity.group:
        raise InputError(f"{name}: {sparsity.pattern} sparsity needs an input size that is a multiple of "
                         f"{sparsity.group}, got {w.shape[1]}")


def wanda_mask(w: np.ndarray, hessian: np.ndarray, sparsity: Sparsity, name: str = "weight") -> np.ndarray:
    """Wanda's mask of w [N, K] (True: pruned) from the calibration Hessian H ∝ XᵀX [K, K]:
    score |w_jk| sqrt(H_kk); per row round(fraction · K) lowest, or N:M along each row."""
    w = np.asarray(w, dtype=np.float64)
    check_shape(w, sparsity, name)
    diag = np.diag(np.asarray(hessian, dtype=np.float64))
    if diag.shape != (w.shape[1],) or np.any(diag < 0) or not np.all(np.isfinite(diag)):
        raise InputError(f"{name}: wanda needs a Hessian with a finite non-negative diagonal of size {w.shape[1]}")
    scores = np.abs(w) * np.sqrt(diag)[None, :]
    if sparsity.structured:
        return group_mask(scores, sparsity.keep, sparsity.group)
    count = prune_count(w.shape[1], sparsity.fraction)
    return np.stack([lowest_mask(row, count) for row in scores]) if w.size else np.zeros(w.shape, dtype=bool)


def effective_bits(bits: int, pruned: int, total: int, sparsity: Sparsity) -> float:
    """Bits per weight of a sparse storage of ``total`` weights of which ``pruned`` are pruned:
    (kept codes + positions) / total (module docstring); ``bits`` when nothing is pruned."""
    if total <= 0:
        raise InputError("effective_bits: no weights")
    if pruned == 0:
        return float(bits)
    kept = total - pruned
    positions = kept * math.ceil(math.log2(sparsity.group)) if sparsity.structured else total
    return (kept * bits + positions) / total
