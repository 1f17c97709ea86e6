"""``P``: the Prometheus estate's rules, server by server: every rule group and rule with its
state (inactive, pending, firing), health, last error, last evaluation time, ``for`` and
severity label; each server's own health and its scrape targets that are down. ``/`` filters
(on any word of a row: a name, a state, ``err``, a severity, an error text, a server); Enter
shows a rule whole (its query, labels, error).

Live: it re-reads the console's state every second (the state is immutable; nothing here talks
to a backend). Every text comes sanitised from the source and is drawn as Text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePath

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from console.model import PrometheusSnapshot, PromRule, RuleGroup
from console.poller import ConsoleState
from console.rules import format_duration
from panels.footer import Footer
from panels.messages import ShowText
from panels.tables import Fit, KeyedTable
from panels.text import cell, error_text

COLUMNS = [
    ("state", "State"),
    ("health", "Health"),
    ("rule", "Rule"),
    ("for", "For"),
    ("severity", "Severity"),
    ("eval", "Eval"),
    ("error", "Last error"),
]
#: The last error takes what is left (cut with …); eval, severity and then the for column go
#: when it would get less than 20 cells. At 80x24 the for column stayed and the table ran past
#: the box: "every 1.0s" was cut to "every 1.0" and the errors were out of sight.
RULES_FIT = Fit("error", 20, drop=("eval", "severity", "for"))
STATE_STYLE = {"firing": "bold red", "pending": "yellow", "inactive": "dim"}
STATE_WORD = {"firing": "✖ firing", "pending": "◌ pending", "inactive": "· inactive"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return format_duration(seconds) if seconds else "0s"


def _rule_state(rule: PromRule) -> Text:
    if rule.type == "recording":
        return Text("· recording", style="dim")
    return cell(STATE_WORD.get(rule.state, rule.state or "?"), 12, STATE_STYLE.get(rule.state, ""))


def _rule_health(rule: PromRule) -> Text:
    if rule.health == "err":
        return Text("! ERROR", style="bold magenta")
    return cell(rule.health or "unknown", 10, "" if rule.health == "ok" else "yellow")


def _words(*parts: object) -> str:
    return " ".join(str(p) for p in parts if p).lower()


class RulesScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="rules_close"),
        Binding("slash", "filter", "Filter", id="rules_filter"),
        Binding("enter", "details", "Details", id="rules_details", show=False),
    ]
    DEFAULT_CSS = """
    RulesScreen { align: center middle; }
    #rules-box { width: 98%; height: 95%; border: thick $primary; background: $surface; }
    #rules-title { height: auto; text-style: bold; padding: 0 1; }
    #rules-filter { dock: bottom; display: none; }
    #rules-filter.-open { display: block; }
    """

    def __init__(self, state: ConsoleState, keys: Iterable[str] = ()) -> None:
        """``keys``: the Prometheus sources, in the config's order (default: every one seen)."""
        super().__init__()
        self.state = state
        self.keys = list(keys)
        self.text_filter = ""
        self._shown: tuple[object, ...] = ()
        self._rules: dict[str, tuple[PrometheusSnapshot, RuleGroup, PromRule]] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="rules-box"):
            yield Static(id="rules-title")
            yield KeyedTable(columns=COLUMNS, id="rules-table", fit=RULES_FIT)
            yield Input(placeholder="filter rules: Enter keeps it, Esc clears it", id="rules-filter")
            yield Footer(compact=True)

    def on_mount(self) -> None:
        self.refresh_rules(force=True)
        self.set_interval(1.0, self.refresh_rules)
        self.query_one(KeyedTable).focus()

    # --- what is shown ----------------------------------------------------------------------

    def snapshots(self) -> list[PrometheusSnapshot]:
        """Each server's latest snapshot (its rules as last read when the latest failed)."""
        state = getattr(self.app, "state", None) or self.state
        self.state = state
        keys = self.keys or sorted(k for k, s in state.snapshots.items() if isinstance(s, PrometheusSnapshot))
        out = []
        for key in keys:
            latest, good = state.snapshots.get(key), state.last_good.get(key)
            if isinstance(latest, PrometheusSnapshot):
                out.append(
                    latest if latest.error is None or not isinstance(good, PrometheusSnapshot) else good
                )
        return out

    def refresh_rules(self, force: bool = False) -> None:
        snapshots = self.snapshots()
        latest = tuple(self.state.snapshots.get(s.source) for s in snapshots)
        if not force and latest == self._shown:
            return
        self._shown = latest
        rows, self._rules = [], {}
        wanted = self.text_filter.lower()
        total = failing = hidden = 0
        for snap in snapshots:
            now = self.state.snapshots.get(snap.source)
            rows.append((f"s:{snap.source}", self._server_cells(snap, now)))
            for t in [t for t in snap.targets if t.health != "up"][:20]:
                rows.append(
                    (
                        f"t:{snap.source}:{t.job}:{t.instance}",
                        (
                            Text("  target", style="bold"),
                            cell(t.health or "?", 10, "bold red"),
                            cell(f"{t.job} {t.instance}", 48),
                            Text(""),
                            Text(""),
                            Text(""),
                            cell(t.last_error, 160),
                        ),
                    )
                )
            for group in snap.rule_groups:
                matching = []
                for i, rule in enumerate(group.rules):
                    total += 1
                    failing += rule.health == "err"
                    words = _words(
                        snap.label, group.name, group.file, rule.name, rule.type, rule.state, rule.health,
                        rule.severity, rule.last_error, "recording" if rule.type == "recording" else "",
                    )  # fmt: skip
                    if wanted and wanted not in words:
                        hidden += 1
                        continue
                    key = f"r:{snap.source}:{group.file}:{group.name}:{i}"
                    self._rules[key] = (snap, group, rule)
                    matching.append((key, self._rule_cells(rule)))
                if matching or not wanted:
                    rows.append((f"g:{snap.source}:{group.file}:{group.name}", self._group_cells(group)))
                    rows += matching
        self.query_one(KeyedTable).sync(rows)
        self.query_one("#rules-title", Static).update(self._title(snapshots, total, failing, hidden))

    def _title(self, snapshots: list[PrometheusSnapshot], total: int, failing: int, hidden: int) -> Text:
        servers = f"{len(snapshots)} Prometheus servers" if len(snapshots) != 1 else "Prometheus"
        out = Text(f"Rules — {servers}, {total} rules shown")
        capped = sum(max(s.rules_total - s.rules_kept, 0) for s in snapshots)
        if capped:
            out.append(f" ({capped} more not kept: the list is capped)", style="bold yellow")
        if failing:
            out.append(f" · {failing} failing", style="bold magenta")
        if self.text_filter:
            out.append(" · filter ")
            out.append_text(cell(repr(self.text_filter), 30))
            out.append(f" · {hidden} hidden")
        return out

    @staticmethod
    def _server_cells(snap: PrometheusSnapshot, latest: object) -> tuple[Text, ...]:
        error = getattr(latest, "error", None)
        if error is not None:
            health = error_text(error.kind)
            detail = cell(f"{error.reason} (rules as last read)", 160)
        else:
            health = Text("● up", style="green")
            failed = dict(snap.endpoint_errors)
            down = sum(1 for t in snap.targets if t.health != "up")
            words = [f"targets {len(snap.targets) - down} up, {down} down"]
            if "rules" in failed:
                words.append(f"rules API: {failed['rules']}")
            if snap.rules_total > snap.rules_kept:
                words.append(f"{snap.rules_kept} of {snap.rules_total} rules kept")
            if snap.alertmanager_url:
                am = (
                    f"alertmanager {snap.alertmanager_error}"
                    if snap.alertmanager_error
                    else "alertmanager ok"
                )
                words.append(am)
            detail = cell(" · ".join(words), 160)
        latency = f"{snap.latency * 1000:.0f}ms" if snap.latency is not None else ""
        return (
            Text(f"▸ {snap.label}", style="bold reverse"),
            health,
            cell(snap.url, 48, "bold"),
            Text(""),
            Text(""),
            Text(latency),
            detail,
        )

    @staticmethod
    def _group_cells(group: RuleGroup) -> tuple[Text, ...]:
        slow = group.slow
        every = f"every {_duration(group.interval)}" if group.interval else ""
        more = (
            f", {len(group.rules)} of {group.rules_total} rules kept"
            if group.rules_total > len(group.rules)
            else ""
        )
        return (
            Text("  group", style="bold"),
            Text("▲ SLOW", style="bold yellow") if slow else Text(""),
            cell(f"{group.name} ({PurePath(group.file).name})", 48, "bold"),
            cell(every, 12),
            Text(""),
            cell(_duration(group.evaluation_time), 10, "bold yellow" if slow else ""),
            cell(f"evaluation slower than its interval{more}" if slow else more.removeprefix(", "), 80),
        )

    @staticmethod
    def _rule_cells(rule: PromRule) -> tuple[Text, ...]:
        return (
            _rule_state(rule),
            _rule_health(rule),
            cell(f"  {rule.name}", 48),
            cell(_duration(rule.duration) if rule.type == "alerting" else "", 10),
            cell(rule.severity, 12),
            cell(_duration(rule.evaluation_time), 10),
            cell(rule.last_error, 160, "magenta" if rule.last_error else ""),
        )

    # --- keys -------------------------------------------------------------------------------

    def action_close(self) -> None:
        self.dismiss(None)

    def action_filter(self) -> None:
        field = self.query_one("#rules-filter", Input)
        field.value = self.text_filter
        field.add_class("-open")
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.text_filter = event.value.strip()
        self.refresh_rules(force=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._close_filter()

    def on_key(self, event) -> None:
        field = self.query_one("#rules-filter", Input)
        if event.key == "escape" and field.has_class("-open"):
            event.stop()  # escape clears the filter (Enter keeps it)
            field.value = ""
            self.text_filter = ""
            self.refresh_rules(force=True)
            self._close_filter()

    def _close_filter(self) -> None:
        self.query_one("#rules-filter", Input).remove_class("-open")
        self.query_one(KeyedTable).focus()

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_details()

    def action_details(self) -> None:
        key = self.query_one(KeyedTable).selected_key
        found = self._rules.get(key or "")
        if found is None:
            return
        snap, group, rule = found
        self.post_message(ShowText(f"{snap.label}: rule {rule.name}", rule_detail(snap, group, rule)))


def rule_detail(snap: PrometheusSnapshot, group: RuleGroup, rule: PromRule) -> str:
    """A rule whole, for the detail view (the texts are sanitised; the view shows them literally)."""
    lines = [
        f"{rule.type or 'rule'} {rule.name}",
        f"server: {snap.label} ({snap.url})",
        f"group: {group.name} ({group.file}), every {_duration(group.interval) or '?'}",
        f"state: {rule.state or '-'}   health: {rule.health or 'unknown'}   active alerts: {rule.alerts}",
    ]
    if rule.type == "alerting":
        lines.append(f"for: {_duration(rule.duration) or '0s'}   severity: {rule.severity or '(no label)'}")
    if rule.evaluation_time is not None:
        lines.append(f"last evaluation took {_duration(rule.evaluation_time)}")
    if rule.last_error:
        lines += ["", "last error:", rule.last_error]
    lines += ["", "query:", rule.query]
    if rule.labels:
        lines += ["", "labels:", *(f"  {k}={v}" for k, v in rule.labels)]
    return "\n".join(lines)
