"""The hostile corpus (tests/data/hostile_corpus.json) through the real backends and the real app.

Every entry goes where an attacker can put it: Postgres query text, application_name, role and
database names; Prometheus label values and alert annotations (a real Prometheus scraping an
exporter with hostile labels, and a rule file with a hostile annotation); health JSON messages
and check names. Each must render literally and cut to size, trigger nothing (no markup action,
no escape sequence reaching the terminal) and crash nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from console.app import ConsoleApp
from console.config import Config
from console.demo.ports import free_port
from console.model import ErrorKind
from console.sanitize import clean
from panels.breaches import BreachesPanel
from panels.detail import DetailScreen
from panels.health import HealthPanel
from panels.postgres import PostgresPanel
from tests.data.hostile_corpus import BYTES, CORPUS, HUGE, TEXTS, Hostile, by_name, check_shown
from tests.fixtures.faults import (
    console_config,
    quiet_cluster,
    read_for,
    screen_actions,
    screen_text,
    start_console,
    terminal_output,
    terminal_problems,
    unsafe_characters,
    wait_for,
)
from tests.fixtures.http_servers import stop_server
from tests.fixtures.postgres import quote_literal
from tests.fixtures.prometheus import (
    PROMETHEUS_BIN,
    PROMTOOL_BIN,
    _spawn,
    _stop,
    _tail,
    require_binary,
    wait_until,
)
from tests.pilot import detail_text
from tests.test_ui_terminal import read_until, wait_exit


async def _poll_until(source, condition, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        snap = await source.poll()
        if condition(snap) or asyncio.get_running_loop().time() > deadline:
            return snap
        await asyncio.sleep(0.2)


# --- Postgres ---------------------------------------------------------------------------------


async def test_query_text_that_is_not_utf8_leaves_the_postgres_view_working(fault_pg, pg_source):
    """A session in a SQL_ASCII database may run any bytes; pg_stat_activity hands them as they
    are to a UTF-8 client. Before the fix the whole refresh failed on the decode, classified as
    "config error: bad connection settings": one such session blinded the Postgres panel."""
    entry = BYTES[0]
    fault_pg.psql_bytes(fault_pg.ascii_db, b"SELECT '" + entry.raw + b"', pg_sleep(60);\n")
    source = pg_source(fault_pg.server)

    def seen(snap) -> bool:
        return snap.ok and any("pg_sleep(60)" in s.query for s in snap.sessions)

    snap = await _poll_until(source, lambda s: seen(s) or (s.error and s.error.kind is not ErrorKind.TIMEOUT))
    assert snap.ok, snap.error
    session = next(s for s in snap.sessions if "pg_sleep(60)" in s.query)
    assert entry.visible in session.query and session.database == fault_pg.ascii_db


def _pg(entry: Hostile) -> tuple[str, str]:
    """The entry's text and visible part as Postgres can hold them (text never holds a NUL)."""
    return entry.text.replace("\x00", ""), entry.visible.replace("\u2400", "")


def _select(entries: list[Hostile]) -> str:
    literals = ", ".join(quote_literal(_pg(e)[0]) for e in entries)
    return f"SELECT {literals}, pg_sleep(60)"


def _pg_config(tmp_path, server) -> Config:
    return console_config(
        tmp_path, refresh={"postgres": "0.5s"}, postgres=[quiet_cluster("main", server.dsn())]
    )


async def _start(conn, sql: str) -> asyncio.Task:
    task = asyncio.create_task(conn.execute(sql))
    await asyncio.sleep(0)
    return task


async def _detail_of(pilot, app: ConsoleApp, pg: PostgresPanel, pid: int) -> str:
    key = next(k for k, s in pg._sessions.items() if s.pid == pid)
    pg.sessions.focus()
    pg.sessions.move_cursor(row=pg.sessions.get_row_index(key))
    await pilot.pause()
    await pilot.press("enter")
    text = await detail_text(pilot, what="the detail view")
    _assert_inert(app)
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(app.screen, DetailScreen), 5, "the detail view to close")
    return text


