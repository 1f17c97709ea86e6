"""The fleet: one row per Postgres cluster (console/fleet.py computes the rows).

Connections used/max, active, waiting, the longest transaction, the worst breach and the data
age of every cluster; ``/`` filters (the app's filter field, as on the sessions table); Enter
opens the cluster's own panel, or for a cluster read through Prometheus only, what is known of
it. The table is diffed by row key (panels/tables.py): a refresh redraws the cells that
changed, the selection follows its cluster when rows move.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message

from console.fleet import (
    DOWN_BADGE,
    STALE_BADGE,
    WAITING_BADGE,
    CountsCache,
    FleetRow,
    duration_words,
    fleet_rows,
)
from console.model import Severity, SourceKey, SourceKind
from console.poller import ConsoleState
from console.present import ERROR_BADGE
from console.rules import State
from panels.base import Panel, filter_words
from panels.messages import ShowText
from panels.tables import Fit, KeyedTable
from panels.text import SEVERITY_STYLE, STATE_STYLE, age_words, cell

COLUMNS = [
    ("state", "State"),
    ("cluster", "Cluster"),
    ("conn", "Conn"),
    ("active", "Act"),
    ("waiting", "Wait"),
    ("longest", "Long tx"),
    ("worst", "Worst breach"),
    ("age", "Age"),
    ("via", "Via"),
]
#: At 80 columns the origin and the active count go first; the worst breach takes what is left.
FLEET_FIT = Fit("worst", 12, drop=("via", "active"), nominal=(("via", 14), ("active", 4)))


def badge_text(row: FleetRow) -> Text:
    if row.badge == ERROR_BADGE:
        style = STATE_STYLE[State.ERROR]
    elif row.badge == STALE_BADGE:
        style = "bold yellow"
    elif row.badge == WAITING_BADGE:
        style = "italic"
    elif row.badge == DOWN_BADGE:
        style = SEVERITY_STYLE[Severity.CRITICAL]
    else:
        style = SEVERITY_STYLE[row.severity]
    return Text(row.badge, style=style)


def row_cells(row: FleetRow) -> list[Text]:
    worst = row.worst or (row.error and f"! {row.error}") or ""
    worst_style = SEVERITY_STYLE[row.worst_severity] if row.worst_severity is not None else ""
    waiting = "—" if row.waiting is None else str(row.waiting)
    return [
        badge_text(row),
        cell(row.cluster, 24),
        Text(row.connections_words()),
        Text("—" if row.active is None else str(row.active)),
        Text(waiting, style="bold red" if row.waiting else ""),
        Text(duration_words(row.longest_tx)),
        cell(worst, 80, worst_style),
        Text(age_words(row.age)),
        cell(row.via_words, 24),
    ]


class FleetPanel(Panel):
    """Every Postgres cluster at a glance (config ``fleet:``; README, the fleet view)."""

    title = "Fleet"

    @dataclass
    class OpenCluster(Message):
        """Show this cluster's own panel (a cluster the console connects to)."""

        cluster: str

    def __init__(self, *, stale_after: float = 60.0, prometheus: SourceKey | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.stale_after = stale_after
        self.prometheus = prometheus  # the server that reads the fleet, if any
        self.table = KeyedTable(columns=COLUMNS, id="fleet-table", fit=FLEET_FIT)
        self.text_filter = ""
        self.hidden = 0
        self.hidden_critical = 0
        self.rows: dict[str, FleetRow] = {}  # what the table shows, by row key
        self._counts: CountsCache = {}  # each cluster's snapshot counted once (console/fleet.py)

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.table

    def render_state(self, state: ConsoleState, now: float) -> None:
        # Every Postgres cluster and the server that reads the fleet: the status line says which
        # of them is failing or stale, by name.
        self.sources = tuple(
            key
            for key in state.intervals
            if SourceKey.of(key).kind is SourceKind.POSTGRES or key == self.prometheus
        )
        rows = fleet_rows(state, now, stale_after=self.stale_after, cache=self._counts)
        needle = self.text_filter.lower()
        shown = [row for row in rows if not needle or needle in row.haystack()]
        self.hidden = len(rows) - len(shown)
        self.hidden_critical = sum(1 for row in rows if row.severity is Severity.CRITICAL) - sum(
            1 for row in shown if row.severity is Severity.CRITICAL
        )
        self.rows = {row.key: row for row in shown}
        self.table.sync([(row.key, row_cells(row)) for row in shown])

    def tick(self, now: float) -> None:
        if self.state is not None:
            self.render_state(self.state, now)  # the ages, and rows that went stale
        super().tick(now)

    def rows_wanted(self) -> int:
        return 4 + max(len(self.rows), 1)

    def filter_note(self) -> Text | None:
        if self.text_filter:
            return filter_words(self.text_filter, self.hidden, self.hidden_critical)
        return None

    @property
    def selected(self) -> FleetRow | None:
        key = self.table.selected_key
        return None if key is None else self.rows.get(key)

    def on_data_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        row = self.selected
        if row is None:
            return
        if row.source is not None:
            self.post_message(self.OpenCluster(row.cluster))
        else:
            self.post_message(ShowText(f"fleet: {row.cluster}", row.detail()))
