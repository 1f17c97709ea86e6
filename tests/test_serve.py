"""``incident-console serve``: the wall in Debian's headless Chromium, its guards and its viewer cap,
and its one engine (issue 20: one Postgres session and one poll rate whatever the viewer count).

Every test runs the real CLI (``python -m console.cli serve``) on a free port of 127.0.0.1 against
a config on the real Postgres and real HTTP health servers; the browser is the ``chromium`` package
driven over DevTools (tests/fixtures/chromium.py), the other clients are aiohttp. The feed itself
(flow control, a lost feed, secrets) is tested in-process in tests/test_serve_feed.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from console.app import ConsoleApp
from console.config import Config
from console.feed import FEED_ENV, sweep_dead_feeds
from console.pg import APPLICATION_NAME
from console.serve import TOKEN_ENV, ServeError, exposure_problem, read_token
from panels.serve_web import COOKIE

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "console.cli"]
ENVIRONMENT = "ops-room"
TOKEN = "wall-token-" + "k3Jq9xZ2vT7pLm4R"
WALL_SIZE = (1600, 900)
START_TIMEOUT = 60.0


# --- a running `serve` ----------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str = ""
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.url.rstrip("/")

    def viewers(self) -> list[int]:
        """Live console processes this serve started (one per viewer)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if stat[0] != "Z" and int(stat[1]) == self.process.pid and b"run" in cmdline:
                found.append(int(entry.name))
        return found

    def wait_viewers(self, count: int, timeout: float = 30.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(pids := self.viewers()) != count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(pids)} viewer processes, expected {count}")
            time.sleep(0.1)
        return pids

    def log(self) -> str:
        return "".join(self.out + self.err)


def alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False


def _pump(stream, sink: list[str], lines: queue.Queue[str] | None) -> None:
    for line in stream:
        sink.append(line)
        if lines is not None:
            lines.put(line)


