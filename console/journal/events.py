"""One dataclass per kind of journal event, and their JSON form (one object per line).

Writers build an event and hand it to :class:`console.journal.Journal`, which stamps it (time,
operator, environment, console) and writes it. Readers get the same classes back from
:func:`console.journal.read_journal` and dispatch on the class, never on strings. A line from an
earlier release, or a damaged one, still reads: a field of the wrong type takes its default, and
an unknown ``event`` becomes :class:`UnknownEvent` (shown by its name).

JSON keys equal the attribute names except where a dataclass field says otherwise
(``metadata={"key": ...}``): the breach events' ``kind`` is :attr:`BreachEvent.breach_kind`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

from console.journal.kinds import Kind

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- the events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEvent:
    """What every line carries. ``ts`` and the rest are set by the journal when it writes."""

    KIND: ClassVar[Kind]

    ts: float = 0.0
    operator: str = ""  # user@host (ssh from a.b.c.d)
    user: str = ""
    ssh_client: str = ""
    host: str = ""
    environment: str = ""
    console: str = ""  # one id per console process
    incident: str = ""  # the incident it belongs to (the config's journal.incident)
    #: Unique per event (a line of an earlier release has none: its id is a hash of the line),
    #: so that a journal shared between consoles holds each event once.
    id: str = ""
    #: The line as read (empty for an event not read from a file): the file format, for tools
    #: and tests that look at it.
    raw: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, compare=False, repr=False)

    @property
    def kind(self) -> Kind | str:
        return self.KIND

    def get(self, key: str, default: Any = "") -> Any:
        """A field of the line as read, by its JSON key (the file format)."""
        value = self.raw.get(key, default)
        return default if value is None else value


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(JournalEvent):
    """A line whose ``event`` this release does not know (a later release wrote it)."""

    name: str = ""

    @property
    def kind(self) -> Kind | str:
        return self.name


# --- breaches: the system's, not an operator's ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BreachEvent(JournalEvent):
    breach: str = ""  # the breach id
    breach_kind: str = field(default="", metadata={"key": "kind"})  # threshold | alert | source
    title: str = ""
    source: str = ""
    state: str = ""
    severity: str = ""  # Severity.word: OK INFO UNKNOWN WARN CRIT
    since: str = ""  # ISO time the episode began
    # ``since`` is the console's first look at a breach already on then: it began then or earlier
    # (rules.Breach.since_known). Written only when so; older journals never say it.
    since_first_look: bool = field(default=False, metadata={"omit_empty": True})
    value: str = ""
    level: str = ""
    subject: str = ""
    summary: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BreachStarted(BreachEvent):
    KIND = Kind.BREACH_START


@dataclass(frozen=True, slots=True, kw_only=True)
class BreachChanged(BreachEvent):
    KIND = Kind.BREACH_CHANGE
    from_state: str = ""
    from_severity: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BreachEnded(BreachEvent):
    KIND = Kind.BREACH_END


# --- a run of a runbook ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent(JournalEvent):
    """An event of a run of a runbook (all three empty outside one)."""

    runbook: str = ""
    run: str = ""
    step: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunbookOpened(RunEvent):
    KIND = Kind.RUNBOOK_OPENED
    title: str = ""
    incident_start: str = ""  # ISO time
    breach: str = ""
    inputs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStateSet(RunEvent):
    KIND = Kind.STEP_STATE
    state: str = ""  # a StepState value
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputSet(RunEvent):
    KIND = Kind.INPUT_SET
    name: str = ""
    value: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Note(RunEvent):
    KIND = Kind.NOTE
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PostIncidentTick(RunEvent):
    KIND = Kind.POSTINCIDENT_TICK
    index: int = -1
    item: str = ""
    done: bool = True


# --- actions and checks ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetRecord:
    """A session an action was bound to, as the operator saw it."""

    pid: int = 0
    backend_start: str = ""  # ISO time


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanRecord:
    """What an action or check was going to do, as the confirmation showed it (masked)."""

    id: str = ""
    kind: str = ""
    title: str = ""
    summary: str = ""
    target: str = ""
    lines: tuple[str, ...] = ()
    confirm: str = ""  # none | yes-no | typed
    timeout: float | None = None
    targets: tuple[TargetRecord, ...] = field(default=(), metadata={"omit_empty": True})

    @property
    def name(self) -> str:
        return self.title or self.summary or "action"


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanEvent(RunEvent):
    plan: PlanRecord = field(default_factory=PlanRecord)


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRequested(PlanEvent):
    """The operator is looking at the confirmation: what the preview found."""

    KIND = Kind.ACTION_REQUESTED
    preview: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionDryRun(PlanEvent):
    """What the action would touch (its preview's rows) and any problem: the step shows it."""

    KIND = Kind.ACTION_DRY_RUN
    result: str = ""
    message: str = ""
    output: tuple[str, ...] = field(default=(), metadata={"omit_empty": True})


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionDeclined(PlanEvent):
    """No, closed, or left open as the console closed (``message`` says which)."""

    KIND = Kind.ACTION_DECLINED
    message: str = field(default="", metadata={"omit_empty": True})


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRefused(PlanEvent):
    KIND = Kind.ACTION_REFUSED
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionClaimed(PlanEvent):
    """This console is about to act on these targets; others are refused until it is done
    (the claim itself is a lock held while it runs: see console/journal/shared.py)."""

    KIND = Kind.ACTION_CLAIMED
    claims: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionConfirmed(PlanEvent):
    """Written (and fsynced) before anything runs."""

    KIND = Kind.ACTION_CONFIRMED
    confirmation: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome(PlanEvent):
    """How an action or a check ended."""

    result: str = ""  # a Status value, or "cancelled"
    message: str = ""
    output: tuple[str, ...] = field(default=(), metadata={"omit_empty": True})
    duration: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSucceeded(Outcome):
    KIND = Kind.ACTION_SUCCEEDED
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, metadata={"omit_empty": True})


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionFailed(Outcome):
    KIND = Kind.ACTION_FAILED
    data: Mapping[str, Any] = field(default_factory=lambda: _EMPTY, metadata={"omit_empty": True})


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckPassed(Outcome):
    KIND = Kind.CHECK_PASSED


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckFailed(Outcome):
    KIND = Kind.CHECK_FAILED


