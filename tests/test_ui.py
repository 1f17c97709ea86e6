"""The live console driven by Pilot: every key, every state, truthfulness, hostile text."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from textual.command import CommandPalette
from textual.worker import WorkerCancelled

from console.app import ConsoleApp
from console.config import Config
from console.journal import Journal, read_journal
from console.model import ErrorKind, SourceError
from panels.breaches import BreachesPanel
from panels.confirm import ConfirmScreen
from panels.detail import DetailScreen
from panels.health import HealthPanel
from panels.help import HelpScreen
from panels.postgres import PostgresPanel
from tests import ui_data
from tests.pilot import wait_for, wait_for_screen
from tests.ui_data import NOW


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


class BellCountingApp(ConsoleApp):
    bells = 0
    flashing = False  # the header flashed as the bell rang

    def bell(self) -> None:
        self.bells += 1
        self.flashing = self.header.has_class("-flash")


def make_app(*, config=None, clock=None, autopoll=False, hang=False, cls=ConsoleApp, **kwargs) -> ConsoleApp:
    config = config or ui_data.config()
    clock = clock or Clock()
    poller = ui_data.poller(config, clock=clock, hang=hang)
    return cls(config, poller=poller, clock=clock, autopoll=autopoll, **kwargs)


def panel(app: ConsoleApp, kind: type):
    return next(p for p in app.panels if isinstance(p, kind))


def row_keys(table) -> list[str]:
    return [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]


def pids(app: ConsoleApp) -> list[int]:
    return [int(key.split(":")[0]) for key in row_keys(panel(app, PostgresPanel).sessions)]


async def goto(pilot, app: ConsoleApp, kind: type) -> None:
    for _ in range(len(app.panels)):
        if panel(app, kind).has_class("-active"):
            return
        await pilot.press("tab")
    raise AssertionError(f"could not reach {kind.__name__}")


async def test_80x24_collapses_to_tabs_and_tab_moves_between_panels():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.narrow
        visible = [p for p in app.panels if p.display and p.styles.display != "none" and p.region.height]
        assert [type(p) for p in visible] == [BreachesPanel]
        await pilot.press("tab")
        assert panel(app, HealthPanel).has_class("-active") and panel(app, HealthPanel).region.height
        assert not panel(app, BreachesPanel).region.height
        await pilot.press("shift+tab")
        assert panel(app, BreachesPanel).has_class("-active")
        await pilot.press("shift+tab")  # wraps around to the last panel
        assert panel(app, PostgresPanel).has_class("-active")


async def test_wall_size_shows_every_panel_at_once():
    app = make_app()
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        assert not app.narrow
        assert all(p.region.height > 3 for p in app.panels)


async def test_a_resize_while_another_screen_is_open_lays_the_panels_out_for_the_new_size():
    """Found in the demo: a terminal grown from 80x24 to 200x60 while a runbook was open
    (a tmux re-attach over SSH does this) came back to the panels still tabbed, one at a time,
    until the next resize: the size class went to the screen on top. Shrinking likewise."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.narrow
        for size, narrow in (((200, 60), False), ((80, 24), True)):
            await pilot.press("question_mark")  # the help screen: any screen over the panels
            await wait_for(pilot, lambda: app.screen is not app.screen_stack[0], what="help open")
            await pilot.resize_terminal(*size)
            await pilot.pause()
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what="help closed")
            await pilot.pause()
            assert app.narrow is narrow, size
            shown = [p for p in app.panels if p.region.height > 3]
            assert len(shown) == (1 if narrow else len(app.panels)), size


async def test_breaches_sorted_by_severity_then_age_with_details():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        table = panel(app, BreachesPanel).table
        keys = row_keys(table)
        severities = [b.counted_severity for b in app.state.breaches]
        assert severities == sorted(severities, reverse=True)
        assert keys[0].startswith("alert:HighErrorRate")  # critical and the oldest
        assert "postgres.main.waiting" in keys
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        text = app.screen.query_one("TextArea").text
        assert "HighErrorRate" in text and "5xx above 5% for 5 minutes" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_a_breach_on_before_the_console_looked_reads_as_at_least_its_age():
    """A console opened mid-incident said "firing for 3s" (breaches panel, wall, detail) for a
    threshold breach ten minutes old. An alert carries its own start (activeAt) and stays plain."""
    from panels.wall import breach_tiles

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = panel(app, BreachesPanel).table
        ages = {key: str(table.get_cell(key, "age")) for key in table.keys}
        assert ages["postgres.main.waiting"].startswith("≥"), ages
        alert = next(b for b in app.state.breaches if b.kind == "alert")
        assert not ages[alert.id].startswith("≥"), ages
        tiles = {t.title: t.detail for t in breach_tiles(app.state, NOW)}
        assert "firing for ≥" in tiles["main: sessions waiting on a lock"], tiles
        table.focus()
        table.move_cursor(row=table.get_row_index("postgres.main.waiting"))
        await pilot.press("enter")
        text = app.screen.query_one("TextArea").text
        assert "or earlier: already so when this console started" in text


