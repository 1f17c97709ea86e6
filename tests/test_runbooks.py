"""The runbook pack: it loads, every step renders and dry-runs on the demo stack, breaches find
the right runbook, bad files say where, and a run's progress is read back from the journal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.actions import Confirmation, Executor, Status
from console.journal import ActionConfirmed, Journal, Operator
from console.loader import load_config
from console.model import HealthCheck, HealthStatus, Severity
from console.rules import Breach, State
from console.runbooks import (
    ActionStep,
    Pack,
    RunbookSession,
    StepState,
    breach_provider,
    load_pack,
    pack_for,
    runbook_files,
)
from tests.fixtures.demo import DemoStack
from tests.fixtures.http_servers import StubServer

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "console.yaml"
SEEDS = ROOT.parent / "shared" / "seeds"
OPERATOR = Operator("alice", "10.0.0.5", "console-host")


@pytest.fixture(scope="module")
def pack() -> Pack:
    return pack_for(load_config(CONFIG))


# --- the pack loads -----------------------------------------------------------------------------


def test_every_runbook_file_loads_without_a_problem() -> None:
    config = load_config(CONFIG)
    pack, problems = load_pack(config.runbooks_path, config.variables.keys())
    assert [str(p) for p in problems] == []
    files = runbook_files(config.runbooks_path)
    assert len(files) >= 41
    assert len(pack.runbooks) == len(files)
    # One runbook a file, named after its id: `runbook show ID` and the file agree.
    assert {rb.id: f"{rb.id}.yaml" for rb in pack.runbooks} == dict(pack.files)
    for runbook in pack.runbooks:
        assert runbook.steps, runbook.id
        assert runbook.source is not None, runbook.id
        if runbook.source.seed:  # else added beyond the seeds, saying why
            assert (SEEDS / runbook.source.file).is_file() or not SEEDS.is_dir(), runbook.source


def test_the_pack_covers_all_five_sources_and_every_step_kind(pack: Pack) -> None:
    sources = {rb.source.file for rb in pack.runbooks if rb.source and rb.source.seed}
    assert {s[:3] for s in sources} == {"000", "001", "002", "003", "004"}
    kinds = {step.kind for rb in pack.runbooks for step in rb.steps}
    assert kinds == {"check", "action", "manual", "wait", "escalate"}
    actions = {step.action.kind for rb in pack.runbooks for step in rb.steps if isinstance(step, ActionStep)}
    assert {"sql", "signal", "http", "argv"} <= actions
    # Escalation levels by elapsed time (seed 000) and the post-incident checklists exist.
    assert any(lvl.after for rb in pack.runbooks for lvl in rb.escalation if lvl.after)
    assert sum(1 for rb in pack.runbooks if rb.post_incident) >= 30


def test_the_demo_scenarios_each_have_their_runbook(pack: Pack) -> None:
    for runbook_id in (
        "lock-contention",
        "idle-in-transaction",
        "provider-down",
        "oauth-expired",
        "partial-sync-failures",
        "downstream-rate-limit",
        "error-spike",
    ):
        assert pack.get(runbook_id) is not None, runbook_id


# --- every step renders and dry-runs against the demo stack --------------------------------------


def _service_state(stack: DemoStack) -> dict[str, Any]:
    """What an action would change on the demo services: switches, restarts, integrations."""
    config = load_config(stack.config_path)
    token = config.variables["admin_token"].value
    headers = {"Authorization": f"Bearer {token}"}
    out = {}
    for name in ("storefront", "sync-worker"):
        base = stack.control.urls[name]
        status = httpx.get(f"{base}/admin/status", headers=headers, timeout=10).json()
        integrations = httpx.get(f"{base}/api/v1/integrations/status", timeout=10).json()
        out[name] = {
            "restarts": status["restarts"],
            "mode": status["mode"],
            "kill_switch": status["kill_switch"],
            "integrations": integrations,
        }
    return out


def _switches(state: dict[str, Any]) -> dict[str, Any]:
    def strip(entry: Any) -> Any:
        if isinstance(entry, dict):
            return {
                k: strip(v)
                for k, v in entry.items()
                if k
                in ("restarts", "mode", "kill_switch", "integrations", "enabled", "polling_interval_seconds")
                or isinstance(v, dict | list)
            }
        if isinstance(entry, list):
            return [strip(v) for v in entry]
        return entry

    return strip(state)


#: Inputs with no default: the operator reads them off an earlier step's output and sets them.
SET_BY_HAND = {
    "previous_image": "registry.fly.io/storefront:v41",
    "since": "2026-12-01T00:00:00Z",
    "queryid": "42",
    "machine": "storefront-1",
    "normal_interval": "60",
}


async def test_every_step_renders_and_every_action_dry_runs_on_the_demo_stack(
    demo_stack: DemoStack, tmp_path: Path
) -> None:
    config = load_config(demo_stack.config_path)
    pack = pack_for(config)
    journal = Journal(tmp_path / "journal.jsonl", operator=OPERATOR, environment="demo")
    executor = Executor(config, journal)
    before = _service_state(demo_stack)
    dry_runs = 0
    for runbook in pack.runbooks:
        session = await RunbookSession.open(runbook, executor, new=True)
        for view in session.inputs():
            if view.value is None:  # what the operator sets with `i`: nothing runs without it
                await session.set_input(view.name, SET_BY_HAND[view.name])
        for step in runbook.steps:
            lines = session.describe(step)
            assert not any(line.startswith("cannot render") for line in lines), (runbook.id, step.id, lines)
            if step.kind in ("check", "action", "wait"):
                plan = session.plan(step)
                assert plan.lines and plan.summary, (runbook.id, step.id)
                assert config.variables["admin_token"].value not in "\n".join(plan.lines)
            if not isinstance(step, ActionStep):
                continue
            result = await session.dry_run(step)
            assert result.status == Status.DRY_RUN, (runbook.id, step.id, result.message, result.lines)
            dry_runs += 1
    assert dry_runs >= 50
    events = journal.read().events
    assert sum(1 for e in events if e.kind == "action.dry_run") == dry_runs
    # Nothing ran: no action was confirmed, and the services' switches are as they were.
    assert not [e for e in events if e.kind in ("action.confirmed", "action.succeeded", "action.failed")]
    assert _switches(_service_state(demo_stack)) == _switches(before)
    assert config.variables["admin_token"].value not in journal.path.read_text()


# --- ranking ------------------------------------------------------------------------------------

# Breaches shaped like the ones the sources produce on the demo stack (copied from a real run).


async def test_the_slow_statement_is_re_checked_itself_and_not_having_run_again_is_no_pass(
    demo_stack: DemoStack, tmp_path: Path
) -> None:
    """Seed 001, slow queries: the runbook resets the statistics of the statements above 100 ms,
    then waited and read the worst mean of what was left, below 100 ms by construction: the fix
    "passed" whether or not it worked. The wait now re-reads the breach's own statement (its
    queryid, from the breach's subject), and no row (it has not run since) is no pass."""
    config = load_config(demo_stack.config_path)
    runbook = pack_for(config).get("slow-database-queries")
    breach = _breach(
        "postgres.demo.mean_statement_time", source="postgres:demo", subject="queryid 4242", value=900.0
    )
    session = await RunbookSession.open(
        runbook, Executor(config, Journal(tmp_path / "journal.jsonl", operator=OPERATOR)), breach=breach
    )
    assert session.context.get("queryid").text == "4242"
    recheck = next(step for step in runbook.steps if step.kind == "wait")
    checked = runbook.step(recheck.wait.check)
    assert checked.check.sql.params == ["{{queryid}}"]
    result = await session.execute(recheck)
    assert result.status is not Status.PASSED and "no data" in result.message, result.message


