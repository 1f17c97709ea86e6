"""Database faults: real sessions on the demo cluster, held by the agent process.

Each fault opens its sessions once, when injected, as the ``checkout`` role (untracked by
pg_stat_statements), and never reopens them: when an operator terminates the blocker, cancels
the report or kills the idle sessions, the fault is fixed and stays fixed. ``clear()`` (demo
reset) closes whatever is left. slow-queries is a missing index: it drops the index and resets
pg_stat_statements; creating the index is the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any, ClassVar

import asyncpg

from console.demo import shopdb


class DbContext:
    """How faults reach the cluster: ``fault_dsn`` for the sessions they hold, ``admin`` (a
    superuser connection over the unix socket) for looking around and for DDL."""

    def __init__(self, fault_dsn: str, admin_dsn: dict[str, Any]):
        self.fault_dsn = fault_dsn
        self.admin_params = admin_dsn
        self._admin: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def connect(self, application_name: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            self.fault_dsn, timeout=10, server_settings={"application_name": application_name}
        )

    async def admin(self, method: str, sql: str, *args: Any) -> Any:
        async with self._lock:
            if self._admin is None or self._admin.is_closed():
                # The agent's own statements (pg_stat_statements_reset(), its looks around) are
                # not the shop's: untracked, like the fault role's, so the top list shows the shop.
                settings = {"application_name": "demo-agent", "pg_stat_statements.track": "none"}
                self._admin = await asyncpg.connect(**self.admin_params, timeout=10, server_settings=settings)
            return await getattr(self._admin, method)(sql, *args)

    async def waiting(self, pid: int) -> bool:
        return bool(
            await self.admin(
                "fetchval", "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
            )
        )

    async def close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._admin.close(), 2)


class DbFault:
    name: ClassVar[str]

    def __init__(self) -> None:
        self.sessions: list[asyncpg.Connection] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.injected_at = time.time()

    async def session(self, ctx: DbContext, application_name: str) -> asyncpg.Connection:
        conn = await ctx.connect(application_name)
        self.sessions.append(conn)
        return conn

    def alive(self) -> list[asyncpg.Connection]:
        return [c for c in self.sessions if not c.is_closed()]

    async def inject(self, ctx: DbContext) -> None:
        raise NotImplementedError

    async def active(self, ctx: DbContext) -> bool:
        return bool(self.alive())

    async def clear(self, ctx: DbContext) -> None:
        pids = [c.get_server_pid() for c in self.alive()]
        if pids:  # a backend in pg_sleep or a lock wait would not notice its client leaving
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await ctx.admin(
                    "execute", "SELECT pg_terminate_backend(pid, 5000) FROM unnest($1::int[]) pid", pids
                )
        for task in self.tasks:
            task.cancel()
        for conn in self.sessions:
            if not conn.is_closed():
                conn.terminate()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def status(self, ctx: DbContext) -> dict[str, Any]:
        alive = self.alive()
        return {
            "name": self.name,
            "injected_at": self.injected_at,
            "active": await self.active(ctx),
            "sessions": len(alive),
            "pids": [c.get_server_pid() for c in alive],
        }


async def _quietly(coro: Any) -> None:
    """Run a statement whose session an operator may terminate or cancel at any time."""
    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        await coro


class LockContention(DbFault):
    """An admin transaction holds a hot inventory row; checkout updates queue behind it:
    blocker <- waiter 1 <- waiters 2 and 3 (they wait for waiter 1's tuple lock)."""

    name = "lock-contention"
    waiters = 3

    async def inject(self, ctx: DbContext) -> None:
        blocker = await self.session(ctx, "storefront-admin")
        await blocker.execute("BEGIN")
        await blocker.execute(
            "UPDATE inventory SET on_hand = on_hand - 1 WHERE sku = $1 /* manual stock correction */",
            shopdb.HOT_SKU,
        )
        for _ in range(self.waiters):
            waiter = await self.session(ctx, "checkout-worker")
            statement = waiter.execute(
                "UPDATE inventory SET reserved = reserved + 1 WHERE sku = $1", shopdb.HOT_SKU
            )
            self.tasks.append(asyncio.create_task(self._then_close(waiter, statement)))
            pid = waiter.get_server_pid()
            deadline = time.monotonic() + 5
            while not await ctx.waiting(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)

    @staticmethod
    async def _then_close(conn: asyncpg.Connection, statement: Any) -> None:
        await _quietly(statement)
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)

    async def active(self, ctx: DbContext) -> bool:
        # Asked for while the fault is still being injected, it has no session yet (the soak
        # found an IndexError: a 500 for every demo call that listed the faults meanwhile).
        return (
            bool(self.sessions) and not self.sessions[0].is_closed() and any(not t.done() for t in self.tasks)
        )


