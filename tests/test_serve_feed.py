"""serve's one engine and its feed (console/feed.py), in this process: real Unix sockets, a real
Poller on real backends, a real viewer app (Textual's run_test).

- what the feed carries is the state the panels render, and no secret the screen would not show;
- a reader that never reads does not hold back the engine or another reader, and gets the newest
  state (not a backlog) when it reads again;
- a viewer whose feed is lost says so, keeps its last state, and comes back with the feed.
End-to-end (browsers, serve's process, Postgres sessions, request rates): tests/test_serve.py.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
import socket
import stat
import time
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote

import pytest

from console.config import Config, Environment
from console.feed import FEED_ENV, HEADER_BYTES, Engine, FeedClient, FeedError, FeedServer, decode, encode
from console.model import HealthSnapshot, HealthStatus, SourceKey
from console.poller import ConsoleState

WAIT = 20.0  # every wait is bounded; generous for a loaded 2-core machine


async def until(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def state_at(taken_at: float, output: str = "", name: str = "feed") -> ConsoleState:
    key = SourceKey.health("storefront")
    snapshot = HealthSnapshot(
        source=key,
        taken_at=taken_at,
        target="storefront",
        url="http://127.0.0.1/health",
        format="health+json",
        status=HealthStatus.FAIL,
        output=output,
    )
    return ConsoleState(
        taken_at=taken_at,
        environment=Environment(name=name),
        read_only=True,
        snapshots=MappingProxyType({key: snapshot}),
        last_good=MappingProxyType({key: snapshot}),
        intervals=MappingProxyType({key: 1.0}),
    )


def read_frame(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    return exactly(int.from_bytes(exactly(HEADER_BYTES), "big"))


# --- the wire -----------------------------------------------------------------------------------


def test_a_state_round_trips_and_foreign_types_are_refused():
    state = state_at(1234.5, output="[bold]x[/italic] \x1b]0;title\x07")
    frame = encode(state)
    back = decode(frame[HEADER_BYTES:])
    assert back == state
    assert isinstance(back.snapshots, MappingProxyType) and next(iter(back.snapshots)).kind.value == "health"

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    for payload, said in (
        (pickle.dumps(Evil()), "not a type of the engine"),
        (pickle.dumps((99, 1, 2)), "another version"),
        (b"\x80\x05garbage", "unreadable"),
    ):
        with pytest.raises(FeedError, match=said):
            decode(payload)


async def test_the_feed_carries_no_secret_and_lives_in_a_private_directory(http_server, pg_server, tmp_path):
    canary_pw, canary_token = "CNRYfeedpw" + os.urandom(4).hex(), "CNRYfeedtok" + os.urandom(4).hex()
    http_server.route("/health", status=200, json={"status": "pass"})
    config_path = tmp_path / "console.yaml"
    config_path.write_text(
        f"""
environment: {{name: feed}}
refresh: {{health: 1s, postgres: 1s}}
health:
  - {{name: storefront, url: "{http_server.url("/health")}?token={canary_token}", format: health+json}}
postgres:
  - {{name: main, dsn: "{pg_server.dsn(password=canary_pw)}"}}
