"""The ranking table: for every alert of config/prometheus/rules.yml, every threshold of
config/console.yaml (as the console derives them) and every breach a demo scenario shows, the
runbook an operator needs ranks first. The table is the specification of the pack's triggers
and of console/runbooks/rank.py.

Breaches are built the way the console builds them: alerts through ``rules.alert_breaches`` from
a Prometheus snapshot, with the labels the rule's expression leaves (plus ``alertname`` and the
rule's ``severity``) — and, where a label is optional (``provider`` when the series lacks it), a
second row without it, since a breach's labels may be missing; thresholds through
``measure.measure`` (health and Prometheus snapshots) or the Measurement console/measure.py makes
for Postgres (the session's pid for ages and lock waits), then ``rules.ThresholdEngine`` past the
threshold's ``for``; a source that cannot be reached through ``rules.source_breach``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.config import BoundThreshold, Config
from console.demo import configwriter
from console.demo.scenarios import SCENARIOS
from console.loader import load_config
from console.measure import measure
from console.model import (
    HealthCheck,
    HealthSnapshot,
    HealthStatus,
    Measurement,
    PostgresSnapshot,
    PromAlert,
    PrometheusSnapshot,
    QueryResult,
    Sample,
    Severity,
    SourceError,
)
from console.rules import Breach, State, ThresholdEngine, alert_breaches, source_breach
from console.runbooks import Pack, pack_for
from console.runbooks.rank import breach_provider, relevant

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "console.yaml"
RULES = ROOT / "config" / "prometheus" / "rules.yml"
NOW = 1_800_000_000.0
INSTANCE = "127.0.0.1:9101"


def _rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule}


# --- alerts -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRow:
    alert: str
    labels: dict[str, str]  # what the rule's expression leaves (alertname and severity are added)
    expected: str

    def __str__(self) -> str:
        return f"{self.alert}{{{','.join(f'{k}={v}' for k, v in sorted(self.labels.items()) if k != 'instance')}}}"


def _series(**labels: str) -> dict[str, str]:
    """A per-target series' labels: the job and instance Prometheus attaches."""
    return {"instance": INSTANCE, **labels}


SW, SF = "sync-worker", "storefront"

