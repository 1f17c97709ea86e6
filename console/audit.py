"""The action journal: one JSON object a line, appended, fsynced, never rewritten.

Every console (several may share one file) appends through :class:`Journal`: the file is opened
with O_APPEND, an exclusive ``flock`` is held for the write, the whole line goes out in one
``write`` and is ``fsync``-ed before :meth:`Journal.append` returns. A writer killed mid-line
leaves at most one partial last line; the next writer starts on a fresh line, and readers skip
lines that are not whole JSON objects (counting them). Every string field is redacted
(:func:`console.redact.scrub`) and sanitised before it is written: the journal is safe to print.

Events (``event`` field): ``breach.start|change|end``, ``runbook.opened``, ``step.state``,
``input.set``, ``note``, ``postincident.tick``, ``action.requested|dry_run|declined|refused|
confirmed|succeeded|failed``, ``check.passed|failed``. Common fields: ``ts`` (UTC, ISO 8601),
``operator``, ``user``, ``ssh_client``, ``host``, ``environment``, ``console`` (one id per
console process); action and step events add ``runbook``, ``run``, ``step``, ``plan``,
``result``, ``duration``.
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console import redact
from console.sanitize import clean, one_line

if TYPE_CHECKING:  # kept light: a journal writer needs no config or rules machinery
    from console.rules import Breach

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


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


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


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One journal line: ``ts`` as epoch seconds, ``kind`` the event name, ``fields`` all of it."""

    ts: float
    kind: str
    fields: Mapping[str, Any]

    def get(self, key: str, default: Any = "") -> Any:
        value = self.fields.get(key, default)
        return default if value is None else value


@dataclass(frozen=True, slots=True)
class JournalRead:
    events: tuple[Event, ...] = ()
    skipped: int = 0  # lines that were not whole JSON events (a torn line from a crash, junk)
    partial_tail: bool = False  # the file ended inside a line (a writer died, or is writing)
    error: str = ""  # the file could not be read at all


def _event(line: bytes) -> Event | None:
    try:
        record = json.loads(line)
        ts = parse_ts(record["ts"])
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None
    kind = record.get("event") if isinstance(record, dict) else None
    return Event(ts, kind, record) if isinstance(kind, str) else None


