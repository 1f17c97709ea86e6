"""The real console on the real demo stack: the demo menu injects a fault, the breach shows, the
runbook's action (typed confirmation) fixes it through the executor, and the breach clears."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from console.app import ConsoleApp
from console.journal import Journal, read_journal
from console.loader import load_config
from panels.confirm import ConfirmScreen
from panels.demo_menu import DemoMenu
from panels.runbook import RunbookPicker, RunbookScreen
from tests.pilot import wait_for
from tests.test_ui_runbooks import goto_step, select_breach

pytestmark = pytest.mark.slow


async def test_demo_menu_fault_runbook_fix_and_clear(demo_stack, tmp_path):
    journal_path = tmp_path / "journal.jsonl"
    config = load_config(demo_stack.config_path)
    app = ConsoleApp(config, journal=Journal(journal_path), demo=demo_stack.control)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await pilot.press("D")
            menu = app.screen
            assert isinstance(menu, DemoMenu)
            table = menu.query_one("#demo-table")
            await wait_for(pilot, lambda: table.row_count > 0, what="scenarios listed")
            table.move_cursor(row=table.get_row_index("lock-contention"))
            await pilot.press("enter")
            await wait_for(pilot, lambda: menu.active.get("lock-contention") is True, 30, "fault on")
            await pilot.press("escape")

            def waiting() -> bool:
                return any(b.id == "postgres.demo.waiting" for b in app.state.breaches)

            await wait_for(pilot, waiting, 30, "lock breach on screen")
            await select_breach(pilot, app, "postgres.demo.waiting")
            await pilot.press("R")
            assert isinstance(app.screen, RunbookPicker)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, RunbookScreen), what="runbook screen")
            screen = app.screen
            assert screen.runbook.id == "lock-contention"
            await goto_step(pilot, screen, "terminate-root-blocker")
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "confirmation")
            dialog = app.screen
            assert dialog.typed and dialog.typed.isdigit()  # one root blocker: type its pid
            assert "(no rows)" not in str(dialog.plan)
            await pilot.press(*dialog.typed, "enter")
            status = screen.session.progress.status("terminate-root-blocker")
            await wait_for(pilot, lambda: status.state.value == "done", 30, "action done")
            await wait_for(pilot, lambda: not waiting(), 30, "lock breach cleared")
            assert isinstance(app.screen, RunbookScreen)
            await pilot.press("escape")
            assert app.screen is app.screen_stack[0]
    finally:
        demo_stack.control.reset()
    kinds = [e.kind for e in read_journal(journal_path).events]
    for kind in ("breach.start", "runbook.opened", "action.confirmed", "action.succeeded", "breach.end"):
        assert kind in kinds, kind


def test_q_in_the_demo_console_stops_the_whole_stack(tmp_path):
    """`incident-console demo` in a terminal: the console paints, `q` quits, no child is left."""
    import os
    import sys

    from tests.fixtures.demo import remove_stack_dir, stack_processes
    from tests.fixtures.faults import spawn_in_pty
    from tests.test_ui_terminal import ROOT, read_until, wait_exit

    state_dir = tmp_path / "demo"
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "console.cli", "demo", "--state-dir", str(state_dir)]
    pid, master = spawn_in_pty(argv, env, rows=40, cols=120)
    try:
        read_until(master, b"stack ready", timeout=60)
        read_until(master, b"Breaches", timeout=30)
        from console.demo.state import load_state_file

        state = load_state_file(state_dir) or {}
        groups = {c["pgid"] for c in state.get("children", {}).values() if c.get("pgid")}
        markers = [str(state_dir)] + (
            [state["postgres"]["dir"]] if state.get("postgres", {}).get("dir") else []
        )
        assert groups and stack_processes(markers, groups)  # the stack runs
        os.write(master, b"q")
        status, _ = wait_exit(pid, master, timeout=60)
        assert os.waitstatus_to_exitcode(status) == 0
        deadline = time.monotonic() + 15
        while (left := stack_processes(markers, groups)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, left
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
        remove_stack_dir(state_dir)  # and its cluster, in /tmp when the tests run as root


async def test_ack_is_a_real_silence_shown_from_alertmanager_and_un_ack_expires_it(demo_stack, tmp_path):
    config = load_config(demo_stack.config_path)
    am = config.prometheus.alertmanager_url
    # The journal of the demo's config, as `incident-console demo` opens it: in the state dir.
    app = ConsoleApp(config, demo=demo_stack.control)
    journal_path = app.journal.path
    users_journal = Path(os.environ["XDG_STATE_HOME"]) / "incident-console" / "journal.jsonl"
    assert journal_path == demo_stack.state_dir / "journal.jsonl"
    demo_stack.control.inject("error-spike")
    try:
        async with app.run_test(size=(160, 48)) as pilot:

            def alert_id() -> str | None:
                return next((b.id for b in app.state.breaches if b.title == "HighErrorRate"), None)

            await wait_for(pilot, lambda: alert_id() is not None, 60, "HighErrorRate on screen")
            breach_id = alert_id()
            await select_breach(pilot, app, breach_id)
            await pilot.press("a")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "ack dialog")
            assert "alertname=HighErrorRate" in str(app.screen.plan)
            await pilot.click("#confirm")
            table = app.panels[0].table

            def state_cell() -> str:
                return str(table.get_row(breach_id)[1]) if breach_id in app.panels[0]._breaches else ""

            # The ack is read back from Alertmanager's silences, not remembered by this console.
            await wait_for(pilot, lambda: "acked →" in state_cell(), 30, "ack shown from Alertmanager")
            silences = httpx.get(f"{am}/api/v2/silences").json()
            active = [s for s in silences if s["status"]["state"] == "active"]
            assert len(active) == 1 and active[0]["createdBy"].startswith(app.journal.operator.user)

            await pilot.press("A")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 20, "un-ack dialog")
            await pilot.click("#confirm")
            await wait_for(pilot, lambda: "acked" not in state_cell(), 30, "ack gone")
            expired = httpx.get(f"{am}/api/v2/silence/{active[0]['id']}").json()
            assert expired["status"]["state"] == "expired"
    finally:
        demo_stack.control.reset()
    ours = [e for e in read_journal(journal_path).events if e.get("console") == app.journal.console]
    assert [e.kind for e in ours].count("action.succeeded") == 2
    assert {e.get("environment") for e in ours} == {"demo"}
    assert not users_journal.exists()  # the demo never writes the operator's own journal
