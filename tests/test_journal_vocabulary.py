"""One journal vocabulary: no module outside console/journal/ spells an event name.

Writers build the event classes of :mod:`console.journal.events`, readers dispatch on them; a
string such as ``"action.confirmed"`` anywhere else in the product (console/, panels/, bench/,
scripts/) is a second, unchecked copy of the vocabulary. Tests may spell names: they check the
file format."""

from __future__ import annotations

import ast
from pathlib import Path

from console.journal import Kind

ROOT = Path(__file__).resolve().parent.parent
NAMES = {str(kind) for kind in Kind}


def product_files() -> list[Path]:
    files = [*ROOT.joinpath("console").rglob("*.py"), *ROOT.joinpath("panels").rglob("*.py")]
    files += [*ROOT.joinpath("bench").glob("*.py"), *ROOT.joinpath("scripts").glob("*.py")]
    journal = ROOT / "console" / "journal"
    return sorted(p for p in files if journal not in p.parents and "__pycache__" not in p.parts)


def spelled(source: str) -> list[tuple[int, str]]:
    """(line, name) of every string constant that is an event name, or starts one of the
    dotted names' families ("action.", "breach.") as an f-string or prefix check would."""
    families = {name.split(".")[0] + "." for name in NAMES if "." in name}
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES | families:
            hits.append((node.lineno, node.value))
    return hits


def test_no_event_name_outside_the_journal_package():
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name!r}"
        for path in product_files()
        for line, name in spelled(path.read_text())
    ]
    assert found == [], "\n".join(found)


def test_the_check_finds_a_name_a_prefix_and_an_fstring_part():
    source = 'x = "action.confirmed"\nif e.kind.startswith("breach."): pass\ny = f"check.{word}"\n'
    assert spelled(source) == [(1, "action.confirmed"), (2, "breach."), (3, "check.")]