async def test_an_empty_breach_list_says_nothing_is_breached_only_while_its_data_is_fresh():
    """At 3 a.m. a blank table read the same whether all was well or nothing had loaded; and
    the wall said ALL CLEAR on data a minute old (a paused console, a poll that hangs)."""
    from console.poller import Poller
    from console.present import overall_badge
    from panels.wall import breach_tiles

    healthy = next(s for s in ui_data.health_snapshots() if s.target == "sync-worker")
    source = ui_data.ReplaySource(healthy.source, [healthy], 5.0)
    clock = Clock()
    poller = Poller(ui_data.config(), sources=[source], clock=clock)
    assert breach_tiles(poller.state, clock.now)[0].big == "NO DATA YET"  # before the first poll
    assert overall_badge(poller.state, clock.now) == "… NO DATA"  # the header's word
    poller.publish(healthy)
    app = ConsoleApp(ui_data.config(), poller=poller, clock=clock, autopoll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        breaches = panel(app, BreachesPanel)
        await wait_for(pilot, lambda: "nothing breached" in str(breaches.status.render()), what="all clear")
        assert app.state.breaches == () and breaches.table.row_count == 0
        assert breach_tiles(app.state, clock.now)[0].big == "ALL CLEAR"
        assert str(app.header.render()).split(" │ ")[1] == "● OK"
        clock.now += 60  # no poll for a minute: the list is old, and says so instead
        await wait_for(pilot, lambda: "stale" in str(breaches.status.render()), what="the next tick")
        status = str(breaches.status.render())
        assert "nothing breached" not in status, status
        (tile,) = breach_tiles(app.state, clock.now)
        assert (tile.badge, tile.big) == ("◌ STALE", "NO FRESH DATA"), tile
        assert tile.detail == "last good data: sync-worker 1m00s", tile
        assert str(app.header.render()).split(" │ ")[1] == "◌ STALE"  # it said ● OK


async def test_a_console_that_watches_nothing_says_so_where_it_would_say_ok():
    """A config with no source (a console for walking runbooks): the header said ● OK with an
    empty sources segment ("│  │") and the breaches panel "waiting for the first poll…" for good."""
    app = ConsoleApp(ui_data.config(health=[], prometheus=None, postgres=[]), autopoll=False)
    async with app.run_test(size=(80, 24)) as pilot:
        breaches = panel(app, BreachesPanel)
        await wait_for(pilot, lambda: "nothing watched" in str(breaches.status.render()), what="the status")
        assert str(breaches.status.render()).startswith("nothing watched: the config names no health target")
        line = app.header.compose_line(app.clock(), 80).plain
        assert line.split(" │ ")[1:-1] == ["○ NOTHING WATCHED"], line


async def test_quick_filters_text_filter_and_sort_keep_selection():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        # What needs attention first (issue 18): the lock chain (its root blocker, idle in
        # transaction, then its waiters), the active queries, the idle ones; longest first.
        assert pids(app) == [4242, 4250, 4251, 4300, 4310, 4400, 4401]
        await pilot.press("w")
        assert sorted(pids(app)) == [4250, 4251]
        await pilot.press("i")
        assert pids(app) == [4242]
        await pilot.press("a")
        assert sorted(pids(app)) == [4250, 4251, 4300, 4310]
        await pilot.press("e")
        assert len(pids(app)) == 7
        await pilot.press("s")  # duration descending
        assert pids(app)[0] == 4300
        await pilot.press("s")  # duration ascending
        assert pids(app)[0] == 4401
        await pilot.press("s")  # pid order
        assert pids(app) == sorted(pids(app))
        await pilot.press("s", "s", "s")  # user, state, then back to attention
        assert pids(app)[0] == 4242
        await pilot.press("slash")
        await pilot.press(*"4250")
        await pilot.press("enter")
        assert pids(app) == [4250]
        assert "4250" in str(panel(app, PostgresPanel).summary.render())
        await pilot.press("slash", "ctrl+u", "enter")  # clear the text filter
        assert len(pids(app)) == 7


async def test_selection_and_filters_survive_new_data_and_reordering():
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        pg = panel(app, PostgresPanel)
        await pilot.press("a")
        pg.sessions.move_cursor(row=pids(app).index(4250))
        assert pg.selected.pid == 4250
        clock.now += 30
        later = ui_data.postgres_snapshot(taken_at=clock.now, xact_total=123_000)
        app.render_state(app.poller.publish(later))
        await pilot.pause()
        assert pg.filter_name == "active"
        assert pg.selected.pid == 4250
        assert "100.0 tx/s" in str(pg.summary.render())  # 3000 transactions in 30 s


async def test_enter_on_a_session_shows_the_full_hostile_text_literally():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        pg = panel(app, PostgresPanel)
        pg.sessions.move_cursor(row=pids(app).index(4310))
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        text = app.screen.query_one("TextArea").text
        assert "[/foo] [@click=app.quit] [$accent]x[/]" in text
        assert "␛[2J" in text and "\x1b" not in text
        await pilot.press("escape")
        assert app.is_running


async def test_cancel_and_terminate_ask_first_and_default_to_cancel(tmp_path):
    journal = tmp_path / "journal.jsonl"
    app = make_app(
        config=ui_data.config(environment={"name": "staging", "production": False}), journal=Journal(journal)
    )
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        await pilot.press("c")
        dialog = await wait_for_screen(pilot, ConfirmScreen)
        assert dialog.typed is None
        assert dialog.focused.id == "cancel"
        await pilot.press("enter")  # Enter on a fresh dialog = Cancel
        assert not isinstance(app.screen, ConfirmScreen)
        await pilot.press("K")
        dialog = await wait_for_screen(pilot, ConfirmScreen)
        assert dialog.typed == "4242"
        await pilot.press("enter")  # nothing typed: refused, dialog stays
        assert app.screen is dialog
        await pilot.press(*"4243", "enter")  # a wrong pid: refused
        assert app.screen is dialog
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmScreen)
        # Every refused try and the abandoned dialog are in the journal, in order.
        await wait_for(pilot, lambda: "action.declined" in kinds(journal), 5, "the declined dialog journaled")
        actions = [e for e in read_journal(journal).events if e.kind.startswith("action.")]
        assert [(e.kind, e.get("message")) for e in actions] == [
            ("action.requested", ""),  # c (its preview), then Enter on Cancel
            ("action.declined", ""),
            ("action.requested", ""),
            ("action.refused", "not confirmed: type '4242' to run this"),
            ("action.refused", "not confirmed: typed '4243', expected '4242'"),
            ("action.declined", ""),
        ]
        assert all(e.get("plan", {}).get("target") for e in actions)


