"""Runbooks in the live console: R ranks them for a breach, the step-through screen runs each
step through the one executor (confirmation, dry-run, read-only), progress survives a restart,
t shows the timeline, and a Prometheus alert is acked as a real Alertmanager silence."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from console.app import ConsoleApp
from console.journal import Journal, Note, read_journal
from console.runbooks import StepState
from panels.breaches import BreachesPanel
from panels.confirm import ConfirmScreen
from panels.postgres import PostgresPanel
from panels.runbook import NoteScreen, RunbookPicker, RunbookScreen, ValueScreen
from panels.tables import KeyedTable
from panels.timeline import TimelineScreen
from tests import ui_data
from tests.pilot import wait_for, wait_for_screen
from tests.test_ui import goto, make_app, panel

STAGING = {"name": "staging", "production": False}


def events(path) -> list[str]:
    return [e.kind for e in read_journal(path).events]


async def select_breach(pilot, app: ConsoleApp, breach_id: str) -> None:
    table = panel(app, BreachesPanel).table
    await wait_for(pilot, lambda: table.row_count > 0, what="breaches on screen")
    table.focus()
    table.move_cursor(row=table.get_row_index(breach_id))
    await pilot.pause()


async def open_lock_runbook(pilot, app: ConsoleApp) -> RunbookScreen:
    await select_breach(pilot, app, "postgres.main.waiting")
    await pilot.press("R")
    picker = app.screen
    assert isinstance(picker, RunbookPicker)
    assert picker.matches[0].runbook.id == "lock-contention"  # ranked first for a lock breach
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, RunbookScreen), what="runbook screen")
    screen = app.screen
    # Pushed is not mounted: under load a test looked a step's row up before on_mount had put
    # the rows in the table (RowDoesNotExist).
    await wait_for(pilot, lambda: _steps_shown(screen), what="the runbook's steps in the table")
    return screen


def _steps_shown(screen: RunbookScreen) -> bool:
    tables = screen.query("#rb-steps")
    return bool(tables) and tables.first().row_count == len(screen.session.steps)


def step_row(screen: RunbookScreen, step_id: str) -> int:
    return screen.query_one("#rb-steps").get_row_index(step_id)


async def goto_step(pilot, screen: RunbookScreen, step_id: str) -> None:
    screen.query_one("#rb-steps").move_cursor(row=step_row(screen, step_id))
    await pilot.pause()
    assert screen.selected.step.id == step_id


async def test_runbook_steps_manual_note_and_progress_survive_a_restart(tmp_path):
    journal_path = tmp_path / "journal.jsonl"
    config = ui_data.config(environment=STAGING)
    app = make_app(config=config, journal=Journal(journal_path))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_lock_runbook(pilot, app)
        assert [s.step.id for s in screen.session.steps] == [
            "waiting",
            "blocked",
            "terminate-root-blocker",
            "recheck",
            "out-of-reach",
            "owner",
            "escalate",
        ]
        await pilot.press("n", "n", "n", "n", "n")  # next five times: the manual step
        assert screen.selected.step.id == "owner"
        await pilot.press("m")
        owner = screen.session.progress.status("owner")
        await wait_for(pilot, lambda: owner.state == StepState.DONE, what="owner marked done")
        await pilot.press("o")
        assert isinstance(app.screen, NoteScreen)
        await pilot.press(*"called the app team", "enter")
        await wait_for(pilot, lambda: "note" in events(journal_path), what="note journaled")
        await pilot.press("escape")
        assert not isinstance(app.screen, RunbookScreen)
    assert {"runbook.opened", "step.state", "note"} <= set(events(journal_path))

    # A new console on the same journal finds the same run where it was left.
    app = make_app(config=config, journal=Journal(journal_path))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_lock_runbook(pilot, app)
        assert screen.session.progress.status("owner").state == StepState.DONE
        assert screen.session.progress.status("terminate-root-blocker").state == StepState.TODO
        await goto_step(pilot, screen, "owner")
        detail = str(screen.query_one("#rb-detail-text").render())
        assert "called the app team" in detail
    assert events(journal_path).count("runbook.opened") == 1


async def test_the_runbook_says_whether_what_it_was_opened_for_is_breached_now():
    """After the fix the "for:" line read the same whether the breach had cleared or not: the
    operator had to leave the runbook to find out."""
    app = make_app(config=ui_data.config(environment=STAGING))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_lock_runbook(pilot, app)

        def trigger() -> str:
            return str(screen.query_one("#rb-trigger").render())

        assert trigger().startswith(
            "for: main: sessions waiting on a lock · now ✖ CRIT firing, 2 sessions"
        ), trigger()
        calm = dataclasses.replace(
            ui_data.postgres_snapshot(),
            sessions=tuple(s for s in ui_data.postgres_snapshot().sessions if not s.waiting_on_lock),
            lock_tree=(),
        )
        app.render_state(app.poller.publish(calm))
        await wait_for(pilot, lambda: "not breached now" in trigger(), what="the breach cleared")
        assert "(cleared " in trigger() and "now ✖" not in trigger()
        # Narrower, the breach's title gives way: what it is now stays whole, on one line (it
        # wrapped, and took a line from the step's output).
        await pilot.resize_terminal(60, 24)
        await wait_for(pilot, lambda: trigger().startswith("for: main: sessions…"), what="the title cut")
        await pilot.pause()
        assert screen.query_one("#rb-trigger").region.height == 1, trigger()
        # The test's clock stands still: cleared 0 s ago, which read "(cleared now ago)".
        assert trigger().endswith("not breached now (cleared just now)"), trigger()


async def test_help_on_the_runbook_screen_lists_its_keys_first():
    """At 80 columns the runbook screen's footer ends at Skip: Reopen, Note and Set value were in
    no footer and `?` listed only the panels' keys."""
    from panels.help import HelpScreen

    app = make_app(config=ui_data.config(environment=STAGING))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_lock_runbook(pilot, app)
        await pilot.press("question_mark")
        help_screen = await wait_for_screen(pilot, HelpScreen)
        rows = help_screen.rows
        own = [(keys, what) for keys, what, where in rows if where == "this screen"]
        assert rows[: len(own)] == [(k, w, "this screen") for k, w in own]
        assert {("u", "Reopen"), ("o", "Note"), ("i", "Set value"), ("x", "Execute")} <= set(own), own
        await pilot.press("escape")
        assert isinstance(app.screen, RunbookScreen)
        await pilot.press("escape")
        await pilot.press("question_mark")
        help_screen = await wait_for_screen(pilot, HelpScreen)
        assert not any(where == "this screen" for _, _, where in help_screen.rows)


