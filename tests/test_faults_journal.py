"""The journal cannot be written (read-only filesystem, disk full) and the operator asks for an
action in the live console: nothing runs unrecorded, and the console says why, on screen.

The executor's side of it (every kind of unwritable journal, a filesystem that fills up
between the confirmation and the result) is tested in tests/test_actions.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.app import ConsoleApp
from console.journal import JournalError
from panels.confirm import ConfirmScreen
from panels.postgres import PostgresPanel
from tests.fixtures.faults import console_config, quiet_cluster, wait_for


@contextlib.contextmanager
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on a read-only filesystem (a tmpfs mounted ro; needs root)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("where", ["read-only filesystem", "disk full"])
async def test_an_action_with_an_unwritable_journal_does_not_run_and_says_why(
    tmp_path, fault_pg, pg_sessions, where
):
    with contextlib.ExitStack() as stack:
        if where == "disk full":
            journal, reason = "/dev/full", "No space left on device"
        else:
            journal, reason = (
                str(stack.enter_context(read_only_dir(tmp_path)) / "journal.jsonl"),
                "Read-only file system",
            )
        victim = await pg_sessions.open(fault_pg.server, application_name="ic-journal-victim")
        running = asyncio.create_task(victim.execute("SELECT pg_sleep(60)"))
        config = console_config(
            tmp_path, environment={"name": "journal", "production": False}, journal=journal,
            refresh={"postgres": "0.5s"}, postgres=[quiet_cluster("main", fault_pg.server.dsn())],
        )  # fmt: skip
        app = ConsoleApp(config)
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                pg = next(p for p in app.panels if isinstance(p, PostgresPanel))
                pid = victim.get_server_pid()
                await wait_for(pilot, lambda: any(s.pid == pid and s.state == "active" for s in pg._sessions.values()),
                               15, "the victim session")  # fmt: skip
                key = next(k for k, s in pg._sessions.items() if s.pid == pid)
                pg.sessions.focus()
                pg.sessions.move_cursor(row=pg.sessions.get_row_index(key))
                await pilot.pause()
                await pilot.press("c")
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the confirmation")
                await pilot.click("#confirm")

                def told() -> list[str]:
                    return [
                        str(n.message)
                        for n in app._notifications
                        if "cannot write the journal" in str(n.message)
                    ]

                await wait_for(
                    pilot, lambda: any("not run" in m for m in told()), 10, "the refusal on screen"
                )
                assert any(reason in m and journal in m for m in told()), told()
                # A full disk shows only at a write: from then on the header says so too.
                await wait_for(pilot, lambda: "NO JOURNAL" in app.header.compose_line(app.clock()).plain,
                               5, "NO JOURNAL in the header")  # fmt: skip
                await asyncio.sleep(1.0)
                assert not running.done(), "the query was cancelled although nothing could record it"
                assert app.is_running
        finally:
            running.cancel()


def test_a_journal_configured_as_a_device_is_not_read_without_end():
    """/dev/full as the journal (the disk-full case above): what reads the journal back (who holds
    a claim, what another console just ran) got an endless stream of zeros and the process was
    killed for memory. A journal that is not a regular file reads as an error, at once."""
    from console.journal import read_journal

    for device in ("/dev/full", "/dev/zero"):
        read = read_journal(device)
        assert read.events == () and read.error == f"cannot read {device}: not a regular file"


def test_the_probe_names_what_stops_the_journal_and_writes_nothing(tmp_path):
    """Before the first event, what would stop the journal is found without writing it: an
    action asked for at 3 a.m. should not be the first to learn that nothing can be recorded."""
    from console.journal import Journal, Note

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    (tmp_path / "a-directory").mkdir()
    cases = {
        blocker / "sub" / "journal.jsonl": f"{blocker} is not a directory",
        tmp_path / "a-directory": "Is a directory",
    }
    with read_only_dir(tmp_path) as mount:
        cases[mount / "state" / "journal.jsonl"] = f"{mount} is on a read-only file system"
        for path, reason in cases.items():
            journal = Journal(path)
            assert journal.probe() == f"cannot write the journal {path}: {reason}"
            assert journal.problem == journal.probe()

    fresh = tmp_path / "new" / "deeper" / "journal.jsonl"
    assert Journal(fresh).probe() == ""
    assert not (tmp_path / "new").exists(), "the probe made a directory"
    existing = tmp_path / "journal.jsonl"
    existing.write_bytes(b'{"ts": "x"}\n')
    before = existing.stat()
    assert Journal(existing).probe() == ""
    after = existing.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    # The problem stands until a write succeeds (or a probe finds nothing in the way).
    journal = Journal(blocker / "journal.jsonl")
    assert journal.probe()
    blocker.unlink()
    journal.append(Note(text="the directory is back"))
    assert journal.problem == ""
    blocker.mkdir(exist_ok=True)
    (blocker / "journal.jsonl").unlink()
    (blocker / "journal.jsonl").mkdir()
    with pytest.raises(JournalError):
        journal.append(Note(text="not written"))
    assert journal.problem == f"cannot write the journal {blocker / 'journal.jsonl'}: Is a directory"


async def test_a_journal_that_cannot_be_written_shows_in_the_header_until_it_can(tmp_path, monkeypatch):
    """Once the first data is drawn the console probes its journal: one that cannot be written
    is told at once (a toast) and stays in the header as NO JOURNAL, because every action will
    be refused; it goes once a probe finds the way clear again."""
    import panels.app
    from panels.header import ConsoleHeader
    from tests import ui_data
    from tests.pilot import wait_for
    from tests.test_ui import Clock, make_app

    monkeypatch.setattr(panels.app, "JOURNAL_REPROBE", 0.2)
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    clock = Clock()
    app = make_app(config=ui_data.config(journal=str(blocker / "journal.jsonl")), clock=clock)
    async with app.run_test(size=(120, 30)) as pilot:
        header = app.query_one(ConsoleHeader)
        app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))
        await app._journal_breaches()
        await wait_for(pilot, lambda: "NO JOURNAL" in header.compose_line(clock.now).plain, 10, "the flag")
        told = [str(n.message) for n in app._notifications]
        assert any(f"{blocker} is not a directory" in m for m in told), told
        blocker.unlink()
        for _ in range(100):  # polls come and go; a probe is due again after JOURNAL_REPROBE
            await app._journal_breaches()
            if "NO JOURNAL" not in header.compose_line(clock.now).plain:
                break
            await pilot.pause(0.1)
        assert "NO JOURNAL" not in header.compose_line(clock.now).plain
        assert app._journal is not None and app._journal.problem == ""
        # A breach write fails in its thread and a tick sees the problem before the write's
        # caller does: the tick flags it, and the toast is still the caller's to give.
        app._journal.problem = "cannot write the journal: No space left on device"
        app._tick()
        assert "NO JOURNAL" in header.compose_line(clock.now).plain
        app._show_journal_problem()
        await pilot.pause()
        assert any("No space left on device" in str(n.message) for n in app._notifications)
