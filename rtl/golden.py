"""Golden hex files for the RTL units in rtl/ (requant.v, isqrt.v), computed with ilsim's Python-int
references:

    requant: y = saturate_reference(rshift_round_reference(x * m, k, "half_up"), OUT_BITS, True)
    isqrt:   r = isqrt_reference(n)

Files (docs/golden.md hex format: one element per line, two's complement masked to whole hex digits,
lowercase, zero-padded, no 0x):

    OUT/requant/x.hex  int32   (8 digits)      OUT/isqrt/n.hex  uint32  (8 digits)
    OUT/requant/m.hex  uint16  (4 digits)      OUT/isqrt/r.hex  uint16  (4 digits)
    OUT/requant/k.hex  uint6   (2 digits)      OUT/isqrt64/n.hex  uint64 (16 digits), n <= 2^62
    OUT/requant/y.hex  int8    (2 digits)      OUT/isqrt64/r.hex  uint32  (8 digits)

Deterministic: seeded numpy rng (default seed 0) plus fixed edge cases.

    python rtl/golden.py [OUT]          # default OUT: rtl/vectors
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ilsim.arith import ISQRT_MAX, isqrt_reference, rshift_round_reference, saturate_reference

X_BITS, M_BITS, K_BITS, OUT_BITS, K_MAX = 32, 16, 6, 8, 47
N_BITS, R_BITS = 32, 16  # isqrt.v default; isqrt64: N_BITS = 64 with n in [0, 2^62] (ilsim's range)
WIDTHS = {  # name -> (bits, signed)
    "x": (X_BITS, True), "m": (M_BITS, False), "k": (K_BITS, False), "y": (OUT_BITS, True),
    "n": (N_BITS, False), "r": (R_BITS, False), "n64": (64, False), "r64": (32, False),
}
DEFAULT_OUT = Path(__file__).resolve().parent / "vectors"


def requant_reference(x: int, m: int, k: int) -> int:
    return saturate_reference(rshift_round_reference(x * m, k, "half_up"), OUT_BITS, True)


def to_hex(v: int, bits: int) -> str:
    digits = -(-bits // 4)
    return format(v & ((1 << (4 * digits)) - 1), f"0{digits}x")


def from_hex(s: str, bits: int, signed: bool) -> int:
    v = int(s, 16) & ((1 << bits) - 1)
    return v - (1 << bits) if signed and v >> (bits - 1) else v


def read_hex(path, name: str) -> list[int]:
    bits, signed = WIDTHS[name]
    return [from_hex(line, bits, signed) for line in Path(path).read_text().split()]


def _tie_x(m: int, k: int, sign: int, rng) -> int | None:
    """An x with x * m having its low k bits exactly 100..0 (a rounding tie), or None if m can't."""
    if k == 0 or m == 0:
        return None
    tz = (m & -m).bit_length() - 1  # trailing zeros of m
    if tz > k - 1:
        return None
    # need x * m = (2j + 1) * 2^(k-1); m = odd * 2^tz -> x = (2j+1) * 2^(k-1-tz) * inv(odd) mod 2^k ...
    # simplest: pick x = t * 2^(k-1-tz) with t odd and t * (m >> tz) odd: every odd t works.
    shift = k - 1 - tz
    if shift >= X_BITS - 1:
        return None
    tmax = (1 << (X_BITS - 1 - shift)) - 1
    t = int(rng.integers(0, tmax + 1)) | 1
    t = min(t, tmax if tmax & 1 else tmax - 1)
    return sign * t << shift if sign > 0 else -(t << shift)


