"""Export from a checkpoint source (directory, hub id) and a calibration text file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ilsim.errors import InputError
from ilsim.export.build import ExportOptions, export_model

DEFAULT_CALIB = Path(__file__).resolve().parent.parent / "data" / "shakespeare_calib.txt"


def read_text_file(path, what: str = "text file") -> str:
    """The UTF-8 text of ``path``; InputError for a missing, unreadable or empty file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} {p}: not UTF-8 text ({err})") from None
    if not text.strip():
        raise InputError(f"{what} {p}: the file is empty")
    return text


def export_checkpoint(source: str, options: ExportOptions | None = None, calib: str | None = None,
                      progress: bool = False):
    """Load ``source``, tokenize the calibration text (default: the shipped held-out split) and
    export the integer graph, with the tokenizer embedded."""
    from ilsim.hf.checkpoint import load_checkpoint
    from ilsim.model import Tokenizer

    options = options or ExportOptions()
    ckpt = load_checkpoint(source)
    if ckpt.tokenizer_path is None:
        raise InputError(f"{ckpt.directory}: no tokenizer.json; export needs it to tokenize the calibration text")
    tokenizer_json = ckpt.tokenizer_path.read_text(encoding="utf-8")
    calib_path = calib or DEFAULT_CALIB
    ids = Tokenizer(tokenizer_json, str(ckpt.directory)).encode(read_text_file(calib_path, "calibration text"))
    if ids.size < options.calib_context:
        raise InputError(f"calibration text {calib_path}: {ids.size} tokens, fewer than one window of "
                         f"{options.calib_context}")
    return export_model(ckpt, np.asarray(ids), options, tokenizer_json=tokenizer_json, progress=progress,
                        name=Path(ckpt.directory).name)