async def test_an_action_step_shows_its_plan_and_defaults_to_not_running(tmp_path, pg_server, pg_lock_chain):
    """A real lock chain, so that the preview finds the root blocker (with no session to act
    on, or a preview that failed, nothing is asked: the tests below)."""
    chain = await pg_lock_chain()
    dsn = pg_server.dsn(password="canary-pw-7731")  # trust auth: the password is only to be masked
    cluster = {**ui_data.CONFIG["postgres"][0], "dsn": dsn}
    journal_path = tmp_path / "journal.jsonl"
    app = make_app(
        config=ui_data.config(environment=STAGING, postgres=[cluster]), journal=Journal(journal_path)
    )
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_lock_runbook(pilot, app)
        await goto_step(pilot, screen, "terminate-root-blocker")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        dialog = app.screen
        plan = str(dialog.plan)
        assert "pg_blocking_pids" in plan and "What it touches" in plan
        assert str(chain.holder) in plan  # the root blocker, as the preview found it
        assert "canary-pw-7731" not in plan  # the DSN's password is masked
        assert dialog.typed is not None  # terminate is dangerous: a typed word
        await pilot.press("escape")
        await wait_for(pilot, lambda: "action.declined" in events(journal_path), what="decline journaled")
        assert "action.confirmed" not in events(journal_path)
        assert app.screen is screen

        await pilot.press("d")  # dry-run: the preview, validated, no effect
        await wait_for(pilot, lambda: "action.dry_run" in events(journal_path), what="dry-run journaled")
        status = screen.session.progress.status("terminate-root-blocker")
        await wait_for(pilot, lambda: bool(status.message), what="dry-run result on screen")
        assert status.state == StepState.TODO
        # The dry-run says what it would touch: the root blocker its preview found, on the step
        # and in the journal (a second console following the incident shows the same).
        await pilot.pause()
        assert str(chain.holder) in str(screen.query_one("#rb-detail-text").render())
        dry_run = next(e for e in read_journal(journal_path).events if e.kind == "action.dry_run")
        assert any(str(chain.holder) in line for line in dry_run.output), dry_run

        await goto_step(pilot, screen, "blocked")
        await pilot.press("x")  # a check runs at once, no dialog: it lists the chain
        blocked = screen.session.progress.status("blocked")
        await wait_for(pilot, lambda: blocked.state == StepState.DONE, what="check done")
        assert " rows" in blocked.message, blocked.message  # the waiters, each with its blocker
        assert not isinstance(app.screen, ConfirmScreen)


