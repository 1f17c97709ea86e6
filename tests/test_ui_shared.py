"""One incident, two engineers: two real consoles (Pilot) with one shared journal on a real
Postgres. Each sees the other's events within a second, a step one marks done shows done (by
whom) on the other's screen, each header names the other console, the timeline holds both
consoles' events once each, and the store stopping mid-incident loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import time

from console.journal import Journal, Note, Operator
from console.journal import shared as shared_module
from console.runbooks import StepState
from panels.runbook import RunbookScreen
from panels.timeline import TimelineScreen
from tests import ui_data
from tests.pilot import wait_for
from tests.test_ui import make_app
from tests.test_ui_runbooks import STAGING, goto_step, open_lock_runbook


def two_consoles(tmp_path, dsn: str):
    apps = []
    for name in ("alice", "bob"):
        path = tmp_path / name / "journal.jsonl"
        config = ui_data.config(environment=STAGING, journal={"path": str(path), "shared": {"dsn": dsn}})
        journal = Journal(path, operator=Operator(name, "", f"{name}-host"), environment="staging")
        apps.append(make_app(config=config, journal=journal))
    return apps


async def test_two_consoles_share_one_incident(tmp_path, store, monkeypatch):
    monkeypatch.setattr(shared_module, "PRESENCE_EVERY", 0.3)
    _, limited, _ = store
    alice, bob = two_consoles(tmp_path, limited.dsn)
    async with alice.run_test(size=(120, 40)) as pa, bob.run_test(size=(120, 40)) as pb:
        # Each names the other in its header.
        await wait_for(
            pa,
            lambda: "+bob@bob-host" in str(alice.header.compose_line(time.time())),
            10,
            "bob in alice's header",
        )
        await wait_for(
            pb, lambda: "+alice@alice-host" in str(bob.header.compose_line(time.time())), 10, "alice in bob's"
        )

        # A note of alice's reaches bob (a bounded wait: how fast is bench/'s, not a test's).
        written = await asyncio.to_thread(alice.journal.append, Note(text="alice: looking at the locks"))
        await wait_for(pb, lambda: written.id in {e.id for e in bob.shared.events()}, 5, "bob sees the note")

        # Alice opens the lock runbook and marks its manual step done; bob opens the same runbook
        # for the same breach: he joins her run, the step is done, and by whom.
        screen_a = await open_lock_runbook(pa, alice)
        await goto_step(pa, screen_a, "owner")
        await pa.press("m")
        await wait_for(
            pa, lambda: screen_a.session.progress.status("owner").state == StepState.DONE, 5, "done (alice)"
        )
        await wait_for(pb, lambda: alice.shared.pending_count() == 0, 5, "alice's events copied")
        await wait_for(
            pb,
            lambda: any(e.step == "owner" for e in bob.shared.events() if hasattr(e, "step")),
            5,
            "bob has them",
        )
        screen_b = await open_lock_runbook(pb, bob)
        assert screen_b.session.progress.run_id == screen_a.session.progress.run_id
        owner = screen_b.session.progress.status("owner")
        assert owner.state == StepState.DONE and owner.by == "alice@alice-host"
        await goto_step(pb, screen_b, "owner")
        assert "by alice@alice-host at " in str(screen_b.query_one("#rb-detail-text").render())
        # Live: bob skips a step; alice's open screen shows it, by bob.
        await goto_step(pb, screen_b, "blocked")
        await pb.press("k")
        skipped = screen_a.session.progress.status("blocked")
        await wait_for(pa, lambda: skipped.state == StepState.SKIPPED, 5, "alice sees bob's skip")
        assert skipped.by == "bob@bob-host"
        # Where each one is shows in the other's header.
        await wait_for(
            pa,
            lambda: "(runbook lock-contention, step" in str(alice.header.compose_line(time.time())),
            5,
            "where",
        )

        # The timeline holds both consoles' events, each once.
        await pb.press("escape")
        await wait_for(pb, lambda: not isinstance(bob.screen, RunbookScreen), 5, "back")
        await pb.press("t")
        await wait_for(
            pb, lambda: isinstance(bob.screen, TimelineScreen) and bob.screen.loaded, 5, "timeline"
        )
        texts = [e.text for e in bob.screen.entries]
        assert sum("alice: looking at the locks" in t for t in texts) == 1
        assert sum("step blocked skipped" in t for t in texts) == 1, texts
        # Live: what alice writes now shows on bob's open timeline, through the shared journal.
        await asyncio.to_thread(alice.journal.append, Note(text="the blocker is the nightly batch"))
        timeline_screen = bob.screen
        await wait_for(
            pb,
            lambda: any("the blocker is the nightly batch" in e.text for e in timeline_screen.entries),
            10,
            "alice's new note on bob's open timeline",
        )


async def test_the_store_stopping_mid_incident_queues_and_loses_nothing(tmp_path, store, pg_server):
    _, limited, database = store
    alice, _ = two_consoles(tmp_path, limited.dsn)
    async with alice.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: alice.shared.state.connected, 10, "connected")
        # The table goes away (as if dropped, or the store lost): the console keeps working.
        await pg_server.execute(
            "ALTER TABLE incident_journal RENAME TO incident_journal_gone", database=database
        )
        for n in range(7):
            await asyncio.to_thread(alice.journal.append, Note(text=f"while the store is away {n}"))
        line = lambda: str(alice.header.compose_line(time.time()))  # noqa: E731
        await wait_for(pilot, lambda: "events queued" in line(), 10, "the header says so")
        assert "shared journal table incident_journal is missing" in line()
        assert alice.is_running
        await pg_server.execute(
            "ALTER TABLE incident_journal_gone RENAME TO incident_journal", database=database
        )
        await wait_for(
            pilot, lambda: alice.shared.pending_count() == 0 and not alice.shared.state.problem, 10, "sent"
        )
        assert "events queued" not in line()
    rows = await pg_server.fetch(
        "SELECT record->>'text' AS text, count(*) FROM incident_journal GROUP BY 1", database=database
    )
    notes = {r["text"]: r["count"] for r in rows if r["text"]}
    assert {f"while the store is away {n}" for n in range(7)} <= set(notes)
    assert all(count == 1 for count in notes.values())


async def test_the_wall_shows_every_consoles_timeline(tmp_path, store):
    """A wall on the shared journal shows alice's notes under its tiles as they come, names
    her, and writes nothing itself; a note's text is shown as written, never as markup."""
    _, limited, _ = store
    alice, _ = two_consoles(tmp_path, limited.dsn)
    path = tmp_path / "wall" / "journal.jsonl"
    config = ui_data.config(environment=STAGING, journal={"path": str(path), "shared": {"dsn": limited.dsn}})
    journal = Journal(path, operator=Operator("wall", "", "wall-host"), environment="staging")
    wall = make_app(config=config, journal=journal, wall=True)
    async with alice.run_test(size=(120, 40)) as pa, wall.run_test(size=(120, 40)) as pw:
        await wait_for(pw, lambda: wall.shared.state.connected, 10, "the wall connected")
        timeline = wall.wall_screen.query_one("#wall-timeline")
        written = await asyncio.to_thread(alice.journal.append, Note(text="alice: [bold]failing over[/] now"))
        # A bounded wait, not a timing (timings live in bench/: a loaded CI machine took 1.05 s).
        await wait_for(
            pw,
            lambda: "alice: [bold]failing over[/] now" in str(timeline.render()),
            5,
            "the note on the wall",
        )
        shown = str(timeline.render())
        assert "every console, shared journal" in shown and "alice" in shown
        assert written.id in {e.id for e in wall.shared.events()}
        await pa.pause()
    assert not path.exists() or not path.read_text().strip()  # the wall only watches
