"""A DataTable updated by row key: changed cells only, rows added/removed, order applied in place.

clear() + add_rows() of 1000 rows costs ~170 ms a tick (docs/ARCHITECTURE.md); a keyed diff costs
a fraction, and keeps the operator's selection on the same row key while rows move.

DataTable's own row API is per row and linear in the table size for each call (``remove_row``
rebuilds the whole key -> index map, ``add_row`` re-validates the cursor), so a filter that
drops 900 of 1000 rows took seconds (bench/RESULTS.md). ``sync`` therefore edits the table's
row maps in one pass and rebuilds the index map once. A cell change refreshes only its row's
region, not the whole widget: what is not on screen is not redrawn, and what did not change is
not re-sent to the terminal.

Column widths follow what is shown now: a cell that grows widens its column, and a column whose
widest cell changed or left is measured again (once per sync, that column only). With a
:class:`Fit`, the table fits its width: one column (the query, a title) takes what is left,
cut with ``…``, and the columns named in ``drop`` are left out, first first, while it would get
less than its minimum (the details view shows everything).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual._types import SegmentLines
from textual.cache import LRUCache
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey
from textual.widgets.data_table import Row as TableRow

Row = tuple[str, Sequence[Text]]  # (row key, one Text per column)


@dataclass(frozen=True, slots=True)
class Fit:
    """How a table fits its width. ``flex``: the column that takes what the others leave (at
    most its content), cut with ``…``; ``drop``: columns left out, in this order, while
    ``flex`` would get less than its minimum (``flex_min`` cells, or ``flex_share`` of the
    width); ``nominal``: the width a droppable column
    is reckoned at (its cap), so whether it fits does not depend on rows it does not show.
    With nothing left to drop, the ``squeeze`` columns are cut (with …) down to their floor,
    in order, until ``flex`` has its minimum; after that ``flex`` gives way below its minimum
    (to ``FLEX_FLOOR`` cells) rather than the table overflowing: the panel's edge would cut
    the last column without …."""

    flex: str
    flex_min: int = 20
    drop: tuple[str, ...] = ()
    nominal: tuple[tuple[str, int], ...] = ()
    flex_share: float = 0.0  # the minimum is also this share of the table's width
    squeeze: tuple[tuple[str, int], ...] = ()  # (column, the fewest cells it is cut to)

    def minimum(self, width: int) -> int:
        return max(self.flex_min, int(width * self.flex_share))


FLEX_FLOOR = 6  # the fewest cells a flexible column is cut to before the table overflows
PARKED_ROWS = 5000  # rows kept off the table for a filter to bring back, at most
RENDER_CACHE_LINES = 240  # lines in each of DataTable's render caches: a few screens (was 1000)


class KeyedTable(DataTable):
    """``sync(rows)`` makes the table show exactly ``rows``, in that order."""

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """

    def __init__(self, *, columns: Sequence[tuple[str, str]], fit: Fit | None = None, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        # DataTable keys its render caches by _update_count, which each refresh bumps: sized for
        # 1000 rows (10000 cells), they filled with the lines of past refreshes — 10^5 objects
        # (each Strip has seven caches of its own) that every full garbage collection walked,
        # 60-80 ms of a stopped event loop every few seconds at 1000 sessions (bench/CHANGES.md).
        # A few screens' worth is all a refresh or a key press reuses.
        self._row_render_cache = LRUCache(RENDER_CACHE_LINES)
        self._line_cache = LRUCache(RENDER_CACHE_LINES)
        self._row_renderable_cache = LRUCache(RENDER_CACHE_LINES)
        self._cell_render_cache = LRUCache(RENDER_CACHE_LINES * 4)
        self._column_spec = list(columns)
        # Row key -> the cells object last synced: the same object again is unchanged, without
        # comparing its texts (a panel that re-filters the same snapshot passes the same rows).
        self._given: dict[str, Sequence[Text]] = {}
        # See _render_cell: (cell, drawing state) -> (the cell, its lines by (row, column)).
        self._cell_lines: dict[tuple, tuple[object, dict[tuple[int, int], SegmentLines]]] = {}
        # The lines drawn before the last sync: kept only if drawn again before the next one.
        self._cell_lines_old: dict[tuple, tuple[object, dict[tuple[int, int], SegmentLines]]] = {}
        # Rows a sync took off the table: key -> (cells by column, the cells given).
        self._parked: dict[str, tuple[dict, Sequence[Text] | None]] = {}
        self._row_keys: dict[str, RowKey] = {}  # one RowKey per key (TwoWayDict rebuilds hash them)
        self._order: list[str] = []
        self.fit_spec = fit
        # The columns on the table (all, unless the fit left some out) and where each one's cell
        # is in the rows given to sync (which always hold one cell per column of the spec).
        self._shown: list[str] = [key for key, _ in self._column_spec]
        self._index: list[int] = list(range(len(self._column_spec)))
        self._rows: list[Row] = []  # the rows last synced (a change of columns shows them again)
        self._reselect: str | None = None
        self._widths: dict[str, int] = {}  # column key -> its content width when last on the table
        self._fitting = False
        # The selection follows its row through new data once the operator (or a caller) chose
        # a row; until then the cursor stays on the first row, whatever comes first now (the
        # worst breach, the session that needs attention), not on the row that happened to be
        # first when the table was filled.
        self.pinned = False
        self._syncing = False

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    @property
    def keys(self) -> list[str]:
        """The row keys on the table, in order."""
        return list(self._order)

    @property
    def shown_columns(self) -> list[str]:
        return list(self._shown)

    def on_resize(self, event) -> None:
        self.fit()

    def watch_show_vertical_scrollbar(self, old: bool, new: bool) -> None:
        # Rows that bring (or take away) the vertical scrollbar narrow (or widen) what the
        # columns may take without resizing the widget: no Resize comes, so fit again once the
        # scrollbar is laid out. Without it the picker's titles, sized for the full width before
        # 48 rows arrived, ran two cells under the scrollbar, their … out of sight.
        if old != new and self.fit_spec is not None:
            self.call_after_refresh(self.fit)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        # Textual shows or hides scrollbars when the compositor sees a size change; a table
        # whose own content narrowed (fit() cut the flexible column) kept the horizontal
        # scrollbar it no longer needed: a blank line under the rows.
        if new.width != old.width:
            self._refresh_scrollbars()

    def fit(self) -> None:
        """Fit the width (see :class:`Fit`): choose the columns, size the flexible one."""
        spec = self.fit_spec
        if spec is None or not self.columns or self.size.width <= 0 or self._fitting:
            return
        width = self.scrollable_content_region.width or self.size.width
        pad = 2 * self.cell_padding
        nominal = dict(spec.nominal)
        labels = dict(self._column_spec)

        def need(key: str) -> int:
            column = self.columns.get(ColumnKey(key))
            if column is not None:
                self._widths[key] = column.content_width
            measured = self._widths.get(key, Text(labels[key]).cell_len)  # a column left out: as last seen
            return pad + nominal.get(key, measured)

        keys = [key for key, _ in self._column_spec]
        dropped: list[str] = []
        for candidate in (None, *spec.drop):
            if candidate is not None:
                dropped.append(candidate)
            shown = [key for key in keys if key not in dropped]
            left = width - sum(need(key) for key in shown if key != spec.flex) - pad
            if left >= spec.minimum(width):
                break
        self._show_columns(shown)
        # A nominal width decides whether a column is shown; shown, it takes its own width.
        others = sum(
            pad + self.columns[ColumnKey(key)].content_width
            for key in shown
            if key != spec.flex and ColumnKey(key) in self.columns
        )
        left = width - pad - others
        left += self._squeeze(spec, shown, spec.minimum(width) - left)
        flex = self.columns.get(ColumnKey(spec.flex))
        if flex is not None:
            content = flex.content_width
            floor = spec.minimum(width) if left >= spec.minimum(width) else FLEX_FLOOR
            size = max(min(left, content), min(floor, content))
            if flex.auto_width or flex.width != size:
                flex.auto_width, flex.width = False, size
                # DataTable keys a rendered cell without its width: the lines cut (with …) for
                # the old width were cropped to the new one, the … cut off with the rest.
                self._clear_caches()
                self._require_update_dimensions = True
                self.refresh(layout=True)

    def _squeeze(self, spec: Fit, shown: list[str], short: int) -> int:
        """Cut the squeezable columns (to their floor, in order) by up to ``short`` cells in
        all, and give the others back their content width: the cells they gave."""
        given = 0
        for key, floor in spec.squeeze:
            column = self.columns.get(ColumnKey(key))
            if column is None or key not in shown:
                continue
            take = max(min(column.content_width - floor, short - given), 0)
            given += take
            size = column.content_width - take
            if column.auto_width != (take == 0) or (take and column.width != size):
                column.auto_width, column.width = take == 0, size
                self._clear_caches()  # a cell keyed without its width: see fit()
                self._require_update_dimensions = True
                self.refresh(layout=True)
        return given

    def _show_columns(self, shown: list[str]) -> None:
        """Put exactly these columns (in spec order) on the table, and the last rows again."""
        if shown == self._shown:
            return
        self._reselect = self.selected_key
        for key, column in self.columns.items():
            self._widths[key.value] = column.content_width
        self._syncing = True  # the cursor moves with the rebuild, not by the operator
        try:
            self.clear(columns=True)
        finally:
            self._syncing = False
        self._given.clear()
        self._parked.clear()
        self._cell_lines.clear()
        self._cell_lines_old.clear()
        self._order = []
        labels = dict(self._column_spec)
        positions = {key: i for i, (key, _) in enumerate(self._column_spec)}
        self._shown = list(shown)
        self._index = [positions[key] for key in shown]
        for key in shown:
            self.add_column(labels[key], key=key)
        self._fitting = True  # the sync below measures the rows; fit() goes on with it
        try:
            self.sync(self._rows)
        finally:
            self._fitting = False

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def watch_cursor_coordinate(self, old, new) -> None:
        super().watch_cursor_coordinate(old, new)
        if not self._syncing and old != new:
            self.pinned = True

    def sync(self, rows: Sequence[Row]) -> None:
        self._syncing = True
        try:
            self._sync(rows)
        finally:
            self._syncing = False

    def _sync(self, rows: Sequence[Row]) -> None:
        # A duplicate key would corrupt DataTable's row locations and crash the app on the next
        # repaint: the first row of a key wins (callers make keys unique; this is the backstop).
        self._rows = rows = list(rows)
        first: dict[str, Sequence[Text]] = {}
        for key, cells in rows:
            first.setdefault(key, cells)
        selected = self.selected_key
        if selected is None and self._reselect is not None:
            selected, self._reselect = self._reselect, None
        ordered = self.ordered_columns
        index = self._index
        placed = list(zip(ordered, index, strict=True))  # (column, position of its cell in a row)
        structure = False  # rows added or removed
        wider = False  # a cell grew past its column's width
        measure: set[ColumnKey] = set()  # columns whose widest cell changed or left
        changed: list[str] = []  # rows that stay, with at least one new cell
        fresh = False  # a row or cell that the table has not had
        table, given, parked, row_keys = self._data, self._given, self._parked, self._row_keys
        gone = [key for key in self._order if key not in first]
        if len(parked) + len(gone) > PARKED_ROWS:
            parked.clear()
        for key in gone:
            # Parked, not dropped: a filter that hides 900 rows and shows them again must not
            # build and measure 900 rows anew.
            row_key = row_keys[key]
            del self.rows[row_key]
            data = table.pop(row_key)
            for column in ordered:
                if column.key not in measure and _width(data.get(column.key)) >= column.content_width:
                    measure.add(column.key)
            parked[key] = (data, given.pop(key, None))
            structure = True
        for key, cells in first.items():
            if given.get(key) is cells:  # the very same row as last time
                continue
            row_key = row_keys.get(key) or row_keys.setdefault(key, RowKey(key))
            data = table.get(row_key)
            if data is None:  # a row (back) on the table
                self.rows[row_key] = TableRow(row_key, 1)
                structure = True
                back = parked.pop(key, None)
                if back is not None:
                    data, was = back
                    table[row_key] = data
                    for column in ordered:  # back with its widths
                        if (width := _width(data.get(column.key))) > column.content_width:
                            column.content_width = width
                    if was is cells:
                        given[key] = cells
                        continue
                    if was is not None:
                        given[key] = was
                else:
                    fresh = True
                    given[key] = cells
                    table[row_key] = {column.key: cells[i] for column, i in placed}
                    # Measured here (one-line Text: its cell length), not by DataTable on idle,
                    # which renders each new cell through the console to measure it.
                    for column, i in placed:
                        if cells[i].cell_len > column.content_width:
                            column.content_width = cells[i].cell_len
                    continue
            # What is shown, cell by cell: the cells last given for the row (a shown cell has
            # their text), or the table's own cells after an update_cell.
            before = given.get(key)
            given[key] = cells
            new = False
            for column, i in placed:
                cell = cells[i]
                old = before[i] if before is not None else data[column.key]
                # The same Text object is the same cell (callers reuse the cells of what did
                # not change); else the text decides, as before.
                if old is cell or old.plain == cell.plain:
                    continue
                data[column.key] = cell
                new = True
                if cell.cell_len > column.content_width:
                    column.content_width = cell.cell_len
                    wider = True
                elif _width(old) >= column.content_width > cell.cell_len:
                    measure.add(column.key)  # the widest cell got narrower
            if new:
                changed.append(key)
                fresh = True
        if measure and self._shrink(measure):
            wider = True  # a new width all the same: lay the table out again
        if fresh:
            # Cell lines live for two syncs that bring new cells (a refresh; a filter key brings
            # back rows it hid, which keep theirs): the lines of cells a refresh replaced, and
            # their Texts, are let go rather than held until a size bound.
            self._cell_lines_old, self._cell_lines = self._cell_lines, {}
        if len(row_keys) > len(first) + len(parked) + PARKED_ROWS:
            self._row_keys = row_keys = {k: row_keys[k] for k in (*first, *parked)}
        order = list(first)
        if structure or wider or order != self._order:
            # What DataTable.sort() does internally, with the caller's order.
            self._row_locations = TwoWayDict({row_keys[key]: index for index, key in enumerate(order)})
            self._order = order
            self._update_count += 1
            if structure or wider:
                self._require_update_dimensions = True
                self.cursor_coordinate = self.cursor_coordinate  # clamped to the new row count
                self.hover_coordinate = self.hover_coordinate
                self.check_idle()
            self.refresh(layout=structure or wider)
        elif changed:
            self._update_count += 1  # the render caches are keyed by it
            self._refresh_rows([self._row_locations.get(row_keys[key]) for key in changed])
        if selected is not None and selected in first and self.pinned:
            at = self._row_locations.get(row_keys[selected])
            if at != self.cursor_row:
                self.move_cursor(row=at, animate=False, scroll=False)
        if (wider or structure) and self.fit_spec is not None:
            self.fit()

    def _shrink(self, keys: set[ColumnKey]) -> bool:
        """Measure these columns again over the rows on the table (one pass each): a column is
        as wide as what it shows now. True when a width changed."""
        changed = False
        for key in keys:
            column = self.columns.get(key)
            if column is None:
                continue
            width = max((_width(row.get(key)) for row in self._data.values()), default=0)
            width = max(width, column.label.cell_len)
            if width != column.content_width:
                column.content_width = width
                changed = True
        return changed

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> SegmentLines:
        """DataTable caches a rendered cell under ``_update_count``, which every change bumps:
        one changed cell (a duration, each refresh) re-rendered every cell on screen through
        rich, and a filter key all of them. Here a cell's lines are kept by the Text object
        itself (rows hold fresh Texts on change) and its drawing state; only the row/column
        meta of its styles (what a mouse click reads) is set for where it is drawn now."""
        if row_index < max(0, self.fixed_rows) or column_index < max(0, self.fixed_columns):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        value = self._data[self._row_locations.get_key(row_index)].get(
            self._column_locations.get_key(column_index)
        )
        key = (id(value), base_style, width, cursor, hover, self._show_hover_cursor,
               self._pseudo_class_state, self.show_cursor, self.cursor_type, self.cell_padding)  # fmt: skip
        at = (row_index, column_index)
        hit = self._cell_lines.get(key)
        if hit is None:
            hit = self._cell_lines_old.pop(key, None)
            if hit is not None:
                self._cell_lines[key] = hit
        if hit is not None and hit[0] is value:
            placed = hit[1]
            lines = placed.get(at)
            if lines is None:
                meta = Style.from_meta({"row": row_index, "column": column_index})
                lines = placed[at] = [
                    [Segment(text, meta if style is None else style + meta, control) for text, style, control in line]
                    for line in next(iter(placed.values()))
                ]  # fmt: skip
            return lines
        lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        if len(self._cell_lines) > 20_000:
            self._cell_lines.clear()
        self._cell_lines[key] = (value, {at: lines})
        return lines

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cell_lines.clear()
        self._cell_lines_old.clear()

    def _clear_caches(self) -> None:
        super()._clear_caches()
        self._cell_lines.clear()
        self._cell_lines_old.clear()

    def _refresh_rows(self, indexes: list[int]) -> None:
        """Redraw the rows at these indexes that are on screen. A row scrolled out of view is
        drawn afresh when it scrolls in (the line caches are keyed by ``_update_count``), and
        DataTable.refresh_row is linear in the row index: 1000 changed rows (every session's
        duration, each refresh) cost a quadratic ~0.3 s per refresh."""
        top = int(self.scroll_y)
        bottom = top + self.size.height  # every row is one line high; the header only hides more
        visible = [index for index in indexes if top <= index <= bottom]
        if len(visible) > 4:
            self.refresh()  # the widget's visible region, once
        else:
            for index in visible:
                self.refresh_row(index)

    def update_cell(
        self,
        row_key: RowKey | str,
        column_key: ColumnKey | str,
        value: Text,
        *,
        update_width: bool = False,
    ) -> None:
        """One cell (a panel's once-a-second age column): redraw its row only, and only when
        the text changed; a wider text widens the column (grow only, as in ``sync``)."""
        row_key = RowKey(row_key) if isinstance(row_key, str) else row_key
        column_key = ColumnKey(column_key) if isinstance(column_key, str) else column_key
        index = self._row_locations.get(row_key)
        column = self.columns.get(column_key)
        if (
            column is None
            and column_key.value not in self._shown
            and column_key.value in dict(self._column_spec)
        ):
            return  # a column the fit left out: nothing on screen to update
        if index is None or column is None:
            raise CellDoesNotExist(f"No cell exists for row_key={row_key!r}, column_key={column_key!r}.")
        data = self._data[row_key]
        old = data.get(column_key)
        if (
            isinstance(old, Text)
            and isinstance(value, Text)
            and old.plain == value.plain
            and old.style == value.style
        ):
            return
        data[column_key] = value
        self._given.pop(row_key.value, None)
        self._update_count += 1
        width = value.cell_len if isinstance(value, Text) else len(str(value))
        if update_width and width > column.content_width:
            column.content_width = width
            self._require_update_dimensions = True
            self.check_idle()
            self.refresh(layout=True)
        else:
            self.refresh_row(index)


def _width(cell: object) -> int:
    return cell.cell_len if isinstance(cell, Text) else 0
