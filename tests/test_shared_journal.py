"""The shared journal on a real Postgres: init, two consoles seeing each other's events, a role
that can only INSERT and SELECT, exactly-once copying through kill -9, a store that fails and
comes back, claims and presence."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from console.config import SharedJournal as SharedSettings
from console.journal import ActionClaimed, Journal, Note, Operator, PlanRecord
from console.journal.shared import SharedJournal, init_store

ROOT = Path(__file__).resolve().parent.parent


async def wait_until(condition, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


class Console:
    """What one console holds: its local journal and the link to the shared one."""

    def __init__(self, tmp: Path, name: str, settings: SharedSettings, environment: str = "prod") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(
            tmp / "journal.jsonl", operator=Operator(name, "", f"{name}-host"), environment=environment
        )
        self.seen: list = []
        self.shared = SharedJournal(
            settings, self.journal.path, environment=environment, console=self.journal.console,
            operator=str(self.journal.operator), on_events=self.seen.extend,
        )  # fmt: skip
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.shared.run())

    def write(self, text: str):
        event = self.journal.append(Note(text=text))
        self.shared.wake()
        return event

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.shared.aclose()


async def test_init_is_idempotent_and_names_only_insert_and_select(pg_server, store):
    admin, _, _ = store
    grants = await init_store(admin, role="alice")  # a second time: nothing fails, nothing changes
    assert grants == [
        'GRANT SELECT, INSERT ON "incident_journal" TO "alice";',
        'GRANT USAGE ON SEQUENCE "incident_journal_seq_seq" TO "alice";',
    ]
    assert not any("UPDATE" in g or "DELETE" in g for g in grants)


async def test_two_consoles_see_each_others_events_within_a_second_with_an_insert_only_role(
    tmp_path, pg_server, store
):
    _, limited, database = store
    alice, bob = Console(tmp_path / "a", "alice", limited), Console(tmp_path / "b", "bob", limited)
    alice.start(), bob.start()
    try:
        await wait_until(
            lambda: alice.shared.state.connected and bob.shared.state.connected, 10, "both connected"
        )
        for n in range(5):
            written = alice.write(f"alice {n}")
            await wait_until(lambda w=written: w.id in {e.id for e in bob.seen}, 5, f"bob sees {n}")
        written = bob.write("bob here")
        await wait_until(lambda: written.id in {e.id for e in alice.seen}, 5, "alice sees bob")
        assert [e.text for e in bob.seen] == [f"alice {n}" for n in range(5)]  # in order, once each
        assert alice.shared.pending_count() == 0 and alice.shared.state.problem == ""
        # The role cannot rewrite history.
        conn = await pg_server.connect(
            user=limited.dsn.split("//")[1].split(":")[0], password="j0urnal-pw", database=database
        )
        try:
            with pytest.raises(Exception, match="permission denied"):
                await conn.execute("DELETE FROM incident_journal")
            with pytest.raises(Exception, match="permission denied"):
                await conn.execute("UPDATE incident_journal SET author = 'mallory'")
        finally:
            await conn.close()
    finally:
        await alice.stop(), await bob.stop()


async def test_a_local_journal_that_cannot_be_read_is_named_and_the_link_keeps_running(tmp_path, store):
    """The local journal's directory replaced by a file: the link said the store was
    "unreachable" (it was not), and counting the queued events raised out of its loop, so it
    stopped for good and said so until the console was restarted. Now it names the local
    file, still shows the others' events, and copies once the file can be read again."""
    _, limited, _ = store
    alice, bob = Console(tmp_path / "a", "alice", limited), Console(tmp_path / "b", "bob", limited)
    early = alice.write("before the directory went")
    (tmp_path / "a").rename(tmp_path / "a-away")
    (tmp_path / "a").write_text("a file where the journal's directory was")
    alice.start(), bob.start()
    try:
        await wait_until(lambda: "cannot copy" in alice.shared.state.problem, 10, "the problem said")
        assert alice.shared.state.line() == (
            f"shared journal cannot copy from {alice.journal.path}: Not a directory — 0 events queued"
        )
        written = bob.write("bob here")
        await wait_until(lambda: written.id in {e.id for e in alice.seen}, 5, "alice still sees bob")
        (tmp_path / "a").unlink()
        (tmp_path / "a-away").rename(tmp_path / "a")
        alice.shared.wake()
        await wait_until(lambda: early.id in {e.id for e in bob.seen}, 10, "the early event copied")
        assert alice.shared.state.problem == ""
    finally:
        await alice.stop(), await bob.stop()