async def test_postgres_corpus_in_query_names_and_application_renders_literally(
    tmp_path, fault_pg, pg_sessions, pg_roles
):
    server = fault_pg.server
    texts = list(TEXTS)
    # Role and database names: at most 63 bytes, any character but NUL.
    roles = {e.name: await pg_roles.create(server, name=_pg(e)[0].encode()[:63].decode(errors="ignore"))
             for e in (by_name("markup-var"), by_name("osc-title"), by_name("bidi"), by_name("wide"))}  # fmt: skip
    databases = [await server.create_database(by_name(n).fit(63)) for n in ("markup-close", "ansi-screen")]
    # application_name keeps printable ASCII only (the server turns the rest into '?').
    app_name = by_name("markup-click").text
    tasks, pids = [], {}
    conn = await pg_sessions.open(server, application_name=app_name)
    pids["query"] = conn.get_server_pid()
    tasks.append(await _start(conn, _select(texts)))
    for i, (name, role) in enumerate(roles.items()):
        conn = await pg_sessions.open(server, user=role, database=databases[i % 2], application_name=app_name)
        pids[name] = conn.get_server_pid()
        tasks.append(await _start(conn, _select([by_name(name)])))
    conn = await pg_sessions.open(server)
    pids["huge"] = conn.get_server_pid()
    tasks.append(await _start(conn, f"SELECT '{HUGE.text}', pg_sleep(60)"))
    fault_pg.psql_bytes(fault_pg.ascii_db, b"SELECT '" + BYTES[0].raw + b"', pg_sleep(60);\n")
    try:
        app = ConsoleApp(_pg_config(tmp_path, server))
        async with app.run_test(size=(200, 60)) as pilot:
            pg = next(p for p in app.panels if isinstance(p, PostgresPanel))

            def shown() -> set[int]:
                return {s.pid for s in pg._sessions.values()}

            await wait_for(
                pilot,
                lambda: set(pids.values()) <= shown(),
                20,
                lambda: f"every hostile session: {pids} {shown()} {app.state.snapshots.get('postgres:main')}",
            )
            await wait_for(pilot, lambda: any(BYTES[0].visible in s.query for s in pg._sessions.values()), 10,
                           "the session with invalid UTF-8")  # fmt: skip
            assert not unsafe_characters(screen_text(app)), unsafe_characters(screen_text(app))
            assert not terminal_problems(terminal_output(app)), terminal_problems(terminal_output(app))
            # Click every cell of every row: as markup, [@click=app.quit] would quit the app.
            _assert_inert(app)
            await _click_cells(pilot, app, pg.sessions)

            detail = await _detail_of(pilot, app, pg, pids["query"])
            check_shown(detail, tuple(_Visible(_pg(e)[1]) for e in texts))
            assert app_name in detail  # ASCII: kept as it is, markup and all
            for name, role in roles.items():
                detail = await _detail_of(pilot, app, pg, pids[name])
                visible = _pg(by_name(name))[1]
                assert visible in detail  # in the query
                assert f"user         {clean(role)}" in detail
            huge = await _detail_of(pilot, app, pg, pids["huge"])
            assert HUGE.visible in huge and len(huge) < 8_000  # the source reads 4096 characters
            row = pg.sessions.get_row(next(k for k, s in pg._sessions.items() if s.pid == pids["huge"]))
            assert all(len(str(c)) <= 100 for c in row)  # cut to size in the table
            assert app.is_running
        assert app.return_code in (None, 0)
    finally:
        for task in tasks:
            task.cancel()


def _assert_inert(app: ConsoleApp) -> None:
    """Nothing on screen acts (no markup action, no link), no control character is shown and
    a full repaint sends the terminal nothing but colours and cursor moves."""
    assert not screen_actions(app), screen_actions(app)
    assert not unsafe_characters(screen_text(app)), unsafe_characters(screen_text(app))
    assert not terminal_problems(terminal_output(app)), terminal_problems(terminal_output(app))


async def _click_cells(pilot, app: ConsoleApp, table) -> None:
    """Click, for real, one cell of every column, each on another row (a click on the cursor row
    would open its detail view): as markup, [@click=app.quit] in a cell would quit the app."""
    region = table.region
    rows = min(table.row_count, region.height - 1)
    x = region.x - int(table.scroll_x)
    for i, column in enumerate(table.ordered_columns):
        if region.x <= x + 1 < region.right:
            await pilot.click(offset=(x + 1, region.y + 1 + (i % rows)))
            if app.screen is not app.screen_stack[0]:
                await pilot.press("escape")
        x += column.get_render_width(table)
    assert app.is_running and app.screen is app.screen_stack[0]


class _Visible:
    """check_shown() over plain strings."""

    def __init__(self, visible: str):
        self.visible = visible
        self.name = visible


# --- Prometheus -------------------------------------------------------------------------------

HOSTILE_METRIC = "ic_hostile_gauge"
HOSTILE_ALERT = "IcHostileText"


@dataclass
class HostilePrometheus:
    url: str
    exporter: Any


