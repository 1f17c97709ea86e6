"""Postgres source: sessions, blocking tree, connection counts, transactions and top statements.

One dedicated asyncpg connection per source, on the caller's event loop (DESIGN.md section 2),
opened with :func:`connect` like every other console connection. In steady state a refresh is
ONE statement (CTEs, one round trip with asyncpg's statement cache) returning plain rows: a
header, a row per session and one per awaited lock. An idle session unchanged since the last
refresh comes as a pid in the header only, and a session row with the values of the last
refresh is not built again; the top statements are read every ``statements_every`` seconds
(pg_stat_activity is read once per refresh, where pg_activity reads it three times: see
bench/CHANGES.md). What the role
may see and whether pg_stat_statements is usable are detected once per connection (and again
every :data:`CAPABILITY_TTL` seconds); the statement text is then picked among constant texts.
Values such as the console's own pids and the text cap are bind parameters, never spliced in.

Every string read from Postgres passes through :mod:`console.sanitize` here; error reasons go
through :func:`console.sources.base.reason`, which masks the DSN password.

Supported servers: PostgreSQL 10 and later (``backend_type``, ``pg_blocking_pids``,
``pg_monitor``); ``pg_locks.waitstart`` and ``query_id`` are used from 14 on.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import ssl
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import asyncpg
import asyncpg.exceptions as pgexc

from console import redact
from console.config import PostgresCluster
from console.model import (
    ErrorKind,
    LockNode,
    LockWait,
    PostgresSnapshot,
    Privileges,
    Session,
    SourceError,
    Statement,
)
from console.sanitize import clean, one_line
from console.sources.base import Stopwatch, source_error

__all__ = [
    "APPLICATION_NAME",
    "CAPABILITY_TTL",
    "QUERY_TEXT_CAP",
    "PostgresSource",
    "build_lock_tree",
    "classify_error",
    "connect",
    "console_pids",
    "console_sessions",
]

APPLICATION_NAME = "incident-console"
#: Characters of query text fetched per session / statement (the server may hold up to 1 MB).
QUERY_TEXT_CAP = 4096
#: Seconds after which capabilities (privileges, pg_stat_statements) are detected again.
CAPABILITY_TTL = 300.0
#: Seconds before the last refresh's server time from which an idle session counts as changed:
#: a state change stamped just before that refresh may reach shared memory just after it.
SINCE_MARGIN = 1.0
#: Seconds between two reads of pg_locks while every waiting session still waits as it did
#: (same pid, statement and wait event); a new or changed wait is read at once. pg_lock_status()
#: walks every backend's fast-path slots and the predicate-lock table, whose size follows
#: max_connections: ~1.9 ms of a refresh at max_connections 5200 (bench/CHANGES.md).
LOCKS_EVERY = 5.0
#: Upper bounds for the blocking tree, so that a pathological lock graph cannot blow up a poll.
TREE_MAX_NODES = 2000
TREE_MAX_DEPTH = 64

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


def _setting_ms(seconds: float) -> str:
    """A duration for a server setting: 0 disables; anything positive is at least 1 ms."""
    if seconds <= 0:
        return "0"
    return f"{max(1, round(seconds * 1000))}ms"


async def connect(cluster: PostgresCluster, *, purpose: str = "monitor") -> asyncpg.Connection:
    """Open a console connection to ``cluster``: the one way the console talks to Postgres.

    The session carries application_name 'incident-console', the cluster's statement_timeout
    and lock_timeout, and its backend pid is registered (with ``purpose``) so that the Postgres
    view leaves the console's own sessions out by pid. Raises what asyncpg raises; use
    :func:`classify_error` for a one-line, password-free explanation.
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
    for name in _TEXT_TYPES:  # built-in types: no round trip
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_encode_text, decoder=_decode_text, format="binary"
        )
    _register(_server_key(cluster.dsn), conn, purpose)
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


class _ConnectTimeout(Exception):
    pass


class _HardTimeout(Exception):
    pass


def classify_error(exc: BaseException, cluster: PostgresCluster | None = None) -> SourceError:
    """An asyncpg / OS / timeout exception as an ErrorKind and a one-line, secret-free reason."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, _HardTimeout):
        return source_error(ErrorKind.TIMEOUT, text)
    if isinstance(exc, _ConnectTimeout | TimeoutError | asyncio.TimeoutError):
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


# --- SQL (constant texts; variants are chosen, never composed from values) ---------------

_DETECT_SQL = """
SELECT pg_catalog.current_setting('server_version_num')::int AS version_num,
       pg_catalog.current_setting('server_version') AS version,
       current_user::text AS username,
       pg_catalog.current_database()::text AS database,
       coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), false)
           AS superuser,
       pg_catalog.pg_has_role(current_user, 'pg_monitor', 'USAGE') AS pg_monitor,
       pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
       pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS signal_backend,
       e.extversion::text AS pss_version,
       n.nspname::text AS pss_schema,
       (c.oid IS NOT NULL AND c.relnamespace = e.extnamespace) AS pss_visible,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS pss_columns
