"""Breaches into journal events: what changed between two breach lists (start, change, end)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from console.journal.events import BreachChanged, BreachEnded, BreachEvent, BreachStarted, utc_iso
from console.journal.writer import Journal

if TYPE_CHECKING:  # kept light: a journal writer needs no config or rules machinery
    from console.rules import Breach


def _fields(breach: Breach) -> dict[str, str | bool]:
    return {
        "breach": breach.id,
        "breach_kind": breach.kind,
        "title": breach.title,
        "source": breach.source,
        "state": str(breach.state),
        "severity": breach.severity.word,
        "since": utc_iso(breach.since),
        "since_first_look": not breach.since_known,
        "value": breach.value_text,
        "level": breach.level_text,
        "subject": breach.subject,
        "summary": breach.summary,
    }


def breach_events(old: Iterable[Breach], new: Iterable[Breach]) -> list[BreachEvent]:
    """What changed between two breach lists: start, change, end.

    A change is a new state (pending -> firing, an alert resolving into recovering) or severity.
    """
    before = {b.id: b for b in old}
    after = {b.id: b for b in new}
    out: list[BreachEvent] = []
    for breach_id, breach in after.items():
        prior = before.get(breach_id)
        if prior is None:
            out.append(BreachStarted(**_fields(breach)))
        elif (prior.state, prior.severity) != (breach.state, breach.severity):
            out.append(
                BreachChanged(
                    **_fields(breach), from_state=str(prior.state), from_severity=prior.severity.word
                )
            )
    for breach_id, breach in before.items():
        if breach_id not in after:
            out.append(BreachEnded(**_fields(breach)))
    return out


def record_breaches(journal: Journal, old: Iterable[Breach], new: Iterable[Breach]) -> list[BreachEvent]:
    """Journal the difference between two ConsoleState breach lists (call it on every new state).

    Raises JournalError like :meth:`Journal.append`; the events written so far stay written."""
    return [journal.append(event) for event in breach_events(old, new)]
