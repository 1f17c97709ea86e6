"""KeyedTable.sync edits the DataTable in bulk (bench/RESULTS.md: a filter over 1000 sessions
took seconds with DataTable's per-row API) and refreshes only the rows whose cells changed."""

from __future__ import annotations

from rich.text import Text
from textual.app import App
from textual.geometry import Region
from textual.widgets import DataTable

from panels.tables import Fit, KeyedTable
from tests.test_ui_oncall import screen_text


class One(App):
    def compose(self):
        yield KeyedTable(columns=[("pid", "PID"), ("age", "Age")])


class Fitted(App):
    """One table that fits its width by ``fit``."""

    def __init__(self, columns, fit) -> None:
        super().__init__()
        self.table_columns, self.fit = columns, fit

    def compose(self):
        yield KeyedTable(columns=self.table_columns, fit=self.fit)


async def settle(pilot, turns: int = 3) -> None:
    """A fit lays out again after a refresh or two: let it."""
    for _ in range(turns):
        await pilot.pause()


#: The breaches panel's columns, less the ones it drops at 80 columns.
BREACH_COLUMNS = [("sev", "Severity"), ("state", "State"), ("title", "Breach"), ("value", "Value (level)")]


async def one_row(app: App, pilot, cells) -> KeyedTable:
    """The app's table with one row of ``cells``, fitted."""
    table = app.query_one(KeyedTable)
    table.sync([("a", cells)])
    await settle(pilot)
    return table


def rows(pids, age: str = "1s"):
    return [(str(p), (Text(str(p)), Text(age))) for p in pids]


def spy_refresh(table: KeyedTable) -> list[tuple[Region, ...]]:
    """The regions of each table.refresh() call from now on (() = the whole widget)."""
    refreshed: list[tuple[Region, ...]] = []
    original = table.refresh

    def spy(*regions, **kwargs):
        refreshed.append(regions)
        return original(*regions, **kwargs)

    table.refresh = spy
    return refreshed


def shown(table: KeyedTable) -> list[str]:
    return [str(table.get_row_at(i)[0]) for i in range(table.row_count)]


async def test_filtering_down_and_back_keeps_rows_order_and_selection():
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(range(1000)))
        await pilot.pause()
        table.move_cursor(row=500)
        assert table.selected_key == "500"

        table.sync(rows(range(0, 1000, 10)))  # 900 rows go at once
        await pilot.pause()
        assert shown(table) == [str(p) for p in range(0, 1000, 10)]
        assert table.selected_key == "500" and table.cursor_row == 50
        assert table.get_row_index("990") == 99

        table.sync(rows(reversed(range(1000))))  # they come back, in another order
        await pilot.pause()
        assert shown(table) == [str(p) for p in reversed(range(1000))]
        assert table.selected_key == "500" and table.cursor_row == 499
        assert table.virtual_size.height == 1000 + 1  # the header row

        table.sync(rows([7]))  # the selected row goes: the cursor stays inside the table
        await pilot.pause()
        assert shown(table) == ["7"] and table.cursor_row == 0
        table.sync([])
        await pilot.pause()
        assert table.row_count == 0 and table.selected_key is None


async def test_a_changed_cell_refreshes_its_row_only():
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(range(50)))
        await pilot.pause()
        refreshed = spy_refresh(table)
        table.sync(rows(range(50)))  # nothing changed: nothing redrawn
        assert refreshed == []
        changed = rows(range(50))
        changed[3] = ("3", (Text("3"), Text("2s")))
        table.sync(changed)
        assert len(refreshed) == 1 and len(refreshed[0]) == 1 and refreshed[0][0].height == 1
        await pilot.pause()
        assert "2s" in app.export_screenshot().replace("&#160;", " ")
        assert str(table.get_row("3")[1]) == "2s"


