"""SQL actions and checks, session signals (pid and backend_start re-checked in the statement
that signals), previews and validation: every value a bound parameter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import asyncpg

from console import redact
from console.actions.expect import _first_column, _judge, _Observed
from console.actions.plans import (
    PREVIEW_ROWS,
    SHOW_LINES,
    Plan,
    Preview,
    Status,
    Target,
    _Outcome,
    _Signal,
    _Sql,
)
from console.actions.specs import Expect, Scalar
from console.actions.templates import RenderError
from console.config import PostgresCluster
from console.journal import utc_iso
from console.pg import classify_error, connect, console_pids
from console.rules import format_duration
from console.sanitize import one_line

if TYPE_CHECKING:
    from console.actions.executor import Executor


# --- SQL ------------------------------------------------------------------------------------------

_INT_TYPES = {"int2", "int4", "int8", "oid"}


def _to_datetime(value: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))


_COERCE: dict[str, Callable[[str], Any]] = {
    **{name: int for name in _INT_TYPES},
    "float4": float,
    "float8": float,
    "numeric": Decimal,
    "bool": lambda v: v.strip().lower() in ("true", "t", "yes", "y", "on", "1"),
    "timestamptz": _to_datetime,
    "timestamp": lambda v: _to_datetime(v).replace(tzinfo=None),
    "interval": lambda v: timedelta(seconds=float(v)),
}


def _coerce(value: Scalar, type_name: str) -> Any:
    """A rendered parameter as the Python value asyncpg wants for the parameter's type."""
    convert = _COERCE.get(type_name)
    if convert is None or not isinstance(value, str):
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and type_name in ("text", "varchar")
        ):
            return str(value)
        return value
    if value.strip() == "":
        return None
    try:
        return convert(value)
    except (ValueError, InvalidOperation, OverflowError):
        raise RenderError(f"parameter '{one_line(value, 40)}' is not a valid {type_name}") from None


async def _prepared_fetch(
    conn: asyncpg.Connection, statement: str, params: Sequence[Scalar], timeout: float
) -> tuple[list[asyncpg.Record], tuple[str, ...]]:
    prepared = await conn.prepare(statement)
    types = [t.name for t in prepared.get_parameters()]
    if len(types) != len(params):
        raise RenderError(f"the statement takes {len(types)} parameters, the spec gives {len(params)}")
    rows = await prepared.fetch(*(_coerce(v, t) for v, t in zip(params, types, strict=True)), timeout=timeout)
    return rows, tuple(a.name for a in prepared.get_attributes())


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, timedelta):
        return format_duration(value.total_seconds())
    if value is None:
        return "NULL"
    return one_line(redact.scrub(str(value)), 120)


def _table(rows: Sequence[asyncpg.Record], columns: Sequence[str], limit: int = PREVIEW_ROWS) -> Preview:
    shown = tuple(tuple(_cell(v) for v in row.values()) for row in rows[:limit])
    return Preview(tuple(one_line(c, 60) for c in columns), shown, truncated=len(rows) > limit)


@contextlib.asynccontextmanager
async def _session(cluster: PostgresCluster, timeout: float, purpose: str):
    conn = await connect(cluster, purpose=purpose)
    try:
        # Server-side limit as well: a cancelled client must not leave the statement running.
        await conn.execute(
            "SELECT pg_catalog.set_config('statement_timeout', $1, false)", f"{max(1, int(timeout * 1000))}ms"
        )
        yield conn
    finally:
        conn.terminate() if conn.is_in_transaction() else await _close(conn)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except (Exception, asyncio.CancelledError):
        conn.terminate()


async def _read_only_query(
    cluster: PostgresCluster, statement: str, params: Sequence[Scalar], timeout: float
) -> tuple[list[asyncpg.Record], tuple[str, ...]]:
    async with _session(cluster, timeout, "check") as conn, conn.transaction(readonly=True):
        return await _prepared_fetch(conn, statement, params, timeout)


