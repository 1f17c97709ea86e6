"""PostgresSource against real Postgres: the machine's server (pg_server) and a private cluster.

Every scenario is built for real (row locks held in open transactions, roles without
pg_monitor, a wrong scram password, a table locked under the console's statement, a proxy
that stops answering) and observed through ``poll()``; waits are deadlines, not sleeps.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

import asyncpg
import asyncpg.exceptions as pgexc
import pytest

from console.demo.pgcluster import PrivateCluster
from console.demo.ports import free_port
from console.locktree import build_lock_tree
from console.model import ErrorKind, LockNode, LockWait, PostgresSnapshot, Session
from console.pg import APPLICATION_NAME, CONSOLE_MARK, connect, console_pids, console_sessions
from console.sources.pg_refresh import ACTIVITY_SQL, LOCKS_SQL, activity_args, locks_args
from console.sources.postgres import PostgresSource
from tests.fixtures.postgres import quote_ident

# What must never reach a terminal: C0 (other than newline, in query text), DEL, C1, bidi.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
HOSTILE = "[/foo] [@click=app.quit] [$x] \x1b[2J\x1b]0;pwned\x07 \u202eevil \x9b31m \x7f\x01\x08 end"


async def poll_until(
    source: PostgresSource, check: Callable[[PostgresSnapshot], bool], timeout: float = 10.0
) -> PostgresSnapshot:
    """Poll until ``check(snapshot)`` holds; fail with the last snapshot's error otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        snap = await source.poll()
        if snap.ok and check(snap):
            return snap
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s; last error: {snap.error}")
        await asyncio.sleep(0.05)


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        await asyncio.sleep(0.05)


def session(snap: PostgresSnapshot, pid: int) -> Session | None:
    return next((s for s in snap.sessions if s.pid == pid), None)


def find_node(nodes: tuple[LockNode, ...], pid: int) -> LockNode | None:
    for root in nodes:
        for _, node in root.walk():
            if node.pid == pid:
                return node
    return None


def lock_waiting(conn_pid: int) -> Callable[[PostgresSnapshot], bool]:
    return lambda snap: bool((s := session(snap, conn_pid)) and s.waiting_on_lock and s.lock)


def all_text(snap: PostgresSnapshot) -> list[str]:
    """Every string field a widget could render from the snapshot."""
    out = [snap.server_version, snap.dsn, snap.statements_status, *snap.notes]
    for s in snap.sessions:
        out += [s.user, s.database, s.application, s.client, s.state, s.wait_event_type, s.wait_event]
        out += [s.backend_type, s.query]
        if s.lock:
            out += [s.lock.locktype, s.lock.mode, s.lock.relation, s.lock.detail]
    for root in snap.lock_tree:
        for _, node in root.walk():
            out += [node.user, node.state, node.query]
    out += [st.query for st in snap.statements]
    return out


# --- sessions, locks, states -----------------------------------------------------------------