async def answer(keys: tuple[str, ...], typed: str | None = None) -> tuple[bool | None, str]:
    """What a dialog returns after ``keys`` (None: still open), and the text in its input."""
    from textual.app import App

    results: list[bool] = []

    class Host(App[None]):
        def on_mount(self) -> None:
            self.push_screen(ConfirmScreen("Run it?", "echo hi", typed=typed), results.append)

    async with Host().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press(*keys)
        await pilot.pause()
        dialog = pilot.app.screen
        value = (
            dialog.query_one("#confirm-input").value if isinstance(dialog, ConfirmScreen) and typed else ""
        )
    return (results[0] if results else None), value


async def test_a_dialog_at_80x24_is_not_covered_by_the_toasts_of_earlier_results():
    """Toasts are drawn over every screen: two step results covered the lines the dialog
    touches, the word to type and the Run button."""
    from textual.app import App

    from tests.test_ui_oncall import screen_text

    class Host(App[None]):
        def on_mount(self) -> None:
            self.notify("NOT MET: value 161.217, expected below 5", timeout=30)
            self.notify("PASS: 1 row from the chain of sessions waiting on a lock", timeout=30)

    plan = "\n".join(f"pid 6353 | checkout | line {i} of what it touches" for i in range(12))
    async with Host().run_test(size=(80, 24), notifications=True) as pilot:
        await wait_for(pilot, lambda: "NOT MET" in screen_text(pilot.app), what="the toasts")
        pilot.app.push_screen(ConfirmScreen("DANGEROUS: cancel 1 session", plan, typed="6353"))
        await wait_for(pilot, lambda: "Type 6353" in screen_text(pilot.app), what="the dialog")
        await pilot.pause(0.2)
        shown = screen_text(pilot.app)
        assert "NOT MET" not in shown and "PASS: 1 row" not in shown
        assert "line 11 of what it touches" in shown and "Type 6353 to confirm:" in shown
        assert "Don't run" in shown and " Run " in shown


