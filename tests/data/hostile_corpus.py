"""The hostile text corpus (hostile_corpus.json) for every test that puts a backend's string on
screen. A new panel is checked by feeding it every entry and asserting what ``check_shown`` and
``tests.fixtures.faults.terminal_problems`` assert:

    from tests.data.hostile_corpus import CORPUS, TEXTS, check_shown
    for entry in TEXTS: ...entry.text...            # valid UTF-8, under 1 KiB
    check_shown(detail_text, TEXTS)                  # each entry's 'visible' part shows literally

``entry.raw`` is the attack as bytes (for byte channels: HTTP bodies, psql); ``entry.text`` is
the same as a str, only meaningful when ``entry.utf8``. ``entry.visible`` is what must show once
the console sanitised it (console.sanitize.clean): literally, markup and all.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

PATH = Path(__file__).with_suffix(".json")


@dataclass(frozen=True, slots=True)
class Hostile:
    name: str
    raw: bytes
    visible: str
    why: str

    @property
    def utf8(self) -> bool:
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    @property
    def huge(self) -> bool:
        return len(self.raw) > 64 * 1024

    def fit(self, limit: int) -> str:
        """The text cut to at most ``limit`` UTF-8 bytes on a character boundary (identifiers)."""
        return self.raw[:limit].decode("utf-8", errors="ignore")


def _load() -> tuple[Hostile, ...]:
    doc = json.loads(PATH.read_text(encoding="utf-8"))
    out = []
    for item in doc["entries"]:
        if "bytes" in item:
            raw = base64.b64decode(item["bytes"])
        else:
            text = item["text"]
            if "repeat" in item:
                text += item["repeat"]["unit"] * item["repeat"]["times"]
            raw = text.encode("utf-8")
        out.append(Hostile(item["name"], raw, item["visible"], item["why"]))
    return tuple(out)


CORPUS: tuple[Hostile, ...] = _load()
#: Valid UTF-8 and small: fits anywhere a str goes (labels, names, JSON, SQL literals).
TEXTS: tuple[Hostile, ...] = tuple(e for e in CORPUS if e.utf8 and not e.huge)
BYTES: tuple[Hostile, ...] = tuple(e for e in CORPUS if not e.utf8)
HUGE: Hostile = next(e for e in CORPUS if e.huge)


def by_name(name: str) -> Hostile:
    return next(e for e in CORPUS if e.name == name)


def missing(shown: str, entries: tuple[Hostile, ...] = TEXTS) -> list[str]:
    """Names of the entries whose ``visible`` part is not in ``shown``."""
    return [e.name for e in entries if e.visible not in shown]


def check_shown(shown: str, entries: tuple[Hostile, ...] = TEXTS) -> None:
    absent = missing(shown, entries)
    assert not absent, f"not shown literally: {absent}"