async def test_a_step_result_is_told_on_its_step_and_toasted_only_to_an_operator_who_left(
    tmp_path, pg_server, pg_lock_chain
):
    """At 80x24 the result toasts covered the step's output (the rows a check read): on the
    runbook screen the step row and its detail say it. A wait that ends after the operator
    went back to the panels is toasted, or nothing would say it ended."""
    await pg_lock_chain()
    cluster = {**ui_data.CONFIG["postgres"][0], "dsn": pg_server.dsn()}
    config = ui_data.config(environment=STAGING, postgres=[cluster], runbooks={"time_scale": 0.02})
    app = make_app(config=config, journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        screen = await open_lock_runbook(pilot, app)
        await goto_step(pilot, screen, "waiting")
        await pilot.press("x")
        waiting = screen.session.progress.status("waiting")
        await wait_for(pilot, lambda: waiting.state == StepState.NOT_MET, what="the check's result")
        await pilot.pause(0.3)
        assert "value" in str(screen.query_one("#rb-detail-text").render())
        assert not [str(toast.render()) for toast in app.screen.query("Toast")]

        await goto_step(pilot, screen, "recheck")
        await pilot.press("x")
        recheck = screen.session.progress.status("recheck")
        await wait_for(pilot, lambda: recheck.state == StepState.RUNNING, what="the wait started")
        await pilot.press("escape")
        await wait_for(pilot, lambda: recheck.state != StepState.RUNNING, what="the wait's check", timeout=30)
        await wait_for(pilot, lambda: app.screen.query("Toast"), what="the wait's result toasted")


async def test_a_step_whose_preview_failed_asks_nothing_and_says_why(tmp_path):
    """The cluster is unreachable: the preview cannot list the sessions, so the executor will
    refuse whatever the answer. No dialog asks to type the cluster's name for that."""
    refused, step = await terminate_root_blocker_asks_nothing(ui_data.config(environment=STAGING), tmp_path)
    assert refused == "not run: the preview failed, so no session is known to signal"
    assert refused in step.message


async def terminate_root_blocker_asks_nothing(config, tmp_path) -> tuple[str, object]:
    """``x`` on lock-contention's terminate step: no dialog opens, the refusal is journaled and
    reaches the step. Returns the refusal and the step's status."""
    journal_path = tmp_path / "journal.jsonl"
    app = make_app(config=config, journal=Journal(journal_path))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_lock_runbook(pilot, app)
        await goto_step(pilot, screen, "terminate-root-blocker")
        await pilot.press("x")

        def refused() -> list:
            return [e for e in read_journal(journal_path).events if e.kind == "action.refused"]

        await wait_for(pilot, lambda: refused() or isinstance(app.screen, ConfirmScreen), what="an answer")
        assert not isinstance(app.screen, ConfirmScreen)
        message = refused()[0].get("message")
        status = screen.session.progress.status("terminate-root-blocker")
        await wait_for(pilot, lambda: message in status.message, what="the reason on the step")
    assert "action.confirmed" not in events(journal_path)
    return message, status


async def test_read_only_refuses_in_the_executor_and_journals_the_refusal(tmp_path):
    journal_path = tmp_path / "journal.jsonl"
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(journal_path), read_only=True)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_lock_runbook(pilot, app)
        await goto_step(pilot, screen, "terminate-root-blocker")
        await pilot.press("x")
        await wait_for(pilot, lambda: "action.refused" in events(journal_path), what="refusal journaled")
        assert not isinstance(app.screen, ConfirmScreen)
        refused = next(e for e in read_journal(journal_path).events if e.kind == "action.refused")
        assert "read-only" in refused.get("message")
        assert "action.confirmed" not in events(journal_path)


async def test_timeline_shows_the_journal(tmp_path):
    journal_path = tmp_path / "journal.jsonl"
    journal = Journal(journal_path)
    journal.append(Note(text="[@click=app.quit] first look"))
    app = make_app(config=ui_data.config(environment=STAGING), journal=journal, autopoll=True)
    async with app.run_test(size=(80, 24)) as pilot:
        # each source's breaches are journaled when its own poll lands: wait for the Postgres one
        await wait_for(
            pilot, lambda: "sessions waiting on a lock" in journal_path.read_text(), what="breach journaled"
        )
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen.loaded, what="timeline"
        )
        table = app.screen.query_one("#timeline-table")
        texts = [str(table.get_row_at(i)[3]) for i in range(table.row_count)]
        assert any("[@click=app.quit] first look" in t for t in texts)  # literal, inert
        assert any("sessions waiting on a lock" in t for t in texts)
        # A breach is the system's, with its severity; nobody's failure (issue 18 item 17).
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        breach = next(r for r in rows if "sessions waiting on a lock" in r[3])
        assert breach[1:3] == ["✖ CRIT", "system"], breach
        note = next(r for r in rows if "first look" in r[3])
        assert note[2] != "system" and "@" in note[2]
        assert not any(r[1] == "✖ fail" for r in rows)
        await pilot.press("escape")
        assert app.is_running


