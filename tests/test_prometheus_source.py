"""PrometheusSource against a real Prometheus + Alertmanager, and against a stub HTTP server
for the faults a real server will not produce on demand."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from console.demo.ports import free_port
from console.model import ErrorKind, PrometheusSnapshot, Sample, Severity, SourceError
from console.sources.prometheus import (
    MAX_ITEMS,
    MAX_LABELS,
    MAX_SAMPLES,
    VALUE_LIMIT,
    PrometheusSource,
    matcher_text,
    parse_time,
    query_value,
)
from tests.fixtures.http_servers import StubServer
from tests.fixtures.prometheus import (
    ALERT_HIGH,
    EXPORTER_JOB,
    PROMTOOL_BIN,
    RULE_GROUP,
    RULES_FILE,
    GaugeHandle,
    PrometheusServer,
    prometheus_config,
    require_binary,
)
from tests.pilot import poll_until as polling

# What console.sanitize must have removed: C0 (newline allowed in multi-line fields), DEL, C1,
# bidi controls, BOM, lone surrogates.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
HOSTILE = "[bold red]x[/] [@click=app.quit]q[/] \x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\u202eevil\x00\x9b1m\x7f"


def source_for(url: str, *queries: dict[str, Any], **options: Any) -> PrometheusSource:
    options.setdefault("timeout", 3)
    return PrometheusSource(prometheus_config(url, *queries, **options), interval=1.0)


def poll_until(
    source: PrometheusSource, check: Callable[[PrometheusSnapshot], Any], timeout: float = 15.0
) -> Awaitable[PrometheusSnapshot]:
    """Poll until ``check(snapshot)`` is truthy; fail with the last snapshot after ``timeout``."""
    return polling(source.poll, check, timeout, interval=0.2)


def strings(value: object) -> Iterator[str]:
    """Every string inside a snapshot (dataclasses, tuples, enums-as-str)."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from strings(getattr(value, f.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from strings(item)


def query(id: str, expr: str, **extra: Any) -> dict[str, Any]:
    return {"id": id, "query": expr, **extra}


def by_id(snapshot: PrometheusSnapshot) -> dict[str, Any]:
    return {q.id: q for q in snapshot.queries}


@pytest.fixture
async def sources() -> Any:
    """Make sources that are closed at teardown."""
    made: list[PrometheusSource] = []

    def make(url: str, *queries: dict[str, Any], **options: Any) -> PrometheusSource:
        made.append(source_for(url, *queries, **options))
        return made[-1]

    yield make
    for source in made:
        await source.aclose()


# --- the rule file ------------------------------------------------------------------------


def test_rule_file_passes_promtool() -> None:
    promtool = require_binary(PROMTOOL_BIN, "prometheus")
    done = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 3 rules found" in done.stdout