async def test_lock_chain_is_a_nested_tree_with_modes_and_relation(pg_server, pg_sessions, pg_source):
    await pg_server.execute(
        "CREATE TABLE chain_t (id int PRIMARY KEY, v int); INSERT INTO chain_t VALUES (1, 0)"
    )
    holder, second, third = [await pg_sessions.open() for _ in range(3)]
    h, s2, s3 = (c.get_server_pid() for c in (holder, second, third))
    await holder.execute("BEGIN; UPDATE chain_t SET v = v + 1 WHERE id = 1")
    update = "UPDATE chain_t SET v = v + 1 WHERE id = 1"
    source = pg_source(pg_server)
    waiting = [asyncio.create_task(second.execute(update))]
    try:
        await poll_until(source, lock_waiting(s2))
        waiting.append(asyncio.create_task(third.execute(update)))  # queued behind the second
        snap = await poll_until(source, lock_waiting(s3))
    finally:
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(asyncio.gather(*waiting), 10)

    root = find_node(snap.lock_tree, h)
    assert root is not None and root in snap.lock_tree, snap.lock_tree
    assert root.lock is None and root.waiting_for is None and root.state == "idle in transaction"
    assert "UPDATE chain_t" in root.query
    mid = [c for c in root.children if c.pid == s2]
    assert len(mid) == 1, root
    mid = mid[0]
    assert (mid.lock.locktype, mid.lock.mode) == ("transactionid", "ShareLock")
    assert mid.lock.relation == "chain_t"  # from the tuple lock the waiter holds
    assert mid.lock.detail.startswith("transaction ")
    leaf = [c for c in mid.children if c.pid == s3]
    assert len(leaf) == 1, mid
    leaf = leaf[0]
    assert (leaf.lock.locktype, leaf.lock.mode, leaf.lock.relation) == ("tuple", "ExclusiveLock", "chain_t")
    assert leaf.lock.detail.startswith("tuple (")
    assert max(depth for depth, _ in root.walk()) >= 2
    assert mid.waiting_for is not None and mid.waiting_for >= 0
    assert leaf.waiting_for is not None and leaf.waiting_for >= 0
    assert session(snap, s2).blocked_by == (h,) and session(snap, s3).blocked_by == (s2,)
    assert session(snap, s2).lock.since is not None  # pg_locks.waitstart (PG14+)
    # Waiters appear only under their blockers, never as roots of their own.
    assert not {s2, s3} & {n.pid for n in snap.lock_tree}
    assert snap.age(session(snap, h).xact_start) >= 0

    snap = await source.poll()
    assert find_node(snap.lock_tree, h) is None


async def test_idle_in_transaction_session(pg_server, pg_sessions, pg_source):
    conn = await pg_sessions.open()
    await conn.execute("BEGIN; SELECT 42")
    source = pg_source(pg_server)
    snap = await poll_until(
        source,
        lambda s: (x := session(s, conn.get_server_pid())) is not None and x.state == "idle in transaction",
    )
    found = session(snap, conn.get_server_pid())
    assert found.xact_start is not None and snap.age(found.xact_start) >= 0
    assert found.query == "BEGIN; SELECT 42"
    assert found.database == pg_server.database and found.user == pg_server.admin_user
    assert found.client == "127.0.0.1" and found.backend_type == "client backend"
    assert dict(snap.connections_by_state).get("idle in transaction", 0) >= 1
    assert snap.max_connections > 0 and snap.reserved_connections >= 0
    assert snap.connections_used >= 2  # this session and the source's own
    assert snap.xact_total and snap.xact_total > 0
    assert snap.server_now and abs(snap.server_now - time.time()) < 60
    assert snap.server_version_num >= 100000 and snap.server_version


async def test_role_without_pg_monitor_sees_no_foreign_query_text(
    pg_server, pg_sessions, pg_roles, pg_source
):
    marker = f"ic-secret-{secrets.token_hex(4)}"
    other = await pg_sessions.open()
    await other.execute(f"SELECT '{marker}'")
    plain = await pg_roles.create()
    mine = await pg_sessions.open(user=plain)
    await mine.execute("SELECT 'my own text'")

    snap = await poll_until(
        pg_source(pg_server, user=plain), lambda s: session(s, other.get_server_pid()) is not None
    )
    assert snap.error is None
    assert snap.privileges.user == plain
    assert not (snap.privileges.superuser or snap.privileges.pg_monitor or snap.privileges.pg_signal_backend)
    hidden = session(snap, other.get_server_pid())
    assert hidden.query == "<insufficient privilege>" and hidden.state == ""
    assert not any(marker in text for text in all_text(snap))
    assert session(snap, mine.get_server_pid()).query == "SELECT 'my own text'"
    assert any("pg_monitor" in note and "hidden" in note for note in snap.notes)
    assert any("pg_signal_backend" in note for note in snap.notes)

    # The same role with pg_monitor sees the text and gets no such note.
    monitor = await pg_roles.create(monitor=True)
    snap = await poll_until(
        pg_source(pg_server, user=monitor), lambda s: session(s, other.get_server_pid()) is not None
    )
    assert marker in session(snap, other.get_server_pid()).query
    assert snap.privileges.pg_monitor
    assert not any("pg_monitor" in note for note in snap.notes)