async def test_escape_right_after_t_closes_the_timeline_even_while_the_journal_is_read(tmp_path):
    """The timeline opened only once the journal was read: an Escape pressed meanwhile went to
    the panels, and the timeline opened after it and stayed (the soak's keys left it open on a
    loaded machine). It opens at once, says it is reading, and Escape closes it."""
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append(Note(text="first look"))
    read_own = journal.read_own
    # The read ends when the test says so: a fixed 0.6 s read ended before a loaded machine got
    # to look at the heading, which then no longer said "reading".
    read_may_end = threading.Event()

    def slow_read(*args, **kwargs):
        read_may_end.wait(30)  # a big journal, a busy disk
        return read_own(*args, **kwargs)

    def reading() -> bool:
        return any(w.group == "timeline-reload" and not w.is_finished for w in app.workers)

    journal.read_own = slow_read
    app = make_app(config=ui_data.config(environment=STAGING), journal=journal)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TimelineScreen), what="the timeline, at once")
        assert "reading the journal" in str(app.screen.query_one("#timeline-title").render())
        await pilot.press("escape")
        read_may_end.set()
        await wait_for(pilot, lambda: not reading(), what="the read to end")
        await pilot.pause()
        assert not isinstance(app.screen, TimelineScreen)
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen.loaded, what="read"
        )
        await pilot.pause()
        heading = str(app.screen.query_one("#timeline-title").render())
        assert "reading" not in heading and any(e.text == "note: first look" for e in app.screen.entries)


async def test_the_open_timeline_shows_what_is_written_meanwhile(tmp_path):
    """It was a snapshot: what another console on this host (or this one) wrote while it was open
    did not show until it was closed and opened again. A cursor on the last row follows the new
    ones; a cursor the operator moved up stays where it is."""
    journal_path = tmp_path / "journal.jsonl"
    journal = Journal(journal_path)
    journal.append(Note(text="first look"))
    app = make_app(config=ui_data.config(environment=STAGING), journal=journal)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen.loaded, what="timeline"
        )
        screen = app.screen
        table = screen.query_one("#timeline-table")

        def texts() -> list[str]:  # the notes (the breaches on screen are journaled too)
            return [
                t for i in range(table.row_count) if (t := str(table.get_row_at(i)[3])).startswith("note:")
            ]

        assert texts() == ["note: first look"]
        other = Journal(journal_path)  # another console on this host, the same file
        await asyncio.to_thread(other.append, Note(text="second look"))
        await wait_for(pilot, lambda: "note: second look" in texts(), what="the other console's note")
        assert table.cursor_row == table.row_count - 1  # it follows
        heading = str(screen.query_one("#timeline-title").render())
        assert heading.startswith(f"Timeline: {table.row_count} events (default, last 24 h, "), heading

        await asyncio.to_thread(other.append, Note(text="third look"))
        await wait_for(pilot, lambda: "note: third look" in texts(), what="the third note")
        table.move_cursor(row=0, animate=False)
        await pilot.pause()
        await asyncio.to_thread(app.journal.append, Note(text="this console's note"))
        await wait_for(pilot, lambda: "note: this console's note" in texts(), what="this console's note")
        assert table.cursor_row == 0 and texts()[0] == "note: first look"  # it stays
        assert texts() == [
            "note: first look",
            "note: second look",
            "note: third look",
            "note: this console's note",
        ]


async def test_timeline_reads_the_configs_journal_and_shows_its_environment_only(tmp_path):
    path = tmp_path / "shared" / "journal.jsonl"
    for name in ("staging", "bench", "demo"):
        Journal(path, environment=name, clock=lambda: ui_data.NOW - 60).append(Note(text=f"a note in {name}"))
    app = make_app(config=ui_data.config(environment=STAGING, journal=str(path)))
    assert app.journal.path == path and app.journal.environment == "staging"
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen.loaded, what="timeline"
        )
        table = app.screen.query_one("#timeline-table")
        texts = [str(table.get_row_at(i)[3]) for i in range(table.row_count)]
        assert [t for t in texts if "a note in" in t] == ["note: a note in staging"], texts


async def test_a_runbook_title_reads_with_its_values_filled_for_the_breach(tmp_path):
    """ "High error rate on storefront", not "on {{service}}": the picker and the runbook screen
    fill the title from the breach as they fill the steps' titles."""
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(120, 40)) as pilot:
        await select_breach(pilot, app, "prometheus.error_rate")
        await pilot.press("R")
        picker = app.screen
        assert isinstance(picker, RunbookPicker)
        assert picker.matches[0].runbook.id == "error-spike"
        row = picker.query_one("#picker-table").get_row("error-spike")
        assert "High error rate on storefront" in str(row[2]) and "{{" not in str(row[2])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbookScreen), what="runbook screen")
        heading = str(app.screen.query_one("#rb-title").render())
        assert "High error rate on storefront (5xx above 5%)" in heading and "{{" not in heading


