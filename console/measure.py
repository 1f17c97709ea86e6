"""Snapshot -> measurements: the one value each threshold watches, with what it was measured on."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from console.config import HEALTH_STATUS_VALUES, BoundThreshold
from console.model import (
    HealthSnapshot,
    HealthStatus,
    Labels,
    Measurement,
    PostgresSnapshot,
    PrometheusSnapshot,
    Session,
    Snapshot,
    label_subject,
)
from console.rules import format_duration
from console.sanitize import first_line

CLIENT_BACKEND = "client backend"


def measure(snapshot: Snapshot, thresholds: Iterable[BoundThreshold]) -> list[Measurement]:
    """One measurement per threshold bound to ``snapshot.source``.

    A failed snapshot yields an error measurement for each of its thresholds."""
    out = []
    for bound in thresholds:
        if bound.source != snapshot.source:
            continue
        if snapshot.error is not None:
            out.append(Measurement(bound.id, None, snapshot.error, at=snapshot.taken_at))
            continue
        measured = _MEASURES[type(snapshot)](snapshot, bound)
        if measured is not None:
            out.append(measured)
    return out


def _health(snapshot: HealthSnapshot, bound: BoundThreshold) -> Measurement:
    if bound.metric == "latency":
        return Measurement(bound.id, snapshot.latency, subject=snapshot.target, at=snapshot.taken_at)
    value = HEALTH_STATUS_VALUES.get(snapshot.status.value)
    failing = tuple(c for c in snapshot.checks if c.status is not HealthStatus.PASS)
    details = (snapshot.output,) if snapshot.output else ()
    return Measurement(
        bound.id,
        value,
        subject=snapshot.target,
        at=snapshot.taken_at,
        details=details + tuple(f"{c.name}: {c.status.value}" for c in failing[:5]),
        checks=failing,
    )


def _prometheus(snapshot: PrometheusSnapshot, bound: BoundThreshold) -> Measurement | None:
    query_id = bound.metric.removeprefix("query:")
    result = next((q for q in snapshot.queries if q.id == query_id), None)
    if result is None:
        return None
    labels: Labels = ()
    if result.samples and result.value is not None:
        worst = next((s for s in result.samples if s.value == result.value), result.samples[0])
        labels = tuple((k, v) for k, v in worst.labels if k != "__name__")
    subject = label_subject(labels)
    return Measurement(
        bound.id, result.value, result.error, subject=subject, at=snapshot.taken_at, labels=labels
    )


def _longest(
    bound: BoundThreshold,
    snapshot: PostgresSnapshot,
    sessions: Iterable[Session],
    since: Callable[[Session], float | None],
) -> Measurement:
    best: tuple[float, Session] | None = None
    for session in sessions:
        age = snapshot.age(since(session))
        if age is not None and (best is None or age > best[0]):
            best = (age, session)
    if best is None:
        return Measurement(bound.id, 0.0, at=snapshot.taken_at)
    age, session = best
    detail = f"pid {session.pid} {session.user}@{session.database} {format_duration(age)}: {first_line(session.query, 80)}"
    return Measurement(
        bound.id, age, subject=f"pid {session.pid}", at=snapshot.taken_at, details=(detail,), pid=session.pid
    )


def _postgres(snapshot: PostgresSnapshot, bound: BoundThreshold) -> Measurement | None:
    clients = [s for s in snapshot.sessions if s.backend_type == CLIENT_BACKEND]
    at = snapshot.taken_at
    match bound.metric:
        case "connections":
            if not snapshot.max_connections:
                return Measurement(bound.id, None, at=at)
            used = snapshot.connections_used
            return Measurement(
                bound.id,
                used / snapshot.max_connections,
                subject=f"{used}/{snapshot.max_connections}",
                at=at,
            )
        case "long_running":
            return _longest(
                bound, snapshot, (s for s in clients if s.state == "active"), lambda s: s.query_start
            )
        case "idle_in_transaction":
            idle = (s for s in clients if s.state.startswith("idle in transaction"))
            return _longest(bound, snapshot, idle, lambda s: s.state_change)
        case "waiting":
            waiting = [s for s in snapshot.sessions if s.waiting_on_lock]
            roots = ", ".join(f"pid {node.pid}" for node in snapshot.lock_tree[:3])
            details = (f"blocked by {roots}",) if roots else ()
            root = snapshot.lock_tree[0].pid if snapshot.lock_tree else None
            return Measurement(bound.id, float(len(waiting)), subject=roots, at=at, details=details, pid=root)
        case "mean_statement_time":
            # Not installed / not loaded is a known condition shown in the Postgres panel,
            # not a failure of the cluster: no measurement rather than a permanent NODATA.
            if snapshot.statements_status != "ok":
                return None
            if not snapshot.statements:
                return Measurement(bound.id, 0.0, at=at)
            slowest = max(snapshot.statements, key=lambda s: s.mean_ms)
            detail = f"{slowest.mean_ms:.0f} ms x {slowest.calls}: {first_line(slowest.query, 80)}"
            return Measurement(
                bound.id,
                slowest.mean_ms,
                subject=statement_subject(slowest.queryid),
                at=at,
                details=(detail,),
            )
    return None


_QUERYID_SUBJECT = re.compile(r"^queryid (-?\d+)$")


def statement_subject(queryid: int | None) -> str:
    """The subject of a slow-statement breach: which pg_stat_statements entry it is."""
    return f"queryid {queryid}"


def subject_queryid(subject: str) -> str | None:
    """The queryid a slow-statement breach's subject names (a runbook binds it), or None."""
    found = _QUERYID_SUBJECT.match(subject)
    return found.group(1) if found else None


_MEASURES: dict[type, Callable[[Snapshot, BoundThreshold], Measurement | None]] = {
    HealthSnapshot: _health,
    PrometheusSnapshot: _prometheus,
    PostgresSnapshot: _postgres,
}