def test_fixture_config_passes_promtool(prometheus_server: PrometheusServer) -> None:
    promtool = require_binary(PROMTOOL_BIN, "prometheus")
    done = subprocess.run(
        [promtool, "check", "config", str(prometheus_server.config_file)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- real Prometheus ----------------------------------------------------------------------


async def test_query_values_from_real_prometheus(
    prometheus_server: PrometheusServer, test_gauge: GaugeHandle, sources: Any
) -> None:
    test_gauge.set(5, series="a")
    test_gauge.set(9, series="b")
    selector = test_gauge.selector
    source = sources(
        prometheus_server.url,
        query("worst", selector, unit="req"),
        query("lowest", selector, threshold={"warning": 1, "direction": "below"}),
        query("scalar", f"scalar(max({selector}))"),
        query("empty", f'{selector[:-1]},series="missing"}}'),
        query("nan", "0 / 0"),
    )
    snapshot = await poll_until(
        source, lambda s: by_id(s)["worst"].value == 9 and by_id(s)["lowest"].value == 5
    )

    assert snapshot.ok and snapshot.error is None
    results = by_id(snapshot)
    worst = results["worst"]
    assert (worst.unit, worst.query, worst.error) == ("req", selector, None)
    assert [s.value for s in worst.samples] == [9, 5]
    labels = dict(worst.samples[0].labels)
    assert labels["series"] == "b" and labels["case"] == test_gauge.case
    assert labels["__name__"] == "incident_console_test_gauge" and labels["job"] == EXPORTER_JOB
    assert [s.value for s in results["lowest"].samples] == [5, 9]
    assert results["scalar"].value == 9 and results["scalar"].samples == (Sample((), 9.0),)
    assert (
        results["empty"].value is None and results["empty"].samples == () and results["empty"].error is None
    )
    assert results["nan"].value is None and results["nan"].error is None
    assert snapshot.latency is not None and snapshot.latency < 3

    test_gauge.set(42, series="b")
    snapshot = await poll_until(source, lambda s: by_id(s)["worst"].value == 42)
    assert by_id(snapshot)["lowest"].value == 5


async def test_breach_goes_pending_then_firing(
    prometheus_server: PrometheusServer, test_gauge: GaugeHandle, sources: Any
) -> None:
    source = sources(prometheus_server.url)

    def ours(snapshot: PrometheusSnapshot) -> Any:
        return next(
            (a for a in snapshot.alerts if a.name == ALERT_HIGH and a.label("case") == test_gauge.case), None
        )

    assert ours(await source.poll()) is None
    breached_at = time.time()
    test_gauge.set(150)
    states: list[str] = []

    def firing(snapshot: PrometheusSnapshot) -> bool:
        alert = ours(snapshot)
        if alert and (not states or states[-1] != alert.state):
            states.append(alert.state)
        return alert is not None and alert.state == "firing"

    snapshot = await poll_until(source, firing, timeout=20)
    assert states == ["pending", "firing"]
    alert = ours(snapshot)
    assert alert.severity is Severity.CRITICAL
    assert alert.label("series") == "a" and alert.label("job") == EXPORTER_JOB
    assert alert.annotation("summary") == f"test gauge {test_gauge.case}/a is 150"
    assert alert.annotation("runbook_url").startswith("https://runbooks.invalid/")
    assert "\n" in alert.annotation("description")  # multi-line text kept for the detail view
    assert alert.active_at is not None and breached_at - 2 <= alert.active_at <= time.time()
    assert alert.value == "1.5e+02"
    rule = next(r for g in snapshot.rule_groups for r in g.rules if r.name == ALERT_HIGH)
    assert (rule.type, rule.state, rule.health) == ("alerting", "firing", "ok")


async def test_rule_groups_and_targets(prometheus_server: PrometheusServer, sources: Any) -> None:
    source = sources(prometheus_server.url)

    def evaluated(snapshot: PrometheusSnapshot) -> bool:
        return any(r.health == "ok" for g in snapshot.rule_groups for r in g.rules)

    snapshot = await poll_until(source, evaluated)
    assert snapshot.ok and snapshot.warnings == ()
    group = next(g for g in snapshot.rule_groups if g.name == RULE_GROUP)
    assert group.file == str(RULES_FILE)
    rules = {r.name: r for r in group.rules}
    assert set(rules) == {"incident_console:test_gauge:max", ALERT_HIGH, "IncidentConsoleTestGaugeNegative"}
    recording = rules["incident_console:test_gauge:max"]
    assert (recording.type, recording.health, recording.last_error) == ("recording", "ok", "")
    assert recording.query == "max by (case) (incident_console_test_gauge)"
    assert rules[ALERT_HIGH].query == "incident_console_test_gauge > 100"

    target = next(t for t in snapshot.targets if t.job == EXPORTER_JOB)
    assert target.instance == prometheus_server.exporter.target
    assert target.health == "up" and target.last_error == ""
    assert target.last_scrape is not None and abs(time.time() - target.last_scrape) < 30
    assert snapshot.alertmanager_url == "" and snapshot.silences == () and snapshot.alertmanager_error is None


async def test_bad_promql_fails_alone(prometheus_server: PrometheusServer, sources: Any) -> None:
    source = sources(
        prometheus_server.url,
        query("before", "vector(1)"),
        query("broken", "sum(rate(x[5m]"),
        query("after", "vector(2)"),
    )
    snapshot = await source.poll()
    results = by_id(snapshot)
    assert snapshot.ok and snapshot.warnings == ()
    assert results["before"].value == 1 and results["before"].error is None
    assert results["after"].value == 2 and results["after"].error is None
    broken = results["broken"]
    assert broken.value is None and broken.error is not None
    assert broken.error.kind is ErrorKind.BAD_RESPONSE
    assert broken.error.reason.startswith("HTTP 400: bad_data:") and "parse error" in broken.error.reason
    assert snapshot.targets  # the rest of the poll is intact


async def test_range_vector_query_is_an_error(prometheus_server: PrometheusServer, sources: Any) -> None:
    snapshot = await sources(prometheus_server.url, query("range", "up[1m]")).poll()
    error = snapshot.queries[0].error
    assert error is not None and error.kind is ErrorKind.BAD_RESPONSE and "range vector" in error.reason


async def test_silence_on_real_alertmanager_appears(
    prometheus_server: PrometheusServer, sources: Any
) -> None:
    am = prometheus_server.alertmanager
    now = datetime.now(UTC)
    silence = {
        "matchers": [
            {"name": "alertname", "value": ALERT_HIGH, "isRegex": False, "isEqual": True},
            {"name": "case", "value": "test_.*", "isRegex": True, "isEqual": True},
            {"name": "series", "value": "z", "isRegex": False, "isEqual": False},
        ],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "on-call tester",
        "comment": "ack: investigating\n[b]markup stays text[/b]",
    }
    created = httpx.post(f"{am.url}/api/v2/silences", json=silence, timeout=5)
    assert created.status_code == 200, created.text
    silence_id = created.json()["silenceID"]
    try:
        source = sources(prometheus_server.url, alertmanager_url=am.url)
        snapshot = await poll_until(source, lambda s: any(x.id == silence_id for x in s.silences))
        assert snapshot.alertmanager_error is None and snapshot.alertmanager_url == am.url
        found = next(x for x in snapshot.silences if x.id == silence_id)
        assert found.state == "active"
        assert found.matchers == (f"alertname={ALERT_HIGH}", "case=~test_.*", "series!=z")
        assert found.created_by == "on-call tester"
        assert found.comment == silence["comment"]
        assert found.starts_at is not None and abs(found.starts_at - now.timestamp()) < 5
        assert found.ends_at is not None and abs(found.ends_at - (now.timestamp() + 3600)) < 5
    finally:
        httpx.delete(f"{am.url}/api/v2/silence/{silence_id}", timeout=5)


async def test_alertmanager_down_only_sets_alertmanager_error(
    prometheus_server: PrometheusServer, sources: Any
) -> None:
    source = sources(
        prometheus_server.url, query("one", "vector(1)"), alertmanager_url=f"http://127.0.0.1:{free_port()}"
    )
    snapshot = await source.poll()
    assert snapshot.ok and snapshot.queries[0].value == 1
    assert snapshot.targets and snapshot.rule_groups
    assert snapshot.alertmanager_error is not None
    assert snapshot.alertmanager_error.kind is ErrorKind.UNREACHABLE
    assert snapshot.silences == () and snapshot.warnings == ()


# --- faults against a stub server ---------------------------------------------------------

PROM_PATHS = ("/api/v1/query", "/api/v1/alerts", "/api/v1/rules", "/api/v1/targets")


def ok(data: object, **extra: object) -> dict[str, object]:
    return {"status": "success", "data": data, **extra}


def vector(*samples: tuple[dict[str, str], str]) -> dict[str, object]:
    return {"resultType": "vector", "result": [{"metric": m, "value": [1.7e9, v]} for m, v in samples]}


def fake_prometheus(server: StubServer, **overrides: dict[str, Any]) -> None:
    """A healthy Prometheus API on the stub; ``overrides`` maps an endpoint name to route kwargs."""
    routes: dict[str, dict[str, Any]] = {
        "query": {"json": ok(vector(({"job": "api"}, "3")))},
        "alerts": {"json": ok({"alerts": []})},
        "rules": {"json": ok({"groups": []})},
        "targets": {
            "json": ok({"activeTargets": [{"labels": {"job": "api", "instance": "h:1"}, "health": "up"}]})
        },
    }
    routes.update(overrides)
    for name, kwargs in routes.items():
        server.route(f"/api/v1/{name}", **kwargs)


def all_paths(server: StubServer, **kwargs: Any) -> None:
    for path in PROM_PATHS:
        server.route(path, **kwargs)


async def test_unreachable(sources: Any) -> None:
    source = sources(f"http://127.0.0.1:{free_port()}", query("q", "up"))
    started = time.monotonic()
    snapshot = await source.poll()
    assert time.monotonic() - started < 2
    assert snapshot.error is not None and snapshot.error.kind is ErrorKind.UNREACHABLE
    assert snapshot.queries[0].error is not None and snapshot.queries[0].error.kind is ErrorKind.UNREACHABLE
    assert "refused" in snapshot.queries[0].error.reason.lower()
    assert snapshot.alerts == () and snapshot.targets == () and snapshot.warnings == ()


async def test_503_is_one_request_per_endpoint(http_server: StubServer, sources: Any) -> None:
    all_paths(http_server, status=503, body="Service Unavailable", content_type="text/plain")
    source = sources(http_server.url(), query("q", "up"))
    started = time.monotonic()
    snapshot = await source.poll()
    assert time.monotonic() - started < 1.5  # no retry back-off
    assert snapshot.error is not None and snapshot.error.kind is ErrorKind.BAD_RESPONSE
    assert snapshot.error.reason.startswith("HTTP 503")
    assert snapshot.queries[0].error is not None and snapshot.queries[0].error.reason.startswith("HTTP 503")
    assert {path: http_server.hits(path) for path in PROM_PATHS} == dict.fromkeys(PROM_PATHS, 1)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"body": b'{"status": "success", "data": {"resu', "content_type": "application/json"}, "not JSON"),
        (
            {"body": "<html><body><h1>Sign in</h1>\n</body></html>", "content_type": "text/html"},
            "not JSON (text/html)",
        ),
        (
            {"json": {"status": "error", "errorType": "execution", "error": "boom\nsecond line"}},
            "execution: boom",
        ),
        ({"json": ["not", "an", "envelope"]}, "expected a JSON object"),
        ({"json": {"status": "success", "data": ["wrong", "shape"]}}, "expected an object"),
        ({"body": b"\xff\xfe\x00garbage", "content_type": "application/json"}, "not JSON"),
    ],
    ids=["truncated-json", "html", "status-error", "not-an-object", "wrong-data-shape", "binary"],
)
async def test_bad_bodies_are_bad_responses(
    http_server: StubServer, sources: Any, route: dict[str, Any], expected: str
) -> None:
    all_paths(http_server, **route)
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    assert snapshot.error is not None and snapshot.error.kind is ErrorKind.BAD_RESPONSE
    assert expected in snapshot.error.reason and "\n" not in snapshot.error.reason
    error = snapshot.queries[0].error
    assert error is not None and error.kind is ErrorKind.BAD_RESPONSE and "\n" not in error.reason


