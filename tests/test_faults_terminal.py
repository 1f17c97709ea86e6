"""The terminal misbehaves: resized to 20x5 and back (in Pilot and in a real pty with SIGWINCH),
and the console is stopped (SIGTERM) or loses its terminal (SIGHUP) while an action runs. The
console keeps working at any size, and the journal says what happened to the action.

(SIGHUP, SIGTERM and a closed terminal while idle: tests/test_ui_terminal.py.)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from console.app import ConsoleApp
from console.audit import read_journal
from panels.confirm import ConfirmScreen
from panels.detail import DetailScreen
from panels.postgres import PostgresPanel
from tests import ui_data
from tests.fixtures.faults import read_for, screen_text, set_size, start_console, wait_for
from tests.test_ui_terminal import read_until, wait_exit

# Under a pytest-xdist worker the console in these ptys never showed its data (4 of 5 failed,
# alone too); not yet understood, so they run in the main pytest process (make test).
pytestmark = pytest.mark.serial

# --- 20x5 and back ---------------------------------------------------------------------------


async def test_resized_to_20x5_and_back_keeps_working(tmp_path):
    config = ui_data.config(journal=str(tmp_path / "journal.jsonl"))
    app = ConsoleApp(config, poller=ui_data.poller(config), clock=lambda: ui_data.NOW, autopoll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        pg = next(p for p in app.panels if isinstance(p, PostgresPanel))
        wide = screen_text(app)
        assert "Postgres main" in wide and not app.narrow

        await pilot.resize_terminal(20, 5)
        await pilot.pause()
        assert app.narrow and app.size == (20, 5)
        tiny = screen_text(app).splitlines()
        assert len(tiny) == 5 and all(len(line) <= 20 for line in tiny)
        # Every key still works at 20x5: panels, a filter, the detail view, a dialog, help.
        for _ in app.panels:
            if pg.has_class("-active"):
                break
            await pilot.press("tab")
            await pilot.pause()
        assert pg.has_class("-active")
        await pilot.press("a", "s", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), 5, "a detail view at 20x5")
        await pilot.press("escape", "c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "a dialog at 20x5")
        await pilot.resize_terminal(20, 4)  # even smaller, with the dialog open
        await pilot.pause()
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.screen_stack[0], 5, "the dialog to close")
        app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=ui_data.NOW + 2)))
        await pilot.press("question_mark", "escape")

        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert not app.narrow and app.size == (160, 48)
        assert pg.filter_name == "active" and pg.sort_index == 1  # what was set at 20x5 stayed
        back = screen_text(app)
        assert "Postgres main" in back and "Breaches & alerts" in back and "Health" in back
        assert all(p.region.height > 2 for p in app.panels)  # every panel has its room again
        assert app.is_running


def test_a_real_terminal_shrunk_to_20x5_and_back(tmp_path):
    """SIGWINCH from a real pty: the console repaints at each size and stays up."""
    config = tmp_path / "console.yaml"
    config.write_text(yaml.safe_dump({"environment": {"name": "winch"}, "journal": str(tmp_path / "j.jsonl"),
                                      "health": [{"name": "gone", "url": "http://127.0.0.1:9/"}]}))  # fmt: skip
    pid, master = start_console(config, rows=24, cols=80)
    try:
        read_until(master, b"Breaches")
        for rows, cols in ((5, 20), (3, 10), (5, 20), (24, 80), (60, 200)):
            set_size(master, rows, cols)
            os.kill(pid, signal.SIGWINCH)  # what the kernel sends with TIOCSWINSZ; twice is harmless
            painted = read_for(master, 1.0)
            assert painted, f"no repaint at {cols}x{rows}"
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), f"exited at {cols}x{rows}"
        assert b"Health" in read_for(master, 1.5) + painted  # the wide layout is back
        os.kill(pid, signal.SIGTERM)
        status, _ = wait_exit(pid, master)
    finally:
        os.close(master)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM, status


# --- stopped in the middle of an action ------------------------------------------------------

SLEEP = "37.25"  # an odd duration: the action's process is found by its command line

RUNBOOK = {
    "id": "slow-fix",
    "title": "Slow fix",
    "triggers": {"health": ["down"]},
    "steps": [
        {"id": "fix", "title": "Run the slow fix", "action": {"argv": ["sleep", SLEEP], "timeout": "60s"}}
    ],
}


def sleepers() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == f"sleep\0{SLEEP}\0".encode():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "close the terminal"])
def test_stopped_during_an_action_leaves_a_consistent_journal(tmp_path, http_server, how):
    http_server.route("/down", status=503, json={"status": "fail", "output": "down for the test"})
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "slow-fix.yaml").write_text(yaml.safe_dump(RUNBOOK))
    journal = tmp_path / "journal.jsonl"
    config = tmp_path / "console.yaml"
    config.write_text(yaml.safe_dump({
        "environment": {"name": "stop-test"}, "journal": str(journal), "runbooks_dir": str(tmp_path / "runbooks"),
        "ui": {"bell": False}, "refresh": {"health": "0.5s"},
        "health": [{"name": "down", "url": http_server.url("/down")}],
    }))  # fmt: skip
    pid, master = start_console(config, rows=40, cols=140)
    try:
        read_until(master, b"down for the test", timeout=30)
        steps = ((b"R", b"Slow fix"), (b"\r", b"Run the slow fix"), (b"x", b"Cancel"))
        for key, shown in steps:
            os.write(master, key)
            read_until(master, shown, timeout=15)
        os.write(master, b"\t")  # from Cancel (the default) to Run
        read_for(master, 0.5)
        os.write(master, b"\r")
        deadline = time.monotonic() + 15
        while not sleepers() and time.monotonic() < deadline:
            read_for(master, 0.2)
        assert sleepers(), "the action did not start"
        assert "action.confirmed" in [e.kind for e in read_journal(journal).events]
        if how == "close the terminal":  # the SSH connection drops: the kernel hangs up the tty
            os.close(master)
            master = None
            status, _ = wait_exit(pid, None)
        else:
            os.kill(pid, getattr(signal, how))
            status, _ = wait_exit(pid, master)
    finally:
        if master is not None:
            os.close(master)
    code = 128 + (signal.SIGHUP if how == "close the terminal" else getattr(signal, how))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == code, status
    read = read_journal(journal)
    assert read.skipped == 0 and not read.partial_tail and not read.error  # every line whole
    kinds = [e.kind for e in read.events]
    assert kinds.index("action.confirmed") < kinds.index("action.failed"), kinds
    ended = next(e for e in read.events if e.kind == "action.failed")
    assert ended.get("result") == "cancelled" and "may have taken effect" in ended.get("message")
    assert ended.get("runbook") == "slow-fix"
    deadline = time.monotonic() + 5
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sleepers(), "the action's process outlived the console"
