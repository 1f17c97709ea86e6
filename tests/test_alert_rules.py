"""The alert rules of config/prometheus/rules.yml evaluated by Prometheus's own rule engine
(`promtool test rules`): series in, alerts out, at the times the rule's `for:` gives.

Each case is a detection signal of a seed that had no rule, so the runbook written for it was
never offered when it happened: a Shopify 500 that persists (000), a provider's 5xx (002),
OpenAI's errors and timeouts (004 1.4), the webhook ingress answering errors (004 1.1).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.actions.expect import Observed, verdict
from console.actions.plans import Status
from console.loader import load_config
from console.runbooks import Pack, pack_for
from console.runbooks.schema import CheckStep, WaitStep
from tests.fixtures.prometheus import PROMTOOL_BIN, require_binary

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "prometheus" / "rules.yml"
CONFIG = ROOT / "config" / "console.yaml"


def _alerts(name: str, quiet_at: list[str], firing_at: list[str], alerts: list[dict[str, Any]]) -> list[dict]:
    """No alert at the ``quiet_at`` times; exactly ``alerts`` (labels and summary) at ``firing_at``."""
    cases: list[dict[str, Any]] = [{"alertname": name, "eval_time": at, "exp_alerts": []} for at in quiet_at]
    return cases + [{"alertname": name, "eval_time": at, "exp_alerts": alerts} for at in firing_at]


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    """A case as promtool reads it: each alert's labels, its summary and the rule's description."""
    alerts = [
        {
            "exp_labels": alert["labels"],
            "exp_annotations": {**_static(case["alertname"], alert["labels"]), "summary": alert["summary"]},
        }
        for alert in case["exp_alerts"]
    ]
    return {**case, "exp_alerts": alerts}


def _static(name: str, labels: dict[str, str]) -> dict[str, str]:
    """The rule's description with its label references filled (the summary is the test's)."""
    rules = [
        r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if r.get("alert") == name
    ]
    if not rules:
        return {}  # no such rule: promtool says the alert never fired
    text = rules[0]["annotations"]["description"]
    for key, value in labels.items():
        text = text.replace("{{ $labels." + key + " }}", value)
    assert "{{" not in text, text  # a description with a value would need the test to say it
    return {"description": text}


# One minute between samples; counters count per minute (x per minute = x/60 per second).
GROUPS = [
    {
        "name": "a Shopify 500 that persists fires after 5 minutes; a blip and other answers do not",
        "input_series": [
            # 6 errors a minute from minute 0 on
            {
                "series": 'upstream_requests_total{job="storefront",provider="shopify",status="500"}',
                "values": "0+6x20",
            },
            # HubSpot: 503 for 2 minutes, then none (the retries absorbed it)
            {
                "series": 'upstream_requests_total{job="sync-worker",provider="hubspot",status="503"}',
                "values": "0+3x2 6+0x18",
            },
            # OpenAI: only 200s and 429s
            {
                "series": 'upstream_requests_total{job="sync-worker",provider="openai",status="200"}',
                "values": "0+60x20",
            },
            {
                "series": 'upstream_requests_total{job="sync-worker",provider="openai",status="429"}',
                "values": "0+30x20",
            },
        ],
        "alert_rule_test": _alerts(
            "UpstreamServerErrors",
            quiet_at=["4m"],
            firing_at=["7m", "15m"],
            alerts=[
                {
                    "labels": {"severity": "warning", "job": "storefront", "provider": "shopify"},
                    "summary": "shopify answers storefront with 5xx (0.10/s)",
                }
            ],
        ),
    },
    {
        "name": "a rate below 1/s reads as a rate, not in milli (humanize said 500m 429/s)",
        "input_series": [
            {
                "series": 'upstream_requests_total{job="sync-worker",provider="hubspot",status="429"}',
                "values": "0+30x20",
            },
        ],
        "alert_rule_test": _alerts(
            "UpstreamRateLimited",
            quiet_at=["1m"],
            firing_at=["5m"],
            alerts=[
                {
                    "labels": {"severity": "warning", "job": "sync-worker", "provider": "hubspot"},
                    "summary": "hubspot rate-limits sync-worker (0.50 429/s)",
                }
            ],
        ),
    },
    {
        "name": "the ingress answering over 5% of Richpanel's deliveries with errors fires; 2% does not",
        "input_series": [
            {
                "series": 'webhook_requests_total{job="sync-worker",source="richpanel",status="202"}',
                "values": "0+90x20",
            },
            {
                "series": 'webhook_requests_total{job="sync-worker",source="richpanel",status="502"}',
                "values": "0+10x20",
            },
            {
                "series": 'webhook_requests_total{job="storefront",source="richpanel",status="202"}',
                "values": "0+98x20",
            },
            {
                "series": 'webhook_requests_total{job="storefront",source="richpanel",status="401"}',
                "values": "0+2x20",
            },
            # another sender's errors are not Richpanel's ingress
            {
                "series": 'webhook_requests_total{job="storefront",source="chatwoot",status="401"}',
                "values": "0+50x20",
            },
        ],
        "alert_rule_test": _alerts(
            "WebhookIngressErrors",
            quiet_at=["4m"],
            firing_at=["7m"],
            alerts=[
                {
                    "labels": {"severity": "critical", "job": "sync-worker"},
                    "summary": "sync-worker answers 10% of Richpanel's deliveries with an error",
                }
            ],
        ),
    },
    {
        "name": "no Richpanel event accepted for 15 minutes, after an hour with some, fires; none ever does not",
        "input_series": [
            # events for an hour, then nothing (the gateway died: no delivery reaches the service)
            # for 140 minutes, then events again (it is back). It resolved 75 minutes into the
            # outage, once the hour before the last 15 minutes had no event either.
            {
                "series": 'queue_receives_total{job="sync-worker",source="richpanel",instance="w1"}',
                "values": "0+10x60 600+0x140 600+10x40",
            },
            {
                "series": 'queue_receives_total{job="storefront",source="richpanel",instance="s1"}',
                "values": "0+0x240",
            },
        ],
        "alert_rule_test": _alerts(
            "WebhookEventsStopped",
            quiet_at=["50m", "70m", "78m", "205m", "230m"],
            firing_at=["81m", "95m", "140m", "199m"],
            alerts=[
                {
                    "labels": {"severity": "critical", "job": "sync-worker"},
                    "summary": "sync-worker has accepted no Richpanel event for 15 minutes",
                }
            ],
        ),
    },
    {
        # A dead-letter queue (or a webhooks-failed one) holds work that failed, not work waiting:
        # it never drains by itself, so it kept QueueBacklog firing after the incident and sent
        # the operator to the rate-limit runbook. Failures have their own alerts.
        "name": "a work queue above 100 for 5 minutes fires; a queue of failed items does not",
        "input_series": [
            {
                "series": 'queue_depth{job="sync-worker",queue="richpanel-actions",instance="w1"}',
                "values": "150x10",
            },
            {
                "series": 'queue_depth{job="sync-worker",queue="dead-letter",instance="w1"}',
                "values": "400x10",
            },
            {
                "series": 'queue_depth{job="sync-worker",queue="webhooks-failed",instance="w1"}',
                "values": "400x10",
            },
            {"series": 'queue_depth{job="storefront",queue="orders",instance="s1"}', "values": "20x10"},
        ],
        "alert_rule_test": _alerts(
            "QueueBacklog",
            quiet_at=["4m"],
            firing_at=["6m"],
            alerts=[
                {
                    "labels": {
                        "severity": "warning",
                        "job": "sync-worker",
                        "queue": "richpanel-actions",
                        "instance": "w1",
                    },
                    "summary": "sync-worker queue richpanel-actions holds 150 items",
                }
            ],
        ),
    },
    {
        "name": "classification timeouts for 5 minutes fire; none does not",
        "input_series": [
            {"series": 'classification_timeouts_total{job="sync-worker",instance="w1"}', "values": "0+2x20"},
            {"series": 'classification_timeouts_total{job="storefront",instance="s1"}', "values": "0+0x20"},
        ],
        "alert_rule_test": _alerts(
            "ClassificationTimeouts",
            quiet_at=["4m"],
            firing_at=["7m"],
            alerts=[
                {
                    "labels": {"severity": "warning", "job": "sync-worker"},
                    "summary": "sync-worker: classification calls time out (0.03/s)",
                }
            ],
        ),
    },
]


def _promtool_test(tmp_path: Path, groups: list[dict]) -> subprocess.CompletedProcess[str]:
    promtool = require_binary(PROMTOOL_BIN, "prometheus")
    tests = [
        {
            "interval": "1m",
            **group,
            "alert_rule_test": [_expected(case) for case in group.get("alert_rule_test", [])],
        }
        for group in groups
    ]
    path = tmp_path / "rules.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("group", GROUPS, ids=[g["alert_rule_test"][0]["alertname"] for g in GROUPS])
def test_a_seed_signal_fires_its_alert_and_only_it(tmp_path: Path, group: dict) -> None:
    done = _promtool_test(tmp_path, [group])
    assert done.returncode == 0, done.stdout + done.stderr


# --- the re-checks of the runbooks these alerts open ------------------------------------------


@dataclass(frozen=True)
class Recheck:
    """A runbook's check, opened for ``alert``: evaluated by Prometheus at ``trouble`` (the
    fault on) it is not met; at ``fixed`` (the fault off at minute 10, then the wait that re-runs
    it) it passes. ``values``: what Prometheus reads at those two times."""

    runbook: str
    step: str
    alert: str
    fill: dict[str, str]
    series: list[dict[str, str]]
    values: tuple[float, float]
    trouble: str = "7m"


ON_THEN_OFF = "0+{n}x10 {end}+0x10"  # n a minute for 10 minutes, then no more


def _on_then_off(n: int) -> str:
    return ON_THEN_OFF.format(n=n, end=10 * n)


RECHECKS = [
    Recheck(
        "webhook-ingress-failure",
        "error-share",
        "WebhookIngressErrors",
        {"service": "sync-worker", "provider": "richpanel"},
        [
            {
                "series": 'webhook_requests_total{job="sync-worker",source="richpanel",status="202"}',
                "values": "0+90x10 900+100x10",
            },
            {
                "series": 'webhook_requests_total{job="sync-worker",source="richpanel",status="502"}',
                "values": _on_then_off(10),
            },
            {
                "series": 'queue_receives_total{job="sync-worker",source="richpanel"}',
                "values": "0+90x10 900+100x10",
            },
        ],
        (0.1, 0.0),
    ),
    Recheck(
        "llm-provider-outage",
        "timeouts",
        "ClassificationTimeouts",
        {"service": "sync-worker", "provider": "openai"},
        [
            {"series": 'classification_timeouts_total{job="sync-worker"}', "values": _on_then_off(2)},
            {"series": 'integration_up{job="sync-worker",provider="openai"}', "values": "1x20"},
        ],
        (10.0, 0.0),
    ),
    Recheck(
        "shopify-server-errors",
        "server-errors",
        "UpstreamServerErrors",
        {"service": "storefront", "provider": "shopify"},
        [
            {
                "series": 'upstream_requests_total{job="storefront",provider="shopify",status="500"}',
                "values": _on_then_off(6),
            }
        ],
        (0.1, 0.0),
    ),
    Recheck(
        "shopify-server-errors",
        "integration-up",
        "IntegrationDown",
        {"service": "storefront", "provider": "shopify"},
        [
            {
                "series": 'integration_up{job="storefront",provider="shopify",instance="s1"}',
                "values": "0x10 1x10",
            }
        ],
        (0.0, 1.0),
    ),
    Recheck(
        "platform-api-errors",
        "server-errors",
        "UpstreamServerErrors",
        {"service": "sync-worker", "provider": "shopee"},
        [
            {
                "series": 'upstream_requests_total{job="sync-worker",provider="shopee",status="502"}',
                "values": _on_then_off(6),
            },
            {  # the calls that succeed once it is back (no call at all is nothing to judge)
                "series": 'upstream_requests_total{job="sync-worker",provider="shopee",status="200"}',
                "values": "0+6x20",
            },
        ],
        (0.1, 0.0),
    ),
    Recheck(
        "provider-down",
        "provider-errors",
        "UpstreamServerErrors",
        {"service": "sync-worker", "provider": "hubspot"},
        [
            {
                "series": 'upstream_requests_total{job="sync-worker",provider="hubspot",status="503"}',
                "values": _on_then_off(6),
            }
        ],
        (0.1, 0.0),
    ),
]


@pytest.fixture(scope="module")
def pack() -> Pack:
    return pack_for(load_config(CONFIG))


def _query(check: CheckStep, fill: dict[str, str]) -> str:
    query = check.check.promql.query
    for name, value in fill.items():
        query = query.replace("{{" + name + "}}", value)
    assert "{{" not in query, query
    return query.strip()


@pytest.mark.parametrize("case", RECHECKS, ids=[f"{c.runbook}:{c.step}" for c in RECHECKS])
def test_a_recheck_fails_while_the_trouble_lasts_and_passes_once_it_is_over(
    tmp_path: Path, pack: Pack, case: Recheck
) -> None:
    """A runbook opened for ``alert`` re-checks it: a wait re-runs this check, the check says it
    measures the alert, and Prometheus's reading of it is not met during the fault and met after
    the fault and the wait. (Before, webhook-ingress-failure and llm-provider-outage re-checked
    only the queue receives and the integration's up: both pass during these faults.)"""
    runbook = pack.get(case.runbook)
    check = runbook.step(case.step)
    assert isinstance(check, CheckStep) and check.check.symptom == case.alert
    assert case.alert in {a.name for a in runbook.triggers.alerts}
    (wait,) = [s for s in runbook.steps if isinstance(s, WaitStep) and s.wait.check == case.step]
    fixed = f"{int(10 * 60 + wait.wait.seconds)}s"
    query = _query(check, case.fill)
    group = {
        "name": f"{case.runbook}: {case.step}",
        "input_series": case.series,
        "promql_expr_test": [
            {"expr": query, "eval_time": at, "exp_samples": [{"labels": "{}", "value": value}]}
            for at, value in zip((case.trouble, fixed), case.values, strict=True)
        ],
    }
    done = _promtool_test(tmp_path, [group])
    assert done.returncode == 0, done.stdout + done.stderr
    during, after = (verdict(check.check.expect, Observed(values=[value]))[0] for value in case.values)
    assert (during, after) == (Status.NOT_MET, Status.SUCCEEDED)


def test_with_nothing_arriving_the_ingress_recheck_is_not_met(tmp_path: Path, pack: Pack):
    """Opened for WebhookEventsStopped (the gateway is dead), webhook-ingress-failure re-checks
    the events accepted per delivery. With no delivery at all Prometheus reads 0/0 (NaN) while the
    service still exposes its counters, and no sample once they are gone: neither passes. Once
    deliveries flow again it is above 0 and passes."""
    runbook = pack.get("webhook-ingress-failure")
    check = runbook.step("receives-per-delivery")
    query = _query(check, {"service": "sync-worker", "provider": "richpanel"})
    series = [
        {"series": f'{name}{{job="sync-worker",source="richpanel"}}', "values": "0+10x30 300+0x30 300+10x30"}
        for name in ("queue_receives_total", "webhook_requests_total")
    ]
    above_zero = f"({query}) > 0"  # the expect (above: 0) in PromQL: NaN is not above 0
    tests = [
        # a sample that is not equal to itself: NaN (promtool cannot compare NaN with NaN)
        {
            "expr": f"count(({query}) != ({query}))",
            "eval_time": "50m",
            "exp_samples": [{"labels": "{}", "value": 1}],
        },
        {"expr": above_zero, "eval_time": "50m", "exp_samples": []},
        {"expr": above_zero, "eval_time": "85m", "exp_samples": [{"labels": "{}", "value": 1}]},
    ]
    done = _promtool_test(
        tmp_path, [{"name": "dead gateway", "input_series": series, "promql_expr_test": tests}]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for during in ([float("nan")], []):
        assert verdict(check.check.expect, Observed(values=during))[0] == Status.NOT_MET, during
    assert verdict(check.check.expect, Observed(values=[1.0]))[0] == Status.SUCCEEDED


def test_the_quota_recheck_passes_once_polling_less_makes_the_quota_last(tmp_path: Path, pack: Pack):
    """A quota's used share only grows until the daily reset (00:00 UTC): polling less slows it,
    never lowers it. ga-quota-exhausted's wait re-read the share (below 0.8) five minutes after
    the polling change, which could not pass before midnight: the right fix read NOT MET. The
    wait's check now projects the share at the reset from its recent rate: not met
    while the quota runs out before midnight, met once the slower polling makes it last, never
    met once it is used up."""
    runbook = pack.get("ga-quota-exhausted")
    (wait,) = [s for s in runbook.steps if isinstance(s, WaitStep)]
    check = runbook.step(wait.wait.check)
    assert isinstance(check, CheckStep)
    hour = str(runbook.inputs["reset_hour_utc"].default)
    query = _query(check, {"service": "storefront", "provider": "google-analytics", "reset_hour_utc": hour})
    lasts = _passes(query, check)
    name = 'api_quota_used_ratio{job="storefront",provider="google-analytics"}'
    series = [
        # 1.4 % of the quota a minute for an hour (84 % used), then 0.005 % a minute: polled less
        {"series": name, "values": "0+0.014x60 0.84+0.00005x60"},
        # another day's: used up (the share stays at 1 however slowly it is polled)
        {"series": name.replace("storefront", "used-up"), "values": "0.5+0.1x5 1+0x115"},
    ]
    used_up = lasts.replace('job="storefront"', 'job="used-up"')
    tests = [
        {"expr": lasts, "eval_time": "60m", "exp_samples": [{"labels": "{}", "value": 0}]},
        {
            "expr": lasts,
            "eval_time": f"{60 + int(wait.wait.seconds) // 60 + 1}m",
            "exp_samples": [{"labels": "{}", "value": 1}],
        },
        {"expr": used_up, "eval_time": "60m", "exp_samples": [{"labels": "{}", "value": 0}]},
    ]
    done = _promtool_test(tmp_path, [{"name": "quota", "input_series": series, "promql_expr_test": tests}])
    assert done.returncode == 0, done.stdout + done.stderr


@dataclass(frozen=True)
class Restarted:
    runbook: str
    step: str
    fill: dict[str, str]
    errors: str  # the error series the fault creates; the restarted process does not export it
    traffic: str  # its other answers, which go on


RESTARTED = [
    Restarted(
        "error-spike",
        "error-rate",
        {"service": "storefront"},
        'http_requests_total{job="storefront",status="500"}',
        'http_requests_total{job="storefront",status="200"}',
    ),
    Restarted(
        "internal-errors",
        "error-rate",
        {"service": "storefront"},
        'http_requests_total{job="storefront",status="500"}',
        'http_requests_total{job="storefront",status="200"}',
    ),
    Restarted(
        "automation-back-to-normal",
        "error-rate",
        {"service": "sync-worker"},
        'http_requests_total{job="sync-worker",status="502"}',
        'http_requests_total{job="sync-worker",status="200"}',
    ),
    Restarted(
        "secret-rotation-failure",
        "auth-errors",
        {"service": "sync-worker"},
        'upstream_requests_total{job="sync-worker",provider="hubspot",status="401"}',
        'upstream_requests_total{job="sync-worker",provider="hubspot",status="200"}',
    ),
    Restarted(
        "shopify-api-errors",
        "auth-401",
        {"service": "storefront", "provider": "shopify"},
        'upstream_requests_total{job="storefront",provider="shopify",status="401"}',
        'upstream_requests_total{job="storefront",provider="shopify",status="200"}',
    ),
    # not a restart: its 'or vector(0)' read no call at all (the worker down) as none failing
    Restarted(
        "platform-api-errors",
        "server-errors",
        {"service": "sync-worker", "provider": "shopee"},
        'upstream_requests_total{job="sync-worker",provider="shopee",status="503"}',
        'upstream_requests_total{job="sync-worker",provider="shopee",status="200"}',
    ),
]


@pytest.mark.parametrize("case", RESTARTED, ids=[f"{c.runbook}:{c.step}" for c in RESTARTED])
def test_a_recheck_passes_when_the_fixed_process_has_no_error_series(
    tmp_path: Path, pack: Pack, case: Restarted
) -> None:
    """A client library makes a labelled series at its first increment: the process a rollback,
    a deploy or new secrets restart exports no 5xx (or 401) series until its first one. These
    re-checks read ``sum(rate(<errors>[5m]))``, empty once the old process's samples leave the
    window, and an empty answer is NOT MET: the good fix read as a failed one. With no traffic
    at all they still find nothing to judge (not a pass)."""
    runbook = pack.get(case.runbook)
    check = runbook.step(case.step)
    assert isinstance(check, CheckStep)
    (wait,) = [s for s in runbook.steps if isinstance(s, WaitStep) and s.wait.check == case.step]
    query = _query(check, case.fill)
    after = f"{30 + int(wait.wait.seconds) // 60 + 1}m"
    series = [
        {"series": case.errors, "values": "0+10x30 _x60"},  # the fault; the restart at 30m
        {"series": case.traffic, "values": "0+100x90"},
        {"series": case.traffic.replace('job="', 'job="idle-'), "values": "0+0x90"},
    ]
    idle = query.replace(f'job="{case.fill["service"]}"', f'job="idle-{case.fill["service"]}"')
    tests = [
        {"expr": f"count({query})", "eval_time": "20m", "exp_samples": [{"labels": "{}", "value": 1}]},
        {"expr": query, "eval_time": after, "exp_samples": [{"labels": "{}", "value": 0}]},
        {"expr": f"({idle}) >= 0", "eval_time": after, "exp_samples": []},  # nothing, or 0/0
    ]
    done = _promtool_test(
        tmp_path, [{"name": case.runbook, "input_series": series, "promql_expr_test": tests}]
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_llm_outage_rechecks_can_pass_once_route_only_stops_the_model_calls(tmp_path: Path, pack: Pack):
    """llm-provider-outage's fix is route-only mode: no call to the model at all. Its re-check of
    failing calls read the share of failing calls, 0 of 0 under route-only (NaN: never met), so
    the fix that worked read NOT MET for as long as it stayed on. Every wait now re-runs a check
    that can pass with no model call: a PromQL one reads a number and meets its expectation;
    the failing calls are re-checked by the probe, which calls the provider whatever the mode."""
    runbook = pack.get("llm-provider-outage")
    fill = {"service": "sync-worker", "provider": "openai"}
    world = [  # errors, then route-only at 10m: the counters stop
        {
            "series": 'upstream_requests_total{job="sync-worker",provider="openai",status="200"}',
            "values": "0+50x10 500+0x20",
        },
        {
            "series": 'upstream_requests_total{job="sync-worker",provider="openai",status="503"}',
            "values": "0+20x10 200+0x20",
        },
        {"series": 'classification_timeouts_total{job="sync-worker"}', "values": "0+5x10 50+0x20"},
        {"series": 'integration_up{job="sync-worker",provider="openai"}', "values": "1x30"},
    ]
    tests, probes = [], []
    for wait in (s for s in runbook.steps if isinstance(s, WaitStep)):
        check = runbook.waited_check(wait)
        if check.check.kind == "http":
            probes.append(check.check.http.url)
            continue
        at = f"{10 + int(wait.wait.seconds) // 60 + 1}m"
        passes = _passes(_query(check, fill), check)
        tests.append({"expr": passes, "eval_time": at, "exp_samples": [{"labels": "{}", "value": 1}]})
    assert probes == ["{{service_url}}/api/v1/integrations/{{provider}}/probe"]
    done = _promtool_test(
        tmp_path, [{"name": "route-only", "input_series": world, "promql_expr_test": tests}]
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _passes(query: str, check: CheckStep) -> str:
    """PromQL that reads 1 where the check's (numeric) expectation holds, 0 where it does not
    (NaN included), nothing where the query finds nothing."""
    expect = check.check.expect
    if expect.equals is not None:
        return f"({query}) == bool {expect.equals}"
    assert isinstance(expect.below, int | float), (check.id, expect)
    return f"({query}) < bool {expect.below:g}"


def _every_five_minutes(calls: int, then_flat: int, start: int = 0) -> str:
    """A counter sampled each minute that one call every 5 minutes moves, for ``calls`` calls,
    then stays flat for ``then_flat`` minutes (promtool's expanded notation)."""
    values = [start + minute // 5 for minute in range(calls * 5)]
    last = values[-1] if values else start
    return " ".join(str(v) for v in values) + f" {last}+0x{then_flat}"


def test_the_rate_limit_window_recheck_reads_the_share_of_calls_refused(tmp_path: Path, pack: Pack):
    """rate-limit-exhaustion slows polling to one call every 300 s, waits for the provider's
    window to reset (an hour) and then may restore the normal rate (a re-enable the session
    allows only after a passing wait). That wait read the 429s per second, which one call every
    300 s keeps under the threshold (0.1/s) even when every call is refused: it passed, and full
    polling went back into a limit still exhausted. It now reads the share of calls refused."""
    runbook = pack.get("rate-limit-exhaustion")
    wait = runbook.step("window-reset")
    assert isinstance(wait, WaitStep)
    check = runbook.waited_check(wait)
    below = check.check.expect.below
    if not isinstance(below, int | float):  # a threshold reference: the config's level
        below = load_config(CONFIG).threshold(below.threshold).threshold.first_level
    fill = {"service": "sync-worker", "provider": "hubspot"}
    passes = f"({_query(check, fill)}) < bool {below:g}"
    refused = 'upstream_requests_total{job="sync-worker",provider="hubspot",status="429"}'
    answered = refused.replace('"429"', '"200"')
    series = [  # an hour of every call refused, then an hour of every call answered
        {"series": refused, "values": _every_five_minutes(12, 60)},
        {"series": answered, "values": "0+0x59 " + _every_five_minutes(12, 0, start=0)},
    ]
    tests = [
        {"expr": passes, "eval_time": "55m", "exp_samples": [{"labels": "{}", "value": 0}]},
        {"expr": passes, "eval_time": "115m", "exp_samples": [{"labels": "{}", "value": 1}]},
    ]
    done = _promtool_test(tmp_path, [{"name": "window", "input_series": series, "promql_expr_test": tests}])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_breaker_recheck_fails_while_the_breaker_makes_no_calls(tmp_path: Path, pack: Pack):
    """circuit-breaker-recovery re-checked ``min(integration_up) == 1`` after the reset: the
    health probe does not go through the breaker, so it read 1 before the reset and still 1 with
    the breaker open again. The recheck reads the share of the calls that fail: not met with no
    call (the breaker open) or with calls failing, met once they go through and succeed."""
    runbook = pack.get("circuit-breaker-recovery")
    (wait,) = [s for s in runbook.steps if isinstance(s, WaitStep)]
    check = runbook.waited_check(wait)
    passes = _passes(_query(check, {"service": "sync-worker", "provider": "shopee"}), check)
    calls = 'upstream_requests_total{job="sync-worker",provider="shopee",status="200"}'
    series = [
        {"series": 'integration_up{job="sync-worker",provider="shopee"}', "values": "1x40"},
        # open for 20 minutes (no call), then closed: calls go through and succeed
        {"series": calls, "values": "0+0x20 0+10x20"},
        {"series": calls.replace('"200"', '"503"'), "values": "0+0x40"},
    ]
    tests = [
        {"expr": passes, "eval_time": "15m", "exp_samples": [{"labels": "{}", "value": 0}]},  # 0 of 0
        {"expr": passes, "eval_time": "35m", "exp_samples": [{"labels": "{}", "value": 1}]},
    ]
    done = _promtool_test(tmp_path, [{"name": "breaker", "input_series": series, "promql_expr_test": tests}])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("runbook", "counter"),
    [
        ("webhook-signature-failure", "webhook_signature_failures_total"),
        ("duplicate-events", "idempotency_duplicates_detected_total"),
        ("automation-back-to-normal", "idempotency_duplicates_detected_total"),
    ],
)
def test_a_recheck_tolerates_the_trickle_its_alert_tolerates(
    tmp_path: Path, pack: Pack, runbook: str, counter: str
):
    """These re-checks expected exactly 0 where their alert fires above 0.05/s: a public
    endpoint's scanners (unsigned requests) and a sender's re-deliveries go on after the fix, so
    the breach cleared while the runbook's wait read NOT MET. A trickle (1 a minute) passes;
    the fault does not."""
    book = pack.get(runbook)
    for check in (s for s in book.steps if isinstance(s, CheckStep) and s.check.symptom):
        if counter not in (check.check.promql.query if check.check.kind == "promql" else ""):
            continue
        passes = _passes(_query(check, {"service": "sync-worker"}), check)
        series = [{"series": f'{counter}{{job="sync-worker"}}', "values": "0+30x10 300+1x20"}]
        tests = [
            {"expr": passes, "eval_time": "7m", "exp_samples": [{"labels": "{}", "value": 0}]},
            {"expr": passes, "eval_time": "25m", "exp_samples": [{"labels": "{}", "value": 1}]},
        ]
        done = _promtool_test(
            tmp_path, [{"name": runbook, "input_series": series, "promql_expr_test": tests}]
        )
        assert done.returncode == 0, (check.id, done.stdout + done.stderr)
        break
    else:
        pytest.fail(f"no check of {runbook} with a symptom reads {counter}")


def test_the_kill_switch_is_re_checked_by_the_replies_it_stops_not_by_a_senders_re_deliveries(
    tmp_path: Path, pack: Pack
):
    """duplicate-events re-checked the duplicates its idempotency layer detects after the kill
    switch. A sender that re-delivers (at-least-once) goes on whatever the switch, so the wait read
    NOT MET while the switch had stopped every reply. The wait reads the auto-replies sent: met
    once they stop, not met while they go on."""
    runbook = pack.get("duplicate-events")
    (wait,) = [s for s in runbook.steps if isinstance(s, WaitStep)]
    check = runbook.waited_check(wait)
    passes = _passes(_query(check, {"service": "sync-worker"}), check)
    series = [
        # replies at 1/s, then the kill switch at minute 10: none
        {"series": 'auto_reply_sent_total{job="sync-worker"}', "values": "0+60x10 600+0x20"},
        # a sender re-delivers 12 a minute (0.2/s) throughout, caught and dropped
        {"series": 'idempotency_duplicates_detected_total{job="sync-worker"}', "values": "0+12x30"},
        {"series": 'queue_receives_total{job="sync-worker"}', "values": "0+60x30"},
    ]
    at_wait_end = f"{10 + int(wait.wait.seconds // 60)}m"
    tests = [
        {"expr": passes, "eval_time": "8m", "exp_samples": [{"labels": "{}", "value": 0}]},
        {"expr": passes, "eval_time": at_wait_end, "exp_samples": [{"labels": "{}", "value": 1}]},
    ]
    done = _promtool_test(
        tmp_path, [{"name": "kill switch", "input_series": series, "promql_expr_test": tests}]
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_restart_recheck_is_not_met_by_a_crash_loop(tmp_path: Path, pack: Pack):
    """memory-cpu-pressure re-checked ``min(up) == 1`` two minutes after the restart: a process
    that crashes every minute answers the scrape between crashes, and one instant read 1."""
    runbook = pack.get("memory-cpu-pressure")
    (wait,) = [s for s in runbook.steps if isinstance(s, WaitStep)]
    check = runbook.waited_check(wait)
    passes = _passes(_query(check, {"service": "storefront"}), check)
    # 15 s scrapes: crashing (down one scrape in four), then up for good from minute 10
    series = [{"series": 'up{job="storefront"}', "values": "1 1 1 0 " * 10 + "1x40"}]
    tests = [
        {"expr": passes, "eval_time": "8m", "exp_samples": [{"labels": "{}", "value": 0}]},
        {"expr": passes, "eval_time": "14m", "exp_samples": [{"labels": "{}", "value": 1}]},
    ]
    done = _promtool_test(
        tmp_path,
        [{"name": "crash loop", "interval": "15s", "input_series": series, "promql_expr_test": tests}],
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_auto_replies_come_back_only_once_the_model_answers_in_normal_mode(tmp_path: Path, pack: Pack):
    """automation-back-to-normal turned auto-replies back on after the worker's error rate alone:
    after an LLM outage the model's timeouts fall back to routing and never show as worker 5xx,
    so replies came back while the model still timed out. The check before the kill switch
    reads the timeouts of the 5 minutes in normal mode."""
    runbook = pack.get("automation-back-to-normal")
    check = runbook.step("model-timeouts")
    ids = [s.id for s in runbook.steps]
    assert ids.index("wait-normal") < ids.index("model-timeouts") == ids.index("kill-switch-off") - 1
    passes = _passes(_query(check, {"service": "sync-worker"}), check)
    counter = 'classification_timeouts_total{job="sync-worker",instance="w1"}'
    # route-only for 20 minutes (no model call, no timeout), then normal mode from minute 20
    slow = [{"series": counter, "values": "0+0x20 0+3x20"}]
    fast = [{"series": counter, "values": "0+0x40"}]
    tests = [{"expr": passes, "eval_time": "26m", "exp_samples": [{"labels": "{}", "value": 0}]}]
    done = _promtool_test(tmp_path, [{"name": "slow", "input_series": slow, "promql_expr_test": tests}])
    assert done.returncode == 0, done.stdout + done.stderr
    tests = [{"expr": passes, "eval_time": "26m", "exp_samples": [{"labels": "{}", "value": 1}]}]
    done = _promtool_test(tmp_path, [{"name": "fast", "input_series": fast, "promql_expr_test": tests}])
    assert done.returncode == 0, done.stdout + done.stderr
