"""The alert rules of config/prometheus/rules.yml evaluated by Prometheus's own rule engine
(`promtool test rules`): series in, alerts out, at the times the rule's `for:` gives.

Each case is a detection signal of a seed that had no rule, so the runbook written for it was
never offered when it happened: a Shopify 500 that persists (000), a provider's 5xx (002),
OpenAI's errors and timeouts (004 1.4), the webhook ingress answering errors (004 1.1).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.prometheus import PROMTOOL_BIN, require_binary

RULES = Path(__file__).resolve().parent.parent / "config" / "prometheus" / "rules.yml"


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
        {"interval": "1m", **group, "alert_rule_test": [_expected(case) for case in group["alert_rule_test"]]}
        for group in groups
    ]
    path = tmp_path / "rules.test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("group", GROUPS, ids=[g["alert_rule_test"][0]["alertname"] for g in GROUPS])
def test_a_seed_signal_fires_its_alert_and_only_it(tmp_path: Path, group: dict) -> None:
    done = _promtool_test(tmp_path, [group])
    assert done.returncode == 0, done.stdout + done.stderr
