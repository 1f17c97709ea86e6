"""Secrets canary: a password in a DSN, headers marked secret and tokens in URLs never reach
the screen, the logs, the journal, an exported report or a traceback.

Every canary starts with ``CNRY``. The backends are real and they misbehave the way that leaks
secrets in practice: servers echo the credentials they got (in error bodies, in health
messages, in alert annotations), a session's query text carries the console's own password, a
password is wrong. Then every artifact is read whole and searched for any canary, raw, URL-
encoded, or inside the Basic-auth header that carries it (base64).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from console.app import ConsoleApp
from console.config import SharedJournal as SharedSettings
from console.journal.shared import init_store
from console.loader import load_config
from panels.breaches import BreachesPanel
from panels.health import HealthPanel
from tests.fixtures.faults import ROOT, read_for, screen_text, start_console, wait_for
from tests.fixtures.http_servers import Request, StubServer
from tests.pilot import detail_text
from tests.test_ui_terminal import wait_exit

MARK = "CNRY"


def canary(what: str) -> str:
    return f"{MARK}{what}{secrets.token_hex(5)}"


PW = canary("dsnpw")  # the console's Postgres password (trust auth: accepted, unused)
BAD_PW = canary("badpw")  # a wrong password: the error path
HEADER = canary("hdr")  # Authorization: Bearer <HEADER>, marked secret
API_KEY = canary("key")  # X-Api-Key on Prometheus, marked secret
URL_TOKEN = canary("tok")  # ?token=<URL_TOKEN> in a health URL
USERINFO = canary("ui")  # http://ops:<USERINFO>@... health URL
PROM_PW = canary("prom")  # http://prom:<PROM_PW>@... Prometheus URL
AM_PW = canary("am")  # http://am:<AM_PW>@... Alertmanager URL
STORE_PW = canary("store")  # the shared journal's DSN password (trust auth: accepted, unused)
ALL = (PW, BAD_PW, HEADER, API_KEY, URL_TOKEN, USERINFO, PROM_PW, AM_PW, STORE_PW)
BASIC = {"ops": USERINFO, "prom": PROM_PW, "am": AM_PW}


def forms(value: str) -> set[str]:
    """The canary as text, URL-encoded, and inside a Basic-auth header."""
    out = {value, quote(value, safe="")}
    out |= {base64.b64encode(f"{user}:{pw}".encode()).decode() for user, pw in BASIC.items() if pw == value}
    return out


def leaks(name: str, text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = []
    for value in ALL:
        for form in forms(value):
            if (i := text.find(form)) >= 0:
                found.append(f"{name}: {form!r} in …{text[max(i - 80, 0) : i + 40]!r}…")
    if MARK in text and not found:  # a canary cut or transformed in a way we did not list
        i = text.find(MARK)
        found.append(f"{name}: {MARK!r} in …{text[max(i - 80, 0) : i + 40]!r}…")
    return found


# --- misbehaving backends -------------------------------------------------------------------


def echo_everything(server: StubServer) -> None:
    """Health endpoints and a Prometheus/Alertmanager that repeat back what they were sent."""
    count = {"n": 0}

    def echo_header(request: Request) -> tuple:
        count["n"] += 1
        auth = request.headers.get("Authorization", "")
        if count["n"] % 2:  # a good answer whose message repeats the header
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"status": "warn", "output": f"request had {auth}", "checks": {"auth": {"status": "warn", "output": auth}}}
            ).encode()  # fmt: skip
        return 401, {"Content-Type": "text/plain"}, f"invalid credentials: {auth}".encode()

    def echo_url(request: Request) -> tuple:
        body = {
            "status": "fail",
            "output": f"cannot serve {request.path}",
            "checks": {request.path: {"status": "fail"}},
        }
        return 503, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def echo_basic(request: Request) -> tuple:
        auth = request.headers.get("Authorization", "")
        decoded = base64.b64decode(auth.removeprefix("Basic ")).decode(errors="replace") if auth else ""
        return 403, {"Content-Type": "text/plain"}, f"forbidden for {auth} ({decoded})".encode()

    def prometheus(request: Request) -> tuple:
        path = request.path.split("?", 1)[0]
        seen = f"auth={request.headers.get('Authorization')} key={request.headers.get('X-Api-Key')} path={request.path}"
        if path == "/api/v1/query":
            data = {
                "resultType": "vector",
                "result": [{"metric": {"seen": seen}, "value": [time.time(), "1"]}],
            }
        elif path == "/api/v1/alerts":
            alert = {"labels": {"alertname": "EchoAlert", "severity": "critical", "seen": seen},
                     "annotations": {"summary": f"what the proxy saw: {seen}"},
                     "state": "firing", "activeAt": "2026-01-01T00:00:00Z", "value": "1"}  # fmt: skip
            data = {"alerts": [alert]}
        elif path == "/api/v1/rules":
            return 401, {"Content-Type": "text/plain"}, f"bad token: {seen}".encode()
        else:
            data = {"activeTargets": [{"labels": {"job": "echo", "instance": seen}, "health": "down",
                                       "lastError": f"scrape failed: {seen}", "scrapeUrl": seen}]}  # fmt: skip
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"status": "success", "data": data}).encode(),
        )

    def alertmanager(request: Request) -> tuple:
        seen = f"auth={request.headers.get('Authorization')} key={request.headers.get('X-Api-Key')}"
        if request.method == "POST":
            return 500, {"Content-Type": "text/plain"}, f"cannot create silence, request had {seen}".encode()
        return 200, {"Content-Type": "application/json"}, json.dumps([{
            "id": "s1", "status": {"state": "active"}, "matchers": [{"name": "seen", "value": seen, "isRegex": False}],
            "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": seen, "comment": seen,
        }]).encode()  # fmt: skip

    server.route("/echo", handler=echo_header)
    server.route("/tok", handler=echo_url)
    server.route("/basic", handler=echo_basic)
    for path in ("/api/v1/query", "/api/v1/alerts", "/api/v1/rules", "/api/v1/targets"):
        server.route(path, handler=prometheus)
    server.route("/am/api/v2/silences", handler=alertmanager)


@pytest.fixture
async def canary_config(tmp_path, http_server, fault_pg, private_pg, pg_server) -> Path:
    echo_everything(http_server)
    store = await pg_server.create_database()  # the shared journal's table, as journal init makes it
    await init_store(SharedSettings(dsn=pg_server.dsn(database=store)), role="ROLE")
    base = f"127.0.0.1:{http_server.port}"
    (tmp_path / "runbooks").mkdir()
    config = {
        "environment": {"name": "canary"},
        "runbooks_dir": str(tmp_path / "runbooks"),
        "journal": {"path": str(tmp_path / "journal.jsonl"),
                    "shared": {"dsn": pg_server.dsn(database=store, password=STORE_PW)}},
        "ui": {"bell": False},
        "refresh": {"health": "0.4s", "prometheus": "0.4s", "postgres": "0.4s"},
        "health": [
            {"name": "echo-header", "url": f"http://{base}/echo",
             "headers": {"Authorization": {"value": f"Bearer {HEADER}", "secret": True}}},
            {"name": "url-token", "url": f"http://{base}/tok?token={URL_TOKEN}"},
            {"name": "url-userinfo", "url": f"http://ops:{USERINFO}@{base}/basic"},
        ],
        "prometheus": {
            "url": f"http://prom:{PROM_PW}@{base}",
            "alertmanager_url": f"http://am:{AM_PW}@{base}/am",
            "headers": {"X-Api-Key": {"value": API_KEY, "secret": True}},
            "queries": [{"id": "echo", "title": "echo", "query": "echo"}],
        },
        "postgres": [
            {"name": "good", "dsn": fault_pg.server.dsn(password=PW)},
            {"name": "badpw", "dsn": private_pg.dsn(user=private_pg.password_user, password=BAD_PW),
             "connect_timeout": 3},
        ],
    }  # fmt: skip
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def leaky_session(fault_pg, pg_sessions):
    """A session whose query text carries the console's own DSN and password (someone pasted
    the connection string into a dblink call)."""
    conn = await pg_sessions.open(fault_pg.server, application_name="ic-canary")
    dsn = fault_pg.server.dsn(password=PW)
    task = asyncio.create_task(conn.execute(f"SELECT '{dsn}' AS target, 'password={PW}' AS kv, pg_sleep(60)"))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return conn.get_server_pid(), task


# --- the test --------------------------------------------------------------------------------


async def test_no_canary_in_any_artifact(tmp_path, canary_config, fault_pg, pg_sessions, pg_server):
    artifacts: dict[str, str | bytes] = {}
    pid, task = await leaky_session(fault_pg, pg_sessions)
    config = load_config(canary_config)

    # 1. The screen, through every view an operator opens.
    app = ConsoleApp(config)
    async with app.run_test(size=(200, 60)) as pilot:
        await wait_for(pilot, lambda: len(app.state.snapshots) == 6, 20, "every source polled")
        await wait_for(pilot, lambda: any(s.pid == pid for p in app.panels if hasattr(p, "_sessions")
                                          for s in p._sessions.values()), 10, "the leaky session")  # fmt: skip
        await pilot.pause(1.0)  # both halves of the echoing health endpoint
        artifacts["screen"] = screen_text(app)
        artifacts["svg"] = app.export_screenshot()
        for kind in (HealthPanel, BreachesPanel):
            panel = next(p for p in app.panels if isinstance(p, kind))
            table = panel.table
            for row in range(table.row_count):
                table.focus()
                table.move_cursor(row=row)
                await pilot.pause()
                await pilot.press("enter")
                artifacts[f"{kind.__name__} detail {row}"] = await detail_text(pilot)
                artifacts[f"{kind.__name__} detail {row} svg"] = app.export_screenshot()
                await pilot.press("escape")
        pg = next(p for p in app.panels if getattr(p, "cluster", "") == "good")
        key = next(k for k, s in pg._sessions.items() if s.pid == pid)
        pg.sessions.focus()
        pg.sessions.move_cursor(row=pg.sessions.get_row_index(key))
        await pilot.pause()
        await pilot.press("enter")
        artifacts["session detail"] = await detail_text(pilot, what="the session's detail")
        await pilot.press("escape")
        # An action through the executor: an ack, which fails at the echoing Alertmanager.
        breaches = next(p for p in app.panels if isinstance(p, BreachesPanel))
        alert = next(b.id for b in app.state.breaches if b.title == "EchoAlert")
        breaches.table.focus()
        breaches.table.move_cursor(row=breaches.table.get_row_index(alert))
        await pilot.pause()
        await pilot.press("a")
        await wait_for(pilot, lambda: app.screen is not app.screen_stack[0], 10, "the ack dialog")
        artifacts["ack dialog"] = screen_text(app)
        await pilot.click("#confirm")
        journal = Path(config.journal_path())
        await wait_for(
            pilot, lambda: journal.exists() and b"action.failed" in journal.read_bytes(), 15, "the ack"
        )
        await pilot.press("t")  # the timeline, from the journal
        await wait_for(pilot, lambda: getattr(app.screen, "loaded", False), 15, "the timeline read")
        await pilot.pause(0.2)
        artifacts["timeline"] = screen_text(app)
        artifacts["notifications"] = "\n".join(str(n.message) for n in app._notifications)
        assert app.is_running
    artifacts["journal"] = journal.read_bytes()
    assert b"breach.start" in artifacts["journal"] and b"action.failed" in artifacts["journal"]
    # The shared journal's table: every event the console sent, as stored.
    shared = config.journal.shared
    rows = await pg_server.fetch(
        f"SELECT record::text AS record FROM {shared.table}",
        database=shared.dsn.rsplit("/", 1)[-1].split("?")[0],
    )
    artifacts["shared journal table"] = "\n".join(r["record"] for r in rows)
    assert '"action.failed"' in artifacts["shared journal table"], "the events did not reach the store"
    task.cancel()

    # 2. Reports: snapshot and export, each format, through the real command line.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "dumb"}
    for argv in (["snapshot", "--format", "text"], ["snapshot", "--format", "json"],
                 ["export", "--format", "markdown"], ["export", "--format", "json"]):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "console.cli", *argv, "--config", str(canary_config)],
            cwd=ROOT, env=env, capture_output=True, timeout=90, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        artifacts[" ".join(argv)] = done.stdout + done.stderr
        assert done.stdout, (argv, done.stderr[-2000:])

    # 3. The real console in a terminal, with Textual's log file.
    log = tmp_path / "textual.log"
    console_pid, master = start_console(canary_config, rows=50, cols=180, env={"TEXTUAL_LOG": str(log)})
    try:
        seen = read_for(master, 4.0)
        for key in (b"\t", b"\r", b"\x1b", b"\t", b"\r", b"\x1b", b"t"):
            os.write(master, key)
            seen += read_for(master, 0.6)
        os.kill(console_pid, signal.SIGTERM)
        wait_exit(console_pid, master)
    finally:
        os.close(master)
    artifacts["terminal"] = seen
    artifacts["textual log"] = log.read_bytes() if log.exists() else b""
    assert b"EchoAlert" in seen and artifacts["textual log"], "the console did not run"

    # 4. A traceback: the same console, made to crash in a panel while it shows everything.
    artifacts["traceback"] = crash_in_a_pty(canary_config)
    crash = artifacts["traceback"]
    assert "forced crash" in crash and "dsn" in crash, crash[-3000:]  # the locals were printed

    found = [line for name, text in artifacts.items() for line in leaks(name, text)]
    assert not found, "\n".join(found)


CRASH = """
import sys
from panels.health import HealthPanel
original = HealthPanel.tick

def tick(self, now):
    original(self, now)
    config = self.app.config            # in the frame's locals, as a real bug would have it
    sources = self.app.poller.sources
    state = self.app.state
    if len(state.snapshots) >= 6:
        raise RuntimeError("forced crash with the whole config in scope")

HealthPanel.tick = tick
from console.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


def crash_in_a_pty(config: Path) -> str:
    """Run the console with a panel that raises once every source answered; Textual prints its
    crash report (with the frames' local variables) to the terminal. Returns what it wrote."""

    from tests.fixtures.faults import spawn_in_pty

    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    pid, master = spawn_in_pty([sys.executable, "-c", CRASH, str(config)], env, rows=50, cols=200)
    seen = b""
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            chunk = read_for(master, 0.5)
            seen += chunk
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                seen += read_for(master, 0.5)
                break
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    finally:
        os.close(master)
    return seen.decode("utf-8", "replace")