FROM (SELECT 1) AS one
LEFT JOIN pg_catalog.pg_extension e ON e.extname = 'pg_stat_statements'
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
LEFT JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass('pg_stat_statements')
"""

_GENERIC_PLANS_SQL = "SET plan_cache_mode = force_generic_plan"  # PostgreSQL 12+

# Executes the pg_stat_statements function once: "not loaded" and "permission denied" show here.
_PSS_PROBE_SQL = "SELECT 1 FROM pg_stat_statements LIMIT 1"

# The lock a session waits for, from pg_locks (read only when @READ_LOCKS@ holds: see
# PostgresSource._poll). A transactionid wait names the row's relation through the tuple lock
# the same session holds.
_LOCK_CTES = """
lk AS (
    SELECT l.pid, l.locktype, l.mode, l.granted, l.database, l.relation, l.page, l.tuple,
           l.transactionid::text AS xid, l.virtualxid, l.classid, l.objid, l.objsubid,
           @WAITSTART@ AS waitstart
    FROM pg_catalog.pg_locks l
    WHERE (NOT l.granted OR l.locktype = 'tuple') AND @READ_LOCKS@
),
waits AS (
    SELECT DISTINCT ON (w.pid) w.pid, w.locktype, w.mode,
           coalesce(w.database, t.database) AS database, coalesce(w.relation, t.relation) AS relation,
           w.page, w.tuple, w.xid, w.virtualxid, w.classid, w.objid, w.objsubid,
           pg_catalog.date_part('epoch', w.waitstart) AS since
    FROM lk w
    LEFT JOIN lk t ON w.locktype = 'transactionid' AND t.pid = w.pid AND t.granted
                   AND t.locktype = 'tuple'
    WHERE NOT w.granted
    ORDER BY w.pid
),
waits_named AS (
    SELECT w.*,
           CASE WHEN w.relation IS NULL THEN NULL
                WHEN w.database = 0 OR w.database = (SELECT d.oid FROM pg_catalog.pg_database d
                                                     WHERE d.datname = pg_catalog.current_database())
                THEN w.relation::pg_catalog.regclass::text
           END AS relname,
           (SELECT d.datname::text FROM pg_catalog.pg_database d WHERE d.oid = w.database) AS lock_db
    FROM waits w
)"""

# Rows of kind 2: one per awaited lock, by pid. In the refresh statement the header names the
# columns; alone (the second statement) these names do, the NULL ones being unused.
_LOCK_ROWS = """
SELECT 2::int2 AS kind, w.pid, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       w.locktype, w.mode, w.relname, w.relation, w.lock_db AS lock_database, w.page, w.tuple,
       w.xid, w.virtualxid, w.classid, w.objid, w.objsubid, w.since AS lock_since
FROM waits_named w"""

# A refresh is rows, from one pass over pg_stat_activity (no CTE holds its rows: materializing
# them cost as much again as reading them, bench/CHANGES.md):
#   kind 0, one header: server time, the top statements, whether pg_locks was read ($4);
#   kind 1, a session in full (columns named as Session's fields);
#   kind 3, an idle session whose state and backend are older than $3 — the last refresh's server
#     time less SINCE_MARGIN —, so it cannot have changed: pid and state only, the source reuses
#     the Session it had (most of 1000 sessions are idle);
#   kind 4, one of the console's own sessions ($1): counted, not shown;
#   kind 2, the lock a session waits for, when $4 (pg_locks is the other large cost).
# The flags are computed in a subquery kept apart (OFFSET 0): pulled up, each use of a flag
# would evaluate its expression again. Connections by state are counted by the source.
_ACTIVITY_TEMPLATE = """
WITH stmts AS (@STATEMENTS@),
@LOCK_CTES@
SELECT 0::int2 AS kind, NULL::int AS pid,
       pg_catalog.date_part('epoch', pg_catalog.now()) AS server_now,
       pg_catalog.current_setting('max_connections')::int AS max_connections,
       pg_catalog.current_setting('superuser_reserved_connections')::int
           + coalesce(pg_catalog.current_setting('reserved_connections', true)::int, 0) AS reserved,
       (SELECT sum(d.xact_commit + d.xact_rollback) FROM pg_catalog.pg_stat_database d)::int8 AS xact_total,
       (SELECT data FROM stmts)::text AS statements,
       $4::bool AS locks_read,
       NULL::bool AS is_client,
       NULL::text AS state,
       NULL::text AS "user", NULL::text AS database, NULL::text AS application, NULL::text AS client,
       NULL::text AS wait_event_type, NULL::text AS wait_event,
       NULL::text AS backend_type, NULL::float8 AS backend_start, NULL::float8 AS xact_start,
       NULL::float8 AS query_start, NULL::float8 AS state_change, NULL::text AS query,
       NULL::text AS blocked_by, NULL::text AS lock_key, NULL::text AS locktype, NULL::text AS mode, NULL::text AS relname,
       NULL::oid AS relation, NULL::text AS lock_database, NULL::int AS page, NULL::int2 AS tuple,
       NULL::text AS xid, NULL::text AS virtualxid, NULL::oid AS classid, NULL::oid AS objid,
       NULL::int2 AS objsubid, NULL::float8 AS lock_since
