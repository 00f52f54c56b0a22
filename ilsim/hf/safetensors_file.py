"""Read and write safetensors files with NumPy alone, bfloat16 included.

The format (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header
length N, N bytes of JSON mapping each tensor name to {dtype, shape, data_offsets: [begin, end)}
(offsets relative to the byte after the header; an optional "__metadata__" string map), then the
data, little-endian, row-major. NumPy has no bfloat16, so the file is parsed here rather than by
the safetensors library: a bf16 value is the high half of a float32, and widening it is a 16-bit
left shift into a uint32 (exact). Narrowing float32 to bf16 rounds to nearest, ties to even.

Every defect (short file, bad header, offsets past the end or disagreeing with the shape, an
unsupported dtype) raises CheckpointError naming the file and, where there is one, the tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ilsim.errors import InputError


class CheckpointError(InputError):
    """A checkpoint file or its config is missing, malformed, or disagrees with itself."""


#: safetensors dtype name -> (bytes per element, little-endian NumPy storage dtype of the raw bits)
FLOAT_DTYPES: dict[str, tuple[int, str]] = {"F32": (4, "<f4"), "F16": (2, "<f2"), "BF16": (2, "<u2")}
#: safetensors dtype name -> (bytes per element, little-endian NumPy dtype) of the integer tensors
#: an ilsim graph stores.
INTEGER_FILE_DTYPES: dict[str, tuple[int, str]] = {
    "I8": (1, "<i1"), "U8": (1, "<u1"), "I16": (2, "<i2"), "U16": (2, "<u2"), "I32": (4, "<i4"),
    "U32": (4, "<u4"), "I64": (8, "<i8")}
#: Upper bound on the JSON header, as in the reference implementation (100 MB).
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it: dtype name, shape, and [begin, end) in the data."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """The parsed header of one file: where the data starts, its length, and the tensor entries."""
    path: Path
    data_start: int
    data_length: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]


#: limits on a tensor's declared shape, checked before anything is allocated
MAX_NDIM = 8
MAX_ELEMENTS = 1 << 40


def read_header(path: str | os.PathLike, dtypes: dict = FLOAT_DTYPES) -> SafetensorsHeader:
    """Parse and check the header of ``path`` (tensors of ``dtypes`` only, by default the float
    ones); raises CheckpointError on any defect."""
    path = Path(path)
    file_size = _file_size(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({file_size} bytes; the 8-byte "
                                  "header length is missing)")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > MAX_HEADER_BYTES or 8 + header_length > file_size:
            raise CheckpointError(f"{path}: corrupt safetensors header: declares {header_length} header "
                                  f"bytes but the file has {file_size - 8} after the length field")
        raw = f.read(header_length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors header: not valid JSON ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: corrupt safetensors header: JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header: expected a JSON object, "
                              f"got {type(header).__name__}")
    metadata = header.pop("__metadata__", None) or {}
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{path}: corrupt safetensors header: __metadata__ must map names to strings")
    data_start = 8 + header_length
    data_length = file_size - data_start
    tensors = {name: _parse_entry(path, name, spec, data_length, dtypes) for name, spec in header.items()}
    _check_layout(path, tensors, data_length)
    return SafetensorsHeader(path, data_start, data_length, tensors, metadata)


def _check_layout(path: Path, tensors: dict, data_length: int) -> None:
    """The tensors must tile the data section: in offset order each begins where the previous one
    ended, from byte 0 to the last byte (as the safetensors format requires). An overlap would let
    two tensors share bytes; a gap or trailing bytes hide data no tensor owns."""
    position, previous = 0, None
    for entry in sorted(tensors.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin < position:
            raise CheckpointError(f"{path}: tensor {entry.name!r} (data bytes [{entry.begin}, {entry.end})) overlaps "
                                  f"tensor {previous!r}, which ends at byte {position}")
        if entry.begin > position:
            raise CheckpointError(f"{path}: a gap in the data section: bytes [{position}, {entry.begin}) belong to no "
                                  f"tensor (before tensor {entry.name!r})")
        position, previous = entry.end, entry.name
    if position != data_length:
        raise CheckpointError(f"{path}: the data section has {data_length - position} bytes after the last tensor "
                              f"(its tensors end at byte {position} of {data_length})")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read safetensors file ({exc.strerror})") from None


def _parse_entry(path: Path, name: str, spec, data_length: int, dtypes: dict) -> TensorEntry:
    """Check one header entry against the dtype table and the data length; return it typed."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(spec, dict) or not {"dtype", "shape", "data_offsets"} <= spec.keys():
        raise CheckpointError(f"{where}: corrupt header entry {spec!r} (needs dtype, shape, data_offsets)")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise CheckpointError(f"{where}: corrupt shape {shape!r}")
    if len(shape) > MAX_NDIM or math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS:
        raise CheckpointError(f"{where}: shape {shape} is beyond the supported limits ({MAX_NDIM} dimensions, "
                              f"2^{MAX_ELEMENTS.bit_length() - 1} elements counting empty dimensions as 1)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise CheckpointError(f"{where}: corrupt data_offsets {offsets!r}")
    if dtype not in dtypes:
        raise CheckpointError(f"{where}: dtype {dtype!r} is not supported "
                              f"(supported: {', '.join(dtypes)})")
    begin, end = offsets
    expected_bytes = math.prod(shape) * dtypes[dtype][0]
    if end - begin != expected_bytes:
        raise CheckpointError(f"{where}: data_offsets {offsets} hold {end - begin} bytes but shape "
                              f"{shape} of {dtype} needs {expected_bytes}")
    if end > data_length:
        raise CheckpointError(f"{where}: truncated file: data ends at byte {data_length} of the data "
                              f"section, but the tensor is declared up to byte {end}")
    return TensorEntry(name, dtype, tuple(shape), begin, end)


def read_tensors(path: str | os.PathLike, names=None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read tensors (all, or those in ``names``) from ``path`` widened exactly to float32.

    Returns (tensors, source dtype name per tensor). A requested name the file lacks raises
    CheckpointError naming both.
    """
    header = read_header(path)
    wanted = list(header.tensors) if names is None else list(names)
    missing = [n for n in wanted if n not in header.tensors]
    if missing:
        raise CheckpointError(f"{header.path}: missing tensor(s) {', '.join(map(repr, missing))}")
    raw = np.memmap(header.path, dtype=np.uint8, mode="r", offset=header.data_start,
                    shape=(header.data_length,)) if header.data_length else np.zeros(0, np.uint8)
    tensors = {n: widen_to_float32(raw[header.tensors[n].begin:header.tensors[n].end],
                                   header.tensors[n].dtype, header.tensors[n].shape) for n in wanted}
    del raw
    return tensors, {n: header.tensors[n].dtype for n in wanted}


def read_integer_tensors(header: SafetensorsHeader) -> dict[str, np.ndarray]:
    """Every tensor of a header parsed with INTEGER_FILE_DTYPES, each read into its own array
    (no mapping of the whole file, so the peak memory is the tensors themselves)."""
    tensors = {}
    with open(header.path, "rb") as f:
        for name, entry in sorted(header.tensors.items()):
            f.seek(header.data_start + entry.begin)
            array = np.empty(entry.shape, dtype=INTEGER_FILE_DTYPES[entry.dtype][1])
            if f.readinto(memoryview(array).cast("B")) != entry.end - entry.begin:
                raise CheckpointError(f"{header.path}: tensor {name!r}: truncated file")
            tensors[name] = array.astype(array.dtype.newbyteorder("="), copy=False)
    return tensors


def widen_to_float32(raw_bytes: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Little-endian bytes of ``dtype`` -> a new float32 array of ``shape``. Exact for all three."""
    storage = np.asarray(raw_bytes).view(FLOAT_DTYPES[dtype][1]).reshape(shape)
    if dtype == "BF16":
        return (storage.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return storage.astype(np.float32)  # always a copy: nothing keeps the file mapped


def narrow_float32_to_bf16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns (uint16), rounding to nearest, ties to even. Finite inputs only."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    round_bias = ((bits >> 16) & 1) + 0x7FFF
    return ((bits + round_bias) >> 16).astype(np.uint16)


#: NumPy integer dtypes and their safetensors names, for files stored in the tensors' own dtypes.
INTEGER_DTYPES = {"int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16", "int32": "I32",
                  "uint32": "U32", "int64": "I64"}


def write_safetensors(path: str | os.PathLike, tensors: dict[str, np.ndarray], dtype: str | None = "F32",
                      metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` in name order, byte-for-byte deterministic (sorted header and
    metadata keys). ``dtype`` F32, F16 or BF16 converts float tensors; ``None`` stores each tensor
    in its own integer dtype (int8 .. int64, uint8 .. uint32)."""
    if dtype is not None and dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"{path}: cannot write dtype {dtype!r} (supported: {', '.join(FLOAT_DTYPES)})")
    header: dict = {"__metadata__": dict(sorted((metadata or {"format": "pt"}).items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        values = np.asarray(tensors[name])
        if dtype is None:
            code = INTEGER_DTYPES.get(str(values.dtype))
            if code is None:
                raise CheckpointError(f"{path}: tensor {name!r} has dtype {values.dtype}, not an integer dtype")
            blob = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
        else:
            code, blob = dtype, _encode(values, dtype)
        header[name] = {"dtype": code, "shape": list(values.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # pad so the data section starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for blob in blobs:
            f.write(blob)


def _encode(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":
        return narrow_float32_to_bf16_bits(values.astype(np.float32)).astype("<u2").tobytes()
    return np.ascontiguousarray(values, dtype=FLOAT_DTYPES[dtype][1]).tobytes()
