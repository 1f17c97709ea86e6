"""Postgres faults with real processes, seen through the real app: the console stays up, keeps
the last good data and the operator's view (filter, sort, selection), says what is wrong in one
line, answers keys while the server hangs, and recovers without a restart.

The source-level behaviour of each fault (classification, reconnects) is tested in
test_postgres_source.py; these tests are about what the operator sees and can still do.
Only the private fault cluster (tests/fixtures/faults.py) is ever stopped or hung.
"""

from __future__ import annotations

import asyncio
import time

from console.app import ConsoleApp
from console.model import ErrorKind
from panels.postgres import SORTS, PostgresPanel
from tests.fixtures.faults import console_config, keys_answer, quiet_cluster, screen_text, wait_for

INTERVAL = 1.0


def pg_panel(app: ConsoleApp) -> PostgresPanel:
    return next(p for p in app.panels if isinstance(p, PostgresPanel))


def status(app: ConsoleApp) -> str:
    return str(pg_panel(app).status.render())


def error(app: ConsoleApp, cluster: str = "main"):
    snapshot = app.state.snapshots.get(f"postgres:{cluster}")
    return None if snapshot is None else snapshot.error


def pids(app: ConsoleApp) -> set[int]:
    return {s.pid for s in pg_panel(app)._sessions.values()}


async def open_workload(pg_sessions, server, tag: str) -> dict[str, int]:
    """An active, an idle and an idle-in-transaction session, application names ``tag-*``."""
    active = await pg_sessions.open(server, application_name=f"{tag}-active")
    idle = await pg_sessions.open(server, application_name=f"{tag}-idle")
    in_tx = await pg_sessions.open(server, application_name=f"{tag}-in-tx")
    await in_tx.execute("BEGIN; SELECT 1")
    asyncio.get_running_loop().create_task(active.execute("SELECT pg_sleep(600)")).add_done_callback(
        lambda t: t.cancelled() or t.exception()
    )
    return {"active": active.get_server_pid(), "idle": idle.get_server_pid(), "in_tx": in_tx.get_server_pid()}


def count_polls(source) -> list[float]:
    """Record when each poll of ``source`` begins (monotonic)."""
    starts: list[float] = []
    poll = source.poll

    async def counted():
        starts.append(time.monotonic())
        return await poll()

    source.poll = counted
    return starts


async def goto_postgres(pilot, app: ConsoleApp) -> PostgresPanel:
    pg = pg_panel(app)
    for _ in app.panels:
        if pg.has_class("-active"):
            break
        await pilot.press("tab")
    pg.sessions.focus()
    await pilot.pause()
    return pg


async def test_stopped_mid_run_then_restarted(tmp_path, fault_pg, pg_sessions):
    """Error within two intervals, the last good sessions and the operator's filter, sort,
    text filter and selection kept through the outage, recovery without a restart."""
    server = fault_pg.server
    config = console_config(
        tmp_path,
        refresh={"postgres": f"{INTERVAL}s"},
        postgres=[quiet_cluster("main", server.dsn(), connect_timeout=2)],
    )
    first = await open_workload(pg_sessions, server, "ic-stop")
    app = ConsoleApp(config)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: set(first.values()) <= pids(app), 15, "the workload on screen")
        pg = await goto_postgres(pilot, app)
        await pilot.press("e", "s", "s", "s")  # everything, sorted by pid
        await pilot.press("slash", *"ic-stop", "enter")
        await pilot.pause()
        assert pids(app) == set(first.values())
        pg.sessions.focus()
        pg.sessions.move_cursor(row=sorted(pids(app)).index(first["in_tx"]))
        await pilot.pause()
        assert pg.selected.pid == first["in_tx"]
        view = (pg.filter_name, pg.sort_index, pg.text_filter)
        assert view == ("all", 3, "ic-stop") and SORTS[3] == "pid"

        starts = count_polls(app.poller.sources["postgres:main"])
        await asyncio.to_thread(fault_pg.stop)
        down = time.monotonic()
        await wait_for(
            pilot, lambda: error(app) is not None and "unreachable" in status(app), 10, "the error line"
        )
        # "Within two intervals", counted in polls rather than seconds (a busy CI machine stretches
        # seconds, not the schedule): at most two polls began after the server went down.
        begun = [t for t in starts if t > down]
        assert len(begun) <= 2, (
            f"{len(begun)} polls after the stop; shown {time.monotonic() - down:.2f}s after"
        )
        assert error(app).kind is ErrorKind.UNREACHABLE
        # why, in the server's or the socket's words, depending on when the poll met the shutdown
        reasons = ("connection refused", "terminated", "lost", "shutting down")
        assert any(reason in status(app) for reason in reasons), status(app)
        # Still up, still showing the last good sessions, the view as the operator left it.
        await keys_answer(pilot, app)
        await wait_for(pilot, lambda: "stale" in status(app), 5 * INTERVAL, "the stale mark")
        assert pids(app) == set(first.values()) and pg.selected.pid == first["in_tx"]
        assert (pg.filter_name, pg.sort_index, pg.text_filter) == view
        assert "unreachable" in screen_text(app)

        await asyncio.to_thread(fault_pg.start)
        pg_sessions.close_all()
        second = await open_workload(pg_sessions, server, "ic-stop")
        await wait_for(
            pilot, lambda: error(app) is None and set(second.values()) == pids(app), 20, "recovery"
        )
        assert (pg.filter_name, pg.sort_index, pg.text_filter) == view
        assert "stale" not in status(app) and "unreachable" not in status(app)
        assert [s.pid for s in pg._sessions.values()] == sorted(second.values())  # still by pid
        assert app.is_running


