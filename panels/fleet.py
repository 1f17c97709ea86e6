"""The fleet: one row per Postgres cluster (console/fleet.py computes the rows).

Connections used/max, active, waiting, the longest transaction, the worst breach and the data
age of every cluster; ``/`` filters (the app's filter field, as on the sessions table); Enter
opens the cluster's own panel, or for a cluster read through Prometheus only, what is known of
it. The table is diffed by row key (panels/tables.py): a refresh redraws the cells that
changed, the selection follows its cluster when rows move.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.timer import Timer

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
SYNC_EVERY = 0.5  # seconds between two syncs of the rows, at most (see FleetPanel.render_state)

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


def fleet_age(seconds: float | None) -> str:
    """A row's age in whole seconds, "now" within 2 s: a fresh row's age cell does not change
    at every poll of every cluster (a 1 s refresh keeps its rows under 2 s)."""
    if seconds is None or seconds >= 60:
        return age_words(seconds)
    return "now" if seconds < 2 else f"{seconds:.0f}s"


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
        Text(fleet_age(row.age)),
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
        self._synced_at = -SYNC_EVERY  # monotonic time of the last sync of the rows
        self._synced_filter = ""
        self._flush: Timer | None = None

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.table

    def render_state(self, state: ConsoleState, now: float) -> None:
        """Each cluster's poll renders every panel: with 20 clusters this one was synced ~15
        times a second, each sync bringing new cells, which also let the table's cell-line
        cache go (it keeps the lines of two syncs: panels/tables.py) — every screen refresh drew
        every cell again (bench/FLEET_RESULTS.md). So the rows are synced at most every
        SYNC_EVERY seconds (a row's data is at most that much later than its source; its age
        says so), at once for a new filter."""
        since = time.monotonic() - self._synced_at
        if self.text_filter == self._synced_filter and since < SYNC_EVERY:
            if self._flush is None and self.is_mounted:
                self._flush = self.set_timer(SYNC_EVERY - since, self._flush_rows)
            return
        self._sync_rows(state, now)

    def _flush_rows(self) -> None:
        self._flush = None
        if self.state is not None:
            self._sync_rows(self.state, self.app.clock())

    def _sync_rows(self, state: ConsoleState, now: float) -> None:
        self._synced_at, self._synced_filter = time.monotonic(), self.text_filter
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
        # A cluster down or failing is as loud as a critical: a filter never hides one silently.
        self.hidden_critical = sum(1 for row in rows if row.rank <= 1) - sum(
            1 for row in shown if row.rank <= 1
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
            return filter_words(self.text_filter, self.hidden, self.hidden_critical, "CRIT, down or failing")
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
