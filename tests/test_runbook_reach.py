"""The Postgres runbooks' re-checks count every session of the cluster, while their cancel and
terminate signal only this database's sessions of roles that are not superusers. A session out of
that reach kept the wait at NOT MET with nothing on the screen to say why: the lists before the
action showed it as if the action would end it. The step after the waits lists what the actions
left, and why, on a real server with a monitoring role like the console's."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import asyncpg
import pytest

from console.actions import Confirmation, Executor, Status
from console.journal import Journal, Operator
from console.loader import load_config
from console.runbooks import RunbookSession, pack_for
from tests.fixtures.postgres import PgServer, Roles, Sessions, wait_until_waiting

CONFIG = Path(__file__).resolve().parent.parent / "config" / "console.yaml"
OPERATOR = Operator("alice", "10.0.0.5", "console-host")
OLDER_THAN = 1.0  # seconds: the runbooks' older_than input, so that the sessions qualify at once


async def _open(sessions: Sessions, server: PgServer, app: str, **kwargs) -> tuple[asyncpg.Connection, int]:
    conn = await sessions.open(server, application_name=app, **kwargs)
    return conn, await conn.fetchval("SELECT pg_backend_pid()")


async def _gone(server: PgServer, pid: int) -> bool:
    for _ in range(50):
        if not await server.fetch("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.fixture(params=["monitoring", "superuser"])
def console_role(request: pytest.FixtureRequest) -> str:
    """The console's own role: a monitoring role (pg_monitor, pg_signal_backend) or a superuser."""
    return request.param


@pytest.fixture
def reach(console_role: str) -> tuple[list[str], list[str]]:
    """Of the sessions "mine" (the application's role, this database), "elsewhere" (another
    database) and "superuser" (a superuser's, this database): those the console's actions reach,
    and those they leave. A monitoring role cannot signal a superuser's session; a superuser
    console can, and did not: the selects left every superuser's session out."""
    if console_role == "superuser":
        return ["mine", "superuser"], ["elsewhere"]
    return ["mine"], ["elsewhere", "superuser"]


@pytest.fixture
async def role(pg_roles: Roles) -> str:
    """The application's role (a monitoring one too: it is the console's when not a superuser)."""
    return await pg_roles.create(monitor=True, signal=True)