async def test_console_sessions_hidden_by_pid_not_by_application_name(pg_server, pg_sessions, pg_source):
    source = pg_source(pg_server)
    impostor = await pg_sessions.open(application_name=APPLICATION_NAME)
    executor = await connect(source.cluster, purpose="action")  # another console connection
    try:
        snap = await poll_until(source, lambda s: session(s, impostor.get_server_pid()) is not None)
        pids = {s.pid for s in snap.sessions}
        assert source.backend_pid is not None and source.backend_pid not in pids
        assert executor.get_server_pid() not in pids
        assert {source.backend_pid, executor.get_server_pid()} <= console_pids(source.cluster)
        owned = console_sessions(source.cluster)
        assert (owned[source.backend_pid], owned[executor.get_server_pid()]) == ("monitor", "action")
        assert session(snap, impostor.get_server_pid()).application == APPLICATION_NAME
        # Console sessions carry the name and the configured timeouts.
        row = await executor.fetchrow(
            "SELECT current_setting('application_name') AS app, current_setting('statement_timeout') AS st,"
            " current_setting('lock_timeout') AS lt"
        )
        assert tuple(row) == (APPLICATION_NAME, "2s", "1s")
    finally:
        await executor.close()
    assert executor.get_server_pid() not in console_pids(source.cluster)
    snap = await poll_until(source, lambda s: True)
    assert executor.get_server_pid() not in console_pids(source.cluster)


async def test_hostile_text_comes_out_without_control_characters(
    pg_server, private_pg, pg_sessions, pg_roles, pg_source
):
    table = "tbl \x1b[2J\u202e[/foo]"
    await pg_server.execute(f"CREATE TABLE {quote_ident(table)} (id int)")
    evil_role = await pg_roles.create(name=f"ic_\x1b]0;x\x07\u202e[/r]{secrets.token_hex(2)}")
    talker = await pg_sessions.open(user=evil_role, application_name=HOSTILE)
    await talker.execute(f"SELECT $q${HOSTILE}$q$")
    holder = await pg_sessions.open()
    await holder.execute(f"BEGIN; LOCK TABLE {quote_ident(table)} IN ACCESS EXCLUSIVE MODE")
    waiter = await pg_sessions.open()
    blocked = asyncio.create_task(waiter.fetch(f"SELECT * FROM {quote_ident(table)}"))
    try:
        snap = await poll_until(pg_source(pg_server), lock_waiting(waiter.get_server_pid()))
    finally:
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(blocked, 10)

    said = session(snap, talker.get_server_pid())
    assert "[@click=app.quit]" in said.query and "[/foo]" in said.query and "[$x]" in said.query
    assert "[@click=app.quit]" in said.application  # the server itself turned ESC etc. into '?'
    assert said.user.startswith("ic_") and "[/r]" in said.user
    assert "[/foo]" in session(snap, waiter.get_server_pid()).lock.relation
    for text in all_text(snap):
        assert not UNSAFE.search(text), repr(text)

    # Database names too (on the private cluster, where creating one is cheap).
    hostile_db = await private_pg.create_database(f"db \x1b[31m\u202e[/d] {secrets.token_hex(2)}")
    guest = await pg_sessions.open(private_pg, database=hostile_db)
    snap = await poll_until(pg_source(private_pg), lambda s: session(s, guest.get_server_pid()) is not None)
    assert "[/d]" in session(snap, guest.get_server_pid()).database
    for text in all_text(snap):
        assert not UNSAFE.search(text), repr(text)


# --- pg_stat_statements ------------------------------------------------------------------------


