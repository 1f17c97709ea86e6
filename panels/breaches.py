"""Every breach and Prometheus alert, worst first, with state, age, value against level, runbooks."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from console.poller import ConsoleState
from console.rules import Breach
from panels.base import Panel
from panels.messages import AckBreach, ShowBreach, ShowRunbooks
from panels.tables import KeyedTable
from panels.text import age_text, breach_text, cell

COLUMNS = [
    ("severity", "Severity"),
    ("state", "State"),
    ("age", "Age"),
    ("title", "Breach"),
    ("value", "Value (level)"),
    ("subject", "Subject"),
    ("runbooks", "Runbooks"),
]


def breach_cells(breach: Breach, now: float, ack: str = "", hint: str = "") -> list[Text]:
    value = breach.value_text
    if breach.level_text and breach.kind == "threshold":
        value = f"{value} ({breach.level_text})"
    runbooks = ", ".join(breach.runbooks) or hint or ("url" if breach.runbook_url else "")
    return [
        breach_text(breach),
        cell(f"{breach.state.value} · {ack}" if ack else breach.state.value, 40),
        age_text(breach.age(now)),
        cell(breach.title, 48),
        cell(value, 40),
        cell(breach.subject, 40),
        cell(runbooks, 40),
    ]


class BreachesPanel(Panel):
    title = "Breaches & alerts"
    BINDINGS = [
        Binding("enter", "details", "Details", id="breach_details"),
        Binding("R", "runbooks", "Runbooks", id="breach_runbooks"),
        Binding("a", "ack(True)", "Ack alert", id="breach_ack"),
        Binding("A", "ack(False)", "Un-ack", id="breach_unack", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = KeyedTable(columns=COLUMNS, id="breaches-table")
        self._breaches: dict[str, Breach] = {}
        self.text_filter = ""
        self.acks: dict[str, str] = {}  # breach id -> "acked until ..."
        self.hints: dict[str, str] = {}  # breach id -> the best-ranked runbook
        self._now = 0.0
        self._title_shown = ""

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.table

    def render_state(self, state: ConsoleState, now: float) -> None:
        self.sources = tuple(state.intervals)
        shown = [b for b in state.breaches if self._matches(b)]
        self._breaches = {b.id: b for b in shown}
        self._now = now
        self.table.sync([(b.id, self._cells(b, now)) for b in shown])
        title = f"{self.title} ({len(state.breaches)})"
        if title != self._title_shown:  # setting it redraws the whole panel
            self._title_shown = title
            self.border_title = Text(title)

    def _cells(self, breach: Breach, now: float) -> list[Text]:
        return breach_cells(breach, now, self.acks.get(breach.id, ""), self.hints.get(breach.id, ""))

    def tick(self, now: float) -> None:
        super().tick(now)
        for breach_id, breach in self._breaches.items():
            self.table.update_cell(breach_id, "age", age_text(breach.age(now)), update_width=True)

    def _matches(self, breach: Breach) -> bool:
        if not self.text_filter:
            return True
        needle = self.text_filter.lower()
        haystack = " ".join((breach.title, breach.subject, breach.id, breach.summary, breach.state.value))
        return needle in haystack.lower()

    @property
    def selected(self) -> Breach | None:
        key = self.table.selected_key
        return None if key is None else self._breaches.get(key)

    def action_details(self) -> None:
        if (breach := self.selected) is not None:
            self.post_message(ShowBreach(breach))

    def action_runbooks(self) -> None:
        self.post_message(ShowRunbooks(self.selected))

    def action_ack(self, ack: bool) -> None:
        if (breach := self.selected) is not None:
            self.post_message(AckBreach(breach, ack))

    def on_data_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        self.action_details()