async def _run_sql(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Sql = plan.spec
    if spec.read_only:
        rows, columns = await _read_only_query(spec.cluster, spec.statement, spec.params, plan.timeout)
        return _judge(
            spec.expect or Expect(),
            _Observed(rows=len(rows), values=_first_column(rows)),
            _table(rows, columns),
        )
    async with _session(spec.cluster, plan.timeout, "action") as conn:
        if spec.transaction:
            async with conn.transaction():
                rows, columns = await _prepared_fetch(conn, spec.statement, spec.params, plan.timeout)
        else:
            rows, columns = await _prepared_fetch(conn, spec.statement, spec.params, plan.timeout)
    table = _table(rows, columns, SHOW_LINES)
    return _Outcome(
        Status.SUCCEEDED,
        f"done: {len(rows)} row{'s' if len(rows) != 1 else ''}",
        table.lines() if columns else (),
    )


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


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


async def _preview_signal(executor: Executor, plan: Plan) -> Plan:
    spec: _Signal = plan.spec
    if spec.select is None:  # a session picked in the table: show it again, bound as it was seen
        target = plan.targets[0]
        note = f"pid {target.pid}, backend started {utc_iso(target.backend_start)}" + (
            f": {target.label}" if target.label else ""
        )
        return replace(plan, preview=Preview(note=note))
    try:
        rows, columns = await _read_only_query(spec.cluster, spec.select, spec.params, plan.timeout)
    except Exception as exc:
        return replace(plan, preview=Preview(error=_reason(exc, spec.cluster)), targets=())
    if "pid" not in columns or "backend_start" not in columns:
        return replace(
            plan,
            preview=Preview(error="the select must return the columns pid and backend_start"),
            targets=(),
        )
    own = console_pids(spec.cluster)
    targets, kept = [], []
    for row in rows:
        pid, started = row["pid"], _epoch(row["backend_start"])
        if isinstance(pid, int) and started is not None and pid not in own:
            targets.append(Target(pid, started))
            kept.append(row)
    preview = _table(kept, columns)
    word = plan.confirm.expected
    if not spec.confirm_override:
        word = str(targets[0].pid) if len(targets) == 1 else spec.cluster.name
    count = f"{len(targets)} session{'s' if len(targets) != 1 else ''}"
    summary = f"{spec.signal} {count} on {spec.cluster.name}" + (
        f" (pid {targets[0].pid})" if len(targets) == 1 else ""
    )
    confirm = executor._confirm_spec(plan.dangerous, word, summary)
    return replace(plan, preview=preview, targets=tuple(targets), confirm=confirm, summary=summary)


async def _preview_sql(executor: Executor, plan: Plan) -> Plan:
    spec: _Sql = plan.spec
    if spec.preview is None:
        return replace(plan, preview=Preview(note=f"touches: {plan.target}"))
    try:
        rows, columns = await _read_only_query(spec.cluster, spec.preview[0], spec.preview[1], plan.timeout)
    except Exception as exc:
        return replace(plan, preview=Preview(error=_reason(exc, spec.cluster)))
    return replace(plan, preview=_table(rows, columns))


async def _run_signal(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Signal = plan.spec
    pids = [t.pid for t in plan.targets]
    starts = [t.backend_start for t in plan.targets]
    async with _session(spec.cluster, plan.timeout, "action") as conn:
        rows = await conn.fetch(_SIGNAL_SQL, pids, starts, spec.signal, timeout=plan.timeout)
    done = [r["pid"] for r in rows if r["signalled"]]
    stale = [r["pid"] for r in rows if not r["same_session"]]
    unsent = [r["pid"] for r in rows if r["same_session"] and not r["signalled"]]
    verb = "terminated" if spec.signal == "terminate" else "cancelled the query of"
    lines = [f"{verb} pid {pid}" for pid in done]
    lines += [
        f"skipped pid {pid}: no longer the session you saw (it ended, or the pid was reused)" for pid in stale
    ]
    lines += [f"pid {pid}: the server did not signal it" for pid in unsent]
    if done:
        return _Outcome(
            Status.SUCCEEDED,
            f"{verb} {_pids(done)}" + (f"; {len(stale) + len(unsent)} skipped" if stale or unsent else ""),
            tuple(lines),
            {"signalled": done},
        )
    if stale and not unsent:
        return _Outcome(
            Status.REFUSED, f"nothing signalled: {_pids(stale)} no longer the session you saw", tuple(lines)
        )
    return _Outcome(Status.FAILED, f"nothing signalled: {_pids(unsent or stale)}", tuple(lines))


def _pids(pids: Sequence[int]) -> str:
    return "pid " + ", ".join(map(str, pids)) if len(pids) <= 5 else f"{len(pids)} sessions"


async def _validate_sql(executor: Executor, plan: Plan) -> list[str]:
    spec = plan.spec
    statement = spec.statement if isinstance(spec, _Sql) else (spec.select or _SIGNAL_SQL)
    try:
        async with _session(spec.cluster, plan.timeout, "check") as conn:
            prepared = await conn.prepare(statement)  # parses and plans; runs nothing
            count = len(prepared.get_parameters())
    except Exception as exc:
        return [f"the statement does not prepare: {_reason(exc, spec.cluster)}"]
    given = len(spec.params)
    return [] if count == given else [f"the statement takes {count} parameters, the spec gives {given}"]


def _reason(exc: BaseException, cluster: PostgresCluster | None = None) -> str:
    if isinstance(exc, RenderError):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError | TimeoutError):
        return str(classify_error(exc, cluster))
    return one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200)