def _breach(breach_id: str, **fields: Any) -> Breach:
    defaults: dict[str, Any] = {
        "kind": "threshold",
        "source": "prometheus",
        "title": breach_id,
        "state": State.FIRING,
        "severity": Severity.CRITICAL,
        "since": 1_800_000_000.0,
    }
    return Breach(id=breach_id, **(defaults | fields))


def _failing(**checks: str) -> tuple[HealthCheck, ...]:
    """A health breach's checks that do not pass, as the health source reports them."""
    return tuple(HealthCheck(name, HealthStatus(status)) for name, status in checks.items())


def _alert(name: str, **labels: str) -> Breach:
    labels = {"alertname": name, "job": "sync-worker", "instance": "127.0.0.1:34487", **labels}
    return _breach(
        f"alert:{name}:0e90870dff",
        kind="alert",
        title=name,
        subject=", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname"),
        labels=tuple(sorted(labels.items())),
    )


RANKING = [
    (_breach("postgres.demo.waiting", source="postgres:demo", subject="pid 4242", pid=4242), "lock-contention"),
    (_breach("postgres.main.idle_in_transaction", source="postgres:main"), "idle-in-transaction"),
    (_breach("postgres.demo.long_running", source="postgres:demo"), "long-running-query"),
    (_breach("postgres.demo.connections", source="postgres:demo"), "connection-exhaustion"),
    (_breach("postgres.demo.mean_statement_time", source="postgres:demo"), "slow-database-queries"),
    (_breach("prometheus.error_rate", subject="job=storefront"), "error-spike"),
    (_alert("HighErrorRate", job="storefront"), "error-spike"),
    (_alert("IntegrationDown", provider="hubspot"), "provider-down"),
    (_alert("IntegrationDown", provider="chatwoot", job="storefront"), "chatwoot-unavailable"),
    (_alert("IntegrationDown", provider="openai"), "llm-provider-outage"),
    (_alert("IntegrationDown", provider="shopee"), "platform-api-errors"),
    (_alert("UpstreamAuthFailing", provider="hubspot"), "oauth-expired"),
    (_alert("SyncJobFailure", provider="hubspot"), "partial-sync-failures"),
    (_alert("SyncJobFailure", provider="shopee"), "product-sync-failure"),
    (_alert("UpstreamRateLimited", provider="richpanel"), "downstream-rate-limit"),
    (_alert("UpstreamRateLimited", provider="hubspot"), "rate-limit-exhaustion"),
    (_alert("UpstreamRateLimited", provider="shopify", job="storefront"), "shopify-rate-limit"),
    (_breach("prometheus.upstream_429_rate", subject="job=sync-worker, provider=richpanel"), "downstream-rate-limit"),
    (_alert("ApiQuotaHigh", provider="google-analytics", job="storefront"), "ga-quota-exhausted"),
    (_alert("DuplicateEventsDetected", provider="richpanel"), "duplicate-events"),
    (_alert("WebhookSignatureFailures", provider="webhooks", job="storefront"), "webhook-signature-failure"),
    (_alert("DatabaseConnectionFailure"), "supabase-connection-failure"),
    (_breach("prometheus.sync_success_ratio", subject="instance=127.0.0.1:34487, job=sync-worker"), "partial-sync-failures"),
    # A failing health target: the failing check names the integration (summary as the source writes it).
    (_breach("health.sync-worker", source="health:sync-worker", subject="sync-worker", summary="hubspot: fail", checks=_failing(hubspot="fail")), "provider-down"),
    (_breach("health.storefront", source="health:storefront", subject="storefront", summary="demo storefront; chatwoot:api: fail", checks=_failing(**{"chatwoot:api": "fail"})), "chatwoot-unavailable"),
    (_breach("health.storefront", source="health:storefront", severity=Severity.WARNING, subject="storefront", summary="demo storefront; google-analytics:api: warn", checks=_failing(**{"google-analytics:api": "warn"})), "ga-quota-exhausted"),
    # The console cannot reach the database at all: every threshold of the cluster is in error.
    (_breach("postgres.demo.connections", source="postgres:demo", state=State.ERROR), "supabase-connection-failure"),
    # ... shown as the one ERROR row of the cluster (issue 18)
    (_breach("postgres.demo.source", kind="source", source="postgres:demo", state=State.ERROR, severity=Severity.UNKNOWN), "supabase-connection-failure"),
]  # fmt: skip


