"""Cheap at rest (issue 20, point 1): with nothing changing, a refresh repaints the clock and the
ages only. Counts of work done, never timings (those are in bench/RESULTS.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from console.app import ConsoleApp
from panels.breaches import BreachesPanel
from tests import ui_data
from tests.pilot import wait_for
from tests.test_ui import Clock, make_app, panel


class TickCountingApp(ConsoleApp):
    ticks = 0

    def _tick(self) -> None:
        self.ticks += 1
        super()._tick()


async def pack_loaded(pilot, app: ConsoleApp) -> None:
    """The runbook pack loads in a thread and, once loaded, renders again with its Runbooks
    column: a test that counts the work of a render waits for it first (under load it landed
    inside one's loop, a CI run at f59d1ab)."""
    await wait_for(pilot, lambda: app._pack is not None, 20, "the runbook pack")
    await pilot.pause()


async def test_a_tick_does_not_follow_a_render_that_did_its_work():
    """At a 1 s refresh each poll's render shows the ages and the clock; a tick between two
    renders redrew them again, a second screen update every second."""
    clock = Clock()
    app = make_app(clock=clock, cls=TickCountingApp)
    async with app.run_test(size=(160, 48)) as pilot:
        app.ticks = 0
        for _ in range(12):  # 12 renders 0.25 s apart: a source polled four times a second
            clock.now += 0.25
            app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))
            await pilot.pause(0.25)
        assert app.ticks == 0
        await pilot.pause(1.6)  # no render: the tick keeps ages and the clock going
        assert app.ticks >= 1


async def test_breaches_whose_values_moved_send_nothing_to_the_journal_thread(monkeypatch):
    """Each poll's breaches differ from the last (a wait grows by a second) while none starts,
    changes state or ends: the journal has nothing to write, and no thread is started for it."""
    import panels.app

    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await pack_loaded(pilot, app)  # it runs in a thread too
        app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))
        await app._journal_breaches()
        await pilot.pause()
        threads = []
        real = panels.app.asyncio.to_thread

        async def counting(func, *args, **kwargs):
            threads.append(func)
            return await real(func, *args, **kwargs)

        monkeypatch.setattr(panels.app.asyncio, "to_thread", counting)
        before = app._journaled
        clock.now += 1
        app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))
        await app._journal_breaches()
        assert app._journaled != before  # the breaches did move
        assert [f for f in threads if f.__name__ == "record_breaches"] == []


def test_the_console_command_line_imports_no_other_command_module():
    """`incident-console run` (or no command) parses without importing the demo, runbook, serve
    and journal commands; help and those commands still see them all."""
    import subprocess
    import sys

    code = (
        "import sys, console.cli as c; c._parser(['--config', 'x.yaml']); c._parser(['run']);"
        "print(sorted(m for m in c.COMMAND_MODULES if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_module_commands_name_every_command_the_modules_add():
    import argparse

    from console import cli

    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == cli.MODULE_COMMANDS | cli.CORE_COMMANDS
    for argv in (["demo"], ["export"], ["runbook", "list"], ["serve", "--help"], ["-h"], ["journal", "init"]):
        assert not cli._light(argv)


async def test_a_render_with_the_same_breaches_builds_no_breach_row(monkeypatch):
    """Every poll of every source renders the Breaches panel: rows whose breach, age, ack, hint
    and staleness did not change are the same cells as before, not rebuilt."""
    import panels.breaches
    from panels.breaches import BreachesPanel

    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        panel = next(p for p in app.panels if isinstance(p, BreachesPanel))
        await pack_loaded(pilot, app)
        assert panel.table.row_count > 3
        before = {key: panel.table.get_row(key) for key in panel.table.keys}
        built = []
        real = panels.breaches.breach_cells

        def counting(breach, *args, **kwargs):
            built.append(breach.id)
            return real(breach, *args, **kwargs)

        monkeypatch.setattr(panels.breaches, "breach_cells", counting)
        for _ in range(3):
            app.render_state(app.state)
            await pilot.pause()
        assert built == []
        assert {key: panel.table.get_row(key) for key in panel.table.keys} == before
        clock.now += 120  # the ages move: the rows follow
        app.render_state(app.state)
        assert built


def _without_statements(taken_at: float):
    """A server without pg_stat_statements (a stock Postgres): the statements table is empty
    and its subtitle says why."""
    return replace(
        ui_data.postgres_snapshot(taken_at=taken_at), statements=(), statements_status="not installed"
    )


@pytest.mark.parametrize(
    "snapshot",
    [ui_data.postgres_snapshot, _without_statements],
    ids=["pg_stat_statements", "without-pg_stat_statements"],
)
async def test_the_same_data_again_repaints_no_table_and_lays_out_nothing(monkeypatch, snapshot):
    """Polls that bring the same data (new snapshot objects, same content, same clock) redraw
    no table row and never ask for a layout pass (a guard: this held before issue 20). Without
    pg_stat_statements the empty table's subtitle was set again at every poll, which redrew the
    whole table and, the screen's update being one region around all that changed, every line
    from the clock down to it: half the idle CPU on a server without the extension."""
    from textual.widget import Widget

    from panels.tables import KeyedTable

    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await pack_loaded(pilot, app)
        app.render_state(app.poller.publish(snapshot(taken_at=clock.now)))
        await pilot.pause()
        calls: list[tuple[str, bool]] = []
        real = Widget.refresh

        def counting(self, *regions, repaint=True, layout=False, recompose=False):
            calls.append((type(self).__name__, layout))
            return real(self, *regions, repaint=repaint, layout=layout, recompose=recompose)

        monkeypatch.setattr(Widget, "refresh", counting)
        monkeypatch.setattr(KeyedTable, "refresh", counting)
        for _ in range(5):
            app.render_state(app.poller.publish(snapshot(taken_at=clock.now)))
            await pilot.pause()
        assert [c for c in calls if c[0] == "KeyedTable"] == []
        assert [c for c in calls if c[1]] == []


async def test_the_statements_subtitle_goes_once_pg_stat_statements_answers():
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        app.render_state(app.poller.publish(_without_statements(clock.now)))
        await pilot.pause()
        table = app.query_one("#pg-statements")
        assert "pg_stat_statements: not installed" in str(table.border_subtitle)
        app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))
        await pilot.pause()
        assert not table.border_subtitle  # it said "not installed" beside the statements before