UNION ALL
SELECT s.kind, s.pid, NULL, NULL, NULL, NULL, NULL, NULL, s.is_client, s.state,
       CASE WHEN s.kind = 1 THEN s.usename::text END,
       CASE WHEN s.kind = 1 THEN s.datname::text END,
       CASE WHEN s.kind = 1 THEN s.application_name END,
       CASE WHEN s.kind <> 1 THEN NULL WHEN s.client_port = -1 THEN 'local'
            ELSE coalesce(s.client_hostname, pg_catalog.host(s.client_addr), '') END,
       CASE WHEN s.kind = 1 THEN s.wait_event_type END,
       CASE WHEN s.kind = 1 THEN s.wait_event END,
       CASE WHEN s.kind = 1 THEN s.backend_type END,
       CASE WHEN s.kind = 1 THEN pg_catalog.date_part('epoch', s.backend_start) END,
       CASE WHEN s.kind = 1 THEN pg_catalog.date_part('epoch', s.xact_start) END,
       CASE WHEN s.kind = 1 THEN pg_catalog.date_part('epoch', s.query_start) END,
       CASE WHEN s.kind = 1 THEN pg_catalog.date_part('epoch', s.state_change) END,
       CASE WHEN s.kind = 1 THEN pg_catalog.left(s.query, $2::int) END,
       CASE WHEN s.kind = 1 AND s.wait_event_type = 'Lock' THEN pg_catalog.pg_blocking_pids(s.pid)::text END,
       CASE WHEN s.kind = 1 AND s.wait_event_type = 'Lock'
            THEN s.pid::text || ' ' || coalesce(pg_catalog.date_part('epoch', s.query_start)::text, '')
                 || ' ' || coalesce(s.wait_event, '') END,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (SELECT a.*, c.is_client,
             CASE WHEN a.pid = ANY ($1::int[]) THEN 4
                  WHEN a.state IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
                       AND a.wait_event_type IS DISTINCT FROM 'Lock'
                       AND a.state_change < pg_catalog.to_timestamp($3::float8)
                       AND a.backend_start < pg_catalog.to_timestamp($3::float8) THEN 3
                  ELSE 1 END::int2 AS kind
      FROM pg_catalog.pg_stat_activity a,
           LATERAL (SELECT a.backend_type = 'client backend'
                           OR (a.backend_type IS NULL AND a.datname IS NOT NULL) AS is_client) c
      WHERE c.is_client OR a.xact_start IS NOT NULL OR a.wait_event_type = 'Lock'
      OFFSET 0) s
UNION ALL
@LOCK_ROWS@
"""

# The lock rows of some waiting sessions ($1), when a refresh finds waits it has not seen
# without reading pg_locks: the refresh's second statement.
_LOCKS_TEMPLATE = """
WITH @LOCK_CTES@
@LOCK_ROWS@
"""

_NO_STATEMENTS = "SELECT NULL::json AS data"
# The console's own statement (same user and query id) is left out of the top list.
_STATEMENTS = """
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
        'queryid', p.queryid, 'query', pg_catalog.left(p.query, $2::int), 'calls', p.calls,
        'total_ms', p.total_ms, 'mean_ms', p.mean_ms, 'rows', p.rows) ORDER BY p.mean_ms DESC) AS data
    FROM (SELECT p.queryid, p.query, p.calls, p.@TOTAL@ AS total_ms, p.@MEAN@ AS mean_ms, p.rows
          FROM pg_stat_statements p
          WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) me
                            WHERE me.usesysid = p.userid AND @ME_QUERY_ID@ = p.queryid)
          ORDER BY p.@MEAN@ DESC
          LIMIT $5::int) p