async def test_update_cell_redraws_one_row_and_only_on_change():
    """A panel's once-a-second age column: same text, nothing redrawn; new text, its row."""
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(range(20)))
        await pilot.pause()
        refreshed: list[tuple[tuple[Region, ...], dict]] = []
        original = table.refresh

        def spy(*regions, **kwargs):
            refreshed.append((regions, kwargs))
            return original(*regions, **kwargs)

        table.refresh = spy
        table.update_cell("5", "age", Text("1s"), update_width=True)
        assert refreshed == []
        table.update_cell("5", "age", Text("3s"), update_width=True)
        assert len(refreshed) == 1 and refreshed[0][0][0].height == 1
        table.update_cell("5", "age", Text("1h02m03s"), update_width=True)  # wider: the column grows
        assert refreshed[-1][1].get("layout") is True
        await pilot.pause()
        assert table.columns["age"].get_render_width(table) >= len("1h02m03s")
        assert "1h02m03s" in app.export_screenshot().replace("&#160;", " ")
        refreshed.clear()
        table.sync(rows(range(20)))  # sync knows the cell changed: it puts "1s" back
        assert str(table.get_row("5")[1]) == "1s"
        # ... and the column is as wide as what it shows now (issue 18): one layout, not 8 cells
        assert table.columns["age"].content_width == len("Age")
        assert refreshed[-1][1].get("layout") is True


async def test_columns_follow_what_is_shown_now():
    """A long cell widens its column; once it is gone (changed, or its row left) the column is
    as wide as what is left — an ack of 37 cells no longer widens the State column for good."""
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(range(3)))
        wide = [("0", (Text("0"), Text("firing · acked until 15:08Z by root"))), *rows(range(1, 3))]
        table.sync(wide)
        assert table.columns["age"].content_width == len("firing · acked until 15:08Z by root")
        table.sync(rows(range(3)))
        assert table.columns["age"].content_width == len("Age")
        table.sync(wide)
        table.sync(rows(range(1, 3)))  # the row with the wide cell is gone
        assert table.columns["age"].content_width == len("Age")
        await pilot.pause()


async def test_a_change_on_every_row_redraws_the_table_once():
    """Each refresh every session's duration changes: one redraw of what is on screen, not a
    refresh per row (DataTable.refresh_row is linear in the index: quadratic over 1000 rows)."""
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows(range(1000)))
        await pilot.pause()
        refreshed = spy_refresh(table)
        table.sync(rows(range(1000), age="2s"))
        assert refreshed == [()]
        await pilot.pause()
        assert str(table.get_row("999")[1]) == "2s"
        assert "2s" in app.export_screenshot().replace("&#160;", " ")


async def test_rows_filtered_out_and_back_are_not_rendered_again_and_clicks_find_their_row(monkeypatch):
    """A filter key hides 990 rows and shows them again with the same cells: they come back
    without new work, and a cell drawn at another row still tells a click which row it is."""
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        everything = rows(range(1000))
        table.sync(everything)
        await pilot.pause()
        renders: list[tuple[int, int]] = []
        original = DataTable._render_cell

        def counting(self, row_index, column_index, *args, **kwargs):
            renders.append((row_index, column_index))
            return original(self, row_index, column_index, *args, **kwargs)

        monkeypatch.setattr(DataTable, "_render_cell", counting)
        table.sync(everything[::100])
        await pilot.pause()
        assert shown(table) == [str(p) for p in range(0, 1000, 100)]
        renders.clear()
        table.sync(everything)  # back, the very same cells
        await pilot.pause()
        assert [r for r in renders if r[0] >= 0] == []  # no body cell went through rich again
        assert shown(table)[:3] == ["0", "1", "2"]

        table.sync(everything[::-1])  # the same cells, other rows: drawn from what was rendered
        await pilot.pause()
        table.scroll_to(y=500, animate=False)
        await pilot.pause()
        await pilot.click(KeyedTable, offset=(2, 4))  # the header is line 0: the 4th row shown
        await pilot.pause()
        assert table.cursor_row == 503 and table.selected_key == str(999 - 503)


