"""Headless renderings of a ConsoleState: plain text for people, JSON for scripts."""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Mapping
from typing import Any

from console.model import (
    HealthSnapshot,
    LockNode,
    PostgresSnapshot,
    PrometheusSnapshot,
    Severity,
    Silence,
    Snapshot,
)
from console.poller import ConsoleState
from console.present import ERROR_BADGE, HEALTH_BADGE, NOTHING_WATCHED, breach_badge, severity_badge
from console.rules import Breach, exit_code, exit_severity, format_duration, grouped
from console.sanitize import one_line, query_line


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}ms"


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _worst(state: ConsoleState, strict_pending: bool) -> Severity:
    """The worst severity as the exit code weighs it (a pending alert at most a warning); unknown
    when nothing is watched."""
    if not state.intervals:
        return Severity.UNKNOWN
    return max((exit_severity(b, strict_pending=strict_pending) for b in state.breaches), default=Severity.OK)


def snapshot_exit_code(state: ConsoleState, *, strict_pending: bool = False) -> int:
    """The snapshot's exit code (console.rules.exit_code); 3, unknown, when nothing is watched."""
    return exit_code(state.breaches, strict_pending=strict_pending) if state.intervals else 3


def render_text(state: ConsoleState, now: float | None = None, *, strict_pending: bool = False) -> str:
    now = state.taken_at if now is None else now
    env = state.environment
    lines = [
        f"incident-console snapshot  environment: {env.name}{' [PRODUCTION]' if env.production else ''}"
        f"  {_utc(now)}  worst: {severity_badge(_worst(state, strict_pending))}",
        "",
        f"BREACHES ({len(state.breaches)})",
    ]
    silences = _silences_by_id(state)
    for root, children in grouped(state.breaches):
        lines += _breach_lines(root, now)
        lines += _suppressed_lines(root, silences)
        for child in children:  # the same trouble seen from another side
            lines += _breach_lines(child, now, grouped_under=True)
    if not state.breaches:
        lines.append("  none" if state.intervals else f"  none: nothing watched ({NOTHING_WATCHED})")
    snapshots = sorted(state.snapshots.values(), key=lambda s: s.source)
    health = [s for s in snapshots if isinstance(s, HealthSnapshot)]
    if health:
        lines += ["", "HEALTH"]
        width = max(len(s.target) for s in health) + 2  # names of any length stay apart
        for s in health:
            lines += _health_lines(s, max(width, 16))
    for s in snapshots:
        if isinstance(s, PrometheusSnapshot):
            lines += ["", *_prometheus_lines(s, now)]
        elif isinstance(s, PostgresSnapshot):
            lines += ["", *_postgres_lines(s)]
    return "\n".join(lines) + "\n"


def _breach_lines(b: Breach, now: float, *, grouped_under: bool = False) -> list[str]:
    value = f"{b.value_text} ({b.level_text})" if b.level_text and b.kind == "threshold" else b.value_text
    badge = f"    ↳ {breach_badge(b):<10}" if grouped_under else f"  {breach_badge(b):<10}"
    parts = [badge, f"{b.state.value:<10}", one_line(b.title, 120), one_line(value, 120)]
    if b.subject:
        parts.append(f"[{one_line(b.subject, 120)}]")
    age = b.age(now)
    if b.since_known:
        parts.append(f"for {format_duration(age)}")
    else:  # on before the first look (a `snapshot` looks once): its start is not known
        parts.append(f"for at least {format_duration(age)}" if age >= 1 else "start unknown")
    if b.runbooks:
        parts.append(f"runbooks: {', '.join(b.runbooks)}")
    lines = ["  ".join(p for p in parts if p)]
    if b.summary:
        lines.append(" " * (18 if grouped_under else 14) + one_line(b.summary, 140))
    return lines


def _silences_by_id(state: ConsoleState) -> dict[str, Silence]:
    return {
        x.id: x for s in state.snapshots.values() if isinstance(s, PrometheusSnapshot) for x in s.silences
    }


def _suppressed_lines(b: Breach, silences: Mapping[str, Silence]) -> list[str]:
    """An alert Alertmanager silences (who, until when, why) or inhibits (by which alert)."""
    lines = []
    for silence_id in b.silenced_by[:3]:
        x = silences.get(silence_id)
        if x is None:
            lines.append(f"{'':14}silenced by silence {silence_id}")
            continue
        until = f" until {_utc(x.ends_at)}" if x.ends_at else ""
        comment = f": {one_line(x.comment, 100)}" if x.comment else ""
        lines.append(f"{'':14}silenced by {one_line(x.created_by, 60) or '?'}{until}{comment}")
    if b.inhibited_by:
        lines.append(f"{'':14}inhibited by {len(b.inhibited_by)} alert(s): {', '.join(b.inhibited_by[:3])}")
    return lines