async def test_top_statements_on_private_cluster(private_pg, pg_sessions, pg_source):
    worker = await pg_sessions.open(private_pg)
    for _ in range(3):
        await worker.execute("SELECT pg_sleep(0.03)")
    source = pg_source(private_pg, statements_top=5)
    await source.poll()
    snap = await poll_until(source, lambda s: any("pg_sleep" in st.query for st in s.statements))
    assert snap.statements_status == "ok"
    assert len(snap.statements) <= 5
    sleep = next(st for st in snap.statements if "pg_sleep" in st.query)
    assert sleep.calls >= 3 and sleep.mean_ms >= 30 and sleep.total_ms >= 90
    assert sleep.queryid is not None
    means = [st.mean_ms for st in snap.statements]
    assert means == sorted(means, reverse=True)
    # The console's own refresh statement is not listed.
    assert not any("WITH act AS MATERIALIZED" in st.query for st in snap.statements)
    assert not any("pg_stat_statements" in note for note in snap.notes)


async def test_the_consoles_own_statements_are_not_in_the_top_list(
    private_pg, pg_roles, pg_sessions, pg_source
):
    """Issue 18: the console's detection, probe, lock and refresh statements and its driver's type
    introspection ran under its role are left out; the same text from another role is kept."""
    role = await pg_roles.create(private_pg, monitor=True)
    await private_pg.execute("SELECT pg_stat_statements_reset()")  # no console of an earlier test
    worker = await pg_sessions.open(private_pg)
    await worker.execute(f"{CONSOLE_MARK} SELECT 42 AS not_the_console")  # another role: kept
    source = pg_source(private_pg, user=role, statements_top=100, statements_every=0)
    for _ in range(3):
        assert (await source.poll()).ok
    own = await private_pg.fetch(
        "SELECT s.query FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = $1",
        role,
    )
    assert any(row["query"].startswith(CONSOLE_MARK) for row in own)  # they exist, and are left out:
    snap = await poll_until(source, lambda s: any("not_the_console" in st.query for st in s.statements))
    listed = [st.query for st in snap.statements]
    assert [q for q in listed if q.startswith(CONSOLE_MARK)] == [
        f"{CONSOLE_MARK} SELECT $1 AS not_the_console"
    ]
    assert not any("plan_cache_mode" in q or "typeinfo_tree" in q for q in listed), listed


async def test_statements_not_installed_then_not_loaded(pg_server, pg_source):
    snap = await pg_source(pg_server).poll()
    assert snap.ok and snap.statements_status == "not installed" and snap.statements == ()
    assert any("not installed" in note for note in snap.notes)

    preload = (await pg_server.fetch("SELECT current_setting('shared_preload_libraries') AS v"))[0]["v"]
    if "pg_stat_statements" in preload:
        pytest.skip("this server preloads pg_stat_statements")
    await pg_server.execute("CREATE EXTENSION pg_stat_statements")  # in our own database only
    try:
        snap = await pg_source(pg_server).poll()
        assert snap.ok, snap.error
        assert snap.statements_status == "not loaded" and snap.statements == ()
        assert any("shared_preload_libraries" in note for note in snap.notes)
    finally:
        await pg_server.execute("DROP EXTENSION pg_stat_statements")


async def test_statements_no_permission(private_pg, pg_roles, pg_source):
    role = await pg_roles.create(private_pg)
    await private_pg.execute("REVOKE SELECT ON pg_stat_statements FROM PUBLIC")
    try:
        snap = await pg_source(private_pg, user=role).poll()
    finally:
        await private_pg.execute("GRANT SELECT ON pg_stat_statements TO PUBLIC")
    assert snap.ok, snap.error
    assert snap.statements_status == "no permission" and snap.statements == ()


# --- one statement, one round trip ------------------------------------------------------------


async def test_one_statement_per_refresh_counted_by_pg_stat_statements(private_pg, pg_roles, pg_source):
    role = await pg_roles.create(private_pg)
    source = pg_source(private_pg, user=role)
    for _ in range(2):  # connect, detect, prepare
        assert (await source.poll()).ok

    async def calls() -> int:
        rows = await private_pg.fetch(
            "SELECT coalesce(sum(calls), 0)::int AS n FROM pg_stat_statements s"
            " JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = $1",
            role,
        )
        return rows[0]["n"]

    before = await calls()
    for _ in range(5):
        assert (await source.poll()).ok
    assert await calls() - before == 5


