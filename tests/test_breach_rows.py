"""What the breach list says, through the real Poller and threshold engine (issue 18): one ERROR
row per failing source with its reason, and the breaches of one lock chain grouped under it."""

from __future__ import annotations

import dataclasses

from console.model import (
    ErrorKind,
    HealthCheck,
    HealthStatus,
    PromAlert,
    PrometheusSnapshot,
    Severity,
    SourceError,
)
from console.poller import Poller
from console.report import render_text
from console.rules import State, alert_breaches
from panels.breaches import breach_cells
from tests import ui_data
from tests.ui_data import NOW


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def poller(cfg=None, clock=None) -> tuple[Poller, Clock]:
    clock = clock or Clock()
    return ui_data.poller(cfg, clock=clock), clock


def failed(snapshot, reason: str, at: float, kind=ErrorKind.UNREACHABLE):
    return dataclasses.replace(snapshot, error=SourceError(kind, reason), taken_at=at)


def errors(p: Poller) -> list:
    return [b for b in p.state.breaches if b.state is State.ERROR]


def test_an_unreachable_postgres_is_one_error_row_with_its_reason():
    p, clock = poller()
    clock.now += 3
    p.publish(failed(ui_data.postgres_snapshot(), "connection refused (port 4)", clock.now))
    (row,) = errors(p)
    assert row.id == "postgres.main.source" and row.kind == "source" and row.title == "Postgres main"
    assert row.value_text == "unreachable: connection refused (port 4)"
    assert row.subject == "postgresql://console:***@127.0.0.1:4/shop"
    assert "sessions waiting on a lock" in row.summary and "connections used" in row.summary
    assert row.since == clock.now
    clock.now += 5  # still failing: the same row, from the first failure
    p.publish(failed(ui_data.postgres_snapshot(), "connection refused (port 4)", clock.now))
    (again,) = errors(p)
    assert again.id == row.id and again.since == row.since
    clock.now += 2  # back: the thresholds speak for themselves again
    p.publish(dataclasses.replace(ui_data.postgres_snapshot(), taken_at=clock.now))
    assert errors(p) == [] and any(b.id == "postgres.main.waiting" for b in p.state.breaches)


def test_an_unreachable_health_target_is_one_row_not_health_and_latency():
    cfg = ui_data.config(
        health=[{"name": "storefront", "url": "http://127.0.0.1:1/health", "latency": {"warning": 0.5}}]
    )
    p, clock = poller(cfg)
    (storefront, _) = ui_data.health_snapshots()
    p.publish(failed(storefront, "timed out after 2s", clock.now, ErrorKind.TIMEOUT))
    (row,) = errors(p)
    assert row.id == "health.storefront.source" and row.title == "storefront health"
    assert row.value_text == "timeout: timed out after 2s"
    assert row.subject == "http://127.0.0.1:1/health"


def test_an_unreachable_prometheus_is_one_row_even_without_thresholds():
    cfg = ui_data.config()
    cfg.prometheus.queries.clear()  # alerts only: nothing would say Prometheus is gone
    p, clock = poller(cfg)
    p.publish(failed(ui_data.prometheus_snapshot(), "connection refused", clock.now))
    (row,) = errors(p)
    assert row.id == "prometheus.source" and row.title == "Prometheus"
    assert "! ERROR" in render_text(p.state) and "Prometheus  unreachable: connection refused" in render_text(
        p.state
    )


def lock_chain_config():
    thresholds = {
        "waiting": {"warning": 1, "critical": 2},
        "long_running": {"warning": 30, "critical": 50},
        "idle_in_transaction": {"warning": 30, "critical": 60},
    }
    pg = [{"name": "main", "dsn": "postgresql://console@127.0.0.1:4/shop", "thresholds": thresholds}]
    return ui_data.config(postgres=pg)


def lock_chain_snapshot(*, unrelated_long_query: bool = False):
    snap = ui_data.postgres_snapshot()
    keep = {4242, 4250, 4251, 4310, 4400, 4401} | ({4300} if unrelated_long_query else set())
    return dataclasses.replace(snap, sessions=tuple(s for s in snap.sessions if s.pid in keep))


def test_the_breaches_of_one_lock_chain_are_grouped_under_the_waiting_one():
    """The blocker idle in transaction and the waiter's long-running query are the lock chain
    seen from two other sides: grouped under "sessions waiting on a lock", not three CRITs."""
    p = Poller(lock_chain_config(), sources=[], clock=lambda: NOW)
    p.publish(lock_chain_snapshot())
    by_id = {b.id: b for b in p.state.breaches}
    waiting = by_id["postgres.main.waiting"]
    idle = by_id["postgres.main.idle_in_transaction"]
    running = by_id["postgres.main.long_running"]
    assert (waiting.parent, idle.parent, running.parent) == ("", waiting.id, waiting.id)
    assert (idle.pid, running.pid) == (4242, 4250)  # the root blocker, a waiter
    text = render_text(p.state)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "sessions waiting on a lock" in line)
    grouped = [line for line in lines[at + 1 :] if line.lstrip().startswith("↳")]
    assert len(grouped) == 2, text


def test_a_long_query_outside_the_chain_stays_a_breach_of_its_own():
    p = Poller(lock_chain_config(), sources=[], clock=lambda: NOW)
    p.publish(lock_chain_snapshot(unrelated_long_query=True))
    running = next(b for b in p.state.breaches if b.id == "postgres.main.long_running")
    assert running.pid == 4300 and running.parent == ""


