"""The state of each step of one run of a runbook, rebuilt from the journal and kept by it."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from console.audit import Event, parse_ts
from console.rules import format_duration
from console.runbooks.schema import EscalationLevel, Runbook, Step
from console.sanitize import one_line

# --- progress ------------------------------------------------------------------------------------------


class StepState(StrEnum):
    TODO = "todo"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
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
        events: Iterable[Event],
        incident_start: float,
        now: float | None = None,
    ) -> Progress:
        progress = cls(runbook, run_id, incident_start)
        for event in events:
            if event.get("run") == run_id:
                progress.apply(event)
        progress.settle(time.time() if now is None else now)
        progress.current = progress.first_open()
        return progress

    def status(self, step_id: str) -> StepStatus:
        return next(s for s in self.steps if s.step.id == step_id)

    def apply(self, event: Event) -> None:
        handler = _APPLY.get(event.kind)
        if handler is not None:
            handler(self, event)

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

    def _set(self, event: Event, state: StepState | None, message: str | None = None) -> StepStatus | None:
        step_id = event.get("step")
        try:
            status = self.status(step_id)
        except StopIteration:
            return None
        if state is not None:
            status.state, status.at = state, event.ts
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


def _on_opened(p: Progress, e: Event) -> None:
    p.opened = True
    start = e.get("incident_start")
    if start:
        p.incident_start = parse_ts(start)
    p.inputs.update({k: str(v) for k, v in (e.get("inputs", {}) or {}).items()})


def _on_input(p: Progress, e: Event) -> None:
    p.inputs[str(e.get("name"))] = str(e.get("value"))


def _on_note(p: Progress, e: Event) -> None:
    text = f"{hhmm(e.ts)} {e.get('user')}: {e.get('text')}"
    status = p._set(e, None) if e.get("step") else None
    (status.notes if status is not None else p.notes).append(text)


def _on_step_state(p: Progress, e: Event) -> None:
    try:
        state = StepState(str(e.get("state")))
    except ValueError:
        return
    p._set(e, state, str(e.get("message")))


def _on_confirmed(p: Progress, e: Event) -> None:
    status = p._set(e, StepState.RUNNING, "running")
    plan = e.get("plan", {})
    if status is not None:
        timeout = plan.get("timeout", 60) if isinstance(plan, Mapping) else 60
        p._timeouts[status.step.id] = (e.ts, float(timeout) if isinstance(timeout, int | float) else 60.0)


def _on_result(state: StepState):
    def apply(p: Progress, e: Event) -> None:
        status = p._set(e, state, str(e.get("message")))
        if status is not None:
            output = e.get("output", [])
            status.lines = tuple(str(x) for x in output) if isinstance(output, list) else ()
            p._timeouts.pop(status.step.id, None)

    return apply


def _on_refused(p: Progress, e: Event) -> None:
    p._set(e, None, f"refused: {e.get('message')}")


def _on_dry_run(p: Progress, e: Event) -> None:
    p._set(e, None, f"dry-run: {e.get('message')}")


def _on_tick(p: Progress, e: Event) -> None:
    index = e.get("index", -1)
    if isinstance(index, int):
        (p.ticked.add if e.get("done", True) else p.ticked.discard)(index)


_APPLY = {
    "runbook.opened": _on_opened,
    "input.set": _on_input,
    "note": _on_note,
    "step.state": _on_step_state,
    "action.confirmed": _on_confirmed,
    "action.succeeded": _on_result(StepState.DONE),
    "action.failed": _on_result(StepState.FAILED),
    "check.passed": _on_result(StepState.DONE),
    "check.failed": _on_result(StepState.FAILED),
    "action.refused": _on_refused,
    "action.dry_run": _on_dry_run,
    "postincident.tick": _on_tick,
}
