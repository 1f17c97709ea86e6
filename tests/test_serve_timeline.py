"""The wall's timeline of a `serve` viewer comes over the engine's feed (issue 20 point 2): with
a shared journal, serve's engine holds the one link to the store (it copies nothing and announces
no presence) and a viewer opens none; without one, the engine reads this machine's journal and
the viewer reads no journal file. A viewer whose feed is lost says so in the timeline as well.
Real things: the test Postgres (``store``: a journal table and a role that may INSERT and SELECT),
real Unix sockets, a real viewer app (Textual's run_test)."""

from __future__ import annotations

import asyncio
import time

import pytest

from console.config import Config
from console.feed import Engine, FeedClient, FeedServer, WallTimeline, decode, encode_timeline
from console.journal import Journal, Note, Operator
from console.journal import shared as shared_module
from console.journal.shared import SharedJournal
from console.timeline import TimelineEntry
from tests.test_serve_feed import HEADER_BYTES, until

pytestmark = pytest.mark.timeout(120)

ENVIRONMENT = "serve-timeline"


def config_for(tmp_path, shared: dict | None = None) -> Config:
    journal: dict = {"path": str(tmp_path / "serve" / "journal.jsonl")}
    if shared is not None:
        journal["shared"] = shared
    return Config.model_validate(
        {
            "environment": {"name": ENVIRONMENT},
            "ui": {"bell": False},
            "health": [{"name": "storefront", "url": "http://127.0.0.1:9/never-up"}],
            "journal": journal,
        }
    )


def wall_text(app) -> str:
    return str(app.wall_screen.query_one("#wall-timeline").render())


async def sessions(pg_server, database: str) -> list[str]:
    rows = await pg_server.fetch(
        "SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    return [r["application_name"] for r in rows]


def test_a_timeline_frame_round_trips_without_its_events():
    entry = TimelineEntry(ts=1.0, kind="note", who="alice", text="[bold]x[/]")
    wall = WallTimeline(2.0, (entry,), "every console, shared journal", "")
    assert decode(encode_timeline(wall)[HEADER_BYTES:]) == wall


async def test_a_newer_state_never_replaces_a_waiting_timeline():
    from console.feed import _Subscriber

    class Writer:  # never written to: offer() only fills the slots
        pass

    subscriber = _Subscriber(Writer())  # type: ignore[arg-type]
    subscriber.offer(b"timeline-1", "timeline")
    subscriber.offer(b"state-1")
    subscriber.offer(b"state-2")
    subscriber.offer(b"timeline-2", "timeline")
    assert subscriber.slots == {"timeline": b"timeline-2", "state": b"state-2"}
    assert subscriber.replaced == 2


async def test_a_viewer_shows_the_shared_timeline_and_opens_no_link_to_the_store(
    tmp_path, store, pg_server, monkeypatch
):
    from console.app import ConsoleApp

    monkeypatch.setattr(shared_module, "PRESENCE_EVERY", 0.3)
    _, limited, database = store
    config = config_for(tmp_path, {"dsn": limited.dsn})
    engine = await Engine(config).start()
    alice_path = tmp_path / "alice" / "journal.jsonl"
    alice_journal = Journal(alice_path, operator=Operator("alice", "", "alice-host"), environment=ENVIRONMENT)
    alice = SharedJournal(
        limited, alice_path, environment=ENVIRONMENT, console=alice_journal.console, operator="alice"
    )
    alice_task: asyncio.Task | None = None
    app = ConsoleApp(config, web=True, feed=FeedClient(engine.path, retry=0.2))
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            assert app.shared is None  # a viewer has no link to the store
            await until(
                lambda: engine.shared is not None and engine.shared.state.connected, "the engine connected"
            )
            await until(lambda: "every console, shared journal" in wall_text(app), "the engine's timeline")
            await pilot.pause(0.5)
            # The engine's link is the only session on the store's database.
            assert len(await sessions(pg_server, database)) == 1

            alice_task = asyncio.ensure_future(alice.run())
            written = await asyncio.to_thread(
                alice_journal.append, Note(text="alice: [bold]failing over[/] now")
            )
            alice.wake()
            await until(
                lambda: "alice: [bold]failing over[/] now" in wall_text(app), "alice's note on the viewer"
            )
            assert written.id in {e.id for e in engine.shared.events()}
            # Alice's link and the engine's: still none of the viewer's.
            assert len(await sessions(pg_server, database)) == 2
            # Alice hears of no other console: the engine and the viewer announce nothing.
            await asyncio.sleep(1.0)
            assert alice.state.connected and alice.state.presence == {}

            # The feed lost: the timeline says so, as the header does.
            await engine.aclose()
            await until(lambda: "FEED LOST since" in wall_text(app), "the timeline saying the feed is lost")
            assert "alice: [bold]failing over[/] now" in wall_text(app)  # the last one stays
    finally:
        if alice_task is not None:
            alice_task.cancel()
            await asyncio.gather(alice_task, return_exceptions=True)
        await alice.aclose()
        await engine.aclose()
    await until_sessions_gone(pg_server, database)
    assert not (tmp_path / "serve" / "journal.jsonl.shared").exists()  # the engine copied nothing


async def until_sessions_gone(pg_server, database: str) -> None:
    deadline = time.monotonic() + 10
    while await sessions(pg_server, database):
        assert time.monotonic() < deadline, "the store's sessions outlived the test"
        await asyncio.sleep(0.1)


async def test_without_a_shared_journal_the_viewer_shows_this_machines_journal_read_by_the_engine(
    tmp_path,
):
    from console.app import ConsoleApp

    config = config_for(tmp_path)
    local = Journal(config.journal_path(), operator=Operator("bob", "", "bob-host"), environment=ENVIRONMENT)
    engine = await Engine(config).start()
    app = ConsoleApp(config, web=True, feed=FeedClient(engine.path, retry=0.2))
    opened: list[str] = []
    real = Journal.read_own

    def spy(self, since=None):  # the viewer's process reads no journal file
        opened.append("viewer" if self is app.journal else "engine")
        return real(self, since)

    try:
        async with app.run_test(size=(160, 48)):
            Journal.read_own = spy  # type: ignore[method-assign]
            await until(lambda: "this machine's journal" in wall_text(app), "the engine's timeline")
            await asyncio.to_thread(local.append, Note(text="bob: restarted the pool"))
            await until(lambda: "bob: restarted the pool" in wall_text(app), "bob's note on the viewer")
            assert "viewer" not in opened and "engine" in opened
    finally:
        Journal.read_own = real  # type: ignore[method-assign]
        await engine.aclose()


async def test_a_bare_feed_without_a_timeline_says_it_waits(tmp_path):
    from console.app import ConsoleApp

    (tmp_path / "feed").mkdir()
    server = await FeedServer(tmp_path / "feed").start()
    config = config_for(tmp_path)
    app = ConsoleApp(config, web=True, feed=FeedClient(server.path, retry=0.2))
    try:
        async with app.run_test(size=(160, 48)):
            await until(lambda: "waiting for the engine's timeline" in wall_text(app), "the timeline waiting")
    finally:
        await server.aclose()
