"""An unchanged session is not parsed again: the same Session object comes back, and a session
that changed comes back with its new values (bench/RESULTS.md: parsing 1000 sessions a second
was a fifth of the engine's time). An idle session unchanged since the last refresh is not even
sent: the statement gives its bare pid and state (bench/CHANGES.md)."""

from __future__ import annotations

import asyncio
import time

from console.sources.pg_refresh import RowKind
from console.sources.postgres import LOCKS_EVERY, SINCE_MARGIN


def by_pid(snapshot):
    assert snapshot.error is None, snapshot.error
    return {s.pid: s for s in snapshot.sessions}


def recording(source) -> list[list]:
    """The rows each refresh's statement sent (observed, not changed)."""
    sent: list[list] = []
    parse = source._sessions

    def spy(rows):
        sent.append(list(rows))
        return parse(rows)

    source._sessions = spy
    return sent


def bare(rows) -> set[int]:
    """Pids sent as unchanged since the last refresh (IDLE_UNCHANGED: pid and state only), not
    in full."""
    assert {row["kind"] for row in rows} <= set(RowKind)
    sent = {row["pid"] for row in rows if row["kind"] == RowKind.SESSION}
    unchanged = {row["pid"] for row in rows if row["kind"] == RowKind.IDLE_UNCHANGED}
    assert not unchanged & sent
    assert all(
        row["query"] is None and row["user"] is None for row in rows if row["kind"] == RowKind.IDLE_UNCHANGED
    )
    return unchanged


async def test_unchanged_sessions_are_the_same_objects_changed_ones_are_new(
    pg_server, pg_sessions, pg_source
):
    idle = await pg_sessions.open(application_name="ic-reuse-idle")
    await idle.execute("SELECT 1")
    busy = await pg_sessions.open(application_name="ic-reuse-busy")
    source = pg_source(pg_server)

    first = by_pid(await source.poll())
    second = by_pid(await source.poll())
    assert second[idle.get_server_pid()] is first[idle.get_server_pid()]
    await busy.execute("SELECT 2 /* now another query */")
    third = by_pid(await source.poll())
    assert third[idle.get_server_pid()] is first[idle.get_server_pid()]
    changed = third[busy.get_server_pid()]
    assert changed is not first[busy.get_server_pid()] and "another query" in changed.query
    await idle.close()
    fourth = by_pid(await source.poll())
    assert idle.get_server_pid() not in fourth and set(source._last) == set(fourth)


async def test_idle_sessions_unchanged_since_the_last_refresh_come_as_their_pid(
    pg_server, pg_sessions, pg_source
):
    idle = await pg_sessions.open(application_name="ic-since-idle")
    await idle.execute("SELECT 'idle one'")
    in_tx = await pg_sessions.open(application_name="ic-since-tx")
    await in_tx.execute("BEGIN; SELECT 'in a transaction'")
    active = await pg_sessions.open(application_name="ic-since-active")
    sleeping = asyncio.ensure_future(active.execute("SELECT pg_sleep(30) /* still running */"))
    source = pg_source(pg_server)
    sent = recording(source)
    try:
        first = by_pid(await source.poll())
        pids = {idle.get_server_pid(), in_tx.get_server_pid()}
        assert pids <= set(first) and active.get_server_pid() in first
        assert not bare(sent[-1]), "the first refresh sends every session"

        # Once the idle and idle-in-transaction sessions' states are older than the last refresh
        # (less the margin), the next refresh sends their pids only.
        await asyncio.sleep(SINCE_MARGIN + 0.3)
        await source.poll()
        second = by_pid(await source.poll())
        assert pids <= bare(sent[-1])
        assert active.get_server_pid() not in bare(sent[-1])  # an active one may change any time
        for pid in pids:
            assert second[pid] is first[pid]
        assert second[in_tx.get_server_pid()].state == "idle in transaction"
        assert "'idle one'" in second[idle.get_server_pid()].query

        # A new query: a state change after the last refresh, so the session comes in full.
        await idle.execute("SELECT 'a new query'")
        third = by_pid(await source.poll())
        assert "'a new query'" in third[idle.get_server_pid()].query
        assert idle.get_server_pid() not in bare(sent[-1])
        await asyncio.sleep(SINCE_MARGIN + 0.3)
        # In full once more (its state changed after the refresh before), settled by now: the
        # third refresh may have caught the backend before it waited on ClientRead (a loaded
        # machine does), so the object to keep is this one.
        settled = by_pid(await source.poll())
        fourth = by_pid(await source.poll())
        assert fourth[idle.get_server_pid()] is settled[idle.get_server_pid()]
        assert idle.get_server_pid() in bare(sent[-1])
    finally:
        sleeping.cancel()
        active.terminate()


