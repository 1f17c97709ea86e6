"""Issue 19: the Prometheus estate as users run it.

Against the real Debian binaries: an HA pair of Prometheus servers (same rules) behind one
Alertmanager — firing alerts come from Alertmanager once, with their silenced and inhibited
state; pending ones from the servers, once; a rule that fails at evaluation is an ERROR breach
naming it; a pending critical does not make ``snapshot`` exit 2 (unless ``strict_pending``);
Alertmanager killed: the servers' own firing alerts stand in and Alertmanager is an ERROR.
Against a stub server: the bad answers a real server does not give on demand (a login page, a
redirect to one, a body of the wrong shape, 10,000 rules, a group slower than its interval).
And ``check-config`` on the two forms of ``prometheus:``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from console.config import Config
from console.estate import MAX_RULE_BREACHES
from console.model import ErrorKind, PrometheusSnapshot, Severity
from console.poller import ConsoleState, Poller
from console.report import render_text, to_json
from console.rules import Breach, State, exit_code
from console.sources.prometheus import MAX_ITEMS, PrometheusSource
from tests.fixtures.http_servers import StubServer
from tests.fixtures.prometheus import INHIBITED, INHIBITOR, prometheus_config
from tests.pilot import poll_until as polling

ROOT = Path(__file__).resolve().parent.parent
CLI = [str(ROOT / ".venv" / "bin" / "incident-console")]
RESEND = ("--rules.alert.resend-delay=1s",)
ERROR_TEXT = "vector contains metrics with the same labelset after applying alert labels"

# One rule file for both servers of the pair: every state an alert can be in.
RULES = {
    "groups": [
        {
            "name": "estate",
            "rules": [
                {"alert": "IcEstateFiring", "expr": "vector(42)", "labels": {"severity": "warning"}},
                {
                    "alert": "IcEstatePending",
                    "expr": "vector(1)",
                    "for": "1h",
                    "labels": {"severity": "critical"},
                },
                {"alert": "IcEstateSilenced", "expr": "vector(1)", "labels": {"severity": "warning"}},
                {"alert": INHIBITOR, "expr": "vector(1)", "labels": {"severity": "info"}},
                {"alert": INHIBITED, "expr": "vector(1)", "labels": {"severity": "warning"}},
                # Two series that the rule's own label makes identical: Prometheus cannot evaluate it.
                {
                    "alert": "IcEstateBroken",
                    "expr": 'label_replace(vector(1), "x", "a", "", "") or label_replace(vector(2), "x", "b", "", "")',
                    "labels": {"severity": "critical", "x": "same"},
                },
            ],
        }
    ]
}


def estate_config(tmp_path: Path, servers: list[tuple[str, str]], am: str, **top: Any) -> tuple[Config, Path]:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir(exist_ok=True)
    doc = {
        "environment": {"name": "estate"},
        "runbooks_dir": str(runbooks),  # none: the pack's variables are not this test's subject
        "journal": str(tmp_path / "journal.jsonl"),
        "refresh": {"prometheus": "1s"},
        "prometheus": [
            {"name": name, "url": url, "alertmanager_url": am, "timeout": "2s"} for name, url in servers
        ],
        **top,
    }
    path = tmp_path / ("strict.yaml" if top else "console.yaml")
    path.write_text(yaml.safe_dump(doc))
    return Config.model_validate(doc), path


def poll_until(
    poller: Poller, check: Callable[[ConsoleState], Any], timeout: float = 20
) -> Awaitable[ConsoleState]:
    def breaches(state: ConsoleState) -> Any:
        return [(b.id, b.state.value, b.origin) for b in state.breaches]

    return polling(poller.poll_all, check, timeout, breaches)


def named(state: ConsoleState, title: str) -> list[Breach]:
    return [b for b in state.breaches if b.title == title]


def snapshot_cli(path: Path, fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "snapshot", "--config", str(path), "--format", fmt], capture_output=True, text=True, timeout=60
    )


async def test_an_ha_pair_behind_one_alertmanager(tmp_path: Path, daemons) -> None:
    am = daemons("alertmanager")
    # Prometheus drops the alerts of its first evaluations (Alertmanager not discovered yet, 5 s)
    # and sends them again only after the resend delay (1 minute by default).
    a = daemons("prometheus", rules=RULES, alertmanager=am.url, args=RESEND)
    b = daemons("prometheus", rules=RULES, alertmanager=am.url, args=RESEND)
    now = datetime.now(UTC)
    silence = {
        "matchers": [{"name": "alertname", "value": "IcEstateSilenced", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=2)).isoformat(),
        "createdBy": "alice@ops",
        "comment": "known: [b]maintenance[/b]",
    }
    made = httpx.post(f"{am.url}/api/v2/silences", json=silence, timeout=5)
    assert made.status_code == 200, made.text
    silence_id = made.json()["silenceID"]
    config, path = estate_config(tmp_path, [("eu-a", a.url), ("eu-b", b.url)], am.url)
    poller = Poller(config)
    try:

        def settled(state: ConsoleState) -> bool:
            firing = named(state, "IcEstateFiring")
            inhibited = named(state, INHIBITED)
            return (
                len(firing) == 1
                and firing[0].origin == "alertmanager"
                and bool(inhibited and inhibited[0].inhibited_by)
                and bool(named(state, "IcEstateSilenced") and named(state, "IcEstateSilenced")[0].silenced_by)
                and len(named(state, "IcEstatePending")) == 1
                and sum(1 for x in state.breaches if x.kind == "rule") == 2
            )

        state = await poll_until(poller, settled)
        # Both servers sent every alert: each is one breach, read from Alertmanager.
        ids = [x.id for x in state.breaches]
        assert len(ids) == len(set(ids))
        for title in ("IcEstateFiring", "IcEstateSilenced", INHIBITOR, INHIBITED):
            [alert] = named(state, title)
            assert alert.state is State.FIRING and alert.origin == "alertmanager", alert
        # Alertmanager sends no value: Alertmanager's copy shows the server's (it was empty).
        assert named(state, "IcEstateFiring")[0].value_text == "42"
        [silenced] = named(state, "IcEstateSilenced")
        assert silenced.silenced_by == (silence_id,)
        [inhibited] = named(state, INHIBITED)
        assert inhibited.inhibited_by and not inhibited.silenced_by
        # Pending exists only in Prometheus: once for the pair, critical, and not firing.
        [pending] = named(state, "IcEstatePending")
        assert pending.state is State.PENDING and pending.severity is Severity.CRITICAL
        assert pending.origin == "prometheus"
        # The rule that cannot be evaluated: an ERROR per server, naming the rule and the error.
        broken = sorted((x for x in state.breaches if x.kind == "rule"), key=lambda x: x.source)
        assert [x.source for x in broken] == ["prometheus:eu-a", "prometheus:eu-b"]
        for x in broken:
            assert x.state is State.ERROR and "IcEstateBroken" in x.title and ERROR_TEXT in x.value_text
        # Each server under its name, with its rules (labels, severity, for).
        for key in ("prometheus:eu-a", "prometheus:eu-b"):
            snap = state.snapshots[key]
            rules = {r.name: r for g in snap.rule_groups for r in g.rules}
            assert (
                rules["IcEstatePending"].duration == 3600 and rules["IcEstatePending"].severity == "critical"
            )
            assert rules["IcEstatePending"].state == "pending"
            assert (
                rules["IcEstateBroken"].health == "err" and ERROR_TEXT in rules["IcEstateBroken"].last_error
            )
            assert snap.rule_groups[0].interval == 1 and snap.rule_groups[0].evaluation_time is not None
        # Pending is not firing: a pending critical counts as a warning for the exit code.
        assert exit_code(state.breaches) == 1
        assert exit_code(state.breaches, strict_pending=True) == 2
        text = render_text(state)
        assert "PROMETHEUS eu-a" in text and "PROMETHEUS eu-b" in text
        assert f"silenced by alice@ops until {(now + timedelta(hours=2)):%Y-%m-%d %H:%M}" in text
        assert "known: [b]maintenance[/b]" in text and "inhibited by 1 alert(s)" in text
        assert ERROR_TEXT in text and "worst: ▲ WARN" in text

        # The same through the command line, text and JSON; then the strict switch.
        done = snapshot_cli(path, "json")
        assert done.returncode == 1, done.stderr
        doc = json.loads(done.stdout)
        assert doc["exit_code"] == 1 and doc["worst"] == "warning"
        rule = next(
            r
            for g in doc["sources"]["prometheus:eu-a"]["rule_groups"]
            for r in g["rules"]
            if r["name"] == "IcEstatePending"
        )
        assert rule["duration"] == 3600 and rule["severity"] == "critical"
        assert ["severity", "critical"] in rule["labels"]
        _, strict_path = estate_config(
            tmp_path, [("eu-a", a.url), ("eu-b", b.url)], am.url, snapshot={"strict_pending": True}
        )
        done = snapshot_cli(strict_path, "text")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "IcEstateBroken fails to evaluate" in done.stdout and ERROR_TEXT in done.stdout

        # Alertmanager gone: the servers' own firing alerts stand in (once), Alertmanager is an ERROR.
        await asyncio.to_thread(am.kill)
        state = await poll_until(
            poller,
            lambda s: any(x.title == "Alertmanager" for x in s.breaches) and named(s, "IcEstateFiring"),
        )
        [firing] = named(state, "IcEstateFiring")
        assert firing.origin == "prometheus" and firing.state is State.FIRING
        [down] = [x for x in state.breaches if x.title == "Alertmanager"]
        assert down.state is State.ERROR and "unreachable" in down.value_text
        assert len(named(state, "IcEstatePending")) == 1
    finally:
        await poller.aclose()


# --- bad answers, from a stub ------------------------------------------------------------------


def ok(data: Any) -> dict[str, Any]:
    return {"status": "success", "data": data}


def stub_prometheus(
    server: StubServer, *, alerts: list[dict] | None = None, groups: list[dict] | None = None
) -> None:
    server.route(
        "/api/v1/query", json=ok({"resultType": "vector", "result": [{"metric": {}, "value": [1, "3"]}]})
    )
    server.route("/api/v1/alerts", json=ok({"alerts": alerts or []}))
    server.route("/api/v1/rules", json=ok({"groups": groups or []}))
    server.route("/api/v1/targets", json=ok({"activeTargets": []}))


FIRING = {
    "labels": {"alertname": "OwnFiring", "severity": "critical"},
    "annotations": {},
    "state": "firing",
    "activeAt": "2026-01-01T00:00:00Z",
    "value": "1",
}
LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in - Example SSO</title></head>"
    b'<body><form><input type="password" name="pw"></form></body></html>'
)


async def poll_once(url: str, **options: Any) -> PrometheusSnapshot:
    """One poll of a new source, closed after: left open, its client's sockets were collected
    as unclosed in whatever test ran next (the soak counted them as its own)."""
    options.setdefault("timeout", 2)
    source = PrometheusSource(prometheus_config(url, {"id": "q", "query": "up"}, **options), interval=1.0)
    try:
        return await source.poll()
    finally:
        await source.aclose()


def state_of(*snapshots) -> ConsoleState:
    config = Config.model_validate({"prometheus": {"url": "http://127.0.0.1:9"}})
    poller = Poller(config, sources=[])
    for snap in snapshots:
        poller.publish(snap)
    return poller.state


@pytest.mark.parametrize(
    ("route", "kind", "words"),
    [
        (
            {"body": LOGIN_PAGE, "content_type": "text/html"},
            ErrorKind.BAD_RESPONSE,
            "titled 'Sign in - Example SSO'",
        ),
        (
            {"status": 302, "headers": {"Location": "/oauth2/sign_in?rd=%2F"}},
            ErrorKind.AUTH_FAILED,
            "login page",
        ),
        ({"json": {"alerts": []}}, ErrorKind.BAD_RESPONSE, "expected a JSON list of alerts"),
    ],
    ids=["html-login-page", "redirect-to-login", "wrong-shape"],
)
async def test_a_bad_alertmanager_is_an_error_and_prometheus_alerts_stand_in(
    http_server: StubServer, route: dict[str, Any], kind: ErrorKind, words: str
) -> None:
    stub_prometheus(http_server, alerts=[FIRING])
    http_server.route("/am/api/v2/silences", json=[])
    http_server.route("/am/api/v2/alerts", **route)
    snap = await poll_once(http_server.url(), alertmanager_url=http_server.url("/am"))
    assert snap.ok and snap.queries[0].value == 3 and snap.alertmanager_alerts is None
    assert snap.alertmanager_error is not None and snap.alertmanager_error.kind is kind
    assert words in snap.alertmanager_error.reason, snap.alertmanager_error
    state = state_of(snap)
    assert [b.title for b in state.breaches if b.kind == "alert"] == ["OwnFiring"]  # the rest keeps working
    [am] = [b for b in state.breaches if b.title == "Alertmanager"]
    assert am.state is State.ERROR and words in am.value_text


async def test_a_prometheus_behind_a_login_says_so(http_server: StubServer) -> None:
    """A 3xx to a login page is not followed (queries through requests, the API through httpx);
    an HTML page answering 200 is named as such."""
    http_server.route("/api/v1/query", status=302, headers={"Location": "https://sso.example/login?next=/"})
    http_server.route("/api/v1/alerts", body=LOGIN_PAGE, content_type="text/html")
    http_server.route(
        "/api/v1/rules", status=301, headers={"Location": "http://elsewhere.example/api/v1/rules"}
    )
    http_server.route("/api/v1/targets", json=ok({"activeTargets": []}))
    snap = await poll_once(http_server.url())
    query_error = snap.queries[0].error
    assert query_error is not None and query_error.kind is ErrorKind.AUTH_FAILED
    assert "redirected to a login page (https://sso.example/login?next=%2F)" in query_error.reason
    errors = dict(snap.endpoint_errors)
    assert "not JSON (text/html): an HTML page titled 'Sign in - Example SSO'" in errors["alerts"].reason
    assert "login page" in errors["alerts"].reason
    assert errors["rules"].kind is ErrorKind.BAD_RESPONSE
    assert (
        "redirected to http://elsewhere.example/api/v1/rules (redirects are not followed"
        in errors["rules"].reason
    )
    assert [r.path for r in http_server.requests].count("/login") == 0  # nothing followed


async def test_ten_thousand_rules_are_capped_with_a_count_and_a_slow_group_warns(
    http_server: StubServer,
) -> None:
    rules = [
        {"name": f"R{i}", "query": "up", "type": "alerting", "state": "inactive", "health": "ok", "duration": 60,
         "labels": {"severity": "warning"}}
        for i in range(10_000)
    ]  # fmt: skip
    for i in range(0, 60, 2):
        rules[i] |= {"health": "err", "lastError": f"error {i}"}
    groups = [
        {"name": "huge", "file": "huge.yml", "interval": 30, "evaluationTime": 0.5, "rules": rules},
        {"name": "slow", "file": "slow.yml", "interval": 1, "evaluationTime": 2.5, "rules": []},
    ]
    stub_prometheus(http_server, groups=groups)
    snap = await poll_once(http_server.url())
    assert snap.rules_total == 10_000 and snap.rules_kept == MAX_ITEMS
    assert snap.rule_groups[0].rules_total == 10_000 and snap.rule_groups[1].slow
    state = state_of(snap)
    failing = [b for b in state.breaches if b.kind == "rule" and b.state is State.ERROR]
    assert len(failing) == MAX_RULE_BREACHES + 1  # one each, then one that counts the rest
    assert sum(1 for b in failing if b.title == "10 more rules fail to evaluate") == 1
    [slow] = [b for b in state.breaches if b.state is State.FIRING]
    assert (
        slow.severity is Severity.WARNING
        and "slow" in slow.title
        and "2.5s (interval 1.0s)" in slow.value_text
    )
    text = render_text(state)
    assert f"rules: 10000 in 2 groups ({MAX_ITEMS} of 10000 shown); 30 failing" in text
    assert "slower than its interval" in text
    doc = to_json(state)
    assert doc["sources"]["prometheus"]["rules_total"] == 10_000


# --- the config --------------------------------------------------------------------------------


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "check-config", str(path)], capture_output=True, text=True, timeout=60)


def test_check_config_takes_one_server_or_a_named_list_and_rejects_duplicate_names(tmp_path: Path) -> None:
    demo = ROOT / "config" / "console.yaml"
    base = yaml.safe_load(demo.read_text())
    base["runbooks_dir"] = str(ROOT / "config" / "runbooks")
    base["runbooks"] = {"seed_scenarios": str(ROOT / "config" / "seed-scenarios.yaml")}
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(base))
    done = check_config(single)
    assert done.returncode == 0, done.stdout + done.stderr

    listed = dict(base)
    one = dict(base["prometheus"], name="eu-1")
    listed["prometheus"] = [one, {"name": "eu-2", "url": "http://127.0.0.1:9091"}]
    path = tmp_path / "listed.yaml"
    path.write_text(yaml.safe_dump(listed, sort_keys=False))
    done = check_config(path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 Prometheus servers" in done.stdout

    listed["prometheus"] = [
        one,
        {"name": "eu-1", "url": "http://127.0.0.1:9091"},
        {"url": "http://127.0.0.1:9092"},
    ]
    path.write_text(yaml.safe_dump(listed, sort_keys=False))
    done = check_config(path)
    assert done.returncode == 2
    problems = done.stderr.splitlines()
    assert any("duplicate prometheus server name 'eu-1' (first defined at line" in p for p in problems), (
        problems
    )
    assert any(
        "missing required key 'name': every server of a prometheus: list is named" in p for p in problems
    )
    assert all(p.startswith(f"{path}:") for p in problems[:2]), problems


# --- the community's alert names open the right runbook -----------------------------------------

COMMUNITY_RUNBOOKS = {
    "PostgresqlDown": "supabase-connection-failure",
    "PostgresqlTooManyConnections": "connection-exhaustion",
    "PostgresqlDeadLocks": "lock-contention",
    "PostgresqlTooManyLocksAcquired": "lock-contention",
    "PostgresqlHighRollbackRate": "database-connection-diagnostics",
    "BlackboxProbeFailed": "health-check-failure",
    "BlackboxProbeHttpFailure": "health-check-failure",
    "BlackboxSlowProbe": "slow-responses",
    "HostOutOfMemory": "high-memory",
    "HostMemoryUnderMemoryPressure": "high-memory",
    "HostOomKillDetected": "high-memory",
}


def test_an_estate_running_the_community_rules_gets_the_right_runbook_first() -> None:
    from console.loader import load
    from console.runbooks.rank import relevant

    loaded = load(ROOT / "config" / "console.yaml")
    rules = yaml.safe_load((ROOT / "config" / "prometheus" / "exporters.yml").read_text())
    written = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert set(COMMUNITY_RUNBOOKS) <= written
    for name, runbook in COMMUNITY_RUNBOOKS.items():
        labels = (
            ("alertname", name),
            ("instance", "db-1:9187"),
            ("job", "exporters"),
            ("severity", "warning"),
        )
        breach = Breach(
            id=f"alert:{name}:x", kind="alert", source="prometheus", title=name, state=State.FIRING,
            severity=Severity.WARNING, since=0.0, labels=labels,
        )  # fmt: skip
        ranked = relevant(loaded.pack.rank(breach, loaded.config))
        assert ranked and ranked[0].runbook.id == runbook, (name, [(m.runbook.id, m.score) for m in ranked])
        assert ranked[0].why == f"alert {name}"