""",
        encoding="utf-8",
    )
    from console.loader import load_config  # registers the secrets, as serve's loading does

    engine = await Engine(load_config(config_path)).start()
    try:
        mode = os.stat(engine.path.parent).st_mode
        assert stat.S_IMODE(mode) == 0o700 and engine.path.is_socket()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, str(engine.path))
            sock.setblocking(True)
            sock.settimeout(WAIT)
            frames: list[bytes] = []
            while True:  # until the state has both sources (the wall's timeline comes too)
                frames.append(await asyncio.to_thread(read_frame, sock))
                item = decode(frames[-1])
                if isinstance(item, ConsoleState) and len(item.snapshots) == 2:
                    break
        state = decode(frames[-1])
        assert isinstance(state, ConsoleState)
        assert {str(k) for k in state.snapshots} == {"health:storefront", "postgres:main"}
        for frame in frames:
            for secret in (canary_pw, canary_token):
                assert secret.encode() not in frame and quote(secret).encode() not in frame
    finally:
        await engine.aclose()
    assert not engine.path.parent.exists()  # the private directory goes with serve


# --- flow control -------------------------------------------------------------------------------


async def test_a_reader_that_never_reads_holds_back_nobody():
    """One reader never reads (a raw socket, never recv'd); states of 1 MiB each are published
    far faster than it could take them. The engine's publish never waits, the other reader gets
    the newest state, and the stalled one, reading at last, gets at most the frames already under
    way and then the newest — not the hundred it missed."""
    server = await FeedServer().start()
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(stalled, str(server.path))
        reader = FeedClient(server.path)
        seen: list[ConsoleState] = []
        follower = asyncio.create_task(reader.follow(seen.append, lambda problem: None))
        await until(lambda: len(server.subscribers) == 2, "both readers connected")

        big = "x" * (1024 * 1024)
        last = 0.0
        for i in range(100):
            last = 1000.0 + i
            started = time.monotonic()
            server.publish(state_at(last, output=big))
            assert time.monotonic() - started < 0.5  # publish hands over and returns (no I/O)
            await asyncio.sleep(0.06)  # past the coalescing window: each one is a frame
            if i % 20 == 19:  # the reading viewer keeps up with what is published
                await until(lambda t=last: seen and seen[-1].taken_at == t, f"the reader at state {i}")
        await until(lambda: seen and seen[-1].taken_at == last, "the reader at the newest state")
        stuck = next(s for s in server.subscribers if s.sent < 10)
        assert stuck.replaced > 80, (stuck.sent, stuck.replaced)  # dropped, not queued
        assert server.published >= 90

        # The stalled reader reads at last: the frames under way, then the newest state.
        stalled.setblocking(True)
        stalled.settimeout(WAIT)
        taken: list[float] = []
        while not taken or taken[-1] != last:
            taken.append(decode(await asyncio.to_thread(read_frame, stalled)).taken_at)
        assert len(taken) <= 3, taken
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    finally:
        stalled.close()
        await server.aclose()


async def test_a_reader_that_leaves_is_forgotten():
    server = await FeedServer().start()
    try:
        leaving = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        leaving.setblocking(False)
        await asyncio.get_running_loop().sock_connect(leaving, str(server.path))
        await until(lambda: len(server.subscribers) == 1, "the reader connected")
        leaving.close()
        await until(lambda: not server.subscribers, "the reader forgotten")
        server.publish(state_at(1.0))  # nobody to send to: still fine
        await until(lambda: server.published == 1, "the state encoded")
    finally:
        await server.aclose()


# --- the viewer ---------------------------------------------------------------------------------


async def test_a_viewer_says_when_its_feed_is_lost_and_comes_back_with_it(tmp_path):
    from console.app import ConsoleApp

    directory = tmp_path / "feed"
    directory.mkdir()
    server = await FeedServer(directory).start()
    config = Config.model_validate(
        {
            "environment": {"name": "wall-feed"},
            "ui": {"bell": False},
            "health": [{"name": "storefront", "url": "http://127.0.0.1:9/never-polled"}],
        }
    )
    feed = FeedClient(server.path, retry=0.2)
    app = ConsoleApp(config, web=True, feed=feed)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            assert app.poller.sources == {}  # a viewer has nothing to poll with
            now = time.time()
            server.publish(state_at(now, output="card processor down", name="wall-feed"))
            await until(lambda: app.state.taken_at == now, "the published state on the viewer")
            await pilot.pause()
            assert app.header.mode == "WALL"

            await server.aclose()  # the engine is gone
            await until(lambda: "FEED LOST since" in app.header.mode, "the viewer saying its feed is lost")
            await pilot.pause(0.5)
            assert app.is_running and app.return_code is None
            assert app.state.taken_at == now  # the last state stays, its age growing
            assert "FEED LOST" in str(app.header.compose_line(time.time()))

            server = await FeedServer(directory).start()  # an engine again, at the same place
            later = time.time()
            server.publish(state_at(later, name="wall-feed"))
            await until(lambda: app.state.taken_at == later, "the state of the new feed")
            await until(lambda: app.header.mode == "WALL", "the header without the lost feed")
            assert feed.received == 2
    finally:
        await server.aclose()


def test_the_viewer_finds_its_feed_in_the_environment():
    assert FeedClient.from_environ({}) is None
    client = FeedClient.from_environ({FEED_ENV: "/tmp/x/feed.sock"})
    assert client is not None and client.path == "/tmp/x/feed.sock"


# --- what a killed serve leaves ----------------------------------------------------------------


def dead_feed(parent: Path, name: str, *, age: float) -> Path:
    """A feed directory as a killed serve leaves it: its socket bound, nobody listening."""
    directory = parent / f"ic-serve-{name}"
    directory.mkdir(mode=0o700)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(directory / "feed.sock"))
    sock.close()  # the file stays; a connection is refused
    aged(directory, age)
    return directory


def aged(directory: Path, age: float) -> None:
    then = time.time() - age
    for path in (directory, *directory.iterdir()):
        os.utime(path, (then, then), follow_symlinks=False)


async def test_a_dead_feed_is_swept_and_a_live_or_young_one_is_kept(tmp_path):
    from console.feed import sweep_dead_feeds

    dead = dead_feed(tmp_path, "dead", age=3600)
    young = dead_feed(tmp_path, "young", age=5)  # a serve that has only just bound
    empty = tmp_path / "ic-serve-empty"
    empty.mkdir()
    aged(empty, 3600)  # a serve killed before it bound
    not_a_directory = tmp_path / "ic-serve-file"
    not_a_directory.write_text("")
    os.utime(not_a_directory, (0, 0))
    (tmp_path / "ic-serve-live").mkdir()
    live = await FeedServer(tmp_path / "ic-serve-live").start()
    try:
        aged(live.directory, 3600)  # a serve that has run for an hour
        removed = await asyncio.to_thread(sweep_dead_feeds, tmp_path)
        assert sorted(removed) == sorted([dead, empty])
        assert not dead.exists() and not empty.exists()
        assert young.exists() and not_a_directory.exists() and live.path.exists()
    finally:
        await live.aclose()


async def test_a_new_serve_sweeps_the_feed_a_killed_one_left():
    from console.feed import _socket_parent

    parent = Path(_socket_parent())  # where a FeedServer makes its own directory
    left = dead_feed(parent, f"killed-{os.getpid()}", age=3600)
    server = await FeedServer().start()
    try:
        assert not left.exists()
        assert server.path.exists()
    finally:
        await server.aclose()
        if left.exists():
            shutil.rmtree(left)
    assert not server.directory.exists()