async def test_a_response_time_that_is_no_duration_reads_as_said():
    """The runbook screen said "respond within the quota resets at 00:00 UTC; alert the team"
    and "respond within SEV1: routing broken": most of the seeds' response times are no
    duration. It reads as `runbook show` says it."""
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await select_breach(pilot, app, "prometheus.error_rate")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbookPicker), what="picker")
        await pilot.press("a")  # every runbook
        table = app.screen.query_one("#picker-table")
        await wait_for(pilot, lambda: "ga-quota-exhausted" in table.rows, what="all runbooks")
        table.move_cursor(row=table.get_row_index("ga-quota-exhausted"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunbookScreen), what="runbook screen")
        heading = str(app.screen.query_one("#rb-title").render())
        assert "· respond: the quota resets daily (000: 00:00 UTC); alert the team" in heading, heading
        assert "respond within" not in heading


async def test_at_80x24_the_selected_steps_output_gets_the_room():
    """At 80x24 the slow-queries runbook's title (4 lines with its source) and escalation (3) left the
    selected step's output 4 lines: "last: 10 rows", the column names, and not one row."""
    for size, short in (((80, 24), True), ((120, 40), False)):
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await open_error_spike_runbook(pilot, app)
            screen = app.screen
            await wait_for(
                pilot, lambda screen=screen: screen.query_one("#rb-detail").region.height > 0, what="laid out"
            )
            title, escalation = screen.query_one("#rb-title"), screen.query_one("#rb-escalation")
            heights = (
                title.region.height,
                escalation.region.height,
                screen.query_one("#rb-detail").region.height,
            )
            if short:
                assert heights[:2] == (1, 1) and heights[2] >= 11, heights
                assert str(title.render()).startswith("✖ CRIT High error rate on storefront"), title.render()
            else:
                assert heights[0] >= 1 and not screen.has_class("-short"), heights


async def test_at_80_columns_a_steps_long_lines_continue_indented():
    """A step's SQL and its result rows wrapped back to the pane's margin at 80 columns: the
    rest of ``SELECT round(count(*)::numeric / ...`` read as a line of the statement."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_lock_runbook(pilot, app)
        width = 80 - 4  # the detail pane's padding and scrollbar
        status = next(
            s for s in screen.session.steps if any(len(x) > width for x in screen.session.describe(s.step))
        )
        await goto_step(pilot, screen, status.step.id)
        long = next(x for x in screen.session.describe(status.step) if len(x) > width)
        shown = screen._detail(status).plain.splitlines()
        words = screen.session.describe(status.step)[0] if status.step.text else None
        assert all(len(line) <= width for line in shown if line != words), shown
        first = next(i for i, line in enumerate(shown) if long.startswith(line.rstrip()) and line.strip())
        lead = len(long) - len(long.lstrip(" "))
        assert shown[first + 1].startswith(" " * (lead + 4)) and shown[first + 1].strip(), shown[
            first : first + 2
        ]
        # The step's own words are a paragraph: they wrap as one, without the indent.
        await pilot.resize_terminal(60, 24)
        await pilot.pause()
        prose = next(s for s in screen.session.steps if s.step.text and len(s.step.text) > 60 - 4)
        await goto_step(pilot, screen, prose.step.id)
        words = screen.session.describe(prose.step)[0]
        assert words in screen._detail(prose).plain.splitlines()


async def open_error_spike_runbook(pilot, app) -> None:
    """The error-rate breach's first runbook (error-spike), from the picker."""
    await select_breach(pilot, app, "prometheus.error_rate")
    await pilot.press("R")
    await wait_for(pilot, lambda: isinstance(app.screen, RunbookPicker), what="picker")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, RunbookScreen), what="runbook screen")


