"""Export from a checkpoint source (directory, hub id) and a calibration text file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ilsim.errors import InputError
from ilsim.export.build import ExportOptions, export_model
from ilsim.resources import DATA_DIR, MODELS_DIR
from ilsim.tokenizer import Tokenizer
#: The shipped model calibrates on a held-out play of its own domain; any other model on the
#: mixed-domain calibration text (ilsim/data/README.md: disjoint from every evaluation text).
DEFAULT_CALIB = DATA_DIR / "shakespeare_calib.txt"
GENERAL_CALIB = DATA_DIR / "calib_mix.txt"


def default_calibration(source: str | Path) -> Path:
    """The calibration text used when none is given: the shipped model's own held-out play for
    the shipped model, the mixed-domain text for every other model."""
    inside_package = Path(source).resolve().parent == MODELS_DIR.resolve()
    return DEFAULT_CALIB if inside_package or not GENERAL_CALIB.is_file() else GENERAL_CALIB


def read_text_file(path, what: str = "text file") -> str:
    """The UTF-8 text of ``path``; InputError for a missing, unreadable or empty file."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {p}: is a directory, not a file")
    if not p.is_file():
        raise InputError(f"{what} {p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{what} {p}: not UTF-8 text ({err})") from None
    except OSError as err:
        raise InputError(f"{what} {p}: cannot read ({err.strerror})") from None
    if not text.strip():
        raise InputError(f"{what} {p}: the file is empty")
    return text


def export_checkpoint(source: str, options: ExportOptions | None = None, calib: str | None = None,
                      progress: bool = False):
    """Load ``source``, tokenize the calibration text (default: ``default_calibration(source)``)
    and export the integer graph, with the tokenizer embedded."""
    from ilsim.hf.checkpoint import load_checkpoint

    options = options or ExportOptions()
    ckpt = load_checkpoint(source)
    tokenizer_json = ckpt.require_tokenizer_json("export needs it to tokenize the calibration text")
    calib_path = calib or default_calibration(source)
    ids = Tokenizer(tokenizer_json, str(ckpt.directory)).encode(read_text_file(calib_path, "calibration text"))
    if ids.size < options.calib_context:
        raise InputError(f"calibration text {calib_path}: {ids.size} tokens, fewer than one window of "
                         f"{options.calib_context}")
    return export_model(ckpt, np.asarray(ids), options, tokenizer_json=tokenizer_json, progress=progress,
                        name=Path(ckpt.directory).name)
