"""Reading the worked examples of docs/spec/*.md, for the tests that recompute them from the code.

A worked example is the fenced block that follows a line ``<!-- worked-example: NAME -->``: one
``name = value`` per line, the value a Python literal, anything after two or more spaces a
comment (comments hold formulas, never computed numbers).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "docs" / "spec"
MARKER = re.compile(r"<!-- worked-example: ([\w-]+) -->")
LINE = re.compile(r"^([A-Za-z_]\w*)\s*=\s*(.+?)(?:\s{2,}.*)?$")


def doc_examples(page: str) -> dict[str, dict]:
    """{example name: {key: value}} of every worked-example block of docs/spec/<page>."""
    lines = (SPEC / page).read_text(encoding="utf-8").splitlines()
    out = {}
    for i, line in enumerate(lines):
        found = MARKER.search(line)
        if not found:
            continue
        assert lines[i + 1].startswith("```"), f"{page}: example {found.group(1)} must be a fenced block"
        values = {}
        for body in lines[i + 2:]:
            if body.startswith("```"):
                break
            if not body.strip():
                continue
            parsed = LINE.match(body)
            assert parsed, f"{page}: example {found.group(1)}: cannot read line {body!r}"
            key = parsed.group(1)
            assert key not in values, f"{page}: example {found.group(1)}: {key} given twice"
            values[key] = ast.literal_eval(parsed.group(2))
        out[found.group(1)] = values
    return out


def block(values: dict) -> str:
    """The page text of one example (without comments), as the test files print it."""
    width = max(map(len, values))
    return "\n".join(f"{key.ljust(width)} = {value!r}" for key, value in values.items())


def assert_page_holds(page: str, name: str, values: dict) -> None:
    """The page's example ``name`` holds exactly ``values`` (same names, same order, same values)."""
    written = doc_examples(page).get(name)
    assert written is not None, f"{page} has no worked example {name!r}"
    assert list(written) == list(values), f"{page}/{name}: names differ: {list(written)} vs {list(values)}"
    for key, value in values.items():
        assert written[key] == value, f"{page}/{name}: {key} = {written[key]!r} but the code gives {value!r}"
