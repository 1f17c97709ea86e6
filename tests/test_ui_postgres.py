"""The real app against a real Postgres: the lock tree on screen, hostile session text inert."""

from __future__ import annotations

import asyncio

from console.app import ConsoleApp
from console.config import Config
from panels.postgres import PostgresPanel
from tests.pilot import wait_for

HOSTILE = "[/foo] [@click=app.quit] [$accent]x[/] \x1b[31mred\x1b]0;title\x07 \u202eevil"


def config_for(server, **thresholds) -> Config:
    quiet = {
        "connections": None,
        "long_running": None,
        "idle_in_transaction": None,
        "mean_statement_time": None,
    }
    return Config.model_validate(
        {
            "environment": {"name": "ui-test"},
            "refresh": {"postgres": "0.3s"},
            "ui": {"bell": False},
            "postgres": [{"name": "main", "dsn": server.dsn(), "thresholds": {**quiet, **thresholds}}],
        }
    )


async def test_real_lock_chain_shows_as_a_tree_on_screen(pg_server, pg_lock_chain):
    chain = await pg_lock_chain()
    app = ConsoleApp(config_for(pg_server, waiting={"critical": 1}))
    async with app.run_test(size=(200, 60)) as pilot:
        pg = next(p for p in app.panels if isinstance(p, PostgresPanel))

        def tree_text() -> str:
            return str(pg.locks.render())

        await wait_for(pilot, lambda: f"pid {chain.third}" in tree_text())
        lines = tree_text().splitlines()
        root = next(i for i, line in enumerate(lines) if line.startswith(f"pid {chain.holder} "))
        assert "holds locks" in lines[root]
        assert lines[root + 1].startswith(f"└─ pid {chain.second} ") and "waits ShareLock" in lines[root + 1]
        assert lines[root + 2].startswith(f"   └─ pid {chain.third} ") and "ExclusiveLock" in lines[root + 2]
        assert chain.table in lines[root + 1]
        # the new text's height is laid out on a later refresh of a busy machine
        await wait_for(
            pilot,
            lambda: any(f"pid{space}{chain.second}" in app.export_screenshot() for space in ("&#160;", " ")),
            what="the tree on the screen",
        )
        await wait_for(
            pilot, lambda: any(b.id == "postgres.main.waiting" for b in app.state.breaches), what="the breach"
        )
        await chain.release()
        await wait_for(pilot, lambda: "no session is waiting on a lock" in tree_text())


async def test_hostile_query_and_application_name_render_literally_and_act_on_nothing(pg_server, pg_sessions):
    hostile = await pg_sessions.open(application_name=HOSTILE)
    pid = hostile.get_server_pid()
    running = asyncio.create_task(
        hostile.execute(f"SELECT '{HOSTILE.replace(chr(39), chr(39) * 2)}', pg_sleep(30)")
    )
    try:
        app = ConsoleApp(config_for(pg_server))
        async with app.run_test(size=(200, 60)) as pilot:
            pg = next(p for p in app.panels if isinstance(p, PostgresPanel))
            await wait_for(
                pilot, lambda: any(s.pid == pid and "pg_sleep" in s.query for s in pg._sessions.values())
            )
            await pilot.press("tab", "tab")  # focus the sessions table
            row = pg.sessions.get_row_index(next(k for k, s in pg._sessions.items() if s.pid == pid))
            pg.sessions.move_cursor(row=row)
            await pilot.pause()
            cells = [str(c) for c in pg.sessions.get_row_at(row)]
            assert any("[@click=app.quit]" in c for c in cells), cells
            assert not any("\x1b" in c or "\u202e" in c for c in cells)
            # Click every cell of the hostile row: as markup, [@click=app.quit] would quit the app.
            region = pg.sessions.region
            y = region.y + 1 + row - int(pg.sessions.scroll_y)
            for x in range(region.x, region.x + region.width, 3):
                await pilot.click(offset=(x, y))
            await pilot.press("enter")
            text = app.screen.query_one("TextArea").text
            assert "[/foo] [@click=app.quit] [$accent]x[/]" in text and "␛[31mred" in text
            await pilot.press("escape")
            assert app.is_running
    finally:
        running.cancel()


