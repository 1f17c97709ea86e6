"""Load generator: N real client sessions in one process, until stdin closes or SIGTERM.

    python -m bench.load --dsn postgresql://bench_load@127.0.0.1:PORT/bench --sessions 1000

Mix of the N sessions (fractions of N, at least one of each kind when N > 0):
  40% idle, 20% idle in transaction, 10% active (a long pg_sleep), 20% churning (short queries
  with random literals, then idle, at random: state, query_start and query text change every
  refresh), 10% waiting on a row lock.
The waiting sessions form lock chains of up to 10: a holder (one of the idle-in-transaction
sessions) updated a row and sits in its transaction; the first waiter waits on the holder's
transaction, the others on the tuple lock the first waiter holds (a two-level tree).
``--sessions 0`` (the "idle server" shape) is one chain only: holder <- waiter <- waiter.

Prints one JSON line ``{"ready": true, ...counts}`` on stdout once every session is in its
state, then nothing. Uses a fixed random seed: every run of a shape behaves the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys

import asyncpg

FRACTIONS = {"idle": 0.4, "idle_tx": 0.2, "active": 0.1, "churn": 0.2, "waiting": 0.1}
CHAIN = 10  # waiters per lock chain
APPS = ("shop-web", "shop-api", "sync-worker", "reports", "psql")


def mix(sessions: int) -> dict[str, int]:
    if sessions == 0:
        return {"idle": 0, "idle_tx": 1, "active": 0, "churn": 0, "waiting": 2}
    counts = {kind: max(1, round(sessions * share)) for kind, share in FRACTIONS.items()}
    counts["idle"] += sessions - sum(counts.values())
    return counts


async def _open(dsn: str, app: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        dsn, statement_cache_size=0, timeout=60, server_settings={"application_name": app}
    )


async def wait_for_locks(admin: asyncpg.Connection, expected: int, timeout: float = 120) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND usename = current_user"
        )
        if waiting >= expected:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"only {waiting} of {expected} sessions wait on a lock")
        await asyncio.sleep(0.1)


async def churn(conn: asyncpg.Connection, rng: random.Random, index: int) -> None:
    while True:
        await asyncio.sleep(rng.uniform(0.05, 1.0))
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute(
                f"SELECT pg_sleep({rng.uniform(0.05, 1.0):.3f}) /* order {rng.randrange(100000)} w{index} */"
            )


async def run(dsn: str, sessions: int, stop: asyncio.Event) -> None:
    rng = random.Random(sessions)
    counts = mix(sessions)
    chains = max(1, -(-counts["waiting"] // CHAIN))
    counts["idle_tx"] = max(counts["idle_tx"], chains)
    admin = await _open(dsn, "bench-load-admin")
    await admin.execute(
        "DROP TABLE IF EXISTS bench_locks; CREATE TABLE bench_locks (id int PRIMARY KEY, v int);"
        f"INSERT INTO bench_locks SELECT g, 0 FROM generate_series(1, {chains}) g"
    )
    gate = asyncio.Semaphore(32)

    async def opened(app: str) -> asyncpg.Connection:
        async with gate:
            return await _open(dsn, app)

    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    conns = await asyncio.gather(*(opened(APPS[i % len(APPS)]) for i in range(len(kinds))))
    tasks: list[asyncio.Task] = []
    by_kind: dict[str, list[asyncpg.Connection]] = {}
    for kind, conn in zip(kinds, conns, strict=True):
        by_kind.setdefault(kind, []).append(conn)
    for i, conn in enumerate(by_kind.get("idle", ())):
        await conn.execute(f"SELECT {i} /* cart {i} */")
    for i, conn in enumerate(by_kind.get("idle_tx", ())):
        if i < chains:
            await conn.execute(f"BEGIN; UPDATE bench_locks SET v = v + 1 WHERE id = {i + 1}")
        else:
            await conn.execute(f"BEGIN; SELECT {i} /* checkout {i} */")
    for i, conn in enumerate(by_kind.get("waiting", ())):
        row = i % chains + 1
        tasks.append(asyncio.create_task(conn.execute(f"UPDATE bench_locks SET v = v + 1 WHERE id = {row}")))
        if i < chains:  # each chain's first waiter before the others, so the tree is two levels
            await wait_for_locks(admin, i + 1)
    await wait_for_locks(admin, len(by_kind.get("waiting", ())))
    for i, conn in enumerate(by_kind.get("active", ())):
        tasks.append(asyncio.create_task(conn.execute(f"SELECT pg_sleep(86400) /* nightly report {i} */")))
    for i, conn in enumerate(by_kind.get("churn", ())):
        tasks.append(asyncio.create_task(churn(conn, random.Random(rng.random()), i)))
    await admin.close()
    print(json.dumps({"ready": True, **counts, "chains": chains}), flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    for conn in conns:
        conn.terminate()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--sessions", type=int, required=True)
    args = parser.parse_args()

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.buffer.read1(1) else None)
        await run(args.dsn, args.sessions, stop)

    asyncio.run(amain())


if __name__ == "__main__":
    main()
