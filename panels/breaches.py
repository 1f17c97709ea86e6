"""Every breach and Prometheus alert, worst first, with state, age, value against level, runbooks.

Breaches that are one trouble seen from several sides (rules.group_related: the lock chain's
"longest running query" under its "sessions waiting on a lock") are one row, expandable with
``space``. A filter says what it hides, and a critical it hides is flagged in the header too.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from console.model import Severity, own_labels
from console.poller import ConsoleState
from console.rules import Breach, State, grouped
from panels.base import STALE_FACTOR, Panel, filter_words
from panels.messages import AckBreach, ShowBreach, ShowRunbooks
from panels.tables import Fit, KeyedTable
from panels.text import breach_age_words, breach_text, cell

COLUMNS = [
    ("severity", "Severity"),
    ("state", "State"),
    ("age", "Age"),
    ("title", "Breach"),
    ("value", "Value (level)"),
    ("subject", "Subject"),
    ("runbooks", "Runbooks"),
]
#: The title takes what the other columns leave (cut with …); runbooks and subject go first
#: when it would get less than 18 cells or a quarter of the width, then the value (with its
#: level) is cut, to 10 cells at least: at 80x24 an acked alert's state ("firing · acked
#: →04:51Z") and a value like "123 items (>= 100 items)" left the title 6 cells.
FIT = Fit(
    "title",
    18,
    drop=("runbooks", "subject"),
    nominal=(("runbooks", 24), ("subject", 32)),
    flex_share=0.25,
    squeeze=(("value", 10),),
)
COLLAPSED, EXPANDED, CHILD = "▸ ", "▾ ", "  ↳ "
URL_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def breach_cells(
    breach: Breach,
    now: float,
    ack: str = "",
    hint: str = "",
    *,
    related: int = 0,
    expanded: bool = False,
    child: bool = False,
    stale: bool = False,
) -> list[Text]:
    value = breach.value_text
    # a status's level (>= WARN) says again what its severity and word say: the row keeps the
    # room for the failing checks and the title
    if breach.level_text and breach.kind == "threshold" and breach.metric != "status":
        value = f"{value} ({breach.level_text})"
    runbooks = ", ".join(breach.runbooks) or hint or ("url" if breach.runbook_url else "")
    state = breach.state.value + (f" · {ack}" if ack else "")
    state_cell = cell(state, 40)
    if stale:  # its source has had no new data for a while: what the row says is old
        state_cell.append(" ◌ stale", style="bold yellow")
    # An alert's row names what it is about: at 80 columns the Subject column is left out, and
    # IntegrationDown for hubspot and for shopee were two rows alike.
    # A URL (a blackbox probe's target) by its host first: "· http:/…" was all 80 columns kept.
    about = own_labels(breach.labels, ("alertname", "severity")) if breach.kind == "alert" else ()
    title = cell(f"{breach.title} · {URL_SCHEME.sub('', about[0][1])}" if about else breach.title, 60)
    if child:
        title = Text(CHILD) + title
    elif related:  # the count up front: a cut title still says there is more
        mark = Text(EXPANDED) if expanded else Text.assemble(COLLAPSED.rstrip(), (f"+{related} ", "bold"))
        title = mark + title
    title.no_wrap, title.overflow = True, "ellipsis"
    return [
        breach_text(breach),
        state_cell,
        Text(breach_age_words(breach, now)),
        title,
        cell(value, 40),
        cell(breach.subject, 40),
        cell(runbooks, 40),
    ]


def critical(breach: Breach) -> bool:
    return breach.counted_severity is Severity.CRITICAL and breach.state is not State.OK


class BreachesPanel(Panel):
    title = "Breaches & alerts"
    BINDINGS = [
        Binding("enter", "details", "Details", id="breach_details"),
        Binding("R", "runbooks", "Runbooks", id="breach_runbooks"),
        Binding("a", "ack(True)", "Ack alert", id="breach_ack"),
        Binding("A", "ack(False)", "Un-ack", id="breach_unack", show=False),
        Binding("space", "expand", "Related", id="breach_expand", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = KeyedTable(columns=COLUMNS, id="breaches-table", fit=FIT)
        self._breaches: dict[str, Breach] = {}
        self.text_filter = ""
        self.acks: dict[str, str] = {}  # breach id -> "acked until ..."
        self.hints: dict[str, str] = {}  # breach id -> the best-ranked runbook
        self.expanded: set[str] = set()  # root breach ids shown with their related breaches
        self.hidden = 0  # breaches the filter hides
        self.hidden_critical = 0  # ... of them critical
        self._stale: frozenset[str] = frozenset()
        self._now = 0.0
        self._title_shown = ""
        # Breach id -> (the breach, what else its row shows, its cells): a render whose breach is
        # the same as last time passes the table the same cells, which it knows unchanged by
        # identity (every poll of every source renders this panel: at 20 clusters 60 breaches
        # x ~19 renders a second were rebuilt, bench/FLEET_RESULTS.md).
        self._row_cells: dict[str, tuple[Breach, tuple, list[Text]]] = {}
        self._row_cells_new: dict[str, tuple[Breach, tuple, list[Text]]] = {}

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.table

    def render_state(self, state: ConsoleState, now: float) -> None:
        self.sources = tuple(state.intervals)
        self._stale = frozenset(self.stale_sources(state, now))
        shown = [b for b in state.breaches if self._matches(b)]
        hidden = [b for b in state.breaches if not self._matches(b)]
        self.hidden, self.hidden_critical = len(hidden), sum(1 for b in hidden if critical(b))
        self._breaches = {b.id: b for b in shown}
        self._now = now
        rows = []
        self._row_cells_new = {}
        for root, children in grouped(shown):
            open_ = root.id in self.expanded
            rows.append((root.id, self._cells(root, now, related=len(children), expanded=open_)))
            if open_:
                rows += [(child.id, self._cells(child, now, child=True)) for child in children]
        self._row_cells = self._row_cells_new  # breaches that are gone are forgotten
        self.table.sync(rows)
        total = len(state.breaches)
        title = (
            f"{self.title} ({len(shown)} of {total}, filtered)"
            if self.text_filter
            else f"{self.title} ({total})"
        )
        if title != self._title_shown:  # setting it redraws the whole panel
            self._title_shown = title
            self.border_title = Text(title)

    def _cells(self, breach: Breach, now: float, **shape) -> list[Text]:
        ack, hint = self.acks.get(breach.id, ""), self.hints.get(breach.id, "")
        stale = breach.source in self._stale
        shown = (ack, hint, stale, breach_age_words(breach, now), tuple(sorted(shape.items())))
        hit = self._row_cells.get(breach.id)
        if hit is not None and hit[1] == shown and (hit[0] is breach or hit[0] == breach):
            cells = hit[2]
        else:
            cells = breach_cells(breach, now, ack, hint, stale=stale, **shape)
        self._row_cells_new[breach.id] = (breach, shown, cells)
        return cells

    @property
    def row_count(self) -> int:
        return self.table.row_count

    def tick(self, now: float) -> None:
        if self.state is not None and frozenset(self.stale_sources(self.state, now)) != self._stale:
            self.render_state(self.state, now)  # a source went stale, or is back
        super().tick(now)
        for breach_id in self.table.keys:
            breach = self._breaches.get(breach_id)
            if breach is not None:
                self.table.update_cell(
                    breach_id, "age", Text(breach_age_words(breach, now)), update_width=True
                )

    def status_text(self, state: ConsoleState, now: float) -> tuple[bool, Text]:
        """The data's age, and on an empty list whether that means anything: "nothing breached"
        only when every source this panel shows has fresh data (a blank table alone reads the
        same as a list that never loaded)."""
        stale, text = super().status_text(state, now)
        if not state.breaches and self.sources and not state.old_sources(now, STALE_FACTOR):
            text.append("  ✔ nothing breached, no alert firing or pending", style="bold green")
        return stale, text

    def filter_note(self) -> Text | None:
        if not self.text_filter:
            return None
        return filter_words(self.text_filter, self.hidden, self.hidden_critical)

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

    def action_expand(self) -> None:
        """Show or hide the breaches grouped under the selected one (or under its root)."""
        breach = self.selected
        if breach is None or self.state is None:
            return
        root = breach.parent if breach.parent in self._breaches else breach.id
        self.expanded.symmetric_difference_update({root})
        self.render_state(self.state, self._now)
        if (size := getattr(self.app, "size_panels", None)) is not None:
            size()  # the panel's rows changed: its height follows
        if root in self._breaches:
            self.table.move_cursor(row=self.table.get_row_index(root), animate=False)

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
