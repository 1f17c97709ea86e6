"""The one executor against real backends: Postgres, HTTP servers, processes, Alertmanager.

Every rule is proved by looking at the backend, not at the executor's answer alone: the table
still has its rows, the server saw no request, the session is still connected, the process
group is gone, the silence exists (or not)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from console.actions import (
    ActionSpec,
    ArgvAction,
    CheckSpec,
    Confirmation,
    ConfirmMode,
    Context,
    Executor,
    HttpAction,
    HttpGet,
    RenderError,
    SignalAction,
    SqlAction,
    SqlQuery,
    Status,
    Value,
)
from console.config import Config
from console.journal import ActionConfirmed, Journal, JournalEvent, Note, Operator, read_journal
from console.loader import load_config
from console.model import Severity
from console.pg import connect
from console.rules import Breach, State
from tests.fixtures.http_servers import StubServer
from tests.fixtures.postgres import PgServer, Sessions
from tests.fixtures.prometheus import AlertmanagerServer

OPERATOR = Operator("alice", "10.0.0.5", "console-host")
TOKEN = "tok-" + secrets.token_hex(8)  # a secret variable: never in a plan line or the journal


def make_config(
    tmp_path: Path,
    *,
    pg: PgServer | None = None,
    base_url: str = "http://127.0.0.1:9",
    alertmanager: str | None = None,
    **top: Any,
) -> Config:
    """A console.yaml written to disk and loaded the way the console loads it (which registers
    its secrets)."""
    doc: dict[str, Any] = {
        "environment": {"name": "test", "production": False},
        "runbooks_dir": "runbooks",
        "variables": {"base_url": base_url, "admin_token": {"value": TOKEN, "secret": True}},
        **top,
    }
    if pg is not None:
        doc["postgres"] = [{"name": "main", "dsn": pg.dsn()}]
    if alertmanager is not None:
        doc["prometheus"] = {"url": "http://127.0.0.1:9", "alertmanager_url": alertmanager}
    path = tmp_path / f"console-{secrets.token_hex(3)}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_config(path)


def executor(config: Config, tmp_path: Path, **kwargs: Any) -> Executor:
    return Executor(config, Journal(tmp_path / "journal.jsonl", operator=OPERATOR), **kwargs)


def ctx(config: Config, **untrusted: str) -> Context:
    values = {n: Value(v.value, True, v.secret) for n, v in config.variables.items()}
    values.update({k: Value(v, trusted=False) for k, v in untrusted.items()})
    return Context(values)


def events(ex: Executor) -> list[str]:
    return [e.kind for e in ex.journal.read().events]


YES = Confirmation(yes=True)


@pytest.fixture
async def table(pg_server: PgServer) -> Any:
    """A table of our own with two rows: what an SQL action may (or may not) change."""
    name = f"ic_act_{secrets.token_hex(4)}"
    await pg_server.execute(f"CREATE TABLE {name} (name text PRIMARY KEY)")
    await pg_server.execute(f"INSERT INTO {name} VALUES ('alpha'), ('beta')")
    yield name
    await pg_server.execute(f"DROP TABLE IF EXISTS {name}")


async def rows(pg: PgServer, table: str) -> list[str]:
    return [r["name"] for r in await pg.fetch(f"SELECT name FROM {table} ORDER BY name")]


# --- SQL: parameters are bound ------------------------------------------------------------------


HOSTILE = ["x' OR '1'='1", "alpha'; DROP TABLE {t}; --", "$1", "{{admin_token}}", "alpha\x00"]


async def test_a_hostile_value_is_a_bound_parameter_and_never_changes_the_sql(
    pg_server: PgServer, table: str, tmp_path: Path
) -> None:
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    spec = ActionSpec(
        sql=SqlAction(cluster="main", statement=f"DELETE FROM {table} WHERE name = $1", params=["{{victim}}"])
    )
    for hostile in HOSTILE:
        value = hostile.format(t=table)
        try:
            plan = ex.render(spec, ctx(config, victim=value))
        except RenderError:
            continue
        assert plan.lines[1] == f"DELETE FROM {table} WHERE name = $1"  # the text, as written
        result = await ex.execute(plan, YES)
        assert result.status in (Status.SUCCEEDED, Status.FAILED), result.message
        assert await rows(pg_server, table) == ["alpha", "beta"], value
    # The shown parameter is quoted the way SQL would read it, so the dialog is not misleading.
    plan = ex.render(spec, ctx(config, victim="x' OR '1'='1"))
    assert plan.lines[-1] == "  $1 = 'x'' OR ''1''=''1'"
    # And the plain value does what it says: exactly one row, and the result says so (a statement
    # that returns no rows reads as the server's status, never as "done: 0 rows").
    result = await ex.execute(ex.render(spec, ctx(config, victim="alpha")), YES)
    assert (result.status, result.message) == (Status.SUCCEEDED, "done: DELETE 1")
    assert await rows(pg_server, table) == ["beta"]


async def test_a_parameter_of_the_wrong_type_fails_before_anything_runs(
    pg_server: PgServer, table: str, tmp_path: Path
) -> None:
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    spec = ActionSpec(
        sql=SqlAction(
            cluster="main",
            statement=f"DELETE FROM {table} WHERE length(name) > $1",
            params=["{{n}}"],
        )
    )
    result = await ex.execute(ex.render(spec, ctx(config, n="1; DROP TABLE x")), YES)
    assert result.status == Status.FAILED
    assert result.message == "parameter '1; DROP TABLE x' is not a valid int4"
    assert await rows(pg_server, table) == ["alpha", "beta"]


def test_sql_text_with_a_template_is_refused_by_the_schema() -> None:
    with pytest.raises(ValueError, match=r"SQL text cannot hold \{\{variables\}\}"):
        SqlAction(statement="DELETE FROM t WHERE name = '{{victim}}'")


async def test_a_check_runs_read_only_even_if_its_sql_writes(
    pg_server: PgServer, table: str, tmp_path: Path
) -> None:
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    plan = ex.render(CheckSpec(sql=SqlQuery(cluster="main", statement=f"DELETE FROM {table}")), ctx(config))
    assert plan.confirm.mode == ConfirmMode.NONE
    result = await ex.execute(plan)  # a check needs no confirmation
    assert result.status == Status.FAILED
    assert "read-only transaction" in result.message
    assert await rows(pg_server, table) == ["alpha", "beta"]


async def test_a_checks_float_cells_read_as_numbers_do_elsewhere(pg_server: PgServer, tmp_path: Path) -> None:
    """A float8 column filled 18 cells of an 80-column step with 1279.2821276521738 (found in
    the demo's slow-queries runbook); the value line beside it said 1279.28."""
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    statement = (
        "SELECT 1279.2821276521738::float8 AS mean_ms, 0.9::float8 AS ratio, 1e-7::float8 AS tiny, "
        "1733552100.25::float8 AS epoch, 23 AS calls, 1.50::numeric AS kept"
    )
    result = await ex.execute(
        ex.render(CheckSpec(sql=SqlQuery(cluster="main", statement=statement)), ctx(config))
    )
    assert result.status == Status.PASSED, result.message
    row = next(line for line in result.lines if "|" in line and "mean_ms" not in line)
    assert row.split(" | ") == ["1279.28", "0.9", "1e-07", "1733552100.25", "23", "1.50"], row


# --- argv: no shell ----------------------------------------------------------------------------

RECORD_ARGV = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"


async def test_argv_runs_without_a_shell(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ex = executor(config, tmp_path)
    out = tmp_path / "argv.json"
    marker = tmp_path / "pwned"
    value = f"a b; touch {marker} $(touch {marker}) `touch {marker}` | cat > {marker} *"
    spec = ActionSpec(
        argv=ArgvAction(command=[sys.executable, "-c", RECORD_ARGV, str(out), "{{value}}", "*"])
    )
    plan = ex.render(spec, ctx(config, value=value))
    assert plan.confirm.mode == ConfirmMode.YES_NO
    # The question reads as one verb ("Run run /x/flyctl ...?" before; found in the demo).
    assert plan.confirm.prompt == f"Run {plan.summary.removeprefix('run ')}? [y/N]"
    assert not plan.confirm.prompt.lower().startswith("run run")
    result = await ex.execute(plan, YES)
    assert result.status == Status.SUCCEEDED, result.message
    assert json.loads(out.read_text()) == [value, "*"]  # one argument each, nothing expanded
    assert not marker.exists()


async def test_an_untrusted_value_that_reads_as_an_option_is_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ex = executor(config, tmp_path)
    spec = ActionSpec(argv=ArgvAction(command=["rm", "{{value}}"]))
    with pytest.raises(RenderError, match="would read as an option"):
        ex.render(spec, ctx(config, value="-rf"))


async def test_a_failing_or_missing_command_is_a_failure_with_its_output(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ex = executor(config, tmp_path)
    failing = ActionSpec(argv=[sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    result = await ex.execute(ex.render(failing, ctx(config)), YES)
    assert (result.status, result.message) == (Status.FAILED, "exit status 3: boom")
    missing = ActionSpec(argv=["/nonexistent/flyctl", "restart"])
    result = await ex.execute(ex.render(missing, ctx(config)), YES)
    assert (result.status, result.message) == (Status.FAILED, "command not found: /nonexistent/flyctl")
    dry = await ex.dry_run(ex.render(missing, ctx(config)))
    assert dry.status == Status.FAILED and "is not an executable program here" in dry.message


# --- timeouts -----------------------------------------------------------------------------------


async def test_a_slow_statement_times_out_and_stops_on_the_server(
    pg_server: PgServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    tag = secrets.token_hex(4)
    spec = ActionSpec(sql=SqlAction(cluster="main", statement=f"SELECT pg_sleep(60) /* {tag} */"), timeout=1)
    started = time.monotonic()
    result = await ex.execute(ex.render(spec, ctx(config)), YES)
    assert result.status == Status.TIMEOUT
    assert result.message == "timed out after 1s (stopped)"
    assert time.monotonic() - started < 15
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        running = await pg_server.fetch(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE $1", f"%/* {tag} */%"
        )
        if not [r for r in running]:
            break
        await asyncio.sleep(0.2)
    assert not running, "the statement still runs on the server"
    assert events(ex)[-2:] == ["action.confirmed", "action.failed"]
    assert ex.journal.read().events[-1].get("result") == "timeout"


async def test_a_slow_http_answer_times_out(http_server: StubServer, tmp_path: Path) -> None:
    http_server.route("/slow", json={}, delay=10)
    config = make_config(tmp_path, base_url=http_server.url("").rstrip("/"))
    ex = executor(config, tmp_path)
    spec = ActionSpec(http=HttpAction(url="{{base_url}}/slow"), timeout=1)
    started = time.monotonic()
    result = await ex.execute(ex.render(spec, ctx(config)), YES)
    assert result.status == Status.TIMEOUT
    assert time.monotonic() - started < 8
    check = CheckSpec(http=HttpGet(url="{{base_url}}/slow"), timeout=1)
    result = await ex.execute(ex.render(check, ctx(config)))
    assert result.status == Status.FAILED and "timed out" in result.message


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(sys.argv[1], "w").write(f"{child.pid}")
time.sleep(300)
"""


async def test_a_command_that_times_out_is_killed_with_its_whole_process_group(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ex = executor(config, tmp_path)
    pid_file = tmp_path / "child.pid"
    spec = ActionSpec(argv=[sys.executable, "-c", SPAWNER, str(pid_file)], timeout=2)
    result = await ex.execute(ex.render(spec, ctx(config)), YES)
    assert result.status == Status.TIMEOUT
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not _alive(child), "the command's child outlived the timeout"


# --- single flight ---------------------------------------------------------------------------


async def test_a_second_action_while_one_runs_is_busy_and_does_nothing(
    http_server: StubServer, tmp_path: Path
) -> None:
    http_server.route("/slow", json={}, delay=2)
    http_server.route("/other", json={})
    config = make_config(tmp_path, base_url=http_server.url("").rstrip("/"))
    ex = executor(config, tmp_path)
    slow = ex.render(ActionSpec(http=HttpAction(url="{{base_url}}/slow")), ctx(config), title="slow one")
    other = ex.render(ActionSpec(http=HttpAction(url="{{base_url}}/other")), ctx(config))
    first = asyncio.create_task(ex.execute(slow, YES))
    deadline = time.monotonic() + 10
    while http_server.hits("/slow") == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    busy = await ex.execute(other, YES)
    assert busy.status == Status.BUSY
    assert busy.message.startswith("busy: 'slow one' is still running (")
    assert busy.message.endswith("); this did nothing")
    assert (await first).status == Status.SUCCEEDED
    assert http_server.hits("/other") == 0
    confirmed = [e.get("plan")["id"] for e in ex.journal.read().events if e.kind == "action.confirmed"]
    assert confirmed == [slow.id]
    # Once it is done, the next one runs.
    assert (await ex.execute(other, YES)).status == Status.SUCCEEDED
    assert http_server.hits("/other") == 1


# --- signals: pid and backend_start re-checked ---------------------------------------------------


#: A runbook's terminate of the sessions an application name (a template value) lists.
TERMINATE_BY_APP = ActionSpec(
    signal=SignalAction(
        cluster="main",
        signal="terminate",
        select="SELECT pid, backend_start, application_name FROM pg_stat_activity WHERE application_name = $1",
        params=["{{app}}"],
    )
)


async def _session(pg_sessions: Sessions, app: str) -> tuple[asyncpg.Connection, int, float]:
    conn = await pg_sessions.open(application_name=app)
    row = await conn.fetchrow(
        "SELECT pg_backend_pid() AS pid, extract(epoch FROM backend_start)::float8 AS started "
        "FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    )
    return conn, row["pid"], row["started"]


async def _connected(pg: PgServer, pid: int) -> bool:
    deadline = time.monotonic() + 5
    while True:
        alive = bool(await pg.fetch("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid))
        if not alive or time.monotonic() > deadline:
            return alive
        await asyncio.sleep(0.1)  # a terminated backend may take a moment to leave the view


async def test_a_recycled_pid_is_not_signalled(
    pg_server: PgServer, pg_sessions: Sessions, tmp_path: Path
) -> None:
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    conn, pid, started = await _session(pg_sessions, "ic-act-victim")
    # The operator saw pid N when it belonged to an earlier session: same pid, other start.
    plan = ex.signal_plan("main", pid, started - 30.0, "terminate", seen="idle in transaction")
    assert plan.confirm.mode == ConfirmMode.TYPED and plan.confirm.expected == str(pid)
    result = await ex.execute(plan, Confirmation(typed=str(pid)))
    assert result.status == Status.REFUSED
    assert result.message == f"nothing signalled: pid {pid} no longer the session you saw"
    assert await conn.fetchval("SELECT 1") == 1  # still connected
    # The session as it really is: terminated.
    result = await ex.execute(ex.signal_plan("main", pid, started, "terminate"), Confirmation(typed=str(pid)))
    assert (result.status, result.message) == (Status.SUCCEEDED, f"terminated pid {pid}")
    assert not await _connected(pg_server, pid)


async def test_a_session_picked_in_the_table_that_has_ended_is_refused_before_anyone_is_asked(
    pg_server: PgServer, pg_sessions: Sessions, tmp_path: Path
) -> None:
    """K on a row of a paused (or older) screen: the preview checks the pid is still that
    session. It used to show the row as seen, open the dialog to type the pid, and refuse only
    then, in the statement that signals."""
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    conn, pid, started = await _session(pg_sessions, "ic-act-picked")
    live = await ex.preview(ex.signal_plan("main", pid, started, "terminate", seen="idle"))
    assert [t.pid for t in live.targets] == [pid] and ex.refusal_before_asking(live) == ""
    assert live.preview is not None and f"pid {pid}, backend started" in live.preview.note

    # The same pid seen with another start: the pid was reused since the screen showed it.
    reused = await ex.preview(ex.signal_plan("main", pid, started - 30.0, "terminate"))
    gone = f"nothing to do: pid {pid} is no longer the session you saw (it ended, or the pid was reused)"
    assert reused.targets == () and ex.refusal_before_asking(reused) == gone

    conn.terminate()
    assert not await _connected(pg_server, pid)
    ended = await ex.preview(ex.signal_plan("main", pid, started, "terminate"))
    assert ended.targets == () and ex.refusal_before_asking(ended) == gone
    result = await ex.execute(ended, Confirmation(typed=str(pid)))
    assert (result.status, result.message) == (Status.REFUSED, gone)
    assert "action.confirmed" not in events(ex)


async def test_a_runbook_signal_acts_only_on_the_sessions_the_preview_showed(
    pg_server: PgServer, pg_sessions: Sessions, tmp_path: Path
) -> None:
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    app = f"ic-act-{secrets.token_hex(3)}"
    first, pid1, _ = await _session(pg_sessions, app)
    plan = ex.render(TERMINATE_BY_APP, ctx(config, app=app))
    refused = await ex.execute(plan, Confirmation(typed="main"))
    assert refused.message == "preview first: sessions are signalled only as the operator saw them"
    plan = await ex.preview(plan)
    assert [t.pid for t in plan.targets] == [pid1]
    assert plan.confirm.expected == str(pid1)  # one session: type its pid
    # After the preview, that session ends and another one with the same name starts.
    first.terminate()
    second, pid2, _ = await _session(pg_sessions, app)
    assert not await _connected(pg_server, pid1)
    result = await ex.execute(plan, Confirmation(typed=str(pid1)))
    assert result.status == Status.REFUSED
    assert "no longer the session you saw" in result.message
    assert await second.fetchval("SELECT 1") == 1  # not in the preview: untouched
    assert pid2 not in [t.pid for t in plan.targets]


async def test_a_signal_whose_preview_found_no_session_is_refused_before_anyone_is_asked(
    pg_server: PgServer, pg_sessions: Sessions, tmp_path: Path
) -> None:
    """A runbook's "the cancel did not take? terminate those sessions" after the cancel took:
    the preview lists no session. The console used to open the DANGEROUS dialog ("terminate 0
    sessions", type the cluster's name) and refuse only once the word was typed."""
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    app = f"ic-act-{secrets.token_hex(3)}"
    plan = ex.render(TERMINATE_BY_APP, ctx(config, app=app))
    assert ex.refusal_before_asking(plan) == ""  # not previewed yet: nothing is known
    empty = await ex.preview(plan)
    assert empty.preview is not None and empty.preview.rows == () and not empty.preview.error
    assert ex.refusal_before_asking(empty) == "nothing to do: the preview found no sessions"
    # Whatever the answer, even the right word, it is refused with that reason and journaled.
    result = await ex.execute(empty, Confirmation(typed=empty.confirm.expected or "main"))
    assert (result.status, result.message) == (Status.REFUSED, "nothing to do: the preview found no sessions")
    assert result.message == ex.journal.read().events[-1].get("message")
    assert "action.confirmed" not in events(ex)

    # A preview that found a session: the operator decides.
    await _session(pg_sessions, app)
    found = await ex.preview(plan)
    assert len(found.targets) == 1 and ex.refusal_before_asking(found) == ""

    # A preview that failed says so: not "nothing to do" (the sessions are unknown, not absent).
    gone = make_config(tmp_path, postgres=[{"name": "main", "dsn": "postgresql://u@127.0.0.1:9/db"}])
    unreachable = executor(gone, tmp_path / "other")
    failed = await unreachable.preview(unreachable.render(TERMINATE_BY_APP, ctx(gone, app=app)))
    assert failed.preview is not None and failed.preview.error
    why = "not run: the preview failed, so no session is known to signal"
    assert unreachable.refusal_before_asking(failed) == why  # no dialog for nothing either
    result = await unreachable.execute(failed, Confirmation(typed="main"))
    assert (result.status, result.message) == (Status.REFUSED, why)


async def test_the_console_never_signals_its_own_sessions(pg_server: PgServer, tmp_path: Path) -> None:
    config = make_config(tmp_path, pg=pg_server)
    ex = executor(config, tmp_path)
    own = await connect(config.postgres[0], purpose="monitor")  # as the Postgres panel holds one
    try:
        pid = await own.fetchval("SELECT pg_backend_pid()")
        spec = ActionSpec(
            signal=SignalAction(
                cluster="main",
                signal="terminate",
                select="SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = 'incident-console'",
            )
        )
        plan = await ex.preview(ex.render(spec, ctx(config)))
        assert pid not in [t.pid for t in plan.targets]
        assert await own.fetchval("SELECT 1") == 1
    finally:
        await own.close()


# --- confirmation ---------------------------------------------------------------------------------


@pytest.fixture
def fix_server(http_server: StubServer) -> StubServer:
    http_server.route("/fix", json={"ok": True})
    return http_server


def _fix(dangerous: bool = False, confirm: str | None = None) -> ActionSpec:
    return ActionSpec(
        http=HttpAction(url="{{base_url}}/fix", json={"enabled": False}), dangerous=dangerous, confirm=confirm
    )


async def test_checks_need_no_confirmation_actions_default_to_no(
    fix_server: StubServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, base_url=fix_server.url("").rstrip("/"))
    ex = executor(config, tmp_path)
    check = ex.render(CheckSpec(http=HttpGet(url="{{base_url}}/fix")), ctx(config))
    assert check.confirm.mode == ConfirmMode.NONE
    assert (await ex.execute(check)).status == Status.PASSED
    plan = ex.render(_fix(), ctx(config))
    assert plan.confirm.mode == ConfirmMode.YES_NO
    assert plan.confirm.default is False  # Enter answers No
    assert plan.confirm.prompt.endswith("? [y/N]")
    for answer in (None, Confirmation(), Confirmation(yes=False)):
        result = await ex.execute(plan, answer)
        assert (result.status, result.message) == (Status.REFUSED, "not confirmed (the answer was No)")
    assert fix_server.hits("/fix") == 1  # only the check
    assert (await ex.execute(plan, YES)).status == Status.SUCCEEDED
    assert fix_server.hits("/fix") == 2
    assert events(ex).count("action.refused") == 3


async def test_a_dangerous_action_needs_the_typed_word(fix_server: StubServer, tmp_path: Path) -> None:
    config = make_config(tmp_path, base_url=fix_server.url("").rstrip("/"))
    ex = executor(config, tmp_path)
    plan = ex.render(
        _fix(dangerous=True, confirm="{{service}}"), ctx(config).with_values(service="storefront")
    )
    assert (plan.confirm.mode, plan.confirm.expected) == (ConfirmMode.TYPED, "storefront")
    assert plan.confirm.prompt.startswith("type 'storefront' to run: POST http://127.0.0.1:")
    for answer, message in (
        (YES, "not confirmed: type 'storefront' to run this"),
        (Confirmation(typed=""), "not confirmed: type 'storefront' to run this"),
        (Confirmation(typed="storefron"), "not confirmed: typed 'storefron', expected 'storefront'"),
        (Confirmation(typed="STOREFRONT"), "not confirmed: typed 'STOREFRONT', expected 'storefront'"),
    ):
        result = await ex.execute(plan, answer)
        assert (result.status, result.message) == (Status.REFUSED, message)
    assert fix_server.hits("/fix") == 0
    assert (await ex.execute(plan, Confirmation(typed=" storefront "))).status == Status.SUCCEEDED
    assert fix_server.hits("/fix") == 1


async def test_in_production_every_action_needs_the_typed_word(
    fix_server: StubServer, tmp_path: Path
) -> None:
    config = make_config(
        tmp_path,
        base_url=fix_server.url("").rstrip("/"),
        environment={"name": "prod-eu", "production": True},
    )
    ex = executor(config, tmp_path)
    plan = ex.render(_fix(), ctx(config).with_values(service="storefront"))
    assert (plan.confirm.mode, plan.confirm.expected) == (ConfirmMode.TYPED, "storefront")
    assert plan.confirm.prompt.startswith("production: type 'storefront'")
    assert (await ex.execute(plan, YES)).status == Status.REFUSED
    assert (await ex.execute(plan, Confirmation(typed="wrong"))).status == Status.REFUSED
    assert fix_server.hits("/fix") == 0
    assert (await ex.execute(plan, Confirmation(typed="storefront"))).status == Status.SUCCEEDED
    # Checks still need nothing.
    check = ex.render(CheckSpec(http=HttpGet(url="{{base_url}}/fix")), ctx(config))
    assert check.confirm.mode == ConfirmMode.NONE


def test_a_secret_cannot_be_the_confirmation_word(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ex = executor(config, tmp_path)
    with pytest.raises(RenderError, match="cannot be a secret"):
        ex.render(_fix(dangerous=True, confirm="{{admin_token}}"), ctx(config))


# --- read-only: refused on every path, observed at the backend ----------------------------------

READ_ONLY_MODES = {
    "config": ({"read_only": True}, {}, "read-only: the config says read_only: true"),
    "flag": ({}, {"read_only": True}, "read-only: the console was started with --read-only"),
    "wall": ({}, {"mode": "wall"}, "read-only: wall mode never runs actions"),
    "web": ({}, {"mode": "web"}, "read-only: web mode never runs actions"),
}


def _alert_breach(**labels: str) -> Breach:
    labels = {"alertname": "IcActionsTest", **labels}
    return Breach(
        id=f"alert:IcActionsTest:{secrets.token_hex(5)}",
        kind="alert",
        source="prometheus",
        title="IcActionsTest",
        state=State.FIRING,
        severity=Severity.WARNING,
        since=time.time(),
        labels=tuple(sorted(labels.items())),
    )


@pytest.mark.parametrize("mode", sorted(READ_ONLY_MODES))
async def test_read_only_refuses_every_action_and_nothing_reaches_a_backend(
    mode: str,
    pg_server: PgServer,
    pg_sessions: Sessions,
    table: str,
    fix_server: StubServer,
    alertmanager_server: AlertmanagerServer,
    tmp_path: Path,
) -> None:
    top, kwargs, reason = READ_ONLY_MODES[mode]
    base = fix_server.url("").rstrip("/")
    writable = executor(
        make_config(tmp_path, pg=pg_server, base_url=base, alertmanager=alertmanager_server.url), tmp_path
    )
    config = make_config(tmp_path, pg=pg_server, base_url=base, alertmanager=alertmanager_server.url, **top)
    ex = executor(config, tmp_path, **kwargs)
    assert ex.read_only and ex.read_only_reason == reason
    # A silence made while writable, for the expire path.
    tag = secrets.token_hex(4)
    made = await writable.execute(writable.silence_plan(_alert_breach(tag=tag)), YES)
    assert made.status == Status.SUCCEEDED, made.message
    silence_id = made.data["silence_id"]

    conn, pid, started = await _session(pg_sessions, "ic-act-readonly")
    marker = tmp_path / "ran"
    plans = [
        ex.render(_fix(), ctx(config)),
        ex.render(_fix(dangerous=True, confirm="x"), ctx(config)),
        ex.render(ActionSpec(sql=SqlAction(cluster="main", statement=f"DELETE FROM {table}")), ctx(config)),
        ex.render(ActionSpec(argv=[sys.executable, "-c", f"open({str(marker)!r}, 'w')"]), ctx(config)),
        ex.signal_plan("main", pid, started, "terminate"),
        ex.signal_plan("main", pid, started, "cancel"),
        await ex.preview(
            ex.render(
                ActionSpec(
                    signal=SignalAction(
                        cluster="main",
                        signal="terminate",
                        select="SELECT pid, backend_start FROM pg_stat_activity",
                    )
                ),
                ctx(config),
            )
        ),
        ex.silence_plan(_alert_breach(tag=f"{tag}-ro")),
        ex.expire_silence_plan(silence_id),
    ]
    answers = [YES, Confirmation(typed="x"), Confirmation(typed=str(pid)), Confirmation(typed="main")]
    for plan in plans:
        for answer in answers:
            result = await ex.execute(plan, answer)
            assert (result.status, result.message) == (Status.REFUSED, reason), plan.summary
    # Nothing reached a backend.
    assert fix_server.hits("/fix") == 0
    assert await rows(pg_server, table) == ["alpha", "beta"]
    assert not marker.exists()
    assert await conn.fetchval("SELECT 1") == 1
    silences = {s["id"]: s for s in alertmanager_server.silences()}
    assert silences[silence_id]["status"]["state"] == "active"
    assert not [s for s in silences.values() if {"name": "tag", "value": f"{tag}-ro"} in _matchers(s)]
    kinds = events(ex)
    assert "action.confirmed" not in kinds[kinds.index("action.refused") :]
    # Checks, previews and dry-runs still work: they change nothing.
    check = ex.render(CheckSpec(http=HttpGet(url="{{base_url}}/fix")), ctx(config))
    assert (await ex.execute(check)).status == Status.PASSED
    assert (await ex.dry_run(plans[0])).status == Status.DRY_RUN
    assert fix_server.hits("/fix") == 1
    await writable.execute(writable.expire_silence_plan(silence_id), YES)


def _matchers(silence: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": m["name"], "value": m["value"]} for m in silence["matchers"]]


# --- the journal cannot be written: nothing runs -----------------------------------------------


async def test_an_unwritable_journal_stops_the_action_and_says_why(
    fix_server: StubServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, base_url=fix_server.url("").rstrip("/"))
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    for path, reason in (
        ("/dev/full", "No space left on device"),
        (str(blocker / "journal.jsonl"), f"{blocker} is not a directory"),
        (str(tmp_path), "Is a directory"),
    ):
        ex = Executor(config, Journal(path, operator=OPERATOR))
        plan = ex.render(_fix(), ctx(config))
        result = await ex.execute(plan, YES)
        assert result.status == Status.REFUSED
        assert result.message == f"not run: cannot write the journal {path}: {reason}"
        assert fix_server.hits("/fix") == 0, path
        assert ex.running is None  # and the next action is not told "busy"


@contextlib.contextmanager
def tiny_tmpfs(tmp_path: Path, pages: int, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``pages`` pages: a filesystem that really fills up, or is mounted read-only
    (needs root: as root, a chmod'ed directory is still writable)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    options = f"size={pages * 4096},mode=0700" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_read_only_filesystem_stops_the_action(fix_server: StubServer, tmp_path: Path) -> None:
    config = make_config(tmp_path, base_url=fix_server.url("").rstrip("/"))
    with tiny_tmpfs(tmp_path, 2, read_only=True) as mount:
        ex = Executor(config, Journal(mount / "journal.jsonl", operator=OPERATOR))
        result = await ex.execute(ex.render(_fix(), ctx(config)), YES)
        assert result.status == Status.REFUSED
        assert (
            result.message
            == f"not run: cannot write the journal {mount / 'journal.jsonl'}: Read-only file system"
        )
        assert fix_server.hits("/fix") == 0


def _line_size(journal: Journal, event: JournalEvent) -> int:
    return len(json.dumps(journal.record(event), ensure_ascii=False, separators=(",", ":")).encode()) + 1


def _pad_to(journal: Journal, size: int) -> None:
    """Append a note that makes the journal exactly ``size`` bytes long."""
    now = journal.path.stat().st_size if journal.path.exists() else 0
    journal.append(Note(text="x" * (size - now - _line_size(journal, Note(text="")))))
    assert journal.path.stat().st_size == size


FIXED_CLOCK = lambda: 1_800_000_000.0  # noqa: E731 - fixed-width timestamps: line sizes are known


async def test_a_full_filesystem_stops_the_action_before_it_runs(
    fix_server: StubServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, base_url=fix_server.url("").rstrip("/"))
    with tiny_tmpfs(tmp_path, 2) as mount:
        journal = Journal(mount / "journal.jsonl", operator=OPERATOR, clock=FIXED_CLOCK)
        _pad_to(journal, 4096 - 200)  # 200 bytes left in the journal's page: less than an action needs
        (mount / "filler").write_bytes(b"x" * 4096)  # and no other page
        ex = Executor(config, journal, clock=FIXED_CLOCK)
        result = await ex.execute(ex.render(_fix(), ctx(config)), YES)
        assert result.status == Status.REFUSED
        assert result.message == f"not run: cannot write the journal {journal.path}: No space left on device"
        assert fix_server.hits("/fix") == 0
        # The part of the line that fitted was taken back: no torn line, the file as it was.
        assert journal.path.stat().st_size == 4096 - 200
        read = read_journal(journal.path)
        assert (read.skipped, read.partial_tail, read.events[-1].kind) == (0, False, "note")


async def test_a_result_that_cannot_be_recorded_is_said_so(fix_server: StubServer, tmp_path: Path) -> None:
    """The journal fills up between action.confirmed and the result: the action ran (it was
    recorded as confirmed), and the operator is told the result is not in the journal."""
    config = make_config(tmp_path, base_url=fix_server.url("").rstrip("/"))
    with tiny_tmpfs(tmp_path, 2) as mount:
        journal = Journal(mount / "journal.jsonl", operator=OPERATOR, clock=FIXED_CLOCK)
        ex = Executor(config, journal, clock=FIXED_CLOCK)
        plan = ex.render(_fix(), ctx(config))
        # action.confirmed will end exactly on the page boundary; the result needs a page more.
        _pad_to(
            journal,
            4096 - _line_size(journal, plan.event(ActionConfirmed, confirmation="yes")),
        )
        (mount / "filler").write_bytes(b"x" * 4096)  # the other page
        result = await ex.execute(plan, YES)
        assert fix_server.hits("/fix") == 1  # it ran
        assert result.status == Status.SUCCEEDED and not result.recorded
        assert "NOT RECORDED: cannot write the journal" in result.message
        read = read_journal(journal.path)
        assert (read.events[-1].kind, read.partial_tail) == ("action.confirmed", False)


# --- secrets ------------------------------------------------------------------------------------


async def test_secrets_are_masked_in_plans_results_and_the_journal(
    http_server: StubServer, tmp_path: Path
) -> None:
    http_server.route(
        "/echo",
        handler=lambda req: (
            500,
            {"Content-Type": "text/plain"},
            req.headers["Authorization"].encode() + b" rejected",
        ),
    )
    config = make_config(tmp_path, base_url=http_server.url("").rstrip("/"))
    ex = executor(config, tmp_path)
    spec = ActionSpec(
        http=HttpAction(
            url="{{base_url}}/echo?token={{admin_token}}",
            headers={"Authorization": "Bearer {{admin_token}}", "X-Plain": "{{admin_token}}"},
            json={"key": "{{admin_token}}", "nested": ["{{admin_token}}"]},
        )
    )
    plan = await ex.preview(ex.render(spec, ctx(config)))
    shown = "\n".join([*plan.lines, plan.summary, plan.target, plan.confirm.prompt])
    assert TOKEN not in shown
    assert "Authorization: ***" in plan.lines and "X-Plain: ***" in plan.lines
    assert 'body: {"key": "***", "nested": ["***"]}' in plan.lines
    result = await ex.execute(plan, YES)
    assert result.status == Status.FAILED
    assert http_server.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"  # the real value went out
    assert TOKEN not in result.message + "\n".join(result.lines)
    argv = ActionSpec(
        argv=ArgvAction(
            command=[sys.executable, "-c", "import sys; print(sys.argv[1])", "{{admin_token}}"],
            env={"TOKEN": "{{admin_token}}"},
        )
    )
    argv_plan = ex.render(argv, ctx(config))
    assert TOKEN not in "\n".join(argv_plan.lines) and "env TOKEN=***" in argv_plan.lines
    argv_result = await ex.execute(argv_plan, YES)
    assert argv_result.status == Status.SUCCEEDED and argv_result.lines == ("exit status 0", "***")
    text = ex.journal.path.read_text()
    assert TOKEN not in text and "***" in text
    assert "action.succeeded" in events(ex)


# --- Alertmanager silences --------------------------------------------------------------------------


async def test_ack_creates_a_silence_and_un_ack_expires_it(
    alertmanager_server: AlertmanagerServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, alertmanager=alertmanager_server.url)
    ex = executor(config, tmp_path)
    tag = secrets.token_hex(4)
    breach = _alert_breach(tag=tag, job="storefront", note="{{admin_token}} [bold]x")
    plan = ex.silence_plan(breach, duration=1800, comment="looking at it")
    assert plan.confirm.mode == ConfirmMode.YES_NO
    assert f"createdBy: {OPERATOR}" in plan.lines
    plan = await ex.preview(plan)
    assert plan.preview is not None and plan.preview.error == ""
    before = time.time()
    result = await ex.execute(plan, YES)
    assert result.status == Status.SUCCEEDED, result.message
    silence_id = result.data["silence_id"]
    assert result.message.startswith("silenced until ") and silence_id in result.message
    made = {s["id"]: s for s in alertmanager_server.silences()}[silence_id]
    assert made["status"]["state"] == "active"
    assert made["createdBy"] == str(OPERATOR)
    assert made["comment"] == "looking at it"
    assert sorted(_matchers(made), key=lambda m: m["name"]) == [
        {"name": k, "value": v} for k, v in breach.labels
    ]  # exactly the alert's labels, '{{' and all: a label is data, never a template
    assert all(not m["isRegex"] and m["isEqual"] for m in made["matchers"])
    assert before + 1800 - 5 < result.data["ends_at"] < time.time() + 1800 + 5

    expired = await ex.execute(ex.expire_silence_plan(silence_id), YES)
    assert (expired.status, expired.message) == (Status.SUCCEEDED, f"silence {silence_id} expired")
    assert {s["id"]: s for s in alertmanager_server.silences()}[silence_id]["status"]["state"] == "expired"
    kinds = events(ex)
    assert kinds.count("action.succeeded") == 2


async def test_expiring_an_unknown_silence_fails_with_the_answer(
    alertmanager_server: AlertmanagerServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, alertmanager=alertmanager_server.url)
    ex = executor(config, tmp_path)
    result = await ex.execute(ex.expire_silence_plan("00000000-0000-0000-0000-000000000000"), YES)
    assert result.status == Status.FAILED
    assert result.message.startswith("Alertmanager answered HTTP ")


def test_only_alerts_can_be_acked_and_silences_need_an_alertmanager(tmp_path: Path) -> None:
    ex = executor(make_config(tmp_path), tmp_path)
    with pytest.raises(RenderError, match=r"no prometheus\.alertmanager_url"):
        ex.silence_plan(_alert_breach(tag="x"))
    threshold = Breach(
        id="postgres.main.waiting",
        kind="threshold",
        source="postgres:main",
        title="waiting",
        state=State.FIRING,
        severity=Severity.CRITICAL,
        since=0.0,
    )
    with pytest.raises(RenderError, match="only Prometheus alerts"):
        ex.silence_plan(threshold)


# --- the journal of an action ---------------------------------------------------------------------


async def test_an_action_is_journaled_confirmed_then_its_result(
    fix_server: StubServer, tmp_path: Path
) -> None:
    config = make_config(tmp_path, base_url=fix_server.url("").rstrip("/"))
    ex = executor(config, tmp_path)
    plan = await ex.preview(ex.render(_fix(), ctx(config), runbook="rb", run="rb@1", step="s1"))
    result = await ex.execute(plan, YES)
    assert result.status == Status.SUCCEEDED and result.recorded
    read = ex.journal.read().events
    assert [e.kind for e in read] == [
        "action.requested",
        "action.claimed",
        "action.confirmed",
        "action.succeeded",
    ]
    done = read[-1]
    assert (done.get("runbook"), done.get("run"), done.get("step")) == ("rb", "rb@1", "s1")
    assert done.get("result") == "succeeded" and done.get("message") == "HTTP 200"
    assert isinstance(done.get("duration"), float) and done.get("duration") >= 0
    assert done.get("plan")["lines"] == list(plan.lines)
    assert read[1].get("claims") and read[2].get("confirmation") == "yes"
    assert list(result.events) == list(read[2:])


# --- the promql check's rows -----------------------------------------------------------------------


async def test_a_promql_series_without_labels_reads_as_its_value(prometheus_server, tmp_path: Path):
    """An aggregate (sum(rate(...)), the runbooks' usual check) has no labels, and its row read
    ``{} = 0.444444``: Prometheus's own spelling of an empty label set, noise to an operator."""
    from console.actions.kinds.promql_check import PromQLCheckSpec, PromQuery

    config = make_config(tmp_path, prometheus={"url": prometheus_server.url})
    ex = executor(config, tmp_path)
    for query, row in (
        ("vector(0.25)", "value = 0.25"),
        ('label_replace(vector(2), "job", "sync-worker", "", "")', "job=sync-worker = 2"),
    ):
        plan = ex.render(PromQLCheckSpec(promql=PromQuery(query=query), expect={"below": 5}), ctx(config))
        result = await ex.execute(plan)
        assert (result.status, result.lines) == (Status.PASSED, (row,)), (result.message, result.lines)


async def test_a_promql_value_without_an_expectation_is_said_by_its_value(prometheus_server, tmp_path: Path):
    """A check that only reads a number (a rate, a p95) said ``last: 1 row`` with the value on the
    next line, and ``1 row; value 0`` when it had an expectation: a count of one is noise when the
    answer is one value. A labelled series keeps its count; the lines name it."""
    from console.actions.kinds.promql_check import PromQLCheckSpec, PromQuery

    config = make_config(tmp_path, prometheus={"url": prometheus_server.url})
    ex = executor(config, tmp_path)
    for query, expect, message in (
        ("vector(0.25)", {}, "value 0.25"),
        ("scalar(vector(3))", {}, "value 3"),
        ("vector(0)", {"equals": 0}, "value 0"),
        ('label_replace(vector(2), "job", "sync-worker", "", "")', {}, "1 row"),
    ):
        plan = ex.render(PromQLCheckSpec(promql=PromQuery(query=query), expect=expect), ctx(config))
        result = await ex.execute(plan)
        assert (result.status, result.message) == (Status.PASSED, message), (query, result.lines)


async def test_equals_holds_for_every_series_not_only_the_first(prometheus_server, tmp_path: Path):
    """``equals`` compared the first value only: validate-api-credentials' 401s by provider
    (``sum by (provider)``, equals 0) passed while a provider after the first was refused."""
    from console.actions.kinds.promql_check import PromQLCheckSpec, PromQuery

    config = make_config(tmp_path, prometheus={"url": prometheus_server.url})
    ex = executor(config, tmp_path)
    two = 'label_replace(vector(0), "provider", "a", "", "") or label_replace(vector(3), "provider", "b", "", "")'
    plan = ex.render(PromQLCheckSpec(promql=PromQuery(query=two), expect={"equals": 0}), ctx(config))
    result = await ex.execute(plan)
    assert (result.status, result.message) == (Status.NOT_MET, "value 3, expected 0"), result.lines
    same = two.replace("vector(3)", "vector(0)")
    plan = ex.render(PromQLCheckSpec(promql=PromQuery(query=same), expect={"equals": 0}), ctx(config))
    assert (await ex.execute(plan)).status == Status.PASSED
