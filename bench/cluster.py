"""The benchmark's own Postgres: a PrivateCluster with pg_stat_statements, one role per tool.

Roles: ``bench_ic`` (incident-console), ``bench_pga`` (pg_activity), both SUPERUSER so that each
tool sees and does what it does for a DBA; ``bench_load`` owns the load's sessions and tables.
pg_stat_statements rows are per role, so each tool's statements and server time are told apart
by ``userid``. ``track_planning`` is on: planning is server time a tool causes (pg_activity
sends unprepared statements; asyncpg prepares once), so both are counted.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from console.demo.pgcluster import PrivateCluster

DATABASE = "bench"
TOOL_ROLES = {"incident-console": "bench_ic", "pg_activity": "bench_pga"}
LOAD_ROLE = "bench_load"


@dataclass(frozen=True)
class StatementStats:
    """pg_stat_statements of one role at one moment: queryid -> (calls, exec+plan ms, text)."""

    taken_at: float
    rows: dict[int, tuple[int, float, str]]

    def delta(self, before: StatementStats) -> dict[str, float]:
        calls: dict[int, int] = {}
        ms = 0.0
        for queryid, (n, total, _text) in self.rows.items():
            old_n, old_total, _ = before.rows.get(queryid, (0, 0.0, ""))
            if n - old_n > 0:
                calls[queryid] = n - old_n
            ms += total - old_total
        # The per-refresh statement runs exactly once per refresh; others at most as often.
        refreshes = max(calls.values(), default=0)
        return {
            "refreshes": refreshes,
            "statements": sum(calls.values()),
            "distinct_statements": len(calls),
            "server_ms": ms,
            "seconds": self.taken_at - before.taken_at,
        }

    def texts(self) -> list[tuple[int, str]]:
        return sorted(((n, text) for n, _t, text in self.rows.values()), reverse=True)


class BenchCluster:
    def __init__(self, max_connections: int) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ic-bench-", dir="/tmp"))
        self.cluster = PrivateCluster(
            self.directory,
            max_connections=max_connections,
            settings={
                "pg_stat_statements.track_planning": True,
                "pg_stat_statements.max": 10000,
                "shared_buffers": "256MB",
            },
        )

    def start(self) -> BenchCluster:
        try:
            self.cluster.start()
            roles = "".join(f"CREATE ROLE {role} LOGIN SUPERUSER;" for role in TOOL_ROLES.values())
            self.cluster.psql(roles + f"CREATE ROLE {LOAD_ROLE} LOGIN;")
            self.cluster.psql(f"CREATE DATABASE {DATABASE} OWNER {LOAD_ROLE}")
            self.cluster.psql("CREATE EXTENSION pg_stat_statements", db=DATABASE)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.cluster.destroy()

    @property
    def port(self) -> int:
        return self.cluster.port

    def dsn(self, role: str, db: str = DATABASE) -> str:
        return self.cluster.dsn(role, db=db)

    def version(self) -> str:
        return self.cluster.psql("SHOW server_version").strip()

    async def statements(self, role: str) -> StatementStats:
        conn = await asyncpg.connect(self.dsn("postgres"), server_settings={"application_name": "bench"})
        try:
            rows = await conn.fetch(
                "SELECT s.queryid, s.calls, s.total_exec_time + s.total_plan_time AS ms, s.query "
                "FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = $1",
                role,
            )
        finally:
            await conn.close()
        return StatementStats(
            time.monotonic(), {r["queryid"]: (r["calls"], r["ms"], r["query"]) for r in rows}
        )
