"""The fleet view's rows: one per Postgres cluster, from a ConsoleState (pure, no Textual).

A cluster the console connects to (``postgres:`` in the config) gets its row from its own
source: each cluster is a source of its own, polled by its own worker with its own hard
timeout and one connection (console/poller.py, console/sources/postgres.py), so a slow or dead
cluster delays no other, and each row keeps its own data age. A cluster seen only through a
Prometheus that scrapes postgres_exporter (``fleet: {prometheus: ...}``, console/fleet_prom.py)
gets a row "via" that server, with the scrape's age. When both exist, the direct row wins (it
has the sessions, and Enter opens its panel).

A row never shows "ok" for what it does not know: a failing source is ``! ERROR`` with its
reason and the last good values with their age; data older than ``STALE_FACTOR`` poll intervals
(or a scrape older than ``fleet.stale_after``) is ``◌ STALE``; no data yet is ``… WAITING``;
the exporter or Postgres down as Prometheus sees it is ``✖ DOWN``. Severity reads without
colour: a glyph and a word (console/present.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from console.model import FleetSeries, PostgresSnapshot, PrometheusSnapshot, Severity, SourceKey, SourceKind
from console.poller import ConsoleState
from console.present import ERROR_BADGE, breach_badge, severity_badge
from console.rules import Breach, format_duration

STALE_FACTOR = 3.0  # as panels/base.py: a source is stale past 3 poll intervals
STALE_BADGE = "◌ STALE"
WAITING_BADGE = "… WAITING"
DOWN_BADGE = "✖ DOWN"
DIRECT, VIA_PROMETHEUS = "direct", "prometheus"


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One cluster in the fleet view. Counts are None when unknown (shown as —)."""

    cluster: str
    via: str  # DIRECT | VIA_PROMETHEUS
    badge: str  # "● OK", "▲ WARN", "✖ CRIT", "! ERROR", "◌ STALE", "✖ DOWN", "… WAITING"
    severity: Severity  # how loud the row is (its order in the view, its style)
    used: int | None = None
    max_connections: int | None = None
    active: int | None = None
    waiting: int | None = None  # sessions waiting on a lock (direct only: the exporter has no count)
    idle_in_tx: int | None = None
    locks: int | None = None  # via Prometheus: pg_locks_count, every mode
    longest_tx: float | None = None  # seconds
    worst: str = ""  # the worst breach about this cluster, in words ("✖ CRIT waiting 6")
    worst_severity: Severity | None = None
    age: float | None = None  # seconds since the data shown was taken (None: no data)
    error: str = ""  # the latest poll's error, one line
    server: str = ""  # via Prometheus: the server's name
    source: SourceKey | None = None  # direct: postgres:<cluster> (the drill-down)

    @property
    def key(self) -> str:
        return self.cluster

    @property
    def rank(self) -> int:
        """Where the row goes, loudest first: critical or down, failing, warning, stale or
        unknown, info, waiting for a first poll, ok."""
        if self.severity is Severity.CRITICAL:
            return 0
        if self.badge == ERROR_BADGE:
            return 1
        if self.severity is Severity.WARNING:
            return 2
        if self.badge == WAITING_BADGE:
            return 5
        return {Severity.UNKNOWN: 3, Severity.INFO: 4}.get(self.severity, 6)

    @property
    def via_words(self) -> str:
        return "direct" if self.via == DIRECT else f"via {self.server or 'Prometheus'}"

    def connections_words(self) -> str:
        if self.used is None:
            return "—"
        if not self.max_connections:
            return str(self.used)
        return f"{self.used}/{self.max_connections} {self.used / self.max_connections:.0%}"

    def haystack(self) -> str:
        """What the ``/`` filter searches: name, origin, state, worst breach, error."""
        return " ".join((self.cluster, self.via_words, self.badge, self.worst, self.error)).lower()

    def detail(self) -> str:
        """The row in words, for the detail view (a cluster read through Prometheus only)."""
        lines = [
            f"cluster: {self.cluster} ({self.via_words})",
            f"state: {self.badge}",
            f"connections: {self.connections_words()}",
            f"active: {count_words(self.active)}",
            f"waiting on a lock: {count_words(self.waiting)}"
            + ("" if self.via == DIRECT else " (postgres_exporter exports no lock-wait count)"),
        ]
        if self.locks is not None:
            lines.append(f"locks (pg_locks_count, granted or awaited): {self.locks}")
        lines.append(f"longest transaction: {duration_words(self.longest_tx)}")
        lines.append(f"worst breach: {self.worst or 'none'}")
        age = "no data" if self.age is None else f"{format_duration(self.age)} old"
        lines.append(("scrape: " if self.via != DIRECT else "data: ") + age)
        if self.error:
            lines.append(f"error: {self.error}")
        if self.via != DIRECT:
            lines.append("no direct connection is configured for this cluster: no sessions to show")
        return "\n".join(lines)


