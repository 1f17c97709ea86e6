"""What every source shares: the Source contract, HTTP error classification, and (from
:mod:`console.errors` and :mod:`console.httpio`, where the actions take them too) error reasons
and capped HTTP reads."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from typing import TYPE_CHECKING, Protocol

from console.errors import REASON_LIMIT, reason, source_error
from console.httpio import BodyTooLarge, read_capped, tls_verify
from console.model import ErrorKind, Snapshot, SourceError

if TYPE_CHECKING:  # httpx is imported by the HTTP sources that use it, not by a Postgres-only console
    import httpx

__all__ = [
    "REASON_LIMIT",
    "BodyTooLarge",
    "Source",
    "Stopwatch",
    "close_discarded",
    "discard_client",
    "http_error",
    "http_status_error",
    "read_capped",
    "reason",
    "source_error",
    "tls_verify",
]


class Source(Protocol):
    """A backend the poller polls. ``poll`` never raises; a failure is a snapshot with ``error``."""

    key: str  # stable snapshot source key: health:<name>, prometheus, postgres:<name>
    kind: str  # health | prometheus | postgres
    interval: float  # seconds between the end of one poll and the start of the next
    timeout: float  # hard limit for one poll, enforced by the poller as well

    async def poll(self) -> Snapshot: ...

    def failed(self, error: SourceError, taken_at: float, latency: float | None) -> Snapshot:
        """An error snapshot of this source's type (used by the poller on a hard timeout)."""
        ...

    async def aclose(self) -> None: ...


_closing: set[asyncio.Task[None]] = set()


def discard_client(client: httpx.AsyncClient | None) -> None:
    """Close ``client`` in the background; its owner makes a new one on the next poll.

    For a request that timed out or was cancelled: httpcore 1.0 can leave the connection of a
    request cancelled at the wrong moment in its pool as ACTIVE for good, one descriptor each,
    never reused, until the pool (100) is full and every request waits for a slot (found by the
    soak: +45 descriptors in 30 minutes on a busy machine). Closing the client closes them all."""
    if client is None:
        return
    task = asyncio.get_running_loop().create_task(client.aclose())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


#: How long a source's aclose waits for the clients it discarded to close.
CLOSE_WAIT = 2.0


async def close_discarded() -> None:
    """Wait (bounded) for the clients discard_client is closing on this loop: a source closed
    right after a timed-out poll returned before that close ran, and the loop ended with the
    client's sockets open."""
    loop = asyncio.get_running_loop()
    pending = [task for task in _closing if task.get_loop() is loop]
    if pending:
        await asyncio.wait(pending, timeout=CLOSE_WAIT)


class Stopwatch:
    """taken_at (wall clock, when the poll started) and latency (monotonic)."""

    __slots__ = ("_start", "taken_at")

    def __init__(self) -> None:
        self.taken_at = time.time()
        self._start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._start


def http_error(exc: BaseException) -> SourceError:
    """Classify an httpx / OS / asyncio exception into an ErrorKind with a one-line reason."""
    import httpx

    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
        return source_error(ErrorKind.TIMEOUT, f"no answer in time ({type(exc).__name__})")
    if isinstance(exc, httpx.TooManyRedirects):
        return source_error(ErrorKind.BAD_RESPONSE, f"too many redirects: {exc}")
    if isinstance(exc, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError | OSError):
        text = str(exc) or type(exc).__name__
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in text or "CERTIFICATE" in text.upper():
            return source_error(ErrorKind.TLS, text)
        # httpx says "All connection attempts failed"; the OS error under it says why.
        root = _os_cause(exc)
        if root is not None:
            verb = "cannot connect" if isinstance(exc, httpx.ConnectError) else "connection lost"
            why = os.strerror(root.errno) if isinstance(root.errno, int) and root.errno > 0 else root.strerror
            text = f"{verb}: {why}"
        return source_error(ErrorKind.UNREACHABLE, text)
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return source_error(ErrorKind.CONFIG, exc)
    if isinstance(exc, httpx.HTTPError):
        return source_error(ErrorKind.BAD_RESPONSE, f"{type(exc).__name__}: {exc}")
    return source_error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")


def _os_cause(exc: BaseException) -> OSError | None:
    """The first OSError with an error number or text in ``exc``'s cause/context chain."""
    seen: list[BaseException] = []
    item: BaseException | None = exc
    while item is not None and len(seen) < 16 and not any(item is s for s in seen):
        seen.append(item)
        if isinstance(item, OSError) and (item.errno or item.strerror):
            return item
        item = item.__cause__ or item.__context__
    return None


def http_status_error(status: int, body: bytes = b"") -> SourceError:
    """An error for an HTTP status that means the backend refused us."""
    snippet = reason(body.decode("utf-8", "replace"), 80) if body else ""
    suffix = f": {snippet}" if snippet else ""
    if status in (401, 407):
        return source_error(ErrorKind.AUTH_FAILED, f"HTTP {status}{suffix}")
    if status == 403:
        return source_error(ErrorKind.PERMISSION_DENIED, f"HTTP {status}{suffix}")
    return source_error(ErrorKind.BAD_RESPONSE, f"HTTP {status}{suffix}")