@pytest.fixture
def open_runbook(
    console_role: str, role: str, pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """``await open_runbook(id)``: a run of the shipped runbook, the console connected as ``console_role``."""

    async def open_(runbook_id: str) -> RunbookSession:
        dsn = pg_server.dsn() if console_role == "superuser" else pg_server.dsn(user=role)
        monkeypatch.setenv("PG_DSN", dsn)  # the shipped config's cluster "main"
        config = load_config(CONFIG)
        journal = Journal(tmp_path / "journal.jsonl", operator=OPERATOR)
        runbook = pack_for(config).get(runbook_id)
        assert runbook is not None
        return await RunbookSession.open(
            runbook, Executor(config, journal), inputs={"older_than": f"{OLDER_THAN:g}"}
        )

    return open_


@pytest.mark.parametrize(
    ("runbook_id", "action_id"),
    [("idle-in-transaction", "terminate-idle"), ("long-running-query", "cancel")],
)
async def test_the_step_after_the_wait_lists_the_sessions_the_action_could_not_reach(
    runbook_id: str,
    action_id: str,
    reach: tuple[list[str], list[str]],
    role: str,
    open_runbook,
    pg_server: PgServer,
    pg_sessions: Sessions,
) -> None:
    other_db = await pg_server.create_database()
    tag = secrets.token_hex(3)
    apps = {name: f"ic-reach-{name}-{tag}" for name in ("mine", "elsewhere", "superuser")}
    conns = {
        "mine": await _open(pg_sessions, pg_server, apps["mine"], user=role),
        "elsewhere": await _open(pg_sessions, pg_server, apps["elsewhere"], user=role, database=other_db),
        "superuser": await _open(pg_sessions, pg_server, apps["superuser"]),  # the fixture's superuser
    }
    # Each session in the state its runbook acts on: idle in a transaction, or running long.
    running: dict[str, asyncio.Task] = {}
    try:
        for name, (conn, _) in conns.items():
            if runbook_id == "idle-in-transaction":
                await conn.execute("BEGIN; SELECT 1")
            else:
                running[name] = asyncio.create_task(conn.execute("SELECT pg_sleep(60)"))
        await asyncio.sleep(OLDER_THAN + 0.5)

        reached, left = reach
        session = await open_runbook(runbook_id)
        action, reach = session.runbook.step(action_id), session.runbook.step("out-of-reach")
        plan = await session.prepare(action)
        targets = {t.pid for t in plan.targets}
        assert {conns[name][1] for name in reached} <= targets
        assert not {conns[name][1] for name in left} & targets
        answer = Confirmation(typed=plan.confirm.expected)  # a signal is dangerous: the typed word
        assert (await session.execute(action, answer, plan)).status == Status.SUCCEEDED
        for name in reached:
            if runbook_id == "idle-in-transaction":
                assert await _gone(pg_server, conns[name][1])
            else:
                with pytest.raises(asyncpg.QueryCanceledError):
                    await asyncio.wait_for(running[name], 10)

        result = await session.execute(reach)
        shown = "\n".join(result.lines)
        assert result.status == Status.NOT_MET, (result.message, shown)
        by_app = {app: line for line in result.lines for app in apps.values() if app in line}
        assert set(by_app) == {apps[name] for name in left}, shown
        assert "another database" in by_app[apps["elsewhere"]] and other_db in by_app[apps["elsewhere"]]
        if "superuser" in left:
            assert "a superuser" in by_app[apps["superuser"]]
    finally:
        for name, task in running.items():
            conns[name][0].terminate()
            await asyncio.gather(task, return_exceptions=True)


async def test_the_idle_connections_terminate_reaches_superusers_only_as_a_superuser(
    console_role: str,
    role: str,
    open_runbook,
    pg_server: PgServer,
    pg_sessions: Sessions,
) -> None:
    """connection-exhaustion's preview: an application connected as a superuser, idle. A console
    that is a superuser itself can end the session; its preview left it out all the same. A
    console that cannot reach it says so after the wait."""
    tag = secrets.token_hex(3)
    _, idle_pid = await _open(pg_sessions, pg_server, f"ic-reach-idle-{tag}")  # the fixture's superuser
    await asyncio.sleep(OLDER_THAN + 0.5)
    superuser = console_role == "superuser"
    session = await open_runbook("connection-exhaustion")
    plan = await session.prepare(session.runbook.step("terminate-idle"))
    assert plan.preview is not None and not plan.preview.error, plan.preview
    assert (idle_pid in {t.pid for t in plan.targets}) is superuser
    # The list after the wait names it when the terminate cannot reach it; a list, not a failure
    # (a pool keeps idle connections by design).
    listed = await session.execute(session.runbook.step("out-of-reach"))
    assert listed.status == Status.PASSED, listed.message
    mentions = [line for line in listed.lines if line.lstrip().startswith(f"{idle_pid} ")]
    assert bool(mentions) is not superuser, listed.lines
    assert all("a superuser" in line for line in mentions)


async def _lock_chain(
    server: PgServer, sessions: Sessions, role: str, holder_user: str | None, database: str | None
) -> tuple[int, asyncio.Task]:
    """A holder in a transaction that updated a row, and one session waiting for that row; the
    holder's pid and the waiter's statement."""
    table = f"reach_{secrets.token_hex(4)}"
    await server.execute(
        f"CREATE TABLE {table} (id int PRIMARY KEY, v int); INSERT INTO {table} VALUES (1, 0);"
        f"GRANT ALL ON {table} TO {role}",
        database=database,
    )
    holder, _ = await _open(sessions, server, f"ic-reach-holder-{table}", user=holder_user, database=database)
    waiter, waiter_pid = await _open(
        sessions, server, f"ic-reach-waiter-{table}", user=role, database=database
    )
    await holder.execute(f"BEGIN; UPDATE {table} SET v = v + 1 WHERE id = 1")
    waiting = asyncio.create_task(waiter.execute(f"UPDATE {table} SET v = v + 1 WHERE id = 1"))
    await wait_until_waiting(server, waiter_pid)
    return holder.get_server_pid(), waiting


async def test_lock_contention_lists_the_root_blockers_its_terminate_leaves(
    reach: tuple[list[str], list[str]],
    role: str,
    open_runbook,
    pg_server: PgServer,
    pg_sessions: Sessions,
) -> None:
    """Three lock chains: one held by the application's role here, one in another database, one
    held by a superuser here. The waiting count reads all three; the terminate reached the first
    only (and tried the superuser's, which a monitoring role cannot signal)."""
    other_db = await pg_server.create_database()
    waits: list[asyncio.Task] = []
    try:
        holders = {}
        for name, user, database in (
            ("mine", role, None),
            ("elsewhere", role, other_db),
            ("superuser", None, None),
        ):
            holders[name], waiting = await _lock_chain(pg_server, pg_sessions, role, user, database)
            waits.append(waiting)
        reached, left = reach
        session = await open_runbook("lock-contention")
        action = session.runbook.step("terminate-root-blocker")
        plan = await session.prepare(action)
        targets = {t.pid for t in plan.targets}
        assert {holders[name] for name in reached} <= targets
        assert not {holders[name] for name in left} & targets
        answer = Confirmation(typed=plan.confirm.expected)  # a signal is dangerous: the typed word
        result = await session.execute(action, answer, plan)
        assert result.status == Status.SUCCEEDED, (result.message, result.lines)
        for name in reached:
            assert await _gone(pg_server, holders[name])

        found = await session.execute(session.runbook.step("out-of-reach"))
        rows = {
            pid: line
            for line in found.lines
            for pid in holders.values()
            if line.lstrip().startswith(f"{pid} ")
        }
        assert found.status == Status.NOT_MET, found.message
        assert set(rows) == {holders[name] for name in left}, found.lines
        assert "another database" in rows[holders["elsewhere"]]
        if "superuser" in left:
            assert "a superuser" in rows[holders["superuser"]]
    finally:
        pg_sessions.close_all()
        await asyncio.gather(*waits, return_exceptions=True)