EVENT_TYPES: Mapping[Kind, type[JournalEvent]] = MappingProxyType(
    {
        cls.KIND: cls
        for cls in (
            BreachStarted,
            BreachChanged,
            BreachEnded,
            RunbookOpened,
            StepStateSet,
            InputSet,
            Note,
            PostIncidentTick,
            ActionRequested,
            ActionDryRun,
            ActionDeclined,
            ActionRefused,
            ActionClaimed,
            ActionConfirmed,
            ActionSucceeded,
            ActionFailed,
            CheckPassed,
            CheckFailed,
        )
    }
)
assert set(EVENT_TYPES) == set(Kind), "every kind has its class"

#: What the journal stamps on every line, in this order, before the event's own fields.
STAMP = ("ts", "event", "operator", "user", "ssh_client", "host", "environment", "console", "incident", "id")
_STAMP_FIELDS = frozenset(STAMP) | {"raw"}


# --- to and from JSON ------------------------------------------------------------------------------


def to_json(event: JournalEvent | PlanRecord | TargetRecord) -> dict[str, Any]:
    """The event's own fields (not the stamp) as JSON values, by JSON key."""
    out: dict[str, Any] = {}
    stamped = isinstance(event, JournalEvent)  # a nested record's own "id" is its own
    for f in dataclasses.fields(event):
        if stamped and f.name in _STAMP_FIELDS:
            continue
        value = getattr(event, f.name)
        if f.metadata.get("omit_empty") and not value:
            continue
        out[f.metadata.get("key", f.name)] = _json_value(value)
    return out


def _json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(value)
    if isinstance(value, tuple | list):
        return [_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def from_json(record: Mapping[str, Any]) -> JournalEvent | None:
    """The event a JSON line holds; None when it is no event (no ``event`` name or ``ts``)."""
    name = record.get("event")
    try:
        ts = parse_ts(record["ts"])
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    if not isinstance(name, str):
        return None
    try:
        cls: type[JournalEvent] = EVENT_TYPES[Kind(name)]
        extra: dict[str, Any] = {}
    except ValueError:
        cls, extra = UnknownEvent, {"name": name}
    stamp = {key: _text(record.get(key)) for key in STAMP[2:]}
    stamp["id"] = stamp["id"] or line_id(record)
    return cls(ts=ts, raw=MappingProxyType(dict(record)), **stamp, **extra, **_decode_fields(cls, record))


def line_id(record: Mapping[str, Any]) -> str:
    """The id of a line written without one: the same line always gets the same id."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return "h" + hashlib.sha256(canonical.encode()).hexdigest()[:31]


def _decode_fields(cls: type, record: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for name, key, decode in _decoders(cls):
        if key in record:
            value = decode(record[key])
            if value is not _BAD:
                out[name] = value
    return out


_BAD = object()  # a value of the wrong type: the field keeps its default


@functools.cache
def _decoders(cls: type) -> tuple[tuple[str, str, Callable[[Any], Any]], ...]:
    hints = typing.get_type_hints(cls)
    stamped = issubclass(cls, JournalEvent)  # a nested record's own "id" is its own
    return tuple(
        (f.name, f.metadata.get("key", f.name), _decoder(hints[f.name]))
        for f in dataclasses.fields(cls)
        if not (stamped and f.name in _STAMP_FIELDS)
    )


def _decoder(hint: Any) -> Callable[[Any], Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is str:
        return lambda v: v if isinstance(v, str) else (str(v) if isinstance(v, int | float) else _BAD)
    if hint is bool:
        return lambda v: v if isinstance(v, bool) else _BAD
    if hint is int:
        return lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _BAD
    if hint == float | None:
        return lambda v: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None
    if origin is tuple and args[1:] == (Ellipsis,):
        item = _decoder(args[0])

        def items(v: Any) -> Any:
            if not isinstance(v, list):
                return _BAD
            return tuple(x for x in map(item, v) if x is not _BAD)

        return items
    if origin in (Mapping, dict) or hint is Mapping:
        return lambda v: MappingProxyType(dict(v)) if isinstance(v, dict) else _BAD
    if dataclasses.is_dataclass(hint):
        return lambda v: hint(**_decode_fields(hint, v)) if isinstance(v, dict) else _BAD
    raise TypeError(f"no journal decoder for {hint!r}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