async def test_an_input_the_step_needs_is_set_with_i_and_journaled_before_the_action_runs(tmp_path):
    """The rollback needs the image to roll back to: nothing to run until the operator sets it
    (no `--image ''`); `i` sets it (journaled), and the dialog then shows it in the argv."""
    journal_path = tmp_path / "journal.jsonl"
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(journal_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_error_spike_runbook(pilot, app)
        screen = app.screen
        await goto_step(pilot, screen, "rollback")
        detail = str(screen.query_one("#rb-detail-text").render())
        assert "<previous_image>" in detail and "needs previous_image: press i to set it first" in detail
        assert "cannot render until previous_image is set" in detail and "from a breach" not in detail
        assert "--image ''" not in detail

        await pilot.press("x")  # nothing to confirm: the value is missing
        await pilot.pause()
        assert app.screen is screen
        assert not any(k.startswith("action.") for k in events(journal_path))
        # It says which key gives the value, not "open the runbook from a breach" (it was).
        said = lambda: [str(n.message) for n in app._notifications]  # noqa: E731
        await wait_for(pilot, lambda: any("cannot run this step" in m for m in said()), what="why not")
        assert "cannot run this step yet: it needs previous_image: press i to set it" in said(), said()

        await pilot.press("i")
        dialog = await wait_for_screen(pilot, ValueScreen)
        assert dialog.selected.name == "previous_image"  # what this step lacks comes first
        await pilot.press(*"registry.fly.io/storefront:v41", "enter")
        await wait_for(pilot, lambda: "input.set" in events(journal_path), what="the value journaled")
        assert app.screen is screen
        detail = str(screen.query_one("#rb-detail-text").render())
        assert "needs previous_image" not in detail and "--image registry.fly.io/storefront:v41" in detail

        await pilot.press("x")
        confirm = await wait_for_screen(pilot, ConfirmScreen)
        assert "registry.fly.io/storefront:v41" in str(confirm.plan)
        await pilot.press("escape")


async def test_at_80_columns_the_steps_and_the_timeline_fit_without_scrolling_sideways(tmp_path):
    """Long step titles made the steps table wider than the screen: a horizontal scrollbar took
    a line at 80x24 and the titles' ends were off screen. The title column takes what is left
    and is cut with …; so is the timeline's "what"."""
    from tests.test_ui_oncall import screen_text

    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await open_error_spike_runbook(pilot, app)
        await pilot.pause()
        steps = app.screen.query_one("#rb-steps")
        assert steps.max_scroll_x == 0 and not steps.show_horizontal_scrollbar
        shown = screen_text(app)
        assert "Roll storefront back to the previous image" in shown
        assert any(
            line.rstrip().endswith("…") for line in shown.splitlines()[steps.region.y : steps.region.bottom]
        )

        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, RunbookScreen), what="back")
        await asyncio.to_thread(app.journal.append, Note(text="a note " + "long " * 40))
        await pilot.press("t")
        await wait_for(
            pilot, lambda: isinstance(app.screen, TimelineScreen) and app.screen.loaded, what="timeline"
        )
        await pilot.pause()
        table = app.screen.query_one("#timeline-table")
        assert table.max_scroll_x == 0 and not table.show_horizontal_scrollbar


async def r_on_the_postgres_panel(pilot, app) -> RunbookPicker:
    """`R` on the Postgres panel once its lock breach fires: the picker it opens."""
    await wait_for(pilot, lambda: any(b.source == "postgres:main" for b in app.state.breaches), what="pg")
    await goto(pilot, app, PostgresPanel)
    await pilot.press("R")
    picker = app.screen
    assert isinstance(picker, RunbookPicker)
    return picker


async def test_r_on_the_postgres_panel_ranks_for_the_worst_breach_it_shows(tmp_path):
    """R with no breach selected used to say "no runbook matches" while a lock breach fired:
    from a panel it ranks for the worst breach of that panel's sources, and says which."""
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(120, 40)) as pilot:
        picker = await r_on_the_postgres_panel(pilot, app)
        worst = next(b for b in app.state.breaches if b.source == "postgres:main")
        ranked = [m.runbook.id for m in app.pack().rank(worst, app.config)]
        assert ranked and [m.runbook.id for m in picker.matches] == ranked[: len(picker.matches)]
        title = str(picker.query_one("#picker-title").render())
        assert "no runbook matches" not in title
        assert f"Runbooks for {worst.title} (worst breach on this panel)" in title


async def test_r_with_nothing_firing_lists_every_runbook_and_says_why(tmp_path):
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(120, 40)) as pilot:
        app.state = dataclasses.replace(app.state, breaches=())
        await goto(pilot, app, PostgresPanel)
        await pilot.press("R")
        picker = app.screen
        assert isinstance(picker, RunbookPicker) and picker.show_all
        title = str(picker.query_one("#picker-title").render())
        assert "nothing is in breach: every runbook" in title and "no runbook matches" not in title
        # `a` (All runbooks) toggled to the matching ones, which are none: an empty list under a
        # title that still said "every runbook".
        table = picker.query_one(KeyedTable)
        every = table.row_count
        assert every == len(app.pack().runbooks)
        await pilot.press("a")
        await pilot.pause()
        assert picker.show_all and table.row_count == every


async def test_a_in_the_picker_says_which_list_it_shows(tmp_path):
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(120, 40)) as pilot:
        picker = await r_on_the_postgres_panel(pilot, app)
        assert picker.matches and not picker.show_all
        table, title = picker.query_one(KeyedTable), picker.query_one("#picker-title")
        matching = table.row_count
        assert "showing every runbook" not in str(title.render())
        await pilot.press("a")
        await pilot.pause()
        assert table.row_count == len(app.pack().runbooks) > matching
        assert "showing every runbook; a: the matching ones again" in str(title.render())
        await pilot.press("a")
        await pilot.pause()
        assert table.row_count == matching and "showing every runbook" not in str(title.render())


