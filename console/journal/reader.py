"""Reading the journal: every whole line as a typed event (see :mod:`console.journal.events`)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from console.journal.events import JournalEvent, from_json


@dataclass(frozen=True, slots=True)
class JournalRead:
    events: tuple[JournalEvent, ...] = ()
    skipped: int = 0  # lines that were not whole JSON events (a torn line from a crash, junk)
    partial_tail: bool = False  # the file ended inside a line (a writer died, or is writing)
    error: str = ""  # the file could not be read at all


def _event(line: bytes) -> JournalEvent | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return from_json(record) if isinstance(record, dict) else None


def read_journal(
    path: os.PathLike[str] | str, since: float | None = None, environment: str | None = None
) -> JournalRead:
    """Every whole event in the file (oldest first), ``since`` an epoch lower bound; with
    ``environment``, only that environment's events (consoles of several share a journal)."""
    try:
        with open(path, "rb") as handle:
            # A journal configured as a device (/dev/full, /dev/zero) would read without end.
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return JournalRead(error=f"cannot read {path}: not a regular file")
            data = handle.read()
    except FileNotFoundError:
        return JournalRead()
    except OSError as exc:
        return JournalRead(error=f"cannot read {path}: {exc.strerror or exc}")
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    events, skipped = [], 0
    for line in lines:
        if not line.strip():
            continue
        event = _event(line)
        if event is None:
            skipped += 1
        elif (since is None or event.ts >= since) and (
            environment is None or event.environment == environment
        ):
            events.append(event)
    return JournalRead(tuple(events), skipped + (1 if tail.strip() else 0), bool(tail.strip()))


def merge(*sources: Iterable[JournalEvent]) -> list[JournalEvent]:
    """Events of several journals (this machine's, the shared one) oldest first, each once."""
    seen: dict[str, JournalEvent] = {}
    for events in sources:
        for event in events:
            seen.setdefault(event.id, event)
    return sorted(seen.values(), key=lambda e: e.ts)
