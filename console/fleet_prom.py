"""The fleet through Prometheus: postgres_exporter's metrics, one :class:`FleetSeries` per cluster.

For clusters the console does not connect to, a Prometheus (or anything serving its query API:
Thanos, Mimir) that scrapes prometheus-postgres-exporter says enough for a fleet row. The metric
names are those of the exporter the demo runs (Debian's 0.11.1, checked by scraping it:
tests/test_fleet_prometheus.py): ``pg_up`` (no label of its own), ``pg_stat_activity_count``
and ``pg_stat_activity_max_tx_duration`` by ``datname`` and ``state``, ``pg_locks_count`` by
``datname`` and ``mode`` (every lock, granted or awaited: the exporter has no lock-wait count),
``pg_settings_max_connections``. ``up`` and ``timestamp(up)`` of the exporter's scrape say
whether it answered and when (the scrape age is measured on Prometheus's own clock: the
query's evaluation time minus the scrape's timestamp).

Each query aggregates ``by`` the fleet label, so the answer has one series per cluster
whatever the number of databases; the queries run side by side through the server's
:class:`~console.sources.prometheus.PrometheusSource` (its headers, TLS, caps and timeout).
Pure functions here: the PromQL, and the series -> FleetSeries assembly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from console import redact
from console.config import FleetSettings
from console.model import FleetSeries
from console.sanitize import one_line as _one_line

#: Clusters kept from one answer (the worst first would need the rows: the first by name).
MAX_CLUSTERS = 2000
#: A vector sample as the parser keeps it: (labels, value, evaluation time).
Point = tuple[dict[str, str], float, float]

#: name -> PromQL with ``{L}`` (the fleet label) and ``{M}`` (the matchers) to fill in.
QUERIES = {
    "up": "max by ({L}) (up{{{M}}})",
    "scraped": "max by ({L}) (timestamp(up{{{M}}}))",
    "pg_up": "min by ({L}) (pg_up{{{M}}})",
    "connections": "sum by ({L}, state) (pg_stat_activity_count{{{M}}})",
    "max_connections": "max by ({L}) (pg_settings_max_connections{{{M}}})",
    "locks": "sum by ({L}) (pg_locks_count{{{M}}})",
    "longest_tx": "max by ({L}) (pg_stat_activity_max_tx_duration{{{M}}})",
}


def one_line(value: str, limit: int) -> str:
    """A label value made safe to show: sanitised, one line, capped, secrets masked."""
    return _one_line(redact.scrub(value), limit)


def queries(fleet: FleetSettings) -> dict[str, str]:
    """The fleet's PromQL, by name."""
    return {name: text.format(L=fleet.label, M=fleet.match) for name, text in QUERIES.items()}


def parse_vector(data: object) -> list[Point]:
    """An instant query's ``data`` (resultType vector) -> [(labels, value, evaluation time)].
    Anything else is a ValueError (the caller names it a bad response)."""
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        raise ValueError("expected an instant vector")
    out: list[Point] = []
    for item in data.get("result") or ():
        metric, pair = item.get("metric") or {}, item.get("value") or ()
        if not isinstance(metric, Mapping) or len(pair) != 2:
            continue
        try:
            at, value = float(pair[0]), float(pair[1])
        except (TypeError, ValueError):
            continue
        out.append(({str(k): str(v) for k, v in metric.items()}, value, at))
    return out


def assemble(fleet: FleetSettings, answers: Mapping[str, list[Point]]) -> tuple[FleetSeries, ...]:
    """The answers of :func:`queries` (those that came back) -> one FleetSeries per cluster,
    by name. A cluster is any label value seen in any answer; an empty value is no cluster."""
    label = fleet.label
    fields: dict[str, dict[str, object]] = {}

    def of(labels: Mapping[str, str]) -> dict[str, object] | None:
        raw = labels.get(label, "")
        if not raw or (raw not in fields and len(fields) >= MAX_CLUSTERS):
            return None
        return fields.setdefault(raw, {"states": {}})

    for labels, value, _ in answers.get("up", ()):
        if (row := of(labels)) is not None:
            row["exporter_up"] = value >= 1
    for labels, value, at in answers.get("scraped", ()):
        if (row := of(labels)) is not None and math.isfinite(value):
            row["scrape_age"] = max(at - value, 0.0)
    for labels, value, _ in answers.get("pg_up", ()):
        if (row := of(labels)) is not None:
            row["pg_up"] = value >= 1
    for labels, value, _ in answers.get("connections", ()):
        if (row := of(labels)) is not None and math.isfinite(value):
            state = one_line(labels.get("state", "") or "unknown", 40)
            row["states"][state] = row["states"].get(state, 0) + int(value)  # type: ignore[union-attr]
    for name, convert in (("max_connections", int), ("locks", int), ("longest_tx", float)):
        for labels, value, _ in answers.get(name, ()):
            if (row := of(labels)) is not None and math.isfinite(value):
                row[name] = convert(value)
    out = []
    for raw, row in fields.items():
        states = row.pop("states")
        connections = tuple(sorted((s, n) for s, n in states.items() if n))  # type: ignore[union-attr]
        name = fleet.aliases.get(raw) or one_line(raw, 80)
        out.append(
            FleetSeries(
                cluster=name,
                labels=((label, one_line(raw, 200)),),
                connections_by_state=connections,
                **row,  # type: ignore[arg-type]
            )
        )
    return tuple(sorted(out, key=lambda s: s.cluster))
