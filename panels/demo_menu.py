"""``D`` in the demo: turn each scenario's fault on or off from inside the console.

The screen renders what the app gives it (the scenarios and the stack's fault status) and posts
requests; the app talks to the demo stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from console.demo.control import DemoStatus, ScenarioInfo
from panels.footer import Footer
from panels.tables import KeyedTable
from panels.text import cell


@dataclass
class DemoRequest(Message):
    """Inject (``on``) or reset a scenario; ``name`` None with ``on`` False resets everything."""

    name: str | None
    on: bool


class DemoMenu(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="demo_close"),
        Binding("enter", "toggle", "On/off", id="demo_toggle"),
        Binding("0", "reset_all", "Reset all", id="demo_reset_all"),
    ]
    DEFAULT_CSS = """
    DemoMenu { align: center middle; }
    #demo-box { width: 95%; max-width: 140; height: 90%; border: thick $accent; background: $surface; }
    #demo-title, #demo-last { height: auto; padding: 0 1; }
    """

    def __init__(self, scenarios: Sequence[ScenarioInfo]) -> None:
        super().__init__()
        self.scenarios = list(scenarios)
        self.active: dict[str, bool] = {}  # name -> fault still in effect (False: fixed)
        self.problem = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="demo-box"):
            yield Static(Text("Demo scenarios: Enter turns one on or off, 0 resets all"), id="demo-title")
            yield KeyedTable(
                columns=[("on", "fault"), ("name", "scenario"), ("title", "what"), ("fix", "fixed by")],
                id="demo-table",
            )
            yield Static(id="demo-last")
            yield Footer(compact=True)

    def on_mount(self) -> None:
        self._fill()
        self.query_one(KeyedTable).focus()

    def show_status(self, status: DemoStatus | None, message: str = "") -> None:
        if status is not None:
            self.active = {f.name: f.active for f in status.faults}
            self.problem = "; ".join(status.errors)
        if self.is_mounted:
            self._fill()
            note = message or self.problem
            self.query_one("#demo-last", Static).update(Text(note))

    def _fill(self) -> None:
        rows = []
        for s in self.scenarios:
            state = self.active.get(s.name)
            badge = "● ON" if state else ("✔ fixed" if state is False else "○ off")
            rows.append((s.name, (cell(badge, 8), cell(s.name, 28), cell(s.title, 50), cell(s.fix, 70))))
        self.query_one(KeyedTable).sync(rows)

    def action_toggle(self) -> None:
        name = self.query_one(KeyedTable).selected_key
        if name is not None:
            self.post_message(DemoRequest(name, name not in self.active))

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_toggle()

    def action_reset_all(self) -> None:
        self.post_message(DemoRequest(None, False))
