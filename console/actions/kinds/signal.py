"""``action: {signal: ...}``: cancel or terminate the sessions a read-only ``select`` lists, or
one session picked in the sessions table. The preview binds the sessions it showed (pid and
backend_start); only those are signalled, and only if they are still the same sessions, checked
in the statement that signals them. A runbook's signal also runs its ``select`` again in that
statement: a bound session the select no longer returns (it turned active, it is no longer that
old, ...) is not signalled (docs/ARCHITECTURE.md, Runbooks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from console import redact
from console.actions.kind import KindContext, Previewed, Rendered
from console.actions.plans import Outcome, Plan, Preview, Status, Target, statement_lines
from console.actions.specs import ActionSpec, Scalar, Spec, SqlText
from console.actions.sql import (
    bind_params,
    prepare_problems,
    prepared_fetch,
    read_only_query,
    reason,
    session,
    table,
)
from console.actions.templates import Context
from console.config import PostgresCluster
from console.journal import utc_iso
from console.pg import console_pids


class SignalAction(Spec):
    """Cancel or terminate the sessions a read-only ``select`` lists (it must return ``pid``
    and ``backend_start``). Only the sessions the preview showed are signalled, and only if
    they are still the same sessions."""

    cluster: str = "{{cluster}}"
    signal: Literal["cancel", "terminate"]
    select: SqlText
    params: list[Scalar] = Field(default_factory=list)


class SignalActionSpec(ActionSpec):
    kind: ClassVar[str] = "signal"
    signal: SignalAction


@dataclass(frozen=True, slots=True)
class _Signal:
    cluster: PostgresCluster
    signal: str
    select: str | None  # None: one session picked in the table, bound as the plan's target
    params: tuple[Scalar, ...]


# One statement re-checks and signals: a pid that now belongs to another session (or to no
# session, or to this one) is not signalled. Half a microsecond of slack: epoch floats.
_SIGNAL_SQL = """
SELECT t.pid,
       a.pid IS NOT NULL AS same_session,
       CASE WHEN a.pid IS NULL THEN NULL
            WHEN $3::text = 'terminate' THEN pg_catalog.pg_terminate_backend(a.pid)
            ELSE pg_catalog.pg_cancel_backend(a.pid) END AS signalled
FROM unnest($1::int[], $2::float8[]) AS t(pid, backend_start)
LEFT JOIN pg_catalog.pg_stat_activity a
       ON a.pid = t.pid
      AND abs(extract(epoch FROM a.backend_start)::float8 - t.backend_start) < 0.0000005
      AND a.pid <> pg_catalog.pg_backend_pid()
ORDER BY t.pid
"""


# The preview of one session picked in the table: is that pid still that session?
_PRESENT_SQL = """
SELECT a.pid FROM pg_catalog.pg_stat_activity a
WHERE a.pid = $1::int AND abs(extract(epoch FROM a.backend_start)::float8 - $2::float8) < 0.0000005
"""


# A runbook's signal: the same, and the sessions its select returns now, in the same statement
# (one snapshot of pg_stat_activity), so its whole predicate is evaluated again where it signals.
# {n}: the select's own parameters come first ($1..$n).
_SELECTED_SQL = """
WITH selected AS (
{select}
)
SELECT t.pid,
       a.pid IS NOT NULL AS same_session,
       s.pid IS NOT NULL AS still_selected,
       CASE WHEN a.pid IS NULL OR s.pid IS NULL THEN NULL
            WHEN ${signal}::text = 'terminate' THEN pg_catalog.pg_terminate_backend(a.pid)
            ELSE pg_catalog.pg_cancel_backend(a.pid) END AS signalled
FROM unnest(${pids}::int[], ${starts}::float8[]) AS t(pid, backend_start)
LEFT JOIN pg_catalog.pg_stat_activity a
       ON a.pid = t.pid
      AND abs(extract(epoch FROM a.backend_start)::float8 - t.backend_start) < 0.0000005
      AND a.pid <> pg_catalog.pg_backend_pid()
