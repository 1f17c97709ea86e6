"""Thresholds -> states and severities; Prometheus alerts mapped into the same model.

States follow Prometheus and Grafana: ok -> pending (``for``) -> firing, then recovering while
``keep_firing_for`` runs, with a recovery level (hysteresis) so a value sitting on the line does
not flap. ``nodata`` and ``error`` are states of their own: we never say ok when we do not know.
A poll that fails does not reset ``for``: when values come back, the rule resumes where it was.

The engine is pure: it is fed measurements and a time, and keeps only per-threshold state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from console.config import BoundThreshold
from console.model import (
    HealthCheck,
    HealthSnapshot,
    Labels,
    Measurement,
    PostgresSnapshot,
    PromAlert,
    PrometheusSnapshot,
    Severity,
    Silence,
    Snapshot,
    SourceKey,
    SourceKind,
    label_subject,
)
from console.sanitize import one_line


class State(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RECOVERING = "recovering"
    NODATA = "nodata"
    ERROR = "error"


#: Order among breaches of equal severity: what is happening now comes first.
_STATE_RANK = {
    State.FIRING: 0,
    State.RECOVERING: 1,
    State.PENDING: 2,
    State.ERROR: 3,
    State.NODATA: 4,
    State.OK: 5,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Breach:
    """One line of the breach list: a threshold not ok, or a Prometheus alert."""

    id: str
    kind: str  # "threshold" | "alert" | "source" (a source's API failing in part)
    source: SourceKey
    title: str
    state: State
    severity: Severity  # the level reached (for pending: the level it will fire at)
    since: float  # start of this episode (pending start, or first error)
    #: False: it was so when this console first looked, so ``since`` is that first look and the
    #: episode is at least this old (a console opened mid-incident said "firing for 3s").
    since_known: bool = True
    value: float | None = None
    value_text: str = ""
    level_text: str = ""  # e.g. ">= 0.05"
    unit: str = ""
    subject: str = ""
    summary: str = ""
    runbooks: tuple[str, ...] = ()
    runbook_url: str = ""
    # What it is about, structured (``subject`` and ``summary`` are the same in words; nothing
    # reads them back): an alert's or a query's series labels, the Postgres session it points
    # at, a health target's checks that do not pass.
    labels: Labels = ()
    pid: int | None = None
    checks: tuple[HealthCheck, ...] = ()
    metric: str = ""  # a threshold's metric: "waiting", "long_running", "status", "query:<id>"...
    #: The id of the breach this one is grouped under (the same trouble seen from another side:
    #: the lock chain's "longest running query" under its "sessions waiting on a lock").
    parent: str = ""
    # An alert as Alertmanager holds it (console/estate.py): where it was read ("alertmanager"
    # or "prometheus"), the silences that cover it and the alerts that inhibit it (their ids).
    origin: str = ""
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.source, SourceKey):  # a key read back as text (a test, a journal)
            object.__setattr__(self, "source", SourceKey.of(self.source))

    def label(self, name: str) -> str:
        return next((v for k, v in self.labels if k == name), "")

    @property
    def counted_severity(self) -> Severity:
        """The severity this breach contributes to the worst-of: unknown for nodata/error."""
        if self.state in (State.NODATA, State.ERROR):
            return Severity.UNKNOWN
        return self.severity

    def age(self, now: float) -> float:
        return max(now - self.since, 0.0)


def sort_breaches(breaches: Iterable[Breach]) -> list[Breach]:
    """By severity (worst first), then state (firing before pending), then age (oldest first)."""
    return sorted(breaches, key=lambda b: (-b.counted_severity, _STATE_RANK[b.state], b.since, b.id))


def worst(breaches: Iterable[Breach]) -> Severity:
    return max((b.counted_severity for b in breaches), default=Severity.OK)


def exit_severity(breach: Breach, *, strict_pending: bool = False) -> Severity:
    """What a breach weighs in ``snapshot``'s exit code: its counted severity, but a *pending*
    Prometheus alert (its ``for`` not waited out: it may never fire) at most a warning, unless
    ``strict_pending`` (config ``snapshot.strict_pending``)."""
    severity = breach.counted_severity
    if breach.kind == "alert" and breach.state is State.PENDING and not strict_pending:
        return min(severity, Severity.WARNING)
    return severity


def exit_code(breaches: Iterable[Breach], *, strict_pending: bool = False) -> int:
    """The monitoring-plugin convention: 0 ok, 1 warning, 2 critical, 3 unknown.

    Critical and warning outrank unknown: a known critical is the more useful answer. A pending
    alert counts at most as a warning (:func:`exit_severity`)."""
    severities = {exit_severity(b, strict_pending=strict_pending) for b in breaches}
    if Severity.CRITICAL in severities:
        return 2
    if Severity.WARNING in severities:
        return 1
    if Severity.UNKNOWN in severities:
        return 3
    return 0


@dataclass(slots=True)
class _Track:
    state: State = State.OK
    severity: Severity = Severity.OK
    since: float = 0.0
    value: float | None = None
    subject: str = ""
    reason: str = ""
    details: tuple[str, ...] = ()
    pid: int | None = None
    labels: Labels = ()
    checks: tuple[HealthCheck, ...] = ()
    # The value-driven state to resume from after a nodata/error spell.
    held_state: State = State.OK
    held_since: float = 0.0
    held_severity: Severity = Severity.OK
    recovering_since: float = 0.0
    since_known: bool = False  # becomes True once the threshold is seen ok: the next start is seen


def _level_reached(bound: BoundThreshold, value: float) -> Severity:
    t = bound.threshold
    if t.critical is not None and t.breached(value, t.critical):
        return Severity.CRITICAL
    if t.warning is not None and t.breached(value, t.warning):
        return Severity.WARNING
    return Severity.OK


class ThresholdEngine:
    """Keeps one small state machine per threshold id."""

    def __init__(self, thresholds: Iterable[BoundThreshold]):
        self.thresholds = {b.id: b for b in thresholds}
        self._tracks: dict[str, _Track] = {}
        # Threshold id -> (its bound, what its breach was built from, the breach): every source's
        # publish asks for every breach, and with N clusters N-1 of them did not change.
        self._built: dict[str, tuple[BoundThreshold, tuple, Breach]] = {}

    def update(self, measurements: Iterable[Measurement], now: float) -> None:
        for m in measurements:
            bound = self.thresholds.get(m.threshold_id)
            if bound is not None:
                self._step(bound, m, now)

    def _step(self, bound: BoundThreshold, m: Measurement, now: float) -> None:
        track = self._tracks.setdefault(bound.id, _Track(since=now, held_since=now))
        track.subject, track.details = m.subject, m.details
        track.pid, track.labels, track.checks = m.pid, m.labels, m.checks
        if m.error is not None or m.value is None:
            state = State.ERROR if m.error is not None else State.NODATA
            if track.state not in (State.ERROR, State.NODATA):
                track.held_state, track.held_since, track.held_severity = (
                    track.state,
                    track.since,
                    track.severity,
                )
            if track.state != state:
                track.since = now
            track.state, track.severity, track.value = state, Severity.UNKNOWN, None
            track.reason = str(m.error) if m.error is not None else "no data"
            return
        if track.state in (State.ERROR, State.NODATA):
            track.state, track.since, track.severity = track.held_state, track.held_since, track.held_severity
        track.value, track.reason = m.value, ""
        threshold = bound.threshold
        level = _level_reached(bound, m.value)
        if track.state in (State.FIRING, State.RECOVERING):
            if not threshold.recovered(m.value):
                # Still on the bad side of the recovery line: firing, at the level now reached
                # (inside the hysteresis band the earlier level holds).
                track.state = State.FIRING
                track.severity = level if level > Severity.OK else track.severity
                return
            if threshold.keep_firing_for <= 0:
                self._reset(track, now)
                return
            if track.state == State.FIRING:
                track.state, track.recovering_since = State.RECOVERING, now
            elif now - track.recovering_since >= threshold.keep_firing_for:
                self._reset(track, now)
            return
        if level == Severity.OK:
            self._reset(track, now)
            return
        if track.state != State.PENDING:
            track.state, track.since = State.PENDING, now
        track.severity = level
        if now - track.since >= threshold.for_:
            track.state = State.FIRING

    @staticmethod
    def _reset(track: _Track, now: float) -> None:
        track.since_known = True
        track.state, track.severity, track.since = State.OK, Severity.OK, now
        track.held_state, track.held_since, track.held_severity = State.OK, now, Severity.OK

    def state_of(self, threshold_id: str) -> State | None:
        track = self._tracks.get(threshold_id)
        return track.state if track else None

    def breaches(self) -> list[Breach]:
        """One Breach per threshold not OK; the same object as last time when nothing it shows
        changed (rebuilding and formatting all of them made a round of N clusters' publishes
        cost N^2: docs/SCALE.md)."""
        out = []
        built = self._built
        for threshold_id, track in self._tracks.items():
            if track.state == State.OK:
                built.pop(threshold_id, None)
                continue
            bound = self.thresholds[threshold_id]
            key = (track.state, track.severity, track.since, track.value, track.reason, track.subject,
                   track.details, track.labels, track.pid, track.checks, track.since_known)  # fmt: skip
            cached = built.get(threshold_id)
            if cached is not None and cached[0] is bound and cached[1] == key:
                out.append(cached[2])
                continue
            breach = Breach(
                id=threshold_id,
                kind="threshold",
                source=bound.source,
                title=bound.title,
                state=track.state,
                severity=track.severity,
                since=track.since,
                since_known=track.since_known,
                value=track.value,
                value_text=track.reason or format_value(bound, track.value, track.checks),
                level_text=level_text(bound, track.severity),
                unit=bound.unit,
                subject=track.subject,
                summary="; ".join(track.details),
                runbooks=bound.runbooks,
                labels=track.labels,
                pid=track.pid,
                checks=track.checks,
                metric=bound.metric,
            )
            built[threshold_id] = (bound, key, breach)
            out.append(breach)
        return out


_STATUS_WORDS = {0.0: "PASS", 1.0: "WARN", 2.0: "FAIL"}


_MATCHER = re.compile(r"^([^=!~]+)(=~|!~|!=|=)(.*)$", re.DOTALL)


def _matches(matcher: str, labels: dict[str, str]) -> bool:
    found = _MATCHER.match(matcher)
    if found is None:
        return False
    name, op, wanted = found.groups()
    value = labels.get(name, "")
    if op in ("=", "!="):
        hit = value == wanted
    else:
        try:
            hit = re.fullmatch(wanted, value) is not None
        except re.error:
            return False
    return hit if op in ("=", "=~") else not hit


def silence_for(breach: Breach, silences: Iterable[Silence]) -> Silence | None:
    """The active Alertmanager silence covering this alert (the latest to end), if any."""
    if breach.kind != "alert" or not breach.labels:
        return None
    labels = dict(breach.labels)
    covering = [
        s
        for s in silences
        if s.state == "active" and s.matchers and all(_matches(m, labels) for m in s.matchers)
    ]
    return max(covering, key=lambda s: s.ends_at or 0.0, default=None)


def alert_value(raw: str) -> str:
    """An alert's value as Prometheus sends it ("1.0018e+00"), as a person reads it ("1.002")."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return raw
    return format_number(value) if value == value else raw  # NaN stays as sent