async def test_terminate_from_the_sessions_table_goes_through_the_executor(pg_server, pg_sessions, tmp_path):
    from console.journal import Journal, read_journal
    from panels.confirm import ConfirmScreen

    victim = await pg_sessions.open(application_name="ic-ui-victim")
    pid = victim.get_server_pid()
    await victim.execute("BEGIN; SELECT 1")  # idle in transaction: something worth ending
    journal_path = tmp_path / "journal.jsonl"
    app = ConsoleApp(config_for(pg_server), journal=Journal(journal_path))
    async with app.run_test(size=(200, 60)) as pilot:
        pg = next(p for p in app.panels if isinstance(p, PostgresPanel))
        await wait_for(pilot, lambda: any(s.pid == pid for s in pg._sessions.values()))
        await pilot.press("tab", "tab")
        pg.sessions.focus()
        pg.sessions.move_cursor(
            row=pg.sessions.get_row_index(next(k for k, s in pg._sessions.items() if s.pid == pid))
        )
        await pilot.pause()
        await pilot.press("K")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.screen.typed == str(pid) and f"pid {pid}" in str(app.screen.plan)
        await pilot.press(*str(pid), "enter")

        def gone() -> bool:
            return not any(s.pid == pid for s in pg._sessions.values())

        await wait_for(pilot, gone)
    probe = await pg_server.connect()
    try:
        assert await probe.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid) == 0
    finally:
        await probe.close()
    kinds = [e.kind for e in read_journal(journal_path).events]
    assert kinds.index("action.confirmed") < kinds.index("action.succeeded")
    done = next(e for e in read_journal(journal_path).events if e.kind == "action.succeeded")
    assert done.get("data")["signalled"] == [pid]


async def test_terminating_a_session_that_ended_asks_nothing_and_says_why(pg_server, pg_sessions, tmp_path):
    """K on a row of a paused screen whose session has ended since: no dialog asks to type its
    pid for nothing; the refusal is shown and journaled, and nothing is signalled."""
    from console.journal import Journal, read_journal
    from panels.confirm import ConfirmScreen

    victim = await pg_sessions.open(application_name="ic-ui-gone")
    pid = victim.get_server_pid()
    await victim.execute("BEGIN; SELECT 1")
    journal_path = tmp_path / "journal.jsonl"
    app = ConsoleApp(config_for(pg_server), journal=Journal(journal_path))
    async with app.run_test(size=(200, 60)) as pilot:
        pg = next(p for p in app.panels if isinstance(p, PostgresPanel))
        await wait_for(pilot, lambda: any(s.pid == pid for s in pg._sessions.values()))
        await pilot.press("p")  # paused: the row stays as the operator saw it
        await wait_for(pilot, lambda: app.paused, what="paused")
        pg.sessions.focus()
        pg.sessions.move_cursor(
            row=pg.sessions.get_row_index(next(k for k, s in pg._sessions.items() if s.pid == pid))
        )
        await pilot.pause()
        victim.terminate()
        probe = await pg_server.connect()
        try:
            for _ in range(100):  # the backend leaves pg_stat_activity a moment after its client
                if not await probe.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"pid {pid} still in pg_stat_activity")
        finally:
            await probe.close()
        assert any(s.pid == pid for s in pg._sessions.values())  # still on screen

        await pilot.press("K")

        def refused() -> list:
            return [e for e in read_journal(journal_path).events if e.kind == "action.refused"]

        await wait_for(pilot, lambda: refused() or isinstance(app.screen, ConfirmScreen), what="an answer")
        assert not isinstance(app.screen, ConfirmScreen)
        assert refused()[0].get("message").startswith(f"nothing to do: pid {pid} is no longer the session")
        await wait_for(
            pilot,
            lambda: any("no longer the session" in str(n.message) for n in app._notifications),
            what="the refusal on screen",
        )
    assert "action.confirmed" not in [e.kind for e in read_journal(journal_path).events]


async def test_the_wait_column_names_what_a_session_waits_on_not_an_idle_session_waiting_for_its_client(
    pg_server, pg_sessions, pg_lock_chain
):
    """Every idle row read "Client:ClientRead", which is what idle means: at 80 columns it took
    the query's room. A lock wait still reads as such; the detail view keeps the raw event."""
    chain = await pg_lock_chain()
    idle = await pg_sessions.open()
    app = ConsoleApp(config_for(pg_server))
    async with app.run_test(size=(200, 60)) as pilot:
        pg = next(p for p in app.panels if isinstance(p, PostgresPanel))
        pids = {idle.get_server_pid(), chain.holder, chain.second}

        def waits() -> dict[int, str]:
            shown = {k: s.pid for k, s in pg._sessions.items() if s.pid in pids}
            column = pg.sessions.shown_columns.index("wait")
            return {pid: str(pg.sessions.get_row(key)[column]) for key, pid in shown.items()}

        await wait_for(pilot, lambda: len(waits()) == 3, what="the three sessions")
        sessions = {s.pid: s for s in pg._sessions.values()}
        assert (sessions[chain.holder].wait_event_type, sessions[chain.holder].wait_event) == (
            "Client",
            "ClientRead",
        )
        assert waits() == {idle.get_server_pid(): "", chain.holder: "", chain.second: "Lock:transactionid"}
