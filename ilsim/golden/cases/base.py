"""What every golden case builder shares: the case records (TensorSpec, GoldenCase, OpCases), the
per-(operator, configuration) seed, and the drawing helpers (seeded integers of a declared width,
row scales, the scale notes of the manifest)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ilsim.ops._common import storage_dtype

#: Default number of seeded random cases per (operator, configuration).
DEFAULT_CASES = 4
#: Default run seed.
DEFAULT_SEED = 0
#: m of a dyadic scale is uint16 in the row scales drawn here (k <= 63 fits 6 bits).
MBITS, KBITS = 16, 6


@dataclass(frozen=True)
class TensorSpec:
    """The declared width of one tensor: ``bits``-bit two's complement if ``signed``, else unsigned."""
    bits: int
    signed: bool


@dataclass
class GoldenCase:
    """One vector: operator, configuration, case name, inputs/attributes and declared widths."""
    op: str
    config: str
    name: str
    kind: str                      # "random" or "edge"
    inputs: dict                   # tensor name -> integer ndarray
    attrs: dict                    # attribute name -> JSON-able scalar
    input_specs: dict              # tensor name -> TensorSpec
    scales: dict = field(default_factory=dict)  # "in.x"/"out.q" -> its scale, see _dyadic

    def kwargs(self) -> dict:
        return {**self.inputs, **self.attrs}


@dataclass(frozen=True)
class OpCases:
    """Per operator: its configurations, a random-case and edge-case builder, its output widths."""
    configs: dict                  # config name -> dict of width attributes
    random_case: Callable          # (rng, cfg) -> (inputs, attrs, specs, scales)
    edge_cases: Callable           # (cfg) -> list of (label, inputs, attrs, specs, scales)
    output_specs: Callable         # (attrs) -> {field: TensorSpec}


def case_seed(seed: int, op: str, config: str) -> int:
    """The rng seed of one (operator, configuration): sha256 of the three, first 8 bytes."""
    digest = hashlib.sha256(f"{int(seed)}/{op}/{config}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def ints(rng, lo: int, hi: int, shape, bits: int, signed: bool) -> np.ndarray:
    """Integers uniform in [lo, hi] (inclusive) in the storage dtype of the declared width."""
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=np.int64).astype(storage_dtype(bits, signed))


def arr(values, bits: int, signed: bool) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).astype(storage_dtype(bits, signed))


def smin(bits: int) -> int:
    return -(1 << (bits - 1))


def smax(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def row_scales(rng, rows: int, k_lo: int, k_hi: int):
    """Per-row dyadic scales m / 2^k, m uint16 normalised (>= 2^15), k in [k_lo, k_hi]."""
    m = ints(rng, 1 << 15, (1 << 16) - 1, (rows,), MBITS, False)
    k = ints(rng, k_lo, k_hi, (rows,), KBITS, False)
    return m, k


def dyadic(m, k, zp=None) -> dict:
    """A tensor's real meaning m / 2^k * (v - zp): each part a tensor ("in.m", "out.k"), an attribute
    ("attr.gamma_k") or an integer; per-row tensors apply to the rows (all axes but the last)."""
    return {"m": m, "k": k} if zp is None else {"m": m, "k": k, "zp": zp}


SCALE = TensorSpec(MBITS, False)
SHIFT = TensorSpec(KBITS, False)


def rowquant_outputs(attrs) -> dict:
    """Output widths of an operator that returns RowQuant (q, zp at out_bits, signed when
    ``out_symmetric``; m, k as SCALE, SHIFT)."""
    signed = bool(attrs["out_symmetric"])
    return {"q": TensorSpec(attrs["out_bits"], signed), "zp": TensorSpec(attrs["out_bits"], signed),
            "m": SCALE, "k": SHIFT}