CHECKS_NAMED = 2  # a health breach's value names this many failing checks, then "+N"


def format_value(bound: BoundThreshold, value: float | None, checks: tuple[HealthCheck, ...] = ()) -> str:
    """The value as a person reads it; a health status names its failing checks after the word
    (``WARN: google-analytics:api``), which the row, the detail and the runbook screen show."""
    if value is None:
        return "no data"
    if bound.metric == "status":
        word = _STATUS_WORDS.get(value, f"{value:g}")
        if not checks:
            return word
        names = ", ".join(one_line(c.name, 24) for c in checks[:CHECKS_NAMED])  # a name is the body's
        more = f" +{len(checks) - CHECKS_NAMED}" if len(checks) > CHECKS_NAMED else ""
        return f"{word}: {names}{more}"
    return format_number(value, bound.unit)


def format_number(value: float, unit: str = "") -> str:
    if unit == "s":
        return format_duration(value)
    if unit == "ratio":
        return f"{value * 100:.1f}%"
    if unit == "ms":
        return f"{value:.1f} ms"
    magnitude = abs(value)
    if magnitude >= 1e6:
        text = f"{value:.3e}"
    elif magnitude >= 1e3:  # whole: ".4g" turns 10440 into "1.044e+04"
        text = f"{value:.0f}"
    else:
        text = f"{value:.4g}"
    return f"{text} {unit}".strip()


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def level_text(bound: BoundThreshold, severity: Severity) -> str:
    t = bound.threshold
    level = t.critical if severity == Severity.CRITICAL and t.critical is not None else t.first_level
    sign = ">=" if t.direction == "above" else "<="
    if bound.metric == "status":
        return f"{sign} {_STATUS_WORDS.get(level, level)}"
    return f"{sign} {format_number(level, bound.unit)}"