@pytest.mark.parametrize(("breach", "expected"), RANKING, ids=lambda x: x.id if isinstance(x, Breach) else x)
def test_a_breach_ranks_its_runbook_first(pack: Pack, breach: Breach, expected: str) -> None:
    ranked = pack.rank(breach)
    assert ranked, f"no runbook for {breach.id}"
    top = [(m.runbook.id, m.score, m.why) for m in ranked[:4]]
    assert ranked[0].runbook.id == expected, top
    assert ranked[0].why
    scores = [m.score for m in ranked]
    assert scores == sorted(scores, reverse=True)


def test_ranking_explains_labels_and_providers_and_a_config_link_wins(pack: Pack) -> None:
    chatwoot = pack.rank(_alert("IntegrationDown", provider="chatwoot"))[0]
    assert chatwoot.why == "alert IntegrationDown (provider=chatwoot); integration chatwoot"
    # A runbook for other integrations is still listed, but below those that fit.
    ranked = [m.runbook.id for m in pack.rank(_alert("UpstreamRateLimited", provider="hubspot"))]
    assert ranked.index("rate-limit-exhaustion") < ranked.index("shopify-api-errors")
    linked = _breach("prometheus.error_rate", runbooks=("cache-recovery",))
    first = pack.rank(linked)[0]
    assert (first.runbook.id, first.why) == ("cache-recovery", "linked to this threshold in the config")
    assert pack.rank(_breach("something.else", source="elsewhere")) == []