async def test_api_warnings_are_kept(http_server: StubServer, sources: Any) -> None:
    fake_prometheus(
        http_server,
        query={"json": ok(vector(({"job": "api"}, "7")), warnings=["partial data: store eu-1 unreachable"])},
        alerts={"json": ok({"alerts": []}, warnings=["alerts from one replica only"])},
    )
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    assert snapshot.ok and snapshot.queries[0].value == 7
    assert snapshot.warnings == ("partial data: store eu-1 unreachable", "alerts from one replica only")


async def test_infos_are_shown_next_to_warnings(http_server: StubServer, sources: Any) -> None:
    fake_prometheus(
        http_server,
        query={
            "json": ok(vector(({"job": "api"}, "7")), infos=["PromQL info: metric might not be a counter"])
        },
    )
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    assert snapshot.warnings == ("info: PromQL info: metric might not be a counter",)


EMPTY_VECTOR = ok({"resultType": "vector", "result": []})


async def test_an_answer_of_the_wrong_shape_is_an_error_not_an_empty_list(
    http_server: StubServer, sources: Any
) -> None:
    """An empty instant vector served on /alerts, /rules and /targets read as "0 firing, 0 up":
    a broken backend looked healthy."""
    fake_prometheus(http_server, alerts={"json": EMPTY_VECTOR}, rules={"json": EMPTY_VECTOR},
                    targets={"json": ok({"activeTargets": "none"})})  # fmt: skip
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    assert snapshot.ok and snapshot.queries[0].value == 3  # the queries still answered
    errors = dict(snapshot.endpoint_errors)
    assert set(errors) == {"alerts", "rules", "targets"}
    assert all(e.kind is ErrorKind.BAD_RESPONSE for e in errors.values())
    assert errors["alerts"].reason == "no 'alerts' in the answer's data (its keys: resultType, result)"
    assert errors["targets"].reason == "'activeTargets' is str, expected a list"
    # the same on the query path: data without a result
    fake_prometheus(http_server, query={"json": ok({"resultType": "vector"})})
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    assert snapshot.queries[0].error is not None and "no 'result'" in snapshot.queries[0].error.reason


