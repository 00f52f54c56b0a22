"""Shared by the cocotb benches: find and read the golden hex files (see rtl/golden.py)."""

import os
from pathlib import Path

RTL = Path(__file__).resolve().parent.parent
WIDTHS = {"x": (32, True), "m": (16, False), "k": (6, False), "y": (8, True), "n": (32, False), "r": (16, False),
          "n64": (64, False), "r64": (32, False)}


def vectors_dir() -> Path:
    """RTL_VECTORS (set by the runner) or the committed rtl/vectors."""
    return Path(os.environ.get("RTL_VECTORS", RTL / "vectors"))


def read_hex(path: Path, name: str) -> list[int]:
    bits, signed = WIDTHS[name]
    out = []
    for line in path.read_text().split():
        v = int(line, 16) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if signed and v >> (bits - 1) else v)
    return out
