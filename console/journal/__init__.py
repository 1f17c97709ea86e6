"""The journal: the typed vocabulary of what happened, and the one file it is written to.

- ``kinds``: :class:`Kind`, every event name;
- ``events``: one dataclass per kind, and their JSON form (the file format never changes);
- ``reader``: :func:`read_journal`, every whole line as a typed event;
- ``writer``: :class:`Journal`, append + fsync under a lock, redacted; :class:`Operator`;
- ``breaches``: breach list changes as events.

Every writer and reader of the console uses these names; no other module spells an event name.
"""

from __future__ import annotations

from console.journal.breaches import breach_events, record_breaches
from console.journal.events import (
    EVENT_TYPES,
    ActionClaimed,
    ActionConfirmed,
    ActionDeclined,
    ActionDryRun,
    ActionFailed,
    ActionRefused,
    ActionRequested,
    ActionSucceeded,
    BreachChanged,
    BreachEnded,
    BreachEvent,
    BreachStarted,
    CheckFailed,
    CheckPassed,
    InputSet,
    JournalEvent,
    Note,
    Outcome,
    PlanEvent,
    PlanRecord,
    PostIncidentTick,
    RunbookOpened,
    RunEvent,
    StepStateSet,
    TargetRecord,
    UnknownEvent,
    from_json,
    parse_ts,
    to_json,
    utc_iso,
)
from console.journal.kinds import Kind
from console.journal.reader import JournalRead, merge, read_journal
from console.journal.writer import FIELD_LIMIT, Journal, JournalError, Operator

__all__ = [
    "EVENT_TYPES",
    "FIELD_LIMIT",
    "ActionClaimed",
    "ActionConfirmed",
    "ActionDeclined",
    "ActionDryRun",
    "ActionFailed",
    "ActionRefused",
    "ActionRequested",
    "ActionSucceeded",
    "BreachChanged",
    "BreachEnded",
    "BreachEvent",
    "BreachStarted",
    "CheckFailed",
    "CheckPassed",
    "InputSet",
    "Journal",
    "JournalError",
    "JournalEvent",
    "JournalRead",
    "Kind",
    "Note",
    "Operator",
    "Outcome",
    "PlanEvent",
    "PlanRecord",
    "PostIncidentTick",
    "RunEvent",
    "RunbookOpened",
    "StepStateSet",
    "TargetRecord",
    "UnknownEvent",
    "breach_events",
    "from_json",
    "merge",
    "parse_ts",
    "read_journal",
    "record_breaches",
    "to_json",
    "utc_iso",
]
