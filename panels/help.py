"""`?`: every key that works here, with what it does (after the user's keymap)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from panels.footer import Footer


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close", id="help_close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 80%; max-width: 100; height: 85%; border: thick $accent; background: $surface; }
    HelpScreen DataTable { height: 1fr; }
    """

    def __init__(self, rows: list[tuple[str, str, str]]) -> None:
        """``rows``: (keys, description, where)."""
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Text("Keys (remap them with ui.keymap in console.yaml: binding id -> keys)", style="bold")
            )
            table = DataTable(cursor_type="row", id="help-table")
            table.add_columns("Key", "Action", "Where")
            for keys, description, where in self.rows:
                table.add_row(Text(keys), Text(description), Text(where))
            yield table
        yield Footer(compact=True)  # this screen's keys, not the console's behind it