"""
_PSS_COLUMNS = {
    "exec": ("total_exec_time", "mean_exec_time"),  # PostgreSQL 13+ (pg_stat_statements 1.8+)
    "plain": ("total_time", "mean_time"),  # before 13
}


def _activity_sql(pss: str | None, pg14: bool) -> str:
    statements = _NO_STATEMENTS
    if pss is not None:
        total, mean = _PSS_COLUMNS[pss]
        statements = _STATEMENTS.replace("@TOTAL@", total).replace("@MEAN@", mean)
    return (
        _ACTIVITY_TEMPLATE.replace("@STATEMENTS@", statements)
        .replace("@LOCK_CTES@", _LOCK_CTES.strip().replace("@READ_LOCKS@", "$4::bool"))
        .replace("@LOCK_ROWS@", _LOCK_ROWS.strip())
        .replace("@ME_QUERY_ID@", "me.query_id" if pg14 else "NULL::int8")
        .replace("@WAITSTART@", "l.waitstart" if pg14 else "NULL::timestamptz")
    )


def _locks_sql(pg14: bool) -> str:
    return (
        _LOCKS_TEMPLATE.replace(
            "@LOCK_CTES@", _LOCK_CTES.strip().replace("@READ_LOCKS@", "l.pid = ANY ($1::int[])")
        )
        .replace("@LOCK_ROWS@", _LOCK_ROWS.strip())
        .replace("@WAITSTART@", "l.waitstart" if pg14 else "NULL::timestamptz")
    )


#: Every activity statement the source can send, built once at import from constant fragments.
ACTIVITY_SQL: dict[tuple[str | None, bool], str] = {
    (pss, pg14): _activity_sql(pss, pg14) for pss in (None, "exec", "plain") for pg14 in (False, True)
}
#: The lock rows of the given pids (a refresh's second statement; see PostgresSource._poll).
LOCKS_SQL: dict[bool, str] = {pg14: _locks_sql(pg14) for pg14 in (False, True)}

# SQLSTATEs that mean pg_stat_statements changed under us: detect again and retry once.
_PSS_TROUBLE = {"55000", "42501", "42P01", "42703", "42883"}


# --- capabilities --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Capabilities:
    version_num: int
    version: str
    database: str
    privileges: Privileges
    read_all_stats: bool
    statements_status: str
    pss_columns: str | None  # "exec" / "plain" when usable
    notes: tuple[str, ...]
    detected_at: float


async def _detect(conn: asyncpg.Connection) -> _Capabilities:
    row = await conn.fetchrow(_DETECT_SQL)
    user = one_line(row["username"], 63)
    superuser = bool(row["superuser"])
    read_all_stats = superuser or bool(row["read_all_stats"])
    privileges = Privileges(
        user=user,
        superuser=superuser,
        pg_monitor=superuser or bool(row["pg_monitor"]),
        pg_signal_backend=superuser or bool(row["signal_backend"]),
    )
    notes: list[str] = []
    if not read_all_stats:
        notes.append(
            f"role {user} is not a member of pg_monitor (or pg_read_all_stats): the query text, "
            "state and waits of other roles' sessions are hidden"
        )
    if not privileges.pg_signal_backend:
        notes.append(
            f"role {user} is not a member of pg_signal_backend: it can cancel or terminate only "
            "sessions of its own role, not others'"
        )

    database = one_line(row["database"], 63)
    columns = set(row["pss_columns"] or ())
    pss: str | None = None
    if row["pss_version"] is None:
        status = "not installed"
        notes.append(f"pg_stat_statements is not installed in database {database}")
    elif not row["pss_visible"]:
        status = "not installed"
        notes.append(
            f"pg_stat_statements is installed in schema {one_line(row['pss_schema'], 63)}, "
            f"which is not on role {user}'s search_path"
        )
    else:
        pss = next((k for k, (total, mean) in _PSS_COLUMNS.items() if {total, mean} <= columns), None)
        try:
            await conn.fetchval(_PSS_PROBE_SQL)
            status = "ok" if pss else "not installed"
            if pss is None:
                notes.append("pg_stat_statements has neither mean_exec_time nor mean_time columns")
        except pgexc.InsufficientPrivilegeError:
            status, pss = "no permission", None
            notes.append(f"role {user} may not read pg_stat_statements")
        except pgexc.ObjectNotInPrerequisiteStateError as exc:
            if isinstance(exc, pgexc.LockNotAvailableError):
                raise
            status, pss = "not loaded", None
            notes.append("pg_stat_statements is not in shared_preload_libraries (a restart is needed)")
    return _Capabilities(
        version_num=int(row["version_num"]),
        version=one_line(row["version"], 60),
        database=database,
        privileges=privileges,
        read_all_stats=read_all_stats,
        statements_status=status,
        pss_columns=pss,
        notes=tuple(notes),
        detected_at=time.monotonic(),
    )


# --- parsing -------------------------------------------------------------------------------


# The same user, database, application and (idle) query texts come back every refresh:
# sanitising them once is a measurable part of a refresh with hundreds of sessions. The console's
# own secrets are masked too (a query text may carry its DSN); a newly registered secret changes
# redact.generation(), so nothing cached before it is reused.
@lru_cache(maxsize=4096)
def _one_line(value: str, limit: int, generation: int) -> str:
    return one_line(redact.scrub(value), limit)


@lru_cache(maxsize=1024)
def _clean(value: str, generation: int) -> str:
    return clean(redact.scrub(value))


def _text(value: Any, limit: int = 120) -> str:
    return _one_line(value, limit, redact.generation()) if isinstance(value, str) else one_line(value, limit)


def _query(value: Any) -> str:
    return _clean(value, redact.generation()) if isinstance(value, str) else clean(value)


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _json(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(value) if isinstance(value, str | bytes) else value


def _lock_detail(lock: Mapping[str, Any] | asyncpg.Record) -> str:
    kind = lock.get("locktype")
    if kind == "tuple" and lock.get("page") is not None:
        return f"tuple ({lock.get('page')},{lock.get('tuple')})"
    if kind == "page" and lock.get("page") is not None:
        return f"page {lock.get('page')}"
    if kind == "transactionid" and lock.get("xid"):
        return f"transaction {_text(lock.get('xid'), 24)}"
    if kind == "virtualxid" and lock.get("virtualxid"):
        return f"virtual transaction {_text(lock.get('virtualxid'), 24)}"
    if kind == "advisory":
        return f"advisory key {lock.get('classid')}:{lock.get('objid')}"
    if kind == "object" and lock.get("objid") is not None:
        return f"object {lock.get('classid')}:{lock.get('objid')}"
    return ""


def _lock(raw: Mapping[str, Any] | asyncpg.Record) -> LockWait:
    """The lock a session waits for, from its row's lock columns."""
    relation = ""
    if raw.get("relname"):
        relation = _text(raw["relname"], 200)
    elif raw.get("relation") is not None:
        where = f" in database {_text(raw['lock_database'], 63)}" if raw.get("lock_database") else ""
        relation = f"oid {_int(raw['relation'])}{where}"
    return LockWait(
        locktype=_text(raw.get("locktype"), 40),
        mode=_text(raw.get("mode"), 40),
        relation=relation,
        detail=_lock_detail(raw),
        since=_num(raw.get("lock_since")),
    )


