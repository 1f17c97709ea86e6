"""The runbooks' ``health`` check: a health target of the config probed as the console polls it
(URL, format, headers, timeout), against real HTTP servers on 127.0.0.1.

Before it, runbooks probed ``{{service_url}}/health`` and expected health+json's ``pass``: the
sync worker's health is Spring's ``/actuator/health`` answering ``UP``, so its re-check could never
pass, whatever the fix did."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from console.actions import Executor, Status
from console.actions.kinds.health_check import HealthCheckSpec, HealthProbe
from console.actions.specs import CheckSpec
from console.actions.templates import RenderError
from console.journal import Journal
from console.loader import load_config
from console.model import PromAlert, PrometheusSnapshot, Severity
from console.rules import alert_breaches
from console.runbooks import RunbookSession, pack_for
from tests.fixtures.http_servers import StubServer
from tests.test_actions import TOKEN, ctx, events, executor, make_config

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "console.yaml"
SPRING_UP = {"status": "UP", "components": {"db": {"status": "UP"}, "hubspot": {"status": "UP"}}}
SPRING_DOWN = {
    "status": "DOWN",
    "components": {
        "db": {"status": "UP"},
        "hubspot": {"status": "DOWN", "details": {"error": "503 from api"}},
    },
}


def _config(tmp_path: Path, server: StubServer, **target: object):
    worker = {
        "name": "sync-worker",
        "url": server.url("/actuator/health"),
        "format": "spring",
        "headers": {"Authorization": {"value": f"Bearer {TOKEN}", "secret": True}},
        **target,
    }
    front = {"name": "storefront", "url": server.url("/health"), "format": "health+json"}
    return make_config(tmp_path, health=[worker, front])


def _check(target: str = "{{service}}") -> CheckSpec:
    return HealthCheckSpec(health=HealthProbe(target=target), symptom="health.{{service}}")


async def test_a_spring_service_is_probed_where_and_as_the_config_says(
    http_server: StubServer, tmp_path: Path
):
    http_server.route("/actuator/health", json=SPRING_UP)
    http_server.route("/health", status=404, body="no such page")  # what the old check asked
    config = _config(tmp_path, http_server)
    ex = executor(config, tmp_path)
    plan = ex.render(_check(), ctx(config).with_values(service="sync-worker"))
    assert (
        plan.lines[0] == f"GET {http_server.url('/actuator/health')} (format spring, as the console polls it)"
    )
    assert TOKEN not in " ".join(plan.lines)
    result = await ex.execute(plan)
    assert (result.status, result.message) == (Status.PASSED, "HTTP 200: pass")
    assert http_server.hits("/health") == 0
    assert (
        http_server.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"
    )  # the target's header went out
    assert TOKEN not in (tmp_path / "journal.jsonl").read_text()


async def test_a_failing_component_is_not_met_and_named(http_server: StubServer, tmp_path: Path):
    http_server.route("/actuator/health", status=503, json=SPRING_DOWN)
    config = _config(tmp_path, http_server)
    ex = executor(config, tmp_path)
    result = await ex.execute(ex.render(_check(), ctx(config).with_values(service="sync-worker")))
    assert result.status == Status.NOT_MET
    assert result.message == "HTTP 503: fail (hubspot), expected pass"
    assert result.lines[0].startswith("fail    hubspot: ") and "503 from api" in result.lines[0]
    assert "pass    db" in result.lines


async def test_a_warn_is_not_a_pass(http_server: StubServer, tmp_path: Path):
    http_server.route(
        "/health",
        json={"status": "warn", "checks": {"google-analytics:api": [{"status": "warn", "output": "quota"}]}},
    )
    config = _config(tmp_path, http_server)
    ex = executor(config, tmp_path)
    result = await ex.execute(ex.render(_check("storefront"), ctx(config)))
    assert (result.status, result.message) == (
        Status.NOT_MET,
        "HTTP 200: warn (google-analytics:api), expected pass",
    )


async def test_a_redirect_is_followed_as_the_console_polls(http_server: StubServer, tmp_path: Path):
    http_server.route("/actuator/health", status=301, headers={"Location": "/actuator/health/"})
    http_server.route("/actuator/health/", json=SPRING_UP)
    config = _config(tmp_path, http_server)
    ex = executor(config, tmp_path)
    result = await ex.execute(ex.render(_check("sync-worker"), ctx(config)))
    assert result.status == Status.PASSED, result.message


async def test_an_answer_that_is_no_health_fails_and_says_why(http_server: StubServer, tmp_path: Path):
    http_server.route("/actuator/health", body="<html>login</html>", content_type="text/html")
    config = _config(tmp_path, http_server)
    ex = executor(config, tmp_path)
    result = await ex.execute(ex.render(_check("sync-worker"), ctx(config)))
    assert result.status == Status.FAILED
    assert result.message == "not a spring health answer: HTTP 200, body is not JSON (text/html)"


async def test_a_target_that_does_not_answer_fails_in_one_line(tmp_path: Path, http_server: StubServer):
    config = _config(tmp_path, http_server, url="http://127.0.0.1:9/actuator/health", timeout="1s")
    ex = executor(config, tmp_path)
    result = await ex.execute(ex.render(_check("sync-worker"), ctx(config)))
    assert (result.status, result.message) == (Status.FAILED, "ConnectError: All connection attempts failed")
    assert events(ex) == ["check.failed"]


def test_an_unknown_target_is_refused_before_anything_is_sent(http_server: StubServer, tmp_path: Path):
    config = _config(tmp_path, http_server)
    ex = executor(config, tmp_path)
    with pytest.raises(
        RenderError, match=r"no health target 'chatwoot' in the config \(targets: sync-worker, storefront\)"
    ):
        ex.render(_check(), ctx(config).with_values(service="chatwoot"))


def test_a_health_check_takes_no_expect() -> None:
    with pytest.raises(
        ValueError, match="a health check passes when its target says pass: it takes no expect"
    ):
        HealthCheckSpec.model_validate({"health": {"target": "storefront"}, "expect": {"status": 200}})


HEALTH_PROBES = [  # (runbook, step): every step of the shipped pack that probes a service's health
    ("health-check-failure", "health"),
    ("deployment-failure", "health"),
    ("cache-recovery", "health"),
    ("internal-errors", "health"),
    ("provider-down", "service-health"),
    ("restart-integration-services", "app-health"),
    ("service-recovery", "health"),
    ("webhook-delivery-failures", "endpoint-health"),
    ("integration-health-check", "worker-health"),
]


@pytest.mark.parametrize(("runbook_id", "step_id"), HEALTH_PROBES, ids=[f"{r}:{s}" for r, s in HEALTH_PROBES])
async def test_the_shipped_runbooks_read_a_spring_workers_health_where_the_config_says(
    http_server: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runbook_id: str, step_id: str
):
    """The shipped config and pack, with a sync worker that serves only Spring's
    /actuator/health (as config/console.yaml says it does): its health probe passes when the
    worker is UP. Before, these steps asked {{sync_worker_url}}/health for health+json's
    "pass": 404 for a Spring service, the check NOT MET and its re-check never passing."""
    http_server.route("/actuator/health", json=SPRING_UP)
    monkeypatch.setenv("SYNC_WORKER_URL", http_server.url("").rstrip("/"))
    monkeypatch.setenv("SYNC_WORKER_HEALTH_URL", http_server.url("/actuator/health"))
    config = load_config(SHIPPED)
    session = await RunbookSession.open(
        pack_for(config).get(runbook_id), Executor(config, Journal(tmp_path / "journal.jsonl"))
    )
    if "service" in session.runbook.inputs:
        await session.set_input("service", "sync-worker")
    result = await session.execute(session.runbook.step(step_id))
    assert result.status == Status.PASSED, (result.message, result.lines)
    assert http_server.hits("/actuator/health") == 1 and http_server.hits("/health") == 0


async def test_a_blackbox_probe_alert_names_the_service_whose_health_it_probes(
    http_server: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """BlackboxProbeFailed opens health-check-failure. Its labels say ``job="blackbox"`` and the
    probed URL as ``instance``: the runbook's service was "blackbox", so its health check had no
    target ("no health target 'blackbox'") and every {{service_url}} step no URL. The probed URL
    is a health target's: that target is the service."""
    http_server.route("/actuator/health", json=SPRING_UP)
    monkeypatch.setenv("SYNC_WORKER_URL", http_server.url("").rstrip("/"))
    monkeypatch.setenv("SYNC_WORKER_HEALTH_URL", http_server.url("/actuator/health"))
    config = load_config(SHIPPED)
    labels = {"alertname": "BlackboxProbeFailed", "severity": "critical", "job": "blackbox"}
    labels["instance"] = http_server.url("/actuator/health")
    alert = PromAlert(
        name="BlackboxProbeFailed",
        state="firing",
        severity=Severity.CRITICAL,
        labels=tuple(sorted(labels.items())),
        annotations=(),
        active_at=time.time() - 60,
    )
    (breach,) = alert_breaches(
        PrometheusSnapshot(
            source="prometheus", taken_at=time.time(), url="http://127.0.0.1:9090", alerts=(alert,)
        )
    )
    runbook = pack_for(config).rank(breach, config)[0].runbook
    assert runbook.id == "health-check-failure"
    session = await RunbookSession.open(
        runbook, Executor(config, Journal(tmp_path / "journal.jsonl")), breach=breach
    )
    assert session.context.get("service").text == "sync-worker"
    assert session.context.get("service_url").text == http_server.url("").rstrip("/")
    result = await session.execute(runbook.step("health"))
    assert result.status == Status.PASSED, (result.message, result.lines)


async def test_a_hostile_content_type_reaches_the_step_one_line_and_capped(
    http_server: StubServer, tmp_path: Path
):
    """The Content-Type header is the target's text: the health source kept one line of its media
    type, capped; the check passed the header on as it came (its reason line held it whole)."""
    http_server.route("/actuator/health", body="nope", content_type="text/" + "x" * 300 + "\x1b[31m")
    config = _config(tmp_path, http_server)
    ex = executor(config, tmp_path)
    result = await ex.execute(ex.render(_check("sync-worker"), ctx(config)))
    assert result.status == Status.FAILED
    assert "\x1b" not in result.message and len(result.message) < 150, result.message