def test_one_clusters_publish_rebuilds_only_its_own_breaches():
    """Every source's publish asks the engine for every breach: with N clusters polled each
    second, rebuilding and formatting all of them (and regrouping every lock chain) made a round
    cost N^2 (docs/SCALE.md). What did not change is now the same Breach object as before; what
    changed is new, with the new value, grouped under its chain as before."""
    thresholds = lock_chain_config().postgres[0].thresholds.model_dump(by_alias=True)
    clusters = [
        {"name": name, "dsn": f"postgresql://console@127.0.0.1:4/{name}", "thresholds": thresholds}
        for name in ("main", "east", "west")
    ]
    p = Poller(ui_data.config(postgres=clusters), sources=[], clock=lambda: NOW)
    snaps = {
        name: dataclasses.replace(lock_chain_snapshot(), source=f"postgres:{name}", cluster=name)
        for name in ("main", "east", "west")
    }
    for snap in snaps.values():
        p.publish(snap)
    before = {b.id: b for b in p.state.breaches}
    assert {"postgres.east.waiting", "postgres.east.idle_in_transaction", "postgres.west.waiting"} <= set(
        before
    )

    # East's blocker has been idle in transaction 20 s longer; nothing changed on main or west.
    east = snaps["east"]
    older = tuple(
        dataclasses.replace(s, state_change=s.state_change - 20) if s.pid == 4242 else s
        for s in east.sessions
    )
    p.publish(dataclasses.replace(east, sessions=older))
    after = {b.id: b for b in p.state.breaches}
    assert set(after) == set(before)
    for breach_id, breach in after.items():
        if breach_id == "postgres.east.idle_in_transaction":
            assert breach is not before[breach_id]
            assert breach.value == before[breach_id].value + 20
            assert breach.parent == "postgres.east.waiting"  # still grouped under its chain
        else:
            assert breach is before[breach_id], breach_id  # not rebuilt
    assert after["postgres.west.idle_in_transaction"].parent == "postgres.west.waiting"


def test_a_health_breach_says_which_checks_fail_in_its_value():
    """A health target's row read ``WARN (>= WARN)`` or ``FAIL (>= FAIL)``: the level twice, and
    the check that failed (``google-analytics:api: warn``) only in its detail view. The value
    names the failing checks after the word (two at most, then how many more); the row leaves
    out the level, which the severity and the word already say."""
    p, _ = poller()
    (row,) = [b for b in p.state.breaches if b.id == "health.storefront"]
    assert row.value_text == "FAIL: chatwoot"
    assert breach_cells(row, NOW)[4].plain == "FAIL: chatwoot"  # its level would say FAIL again
    many = tuple(HealthCheck(name, HealthStatus.WARN) for name in ("a:api", "b:api", "c:api", "d:api"))
    (storefront, _) = ui_data.health_snapshots()
    p.publish(
        dataclasses.replace(
            storefront, status=HealthStatus.WARN, http_status=200, checks=many, taken_at=NOW + 1
        )
    )
    (row,) = [b for b in p.state.breaches if b.id == "health.storefront"]
    assert row.value_text == "WARN: a:api, b:api +2"


def test_an_alerts_row_names_what_it_is_about_where_the_subject_column_is_left_out():
    """At 80 columns the Subject column is left out: IntegrationDown for HubSpot and for Shopee
    were two rows alike ("IntegrationDown  0"). The title cell names the alert's own label; a
    scrape target's job and instance are no alert's own (every series has them)."""

    def alert(**labels: str) -> PromAlert:
        pairs = (("alertname", "IntegrationDown"), *sorted(labels.items()), ("severity", "critical"))
        return PromAlert(name="IntegrationDown", state="firing", severity=Severity.CRITICAL, labels=pairs,
                         annotations=(), active_at=NOW - 60, value="0")  # fmt: skip

    alerts = (
        alert(instance="127.0.0.1:9101", job="sync-worker", provider="hubspot"),
        alert(instance="127.0.0.1:9101", job="sync-worker", provider="shopee"),
        alert(instance="127.0.0.1:9101", job="storefront"),
    )
    snapshot = PrometheusSnapshot(source="prometheus", taken_at=NOW, url="http://p", alerts=alerts)
    titles = [breach_cells(b, NOW)[3].plain for b in alert_breaches(snapshot, {})]
    assert sorted(titles) == ["IntegrationDown", "IntegrationDown · hubspot", "IntegrationDown · shopee"]


def test_an_alerts_row_names_a_url_label_by_its_host_first():
    """A blackbox alert's own label is the probed URL: at 80 columns its row read
    "BlackboxProbeHttpFailure · http:/…", the scheme in the few cells left (the demo's console).
    The scheme goes; the whole URL is in the details."""
    probe = PromAlert(
        name="BlackboxProbeHttpFailure", state="firing", severity=Severity.CRITICAL,
        labels=(("alertname", "BlackboxProbeHttpFailure"), ("instance", "https://api.hubspot.com/health"),
                ("job", "blackbox"), ("target", "https://api.hubspot.com/health")),
        annotations=(), active_at=NOW - 60, value="503",
    )  # fmt: skip
    snapshot = PrometheusSnapshot(source="prometheus", taken_at=NOW, url="http://p", alerts=(probe,))
    [breach] = alert_breaches(snapshot, {})
    assert breach_cells(breach, NOW)[3].plain == "BlackboxProbeHttpFailure · api.hubspot.com/health"