async def test_rendered_cells_of_past_refreshes_are_let_go():
    """The rendered lines (and Texts) of cells that refreshes replaced are not kept: what the
    cache holds stays at about two screens, however many refreshes (a size bound filled over
    ten minutes of a soak and looked like a leak)."""
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        for second in range(40):  # every row's age changes each refresh
            table.sync(rows(range(1000), age=f"{second}s"))
            await pilot.pause()
        held = len(table._cell_lines) + len(table._cell_lines_old)
        on_screen = 2 * table.size.height  # two columns
        assert 0 < held <= 2 * on_screen


async def test_a_fitted_table_shows_its_flexible_column_cut_and_leaves_out_what_does_not_fit():
    """Issue 18: at 120x40 the sessions table showed PID through Wait and the query needed ~70
    presses of Right. With a Fit the last column takes what is left (cut with …) and the
    columns named in ``drop`` go first when it would get less than its minimum."""
    columns = [("pid", "PID"), ("client", "Client"), ("app", "Application"), ("query", "Query")]
    fit = Fit("query", 20, drop=("client", "app"))

    query = "SELECT * FROM orders WHERE customer_id = 42 AND status = 'paid' ORDER BY created_at DESC"
    cells = (
        Text("4242"),
        Text("10.0.0.7:54321"),
        Text("storefront-checkout"),
        Text(query, no_wrap=True, overflow="ellipsis"),
    )
    app = Fitted(columns, fit)
    async with app.run_test(size=(120, 10)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync([("a", cells)])
        await pilot.pause()
        assert table.shown_columns == ["pid", "client", "app", "query"]
        assert (
            table.columns["query"].width
            + sum(c.get_render_width(table) for c in table.columns.values())
            - table.columns["query"].width
            <= 120
        )
        screen = app.export_screenshot().replace("&#160;", " ")
        assert "SELECT * FROM orders" in screen
        await pilot.resize_terminal(60, 10)
        await pilot.pause()
        assert table.shown_columns == ["pid", "app", "query"]  # the client went first
        await pilot.resize_terminal(40, 10)
        await pilot.pause()
        assert table.shown_columns == ["pid", "query"] and table.selected_key == "a"
        assert table.columns["query"].width == 40 - 2 * table.cell_padding - table.columns[
            "pid"
        ].get_render_width(table)
        screen = app.export_screenshot().replace("&#160;", " ")
        assert "SELECT * FROM" in screen and "…" in screen
        await pilot.resize_terminal(120, 10)
        await pilot.pause()
        assert table.shown_columns == ["pid", "client", "app", "query"]


async def test_the_cursor_stays_on_the_first_row_until_a_row_is_chosen():
    """Until the operator moves, the cursor is on what comes first now (the worst breach, the
    session that needs attention); once a row is chosen it follows that row through new data."""
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync(rows([1, 2, 3]))
        await pilot.pause()
        table.sync(rows([9, 1, 2, 3]))  # something new comes first
        assert table.selected_key == "9" and table.cursor_row == 0
        table.focus()
        await pilot.press("down")  # the operator chooses "1"
        assert table.selected_key == "1"
        table.sync(rows([8, 9, 1, 2, 3]))
        assert table.selected_key == "1" and table.cursor_row == 2


async def test_a_fitted_table_fits_again_when_its_rows_bring_a_vertical_scrollbar():
    """The runbook picker at 80x24: one matching runbook, then ``a`` (every runbook) — the rows
    brought a vertical scrollbar after the fit had sized the title for the full width, and
    nothing fitted again (the widget's size did not change): the titles were cut by the edge,
    two cells too wide, their … out of sight."""
    columns = [("id", "Runbook"), ("title", "Title")]
    fit = Fit("title", 10)

    def row(i: int) -> tuple[str, tuple[Text, Text]]:
        title = Text(f"runbook {i} title that is much too long to fit", no_wrap=True, overflow="ellipsis")
        return (f"rb-{i}", (Text(f"rb-{i}"), title))

    app = Fitted(columns, fit)
    async with app.run_test(size=(40, 10)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync([row(1)])
        await pilot.pause()
        assert not table.show_vertical_scrollbar and table.max_scroll_x == 0
        table.sync([row(i) for i in range(1, 40)])
        for _ in range(5):
            await pilot.pause()
        assert table.show_vertical_scrollbar
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.max_scroll_x == 0
        screen = app.export_screenshot().replace("&#160;", " ")
        assert "…" in screen


async def test_with_nothing_left_to_drop_the_flexible_column_gives_way_rather_than_the_edge_cutting():
    """The breaches panel at 80x24 with an acked alert ("firing · acked →04:47Z"): with the
    droppable columns gone the title still kept its minimum, the table overflowed, and the
    panel's edge cut the last column without … ("36.6% (>= 5.0" for 36.6% (>= 5.0%)). The
    flexible column now gives way first: the table fits and only the title is cut."""
    fit = Fit("title", 18, flex_share=0.25)

    cells = (
        Text("✖ CRIT"),
        Text("firing · acked →04:47Z"),
        Text("5xx share of requests to the storefront", no_wrap=True, overflow="ellipsis"),
        Text("36.6% (>= 5.0%)"),
    )
    app = Fitted(BREACH_COLUMNS, fit)
    async with app.run_test(size=(64, 8)) as pilot:
        table = await one_row(app, pilot, cells)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.max_scroll_x == 0
        screen = screen_text(app)
        assert "36.6% (>= 5.0%)" in screen and "…" in screen
        await pilot.resize_terminal(120, 8)  # room again: the title whole
        await settle(pilot)
        assert "5xx share of requests to the storefront" in screen_text(app)


async def test_squeezed_columns_are_cut_for_the_flexible_column_and_get_their_width_back():
    """Fit.squeeze: with nothing left to drop, the value (with its level) is cut, to its floor
    at most, before the title is; with room again it is whole."""
    fit = Fit("title", 18, squeeze=(("value", 10),))

    cells = (
        Text("✖ CRIT"),
        Text("firing · acked →04:47Z"),
        Text("work queue depth of the richpanel actions", no_wrap=True, overflow="ellipsis"),
        Text("123 items (>= 100 items)", no_wrap=True, overflow="ellipsis"),
    )
    app = Fitted(BREACH_COLUMNS, fit)
    async with app.run_test(size=(64, 8)) as pilot:
        table = await one_row(app, pilot, cells)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.columns["value"].width == 10  # its floor: the title still wanted more
        assert table.columns["title"].width == 64 - 10 - 24 - 12 - 2
        screen = screen_text(app)
        assert "123 items…" in screen and "work queue dept…" in screen
        await pilot.resize_terminal(120, 8)
        await settle(pilot)
        assert table.columns["value"].auto_width
        screen = screen_text(app)
        assert "123 items (>= 100 items)" in screen and "work queue depth of the richpanel actions" in screen


async def test_the_flexible_column_takes_what_the_shown_columns_leave_not_their_nominal_width():
    """The sessions table at 80 columns, users "app" and "postgres": the query was cut with five
    blank cells after it. A droppable column's nominal width decides whether it is shown; once
    shown, it takes its own width and the query the rest."""
    columns = [("pid", "PID"), ("user", "User"), ("query", "Query")]
    fit = Fit("query", 20, drop=("user",), nominal=(("user", 14),))

    query = Text(
        "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL", no_wrap=True, overflow="ellipsis"
    )
    app = Fitted(columns, fit)
    async with app.run_test(size=(60, 8)) as pilot:
        table = app.query_one(KeyedTable)
        table.sync([("a", (Text("2752"), Text("app"), query))])
        await settle(pilot)
        assert table.shown_columns == ["pid", "user", "query"]
        used = sum(c.get_render_width(table) for c in table.columns.values())
        assert used == table.scrollable_content_region.width, (used, table.scrollable_content_region.width)