async def test_a_bare_pid_the_source_does_not_know_gets_the_refresh_again_in_full(
    pg_server, pg_sessions, pg_source
):
    idle = await pg_sessions.open(application_name="ic-since-lost")
    await idle.execute("SELECT 'remember me'")
    source = pg_source(pg_server)
    sent = recording(source)
    await source.poll()
    await asyncio.sleep(SINCE_MARGIN + 0.3)
    first = by_pid(await source.poll())
    # As if the last refresh had not had this session.
    source._last = {pid: s for pid, s in first.items() if pid != idle.get_server_pid()}
    second = by_pid(await source.poll())
    assert len(sent) == 4, "a second statement, with every session in full"
    assert idle.get_server_pid() in bare(sent[2]) and not bare(sent[3])
    assert "'remember me'" in second[idle.get_server_pid()].query


async def test_pg_locks_is_read_again_only_for_a_new_wait_or_after_locks_every(
    pg_server, pg_lock_chain, pg_source
):
    """The lock details of sessions that still wait as they did come from the last read of
    pg_locks (bench/CHANGES.md: pg_lock_status() costs more the larger max_connections); a new
    wait is read at once, by a second statement for the new waiters only, and every wait again
    by the refresh statement itself after LOCKS_EVERY.

    The refresh reads the whole server, where other tests (the other xdist worker) make lock
    chains of their own: only this test's waiters are looked at (a fresh-clone CI run failed
    when another test's two waiters were new at the fourth refresh), and LOCKS_EVERY is held
    off where a loaded machine could take that long to build a chain."""
    source = pg_source(pg_server)
    sent = recording(source)
    first = await source.poll()
    chain = await pg_lock_chain()
    ours = {chain.second, chain.third}

    def read(rows) -> tuple[str, set[int]]:
        """What the refresh read of pg_locks for our waiters: every wait, new ones, or nothing."""
        header = next(row for row in rows if row["kind"] == RowKind.HEADER)
        pids = {row["pid"] for row in rows if row["kind"] == RowKind.LOCK_WAIT} & ours
        return ("every" if header["locks_read"] else "new" if pids else "none"), pids

    def waits(snapshot) -> dict[int, object]:
        return {s.pid: s for s in snapshot.sessions if s.lock is not None and s.pid in ours}

    def before_locks_every() -> None:
        source._locks_at = time.monotonic()  # as if the last read of every lock were just now

    assert read(sent[-1])[0] == "every"  # the first refresh
    before_locks_every()
    second = await source.poll()  # two sessions started waiting: read at once
    assert read(sent[-1]) == ("new", {chain.second, chain.third})
    waiting = waits(second)
    assert set(waiting) == {chain.second, chain.third}
    before_locks_every()
    third = await source.poll()  # the same waits: not read, the same details
    assert read(sent[-1]) == ("none", set())
    again = waits(third)
    assert set(again) == set(waiting) and all(again[p].lock == waiting[p].lock for p in again)
    assert again[chain.second].lock.relation.endswith(chain.table)
    other = await pg_lock_chain()  # new waits, before LOCKS_EVERY: only those are read
    ours |= {other.second, other.third}
    before_locks_every()
    fourth = await source.poll()
    assert read(sent[-1]) == ("new", {other.second, other.third})
    assert set(waits(fourth)) == {*waiting, other.second, other.third}
    assert all(
        s.lock.relation.endswith(other.table) for s in fourth.sessions if s.pid in (other.second, other.third)
    )
    before_locks_every()
    await source.poll()
    assert read(sent[-1])[0] == "none"
    source._locks_at -= LOCKS_EVERY  # as if LOCKS_EVERY had passed
    fifth = await source.poll()
    assert read(sent[-1]) == ("every", {*waiting, other.second, other.third})
    assert {p: s.lock for p, s in waits(fifth).items()} == {p: s.lock for p, s in waits(fourth).items()}
    assert first.error is None  # (the fixture releases both chains)
