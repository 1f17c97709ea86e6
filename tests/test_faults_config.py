"""A broken config through every command that reads one: one ``file:line:col: message`` line
per problem, the documented exit code, no traceback, no password, and nothing started (no
terminal taken over, no journal written, no backend contacted).

The loader's own positions and messages are tested in test_config.py; these tests are about
what each command does with them.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from console.cli import main
from tests.fixtures.faults import ROOT, RUNBOOKS

PROBLEM = re.compile(r"^.+:\d+:\d+: \S.*$")
PASSWORD = "cfg-canary-Zq81"

GOOD = f"""\
environment: {{name: cfg-faults}}
runbooks_dir: RUNBOOKS
journal: JOURNAL
health:
  - name: api
    url: http://127.0.0.1:9/health
postgres:
  - name: main
    dsn: postgresql://console:{PASSWORD}@127.0.0.1:9/shop
"""

BROKEN = {
    "syntax error": ("  - name: api\n", "  - name: [api\n"),
    "unknown key": (
        "    url: http://127.0.0.1:9/health\n",
        "    url: http://127.0.0.1:9/health\n    retries: 3\n",
    ),
    "missing env var": ("{name: cfg-faults}", '{name: "${IC_NO_SUCH_VARIABLE}"}'),
    "binary junk": None,
    "unclosed variable": (
        f"dsn: postgresql://console:{PASSWORD}@",
        f"dsn: ${{PG_DSN:-postgresql://console:{PASSWORD}@",
    ),
}

# (command, exit code for a bad config)
COMMANDS = {
    "check-config": (["check-config", "{config}"], 2),
    "snapshot": (["snapshot", "--config", "{config}"], 3),  # unknown, for cron and CI
    "snapshot json": (["snapshot", "--config", "{config}", "--format", "json"], 3),
    "run": (["run", "--config", "{config}"], 2),
    "wall": (["--wall", "--config", "{config}"], 2),
    "export": (["export", "--config", "{config}"], 2),
    "runbook list": (["runbook", "list", "--config", "{config}"], 2),
}


def broken_config(tmp_path: Path, case: str) -> Path:
    path = tmp_path / "console.yaml"
    if BROKEN[case] is None:
        junk = bytes(random.Random(8).randrange(256) for _ in range(2048))
        path.write_bytes(junk + f"\ndsn: postgresql://u:{PASSWORD}@h/db\n".encode())
    else:
        old, new = BROKEN[case]
        (tmp_path / "runbooks").mkdir(exist_ok=True)
        text = GOOD.replace("JOURNAL", str(tmp_path / "journal.jsonl")).replace(
            "RUNBOOKS", str(tmp_path / "runbooks")
        )
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("case", list(BROKEN))
def test_every_command_refuses_a_broken_config_in_one_line_per_problem(tmp_path, monkeypatch, capsys, case):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where a default journal would go
    monkeypatch.delenv("IC_NO_SUCH_VARIABLE", raising=False)
    config = broken_config(tmp_path, case)
    for name, (argv, code) in COMMANDS.items():
        got = main([arg.replace("{config}", str(config)) for arg in argv])
        out, err = capsys.readouterr()
        assert got == code, (name, got, out, err)
        lines = err.strip().splitlines()
        assert lines and all(PROBLEM.match(line) for line in lines), (name, err)
        assert all(line.startswith(f"{config}:") for line in lines), (name, err)
        assert "Traceback" not in err and PASSWORD not in err + out, (name, err)
        assert out == "", (name, out)  # nothing half-printed: no report, no terminal escape codes
    assert not (tmp_path / "journal.jsonl").exists() and not (tmp_path / "state").exists()


def test_the_console_process_with_a_broken_config_prints_one_line_and_leaves_the_terminal(tmp_path):
    """The real entry point in a real process: stderr has the positioned line and nothing else,
    stdout stays empty (no alternate screen, no mouse mode: the TUI never started)."""
    config = broken_config(tmp_path, "unknown key")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm"}
    done = subprocess.run(
        [sys.executable, "-m", "console.cli", "--config", str(config)],
        cwd=ROOT, env=env, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f"{config}:7:5: unknown key 'retries' in health[0] "
        "(allowed: name, url, format, timeout, verify_tls, headers, severity, for, latency, runbooks)"
    ]


def test_an_unclosed_variable_is_named_at_its_column_and_the_dsn_in_it_masked(tmp_path, capsys):
    config = broken_config(tmp_path, "unclosed variable")
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert PASSWORD not in err
    assert f"{config}:9:10: unclosed '${{' (no '}}' after it)" in err.splitlines(), err
    assert "console:***@" in err, err  # the DSN problem still says which DSN, masked


def test_a_junk_runbook_file_is_positioned_and_the_rest_of_the_pack_is_still_checked(tmp_path, capsys):
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    for source in sorted(RUNBOOKS.glob("*.yaml"))[:3]:
        (runbooks / source.name).write_bytes(source.read_bytes())
    (runbooks / "junk.yaml").write_bytes(bytes(random.Random(9).randrange(256) for _ in range(1024)))
    (runbooks / "half.yaml").write_text("id: half\ntitle: [unclosed\n")
    config = tmp_path / "console.yaml"
    config.write_text(GOOD.replace("JOURNAL", str(tmp_path / "j.jsonl")).replace("RUNBOOKS", str(runbooks)))
    code = main(["check-config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert any(line.startswith(f"{runbooks / 'junk.yaml'}:") for line in lines), lines
    assert any(line.startswith(f"{runbooks / 'half.yaml'}:3:1: YAML syntax") for line in lines), lines
    assert all(PROBLEM.match(line) for line in lines) and "Traceback" not in err


def test_a_minimal_config_on_the_shipped_pack_prints_each_distinct_problem_once_worst_first(tmp_path, capsys):
    """Issue 18: a config without the pack's variables printed ~110 'unknown variable' lines with
    the one real error last. One line per distinct problem, the config's own first."""
    config = tmp_path / "console.yaml"
    config.write_text(
        f"environment: {{name: minimal}}\nrunbooks_dir: {RUNBOOKS}\njournal: {tmp_path / 'j.jsonl'}\n"
        "postgres:\n  - name: main\n    dsn: postgresql://console@127.0.0.1:9/shop\n"
        "    thresholds: {waiting: {warning: 1, runbooks: [no-such-runbook]}}\n"
    )
    assert main(["check-config", str(config)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith(f"{config}:7:") and "runbook 'no-such-runbook' does not exist" in lines[0]
    assert all(PROBLEM.match(line) for line in lines)
    unknown = [line for line in lines if "unknown variable 'admin_token'" in line]
    assert len(unknown) == 1 and re.search(r"\(and \d+ more places in \d+ files\)$", unknown[0]), unknown
    messages = [line.split(": ", 1)[1] for line in lines]
    assert len(messages) == len(set(messages)) and len(lines) < 20, lines


def test_no_config_anywhere_says_where_it_looked_and_how_to_start(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # outside the repository: no ./config/console.yaml
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("INCIDENT_CONSOLE_CONFIG", raising=False)
    for argv, code in ((["check-config"], 2), (["snapshot"], 3), (["run"], 2)):
        assert main(argv) == code
        err = capsys.readouterr().err
        assert "no config file found" in err, (argv, err)
        assert str(tmp_path / "xdg" / "incident-console" / "console.yaml") in err
        assert str(tmp_path / "config" / "console.yaml") in err and "$INCIDENT_CONSOLE_CONFIG" in err
        assert "incident-console demo" in err and "--config PATH" in err