def _blocked_by(text: str | None) -> tuple[int, ...]:
    """pg_blocking_pids() as text, '{12,34}'."""
    pids = set()
    for part in (text or "").strip("{}").split(","):
        if part.strip().isdigit():
            pids.add(int(part))
    return tuple(sorted(pids))


def _session(
    raw: Mapping[str, Any] | asyncpg.Record, lock: Mapping[str, Any] | asyncpg.Record | None
) -> Session:
    return Session(
        pid=_int(raw.get("pid")),
        backend_start=_num(raw.get("backend_start")),
        user=_text(raw.get("user"), 63),
        database=_text(raw.get("database"), 63),
        application=_text(raw.get("application")),
        client=_text(raw.get("client")),
        state=_text(raw.get("state"), 40),
        wait_event_type=_text(raw.get("wait_event_type"), 40),
        wait_event=_text(raw.get("wait_event"), 60),
        xact_start=_num(raw.get("xact_start")),
        query_start=_num(raw.get("query_start")),
        state_change=_num(raw.get("state_change")),
        backend_type=_text(raw.get("backend_type"), 60),
        query=_query(raw.get("query")),
        blocked_by=_blocked_by(raw.get("blocked_by")),
        lock=None if lock is None else _lock(lock),
    )


def _statement(raw: dict[str, Any]) -> Statement:
    queryid = raw.get("queryid")
    return Statement(
        queryid=queryid if isinstance(queryid, int) else None,
        query=_query(raw.get("query")),
        calls=_int(raw.get("calls")),
        total_ms=_num(raw.get("total_ms")) or 0.0,
        mean_ms=_num(raw.get("mean_ms")) or 0.0,
        rows=_int(raw.get("rows")),
    )


# --- blocking tree -------------------------------------------------------------------------