async def test_hung_backend_and_postmaster_time_out_while_keys_answer(tmp_path, fault_pg, pg_sessions):
    """SIGSTOP the console's own backend and the postmaster: the refresh hangs, the hard limit
    ends it, reconnecting hangs too (connect timeout); keys answer all along; SIGCONT recovers."""
    server = fault_pg.server
    config = console_config(
        tmp_path,
        refresh={"postgres": "0.5s"},
        postgres=[quiet_cluster("main", server.dsn(), connect_timeout=5, statement_timeout=0.5)],
    )
    workload = await open_workload(pg_sessions, server, "ic-hang")
    app = ConsoleApp(config)
    async with app.run_test(size=(160, 48)) as pilot:
        source = app.poller.sources["postgres:main"]
        await wait_for(pilot, lambda: set(workload.values()) <= pids(app), 15, "the workload on screen")
        backend = source.backend_pid
        assert backend is not None
        await goto_postgres(pilot, app)
        with fault_pg.frozen(backend, fault_pg.postmaster_pid()):
            hung = time.monotonic()
            await wait_for(pilot, lambda: "postgres:main" in app._inflight, 5, "a poll in flight")
            # Keys are handled while that poll is stuck on the stopped backend (its hard limit
            # is 7.5 s): the key did not wait for it.
            for _ in range(2):
                await keys_answer(pilot, app)
                await pilot.press("s")  # sorting works on the data already on screen
            assert "postgres:main" in app._inflight and error(app) is None, "the poll ended before the keys"
            assert time.monotonic() - hung < source.timeout
            await wait_for(pilot, lambda: error(app) is not None, source.timeout + 5, "the hard timeout")
            assert error(app).kind is ErrorKind.TIMEOUT and "no answer in" in error(app).reason
            assert set(workload.values()) <= pids(app)  # the last good data stays
            # The hung connection was dropped; a new one cannot even be opened.
            await wait_for(pilot, lambda: "could not connect in 5s" in status(app), 20, "the connect timeout")
            assert error(app).kind is ErrorKind.TIMEOUT
            await keys_answer(pilot, app)
        await wait_for(pilot, lambda: error(app) is None, 15, "recovery after SIGCONT")
        assert source.backend_pid not in (None, backend)
        rows = await server.fetch("SELECT pid FROM pg_stat_activity WHERE pid = $1", backend)
        deadline = time.monotonic() + 10
        while rows and time.monotonic() < deadline:  # the old backend sees its socket closed
            await asyncio.sleep(0.2)
            rows = await server.fetch("SELECT pid FROM pg_stat_activity WHERE pid = $1", backend)
        assert not rows, "the hung connection was left behind"
        assert app.is_running


async def test_slower_than_statement_timeout_keeps_the_connection_and_the_data(
    tmp_path, fault_pg, pg_sessions
):
    """The console's own statement waits behind a lock on pg_stat_statements (a view it reads):
    the server-side statement_timeout fires, the panel says so, the connection is kept."""
    server = fault_pg.server
    config = console_config(
        tmp_path,
        refresh={"postgres": "0.5s"},
        postgres=[quiet_cluster("main", server.dsn(), statement_timeout=0.4, lock_timeout=0)],
    )
    workload = await open_workload(pg_sessions, server, "ic-slow")
    app = ConsoleApp(config)
    async with app.run_test(size=(160, 48)) as pilot:
        source = app.poller.sources["postgres:main"]
        await wait_for(pilot, lambda: set(workload.values()) <= pids(app), 15, "the workload on screen")
        backend = source.backend_pid
        locker = await pg_sessions.open(server)
        await locker.execute("BEGIN; LOCK TABLE pg_stat_statements IN ACCESS EXCLUSIVE MODE")
        await wait_for(
            pilot, lambda: "statement_timeout (0.4s) reached" in status(app), 10, "the timeout line"
        )
        assert error(app).kind is ErrorKind.TIMEOUT
        assert set(workload.values()) <= pids(app)
        await locker.execute("ROLLBACK")
        await wait_for(pilot, lambda: error(app) is None, 10, "recovery")
        assert source.backend_pid == backend  # a server-side timeout costs no reconnect
        assert app.is_running