@pytest.fixture(scope="module")
def hostile_prometheus(tmp_path_factory) -> Iterator[HostilePrometheus]:
    """A real Prometheus scraping an exporter whose label values are the corpus, with a rule
    whose labels and annotations are hostile too (static text and the scraped label)."""
    binary = require_binary(PROMETHEUS_BIN, "prometheus")
    home = tmp_path_factory.mktemp("hostile-prometheus")
    registry = CollectorRegistry()
    gauge = Gauge(HOSTILE_METRIC, "label values from the hostile corpus", ["series"], registry=registry)
    for entry in TEXTS:
        gauge.labels(series=entry.text).set(1)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    rules = home / "rules.yml"
    static = " | ".join(e.text for e in TEXTS)
    rule = {
        "alert": HOSTILE_ALERT,
        "expr": f"{HOSTILE_METRIC} > 0",
        "labels": {"severity": "critical", "hostile": by_name("markup-click").text},
        "annotations": {
            "summary": "series {{ $labels.series }} || " + static,
            "runbook_url": by_name("markup-link").text,
        },
    }
    rules.write_text(yaml.safe_dump({"groups": [{"name": "hostile", "interval": "1s", "rules": [rule]}]}))
    checked = subprocess.run(
        [require_binary(PROMTOOL_BIN, "prometheus"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = home / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [{"job_name": "hostile", "static_configs": [{"targets": [f"127.0.0.1:{server.server_address[1]}"]}]}],
    }))  # fmt: skip
    log = home / "prometheus.log"
    port = free_port()
    process = _spawn(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def firing() -> bool:
            if process.poll() is not None:
                pytest.fail(f"Prometheus exited{_tail(log)}")
            try:
                alerts = httpx.get(f"{url}/api/v1/alerts", timeout=1).json()["data"]["alerts"]
            except (httpx.HTTPError, ValueError, KeyError):
                return False
            return sum(a["labels"]["alertname"] == HOSTILE_ALERT for a in alerts) == len(TEXTS)

        wait_until(firing, 60, "an alert for every hostile series", log=log)
        yield HostilePrometheus(url, server)
    finally:
        _stop(process)
        stop_server(server, thread)


async def test_prometheus_corpus_in_labels_and_annotations_renders_literally(tmp_path, hostile_prometheus):
    config = console_config(
        tmp_path,
        refresh={"prometheus": "0.5s"},
        prometheus={
            "url": hostile_prometheus.url,
            "queries": [{"id": "hostile", "title": "hostile series", "query": HOSTILE_METRIC}],
        },
    )
    app = ConsoleApp(config)
    async with app.run_test(size=(200, 60)) as pilot:
        breaches = next(p for p in app.panels if isinstance(p, BreachesPanel))

        def alerts() -> list[str]:
            return [key for key in breaches._breaches if key.startswith(f"alert:{HOSTILE_ALERT}:")]

        await wait_for(pilot, lambda: len(alerts()) == len(TEXTS), 20, "every hostile alert on screen")
        _assert_inert(app)
        screen = screen_text(app)
        assert screen.count(HOSTILE_ALERT) >= min(len(TEXTS), breaches.table.region.height - 2)
        await _click_cells(pilot, app, breaches.table)
        seen: set[str] = set()
        breaches.table.focus()
        for row in range(len(TEXTS)):
            breaches.table.move_cursor(row=row)
            await pilot.pause()
            await pilot.press("enter")
            detail = await detail_text(pilot, what="the alert's detail view")
            _assert_inert(app)
            check_shown(detail)  # the static annotation: every entry
            assert "hostile=[@click=app.quit]click me[/]" in detail  # the rule's hostile label
            assert 'runbook url  [link="javascript:' in detail
            series = next(line for line in detail.splitlines() if line.startswith("  series="))
            seen |= {e.name for e in TEXTS if e.visible in series}
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is app.screen_stack[0], 5, "the detail view to close")
        assert seen == {e.name for e in TEXTS}  # each scraped label value, literally
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        _assert_inert(app)
        assert app.is_running


# --- health endpoints -------------------------------------------------------------------------


def _health_routes(http_server) -> dict[str, str]:
    """One target per format, every message, check name and detail hostile."""
    joined = " | ".join(e.text for e in TEXTS)
    http_server.route("/hj", status=503, json={
        "status": "fail", "output": joined,
        "checks": {e.text: [{"status": "fail", "output": e.text}] for e in TEXTS},
    })  # fmt: skip
    http_server.route("/spring", status=503, json={
        "status": "DOWN", "components": {e.text: {"status": "DOWN", "details": {"error": e.text}} for e in TEXTS},
    })  # fmt: skip
    lines = [b"[-]" + e.text.split()[0].encode() + b" failed: " + e.raw for e in CORPUS if not e.huge]
    http_server.route("/k8s", status=500, body=b"\n".join([*lines, b"readyz check failed"]))
    raw = BYTES[0].raw
    http_server.route("/bytes", body=b'{"status": "warn", "output": "' + raw + b'", "checks": {"' + raw + b'": {"status": "warn"}}}',
                      content_type="application/health+json")  # fmt: skip
    return {"hj": "health+json", "spring": "spring", "k8s": "k8s", "bytes": "health+json"}