async def test_every_statement_variant_prepares_on_a_real_server(private_pg):
    """The variants for servers before 14 (no query_id, no waitstart) are built from the same
    fragments: each must at least parse and plan here. ("plain" names pg_stat_statements'
    columns before 13, which this server does not have: 42703 says so.)"""
    conn = await private_pg.connect()
    try:
        for (pss, _pg14), sql in ACTIVITY_SQL.items():
            if pss == "plain":
                with pytest.raises(asyncpg.exceptions.UndefinedColumnError):
                    await conn.prepare(sql)
            else:
                # The statement takes the parameters activity_args gives, no more, no fewer.
                top = None if pss is None else 10
                args = activity_args([1], 100, None, True, top)
                assert len((await conn.prepare(sql)).get_parameters()) == len(args)
        for sql in LOCKS_SQL.values():
            assert len((await conn.prepare(sql)).get_parameters()) == len(locks_args([1]))
    finally:
        await conn.close()
    # Composed of the module's own fragments: nothing left unfilled.
    assert not any("@" in sql or "{" in sql for sql in (*ACTIVITY_SQL.values(), *LOCKS_SQL.values()))


async def test_the_refresh_statement_is_planned_once(pg_server, pg_source):
    """Postgres re-planned the refresh statement on every call (~1 ms of ~8, bench/CHANGES.md):
    the monitor connection asks for generic plans."""
    source = pg_source(pg_server)
    assert (await source.poll()).ok
    assert await source._conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"


async def test_one_round_trip_per_refresh_on_the_wire(pg_server, pg_proxy):
    proxy = await pg_proxy(pg_server)
    source = PostgresSource(proxy.config(pg_server, dsn_params={"sslmode": "disable"}), 1.0)
    try:
        for _ in range(2):
            assert (await source.poll()).ok
        (wire,) = proxy.connections
        before = wire.messages.copy()
        for _ in range(5):
            assert (await source.poll()).ok
        delta = wire.messages - before
        assert delta["S"] + delta["Q"] == 5  # one Sync per refresh: one round trip
        assert delta["P"] == 0 and delta["B"] == 5 and delta["E"] == 5  # no re-parse: cached statement
        assert len(proxy.connections) == 1
    finally:
        await source.aclose()


# --- failures ----------------------------------------------------------------------------------


async def test_wrong_password_is_auth_failed_without_the_password(private_pg, pg_source):
    wrong = f"wrong-{secrets.token_hex(6)}"
    snap = await pg_source(private_pg, user=private_pg.password_user, password=wrong).poll()
    assert snap.error is not None and snap.error.kind is ErrorKind.AUTH_FAILED
    assert "password authentication failed" in snap.error.reason
    assert wrong not in snap.error.reason and wrong not in repr(snap) and wrong not in snap.dsn
    right = await pg_source(private_pg, user=private_pg.password_user, password=private_pg.password).poll()
    assert right.ok, right.error
    assert private_pg.password not in repr(right)


