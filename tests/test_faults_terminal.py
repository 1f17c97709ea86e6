"""The terminal misbehaves: resized to 20x5 and back (in Pilot and in a real pty with SIGWINCH),
the console is stopped (SIGTERM) or loses its terminal (SIGHUP) while an action runs, and it
loses its terminal with no SIGHUP at all (issue 15: under ``make``, or with the pty not its
controlling terminal, only EOF/EIO on the tty says so). The console keeps working at any size,
ends when its terminal is gone, and the journal says what happened to the action.

(SIGHUP, SIGTERM and a closed terminal while idle: tests/test_ui_terminal.py.)
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from console.app import ConsoleApp
from console.demo.state import load_state_file
from console.journal import read_journal
from panels.confirm import ConfirmScreen
from panels.detail import DetailScreen
from panels.postgres import PostgresPanel
from tests import ui_data
from tests.fixtures.demo import new_state_dir, remove_stack_dir, stack_processes
from tests.fixtures.faults import ROOT, read_for, screen_text, set_size, spawn_in_pty, start_console, wait_for
from tests.test_ui_terminal import read_until, wait_exit

# These measure a console's CPU and exit times, so they run alone in the main pytest process
# (make test's serial phase). They pass under xdist too since spawn_in_pty leaves the workers'
# COLUMNS/LINES out of the child's environment (they made the console 80x24 whatever the pty).
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


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "close the terminal", "close the terminal, no SIGHUP"])
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
    if how == "close the terminal, no SIGHUP":
        pid, master = start_detached(console_argv(config), rows=40, cols=140)
    else:
        pid, master = start_console(config, rows=40, cols=140)
    try:
        read_until(master, b"down for the test", timeout=30)
        steps = ((b"R", b"Slow fix"), (b"\r", b"Run the slow fix"), (b"x", b"Don't run"))
        for key, shown in steps:
            os.write(master, key)
            read_until(master, shown, timeout=15)
        os.write(master, b"\t")  # from "Don't run" (the default) to Run
        read_for(master, 0.5)
        os.write(master, b"\r")
        deadline = time.monotonic() + 15
        while not sleepers() and time.monotonic() < deadline:
            read_for(master, 0.2)
        assert sleepers(), "the action did not start"
        assert "action.confirmed" in [e.kind for e in read_journal(journal).events]
        if how.startswith("close the terminal"):  # the SSH connection drops: the kernel hangs up the tty
            os.close(master)
            master = None
            status, _ = wait_exit(pid, None)
        else:
            os.kill(pid, getattr(signal, how))
            status, _ = wait_exit(pid, master)
    finally:
        if master is not None:
            os.close(master)
    code = 128 + (signal.SIGHUP if how.startswith("close the terminal") else getattr(signal, how))
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


# --- a lost terminal without SIGHUP (issue 15) -----------------------------------------------
#
# The kernel sends SIGHUP for a hung-up tty to the session leader only. Under `make` (tmux
# new-session "make demo", then kill-session), make is the leader: it gets SIGHUP and waits for
# its child, and the console only ever sees EOF (or EIO) on its terminal. Before the fix,
# Textual's input thread looped on read() == 0 at ~100 % of a core, its writer thread died on
# the first EIO and, 30 writes later, the event loop blocked for good putting output on that
# thread's queue: SIGTERM (an event-loop signal handler) was ignored, only SIGKILL ended it.

EXIT_WITHIN = 2.0  # seconds from the lost terminal to the process gone (the promise)
SPIN_CPU = 1.0  # CPU seconds a process may use meanwhile; a spinning thread burns ~0.9 s a second


def console_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "console.cli", "run", "--config", str(config)]


def child_env() -> dict[str, str]:
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    # MAKE*: when the suite itself runs under make; COLUMNS/LINES: an xdist worker's (80x24),
    # which would override the pty's size (spawn_in_pty drops them too; start_detached needs it)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "COLUMNS", "LINES"):
        env.pop(name, None)
    return env


def start_detached(argv: list[str], *, rows: int = 24, cols: int = 80) -> tuple[int, int]:
    """``argv`` in a session of its own with a pty as stdin, stdout and stderr but not as its
    controlling terminal: when the master closes, the kernel sends nobody SIGHUP."""
    master, slave = os.openpty()  # the slave is opened with O_NOCTTY
    set_size(master, rows, cols)
    env = child_env()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setsid()  # a new session with no controlling terminal
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.close(slave)
            os.close(master)
            os.chdir(ROOT)
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(slave)
    return pid, master


def start_under_make(tmp_path: Path, argv: list[str], *, rows: int = 24, cols: int = 80) -> tuple[int, int]:
    """``make`` as the session leader of a pty (its controlling terminal), running ``argv`` as
    its recipe, as ``tmux new-session "make demo"`` does. Returns make's pid and the master."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    makefile = tmp_path / "Makefile"
    makefile.write_text(f".PHONY: console\nconsole:\n\texec {shlex.join(argv)}\n")
    return spawn_in_pty([make, "-s", "-f", str(makefile), "console"], child_env(), rows=rows, cols=cols)


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (state is [0], ppid [1]); None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def cpu_seconds(pid: int) -> float | None:
    stat = proc_stat(pid)
    if stat is None or stat[0] == "Z":
        return None
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name))) and int(stat[1]) == pid:
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid``: pid -> start time (a pid reused later is another process)."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if (stat := proc_stat(child)) is not None:
                found[child] = stat[19]
                todo.append(child)
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    return [
        pid for pid, start in processes.items() if (s := proc_stat(pid)) and s[0] != "Z" and s[19] == start
    ]


