"""``incident-console runbook list|show`` and ``incident-console export``, good and bad input."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from console.actions import Confirmation, Executor, Status
from console.cli import main
from console.journal import Journal, Note, Operator, record_breaches
from console.loader import load_config
from console.model import Severity
from console.rules import Breach, State
from console.runbooks import RunbookSession, pack_for
from tests.fixtures.http_servers import StubServer

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "console.yaml"
OPERATOR = Operator("alice", "10.0.0.5", "console-host")
TOKEN = "tok-" + secrets.token_hex(8)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_config(tmp_path: Path, base_url: str = "http://127.0.0.1:9", **extra: Any) -> Path:
    """A config on the real runbook pack, with the variables it uses and a journal of its own."""
    doc = yaml.safe_load(CONFIG.read_text())
    doc["runbooks_dir"] = str(CONFIG.parent / "runbooks")
    doc["journal"] = "state/journal.jsonl"  # relative to the config file
    doc["environment"] = {"name": "staging"}
    doc["variables"]["admin_token"] = {"value": TOKEN, "secret": True}
    doc["variables"]["sync_worker_url"] = base_url
    doc["variables"]["storefront_url"] = base_url
    doc.update(extra)
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# --- runbook list ---------------------------------------------------------------------------------


def test_list_prints_every_runbook_with_severity_title_and_triggers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "runbook", "list", "--config", str(CONFIG))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    pack = pack_for(load_config(CONFIG))
    assert lines[0].split() == ["ID", "SEVERITY", "TITLE", "/", "TRIGGERS"]
    assert lines[-1] == f"{len(pack.runbooks)} runbooks in {CONFIG.parent / 'runbooks'}"
    body = lines[1:-1]
    assert len(body) == 2 * len(pack.runbooks)
    ids = [line.split()[0] for line in body[::2]]
    assert ids == sorted(r.id for r in pack.runbooks)
    i = ids.index("lock-contention")
    assert body[2 * i].split(None, 2) == [
        "lock-contention",
        "high",
        "Lock contention — a session blocks others",
    ]
    assert body[2 * i + 1].strip() == (
        "↳ alerts PostgresqlDeadLocks, PostgresqlTooManyLocksAcquired; thresholds postgres.*.waiting"
    )
    j = ids.index("chatwoot-unavailable")
    assert body[2 * j + 1].strip() == (
        "↳ alerts IntegrationDown{provider=chatwoot}, UpstreamServerErrors{provider=chatwoot}; thresholds health.*; health *; providers chatwoot"
    )


def test_the_installed_command_lists_and_a_closed_pipe_is_quiet() -> None:
    done = subprocess.run(
        f"{sys.executable} -m console.cli runbook list --config {CONFIG} | head -2",
        shell=True,  # the test's own pipe; the console itself never uses a shell
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.stdout.splitlines()[1].startswith("auth-errors")
    assert done.stderr == ""


# --- runbook show ----------------------------------------------------------------------------------


def test_show_prints_steps_with_what_they_run_and_masks_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path, base_url="http://127.0.0.1:8081")
    code, out, err = run(capsys, "runbook", "show", "provider-down", "--config", str(config))
    assert (code, err) == (0, "")
    assert TOKEN not in out
    lines = out.splitlines()
    assert lines[0] == "provider-down: Integration provider is down or unreachable"
    assert lines[2] == "source: 002_b6be26c7e79b062d.txt › 1. CRM/ATS Provider Downtime"
    runbook = pack_for(load_config(config)).get("provider-down")
    numbered = [line for line in lines if re.match(r"^\s?\d+\. \[", line)]
    assert len(numbered) == len(runbook.steps)
    assert numbered[5] == (
        " 6. [action, destructive] Switch hubspot off for tenant default (stops the cascading failures)"
    )
    action = lines[lines.index(numbered[5]) + 1 : lines.index(numbered[6])]
    url = "http://127.0.0.1:8081/api/v1/admin/tenants/default/integrations/hubspot"
    assert [line.strip() for line in action] == [
        "Only when the failing integration is hurting everything else.",
        f"PATCH {url}",
        "Authorization: ***",
        'body: {"enabled": false}',
        f"confirmation: type 'hubspot' to run: PATCH {url} {{\"enabled\":false}}",
    ]
    assert "POST-INCIDENT CHECKLIST" in lines
    assert "  [ ] Check whether any data needs a manual sync" in lines
    assert "  HubSpot status: https://status.hubspot.com" in lines


def test_show_has_the_escalation_levels_and_signal_confirmation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "runbook", "show", "lock-contention", "--config", str(CONFIG))
    assert code == 0
    lines = out.splitlines()
    assert "ESCALATION" in lines
    assert (
        "  level 1, after the start: automated response: retries, circuit breaker (notify: system logs)"
        in lines
    )
    assert any(line.startswith("  level 3, after 2h00m: Engineering Manager (secondary)") for line in lines)
    assert (
        "      confirmation: typed, after the preview: the pid if the preview lists one session, else 'main'"
        in lines
    )
    # SQL keeps its layout: the continuation lines of the statement stay indented.
    assert "              WHERE a.pid = ANY (pg_catalog.pg_blocking_pids(w.pid))) AS blocking," in lines


@pytest.mark.parametrize(
    ("wanted", "hint"),
    [
        ("lock-contenton", " (did you mean 'lock-contention'?)"),
        ("oauth", " (did you mean 'oauth-expired', 'auth-errors'?)"),
        ("zzzz", ""),
    ],
)
def test_show_of_an_unknown_id_is_one_line_with_did_you_mean(
    capsys: pytest.CaptureFixture[str], wanted: str, hint: str
) -> None:
    code, out, err = run(capsys, "runbook", "show", wanted, "--config", str(CONFIG))
    assert (code, out) == (2, "")
    assert err == (
        f"incident-console runbook show: no runbook '{wanted}'{hint}; list them with: incident-console runbook list\n"
    )


def test_a_bad_config_is_one_line_per_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "console.yaml"
    bad.write_text("environment:\n  nmae: x\n")
    for argv in (["runbook", "list"], ["runbook", "show", "x"], ["export", "--since", "1h"]):
        code, out, err = run(capsys, *argv, "--config", str(bad))
        assert (code, out) == (2, "")
        assert err == f"{bad}:2:3: unknown key 'nmae' in environment (did you mean 'name'?)\n"


# --- export ---------------------------------------------------------------------------------------


def _breach(breach_id: str, since: float, **fields: Any) -> Breach:
    return Breach(
        id=breach_id,
        kind=fields.pop("kind", "threshold"),
        source=fields.pop("source", "health:sync-worker"),
        title=fields.pop("title", "sync-worker health"),
        state=fields.pop("state", State.FIRING),
        severity=fields.pop("severity", Severity.CRITICAL),
        since=since,
        **fields,
    )


HOSTILE_NOTE = "| broke [x](javascript:alert(1)) <script>alert(1)</script> **bold** `tick`"


async def _an_incident(config_path: Path, server: StubServer) -> float:
    """Journal an incident the way the console does: breaches, a runbook with a check, a
    refused and a confirmed action, notes, a ticked checklist item; an older event too."""
    config = load_config(config_path)
    path = config.journal_path()
    started = time.time() - 600
    old = Journal(path, operator=OPERATOR, environment="staging", clock=lambda: time.time() - 3 * 3600)
    old.append(Note(text="an old note from an earlier incident"))
    journal = Journal(path, operator=OPERATOR, environment="staging")
    breach = _breach(
        "health.sync-worker", started, summary="hubspot: fail", value_text="FAIL", subject="sync-worker"
    )
    record_breaches(journal, [], [breach])
    ex = Executor(config, journal)
    runbook = pack_for(config).get("provider-down")
    session = await RunbookSession.open(runbook, ex, breach=breach)
    assert (await session.execute(runbook.step("integrations-status"))).status == Status.PASSED
    step = runbook.step("disable-integration")
    plan = await session.prepare(step)
    refused = await session.execute(step, Confirmation(typed="hubspt"), plan)
    assert refused.status == Status.REFUSED
    assert (await session.execute(step, Confirmation(typed="hubspot"), plan)).status == Status.SUCCEEDED
    await session.note(HOSTILE_NOTE, step=step)
    await session.note("customers see stale CRM data")
    await session.tick(2)
    record_breaches(journal, [breach], [])
    return started


@pytest.fixture
def incident_server(http_server: StubServer) -> StubServer:
    http_server.route("/api/v1/integrations/status", json={"hubspot": {"state": "error"}})
    http_server.route("/api/v1/admin/tenants/default/integrations/hubspot", json={"enabled": False})
    return http_server


async def test_export_markdown_has_timeline_breaches_actions_notes_and_checklist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, incident_server: StubServer
) -> None:
    config = write_config(tmp_path, base_url=incident_server.url("").rstrip("/"))
    await _an_incident(config, incident_server)
    code, out, err = run(capsys, "export", "--since", "2h", "--config", str(config))
    assert (code, err) == (0, "")
    assert TOKEN not in out
    assert "an old note" not in out  # older than 2h
    sections = [line for line in out.splitlines() if line.startswith("#")]
    assert sections[0].startswith("# Incident report: staging, ")
    assert sections[1:5] == ["## Summary", "## Timeline", "## Breaches", "## Actions"]
    assert {"## Notes", "## Runbooks used", "## Post-incident checklist"} <= set(sections)
    assert "- Breaches: 1 (0 still open at the end)" in out
    assert "- Actions: 1 refused, 1 succeeded" in out
    assert "- Checks: 1 passed, 0 failed" in out
    timeline = [line for line in out.splitlines() if re.match(r"^\| \d{4}-", line)]
    # a breach is the system's, read as its severity (issue 18), not the operator's failure
    assert any(
        "| system | ✖ CRIT | sync-worker health firing: FAIL sync-worker |" in line for line in timeline
    )
    assert any("| system | ✔ ok | sync-worker health cleared (was firing since " in line for line in timeline)
    assert any("⊘ refused | refused: Switch hubspot off" in line for line in timeline)
    assert re.search(r"\| sync-worker health \(sync-worker\) \| CRIT \| .* \| 10m\d\ds \|", out)
    assert "### " in out and "succeeded: Switch hubspot off for tenant default" in out
    assert "- by alice@console-host (ssh from 10.0.0.5), confirmed: typed, took " in out
    assert "Authorization: \\*\\*\\*" not in out and "Authorization: ***" in out  # in a code block, as is
    # Hostile note text is inert Markdown: no table cell break, no link, no HTML, no emphasis.
    note_line = next(line for line in out.splitlines() if "broke" in line)
    unescaped = re.compile(r"(?<!\\)([<>\[\]`*|])")
    assert unescaped.findall(note_line.split("| note: ", 1)[1].rsplit(" |", 1)[0]) == []
    assert "\\| broke \\[x\\](javascript:alert(1)) \\<script\\>" in note_line
    assert "customers see stale CRM data" in out
    assert "- [x] Update the incident tracker" in out
    assert "- [ ] Check whether any data needs a manual sync" in out


async def test_export_json_is_the_same_report_for_scripts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, incident_server: StubServer
) -> None:
    config = write_config(tmp_path, base_url=incident_server.url("").rstrip("/"))
    started = await _an_incident(config, incident_server)
    code, out, err = run(capsys, "export", "--since", "3h30m", "--format", "json", "--config", str(config))
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["environments"] == ["staging"]
    assert doc["operators"] == [str(OPERATOR)]
    assert doc["summary"] == {
        "breaches": 1,
        "breaches_open": 0,
        "actions": {"refused": 1, "succeeded": 1},
        "checks": {"passed": 1, "not_met": 0, "failed": 0},
        "notes": 3,  # the old note is inside 3h30m
        "runbooks": ["provider-down"],
    }
    (breach,) = doc["breaches"]
    assert breach["id"] == "health.sync-worker" and breach["severity"] == "CRIT"
    assert abs(breach["duration"] - (time.time() - started)) < 60
    succeeded = next(a for a in doc["actions"] if a["result"] == "succeeded")
    assert succeeded["confirmation"] == "typed"
    assert succeeded["step"] == "disable-integration" and succeeded["runbook"] == "provider-down"
    assert succeeded["lines"][1] == "Authorization: ***"
    (runbook,) = doc["runbooks"]
    assert runbook["steps"] == {"done": 2, "todo": 12}
    assert [c["done"] for c in runbook["checklist"]] == [False, False, True]
    assert [t["event"] for t in doc["timeline"]][:2] == ["note", "breach.start"]
    assert TOKEN not in out


async def test_export_to_a_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, incident_server: StubServer
) -> None:
    config = write_config(tmp_path, base_url=incident_server.url("").rstrip("/"))
    await _an_incident(config, incident_server)
    target = tmp_path / "report.md"
    code, out, err = run(capsys, "export", "--config", str(config), "--output", str(target))
    assert code == 0 and err == ""
    assert re.fullmatch(rf"wrote {re.escape(str(target))}: \d+ events since \d{{4}}-.* UTC\n", out)
    assert target.read_text().startswith("# Incident report: staging")
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []


@pytest.mark.parametrize("since", ["yesterday", "-2h", "2 hours", "", "2026-13-45"])
def test_export_with_a_bad_since_is_one_line(capsys: pytest.CaptureFixture[str], since: str) -> None:
    code, out, err = run(capsys, "export", f"--since={since}", "--config", str(CONFIG))
    assert (code, out) == (2, "")
    assert err == (
        "incident-console export: --since: expected a duration such as 2h or 30m, or a UTC time "
        f"such as 2026-11-23T10:00, got '{since}'\n"
    )


def test_export_since_a_utc_time(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = write_config(tmp_path)
    journal = load_config(config).journal_path()
    Journal(journal, operator=OPERATOR, environment="staging", clock=lambda: 1_790_000_000.0).append(
        Note(text="at 14:13:20")
    )
    code, out, _ = run(
        capsys, "export", "--since", "2026-09-21T14:13", "--format", "json", "--config", str(config)
    )
    assert code == 0 and [t["text"] for t in json.loads(out)["timeline"]] == ["note: at 14:13:20"]
    code, out, _ = run(
        capsys, "export", "--since", "2026-09-21T14:14Z", "--format", "json", "--config", str(config)
    )
    assert code == 0 and json.loads(out)["timeline"] == []


def test_export_to_an_unwritable_place_is_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    Journal(load_config(config).journal_path(), operator=OPERATOR, environment="staging").append(
        Note(text="x")
    )
    target = tmp_path / "no" / "such" / "dir" / "report.md"
    code, out, err = run(capsys, "export", "--config", str(config), "--output", str(target))
    assert (code, out) == (1, "")
    assert err == f"incident-console export: cannot write {target}: No such file or directory\n"


def test_export_without_a_journal_says_so_and_writes_an_empty_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    code, out, err = run(capsys, "export", "--config", str(config))
    assert code == 0
    assert err == (
        f"incident-console export: no journal at {tmp_path / 'state' / 'journal.jsonl'} yet: nothing was recorded\n"
    )
    assert "Nothing was journaled in this period." in out


def test_export_skips_a_torn_last_line_and_says_how_many(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = write_config(tmp_path)
    journal = Journal(load_config(config).journal_path(), operator=OPERATOR, environment="staging")
    journal.append(Note(text="whole"))
    with open(journal.path, "ab") as handle:
        handle.write(b'{"ts": "2026-01-01T00:00:00Z", "event": "no')  # kill -9 mid-line
    code, out, _ = run(capsys, "export", "--config", str(config))
    assert code == 0
    assert "(1 unreadable lines skipped)" in out and "note: whole" in out
    assert os.path.getsize(journal.path) > 0


def test_show_fills_values_into_titles_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "runbook", "show", "idle-in-transaction", "--config", str(CONFIG))
    assert code == 0
    # Templates show only where a default is given as written; everything else is filled in.
    assert [line for line in out.splitlines() if "{{" in line and "(default {{" not in line] == []
    assert " 2. [check] Sessions idle in transaction for more than 300 s" in out
    assert "      expect: below 300 (threshold postgres.main.idle_in_transaction)" in out
    assert "      wait 1m00s, then run 'Longest idle-in-transaction session, in seconds' again" in out
    assert (
        "  older_than = 300 (default {{threshold_level|300}}): seconds idle in transaction (003: 5 minutes)"
        in out
    )


def test_export_covers_the_configs_environment_unless_told_otherwise(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One journal shared by consoles of several environments (as the demo's once was with the
    operator's): a report is the config's environment's unless --environment/--all-environments."""
    config = write_config(tmp_path)  # environment staging
    path = load_config(config).journal_path()
    for environment in ("staging", "bench", "demo"):
        Journal(path, operator=OPERATOR, environment=environment).append(
            Note(text=f"a note in {environment}")
        )

    code, out, err = run(capsys, "export", "--config", str(config))
    assert code == 0
    assert out.startswith("# Incident report: staging, ")
    assert "a note in staging" in out and "a note in bench" not in out and "a note in demo" not in out
    assert err == (
        "incident-console export: left out the events of bench, demo "
        "(--environment NAME or --all-environments includes them)\n"
    )

    code, out, err = run(
        capsys, "export", "--config", str(config), "--environment", "bench", "--format", "json"
    )
    doc = json.loads(out)
    assert code == 0 and doc["environments"] == ["bench"]
    assert [n["text"] for n in doc["notes"]] == ["a note in bench"]

    code, out, err = run(
        capsys, "export", "--config", str(config), "--environment", "bench", "--environment", "demo"
    )
    assert code == 0 and out.startswith("# Incident report: bench, demo, ")
    assert "a note in staging" not in out

    code, out, err = run(capsys, "export", "--config", str(config), "--all-environments")
    assert (code, err) == (0, "")
    assert out.startswith("# Incident report: bench, demo, staging, ")
    assert all(f"a note in {e}" in out for e in ("staging", "bench", "demo"))
