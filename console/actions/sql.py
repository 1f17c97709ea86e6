"""Postgres for the SQL kinds (statements, signals, checks): bound parameters shown and coerced,
one short-lived session with a server-side statement_timeout, rows as a table."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from console import redact
from console.actions.plans import PREVIEW_ROWS, Preview, quote_param
from console.actions.specs import Scalar
from console.actions.templates import Context, RenderError, render_text
from console.config import PostgresCluster
from console.pg import classify_error, connect
from console.rules import format_duration
from console.sanitize import one_line


def bind_params(params: Sequence[Scalar], ctx: Context) -> tuple[tuple[Scalar, ...], list[str]]:
    """The parameters rendered: (the real values, the plan's lines showing them, masked)."""
    real: list[Scalar] = []
    shown: list[str] = []
    for i, param in enumerate(params, 1):
        if isinstance(param, str):
            value, display = render_text(param, ctx)
            real.append(value)
            shown.append(f"  ${i} = {quote_param(value, display)}")
        else:
            real.append(param)
            shown.append(f"  ${i} = {quote_param(param)}")
    return tuple(real), shown


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


async def prepared_run(
    conn: asyncpg.Connection, statement: str, params: Sequence[Scalar], timeout: float
) -> tuple[list[asyncpg.Record], tuple[str, ...], str]:
    """Rows, column names and command status ("UPDATE 3", "ALTER SYSTEM") of ``statement``, its
    parameters coerced to the types it takes."""
    prepared = await conn.prepare(statement)
    types = [t.name for t in prepared.get_parameters()]
    if len(types) != len(params):
        raise RenderError(f"the statement takes {len(types)} parameters, the spec gives {len(params)}")
    rows = await prepared.fetch(*(_coerce(v, t) for v, t in zip(params, types, strict=True)), timeout=timeout)
    return rows, tuple(a.name for a in prepared.get_attributes()), prepared.get_statusmsg() or ""


async def prepared_fetch(
    conn: asyncpg.Connection, statement: str, params: Sequence[Scalar], timeout: float
) -> tuple[list[asyncpg.Record], tuple[str, ...]]:
    """Rows and column names of ``statement`` (see ``prepared_run``)."""
    rows, columns, _ = await prepared_run(conn, statement, params, timeout)
    return rows, columns


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, timedelta):
        return format_duration(value.total_seconds())
    if value is None:
        return "NULL"
    if isinstance(value, float) and abs(value) < 1e6:  # six digits, as values read elsewhere; not an epoch
        return f"{value:.6g}"
    return one_line(redact.scrub(str(value)), 120)


def table(rows: Sequence[asyncpg.Record], columns: Sequence[str], limit: int = PREVIEW_ROWS) -> Preview:
    """Rows as sanitised text, at most ``limit`` of them."""
    shown = tuple(tuple(_cell(v) for v in row.values()) for row in rows[:limit])
    return Preview(tuple(one_line(c, 60) for c in columns), shown, truncated=len(rows) > limit)


@contextlib.asynccontextmanager
async def session(
    cluster: PostgresCluster, timeout: float, purpose: str
) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own for one plan, closed (or terminated) after."""
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


async def read_only_query(
    cluster: PostgresCluster, statement: str, params: Sequence[Scalar], timeout: float
) -> tuple[list[asyncpg.Record], tuple[str, ...]]:
    """``statement`` in a READ ONLY transaction of its own session."""
    async with session(cluster, timeout, "check") as conn, conn.transaction(readonly=True):
        return await prepared_fetch(conn, statement, params, timeout)


async def prepare_problems(
    cluster: PostgresCluster, statement: str, params: Sequence[Scalar], timeout: float
) -> list[str]:
    """A dry-run of SQL: the statement parses and plans (nothing runs) and takes as many
    parameters as the spec gives."""
    try:
        async with session(cluster, timeout, "check") as conn:
            prepared = await conn.prepare(statement)  # parses and plans; runs nothing
            count = len(prepared.get_parameters())
    except Exception as exc:
        return [f"the statement does not prepare: {reason(exc, cluster)}"]
    given = len(params)
    return [] if count == given else [f"the statement takes {count} parameters, the spec gives {given}"]


def reason(exc: BaseException, cluster: PostgresCluster | None = None) -> str:
    """One line for why a preview or a validation failed."""
    if isinstance(exc, RenderError):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError | TimeoutError):
        return str(classify_error(exc, cluster))
    return one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200)