def _error_line(s: Snapshot) -> str:
    return f"  {ERROR_BADGE:<10}{s.error}"


def _health_lines(s: HealthSnapshot, width: int = 16) -> list[str]:
    target = f"{one_line(s.target, 120):<{width}}"
    if s.error is not None:
        return [f"  {ERROR_BADGE:<10}{target}{s.error}  {s.url}"]
    http = f"HTTP {s.http_status}" if s.http_status else ""
    lines = [f"  {HEALTH_BADGE[s.status]:<10}{target}{http:<9}{_ms(s.latency):>7}  {s.url}"]
    if s.output:
        lines.append(f"{'':12}{one_line(s.output, 120)}")
    for check in s.checks:
        if check.status.value != "pass":
            detail = one_line(check.detail, 100)
            lines.append(
                f"{'':12}{HEALTH_BADGE[check.status]} {check.name}" + (f": {detail}" if detail else "")
            )
    return lines


def _prometheus_lines(s: PrometheusSnapshot, now: float) -> list[str]:
    name = f" {s.name}" if s.name else ""
    lines = [f"PROMETHEUS{name}  {s.url}  {_ms(s.latency)}"]
    if s.error is not None:
        return [*lines, _error_line(s)]
    width = max([24, *(len(q.id) + 2 for q in s.queries)])
    for q in s.queries:
        if q.error is not None:
            lines.append(f"  {q.id:<{width}}{ERROR_BADGE} {q.error}")
        else:
            value = "no data" if q.value is None else f"{q.value:.6g} {q.unit}".strip()
            lines.append(f"  {q.id:<{width}}{value}")
    for warning in s.warnings:  # infos come marked "info: "
        label = "" if warning.startswith("info: ") else "warning: "
        lines.append(f"  {label}{one_line(warning, 140)}")
    failed = dict(s.endpoint_errors)
    firing = [a for a in s.alerts if a.state == "firing"]
    if error := failed.get("alerts"):
        lines.append(f"  alerts: {ERROR_BADGE} {error}")
    else:
        lines.append(f"  alerts: {len(firing)} firing, {len(s.alerts) - len(firing)} pending")
    down = [t for t in s.targets if t.health != "up"]
    if error := failed.get("targets"):
        lines.append(f"  targets: {ERROR_BADGE} {error}")
    else:
        lines.append(f"  targets: {len(s.targets) - len(down)} up, {len(down)} down")
    for t in down:
        lines.append(f"    {t.job} {t.instance}: {t.health} {one_line(t.last_error, 100)}")
    if error := failed.get("rules"):
        lines.append(f"  rules: {ERROR_BADGE} {error}")
    else:
        lines += rule_lines(s)
    if s.alertmanager_url:
        if s.alertmanager_error is not None:
            lines.append(f"  alertmanager {s.alertmanager_url}: {ERROR_BADGE} {s.alertmanager_error}")
        else:
            active = [x for x in s.silences if x.state == "active"]
            held = s.alertmanager_alerts or ()
            silenced = sum(1 for a in held if a.silenced_by)
            inhibited = sum(1 for a in held if a.inhibited_by)
            lines.append(
                f"  alertmanager {s.alertmanager_url}: {len(held)} alerts ({silenced} silenced, "
                f"{inhibited} inhibited), {len(active)} active silences"
            )
            for x in active:
                until = f"until {_utc(x.ends_at)}" if x.ends_at else ""
                lines.append(f"    {x.id[:8]} {' '.join(x.matchers)} {until} by {x.created_by}")
    return lines


RULE_BADGE = {"firing": "✖ firing", "pending": "◌ pending", "inactive": "· inactive"}