def test_the_provider_of_a_health_breach_is_the_failing_integration() -> None:
    health = _breach(
        "health.storefront", source="health:storefront", checks=_failing(**{"google-analytics:api": "warn"})
    )
    assert breach_provider(health) == "google-analytics"
    assert breach_provider(_breach("health.x", source="health:x", checks=_failing(database="fail"))) == ""
    # the words of the summary are for people: nothing reads the provider back from them
    assert breach_provider(_breach("health.x", source="health:x", summary="hubspot: fail")) == ""
    assert breach_provider(_alert("IntegrationDown", provider="hubspot")) == "hubspot"


# --- bad runbook files ----------------------------------------------------------------------------

GOOD_CONFIG = """\
variables:
  base_url: http://127.0.0.1:1
postgres:
  - name: main
    dsn: postgresql://postgres@127.0.0.1:5432/postgres
"""

BAD = {
    "unknown-step-kind": (
        """\
id: bad
title: Bad
steps:
  - id: s1
    title: one
    launch: {argv: [ls]}
""",
        6,
        5,
        "unknown key 'launch' in steps[0] (allowed: id, title, text, check, action, manual, wait, escalate)",
    ),
    "no-step-kind": (
        """\
id: bad
title: Bad
steps:
  - id: s1
    title: one
""",
        4,
        5,
        "steps[0]: a step is exactly one of: check, action, manual, wait, escalate",
    ),
    "unknown-variable": (
        """\
id: bad
title: Bad
steps:
  - id: s1
    title: one
    check:
      http: {url: "{{base_ur}}/health"}
""",
        7,
        19,
        "unknown variable 'base_ur': define it under 'variables:' in the config (or as an input of this runbook)",
    ),
    "sql-template": (
        """\
id: bad
title: Bad
steps:
  - id: s1
    title: one
    action:
      sql:
        cluster: main
        statement: "DELETE FROM jobs WHERE name = '{{base_url}}'"
""",
        9,
        20,
        "steps[0].action.sql.statement: SQL text cannot hold {{variables}}: use $1, $2 ... and pass the values in 'params'",
    ),
    "duplicate-step-id": (
        """\
id: bad
title: Bad
steps:
  - {id: s1, title: one, manual: {}}
  - {id: s1, title: two, manual: {}}
""",
        5,
        10,
        "duplicate step id 's1' (also steps[0])",
    ),
    "bad-template": (
        """\
id: bad
title: Bad
steps:
  - id: s1
    title: one
    check:
      http: {url: "{{base_url}/health"}
""",
        7,
        19,
        "unbalanced '{{' or '}}'",
    ),
    "wait-on-unknown-check": (
        """\
id: bad
title: Bad
steps:
  - {id: s1, title: one, wait: {seconds: 5, check: nope}}
""",
        4,
        52,
        "wait.check 'nope' is not a check step of this runbook",
    ),
}