async def test_slow_prometheus_times_out(http_server: StubServer, sources: Any) -> None:
    all_paths(http_server, json=ok({}), delay=3)
    source = sources(http_server.url(), query("q", "up"), query("r", "up"), timeout=0.5)
    assert source.timeout <= 2
    started = time.monotonic()
    snapshot = await source.poll()
    assert time.monotonic() - started < source.timeout
    assert snapshot.error is not None and snapshot.error.kind is ErrorKind.TIMEOUT
    assert all(q.error is not None and q.error.kind is ErrorKind.TIMEOUT for q in snapshot.queries)


async def test_partial_failure_keeps_what_worked(http_server: StubServer, sources: Any) -> None:
    fake_prometheus(http_server, alerts={"status": 500, "body": "internal error"})
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    assert snapshot.ok and snapshot.queries[0].value == 3
    assert [t.job for t in snapshot.targets] == ["api"]
    assert snapshot.alerts == ()
    assert snapshot.warnings == ()
    [(name, error)] = snapshot.endpoint_errors
    assert name == "alerts" and str(error) == "bad response: HTTP 500: internal error"


async def test_prometheus_query_timeout_error_type_is_timeout(http_server: StubServer, sources: Any) -> None:
    body = {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}
    fake_prometheus(http_server, query={"status": 503, "json": body})
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    error = snapshot.queries[0].error
    assert (
        error is not None
        and error.kind is ErrorKind.TIMEOUT
        and error.reason.startswith("HTTP 503: timeout:")
    )
    assert snapshot.ok