FIRST_SCREEN_CODE = """
import asyncio, sys
from pathlib import Path
from console.loader import load
from console.app import ConsoleApp

root = Path(sys.argv[1])
(root / "console.yaml").write_text(
    "environment: {name: first-screen}\\n"
    f"journal: {root / 'journal.jsonl'}\\n"
    "postgres:\\n  - {name: main, dsn: 'postgresql://nobody@127.0.0.1:9/none'}\\n"
)
loaded = load(root / "console.yaml")

async def main():
    app = ConsoleApp(loaded.config, pack=loaded.pack)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(20):  # the first poll (refused: port 9) and its render
            await pilot.pause(0.1)
            if app.state.snapshots:
                break
        assert app.state.snapshots, "no poll"
        await pilot.press("down", "tab")

asyncio.run(main())
print(" ".join(sorted(sys.modules)))
"""

#: Modules the first screen of a Postgres-only console without runbooks does not need: the
#: runbook schema and pack reader, the executor and its action kinds, the HTTP and Prometheus
#: client libraries, the action specs and plans (for the dialogs), the detail view's TextArea
#: and its document model, the wall. Each is imported where it is first used (docs/SCALE.md,
#: start-up).
NOT_ON_THE_FIRST_SCREEN = (
    "console.actions.specs",
    "console.actions.plans",
    "textual.widgets._text_area",
    "textual.document",
    "textual.widgets._digits",
    "panels.wall",
    "console.runbooks.schema",
    "console.runbooks.pack",
    "console.runbooks.session",
    "console.actions.executor",
    "console.actions.registry",
    "console.sources.health",
    "console.sources.prometheus",
    "panels.runbook",
    "panels.demo_menu",
    "httpx",
    "requests",
    "prometheus_api_client",
)


def test_the_first_screen_imports_only_what_it_needs(tmp_path):
    """A Postgres-only console without runbooks starts, polls, renders and takes keys without
    importing the runbook and action machinery or an HTTP client (they cost ~0.2 s of start-up
    CPU and ~12 MB of RSS); each loads when first used."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FIRST_SCREEN_CODE, str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "TERM": "xterm"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(done.stdout.split())
    assert "console.sources.postgres" in loaded and "panels.postgres" in loaded  # it did poll
    assert sorted(loaded & set(NOT_ON_THE_FIRST_SCREEN)) == []


JOURNAL_AFTER_PAINT_CODE = """
import asyncio, json, sys
from pathlib import Path
from console.loader import load
from console.app import ConsoleApp

root = Path(sys.argv[1])
journal = root / "journal.jsonl"
(root / "console.yaml").write_text(
    "environment: {name: first-screen}\\n"
    f"journal: {journal}\\n"
    "postgres:\\n  - {name: main, dsn: 'postgresql://nobody@127.0.0.1:9/none'}\\n"
)
loaded = load(root / "console.yaml")
at_first_data = []

