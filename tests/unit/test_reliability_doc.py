"""docs/reliability.md lists each guarantee beside its test: every test it names must exist,
so a renamed or deleted test cannot leave a promise without its proof."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"


def named_tests() -> list[tuple[str, str]]:
    """(file, test) for each ``path.py::test_name`` and each ``::test_name`` that follows one
    in the same table cell or paragraph (the doc abbreviates repeats of a file)."""
    out = []
    for block in re.split(r"\n\s*\n|\|", DOC.read_text()):
        current = None
        for m in re.finditer(r"`((?:tests/[\w/]+/)?(test_\w+\.py))?::(test_\w+)", block):
            if m.group(1):
                current = m.group(1)
            if current is not None:
                out.append((current, m.group(3)))
    return out


def resolve(name: str) -> Path:
    if name.startswith("tests/"):
        return REPO / name
    hits = sorted((REPO / "tests").rglob(name))
    assert len(hits) == 1, f"{name}: {len(hits)} files of that name under tests/"
    return hits[0]


def test_every_test_named_in_reliability_md_exists():
    refs = named_tests()
    assert len(refs) > 30
    missing = []
    for file, test in refs:
        path = resolve(file)
        if not path.exists() or not re.search(rf"^\s*(async )?def {test}\(", path.read_text(), re.M):
            missing.append(f"{file}::{test}")
    assert not missing, missing
