"""``action: {sql: ...}``: one SQL statement on a configured cluster, every value a bound
parameter, in a transaction unless told; an optional read-only preview query lists what it will
touch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from console import redact
from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import SHOW_LINES, Outcome, Plan, Preview, Status, statement_lines
from console.actions.specs import ActionSpec, Scalar, Spec, SqlText
from console.actions.sql import (
    bind_params,
    prepare_problems,
    prepared_run,
    read_only_query,
    reason,
    session,
    table,
)
from console.actions.templates import Context
from console.config import PostgresCluster
from console.sanitize import one_line


class SqlPreview(Spec):
    statement: SqlText
    params: list[Scalar] = Field(default_factory=list)


class SqlAction(Spec):
    cluster: str = "{{cluster}}"
    statement: SqlText
    params: list[Scalar] = Field(default_factory=list)
    preview: SqlPreview | None = None  # read-only query listing what the statement will touch
    transaction: bool = True  # false for statements that cannot run in one (ALTER SYSTEM...)


class SqlActionSpec(ActionSpec):
    kind: ClassVar[str] = "sql"
    sql: SqlAction


@dataclass(frozen=True, slots=True)
class _Statement:
    cluster: PostgresCluster
    statement: str
    params: tuple[Scalar, ...]
    preview: tuple[str, tuple[Scalar, ...]] | None
    transaction: bool


class SqlStatementKind:
    name = "sql"
    key = "sql"
    spec = SqlActionSpec
    binds_targets = False
    last_write_wins = False

    def render(self, spec: SqlActionSpec, ctx: Context, env: KindContext) -> Rendered:
        sql = spec.sql
        cluster = env.find_cluster(sql.cluster, ctx)
        params, shown = bind_params(sql.params, ctx)
        lines = [
            f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
            *statement_lines(sql.statement),
        ]
        lines += ["bound parameters:", *shown] if shown else []
        preview = None
        if sql.preview is not None:
            preview = (sql.preview.statement, bind_params(sql.preview.params, ctx)[0])
        # Its bound values are part of what a statement does (a claim is keyed by the summary).
        values = f" [{one_line(', '.join(line.strip() for line in shown), 60)}]" if shown else ""
        return Rendered(
            summary=f"SQL on {cluster.name}: {one_line(sql.statement, 80)}{values}",
            lines=tuple(lines),
            target=f"postgres cluster {cluster.name}",
            job=_Statement(cluster, sql.statement, params, preview, sql.transaction),
            word=cluster.name,
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        job: _Statement = plan.spec
        if job.preview is None:
            return touches(plan)
        try:
            rows, columns = await read_only_query(job.cluster, *job.preview, plan.timeout)
        except Exception as exc:
            return Previewed(Preview(error=reason(exc, job.cluster)))
        return Previewed(table(rows, columns))

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        job: _Statement = plan.spec
        return await prepare_problems(job.cluster, job.statement, job.params, plan.timeout)

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        job: _Statement = plan.spec
        async with session(job.cluster, plan.timeout, "action") as conn:
            if job.transaction:
                async with conn.transaction():
                    rows, columns, status = await prepared_run(conn, job.statement, job.params, plan.timeout)
            else:
                rows, columns, status = await prepared_run(conn, job.statement, job.params, plan.timeout)
        if not columns:  # no rows to count: the server's own word ("UPDATE 12", "ALTER SYSTEM")
            return Outcome(Status.SUCCEEDED, f"done: {one_line(status, 60) or 'no rows'}")
        shown = table(rows, columns, SHOW_LINES)
        return Outcome(
            Status.SUCCEEDED, f"done: {len(rows)} row{'s' if len(rows) != 1 else ''}", shown.lines()
        )