def _direct_blockers(pid: int, by_pid: dict[int, Session]) -> set[int]:
    """The blockers of ``pid`` that no other of its blockers waits for. pg_blocking_pids() gives
    a waiter in a queue every session ahead of it, so a queue of n waiters drawn with every
    edge repeats each waiter under each one ahead (2^n nodes); without the implied edges it is
    one line per waiter, and each blocker still has the waiter in its subtree. A blocker that
    waits for ``pid`` (a cycle) implies nothing."""
    blockers = {b for b in by_pid[pid].blocked_by if b != pid}
    if len(blockers) < 2:
        return blockers
    implied: set[int] = set()
    for other in blockers:
        session = by_pid.get(other)
        if session is not None and pid not in session.blocked_by:
            implied.update(session.blocked_by)
    return (blockers - implied) or blockers


def build_lock_tree(
    sessions: Iterable[Session],
    server_now: float | None = None,
    *,
    console: frozenset[int] = frozenset(),
    max_nodes: int = TREE_MAX_NODES,
    max_depth: int = TREE_MAX_DEPTH,
) -> tuple[LockNode, ...]:
    """Root blockers (blocking others, waiting on nobody) with their waiters as children.

    A waiter blocked by several sessions appears under each of them that none of the others
    waits for (see :func:`_direct_blockers`: a lock queue is a line per waiter). Pids that block someone
    but are not in ``sessions`` (hidden, or the console's own: ``console``) become bare nodes.
    A cycle has no natural root: its smallest pid becomes one, and the edge back to a node
    already on the path is dropped, so the result is always a finite tree. Roots and children
    are ordered by pid.
    """
    by_pid = {s.pid: s for s in sessions}
    waiters: dict[int, list[int]] = defaultdict(list)
    for pid in sorted(by_pid):
        for blocker in sorted(_direct_blockers(pid, by_pid)):
            waiters[blocker].append(pid)
    for pid in sorted(by_pid):  # a blocker that lost every edge to the reduction (cycles) keeps its own
        for blocker in by_pid[pid].blocked_by:
            if blocker != pid and blocker not in waiters:
                waiters[blocker].append(pid)
    if not waiters:
        return ()

    def waits(pid: int) -> bool:
        session = by_pid.get(pid)
        return session is not None and any(b != pid for b in session.blocked_by)

    visited: set[int] = set()
    budget = [max_nodes]

    def node(pid: int, path: frozenset[int]) -> LockNode:
        visited.add(pid)
        budget[0] -= 1
        children = []
        if len(path) <= max_depth:
            for waiter in waiters.get(pid, ()):
                if waiter in path or budget[0] <= 0:
                    continue
                children.append(node(waiter, path | {waiter}))
        session = by_pid.get(pid)
        if session is None:
            state = "incident-console" if pid in console else "not visible"
            return LockNode(
                pid=pid, user="", state=state, query="", lock=None, waiting_for=None, children=tuple(children)
            )
        started = session.lock.since if session.lock and session.lock.since else session.state_change
        waited = None
        if session.waiting_on_lock and started is not None and server_now is not None:
            waited = max(server_now - started, 0.0)
        return LockNode(
            pid=pid,
            user=session.user,
            state=session.state,
            query=session.query,
            lock=session.lock,
            waiting_for=waited,
            children=tuple(children),
        )

    roots = [node(pid, frozenset((pid,))) for pid in sorted(waiters) if not waits(pid)]
    while budget[0] > 0:
        rest = sorted(pid for pid in waiters if pid not in visited)
        if not rest:
            break
        roots.append(node(rest[0], frozenset((rest[0],))))
    return tuple(roots)


# --- the source ----------------------------------------------------------------------------


def _connections_by_state(rows: Iterable[asyncpg.Record]) -> tuple[tuple[str, int], ...]:
    """Client sessions by state, the console's own included (kinds 1, 3 and 4)."""
    counts: dict[str | None, int] = {}
    for row in rows:
        if row["kind"] != 2 and row["is_client"]:  # lock rows of the second statement have no is_client
            state = row["state"]
            counts[state] = counts.get(state, 0) + 1
    named: dict[str, int] = {}
    for state, n in counts.items():
        name = one_line(state if state is not None else "unknown", 40)
        named[name] = named.get(name, 0) + n
    return tuple(sorted(named.items()))


