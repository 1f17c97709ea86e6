"""Each configured PromQL query: value, unit, levels, state and a sparkline; alerts/targets/silences."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.app import ComposeResult

from console.config import BoundThreshold
from console.model import PrometheusSnapshot, Severity, SourceKey
from console.poller import ConsoleState
from console.rules import format_number, level_text
from panels.base import Panel, StatusLine
from panels.tables import Fit, KeyedTable
from panels.text import breach_text, cell, error_text, severity_text, sparkline

COLUMNS = [
    ("state", "State"),
    ("query", "Query"),
    ("value", "Value"),
    ("levels", "Levels"),
    ("trend", "Trend"),
]
HISTORY = 60  # points kept per query: memory stays flat however long the console runs


class MetricsPanel(Panel):
    title = "Metrics"

    def __init__(
        self,
        queries: list[tuple[str, str, str]],
        thresholds: dict[str, BoundThreshold],
        owners: dict[str, SourceKey] | None = None,
        servers: tuple[SourceKey, ...] = (),
        **kwargs,
    ):
        """``queries``: (id, title, unit); ``thresholds``: query id -> its bound threshold;
        ``owners``: query id -> the Prometheus server that runs it (default: ``prometheus``);
        ``servers``: every server, for the summary line (default: those that run a query)."""
        super().__init__(**kwargs)
        self.queries = queries
        self.thresholds = thresholds
        self.owners = owners or {q: SourceKey.prometheus() for q, _, _ in queries}
        self.sources = servers or tuple(dict.fromkeys(self.owners.values())) or (SourceKey.prometheus(),)
        self.summary = StatusLine(classes="panel-body")
        self.table = KeyedTable(columns=COLUMNS, id="metrics-table", fit=Fit("query", 12, drop=("levels",)))
        self._history: dict[str, deque[float | None]] = {q: deque(maxlen=HISTORY) for q, _, _ in queries}
        self._seen_at: dict[str, float] = {}

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.summary
        yield self.table

    def rows_wanted(self) -> int:
        """Height for every query: border, status and summary lines, table header, a row each."""
        return 5 + len(self.queries)

    def render_state(self, state: ConsoleState, now: float) -> None:
        results, errors = {}, {}
        for key in self.sources:
            latest, shown = state.snapshots.get(key), state.last_good.get(key)
            if isinstance(latest, PrometheusSnapshot):
                errors[key] = latest.error
                if latest.taken_at != self._seen_at.get(key):
                    self._seen_at[key] = latest.taken_at
                    values = {q.id: (None if q.error else q.value) for q in latest.queries}
                    for query_id, history in self._history.items():
                        if self.owners.get(query_id) == key:
                            history.append(values.get(query_id))
            if isinstance(shown, PrometheusSnapshot):
                results |= {q.id: q for q in shown.queries}
        breaches = {b.id: b for b in state.breaches}
        rows = []
        for query_id, title, unit in self.queries:
            bound = self.thresholds.get(query_id)
            result = results.get(query_id)
            breach = breaches.get(bound.id) if bound else None
            # Prometheus itself failing is one ERROR row in the breaches; here every query of
            # that server says it, next to the last good value.
            down = errors.get(self.owners.get(query_id, SourceKey.prometheus()))
            if down is not None:
                number = None if result is None else result.value
                state_cell = error_text(down.kind)
                value = Text("no data" if number is None else format_number(number, unit), style="dim")
            elif result is not None and result.error is not None:
                state_cell, value = error_text(result.error.kind), cell(result.error.reason, 40)
            else:
                state_cell = breach_text(breach) if breach else severity_text(Severity.OK)
                number = None if result is None else result.value
                value = Text("no data" if number is None else format_number(number, unit))
            levels = ""
            if bound is not None:
                levels = " / ".join(
                    level_text(bound, sev)
                    for sev, level in ((Severity.WARNING, bound.threshold.warning), (Severity.CRITICAL, bound.threshold.critical))
                    if level is not None
                )  # fmt: skip
            rows.append(
                (query_id, [state_cell, cell(title or query_id, 40), value, cell(levels, 30),
                            Text(sparkline(list(self._history[query_id])))])
            )  # fmt: skip
        self.table.sync(rows)
        summaries = [(key, state.last_good.get(key)) for key in self.sources]
        if len(summaries) == 1:
            self.summary.update(self._summary(summaries[0][1]))
        else:  # several servers: each one's summary under its name
            out = Text()
            for key, snapshot in summaries:
                out.append(f"{'  ' if out else ''}{key.name or key}: ", style="bold")
                out.append_text(self._summary(snapshot) if snapshot is not None else Text("no data yet"))
            self.summary.update(out)

    @staticmethod
    def _summary(snapshot: object) -> Text:
        if not isinstance(snapshot, PrometheusSnapshot):
            return Text("")
        failed = dict(snapshot.endpoint_errors)
        out = Text()
        if error := failed.get("alerts"):
            out.append("alerts ")
            out.append_text(error_text(error.kind))
        else:
            firing = sum(1 for a in snapshot.alerts if a.state == "firing")
            out.append(f"alerts {firing} firing, {len(snapshot.alerts) - firing} pending")
        out.append(" · targets ")
        if error := failed.get("targets"):
            out.append_text(error_text(error.kind))
        else:
            down = sum(1 for t in snapshot.targets if t.health != "up")
            out.append(f"{len(snapshot.targets) - down} up")
            if down:
                out.append(f", {down} down", style="bold red")
        if error := failed.get("rules"):
            out.append(" · rules ")
            out.append_text(error_text(error.kind))
        if snapshot.alertmanager_url:
            if snapshot.alertmanager_error is not None:
                out.append(" · alertmanager ")
                out.append_text(error_text(snapshot.alertmanager_error.kind))
            else:
                active = sum(1 for s in snapshot.silences if s.state == "active")
                out.append(f" · {active} silences")
        if snapshot.warnings:
            out.append(f" · ▲ {len(snapshot.warnings)} warnings", style="yellow")
        return out