async def test_presence_is_seen_and_expires(tmp_path, store, monkeypatch):
    from console.journal import shared

    monkeypatch.setattr(shared, "PRESENCE_EVERY", 0.2)
    monkeypatch.setattr(shared, "PRESENCE_FOR", 1.5)
    _, limited, _ = store
    alice, bob = Console(tmp_path / "a", "alice", limited), Console(tmp_path / "b", "bob", limited)
    bob.shared.where = "runbook lock-contention, step 3"
    alice.start(), bob.start()
    try:
        await wait_until(lambda: bob.journal.console in alice.shared.state.presence, 10, "alice sees bob")
        seen = alice.shared.state.presence[bob.journal.console]
        assert seen.operator == "bob@bob-host" and seen.where == "runbook lock-contention, step 3"
        await bob.stop()
        await wait_until(lambda: bob.journal.console not in alice.shared.state.presence, 10, "bob gone")
    finally:
        await alice.stop(), await bob.stop()


async def test_claims_exclude_a_second_console_until_released_or_its_console_dies(tmp_path, store):
    _, limited, _ = store
    alice, bob = Console(tmp_path / "a", "alice", limited), Console(tmp_path / "b", "bob", limited)
    alice.start()
    try:
        target = "postgres:main pid 4242"
        assert not (await alice.shared.claim([target])).held
        alice.journal.append(
            ActionClaimed(plan=PlanRecord(summary="terminate pid 4242 on main"), claims=(target,))
        )
        alice.shared.wake()
        await wait_until(lambda: alice.shared.pending_count() == 0, 10, "the claim copied")
        claim = await bob.shared.claim([target])
        assert claim.held and claim.by == "alice@alice-host" and "terminate pid 4242" in claim.what
        assert "alice@alice-host is running 'terminate pid 4242 on main'" in claim.text(time.time())
        assert not (await bob.shared.claim(["postgres:main pid 1"])).held  # another target is free
        await alice.shared.release([target])
        assert not (await bob.shared.claim([target])).held
        await bob.shared.release([target])
        assert not (await alice.shared.claim([target])).held
        await alice.stop()  # its connection (and so its claim) is gone with it
        assert not (await bob.shared.claim([target])).held
    finally:
        await alice.stop(), await bob.stop()