async def test_r_on_breaches_a_filter_hides_ranks_for_the_worst_and_never_says_nothing_is_in_breach(tmp_path):
    """A text filter that hides every breach leaves nothing selected: R must not read that as
    "nothing is in breach" while a critical fires behind the filter."""
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(120, 40)) as pilot:
        table = panel(app, BreachesPanel).table
        await wait_for(pilot, lambda: table.row_count > 0, what="breaches on screen")
        table.focus()
        await pilot.press("slash", *"no-such-breach", "enter")
        await wait_for(pilot, lambda: table.row_count == 0, what="every breach filtered out")
        await pilot.press("R")
        picker = app.screen
        assert isinstance(picker, RunbookPicker)
        title = str(picker.query_one("#picker-title").render())
        assert "nothing is in breach" not in title
        assert f"Runbooks for {app.state.breaches[0].title} (worst breach; none selected)" in title


async def test_a_step_whose_preview_finds_no_session_asks_nothing_and_says_why(tmp_path, pg_server):
    """terminate-root-blocker when no session blocks anyone (a real, quiet Postgres): the
    preview lists no session. The console used to open the DANGEROUS dialog for "terminate 0
    sessions" and make the operator type the cluster's name, then refuse; it now asks nothing,
    and the step and the journal say why."""
    cluster = {**ui_data.CONFIG["postgres"][0], "dsn": pg_server.dsn()}
    config = ui_data.config(environment=STAGING, postgres=[cluster])
    refused, step = await terminate_root_blocker_asks_nothing(config, tmp_path)
    assert refused == "nothing to do: the preview found no sessions"
    assert step.state == StepState.TODO  # still the operator's to skip or re-run


async def test_a_breach_detail_names_the_runbooks_r_offers_for_it(tmp_path):
    """The detail said "runbooks —" for a breach whose picker offered runbooks: it showed the
    config's links only. It names what ``R`` lists first, in the picker's order."""
    from panels.detail import DetailScreen

    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await select_breach(pilot, app, "prometheus.error_rate")
        assert panel(app, BreachesPanel).selected.runbooks == ()  # no link in the config
        await pilot.press("R")
        picker = await wait_for_screen(pilot, RunbookPicker)
        offered = [m.runbook.id for m in picker.matches]
        assert offered and offered[0] == "error-spike"
        await pilot.press("escape")
        await pilot.press("enter")
        detail = await wait_for_screen(pilot, DetailScreen)
        lines = detail.query_one("TextArea").text.splitlines()
        assert f"runbooks     {', '.join(offered)}" in lines, lines


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
async def test_the_runbook_picker_fits_its_box_and_says_why_under_the_table(tmp_path, size):
    """At 80x24 the picker's table was wider than its box: titles cut mid-word without a mark
    and the why column off the box. The title now takes what the id leaves (cut with …), the
    why column goes, and the line under the table says the highlighted runbook's title and why.
    Wide, the table fits its box too (the box stops at 140 columns)."""
    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=size) as pilot:
        await select_breach(pilot, app, "prometheus.error_rate")
        await pilot.press("R")
        picker = await wait_for_screen(pilot, RunbookPicker)
        table = picker.query_one("#picker-table")
        await wait_for(pilot, lambda: table.virtual_size.width <= table.size.width, what="table fits")
        assert not table.show_horizontal_scrollbar
        first = picker.matches[0]
        why = str(picker.query_one("#picker-why").render())
        assert f"why: {first.why}" in why and first.runbook.id == "error-spike"
        assert "High error rate on storefront" in why
        if len(picker.matches) > 1:
            await pilot.press("down")
            second = picker.matches[1]
            assert f"why: {second.why}" in str(picker.query_one("#picker-why").render())


