"""The state of each step of one run of a runbook, rebuilt from the journal and kept by it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from console.journal import (
    ActionConfirmed,
    ActionDryRun,
    ActionFailed,
    ActionRefused,
    ActionSucceeded,
    CheckFailed,
    CheckPassed,
    InputSet,
    JournalEvent,
    Note,
    PostIncidentTick,
    RunbookOpened,
    RunEvent,
    StepStateSet,
    parse_ts,
)
from console.rules import format_duration
from console.runbooks.schema import EscalationLevel, Runbook, Step
from console.sanitize import one_line
from console.timeline import not_met

# --- progress ------------------------------------------------------------------------------------------


class StepState(StrEnum):
    TODO = "todo"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    NOT_MET = "not met"  # a check ran and found what it expects not to (the problem is there)
    SKIPPED = "skipped"


@dataclass
class StepStatus:
    """One step as the screen shows it."""

    step: Step
    index: int
    state: StepState = StepState.TODO
    message: str = ""  # the last result, refusal or dry-run, in one line
    lines: tuple[str, ...] = ()  # the last result's output
    at: float | None = None  # when the state last changed
    by: str = ""  # who changed it (user@host): with a shared journal, another engineer
    passed: bool | None = None  # the last check this step ran passed (None: none ran since it was opened)
    until: float | None = None  # a wait step waiting: when its wait ends (the session's clock)
    notes: list[str] = field(default_factory=list)  # "10:31 alice: text"


@dataclass(frozen=True, slots=True)
class EscalationView:
    elapsed: float
    current: EscalationLevel | None
    next: EscalationLevel | None
    next_in: float | None
    by_condition: tuple[EscalationLevel, ...] = ()

    def lines(self) -> tuple[str, ...]:
        out = [f"incident running for {format_duration(self.elapsed)}"]
        if self.current is not None:
            out.append(f"now: level {self.current.level} — {_level_text(self.current)}")
        if self.next is not None and self.next_in is not None:
            out.append(
                f"in {format_duration(self.next_in)}: level {self.next.level} — {_level_text(self.next)}"
            )
        out += [f"if {lvl.when}: level {lvl.level} — {_level_text(lvl)}" for lvl in self.by_condition]
        return tuple(out)


def _level_text(level: EscalationLevel) -> str:
    notify = f" (notify: {', '.join(level.notify)})" if level.notify else ""
    return f"{level.who}{notify}" + (f"; {level.do}" if level.do else "")


def hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


class Progress:
    """Step states of one run of a runbook, rebuilt from journal events (and kept by them)."""

    def __init__(self, runbook: Runbook, run_id: str, incident_start: float) -> None:
        self.runbook = runbook
        self.run_id = run_id
        self.incident_start = incident_start
        self.steps = [StepStatus(step, i) for i, step in enumerate(runbook.steps)]
        self.current = 0
        self.opened = False
        self.inputs: dict[str, str] = {}
        self.notes: list[str] = []  # notes not tied to a step
        self.ticked: set[int] = set()  # post-incident items done
        self._timeouts: dict[str, tuple[float, float]] = {}  # step -> (confirmed at, timeout)

    @classmethod
    def from_events(
        cls,
        runbook: Runbook,
        run_id: str,
        events: Iterable[JournalEvent],
        incident_start: float,
        now: float | None = None,
    ) -> Progress:
        progress = cls(runbook, run_id, incident_start)
        for event in events:
            if isinstance(event, RunEvent) and event.run == run_id:
                progress.apply(event)
        progress.settle(time.time() if now is None else now)
        progress.current = progress.first_open()
        return progress

    def status(self, step_id: str) -> StepStatus:
        return next(s for s in self.steps if s.step.id == step_id)

    def apply(self, event: JournalEvent) -> None:
        """Follow one event of this run (the caller picks the run's events)."""
        match event:
            case RunbookOpened():
                self.opened = True
                if event.incident_start:
                    with contextlib.suppress(ValueError):
                        self.incident_start = parse_ts(event.incident_start)
                self.inputs.update({k: str(v) for k, v in event.inputs.items()})
            case InputSet():
                self.inputs[event.name] = event.value
            case Note():
                text = f"{hhmm(event.ts)} {event.user}: {event.text}"
                status = self._set(event, None) if event.step else None
                (status.notes if status is not None else self.notes).append(text)
            case StepStateSet():
                with contextlib.suppress(ValueError):
                    status = self._set(event, StepState(event.state), event.message)
                    if status is not None and status.state != StepState.RUNNING:
                        status.until = None
                    if status is not None and status.state == StepState.TODO:
                        status.passed = None  # reopened: a later check decides again
            case ActionConfirmed():
                if (status := self._set(event, StepState.RUNNING, "running")) is not None:
                    timeout = event.plan.timeout if event.plan.timeout is not None else 60.0
                    self._timeouts[status.step.id] = (event.ts, timeout)
            case ActionSucceeded() | ActionFailed() | CheckPassed() | CheckFailed():
                done = isinstance(event, ActionSucceeded | CheckPassed)
                state = StepState.DONE if done else StepState.FAILED
                if not_met(event):
                    state = StepState.NOT_MET
                if status := self._set(event, state, event.message):
                    status.lines = event.output
                    self._timeouts.pop(status.step.id, None)
                    if isinstance(event, CheckPassed | CheckFailed):
                        status.passed = done
            case ActionRefused():
                self._set(event, None, f"refused: {event.message}")
            case ActionDryRun():
                if status := self._set(event, None, f"dry-run: {event.message}"):
                    status.lines = event.output  # what it would touch, as its preview found it
            case PostIncidentTick() if event.index >= 0:
                (self.ticked.add if event.done else self.ticked.discard)(event.index)

    def settle(self, now: float) -> None:
        """A step left running by a console that stopped (its timeout long past) is failed."""
        for step_id, (since, timeout) in list(self._timeouts.items()):
            status = self.status(step_id)
            if status.state == StepState.RUNNING and now - since > timeout + 5:
                status.state = StepState.FAILED
                status.message = (
                    "no result was recorded: the console stopped while it ran; check before re-running"
                )
                del self._timeouts[step_id]

    def _set(self, event: RunEvent, state: StepState | None, message: str | None = None) -> StepStatus | None:
        try:
            status = self.status(event.step)
        except StopIteration:
            return None
        if state is not None:
            status.state, status.at, status.by = state, event.ts, event.operator
        if message is not None:
            status.message = one_line(message, 300)
        return status

    def first_open(self) -> int:
        for status in self.steps:
            if status.state not in (StepState.DONE, StepState.SKIPPED):
                return status.index
        return max(len(self.steps) - 1, 0)

    def next(self) -> int:
        self.current = min(self.current + 1, max(len(self.steps) - 1, 0))
        return self.current

    def previous(self) -> int:
        self.current = max(self.current - 1, 0)
        return self.current

    @property
    def done(self) -> int:
        return sum(1 for s in self.steps if s.state in (StepState.DONE, StepState.SKIPPED))

    @property
    def complete(self) -> bool:
        return self.done == len(self.steps)

    def escalation(self, now: float | None = None) -> EscalationView:
        now = time.time() if now is None else now
        elapsed = max(now - self.incident_start, 0.0)
        timed = [lvl for lvl in self.runbook.escalation if lvl.after is not None]
        current = next((lvl for lvl in reversed(timed) if lvl.after <= elapsed), None)
        upcoming = next((lvl for lvl in timed if lvl.after > elapsed), None)
        return EscalationView(
            elapsed,
            current,
            upcoming,
            None if upcoming is None else upcoming.after - elapsed,
            tuple(lvl for lvl in self.runbook.escalation if lvl.after is None),
        )
