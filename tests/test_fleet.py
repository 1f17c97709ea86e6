"""Issue 20 point 3/4, the engine: ConsoleState -> fleet rows (console/fleet.py), the exporter's
answers -> FleetSeries (console/fleet_prom.py), and the ``fleet:`` config. No Textual here."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from console.config import Config, Environment, FleetSettings
from console.fleet import DOWN_BADGE, STALE_BADGE, WAITING_BADGE, fleet_rows
from console.fleet_prom import assemble, parse_vector, queries
from console.loader import load
from console.model import (
    ErrorKind,
    FleetSeries,
    PostgresSnapshot,
    PrometheusSnapshot,
    Session,
    Severity,
    SourceError,
    SourceKey,
)
from console.poller import ConsoleState
from console.present import ERROR_BADGE
from console.rules import Breach, State
from console.yamlfile import ConfigError

NOW = 1_000_000.0


def session(pid: int, state: str, *, xact_age: float | None = None, lock: bool = False) -> Session:
    return Session(
        pid=pid, backend_start=NOW - 1000, user="app", database="shop", application="a", client="",
        state=state, wait_event_type="Lock" if lock else "", wait_event="tuple" if lock else "",
        xact_start=None if xact_age is None else NOW - xact_age, query_start=NOW - 1, state_change=NOW - 1,
        backend_type="client backend", query="select 1",
    )  # fmt: skip


def pg(
    name: str, taken_at: float = NOW - 1, *, error: SourceError | None = None, **fields
) -> PostgresSnapshot:
    return PostgresSnapshot(
        source=SourceKey.postgres(name), cluster=name, dsn="postgresql://x@h/db", taken_at=taken_at,
        server_now=taken_at, error=error, **fields,
    )  # fmt: skip


def state_of(*snapshots, good=(), breaches=(), intervals=None) -> ConsoleState:
    latest = {s.source: s for s in snapshots}
    last_good = {s.source: s for s in good} | {s.source: s for s in snapshots if s.error is None}
    keys = intervals or {k: 1.0 for k in latest}
    return ConsoleState(
        taken_at=NOW, environment=Environment(), read_only=False,
        snapshots=MappingProxyType(latest), last_good=MappingProxyType(last_good),
        breaches=tuple(breaches), intervals=MappingProxyType(keys),
    )  # fmt: skip


def test_a_direct_cluster_row_counts_connections_active_waiting_and_the_longest_transaction() -> None:
    snap = pg(
        "orders",
        max_connections=100,
        connections_by_state=(("active", 3), ("idle", 40), ("idle in transaction", 2)),
        sessions=(
            session(1, "active", xact_age=5, lock=True),
            session(2, "active", xact_age=42),
            session(3, "active", lock=True),
            session(4, "idle in transaction", xact_age=600),
            session(5, "idle"),
        ),
    )
    (row,) = fleet_rows(state_of(snap), NOW)
    assert (row.cluster, row.via, row.badge, row.severity) == ("orders", "direct", "● OK", Severity.OK)
    assert (row.used, row.max_connections, row.connections_words()) == (45, 100, "45/100 45%")
    assert (row.active, row.waiting, row.idle_in_tx) == (3, 2, 1)
    assert row.longest_tx == pytest.approx(599)  # the idle-in-transaction one, at the server's clock
    assert row.age == pytest.approx(1) and row.source == SourceKey.postgres("orders")
    # Counted once per snapshot: the same snapshot again is not counted again.
    cache: dict = {}
    first = fleet_rows(state_of(snap), NOW, cache=cache)
    counts = cache[SourceKey.postgres("orders")]
    assert fleet_rows(state_of(snap), NOW + 1, cache=cache)[0].active == first[0].active == 3
    assert cache[SourceKey.postgres("orders")] is counts


def test_the_worst_breach_of_each_cluster_and_the_loudest_rows_first() -> None:
    def breach(cluster: str, severity: Severity, metric: str, value: str) -> Breach:
        return Breach(
            id=f"postgres.{cluster}.{metric}", kind="threshold", source=SourceKey.postgres(cluster),
            title=f"{cluster}: {metric}", state=State.FIRING, severity=severity, since=NOW - 5,
            value_text=value, metric=metric,
        )  # fmt: skip

    breaches = [
        breach("b", Severity.WARNING, "long_running", "6m00s"),
        breach("b", Severity.CRITICAL, "waiting", "6"),
        breach("c", Severity.WARNING, "connections", "0.85"),
    ]
    rows = fleet_rows(state_of(pg("a"), pg("b"), pg("c"), breaches=breaches), NOW)
    assert [r.cluster for r in rows] == ["b", "c", "a"]
    assert rows[0].badge == "✖ CRIT" and rows[0].worst == "✖ CRIT waiting 6"
    assert rows[1].worst == "▲ WARN connections 0.85" and rows[2].worst == ""


def test_a_failing_cluster_keeps_its_last_values_and_their_age_and_says_why() -> None:
    good = pg("a", NOW - 30, max_connections=10, connections_by_state=(("idle", 4),))
    failed = pg("a", NOW - 2, error=SourceError(ErrorKind.UNREACHABLE, "cannot connect: refused"))
    fresh = pg("b", NOW - 0.5)
    rows = {r.cluster: r for r in fleet_rows(state_of(failed, fresh, good=[good]), NOW)}
    a = rows["a"]
    assert a.badge == ERROR_BADGE and "refused" in a.error
    assert (a.used, a.age) == (4, pytest.approx(30))  # the last good data, as old as it is
    assert rows["b"].badge == "● OK" and rows["b"].age == pytest.approx(0.5)  # its own age
    assert [r.cluster for r in fleet_rows(state_of(failed, fresh, good=[good]), NOW)] == ["a", "b"]


def test_old_data_is_stale_and_a_cluster_never_polled_is_waiting_not_ok() -> None:
    old = pg("a", NOW - 10)  # 10 s at a 1 s interval: more than 3 intervals
    intervals = {SourceKey.postgres("a"): 1.0, SourceKey.postgres("never"): 1.0}
    rows = {r.cluster: r for r in fleet_rows(state_of(old, intervals=intervals), NOW)}
    assert rows["a"].badge == STALE_BADGE and rows["a"].severity is Severity.UNKNOWN
    assert rows["never"].badge == WAITING_BADGE and rows["never"].age is None
    assert rows["never"].connections_words() == "—"


def prom(fleet, *, taken_at=NOW - 1, fleet_at=None, error=None, endpoint_errors=()) -> PrometheusSnapshot:
    return PrometheusSnapshot(
        source=SourceKey.prometheus(), url="http://p", taken_at=taken_at, fleet=fleet, error=error,
        endpoint_errors=endpoint_errors, fleet_taken_at=fleet_at or taken_at,
    )  # fmt: skip


def test_a_cluster_through_prometheus_and_the_direct_row_winning() -> None:
    series = (
        FleetSeries(
            cluster="billing", labels=(("instance", "10.0.0.7:9187"),), exporter_up=True, pg_up=True,
            scrape_age=4.0, connections_by_state=(("active", 2), ("idle", 8), ("idle in transaction", 1)),
            max_connections=200, locks=17, longest_tx=12.5,
        ),
        FleetSeries(cluster="orders", labels=(("instance", "o:9187"),), exporter_up=True, pg_up=True, scrape_age=1),
        FleetSeries(cluster="down", labels=(("instance", "d:9187"),), exporter_up=True, pg_up=False, scrape_age=1),
        FleetSeries(cluster="gone", labels=(("instance", "g:9187"),), exporter_up=False, scrape_age=1),
        FleetSeries(cluster="old", labels=(("instance", "x:9187"),), exporter_up=True, pg_up=True, scrape_age=300),
    )  # fmt: skip
    alert = Breach(
        id="a1", kind="alert", source=SourceKey.prometheus(), title="PostgresqlTooManyConnections",
        state=State.FIRING, severity=Severity.WARNING, since=NOW - 60, labels=(("instance", "10.0.0.7:9187"),),
    )  # fmt: skip
    state = state_of(pg("orders"), prom(series), breaches=[alert])
    rows = {r.cluster: r for r in fleet_rows(state, NOW, stale_after=60)}
    billing = rows["billing"]
    assert (billing.via, billing.via_words, billing.badge) == ("prometheus", "via prometheus", "▲ WARN")
    assert billing.worst == "▲ WARN PostgresqlTooManyConnections"
    assert (billing.used, billing.max_connections, billing.active, billing.idle_in_tx) == (11, 200, 2, 1)
    assert (billing.waiting, billing.locks, billing.longest_tx) == (None, 17, 12.5)
    assert billing.age == pytest.approx(5.0)  # the scrape's age on the server + since the answer
    assert billing.source is None and "no direct connection" in billing.detail()
    assert rows["orders"].via == "direct"  # a direct DSN for the same cluster wins
    assert rows["down"].badge == DOWN_BADGE and "pg_up == 0" in rows["down"].error
    assert rows["gone"].badge == DOWN_BADGE and "up == 0" in rows["gone"].error
    assert rows["old"].badge == STALE_BADGE


def test_a_failing_fleet_query_makes_prometheus_rows_stale_with_the_reason() -> None:
    series = (
        FleetSeries(cluster="b", labels=(("instance", "b"),), exporter_up=True, pg_up=True, scrape_age=1),
    )
    # The source keeps its last answer, with when it was read (console/sources/prometheus.py).
    failing = prom(
        series,
        fleet_at=NOW - 20,
        endpoint_errors=(("fleet", SourceError(ErrorKind.TIMEOUT, "up: no answer")),),
    )
    (row,) = fleet_rows(state_of(failing), NOW)
    assert row.badge == STALE_BADGE and "no answer" in row.error and row.age == pytest.approx(21)


def test_the_filter_text_covers_name_origin_state_and_breach() -> None:
    rows = fleet_rows(state_of(pg("orders-eu"), pg("billing")), NOW)
    assert [r.cluster for r in rows if "eu" in r.haystack()] == ["orders-eu"]
    assert {r.cluster for r in rows if "direct" in r.haystack()} == {"orders-eu", "billing"}


# --- fleet_prom: the exporter's answers ------------------------------------------------------


def vector(*items: tuple[dict[str, str], float], at: float = 500.0) -> dict:
    return {"resultType": "vector", "result": [{"metric": m, "value": [at, str(v)]} for m, v in items]}


def test_the_fleet_queries_aggregate_by_the_label_with_the_matchers() -> None:
    fleet = FleetSettings(label="cluster", match='job="pg"')
    q = queries(fleet)
    assert q["pg_up"] == 'min by (cluster) (pg_up{job="pg"})'
    assert q["connections"] == 'sum by (cluster, state) (pg_stat_activity_count{job="pg"})'
    assert q["scraped"] == 'max by (cluster) (timestamp(up{job="pg"}))'
    assert set(q) == {"up", "scraped", "pg_up", "connections", "max_connections", "locks", "longest_tx"}


def test_answers_become_one_series_per_cluster_with_aliases_and_hostile_labels_cleaned() -> None:
    fleet = FleetSettings(label="cluster", aliases={"pg-a": "orders"})
    hostile = "evil\x1b]0;x\x07\u202e[bold]"
    answers = {
        "up": parse_vector(vector(({"cluster": "pg-a"}, 1), ({"cluster": hostile}, 1), ({"cluster": ""}, 1))),
        "scraped": parse_vector(vector(({"cluster": "pg-a"}, 496.5))),
        "pg_up": parse_vector(vector(({"cluster": "pg-a"}, 1), ({"cluster": hostile}, 0))),
        "connections": parse_vector(
            vector(
                ({"cluster": "pg-a", "state": "active"}, 3),
                ({"cluster": "pg-a", "state": "idle"}, 7),
                ({"cluster": "pg-a", "state": "disabled"}, 0),
            )
        ),
        "max_connections": parse_vector(vector(({"cluster": "pg-a"}, 100))),
        "longest_tx": parse_vector(vector(({"cluster": "pg-a"}, 12.25))),
    }
    a, evil = sorted(assemble(fleet, answers), key=lambda s: s.cluster != "orders")
    assert (a.cluster, a.labels, a.exporter_up, a.pg_up) == ("orders", (("cluster", "pg-a"),), True, True)
    assert a.scrape_age == pytest.approx(3.5) and a.connections_by_state == (("active", 3), ("idle", 7))
    assert (a.connections_used, a.max_connections, a.longest_tx, a.locks) == (10, 100, 12.25, None)
    assert "\x1b" not in evil.cluster and "\u202e" not in evil.cluster and evil.pg_up is False
    with pytest.raises(ValueError):
        parse_vector({"resultType": "matrix", "result": []})


# --- the fleet: section of the config ---------------------------------------------------------


def write(tmp_path: Path, doc: dict) -> Path:
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump({"runbooks_dir": "runbooks", **doc}, sort_keys=False))
    return path


def test_the_fleet_config_names_a_server_and_its_problems_are_one_line_each(tmp_path: Path) -> None:
    servers = [
        {"name": "main", "url": "http://127.0.0.1:9090"},
        {"name": "dr", "url": "http://127.0.0.1:9091"},
    ]
    ok = load(write(tmp_path, {"prometheus": servers, "fleet": {"prometheus": "dr", "label": "cluster"}}))
    assert ok.config.fleet_server is not None and ok.config.fleet_server.name == "dr" and ok.config.fleet_tab
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, {"prometheus": servers, "fleet": {"prometheus": "nope"}}))
    (line,) = caught.value.lines()
    assert line.endswith("no prometheus server named 'nope' (servers: main, dr)") and ":" in line
    for bad, says in (
        ({"label": "bad-label"}, "is not a Prometheus label name"),
        ({"match": '{job="x"}'}, "without braces"),
        ({"tab": "sometimes"}, "tab"),
        ({"colour": "red"}, "colour"),
    ):
        with pytest.raises(ConfigError) as caught:
            load(write(tmp_path, {"fleet": bad}))
        assert len(caught.value.lines()) == 1 and says in caught.value.lines()[0], caught.value.lines()


def test_the_fleet_tab_is_automatic_past_three_clusters_or_with_prometheus() -> None:
    def config(n: int, **fleet) -> Config:
        clusters = [{"name": f"c{i}", "dsn": f"postgresql://u@h/{i}"} for i in range(n)]
        return Config.model_validate({"postgres": clusters, "fleet": fleet})

    assert not config(3).fleet_tab and config(4).fleet_tab
    assert config(1, tab="always").fleet_tab and not config(9, tab="never").fleet_tab