@contextlib.contextmanager
def serving(config_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    process = subprocess.Popen(
        [*CLI, "serve", "--config", str(config_path), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    served = Served(process)
    started: queue.Queue[str] = queue.Queue()
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, served.out, started), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, served.err, None), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        try:
            line = started.get(timeout=START_TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"serve did not start: {served.log()}") from None
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line
        served.url = match.group(1)
        yield served
        if process.poll() is None:  # (a test may have killed it)
            viewers = served.viewers()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, served.log()
            # Every console process ends with serve (none is left polling the backends).
            for pid in viewers:
                assert not alive(pid), pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for pump in pumps:  # at the pipes' end once serve is gone; then they are closed
            pump.join(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def write_config(path: Path, pg_server, http_server, journal: Path) -> Path:
    http_server.route("/health", status=200, json={"status": "pass"})
    http_server.route("/payments", status=503, json={"status": "fail", "output": "card processor down"})
    http_server.route("/search", status=200, json={"status": "pass"}, delay=0.8)
    path.write_text(
        f"""
environment: {{name: {ENVIRONMENT}, production: true}}
journal: {journal}
refresh: {{health: 1s, postgres: 1s}}
ui: {{bell: false, wall: {{rotate: 300s}}}}  # the breaches page stays up for the picture
health:
  - {{name: storefront, url: "{http_server.url("/health")}", format: health+json}}
  - {{name: payments, url: "{http_server.url("/payments")}", format: health+json}}
  - {{name: search, url: "{http_server.url("/search")}", format: health+json, latency: {{warning: 0.5, critical: 5}}}}
postgres:
  - name: main
    dsn: "{pg_server.dsn()}"
    thresholds: {{idle_in_transaction: {{warning: 1, critical: 3600}}}}
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def wall_config(tmp_path, pg_server, http_server) -> Path:
    return write_config(tmp_path / "console.yaml", pg_server, http_server, tmp_path / "journal.jsonl")


async def first_screen(served: Served, *, cookies: dict[str, str] | None = None, headers=None):
    """A websocket viewer (what the page opens) that has received the console's first frame."""
    session = aiohttp.ClientSession(cookies=cookies)
    ws = await session.ws_connect(served.base + "/ws?width=120&height=40", headers=headers or {})
    received = 0
    while received < 200:
        message = await asyncio.wait_for(ws.receive(), START_TIMEOUT)
        assert message.type == aiohttp.WSMsgType.BINARY, message
        received += len(message.data)
    return session, ws


# --- in the browser -------------------------------------------------------------------------


def without_wall_timeline(text: str) -> str:
    """The screen without the wall's own timeline heading ("Timeline (this machine's journal)"):
    that line is the wall showing the journal, not a key offered or a screen opened."""
    return re.sub(r"Timeline \((this machine's|every console, shared) journal\)", "", text)


def non_background(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Share of the pixels in ``box`` that differ from the page's background colour."""
    background = (12, 24, 31)  # #0c181f
    pixels = list(image.convert("RGB").crop(box).get_flattened_data())
    return sum(1 for p in pixels if max(abs(a - b) for a, b in zip(p, background, strict=True)) > 24) / len(
        pixels
    )


def reddish(image: Image.Image, box: tuple[int, int, int, int]) -> float:
    """Share of red-dominant pixels (a critical tile is filled and framed in red)."""
    pixels = list(image.convert("RGB").crop(box).get_flattened_data())
    return sum(1 for r, g, b in pixels if r > 60 and r >= 1.5 * g + 10 and r > 1.4 * b) / len(pixels)


async def test_the_browser_leaves_nothing_in_the_temp_dir():
    """Killed on the way out, chromium cleans up nothing: its temp files must be in its profile."""
    from tests.fixtures.chromium import launched

    def leftovers() -> set[str]:
        parent = Path(tempfile.gettempdir())
        return {p.name for pattern in ("org.chromium.*", "ic-chromium-*") for p in parent.glob(pattern)}

    before = leftovers()
    async with launched() as browser:
        page = await browser.open("about:blank")
        assert await page.evaluate("1 + 1") == 2
    assert leftovers() - before == set()


@pytest.mark.timeout(300)
async def test_the_wall_draws_in_headless_chromium(chromium, wall_config, pg_server, pg_sessions, tmp_path):
    idle = await pg_sessions.open(pg_server, application_name="ic-serve-idle")
    await idle.execute("BEGIN; SELECT 1")  # idle in transaction: a warning tile
    with serving(wall_config) as served:
        page = await chromium.open(served.url, width=WALL_SIZE[0], height=WALL_SIZE[1])
        wanted = (
            ENVIRONMENT,
            "READ-ONLY",
            "WALL",
            "payments health",
            "search latency",
            "idle-in-transaction",
        )
        await page.wait_for(
            lambda: all(word in page.screen_text() for word in wanted),
            "the wall header and the tiles of the failing checks",
        )
        text = page.screen_text()
        assert "card processor down" in text or "FAIL" in text.upper()
        assert ENVIRONMENT in await page.evaluate("document.title")
        assert await page.evaluate("document.body.classList.contains('-first-byte')")
        # The terminal filled the window: about 1600x900 px of cells, not the 80x24 it starts with.
        assert page.screen.columns > 120 and page.screen.lines > 35, (page.screen.columns, page.screen.lines)
        [viewer] = served.wait_viewers(1)
        cmdline = Path(f"/proc/{viewer}/cmdline").read_bytes().split(b"\0")
        assert b"--web" in cmdline and str(wall_config).encode() in cmdline

        await asyncio.sleep(1.5)  # let the browser paint the last frame it got
        shot = tmp_path / "serve-wall.png"  # screenshots/ is written by make screenshots only
        data = await page.screenshot(shot)
        image = Image.open(shot)
        assert image.size == WALL_SIZE and len(data) > 10_000
        width, height = image.size
        # The header line (environment, badges, clock), the tiles, and the critical payments tile.
        assert non_background(image, (0, 0, width, 20)) > 0.3
        assert non_background(image, (0, 40, width, height)) > 0.3
        assert reddish(image, (0, 40, width, height)) > 0.05


@pytest.mark.timeout(300)
async def test_action_keys_do_nothing_in_the_browser(chromium, wall_config, pg_server, pg_sessions, tmp_path):
    victim = await pg_sessions.open(pg_server, application_name="ic-serve-victim")
    await victim.execute("BEGIN; SELECT 1")  # idle in transaction: what K or c would go for
    victim_pid = victim.get_server_pid()
    journal = tmp_path / "journal.jsonl"
    with serving(wall_config) as served:
        page = await chromium.open(served.url, width=WALL_SIZE[0], height=WALL_SIZE[1])
        await page.wait_for(lambda: "WALL" in page.screen_text(), "the wall")
        [viewer] = served.wait_viewers(1)

        # Keys do reach the console: ? opens the help, which offers nothing but itself.
        await page.press("?")
        await page.wait_for(lambda: "Keys (remap" in page.screen_text(), "the help screen")
        help_text = without_wall_timeline(page.screen_text())
        for offered in ("Runbooks", "Timeline", "Pause", "Terminate", "Quit"):
            assert offered not in help_text
        await page.press("escape")
        await page.wait_for(lambda: "Keys (remap" not in page.screen_text(), "the help screen closing")

        keys = ["c", "K", "x", "a", "A", "R", "t", "D", "p", "r", "d", "m", "k", "o", "u", "enter", "y",
                "q", "ctrl+q", "ctrl+c", "ctrl+p", "tab", "/"]  # fmt: skip
        await page.press(*keys)
        # The console handles keys in order: once this help shows, every key above was handled.
        await page.press("?")
        await page.wait_for(lambda: "Keys (remap" in page.screen_text(), "the help screen after the keys")
        await page.press("escape")
        await page.wait_for(lambda: "Keys (remap" not in page.screen_text(), "the help screen closing")
        await asyncio.sleep(1.0)

        text = without_wall_timeline(page.screen_text())
        assert "WALL" in text and "READ-ONLY" in text and "PAUSED" not in text
        for screen_of_an_action in (
            "Cancel query",
            "Terminate",
            "Runbooks",
            "Timeline",
            "Search for commands",
        ):
            assert screen_of_an_action not in text
        assert served.viewers() == [viewer]  # q, ctrl+q and ctrl+c did not end the console
        assert not page.closed_sockets
        assert not journal.exists() or journal.read_text() == ""
        alive = await pg_server.fetch("SELECT state FROM pg_stat_activity WHERE pid = $1", victim_pid)
        assert [r["state"] for r in alive] == ["idle in transaction"]


@pytest.mark.timeout(300)
async def test_a_full_server_says_so_on_the_page(chromium, wall_config):
    with serving(wall_config, "--max-viewers", "1") as served:
        session, ws = await first_screen(served)
        try:
            [first] = served.wait_viewers(1)
            page = await chromium.open(served.url)
            said = ""
            deadline = time.monotonic() + 30
            while "viewer slot" not in said:
                assert time.monotonic() < deadline, said
                await asyncio.sleep(0.2)
                said = await page.evaluate("document.body ? document.body.innerText : ''") or ""
            assert "All 1 viewer slot of this wall display are in use" in said, said
            assert "--max-viewers" in said
            async with session.get(served.url) as response:
                assert response.status == 503 and response.headers["Retry-After"] == "15"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(served.base + "/ws")
            assert refused.value.status == 503
            assert served.viewers() == [first]  # the refused ones started no console
        finally:
            await ws.close()
            await session.close()
        served.wait_viewers(0)
        # The slot is given back just after its process is reaped: wait for serve to say so.
        deadline = time.monotonic() + 30
        while "left (0/1)" not in served.log():
            assert time.monotonic() < deadline, served.log()
            await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as client, client.get(served.url) as response:
            assert response.status == 200  # the slot is free again
        assert "viewer 1/1" in served.log()


# --- one engine for every viewer (issue 20) ----------------------------------------------------


def tcp_peer_ports(pid: int) -> set[int]:
    """The remote ports of the TCP connections process ``pid`` holds (its socket inodes matched
    in /proc/net/tcp and tcp6)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if (target := os.readlink(fd)).startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def pending_bytes(sock: socket.socket) -> int:
    """Bytes the kernel holds for a socket that is never read."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.timeout(300)
async def test_two_browsers_share_one_engine(chromium, pg_server, http_server, tmp_path):
    """Two Chromium viewers and a feed reader that never reads: the console holds one Postgres
    session and polls the health endpoint at one viewer's rate; the viewers' processes hold no
    connection to either backend; both viewers still update (a service starts failing) while the
    stalled reader's socket is full."""
    database = await pg_server.create_database()  # the console's sessions, told apart from others'
    failing = threading.Event()

    def payments(request) -> tuple[int, dict[str, str], bytes]:
        if failing.is_set():
            return (
                503,
                {"Content-Type": "application/json"},
                b'{"status": "fail", "output": "card processor down"}',
            )
        return 200, {"Content-Type": "application/json"}, b'{"status": "pass"}'

    # 200 checks of ~900 characters: states of ~200 KB, so the stalled reader's socket fills.
    bulky = {
        "status": "pass",
        "checks": {f"c{i}:probe": [{"status": "pass", "output": "o" * 900}] for i in range(200)},
    }
    http_server.route("/health", status=200, json={"status": "pass"})
    http_server.route("/payments", handler=payments)
    http_server.route("/bulky", status=200, json=bulky)
    config = tmp_path / "console.yaml"
    config.write_text(
        f"""
environment: {{name: {ENVIRONMENT}, production: true}}
journal: {tmp_path / "journal.jsonl"}
refresh: {{health: 1s, postgres: 1s}}
ui: {{bell: false, wall: {{rotate: 300s}}}}
health:
  - {{name: storefront, url: "{http_server.url("/health")}", format: health+json}}
  - {{name: payments, url: "{http_server.url("/payments")}", format: health+json}}
  - {{name: bulky, url: "{http_server.url("/bulky")}", format: health+json}}
postgres:
  - {{name: main, dsn: "{pg_server.dsn(database=database)}"}}
""",
        encoding="utf-8",
    )
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with serving(config) as served:
            feed = re.search(r"its feed for the viewers: (\S+)", served.log())
            assert feed, served.log()
            stalled.setblocking(False)
            await asyncio.get_running_loop().sock_connect(stalled, feed.group(1))

            pages = [
                await chromium.open(served.url, width=WALL_SIZE[0], height=WALL_SIZE[1]) for _ in range(2)
            ]
            for page in pages:
                await page.wait_for(
                    lambda page=page: ENVIRONMENT in page.screen_text() and "WALL" in page.screen_text(),
                    "the wall",
                )
            viewers = served.wait_viewers(2)
            for viewer in viewers:
                assert f"{FEED_ENV}={feed.group(1)}".encode() in Path(f"/proc/{viewer}/environ").read_bytes()

            # One Postgres session for the console, whatever the number of viewers.
            async def console_sessions() -> list[int]:
                rows = await pg_server.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
                    database,
                    APPLICATION_NAME,
                )
                return [r["pid"] for r in rows]

            deadline = time.monotonic() + START_TIMEOUT
            while not (sessions := await console_sessions()):
                assert time.monotonic() < deadline, "the engine never connected to Postgres"
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)  # two more refreshes: a viewer polling would have connected by now
            assert len(await console_sessions()) == 1, sessions
            # serve's engine holds its connection to the health server (kept alive between polls):
            # seen here, so the check below can see one; the viewers talk to neither backend.
            deadline = time.monotonic() + START_TIMEOUT
            while http_server.port not in tcp_peer_ports(served.process.pid):
                assert time.monotonic() < deadline, tcp_peer_ports(served.process.pid)
                await asyncio.sleep(0.1)
            for viewer in viewers:
                assert not tcp_peer_ports(viewer) & {pg_server.port, http_server.port}, viewer

            # The health endpoint at one poller's rate: chained polls are at least 1 s apart, so
            # one poller makes at most one request a second (a slow machine makes fewer); two
            # viewers polling for themselves made two.
            before, started = http_server.hits("/health"), time.monotonic()
            await asyncio.sleep(6.0)
            made, window = http_server.hits("/health") - before, time.monotonic() - started
            assert 1 <= made <= window / 1.0 + 1, (made, window)

            # The stalled reader's socket fills (it never reads), and both viewers still follow.
            deadline = time.monotonic() + START_TIMEOUT
            while pending_bytes(stalled) < 100_000:
                assert time.monotonic() < deadline, pending_bytes(stalled)
                await asyncio.sleep(0.2)
            for page in pages:
                assert "payments health" not in page.screen_text()
            failing.set()
            for page in pages:
                await page.wait_for(
                    lambda page=page: "payments health" in page.screen_text(),
                    "the failing service on each viewer",
                )
            assert len(await console_sessions()) == 1
    finally:
        stalled.close()


async def test_viewers_open_no_link_to_the_shared_journal(chromium, store, pg_server, http_server, tmp_path):
    """With ``journal.shared``, serve's engine holds the one session on the store (it copies and
    announces nothing); two browser viewers hold none, and both show a note another console adds
    (issue 20 point 2: before, each viewer process opened its own link to the store)."""
    from console.journal import Journal, Note, Operator
    from console.journal.shared import SharedJournal

    _, limited, database = store
    http_server.route("/health", status=200, json={"status": "pass"})
    config = tmp_path / "console.yaml"
    config.write_text(
        f"""
environment: {{name: {ENVIRONMENT}}}
journal: {{path: "{tmp_path / "journal.jsonl"}", shared: {{dsn: "{limited.dsn}"}}}}
refresh: {{health: 1s}}
ui: {{bell: false, wall: {{rotate: 300s}}}}
health:
  - {{name: storefront, url: "{http_server.url("/health")}", format: health+json}}
""",
        encoding="utf-8",
    )

    async def store_sessions() -> list[int]:
        rows = await pg_server.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
        )
        return [r["pid"] for r in rows]

    alice_path = tmp_path / "alice" / "journal.jsonl"
    alice_journal = Journal(alice_path, operator=Operator("alice", "", "alice-host"), environment=ENVIRONMENT)
    alice = SharedJournal(
        limited, alice_path, environment=ENVIRONMENT, console=alice_journal.console, operator="alice"
    )
    alice_task: asyncio.Task[None] | None = None
    try:
        with serving(config) as served:
            pages = [
                await chromium.open(served.url, width=WALL_SIZE[0], height=WALL_SIZE[1]) for _ in range(2)
            ]
            for page in pages:
                await page.wait_for(
                    lambda page=page: "every console, shared journal" in page.screen_text(),
                    "the shared timeline on the wall",
                )
            viewers = served.wait_viewers(2)
            await asyncio.sleep(2.0)  # a viewer with a link of its own would have opened it by now
            assert len(await store_sessions()) == 1  # the engine's
            for viewer in viewers:
                assert pg_server.port not in tcp_peer_ports(viewer), viewer

            alice_task = asyncio.ensure_future(alice.run())
            await asyncio.to_thread(alice_journal.append, Note(text="alice: failing over the primary"))
            alice.wake()
            for page in pages:
                await page.wait_for(
                    lambda page=page: "alice: failing over the primary" in page.screen_text(),
                    "alice's note on each viewer",
                    timeout=START_TIMEOUT,
                )
            assert len(await store_sessions()) == 2  # the engine's and alice's
            assert alice.state.presence == {}  # nobody announced itself besides alice
    finally:
        if alice_task is not None:
            alice_task.cancel()
            await asyncio.gather(alice_task, return_exceptions=True)
        await alice.aclose()


# --- guards ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "wall.example.org"])
def test_another_address_without_a_token_or_proxy_is_refused(wall_config, host):
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    result = subprocess.run(
        [*CLI, "serve", "--config", str(wall_config), "--host", host, "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert f"refusing to listen on {host}" in line and TOKEN_ENV in line and "--behind-proxy" in line


def test_loopback_needs_no_guard_and_the_guards_are_either():
    assert exposure_problem("127.0.0.1", None, False) is None
    assert exposure_problem("::1", None, False) is None
    assert exposure_problem("localhost", None, False) is None
    assert exposure_problem("0.0.0.0", TOKEN, False) is None
    assert exposure_problem("0.0.0.0", None, True) is None
    assert exposure_problem("10.1.2.3", None, False)


def test_token_sources_and_their_checks(tmp_path):
    good = tmp_path / "wall.token"
    good.write_text(TOKEN + "\n")
    good.chmod(0o600)
    assert read_token(good, {}) == TOKEN
    assert read_token(None, {TOKEN_ENV: TOKEN}) == TOKEN
    assert read_token(None, {}) is None
    problems = {
        "both": (good, {TOKEN_ENV: TOKEN}),
        "short": (None, {TOKEN_ENV: "tiny"}),
        "spaces": (None, {TOKEN_ENV: "a token with some spaces"}),
        "missing": (tmp_path / "absent", {}),
    }
    for name, (path, env) in problems.items():
        with pytest.raises(ServeError) as caught:
            read_token(path, env)
        assert "\n" not in str(caught.value), name
    good.chmod(0o644)
    with pytest.raises(ServeError, match="readable by every user"):
        read_token(good, {})


async def test_the_token_gate(wall_config):
    with serving(wall_config, env={TOKEN_ENV: TOKEN}) as served:
        assert "token required" in served.out[0] and TOKEN not in served.out[0]
        async with aiohttp.ClientSession() as client:
            async with client.get(served.url, allow_redirects=False) as response:
                assert response.status == 401 and "needs its token" in await response.text()
            async with client.get(
                served.url + "?token=" + TOKEN[:-1] + "x", allow_redirects=False
            ) as response:
                assert response.status == 403 and "wrong token" in await response.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(served.base + "/ws")
            assert refused.value.status == 401
            assert served.viewers() == []  # refused before any console process started

            async with client.get(
                served.url + "?token=" + TOKEN + "&fontsize=20", allow_redirects=False
            ) as response:
                assert response.status == 303 and response.headers["Location"] == "./?fontsize=20"
                cookie = response.cookies[COOKIE]
                assert cookie["httponly"] and cookie["samesite"] == "Strict"
                assert TOKEN not in cookie.value
        session, ws = await first_screen(served, cookies={COOKIE: cookie.value})
        try:
            async with session.get(served.url) as response:
                assert response.status == 200 and "<title>incident-console" in await response.text()
            [viewer] = served.wait_viewers(1)
            environ = Path(f"/proc/{viewer}/environ").read_bytes()
            assert TOKEN.encode() not in environ  # the token stays in the serve process
            assert TOKEN.encode() not in Path(f"/proc/{served.process.pid}/cmdline").read_bytes()
        finally:
            await ws.close()
            await session.close()
    assert TOKEN not in served.log()


async def test_other_sites_and_rebound_names_get_nothing(wall_config):
    with serving(wall_config) as served:
        port = served.url.rsplit(":", 1)[1].strip("/")
        async with aiohttp.ClientSession() as client:
            # DNS rebinding: a name of the attacker's pointing at 127.0.0.1.
            async with client.get(served.url, headers={"Host": f"evil.example:{port}"}) as response:
                assert response.status == 403 and "localhost only" in await response.text()
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect(served.base + "/ws", headers={"Origin": "http://evil.example"})
            assert refused.value.status == 403
            assert served.viewers() == []
        session, ws = await first_screen(served, headers={"Origin": f"http://127.0.0.1:{port}"})
        await ws.close()
        await session.close()


async def test_no_viewer_outlives_a_killed_serve(wall_config):
    """Nor does its feed: the next serve sweeps the directory a killed one could not remove."""
    with serving(wall_config) as served:
        feed = re.search(r"its feed for the viewers: (\S+)", served.log())
        assert feed, served.log()
        left = Path(feed.group(1)).parent
        session, ws = await first_screen(served)
        try:
            [viewer] = served.wait_viewers(1)
            os.kill(served.process.pid, signal.SIGKILL)  # no clean-up code runs in serve
            served.process.wait(timeout=30)
            deadline = time.monotonic() + 30
            while alive(viewer):
                assert time.monotonic() < deadline, "the console process outlived serve"
                await asyncio.sleep(0.1)
            assert left.is_dir()  # what the killed serve left
            then = time.time() - 3600  # as the next serve finds it, past STALE_AFTER_SECONDS
            for path in (left, *left.iterdir()):
                os.utime(path, (then, then), follow_symlinks=False)
            assert left in sweep_dead_feeds(left.parent) and not left.exists()
        finally:
            await ws.close()
            await session.close()
            shutil.rmtree(left, ignore_errors=True)


# --- the served app -------------------------------------------------------------------------


async def test_web_mode_is_wall_and_read_only_whatever_is_asked():
    config = Config.model_validate(
        {"environment": {"name": "web"}, "read_only": False, "ui": {"bell": False}}
    )
    app = ConsoleApp(config, autopoll=False, web=True, wall=False, read_only=False)
    async with app.run_test(size=(160, 48)) as pilot:
        assert app.wall and app.read_only and app.wall_screen is not None and app.panels == []
        assert app.executor.mode == "web" and "web mode" in app.executor.read_only_reason
        for action in ("quit", "quit_console", "command_palette", "pause", "refresh", "runbooks", "timeline"):
            assert app.check_action(action, ()) is False, action
        assert [row[1] for row in app.key_rows()] == ["Help"]
        await pilot.press("q", "ctrl+q", "escape", "ctrl+c")
        assert app.is_running and app.return_code is None


@pytest.mark.parametrize("web", [True, False])
async def test_escape_on_the_wall_keeps_it_up(web):
    """It raised NoMatches (no #filter on the wall) and ended the console, in a terminal and in a browser."""
    config = Config.model_validate({"environment": {"name": "wall"}, "ui": {"bell": False}})
    app = ConsoleApp(config, autopoll=False, web=web, wall=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert app.is_running and app.return_code is None