async def test_refusing_and_misconfigured_clusters_each_say_why(
    tmp_path, fault_pg, pg_server, private_pg, pg_roles, pg_sessions
):
    """Too many connections, a role without pg_monitor, a wrong password and an unresolvable
    host, at once: each panel says why in one line (no password anywhere), the others work,
    and the full server is read again as soon as a slot frees up."""
    filler = await pg_roles.create(fault_pg.server)
    fillers = []
    while True:  # take every slot a non-superuser may have
        try:
            fillers.append(await pg_sessions.open(fault_pg.server, user=filler))
        except Exception as exc:
            assert "too many clients" in str(exc) or "remaining connection slots" in str(exc), exc
            break
        assert len(fillers) < 30
    weak = await pg_roles.create(pg_server)
    other = await pg_sessions.open(pg_server, application_name="ic-other-role")
    asyncio.get_running_loop().create_task(
        other.execute("SELECT 'private text', pg_sleep(600)")
    ).add_done_callback(lambda t: t.cancelled() or t.exception())
    wrong = "wrong-canary-7Qx2"
    monitor = await pg_roles.create(fault_pg.server, monitor=True)
    config = console_config(
        tmp_path,
        refresh={"postgres": "0.5s"},
        postgres=[
            quiet_cluster("full", fault_pg.server.dsn(user=monitor), connect_timeout=2),
            quiet_cluster("weak", pg_server.dsn(user=weak)),
            quiet_cluster("badpw", private_pg.dsn(user=private_pg.password_user, password=wrong)),
            quiet_cluster(
                "nohost", "postgresql://postgres@nonexistent.invalid:5432/postgres", connect_timeout=2
            ),
        ],
    )
    app = ConsoleApp(config)
    async with app.run_test(size=(200, 60)) as pilot:
        panels = {p.cluster: p for p in app.panels if isinstance(p, PostgresPanel)}

        def line(cluster: str) -> str:
            return str(panels[cluster].status.render())

        expected = {
            "full": "unreachable: too many connections",
            "badpw": "auth failed: password authentication failed",
            "nohost": "unreachable: cannot resolve host",
        }
        await wait_for(pilot, lambda: all(text in line(c) for c, text in expected.items()), 20,
                       lambda: {c: line(c) for c in panels})  # fmt: skip
        await wait_for(
            pilot, lambda: error(app, "weak") is None and app.state.last_good.get("postgres:weak"), 10
        )
        weak_panel = panels["weak"]
        # Four clusters are tabs (README, the fleet view): the weak cluster's panel is drawn
        # when its tab is shown, as the operator would show it.
        app._activate(weak_panel)
        note = f"note: role {weak} is not a member of pg_monitor"
        await wait_for(pilot, lambda: note in str(weak_panel.summary.render()), 10, "the weak cluster's note")
        seen = {s.pid: s for s in weak_panel._sessions.values()}
        assert seen[other.get_server_pid()].query == "<insufficient privilege>"
        screen = screen_text(app)
        assert wrong not in screen and "private text" not in screen
        await keys_answer(pilot, app)

        for conn in fillers[:2]:  # two slots free up: the console gets one on its next poll
            conn.terminate()
        await wait_for(pilot, lambda: error(app, "full") is None, 15, "the full server read again")
        assert "too many" not in line("full")
        assert all(text in line(c) for c, text in expected.items() if c != "full")
        assert app.is_running


async def test_one_statement_run_by_two_roles_is_two_rows_not_a_crash(
    tmp_path, fault_pg, pg_sessions, pg_roles
):
    """pg_stat_statements keeps a row per (role, database, queryid): the same statement run by two
    roles is two rows with one queryid. Keyed by queryid alone, the statements table got a
    duplicate row key and the whole console died on its next repaint (KeyError in DataTable)."""
    server = fault_pg.server
    await server.execute("SELECT pg_stat_statements_reset()")
    for role in [await pg_roles.create(server), await pg_roles.create(server)]:
        conn = await pg_sessions.open(server, user=role)
        await conn.execute("SELECT pg_sleep(0.3)")
    config = console_config(
        tmp_path, refresh={"postgres": "0.3s"}, postgres=[quiet_cluster("main", server.dsn())]
    )
    app = ConsoleApp(config)
    async with app.run_test(size=(200, 60)) as pilot:
        pg = pg_panel(app)

        def sleeps() -> list:
            snap = app.state.last_good.get("postgres:main")
            return [s for s in snap.statements if "pg_sleep" in s.query] if snap else []

        await wait_for(pilot, lambda: len(sleeps()) == 2, 10, "both rows of the statement")
        assert sleeps()[0].queryid == sleeps()[1].queryid
        for _ in range(5):  # several repaints of the same data, and the app still runs
            await pilot.pause(0.35)
        shown = [str(pg.statements.get_row_at(i)[3]) for i in range(pg.statements.row_count)]
        assert sum("pg_sleep" in text for text in shown) == 2, shown
        assert app.is_running