ALERT_ROWS = [
    # 5xx share by job (sum by (job))
    AlertRow("HighErrorRate", {"job": SF}, "error-spike"),
    AlertRow("HighErrorRate", {"job": SW}, "error-spike"),
    AlertRow("DatabaseConnectionFailure", _series(job=SF), "supabase-connection-failure"),
    AlertRow("DatabaseConnectionFailure", _series(job=SW), "supabase-connection-failure"),
    # increase(sync_jobs_failed_total[10m]): the series' provider label, when it has one
    AlertRow("SyncJobFailure", _series(job=SW, provider="hubspot"), "partial-sync-failures"),
    AlertRow("SyncJobFailure", _series(job=SW, provider="salesforce"), "partial-sync-failures"),
    AlertRow("SyncJobFailure", _series(job=SW, provider="shopee"), "product-sync-failure"),
    AlertRow("SyncJobFailure", _series(job=SW, provider="tiktok-shop"), "product-sync-failure"),
    AlertRow("SyncJobFailure", _series(job=SW), "partial-sync-failures"),
    # p95 by job
    AlertRow("SlowResponses", {"job": SF}, "slow-responses"),
    # sum by (job, provider)
    AlertRow("UpstreamRateLimited", {"job": SW, "provider": "richpanel"}, "downstream-rate-limit"),
    AlertRow("UpstreamRateLimited", {"job": SW, "provider": "hubspot"}, "rate-limit-exhaustion"),
    AlertRow("UpstreamRateLimited", {"job": SW, "provider": "shopee"}, "shopee-rate-limiting"),
    AlertRow("UpstreamRateLimited", {"job": SF, "provider": "shopify"}, "shopify-rate-limit"),
    AlertRow("UpstreamRateLimited", {"job": SW, "provider": "openai"}, "llm-provider-outage"),
    AlertRow("UpstreamRateLimited", {"job": SF, "provider": "google-analytics"}, "ga-quota-exhausted"),
    AlertRow("UpstreamRateLimited", {"job": SW}, "downstream-rate-limit"),
    AlertRow("UpstreamAuthFailing", {"job": SW, "provider": "hubspot"}, "oauth-expired"),
    AlertRow("UpstreamAuthFailing", {"job": SW, "provider": "shopee"}, "auth-errors"),
    AlertRow("UpstreamAuthFailing", {"job": SF, "provider": "shopify"}, "shopify-api-errors"),
    AlertRow("UpstreamAuthFailing", {"job": SF, "provider": "chatwoot"}, "validate-api-credentials"),
    AlertRow("UpstreamAuthFailing", {"job": SW, "provider": "openai"}, "oauth-expired"),
    AlertRow("UpstreamAuthFailing", {"job": SW}, "secret-rotation-failure"),
    # sum by (job, provider) of the 5xx rate: a provider's server errors that persist
    AlertRow("UpstreamServerErrors", {"job": SF, "provider": "shopify"}, "shopify-server-errors"),
    AlertRow("UpstreamServerErrors", {"job": SW, "provider": "openai"}, "llm-provider-outage"),
    AlertRow("UpstreamServerErrors", {"job": SF, "provider": "chatwoot"}, "chatwoot-unavailable"),
    AlertRow("UpstreamServerErrors", {"job": SW, "provider": "hubspot"}, "provider-down"),
    AlertRow("UpstreamServerErrors", {"job": SW, "provider": "shopee"}, "platform-api-errors"),
    AlertRow("UpstreamServerErrors", {"job": SW, "provider": "tiktok-shop"}, "platform-api-errors"),
    AlertRow("UpstreamServerErrors", {"job": SW, "provider": "richpanel"}, "provider-down"),
    AlertRow("UpstreamServerErrors", {"job": SW}, "provider-down"),
    # integration_up == 0
    AlertRow("IntegrationDown", _series(job=SW, provider="hubspot"), "provider-down"),
    AlertRow("IntegrationDown", _series(job=SF, provider="chatwoot"), "chatwoot-unavailable"),
    AlertRow("IntegrationDown", _series(job=SW, provider="openai"), "llm-provider-outage"),
    AlertRow("IntegrationDown", _series(job=SW, provider="shopee"), "platform-api-errors"),
    AlertRow("IntegrationDown", _series(job=SF, provider="shopify"), "shopify-server-errors"),
    AlertRow("IntegrationDown", _series(job=SW, provider="richpanel"), "provider-down"),
    AlertRow("IntegrationDown", _series(job=SW), "integration-health-check"),
    AlertRow("SyncSuccessRatioLow", _series(job=SW, provider="hubspot"), "partial-sync-failures"),
    AlertRow("SyncSuccessRatioLow", _series(job=SW, provider="shopee"), "product-sync-failure"),
    AlertRow("SyncSuccessRatioLow", _series(job=SW), "partial-sync-failures"),
    AlertRow("WebhookSignatureFailures", _series(job=SF), "webhook-signature-failure"),
    AlertRow("WebhookSignatureFailures", _series(job=SW), "webhook-signature-failure"),
    AlertRow("WebhookIngressDown", {"job": SW}, "webhook-ingress-failure"),
    AlertRow("WebhookIngressErrors", {"job": SW}, "webhook-ingress-failure"),
    AlertRow("WebhookEventsStopped", {"job": SW}, "webhook-ingress-failure"),
    AlertRow("ClassificationTimeouts", {"job": SW}, "llm-provider-outage"),
    AlertRow("PartialSideEffects", {"job": SW}, "partial-side-effects"),
    # the SEV0: no provider label (rate of a counter that has none)
    AlertRow("DuplicateEventsDetected", _series(job=SW), "duplicate-events"),
    AlertRow("ApiQuotaHigh", _series(job=SF, provider="google-analytics"), "ga-quota-exhausted"),
    AlertRow("ApiQuotaHigh", _series(job=SF), "ga-quota-exhausted"),
    AlertRow("QueueBacklog", _series(job=SW, queue="richpanel-actions"), "downstream-rate-limit"),
    # up == 0: the runbook finds which job is down before it restarts that one
    AlertRow("TargetDown", _series(job=SF), "service-recovery"),
    AlertRow("TargetDown", _series(job=SW), "service-recovery"),
]


def alert_breach(name: str, labels: dict[str, str]) -> Breach:
    rule = _rules()[name]
    severity = rule["labels"]["severity"]
    alert_labels = tuple(sorted({**labels, "alertname": name, "severity": severity}.items()))
    snapshot = PrometheusSnapshot(
        source="prometheus",
        taken_at=NOW,
        url="http://127.0.0.1:9090",
        alerts=(
            PromAlert(
                name=name,
                state="firing",
                severity=Severity.from_label(severity),
                labels=alert_labels,
                annotations=(("summary", "as the rule says"),),
                active_at=NOW - 300,
            ),
        ),
    )
    (breach,) = alert_breaches(snapshot)
    return breach