def rule_lines(s: PrometheusSnapshot) -> list[str]:
    """Every rule group and rule: state, health, last error, evaluation time, ``for``, severity."""
    rules = [r for g in s.rule_groups for r in g.rules]
    failing = sum(1 for r in rules if r.health == "err")
    states = {state: sum(1 for r in rules if r.state == state) for state in ("firing", "pending")}
    capped = f" ({s.rules_kept} of {s.rules_total} shown)" if s.rules_total > s.rules_kept else ""
    lines = [
        f"  rules: {s.rules_total or len(rules)} in {len(s.rule_groups)} groups{capped}; {failing} failing, "
        f"{states['firing']} firing, {states['pending']} pending"
    ]
    width = min(max((len(r.name) for r in rules), default=0), 48) + 1  # names line up
    for g in s.rule_groups:
        every = f" every {format_duration(g.interval)}" if g.interval else ""
        took = f", last took {format_duration(g.evaluation_time)}" if g.evaluation_time is not None else ""
        slow = f"  {severity_badge(Severity.WARNING)} slower than its interval" if g.slow else ""
        more = f" ({len(g.rules)} of {g.rules_total} rules shown)" if g.rules_total > len(g.rules) else ""
        lines.append(f"    group {one_line(g.name, 80)} ({one_line(g.file, 80)}){every}{took}{more}{slow}")
        for r in g.rules:
            state = RULE_BADGE.get(r.state, r.state) if r.type == "alerting" else "· recording"
            health = ERROR_BADGE if r.health == "err" else r.health or "unknown"
            parts = [f"      {state:<11}", f"{health:<8}", f"{one_line(r.name, 60):<{width}}"]
            if r.duration is not None and r.type == "alerting":
                parts.append(f"{'for ' + (format_duration(r.duration) if r.duration else '0s'):<9}")
            if r.severity:
                parts.append(f"{'severity ' + one_line(r.severity, 20):<17}")
            if r.evaluation_time is not None:
                parts.append(f"eval {format_duration(r.evaluation_time)}")
            lines.append("  ".join(parts).rstrip())
            if r.last_error:
                lines.append(f"{'':20}last error: {one_line(r.last_error, 140)}")
    return lines


def lock_tree_lines(roots: tuple[LockNode, ...], indent: str = "", limit: int | None = None) -> list[str]:
    """The blocking tree as text lines: root blocker, then its waiters, nested; only the first
    ``limit`` lines when given (the screen's cut: formatting every line of a 2000-node tree
    cost more than the rest of a refresh)."""
    lines: list[str] = []
    for root in roots:
        for depth, node in root.walk():
            if limit is not None and len(lines) >= limit:
                return lines
            prefix = indent + ("   " * (depth - 1) + "└─ " if depth else "")
            if node.lock is None:
                what = f"holds locks, {node.state}"
            else:
                on = f" on {node.lock.relation}" if node.lock.relation else f" ({node.lock.locktype})"
                wait = f" for {format_duration(node.waiting_for)}" if node.waiting_for is not None else ""
                what = f"waits {node.lock.mode}{on}{wait}"
            lines.append(f"{prefix}pid {node.pid} {node.user}  {what}  {query_line(node.query, 70)}")
    return lines


def _postgres_lines(s: PostgresSnapshot) -> list[str]:
    lines = [f"POSTGRES {s.cluster}  {s.dsn}  {s.server_version}  {_ms(s.latency)}".rstrip()]
    if s.error is not None:
        return [*lines, _error_line(s)]
    states = ", ".join(f"{state or 'other'} {count}" for state, count in s.connections_by_state)
    lines.append(f"  connections {s.connections_used}/{s.max_connections} ({states})")
    for note in s.notes:
        lines.append(f"  note: {one_line(note, 140)}")
    if s.lock_tree:
        lines.append("  blocking tree:")
        lines += lock_tree_lines(s.lock_tree, indent="    ")
    longest = [
        (s.age(x.query_start), x)
        for x in s.sessions
        if x.state == "active" and x.backend_type == "client backend"
    ]
    longest = sorted((pair for pair in longest if pair[0] is not None), key=lambda p: -p[0])[:3]
    for age, x in longest:
        lines.append(f"  active pid {x.pid} {format_duration(age)}: {query_line(x.query, 80)}")
    for st in s.statements[:5]:
        lines.append(f"  stmt {st.mean_ms:9.1f} ms x {st.calls:<7} {query_line(st.query, 70)}")
    return lines


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.IntEnum):
        return value.name.lower()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def to_json(state: ConsoleState, *, strict_pending: bool = False) -> dict[str, Any]:
    return {
        "taken_at": state.taken_at,
        "environment": _jsonable(state.environment.model_dump()),
        "worst": _worst(state, strict_pending).name.lower(),
        "exit_code": snapshot_exit_code(state, strict_pending=strict_pending),
        "breaches": _jsonable(state.breaches),
        "sources": {
            key: _jsonable(s) | {"kind": type(s).__name__} for key, s in sorted(state.snapshots.items())
        },
    }