async def test_unreachable_port_and_host(pg_server, pg_source):
    closed = pg_source(pg_server, connect_timeout=3).cluster.model_copy(
        update={"dsn": f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"}
    )
    snap = await PostgresSource(closed, 1.0).poll()
    assert snap.error is not None and snap.error.kind is ErrorKind.UNREACHABLE
    assert "refused" in snap.error.reason
    nowhere = closed.model_copy(update={"dsn": "postgresql://postgres:hunter2xyz@nonexistent.invalid/db"})
    source = PostgresSource(nowhere, 1.0)
    snap = await source.poll()
    assert snap.error is not None and snap.error.kind is ErrorKind.UNREACHABLE
    assert "hunter2xyz" not in repr(snap) and "***" in snap.dsn
    assert snap.source == "postgres:test" and snap.cluster == "test"


async def test_tls_refused_and_bad_port_are_classified(pg_server, pg_source):
    if (await pg_server.fetch("SHOW ssl"))[0]["ssl"] == "on":
        pytest.skip("this server speaks TLS")
    snap = await pg_source(pg_server, dsn_params={"sslmode": "require"}).poll()
    assert snap.error.kind is ErrorKind.TLS and "SSL" in snap.error.reason
    bad = pg_source(pg_server).cluster.model_copy(update={"dsn": "postgresql://u:pw-x1@127.0.0.1:99999/db"})
    snap = await PostgresSource(bad, 1.0).poll()
    assert snap.error.kind is ErrorKind.CONFIG and "pw-x1" not in repr(snap)


async def test_too_many_connections_permission_and_missing_database(
    pg_server, private_pg, pg_roles, pg_source
):
    full = await pg_roles.create(connection_limit=0)
    snap = await pg_source(pg_server, user=full).poll()
    assert snap.error.kind is ErrorKind.UNREACHABLE and "too many connections" in snap.error.reason

    locked = await private_pg.create_database()
    await private_pg.execute(f"REVOKE CONNECT ON DATABASE {quote_ident(locked)} FROM PUBLIC")
    role = await pg_roles.create(private_pg)
    snap = await pg_source(private_pg, user=role, database=locked).poll()
    assert snap.error.kind is ErrorKind.PERMISSION_DENIED and "permission denied" in snap.error.reason

    snap = await pg_source(pg_server, database=f"ic_missing_{secrets.token_hex(3)}").poll()
    assert snap.error.kind is ErrorKind.CONFIG and "does not exist" in snap.error.reason


async def test_statement_and_lock_timeout_on_the_console_statement(private_pg, pg_sessions, pg_source):
    # The refresh reads the pg_stat_statements view; an ACCESS EXCLUSIVE lock on it (in our own
    # private cluster) makes the console's statement wait, so the server-side limits must fire.
    slow = pg_source(private_pg, statement_timeout=0.3, lock_timeout=0)
    impatient = pg_source(private_pg, statement_timeout=5, lock_timeout=0.2)
    for source in (slow, impatient):
        assert (await source.poll()).ok
    pids = (slow.backend_pid, impatient.backend_pid)
    locker = await pg_sessions.open(private_pg)
    await locker.execute("BEGIN; LOCK TABLE pg_stat_statements IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        snap = await slow.poll()
        assert snap.error.kind is ErrorKind.TIMEOUT and "statement_timeout" in snap.error.reason
        snap = await impatient.poll()
        assert snap.error.kind is ErrorKind.TIMEOUT and "lock_timeout" in snap.error.reason
        assert time.monotonic() - started < 3
    finally:
        await locker.execute("ROLLBACK")
    for source in (slow, impatient):
        assert (await source.poll()).ok
    assert (slow.backend_pid, impatient.backend_pid) == pids  # a server-side timeout keeps the connection


async def test_hung_server_hits_the_hard_timeout_and_reconnects(pg_server, pg_proxy):
    proxy = await pg_proxy(pg_server)
    source = PostgresSource(proxy.config(pg_server, connect_timeout=0.5), 1.0)
    source.timeout = 1.0
    try:
        assert (await source.poll()).ok
        old = source.backend_pid
        proxy.freeze()
        # The poller's own limit cancels a poll: the cancellation propagates and the connection,
        # with a query in flight, is dropped.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(source.poll(), 0.3)
        assert source.backend_pid is None
        proxy.thaw()
        assert (await source.poll()).ok
        assert source.backend_pid not in (None, old)
        old = source.backend_pid
        proxy.freeze()
        started = time.monotonic()
        snap = await source.poll()
        assert time.monotonic() - started < 2.5
        assert snap.error.kind is ErrorKind.TIMEOUT and "no answer in 0.9s" in snap.error.reason
        assert source.backend_pid is None

        async def gone() -> bool:
            rows = await pg_server.fetch("SELECT 1 FROM pg_stat_activity WHERE pid = $1", old)
            return not rows

        await wait_for(gone)  # the hung connection was terminated, not left behind
        snap = await source.poll()  # still frozen: now the connect itself times out
        assert snap.error.kind is ErrorKind.TIMEOUT and "could not connect in 0.5s" in snap.error.reason
        proxy.thaw()
        snap = await source.poll()
        assert snap.ok, snap.error
        assert source.backend_pid not in (None, old)
    finally:
        await source.aclose()


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "not-yet-noticed"])
async def test_a_backend_terminated_between_refreshes_is_no_outage(pg_server, pg_source, noticed):
    """The server ends the console's connection (a DBA's pg_terminate_backend, a pooler): the
    next refresh answers on a new connection. When the client had not yet read the server's
    FATAL (the event loop busy, or the refresh right behind it), that refresh failed as
    UNREACHABLE "connection lost" (or INTERNAL: InternalClientError "cannot switch to state
    12"), a cluster shown down for a second that was up."""
    source = pg_source(pg_server)
    assert (await source.poll()).ok
    old = source.backend_pid
    if noticed:
        await pg_server.execute("SELECT pg_terminate_backend($1, 5000)", old)  # our own session
    else:  # a blocking call: the loop cannot read the FATAL before the next refresh
        terminate_blocking(pg_server, old)
    snap = await source.poll()
    assert snap.ok, snap.error
    assert source.backend_pid not in (None, old)