class Console(ConsoleApp):
    def render_state(self, state):
        if state.snapshots and not at_first_data:
            at_first_data.append(sorted(m for m in sys.modules if m.startswith(("console.journal", "console.timeline", "console.feed"))))
        super().render_state(state)

async def main():
    app = Console(loaded.config, pack=loaded.pack)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):  # the first poll (refused: port 9), its render, then its breach journaled
            await pilot.pause(0.1)
            if journal.exists() and "breach.start" in journal.read_text():
                break

asyncio.run(main())
lines = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
print(json.dumps({"at_first_data": at_first_data, "events": [line["event"] for line in lines]}))
"""


def test_the_journal_loads_after_the_first_data_is_drawn_and_still_records_it(tmp_path):
    """The journal's ~26 event classes (~30-45 ms of imports) are not needed to draw the first
    data; the breach that data shows is journaled right after it is drawn."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", JOURNAL_AFTER_PAINT_CODE, str(tmp_path)],
        capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "TERM": "xterm"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["at_first_data"] == [[]]
    assert seen["events"] == ["breach.start"]


async def test_the_executor_and_runbook_screens_load_when_first_used():
    """The lazily made executor is the one every action path uses, with the shared journal's
    claims when there is one; the runbook picker opens from the pack."""
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        assert app._executor is None and not app.action_running
        executor = app.executor
        assert app.executor is executor and executor.journal is app.journal
        app.action_runbooks()
        await pilot.pause()
        assert type(app.screen).__name__ == "RunbookPicker"


async def test_the_footer_recomposes_only_when_its_keys_change(monkeypatch):
    """Textual's footer mounted every key anew at each bindings signal: six times at start-up
    for the same keys (~80 ms of start-up CPU) and at every focus change. Now only a change in
    what it shows (the keys, the width) rebuilds it."""
    from textual.widgets import Footer as TextualFooter

    from panels.footer import Footer

    built = []
    real = TextualFooter.recompose

    async def counting(self):
        built.append(self)
        await real(self)

    monkeypatch.setattr(TextualFooter, "recompose", counting)
    app = make_app(clock=Clock())
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(Footer)
        before = len(built)
        app.screen.bindings_updated_signal.publish(app.screen)  # the same keys, said again
        await pilot.pause()
        assert len(built) == before
        keys = [str(k.description) for k in footer.query("FooterKey")]
        await pilot.resize_terminal(60, 48)  # fewer keys fit
        await pilot.pause()
        assert len(built) > before
        assert [str(k.description) for k in footer.query("FooterKey")] != keys


def fresh_app(*, hang: bool = False) -> ConsoleApp:
    """A polling console whose poller has published nothing yet, as at start-up."""
    from console.poller import Poller

    clock, config = Clock(), ui_data.config()
    poller = Poller(config, sources=ui_data.sources(hang=hang), clock=clock)
    return ConsoleApp(config, poller=poller, clock=clock, autopoll=True)


async def test_the_panels_show_with_the_first_data_not_empty_before_it():
    """At start-up the panels are drawn once, with the first data: drawing them empty first was a
    whole layout and paint (~60 ms of start-up CPU). The active table has the focus when they show."""
    from tests.pilot import wait_for

    app = fresh_app()
    shown_empty = []
    app.call_later(lambda: shown_empty.append(app.grid.display and not app.state.snapshots))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.grid.display, 5, "the panels shown")
        assert app.state.snapshots and shown_empty == [False]  # held back until a source answered
        assert app.focused is panel(app, BreachesPanel).table
    # The table's focus event can arrive as the console closes, after its screens are gone: it
    # raised ScreenStackError there (the fresh-clone CI at 4027ae3 failed on it).
    app.on_descendant_focus(None)


async def test_the_panels_show_by_the_reveal_time_when_no_source_answers():
    """Sources that hang: the panels show after STARTUP_REVEAL anyway, saying they wait."""
    import panels.app

    app = fresh_app(hang=True)
    reveals = record_reveals(app)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: app.grid.display, 5, "the panels shown")
        assert app.focused is panel(app, BreachesPanel).table
    assert [hidden for hidden, _ in reveals[:1]] == [True] and not app.state.snapshots
    assert reveals[0][1] >= panels.app.STARTUP_REVEAL  # the timer's, not a source's render


def record_reveals(app: ConsoleApp) -> list[tuple[bool, float]]:
    """Each reveal as (panels hidden before it, seconds since the console was built). What the
    test reads after `run_test` hands over depends on how long that took: under load, longer
    than STARTUP_REVEAL (the fresh-clone CI at fe5b02a)."""
    import time

    reveal, built, reveals = app._reveal_panels, time.monotonic(), []

    def recording() -> None:
        reveals.append((not app.grid.display, time.monotonic() - built))
        reveal()

    app._reveal_panels = recording
    return reveals


