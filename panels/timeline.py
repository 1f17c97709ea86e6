"""``t``: the incident timeline, read back from the journal (what was seen, done and noted)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from console.model import Severity
from console.timeline import TimelineEntry
from panels.footer import Footer
from panels.tables import Fit, KeyedTable
from panels.text import cell, severity_text

RELOAD_SECONDS = 1.0  # while open: a stat of the journal file, a re-read only when it changed
OUTCOME_BADGE = {
    "ok": "✔ ok",
    "failed": "✖ fail",
    "not met": "✖ not met",
    "refused": "⊘ refused",
    "info": "· info",
}
OUTCOME_STYLE = {
    "ok": "green",
    "failed": "bold red",
    "not met": "bold yellow",
    "refused": "yellow",
    "info": "",
}


def outcome_text(entry: TimelineEntry) -> Text:
    """What came of it; a breach reads as its severity (the system's state, nobody's failure)."""
    if entry.outcome == "breach":
        return severity_text(Severity.from_word(entry.severity))
    return cell(OUTCOME_BADGE.get(entry.outcome, entry.outcome), 10, OUTCOME_STYLE.get(entry.outcome, ""))


class TimelineScreen(ModalScreen[None]):
    """Live while it is open: ``reload`` is called every RELOAD_SECONDS (it re-reads only when
    something changed) and :meth:`show` takes what it read."""

    BINDINGS = [Binding("escape", "dismiss", "Close", id="timeline_close")]
    DEFAULT_CSS = """
    TimelineScreen { align: center middle; }
    #timeline-box { width: 98%; height: 95%; border: thick $primary; background: $surface; }
    #timeline-title { height: auto; text-style: bold; padding: 0 1; }
    """

    def __init__(
        self,
        entries: Sequence[TimelineEntry],
        title: str,
        problem: str = "",
        reload: Callable[[], object] | None = None,
    ) -> None:
        super().__init__()
        self.entries = list(entries)
        self.title_text = title
        self.problem = problem
        self.reload = reload
        self.read_key: object = None  # what the reader had read when it read these entries
        self.loaded = False  # the reader's entries arrived (the screen opens before they do)

    def compose(self) -> ComposeResult:
        with Vertical(id="timeline-box"):
            yield Static(Text(self._heading()), id="timeline-title")
            yield KeyedTable(
                columns=[("ts", "UTC"), ("outcome", "result"), ("who", "who"), ("text", "what")],
                id="timeline-table",
                fit=Fit("text", 20),  # what happened takes the width the others leave, cut with …
            )
            yield Footer(compact=True)

    def _heading(self) -> str:
        # The count first: at 80 columns a long journal path wraps after it, not through it.
        heading = f"Timeline: {len(self.entries)} events ({self.title_text})"
        return heading + (f" — {self.problem}" if self.problem else "")

    def on_mount(self) -> None:
        self.query_one("#timeline-title", Static).update(Text(self._heading()))  # read meanwhile
        self._sync()
        table = self.query_one(KeyedTable)
        if self.entries:
            table.move_cursor(row=len(self.entries) - 1, animate=False)
        table.focus()
        if self.reload is not None:
            self.set_interval(RELOAD_SECONDS, self.reload)

    def show(self, entries: Sequence[TimelineEntry], problem: str) -> None:
        """Newer entries: a cursor on the last row follows them, one elsewhere stays put. Before
        the screen is mounted (or after it closed) they are only kept."""
        self.loaded = True
        if not self.is_mounted:
            self.entries, self.problem = list(entries), problem
            return
        table = self.query_one(KeyedTable)
        following = table.cursor_row >= len(self.entries) - 1
        self.entries, self.problem = list(entries), problem
        self.query_one("#timeline-title", Static).update(Text(self._heading()))
        self._sync()
        if following and self.entries:
            table.move_cursor(row=len(self.entries) - 1, animate=False)

    def _sync(self) -> None:
        seen: dict[tuple[float, str, str], int] = {}
        rows = []
        for e in self.entries:
            # Keyed by the entry itself: an entry keeps its row when older ones leave the window.
            n = seen[(e.ts, e.who, e.text)] = seen.get((e.ts, e.who, e.text), -1) + 1
            rows.append(
                (
                    f"{e.ts!r}|{e.who}|{e.text}|{n}",
                    (
                        cell(time.strftime("%m-%d %H:%M:%S", time.gmtime(e.ts)), 14),
                        outcome_text(e),
                        cell(e.who, 24),
                        cell(e.text, 200),
                    ),
                )
            )
        self.query_one(KeyedTable).sync(rows)