def alert_breaches(
    snapshot: PrometheusSnapshot, runbooks_for_alert: dict[str, tuple[str, ...]] | None = None
) -> list[Breach]:
    """Prometheus alerts (pending/firing) as breaches; Prometheus already applied ``for``."""
    runbooks_for_alert = runbooks_for_alert or {}
    return [alert_breach(alert, snapshot, runbooks_for_alert) for alert in snapshot.alerts]


def alert_id(alert: PromAlert) -> str:
    """An alert's breach id: its name and its labels' fingerprint (the same alert from two
    Prometheus servers of an HA pair, or from Alertmanager, is one id)."""
    fingerprint = hashlib.sha1(repr(alert.labels).encode(), usedforsecurity=False).hexdigest()[:10]
    return f"alert:{alert.name}:{fingerprint}"


def alert_breach(
    alert: PromAlert, snapshot: PrometheusSnapshot, runbooks_for_alert: Mapping[str, tuple[str, ...]]
) -> Breach:
    """One alert (pending/firing) as a breach; Prometheus already applied ``for``."""
    state = State.FIRING if alert.state == "firing" else State.PENDING
    summary = alert.annotation("summary") or alert.annotation("description")
    return Breach(
        id=alert_id(alert),
        kind="alert",
        source=snapshot.source,
        title=alert.name,
        state=state,
        severity=alert.severity,
        since=alert.active_at or snapshot.taken_at,
        value_text=alert_value(alert.value),
        summary=summary,
        subject=label_subject(alert.labels, leave_out=("alertname", "severity")),
        runbooks=runbooks_for_alert.get(alert.name, ()),
        runbook_url=alert.annotation("runbook_url"),
        labels=alert.labels,
        origin=alert.origin,
        silenced_by=alert.silenced_by,
        inhibited_by=alert.inhibited_by,
    )