async def test_health_corpus_in_messages_and_check_names_renders_literally(tmp_path, http_server):
    targets = _health_routes(http_server)
    config = console_config(
        tmp_path,
        refresh={"health": "0.5s"},
        health=[{"name": n, "url": http_server.url(f"/{n}"), "format": f} for n, f in targets.items()],
    )
    app = ConsoleApp(config)
    async with app.run_test(size=(200, 60)) as pilot:
        health = next(p for p in app.panels if isinstance(p, HealthPanel))
        await wait_for(
            pilot, lambda: all(f"health:{n}" in app.state.snapshots for n in targets), 20, "every target"
        )
        _assert_inert(app)
        await _click_cells(pilot, app, health.table)
        details = {}
        health.table.focus()
        for row, name in enumerate(targets):
            health.table.move_cursor(row=row)
            await pilot.pause()
            await pilot.press("enter")
            details[name] = await detail_text(pilot, what="the target's detail view")
            _assert_inert(app)
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is app.screen_stack[0], 5, "the detail view to close")
        for name in ("hj", "spring"):
            checks = details[name].split("checks:", 1)[1]
            check_shown(checks)  # every check name and detail
        check_shown(details["hj"].split("checks:", 1)[0])  # the output message
        check_shown(details["k8s"], CORPUS[:0] + tuple(e for e in CORPUS if not e.huge))
        assert "status       warn" in details["bytes"] and BYTES[0].visible in details["bytes"]
        assert app.is_running


# --- the real terminal ------------------------------------------------------------------------

# Sequences only the corpus could have produced: none may reach the terminal.
_ATTACKS = {
    b"\x1b]52;": "OSC 52 clipboard write",
    b"\x1b]0;pwned": "OSC 0 window title",
    b"\x1b]2;pwned": "OSC 2 window title",
    b"\x1b]8;;https://evil": "OSC 8 hyperlink",
    b"\x1bP+q": "DCS request",
    b"\x1bc": "terminal reset (RIS)",
    b"\xc2\x9b": "C1 CSI",
    b"\xc2\x9d": "C1 OSC",
    b"\xe2\x80\xae": "right-to-left override",
    b"\xe2\x81\xa6": "left-to-right isolate",
    b"\x00": "NUL",
    b"\x07": "BEL (the config turns the bell off: any BEL came from a backend)",
}


def test_nothing_hostile_reaches_a_real_terminal(tmp_path, http_server, hostile_prometheus):
    """The console in a pseudo-terminal, fed the corpus by a real Prometheus and health
    endpoints: every byte it writes to the tty is read, and no attack sequence is among them."""
    targets = _health_routes(http_server)
    config_file = tmp_path / "console.yaml"
    config_file.write_text(yaml.safe_dump({
        "environment": {"name": "pty-hostile"},
        "journal": str(tmp_path / "journal.jsonl"),
        "refresh": {"health": "0.5s", "prometheus": "0.5s"},
        "ui": {"bell": False},
        "health": [{"name": n, "url": http_server.url(f"/{n}"), "format": f} for n, f in targets.items()],
        "prometheus": {"url": hostile_prometheus.url,
                       "queries": [{"id": "hostile", "title": "hostile series", "query": HOSTILE_METRIC}]},
    }))  # fmt: skip
    pid, master = start_console(config_file, rows=60, cols=200)
    try:
        seen = read_until(master, HOSTILE_ALERT.encode(), timeout=30)
        seen += read_for(master, 1.0)
        for key in (b"\t", b"\r"):  # the health panel, then the first target's detail view
            os.write(master, key)
            seen += read_for(master, 1.0)
        deadline = time.monotonic() + 15
        while "␛]52;c;aGFja2Vk".encode() not in seen and time.monotonic() < deadline:
            seen += read_for(master, 0.2)
        for key in (b"\x1b", b"\t", b"\t", b"\t"):  # close it, tour the other panels
            os.write(master, key)
            seen += read_for(master, 0.7)
        seen += read_for(master, 2.0)  # a few more polls and repaints
        os.kill(pid, signal.SIGTERM)
        status, _ = wait_exit(pid, master)
    finally:
        os.close(master)
    seen = re.sub(rb"\x1b\]22;[a-z-]*\x07", b"", seen)  # Textual's own OSC 22 (mouse pointer shape)
    found = [f"{what}: {seen[max(i - 30, 0) : i + 30]!r}" for attack, what in _ATTACKS.items()
             if (i := seen.find(attack)) >= 0]  # fmt: skip
    assert not found, found
    assert "␛]52;c;aGFja2Vk".encode() in seen  # the attack was on screen: as text
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM
