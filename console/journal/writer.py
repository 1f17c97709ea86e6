"""Appending to the journal: one JSON object a line, appended, fsynced, never rewritten.

Every console (several may share one file) appends through :class:`Journal`: the file is opened
with O_APPEND, an exclusive ``flock`` is held for the write, the whole line goes out in one
``write`` and is ``fsync``-ed before :meth:`Journal.append` returns. A writer killed mid-line
leaves at most one partial last line; the next writer starts on a fresh line, and readers skip
lines that are not whole JSON objects (counting them). Every string field is redacted
(:func:`console.redact.scrub`) and sanitised before it is written: the journal is safe to print.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import getpass
import json
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from console import redact
from console.journal.events import STAMP, JournalEvent, from_json, to_json, utc_iso
from console.journal.reader import JournalRead, read_journal
from console.sanitize import clean, one_line

if TYPE_CHECKING:
    from console.config import Config

E = TypeVar("E", bound=JournalEvent)

FIELD_LIMIT = 8192  # characters per string field; the full text of a long SQL fits


class JournalError(Exception):
    """The journal could not be written: the action that needed it must not run."""


# --- who and where --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Operator:
    """The person at the console: login name, the SSH client it came from, the console host."""

    user: str
    ssh_client: str = ""  # client address from SSH_CLIENT / SSH_CONNECTION, "" when local
    host: str = ""

    @classmethod
    def current(cls, env: Mapping[str, str] | None = None) -> Operator:
        env = os.environ if env is None else env
        try:
            user = env.get("LOGNAME") or env.get("USER") or getpass.getuser()
        except (KeyError, OSError):
            user = f"uid {os.getuid()}"
        ssh = (env.get("SSH_CLIENT") or env.get("SSH_CONNECTION") or "").split()
        return cls(
            one_line(user, 64), one_line(ssh[0], 64) if ssh else "", one_line(socket.gethostname(), 64)
        )

    def __str__(self) -> str:
        where = f"@{self.host}" if self.host else ""
        via = f" (ssh from {self.ssh_client})" if self.ssh_client else ""
        return f"{self.user}{where}{via}"


def _safe(value: Any, depth: int = 0) -> Any:
    """JSON-able, redacted, sanitised copy of a field value."""
    if isinstance(value, str):
        return clean(redact.scrub(value), limit=FIELD_LIMIT)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth > 8:
        return one_line(redact.scrub(repr(value)), 200)
    if isinstance(value, Mapping):
        return {one_line(redact.scrub(str(k)), 80): _safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(v, depth + 1) for v in value]
    return clean(redact.scrub(str(value)), limit=FIELD_LIMIT)


# --- writing ---------------------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[written:]


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) in (b"\n", b"")


def _creatable(path: Path) -> None:
    """Raises the OSError that creating ``path`` (and the directories above it) would meet."""
    parent = path.parent
    while not os.path.lexists(parent):
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{parent} is not a directory")
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, f"{parent} is on a read-only file system")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{parent} is not writable by this user")


class Journal:
    """Appends events for one console process; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        operator: Operator | None = None,
        environment: str = "default",
        incident: str = "",
        clock=time.time,
    ) -> None:
        self.path = Path(path)
        self.operator = operator or Operator.current()
        self.environment = environment
        self.incident = incident
        self.console = secrets.token_hex(4)
        self.clock = clock
        #: Called (in the writing thread) after each event is on disk: the shared journal's copy
        #: wakes up at once instead of at its next poll.
        self.after_append: list[Callable[[], None]] = []
        self._lock = threading.Lock()  # threads of this process; flock covers other processes
        #: Why the last write, or the last :meth:`probe`, failed; "" once one succeeds.
        self.problem = ""

    def file_key(self) -> object:
        """What changes when the file is written, by this process or another (a reader re-reads
        only when it did); the error's name when it cannot be read."""
        try:
            st = self.path.stat()
        except OSError as exc:
            return type(exc).__name__
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    @classmethod
    def of(cls, config: Config) -> Journal:
        """The journal of a loaded config: its path, environment and incident."""
        return cls(
            config.journal_path(), environment=config.environment.name, incident=config.journal.incident
        )

    def record(self, event: JournalEvent) -> dict[str, Any]:
        """The JSON object written for ``event``: the stamp, then its own fields, made safe."""
        op = self.operator
        base = {
            "ts": utc_iso(self.clock()),
            "event": str(event.kind),
            "operator": str(op),
            "user": op.user,
            "ssh_client": op.ssh_client,
            "host": op.host,
            "environment": self.environment,
            "console": self.console,
            "incident": self.incident,
            "id": uuid.uuid4().hex,
        }
        assert tuple(base) == STAMP
        return _safe(base | {k: v for k, v in to_json(event).items() if k not in base})

    def append(self, event: E) -> E:
        """Write one event and fsync it. Returns it as written (stamped, masked); raises
        JournalError."""
        record = self.record(event)
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self._append(data)
            except OSError as exc:
                self.problem = self._cannot_write(exc)
                raise JournalError(self.problem) from None
            self.problem = ""
        written = from_json(record)
        assert isinstance(written, type(event))
        for hook in self.after_append:
            with contextlib.suppress(Exception):
                hook()
        return written

    def _cannot_write(self, exc: OSError) -> str:
        return f"cannot write the journal {self.path}: {exc.strerror or exc}"

    def probe(self) -> str:
        """Why the journal could not be written now, found without writing it ("" when nothing
        is in the way): the file opened for append and closed, or, before the first event, the
        nearest directory that exists. Without a journal every action is refused, and the
        operator should know before the first one. A full disk shows only at a write."""
        try:
            if os.path.lexists(self.path):
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC))
            else:
                _creatable(self.path)
        except OSError as exc:
            self.problem = self._cannot_write(exc)
        else:
            self.problem = ""
        return self.problem

    async def aappend(self, event: E) -> E:
        """:meth:`append` off the event loop (an fsync may take milliseconds, or far longer)."""
        return await asyncio.to_thread(self.append, event)

    def _append(self, data: bytes) -> None:
        created = not self.path.exists()
        if created:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            except FileExistsError:
                raise NotADirectoryError(errno.ENOTDIR, f"{self.path.parent} is not a directory") from None
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                # A writer killed mid-line left a torn tail: start on a line of our own, so the
                # torn line stays one unreadable line instead of swallowing this event.
                if not _ends_with_newline(fd):
                    data = b"\n" + data
                size = os.fstat(fd).st_size
                try:
                    _write_all(fd, data)
                    os.fsync(fd)
                except OSError:
                    # A full disk takes what fits, then fails: take the part back (we hold the
                    # lock, the tail is ours), so a refused event leaves no torn line behind.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        if created:
            with contextlib.suppress(OSError):  # the new directory entry, for a power cut
                dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    def read(self, since: float | None = None) -> JournalRead:
        return read_journal(self.path, since)

    def read_own(self, since: float | None = None) -> JournalRead:
        """The events of this journal's environment only (the timeline: one environment)."""
        return read_journal(self.path, since, self.environment)
