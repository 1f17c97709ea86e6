"""Postgres source: sessions, blocking tree, connection counts, transactions and top statements.

One dedicated asyncpg connection per source, on the caller's event loop (DESIGN.md section 2),
opened with :func:`connect` like every other console connection. In steady state a refresh is
ONE statement (CTEs + json_agg, one round trip with asyncpg's statement cache); sessions come
as one JSON text each, and a text seen in the last refresh is not parsed again. What the role
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
import re
import socket
import ssl
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable
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

# Executes the pg_stat_statements function once: "not loaded" and "permission denied" show here.
_PSS_PROBE_SQL = "SELECT 1 FROM pg_stat_statements LIMIT 1"

_ACTIVITY_TEMPLATE = """
WITH act AS MATERIALIZED (
    SELECT a.pid, a.usesysid, a.usename::text AS usename, a.datname::text AS datname,
           a.application_name,
           CASE WHEN a.client_port = -1 THEN 'local'
                ELSE coalesce(a.client_hostname, pg_catalog.host(a.client_addr), '') END AS client,
           a.state, a.wait_event_type, a.wait_event, a.backend_type,
           a.backend_start, a.xact_start, a.query_start, a.state_change,
           pg_catalog.left(a.query, $2::int) AS query,
           @QUERY_ID@ AS query_id
    FROM pg_catalog.pg_stat_activity a
),
shown AS (
    SELECT * FROM act
    WHERE pid <> ALL ($1::int[])
      AND (backend_type = 'client backend' OR xact_start IS NOT NULL OR wait_event_type = 'Lock'
           OR (backend_type IS NULL AND datname IS NOT NULL))
),
lk AS (
    SELECT l.pid, l.locktype, l.mode, l.granted, l.database, l.relation, l.page, l.tuple,
           l.transactionid::text AS xid, l.virtualxid, l.classid, l.objid, l.objsubid,
           @WAITSTART@ AS waitstart
    FROM pg_catalog.pg_locks l
    WHERE (NOT l.granted OR l.locktype = 'tuple')
      AND EXISTS (SELECT 1 FROM shown s WHERE s.wait_event_type = 'Lock')
),
waits AS (
    SELECT DISTINCT ON (w.pid) w.pid, w.locktype, w.mode,
           coalesce(w.database, t.database) AS database, coalesce(w.relation, t.relation) AS relation,
           w.page, w.tuple, w.xid, w.virtualxid, w.classid, w.objid, w.objsubid,
           extract(epoch FROM w.waitstart)::float8 AS since
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
),
sessions AS (
    SELECT pg_catalog.string_agg('[' || pg_catalog.concat_ws(',',
        s.pid, @J(s.usename)@, @J(s.datname)@, @J(s.application_name)@, @J(s.client)@,
        @J(s.state)@, @J(s.wait_event_type)@, @J(s.wait_event)@, @J(s.backend_type)@,
        @T(s.backend_start)@, @T(s.xact_start)@, @T(s.query_start)@, @T(s.state_change)@,
        @J(s.query)@,
        coalesce(CASE WHEN s.wait_event_type = 'Lock'
                      THEN pg_catalog.array_to_json(pg_catalog.pg_blocking_pids(s.pid))::text END, 'null'),
        coalesce(CASE WHEN w.pid IS NOT NULL THEN pg_catalog.json_build_object(
            'locktype', w.locktype, 'mode', w.mode, 'relname', w.relname, 'relation', w.relation,
            'database', w.lock_db, 'page', w.page, 'tuple', w.tuple, 'xid', w.xid,
            'virtualxid', w.virtualxid, 'classid', w.classid, 'objid', w.objid,
            'objsubid', w.objsubid, 'since', w.since)::text END, 'null')
    ) || ']', E'\n' ORDER BY s.pid) AS data
    FROM shown s LEFT JOIN waits_named w ON w.pid = s.pid
),
counts AS (
    SELECT pg_catalog.json_agg(pg_catalog.json_build_array(c.state, c.n) ORDER BY c.state) AS data
    FROM (SELECT coalesce(a.state, 'unknown') AS state, count(*) AS n
          FROM act a
          WHERE a.backend_type = 'client backend' OR (a.backend_type IS NULL AND a.datname IS NOT NULL)
          GROUP BY 1) c
),
stmts AS (@STATEMENTS@)
SELECT extract(epoch FROM pg_catalog.now())::float8 AS server_now,
       pg_catalog.current_setting('max_connections')::int AS max_connections,
       pg_catalog.current_setting('superuser_reserved_connections')::int
           + coalesce(pg_catalog.current_setting('reserved_connections', true)::int, 0) AS reserved,
       (SELECT sum(d.xact_commit + d.xact_rollback) FROM pg_catalog.pg_stat_database d)::int8 AS xact_total,
       (SELECT data FROM sessions) AS sessions,
       (SELECT data FROM counts) AS counts,
       (SELECT data FROM stmts) AS statements