def count_words(value: int | None) -> str:
    return "—" if value is None else str(value)


def duration_words(value: float | None) -> str:
    return "—" if value is None else format_duration(value)


#: source -> (the snapshot counted, its counts): see :func:`fleet_rows`
CountsCache = dict[str, tuple[PostgresSnapshot, dict[str, object]]]


def fleet_rows(
    state: ConsoleState, now: float, *, stale_after: float = 60.0, cache: CountsCache | None = None
) -> list[FleetRow]:
    """Every cluster's row, the loudest first, then by name. Direct clusters are those the
    state has a source for (``state.intervals``: configured, polled or not yet); clusters
    through Prometheus come from the last good snapshot of each server that reads the fleet.
    ``cache`` (kept by the caller between calls) counts each snapshot's sessions once: the view
    is computed at every cluster's poll and every second, and most clusters did not change."""
    direct = [key for key in state.intervals if SourceKey.of(key).kind is SourceKind.POSTGRES]
    rows = {SourceKey.of(key).name: direct_row(state, SourceKey.of(key), now, cache) for key in direct}
    for snapshot in state.last_good.values():
        if not isinstance(snapshot, PrometheusSnapshot) or snapshot.fleet is None:
            continue
        fetched = max(now - (snapshot.fleet_taken_at or snapshot.taken_at), 0.0)
        latest = state.snapshots.get(snapshot.source)
        error = _fleet_error(latest)
        alerts = [b for b in state.breaches if b.source == snapshot.source and b.kind == "alert"]
        for series in snapshot.fleet:
            if series.cluster not in rows:
                rows[series.cluster] = prometheus_row(
                    series, snapshot.label, fetched, alerts, stale_after=stale_after, error=error
                )
    return sorted(rows.values(), key=lambda row: (row.rank, row.cluster))


def _fleet_error(latest: object) -> str:
    if not isinstance(latest, PrometheusSnapshot):
        return ""
    if latest.error is not None:
        return str(latest.error)
    return next((str(error) for name, error in latest.endpoint_errors if name == "fleet"), "")


def worst_breach(breaches: Iterable[Breach]) -> Breach | None:
    """The loudest breach (errors and no-data count as UNKNOWN-loud, as their badges say)."""
    return max(breaches, key=lambda b: b.severity, default=None)


def breach_words(breach: Breach) -> str:
    """``✖ CRIT waiting 6``: the badge, what (a threshold's metric, an alert's name), the value."""
    what = breach.metric if breach.kind == "threshold" and breach.metric else breach.title
    value = breach.value_text if breach.kind == "threshold" else ""
    return " ".join(part for part in (breach_badge(breach), what, value) if part)


