"""RELIABILITY.md names the test that proves each promise: every one named must exist, so the
record cannot rot when a test is renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "RELIABILITY.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def missing(text: str) -> list[str]:
    gone = []
    for file, name in TEST_ID.findall(text):
        path = ROOT / file
        if not path.is_file() or name not in defined_tests(path):
            gone.append(f"{file}::{name}")
    return gone


def test_every_test_named_in_reliability_md_exists():
    text = RECORD.read_text()
    named = TEST_ID.findall(text)
    assert len(named) >= 30, f"only {len(named)} test ids found: is the format still `file::test`?"
    assert missing(text) == []
    # Each fault family of issue 8 is there.
    for heading in ("## Fault matrix", "## Hostile input", "## Secrets", "## Soak"):
        assert heading in text


def test_the_check_catches_a_renamed_test_and_the_readme_links_the_record():
    assert missing("`tests/test_soak.py::test_no_such_test` `tests/no_such_file.py::test_x`") == [
        "tests/test_soak.py::test_no_such_test",
        "tests/no_such_file.py::test_x",
    ]
    assert "(RELIABILITY.md)" in (ROOT / "README.md").read_text()