async def test_a_backend_terminated_during_the_refresh_is_no_outage(pg_server, pg_source, monkeypatch):
    """The server ends a new connection between its first statements and the refresh's own
    (the console's session terminated as it connected): the refresh answers on another one."""
    source = pg_source(pg_server)
    refresh, killed = source._activity, []

    async def terminated_first(conn, *args):
        if not killed:  # blocking, as above: the client reads the FATAL only with the statement
            killed.append(conn.get_server_pid())
            terminate_blocking(pg_server, killed[0])
        return await refresh(conn, *args)

    monkeypatch.setattr(source, "_activity", terminated_first)
    snap = await source.poll()
    assert snap.ok, snap.error
    assert killed and source.backend_pid not in (None, killed[0])


def terminate_blocking(server, pid: int) -> None:
    """pg_terminate_backend from psql, blocking this event loop until the backend is gone."""
    argv = ["psql", server.dsn(), "-qAtX", "-c", f"SELECT pg_terminate_backend({int(pid)}, 5000)"]
    subprocess.run(
        argv, check=True, capture_output=True, timeout=30, env={**os.environ, "PGCONNECT_TIMEOUT": "10"}
    )


def test_errors_that_end_a_connection_are_told_from_the_statements_own() -> None:
    from console.pg import classify_error, connection_gone

    assert connection_gone(pgexc.AdminShutdownError("terminating connection due to administrator command"))
    assert connection_gone(pgexc.InternalClientError("cannot switch to state 12; another operation (2)"))
    assert connection_gone(
        pgexc.ConnectionDoesNotExistError("connection was closed in the middle of operation")
    )
    assert connection_gone(pgexc.InterfaceError("connection is closed"))
    assert not connection_gone(pgexc.QueryCanceledError("canceling statement due to statement timeout"))
    assert not connection_gone(
        pgexc.InterfaceError("cannot perform operation: another operation is in progress")
    )
    assert not connection_gone(ConnectionRefusedError("refused"))  # never connected: nothing to replace
    lost = classify_error(pgexc.InternalClientError("cannot switch to state 12; another operation (2)"))
    assert lost.kind is ErrorKind.UNREACHABLE and lost.reason.startswith("connection lost")


# --- the blocking tree on its own -----------------------------------------------------------


def _s(pid: int, blocked_by: tuple[int, ...] = (), state: str = "active") -> Session:
    lock = LockWait(locktype="relation", mode="AccessExclusiveLock", relation="t") if blocked_by else None
    return Session(
        pid=pid,
        backend_start=None,
        user="u",
        database="d",
        application="",
        client="",
        state=state,
        wait_event_type="Lock" if blocked_by else "",
        wait_event="relation" if blocked_by else "",
        xact_start=None,
        query_start=None,
        state_change=100.0,
        backend_type="client backend",
        query=f"q{pid}",
        blocked_by=blocked_by,
        lock=lock,
    )


