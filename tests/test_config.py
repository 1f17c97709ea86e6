"""The one config loader: valid files load, every bad input is one file:line:col line, never a traceback."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import pytest

from console import redact
from console.cli import main
from console.config import find_config_path, parse_duration
from console.loader import load_config
from console.yamlfile import ConfigError

PROBLEM = re.compile(r"^.+:\d+:\d+: \S.*$")

VALID = """\
environment: {name: prod-eu, production: true}
read_only: false
refresh: {health: 5s, prometheus: 10s, postgres: 1s}
health:
  - name: storefront
    url: http://127.0.0.1:8080/health
    format: health+json
    timeout: 2s
    headers:
      Authorization: {value: "Bearer ${SF_TOKEN:-tok-default-123}", secret: true}
    runbooks: [provider-down]
  - name: sync-worker
    url: http://127.0.0.1:8081/actuator/health
    format: spring
    latency: {warning: 0.5, critical: 2}
prometheus:
  url: http://127.0.0.1:9090
  alertmanager_url: http://127.0.0.1:9093
  queries:
    - id: error_rate
      query: sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))
      unit: ratio
      threshold: {warning: 0.01, critical: 0.05, for: 1m, recovery: 0.008, runbooks: [high-error-rate]}
postgres:
  - name: main
    dsn: postgresql://console:${PG_PASSWORD:-s3cret-pw}@127.0.0.1:5432/shop
    statement_timeout: 2s
    thresholds:
      waiting: {critical: 1, runbooks: [lock-contention]}
      mean_statement_time: null
