"""Postgres source: sessions, blocking tree, connection counts, transactions and top statements.

One dedicated asyncpg connection per source, on the caller's event loop (asyncpg connections
belong to the loop that opened them), opened with :func:`console.pg.connect` like every other
console connection, with generic plans. In steady state a refresh is ONE statement
(:mod:`console.sources.pg_refresh`: CTEs, one round trip with asyncpg's statement cache)
returning rows of named kinds (:class:`~console.sources.pg_refresh.RowKind`): a header, a row
per session and one per awaited lock. An idle session unchanged since the last refresh comes
as a bare pid, and a session row with the values of the last refresh is not built again; the
top statements are read every ``statements_every`` seconds (pg_stat_activity is read once per
refresh, where pg_activity reads it three times: see bench/CHANGES.md). What the role may see
and whether pg_stat_statements is usable are detected once per connection (and again every
:data:`CAPABILITY_TTL` seconds); the statement text is then picked among the prebuilt variants.
Values such as the console's own pids and the text cap are bind parameters, never spliced in.
The blocking tree is built by :func:`console.locktree.build_lock_tree`.

Every string read from Postgres passes through :mod:`console.sanitize` here; error reasons go
through :func:`console.pg.classify_error`, which masks the DSN password.

Supported servers: PostgreSQL 10 and later (``backend_type``, ``pg_blocking_pids``,
``pg_monitor``); ``pg_locks.waitstart`` and ``query_id`` are used from 14 on.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import asyncpg
import asyncpg.exceptions as pgexc

from console import redact
from console.config import PostgresCluster
from console.locktree import build_lock_tree
from console.model import (
    LockWait,
    PostgresSnapshot,
    Privileges,
    Session,
    SourceError,
    SourceKey,
    Statement,
)
from console.pg import (
    CONSOLE_MARK,
    ConnectTimeout,
    PollTimeout,
    classify_error,
    connect,
    connection_gone,
    console_pids,
)
from console.sanitize import clean, one_line
from console.sources.base import Stopwatch
from console.sources.pg_refresh import (
    ACTIVITY_SQL,
    LOCKS_SQL,
    PSS_TROUBLE,
    PssColumns,
    RowKind,
    activity_args,
    locks_args,
)

__all__ = [
    "CAPABILITY_TTL",
    "LOCKS_EVERY",
    "QUERY_TEXT_CAP",
    "SINCE_MARGIN",
    "PostgresSource",
]

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

# --- capabilities --------------------------------------------------------------------------

_DETECT_SQL = f"""{CONSOLE_MARK}
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
_PSS_PROBE_SQL = f"{CONSOLE_MARK} SELECT 1 FROM pg_stat_statements LIMIT 1"


@dataclass(frozen=True, slots=True)
class _Capabilities:
    version_num: int
    version: str
    database: str
    privileges: Privileges
    read_all_stats: bool
    statements_status: str
    pss_columns: PssColumns | None  # when usable
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
    pss: PssColumns | None = None
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
        pss = next((k for k in PssColumns if {k.total, k.mean} <= columns), None)
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


# --- the source ----------------------------------------------------------------------------


def _connections_by_state(rows: Iterable[asyncpg.Record]) -> tuple[tuple[str, int], ...]:
    """Client sessions by state, the console's own included (SESSION, IDLE_UNCHANGED and
    CONSOLE_SESSION rows)."""
    counts: dict[str | None, int] = {}
    lock_wait = RowKind.LOCK_WAIT  # a local: looking an enum member up costs several comparisons
    for row in rows:
        # (LOCK_WAIT rows of the second statement have no is_client column)
        if row["kind"] != lock_wait and row["is_client"]:
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
        self.key = SourceKey.postgres(cluster.name)
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
                    # Only the hard limit gets here (a connect timeout is ConnectTimeout).
                    self._drop()
                    raise PollTimeout(
                        f"no answer in {limit:.3g}s; the connection was closed and is reopened next poll"
                    ) from None
            except asyncio.CancelledError:
                self._drop()  # a query may be in flight: this connection is unusable
                raise
            except Exception as exc:
                conn = self._conn
                if (
                    conn is None
                    or conn.is_closed()
                    or not isinstance(exc, pgexc.PostgresError)
                    or connection_gone(exc)
                ):
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
                # Generic plans: the refresh statement's plan does not depend on its parameters,
                # but Postgres kept planning it for each call: ~1 ms of ~8 (bench/CHANGES.md).
                conn = await connect(self.cluster, purpose="monitor", generic_plans=True)
            except TimeoutError as exc:
                raise ConnectTimeout() from exc
            self._conn, self._caps = conn, None
        caps = self._caps
        if caps is None or time.monotonic() - caps.detected_at > CAPABILITY_TTL:
            caps = self._caps = await _detect(conn)
        return conn, caps

    async def _poll(self) -> PostgresSnapshot:
        """One refresh. The server may have ended the connection (a terminated backend, a
        restart), before the client noticed or during the refresh: that alone is no outage, so
        the refresh runs once more on a new connection, and only what that one meets is
        reported (a server going down refuses it)."""
        try:
            return await self._refresh()
        except Exception as exc:
            if not connection_gone(exc):
                raise
        self._drop()
        return await self._refresh()

    async def _refresh(self) -> PostgresSnapshot:
        watch = Stopwatch()
        conn, caps = await self._ensure()
        since = self._since if self._last else None
        every = self.cluster.statements_every
        due = self._statements_at is None or time.monotonic() - self._statements_at >= every
        locks = self._locks_at is None or time.monotonic() - self._locks_at >= LOCKS_EVERY
        try:
            rows = await self._activity(conn, caps, since, due, locks)
        except pgexc.PostgresError as exc:
            if caps.pss_columns is None or getattr(exc, "sqlstate", None) not in PSS_TROUBLE:
                raise
            caps = self._caps = await _detect(conn)  # pg_stat_statements changed: once more
            rows = await self._activity(conn, caps, since, due, locks)
        if not locks and (new := self._new_waits(rows)):  # waits not seen before: read them now
            rows = [*rows, *await conn.fetch(LOCKS_SQL[caps.version_num >= 140000], *locks_args(new))]
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
        size = None if pss is None else top if statements else 0
        args = activity_args(console_pids(self.cluster), QUERY_TEXT_CAP, since, locks, size)
        return await conn.fetch(sql, *args)

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
        an idle session unchanged since then (IDLE_UNCHANGED) are the last refresh's Session
        object, not built or sanitised again. Sessions are None when an unchanged pid is not one
        of the last refresh's. A waiter's lock is the one last read for its lock_key, or its
        LOCK_WAIT row
        (every lock when the header says pg_locks was read; else those of new waits, read by
        the refresh's second statement)."""
        header, full, locks = None, [], {}
        known, last, seen, by_pid = self._known, self._last, {}, {}
        # Locals: looking an enum member up costs several comparisons, and this runs per row.
        session_row, unchanged_row, lock_row, header_row = (
            RowKind.SESSION,
            RowKind.IDLE_UNCHANGED,
            RowKind.LOCK_WAIT,
            RowKind.HEADER,
        )
        for row in rows:
            kind = row["kind"]
            if kind == session_row:
                full.append(row)
            elif kind == unchanged_row:
                session = last.get(row["pid"])
                if session is None:
                    return row, None
                by_pid[session.pid] = session
            elif kind == lock_row:
                locks[row["pid"]] = row
            elif kind == header_row:
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