"""

_NO_STATEMENTS = "SELECT NULL::json AS data"
# The console's own statement (same user and query id) is left out of the top list.
_STATEMENTS = """
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
        'queryid', p.queryid, 'query', pg_catalog.left(p.query, $2::int), 'calls', p.calls,
        'total_ms', p.total_ms, 'mean_ms', p.mean_ms, 'rows', p.rows) ORDER BY p.mean_ms DESC) AS data
    FROM (SELECT p.queryid, p.query, p.calls, p.@TOTAL@ AS total_ms, p.@MEAN@ AS mean_ms, p.rows
          FROM pg_stat_statements p
          WHERE NOT EXISTS (SELECT 1 FROM act me
                            WHERE me.pid = pg_catalog.pg_backend_pid()
                              AND me.usesysid = p.userid AND me.query_id = p.queryid)
          ORDER BY p.@MEAN@ DESC
          LIMIT $3::int) p
"""
_PSS_COLUMNS = {
    "exec": ("total_exec_time", "mean_exec_time"),  # PostgreSQL 13+ (pg_stat_statements 1.8+)
    "plain": ("total_time", "mean_time"),  # before 13
}


# A session is one JSON array (SESSION_FIELDS, in order): built from each field's own JSON
# (to_json escapes a text as json_build_object does), it costs the server about a quarter less
# than one json_build_object with the field names, at 1000 sessions (bench/CHANGES.md).
SESSION_FIELDS = (
    "pid", "user", "database", "application", "client", "state", "wait_event_type", "wait_event",
    "backend_type", "backend_start", "xact_start", "query_start", "state_change", "query",
    "blocked_by", "lock",
)  # fmt: skip


def _json_fields(sql: str) -> str:
    sql = re.sub(r"@J\(([\w.]+)\)@", r"coalesce(pg_catalog.to_json(\1)::text, 'null')", sql)
    return re.sub(r"@T\(([\w.]+)\)@", r"coalesce((extract(epoch FROM \1)::float8)::text, 'null')", sql)


def _activity_sql(pss: str | None, pg14: bool) -> str:
    statements = _NO_STATEMENTS
    if pss is not None:
        total, mean = _PSS_COLUMNS[pss]
        statements = _STATEMENTS.replace("@TOTAL@", total).replace("@MEAN@", mean)
    return (
        _json_fields(_ACTIVITY_TEMPLATE)
        .replace("@STATEMENTS@", statements)
        .replace("@QUERY_ID@", "a.query_id" if pg14 else "NULL::int8")
        .replace("@WAITSTART@", "l.waitstart" if pg14 else "NULL::timestamptz")
    )


#: Every activity statement the source can send, built once at import from constant fragments.
ACTIVITY_SQL: dict[tuple[str | None, bool], str] = {
    (pss, pg14): _activity_sql(pss, pg14) for pss in (None, "exec", "plain") for pg14 in (False, True)
}

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


def _lock_detail(lock: dict[str, Any]) -> str:
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


def _lock(raw: Any) -> LockWait | None:
    if not isinstance(raw, dict):
        return None
    relation = ""
    if raw.get("relname"):
        relation = _text(raw["relname"], 200)
    elif raw.get("relation") is not None:
        where = f" in database {_text(raw['database'], 63)}" if raw.get("database") else ""
        relation = f"oid {_int(raw['relation'])}{where}"
    return LockWait(
        locktype=_text(raw.get("locktype"), 40),
        mode=_text(raw.get("mode"), 40),
        relation=relation,
        detail=_lock_detail(raw),
        since=_num(raw.get("since")),
    )


def _session(raw: dict[str, Any]) -> Session:
    blocked = raw.get("blocked_by") or ()
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
        blocked_by=tuple(sorted({_int(p) for p in blocked if isinstance(p, int)})),
        lock=_lock(raw.get("lock")),
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


def build_lock_tree(
    sessions: Iterable[Session],
    server_now: float | None = None,
    *,
    console: frozenset[int] = frozenset(),
    max_nodes: int = TREE_MAX_NODES,
    max_depth: int = TREE_MAX_DEPTH,
) -> tuple[LockNode, ...]:
    """Root blockers (blocking others, waiting on nobody) with their waiters as children.

    A waiter blocked by several sessions appears under each of them. Pids that block someone
    but are not in ``sessions`` (hidden, or the console's own: ``console``) become bare nodes.
    A cycle has no natural root: its smallest pid becomes one, and the edge back to a node
    already on the path is dropped, so the result is always a finite tree. Roots and children
    are ordered by pid.
    """
    by_pid = {s.pid: s for s in sessions}
    waiters: dict[int, list[int]] = defaultdict(list)
    for pid in sorted(by_pid):
        for blocker in by_pid[pid].blocked_by:
            if blocker != pid:
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
        self._known: dict[str, Session] = {}  # a session's JSON text -> its Session, last refresh

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
        if conn is None:
            try:
                conn = await connect(self.cluster, purpose="monitor")
            except TimeoutError as exc:
                raise _ConnectTimeout() from exc
            self._conn, self._caps = conn, None
        caps = self._caps
        if caps is None or time.monotonic() - caps.detected_at > CAPABILITY_TTL:
            caps = self._caps = await _detect(conn)
        return conn, caps

    async def _poll(self) -> PostgresSnapshot:
        watch = Stopwatch()
        conn, caps = await self._ensure()
        try:
            row = await self._activity(conn, caps)
        except pgexc.PostgresError as exc:
            if caps.pss_columns is None or getattr(exc, "sqlstate", None) not in _PSS_TROUBLE:
                raise
            caps = self._caps = await _detect(conn)  # pg_stat_statements changed: once more
            row = await self._activity(conn, caps)
        return self._snapshot(row, caps, watch)

    async def _activity(self, conn: asyncpg.Connection, caps: _Capabilities) -> asyncpg.Record:
        top = self.cluster.statements_top
        pss = caps.pss_columns if top > 0 else None
        sql = ACTIVITY_SQL[(pss, caps.version_num >= 140000)]
        own = sorted(console_pids(self.cluster))
        if pss is None:
            return await conn.fetchrow(sql, own, QUERY_TEXT_CAP)
        return await conn.fetchrow(sql, own, QUERY_TEXT_CAP, top)

    def _snapshot(self, row: asyncpg.Record, caps: _Capabilities, watch: Stopwatch) -> PostgresSnapshot:
        server_now = _num(row["server_now"])
        # One line per session (JSON text escapes newlines); one text value, so that it is
        # decoded like every other text (lossy, see _decode_text).
        sessions = self._sessions((row["sessions"] or "").split("\n"))
        counts = tuple(
            (one_line(pair[0], 40), _int(pair[1]))
            for pair in _json(row["counts"]) or ()
            if isinstance(pair, list) and len(pair) == 2
        )
        statements = tuple(_statement(raw) for raw in _json(row["statements"]) or () if isinstance(raw, dict))
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
            connections_by_state=counts,
            xact_total=int(xact_total) if xact_total is not None else None,
            lock_tree=build_lock_tree(sessions, server_now, console=console_pids(self.cluster)),
            statements=statements,
            statements_status=caps.statements_status,
            notes=caps.notes,
        )

    def _sessions(self, texts: Iterable[str]) -> tuple[Session, ...]:
        """One JSON text per session: a session whose text is the same as in the last refresh
        (most of them: idle sessions, long queries) is the same Session object, not parsed or
        sanitised again."""
        known, seen = self._known, {}
        out = []
        for text in texts:
            session = known.get(text)
            if session is None and text:
                raw = json.loads(text)
                if not isinstance(raw, list) or len(raw) != len(SESSION_FIELDS):
                    continue
                session = _session(dict(zip(SESSION_FIELDS, raw, strict=True)))
            if session is None:
                continue
            seen[text] = session
            out.append(session)
        self._known = seen
        return tuple(out)

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
