"""The console's Postgres connections: how they are opened, which backends are the console's
own, and what a failure means. Used by the Postgres source and by the SQL actions alike.

- :func:`connect` is the one way the console opens a connection: application_name
  'incident-console', the cluster's statement_timeout and lock_timeout, statements kept
  prepared for the connection's life, lossy text decoding, generic plans on request.
- Every connection it opens is registered by backend pid (per server), so that the Postgres
  view leaves the console's own sessions out by pid and an action never signals one of them:
  :func:`console_sessions`, :func:`console_pids`. A pid, not application_name: any session
  can call itself 'incident-console'.
- :func:`classify_error` turns what asyncpg, the OS or a timeout raised into an
  :class:`~console.model.ErrorKind` and a one-line reason with the password masked.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import weakref
from collections import defaultdict
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import asyncpg.exceptions as pgexc

from console import redact
from console.config import PostgresCluster
from console.errors import source_error
from console.model import ErrorKind, SourceError

__all__ = [
    "APPLICATION_NAME",
    "CONSOLE_MARK",
    "GENERIC_PLANS_SQL",
    "ConnectTimeout",
    "PollTimeout",
    "classify_error",
    "connect",
    "console_pids",
    "console_sessions",
]

APPLICATION_NAME = "incident-console"

# PostgreSQL 12+. A monitor statement's plan does not depend on its parameters, but Postgres
# kept planning it for each call (its custom plans look cheaper): ~1 ms of a ~8 ms refresh.
#: The first words of every statement the console's Postgres source sends: pg_stat_statements
#: keeps them in its text, and the top-statements list leaves the console's own statements out
#: by them (with the role that ran them).
CONSOLE_MARK = "/* incident-console */"
GENERIC_PLANS_SQL = f"{CONSOLE_MARK} SET plan_cache_mode = force_generic_plan"

# --- the console's own sessions ------------------------------------------------------------

# server key -> backend pid -> (the connection, its purpose); process-wide so that the source
# can hide the sessions of the action executor as well as its own. Keyed by server, because
# pids are only unique within one server.
_registry: dict[str, dict[int, tuple[weakref.ref[asyncpg.Connection], str]]] = defaultdict(dict)


def _server_key(dsn: str) -> str:
    """Which server a DSN talks to (host(s), port(s), socket directory), credentials left out."""
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc.rpartition("@")[2].lower()
        params = dict(parse_qsl(parts.query))
    except ValueError:
        return redact.dsn(dsn)
    return "|".join((netloc, params.get("host", ""), params.get("port", "")))


def _register(key: str, conn: asyncpg.Connection, purpose: str) -> None:
    pid = conn.get_server_pid()
    _registry[key][pid] = (weakref.ref(conn), purpose)

    def forget(_conn: object) -> None:
        entry = _registry.get(key, {}).get(pid)
        if entry is not None and entry[0]() in (None, conn):
            _registry[key].pop(pid, None)

    conn.add_termination_listener(forget)


def console_sessions(cluster: PostgresCluster) -> dict[int, str]:
    """Backend pid -> purpose of this process's open connections to ``cluster``'s server."""
    entries = _registry.get(_server_key(cluster.dsn), {})
    alive: dict[int, str] = {}
    for pid, (ref, purpose) in list(entries.items()):
        conn = ref()
        if conn is None or conn.is_closed():
            entries.pop(pid, None)
        else:
            alive[pid] = purpose
    return alive


def console_pids(cluster: PostgresCluster) -> frozenset[int]:
    """Backend pids of this process's open connections to ``cluster``'s server."""
    return frozenset(console_sessions(cluster))


# --- connecting ----------------------------------------------------------------------------


def _setting_ms(seconds: float) -> str:
    """A duration for a server setting: 0 disables; anything positive is at least 1 ms."""
    if seconds <= 0:
        return "0"
    return f"{max(1, round(seconds * 1000))}ms"


async def connect(
    cluster: PostgresCluster, *, purpose: str = "monitor", generic_plans: bool = False
) -> asyncpg.Connection:
    """Open a console connection to ``cluster``: the one way the console talks to Postgres.

    The session carries application_name 'incident-console', the cluster's statement_timeout
    and lock_timeout, and its backend pid is registered (with ``purpose``) so that the Postgres
    view leaves the console's own sessions out by pid. With ``generic_plans`` (the monitor
    connection) it plans its prepared statements once, on servers that can (12 and later): one
    statement more at connect time. Raises what asyncpg raises; use :func:`classify_error` for
    a one-line, password-free explanation.
    """
    redact.register(*cluster.secrets())
    conn = await asyncpg.connect(
        cluster.dsn,
        timeout=cluster.connect_timeout or None,
        server_settings={
            "application_name": APPLICATION_NAME,
            "statement_timeout": _setting_ms(cluster.statement_timeout),
            "lock_timeout": _setting_ms(cluster.lock_timeout),
        },
        # Statements stay prepared for the connection's life: a re-prepare would be a second
        # round trip in a refresh.
        statement_cache_size=32,
        max_cached_statement_lifetime=0,
        max_cacheable_statement_size=0,
    )
    try:
        for name in _TEXT_TYPES:  # built-in types: no round trip
            await conn.set_type_codec(
                name, schema="pg_catalog", encoder=_encode_text, decoder=_decode_text, format="binary"
            )
        _register(_server_key(cluster.dsn), conn, purpose)
        # plan_cache_mode is unknown before 12, and a startup packet naming it would be refused:
        # it is set once the server said its version (sent at connect, no round trip to ask).
        if generic_plans and conn.get_server_version() >= (12, 0):
            await conn.execute(GENERIC_PLANS_SQL)
    except BaseException:
        conn.terminate()
        raise
    return conn


# A session in a SQL_ASCII (or otherwise encoded) database may put any bytes into its query text,
# application name or object names; pg_stat_activity and pg_stat_statements pass them on as they
# are. asyncpg decodes strictly: one such session would fail every read of the view. Text comes
# in lossy instead (U+FFFD), and console.sanitize makes it visible like any other odd character.
_TEXT_TYPES = ("text", "varchar", "bpchar", "name", "json")


def _encode_text(value: str) -> bytes:
    return value.encode("utf-8")


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


# --- error classification ----------------------------------------------------------------


class ConnectTimeout(Exception):
    """Connecting took longer than the cluster's connect_timeout (raise it ``from`` the
    TimeoutError :func:`connect` raised)."""


class PollTimeout(Exception):
    """A whole poll hit its hard limit; the message says so (classified as a timeout as is)."""


def connection_gone(exc: BaseException) -> bool:
    """The server ended this connection (its backend was terminated, or the server shut down):
    the connection is unusable, though the server may well take a new one. A FATAL that came
    while the connection sat idle leaves asyncpg's protocol mid-error, and the next statement
    fails with InternalClientError ("cannot switch to state ..."), not with the FATAL."""
    return isinstance(
        exc,
        pgexc.ConnectionDoesNotExistError
        | pgexc.AdminShutdownError
        | pgexc.CrashShutdownError
        | pgexc.InternalClientError
        | ConnectionResetError
        | BrokenPipeError,
    ) or (isinstance(exc, pgexc.InterfaceError) and "closed" in str(exc))


def classify_error(exc: BaseException, cluster: PostgresCluster | None = None) -> SourceError:
    """An asyncpg / OS / timeout exception as an ErrorKind and a one-line, secret-free reason."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, PollTimeout):
        return source_error(ErrorKind.TIMEOUT, text)
    if isinstance(exc, ConnectTimeout | TimeoutError | asyncio.TimeoutError):
        limit = f" in {cluster.connect_timeout:g}s" if cluster else ""
        return source_error(ErrorKind.TIMEOUT, f"could not connect{limit}: no answer from the server")
    if isinstance(exc, pgexc.InvalidPasswordError):
        return source_error(ErrorKind.AUTH_FAILED, text)
    if isinstance(exc, pgexc.InvalidAuthorizationSpecificationError):
        return source_error(ErrorKind.AUTH_FAILED, text)
    if isinstance(exc, pgexc.InsufficientPrivilegeError):
        return source_error(ErrorKind.PERMISSION_DENIED, text)
    if isinstance(exc, pgexc.LockNotAvailableError):
        limit = f" ({cluster.lock_timeout:g}s)" if cluster else ""
        return source_error(ErrorKind.TIMEOUT, f"lock_timeout{limit} reached: {text}")
    if isinstance(exc, pgexc.QueryCanceledError):
        if "statement timeout" in text:
            limit = f" ({cluster.statement_timeout:g}s)" if cluster else ""
            return source_error(ErrorKind.TIMEOUT, f"statement_timeout{limit} reached: {text}")
        return source_error(ErrorKind.BAD_RESPONSE, f"query canceled by the server: {text}")
    if isinstance(exc, pgexc.TooManyConnectionsError):
        return source_error(
            ErrorKind.UNREACHABLE,
            f"too many connections: the server has no free connection slot for this role ({text})",
        )
    if isinstance(exc, pgexc.InvalidCatalogNameError):
        return source_error(ErrorKind.CONFIG, text)
    if isinstance(exc, pgexc.CannotConnectNowError):
        return source_error(ErrorKind.UNREACHABLE, f"server not accepting connections: {text}")
    if isinstance(exc, pgexc.AdminShutdownError | pgexc.CrashShutdownError):
        return source_error(ErrorKind.UNREACHABLE, f"connection terminated by the server: {text}")
    if isinstance(exc, pgexc.PostgresConnectionError | pgexc.ConnectionDoesNotExistError):
        return source_error(ErrorKind.UNREACHABLE, f"connection lost: {text}")
    if isinstance(exc, pgexc.InternalClientError):  # see connection_gone
        return source_error(
            ErrorKind.UNREACHABLE, f"connection lost: the server ended it mid-statement ({text})"
        )
    if isinstance(exc, pgexc.PostgresError):
        state = getattr(exc, "sqlstate", "") or "?"
        return source_error(ErrorKind.BAD_RESPONSE, f"server error {state}: {text}")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError) or (isinstance(exc, OSError) and "SSL" in text):
        return source_error(ErrorKind.TLS, text)
    if isinstance(exc, socket.gaierror):
        return source_error(ErrorKind.UNREACHABLE, f"cannot resolve host: {text}")
    if isinstance(exc, ConnectionRefusedError):
        return source_error(ErrorKind.UNREACHABLE, f"connection refused: {text}")
    if isinstance(exc, OSError):
        return source_error(ErrorKind.UNREACHABLE, text)
    if isinstance(exc, UnicodeError):  # a value the server sent, not our settings
        return source_error(ErrorKind.BAD_RESPONSE, f"undecodable text from the server: {text}")
    if isinstance(exc, pgexc.ClientConfigurationError | ValueError | OverflowError):
        return source_error(ErrorKind.CONFIG, f"bad connection settings: {text}")
    if isinstance(exc, pgexc.InterfaceError) and "closed" in text:
        return source_error(ErrorKind.UNREACHABLE, f"connection lost: {text}")
    return source_error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {text}")
