"""Per health target: status, HTTP code, latency, time since the status last changed, what failed."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult

from console.model import HealthSnapshot, SourceKey
from console.poller import ConsoleState
from console.present import ERROR_BADGE
from panels.base import Panel
from panels.detail import health_detail
from panels.messages import ShowText
from panels.tables import Fit, KeyedTable
from panels.text import age_text, ago, cell, health_text

COLUMNS = [
    ("status", "Status"),
    ("target", "Target"),
    ("http", "HTTP"),
    ("latency", "Latency"),
    ("changed", "Changed"),
    ("detail", "Detail"),
]


def _status_word(snapshot: HealthSnapshot) -> str:
    return f"error:{snapshot.error.kind}" if snapshot.error else snapshot.status.value


def _detail(snapshot: HealthSnapshot) -> str:
    failing = [f"{c.name}: {c.status.value}" + (f" ({c.detail})" if c.detail else "") for c in snapshot.checks
               if c.status.value != "pass"]  # fmt: skip
    parts = [snapshot.output] if snapshot.output else []
    return "; ".join(parts + failing)


class HealthPanel(Panel):
    title = "Health"

    def __init__(self, targets: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.targets = targets
        self.sources = tuple(SourceKey.health(name) for name in targets)
        self.table = KeyedTable(
            columns=COLUMNS, id="health-table", fit=Fit("detail", 20, drop=("changed", "http"))
        )
        self._changed: dict[str, tuple[str, float]] = {}  # target -> (status word, since)
        self._stale: frozenset[str] = frozenset()

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.table

    def rows_wanted(self) -> int:
        """Height for every target: border, status line, table header, one row each."""
        return 4 + len(self.targets)

    def render_state(self, state: ConsoleState, now: float) -> None:
        rows = []
        self._stale = frozenset(self.stale_sources(state, now))
        for name in self.targets:
            key = SourceKey.health(name)
            latest = state.snapshots.get(key)
            if not isinstance(latest, HealthSnapshot):
                rows.append(
                    (name, [Text("… waiting"), cell(name, 24), Text(""), Text(""), Text(""), Text("")])
                )
                continue
            word = _status_word(latest)
            if self._changed.get(name, ("", 0.0))[0] != word:
                self._changed[name] = (word, latest.taken_at)
            since = self._changed[name][1]
            good = state.last_good.get(key)
            shown = good if isinstance(good, HealthSnapshot) else None
            if latest.error is not None:
                # The badge in Status, the reason in Detail: a reason is no status (a 75-cell
                # Status column, issue 18).
                status = Text(ERROR_BADGE, style="bold magenta")
                last = f" · last good: {shown.status.value} {ago(now - shown.taken_at)}" if shown else ""
                detail = cell(f"{latest.error}{last}", 120)
            elif key in self._stale and shown is not None:
                status = Text("◌ STALE", style="bold yellow")
                detail = cell(
                    f"last: {shown.status.value} {ago(now - shown.taken_at)} · {_detail(shown)}",
                    120,
                )
            else:
                status, detail = health_text(latest.status), cell(_detail(latest), 120)
            http = Text(str(latest.http_status) if latest.http_status else "")
            latency = Text(f"{latest.latency * 1000:.0f}ms" if latest.latency is not None else "")
            rows.append((name, [status, cell(name, 24), http, latency, age_text(now - since), detail]))
        self.table.sync(rows)

    def on_data_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        name = self.table.selected_key
        if self.state is None or name is None:
            return
        latest = self.state.snapshots.get(SourceKey.health(name))
        good = self.state.last_good.get(SourceKey.health(name))
        if isinstance(latest, HealthSnapshot):
            body = health_detail(latest, good if isinstance(good, HealthSnapshot) else None)
            self.post_message(ShowText(f"health: {name}", body))

    def tick(self, now: float) -> None:
        if self.state is not None and frozenset(self.stale_sources(self.state, now)) != self._stale:
            self.render_state(self.state, now)  # a target went stale, or is back
        super().tick(now)
        for name, (_, since) in self._changed.items():
            self.table.update_cell(name, "changed", age_text(now - since), update_width=True)
