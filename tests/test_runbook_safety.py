"""Issue 17, the engine half: the schema a runbook author writes to be trusted (source, covers,
escalation_none, impact, symptom, threshold references), the safety rules of
console/runbooks/lint.py (each failing and passing on a small pack, at its position), strict
mode in check-config, ``runbook lint`` with the seed coverage, the time scale, and the run-time
rules: a re-enable step refused unless the check before it passed, a signal that re-evaluates its
select where it signals (real Postgres)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from console.actions import ActionSpec, Confirmation, ConfirmMode, Executor, SignalAction, Status
from console.actions.templates import Context, Value
from console.journal import ActionRefused, Journal, Operator, read_journal
from console.loader import load, load_config
from console.promql import scale_expr, windows
from console.runbook_docs import render
from console.runbooks import Need, RunbookSession, StepCommand, StepState, load_for, pack_for
from console.yamlfile import ConfigError
from tests.fixtures.http_servers import StubServer
from tests.fixtures.postgres import PgServer, Sessions

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = Operator("alice", "10.0.0.5", "console-host")

CONFIG = """\
environment: {name: test}
runbooks_dir: runbooks
variables:
  base_url: http://127.0.0.1:1
prometheus:
  url: http://127.0.0.1:1
  queries:
    - {id: error_rate, query: up, threshold: {warning: 0.01, critical: 0.05, recovery: 0.008}}
    - {id: p95, query: up, threshold: {warning: 1, critical: 3}}
postgres:
  - {name: main, dsn: "postgresql://u@127.0.0.1:1/db"}
"""

INDEX = """\
scenarios:
  - {id: s.error-rate, file: 003.txt, section: High Error Rate, title: errors}
  - {id: s.other, file: 003.txt, section: Other, title: something else}
"""

# A runbook that keeps every rule: each case below breaks one.
GOOD = """\
id: good
title: Good
source: {file: 003.txt, section: High Error Rate}
covers: [s.error-rate]
triggers:
  alerts: [HighErrorRate]
  thresholds: ["prometheus.error_rate"]
inputs:
  service: {default: storefront}
steps:
  - id: error-rate
    title: Error rate of {{service}}
    check:
      promql: {query: 'sum(rate(errors{job="{{service}}"}[1m]))'}
      symptom: prometheus.error_rate
      expect: {below: {threshold: prometheus.error_rate, level: critical}}
  - id: restart
    title: Restart {{service}}
    action:
      argv: [echo, restart, "{{service}}"]
      impact: destructive
  - id: verify
    title: Wait, then measure again
    wait: {seconds: 60, check: error-rate}
  - id: back-on
    title: Turn automation back on
    action:
      http: {method: POST, url: "{{base_url}}/on"}
      impact: re-enable
escalation_none: the source gives none
"""


def write(tmp_path: Path, runbooks: dict[str, str], config: str = CONFIG, index: str | None = INDEX) -> Path:
    (tmp_path / "runbooks").mkdir(exist_ok=True)
    for name, text in runbooks.items():
        (tmp_path / "runbooks" / name).write_text(text)
    if index is not None:
        (tmp_path / "seed-scenarios.yaml").write_text(index)
    path = tmp_path / "console.yaml"
    path.write_text(config)
    return path


def lint_lines(tmp_path: Path, text: str, **kwargs) -> list[str]:
    """The safety rules' problems of one runbook file, as ``line:col: message``."""
    config = load_config(write(tmp_path, {"rb.yaml": text}, **kwargs))
    pack, problems = load_for(config)
    assert problems == [], problems  # not strict: lint problems are not load problems
    assert pack.ids == {"good"}
    prefix = f"{tmp_path / 'runbooks' / 'rb.yaml'}:"
    return [str(p).removeprefix(prefix) for p in pack.lint if str(p).startswith(prefix)]


def test_a_runbook_that_keeps_every_rule_has_no_problem(tmp_path: Path) -> None:
    assert lint_lines(tmp_path, GOOD) == []