async def test_body_over_the_cap_is_an_error(http_server: StubServer) -> None:
    huge = ok({"alerts": [{"labels": {"alertname": "x" * 1000}}] * 300})
    # Connection: close, so the stub does not wait on a socket we abort (and log the reset).
    all_paths(http_server, json=huge, headers={"Connection": "close"})
    source = PrometheusSource(
        prometheus_config(http_server.url(), query("q", "up"), timeout=3), 1.0, body_limit=64 * 1024
    )
    try:
        snapshot = await source.poll()
    finally:
        await source.aclose()
    assert snapshot.error is not None and snapshot.error.kind is ErrorKind.BAD_RESPONSE
    assert "larger than 64 KiB" in snapshot.error.reason
    assert "larger than 64 KiB" in snapshot.queries[0].error.reason


async def test_secret_headers_sent_everywhere_and_never_shown(http_server: StubServer, sources: Any) -> None:
    token = "Bearer s3cr3t-t0ken-value"
    fake_prometheus(http_server, alerts={"status": 401, "body": f"bad credentials: {token}"})
    http_server.route("/am/api/v2/silences", json=[])
    http_server.route("/am/api/v2/alerts", json=[])
    source = sources(
        http_server.url(),
        query("q", "up"),
        headers={"Authorization": {"value": token, "secret": True}, "X-Org": "ops"},
        alertmanager_url=http_server.url("/am"),
    )
    snapshot = await source.poll()
    assert len(http_server.requests) == 6
    for request in http_server.requests:
        assert request.headers.get("Authorization") == token, request.path
        assert request.headers.get("X-Org") == "ops"
    assert snapshot.ok and snapshot.alertmanager_error is None
    assert [(name, str(error)) for name, error in snapshot.endpoint_errors] == [
        ("alerts", "auth failed: HTTP 401: bad credentials: ***")
    ]
    assert not any("s3cr3t" in text for text in strings(snapshot))


@pytest.mark.parametrize(
    ("route", "kind", "expected"),
    [
        ({"status": 503, "body": "down for maintenance"}, ErrorKind.BAD_RESPONSE, "HTTP 503"),
        (
            {"body": "<html>proxy login</html>", "content_type": "text/html"},
            ErrorKind.BAD_RESPONSE,
            "not JSON",
        ),
        ({"json": {"silences": []}}, ErrorKind.BAD_RESPONSE, "expected a JSON list"),
        ({"json": [], "delay": 2}, ErrorKind.TIMEOUT, "no answer in time"),
    ],
    ids=["503", "html", "wrong-shape", "slow"],
)
async def test_alertmanager_failures_stay_in_alertmanager_error(
    http_server: StubServer, sources: Any, route: dict[str, Any], kind: ErrorKind, expected: str
) -> None:
    fake_prometheus(http_server)
    http_server.route("/am/api/v2/silences", **route)
    source = sources(http_server.url(), query("q", "up"), alertmanager_url=http_server.url("/am"), timeout=1)
    snapshot = await source.poll()
    assert snapshot.ok and snapshot.queries[0].value == 3 and snapshot.warnings == ()
    assert snapshot.alertmanager_error is not None
    assert snapshot.alertmanager_error.kind is kind and expected in snapshot.alertmanager_error.reason