async def test_y_and_n_answer_a_yes_no_dialog_but_never_a_typed_one():
    """The yes/no dialog asks "Run ...? [y/N]": y runs, n does not; a typed confirmation takes
    only the typed word (y goes into its input)."""
    assert await answer(("y",)) == (True, "")
    assert await answer(("n",)) == (False, "")
    assert await answer(("y",), typed="4242") == (None, "y")
    assert await answer(("tab", "y"), typed="4242") == (
        None,
        "",
    )  # focus on the buttons: y still is no answer
    assert await answer((*tuple("4242"), "enter"), typed="4242") == (True, "")


def kinds(journal) -> list[str]:
    return [e.kind for e in read_journal(journal).events]


async def test_a_dialog_open_as_the_console_closes_is_journaled_as_abandoned(tmp_path):
    journal = tmp_path / "journal.jsonl"
    app = make_app(journal=Journal(journal))
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        await pilot.press("K")
        await wait_for_screen(pilot, ConfirmScreen)
        [worker] = app.workers.cancel_group(app, "action")
        with contextlib.suppress(WorkerCancelled):
            await worker.wait()
    [declined] = [e for e in read_journal(journal).events if e.kind == "action.declined"]
    assert declined.get("message") == "abandoned: the console closed"


async def test_production_makes_even_cancel_typed():
    app = make_app()  # ui_data's environment is production
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        await pilot.press("c")
        assert (await wait_for_screen(pilot, ConfirmScreen)).typed == "4242"