def the_child(parent: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := children(parent):
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no child of {parent} within {timeout:g}s")


def close_and_watch(master: int, pid: int, timeout: float = 10.0) -> tuple[float | None, float]:
    """Close the pty master (the terminal is gone); return the seconds until ``pid`` is gone
    (None if it is still there after ``timeout``) and the CPU seconds it used meanwhile."""
    before = last = cpu_seconds(pid)
    assert before is not None, "the console is not running"
    os.close(master)
    closed = time.monotonic()
    while time.monotonic() - closed < timeout:
        cpu = cpu_seconds(pid)
        if cpu is None:
            return time.monotonic() - closed, last - before
        last = cpu
        time.sleep(0.02)
    return None, last - before


def assert_ended_in_time(gone_after: float | None, cpu: float) -> None:
    print(f"gone {gone_after}s after the close, {cpu:.2f} CPU seconds meanwhile")  # pytest -s
    assert gone_after is not None, (
        f"still running {EXIT_WITHIN + 3:g}s after its terminal closed (CPU {cpu:.2f}s)"
    )
    assert gone_after < EXIT_WITHIN, f"exited {gone_after:.2f}s after its terminal closed"
    assert cpu < SPIN_CPU, f"{cpu:.2f} CPU seconds between the close and the exit"


def kill_and_reap(*pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # our own children only; a grandchild is reaped by its parent


def reap(pid: int, timeout: float = 10.0) -> int | None:
    """Wait for our child ``pid`` (bounded); its status, or None after a SIGKILL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    kill_and_reap(pid)
    return None


def small_config(tmp_path: Path) -> Path:
    config = tmp_path / "console.yaml"
    config.write_text(yaml.safe_dump({"environment": {"name": "no-sighup"}, "journal": str(tmp_path / "j.jsonl"),
                                      "ui": {"bell": False},
                                      "health": [{"name": "gone", "url": "http://127.0.0.1:9/"}]}))  # fmt: skip
    return config


def test_a_lost_terminal_without_sighup_ends_the_console_started_directly(tmp_path):
    """The pty is not the console's controlling terminal: closing it sends no SIGHUP, only EOF.
    Before the fix the console spun (1.8 CPU seconds in 2 s) and never exited."""
    pid, master = start_detached(console_argv(small_config(tmp_path)))
    try:
        read_until(master, b"Breaches", timeout=30)
        read_for(master, 0.5)
        gone_after, cpu = close_and_watch(master, pid, timeout=EXIT_WITHIN + 3)
        master = None
        status = reap(pid)
    finally:
        if master is not None:
            os.close(master)
        kill_and_reap(pid)
    assert_ended_in_time(gone_after, cpu)
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGHUP, (
        status
    )


def test_a_lost_terminal_without_sighup_ends_the_console_under_make(tmp_path):
    """tmux new-session "make ..." then kill-session: make gets SIGHUP and waits for the console,
    which gets none. Before the fix the console spun and make with it; now both end."""
    make, master = start_under_make(tmp_path, console_argv(small_config(tmp_path)))
    console = None
    try:
        read_until(master, b"Breaches", timeout=30)
        console = the_child(make)
        read_for(master, 0.5)
        gone_after, cpu = close_and_watch(master, console, timeout=EXIT_WITHIN + 3)
        master = None
        make_status = reap(make)
    finally:
        if master is not None:
            os.close(master)
        if console is not None and alive(console):
            os.kill(console, signal.SIGKILL)
        kill_and_reap(make)
    assert_ended_in_time(gone_after, cpu)
    assert make_status is not None, "make did not end after the console"


@pytest.mark.slow
def test_a_lost_terminal_without_sighup_ends_the_demo_under_make_and_stops_its_stack(tmp_path):
    """``make demo`` in a tmux session that is killed: the console ends, the stack it started
    (Postgres, Prometheus, Alertmanager, the services, the agent) is gone, and so is make."""
    state_dir = new_state_dir("ic-demo-nohup-")
    argv = [sys.executable, "-m", "console.cli", "demo", "--state-dir", str(state_dir), "--no-load"]
    make, master = start_under_make(tmp_path, argv, rows=40, cols=120)
    console, stack, markers, groups = None, {}, [str(state_dir)], set()
    try:
        read_until(master, b"Breaches", timeout=90)
        console = the_child(make)
        state = load_state_file(state_dir) or {}
        if state.get("postgres", {}).get("dir"):
            markers.append(str(state["postgres"]["dir"]))
        groups = {c["pgid"] for c in state.get("children", {}).values() if c.get("pgid")}
        stack = descendants(console)
        assert len(stack) >= 6, f"the stack is not running: {stack}"
        read_for(master, 0.5)
        gone_after, cpu = close_and_watch(master, console, timeout=EXIT_WITHIN + 3)
        master = None
        waited = time.monotonic()
        while (still_running(stack) or stack_processes(markers, groups)) and time.monotonic() < waited + 20:
            time.sleep(0.1)
        left = still_running(stack)
        left_named = stack_processes(markers, groups)
        stack_gone = (gone_after or 0) + time.monotonic() - waited
        print(f"the stack ({len(stack)} processes) gone {stack_gone:.2f}s after the close")
        make_status = reap(make)
    finally:
        if master is not None:
            os.close(master)
        if console is not None and alive(console):
            os.kill(console, signal.SIGKILL)  # the supervisor follows (parent-death signal)
        kill_and_reap(make)
        deadline = time.monotonic() + 20
        while (still_running(stack) or stack_processes(markers, groups)) and time.monotonic() < deadline:
            time.sleep(0.1)
        remove_stack_dir(state_dir)  # and its Postgres cluster (in /tmp as root)
    assert_ended_in_time(gone_after, cpu)
    assert not left and not left_named, f"left of the stack: {left} {left_named}"
    assert make_status is not None, "make did not end after the console"


def test_stdin_at_eof_that_is_not_a_terminal_neither_spins_nor_stops_sigterm(tmp_path):
    """stdin is /dev/null (not a terminal: nothing was lost, there is just no input), the
    screen a pty: the console keeps running without spinning, and SIGTERM ends it."""
    config = small_config(tmp_path)
    pid, master = spawn_in_pty(console_argv(config), child_env(), stdin_null=True)
    try:
        read_until(master, b"Breaches", timeout=30)
        read_for(master, 0.5)
        before = cpu_seconds(pid)
        painted = read_for(master, 2.0)
        after = cpu_seconds(pid)
        assert before is not None and after is not None, "the console ended with no input"
        assert after - before < SPIN_CPU, f"{after - before:.2f} CPU seconds in 2 s with stdin at EOF"
        assert painted, "no repaint in 2 s"  # the header's clock still ticks
        os.kill(pid, signal.SIGTERM)
        status, _ = wait_exit(pid, master, timeout=EXIT_WITHIN + 3)
    finally:
        os.close(master)
        kill_and_reap(pid)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM, status


STUCK_CONSOLE = """
import sys, threading
from console.app import ConsoleApp
from console.loader import load_config


class Stuck(ConsoleApp):
    def on_mount(self):
        super().on_mount()
        # Once painted, the event loop blocks for good, as it did on the dead terminal's queue.
        self.set_timer(1.0, lambda: threading.Event().wait())


sys.exit(Stuck(load_config(sys.argv[1])).run())
"""


def test_sigterm_ends_the_console_even_when_its_event_loop_is_stuck(tmp_path):
    """SIGTERM always ends the process: with the event loop blocked (Textual 8.2's writer queue
    did it after a lost terminal), a handler run by the loop never ran and SIGTERM was ignored."""
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_CONSOLE)
    config = small_config(tmp_path)
    pid, master = spawn_in_pty([sys.executable, str(script), str(config)], child_env())
    try:
        read_until(master, b"Breaches", timeout=30)
        read_for(master, 2.0)  # the timer has fired: the loop is stuck
        sent = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        status, _ = wait_exit(pid, master, timeout=EXIT_WITHIN + 3)
        took = time.monotonic() - sent
    finally:
        os.close(master)
        kill_and_reap(pid)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM, status
    assert took < EXIT_WITHIN + 0.5, f"SIGTERM took {took:.2f}s"
