"""The embedded demo stack (issue 4): real Postgres, Prometheus, Alertmanager and services.

The tests that need a running stack share one (``incident-console snapshot --format json``
reads what its console shows). That every scenario shows its breaches at their severity and is
cleared by its runbook's own actions is tests/test_runbooks_e2e.py's walk. Lifecycle tests
start stacks of their own and list processes to prove that nothing outlives a stop, whatever
stopped it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from console.demo import configwriter, rules
from console.demo.control import DemoControl, DemoError
from console.demo.dbfaults import DB_FAULTS
from console.demo.faults import FAULTS
from console.demo.scenarios import SCENARIOS
from console.demo.stack import _scraping
from console.demo.state import load_state_file, proc_start
from console.journal import read_journal
from console.loader import load_config
from tests.fixtures.demo import (
    CLI,
    DemoStack,
    attach_console,
    clusters_of,
    new_state_dir,
    remove_stack_dir,
    stack_processes,
    start_demo,
)
from tests.fixtures.prometheus import PROMTOOL_BIN, require_binary

#: The community rule sets' names that config/prometheus/exporters.yml must use (issue 19).
COMMUNITY_ALERTS = {
    "PostgresqlDown", "PostgresqlTooManyConnections", "PostgresqlDeadLocks", "PostgresqlHighRollbackRate",
    "BlackboxProbeFailed", "BlackboxSlowProbe", "BlackboxProbeHttpFailure", "BlackboxSslCertificateWillExpireSoon",
    "HostOutOfMemory",
}  # fmt: skip


# --- without a stack ------------------------------------------------------------------------


def test_rules_and_their_demo_copy_pass_promtool(tmp_path: Path) -> None:
    promtool = require_binary(PROMTOOL_BIN, "prometheus")
    demo_copy = rules.write_demo_rules(tmp_path / "rules.yml")
    exporters_copy = rules.write_demo_rules(tmp_path / "exporters.yml", rules.EXPORTER_RULES_FILE)
    files = [rules.RULES_FILE, demo_copy, rules.EXPORTER_RULES_FILE, exporters_copy]
    done = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    community = {r["alert"] for g in yaml.safe_load(exporters_copy.read_text())["groups"] for r in g["rules"]}
    assert community >= COMMUNITY_ALERTS, COMMUNITY_ALERTS - community
    names = {r["alert"] for g in yaml.safe_load(demo_copy.read_text())["groups"] for r in g["rules"]}
    # The three rules of seed 001 and every alert a scenario expects.
    assert {"HighErrorRate", "DatabaseConnectionFailure", "SyncJobFailure"} <= names
    expected = {e.id.split(":")[1] for s in SCENARIOS for e in s.expected if e.id.startswith("alert:")}
    assert expected <= names


def test_demo_rules_scale_windows_and_for() -> None:
    assert rules.scale_expr('rate(x{a="[5m]"}[5m]) > 0', 1 / 30).endswith("[10s]) > 0")
    assert rules.scale_expr("increase(x[10m])", 1 / 30) == "increase(x[20s])"
    assert (
        rules.scale_expr("max_over_time(x[1h:1m]) offset 30m", 1 / 30)
        == "max_over_time(x[120s:2s]) offset 60s"
    )
    assert rules.scale_expr("rate(x[1m])", 1 / 30) == "rate(x[5s])"  # never under MIN_WINDOW
    doc = rules.scale_rules(
        {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}]}, 1 / 30
    )
    assert doc["groups"][0]["rules"][0]["for"] == "10s"
    with pytest.raises(ValueError):
        rules.parse("5 minutes")


def test_every_scenario_has_a_fault_and_known_breach_ids(tmp_path: Path) -> None:
    assert len(SCENARIOS) >= 13
    for scenario in SCENARIOS:
        assert scenario.name in (DB_FAULTS if scenario.where == "db" else FAULTS), scenario.name
    ends = configwriter.Endpoints("http://a:1", "http://b:2", "http://c:3", "http://d:4", "http://e:5", 4, 5)
    config_file = configwriter.write_console_config(
        tmp_path / "console.yaml",
        configwriter.console_config(
            tmp_path, ends, "t0ken", "postgresql://u:p@127.0.0.1:1/shop", tmp_path / "flyctl"
        ),
    )
    config = load_config(config_file)
    ids = {t.id for t in config.thresholds()}
    for scenario in SCENARIOS:
        for expected in scenario.expected:
            if not expected.id.startswith("alert:"):
                assert expected.id in ids, expected
        # what `demo scenarios` and `demo inject` print: words, no unfilled {{template}} (issue 18)
        assert "{{" not in scenario.fix and "}}" not in scenario.fix, scenario.name
    # docs/demo-api.md: the variables the runbook pack uses.
    assert {
        "storefront_url",
        "sync_worker_url",
        "admin_token",
        "storefront_app",
        "sync_worker_app",
        "flyctl",
        "pg_cluster",
    } <= set(config.variables)
    assert config.variables["admin_token"].secret
    assert os.stat(config_file).st_mode & 0o077 == 0


# --- one shared stack -------------------------------------------------------------------------


def _poll(
    stack: DemoStack, done: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        doc = stack.snapshot()
        if done(doc):
            return doc
        time.sleep(0.3)
    seen = [(b["id"], b["severity"], b["state"]) for b in doc.get("breaches", [])]
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}; breaches: {seen}")


def test_control_lists_scenarios_and_refuses_unknown_ones(demo_stack: DemoStack) -> None:
    control = DemoControl.attach(demo_stack.state_dir)
    listed = control.scenarios()
    assert [s.name for s in listed] == [s.name for s in SCENARIOS]
    name, title, description, expected = listed[0]
    assert name and title and description and expected and listed[0].fix
    with pytest.raises(DemoError, match="unknown scenario"):
        control.inject("no-such-thing")
    assert control.config_path == demo_stack.config_path
    status = control.status()
    assert set(status.processes) == {
        "postgres",
        "prometheus",
        "alertmanager",
        "storefront",
        "sync-worker",
        "agent",
        "postgres-exporter",
        "blackbox-exporter",
        "node-exporter",
    }
    assert all(status.processes.values()), status.processes


def test_the_stack_is_ready_only_when_every_target_of_its_jobs_is_up(http_server) -> None:
    """The blackbox job has two targets (the two probed endpoints). The stack said ready once
    one of them was up, so the exporters test found the other not yet scraped under load."""

    def target(job: str, instance: str, health: str) -> dict[str, Any]:
        return {"labels": {"job": job, "instance": instance}, "health": health}

    jobs = ["storefront", "sync-worker", "postgres", "node"]
    targets = [target(job, job, "up") for job in jobs] + [target("blackbox", "/health", "up")]
    http_server.route("/-/ready", status=200, body=b"ready")
    http_server.route("/api/v1/targets", json={"status": "success", "data": {"activeTargets": targets}})
    with httpx.Client(timeout=5) as client:
        assert _scraping(client, http_server.url(""))  # one blackbox target, up
        targets.append(target("blackbox", "/actuator/health", "unknown"))  # not scraped yet
        http_server.route("/api/v1/targets", json={"status": "success", "data": {"activeTargets": targets}})
        assert not _scraping(client, http_server.url(""))
        targets[-1]["health"] = "up"
        http_server.route("/api/v1/targets", json={"status": "success", "data": {"activeTargets": targets}})
        assert _scraping(client, http_server.url(""))
        del targets[2]  # no postgres target at all
        http_server.route("/api/v1/targets", json={"status": "success", "data": {"activeTargets": targets}})
        assert not _scraping(client, http_server.url(""))


@pytest.mark.timeout(120)
def test_the_exporters_are_scraped_and_their_community_rules_fire(demo_stack: DemoStack) -> None:
    """Issue 19: the Debian exporters run in the stack, their targets are up when it says ready,
    every metric exporters.yml uses exists in what they export here, and under provider-down
    (the sync worker's health answers 503) the blackbox rules fire, read by the console from
    Alertmanager. How soon the stack is ready is a speed, not a behaviour: it is printed at
    start-up and kept in the state file, never asserted here (it failed under a loaded run)."""
    prometheus = demo_stack.control.urls["prometheus"]
    state = load_state_file(demo_stack.state_dir) or {}
    assert state.get("ready") is True and state.get("ready_seconds", 0) > 0, state

    def api(path: str, **params: str) -> Any:
        return httpx.get(f"{prometheus}/api/v1/{path}", params=params, timeout=5).json()["data"]

    targets = api("targets", state="active")["activeTargets"]
    up = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] == "up"}
    assert {"postgres", "node", "blackbox"} <= {job for job, _ in up}, targets
    urls = demo_stack.control.urls
    probed = {instance for job, instance in up if job == "blackbox"}
    assert probed == {f"{urls['storefront']}/health", f"{urls['sync-worker']}/actuator/health"}
    doc = yaml.safe_load(rules.EXPORTER_RULES_FILE.read_text())
    exprs = " ".join(r["expr"] for g in doc["groups"] for r in g["rules"])
    metrics = set(re.findall(r"\b((?:pg|probe|node)_[a-zA-Z0-9_]+)", exprs)) - {
        "probe_ssl_earliest_cert_expiry"
    }
    missing = [m for m in sorted(metrics) if not api("query", query=f"count({m})")["result"]]
    assert not missing, f"metrics the rules use that the exporters do not export: {missing}"

    demo_stack.control.inject("provider-down")
    try:
        wanted = {"BlackboxProbeFailed", "BlackboxProbeHttpFailure"}

        def fired(doc: dict[str, Any]) -> bool:
            return wanted <= {
                b["title"]
                for b in doc["breaches"]
                if b["state"] == "firing" and b["origin"] == "alertmanager"
            }

        doc = _poll(demo_stack, fired, 40, "the blackbox alerts, from Alertmanager")
        probe = next(b for b in doc["breaches"] if b["title"] == "BlackboxProbeFailed")
        assert (
            probe["severity"] == "critical"
            and ["instance", f"{urls['sync-worker']}/actuator/health"] in probe["labels"]
        )
    finally:
        demo_stack.control.reset()
    _poll(
        demo_stack,
        lambda doc: (
            not any(
                b["title"] in ("BlackboxProbeFailed", "BlackboxProbeHttpFailure") for b in doc["breaches"]
            )
        ),
        40,
        "the blackbox alerts to clear",
    )


def test_generated_config_passes_check_config(demo_stack: DemoStack) -> None:
    done = subprocess.run([*CLI, "check-config", str(demo_stack.config_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_admin_endpoints_need_the_token_and_flyctl_shim_answers(demo_stack: DemoStack) -> None:
    urls = demo_stack.control.urls
    assert httpx.post(f"{urls['storefront']}/admin/restart").status_code == 401
    assert httpx.post(f"{urls['agent']}/demo/faults/slow-queries").status_code == 401
    health = httpx.get(f"{urls['storefront']}/health")
    assert health.headers["content-type"].startswith("application/health+json")
    assert httpx.get(f"{urls['sync-worker']}/actuator/health").json()["status"] == "UP"
    metrics = httpx.get(f"{urls['sync-worker']}/metrics").text
    for name in ("http_requests_total", "http_request_duration_seconds_bucket", "sync_jobs_failed_total",
                 "sync_success_ratio", "queue_depth", "upstream_requests_total", "integration_up",
                 "db_connection_up", "idempotency_duplicates_detected_total", "auto_reply_sent_total"):  # fmt: skip
        assert name in metrics, name
    flyctl = load_config(demo_stack.config_path).variables["flyctl"].value
    for argv in (["status", "-a", "storefront"], ["releases", "-a", "sync-worker"]):
        done = subprocess.run([flyctl, *argv], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    assert subprocess.run([flyctl, "restart", "nope"], capture_output=True, timeout=30).returncode != 0
    # One machine, as seed 003 restarts it: the id `status` lists, or an error naming the real one.
    machine = [flyctl, "machine", "restart"]
    done = subprocess.run(
        [*machine, "storefront-1", "-a", "storefront"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "machine storefront-1 restarted" in done.stdout, done.stderr
    done = subprocess.run(
        [*machine, "storefront-9", "-a", "storefront"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1 and "machines: storefront-1" in done.stderr


def test_a_second_demo_says_one_runs_and_how_to_attach(demo_stack: DemoStack) -> None:
    for extra in (["--no-ui"], []):
        done = subprocess.run(
            [*CLI, "demo", *extra, "--state-dir", str(demo_stack.state_dir)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        assert done.returncode == 4, done.stdout + done.stderr
        assert "already running" in done.stderr and str(demo_stack.config_path) in done.stderr
    assert "--attach" in done.stderr
    assert demo_stack.demo.process.poll() is None  # the first one is untouched


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_demo_console_journals_in_its_state_dir_not_the_users(
    demo_stack: DemoStack, tmp_path: Path
) -> None:
    xdg = tmp_path / "xdg"
    users_journal = xdg / "incident-console" / "journal.jsonl"
    demo_journal = demo_stack.state_dir / "journal.jsonl"
    breach = "postgres.demo.idle_in_transaction"
    console = attach_console(demo_stack.state_dir, {"XDG_STATE_HOME": str(xdg)})
    try:
        console.read_until(b"Breaches", 60)
        demo_stack.control.inject("idle-in-transaction")
        deadline = time.monotonic() + 60
        while not any(e.get("breach") == breach for e in _journal_events(demo_journal)):
            where = f"the user's journal holds {len(_journal_events(users_journal))} event(s)"
            assert time.monotonic() < deadline, f"no {breach} in {demo_journal} after 60s; {where}"
            console.pump(0.3)
        assert console.quit() == 0
    finally:
        console.close()
        demo_stack.control.reset()
    assert not users_journal.exists(), _journal_events(users_journal)
    started = [e for e in _journal_events(demo_journal) if e.get("breach") == breach]
    assert {e["environment"] for e in started} == {"demo"}
    assert load_config(demo_stack.config_path).journal_path() == demo_journal


# --- life cycle: stacks of their own ------------------------------------------------------------


@pytest.fixture(scope="module")
def lifecycle_dir() -> Iterator[Path]:
    """One state dir for the lifecycle tests: initdb happens once, the rest reuse the cluster;
    removed at the end with its cluster (in /tmp when the tests run as root)."""
    state_dir = new_state_dir("ic-demo-life-")
    yield state_dir
    remove_stack_dir(state_dir)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_leaves_no_process(lifecycle_dir: Path, sig: signal.Signals) -> None:
    demo = start_demo(lifecycle_dir)
    # Postgres, Prometheus, Alertmanager, the two services, the agent and the three exporters
    assert len(demo.groups) == 9 and stack_processes(demo.markers, demo.groups)
    code = demo.stop(sig)
    assert code == 0, demo.output()
    left = demo.leftovers()
    assert not left, f"left after {sig.name}:\n" + "\n".join(left)
    assert load_state_file(lifecycle_dir) is None


@pytest.mark.slow
def test_a_killed_supervisor_takes_its_children_and_the_next_start_cleans_up(lifecycle_dir: Path) -> None:
    demo = start_demo(lifecycle_dir)
    demo.stop(signal.SIGKILL)
    left = demo.leftovers(timeout=20)  # PR_SET_PDEATHSIG: every child stops on its own
    assert not left, "left after SIGKILL of the supervisor:\n" + "\n".join(left)
    state = load_state_file(lifecycle_dir)
    assert state is not None, "a killed supervisor cannot remove its state file"

    # A leftover that survived (pdeathsig is Linux-only): recorded in the stale state file.
    straggler = subprocess.Popen(["sleep", "300"], process_group=0)
    try:
        state["children"]["straggler"] = {
            "pid": straggler.pid,
            "pgid": straggler.pid,
            "start": proc_start(straggler.pid),
        }
        (lifecycle_dir / "state.json").write_text(__import__("json").dumps(state))
        again = start_demo(lifecycle_dir)
        assert "cleaned up after an earlier run" in again.output()
        assert straggler.wait(timeout=10) == -signal.SIGKILL
        assert again.stop() == 0
        assert not again.leftovers()
    finally:
        if straggler.poll() is None:
            straggler.kill()


def test_commands_need_a_running_stack(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "demo", "--state-dir", str(tmp_path), "status"], capture_output=True, text=True
    )
    assert done.returncode == 1 and "no demo stack runs" in done.stderr
    with pytest.raises(Exception, match="no demo stack runs"):
        DemoControl.attach(tmp_path)


# --- a restarted demo, the demo's journal, demo clean (issue 15) --------------------------------


def _alerts(prometheus: str, name: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == name]


def _silences(alertmanager: str) -> list[dict[str, Any]]:
    silences = httpx.get(f"{alertmanager}/api/v2/silences", timeout=5).json()
    return [s for s in silences if s["status"]["state"] != "expired"]


def _journal_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [dict(e.raw) for e in read_journal(path).events]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_restarted_demo_shows_only_its_own_run_and_attach_keeps_it(
    lifecycle_dir: Path, tmp_path: Path
) -> None:
    demo = start_demo(lifecycle_dir)
    try:
        control = DemoControl.attach(lifecycle_dir)
        prometheus, alertmanager = control.urls["prometheus"], control.urls["alertmanager"]
        control.inject("provider-down")
        deadline = time.monotonic() + 60
        while not any(a["state"] == "firing" for a in _alerts(prometheus, "IntegrationDown")):
            assert time.monotonic() < deadline, "IntegrationDown did not fire within 60s of provider-down"
            time.sleep(0.5)
        (old_alert,) = [a for a in _alerts(prometheus, "IntegrationDown") if a["state"] == "firing"]
        old_instance = old_alert["labels"]["instance"]
        now = time.time()
        created = httpx.post(
            f"{alertmanager}/api/v2/silences",
            json={
                "matchers": [
                    {"name": "alertname", "value": "IntegrationDown", "isRegex": False, "isEqual": True}
                ],
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 5)),
                "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
                "createdBy": "test",
                "comment": "the previous run's ack",
            },
            timeout=5,
        )
        assert created.status_code == 200, created.text

        # A console attached to the running stack (its own process, a real terminal) changes nothing.
        console = attach_console(lifecycle_dir, {"XDG_STATE_HOME": str(tmp_path / "xdg")})
        try:
            console.read_until(b"IntegrationDown", 60)
            assert console.quit() == 0
        finally:
            console.close()
        assert any(a["state"] == "firing" for a in _alerts(prometheus, "IntegrationDown"))
        assert [s["id"] for s in _silences(alertmanager)] == [created.json()["silenceID"]]
        assert demo.stop() == 0
        assert not demo.leftovers()
    finally:
        demo.stop()

    again = start_demo(lifecycle_dir)
    try:
        assert "creating the shop database" not in again.output()  # the cluster is reused
        control = DemoControl.attach(lifecycle_dir)
        prometheus, alertmanager = control.urls["prometheus"], control.urls["alertmanager"]
        # The previous run's series ended ~seconds ago, well inside Prometheus' 5-minute lookback:
        # with its TSDB kept, IntegrationDown fired again at once for the old instance.
        alerts: set[tuple[str, str]] = set()
        silences: set[str] = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (alerts and silences):
            alerts |= {
                (a["labels"].get("instance", ""), a["state"]) for a in _alerts(prometheus, "IntegrationDown")
            }
            silences |= {f"{s['id']} {s['comment']!r}" for s in _silences(alertmanager)}
            time.sleep(0.5)
        assert not alerts and not silences, (
            f"from the previous run (instance {old_instance}): IntegrationDown {sorted(alerts)}, "
            f"silences {sorted(silences)}"
        )
        old = httpx.get(
            f"{prometheus}/api/v1/query",
            params={"query": f'last_over_time(integration_up{{instance="{old_instance}"}}[1h])'},
            timeout=5,
        ).json()["data"]["result"]
        assert old == [], f"the previous run's samples are still in the TSDB: {old}"
        doc = DemoStack(again, control).snapshot()
        assert not [b["id"] for b in doc["breaches"] if "IntegrationDown" in b["id"]], doc["breaches"]
        assert again.stop() == 0
    finally:
        again.stop()


def _temp_clusters() -> dict[Path, int]:
    """Every incident-console-demo-* dir in the temp dir, with its size in bytes."""
    sizes = {}
    for path in Path("/tmp").glob("incident-console-demo-*"):
        done = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, timeout=60)
        sizes[path] = int(done.stdout.split()[0]) if done.returncode == 0 else 0
    return sizes


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_clean_stops_the_stack_and_removes_every_trace(lifecycle_dir: Path) -> None:
    before = _temp_clusters()
    demo = start_demo(lifecycle_dir)
    pg_dir = Path(load_state_file(lifecycle_dir)["postgres"]["dir"])
    assert pg_dir.is_dir() and clusters_of(lifecycle_dir) == [pg_dir]
    done = subprocess.run(
        [*CLI, "demo", "--state-dir", str(lifecycle_dir), "clean"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert demo.process.wait(timeout=30) == 0, demo.output()  # the stack stopped first, cleanly
    assert not demo.leftovers()
    assert not lifecycle_dir.exists() and not pg_dir.exists(), done.stdout
    assert clusters_of(lifecycle_dir) == []
    after = _temp_clusters()
    print(
        f"temp-dir clusters before: {len(before)} ({sum(before.values()) / 2**20:.0f} MiB), "
        f"after: {len(after)} ({sum(after.values()) / 2**20:.0f} MiB); removed: {done.stdout.strip()}"
    )
    assert pg_dir not in after


def test_an_orphaned_cluster_is_swept_and_a_claimed_one_kept(tmp_path: Path) -> None:
    """A temp-dir cluster whose state dir is gone (removed by hand, or by a run that died before
    its clean-up) is removed at the next start or clean; one whose state dir exists is kept."""
    token = os.urandom(4).hex()
    orphan = Path(f"/tmp/incident-console-demo-test-orphan-{token}")
    claimed = Path(f"/tmp/incident-console-demo-test-claimed-{token}")
    gone_state = Path(f"/tmp/ic-demo-test-gone-{token}")
    try:
        for directory, owner in ((orphan, gone_state), (claimed, tmp_path)):
            (directory / "data").mkdir(parents=True)
            (directory / "data" / "PG_VERSION").write_text("15\n")
            (directory / "state-dir").write_text(f"{owner}\n")
        # A --state-dir that is no demo state dir (no demo.lock), like a home: its bin/ and logs/
        # are not the demo's to remove.
        home = tmp_path / "home"
        for name in ("bin", "logs"):
            (home / name).mkdir(parents=True)
        done = subprocess.run(
            [*CLI, "demo", "--state-dir", str(home), "clean"], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert not orphan.exists(), done.stdout
        assert claimed.is_dir()
        assert (home / "bin").is_dir() and (home / "logs").is_dir(), done.stdout
        assert "is no demo state dir" in done.stdout
    finally:
        for directory in (orphan, claimed):
            shutil.rmtree(directory, ignore_errors=True)