def _write_pack(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "runbooks").mkdir()
    for name, text in files.items():
        (tmp_path / "runbooks" / name).write_text(text)
    config = tmp_path / "console.yaml"
    config.write_text(GOOD_CONFIG)
    return config


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_runbook_file_is_one_line_with_its_position(tmp_path: Path, case: str) -> None:
    text, line, col, message = BAD[case]
    config = _write_pack(tmp_path, {"bad.yaml": text, "good.yaml": "id: good\ntitle: Good\nsteps: []\n"})
    pack, problems = load_pack(tmp_path / "runbooks", ["base_url"])
    assert [str(p) for p in problems] == [f"{tmp_path / 'runbooks' / 'bad.yaml'}:{line}:{col}: {message}"]
    assert pack.ids == {"good"}  # the good file still loads
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "check-config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"{tmp_path / 'runbooks' / 'bad.yaml'}:{line}:{col}: {message}"]


def test_a_duplicate_runbook_id_names_the_other_file(tmp_path: Path) -> None:
    _write_pack(
        tmp_path,
        {
            "a.yaml": "id: same\ntitle: A\nsteps: []\n",
            "b.yaml": "# the copy\nid: same\ntitle: B\nsteps: []\n",
        },
    )
    pack, problems = load_pack(tmp_path / "runbooks", ["base_url"])
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'runbooks' / 'b.yaml'}:2:5: duplicate runbook id 'same' (also in a.yaml)"
    ]
    assert pack.files == {"same": "a.yaml"}


def test_yaml_garbage_and_a_non_mapping_are_one_line_each(tmp_path: Path) -> None:
    _write_pack(
        tmp_path,
        {
            "a.yaml": "id: [unclosed\n",
            "b.yaml": "- just\n- a list\n",
            "c.yaml": b"\xff\xfe\x00".decode("latin-1"),
        },
    )
    pack, problems = load_pack(tmp_path / "runbooks", ["base_url"])
    assert pack.runbooks == ()
    assert len(problems) == 3
    for problem in problems:
        assert re.match(r"^/.+/[abc]\.yaml:\d+:\d+: \S", str(problem)), problem
        assert "\n" not in str(problem)


# --- progress survives a restart -------------------------------------------------------------------

PROGRESS_RUNBOOK = """\
id: restart-me
title: Restart me
inputs:
  base: {default: "{{base_url}}"}
steps:
  - id: look
    title: Look at the service
    check:
      http: {url: "{{base}}/health"}
      expect: {status: 200}
  - id: tell
    title: Tell someone
    manual: {text: tell the owner}
  - id: fix
    title: Fix it
    action:
      http: {method: POST, url: "{{base}}/fix"}
  - id: skip-me
    title: Optional
    manual: {}
post_incident:
  - write it down
  - fix the cause
"""