async def test_hostile_strings_are_sanitised(http_server: StubServer, sources: Any) -> None:
    hostile_labels = {"alertname": "Evil" + HOSTILE, "severity": "critical", "x\x1b[31m": HOSTILE}
    alert = {
        "labels": hostile_labels,
        "annotations": {"summary": HOSTILE, "description": "line one\n" + HOSTILE, "runbook_url": HOSTILE},
        "state": "firing" + HOSTILE,
        "activeAt": "2024-05-01T10:00:00.123456789Z",
        "value": HOSTILE,
    }
    rule = {"name": HOSTILE, "query": HOSTILE, "type": "alerting", "health": "err", "lastError": HOSTILE}
    target = {"labels": {"job": HOSTILE, "instance": HOSTILE}, "health": "down", "lastError": HOSTILE}
    silence = {
        "id": HOSTILE,
        "status": {"state": HOSTILE},
        "matchers": [{"name": HOSTILE, "value": HOSTILE, "isRegex": True, "isEqual": True}],
        "startsAt": HOSTILE,
        "endsAt": "2024-05-01T11:00:00Z",
        "createdBy": HOSTILE,
        "comment": HOSTILE + "\n" + HOSTILE,
    }
    fake_prometheus(
        http_server,
        query={"json": ok(vector((hostile_labels, "1")), warnings=[HOSTILE])},
        alerts={"json": ok({"alerts": [alert]})},
        rules={"json": ok({"groups": [{"name": HOSTILE, "file": HOSTILE, "rules": [rule]}]})},
        targets={"json": ok({"activeTargets": [target]})},
    )
    http_server.route("/am/api/v2/silences", json=[silence])
    am_alert = {
        "labels": hostile_labels,
        "annotations": {"summary": HOSTILE},
        "fingerprint": HOSTILE,
        "generatorURL": HOSTILE,
        "startsAt": HOSTILE,
        "status": {"state": HOSTILE, "silencedBy": [HOSTILE], "inhibitedBy": [HOSTILE, 7]},
    }
    http_server.route("/am/api/v2/alerts", json=[am_alert])
    bad = {"status": "error", "errorType": HOSTILE, "error": HOSTILE}
    http_server.route("/api/v1/query?query=bad", status=400, json=bad)
    source = sources(
        http_server.url(), query("q", "up"), query("bad", "bad"), alertmanager_url=http_server.url("/am")
    )
    snapshot = await source.poll()

    assert snapshot.ok and snapshot.alertmanager_error is None
    assert len(snapshot.alerts) == 1 and len(snapshot.silences) == 1 and len(snapshot.targets) == 1
    assert snapshot.alertmanager_alerts is not None and len(snapshot.alertmanager_alerts) == 1
    assert snapshot.queries[1].error is not None
    texts = list(strings(snapshot))
    assert len(texts) > 40
    for text in texts:
        assert not UNSAFE.search(text), repr(text)
    assert "[bold red]x[/]" in snapshot.alerts[0].annotation("summary")  # markup is text, left to Text()
    assert "␛" in snapshot.alerts[0].annotation("summary")  # controls made visible, not hidden
    assert snapshot.alerts[0].active_at == pytest.approx(1714557600.123457)
    assert snapshot.alerts[0].severity is Severity.CRITICAL
    assert "\n" in snapshot.alerts[0].annotation("description")
    assert snapshot.silences[0].starts_at is None and snapshot.silences[0].ends_at == 1714561200.0
    one_line_fields = [
        *(v for a in snapshot.alerts for _, v in a.labels),
        *(a.state for a in snapshot.alerts),
        *(r.name for g in snapshot.rule_groups for r in g.rules),
        *(r.last_error for g in snapshot.rule_groups for r in g.rules),
        *(t.last_error for t in snapshot.targets),
        *snapshot.silences[0].matchers,
        *(
            x
            for a in snapshot.alertmanager_alerts
            for x in (a.fingerprint, a.status, *a.silenced_by, *a.inhibited_by)
        ),
        *snapshot.warnings,
        snapshot.queries[1].error.reason,
    ]
    assert all("\n" not in text for text in one_line_fields)


