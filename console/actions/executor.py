"""The Executor: the rules of :mod:`console.actions` (read-only, confirmation, single flight,
timeouts, the journal before and after). What a plan does is its kind's
(:mod:`console.actions.registry`); the executor decides whether, when and with what answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

from console.actions.kind import Kind, KindContext, Rendered, failure
from console.actions.kinds.silence import SilenceAction
from console.actions.plans import (
    SHOW_LINES,
    Confirmation,
    ConfirmMode,
    ConfirmSpec,
    Outcome,
    Plan,
    Result,
    Status,
    Target,
)
from console.actions.registry import SIGNAL, kind_named, kind_of
from console.actions.specs import ActionSpec, CheckSpec
from console.actions.templates import Context, RenderError, Value, render_text
from console.config import Config
from console.journal import (
    ActionClaimed,
    ActionConfirmed,
    ActionDeclined,
    ActionDryRun,
    ActionFailed,
    ActionRefused,
    ActionRequested,
    ActionSucceeded,
    CheckFailed,
    CheckPassed,
    Journal,
    JournalError,
)
from console.journal.claims import Claims, LocalClaims
from console.rules import Breach, format_duration
from console.sanitize import one_line


class Executor:
    """Renders, previews, dry-runs and executes. One per console process (single flight)."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        *,
        read_only: bool = False,
        mode: Literal["console", "wall", "web"] = "console",
        clock: Callable[[], float] = time.time,
        claims: Claims | None = None,
    ) -> None:
        self.config = config
        self.journal = journal
        #: Who else acts on a target: the shared journal's claims, or this machine's.
        self.claims: Claims = claims or LocalClaims.beside(journal.path, journal.console)
        self.operator = journal.operator
        self.mode = mode
        self.clock = clock
        self._read_only_flag = read_only
        self.running: Plan | None = None
        self._running_since = 0.0
        self._checks: set[str] = set()

    @property
    def kinds(self) -> KindContext:
        """All a kind may use: the configured backends, the operator, the clock, the thresholds
        and the time scale."""
        settings = self.config.runbooks
        return KindContext(
            tuple(self.config.postgres),
            self.config.prometheus,
            str(self.operator),
            self.clock,
            thresholds=self.config.threshold_levels(),
            time_scale=settings.time_scale,
            min_window=settings.min_window,
            health=tuple(self.config.health),
        )

    # -- policy ------------------------------------------------------------------------------

    @property
    def read_only_reason(self) -> str:
        """Why actions are refused, or "" when they may run."""
        if self.config.read_only:
            return "read-only: the config says read_only: true"
        if self._read_only_flag:
            return "read-only: the console was started with --read-only"
        if self.mode in ("wall", "web"):
            return f"read-only: {self.mode} mode never runs actions"
        return ""

    @property
    def read_only(self) -> bool:
        return bool(self.read_only_reason)

    @property
    def production(self) -> bool:
        return self.config.environment.production

    def _confirm_spec(self, dangerous: bool, word: str, summary: str) -> ConfirmSpec:
        if dangerous or self.production:
            why = "production: " if self.production and not dangerous else ""
            return ConfirmSpec(ConfirmMode.TYPED, word, f"{why}type '{word}' to run: {summary}")
        question = summary.removeprefix("run ")  # a command's summary says "run" itself
        return ConfirmSpec(ConfirmMode.YES_NO, "", f"Run {question}? [y/N]")

    @staticmethod
    def confirmation_problem(plan: Plan, confirmation: Confirmation) -> str:
        """Why this answer does not allow the plan to run, or ""."""
        mode = plan.confirm.mode
        if mode == ConfirmMode.NONE:
            return ""
        if mode == ConfirmMode.YES_NO:
            return (
                ""
                if confirmation.yes or confirmation.typed is not None
                else "not confirmed (the answer was No)"
            )
        typed = (confirmation.typed or "").strip()
        if not typed:
            return f"not confirmed: type '{plan.confirm.expected}' to run this"
        if typed != plan.confirm.expected:
            return f"not confirmed: typed '{one_line(typed, 40)}', expected '{plan.confirm.expected}'"
        return ""

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        spec: ActionSpec | CheckSpec,
        ctx: Context,
        *,
        title: str = "",
        runbook: str = "",
        run: str = "",
        step: str = "",
    ) -> Plan:
        """A plan for ``spec`` (pure: nothing is contacted). Raises RenderError."""
        kind = kind_of(spec)
        rendered = kind.render(spec, ctx, self.kinds)
        fields = {
            "title": title,
            "timeout": float(spec.timeout),
            "runbook": runbook,
            "run": run,
            "step": step,
        }
        if isinstance(spec, CheckSpec):  # a check asks nothing
            return self._plan(kind, rendered, ConfirmSpec(ConfirmMode.NONE), check=True, **fields)
        dangerous = spec.typed or rendered.dangerous
        word = rendered.word
        if spec.confirm:
            real, shown = render_text(spec.confirm, ctx)
            if real != shown:
                raise RenderError("the confirmation word cannot be a secret")
            word = real
        return self._plan(
            kind,
            rendered,
            self._confirm_spec(dangerous, word, rendered.summary),
            dangerous=dangerous,
            word_after_preview=kind.binds_targets and not spec.confirm,
            **fields,
        )

    @staticmethod
    def _plan(kind: Kind, rendered: Rendered, confirm: ConfirmSpec, *, title: str, **fields: Any) -> Plan:
        return Plan(
            id=uuid.uuid4().hex[:12],
            kind=kind.name,
            title=title or rendered.summary,
            summary=rendered.summary,
            lines=rendered.lines,
            target=rendered.target,
            confirm=confirm,
            scope=rendered.scope,
            spec=rendered.job,
            **fields,
        )

    # -- plans built in code (sessions table, alert ack) -------------------------------------

    def signal_plan(
        self,
        cluster_name: str,
        pid: int,
        backend_start: float | None,
        signal: Literal["cancel", "terminate"],
        *,
        seen: str = "",
    ) -> Plan:
        """Cancel or terminate one session from the sessions table / lock tree, as it was seen."""
        if backend_start is None:
            raise RenderError(f"pid {pid}: backend_start unknown, so the session cannot be re-checked")
        cluster = self.kinds.find_cluster("{{cluster}}", Context({"cluster": Value(cluster_name)}))
        target = Target(int(pid), float(backend_start), one_line(seen, 120))
        rendered = SIGNAL.one_session(cluster, target, signal)
        return self._plan(
            SIGNAL,
            rendered,
            self._confirm_spec(rendered.dangerous, rendered.word, rendered.summary),
            title=rendered.summary,
            dangerous=rendered.dangerous,
            timeout=max(cluster.statement_timeout, 5.0),
            targets=(target,),
        )

    def silence_plan(self, breach: Breach, duration: float = 3600.0, comment: str = "") -> Plan:
        """Ack a Prometheus alert: a silence on exactly its labels (createdBy = the operator)."""
        if breach.kind != "alert" or not breach.labels:
            raise RenderError("only Prometheus alerts can be acknowledged with a silence")
        # Labels and the comment are data, passed as values: a '{{' in them is never a template.
        values = {f"label{i}": Value(v, trusted=False) for i, (_, v) in enumerate(breach.labels)}
        values["comment"] = Value(comment, trusted=False)
        matchers = {name: f"{{{{label{i}}}}}" for i, (name, _) in enumerate(breach.labels)}
        spec = ActionSpec(silence=SilenceAction(matchers=matchers, duration=duration, comment="{{comment}}"))
        return self.render(spec, Context(values), title=f"ack {breach.title}")

    def expire_silence_plan(self, silence_id: str) -> Plan:
        """Un-ack: expire a silence made by :meth:`silence_plan`."""
        spec = ActionSpec(silence=SilenceAction(expire="{{silence_id}}"))
        ctx = Context({"silence_id": Value(silence_id, trusted=False)})
        return self.render(spec, ctx, title=f"un-ack: expire silence {one_line(silence_id, 60)}")

    # -- preview and dry-run ---------------------------------------------------------------------

    async def preview(self, plan: Plan) -> Plan:
        """The plan with ``preview`` filled in by its kind (and, for a kind that binds targets,
        the sessions it will act on, and the word to type when the plan lets the preview pick
        it). Read-only; allowed in read-only mode. Journals action.requested."""
        found = await kind_named(plan.kind).preview(plan, self.kinds)
        plan = replace(plan, preview=found.preview)
        if found.targets is not None:
            plan = replace(plan, targets=found.targets)
        if plan.confirm.mode is not ConfirmMode.NONE and (found.summary or found.word):
            word = found.word if plan.word_after_preview and found.word else plan.confirm.expected
            summary = found.summary or plan.summary
            plan = replace(plan, summary=summary, confirm=self._confirm_spec(plan.dangerous, word, summary))
        if not plan.check:
            plan = replace(plan, claimed=await self._claimed(plan))
            with contextlib.suppress(JournalError):
                await self.journal.aappend(plan.event(ActionRequested, preview=plan.preview.lines()))
        return plan

    async def _claimed(self, plan: Plan) -> str:
        """What the dialog says about claims: who holds what this plan touches, or how far this
        console's claims reach."""
        try:
            claim = await self.claims.peek(plan.claim_keys())
        except Exception as exc:  # the shared store is down: the execute will say so too
            return f"claims unknown: {one_line(str(exc), 120)}"
        if claim.held:
            return claim.text(self.clock())
        return "" if self.claims.shared else "claims: this machine only (no shared journal configured)"

    async def dry_run(self, plan: Plan) -> Result:
        """Everything but the effect: the preview and a validation of the plan."""
        started = time.monotonic()
        kind = kind_named(plan.kind)
        # What a kind that binds targets would act on is what its preview finds now.
        plan = await self.preview(plan) if plan.preview is None or kind.binds_targets else plan
        problems = await kind.validate(plan, self.kinds)
        if plan.preview is not None and plan.preview.error:
            problems.append(f"preview failed: {plan.preview.error}")
        # What the execute would do, in its words: what it touches, or that there is nothing to do.
        nothing = "" if problems else self._target_problem(plan)
        message = "; ".join(problems) or nothing or f"would run as shown: {plan.summary}"
        found = (
            *(plan.preview.lines() if plan.preview else ()),
            *(f"problem: {p}" for p in problems),
        )
        status = Status.FAILED if problems else Status.DRY_RUN
        events = []
        with contextlib.suppress(JournalError):
            event = plan.event(ActionDryRun, result=str(status), message=message, output=found[:SHOW_LINES])
            events.append(await self.journal.aappend(event))
        return Result(
            plan=plan,
            status=status,
            message=message,
            lines=(*plan.lines, *found),
            duration=time.monotonic() - started,
            events=tuple(events),
        )

    async def decline(self, plan: Plan, message: str = "") -> None:
        """The operator answered No, closed the dialog, or left it open as the console closed."""
        with contextlib.suppress(JournalError):
            await self.journal.aappend(plan.event(ActionDeclined, message=message))

    async def mistyped(self, plan: Plan, typed: str) -> Result:
        """A typed confirmation that does not match: refused and journaled; the dialog stays
        open for another try."""
        return await self.refuse(plan, self.confirmation_problem(plan, Confirmation(yes=True, typed=typed)))

    async def refuse(self, plan: Plan, message: str) -> Result:
        """Refuse a plan with the reason, journaled (action.refused); nothing runs."""
        events = []
        with contextlib.suppress(JournalError):
            events.append(await self.journal.aappend(plan.event(ActionRefused, message=message)))
        return Result(plan=plan, status=Status.REFUSED, message=message, events=tuple(events))

    # -- execution -------------------------------------------------------------------------------

    async def execute(self, plan: Plan, confirmation: Confirmation | None = None) -> Result:
        """Run a plan. Checks need no confirmation; actions go through every rule above."""
        if plan.check:
            return await self.run_check(plan)
        confirmation = confirmation or Confirmation()
        refusal = self.read_only_reason
        if not refusal and self.running is not None:
            waited = format_duration(time.monotonic() - self._running_since)
            return Result(
                plan=plan,
                status=Status.BUSY,
                message=f"busy: '{self.running.title}' is still running ({waited}); this did nothing",
            )
        refusal = refusal or self._target_problem(plan) or self.confirmation_problem(plan, confirmation)
        if refusal:
            return await self.refuse(plan, refusal)
        self.running, self._running_since = plan, time.monotonic()  # set before any await: single flight
        try:
            return await self._claimed_execute(plan, confirmation)
        finally:
            self.running = None

    async def _claimed_execute(self, plan: Plan, confirmation: Confirmation) -> Result:
        """Claim what the plan touches for as long as it runs: another console asking for the
        same target is refused, and told who holds it."""
        keys = plan.claim_keys()
        try:
            claim = await self.claims.claim(keys)
        except Exception as exc:
            return await self.refuse(plan, f"not run: cannot claim the target ({one_line(str(exc), 120)})")
        if claim.held:
            return await self.refuse(plan, f"not run: {claim.text(self.clock())}")
        try:
            scope = plan.claim_scope() if kind_named(plan.kind).last_write_wins else ""
            done = await self.claims.recently_done(keys, scope)
        except Exception:  # what others did is unknown: the claim itself still stands
            done = None
        if done is not None and done.held:
            with contextlib.suppress(Exception):
                await self.claims.release(keys)
            return await self.refuse(plan, f"not run: {done.done_text()}")
        try:
            with contextlib.suppress(JournalError):  # the confirmation's own journal line decides
                await self.journal.aappend(plan.event(ActionClaimed, claims=keys))
            return await self._execute(plan, confirmation)
        finally:
            with contextlib.suppress(Exception):
                await self.claims.release(keys)

    def refusal_before_asking(self, plan: Plan) -> str:
        """Why ``plan`` will be refused whatever the operator answers, known before a dialog
        would ask: read-only, or a signal whose preview found no session or failed (a dialog to
        type the word for "terminate 0 sessions", then a refusal). "" when the operator decides."""
        if self.read_only_reason:
            return self.read_only_reason
        return self._target_problem(plan) if plan.preview is not None else ""

    @staticmethod
    def _target_problem(plan: Plan) -> str:
        if kind_named(plan.kind).binds_targets and not plan.targets:
            if plan.preview is None:
                return "preview first: sessions are signalled only as the operator saw them"
            if plan.preview.error:
                return "not run: the preview failed, so no session is known to signal"
            if plan.preview.nothing:
                return f"nothing to do: {plan.preview.nothing}"
            return "nothing to do: the preview found no sessions"
        return ""

    async def _execute(self, plan: Plan, confirmation: Confirmation) -> Result:
        try:
            confirmed = await self.journal.aappend(
                plan.event(ActionConfirmed, confirmation=confirmation.word)
            )
        except JournalError as exc:
            return Result(plan=plan, status=Status.REFUSED, message=f"not run: {exc}")
        started = time.monotonic()
        try:
            outcome = await self._run(plan)
        except asyncio.CancelledError:
            with contextlib.suppress(JournalError):
                self.journal.append(
                    plan.event(
                        ActionFailed,
                        result="cancelled",
                        duration=time.monotonic() - started,
                        message="the console stopped waiting; the action may have taken effect",
                    )
                )
            raise
        duration = time.monotonic() - started
        ended = ActionSucceeded if outcome.status == Status.SUCCEEDED else ActionFailed
        recorded, message, events = True, outcome.message, [confirmed]
        try:
            events.append(
                await self.journal.aappend(
                    plan.event(
                        ended,
                        result=str(outcome.status),
                        message=outcome.message,
                        output=outcome.lines[:SHOW_LINES],
                        duration=round(duration, 4),
                        data=dict(outcome.data),
                    )
                )
            )
        except JournalError as exc:
            recorded = False
            message = f"{outcome.message} — NOT RECORDED: {exc}"
        return Result(
            plan=plan,
            status=outcome.status,
            message=message,
            lines=outcome.lines,
            duration=duration,
            recorded=recorded,
            data=outcome.data,
            events=tuple(events),
        )

    async def _run(self, plan: Plan) -> Outcome:
        """The plan's kind runs it, within the plan's timeout; whatever it raises is a failure."""
        try:
            async with asyncio.timeout(plan.timeout):
                return await kind_named(plan.kind).run(plan, self.kinds)
        except TimeoutError:
            return Outcome(Status.TIMEOUT, f"timed out after {plan.timeout:g}s (stopped)")
        except Exception as exc:  # a broken backend must not take the console down
            return Outcome(Status.FAILED, failure(exc, plan))

    async def run_check(self, plan: Plan) -> Result:
        """Run a read-only check (no confirmation, allowed in read-only mode) and journal it."""
        if not plan.check:
            raise ValueError("run_check takes a check plan; actions go through execute()")
        key = f"{plan.run}/{plan.step}/{plan.summary}"
        if key in self._checks:
            return Result(
                plan=plan, status=Status.BUSY, message="this check is already running; this did nothing"
            )
        self._checks.add(key)
        started = time.monotonic()
        try:
            outcome = await self._run(plan)
        finally:
            self._checks.discard(key)
        duration = time.monotonic() - started
        status = {Status.SUCCEEDED: Status.PASSED, Status.NOT_MET: Status.NOT_MET}.get(
            outcome.status, Status.FAILED
        )
        events = []
        with contextlib.suppress(JournalError):
            events.append(
                await self.journal.aappend(
                    plan.event(
                        CheckPassed if status == Status.PASSED else CheckFailed,
                        result=str(status),
                        message=outcome.message,
                        output=outcome.lines[:SHOW_LINES],
                        duration=round(duration, 4),
                    )
                )
            )
        return Result(
            plan=plan,
            status=status,
            message=outcome.message,
            lines=outcome.lines,
            duration=duration,
            recorded=bool(events),
            data=outcome.data,
            events=tuple(events),
        )
