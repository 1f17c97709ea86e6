"""The engine's feed: ``serve`` polls once and every browser viewer renders what it publishes.

``incident-console serve`` runs one :class:`Engine`: the :class:`~console.poller.Poller` (its
sources, the threshold engine) in serve's own process, and a :class:`FeedServer` on a Unix socket
in a private directory (``mkdtemp``: mode 0700, only this user can reach it). Each browser
viewer's console process (``run --web``) finds the socket in ``$INCIDENT_CONSOLE_FEED`` and
:func:`follow`\\ s it: it renders the states it receives and polls nothing itself, so the backends
see one console whatever the number of viewers (bench/SERVE_RESULTS.md). serve removes its
directory when it ends; one it could not remove (killed) is swept by the next serve that starts.

The wire: frames of a 4-byte big-endian length and a pickle (protocol 5) of
``(FEED_VERSION, "state", taken_at, environment, read_only, snapshots, last_good, breaches,
intervals)``, the fields of a :class:`~console.poller.ConsoleState` (its mappings as dicts: a
mappingproxy does not pickle), or of ``(FEED_VERSION, "timeline", WallTimeline)``: the wall's
timeline, read by the engine (every console's events from the shared journal through the
engine's one read-only link to the store, else this machine's journal), so that a viewer opens
no connection to the store, announces no presence there and reads no journal file. The text in it is what the panels render, already sanitised and redacted at the
source boundary (console/sanitize.py, console/redact.py); no DSN or secret is added. The reader
unpickles only classes of the engine (``console.*``) and refuses everything else.

Flow control (a viewer that stalls or leaves never slows the engine or another viewer): states
that land together (sources polled at once) are encoded once, at most every COALESCE_SECONDS,
and offered to every subscriber. A subscriber holds at most one frame being written and one
waiting; a newer frame replaces the waiting one. A viewer that does not read keeps only its own
writer waiting, and when it reads again it gets the frame already under way, then the newest
state — never a backlog. A viewer whose feed is lost keeps its last state, says so, and retries
every RETRY_SECONDS (panels/app.py shows "FEED LOST since …" in the header; the sources' ages
keep growing there, and go stale as in any console). The two kinds of frame have a slot each
per viewer: a newer state replaces a waiting state, never a waiting timeline.

The engine's link to the shared journal copies nothing (serve writes no journal) and announces
no presence: serve is no operator's console, its viewers are read-only walls, and presence in
the others' headers is for consoles that may act.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pickle
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TextIO

from console.poller import ConsoleState, Poller
from console.timeline import TimelineEntry, timeline

if TYPE_CHECKING:
    from console.config import Config
    from console.journal.shared import SharedJournal

FEED_ENV = "INCIDENT_CONSOLE_FEED"
FEED_VERSION = 2
DIRECTORY_PREFIX = "ic-serve-"
STALE_AFTER_SECONDS = 60.0  # a feed this old with no listener is no serve's that is starting
HEADER_BYTES = 4
MAX_FRAME = 256 * 1024 * 1024  # a length beyond this is not a frame of ours: drop the feed
COALESCE_SECONDS = 0.05
RETRY_SECONDS = 1.0
SOCKET_NAME = "feed.sock"
TIMELINE_WINDOW = 24 * 3600  # as the console's own wall (panels/app.py)
TIMELINE_ENTRIES = 50  # the newest entries sent (the wall shows a handful)
TIMELINE_SECONDS = 1.0  # the engine reads the local journal (or checks the store's) this often


class FeedError(Exception):
    """The feed sent something that is not a state of this version (the reader drops the link)."""


@dataclass(frozen=True, slots=True)
class WallTimeline:
    """The wall's timeline as the engine read it: the newest entries (their events left out),
    where they come from, and what is wrong with that source ("" when nothing)."""

    taken_at: float
    entries: tuple[TimelineEntry, ...]
    source: str
    problem: str = ""


# --- encoding -----------------------------------------------------------------------------------


def _frame(fields: tuple[Any, ...]) -> bytes:
    payload = pickle.dumps(fields, protocol=5)
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


def encode_timeline(wall: WallTimeline) -> bytes:
    return _frame((FEED_VERSION, "timeline", wall))


def encode(state: ConsoleState) -> bytes:
    """One frame: length, then the state's fields pickled."""
    fields = (
        FEED_VERSION,
        "state",
        state.taken_at,
        state.environment,
        state.read_only,
        dict(state.snapshots),
        dict(state.last_good),
        state.breaches,
        dict(state.intervals),
    )
    return _frame(fields)