async def test_read_only_and_wall_modes_offer_no_actions():
    app = make_app(read_only=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        await pilot.press("K")
        assert not isinstance(app.screen, ConfirmScreen)
        assert "READ-ONLY" in str(app.header.render())
    app = make_app(wall=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("p", "r")
        assert not app.paused
        assert app.check_action("pause", ()) is False


async def test_pause_stops_polling_and_refresh_polls_now():
    app = make_app(autopoll=True)
    async with app.run_test(size=(120, 40)) as pilot:
        source = app.poller.sources["postgres:main"]
        await pilot.pause(0.1)
        assert source.polls >= 1
        await pilot.press("p")
        assert "PAUSED" in str(app.header.render())
        before = source.polls
        await pilot.press("r")
        await pilot.pause(0.2)
        assert source.polls == before  # paused: nothing polls, not even refresh
        await pilot.press("p")
        await pilot.pause(0.1)
        assert source.polls == before + 1  # resuming polls at once
        await pilot.press("r")
        await pilot.pause(0.1)
        assert source.polls == before + 2


async def test_keys_answer_while_every_backend_hangs():
    app = make_app(autopoll=True, hang=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        assert app._inflight == set(app.poller.sources)  # every poll is stuck
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "tab", "p")
        assert app.paused


async def test_stale_data_greys_out_and_errors_keep_the_last_good_data():
    clock = Clock()
    app = make_app(clock=clock)
    async with app.run_test(size=(160, 48)) as pilot:
        pg = panel(app, PostgresPanel)
        assert not pg.has_class("-stale")
        error = SourceError(ErrorKind.UNREACHABLE, "connection refused (port 4)")
        clock.now += 7
        failed = dataclasses.replace(
            ui_data.postgres_snapshot(), error=error, taken_at=clock.now, sessions=()
        )
        app.render_state(app.poller.publish(failed))
        app._tick()
        await pilot.pause()
        status = str(pg.status.render())
        assert "stale 7.0s" in status and "unreachable: connection refused (port 4)" in status
        assert pg.has_class("-stale")
        assert len(pids(app)) == 7  # the last good sessions stay on screen
        assert app.is_running


async def test_a_new_critical_rings_the_bell_once():
    app = make_app(cls=BellCountingApp)
    async with app.run_test(size=(120, 40)) as pilot:
        # Read as the bell rang, not when run_test hands over: on a loaded machine (the
        # fresh-clone CI at a95ba4a) that came after FLASH_SECONDS, the flash already gone.
        assert app.bells == 1 and app.flashing
        app.render_state(app.state)
        assert app.bells == 1
        await wait_for(pilot, lambda: not app.header.has_class("-flash"), 10, "the flash to end")
    quiet = ui_data.config(ui={"bell": False})
    app = make_app(config=quiet, cls=BellCountingApp)
    async with app.run_test(size=(120, 40)):
        assert app.bells == 0


async def test_user_keymap_remaps_bindings_and_help_lists_them():
    app = make_app(config=ui_data.config(ui={"keymap": {"pause": "x"}}))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("p")
        assert not app.paused
        await pilot.press("x")
        assert app.paused
        await pilot.press("question_mark")
        rows = {(k, d) for k, d, _ in app.screen.rows}
        assert ("x", "Pause") in rows and ("K", "Terminate") in rows and ("c", "Cancel query") in rows


async def test_command_palette_and_quit():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        # what the executor holds while an action runs (its single-flight slot)
        app.executor.running = app.executor.signal_plan("main", 4300, NOW - 60, "cancel")
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # default: do not quit
        assert app.is_running
        app.executor.running = None
        await pilot.press("q")
    assert app.return_code == 0


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_no_color_still_reads_severity(monkeypatch, size):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        assert app.no_color
        screen_text = app.export_screenshot()
        for word in ("✖ CRIT", "▲ WARN", "PROD eu-prod"):
            assert word.replace(" ", "&#160;") in screen_text or word in screen_text


async def test_wall_mode_tiles_rotate_and_offer_no_actions():
    from panels.wall import PAGES, Tile, WallScreen

    app = make_app(wall=True)
    async with app.run_test(size=(200, 60)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, WallScreen) and app.read_only
        shown = [t for t in app.screen.query(Tile) if t.display]
        titles = [str(t.query(".title").first().render()) for t in shown]
        assert titles[0] == "HighErrorRate" and len(shown) == 6  # ui.wall.tiles
        assert shown[0].has_class("-crit") and shown[-1].has_class("-warn")
        for name in PAGES[1:]:
            app.screen.next_page()
            await pilot.pause()
            assert name in str(app.screen.query_one("#wall-page").render())
        last_page = [str(t.query(".title").first().render()) for t in app.screen.query(Tile) if t.display]
        assert last_page == ["Postgres main"]
        for key in ("K", "c", "p", "r", "slash", "tab"):
            await pilot.press(key)
        assert isinstance(app.screen, WallScreen) and not app.paused
        for _ in range(500):  # a long-running wall keeps bounded history
            app.wall_screen._seen_at = None
            app.wall_screen.show(app.state, NOW)
        assert all(len(series) <= 60 for series in app.wall_screen.history.values())


async def test_a_wall_between_states_keeps_its_clock_and_ages_and_goes_stale():
    """A serve viewer whose engine stalled (the feed open, no state coming) kept the clock of
    its last state and every ● and ALL CLEAR for good: the once-a-second tick returned at once
    on a wall, which has no panel grid. Found by stopping serve (SIGSTOP) in the demo."""
    import time

    from console.poller import Poller
    from panels.wall import Tile

    healthy = next(s for s in ui_data.health_snapshots() if s.target == "sync-worker")
    clock = Clock()
    poller = Poller(
        ui_data.config(), sources=[ui_data.ReplaySource(healthy.source, [healthy], 5.0)], clock=clock
    )
    poller.publish(healthy)
    app = ConsoleApp(ui_data.config(), poller=poller, clock=clock, autopoll=False, wall=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()

        def big() -> str:
            return next(t for t in app.screen.query(Tile) if t.display).data.big

        assert big() == "ALL CLEAR" and "● OK" in app.header._line.plain
        clock.now += 60  # no new state for a minute
        later = time.strftime("%H:%M:%SZ", time.gmtime(clock.now))
        await wait_for(
            pilot, lambda: app.header._line.plain.endswith(later), what=lambda: app.header._line.plain
        )
        assert "◌ STALE" in app.header._line.plain, app.header._line.plain
        await wait_for(pilot, lambda: big() == "NO FRESH DATA", what=big)
        app.screen.next_page()  # Health: the target's last PASS, said to be old (it was green ● PASS)
        await pilot.pause()
        tile = next(t for t in app.screen.query(Tile) if t.display)
        assert "Health" in str(app.screen.query_one("#wall-page").render())
        # STALE first, as the header says it: "● PASS ◌ stale" read as a pass at a glance.
        assert (tile.data.badge, tile.data.big) == ("◌ STALE, last PASS", "PASS"), tile.data
        assert tile.data.detail.startswith("data 1m00s old · ") and tile.has_class("-unknown"), tile.data


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
async def test_a_wall_tile_too_short_for_big_digits_says_its_value_in_words(size):
    """At 80x24 the tiles of two rows had one row for their 3x3 digits: a CRIT's value read
    "╶─╮╭─╴ ╶─╮" (found on the demo's wall). And the first page held six of the breaches
    without saying there were more."""
    from textual.widgets import Digits

    from panels.wall import Tile, breach_tiles

    ui = {**ui_data.CONFIG.get("ui", {}), "wall": {"tiles": 4}}
    app = make_app(config=ui_data.config(ui=ui), wall=True)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        shown = [t for t in app.screen.query(Tile) if t.display]
        # A tile chooses digits or words for its size, and again on each resize: on a busy
        # machine the first layout's sizes were still being settled when this test looked.
        big_digits = size == (200, 60)
        await wait_for(
            pilot,
            lambda: any(t.query_one(Digits).display for t in shown) == big_digits,
            5,
            lambda: [(t.data.big, t.size, t.query_one(Digits).display) for t in shown],
        )
        every = breach_tiles(app.state, NOW)
        assert len(every) > len(shown) == 4
        page = str(app.screen.query_one("#wall-page").render())
        assert page.startswith(f"Breaches  ·  4 of {len(every)}, worst first  ·  page 1/4"), page
        for tile in shown:
            value = tile.data.big
            digits = tile.query_one(Digits)
            if digits.display:
                assert size == (200, 60) and digits.region.height >= 3, (value, digits.region)
                assert digits.value == value
            else:
                assert value in str(tile.query_one(".big").render()), value
        assert any(t.query_one(Digits).display for t in shown) == big_digits


async def test_a_wall_tile_breaks_a_long_alert_name_where_its_words_part():
    """At 80x24 a tile folded BlackboxProbeHttpFailure at its width: "BlackboxProbeHttpFai"
    over "lure" (the demo's wall); on a wide tile the name stays on one line."""
    from textual.app import App

    from console.model import Severity
    from panels.wall import Tile, TileData

    class OneTile(App):
        CSS = "Tile { width: 24; height: 12; }"

        def compose(self):
            yield Tile()

    app = OneTile()
    async with app.run_test(size=(80, 24)) as pilot:
        tile = app.query_one(Tile)
        tile.show(TileData(Severity.CRITICAL, "✖ CRIT", "BlackboxProbeHttpFailure", "503"))
        await pilot.pause()
        title = tile.query_one(".title")

        def lines() -> list[str]:
            return [title.render_line(y).text.strip() for y in range(2)]

        await wait_for(pilot, lambda: lines()[1] == "Failure", 5, lines)
        assert title.render_line(0).text.strip() == "BlackboxProbeHttp"
        tile.styles.width = 60
        await wait_for(pilot, lambda: lines()[1] == "", 5, lines)
        assert title.render_line(0).text.strip() == "BlackboxProbeHttpFailure"


async def test_a_wall_tile_with_one_row_for_its_value_in_words_says_that_it_goes_on():
    """At 80x24 a tile has one row for its value: BlackboxProbeFailed's summary "Probe of
    http://127.0.0.1:1426/health fails" was wrapped and showed "Probe of", the rest cut unsaid
    (the demo's wall). One row now ends with an ellipsis; a taller tile still wraps it whole."""
    from textual.app import App

    from console.model import Severity
    from panels.wall import Tile, TileData

    class OneTile(App):
        CSS = "Tile { width: 30; height: 8; }"

        def compose(self):
            yield Tile()

    summary = "Probe of http://127.0.0.1:1426/health fails"
    app = OneTile()
    async with app.run_test(size=(80, 24)) as pilot:
        tile = app.query_one(Tile)
        tile.show(TileData(Severity.CRITICAL, "✖ CRIT", "BlackboxProbeFailed", summary))
        big = tile.query_one(".big")

        def shown() -> list[str]:
            return [
                line.text.strip() for line in big.render_lines(big.region.reset_offset) if line.text.strip()
            ]

        await wait_for(pilot, lambda: shown() and shown()[0].endswith("…"), 5, shown)
        assert shown()[0].startswith("Probe of http://") and len(shown()) == 1, shown()
        tile.styles.height = 14
        await wait_for(pilot, lambda: "".join(shown()).replace(" ", "") == summary.replace(" ", ""), 5, shown)


def test_long_words_break_where_a_name_parts_and_short_ones_are_left_to_wrap():
    from panels.text import break_long_words

    assert break_long_words("BlackboxProbeHttpFailure", 20) == "BlackboxProbeHttp\nFailure"
    assert break_long_words("pg_stat_activity_count", 12) == "pg_stat_\nactivity_\ncount"
    assert break_long_words("x" * 25, 10) == "xxxxxxxxxx\nxxxxxxxxxx\nxxxxx"  # no place to part: at the width
    assert break_long_words("sync success ratio", 10) == "sync success ratio"
    assert break_long_words("BlackboxProbeHttpFailure", 0) == "BlackboxProbeHttpFailure"  # not laid out yet


async def test_the_wall_shows_this_machines_timeline_without_a_shared_journal(tmp_path):
    from console.journal import Note, Operator

    path = tmp_path / "journal.jsonl"
    other = Journal(path, operator=Operator("carol", "", "ops-1"))  # a console on the same machine
    other.append(Note(text="carol: paged the DBA [red]now[/red]"))
    app = make_app(wall=True, journal=Journal(path))
    async with app.run_test(size=(120, 40)) as pilot:
        timeline = app.wall_screen.query_one("#wall-timeline")
        await wait_for(
            pilot, lambda: "carol: paged the DBA [red]now[/red]" in str(timeline.render()), 5, "the note"
        )
        assert "this machine's journal" in str(timeline.render()) and "carol" in str(timeline.render())


async def test_the_walls_timeline_at_80_columns_keeps_its_newest_entry_on_screen(tmp_path):
    """Entries wrapped at 80 columns and the box (7 lines) cut the newest off at its bottom:
    the demo's wall showed three entries a minute old while HighErrorRate had just fired."""
    from console.journal import Note

    journal = Journal(tmp_path / "journal.jsonl")
    for n in range(1, 7):
        journal.append(Note(text=f"note {n}: " + "the checkout pool is exhausted again " * 2))
    app = make_app(wall=True, journal=journal)
    async with app.run_test(size=(80, 24)) as pilot:
        timeline = app.wall_screen.query_one("#wall-timeline")
        await wait_for(pilot, lambda: "note 6" in str(timeline.render()), 5, "the notes")
        await pilot.pause()
        from tests.test_ui_oncall import screen_text

        lines = screen_text(app).splitlines()
        newest = [line for line in lines if "note 6" in line]
        assert newest, "the newest entry is cut off:\n" + "\n".join(lines[-8:])
        assert newest[0].rstrip().endswith("…"), newest  # one line, cut, not wrapped


async def test_a_narrow_header_cuts_who_else_is_here_before_paused_and_read_only():
    """The shared journal's presence came before the flags: a wall at 80 columns read
    "+root@vm │ READ-O…", and three colleagues would have hidden PAUSED altogether."""
    from console.journal.shared import Presence, SharedState

    for read_only, flag in ((True, "READ-ONLY"), (False, "PAUSED")):
        app = make_app(read_only=read_only)
        async with app.run_test(size=(80, 24)) as pilot:
            if not read_only:
                await pilot.press("p")
            header = app.header
            header.shared = SharedState(configured=True, connected=True)
            for name in ("alice", "bob", "carol"):
                header.shared.presence[name] = Presence(
                    name, f"{name}@{name}-laptop", "runbook x, step 2", NOW
                )
            line = str(header.compose_line(NOW, 80))
            assert len(line) <= 80 and flag in line, line


async def test_enter_on_a_health_target_shows_every_check():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, HealthPanel)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        text = app.screen.query_one("TextArea").text
        assert "storefront" in text and "HTTP 503 from hotdash-chatwoot" in text and "database" in text


async def test_a_cell_that_grows_is_shown_whole():
    """Durations grow (2s -> 10m05s): an updated cell widens its column instead of being cut."""
    from rich.text import Text
    from textual.app import App

    from panels.tables import KeyedTable

    class One(App):
        def compose(self):
            yield KeyedTable(columns=[("age", "Age"), ("what", "What")])

    app = One()
    async with app.run_test(size=(80, 10)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync([("a", (Text("2s"), Text("x")))])
        await pilot.pause()
        table.sync([("a", (Text("10m05s"), Text("x")))])
        await pilot.pause()
        assert table.columns["age"].get_render_width(table) >= len("10m05s")
        assert "10m05s" in app.export_screenshot().replace("&#160;", " ")


async def test_a_tick_after_the_panels_are_gone_does_nothing():
    """The once-a-second tick is a timer chain: one fired while the console was closing (its
    screen's panels already removed) and size_panels raised NoMatches on '#panels' (two CI
    failures: test_no_color_still_reads_severity, the soak's focus test)."""
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await app.query_one("#panels").remove()
        await pilot.pause()
        app._tick()  # nothing to size: no exception
        assert app.is_running


async def test_tabs_typed_faster_than_the_focus_moves_step_one_panel_each():
    """A table's focus() lands a moment after the key: three tabs in a row stepped from the
    panel still focused and reached the second panel, not the fourth (found in the demo)."""
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        target = panel(app, PostgresPanel)
        for _ in range(app.panels.index(target)):
            app.action_next_panel()  # no pause between: as fast keys arrive
        await pilot.pause()
        assert [p for p in app.panels if p.has_class("-active")] == [target]
        assert app.focused is target.sessions
        for _ in range(len(app.panels)):
            app.action_previous_panel()
        await pilot.pause()
        assert [p for p in app.panels if p.has_class("-active")] == [target]


def _four_clusters(environment: str) -> Config:
    return Config.model_validate(
        {
            "environment": {"name": environment, "production": True},
            "journal": "/dev/null",
            "prometheus": {"url": "http://127.0.0.1:9"},
            "health": [{"name": n, "url": "http://127.0.0.1:9/"} for n in ("web", "api")],
            "postgres": [
                {"name": n, "dsn": "postgresql://x@127.0.0.1:9/db"}
                for n in ("orders", "payments", "ledger", "catalog")
            ],
        }
    )


@pytest.mark.parametrize(
    "environment", ["eu-prod-payments", "eu-prod-payments-and-settlement-of-marketplace-orders"]
)
async def test_the_header_keeps_its_clock_at_80_columns(environment):
    """Four clusters named one by one made the header 115 cells wide: at 80 columns the clock
    (what says the screen is live) and the health count were cut off. Too narrow, the header
    counts the clusters as it counts the health targets; a name too long for even that is cut
    before the clock."""
    app = ConsoleApp(_four_clusters(environment), autopoll=False, clock=Clock())
    async with app.run_test(size=(200, 30)) as pilot:
        await pilot.pause()
        wide = app.header._line.plain
        assert "pg:orders … pg:payments … pg:ledger … pg:catalog …" in wide and wide.endswith("11:06:40Z")
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: app.header._line.cell_len <= 80, 5, "the header at 80 columns")
        narrow = app.header._line.plain
        # No source has answered (nothing polls here): the header says so, never "● OK".
        assert narrow.endswith(" │ 11:06:40Z") and "PROD" in narrow and "│ … NO" in narrow, narrow
        if len(environment) < 20:
            assert "prom … pg 0/4 … health 0/2 …" in narrow, narrow
        else:
            assert "…" in narrow.split(" │ 11:06")[0], narrow


def test_a_stale_tile_says_stale_first_unless_it_holds_a_breach():
    """A green tile on old data read "● OK ◌ stale", a pass at a glance; a breach's tile keeps
    its severity first (it is still the last one known)."""
    from types import SimpleNamespace

    from console.model import Severity
    from panels.wall import TileData, stale_marked

    state = SimpleNamespace(is_stale=lambda source, now: True, last_good={})
    ok = TileData(Severity.OK, "● OK", "error_rate", "0.4%", source="prometheus")
    crit = TileData(Severity.CRITICAL, "✖ CRIT", "error_rate", "40%", source="prometheus")
    assert stale_marked(ok, state, 0.0).badge == "◌ STALE, last OK"
    assert stale_marked(crit, state, 0.0).badge == "✖ CRIT ◌ stale"
    assert stale_marked(ok, state, 0.0).severity == Severity.UNKNOWN  # never drawn green