class PostgresSource:
    """Polls one cluster. ``poll()`` never raises (cancellation aside); see the module docstring."""

    kind = "postgres"

    def __init__(self, cluster: PostgresCluster, interval: float) -> None:
        self.cluster = cluster
        self.key = f"postgres:{cluster.name}"
        self.interval = interval
        # Worst legitimate poll: connect, detect (2 statements) and the activity statement.
        statement = cluster.statement_timeout or 10.0
        self.timeout = (cluster.connect_timeout or 10.0) + 3 * statement + 1.0
        redact.register(*cluster.secrets())
        self.dsn = redact.dsn(cluster.dsn)
        self._conn: asyncpg.Connection | None = None
        self._caps: _Capabilities | None = None
        self._lock = asyncio.Lock()
        self._known: dict[tuple, Session] = {}  # a session row's values -> its Session, last refresh
        self._last: dict[int, Session] = {}  # pid -> Session, every session of the last refresh
        self._since: float | None = None  # server time (epoch) the last refresh's sessions are from
        self._statements: tuple[Statement, ...] = ()  # the top list last read, and when (monotonic)
        self._statements_at: float | None = None
        # A waiter's lock_key -> its lock row as last read (None: pg_locks had none for it).
        self._locks: dict[str, asyncpg.Record | None] = {}
        self._locks_at: float | None = None

    def __repr__(self) -> str:
        return f"PostgresSource({self.key!r}, dsn={self.dsn!r})"

    @property
    def backend_pid(self) -> int | None:
        """The pid of the source's own backend, while connected."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    def failed(self, error: SourceError, taken_at: float, latency: float | None) -> PostgresSnapshot:
        return PostgresSnapshot(
            source=self.key,
            taken_at=taken_at,
            latency=latency,
            error=error,
            cluster=self.cluster.name,
            dsn=self.dsn,
        )

    async def poll(self) -> PostgresSnapshot:
        watch = Stopwatch()
        async with self._lock:
            try:
                # A little under the poller's limit (same value), so that this explanation wins.
                limit = self.timeout - min(0.25, self.timeout * 0.1)
                try:
                    async with asyncio.timeout(limit):
                        return await self._poll()
                except TimeoutError:
                    # Only the hard limit gets here (a connect timeout is _ConnectTimeout).
                    self._drop()
                    raise _HardTimeout(
                        f"no answer in {limit:.3g}s; the connection was closed and is reopened next poll"
                    ) from None
            except asyncio.CancelledError:
                self._drop()  # a query may be in flight: this connection is unusable
                raise
            except Exception as exc:
                conn = self._conn
                if conn is None or conn.is_closed() or not isinstance(exc, pgexc.PostgresError):
                    self._drop()
                return self.failed(classify_error(exc, self.cluster), watch.taken_at, watch.elapsed)

    async def _ensure(self) -> tuple[asyncpg.Connection, _Capabilities]:
        conn = self._conn
        if conn is not None and conn.is_closed():
            self._drop()
            conn = None
        fresh = conn is None
        if fresh:
            try:
                conn = await connect(self.cluster, purpose="monitor")
            except TimeoutError as exc:
                raise _ConnectTimeout() from exc
            self._conn, self._caps = conn, None
        caps = self._caps
        if caps is None or time.monotonic() - caps.detected_at > CAPABILITY_TTL:
            caps = self._caps = await _detect(conn)
        if fresh and caps.version_num >= 120000:
            # The refresh statement's plan does not depend on its parameters, but Postgres kept
            # planning it for each call (its custom plans look cheaper): ~1 ms of ~8 (bench/CHANGES.md).
            await conn.execute(_GENERIC_PLANS_SQL)
        return conn, caps

    async def _poll(self) -> PostgresSnapshot:
        watch = Stopwatch()
        conn, caps = await self._ensure()
        since = self._since if self._last else None
        every = self.cluster.statements_every
        due = self._statements_at is None or time.monotonic() - self._statements_at >= every
        locks = self._locks_at is None or time.monotonic() - self._locks_at >= LOCKS_EVERY
        try:
            rows = await self._activity(conn, caps, since, due, locks)
        except pgexc.PostgresError as exc:
            if caps.pss_columns is None or getattr(exc, "sqlstate", None) not in _PSS_TROUBLE:
                raise
            caps = self._caps = await _detect(conn)  # pg_stat_statements changed: once more
            rows = await self._activity(conn, caps, since, due, locks)
        if not locks and (new := self._new_waits(rows)):  # waits not seen before: read them now
            rows = [*rows, *await conn.fetch(LOCKS_SQL[caps.version_num >= 140000], new)]
        row, sessions = self._sessions(rows)
        if sessions is None:  # a pid we do not know came as unchanged: again, every session in full
            rows = await self._activity(conn, caps, None, due, True)
            row, sessions = self._sessions(rows)
        if row is None or sessions is None:
            raise pgexc.ProtocolViolationError("the refresh statement returned no header row")
        if due:
            self._statements_at = time.monotonic()
            self._statements = tuple(
                _statement(raw) for raw in _json(row["statements"]) or () if isinstance(raw, dict)
            )
        server_now = _num(row["server_now"])
        self._since = None if server_now is None else server_now - SINCE_MARGIN
        return self._snapshot(row, rows, sessions, caps, watch)

    async def _activity(
        self,
        conn: asyncpg.Connection,
        caps: _Capabilities,
        since: float | None,
        statements: bool,
        locks: bool,
    ) -> list[asyncpg.Record]:
        """The refresh statement; without ``statements`` it asks for the top 0: LIMIT 0 never
        runs pg_stat_statements(), and the statement (so its query id) stays the same. Without
        ``locks`` it does not read pg_locks."""
        top = self.cluster.statements_top
        pss = caps.pss_columns if top > 0 else None
        sql = ACTIVITY_SQL[(pss, caps.version_num >= 140000)]
        own = sorted(console_pids(self.cluster))
        if pss is None:
            return await conn.fetch(sql, own, QUERY_TEXT_CAP, since, locks)
        return await conn.fetch(sql, own, QUERY_TEXT_CAP, since, locks, top if statements else 0)

    def _new_waits(self, rows: Iterable[asyncpg.Record]) -> list[int]:
        """Pids of the sessions that wait in a way the last read of pg_locks did not see (a new
        pid, statement or wait event: the row's lock_key)."""
        known = self._locks
        return [row["pid"] for row in rows if row["lock_key"] is not None and row["lock_key"] not in known]

    def _snapshot(
        self,
        row: asyncpg.Record,
        rows: Iterable[asyncpg.Record],
        sessions: tuple[Session, ...],
        caps: _Capabilities,
        watch: Stopwatch,
    ) -> PostgresSnapshot:
        server_now = _num(row["server_now"])
        xact_total = row["xact_total"]
        return PostgresSnapshot(
            source=self.key,
            taken_at=watch.taken_at,
            latency=watch.elapsed,
            cluster=self.cluster.name,
            dsn=self.dsn,
            server_version=caps.version,
            server_version_num=caps.version_num,
            server_now=server_now,
            privileges=caps.privileges,
            max_connections=_int(row["max_connections"]),
            reserved_connections=_int(row["reserved"]),
            sessions=sessions,
            connections_by_state=_connections_by_state(rows),
            xact_total=int(xact_total) if xact_total is not None else None,
            lock_tree=build_lock_tree(sessions, server_now, console=console_pids(self.cluster)),
            statements=self._statements,
            statements_status=caps.statements_status,
            notes=caps.notes,
        )

    def _sessions(
        self, rows: Iterable[asyncpg.Record]
    ) -> tuple[asyncpg.Record | None, tuple[Session, ...] | None]:
        """The header row and the sessions (by pid) of the refresh's rows. A session whose row
        (and lock row) has the same values as in the last refresh — long queries, waiters — and
        an idle session unchanged since then (kind 3) are the last refresh's Session object,
        not built or sanitised again. Sessions are None when an unchanged pid is not one of the
        last refresh's. A waiter's lock is the one last read for its lock_key, or its kind 2 row
        (every lock when the header says pg_locks was read; else those of new waits, read by
        the refresh's second statement)."""
        header, full, locks = None, [], {}
        known, last, seen, by_pid = self._known, self._last, {}, {}
        for row in rows:
            kind = row["kind"]
            if kind == 1:
                full.append(row)
            elif kind == 3:
                session = last.get(row["pid"])
                if session is None:
                    return row, None
                by_pid[session.pid] = session
            elif kind == 2:
                locks[row["pid"]] = row
            elif kind == 0:
                header = row
        if header is None:
            return None, ()
        # lock_key -> its lock row (None: pg_locks had none for it), for this refresh's waits.
        previous, held = {} if header["locks_read"] else self._locks, {}
        for row in full:
            lock_key = row["lock_key"]
            if lock_key is None:
                lock = None
            elif lock_key in previous:
                lock = held[lock_key] = previous[lock_key]
            else:
                lock = held[lock_key] = locks.get(row["pid"])
            values = tuple(row) if lock is None else (*row, *lock)
            session = known.get(values)
            if session is None:
                session = _session(row, lock)
            seen[values] = session
            by_pid[session.pid] = session
        self._known, self._last, self._locks = seen, by_pid, held
        if header["locks_read"]:
            self._locks_at = time.monotonic()
        return header, tuple(by_pid[pid] for pid in sorted(by_pid))

    def _drop(self) -> None:
        conn, self._conn, self._caps = self._conn, None, None
        if conn is not None:
            conn.terminate()

    async def aclose(self) -> None:
        conn, self._conn, self._caps = self._conn, None, None
        if conn is None:
            return
        try:
            await conn.close(timeout=2.0)
        except Exception:
            conn.terminate()
        except asyncio.CancelledError:
            conn.terminate()
            raise
