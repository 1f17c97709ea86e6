"""A DataTable updated by row key: changed cells only, rows added/removed, order applied in place.

clear() + add_rows() of 1000 rows costs ~170 ms a tick (DESIGN.md section 2); a keyed diff costs
a fraction, and keeps the operator's selection on the same row key while rows move.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

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
        with self.app.batch_update():
            for key in [k for k in self._plain if k not in wanted]:
                self.remove_row(key)
                del self._plain[key]
            for key, cells in rows:
                plain = tuple(cell.plain for cell in cells)
                previous = self._plain.get(key)
                if previous is None:
                    self.add_row(*cells, key=key)
                elif previous != plain:
                    for (column, _), cell, old, new in zip(
                        self._column_spec, cells, previous, plain, strict=True
                    ):
                        if old != new:
                            self.update_cell(key, column, cell, update_width=True)
                self._plain[key] = plain
            order = [key for key, _ in rows]
            if order != self._order:
                self._apply_order(order)
                self._order = order
            if selected is not None and selected in self._plain:
                index = self.get_row_index(selected)
                if index != self.cursor_row:
                    self.move_cursor(row=index, animate=False, scroll=False)

    def _apply_order(self, keys: list[str]) -> None:
        # DataTable.sort() can only order by cell values; we order by the caller's list. This
        # is what sort() does internally, with the row order given instead of computed.
        self._row_locations = TwoWayDict({RowKey(key): index for index, key in enumerate(keys)})
        self._update_count += 1
        self.refresh()
