"""Golden-vector file formats: .npy, .safetensors, $readmemh hex and a C header, all deterministic.

hex ($readmemh): one element per line in row-major (C) order, each written as a two's complement
value masked to ``digits * 4`` bits, digits = ceil(bits / 4) of the tensor's DECLARED width (not
its storage dtype), lowercase, zero-padded, no prefix. A signed value v is stored as
v mod 2^(4 * digits); read it back by sign-extending from bit ``bits - 1`` (:func:`read_hex`).
Scalars (0-d tensors) are one line. An empty tensor is an empty file.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ilsim.errors import InputError
from ilsim.hf.safetensors_file import write_safetensors

FORMATS = ("npy", "safetensors", "hex", "h")
DEFAULT_FORMATS = ("npy", "safetensors", "hex")


def hex_digits(bits: int) -> int:
    """Hex digits per element: the declared width rounded up to whole hex digits."""
    return (int(bits) + 3) // 4


def hex_lines(values: np.ndarray, bits: int, signed: bool) -> str:
    """The $readmemh text of ``values`` (declared ``bits``, ``signed``): two's complement, masked to
    4 * hex_digits(bits) bits, lowercase, one element per line, row-major. Values outside the
    declared width are an InputError (a golden file never holds a value its width cannot)."""
    flat = [int(v) for v in np.asarray(values).reshape(-1).tolist()]
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    bad = [v for v in flat if not lo <= v <= hi]
    if bad:
        raise InputError(f"golden hex: value {bad[0]} outside the declared "
                         f"{'int' if signed else 'uint'}{bits} range [{lo}, {hi}]")
    digits = hex_digits(bits)
    mask = (1 << (4 * digits)) - 1
    return "".join(f"{v & mask:0{digits}x}\n" for v in flat)


def parse_hex(text: str, bits: int, signed: bool, shape=None) -> np.ndarray:
    """Inverse of :func:`hex_lines`: the integers (int64), sign-extended from bit bits - 1 if signed."""
    values = []
    for line in text.split():
        v = int(line, 16) & ((1 << bits) - 1)
        if signed and v >> (bits - 1):
            v -= 1 << bits
        values.append(v)
    out = np.array(values, dtype=np.int64)
    return out.reshape(shape) if shape is not None else out


def read_hex(path, bits: int, signed: bool, shape=None) -> np.ndarray:
    return parse_hex(Path(path).read_text(encoding="ascii"), bits, signed, shape)


def npy_bytes(values: np.ndarray) -> bytes:
    """np.save of a C-contiguous little-endian copy (the .npy header holds only dtype/order/shape)."""
    buf = io.BytesIO()
    arr = np.ascontiguousarray(values)
    np.save(buf, arr.astype(arr.dtype.newbyteorder("<")), allow_pickle=False)
    return buf.getvalue()


_C_TYPES = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
            "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t"}


def c_identifier(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def c_header(prefix: str, tensors: dict[str, np.ndarray]) -> str:
    """A C header with one ``static const <stdint type> PREFIX_NAME[] = {...};`` per tensor
    (row-major, decimal) plus PREFIX_NAME_LEN, names sorted; "in.x" becomes PREFIX_in_x."""
    g = c_identifier(prefix).upper()
    lines = ["/* ilsim golden vectors, generated; do not edit. */", f"#ifndef {g}_H", f"#define {g}_H",
             "#include <stdint.h>", ""]
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        ctype = _C_TYPES[str(arr.dtype)]
        ident = c_identifier(f"{prefix}_{name}")
        flat = [int(v) for v in arr.reshape(-1).tolist()]
        body = ", ".join(str(v) for v in flat)
        lines.append(f"#define {ident}_LEN {len(flat)}")
        lines.append(f"static const {ctype} {ident}[{max(len(flat), 1)}] = {{{body or '0'}}};")
    lines += ["", f"#endif /* {g}_H */", ""]
    return "\n".join(lines)


def sha256_file(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_case_files(case_dir: Path, stem: str, tensors: dict, specs: dict, formats) -> list[Path]:
    """Write one case's tensors (``tensors``: "in.x" / "out.q" -> array; ``specs``: same keys ->
    TensorSpec) in every format of ``formats``; returns the paths written, sorted."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise InputError(f"golden: unknown format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    written = []
    for name in sorted(tensors):
        arr, spec = tensors[name], specs[name]
        if "npy" in formats:
            written.append(case_dir / stem / f"{name}.npy")
            write_bytes(written[-1], npy_bytes(arr))
        if "hex" in formats:
            written.append(case_dir / stem / f"{name}.hex")
            write_bytes(written[-1], hex_lines(arr, spec.bits, spec.signed).encode("ascii"))
    if "safetensors" in formats:
        path = case_dir / f"{stem}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_safetensors(path, {n: np.ascontiguousarray(a) for n, a in tensors.items()}, dtype=None,
                          metadata={"format": "ilsim-golden"})
        written.append(path)
    if "h" in formats:
        written.append(case_dir / f"{stem}.h")
        write_bytes(written[-1], c_header(f"{case_dir.name}_{stem}", tensors).encode("ascii"))
    return sorted(written)