def endpoint_breach(snapshot: PrometheusSnapshot, since: float) -> Breach | None:
    """One ERROR row for a Prometheus whose alerts, rules or targets API failed while the rest
    answered: its alerts unread are not "no alerts"."""
    if not snapshot.endpoint_errors:
        return None
    names = ", ".join(name for name, _ in snapshot.endpoint_errors)
    return Breach(
        id=f"{snapshot.source}.api",
        kind="source",
        source=snapshot.source,
        title=f"Prometheus {snapshot.name + ' ' if snapshot.name else ''}{names} API",
        state=State.ERROR,
        severity=Severity.UNKNOWN,
        since=since,
        value_text=str(snapshot.endpoint_errors[0][1]),
        summary="; ".join(f"{name}: {error}" for name, error in snapshot.endpoint_errors),
        subject=snapshot.url,
    )


def with_runbooks(breach: Breach, runbooks: tuple[str, ...]) -> Breach:
    return replace(breach, runbooks=tuple(dict.fromkeys(breach.runbooks + runbooks)))


# --- one row per trouble -------------------------------------------------------------------------


def _source_words(snapshot: Snapshot) -> tuple[str, str]:
    """(title, where) of a source, for its ERROR row."""
    key = snapshot.source
    if isinstance(snapshot, HealthSnapshot):
        return f"{key.name} health", snapshot.url
    if isinstance(snapshot, PostgresSnapshot):
        return f"Postgres {key.name}", snapshot.dsn
    if isinstance(snapshot, PrometheusSnapshot):
        return f"Prometheus {snapshot.name}".rstrip(), snapshot.url
    return str(key), ""


