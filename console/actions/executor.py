"""The Executor: renders specs into plans, previews, dry-runs and executes them under the rules
of :mod:`console.actions`."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Literal

import asyncpg
import httpx

from console import redact
from console.actions.argv import _run_argv, _validate_argv
from console.actions.httpcall import _preview_silence, _run_http, _run_promql, _run_silence, _validate_http
from console.actions.plans import (
    SHOW_LINES,
    Confirmation,
    ConfirmMode,
    ConfirmSpec,
    Plan,
    Preview,
    Result,
    Status,
    Target,
    _Argv,
    _Http,
    _Outcome,
    _Prom,
    _Rendered,
    _Signal,
    _Silence,
    _Sql,
)
from console.actions.render import _ACTION_RENDERERS, _CHECK_RENDERERS, find_cluster
from console.actions.specs import (
    ActionSpec,
    CheckSpec,
    SilenceAction,
)
from console.actions.sql import _preview_signal, _preview_sql, _run_signal, _run_sql, _validate_sql
from console.actions.templates import Context, RenderError, Value, render_text
from console.config import Config
from console.journal import (
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
    utc_iso,
)
from console.pg import classify_error
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
    ) -> None:
        self.config = config
        self.journal = journal
        self.operator = journal.operator
        self.mode = mode
        self.clock = clock
        self._read_only_flag = read_only
        self.running: Plan | None = None
        self._running_since = 0.0
        self._checks: set[str] = set()

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
        return ConfirmSpec(ConfirmMode.YES_NO, "", f"Run {summary}? [y/N]")

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
        check = isinstance(spec, CheckSpec)
        renderer = (_CHECK_RENDERERS if check else _ACTION_RENDERERS)[spec.kind]
        rendered: _Rendered = renderer(self, getattr(spec, spec.kind), spec, ctx)
        dangerous = (
            False
            if check
            else spec.dangerous or (spec.kind == "signal" and spec.signal.signal == "terminate")
        )
        word = rendered.word
        if not check and spec.confirm:
            real, shown = render_text(spec.confirm, ctx)
            if real != shown:
                raise RenderError("the confirmation word cannot be a secret")
            word = real
        confirm = (
            ConfirmSpec(ConfirmMode.NONE) if check else self._confirm_spec(dangerous, word, rendered.summary)
        )
        spec_exec = rendered.spec
        if isinstance(spec_exec, _Signal) and not check and spec.confirm:
            spec_exec = replace(spec_exec, confirm_override=True)
        return Plan(
            id=uuid.uuid4().hex[:12],
            kind=rendered.kind,
            title=title or rendered.summary,
            summary=rendered.summary,
            lines=rendered.lines,
            target=rendered.target,
            confirm=confirm,
            dangerous=dangerous,
            timeout=float(spec.timeout),
            check=check,
            runbook=runbook,
            run=run,
            step=step,
            spec=spec_exec,
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
        ctx = Context({"cluster": Value(cluster_name)})
        cluster = find_cluster(self, "{{cluster}}", ctx)
        verb = "terminate" if signal == "terminate" else "cancel the query of"
        target = Target(int(pid), float(backend_start), one_line(seen, 120))
        lines = (
            f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
            f"{verb} pid {pid} (backend started {utc_iso(backend_start)})"
            + (f": {target.label}" if seen else ""),
            f"SELECT pg_{'terminate' if signal == 'terminate' else 'cancel'}_backend(pid) only if pid {pid} "
            "still has that backend_start",
        )
        summary = f"{signal} pid {pid} on {cluster.name}"
        dangerous = signal == "terminate"
        return Plan(
            id=uuid.uuid4().hex[:12],
            kind="signal",
            title=summary,
            summary=summary,
            lines=lines,
            target=f"pid {pid} on postgres cluster {cluster.name}",
            confirm=self._confirm_spec(dangerous, str(pid), summary),
            dangerous=dangerous,
            timeout=max(cluster.statement_timeout, 5.0),
            targets=(target,),
            spec=_Signal(cluster, signal, None, ()),
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
        """The plan with ``preview`` filled in (and, for signals, the sessions it will act on
        bound as ``targets``). Read-only; allowed in read-only mode. Journals action.requested."""
        previewer = _PREVIEWERS.get(type(plan.spec))
        plan = (
            await previewer(self, plan)
            if previewer
            else replace(plan, preview=Preview(note=f"touches: {plan.target}"))
        )
        if not plan.check:
            with contextlib.suppress(JournalError):
                await self.journal.aappend(plan.event(ActionRequested, preview=plan.preview.lines()))
        return plan

    async def dry_run(self, plan: Plan) -> Result:
        """Everything but the effect: the preview and a validation of the plan."""
        started = time.monotonic()
        plan = await self.preview(plan) if plan.preview is None or plan.kind == "signal" else plan
        validator = _VALIDATORS.get(type(plan.spec))
        problems = await validator(self, plan) if validator else []
        if plan.preview is not None and plan.preview.error:
            problems.append(f"preview failed: {plan.preview.error}")
        message = "; ".join(problems) if problems else "would run as shown"
        lines = (
            *plan.lines,
            *(plan.preview.lines() if plan.preview else ()),
            *(f"problem: {p}" for p in problems),
        )
        status = Status.FAILED if problems else Status.DRY_RUN
        events = []
        with contextlib.suppress(JournalError):
            events.append(
                await self.journal.aappend(plan.event(ActionDryRun, result=str(status), message=message))
            )
        return Result(
            plan=plan,
            status=status,
            message=message,
            lines=lines,
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
        return await self._refuse(plan, self.confirmation_problem(plan, Confirmation(yes=True, typed=typed)))

    async def _refuse(self, plan: Plan, message: str) -> Result:
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
        refusal = refusal or self.confirmation_problem(plan, confirmation) or self._target_problem(plan)
        if refusal:
            return await self._refuse(plan, refusal)
        self.running, self._running_since = plan, time.monotonic()  # set before any await: single flight
        try:
            return await self._execute(plan, confirmation)
        finally:
            self.running = None

    @staticmethod
    def _target_problem(plan: Plan) -> str:
        if isinstance(plan.spec, _Signal) and not plan.targets:
            if plan.preview is None:
                return "preview first: sessions are signalled only as the operator saw them"
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

    async def _run(self, plan: Plan) -> _Outcome:
        runner = _RUNNERS[type(plan.spec)]
        try:
            async with asyncio.timeout(plan.timeout):
                return await runner(self, plan)
        except TimeoutError:
            return _Outcome(Status.TIMEOUT, f"timed out after {plan.timeout:g}s (stopped)")
        except RenderError as exc:
            return _Outcome(Status.FAILED, str(exc))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            cluster = getattr(plan.spec, "cluster", None)
            return _Outcome(Status.FAILED, str(classify_error(exc, cluster)))
        except httpx.HTTPError as exc:
            return _Outcome(Status.FAILED, one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200))
        except Exception as exc:  # a broken backend must not take the console down
            return _Outcome(Status.FAILED, one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200))

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
        status = Status.PASSED if outcome.status == Status.SUCCEEDED else Status.FAILED
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


# --- dispatch tables ----------------------------------------------------------------------------------

_RUNNERS: dict[type, Callable[[Executor, Plan], Awaitable[_Outcome]]] = {
    _Sql: _run_sql,
    _Signal: _run_signal,
    _Http: _run_http,
    _Argv: _run_argv,
    _Silence: _run_silence,
    _Prom: _run_promql,
}
_PREVIEWERS: dict[type, Callable[[Executor, Plan], Awaitable[Plan]]] = {
    _Signal: _preview_signal,
    _Sql: _preview_sql,
    _Silence: _preview_silence,
}
_VALIDATORS: dict[type, Callable[[Executor, Plan], Awaitable[list[str]]]] = {
    _Sql: _validate_sql,
    _Signal: _validate_sql,
    _Http: _validate_http,
    _Argv: _validate_argv,
}
