"""The console at 3 a.m. (issue 18), driven by Pilot on fixed states: nothing hidden, no noise,
every row readable. One test (or more) per item of the issue; the pictures are in
test_ui_snapshots.py, the text report in test_report_text.py and test_breach_rows.py."""

from __future__ import annotations

import dataclasses

import pytest
from rich.text import Text

from console.model import (
    ErrorKind,
    HealthCheck,
    HealthSnapshot,
    HealthStatus,
    PromAlert,
    Severity,
    Silence,
    SourceError,
)
from panels.breaches import BreachesPanel
from panels.confirm import ConfirmScreen
from panels.detail import DetailScreen
from panels.footer import Footer
from panels.health import HealthPanel
from panels.help import HelpScreen
from panels.postgres import PostgresPanel
from panels.runbook import RunbookPicker
from tests import ui_data
from tests.pilot import wait_for_screen
from tests.test_ui import BellCountingApp, Clock, goto, make_app, panel, pids, row_keys
from tests.ui_data import NOW

STAGING = {"name": "staging", "production": False}


def cells(table, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


def visible_rows(table) -> int:
    """Rows of a table that are on screen (its height less the header)."""
    return max(table.region.height - 1, 0)


def screen_text(app) -> str:
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


# --- 1. a filter hides nothing silently ------------------------------------------------------


async def test_a_filter_says_what_it_hides_the_header_flags_a_hidden_crit_and_escape_clears_it():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        breaches = panel(app, BreachesPanel)
        everything = breaches.table.row_count
        await pilot.press("slash", *"storefront", "enter")
        shown = breaches.table.row_count
        assert 0 < shown < everything
        status = str(breaches.status.render())
        # HighErrorRate, the storefront health check and the 5xx share match; the lock CRITs do not
        assert "filter 'storefront'" in status and f"· {breaches.hidden} hidden" in status, status
        assert breaches.hidden_critical >= 2 and f"{breaches.hidden_critical} CRIT" in status
        assert "filtered" in str(breaches.border_title)
        assert f"✖ {breaches.hidden_critical} CRIT hidden by a filter" in str(app.header.render())
        # `/` opens the field with the filter in it; Esc clears it (Enter kept it)
        await pilot.press("slash")
        assert app.query_one("#filter").value == "storefront"
        await pilot.press("escape")
        assert breaches.text_filter == "" and breaches.table.row_count == everything
        assert "filter" not in str(breaches.status.render())
        assert "hidden by a filter" not in str(app.header.render())


async def test_a_session_filter_says_what_it_hides_and_a_crit_it_hides():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await goto(pilot, app, PostgresPanel)
        pg = panel(app, PostgresPanel)
        await pilot.press("slash", *"report", "enter")
        assert pids(app) == [4300]
        status = str(pg.status.render())
        # the waiting CRIT points at the root blocker 4242, now out of sight
        assert "filter 'report' · 6 hidden, 1 CRIT" in status, status
        assert "CRIT hidden by a filter" in str(app.header.render())
        await pilot.press("slash", "escape")
        assert len(pids(app)) == 7 and "hidden by a filter" not in str(app.header.render())


# --- 2. staleness is per source --------------------------------------------------------------


def targets_app(clock: Clock, n: int = 4):
    """The console on n health targets polled every second (and nothing else)."""
    from console.app import ConsoleApp
    from console.poller import Poller

    health = [{"name": f"svc-{i}", "url": f"http://127.0.0.1:1/{i}"} for i in range(n)]
    config = ui_data.config(health=health, prometheus=None, postgres=[])
    sources = [
        ui_data.ReplaySource(f"health:svc-{i}", [target_snapshot(f"svc-{i}", NOW)], 1.0) for i in range(n)
    ]
    return ConsoleApp(
        config, poller=Poller(config, sources=sources, clock=clock), clock=clock, autopoll=False
    )


def target_snapshot(name: str, at: float, error: SourceError | None = None) -> HealthSnapshot:
    return HealthSnapshot(
        source=f"health:{name}", taken_at=at, latency=0.01, target=name, url=f"http://127.0.0.1:1/{name}",
        format="health+json", status=HealthStatus.PASS, http_status=200, error=error,
    )  # fmt: skip


async def test_one_target_never_valid_does_not_make_panels_stale():
    """28 targets refreshing and one never valid read '◌ stale 966ms' for good: a source
    without good data is failing, not stale, and says so by name."""
    clock = Clock()
    app = targets_app(clock)
    async with app.run_test(size=(160, 48)) as pilot:
        refused = SourceError(ErrorKind.UNREACHABLE, "connection refused")
        for _ in range(5):
            clock.now += 1
            for i in range(3):
                app.render_state(app.poller.publish(target_snapshot(f"svc-{i}", clock.now)))
            app.render_state(app.poller.publish(target_snapshot("svc-3", clock.now, refused)))
            app._tick()
        await pilot.pause()
        health, breaches = panel(app, HealthPanel), panel(app, BreachesPanel)
        for p in (health, breaches):
            status = str(p.status.render())
            assert not p.has_class("-stale") and "stale" not in status, status
        assert "! svc-3 unreachable: connection refused" in str(health.status.render())
        # the reason sits in the Detail column; Status holds the badge (item 14)
        row = cells(health.table, "svc-3")
        assert row[0] == "! ERROR" and "unreachable: connection refused" in row[-1]
        assert health.table.columns["status"].content_width <= len("◌ STALE")


async def test_a_stale_target_is_marked_on_its_row_and_the_panel_only_when_all_is_old():
    clock = Clock()
    app = targets_app(clock)
    async with app.run_test(size=(160, 48)) as pilot:
        for i in range(4):
            app.render_state(app.poller.publish(target_snapshot(f"svc-{i}", clock.now)))
        clock.now += 10  # svc-0 hangs (no new snapshot): older than 3 intervals of 1 s
        for i in range(1, 4):
            app.render_state(app.poller.publish(target_snapshot(f"svc-{i}", clock.now)))
        app._tick()
        await pilot.pause()
        health = panel(app, HealthPanel)
        assert (
            cells(health.table, "svc-0")[0] == "◌ STALE"
            and "last: pass 10s ago" in cells(health.table, "svc-0")[-1]
        )
        assert cells(health.table, "svc-1")[0] == "● PASS"
        status = str(health.status.render())
        assert (
            not health.has_class("-stale") and "updated just now" in status and "◌ stale: svc-0 10s" in status
        )
        clock.now += 10  # now everything it shows is old
        app._tick()
        await pilot.pause()
        assert health.has_class("-stale") and "◌ stale 10s" in str(health.status.render())


# --- 3. the breaches panel gets the rows it needs ---------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 36), (200, 60)])
async def test_every_breach_row_and_the_worst_one_is_on_screen(size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        table = panel(app, BreachesPanel).table
        assert table.row_count >= 7
        assert visible_rows(table) >= table.row_count, (size, table.region)
        worst = app.state.breaches[0]
        assert worst.title in screen_text(app)


async def test_with_many_breaches_the_breaches_panel_goes_first_and_postgres_keeps_rows():
    base = ui_data.prometheus_snapshot()
    alerts = tuple(
        PromAlert(name=f"Alert{i:02d}", state="firing", severity=Severity.WARNING, labels=(("alertname", f"Alert{i:02d}"),),
                  annotations=(), active_at=NOW - i)
        for i in range(30)
    )  # fmt: skip
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        app.render_state(app.poller.publish(dataclasses.replace(base, alerts=base.alerts + alerts)))
        await pilot.pause()
        await pilot.pause()
        breaches, pg = panel(app, BreachesPanel), panel(app, PostgresPanel)
        assert breaches.region.height >= 14 and pg.region.height >= 10, (breaches.region, pg.region)
        assert app.state.breaches[0].title in screen_text(app)  # the worst, first row


# --- 4. columns fit the width ------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)])
async def test_the_sessions_table_fits_its_width_with_the_query_last_and_cut(size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await goto(pilot, app, PostgresPanel)
        await pilot.pause()
        table = panel(app, PostgresPanel).sessions
        shown = table.shown_columns
        assert shown[:2] == ["pid", "user"] or shown[:2] == ["pid", "state"]
        assert {"state", "duration", "wait"} <= set(shown) and shown[-1] == "query"
        total = sum(c.get_render_width(table) for c in table.columns.values())
        assert total <= table.size.width, (size, total, table.size)
        assert table.columns["query"].width >= 20
        # a multi-line query says it goes on (4310 runs "<hostile text>\nSELECT 1")
        key = next(k for k in row_keys(table) if k.startswith("4310:"))
        assert "⏎" in cells(table, key)[-1]


# --- 6. related breaches under their root ------------------------------------------------------


async def test_the_lock_chain_breaches_are_one_row_expandable_with_space():
    config = ui_data.config(
        postgres=[{"name": "main", "dsn": "postgresql://console@127.0.0.1:4/shop",
                   "thresholds": {"waiting": {"warning": 1, "critical": 2}, "idle_in_transaction": {"warning": 60},
                                  "long_running": {"warning": 300, "critical": 900}}}],
    )  # fmt: skip
    app = make_app(config=config)
    async with app.run_test(size=(160, 48)) as pilot:
        breaches = panel(app, BreachesPanel)
        keys = row_keys(breaches.table)
        assert "postgres.main.waiting" in keys and "postgres.main.idle_in_transaction" not in keys
        assert cells(breaches.table, "postgres.main.waiting")[3].startswith("▸+1 ")
        breaches.table.focus()
        breaches.table.move_cursor(row=keys.index("postgres.main.waiting"))
        await pilot.press("space")
        keys = row_keys(breaches.table)
        at = keys.index("postgres.main.waiting")
        assert keys[at + 1] == "postgres.main.idle_in_transaction"
        assert cells(breaches.table, keys[at + 1])[3].startswith("  ↳ ")
        await pilot.press("space")
        assert "postgres.main.idle_in_transaction" not in row_keys(breaches.table)


# --- 9. one ring per poll at most ----------------------------------------------------------------


async def test_the_bell_rings_once_for_a_burst_of_criticals_at_start_up():
    config = ui_data.config()
    clock = Clock()
    replay = ui_data.sources()
    from console.poller import Poller

    poller = Poller(config, sources=replay, clock=clock)  # nothing published yet: a start-up
    app = BellCountingApp(config, poller=poller, clock=clock, autopoll=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for source in replay:  # each source's first poll lands, each with its criticals
            app.render_state(app.poller.publish(source.snapshots[0]))
            await pilot.pause()
        assert app.bells == 1
        # later, a new critical after a poll interval rings again
        await pilot.pause(2.1)
        failing = dataclasses.replace(
            ui_data.health_snapshots()[1], status=HealthStatus.FAIL, taken_at=clock.now
        )
        app.render_state(app.poller.publish(failing))
        assert app.bells == 2


# --- 10. the R list: the relevant runbooks, the rest behind a --------------------------------------


async def test_r_on_a_sync_worker_breach_lists_the_relevant_runbooks_the_rest_behind_a():
    config = ui_data.config(environment=STAGING)
    app = make_app(config=config, pack=ui_data.pack(config))
    async with app.run_test(size=(160, 48)) as pilot:
        hubspot = HealthCheck("hubspot", HealthStatus.FAIL, '{"state":"error: 503 Service Unavailable"}')
        failing = dataclasses.replace(
            ui_data.health_snapshots()[1], status=HealthStatus.FAIL, http_status=503, checks=(hubspot,)
        )
        app.render_state(app.poller.publish(failing))
        await pilot.pause()
        table = panel(app, BreachesPanel).table
        table.focus()
        table.move_cursor(row=row_keys(table).index("health.sync-worker"))
        await pilot.press("R")
        picker = await wait_for_screen(pilot, RunbookPicker)
        shown = [m.runbook.id for m in picker.matches]
        assert shown[0] == "provider-down"
        assert "chatwoot-unavailable" not in shown and "ga-quota-exhausted" not in shown, shown
        assert "a: every runbook" in picker.title_text
        await pilot.press("a")
        assert "chatwoot-unavailable" in row_keys(picker.query_one("#picker-table"))


# --- 11. column widths follow what is shown now ------------------------------------------------------


async def test_an_ack_does_not_widen_the_state_column_for_good():
    app = make_app(config=ui_data.config(environment=STAGING))
    async with app.run_test(size=(80, 24)) as pilot:
        table = panel(app, BreachesPanel).table
        before = table.columns["state"].content_width
        base = ui_data.prometheus_snapshot()
        alert = base.alerts[0]
        silence = Silence(id="s1", state="active", matchers=tuple(f"{k}={v}" for k, v in alert.labels),
                          starts_at=NOW - 60, ends_at=NOW + 3600, created_by="root@vm", comment="looking")  # fmt: skip
        app.render_state(app.poller.publish(dataclasses.replace(base, silences=(silence,))))
        await pilot.pause()
        key = next(k for k in row_keys(table) if k.startswith("alert:HighErrorRate"))
        state = cells(table, key)[1]
        assert state.startswith("firing · acked →") and len(state) <= 22, state
        assert "value" in table.shown_columns  # Value stays on screen at 80 columns
        # The wider state makes room from the value (cut with …), not from the title, and
        # nothing runs past the panel's edge.
        await pilot.pause()
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.columns["title"].width >= 18, table.columns["title"].width
        app.render_state(app.poller.publish(dataclasses.replace(base, silences=())))  # un-acked
        await pilot.pause()
        assert table.columns["state"].content_width == before


# --- 12, 15. dialogs fit 80x24, name their buttons by what they do, show their keys -------------------


async def open_terminate_dialog(pilot, app) -> ConfirmScreen:
    """K on the Postgres panel: the dialog that terminates the selected session."""
    await goto(pilot, app, PostgresPanel)
    await pilot.press("K")
    dialog = await wait_for_screen(pilot, ConfirmScreen)
    await pilot.pause()
    return dialog


async def test_the_terminate_dialog_fits_80x24_with_its_buttons_and_its_own_keys():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_terminate_dialog(pilot, app)
        for button in dialog.query("Button"):
            assert button.region.y >= 0 and button.region.bottom <= 23, button.region  # above the footer
        assert dialog.query_one("#confirm-input").region.bottom <= 23
        footer = dialog.query_one(Footer)
        text = screen_text(app).splitlines()[-1]
        assert footer.region.y == 23 and "Back (runs nothing)" in text and "Runbooks" not in text, text
        assert str(dialog.query_one("#confirm").label) == "Terminate session"
        assert str(dialog.query_one("#cancel").label) == "Keep session"


def dialog_plan_lines(app, dialog: ConfirmScreen) -> list[str]:
    """The plan's lines as the screen shows them, inside the box's border and padding."""
    box = dialog.query_one("#confirm-scroll").region
    lines = screen_text(app).splitlines()[box.y : box.bottom]
    return [line[box.x : box.right - 2].rstrip() for line in lines]  # less the scrollbar


async def test_a_plan_line_that_wraps_at_80_columns_continues_indented():
    """At 80x24 the terminate dialog's lines wrapped back to the box's margin, so the rest of a
    line read as a line of its own: "orders SET status = 'paid' ..." below "What it touches", and
    in a runbook's preview of 36 sessions, a lone "59s" under each row."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_terminate_dialog(pilot, app)
        lines = dialog_plan_lines(app, dialog)
        start = next(i for i, line in enumerate(lines) if line.startswith("What it touches"))
        body = [
            line for line in lines[start + 1 :] if line and not line.startswith(("What will run", "timeout"))
        ]
        items = [line for line in body if line.startswith("  ") and not line.startswith("   ")]
        continued = [line for line in body if line not in items]
        assert items and continued, lines  # the pid's line does wrap at 80 columns
        assert all(line.startswith("      ") and line[6] != " " for line in continued), lines
        assert any(line.strip().startswith("orders SET status") for line in continued), lines


def test_hanging_wraps_a_line_with_its_continuation_indented():
    from panels.text import hanging

    row = "  8318 | 2026-12-07 14:50:27 UTC | checkout | storefront-pool | 59s"
    assert hanging(row, 80) == row  # fits: unchanged
    assert hanging(row, 66).splitlines() == [
        "  8318 | 2026-12-07 14:50:27 UTC | checkout | storefront-pool |",
        "      59s",  # 2026-12-07 stays whole: no break at its hyphens
    ]
    assert hanging("  " + "x" * 50, 20) == "  " + "x" * 50  # too narrow to indent: Rich wraps it
    assert all(len(line) <= 40 for line in hanging("  " + "y" * 100, 40).splitlines())


def test_hanging_breaks_a_long_url_after_a_slash_and_a_selector_after_a_comma():
    """In a confirmation at 80x24, a URL that did not fit left its method alone on a line and
    was cut inside a name ('.../hubspot/retry-fai' / 'led'); a PromQL selector was cut inside a
    label ('...provider="hubspot"' / ',status="401"}'). They break after a '/' or a ','."""
    from panels.text import hanging

    url = "  POST http://127.0.0.1:25431/api/v1/integrations/hubspot/retry-failed"
    assert hanging(url, 68).splitlines() == [
        "  POST http://127.0.0.1:25431/api/v1/integrations/hubspot/",
        "      retry-failed",
    ]
    query = (
        ' query: sum(rate(upstream_requests_total{job="sync-worker",provider="hubspot",status="401"}[10s]))'
    )
    assert hanging(query, 78).splitlines() == [
        ' query: sum(rate(upstream_requests_total{job="sync-worker",provider="hubspot",',
        '     status="401"}[10s]))',
    ]
    assert hanging("  see https://status.example.com now", 30).splitlines() == [
        "  see https://",  # the scheme's '//' stays whole
        "      status.example.com now",
    ]


async def test_the_empty_typed_confirmation_does_not_read_as_typed_without_colour():
    """Its placeholder was the word to type: on a screen without colour (or a capture) the empty
    field read as already filled in."""
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        dialog = await open_terminate_dialog(pilot, app)
        field = dialog.query_one("#confirm-input")
        lines = screen_text(app).splitlines()
        empty = lines[field.region.y][field.region.x : field.region.right]
        assert dialog.typed and dialog.typed not in empty.split(), empty
        assert "type" in empty, empty  # it says what goes there
        await pilot.press(*dialog.typed)
        await pilot.pause()
        filled = screen_text(app).splitlines()[field.region.y][field.region.x : field.region.right]
        assert filled.split() == [dialog.typed], filled


async def test_the_cancel_dialog_says_what_it_does():
    app = make_app(config=ui_data.config(environment=STAGING))
    async with app.run_test(size=(120, 40)) as pilot:
        await goto(pilot, app, PostgresPanel)
        await pilot.press("c")
        dialog = await wait_for_screen(pilot, ConfirmScreen)
        assert dialog.title_text == "Cancel the query of pid 4242 on main?"
        assert str(dialog.query_one("#confirm").label) == "Cancel query"
        assert str(dialog.query_one("#cancel").label) == "Keep running"
        assert dialog.focused.id == "cancel"  # Enter does nothing by default
        await pilot.press("enter")
        assert not isinstance(app.screen, ConfirmScreen)


# --- 13. the session's query first -----------------------------------------------------------------


async def test_the_details_of_a_session_start_with_its_query_at_80x24():
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, app, PostgresPanel)
        await pilot.press("enter")
        detail = await wait_for_screen(pilot, DetailScreen)
        text = detail.query_one("TextArea").text
        assert text.splitlines()[0] == "UPDATE orders SET status = 'paid' WHERE id = 7"
        assert "UPDATE orders SET status = 'paid'" in screen_text(app)


# --- 18. words: help keys, the footer, NO_COLOR ------------------------------------------------------


async def test_help_shows_keys_as_they_are_typed():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        help_screen = await wait_for_screen(pilot, HelpScreen)
        keys = {k for k, _, _ in help_screen.rows}
        assert {"?", "/", "^p"} <= keys, keys
        assert not any("question_mark" in k or "slash" in k for k in keys), keys


@pytest.mark.parametrize("width", [80, 100, 120])
async def test_the_footer_shows_only_whole_keys(width):
    app = make_app()
    async with app.run_test(size=(width, 40)) as pilot:
        await pilot.pause()
        await pilot.pause()
        line = screen_text(app).splitlines()[-1]
        assert "Runbooks" in line and "palette" in line, line
        # every description shown is whole: nothing runs under the palette key
        words = ("Runbooks", "Ack alert", "Quit", "Help", "Pause", "Refresh", "Filter", "Timeline")
        tail = line.split("▏")[0].rstrip()
        assert any(tail.endswith(word) for word in words), line


async def test_no_color_never_shows_the_healthy_dot_for_a_failing_health_count(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        header = str(app.header.render())
        assert "health 1/2 ✖" in header, header


def test_text_helpers_stay_text():
    """(The filter words are Text: an operator's filter is shown literally.)"""
    from panels.base import filter_words

    words = filter_words("[@click=app.quit]", 3, 1)
    assert isinstance(words, Text) and "[@click=app.quit]" in words.plain


async def test_the_readme_key_table_matches_the_keys():
    """Every key of the README's table is a key of the console (as `?` lists it), and back."""
    import re
    from pathlib import Path

    from textual.binding import Binding

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("| key | does |", 1)[1].split("\n\n", 1)[0]
    written = {key for row in table.splitlines()[2:] for key in re.findall(r"`([^`]+)`", row.split("|")[1])}
    app = make_app(demo=object())  # the demo menu key exists in `incident-console demo`
    async with app.run_test(size=(120, 40)):
        shown = {key for keys, _, _ in app.key_rows() for key in keys.split()}
        readme_keys = {app.keys_display(Binding(key, "x"), key) for key in written}
    assert readme_keys == shown, (readme_keys - shown, shown - readme_keys)