def test_tree_breaks_cycles_and_keeps_every_blocker():
    # 1 <- 2 <- 3 (chain); 4 and 5 wait on each other (a cycle), 6 waits on 5;
    # 7 waits on both 1 and 8 (8 is not visible); 9 is not involved.
    sessions = [_s(1), _s(2, (1,)), _s(3, (2,)), _s(4, (5,)), _s(5, (4,)), _s(6, (5,)), _s(7, (1, 8)), _s(9)]
    tree = build_lock_tree(sessions, server_now=103.0, console=frozenset({8}))
    assert [n.pid for n in tree] == [1, 8, 4]
    one, eight, four = tree
    assert [c.pid for c in one.children] == [2, 7]
    assert [c.pid for c in one.children[0].children] == [3]
    assert one.children[0].waiting_for == pytest.approx(3.0)
    assert eight.state == "incident-console" and [c.pid for c in eight.children] == [7]
    assert [c.pid for c in four.children] == [5]
    assert [c.pid for c in four.children[0].children] == [6]  # the edge back to 4 is dropped
    assert build_lock_tree([_s(1), _s(9)]) == ()
    assert build_lock_tree(sessions) == build_lock_tree(list(reversed(sessions)))


def test_tree_draws_a_lock_queue_once_per_waiter_and_keeps_every_blocker():
    # pg_blocking_pids() gives a waiter in a queue every session ahead of it: 1 holds, 2, 3, 4 wait.
    queue = [_s(1), _s(2, (1,)), _s(3, (1, 2)), _s(4, (1, 2, 3))]
    (root,) = build_lock_tree(queue, server_now=103.0)
    assert [n.pid for _, n in root.walk()] == [1, 2, 3, 4]
    assert [c.pid for c in root.children] == [2] and [c.pid for c in root.children[0].children] == [3]
    # Two independent blockers both show the waiter; a blocker inside a cycle is not lost.
    fan = [_s(1), _s(2), _s(3, (1, 2))]
    assert [[c.pid for c in r.children] for r in build_lock_tree(fan)] == [[3], [3]]
    cycle = [_s(1), _s(2, (1, 3)), _s(3, (1, 2))]
    tree = build_lock_tree(cycle)
    assert tree[0].pid == 1 and {n.pid for _, n in tree[0].walk()} == {1, 2, 3}


# --- the private cluster itself --------------------------------------------------------------


def test_private_cluster_survives_a_stale_pid_file():
    directory = tempfile.mkdtemp(prefix="ic-pg-", dir="/tmp")
    cluster = PrivateCluster(directory, preload=(), max_connections=10, settings={"work_mem": "8MB"})
    try:
        cluster.start()
        assert cluster.is_running()
        assert cluster.psql("SHOW work_mem").strip() == "8MB"
        assert cluster.psql("SHOW unix_socket_directories").strip() == str(cluster.socket_dir)
        pid = cluster.postmaster_pid()
        os.kill(pid, signal.SIGKILL)  # a crash: postmaster.pid stays behind
        deadline = time.monotonic() + 10
        while cluster.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cluster.is_running() and cluster.postmaster_pid() == pid
        cluster.start()
        assert cluster.is_running() and cluster.postmaster_pid() != pid
        assert cluster.psql("SELECT 1").strip() == "1"
        cluster.stop()
        assert not cluster.is_running() and cluster.postmaster_pid() is None
    finally:
        cluster.destroy()


async def test_top_statements_are_read_every_statements_every_seconds(private_pg, pg_sessions, pg_source):
    """Between two reads the top list is the one last read (pg_stat_statements() is not run:
    bench/CHANGES.md); statements_every 0 reads it on every refresh."""
    worker = await pg_sessions.open(private_pg)
    seldom = pg_source(private_pg, name="seldom", statements_every=3600, statements_top=200)
    always = pg_source(private_pg, name="always", statements_every=0, statements_top=200)
    first, _ = await seldom.poll(), await always.poll()
    assert first.statements_status == "ok" and first.statements
    for _ in range(2):
        await worker.execute("SELECT * FROM pg_sleep(0.02) AS ic_statements_every")
    second, fresh = await seldom.poll(), await always.poll()
    assert second.statements is first.statements
    assert not any("ic_statements_every" in st.query for st in second.statements)
    assert any("ic_statements_every" in st.query for st in fresh.statements)