"""

RUNBOOK = "id: {id}\ntitle: {id}\n"


def write(tmp_path: Path, text: str | bytes, name: str = "console.yaml", runbooks=("provider-down",
          "high-error-rate", "lock-contention")) -> Path:  # fmt: skip
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    rb = tmp_path / "runbooks"
    rb.mkdir(exist_ok=True)
    for runbook_id in runbooks:
        (rb / f"{runbook_id}.yaml").write_text(RUNBOOK.format(id=runbook_id))
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    lines = [str(p) for p in info.value.problems]
    assert lines, "a ConfigError must carry at least one problem"
    for line in lines:
        assert PROBLEM.match(line), line
        assert "\n" not in line
    return lines


def test_valid_config_loads_with_defaults_and_derived_threshold_ids(tmp_path):
    config = load_config(write(tmp_path, VALID), env={})
    assert config.environment.production is True
    assert config.refresh.postgres == 1.0
    assert config.health[0].timeout == 2.0
    assert config.health[0].headers["Authorization"].value == "Bearer tok-default-123"
    ids = {t.id for t in config.thresholds()}
    assert {
        "health.storefront",
        "health.sync-worker",
        "health.sync-worker.latency",
        "prometheus.error_rate",
        "postgres.main.waiting",
        "postgres.main.connections",
        "postgres.main.long_running",
        "postgres.main.idle_in_transaction",
    } <= ids
    assert "postgres.main.mean_statement_time" not in ids  # null turns a default off
    assert config.threshold("prometheus.error_rate").threshold.for_ == 60.0
    assert config.threshold("postgres.main.waiting").runbooks == ("lock-contention",)
    assert config.runbook_ids == {"provider-down", "high-error-rate", "lock-contention"}


def test_secrets_from_config_are_registered_for_scrubbing(tmp_path):
    load_config(write(tmp_path, VALID), env={})
    assert "s3cret-pw" in redact.registered()
    assert {"Bearer tok-default-123", "tok-default-123"} <= redact.registered()
    assert "Bearer" not in redact.registered() and "Bearer " not in redact.registered()
    assert "s3cret-pw" not in redact.scrub("could not connect with s3cret-pw")


def test_env_interpolation(tmp_path):
    text = VALID.replace("prod-eu", '"${ENV_NAME}"').replace("read_only: false", "read_only: ${RO:-false}")
    text = text.replace("format: spring", "format: spring\n    verify_tls: $${NOT_A_VAR}")
    config = load_config(write(tmp_path, text), env={"ENV_NAME": "staging", "PG_PASSWORD": "x9y8z7"})
    assert config.environment.name == "staging"
    assert config.read_only is False
    assert config.health[1].verify_tls == "${NOT_A_VAR}"
    assert config.postgres[0].dsn == "postgresql://console:x9y8z7@127.0.0.1:5432/shop"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("timeout: 2s", "timout: 2s"),
            r":8:5: unknown key 'timout' in health\[0\] \(did you mean 'timeout'\?\)",
        ),
        (("timeout: 2s", "timeout: soon"), r":8:14: health\[0\]\.timeout: expected a duration"),
        (("read_only: false", "read_only: maybe"), r":2:12: read_only: Input should be a valid boolean"),
        (
            ("url: http://127.0.0.1:9090", "url: ftp//nowhere"),
            r":17:8: prometheus\.url: bad URL 'ftp//nowhere'",
        ),
        (
            ("{name: prod-eu", '{name: "${PROD_NAME}"'),
            r":1:21: undefined environment variable \$\{PROD_NAME\}",
        ),
        (
            ("{name: prod-eu", '{name: "prod-${1ST}"'),
            r":1:27: a variable is \$\{NAME\} or \$\{NAME:-default\}",
        ),
        (("{name: prod-eu", '{name: "prod-${ENV"'), r":1:27: unclosed '\$\{' \(no '\}' after it\)"),
        (
            ("name: sync-worker", "name: storefront"),
            r":12:11: duplicate health target name 'storefront' \(first defined at line 5\)",
        ),
        (
            ("warning: 0.01, critical: 0.05", "warning: 0.05, critical: 0.01"),
            r":23:18: .*warning \(0\.05\) and critical \(0\.01\) are in the wrong order",
        ),
        (
            ("runbooks: [lock-contention]", "runbooks: [no-such-runbook]"),
            r":29:16: runbook 'no-such-runbook' does not exist in runbooks/",
        ),
        (
            ("{critical: 1,", "{id: prometheus.error_rate, critical: 1,"),
            r":29:16: duplicate threshold id 'prometheus.error_rate' \(first defined at line 23\)",
        ),
        (
            ("format: spring", "format: xml"),
            r":14:13: health\[1\]\.format: Input should be 'health\+json', 'spring', 'k8s' or 'status'",
        ),
        (
            ("  - name: main\n", "  - nam: main\n"),
            r"unknown key 'nam' in postgres\[0\] \(did you mean 'name'\?\)",
        ),
        (
            ("statement_timeout: 2s", "statement_timeout: -2s"),
            r"postgres\[0\]\.statement_timeout: expected a duration",
        ),
        (("recovery: 0.008", "recovery: 0.02"), r"recovery \(0\.02\) must be on the healthy side"),
        (
            ("    thresholds:\n", "    extra: 1\n    thresholds:\n"),
            r":28:5: unknown key 'extra' in postgres\[0\]",
        ),
    ],
)
def test_each_bad_input_is_one_positioned_line(tmp_path, edit, expected):
    old, new = edit
    assert old in VALID
    lines = problems(write(tmp_path, VALID.replace(old, new, 1)))
    assert any(re.search(expected, line) for line in lines), lines


def test_all_problems_are_reported_together(tmp_path):
    text = VALID.replace("timeout: 2s", "timout: 2s", 1).replace("read_only: false", "read_only: 7x")
    text = text.replace("prod-eu", '"${MISSING_ONE}"')
    lines = problems(write(tmp_path, text))
    assert len(lines) == 3
    assert [int(line.split(":")[1]) for line in lines] == sorted(int(line.split(":")[1]) for line in lines)


def test_bad_dsn_error_does_not_show_the_password(tmp_path):
    text = VALID.replace("postgresql://console:", "mysql://console:")
    lines = problems(write(tmp_path, text))
    assert any("bad DSN 'mysql://console:***@127.0.0.1:5432/shop'" in line for line in lines), lines
    assert not any("s3cret-pw" in line for line in lines)


def test_search_order(tmp_path, monkeypatch):
    explicit, from_env, xdg_home, cwd = (tmp_path / d for d in ("a", "b", "xdg", "cwd"))
    (xdg_home / "incident-console").mkdir(parents=True)
    (xdg_home / "incident-console" / "console.yaml").write_text("{}")
    env = {"INCIDENT_CONSOLE_CONFIG": str(from_env / "c.yaml"), "XDG_CONFIG_HOME": str(xdg_home)}
    assert find_config_path(explicit / "x.yaml", env, cwd) == explicit / "x.yaml"
    assert find_config_path(None, env, cwd) == from_env / "c.yaml"
    del env["INCIDENT_CONSOLE_CONFIG"]
    assert find_config_path(None, env, cwd) == xdg_home / "incident-console" / "console.yaml"
    env["XDG_CONFIG_HOME"] = str(tmp_path / "empty")
    assert find_config_path(None, env, cwd) == cwd / "config" / "console.yaml"


def test_durations():
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120
    assert parse_duration(3) == 3.0
    for bad in ("5 parsecs", True, "-1s", "nan", float("inf")):
        with pytest.raises(ValueError):
            parse_duration(bad)


def check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    from console.cli import _parser, cmd_check_config

    code = cmd_check_config(_parser().parse_args(["check-config", str(path)]), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_check_config_cli_success_and_failure(tmp_path, capsys):
    good = write(tmp_path, VALID)
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write(tmp_path, VALID.replace("timeout: 2s", "timout: 2s", 1), name="bad.yaml")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{bad}:8:5: unknown key 'timout' in health[0] (did you mean 'timeout'?)"]


HOSTILE_FILES = {
    "binary junk": bytes(random.Random(7).randrange(256) for _ in range(4096)),
    "invalid utf-8": b"environment:\n  name: caf\xe9\n",
    "nul byte": b"environment: {name: a\x00b}\n",
    "a list": b"- 1\n- 2\n",
    "a scalar": b"just words",
    "two documents": b"read_only: true\n---\nread_only: false\n",
    "alias bomb": (
        b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    ),
    "deep nesting": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "python tag": b"environment: !!python/object/apply:os.system ['true']\n",
    "tabs": b"environment:\n\tname: x\n",
    "unclosed": b"environment: {name: x\n",
    "duplicate key": b"read_only: true\nread_only: false\n",
    "mapping key": b"? [a, b]\n: 1\n",
    "dollar brace": b"environment: {name: ${}}\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_files_give_positioned_lines_never_a_traceback(tmp_path, name):
    path = write(tmp_path, HOSTILE_FILES[name])
    code, out, err = check(path)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert lines and all(PROBLEM.match(line) for line in lines), err
    assert "Traceback" not in err


def test_fifty_megabyte_file_is_refused_quickly(tmp_path):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as handle:
        chunk = b"# padding " + b"x" * 1013 + b"\n"
        for _ in range(50 * 1024):
            handle.write(chunk)
    code, _, err = check(path)
    assert code == 2
    assert re.match(rf"^{re.escape(str(path))}:1:1: file is 5\d\.\d MB; the limit is 4 MiB$", err.strip())


def test_missing_file_and_directory(tmp_path):
    code, _, err = check(tmp_path / "nope.yaml")
    assert code == 2 and err.strip().endswith(":1:1: config file not found")
    (tmp_path / "dir.yaml").mkdir()
    code, _, err = check(tmp_path / "dir.yaml")
    assert code == 2 and "is a directory" in err


def test_mutated_configs_never_escape_as_exceptions(tmp_path):
    """Randomly corrupted versions of a valid file: every outcome is OK or positioned lines."""
    rng = random.Random(20261123)
    base = VALID.encode()
    for i in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.4:
                data[pos] = (
                    rng.choice(b"{}[]:,-&*!|>'\"#%@`\t\n ${") if rng.random() < 0.7 else rng.randrange(256)
                )
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 20)]
            else:
                data[pos:pos] = bytes(rng.choice(b"xyz:-[]{} \n") for _ in range(rng.randint(1, 10)))
        path = write(tmp_path, bytes(data), name=f"m{i}.yaml")
        code, _, err = check(path)
        assert code in (0, 2), err
        if code == 2:
            assert all(PROBLEM.match(line) for line in err.strip().splitlines()), err


SYNTAX_ERRORS = {
    "tab": "a: 1\n\tb: 2\n",
    "unclosed-quote": 'a: "unclosed\nb: 2\n',
    "indentation": "a:\n  - 1\n - 2\n",
    "unclosed-flow": "a: [1, 2\nb: 3\n",
    "value-in-value": "key: value: other\n",
    "sequence-then-mapping": "- a\nb: 1\n",
    "undefined-alias": "a: *undefined\n",
}


@pytest.mark.parametrize("text", SYNTAX_ERRORS.values(), ids=SYNTAX_ERRORS.keys())
def test_libyaml_and_python_parsers_place_a_syntax_error_alike(monkeypatch, text):
    """The files are parsed by libyaml (yamlfile._COMPOSER): its errors point at the same line
    and column as PyYAML's own parser."""
    import yaml

    from console import yamlfile

    places = []
    for composer in (yaml.SafeLoader, yaml.CSafeLoader):
        monkeypatch.setattr(yamlfile, "_COMPOSER", composer)
        with pytest.raises(ConfigError) as caught:
            yamlfile.parse_document(text, "f.yaml", {})
        (problem,) = caught.value.problems
        assert problem.message.startswith("YAML syntax: "), problem
        places.append((problem.line, problem.col))
    assert places[0] == places[1], text


