"""A DataTable updated by row key: changed cells only, rows added/removed, order applied in place.

clear() + add_rows() of 1000 rows costs ~170 ms a tick (DESIGN.md section 2); a keyed diff costs
a fraction, and keeps the operator's selection on the same row key while rows move.

DataTable's own row API is per row and linear in the table size for each call (``remove_row``
rebuilds the whole key -> index map, ``add_row`` re-validates the cursor), so a filter that
drops 900 of 1000 rows took seconds (bench/RESULTS.md). ``sync`` therefore edits the table's
row maps in one pass and rebuilds the index map once. A cell change refreshes only its row's
region, not the whole widget: what is not on screen is not redrawn, and what did not change is
not re-sent to the terminal. A cell that grows widens its column (columns never shrink).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, ColumnKey, RowKey
from textual.widgets.data_table import Row as TableRow

Row = tuple[str, Sequence[Text]]  # (row key, one Text per column)


class KeyedTable(DataTable):
    """``sync(rows)`` makes the table show exactly ``rows``, in that order."""

    DEFAULT_CSS = """
    KeyedTable { height: 1fr; }
    """

    def __init__(self, *, columns: Sequence[tuple[str, str]], **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self._column_spec = list(columns)
        self._plain: dict[str, tuple[str, ...]] = {}  # row key -> plain text of its cells
        self._order: list[str] = []

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def sync(self, rows: Sequence[Row]) -> None:
        # A duplicate key would corrupt DataTable's row locations and crash the app on the next
        # repaint: the first row of a key wins (callers make keys unique; this is the backstop).
        first: dict[str, Row] = {}
        for key, cells in rows:
            first.setdefault(key, (key, cells))
        rows = list(first.values())
        selected = self.selected_key
        wanted = {key for key, _ in rows}
        ordered = self.ordered_columns
        columns = [column.key for column in ordered]
        structure = False  # rows added or removed
        wider = False  # a cell grew past its column's width
        changed: list[str] = []  # rows that stay, with at least one new cell
        for key in [k for k in self._plain if k not in wanted]:
            row_key = RowKey(key)
            del self.rows[row_key], self._data[row_key], self._plain[key]
            structure = True
        for key, cells in rows:
            plain = tuple(cell.plain for cell in cells)
            previous = self._plain.get(key)
            if previous is None:
                row_key = RowKey(key)
                self._data[row_key] = dict(zip(columns, cells, strict=True))
                self.rows[row_key] = TableRow(row_key, 1)
                # Measured here (one-line Text: its cell length), not by DataTable on idle,
                # which renders each new cell through the console to measure it.
                for column, cell in zip(ordered, cells, strict=True):
                    if cell.cell_len > column.content_width:
                        column.content_width = cell.cell_len
                structure = True
            elif previous != plain:
                data = self._data[RowKey(key)]
                for column, cell, old, new in zip(ordered, cells, previous, plain, strict=True):
                    if old != new:
                        data[column.key] = cell
                        # Grow only: DataTable's update_width shrinks by measuring the whole
                        # column again, for each cell, which is quadratic in the row count.
                        if cell.cell_len > column.content_width:
                            column.content_width = cell.cell_len
                            wider = True
                changed.append(key)
            self._plain[key] = plain
        order = [key for key, _ in rows]
        if structure or wider or order != self._order:
            # What DataTable.sort() does internally, with the caller's order.
            self._row_locations = TwoWayDict({RowKey(key): index for index, key in enumerate(order)})
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
            for key in changed:
                self.refresh_row(self._row_locations.get(RowKey(key)))
        if selected is not None and selected in self._plain:
            index = self._row_locations.get(RowKey(selected))
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False, scroll=False)

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
        plain = self._plain.get(row_key.value)
        if plain is not None:
            position = next(i for i, c in enumerate(self.ordered_columns) if c.key == column_key)
            text = value.plain if isinstance(value, Text) else str(value)
            self._plain[row_key.value] = (*plain[:position], text, *plain[position + 1 :])
        self._update_count += 1
        width = value.cell_len if isinstance(value, Text) else len(str(value))
        if update_width and width > column.content_width:
            column.content_width = width
            self._require_update_dimensions = True
            self.check_idle()
            self.refresh(layout=True)
        else:
            self.refresh_row(index)