async def test_progress_is_read_back_from_the_journal_after_a_restart(
    tmp_path: Path, http_server: StubServer
) -> None:
    config_path = _write_pack(tmp_path, {"restart-me.yaml": PROGRESS_RUNBOOK})
    config_path.write_text(GOOD_CONFIG.replace("http://127.0.0.1:1", http_server.url("").rstrip("/")))
    http_server.route("/health", json={"status": "pass"})
    http_server.route("/fix", json={"fixed": True})
    config = load_config(config_path)
    runbook = pack_for(config).get("restart-me")
    assert runbook is not None
    path = tmp_path / "state" / "journal.jsonl"
    breach = _breach("health.shop", source="health:shop", since=1_800_000_100.0)

    first = await RunbookSession.open(
        runbook, Executor(config, Journal(path, operator=OPERATOR)), breach=breach
    )
    look, tell, fix, skip = runbook.steps
    assert (await first.execute(look)).status == Status.PASSED
    assert await first.mark_done(tell, "told bob")
    assert await first.note("bob is on it", step=tell)
    assert await first.note("customer impact: checkout")
    plan = await first.prepare(fix)
    assert (await first.execute(fix, Confirmation(yes=True), plan)).ok
    assert await first.skip(skip, "not needed")
    assert await first.tick(1)
    states = [s.state for s in first.steps]
    assert states == [StepState.DONE, StepState.DONE, StepState.DONE, StepState.SKIPPED]
    assert first.progress.complete

    # A new console process: new Journal and Executor objects, same file.
    again = await RunbookSession.open(
        runbook, Executor(config, Journal(path, operator=OPERATOR)), breach=breach
    )
    assert again.progress.run_id == first.progress.run_id
    assert [s.state for s in again.steps] == states
    assert [s.message for s in again.steps] == [s.message for s in first.steps]
    assert again.progress.status("tell").notes[0].endswith("alice: bob is on it")
    assert again.progress.notes[0].endswith("alice: customer impact: checkout")
    assert again.progress.ticked == {1}
    assert again.progress.incident_start == breach.since
    assert sum(1 for e in again.journal.read().events if e.kind == "runbook.opened") == 1
    assert http_server.hits("/fix") == 1


async def test_a_run_opened_with_inputs_renders_its_steps_with_them(tmp_path: Path) -> None:
    """The inputs given to a new run were journaled with it, but its values were computed before:
    the run's plans used the defaults (older_than 300, not the 7 it was opened with)."""
    config = load_config(CONFIG)
    runbook = pack_for(config).get("long-running-query")
    journal = Journal(tmp_path / "journal.jsonl", operator=OPERATOR)
    session = await RunbookSession.open(runbook, Executor(config, journal), inputs={"older_than": "7"})
    assert session.context.get("older_than").text == "7"
    assert any("$1 = '7'" in line for line in session.plan(runbook.step("cancel")).lines)


async def test_without_a_breach_the_latest_unfinished_run_resumes(tmp_path: Path) -> None:
    config_path = _write_pack(tmp_path, {"restart-me.yaml": PROGRESS_RUNBOOK})
    config = load_config(config_path)
    runbook = pack_for(config).get("restart-me")
    path = tmp_path / "journal.jsonl"
    first = await RunbookSession.open(runbook, Executor(config, Journal(path, operator=OPERATOR)))
    await first.mark_done(runbook.steps[1])
    again = await RunbookSession.open(runbook, Executor(config, Journal(path, operator=OPERATOR)))
    assert again.progress.run_id == first.progress.run_id
    assert again.steps[1].state == StepState.DONE
    fresh = await RunbookSession.open(runbook, Executor(config, Journal(path, operator=OPERATOR)), new=True)
    assert fresh.progress.run_id != first.progress.run_id
    assert fresh.steps[1].state == StepState.TODO


async def test_a_step_left_running_by_a_killed_console_reads_back_as_failed(tmp_path: Path) -> None:
    config_path = _write_pack(tmp_path, {"restart-me.yaml": PROGRESS_RUNBOOK})
    config = load_config(config_path)
    runbook = pack_for(config).get("restart-me")
    path = tmp_path / "journal.jsonl"
    now = [1_800_000_000.0]
    journal = Journal(path, operator=OPERATOR, clock=lambda: now[0])
    session = await RunbookSession.open(runbook, Executor(config, journal, clock=lambda: now[0]))
    plan = session.plan(runbook.steps[2])
    # The console wrote action.confirmed, then died before the result (kill -9).
    journal.append(plan.event(ActionConfirmed, confirmation="yes"))
    again = await RunbookSession.open(runbook, Executor(config, journal, clock=lambda: now[0]))
    assert again.steps[2].state == StepState.RUNNING  # within its timeout: it may still be running
    now[0] += plan.timeout + 60
    later = await RunbookSession.open(runbook, Executor(config, journal, clock=lambda: now[0]))
    assert later.steps[2].state == StepState.FAILED
    assert "no result was recorded" in later.steps[2].message


WAIT_RUNBOOK = """\
id: wait-me
title: Wait me
steps:
  - id: look
    title: Look at the service
    check:
      http: {url: "{{base_url}}/health"}
      expect: {status: 200}
  - id: again
    title: Wait a moment, then look again
    wait: {seconds: 0.2, check: look}
"""


async def test_a_wait_step_that_passes_settles_the_check_it_re_ran(
    tmp_path: Path, http_server: StubServer
) -> None:
    config_path = _write_pack(tmp_path, {"wait-me.yaml": WAIT_RUNBOOK})
    config_path.write_text(GOOD_CONFIG.replace("http://127.0.0.1:1", http_server.url("").rstrip("/")))
    config = load_config(config_path)
    runbook = pack_for(config).get("wait-me")
    path = tmp_path / "journal.jsonl"
    breach = _breach("health.shop", source="health:shop")
    session = await RunbookSession.open(
        runbook, Executor(config, Journal(path, operator=OPERATOR)), breach=breach
    )
    look, again = runbook.steps
    http_server.route("/health", status=503, json={"status": "fail"})
    assert (await session.execute(look)).status == Status.NOT_MET  # it ran and found the service down
    assert session.steps[0].state == StepState.NOT_MET
    http_server.route("/health", json={"status": "pass"})  # the fix took
    assert (await session.execute(again)).status == Status.PASSED
    # The check the wait re-ran now reads as passed too: the run is not left with a stale failure.
    assert [s.state for s in session.steps] == [StepState.DONE, StepState.DONE]
    assert session.steps[0].message == "HTTP 200: as expected (re-checked by 'again')"
    again_read = await RunbookSession.open(
        runbook, Executor(config, Journal(path, operator=OPERATOR)), breach=breach
    )
    assert [s.state for s in again_read.steps] == [StepState.DONE, StepState.DONE]
    assert again_read.progress.complete


async def test_a_wait_step_that_passes_settles_a_check_never_run_before(
    tmp_path: Path, http_server: StubServer
) -> None:
    """The operator opened the run after the fix (or went straight to the wait): the check the
    wait runs had never run. It passed in the wait and stayed TODO: the run never read complete."""
    config_path = _write_pack(tmp_path, {"wait-me.yaml": WAIT_RUNBOOK})
    config_path.write_text(GOOD_CONFIG.replace("http://127.0.0.1:1", http_server.url("").rstrip("/")))
    config = load_config(config_path)
    runbook = pack_for(config).get("wait-me")
    session = await RunbookSession.open(
        runbook, Executor(config, Journal(tmp_path / "journal.jsonl", operator=OPERATOR))
    )
    again = runbook.steps[1]
    http_server.route("/health", json={"status": "pass"})
    assert (await session.execute(again)).status == Status.PASSED
    assert [s.state for s in session.steps] == [StepState.DONE, StepState.DONE]
    assert session.steps[0].message == "HTTP 200: as expected (checked by 'again')"
    assert session.progress.complete
    # A wait that does not pass leaves the check as it was: never run is not a failure.
    http_server.route("/health", status=503, json={"status": "fail"})
    fresh = await RunbookSession.open(
        runbook, Executor(config, Journal(tmp_path / "other.jsonl", operator=OPERATOR))
    )
    assert (await fresh.execute(again)).status == Status.NOT_MET
    assert [s.state for s in fresh.steps] == [StepState.TODO, StepState.NOT_MET]
