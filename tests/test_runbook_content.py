"""What the runbook pack says, against the seeds: the scenario index, the safety rules on the
shipped pack (strict), and the five places where the pack misled the operator (issue 17), each
pinned down as it is now fixed."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml

from console.actions import ConfirmMode, Executor
from console.demo import flyctl
from console.journal import Journal, Operator
from console.loader import load, load_config
from console.model import Severity
from console.promql import windows
from console.rules import Breach, State
from console.runbooks import Pack, RunbookSession, pack_for
from console.runbooks.schema import ActionStep, CheckStep, Runbook, WaitStep

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "console.yaml"
INDEX = ROOT / "config" / "seed-scenarios.yaml"
SEEDS = ROOT.parent / "shared" / "seeds"
RULES = ROOT / "config" / "prometheus" / "rules.yml"
OPERATOR = Operator("alice", "10.0.0.5", "console-host")


@pytest.fixture(scope="module")
def pack() -> Pack:
    return pack_for(load_config(CONFIG))


def _steps(runbook: Runbook, kind: type) -> list:
    return [s for s in runbook.steps if isinstance(s, kind)]


def _from_seed(pack: Pack, number: str) -> list[Runbook]:
    """The runbooks encoding seed ``number`` ("000" .. "004")."""
    return [r for r in pack.runbooks if r.source is not None and r.source.file[:3] == number]


def _session(pack: Pack, runbook_id: str, breach: Breach | None = None, tmp_path: Path | None = None):
    config = load_config(CONFIG)
    journal = Journal((tmp_path or Path("/nonexistent")) / "journal.jsonl", operator=OPERATOR)
    return asyncio.run(RunbookSession.open(pack.get(runbook_id), Executor(config, journal), breach=breach))


# --- the seed index and the rules -------------------------------------------------------------------


def test_the_scenario_index_names_real_places_of_the_seeds() -> None:
    scenarios = yaml.safe_load(INDEX.read_text())["scenarios"]
    ids = [s["id"] for s in scenarios]
    assert len(ids) == len(set(ids)) == 50
    counts = {
        prefix: sum(1 for i in ids if i.startswith(prefix + "."))
        for prefix in ("000", "001", "002", "003", "004")
    }
    assert counts == {"000": 10, "001": 22, "002": 4, "003": 8, "004": 6}
    if not SEEDS.is_dir():
        pytest.skip("the seeds are not beside the repository")
    for scenario in scenarios:
        assert scenario["id"].startswith(scenario["file"][:3] + "."), scenario
        text = (SEEDS / scenario["file"]).read_text().replace("**", "")
        # the section's last heading (without a parenthetical note) is a heading or table row of the file
        heading = re.sub(r"\s*\(.*\)$", "", scenario["section"].split(" › ")[-1]).strip()
        assert heading in text, (scenario["id"], heading)


def test_the_shipped_pack_is_strict_and_breaks_no_rule_and_covers_every_scenario() -> None:
    loaded = load(CONFIG)
    assert loaded.config.runbooks.strict
    assert list(loaded.pack.lint) == []
    covered = {c for rb in loaded.pack.runbooks for c in rb.covers}
    assert covered == {s["id"] for s in yaml.safe_load(INDEX.read_text())["scenarios"]}
    for runbook in loaded.pack.runbooks:
        assert runbook.source is not None, runbook.id
        assert bool(runbook.escalation) != bool(runbook.escalation_none), runbook.id
        if runbook.source.seed:
            assert all(c.startswith(runbook.source.file[:3] + ".") for c in runbook.covers), runbook.id


def test_every_002_and_004_runbook_says_the_seed_gives_no_escalation(pack: Pack) -> None:
    for runbook in pack.runbooks:
        if runbook.source and runbook.source.file[:3] in ("002", "004"):
            assert runbook.escalation_none and runbook.source.file[:3] in runbook.escalation_none, runbook.id


# --- the numbers --------------------------------------------------------------------------------------


def test_the_numbers_agree_with_the_seeds_and_the_rules() -> None:
    config = load_config(CONFIG)
    levels = config.threshold_levels()
    p95, errors = levels["prometheus.p95_latency"], levels["prometheus.error_rate"]
    assert (p95.warning, p95.critical) == (2, 3)  # 001's target, 003's alert
    assert (errors.warning, errors.critical, errors.for_) == (0.01, 0.05, 300)  # 001: > 5% for 5 minutes
    assert levels["postgres.main.idle_in_transaction"].first_level == 300  # 003: 5 minutes
    assert levels["postgres.main.long_running"].first_level == 300  # 001: 5 minutes
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert rules["HighErrorRate"]["for"] == "5m" and "> 0.05" in rules["HighErrorRate"]["expr"]
    assert rules["SlowResponses"]["expr"].strip().endswith("> 3")
    assert rules["DatabaseConnectionFailure"]["labels"]["severity"] == "critical"
    assert rules["SyncJobFailure"]["labels"]["severity"] == "warning"
    assert Severity.from_label(rules["SyncJobFailure"]["labels"]["severity"]) == Severity.WARNING


def test_a_check_of_a_threshold_refers_to_it_instead_of_copying_its_number(pack: Pack) -> None:
    for runbook in pack.runbooks:
        for step in _steps(runbook, CheckStep):
            symptom = step.check.symptom or ""
            if "." in symptom:
                for bound in (step.check.expect.below, step.check.expect.above):
                    assert not isinstance(bound, int | float), (runbook.id, step.id)


# --- the five misleading places -----------------------------------------------------------------------


def test_1_the_sev0_runbook_stops_replies_and_never_turns_automation_back_on(pack: Pack) -> None:
    duplicate = pack.get("duplicate-events")
    assert [a.action.impact for a in _steps(duplicate, ActionStep)] == ["protective"]
    assert duplicate.escalation_none
    # the runbook that does turn things back on: each re-enable right after a check or a wait,
    # each followed by a wait that measures again
    back_on = pack.get("automation-back-to-normal")
    assert not back_on.triggers.alerts
    steps = back_on.steps
    for i, step in enumerate(steps):
        if isinstance(step, ActionStep) and step.action.impact == "re-enable":
            assert isinstance(steps[i - 1], CheckStep | WaitStep), step.id
            assert any(isinstance(s, WaitStep) for s in steps[i + 1 :]), step.id


def test_the_runbook_other_runbooks_send_you_to_for_going_back_to_normal_turns_nothing_off(
    pack: Pack,
) -> None:
    """Seed 004: three runbooks end with "back on / back to normal, through <runbook>". That runbook
    was the safety-controls toolbox, whose first steps turn the kill switch on and switch to shadow
    mode (act on nothing): followed in order after a rate limit, from route-only mode, it stopped
    all routing before it turned anything back on (seed 004 §2 has shadow mode for tuning only)."""
    ids = {runbook.id for runbook in pack.runbooks}
    named: set[str] = set()
    for runbook in pack.runbooks:
        for step in runbook.steps:
            words = f"{step.title} {step.text}"
            if re.search(r"back (on|to normal)", words):
                named |= {i for i in ids - {runbook.id} if re.search(rf"\b{re.escape(i)}\b", words)}
    assert named == {"automation-back-to-normal"}
    actions = _steps(pack.get("automation-back-to-normal"), ActionStep)
    assert actions and {a.action.impact for a in actions} == {"re-enable"}
    # In the toolbox, shadow mode (routing stops too) comes after every signal has been read.
    steps = pack.get("automation-safety-controls").steps
    shadow = next(i for i, s in enumerate(steps) if isinstance(s, ActionStep) and "shadow" in str(s.action))
    assert all(i < shadow for i, s in enumerate(steps) if isinstance(s, CheckStep))


def test_a_downstream_rate_limit_is_worked_in_the_seeds_order(pack: Pack) -> None:
    """Seed 004 §1.3's recovery, in its order: reduce worker concurrency, disable non-essential
    calls, switch to route-only, honour Retry-After (and SEV1 says "reduce concurrency"). The
    runbook switched to route-only and waited 6 minutes before it asked for lower concurrency."""
    ids = [s.id for s in pack.get("downstream-rate-limit").steps]
    assert (
        ids.index("concurrency") < ids.index("route-only") < ids.index("recheck") < ids.index("retry-after")
    )


def test_seed_000_restarts_the_application_only_after_agreeing_with_the_deployment_team(pack: Pack) -> None:
    """Seed 000, Procedure 2: "Restart application (if needed) # Coordinate with deployment team".
    The database-failure runbook (its scenario 5) ran `flyctl restart` with no such step."""
    restarts = 0
    for runbook in _from_seed(pack, "000"):
        for i, step in enumerate(runbook.steps):
            argv = getattr(step.action, "argv", None) if isinstance(step, ActionStep) else None
            if argv is not None and {"restart", "{{service_app}}"} <= set(argv.command):
                restarts += 1
                before = runbook.steps[i - 1]
                assert before.kind == "manual" and "deployment team" in before.title, (runbook.id, step.id)
    assert restarts >= 1


def test_the_shopify_500_runbook_says_the_escalation_its_levels_give(pack: Pack) -> None:
    """Seed 000: a Shopify 500 that persists beyond 5 minutes is escalated, and the vendor is level
    4 (beyond an hour). The summary said to escalate to the vendor at 5 minutes."""
    runbook = pack.get("shopify-server-errors")
    after_5m = next(level for level in runbook.escalation if level.after == 300)
    assert after_5m.who == "Operations" and "Operations at 5 minutes" in runbook.summary
    assert "escalate to the vendor" not in runbook.summary


def test_a_critical_seed_001_runbook_has_the_seeds_critical_escalation(pack: Pack) -> None:
    """Seed 001: critical severity is level 4 (Engineering Manager, CTO, CEO; 15-30 minutes). The
    database diagnostics runbook, critical "when the database is down", stopped at level 3."""
    critical = [r for r in _from_seed(pack, "001") if r.severity == "critical"]
    assert len(critical) >= 3
    for runbook in critical:
        assert any(level.level == 4 and "Engineering Manager" in level.who for level in runbook.escalation), (
            runbook.id
        )


def test_seed_003_restarts_the_one_machine_it_names(pack: Pack) -> None:
    """Seed 003: `fly machine restart <machine-id> -a <app>`, the machine `fly status` lists. The
    runbooks ran `flyctl restart <app>`, which restarts every machine of the app."""
    restarts = []
    for runbook in _from_seed(pack, "003"):
        for step in _steps(runbook, ActionStep):
            argv = getattr(step.action, "argv", None)
            if argv is not None and "restart" in argv.command:
                restarts.append((runbook.id, argv.command))
    assert len(restarts) >= 3
    for runbook_id, command in restarts:
        assert command[1:4] == ["machine", "restart", "{{machine}}"], (runbook_id, command)
        assert "machine" in pack.get(runbook_id).inputs, runbook_id


def test_2_idle_sessions_are_terminated_at_the_seeds_5_minutes(pack: Pack, tmp_path: Path) -> None:
    breach = Breach(
        id="postgres.main.idle_in_transaction",
        kind="threshold",
        source="postgres:main",
        title="longest idle-in-transaction session",
        state=State.FIRING,
        severity=Severity.WARNING,
        since=1_800_000_000.0,
        value=400.0,
        pid=4242,
    )
    session = _session(pack, "idle-in-transaction", breach, tmp_path)
    assert session.context.get("older_than").text == "300"
    terminate = session.runbook.step("terminate-idle")
    assert any("$1 = '300'" in line for line in session.plan(terminate).lines)


def test_the_long_running_title_says_the_age_its_steps_act_on(pack: Pack, tmp_path: Path) -> None:
    """The title said "more than 5 minutes" (001's level) while its steps cancelled queries older
    than the breach's level: 5 s in the demo, whatever a config sets."""
    config = load_config(CONFIG)
    runbook = pack.get("long-running-query")
    for inputs, age in (({}, "300"), ({"older_than": "5"}, "5")):
        journal = Journal(tmp_path / f"journal-{age}.jsonl", operator=OPERATOR)
        session = asyncio.run(RunbookSession.open(runbook, Executor(config, journal), inputs=inputs))
        assert session.runbook_title == f"Long-running query (active for more than {age} s)"
        assert session.title(runbook.step("long-running")).endswith(f"more than {age} s")


def test_3_restarts_and_rollbacks_come_after_the_check_that_says_which_and_why(pack: Pack) -> None:
    error_spike = pack.get("error-spike")
    ids = [s.id for s in error_spike.steps]
    argvs = [s.action.argv.command for s in _steps(error_spike, ActionStep)]
    assert not any("restart" in argv for argv in argvs)  # 003 prescribes the rollback
    assert ids.index("error-rate") < ids.index("releases") < ids.index("rollback") < ids.index("recheck")
    recovery = pack.get("service-recovery")
    first_action = next(i for i, s in enumerate(recovery.steps) if isinstance(s, ActionStep))
    assert any(
        isinstance(s, CheckStep) and s.check.symptom == "TargetDown" and "{{service}}" in s.check.promql.query
        for s in recovery.steps[:first_action]
    )
    assert [a.action.argv.command for a in _steps(recovery, ActionStep)] == [
        ["{{flyctl}}", "restart", "{{service_app}}"]
    ]


def test_4_restart_chatwoot_restarts_the_chatwoot_app_and_only_once(pack: Pack, tmp_path: Path) -> None:
    for runbook_id in ("chatwoot-unavailable", "restart-integration-services"):
        session = _session(pack, runbook_id, tmp_path=tmp_path / runbook_id)
        restarts = [s for s in _steps(session.runbook, ActionStep) if s.action.kind == "argv"]
        assert len(restarts) == 1, runbook_id
        plan = session.plan(restarts[0])
        assert any("hotdash-chatwoot" in line for line in plan.lines), plan.lines
        assert not any(line.rstrip().endswith(" storefront") for line in plan.lines), plan.lines
        assert plan.confirm.mode == ConfirmMode.TYPED and plan.confirm.expected == "hotdash-chatwoot"
    # the demo runs no Chatwoot app: its flyctl says so and does nothing
    assert flyctl.main(["restart", "chatwoot"], "/nonexistent") == 0


def test_5_verification_checks_measure_the_fix(pack: Pack) -> None:
    def verification(runbook_id: str) -> tuple[CheckStep, WaitStep]:
        runbook = pack.get(runbook_id)
        wait = _steps(runbook, WaitStep)[0]
        return runbook.waited_check(wait), wait

    # the webhook ingress: queue receives per delivery of the same service, not 4xx of anything
    check, wait = verification("webhook-ingress-failure")
    query = check.check.promql.query
    assert (
        "queue_receives_total" in query and "webhook_requests_total" in query and 'job="{{service}}"' in query
    )
    assert check.check.symptom == "WebhookIngressDown" and check.check.expect.no_data == "fail"
    # the error rate of {{service}}, over the time after the fix only
    check, wait = verification("error-spike")
    assert 'job="{{service}}"' in check.check.promql.query
    assert all(seconds <= wait.wait.seconds for _, seconds in windows(check.check.promql.query))
    assert max(seconds for _, seconds in windows(check.check.promql.query)) == 300
    # partial side effects: decisions vs successful actions
    check, _ = verification("partial-side-effects")
    assert (
        "decisions_made_total" in check.check.promql.query
        and "actions_success_total" in check.check.promql.query
    )
    # provider downtime: 15 minutes without an error alert, and a typed re-enable after a check
    provider = pack.get("provider-down")
    quiet = provider.step("wait-quiet")
    assert quiet.wait.seconds >= 15 * 60
    assert "[15m]" in provider.waited_check(quiet).check.promql.query
    enable = provider.step("enable-integration")
    before = provider.steps[provider.steps.index(enable) - 1]
    assert enable.action.impact == "re-enable" and enable.action.typed and isinstance(before, CheckStep)
    assert "/admin/tenants/{{tenant}}/integrations/{{provider}}" in enable.action.http.url


def test_a_rate_limit_slowdown_is_temporary_and_undone_to_the_rate_read_before(
    pack: Pack, tmp_path: Path
) -> None:
    """002 §3 reduces the request rate "temporarily": the runbook slowed polling to 300 s and never
    brought it back. It reads the interval first, and after the window's reset (an hour) and a
    passing check of the calls refused sets that interval again, then checks the 429s once more."""
    runbook = pack.get("rate-limit-exhaustion")
    ids = [step.id for step in runbook.steps]
    read, reduce, reset, restore = (
        runbook.step(i) for i in ("polling-now", "reduce-rate", "window-reset", "restore-rate")
    )
    assert (
        ids.index("polling-now")
        < ids.index("reduce-rate")
        < ids.index("window-reset")
        < ids.index("restore-rate")
    )
    assert isinstance(read, CheckStep) and read.check.http.url.endswith("/integrations/{{provider}}/status")
    assert isinstance(reset, WaitStep) and reset.wait.seconds >= 3600 and reset.wait.check == "share-429"
    assert restore.action.impact == "re-enable" and ids[ids.index("restore-rate") - 1] == "window-reset"
    assert restore.action.http.url == reduce.action.http.url
    after = runbook.steps[ids.index("restore-rate") + 1]
    assert isinstance(after, WaitStep) and after.wait.check == "rate-429"
    session = _session(pack, "rate-limit-exhaustion", tmp_path=tmp_path)
    asyncio.run(session.set_input("normal_interval", "60"))
    lines = session.plan(restore).lines
    assert 'body: {"interval_seconds": "60"}' in lines, lines
