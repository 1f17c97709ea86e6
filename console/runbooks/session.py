"""One run of a runbook: the whole API of the runbook screen (see :class:`RunbookSession`)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from console.actions import (
    Confirmation,
    ConfirmMode,
    Context,
    Executor,
    Plan,
    RenderError,
    Result,
    Status,
    render_text,
)
from console.journal import (
    InputSet,
    JournalError,
    JournalEvent,
    Note,
    PostIncidentTick,
    RunbookOpened,
    RunEvent,
    StepStateSet,
    merge,
    parse_ts,
    utc_iso,
)
from console.rules import Breach, format_duration
from console.runbooks.context import InputView, build_context, filled, input_views
from console.runbooks.progress import EscalationView, Progress, StepState, StepStatus
from console.runbooks.schema import (
    ActionStep,
    CheckStep,
    EscalateStep,
    ManualStep,
    Runbook,
    Step,
    StepKind,
    WaitStep,
)
from console.sanitize import one_line

# --- a run of a runbook ---------------------------------------------------------------------------------


class StepCommand(StrEnum):
    """What the operator asks of a step (the runbook screen's keys)."""

    EXECUTE = "execute"  # a check or wait runs, an action asks first, a manual step is marked done
    DRY_RUN = "dry_run"
    DONE = "done"
    SKIP = "skip"
    REOPEN = "reopen"
    ADD_NOTE = "add_note"
    SET_VALUE = "set_value"  # a runbook input: the image to roll back to, the sync to resume from


class Need(StrEnum):
    """What a :class:`StepTask` needs from the operator before :meth:`RunbookSession.perform`."""

    NOTHING = "nothing"
    CONFIRMATION = "confirmation"  # the plan shown, then yes or the typed word
    NOTE = "note text"  # the text of the note
    VALUE = "an input's value"  # which input, and its value (RunbookSession.inputs lists them)


@dataclass(frozen=True, slots=True)
class StepTask:
    """A command made concrete for one step: what it needs from the operator, and the plan the
    confirmation shows (an action's plan, previewed)."""

    command: StepCommand
    step: Step
    need: Need = Need.NOTHING
    plan: Plan | None = None


def run_key(runbook: Runbook, breach: Breach | None, now: float) -> str:
    """The run id: one per runbook and breach episode, so reopening it resumes it."""
    if breach is not None:
        return f"{runbook.id}@{breach.id}@{int(breach.since)}"
    # A random part: two runs opened within the same second must not share their progress.
    return f"{runbook.id}@manual@{int(now)}-{secrets.token_hex(3)}"


RESUME_WINDOW = 24 * 3600.0
#: Two consoles see a threshold's breach begin a few polls apart: runs opened for the same
#: breach whose starts are this close are one episode (one run to join).
EPISODE_SLACK = 300.0


def _same_episode(opened: RunbookOpened, breach: Breach) -> bool:
    try:
        return abs(parse_ts(opened.incident_start) - breach.since) <= EPISODE_SLACK
    except ValueError:
        return False


class RunbookSession:
    """One run of a runbook: the screen's whole API. Every change goes through the journal
    and is applied to :attr:`progress` from the records written, so what the screen shows is
    what a restart will read back."""

    def __init__(
        self, runbook: Runbook, executor: Executor, progress: Progress, breach: Breach | None = None
    ) -> None:
        self.runbook = runbook
        self.executor = executor
        self.journal = executor.journal
        self.progress = progress
        self.breach = breach
        self.context = self._context()
        self.last_error = ""  # why the last journal write failed, for the screen

    @classmethod
    async def open(
        cls,
        runbook: Runbook,
        executor: Executor,
        *,
        breach: Breach | None = None,
        inputs: Mapping[str, str] | None = None,
        new: bool = False,
        others: Iterable[JournalEvent] = (),
    ) -> RunbookSession:
        """Open (or resume) a run: for a breach, the run of that breach episode — or the run
        another console (``others``: the shared journal's events) has open for the same breach;
        without one, the latest unfinished run of this runbook in the last 24 h unless ``new``."""
        now = executor.clock()
        read = await asyncio.to_thread(executor.journal.read, now - RESUME_WINDOW if breach is None else None)
        events = merge(read.events, others)
        run_id = run_key(runbook, breach, now)
        opened = [
            e
            for e in events
            if isinstance(e, RunbookOpened) and e.runbook == runbook.id and now - e.ts < RESUME_WINDOW
            and (breach is None or (e.breach == breach.id and _same_episode(e, breach)))
        ]  # fmt: skip
        if not new and (breach is None or not any(e.run == run_id for e in opened)):
            for event in reversed(opened):
                candidate = Progress.from_events(runbook, event.run, events, event.ts, now)
                if not candidate.complete:
                    run_id = candidate.run_id
                    break
        start = breach.since if breach is not None else now
        progress = Progress.from_events(runbook, run_id, events, start, now)
        session = cls(runbook, executor, progress, breach)
        if not progress.opened:
            await session._record(
                RunbookOpened(
                    title=runbook.title,
                    incident_start=utc_iso(start),
                    breach=breach.id if breach else "",
                    inputs=dict(inputs or {}),
                )
            )
            session.context = session._context()  # the inputs it opened with are values now
        for name, value in (inputs or {}).items():
            if progress.inputs.get(name) != str(value):
                await session.set_input(name, str(value))
        return session

    def _context(self) -> Context:
        return build_context(
            self.executor.config, self.runbook, self.breach, self.progress.inputs, str(self.executor.operator)
        )

    async def _record(self, event: RunEvent) -> RunEvent | None:
        """Journal an event of this run and apply it; None when the journal cannot be written
        (the caller says so: nothing is pretended)."""
        try:
            written = await self.journal.aappend(
                replace(event, runbook=self.runbook.id, run=self.progress.run_id)
            )
        except JournalError as exc:
            self.last_error = str(exc)
            return None
        self.progress.apply(written)
        return written

    # -- what the screen shows ------------------------------------------------------------------

    @property
    def steps(self) -> list[StepStatus]:
        return self.progress.steps

    def plan(self, step: Step) -> Plan:
        """The rendered plan of a check or action step (a wait step: its check). RenderError when
        a value is missing; the screen shows the message."""
        match step:
            case WaitStep():
                spec = self.runbook.waited_check(step).check
            case CheckStep():
                spec = step.check
            case ActionStep():
                spec = step.action
            case _:
                raise RenderError(f"step {step.id} is a {step.kind} step: nothing to run")
        return self.executor.render(
            spec,
            self.context,
            title=self.title(step),
            runbook=self.runbook.id,
            run=self.progress.run_id,
            step=step.id,
        )

    def title(self, step: Step) -> str:
        """The step's title with its values filled in (as written when a value is missing)."""
        return one_line(filled(step.title, self.context), 200)

    @property
    def runbook_title(self) -> str:
        """The runbook's title with its values filled in (as written when a value is missing)."""
        return one_line(filled(self.runbook.title, self.context), 200)

    def describe(self, step: Step, now: float | None = None) -> tuple[str, ...]:
        """Lines for the step's detail pane: what it will do, with values filled in (masked)."""
        lines = [one_line(render_text(step.text, self.context)[0], 500)] if step.text else []
        try:
            return tuple(lines + _describe(self, step, now))
        except RenderError as exc:
            if unset := self.unset_inputs(step):  # a value the operator gives (the console shows its key)
                return tuple([*lines, f"cannot render until {', '.join(unset)} is set"])
            return tuple([*lines, f"cannot render: {exc}"])

    def escalation(self, now: float | None = None) -> EscalationView:
        return self.progress.escalation(self.executor.clock() if now is None else now)

    @property
    def time_scale(self) -> float:
        """The config's ``runbooks.time_scale`` (1: waits last what they say)."""
        return self.executor.config.runbooks.time_scale

    def wait_seconds(self, step: WaitStep) -> float:
        """How long a wait step waits: its seconds times the time scale."""
        return step.wait.seconds * self.time_scale

    def time_left(self, step: Step, now: float | None = None) -> float | None:
        """Seconds until a waiting wait step runs its check again; None when it is not waiting."""
        until = self.progress.status(step.id).until
        if until is None:
            return None
        return max(until - (self.executor.clock() if now is None else now), 0.0)

    # -- what the keys do ---------------------------------------------------------------------------

    async def task(self, command: StepCommand, step: Step) -> StepTask:
        """What ``command`` on ``step`` means, and what it needs from the operator first. An
        action is previewed here (journaled as requested); RenderError when a value is missing."""
        if command is StepCommand.ADD_NOTE:
            return StepTask(command, step, Need.NOTE)
        if command is StepCommand.SET_VALUE:
            return StepTask(command, step, Need.VALUE)
        if command is StepCommand.EXECUTE and step.kind is StepKind.ACTION and not self.refusal(step):
            return StepTask(command, step, Need.CONFIRMATION, await self.prepare(step))
        return StepTask(command, step)  # a refused step asks nothing: perform journals the refusal

    def refusal(self, step: Step) -> str:
        """Why this run will not execute ``step`` now, or "": a re-enable action runs only after
        the check and wait steps right before it (back to the previous action or manual step)
        each passed last time, a check settled by a wait that re-ran it passing counting as
        passed (docs/ARCHITECTURE.md, Runbooks)."""
        if not isinstance(step, ActionStep) or step.action.impact != "re-enable":
            return ""
        gate: list[CheckStep | WaitStep] = []
        for before in reversed(self.runbook.steps[: self.runbook.steps.index(step)]):
            if not isinstance(before, CheckStep | WaitStep):
                break
            gate.insert(0, before)
        if not gate:
            return (
                f"a re-enable step runs only right after a check or wait step; '{step.id}' has none before it"
            )
        for before in gate:
            status = self.progress.status(before.id)
            settled = any(
                isinstance(w, WaitStep) and w.wait.check == before.id and self.progress.status(w.id).passed
                for w in gate
            )
            if status.passed or settled:
                continue
            last = "it has not run" if status.passed is None else f"its last result: {status.message}"
            return (
                f"'{self.title(step)}' turns something back on: it runs only after '{self.title(before)}' "
                f"passes ({last})"
            )
        return ""

    async def perform(
        self,
        task: StepTask,
        *,
        confirmation: Confirmation | None = None,
        note: str = "",
        value: tuple[str, str] | None = None,
    ) -> Result | None:
        """Do a task with what the operator gave: the Result of what ran (a check, an action, a
        wait, a dry-run), or None for a change of state or a note (journaled)."""
        step = task.step
        match task.command:
            case StepCommand.EXECUTE if step.kind in (StepKind.MANUAL, StepKind.ESCALATE):
                await self.mark_done(step)
            case StepCommand.EXECUTE:
                return await self.execute(step, confirmation, task.plan)
            case StepCommand.DRY_RUN:
                return await self.dry_run(step)
            case StepCommand.DONE:
                await self.mark_done(step)
            case StepCommand.SKIP:
                await self.skip(step)
            case StepCommand.REOPEN:
                await self.reopen(step)
            case StepCommand.ADD_NOTE if note:
                await self.note(note, step)
            case StepCommand.SET_VALUE if value is not None:
                await self.set_input(*value)
        return None

    def expected(self, step: Step) -> StepCommand | None:
        """The command that completes a step the console cannot run itself (the screen says
        which key that is)."""
        return StepCommand.DONE if step.kind in (StepKind.MANUAL, StepKind.ESCALATE) else None

    async def prepare(self, step: Step) -> Plan:
        """Plan and, for actions, preview: everything the confirmation dialog shows."""
        plan = self.plan(step)
        return plan if plan.check else await self.executor.preview(plan)

    async def execute(
        self, step: Step, confirmation: Confirmation | None = None, plan: Plan | None = None
    ) -> Result:
        """``x``: run a check (no confirmation) or an action (pass the plan the dialog showed)."""
        if isinstance(step, WaitStep):
            return await self.wait(step)
        plan = plan or self.plan(step)
        if refusal := self.refusal(step):
            result = await self.executor.refuse(plan, refusal)
            self._apply(result)
            return result
        status = self.progress.status(step.id)
        before = (status.state, status.at)
        status.state = StepState.RUNNING
        result = await self.executor.execute(plan, confirmation)
        status.state, status.at = before
        self._apply(result)
        if result.status == Status.BUSY:
            status.message = result.message
        return result

    async def dry_run(self, step: Step) -> Result:
        """``d``: preview and validate the step's action or check without effect."""
        result = await self.executor.dry_run(self.plan(step))
        self._apply(result)
        return result

    async def decline(self, plan: Plan, message: str = "") -> None:
        await self.executor.decline(plan, message)

    async def wait(self, step: WaitStep) -> Result:
        """A wait step: wait its seconds, then run its check again; the step follows the check,
        and a check that passes now settles the check step too (its earlier failure was the
        problem the runbook just fixed; never run, it has run now)."""
        seconds = self.wait_seconds(step)
        await self._record(
            StepStateSet(step=step.id, state=StepState.RUNNING, message=f"waiting {seconds:g}s")
        )
        status = self.progress.status(step.id)
        status.until = self.executor.clock() + seconds  # the screen counts down to it
        try:
            await asyncio.sleep(seconds)
        finally:
            status.until = None
        result = await self.executor.run_check(self.plan(step))
        self._apply(result)
        state = StepState.DONE if result.ok else StepState.FAILED
        if result.status == Status.NOT_MET:
            state = StepState.NOT_MET
        await self._record(StepStateSet(step=step.id, state=state, message=result.message))
        checked = self.progress.status(step.wait.check).state
        if result.ok and checked in (StepState.FAILED, StepState.NOT_MET, StepState.TODO):
            # A check never run before (the run opened late, the operator went straight to the
            # wait) has now run and passed: left TODO, the run never read complete.
            verb = "checked" if checked == StepState.TODO else "re-checked"
            message = f"{result.message} ({verb} by '{step.id}')"
            await self._record(StepStateSet(step=step.wait.check, state=StepState.DONE, message=message))
        return result

    async def mark_done(self, step: Step, note: str = "") -> bool:
        """``m``: tick a manual item (or any step the operator did by hand)."""
        return await self._step_state(step, StepState.DONE, note or "done by hand")

    async def skip(self, step: Step, reason: str = "") -> bool:
        return await self._step_state(step, StepState.SKIPPED, reason or "skipped")

    async def reopen(self, step: Step) -> bool:
        return await self._step_state(step, StepState.TODO, "reopened")

    async def _step_state(self, step: Step, state: StepState, message: str) -> bool:
        return await self._record(StepStateSet(step=step.id, state=state, message=message)) is not None

    async def note(self, text: str, step: Step | None = None) -> bool:
        """``o``: a note for the record (and the report)."""
        return await self._record(Note(step=step.id if step else "", text=text)) is not None

    def inputs(self, step: Step | None = None) -> list[InputView]:
        """The runbook's inputs with their values now; those ``step`` needs and lacks first."""
        return input_views(self.runbook, step, self.context)

    def unset_inputs(self, step: Step) -> list[str]:
        """The inputs ``step`` uses that have no value (nothing of it renders without them)."""
        return [v.name for v in self.inputs(step) if v.used_here and v.value is None]

    async def set_input(self, name: str, value: str) -> bool:
        """Set a runbook input (journaled). ValueError, nothing journaled, for a name the runbook
        does not have or a value outside its choices."""
        spec = self.runbook.inputs.get(name)
        if spec is None:
            raise ValueError(f"{self.runbook.id} has no input '{name}'")
        if spec.choices and value not in spec.choices:
            raise ValueError(f"{name} must be one of {', '.join(spec.choices)}; got '{value}'")
        ok = await self._record(InputSet(name=name, value=value)) is not None
        self.context = self._context()
        return ok

    async def tick(self, index: int, done: bool = True) -> bool:
        """Tick a post-incident checklist item (by index in ``runbook.post_incident``)."""
        item = self.runbook.post_incident[index]
        return await self._record(PostIncidentTick(index=index, item=item, done=done)) is not None

    def _apply(self, result: Result) -> None:
        for event in result.events:
            self.progress.apply(event)
        if not result.events and result.plan.step:
            status = self.progress.status(result.plan.step)
            status.message = one_line(f"{result.status}: {result.message}", 300)
            status.lines = result.lines


def _describe(session: RunbookSession, step: Step, now: float | None) -> list[str]:
    """What a step will do, after its text: the plan it runs, or what the operator does."""
    match step:
        case CheckStep():
            symptom = (
                [f"measures: {filled(step.check.symptom, session.context)}"] if step.check.symptom else []
            )
            return [*session.plan(step).lines, f"expect: {_expect_text(session, step)}", *symptom]
        case ActionStep():
            return _describe_action(session, step)
        case ManualStep():
            manual = step.manual
            out = [render_text(manual.text, session.context)[1]] if manual.text else []
            if manual.link:
                out.append(f"link: {render_text(manual.link, session.context)[1]}")
            return out
        case WaitStep():
            check = session.runbook.waited_check(step)
            seconds = session.wait_seconds(step)
            scaled = (
                f" ({format_duration(step.wait.seconds)} × time scale {session.time_scale:g})"
                if seconds != step.wait.seconds
                else ""
            )
            waited = f"{format_duration(seconds)}{scaled}"
            return [step.again(seconds, waited, f"run '{session.title(check)}'"), *session.plan(step).lines]
        case EscalateStep():
            note = [step.escalate.note] if step.escalate.note else []
            return [*note, *session.escalation(now).lines()]
    raise TypeError(f"unknown step {type(step).__name__}")


def _expect_text(session: RunbookSession, step: CheckStep) -> str:
    """What the check expects, a threshold reference shown with the number it stands for."""
    expect = step.check.expect
    fields = expect.model_dump(exclude_defaults=True, by_alias=True)
    for name, ref in expect.references.items():
        try:
            threshold_id, level = session.executor.kinds.threshold_level(ref, session.context)
            fields[name] = f"{level:g} ({ref.model_copy(update={'threshold': threshold_id}).text()})"
        except RenderError as exc:
            fields[name] = f"{ref.text()} ({exc})"
    return ", ".join(f"{k} {v}" for k, v in fields.items()) or "success"


def _describe_action(session: RunbookSession, step: ActionStep) -> list[str]:
    plan = session.plan(step)
    confirm = plan.confirm
    if plan.word_after_preview and confirm.mode == ConfirmMode.TYPED:
        # The word is chosen by the preview: a pid the operator can check, or the cluster.
        word = f"the pid if the preview lists one session, else '{confirm.expected}'"
        return [*plan.lines, f"confirmation: typed, after the preview: {word}"]
    return [*plan.lines, f"confirmation: {confirm.prompt}"]