# --- thresholds -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdRow:
    threshold: str  # the id, as the config derives it
    expected: str
    labels: dict[str, str] = field(default_factory=dict)  # a query's worst series
    checks: dict[str, str] = field(default_factory=dict)  # a health target's failing checks
    latency: bool = False
    error: bool = False  # the source cannot be reached

    def __str__(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in sorted({**self.labels, **self.checks}.items()))
        return self.threshold + (f"{{{extra}}}" if extra else "") + (" ERROR" if self.error else "")


THRESHOLD_ROWS = [
    # health targets: the failing check names the integration (or a part of the service)
    ThresholdRow("health.storefront", "health-check-failure", checks={"database:connection": "fail"}),
    ThresholdRow("health.storefront", "chatwoot-unavailable", checks={"chatwoot:api": "fail"}),
    ThresholdRow("health.storefront", "ga-quota-exhausted", checks={"google-analytics:api": "warn"}),
    ThresholdRow("health.storefront", "provider-down", checks={"shopify:api": "fail"}),
    ThresholdRow("health.storefront", "health-check-failure"),
    ThresholdRow("health.sync-worker", "provider-down", checks={"hubspot": "fail"}),
    ThresholdRow("health.sync-worker", "health-check-failure", checks={"db": "fail"}),
    ThresholdRow("health.storefront.latency", "slow-responses", latency=True),
    # Prometheus queries: the worst series' labels
    ThresholdRow("prometheus.error_rate", "error-spike", labels={"job": SF}),
    ThresholdRow("prometheus.p95_latency", "slow-responses", labels={"job": SF}),
    ThresholdRow("prometheus.sync_success_ratio", "partial-sync-failures", labels={"job": SW, "provider": "hubspot"}),
    ThresholdRow("prometheus.sync_success_ratio", "product-sync-failure", labels={"job": SW, "provider": "shopee"}),
    ThresholdRow("prometheus.sync_success_ratio", "partial-sync-failures", labels={"job": SW}),
    ThresholdRow("prometheus.upstream_429_rate", "downstream-rate-limit", labels={"job": SW, "provider": "richpanel"}),
    ThresholdRow("prometheus.upstream_429_rate", "rate-limit-exhaustion", labels={"job": SW, "provider": "hubspot"}),
    ThresholdRow("prometheus.upstream_429_rate", "shopee-rate-limiting", labels={"job": SW, "provider": "shopee"}),
    ThresholdRow("prometheus.upstream_429_rate", "shopify-rate-limit", labels={"job": SF, "provider": "shopify"}),
    ThresholdRow("prometheus.upstream_429_rate", "ga-quota-exhausted", labels={"job": SF, "provider": "google-analytics"}),
    ThresholdRow("prometheus.upstream_429_rate", "openai-rate-limit", labels={"job": SW, "provider": "openai"}),
    ThresholdRow("prometheus.queue_depth", "downstream-rate-limit", labels={"job": SW, "queue": "richpanel-actions"}),
    # Postgres (the session a breach points at, where it points at one)
    ThresholdRow("postgres.main.connections", "connection-exhaustion"),
    ThresholdRow("postgres.main.long_running", "long-running-query"),
    ThresholdRow("postgres.main.idle_in_transaction", "idle-in-transaction"),
    ThresholdRow("postgres.main.waiting", "lock-contention"),
    ThresholdRow("postgres.main.mean_statement_time", "slow-database-queries"),
    # the cluster cannot be reached: one ERROR row for the source
    ThresholdRow("postgres.main.connections", "supabase-connection-failure", error=True),
]  # fmt: skip

_PG_PID = {"long_running": 4242, "idle_in_transaction": 4243, "waiting": 4244}


def _past(bound: BoundThreshold) -> float:
    """A value past the threshold's highest level."""
    t = bound.threshold
    levels = [x for x in (t.warning, t.critical) if x is not None]
    return max(levels) * 2 + 1 if t.direction == "above" else min(levels) / 2


