"""ilsim: a bit-exact, integer-only reference simulator for I-LLM quantized LLaMA models.

Layers, in the direction data flows:
    ilsim.arith        integer primitives (rounding shifts and division, dyadic numbers, isqrt)
    ilsim.ops          the I-LLM operators, each a scalar reference beside a fast path
    ilsim.graph        the integer graph file: format, validation, graph ops
    ilsim.interpreter  runs a graph on integers, with a KV cache, tracing and a width audit
    ilsim.hf, ilsim.float_model, ilsim.export, ilsim.fakequant
                       the float side (offline): checkpoints, float reference, export, fake-quant
    ilsim.golden       golden vectors (operators and model traces) and their verification
    ilsim.testing      hypothesis strategies and a bit-exactness checker for other implementations
    ilsim.cli          the `ilsim` command
"""

__version__ = "0.1.0"
#: Version of the written operator contracts in docs/spec/. Bumped on any change of semantics.
SPEC_VERSION = "1.0"


def cache_root():
    """ilsim's cache folder (a pathlib.Path): $ILSIM_CACHE, else ~/.cache/ilsim."""
    import os
    from pathlib import Path

    return Path(os.environ.get("ILSIM_CACHE", Path.home() / ".cache" / "ilsim"))


#: the folders whose files hold compiled (Numba) code, or code inlined into it
COMPILED_SOURCES = ("arith", "kernels", "ops")


def numba_cache_folder(package, cache_root):
    """<cache_root>/numba/<first 16 hex digits of the sha256 of every file of COMPILED_SOURCES
    under ``package``, by name and content>: a folder that changes whenever compiled code does."""
    import hashlib
    from pathlib import Path

    digest = hashlib.sha256()
    for folder in COMPILED_SOURCES:
        for source in sorted((Path(package) / folder).glob("*.py")):
            digest.update(f"{folder}/{source.name}".encode() + b"\0" + source.read_bytes())
    return Path(cache_root) / "numba" / digest.hexdigest()[:16]


def _key_numba_cache_on_sources() -> None:
    """Numba's on-disk cache (``cache=True``) keys a kernel on its own file only, so a kernel that
    inlines a helper from another file (the rounding modes of ilsim/arith/jit.py, DI-Exp's element
    formula) would keep stale machine code after that helper is edited. ilsim's kernels are cached
    instead in :func:`numba_cache_folder` ($ILSIM_CACHE, default ~/.cache/ilsim), so any edit of
    compiled code starts a fresh cache. A NUMBA_CACHE_DIR set by the user wins; an unwritable
    folder leaves Numba's default (__pycache__ beside the sources)."""
    import os
    import sys
    from pathlib import Path

    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    folder = numba_cache_folder(Path(__file__).resolve().parent, cache_root())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if not os.access(folder, os.W_OK):
        return
    os.environ["NUMBA_CACHE_DIR"] = str(folder)
    if "numba" in sys.modules:         # imported before ilsim: tell its loaded configuration too
        sys.modules["numba"].config.CACHE_DIR = str(folder)


_key_numba_cache_on_sources()