def test_nesting_past_libyamls_limit_is_a_problem_not_a_crash():
    from console.yamlfile import parse_document

    with pytest.raises(ConfigError) as caught:
        parse_document("[" * 100_000 + "]" * 100_000 + "\n", "f.yaml", {})
    assert str(caught.value).startswith("f.yaml:1:"), caught.value


def test_the_shipped_config_and_runbooks_parse_alike_with_both_parsers(monkeypatch):
    """Same data, same positions (every problem's file:line:col) from libyaml as from PyYAML's
    own parser, for every YAML file the console ships."""
    import yaml

    from console import yamlfile

    root = Path(__file__).resolve().parent.parent / "config"
    files = sorted(root.rglob("*.yaml"))
    assert len(files) > 40
    for file in files:
        docs = []
        for composer in (yaml.SafeLoader, yaml.CSafeLoader):
            monkeypatch.setattr(yamlfile, "_COMPOSER", composer)
            doc = yamlfile.read_document(file, {})
            docs.append((doc.data, doc.values, doc.problems))
        assert docs[0] == docs[1], file
    assert yamlfile._COMPOSER is yaml.CSafeLoader  # what the console uses (PyYAML's wheels have it)


def test_check_config_warns_of_a_journal_that_cannot_be_written(tmp_path):
    """A journal path that cannot be written is a warning, not an error (a config may be
    checked on another host than the console's); said in one line, before the first action
    would be refused."""
    blocker = tmp_path / "state"
    blocker.write_text("a file where a directory should be")
    path = write(tmp_path, VALID + f"journal: {blocker / 'journal.jsonl'}\n")
    code, out, err = check(path)
    assert code == 0 and "OK" in out
    assert err.splitlines() == [
        f"{path}: warning: cannot write the journal {blocker / 'journal.jsonl'}: {blocker} is not a "
        "directory (every action would be refused)"
    ]
    blocker.unlink()
    assert check(path) == (0, out, "")
    assert not blocker.exists(), "check-config made the journal's directory"