def _measured(bound: BoundThreshold, row: ThresholdRow, at: float) -> Measurement:
    kind = bound.source.kind.value
    if kind == "health":
        checks = tuple(HealthCheck(name, HealthStatus(status)) for name, status in row.checks.items())
        status = HealthStatus.FAIL if not checks or "fail" in row.checks.values() else HealthStatus.WARN
        snapshot = HealthSnapshot(
            source=bound.source,
            taken_at=at,
            latency=_past(bound) if row.latency else 0.01,
            target=bound.source.name,
            url=f"http://127.0.0.1:1/{bound.source.name}",
            format="health+json",
            status=status,
            http_status=503 if status is HealthStatus.FAIL else 200,
            checks=checks,
        )
        (measurement,) = [m for m in measure(snapshot, [bound])]
        return measurement
    if kind == "prometheus":
        query_id = bound.metric.removeprefix("query:")
        value = _past(bound)
        sample = Sample(tuple(sorted(row.labels.items())), value)
        snapshot = PrometheusSnapshot(
            source=bound.source,
            taken_at=at,
            url="http://127.0.0.1:9090",
            queries=(QueryResult(id=query_id, query="q", value=value, samples=(sample,)),),
        )
        (measurement,) = measure(snapshot, [bound])
        return measurement
    # Postgres: what console/measure.py sets (a pid for session ages and lock waits)
    pid = _PG_PID.get(bound.metric)
    return Measurement(bound.id, _past(bound), subject=f"pid {pid}" if pid else "", at=at, pid=pid)


def threshold_breach(config: Config, row: ThresholdRow) -> Breach:
    bound = config.threshold(row.threshold)
    assert bound is not None, f"no threshold {row.threshold} in {CONFIG}"
    if row.error:
        snapshot = PostgresSnapshot(
            source=bound.source,
            taken_at=NOW,
            error=SourceError("connection", "connection refused"),
            cluster=bound.source.name,
            dsn="postgresql://console@127.0.0.1:5432/shop",
        )
        engine = ThresholdEngine([b for b in config.thresholds() if b.source == bound.source])
        engine.update(measure(snapshot, engine.thresholds.values()), NOW)
        return source_breach(snapshot, NOW, engine.breaches())
    engine = ThresholdEngine([bound])
    start = NOW - bound.threshold.for_ - 1
    for at in (start, NOW):
        engine.update([_measured(bound, row, at)], at)
    (breach,) = engine.breaches()
    return breach


# --- the demo's scenarios ---------------------------------------------------------------------------

# The breaches each scenario shows, as the demo's services, Prometheus and health checks make them:
# the labels of its series and the checks of its health answers. The runbook: the one the scenario's
# fix is a step of (tests/test_runbooks_e2e.py walks it).
DEMO = {
    "lock-contention": ("lock-contention", {}),
    "long-running-query": ("long-running-query", {}),
    "idle-in-transaction": ("idle-in-transaction", {}),
    "connection-exhaustion": ("connection-exhaustion", {}),
    "slow-queries": ("slow-database-queries", {}),
    "error-spike": ("error-spike", {"labels": {"job": SF}}),
    "upstream-rate-limit": ("downstream-rate-limit", {"labels": {"job": SW, "provider": "richpanel"}}),
    "provider-down": ("provider-down", {"labels": _series(job=SW, provider="hubspot"), "checks": {"hubspot": "fail"}}),
    "oauth-expired": ("oauth-expired", {"labels": {"job": SW, "provider": "hubspot"}}),
    "partial-sync-failures": ("partial-sync-failures", {"labels": _series(job=SW, provider="hubspot")}),
    "duplicate-events": ("duplicate-events", {"labels": _series(job=SW)}),
    "llm-timeouts": ("llm-provider-outage", {"labels": _series(job=SW, provider="openai")}),
    "webhook-signature-failures": ("webhook-signature-failure", {"labels": _series(job=SF)}),
    "quota-exhausted": ("ga-quota-exhausted", {"labels": _series(job=SF, provider="google-analytics"), "checks": {"google-analytics:api": "warn"}}),
}  # fmt: skip


def _kept(name: str) -> tuple[str, ...] | None:
    """The labels an aggregating rule's ``sum by (...)`` keeps; None for a rule that keeps the
    series' labels."""
    by = re.search(r"\bby \(([^)]*)\)", _rules()[name]["expr"])
    return tuple(label.strip() for label in by.group(1).split(",")) if by else None


def _demo_config(tmp: Path) -> Config:
    ends = configwriter.Endpoints("http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3",
                                  "http://127.0.0.1:4", "http://127.0.0.1:5", 4, 5)  # fmt: skip
    data = configwriter.console_config(tmp, ends, "t0ken", "postgresql://u@127.0.0.1:6/shop", tmp / "flyctl")
    path = configwriter.write_console_config(tmp / "console.yaml", data)
    return load_config(path)