LEFT JOIN (SELECT DISTINCT pid, extract(epoch FROM backend_start)::float8 AS started FROM selected) s
       ON s.pid = t.pid
      AND abs(s.started - t.backend_start) < 0.0000005
ORDER BY t.pid
"""


def signal_statement(select: str | None, params: int) -> str:
    """The statement that signals: for a runbook's ``select`` (taking ``params`` parameters),
    one that runs it again and signals only the bound sessions it still returns."""
    if select is None:
        return _SIGNAL_SQL
    body = select.strip().rstrip(";").rstrip()
    return _SELECTED_SQL.format(select=body, pids=params + 1, starts=params + 2, signal=params + 3)


def _verb(signal: str) -> str:
    return "terminate" if signal == "terminate" else "cancel the query of"


class SignalKind:
    name = "signal"
    key = "signal"
    spec = SignalActionSpec
    binds_targets = True
    last_write_wins = False

    def render(self, spec: SignalActionSpec, ctx: Context, env: KindContext) -> Rendered:
        sig = spec.signal
        cluster = env.find_cluster(sig.cluster, ctx)
        params, shown = bind_params(sig.params, ctx)
        lines = [
            f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
            f"{_verb(sig.signal)} each session listed by:",
            *statement_lines(sig.select),
            *(["bound parameters:", *shown] if shown else []),
            "only sessions the preview listed are signalled, if the select still returns them (same pid "
            "and backend_start), checked again in the statement that signals",
        ]
        return Rendered(
            summary=f"{sig.signal} sessions on {cluster.name}",
            lines=tuple(lines),
            target=f"postgres cluster {cluster.name}",
            job=_Signal(cluster, sig.signal, sig.select, params),
            word=cluster.name,
            dangerous=sig.signal == "terminate",
            scope=f"postgres:{cluster.name}",
        )

    def one_session(self, cluster: PostgresCluster, target: Target, signal: str) -> Rendered:
        """One session from the sessions table or the lock tree, as the operator saw it (the
        plan's target; the word to type is its pid)."""
        lines = (
            f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
            f"{_verb(signal)} pid {target.pid} (backend started {utc_iso(target.backend_start)})"
            + (f": {target.label}" if target.label else ""),
            f"SELECT pg_{'terminate' if signal == 'terminate' else 'cancel'}_backend(pid) only if pid "
            f"{target.pid} still has that backend_start",
        )
        summary = f"{signal} pid {target.pid} on {cluster.name}"
        return Rendered(
            summary=summary,
            lines=lines,
            target=f"pid {target.pid} on postgres cluster {cluster.name}",
            job=_Signal(cluster, signal, None, ()),
            word=str(target.pid),
            dangerous=signal == "terminate",
            scope=f"postgres:{cluster.name}",
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        job: _Signal = plan.spec
        if job.select is None:  # a session picked in the table: show it again, bound as it was seen
            target = plan.targets[0]
            note = f"pid {target.pid}, backend started {utc_iso(target.backend_start)}" + (
                f": {target.label}" if target.label else ""
            )
            # Still that session? (The screen may be paused, or older than the session.) Gone: no
            # target, so nothing asks to type its pid for nothing. The statement that signals
            # checks again either way.
            try:
                rows, _ = await read_only_query(
                    job.cluster, _PRESENT_SQL, (target.pid, target.backend_start), plan.timeout
                )
            except Exception as exc:
                return Previewed(Preview(note=f"{note} (not checked again: {reason(exc, job.cluster)})"))
            if not rows:
                gone = f"pid {target.pid} is no longer the session you saw (it ended, or the pid was reused)"
                return Previewed(Preview(nothing=gone), targets=())
            return Previewed(Preview(note=note))
        try:
            rows, columns = await read_only_query(job.cluster, job.select, job.params, plan.timeout)
        except Exception as exc:
            return Previewed(Preview(error=reason(exc, job.cluster)), targets=())
        if "pid" not in columns or "backend_start" not in columns:
            error = "the select must return the columns pid and backend_start"
            return Previewed(Preview(error=error), targets=())
        own = console_pids(job.cluster)
        targets, kept = [], []
        for row in rows:
            pid, started = row["pid"], _epoch(row["backend_start"])
            if isinstance(pid, int) and started is not None and pid not in own:
                targets.append(Target(pid, started))
                kept.append(row)
        count = f"{len(targets)} session{'s' if len(targets) != 1 else ''}"
        summary = f"{job.signal} {count} on {job.cluster.name}" + (
            f" (pid {targets[0].pid})" if len(targets) == 1 else ""
        )
        return Previewed(
            table(kept, columns),
            targets=tuple(targets),
            word=str(targets[0].pid) if len(targets) == 1 else job.cluster.name,
            summary=summary,
        )

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        job: _Signal = plan.spec
        if job.select is None:
            return await prepare_problems(job.cluster, _SIGNAL_SQL, ("", "", ""), plan.timeout)
        problems = await prepare_problems(job.cluster, job.select, job.params, plan.timeout)
        if problems:
            return problems
        statement = signal_statement(job.select, len(job.params))  # the select inside the signal
        return await prepare_problems(job.cluster, statement, (*job.params, "", "", ""), plan.timeout)

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        job: _Signal = plan.spec
        pids = [t.pid for t in plan.targets]
        starts = [t.backend_start for t in plan.targets]
        async with session(job.cluster, plan.timeout, "action") as conn:
            if job.select is None:
                rows = await conn.fetch(_SIGNAL_SQL, pids, starts, job.signal, timeout=plan.timeout)
            else:  # read-only: the runbook's select can change nothing; signalling is no write
                statement = signal_statement(job.select, len(job.params))
                async with conn.transaction(readonly=True):
                    rows, _ = await prepared_fetch(
                        conn, statement, (*job.params, pids, starts, job.signal), plan.timeout
                    )
        done = [r["pid"] for r in rows if r["signalled"]]
        stale = [r["pid"] for r in rows if not r["same_session"]]
        moved = [r["pid"] for r in rows if r["same_session"] and not r.get("still_selected", True)]
        unsent = [
            r["pid"] for r in rows if r["same_session"] and r["pid"] not in moved and not r["signalled"]
        ]
        verb = "terminated" if job.signal == "terminate" else "cancelled the query of"
        # What did not happen first: at 80x24, and in the journal (which keeps SHOW_LINES of
        # them), 36 "terminated pid N" lines had pushed the one skipped session out of sight.
        lines = [
            f"skipped pid {pid}: no longer the session you saw (it ended, or the pid was reused)"
            for pid in stale
        ]
        lines += [
            f"skipped pid {pid}: the select no longer lists it (its state, age or query changed since the preview)"
            for pid in moved
        ]
        lines += [f"pid {pid}: the server did not signal it" for pid in unsent]
        if len(done) > PIDS_LISTED:
            lines.append(f"{verb} {len(done)} sessions: pid {', '.join(map(str, done))}")
        else:
            lines += [f"{verb} pid {pid}" for pid in done]
        skipped = stale + moved
        if done:
            count = f"; {len(skipped) + len(unsent)} skipped" if skipped or unsent else ""
            return Outcome(
                Status.SUCCEEDED, f"{verb} {_pids(done)}{count}", tuple(lines), {"signalled": done}
            )
        if skipped and not unsent:
            why = [
                *([f"{_pids(stale)} no longer the session you saw"] if stale else []),
                *([f"{_pids(moved)} no longer listed by the select"] if moved else []),
            ]
            return Outcome(Status.REFUSED, f"nothing signalled: {'; '.join(why)}", tuple(lines))
        return Outcome(Status.FAILED, f"nothing signalled: {_pids(unsent or skipped)}", tuple(lines))


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


PIDS_LISTED = 5  # up to this many pids are named in a message and get a result line each


def _pids(pids: Sequence[int]) -> str:
    return "pid " + ", ".join(map(str, pids)) if len(pids) <= PIDS_LISTED else f"{len(pids)} sessions"