async def test_a_store_that_fails_queues_and_sends_exactly_once_when_it_is_back(tmp_path, pg_server, store):
    _, limited, database = store
    console = Console(tmp_path / "a", "alice", limited)
    await pg_server.execute("ALTER TABLE incident_journal RENAME TO incident_journal_away", database=database)
    console.start()
    try:
        for n in range(7):
            console.write(f"while away {n}")
        await wait_until(lambda: "missing" in console.shared.state.problem, 10, "the missing table said")
        assert console.shared.state.line() == (
            "shared journal table incident_journal is missing (incident-console journal init) — 7 events queued"
        )
        await pg_server.execute(
            "ALTER TABLE incident_journal_away RENAME TO incident_journal", database=database
        )
        await wait_until(
            lambda: console.shared.state.queued == 0 and not console.shared.state.problem, 10, "sent"
        )
        rows = await pg_server.fetch(
            "SELECT record->>'text' FROM incident_journal ORDER BY seq", database=database
        )
        assert [r[0] for r in rows] == [f"while away {n}" for n in range(7)]
    finally:
        await console.stop()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from console.config import SharedJournal as S
    from console.journal import Journal, Note, Operator
    from console.journal.shared import SharedJournal

    path, dsn, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    journal = Journal(path, operator=Operator("writer", "", "h"), environment="prod")
    link = SharedJournal(S(dsn=dsn), journal.path, environment="prod", console=journal.console, operator="writer")

    async def main():
        task = asyncio.create_task(link.run())
        for n in range(start, start + count):
            journal.append(Note(text=str(n)))
            sys.stdout.write(f"{n}\\n"); sys.stdout.flush()  # acknowledged: fsynced locally
            link.wake()
            await asyncio.sleep(0.01)
        while link.pending_count():
            await asyncio.sleep(0.05)
        sys.stdout.write("done\\n"); sys.stdout.flush()
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_kill_9_at_any_moment_loses_no_acknowledged_event_and_duplicates_none(
    tmp_path, pg_server, store
):
    admin, _, database = store
    path = tmp_path / "journal.jsonl"
    rng = random.Random(21)
    acked: list[int] = []
    start = 0
    for _ in range(8):  # killed at random moments, restarted each time
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), admin.dsn, str(start), "40"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + rng.uniform(0.3, 1.5)
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < deadline and proc.poll() is None:
            await asyncio.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        out = proc.stdout.read() or ""
        acked += [int(line) for line in out.split() if line.isdigit()]
        start = max(acked, default=-1) + 1
    # A last run with nothing new to write copies whatever is left, then says done.
    done = subprocess.run(
        [sys.executable, "-c", WRITER.replace("await asyncio.sleep(3600)", ""), str(path), admin.dsn, str(start), "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "done" in done.stdout, done.stderr
    rows = await pg_server.fetch("SELECT record->>'text', id FROM incident_journal", database=database)
    ids = [r[1] for r in rows]
    # A line written but not yet acknowledged when the writer died is written again by the next
    # run (a second line, a new id): the table must hold exactly the local journal's lines.
    local = [
        json.loads(line)
        for line in path.read_text().splitlines()
        if line.startswith("{") and line.endswith("}")
    ]
    assert len(acked) > 40
    assert set(acked) <= {int(r[0]) for r in rows}  # nothing acknowledged is lost
    assert len(ids) == len(set(ids))  # nothing twice
    assert sorted(ids) == sorted(e["id"] for e in local)  # exactly the local journal


async def test_export_merges_the_other_consoles_events_each_once_and_says_when_it_cannot(
    tmp_path, store, capsys
):
    import yaml

    from console.cli import main

    _, limited, _ = store
    alice, bob = Console(tmp_path / "a", "alice", limited), Console(tmp_path / "b", "bob", limited)
    alice.start(), bob.start()
    try:
        alice.write("alice looked at the locks")
        bob.write("bob restarted the worker")
        await wait_until(
            lambda: alice.shared.pending_count() == bob.shared.pending_count() == 0, 10, "copied"
        )
    finally:
        await alice.stop(), await bob.stop()
    (tmp_path / "runbooks").mkdir()
    config = tmp_path / "console.yaml"
    doc = {"environment": {"name": "prod"}, "runbooks_dir": "runbooks",
           "journal": {"path": str(alice.journal.path), "shared": {"dsn": limited.dsn}}}  # fmt: skip
    config.write_text(yaml.safe_dump(doc))
    assert await asyncio.to_thread(main, ["export", "--config", str(config), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    notes = [n["text"] for n in json.loads(out)["notes"]]
    assert sorted(notes) == ["alice looked at the locks", "bob restarted the worker"], (notes, err)
    # The store unreachable: the report is this machine's, and says so.
    doc["journal"]["shared"]["dsn"] = "postgresql://nobody@127.0.0.1:9/none"
    config.write_text(yaml.safe_dump(doc))
    assert await asyncio.to_thread(main, ["export", "--config", str(config), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert [n["text"] for n in json.loads(out)["notes"]] == ["alice looked at the locks"]
    assert "shared journal unreachable" in err and "this machine's events only" in err


async def test_a_hung_store_is_said_in_one_line_and_nothing_waits_on_it(tmp_path, store, pg_server, pg_proxy):
    _, limited, database = store
    proxy = await pg_proxy(pg_server)
    hung = limited.model_copy(
        update={"dsn": limited.dsn.replace(f":{pg_server.port}/", f":{proxy.port}/", 1),
                "statement_timeout": 1.0, "connect_timeout": 2.0}
    )  # fmt: skip
    console = Console(tmp_path / "a", "alice", hung)
    console.start()
    try:
        await wait_until(lambda: console.shared.state.connected, 10, "connected")
        proxy.freeze()
        started = time.monotonic()
        for n in range(3):
            console.write(f"while hung {n}")  # the local journal takes them at once
        assert time.monotonic() - started < 0.5
        await wait_until(
            lambda: (
                console.shared.state.line()
                == "shared journal unreachable (no answer in time) — 3 events queued"
            ),
            20,
            "the hang said, with the events queued",
        )
        proxy.thaw()
        await wait_until(
            lambda: console.shared.pending_count() == 0 and not console.shared.state.problem, 20, "sent"
        )
        rows = await pg_server.fetch(
            "SELECT count(*) FROM incident_journal WHERE record->>'text' LIKE 'while hung%'",
            database=database,
        )
        assert rows[0][0] == 3
    finally:
        await console.stop()


async def test_a_read_only_store_is_said_and_the_events_follow_once_it_is_writable(
    tmp_path, store, pg_server
):
    _, limited, _ = store
    role = limited.dsn.split("//")[1].split(":")[0]
    await pg_server.execute(f'ALTER ROLE "{role}" SET default_transaction_read_only = on')
    console = Console(tmp_path / "a", "alice", limited)
    console.start()
    try:
        console.write("on a read-only store")
        await wait_until(lambda: "read-only" in console.shared.state.problem, 10, "read-only said")
        await pg_server.execute(f'ALTER ROLE "{role}" RESET default_transaction_read_only')
        await console.shared.aclose()  # the setting applies to new sessions: reconnect
        await wait_until(
            lambda: console.shared.pending_count() == 0 and not console.shared.state.problem, 15, "sent"
        )
    finally:
        await console.stop()


async def test_the_store_killed_and_restarted_loses_and_duplicates_nothing(tmp_path):
    from console.demo.ports import free_port
    from tests.fixtures.postgres import _start_private, _stop_private

    # A fixed port: the restarted store must be where the console looks for it.
    cluster = await asyncio.to_thread(_start_private, preload=(), max_connections=20, port=free_port())
    try:
        settings = SharedSettings(dsn=cluster.dsn(), connect_timeout=2.0, statement_timeout=2.0)
        await init_store(settings)
        console = Console(tmp_path / "a", "alice", settings)
        console.start()
        try:
            console.write("before")
            await wait_until(lambda: console.shared.pending_count() == 0, 10, "sent")
            await asyncio.to_thread(cluster.stop)  # the store is killed mid-incident
            for n in range(5):
                console.write(f"while it is down {n}")
            await wait_until(lambda: "unreachable" in console.shared.state.problem, 15, "said")
            await asyncio.to_thread(cluster.start)
            await wait_until(
                lambda: console.shared.pending_count() == 0 and not console.shared.state.problem, 30, "sent"
            )
        finally:
            await console.stop()
        conn = await asyncpg_connect(cluster.dsn())
        try:
            rows = await conn.fetch("SELECT record->>'text' AS text FROM incident_journal ORDER BY seq")
        finally:
            await conn.close()
        assert [r["text"] for r in rows] == ["before", *(f"while it is down {n}" for n in range(5))]
    finally:
        await asyncio.to_thread(_stop_private, cluster)


async def asyncpg_connect(dsn: str):
    import asyncpg

    return await asyncpg.connect(dsn, timeout=10)