def _demo_breach(config: Config, expected_id: str, shape: dict[str, dict[str, str]]) -> Breach:
    if expected_id.startswith("alert:"):
        name = expected_id.removeprefix("alert:")
        labels = dict(shape.get("labels", {}))
        if (kept := _kept(name)) is not None:
            labels = {key: value for key, value in labels.items() if key in kept}
        if name in ("SyncJobFailure",) and "instance" not in labels:
            labels["instance"] = INSTANCE
        return alert_breach(name, labels)
    bound = config.threshold(expected_id)
    assert bound is not None, expected_id
    kind = bound.source.kind.value
    labels = dict(shape.get("labels", {}))
    row = ThresholdRow(
        expected_id, "", labels=labels if kind == "prometheus" else {}, checks=shape.get("checks", {}) if kind == "health" else {}
    )  # fmt: skip
    return threshold_breach(config, row)


# --- the tests --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(CONFIG)


@pytest.fixture(scope="module")
def pack(config: Config) -> Pack:
    return pack_for(config)


def _first(pack: Pack, config: Config, breach: Breach, expected: str) -> None:
    ranked = pack.rank(breach, config)
    top = [(m.runbook.id, round(m.score, 2), m.why) for m in ranked[:4]]
    assert ranked, f"no runbook for {breach.id}"
    assert ranked[0].runbook.id == expected, top
    assert ranked[0].why
    # first by its score, or by rank's rule for ties (the more severe runbook), never by its id
    if len(ranked) > 1 and ranked[1].score == ranked[0].score:
        assert ranked[0].runbook.severity != ranked[1].runbook.severity, f"a tie broken by id: {top}"


def test_the_table_covers_every_alert_rule_and_every_threshold(config: Config) -> None:
    assert {row.alert for row in ALERT_ROWS} == set(_rules())
    assert {row.threshold for row in THRESHOLD_ROWS} == {b.id for b in config.thresholds()}
    assert set(DEMO) == {s.name for s in SCENARIOS}


@pytest.mark.parametrize("row", ALERT_ROWS, ids=str)
def test_an_alert_ranks_its_runbook_first(pack: Pack, config: Config, row: AlertRow) -> None:
    breach = alert_breach(row.alert, row.labels)
    assert breach.kind == "alert" and breach.title == row.alert
    _first(pack, config, breach, row.expected)


@pytest.mark.parametrize("row", THRESHOLD_ROWS, ids=str)
def test_a_threshold_breach_ranks_its_runbook_first(pack: Pack, config: Config, row: ThresholdRow) -> None:
    breach = threshold_breach(config, row)
    _first(pack, config, breach, row.expected)


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_every_breach_of_a_demo_scenario_ranks_its_runbook_first(scenario: str, tmp_path: Path) -> None:
    config = _demo_config(tmp_path)
    pack = pack_for(config)
    expected, shape = DEMO[scenario]
    for breach_id in (e.id for e in next(s for s in SCENARIOS if s.name == scenario).expected):
        breach = _demo_breach(config, breach_id, shape)
        _first(pack, config, breach, expected)


def test_the_sev0_duplicate_alert_never_opens_the_runbook_that_turns_automation_back_on(
    pack: Pack, config: Config
) -> None:
    """Misleading place 1: DuplicateEventsDetected has no provider label; the runbook it opens
    first stops the auto-replies and turns nothing back on (automation-back-to-normal, which
    does, is opened by hand)."""
    ranked = pack.rank(alert_breach("DuplicateEventsDetected", _series(job=SW)), config)
    assert [m.runbook.id for m in ranked] == ["duplicate-events"]
    first = ranked[0].runbook
    impacts = [s.action.impact for s in first.steps if s.kind == "action"]
    assert impacts == ["protective"]


def test_target_down_checks_which_job_is_down_before_restarting_it(pack: Pack, config: Config) -> None:
    """Misleading place 3: the first runbook for TargetDown measures up{job=...} of the breach's
    job before the one restart, of that job's app, and waits to measure it again."""
    runbook = pack.rank(alert_breach("TargetDown", _series(job=SW)), config)[0].runbook
    kinds = [s.kind for s in runbook.steps]
    restart = next(i for i, s in enumerate(runbook.steps) if s.kind == "action")
    check = next(s for s in runbook.steps[:restart] if s.kind == "check" and s.check.symptom == "TargetDown")
    assert 'job="{{service}}"' in check.check.promql.query
    assert [s.action.argv.command for s in runbook.steps if s.kind == "action"] == [
        ["{{flyctl}}", "restart", "{{service_app}}"]
    ]
    assert "wait" in kinds[restart + 1 :]


