"""The incident timeline: journal events as one-line entries (the ``t`` view and the report)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from console.journal import (
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
    PostIncidentTick,
    RunbookOpened,
    RunEvent,
    StepStateSet,
)
from console.sanitize import one_line


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the ``t`` view and of the exported timeline. ``text`` is plain, safe text."""

    ts: float
    kind: str  # the event name
    who: str
    text: str
    runbook: str = ""
    step: str = ""
    #: ok | failed | refused | info | breach: for a glyph and a word, not only colour. A breach
    #: is no failure of anyone's: it reads as its severity (``severity``).
    outcome: str = ""
    event: JournalEvent | None = field(default=None, compare=False, repr=False)
    severity: str = ""  # a breach's Severity.word (CRIT, WARN...), else empty


def _where(e: JournalEvent) -> str:
    if isinstance(e, BreachEvent) or not isinstance(e, RunEvent) or not e.runbook:
        return ""
    return f" [{e.runbook}{'/' + e.step if e.step else ''}]"


def _duration(e: Outcome) -> str:
    return f" in {e.duration:.2f}s" if e.duration is not None else ""


#: A check.failed event's result when the check ran and found the problem (the executor's
#: Status.NOT_MET); any other result is a check that could not run or be judged.
NOT_MET = "not met"


def not_met(event: JournalEvent) -> bool:
    return isinstance(event, CheckFailed) and event.result == NOT_MET


_TEXT: dict[type, Callable[[JournalEvent], str]] = {
    BreachStarted: lambda e: f"{e.title} {e.state}: {e.value} {e.subject}".rstrip(),
    BreachChanged: lambda e: f"{e.title} {e.from_state} -> {e.state} ({e.severity})",
    BreachEnded: lambda e: (
        f"{e.title} cleared (was {e.state} since {e.since}{' or earlier' if e.since_first_look else ''})"
    ),
    RunbookOpened: lambda e: (
        f"opened runbook {e.runbook}: {e.title}" + (f" for {e.breach}" if e.breach else "")
    ),
    StepStateSet: lambda e: f"step {e.step} {e.state}" + (f": {e.message}" if e.message else ""),
    InputSet: lambda e: f"set {e.name} = {e.value}",
    Note: lambda e: f"note: {e.text}",
    PostIncidentTick: lambda e: f"post-incident done: {e.item}",
    ActionRequested: lambda e: f"reviewing: {e.plan.name}",
    ActionDryRun: lambda e: f"dry-run: {e.plan.name}: {e.message}",
    ActionDeclined: lambda e: f"declined: {e.plan.name}",
    ActionRefused: lambda e: f"refused: {e.plan.name}: {e.message}",
    ActionClaimed: lambda e: f"claimed {', '.join(e.claims)}: {e.plan.name}",
    ActionConfirmed: lambda e: f"confirmed ({e.confirmation}): {e.plan.name}",
    ActionSucceeded: lambda e: f"succeeded{_duration(e)}: {e.plan.name}: {e.message}",
    ActionFailed: lambda e: f"{e.result or 'failed'}{_duration(e)}: {e.plan.name}: {e.message}",
    CheckPassed: lambda e: f"check passed: {e.plan.name}: {e.message}",
    CheckFailed: lambda e: f"check {NOT_MET if not_met(e) else 'failed'}: {e.plan.name}: {e.message}",
}
_OUTCOME: dict[type, str] = {
    ActionSucceeded: "ok",
    CheckPassed: "ok",
    BreachEnded: "ok",
    ActionFailed: "failed",
    CheckFailed: "failed",
    BreachStarted: "breach",
    BreachChanged: "breach",
    ActionRefused: "refused",
}
#: Who a breach event is by: the monitored system, never the operator whose console saw it.
SYSTEM = "system"
#: Several consoles watching one estate each journal the same breach transition, a refresh or
#: two apart: within this many seconds another console's identical transition is the same one.
SAME_TRANSITION_SECONDS = 30.0


def _transition(e: BreachEvent) -> tuple[str, ...]:
    """What makes two consoles' breach events the same transition (not ``since`` or ``value``:
    each console measures those itself)."""
    before = (e.from_state, e.from_severity) if isinstance(e, BreachChanged) else ("", "")
    return (str(e.kind), e.breach, e.state, e.severity, *before)


def _seen_elsewhere(e: BreachEvent, last: dict[tuple[str, ...], tuple[float, str]]) -> bool:
    """True when another console journaled this transition in the last few seconds."""
    key = _transition(e)
    seen = last.get(key)
    if seen is not None and seen[1] != e.console and e.ts - seen[0] <= SAME_TRANSITION_SECONDS:
        return True
    last[key] = (e.ts, e.console)
    return False


def timeline(events: Iterable[JournalEvent]) -> list[TimelineEntry]:
    """Events in time order as one-line entries (unknown event kinds keep their name). A breach
    transition several consoles journaled is one entry (the first console's)."""
    out = []
    transitions: dict[tuple[str, ...], tuple[float, str]] = {}
    for e in sorted(events, key=lambda e: e.ts):
        if isinstance(e, BreachEvent) and _seen_elsewhere(e, transitions):
            continue
        render = _TEXT.get(type(e))
        text = render(e) if render else str(e.kind)
        run = e if isinstance(e, RunEvent) else None
        breach = isinstance(e, BreachEvent)
        out.append(
            TimelineEntry(
                e.ts,
                str(e.kind),
                SYSTEM if breach else e.operator,
                one_line(text + _where(e), 400),
                run.runbook if run else "",
                run.step if run else "",
                NOT_MET if not_met(e) else _OUTCOME.get(type(e), "info"),
                e,
                e.severity if breach and not isinstance(e, BreachEnded) else "",
            )
        )
    return out