class LongRunningQuery(DbFault):
    name = "long-running-query"

    async def inject(self, ctx: DbContext) -> None:
        conn = await self.session(ctx, "reporting")
        report = conn.execute(
            "/* nightly revenue report */ SELECT o.sku, sum(o.total_cents) "
            "FROM orders o, pg_sleep(3600) GROUP BY o.sku"
        )
        self.tasks.append(asyncio.create_task(_quietly(report)))
        await asyncio.sleep(0.05)

    async def active(self, ctx: DbContext) -> bool:
        return any(not t.done() for t in self.tasks)


class IdleInTransaction(DbFault):
    name = "idle-in-transaction"
    sessions_held = 2

    async def inject(self, ctx: DbContext) -> None:
        for i in range(self.sessions_held):
            conn = await self.session(ctx, "storefront")
            await conn.execute("BEGIN")
            await conn.execute("UPDATE customers SET email = email WHERE id = $1", 100 + i)


class ConnectionExhaustion(DbFault):
    """A leaky pool: idle connections until ~88% of max_connections are in use."""

    name = "connection-exhaustion"
    share = 0.88

    async def inject(self, ctx: DbContext) -> None:
        row = await ctx.admin(
            "fetchrow",
            "SELECT current_setting('max_connections')::int AS max, "
            "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS used",
        )
        missing = max(0, math.ceil(self.share * row["max"]) - row["used"])
        for start in range(0, missing, 8):
            batch = min(8, missing - start)
            await asyncio.gather(*(self.session(ctx, "storefront-pool") for _ in range(batch)))


class SlowQueries(DbFault):
    """The index the category page needs is dropped; creating it again is the fix."""

    name = "slow-queries"

    async def inject(self, ctx: DbContext) -> None:
        await ctx.admin("execute", shopdb.DROP_INDEX_SQL)
        await ctx.admin("execute", "SELECT pg_stat_statements_reset()")

    async def active(self, ctx: DbContext) -> bool:
        return not await ctx.admin(
            "fetchval", "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = $1)", shopdb.MISSING_INDEX
        )

    async def clear(self, ctx: DbContext) -> None:
        await ctx.admin("execute", shopdb.CREATE_INDEX_SQL)
        await ctx.admin("execute", "SELECT pg_stat_statements_reset()")


DB_FAULTS: dict[str, type[DbFault]] = {
    cls.name: cls
    for cls in (LockContention, LongRunningQuery, IdleInTransaction, ConnectionExhaustion, SlowQueries)
}


class DbFaults:
    """The injected DB faults of one stack."""

    def __init__(self, ctx: DbContext):
        self.ctx = ctx
        self.faults: dict[str, DbFault] = {}

    async def inject(self, name: str) -> None:
        if name not in DB_FAULTS:
            raise KeyError(f"no database fault {name!r}: {', '.join(DB_FAULTS)}")
        await self.clear(name)
        fault = DB_FAULTS[name]()
        self.faults[name] = fault
        try:
            await fault.inject(self.ctx)
        except BaseException:
            await self.clear(name)
            raise

    async def clear(self, name: str | None = None) -> list[str]:
        names = list(self.faults) if name is None else [name] if name in self.faults else []
        for n in names:
            await self.faults.pop(n).clear(self.ctx)
        if name is None:
            # A normal day: the index is there and the statistics start afresh.
            await self.ctx.admin("execute", shopdb.CREATE_INDEX_SQL)
            await self.ctx.admin("execute", "SELECT pg_stat_statements_reset()")
        return names

    async def status(self) -> list[dict[str, Any]]:
        # A copy: an inject or a reset may change the faults while a status awaits the database.
        return [await f.status(self.ctx) for f in list(self.faults.values())]