# --- a cause firing beside the breach -----------------------------------------------------------------

RATIO = ThresholdRow(
    "prometheus.sync_success_ratio", "partial-sync-failures", labels={"job": SW, "provider": "hubspot"}
)
SYMPTOMS = {  # the sync failures' breaches, and the runbook written for them alone
    "ratio": lambda config: threshold_breach(config, RATIO),
    "SyncJobFailure": lambda config: alert_breach("SyncJobFailure", _series(job=SW, provider="hubspot")),
    "SyncSuccessRatioLow": lambda config: alert_breach("SyncSuccessRatioLow", _series(job=SW, provider="hubspot")),
}  # fmt: skip
CAUSES = [  # the demo's oauth-expired and provider-down make the syncs fail too
    (lambda: alert_breach("UpstreamAuthFailing", {"job": SW, "provider": "hubspot"}), "oauth-expired"),
    (lambda: alert_breach("IntegrationDown", _series(job=SW, provider="hubspot")), "provider-down"),
]


@pytest.mark.parametrize("symptom", list(SYMPTOMS))
@pytest.mark.parametrize(("cause", "expected"), CAUSES, ids=["oauth", "down"])
def test_a_cause_firing_beside_the_sync_failures_ranks_first_for_them(
    pack: Pack, config: Config, symptom: str, cause, expected: str
) -> None:
    """The sync success ratio fell because HubSpot's token expired (the demo's oauth-expired):
    R on the ratio offered partial-sync-failures only, whose retry would fail again. With the
    cause firing, its runbook comes first, saying why; the symptom's own runbook still shows."""
    breach, firing = SYMPTOMS[symptom](config), cause()
    alone = pack.rank(breach, config)
    assert alone[0].runbook.id == "partial-sync-failures"
    assert expected not in [m.runbook.id for m in alone]
    ranked = pack.rank(breach, config, [breach, firing])
    assert ranked[0].runbook.id == expected, [(m.runbook.id, m.score, m.why) for m in ranked[:3]]
    assert ranked[0].why == f"{firing.title} (hubspot) fires too: it causes this"
    assert ranked[0].cause is firing and all(m.cause is None for m in ranked[1:])
    assert "partial-sync-failures" in [m.runbook.id for m in relevant(ranked)]


def test_a_cause_about_another_integration_or_service_or_not_firing_changes_nothing(
    pack: Pack, config: Config
) -> None:
    breach = SYMPTOMS["SyncJobFailure"](config)  # hubspot's syncs on the sync worker
    elsewhere = [
        alert_breach("UpstreamAuthFailing", {"job": SW, "provider": "openai"}),  # another integration
        alert_breach("UpstreamAuthFailing", {"job": SF, "provider": "hubspot"}),  # another service
        dataclasses.replace(alert_breach("UpstreamAuthFailing", {"job": SW, "provider": "hubspot"}), state=State.PENDING),
    ]  # fmt: skip
    for other in elsewhere:
        assert pack.rank(breach, config, [breach, other])[0].runbook.id == "partial-sync-failures", other


def test_a_cause_that_names_no_integration_is_not_an_integrations_trouble(pack: Pack, config: Config) -> None:
    """provider-down explains the sync failures and triggers on any health breach: with the sync
    worker's health failing (its database, say; the breach names no integration), R on HubSpot's
    failing syncs offered first the runbook that switches HubSpot off."""
    breach = SYMPTOMS["SyncJobFailure"](config)
    health = threshold_breach(config, ThresholdRow("health.sync-worker", "", checks={"db": "fail"}))
    assert health.source.name == "sync-worker" and not breach_provider(health)
    assert "provider-down" in [m.runbook.id for m in pack.rank(health, config)]  # its health.* trigger
    ranked = pack.rank(breach, config, [breach, health])
    assert ranked[0].runbook.id == "partial-sync-failures" and all(m.cause is None for m in ranked)


def test_a_config_link_still_ranks_before_a_cause(pack: Pack, config: Config) -> None:
    breach = dataclasses.replace(SYMPTOMS["ratio"](config), runbooks=("product-sync-failure",))
    ranked = pack.rank(breach, config, [breach, CAUSES[0][0]()])
    assert [m.runbook.id for m in ranked[:2]] == ["product-sync-failure", "oauth-expired"]