def requant_cases(seed: int = 0, n_random: int = 1500) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    xmin, xmax = -(1 << (X_BITS - 1)), (1 << (X_BITS - 1)) - 1
    mmax = (1 << M_BITS) - 1
    cases: list[tuple[int, int, int]] = []
    # extremes of every operand, every k
    for x in (xmin, xmin + 1, -1, 0, 1, xmax):
        for m in (0, 1, 2, 1 << 15, mmax):
            for k in range(K_MAX + 1):
                cases.append((x, m, k))
    # exact ties (low k bits of x * m = 100..0), both signs, every k >= 1
    for k in range(1, K_MAX + 1):
        for m in (1, 3, 1 << 15, mmax, int(rng.integers(1, mmax + 1))):
            for sign in (1, -1):
                x = _tie_x(m, k, sign, rng)
                if x is not None:
                    cases.append((x, m, k))
    # small ties landing exactly on the saturation edges and just inside: +-127.5, -128.5, +-0.5
    for k in (1, 4, 20, K_MAX):
        for half_units in (255, 253, -255, -257, -253, 1, -1, 3, -3):  # value = half_units / 2
            p = half_units << (k - 1)
            for m in (1, 2, 4):
                if p % m == 0 and xmin <= p // m <= xmax:
                    cases.append((p // m, m, k))
    # saturation both ends, k = 0 and k = max
    for x, m, k in ((xmax, mmax, 0), (xmin, mmax, 0), (128, 1, 0), (-129, 1, 0), (127, 1, 0), (-128, 1, 0),
                    (xmax, mmax, K_MAX), (xmin, mmax, K_MAX), (xmin, 1 << 15, K_MAX)):
        cases.append((x, m, k))
    # random: x, m uniform; k chosen so the result lands near the output range half of the time
    for _ in range(n_random):
        x = int(rng.integers(xmin, xmax + 1, dtype=np.int64))
        m = int(rng.integers(0, mmax + 1))
        if rng.integers(0, 2):
            k = int(rng.integers(0, K_MAX + 1))
        else:
            mag = abs(x * m).bit_length()
            k = max(0, min(K_MAX, mag - int(rng.integers(0, OUT_BITS + 2))))
        cases.append((x, m, k))
    return cases


def isqrt_cases(seed: int = 0, n_random: int = 1000, nmax: int = (1 << N_BITS) - 1) -> list[int]:
    rng = np.random.default_rng(seed + 1)
    rbits = math.isqrt(nmax).bit_length()
    cases = {0, 1, 2, 3, nmax, nmax - 1}
    for e in range(nmax.bit_length()):  # powers of two and neighbours
        for d in (-1, 0, 1):
            cases.add((1 << e) + d)
    rtop = math.isqrt(nmax)
    roots = list(range(0, 300)) + [rtop, rtop - 1, 1 << (rbits - 1), (1 << (rbits - 1)) - 1]
    roots += [int(v) for v in rng.integers(0, rtop + 1, size=200, dtype=np.int64)]
    for s in roots:  # perfect squares and neighbours
        for d in (-1, 0, 1):
            cases.add(s * s + d)
    cases = sorted(v for v in cases if 0 <= v <= nmax)
    cases += [int(v) for v in rng.integers(0, nmax + 1, size=n_random, dtype=np.int64)]
    return cases


def _write(path: Path, name: str, values) -> None:
    bits, signed = WIDTHS[name]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    for v in values:
        assert lo <= v <= hi, (name, v)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(to_hex(v, bits) + "\n" for v in values))
    tmp.replace(path)


def write_golden(out=DEFAULT_OUT, seed: int = 0) -> Path:
    out = Path(out)
    rq, sq = out / "requant", out / "isqrt"
    rq.mkdir(parents=True, exist_ok=True)
    sq.mkdir(parents=True, exist_ok=True)
    cases = requant_cases(seed)
    _write(rq / "x.hex", "x", [c[0] for c in cases])
    _write(rq / "m.hex", "m", [c[1] for c in cases])
    _write(rq / "k.hex", "k", [c[2] for c in cases])
    _write(rq / "y.hex", "y", [requant_reference(*c) for c in cases])
    ns = isqrt_cases(seed)
    _write(sq / "n.hex", "n", ns)
    _write(sq / "r.hex", "r", [isqrt_reference(n) for n in ns])
    s64 = out / "isqrt64"
    s64.mkdir(parents=True, exist_ok=True)
    ns = isqrt_cases(seed, nmax=ISQRT_MAX)
    _write(s64 / "n.hex", "n64", ns)
    _write(s64 / "r.hex", "r64", [isqrt_reference(n) for n in ns])
    return out


if __name__ == "__main__":
    print(write_golden(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT))