async def test_huge_answers_are_capped_worst_first(http_server: StubServer, sources: Any) -> None:
    alerts = [
        {"labels": {"alertname": f"A{i}", "severity": "critical" if i == 4321 else "info"}, "state": "firing"}
        for i in range(5000)
    ]
    many_labels = {f"l{i:03}": "v" * (VALUE_LIMIT * 3) for i in range(200)}
    series = [({"i": str(i)}, str(i)) for i in range(300)] + [(many_labels, "1000")]
    fake_prometheus(http_server, query={"json": ok(vector(*series))}, alerts={"json": ok({"alerts": alerts})})
    snapshot = await sources(http_server.url(), query("q", "up")).poll()
    assert len(snapshot.alerts) == MAX_ITEMS
    assert snapshot.alerts[0].name == "A4321" and snapshot.alerts[0].severity is Severity.CRITICAL
    result = snapshot.queries[0]
    assert result.value == 1000 and len(result.samples) == MAX_SAMPLES
    assert [s.value for s in result.samples[:3]] == [1000, 299, 298]
    assert len(result.samples[0].labels) == MAX_LABELS
    assert all(len(v) <= VALUE_LIMIT for s in result.samples for _, v in s.labels)


async def test_poll_after_aclose_and_failed_snapshot(http_server: StubServer, sources: Any) -> None:
    fake_prometheus(http_server)
    source = sources(http_server.url("/"), query("q", "up"), alertmanager_url="http://user:pw@127.0.0.1:1/")
    assert (await source.poll()).queries[0].value == 3
    await source.aclose()
    assert (await source.poll()).queries[0].value == 3
    error = SourceError(ErrorKind.TIMEOUT, "poll took too long")
    failed = source.failed(error, 10.0, 1.5)
    assert isinstance(failed, PrometheusSnapshot) and failed.error is error
    assert (failed.source, failed.taken_at, failed.latency) == ("prometheus", 10.0, 1.5)
    assert failed.alertmanager_url == "http://user:***@127.0.0.1:1/"
    assert (source.key, source.kind, source.interval) == ("prometheus", "prometheus", 1.0)


# --- pure helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", 1714557600.0),
        ("2024-05-01T10:00:00.123456789Z", 1714557600.123456789),
        ("2024-05-01T12:00:00.5+02:00", 1714557600.5),
        ("2024-05-01T05:30:00-0430", 1714557600.0),
        ("0001-01-01T00:00:00Z", None),
        ("yesterday", None),
        ("", None),
        (None, None),
        (1714557600, 1714557600.0),
        (math.nan, None),
    ],
)
def test_parse_time(text: object, expected: float | None) -> None:
    result = parse_time(text)
    assert result == (pytest.approx(expected, abs=1e-6) if expected is not None else None)


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        ({"name": "job", "value": "api", "isRegex": False}, "job=api"),
        ({"name": "job", "value": "api|web", "isRegex": True, "isEqual": True}, "job=~api|web"),
        ({"name": "env", "value": "dev", "isRegex": False, "isEqual": False}, "env!=dev"),
        ({"name": "env", "value": "d.*", "isRegex": True, "isEqual": False}, "env!~d.*"),
    ],
)
def test_matcher_text(matcher: dict[str, Any], expected: str) -> None:
    assert matcher_text(matcher) == expected


def test_query_value_rule() -> None:
    samples = [Sample((("i", str(i)),), float(i)) for i in range(30)] + [Sample((), math.nan)]
    value, kept = query_value(samples, "above")
    assert value == 29 and kept[0].value == 29 and len(kept) == MAX_SAMPLES
    value, kept = query_value(samples, "below")
    assert value == 0 and [s.value for s in kept[:3]] == [0, 1, 2]
    value, kept = query_value([Sample((), math.nan)], "above")
    assert value is None and len(kept) == 1
    assert query_value([], "above") == (None, ())
    assert query_value([Sample((), math.inf), Sample((), 1.0)])[0] == math.inf