def direct_row(state: ConsoleState, key: SourceKey, now: float, cache: CountsCache | None = None) -> FleetRow:
    latest = state.snapshots.get(key)
    good = state.last_good.get(key)
    good = good if isinstance(good, PostgresSnapshot) else None
    mine = [b for b in state.breaches if b.source == key and b.kind != "source"]
    worst = worst_breach(mine)
    fields: dict[str, object] = {"cluster": key.name, "via": DIRECT, "source": key}
    if worst is not None:
        fields |= {"worst": breach_words(worst), "worst_severity": worst.severity}
    if good is not None:
        cached = cache.get(key) if cache is not None else None
        if cached is None or cached[0] is not good:
            cached = (good, _counts(good))
            if cache is not None:
                cache[key] = cached
        fields |= cached[1] | {"age": max(now - good.taken_at, 0.0)}
    if latest is None:
        return FleetRow(badge=WAITING_BADGE, severity=Severity.UNKNOWN, **fields)  # type: ignore[arg-type]
    if latest.error is not None:
        # The last good values stay, with their age; the row says it is failing and why.
        return FleetRow(
            badge=ERROR_BADGE,
            severity=max(Severity.UNKNOWN, worst.severity if worst else Severity.OK),
            error=str(latest.error),
            **fields,  # type: ignore[arg-type]
        )
    if good is not None and state.is_stale(key, now, STALE_FACTOR):
        return FleetRow(badge=STALE_BADGE, severity=Severity.UNKNOWN, **fields)  # type: ignore[arg-type]
    severity = worst.severity if worst else Severity.OK
    badge = breach_badge(worst) if worst else severity_badge(Severity.OK)
    return FleetRow(badge=badge, severity=severity, **fields)  # type: ignore[arg-type]


def _counts(snap: PostgresSnapshot) -> dict[str, object]:
    active = waiting = idle_tx = 0
    longest: float | None = None
    for session in snap.sessions:
        if session.state == "active":
            active += 1
        elif session.state.startswith("idle in transaction"):
            idle_tx += 1
        if session.waiting_on_lock:
            waiting += 1
        if (age := snap.age(session.xact_start)) is not None and (longest is None or age > longest):
            longest = age
    return {
        "used": snap.connections_used,
        "max_connections": snap.max_connections or None,
        "active": active,
        "waiting": waiting,
        "idle_in_tx": idle_tx,
        "longest_tx": longest,
    }


def prometheus_row(
    series: FleetSeries,
    server: str,
    fetched: float,
    alerts: Sequence[Breach],
    *,
    stale_after: float,
    error: str = "",
) -> FleetRow:
    """A cluster's row from postgres_exporter's metrics. ``fetched``: seconds since the server
    answered; the row's age is that plus the scrape's age on the server."""
    about = [b for b in alerts if all(b.label(name) == value for name, value in series.labels)]
    worst = worst_breach(about)
    states = dict(series.connections_by_state)
    age = None if series.scrape_age is None else series.scrape_age + fetched
    fields: dict[str, object] = {
        "cluster": series.cluster,
        "via": VIA_PROMETHEUS,
        "server": server,
        "used": series.connections_used,
        "max_connections": series.max_connections,
        "active": states.get("active", 0) if series.connections_by_state else None,
        "idle_in_tx": (
            sum(n for state, n in states.items() if state.startswith("idle in transaction"))
            if series.connections_by_state
            else None
        ),
        "locks": series.locks,
        "longest_tx": series.longest_tx,
        "age": age,
        "error": error,
    }
    if worst is not None:
        fields |= {"worst": breach_words(worst), "worst_severity": worst.severity}
    if series.exporter_up is False:
        fields["error"] = error or "the exporter's scrape failed (up == 0)"
        return FleetRow(badge=DOWN_BADGE, severity=Severity.CRITICAL, **fields)  # type: ignore[arg-type]
    if series.pg_up is False:
        fields["error"] = error or "the exporter cannot reach Postgres (pg_up == 0)"
        return FleetRow(badge=DOWN_BADGE, severity=Severity.CRITICAL, **fields)  # type: ignore[arg-type]
    if error or age is None or age > stale_after:
        return FleetRow(badge=STALE_BADGE, severity=Severity.UNKNOWN, **fields)  # type: ignore[arg-type]
    severity = worst.severity if worst else Severity.OK
    badge = breach_badge(worst) if worst else severity_badge(Severity.OK)
    return FleetRow(badge=badge, severity=severity, **fields)  # type: ignore[arg-type]