async def test_a_console_that_does_not_poll_shows_its_panels_at_once():
    app = make_app(autopoll=False)
    async with app.run_test(size=(160, 48)):
        assert app.grid.display


async def test_a_reveal_that_comes_while_the_console_closes_does_nothing():
    """A poll's render (or the reveal timer) can run after the screens are gone, as the console
    closes: it raised ScreenStackError (the CI run at bf15803)."""
    app = fresh_app(hang=True)
    async with app.run_test(size=(160, 48)):
        pass
    app.grid.display = False  # as if closed before its reveal time (a slow start passes it)
    app._reveal_panels()
    assert not app.grid.display


async def test_a_tick_that_comes_while_the_console_closes_does_nothing():
    """The once-a-second tick can fire after the screens are gone: with a shared journal it
    asked for the current screen (where this console is, for the others' headers) and raised
    ScreenStackError (the fresh-clone CI run at f59d1ab, in tests/test_ui_shared.py)."""
    import types

    app = make_app()
    async with app.run_test(size=(160, 48)):
        app.shared = types.SimpleNamespace(where="")
    app._tick()
    assert app.shared.where == ""


async def test_a_partial_update_draws_only_its_rows_and_the_screen_still_matches(monkeypatch):
    """Textual asked every widget a partial update touched for all its lines (panels/partial.py):
    the clock and one breach row drew every line of the screen behind them, 40 at 120x40. Now
    they draw the rows between them only, and what the updates wrote while every age moved
    still adds up to the screen a full redraw shows."""
    from textual.widget import Widget

    from panels.header import ConsoleHeader
    from panels.terminal import ScreenMemory, _cells

    clock = Clock()
    app = make_app(clock=clock)
    written = ScreenMemory()
    drawn: list[tuple[str, int]] = []
    real_render_lines = Widget.render_lines

    def render_lines(self, crop):
        drawn.append((type(self).__name__, crop.height))
        return real_render_lines(self, crop)

    def display(self, screen, update) -> None:
        written.filter(update, self.size, self.console)

    async with app.run_test(size=(120, 40)) as pilot:
        await pack_loaded(pilot, app)
        monkeypatch.setattr(type(app), "_display", display)
        app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))
        app.screen.refresh(layout=True)  # a full redraw first: the memory starts from it
        await pilot.pause()
        monkeypatch.setattr(Widget, "render_lines", render_lines)
        app.query_one(ConsoleHeader).refresh()  # the clock, line 0
        panel(app, BreachesPanel).table.refresh_row(1)  # a breach's age, line 5
        await pilot.pause()
        assert ("Screen", 6) in drawn and "PostgresPanel" not in {name for name, _ in drawn}, drawn
        assert max(height for _, height in drawn) <= 6, drawn
        monkeypatch.setattr(Widget, "render_lines", real_render_lines)
        for _ in range(3):
            clock.now += 1  # every age and duration moves
            app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))
            await pilot.pause()
        full = app.screen._compositor.render_strips()
        shown = ["".join(c for c, _ in line) for line in written.lines]
        assert shown == ["".join(c for c, _ in _cells(strip)) for strip in full]


async def test_statements_read_earlier_are_not_shown_again(monkeypatch):
    """pg_stat_statements is read every statements_every seconds; between reads each poll's
    snapshot carries the same list, whose rows were built and compared again at every poll."""
    from panels.postgres import PostgresPanel

    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await pack_loaded(pilot, app)
        first = ui_data.postgres_snapshot(taken_at=clock.now)
        app.render_state(app.poller.publish(first))
        await pilot.pause()
        pg = panel(app, PostgresPanel)
        shown = pg.statements.keys
        synced: list[int] = []
        real = pg.statements.sync
        monkeypatch.setattr(pg.statements, "sync", lambda rows: synced.append(len(rows)) or real(rows))
        clock.now += 1
        app.render_state(app.poller.publish(replace(first, taken_at=clock.now)))  # the same list
        await pilot.pause()
        assert synced == [] and pg.statements.keys == shown
        app.render_state(app.poller.publish(ui_data.postgres_snapshot(taken_at=clock.now)))  # read again
        app.render_state(app.poller.publish(_without_statements(clock.now)))
        app.render_state(app.poller.publish(replace(first, taken_at=clock.now)))  # back after none
        await pilot.pause()
        assert synced == [len(shown), 0, len(shown)] and pg.statements.keys == shown