def source_breach(snapshot: Snapshot, since: float, absorbed: Iterable[Breach] = ()) -> Breach:
    """The one ERROR row of a source whose poll failed: its reason, and what cannot be measured
    meanwhile (the thresholds it feeds, which would otherwise each say the same in a row)."""
    assert snapshot.error is not None
    absorbed = list(absorbed)
    title, where = _source_words(snapshot)
    runbooks = tuple(dict.fromkeys(r for b in absorbed for r in b.runbooks))
    unmeasured = ", ".join(b.title for b in absorbed)
    return Breach(
        id=f"{snapshot.source.dotted}.source",
        kind="source",
        source=snapshot.source,
        title=title,
        state=State.ERROR,
        severity=Severity.UNKNOWN,
        since=min([since, *(b.since for b in absorbed)]),
        value_text=str(snapshot.error),
        subject=where,
        summary=f"cannot measure: {unmeasured}" if unmeasured else "",
        runbooks=runbooks,
    )


def one_per_failing_source(
    breaches: Iterable[Breach], failing: Mapping[str, tuple[Snapshot, float]]
) -> list[Breach]:
    """One ERROR row per failing source (``failing``: source -> its failed snapshot and since
    when it fails), in place of an ERROR row per threshold it feeds."""
    breaches = list(breaches)
    if not failing:
        return breaches
    absorbed: dict[str, list[Breach]] = {key: [] for key in failing}
    kept = []
    for breach in breaches:
        if breach.state is State.ERROR and breach.kind == "threshold" and breach.source in failing:
            absorbed[breach.source].append(breach)
        else:
            kept.append(breach)
    return kept + [source_breach(snap, since, absorbed[key]) for key, (snap, since) in failing.items()]


def group_related(
    breaches: Iterable[Breach],
    lock_pids: Mapping[str, frozenset[int]],
    memo: dict[str, tuple[Breach, str, Breach]] | None = None,
) -> list[Breach]:
    """Group the breaches that are one trouble under its root: on a cluster whose sessions wait
    on a lock (``lock_pids``: cluster source -> every pid of its blocking tree), a breach about
    one of those sessions (the blocker idle in transaction, a waiter's long-running query) is
    grouped under the "waiting" breach. Nothing else is grouped: only structured fields
    (source, metric, pid) decide, never words. ``memo`` (kept by the caller from one call to the
    next) gives back the same grouped breach for the same breach and root."""
    breaches = list(breaches)
    roots = {
        b.source: b.id
        for b in breaches
        if b.kind == "threshold"
        and b.metric == "waiting"
        and b.source.kind is SourceKind.POSTGRES
        and b.state not in (State.ERROR, State.NODATA)
        and b.source in lock_pids
    }
    if not roots:
        return breaches
    out = []
    for b in breaches:
        root = roots.get(b.source)
        if root is not None and b.id != root and b.pid is not None and b.pid in lock_pids[b.source]:
            cached = memo.get(b.id) if memo is not None else None
            if cached is not None and cached[0] is b and cached[1] == root:
                b = cached[2]
            else:
                grouped_breach = replace(b, parent=root)
                if memo is not None:
                    memo[b.id] = (b, root, grouped_breach)
                b = grouped_breach
        out.append(b)
    return out


def grouped(breaches: Iterable[Breach]) -> list[tuple[Breach, tuple[Breach, ...]]]:
    """The breaches as shown: each root in order, with the breaches grouped under it (a breach
    whose root is not in the list stands alone)."""
    breaches = list(breaches)
    ids = {b.id for b in breaches}
    children: dict[str, list[Breach]] = {}
    for b in breaches:
        if b.parent and b.parent in ids:
            children.setdefault(b.parent, []).append(b)
    return [(b, tuple(children.get(b.id, ()))) for b in breaches if not (b.parent and b.parent in ids)]
