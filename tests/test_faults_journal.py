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
