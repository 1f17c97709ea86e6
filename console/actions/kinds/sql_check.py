"""``check: {sql: ...}``: a query in a READ ONLY transaction; its rows judged by ``expect``
(rows, and the values of the first column)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from console.actions.expect import Observed, first_column, judge
from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import Outcome, Plan, statement_lines
from console.actions.specs import CheckSpec, Expect, Scalar, Spec, SqlText
from console.actions.sql import bind_params, prepare_problems, read_only_query, table
from console.actions.templates import Context
from console.config import PostgresCluster
from console.sanitize import one_line


class SqlQuery(Spec):
    cluster: str = "{{cluster}}"
    statement: SqlText
    params: list[Scalar] = Field(default_factory=list)


class SqlCheckSpec(CheckSpec):
    kind: ClassVar[str] = "sql"
    sql: SqlQuery


@dataclass(frozen=True, slots=True)
class _Query:
    cluster: PostgresCluster
    statement: str
    params: tuple[Scalar, ...]
    expect: Expect


class SqlCheckKind:
    name = "sql check"
    key = "sql"
    spec = SqlCheckSpec
    binds_targets = False
    last_write_wins = False

    def render(self, spec: SqlCheckSpec, ctx: Context, env: KindContext) -> Rendered:
        sql = spec.sql
        cluster = env.find_cluster(sql.cluster, ctx)
        params, shown = bind_params(sql.params, ctx)
        lines = [f"postgres cluster {cluster.name}, read-only", *statement_lines(sql.statement)]
        lines += ["bound parameters:", *shown] if shown else []
        return Rendered(
            summary=f"SQL on {cluster.name}: {one_line(sql.statement, 80)}",
            lines=tuple(lines),
            target=f"postgres cluster {cluster.name}",
            job=_Query(cluster, sql.statement, params, env.resolve_expect(spec.expect, ctx)),
            word=cluster.name,
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        return touches(plan)

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        job: _Query = plan.spec
        return await prepare_problems(job.cluster, job.statement, job.params, plan.timeout)

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        job: _Query = plan.spec
        rows, columns = await read_only_query(job.cluster, job.statement, job.params, plan.timeout)
        return judge(job.expect, Observed(rows=len(rows), values=first_column(rows)), table(rows, columns))