async def test_a_steps_result_is_on_screen_at_80x24_without_scrolling(tmp_path, pg_server, pg_lock_chain):
    """At 80x24 the detail pane has a few lines: a check's result came after its SQL, below the
    fold, and the operator paged down to read it. What the operator acts on comes first: the
    result and its rows, then what the step runs."""
    await pg_lock_chain()
    cluster = {**ui_data.CONFIG["postgres"][0], "dsn": pg_server.dsn()}
    config = ui_data.config(environment=STAGING, postgres=[cluster])
    app = make_app(config=config, journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_lock_runbook(pilot, app)
        await goto_step(pilot, screen, "blocked")
        status = screen.session.progress.status("blocked")
        await pilot.press("x")
        await wait_for(pilot, lambda: status.state == StepState.DONE, what="check done")
        await pilot.pause()
        pane = screen.query_one("#rb-detail")
        lines = str(screen.query_one("#rb-detail-text").render()).splitlines()
        shown = lines[: pane.scrollable_content_region.height]
        assert pane.scroll_y == 0 and len(lines) > len(shown)  # the pane does not hold it all
        assert any(line.startswith("last: ") and " rows" in line for line in shown), shown
        words = " ".join(" ".join(shown).split())  # a long row wraps, its rest indented
        assert status.lines and " ".join(status.lines[0].split()) in words, shown


async def test_a_check_that_finds_the_problem_reads_not_met_and_one_that_cannot_run_failed(
    tmp_path, pg_server, pg_lock_chain
):
    """'✖ FAILED' on a check that ran and found sessions waiting read as a broken check. It
    reads '✖ NOT MET' (the problem is there); a check that cannot reach its cluster is FAILED."""
    await pg_lock_chain()
    live = {**ui_data.CONFIG["postgres"][0], "dsn": pg_server.dsn()}
    for cluster, state, badge in (
        (live, StepState.NOT_MET, "✖ NOT MET"),
        (ui_data.CONFIG["postgres"][0], StepState.FAILED, "✖ FAILED"),  # nothing listens there
    ):
        config = ui_data.config(environment=STAGING, postgres=[cluster])
        app = make_app(config=config, journal=Journal(tmp_path / f"{state}.jsonl"))
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_lock_runbook(pilot, app)
            status = screen.session.progress.status("waiting")
            await pilot.press("x")
            await wait_for(
                pilot, lambda s=status: s.state not in (StepState.TODO, StepState.RUNNING), what="result"
            )
            assert status.state == state, status.message
            row = screen.query_one("#rb-steps").get_row("waiting")
            assert str(row[1]) == badge
        checks = [e for e in read_journal(tmp_path / f"{state}.jsonl").events if e.kind.startswith("check.")]
        again = checks[-1]
        assert again.kind == "check.failed" and again.result == (
            "not met" if state == StepState.NOT_MET else "failed"
        )


async def test_r_on_failing_syncs_puts_the_cause_firing_beside_them_first(tmp_path):
    """The demo's oauth-expired: HubSpot's token expired, so its syncs fail too. R on
    SyncJobFailure offered partial-sync-failures alone (whose retry would fail again); with
    UpstreamAuthFailing firing for the same integration and service, oauth-expired comes first,
    in the picker and in the Runbooks column, saying why."""
    from console.model import PromAlert, Severity

    def alert(name: str, severity: Severity) -> PromAlert:
        labels = (("alertname", name), ("job", "sync-worker"), ("provider", "hubspot"))
        return PromAlert(name=name, state="firing", severity=severity, labels=labels, annotations=(),
                         active_at=ui_data.NOW - 60)  # fmt: skip

    app = make_app(config=ui_data.config(environment=STAGING), journal=Journal(tmp_path / "journal.jsonl"))
    async with app.run_test(size=(200, 50)) as pilot:
        syncs = dataclasses.replace(
            ui_data.prometheus_snapshot(), alerts=(alert("SyncJobFailure", Severity.from_label("high")),)
        )
        app.render_state(app.poller.publish(syncs))
        breaches = panel(app, BreachesPanel)
        await wait_for(pilot, lambda: app._pack is not None, what="the runbook pack")
        app.render_state(app.state)
        sync_id = next(b.id for b in app.state.breaches if b.title == "SyncJobFailure")
        await wait_for(pilot, lambda: breaches.hints.get(sync_id) == "partial-sync-failures", what="hint")

        both = dataclasses.replace(
            syncs, alerts=(*syncs.alerts, alert("UpstreamAuthFailing", Severity.CRITICAL))
        )
        app.render_state(app.poller.publish(both))
        await wait_for(
            pilot, lambda: breaches.hints.get(sync_id) == "oauth-expired", what="hint of the cause"
        )
        await select_breach(pilot, app, sync_id)
        await pilot.press("R")
        picker = await wait_for_screen(pilot, RunbookPicker)
        assert [m.runbook.id for m in picker.matches][:2] == ["oauth-expired", "partial-sync-failures"]
        assert picker.matches[0].why == "UpstreamAuthFailing (hubspot) fires too: it causes this"
        # a long title and a long why: the why column stays inside the box (it was cut by its edge)
        table = picker.query_one("#picker-table")
        await wait_for(pilot, lambda: table.virtual_size.width <= table.size.width, what="table fits")
        # opened, the run is for the cause: its provider and service fill the runbook's inputs
        await pilot.press("enter")
        screen = await wait_for_screen(pilot, RunbookScreen)
        assert screen.session.breach.title == "UpstreamAuthFailing"
        assert "for: UpstreamAuthFailing" in str(screen.query_one("#rb-trigger").render())