def read_journal(
    path: os.PathLike[str] | str, since: float | None = None, environment: str | None = None
) -> JournalRead:
    """Every whole event in the file (oldest first), ``since`` an epoch lower bound; with
    ``environment``, only that environment's events (consoles of several share a journal)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return JournalRead()
    except OSError as exc:
        return JournalRead(error=f"cannot read {path}: {exc.strerror or exc}")
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    events, skipped = [], 0
    for line in lines:
        if not line.strip():
            continue
        event = _event(line)
        if event is None:
            skipped += 1
        elif (since is None or event.ts >= since) and (
            environment is None or event.fields.get("environment") == environment
        ):
            events.append(event)
    return JournalRead(tuple(events), skipped + (1 if tail.strip() else 0), bool(tail.strip()))


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


class Journal:
    """Appends events for one console process; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: os.PathLike[str] | str,
        *,
        operator: Operator | None = None,
        environment: str = "default",
        clock=time.time,
    ) -> None:
        self.path = Path(path)
        self.operator = operator or Operator.current()
        self.environment = environment
        self.console = secrets.token_hex(4)
        self.clock = clock
        self._lock = threading.Lock()  # threads of this process; flock covers other processes

    def record(self, event: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        op = self.operator
        base = {
            "ts": utc_iso(self.clock()),
            "event": event,
            "operator": str(op),
            "user": op.user,
            "ssh_client": op.ssh_client,
            "host": op.host,
            "environment": self.environment,
            "console": self.console,
        }
        return _safe(base | {k: v for k, v in fields.items() if k not in base})

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event and fsync it. Returns the record as written; raises JournalError."""
        record = self.record(event, fields)
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            try:
                self._append(data)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise JournalError(f"cannot write the journal {self.path}: {reason}") from None
        return record

    async def aappend(self, event: str, **fields: Any) -> dict[str, Any]:
        """:meth:`append` off the event loop (an fsync may take milliseconds, or far longer)."""
        return await asyncio.to_thread(self.append, event, **fields)

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


# --- breaches into events --------------------------------------------------------------------


def _breach_fields(breach: Breach) -> dict[str, Any]:
    return {
        "breach": breach.id,
        "kind": breach.kind,
        "title": breach.title,
        "source": breach.source,
        "state": str(breach.state),
        "severity": breach.severity.word,
        "since": utc_iso(breach.since),
        "value": breach.value_text,
        "level": breach.level_text,
        "subject": breach.subject,
        "summary": breach.summary,
    }


def breach_events(old: Iterable[Breach], new: Iterable[Breach]) -> list[tuple[str, dict[str, Any]]]:
    """What changed between two breach lists, as (event, fields): start, change, end.

    A change is a new state (pending -> firing, an alert resolving into recovering) or severity.
    """
    before = {b.id: b for b in old}
    after = {b.id: b for b in new}
    out: list[tuple[str, dict[str, Any]]] = []
    for breach_id, breach in after.items():
        prior = before.get(breach_id)
        if prior is None:
            out.append(("breach.start", _breach_fields(breach)))
        elif (prior.state, prior.severity) != (breach.state, breach.severity):
            fields = _breach_fields(breach) | {
                "from_state": str(prior.state),
                "from_severity": prior.severity.word,
            }
            out.append(("breach.change", fields))
    for breach_id, breach in before.items():
        if breach_id not in after:
            out.append(("breach.end", _breach_fields(breach)))
    return out


def record_breaches(journal: Journal, old: Iterable[Breach], new: Iterable[Breach]) -> list[dict[str, Any]]:
    """Journal the difference between two ConsoleState breach lists (call it on every new state).

    Raises JournalError like :meth:`Journal.append`; the records written so far stay written."""
    return [journal.append(event, **fields) for event, fields in breach_events(old, new)]


# --- timeline ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of the ``t`` view and of the exported timeline. ``text`` is plain, safe text."""

    ts: float
    kind: str  # the event name
    who: str
    text: str
    runbook: str = ""
    step: str = ""
    outcome: str = ""  # ok | failed | refused | info: for a glyph and a word, not only colour
    event: Event | None = field(default=None, compare=False, repr=False)


def _plan_title(e: Event) -> str:
    plan = e.get("plan", {})
    if isinstance(plan, Mapping):
        return str(plan.get("title") or plan.get("summary") or "action")
    return "action"


def _where(e: Event) -> str:
    runbook, step = e.get("runbook"), e.get("step")
    return f" [{runbook}{'/' + step if step else ''}]" if runbook else ""


def _duration(e: Event) -> str:
    duration = e.get("duration", None)
    return f" in {duration:.2f}s" if isinstance(duration, int | float) else ""


_TEXT: dict[str, Any] = {
    "breach.start": lambda e: (
        f"{e.get('severity')} {e.get('title')} {e.get('state')}: {e.get('value')} {e.get('subject')}".rstrip()
    ),
    "breach.change": lambda e: (
        f"{e.get('title')} {e.get('from_state')} -> {e.get('state')} ({e.get('severity')})"
    ),
    "breach.end": lambda e: f"{e.get('title')} cleared (was {e.get('state')} since {e.get('since')})",
    "runbook.opened": lambda e: (
        f"opened runbook {e.get('runbook')}: {e.get('title')}"
        + (f" for {e.get('breach')}" if e.get("breach") else "")
    ),
    "step.state": lambda e: (
        f"step {e.get('step')} {e.get('state')}" + (f": {e.get('message')}" if e.get("message") else "")
    ),
    "input.set": lambda e: f"set {e.get('name')} = {e.get('value')}",
    "note": lambda e: f"note: {e.get('text')}",
    "postincident.tick": lambda e: f"post-incident done: {e.get('item')}",
    "action.requested": lambda e: f"reviewing: {_plan_title(e)}",
    "action.dry_run": lambda e: f"dry-run: {_plan_title(e)}: {e.get('message')}",
    "action.declined": lambda e: f"declined: {_plan_title(e)}",
    "action.refused": lambda e: f"refused: {_plan_title(e)}: {e.get('message')}",
    "action.confirmed": lambda e: f"confirmed ({e.get('confirmation')}): {_plan_title(e)}",
    "action.succeeded": lambda e: f"succeeded{_duration(e)}: {_plan_title(e)}: {e.get('message')}",
    "action.failed": lambda e: (
        f"{e.get('result') or 'failed'}{_duration(e)}: {_plan_title(e)}: {e.get('message')}"
    ),
    "check.passed": lambda e: f"check passed: {_plan_title(e)}: {e.get('message')}",
    "check.failed": lambda e: f"check failed: {_plan_title(e)}: {e.get('message')}",
}
_OUTCOME = {
    "action.succeeded": "ok",
    "check.passed": "ok",
    "breach.end": "ok",
    "action.failed": "failed",
    "check.failed": "failed",
    "breach.start": "failed",
    "action.refused": "refused",
}


def timeline(events: Iterable[Event]) -> list[TimelineEntry]:
    """Events in time order as one-line entries (unknown event kinds keep their name)."""
    out = []
    for e in sorted(events, key=lambda e: e.ts):
        render = _TEXT.get(e.kind)
        text = render(e) if render else e.kind
        out.append(
            TimelineEntry(
                e.ts,
                e.kind,
                str(e.get("operator")),
                one_line(text + ("" if e.kind.startswith("breach.") else _where(e)), 400),
                str(e.get("runbook")),
                str(e.get("step")),
                _OUTCOME.get(e.kind, "info"),
                e,
            )
        )
    return out
