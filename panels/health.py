"""Per health target: status, HTTP code, latency, time since the status last changed, what failed."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult

from console.model import HealthSnapshot, SourceKey
from console.poller import ConsoleState
from panels.base import Panel
from panels.detail import health_detail
from panels.messages import ShowText
from panels.tables import KeyedTable
from panels.text import age_text, cell, error_text, health_text

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
        self.table = KeyedTable(columns=COLUMNS, id="health-table")
        self._changed: dict[str, tuple[str, float]] = {}  # target -> (status word, since)

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.table

    def render_state(self, state: ConsoleState, now: float) -> None:
        rows = []
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
            if latest.error is not None:
                good = state.last_good.get(key)
                shown = good if isinstance(good, HealthSnapshot) else None
                status = error_text(latest.error)
                detail = cell(f"last good: {shown.status.value}" if shown else "", 60)
            else:
                shown, status, detail = latest, health_text(latest.status), cell(_detail(latest), 60)
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
        super().tick(now)
        for name, (_, since) in self._changed.items():
            self.table.update_cell(name, "changed", age_text(now - since), update_width=True)