# (what to replace in GOOD, by what) -> the one problem, "line:col: start of the message".
BROKEN = {
    "no source": (
        ("source: {file: 003.txt, section: High Error Rate}\ncovers: [s.error-rate]\n", ""),
        "1:5: no source: say source: {file, section}",
    ),
    "a seed without covers": (
        ("covers: [s.error-rate]\n", ""),
        "3:9: a runbook from a seed says which scenarios it encodes: covers: [<scenario id>, ...]",
    ),
    "covers an unknown scenario": (
        ("covers: [s.error-rate]", "covers: [s.error-rate, s.nope]"),
        "4:24: covers 's.nope': no scenario 's.nope' in seed-scenarios.yaml",
    ),
    "no escalation": (
        ("escalation_none: the source gives none\n", ""),
        '1:5: no escalation: give escalation levels, or escalation_none: "why: the source gives none"',
    ),
    "escalation and escalation_none": (
        ("escalation_none:", "escalation: [{level: 1, who: on call}]\nescalation_none:"),
        "31:18: escalation and escalation_none: give one",
    ),
    "an action that restarts without an impact": (
        ("      impact: destructive\n", ""),
        "17:5: the action says 'restart': declare its impact: destructive, re-enable or protective "
        "(step 'restart')",
    ),
    "a signal that is not destructive": (
        (
            '      argv: [echo, restart, "{{service}}"]\n      impact: destructive',
            "      signal: {cluster: main, signal: cancel, select: 'SELECT pid, backend_start FROM "
            "pg_stat_activity'}\n      impact: protective",
        ),
        "21:15: a signal action is destructive, not protective: say impact: destructive (step 'restart')",
    ),
    "a destructive action before any check": (
        [
            (
                "steps:\n",
                "steps:\n  - {id: early, title: Kill it, action: {argv: [kill, x], impact: destructive}}\n",
            ),
            (
                "  - id: restart\n",
                "  - {id: w0, title: Wait, wait: {seconds: 60, check: error-rate}}\n  - id: restart\n",
            ),
        ],
        "11:5: destructive action 'early': no check step before it establishes the need",
    ),
    "a destructive action with no wait after it": (
        ("    wait: {seconds: 60, check: error-rate}\n", '    check: {http: {url: "{{base_url}}/x"}}\n'),
        "17:5: destructive action 'restart': no wait step after it verifies the fix before the end",
    ),
    "a re-enable action not right after a check or wait": (
        ("  - id: back-on\n", "  - {id: note, title: Tell the team, manual: {}}\n  - id: back-on\n"),
        "26:5: re-enable action 'back-on': the step just before it must be a check or a wait",
    ),
    "a verification check without a symptom": (
        ("      symptom: prometheus.error_rate\n", ""),
        "11:5: verification check 'error-rate' (run by wait 'verify') has no symptom",
    ),
    "a symptom that is not a trigger": (
        ("      symptom: prometheus.error_rate\n", "      symptom: prometheus.p95\n"),
        "15:16: symptom 'prometheus.p95' is not one of this runbook's triggers",
    ),
    "a verification check that passes on no data": (
        ("level: critical}}", "level: critical}, no_data: pass}"),
        "16:85: a verification check never passes on no data: remove no_data: pass",
    ),
    "a PromQL verification check with no value to expect": (
        ("expect: {below: {threshold: prometheus.error_rate, level: critical}}", "expect: {max_rows: 0}"),
        "16:15: a PromQL verification check passes when the query finds no series",
    ),
    "a window longer than the wait": (
        ("[1m]", "[5m]"),
        "14:23: range window [5m] of verification check 'error-rate' is longer than the wait before it "
        "('verify', 1m00s)",
    ),
    "a verification check scoped to another service": (
        ('{job="{{service}}"}', '{job="other"}'),
        "11:5: the actions act on {{service}}, the verification check 'error-rate' does not mention it",
    ),
    "a number where the symptom is a threshold": (
        ("expect: {below: {threshold: prometheus.error_rate, level: critical}}", "expect: {below: 0.05}"),
        "16:23: expect.below is a number (0.05) while check 'error-rate' measures threshold "
        "'prometheus.error_rate': refer to the threshold",
    ),
    "a trigger that matches no threshold": (
        (
            '  thresholds: ["prometheus.error_rate"]\n',
            '  thresholds: ["prometheus.error_rate", "postgres.*.waitng"]\n',
        ),
        "7:41: trigger 'postgres.*.waitng' matches no threshold of the config (postgres.main.connections, "
        "postgres.main.idle_in_transaction, postgres.main.long_running, postgres.main.mean_statement_time, "
        "… 1 more): the runbook is never offered for it",
    ),
    "an errors trigger whose source is misspelt": (
        (
            '  thresholds: ["prometheus.error_rate"]\n',
            '  thresholds: ["prometheus.error_rate"]\n  errors: ["promethues.*"]\n',
        ),
        "8:12: trigger 'promethues.*' matches no threshold of the config",
    ),
    "a threshold trigger with no source part": (
        (
            '  thresholds: ["prometheus.error_rate"]\n',
            '  thresholds: ["prometheus.error_rate", "prometheus_error_rate"]\n',
        ),
        "7:41: trigger 'prometheus_error_rate' matches no threshold of the config",
    ),
    "an explains glob that matches no threshold": (
        (
            '  thresholds: ["prometheus.error_rate"]\n',
            '  thresholds: ["prometheus.error_rate"]\n  explains: [SyncJobFailure, prometheus.eror_rate]\n',
        ),
        "8:30: trigger 'prometheus.eror_rate' matches no threshold of the config (prometheus.error_rate, "
        "prometheus.p95)",
    ),
    "a symptom that names no threshold": (
        (
            "      symptom: prometheus.error_rate\n",
            "      symptom: prometheus.nope\n",
        ),
        "15:16: symptom 'prometheus.nope' names no threshold of the config",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_safety_rule_fails_at_its_position(tmp_path: Path, case: str) -> None:
    changes, expected = BROKEN[case]
    text = GOOD
    for old, new in changes if isinstance(changes, list) else [changes]:
        assert old in text, old
        text = text.replace(old, new)
    lines = lint_lines(tmp_path, text)
    if case == "a symptom that names no threshold":  # not a trigger either: both are said
        lines = [line for line in lines if "not one of this runbook's triggers" not in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]


def test_triggers_are_checked_against_the_sources_the_config_watches(tmp_path: Path) -> None:
    # No health target and no health threshold in CONFIG: a health trigger is for another estate.
    other_estate = GOOD.replace(
        '  thresholds: ["prometheus.error_rate"]\n',
        '  thresholds: ["prometheus.error_rate", "health.*.latency"]\n  health: [storefront]\n',
    )
    assert lint_lines(tmp_path, other_estate) == []
    # With health targets, a health glob matches one of them, and health.* thresholds are checked.
    with_health = CONFIG + "health:\n  - {name: storefront, url: http://127.0.0.1:1/health}\n"
    assert lint_lines(tmp_path, other_estate, config=with_health) == [
        "7:41: trigger 'health.*.latency' matches no threshold of the config (health.storefront): "
        "the runbook is never offered for it"
    ]
    typo = other_estate.replace("health: [storefront]", "health: [storefornt, store*]")
    assert lint_lines(tmp_path, typo.replace(', "health.*.latency"', ""), config=with_health) == [
        "8:12: trigger 'storefornt' matches no health target of the config (storefront): "
        "the runbook is never offered for it"
    ]


def test_a_health_check_probes_a_health_target_of_the_config(tmp_path: Path) -> None:
    """A ``health`` check names its target, or the input whose default does; a typo there could
    never run (the step FAILED with "no health target" at 3 a.m.)."""
    probe = "  - id: health\n    title: Health of {{service}}\n    check:\n      health: {target: %s}\n"
    with_health = CONFIG + "health:\n  - {name: storefront, url: http://127.0.0.1:1/health}\n"

    def lines(target: str, default: str = "storefront") -> list[str]:
        text = GOOD.replace("steps:\n", "steps:\n" + probe % target).replace(
            "service: {default: storefront}", f"service: {{default: {default}}}"
        )
        return lint_lines(tmp_path, text, config=with_health)

    assert lines('"{{service}}"') == [] and lines("storefront") == []
    assert lines("storefornt") == [
        "14:24: health check target 'storefornt' names no health target of the config (storefront): "
        "the check can never run"
    ]
    assert lines('"{{service}}"', default="storefornt") == [
        "14:24: health check target 'storefornt' names no health target of the config (storefront): "
        "the check can never run"
    ]
    assert (
        lint_lines(tmp_path, GOOD.replace("steps:\n", "steps:\n" + probe % "storefornt")) == []
    )  # no targets


def test_the_window_rule_counts_the_time_scale(tmp_path: Path) -> None:
    # At 1/30 a wait of 60 s is 2 s, while [1m] keeps the 5 s floor of a scaled window.
    scaled = CONFIG + "runbooks: {time_scale: 0.0333333}\n"
    lines = lint_lines(tmp_path, GOOD, config=scaled)
    assert (
        len(lines) == 1 and "range window [1m]" in lines[0] and "time scale 0.0333333: 5s > 2.0s" in lines[0]
    )
    longer = GOOD.replace("seconds: 60", "seconds: 300")  # 10 s: the 5 s window fits
    assert lint_lines(tmp_path, longer, config=scaled) == []


def test_strict_makes_check_config_refuse_the_pack(tmp_path: Path) -> None:
    path = write(tmp_path, {"rb.yaml": GOOD.replace("      impact: destructive\n", "")})
    assert load(path).pack.lint  # reported, not refused
    path.write_text(CONFIG + "runbooks: {strict: true}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert [p.message for p in caught.value.problems if "rb.yaml" in p.file] == [
        "the action says 'restart': declare its impact: destructive, re-enable or protective (step 'restart')"
    ]
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert f"{tmp_path / 'runbooks' / 'rb.yaml'}:17:5: the action says 'restart'" in done.stderr


def test_runbook_lint_prints_the_problems_and_the_seed_coverage(tmp_path: Path) -> None:
    path = write(tmp_path, {"rb.yaml": GOOD})
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "runbook", "lint", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    index = tmp_path / "seed-scenarios.yaml"
    assert done.returncode == 2, done.stderr
    assert done.stdout.splitlines() == [
        f"{index}:3:10: scenario s.other (003.txt › Other): something else: no runbook covers it",
        "1/2 seed scenarios encoded",
        "  not covered: s.other (003.txt › Other): something else",
        f"1 problem in 1 runbooks of {tmp_path / 'runbooks'}; runbooks.strict: off (check-config does not "
        "refuse them)",
    ]
    index.write_text(INDEX.replace("s.other", "s.error-rate-2"))
    (tmp_path / "runbooks" / "rb.yaml").write_text(
        GOOD.replace("[s.error-rate]", "[s.error-rate, s.error-rate-2]")
    )
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "runbook", "lint", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines()[0] == "2/2 seed scenarios encoded"


def test_without_a_seed_index_there_is_no_coverage_and_covers_is_not_checked(tmp_path: Path) -> None:
    assert lint_lines(tmp_path, GOOD.replace("[s.error-rate]", "[anything]"), index=None) == []


# --- the schema ----------------------------------------------------------------------------------------


SCHEMA_PROBLEMS = {
    "seed and added": (
        (
            "source: {file: 003.txt, section: High Error Rate}",
            "source: {file: 003.txt, section: S, added: why}",
        ),
        "3:9: source: a source is a seed ({file, section}) or added ({added: why}), not both",
    ),
    "an empty source": (
        ("source: {file: 003.txt, section: High Error Rate}", "source: {}"),
        "3:9: source: give {file, section} (a seed) or {added: why this runbook exists beyond the seeds}",
    ),
    "an unknown impact": (
        ("impact: destructive", "impact: harmless"),
        "21:15: steps[1].action.impact: Input should be 'destructive', 're-enable' or 'protective'",
    ),
    "an unknown threshold": (
        ("{threshold: prometheus.error_rate, level: critical}", "{threshold: prometheus.eror_rate}"),
        "16:35: no threshold 'prometheus.eror_rate' in the config (did you mean prometheus.error_rate, prometheus.p95?)",
    ),
    "a level the threshold lacks": (
        (
            "{threshold: prometheus.error_rate, level: critical}",
            "{threshold: prometheus.p95, level: recovery}",
        ),
        "16:58: threshold prometheus.p95 has no recovery level",
    ),
    "a bound that is neither": (
        ("{threshold: prometheus.error_rate, level: critical}", "fast"),
        "16:23: steps[0].check.expect.below: Input should be a valid number, unable to parse string as a number",
    ),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_PROBLEMS))
def test_schema_problems_are_one_line_at_their_position(tmp_path: Path, case: str) -> None:
    (old, new), expected = SCHEMA_PROBLEMS[case]
    assert old in GOOD
    path = write(tmp_path, {"rb.yaml": GOOD.replace(old, new)})
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert [str(p) for p in caught.value.problems] == [f"{tmp_path / 'runbooks' / 'rb.yaml'}:{expected}"]


def test_the_shipped_pack_loads_and_its_config_is_not_strict_yet() -> None:
    loaded = load(ROOT / "config" / "console.yaml")
    assert len(loaded.pack.runbooks) >= 41
    if not loaded.config.runbooks.strict:
        assert loaded.pack.lint  # reported by `runbook lint` until the content is migrated


# --- rendering: threshold references, impact, the time scale ----------------------------------------


def _session(tmp_path: Path, config_text: str = CONFIG, runbook: str = GOOD, **kwargs) -> RunbookSession:
    config = load_config(write(tmp_path, {"rb.yaml": runbook}, config=config_text))
    executor = Executor(config, Journal(tmp_path / "journal.jsonl", operator=OPERATOR), **kwargs)
    return asyncio.run(RunbookSession.open(pack_for(config).get("good"), executor))


def test_a_threshold_reference_renders_as_the_configs_number(tmp_path: Path) -> None:
    session = _session(tmp_path)
    check = session.runbook.step("error-rate")
    assert session.plan(check).spec.expect.below == 0.05
    assert "expect: below 0.05 (threshold prometheus.error_rate critical)" in session.describe(check)
    # The same runbook on another config's levels: the demo's numbers, not the file's.
    other = tmp_path / "other"
    other.mkdir()
    session = _session(other, CONFIG.replace("critical: 0.05", "critical: 0.2"))
    assert session.plan(session.runbook.step("error-rate")).spec.expect.below == 0.2


def test_destructive_and_re_enable_ask_for_the_typed_word(tmp_path: Path) -> None:
    session = _session(tmp_path)
    restart, back_on = session.runbook.step("restart"), session.runbook.step("back-on")
    assert session.plan(restart).confirm.mode == ConfirmMode.TYPED
    assert session.plan(back_on).confirm.mode == ConfirmMode.TYPED
    protective = GOOD.replace("impact: re-enable", "impact: protective")
    other = tmp_path / "other"
    other.mkdir()
    session = _session(other, runbook=protective)
    assert session.plan(session.runbook.step("back-on")).confirm.mode == ConfirmMode.YES_NO


def test_the_time_scale_shortens_waits_and_promql_windows(tmp_path: Path) -> None:
    session = _session(tmp_path, CONFIG + "runbooks: {time_scale: 0.02, min_window: 1s}\n")
    wait = session.runbook.step("verify")
    assert session.wait_seconds(wait) == pytest.approx(1.2)
    described = session.describe(wait)
    assert described[0] == "wait 1.2s (1m00s × time scale 0.02), then run 'Error rate of storefront' again"
    plan = session.plan(session.runbook.step("error-rate"))
    assert plan.spec.query == 'sum(rate(errors{job="storefront"}[1200ms]))'
    assert 'query: sum(rate(errors{job="storefront"}[1200ms]))' in plan.lines
    # Scale 1 (the default) changes nothing.
    plain = tmp_path / "plain"
    plain.mkdir()
    session = _session(plain)
    assert session.plan(session.runbook.step("error-rate")).spec.query.endswith("[1m]))")
    assert session.describe(session.runbook.step("verify"))[0].startswith("wait 1m00s, then")


def test_a_wait_of_no_time_says_it_runs_its_check_again_now(tmp_path: Path) -> None:
    """oauth-expired's second re-check waits 0 s (the first wait was the time): it read
    "wait 0ms, then run ... again"."""
    runbook = GOOD.replace("seconds: 60", "seconds: 0")
    session = _session(tmp_path, runbook=runbook)
    assert session.describe(session.runbook.step("verify"))[0] == "run 'Error rate of storefront' again now"
    docs = render(pack_for(session.executor.config))
    assert [line for line in docs.splitlines() if "again now" in line] == [
        "  3. `error-rate` again now: Wait, then measure again"
    ]


def test_promql_windows_are_scaled_outside_string_literals() -> None:
    assert scale_expr('rate(x{a="[5m]"}[5m]) > 0', 0.02) == 'rate(x{a="[5m]"}[6s]) > 0'
    assert (
        scale_expr("max_over_time(x[1h:1m]) offset 30m", 0.02, 5) == "max_over_time(x[72s:1200ms]) offset 36s"
    )
    assert scale_expr("rate(x[5m])", 1) == "rate(x[5m])"
    assert windows('rate(a[5m]) / rate(b{x="[1h]"}[1m:10s])') == [("5m", 300.0), ("1m", 60.0)]


async def test_a_wait_step_waits_the_scaled_time(tmp_path: Path, http_server: StubServer) -> None:
    text = CONFIG.replace("base_url: http://127.0.0.1:1", f"base_url: {http_server.url('').rstrip('/')}")
    runbook = """\
id: good
title: Wait
steps:
  - {id: look, title: Look, check: {http: {url: "{{base_url}}/health"}}}
  - {id: again, title: Again, wait: {seconds: 600, check: look}}
"""
    config = load_config(
        write(tmp_path, {"rb.yaml": runbook}, config=text + "runbooks: {time_scale: 0.0005}\n")
    )
    http_server.route("/health", json={"status": "pass"})
    session = await RunbookSession.open(
        pack_for(config).get("good"), Executor(config, Journal(tmp_path / "j.jsonl", operator=OPERATOR))
    )
    started = asyncio.get_running_loop().time()
    result = await session.wait(session.runbook.step("again"))
    assert result.ok
    assert asyncio.get_running_loop().time() - started < 5  # 600 s x 0.0005 = 0.3 s
    messages = [e.message for e in read_journal(tmp_path / "j.jsonl").events if e.kind == "step.state"]
    assert messages[0] == "waiting 0.3s"


# --- run time: a re-enable step runs only after a passing check ----------------------------------------

RE_ENABLE = """\
id: good
title: Back on
steps:
  - id: safe
    title: Is it safe?
    check:
      http: {url: "{{base_url}}/safe"}
      expect: {json: {safe: true}}
  - id: back-on
    title: Turn replies back on
    action:
      http: {method: POST, url: "{{base_url}}/on"}
      impact: re-enable
  - {id: tell, title: Tell the team, manual: {}}
"""


async def test_a_re_enable_step_is_refused_until_the_check_before_it_passes(
    tmp_path: Path, http_server: StubServer
) -> None:
    text = CONFIG.replace("base_url: http://127.0.0.1:1", f"base_url: {http_server.url('').rstrip('/')}")
    config = load_config(write(tmp_path, {"rb.yaml": RE_ENABLE}, config=text))
    path = tmp_path / "journal.jsonl"
    session = await RunbookSession.open(
        pack_for(config).get("good"), Executor(config, Journal(path, operator=OPERATOR))
    )
    safe, back_on, _ = session.runbook.steps
    http_server.route("/on", json={"ok": True})

    # Not run yet: refused, journaled with the reason; the dialog is not even shown.
    task = await session.task(StepCommand.EXECUTE, back_on)
    assert task.need is Need.NOTHING and task.plan is None
    result = await session.perform(task)
    assert result is not None and result.status == Status.REFUSED
    assert "it runs only after 'Is it safe?' passes (it has not run)" in result.message
    refused = [e for e in read_journal(path).events if isinstance(e, ActionRefused)]
    assert [e.step for e in refused] == ["back-on"] and refused[0].message == result.message
    assert session.steps[1].message.startswith("refused: ")

    # The check finds it unsafe (not met): still refused, saying why; a confirmation does not help.
    http_server.route("/safe", json={"safe": False})
    assert (await session.execute(safe)).status == Status.NOT_MET
    result = await session.execute(back_on, Confirmation(typed="back-on"))
    assert result.status == Status.REFUSED and "(its last result: HTTP 200: safe is false" in result.message

    # Marked done by hand is not a passing check.
    await session.mark_done(safe)
    assert (await session.execute(back_on, Confirmation(typed="x"))).status == Status.REFUSED
    assert http_server.hits("/on") == 0

    # The check passes: the step asks for its typed word and runs.
    http_server.route("/safe", json={"safe": True})
    assert (await session.execute(safe)).status == Status.PASSED
    task = await session.task(StepCommand.EXECUTE, back_on)
    assert task.need is Need.CONFIRMATION and task.plan.confirm.mode == ConfirmMode.TYPED
    result = await session.perform(task, confirmation=Confirmation(typed=task.plan.confirm.expected))
    assert result is not None and result.ok, result.message
    assert http_server.hits("/on") == 1

    # A restarted console reads the passing check back from the journal.
    again = await RunbookSession.open(session.runbook, Executor(config, Journal(path, operator=OPERATOR)))
    assert again.progress.status("safe").passed is True
    assert again.refusal(back_on) == ""
    await again.reopen(safe)
    assert again.refusal(back_on) != ""
    assert again.steps[0].state == StepState.TODO


GATED = """\
id: gated
title: Back on after two checks
steps:
  - id: errors
    title: Errors low?
    check:
      http: {url: "{{base_url}}/errors"}
      expect: {json: {low: true}}
  - {id: again, title: Again later, wait: {seconds: 0, check: errors}}
  - id: model
    title: Model fast?
    check:
      http: {url: "{{base_url}}/model"}
      expect: {json: {fast: true}}
  - id: back-on
    title: Turn replies back on
    action:
      http: {method: POST, url: "{{base_url}}/on"}
      impact: re-enable
"""


async def test_a_re_enable_step_waits_for_every_check_and_wait_right_before_it(
    tmp_path: Path, http_server: StubServer
) -> None:
    """automation-back-to-normal turns auto-replies back on after the worker's error rate (a wait)
    and the model's timeouts (a check). Only the step right before it gated it: with the model
    fast, the wait that read the errors still high let it through."""
    text = CONFIG.replace("base_url: http://127.0.0.1:1", f"base_url: {http_server.url('').rstrip('/')}")
    config = load_config(write(tmp_path, {"rb.yaml": GATED}, config=text))
    session = await RunbookSession.open(
        pack_for(config).get("gated"), Executor(config, Journal(tmp_path / "j.jsonl", operator=OPERATOR))
    )
    errors, again, model, back_on = session.runbook.steps
    http_server.route("/on", json={"ok": True})
    http_server.route("/errors", json={"low": False})
    http_server.route("/model", json={"fast": True})
    assert (await session.execute(errors)).status == Status.NOT_MET
    assert (await session.execute(again)).status == Status.NOT_MET
    assert (await session.execute(model)).status == Status.PASSED
    refusal = session.refusal(back_on)
    assert "it runs only after 'Errors low?' passes (its last result: HTTP 200: low is false" in refusal
    assert (await session.execute(back_on, Confirmation(typed="x"))).status == Status.REFUSED
    assert http_server.hits("/on") == 0
    # The errors fall: the wait that re-runs the check passes and settles it; the gate opens.
    http_server.route("/errors", json={"low": True})
    assert (await session.execute(again)).status == Status.PASSED
    assert session.refusal(back_on) == ""


# --- run time: a signal evaluates its select again where it signals (real Postgres) ---------------------


async def _until_active(pg_server: PgServer, pid: int, timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` s) until the session ``pid`` is running a query."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (await pg_server.fetch("SELECT state FROM pg_stat_activity WHERE pid = $1", pid))[0][
        "state"
    ] != "active":
        assert asyncio.get_running_loop().time() < deadline, f"pid {pid} never became active"
        await asyncio.sleep(0.05)


async def test_what_a_signal_skipped_is_told_before_what_it_signalled(
    pg_server: PgServer, pg_sessions: Sessions, tmp_path: Path
) -> None:
    """connection-exhaustion in the demo: 36 "terminated pid N" lines came first, and the one
    session skipped (it had turned active) was the 37th: off the 80x24 pane, and past the 40
    output lines the journal keeps."""
    config_text = CONFIG.replace("postgresql://u@127.0.0.1:1/db", pg_server.dsn())
    config = load_config(write(tmp_path, {}, config=config_text))
    path = tmp_path / "journal.jsonl"
    executor = Executor(config, Journal(path, operator=OPERATOR))
    app = f"ic-many-{secrets.token_hex(3)}"
    idle = [await pg_sessions.open(application_name=app) for _ in range(8)]
    pids = [await conn.fetchval("SELECT pg_backend_pid()") for conn in idle]
    spec = ActionSpec(
        signal=SignalAction(
            cluster="main",
            signal="terminate",
            select=(
                "SELECT pid, backend_start FROM pg_catalog.pg_stat_activity "
                "WHERE state = 'idle' AND application_name = $1 AND datname = current_database()"
            ),
            params=["{{app}}"],
        ),
        impact="destructive",
    )
    plan = await executor.preview(executor.render(spec, Context({"app": Value(app, trusted=False)})))
    assert sorted(t.pid for t in plan.targets) == sorted(pids)
    busy = asyncio.ensure_future(idle[-1].fetchval("SELECT pg_sleep(2)"))  # no longer idle
    await _until_active(pg_server, pids[-1])
    result = await executor.execute(plan, Confirmation(typed=plan.confirm.expected))
    await busy
    assert (result.status, result.message) == (Status.SUCCEEDED, "terminated 7 sessions; 1 skipped")
    assert result.lines[0].startswith(f"skipped pid {pids[-1]}: the select no longer lists it"), result.lines
    assert len(result.lines) == 2 and result.lines[1].startswith("terminated 7 sessions: pid ")
    assert sorted(map(int, result.lines[1].split("pid ")[1].split(", "))) == sorted(pids[:-1])
    ended = read_journal(path).events[-1]
    assert ended.kind == "action.succeeded" and ended.output[0] == result.lines[0]


async def test_a_session_that_turned_active_after_the_preview_is_not_terminated(
    pg_server: PgServer, pg_sessions: Sessions, tmp_path: Path
) -> None:
    config_text = CONFIG.replace("postgresql://u@127.0.0.1:1/db", pg_server.dsn())
    config = load_config(write(tmp_path, {}, config=config_text))
    executor = Executor(config, Journal(tmp_path / "journal.jsonl", operator=OPERATOR))
    app = f"ic-safety-{secrets.token_hex(3)}"
    victim = await pg_sessions.open(application_name=app)
    await victim.execute("BEGIN")
    await victim.execute("SELECT 1")  # idle in transaction from here
    pid = await victim.fetchval("SELECT pg_backend_pid()")
    spec = ActionSpec(
        signal=SignalAction(
            cluster="main",
            signal="terminate",
            select=(
                "SELECT pid, backend_start FROM pg_catalog.pg_stat_activity "
                "WHERE state = 'idle in transaction' AND application_name = $1 "
                "AND state_change < now() - make_interval(secs => $2) AND datname = current_database();"
            ),
            params=["{{app}}", 0],
        ),
        impact="destructive",
    )
    ctx = Context({"app": Value(app, trusted=False)})
    plan = await executor.preview(executor.render(spec, ctx))
    assert [t.pid for t in plan.targets] == [pid]
    assert "re-checked" in " ".join(plan.lines) or "checked again" in " ".join(plan.lines)
    dry = await executor.dry_run(plan)  # the select inside the signalling statement prepares
    assert dry.status == Status.DRY_RUN, dry.message
    # What it would touch, in words ("would run as shown" said neither what nor how many).
    assert dry.message == f"would run as shown: terminate 1 session on main (pid {pid})", dry.message

    # Between the preview and the confirmation the session starts working: same pid, same
    # backend_start, but no longer idle in transaction.
    busy = asyncio.ensure_future(victim.fetchval("SELECT pg_sleep(2)"))
    await _until_active(pg_server, pid)
    result = await executor.execute(plan, Confirmation(typed=str(pid)))
    assert result.status == Status.REFUSED, result.message
    assert result.message == f"nothing signalled: pid {pid} no longer listed by the select"
    assert any("the select no longer lists it" in line for line in result.lines)
    await busy  # the query ran to its end: the session was left alone
    assert await victim.fetchval("SELECT 1") == 1

    # Idle in transaction again: previewed again, it is terminated.
    await victim.execute("SELECT 1")
    plan = await executor.preview(executor.render(spec, ctx))
    result = await executor.execute(plan, Confirmation(typed=str(pid)))
    assert (result.status, result.message) == (Status.SUCCEEDED, f"terminated pid {pid}")

    # Gone: a dry-run now says what the execute would say, not "would run as shown".
    dry = await executor.dry_run(executor.render(spec, ctx))
    assert (dry.status, dry.message) == (Status.DRY_RUN, "nothing to do: the preview found no sessions")


def test_the_demo_stack_walks_runbooks_at_the_scale_of_its_alert_rules(tmp_path: Path) -> None:
    from console.config import Config
    from console.demo import configwriter
    from console.demo import rules as demo_rules

    ends = configwriter.Endpoints("http://a:1", "http://b:2", "http://c:3", "http://d:4", "http://e:5", 4, 5)
    data = configwriter.console_config(
        tmp_path, ends, "t0ken", "postgresql://u@127.0.0.1:1/shop", tmp_path / "fly"
    )
    settings = Config.model_validate(data).runbooks
    assert settings.time_scale == demo_rules.DEMO_FACTOR and settings.min_window == demo_rules.MIN_WINDOW
    assert (
        scale_expr("rate(x[5m])", settings.time_scale, settings.min_window) == "rate(x[10s])"
    )  # the demo's RANGE