class _EngineUnpickler(pickle.Unpickler):
    """Unpickles the engine's own types only (snapshots, breaches, enums, the environment)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module == "console" or module.startswith("console.")) and not name.startswith("_"):
            return super().find_class(module, name)
        raise FeedError(f"the feed sent a {module}.{name}: not a type of the engine")


def decode(payload: bytes) -> ConsoleState | WallTimeline:
    try:
        fields = _EngineUnpickler(io.BytesIO(payload)).load()
    except FeedError:
        raise
    except Exception as exc:  # a truncated or foreign payload
        raise FeedError(f"unreadable state ({type(exc).__name__})") from None
    if not isinstance(fields, tuple) or len(fields) < 2 or fields[0] != FEED_VERSION:
        raise FeedError("a state of another version of the feed")
    if fields[1] == "timeline" and len(fields) == 3 and isinstance(fields[2], WallTimeline):
        return fields[2]
    if fields[1] != "state" or len(fields) != 9:
        raise FeedError("a frame of an unknown kind")
    _, _, taken_at, environment, read_only, snapshots, last_good, breaches, intervals = fields
    return ConsoleState(
        taken_at=taken_at,
        environment=environment,
        read_only=read_only,
        snapshots=MappingProxyType(snapshots),
        last_good=MappingProxyType(last_good),
        breaches=breaches,
        intervals=MappingProxyType(intervals),
    )


# --- the publishing side ------------------------------------------------------------------------


class _Subscriber:
    """One viewer's link: at most one frame of each kind waiting (replaced by a newer one of its
    kind) besides the one being written."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.slots: dict[str, bytes] = {}  # kind ("state", "timeline") -> the newest frame waiting
        self.ready = asyncio.Event()
        self.sent = 0
        self.replaced = 0  # frames dropped for a newer one (the viewer was not reading)

    @property
    def waiting(self) -> bytes | None:
        return self.slots.get("state")

    def offer(self, frame: bytes, kind: str = "state") -> None:
        if kind in self.slots:
            self.replaced += 1
        self.slots[kind] = frame
        self.ready.set()

    async def pump(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.slots:
                kind = next(iter(self.slots))
                frame = self.slots.pop(kind)
                self.writer.write(frame)
                await self.writer.drain()  # a stalled viewer waits here, alone
                self.sent += 1


class FeedServer:
    """Publishes states on a Unix socket to every connected viewer (flow control: module doc)."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix=DIRECTORY_PREFIX, dir=_socket_parent()))
        self.path = self.directory / SOCKET_NAME
        self.subscribers: set[_Subscriber] = set()
        self.frame: bytes | None = None  # the newest state, encoded (a new viewer gets it at once)
        self.timeline_frame: bytes | None = None  # the newest wall timeline, encoded
        self.published = 0
        self._latest: ConsoleState | None = None
        self._flush_due: asyncio.TimerHandle | None = None
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> FeedServer:
        if self._own_directory:  # a serve that was killed could not remove its own
            await asyncio.to_thread(sweep_dead_feeds, self.directory.parent, keep=self.directory)
        os.chmod(self.directory, 0o700)
        self._server = await asyncio.start_unix_server(self._serve_one, path=str(self.path))
        os.chmod(self.path, 0o600)
        return self

    def publish(self, state: ConsoleState) -> None:
        """Never blocks: the state is encoded shortly after (once for all viewers) and offered."""
        self._latest = state
        if self._flush_due is None:
            self._flush_due = asyncio.get_running_loop().call_later(COALESCE_SECONDS, self._flush)

    def publish_timeline(self, wall: WallTimeline) -> None:
        """The wall's timeline (rare: when it changed): encoded once and offered in its own slot."""
        self.timeline_frame = encode_timeline(wall)
        for subscriber in self.subscribers:
            subscriber.offer(self.timeline_frame, "timeline")

    def _flush(self) -> None:
        self._flush_due = None
        state, self._latest = self._latest, None
        if state is None:
            return
        self.frame = encode(state)
        self.published += 1
        for subscriber in self.subscribers:
            subscriber.offer(self.frame)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        subscriber = _Subscriber(writer)
        self.subscribers.add(subscriber)
        if self.frame is not None:
            subscriber.offer(self.frame)
        if self.timeline_frame is not None:
            subscriber.offer(self.timeline_frame, "timeline")
        pump = asyncio.ensure_future(subscriber.pump())
        gone = asyncio.ensure_future(_until_eof(reader))  # viewers send nothing: EOF is their leaving
        self._tasks |= {pump, gone}
        try:
            await asyncio.wait((pump, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.subscribers.discard(subscriber)
            for task in (pump, gone):
                task.cancel()
                self._tasks.discard(task)
            with contextlib.suppress(Exception):
                await asyncio.gather(pump, gone, return_exceptions=True)
            writer.transport.abort()  # never wait on a viewer that does not read

    async def aclose(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        if self._server is not None:
            self._server.close()
        for subscriber in list(self.subscribers):
            subscriber.writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                self.path.unlink()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(4096):  # anything a client sends is dropped, never kept
        pass


def sweep_dead_feeds(parent: Path, *, keep: Path | None = None) -> list[Path]:
    """Removes this user's feed directories in ``parent`` that no serve listens on any more (a
    serve killed by SIGKILL or the OOM killer leaves its directory and socket). A directory is
    dead when its socket refuses a connection, or it has no socket, and it is older than
    STALE_AFTER_SECONDS (a serve that is starting has neither listened nor aged). Returns them."""
    removed: list[Path] = []
    cutoff = time.time() - STALE_AFTER_SECONDS
    for directory in parent.glob(f"{DIRECTORY_PREFIX}*"):
        try:
            info = directory.lstat()
            if directory == keep or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            sock = directory / SOCKET_NAME
            if max(info.st_mtime, sock.lstat().st_mtime if sock.exists() else 0.0) > cutoff:
                continue
            if sock.exists() and _listening(sock):
                continue
            shutil.rmtree(directory)
            removed.append(directory)
        except OSError:  # another serve's sweep got there first, or it is not ours to read
            continue
    return removed


def _listening(sock: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(sock))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:  # a full backlog, a timeout: somebody is there
        return True
    finally:
        probe.close()
    return True


def _socket_parent() -> str:
    """Where the private directory goes: the temp dir, unless its path is too long for a Unix
    socket address (108 bytes with the socket's name), then /tmp."""
    parent = tempfile.gettempdir()
    return parent if len(parent) < 60 else "/tmp"


class Engine:
    """serve's one engine: the Poller's headless loop publishing every state on the feed."""

    def __init__(self, config: Config, *, poller: Poller | None = None) -> None:
        self.config = config
        self.poller = poller
        self.feed = FeedServer()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timeline_task: asyncio.Task[None] | None = None
        self.problem = ""
        self.shared: SharedJournal | None = None  # the engine's one link to the shared journal
        self.timeline: WallTimeline | None = None

    @property
    def path(self) -> Path:
        return self.feed.path

    async def start(self, log: TextIO | None = None) -> Engine:
        await self.feed.start()
        if self.poller is None:
            self.poller = Poller(self.config)
        self._task = asyncio.get_running_loop().create_task(self._run(log))
        self._timeline_task = asyncio.get_running_loop().create_task(self._run_timeline())
        return self

    async def _run_timeline(self) -> None:
        """The wall's timeline for every viewer: read here once, published when it changes."""
        from console.journal import Journal
        from console.journal.shared import SharedJournal

        journal = Journal.of(self.config)
        changed = asyncio.Event()
        reader: asyncio.Task[None] | None = None
        if self.config.journal.shared is not None:
            self.shared = SharedJournal(
                self.config.journal.shared,
                journal.path,
                environment=journal.environment,
                console="",  # every console's events are the others'
                operator="",
                on_events=lambda _events: changed.set(),
                copy=False,
                announce=False,
            )
            reader = asyncio.ensure_future(self.shared.run())
        try:
            seen: tuple[object, float] | None = None  # the local file's (size, mtime) and when read
            while True:
                since = time.time() - TIMELINE_WINDOW
                if self.shared is not None:
                    events = [e for e in self.shared.events() if e.ts >= since]
                    source, problem = "every console, shared journal", self.shared.state.problem
                    self._offer_timeline(events, source, problem)
                else:  # re-read only when the file changed (or a minute passed: the window moves)
                    key = journal.file_key()
                    if seen is None or seen[0] != key or time.monotonic() - seen[1] > 60:
                        read = await asyncio.to_thread(journal.read_own, since)
                        seen = (key, time.monotonic())
                        self._offer_timeline(list(read.events), "this machine's journal", read.error)
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), TIMELINE_SECONDS)
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _run(self, log: TextIO | None) -> None:
        assert self.poller is not None
        try:
            await self.poller.run(self.feed.publish, stop=self._stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: say it, and let the viewers show the feed lost
            self.problem = f"{type(exc).__name__}: {exc}"
            if log is not None:
                print(f"serve: the engine stopped: {self.problem}", file=log, flush=True)
            await self.feed.aclose()

    def _offer_timeline(self, events: list[Any], source: str, problem: str | None) -> None:
        entries = tuple(replace(e, event=None) for e in timeline(events)[-TIMELINE_ENTRIES:])
        last, problem = self.timeline, problem or ""
        if last is None or (last.entries, last.source, last.problem) != (entries, source, problem):
            self.timeline = WallTimeline(time.time(), entries, source, problem)
            self.feed.publish_timeline(self.timeline)

    async def aclose(self) -> None:
        self._stop.set()
        for task in (self._task, self._timeline_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.shared is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.shared.aclose(), 5.0)
        await self.feed.aclose()
        if self.poller is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.poller.aclose(), 5.0)


# --- the viewer side ----------------------------------------------------------------------------


class FeedClient:
    """A viewer's end of the feed (``run --web`` under serve)."""

    def __init__(self, path: str | Path, retry: float = RETRY_SECONDS) -> None:
        self.path = str(path)
        self.retry = retry
        self.received = 0
        self.lost_since: float | None = None  # when the feed was lost (None: connected or never)

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> FeedClient | None:
        path = (os.environ if env is None else env).get(FEED_ENV, "")
        return cls(path) if path else None

    async def follow(
        self,
        on_state: Callable[[ConsoleState], None],
        on_problem: Callable[[str | None], None],
        on_timeline: Callable[[WallTimeline], None] | None = None,
    ) -> None:
        """Receive states for good: ``on_state`` for each, ``on_timeline`` for each wall timeline,
        ``on_problem(words)`` while the feed is lost (at every retry), ``on_problem(None)`` when
        it is back. Never raises but for cancellation."""
        while True:
            problem = await self._follow_once(on_state, on_problem, on_timeline)
            if self.lost_since is None:
                self.lost_since = time.time()
            on_problem(problem)
            await asyncio.sleep(self.retry)

    async def _follow_once(
        self,
        on_state: Callable[[ConsoleState], None],
        on_problem: Callable[[str | None], None],
        on_timeline: Callable[[WallTimeline], None] | None = None,
    ) -> str:
        try:
            reader, writer = await asyncio.open_unix_connection(self.path)
        except OSError as exc:
            return f"cannot reach the engine's feed: {exc.strerror or type(exc).__name__}"
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(HEADER_BYTES), "big")
                if not 0 < length <= MAX_FRAME:
                    return "the engine's feed sent a malformed frame"
                item = decode(await reader.readexactly(length))
                self.received += 1
                if self.lost_since is not None:
                    self.lost_since = None
                    on_problem(None)
                try:
                    if isinstance(item, WallTimeline):
                        if on_timeline is not None:
                            on_timeline(item)
                    else:
                        on_state(item)
                except Exception as exc:  # a state this viewer cannot draw: said, not silent
                    return f"a state could not be drawn ({type(exc).__name__}: {exc})"
        except asyncio.IncompleteReadError:
            return "the engine's feed closed"
        except FeedError as exc:
            return f"the engine's feed: {exc}"
        except OSError as exc:
            return f"the engine's feed broke: {exc.strerror or type(exc).__name__}"
        finally:
            writer.close()
