"""The Postgres source's refresh statements: what a refresh reads, as rows of named kinds.

A refresh is rows of one shape, from one pass over pg_stat_activity (no CTE holds its rows:
materializing them cost as much again as reading them, bench/CHANGES.md); the first column,
``kind``, says which (:class:`RowKind`). Every statement text is composed here from fixed
fragments this module owns, picked by a few choices (which pg_stat_statements columns, a
server before or from 14, every lock or those of some pids); values — the console's own pids,
the text cap, the time of the last refresh, the size of the top list — are always bind
parameters, in the order :func:`activity_args` gives. The variants are built once, at import:
:data:`ACTIVITY_SQL` and :data:`LOCKS_SQL` hold every text the source can send.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum

from console.pg import CONSOLE_MARK

__all__ = [
    "ACTIVITY_SQL",
    "LOCKS_SQL",
    "PSS_TROUBLE",
    "PssColumns",
    "RowKind",
    "activity_args",
    "activity_sql",
    "locks_args",
    "locks_sql",
]


class RowKind(IntEnum):
    """The ``kind`` column of a refresh row."""

    #: One per refresh, first: server time, max_connections, transactions, the top statements
    #: (JSON), and whether this refresh read pg_locks (``locks_read``).
    HEADER = 0
    #: A session in full, columns named as :class:`~console.model.Session`'s fields.
    SESSION = 1
    #: The lock one session waits for (by ``pid``): from the refresh statement when it read
    #: pg_locks, else from the second statement, for new waits only.
    LOCK_WAIT = 2
    #: An idle session whose state and backend are older than the last refresh's server time
    #: (less a margin), so it cannot have changed: pid, state and is_client only; the source
    #: reuses the Session it had (most of 1000 sessions are idle).
    IDLE_UNCHANGED = 3
    #: One of the console's own sessions (by pid): counted by state, not shown.
    CONSOLE_SESSION = 4


class PssColumns(StrEnum):
    """Which names pg_stat_statements gives its time columns."""

    EXEC = "exec"  # PostgreSQL 13+ (pg_stat_statements 1.8+)
    PLAIN = "plain"  # before 13

    @property
    def total(self) -> str:
        return _PSS_TIME_COLUMNS[self][0]

    @property
    def mean(self) -> str:
        return _PSS_TIME_COLUMNS[self][1]


_PSS_TIME_COLUMNS = {
    PssColumns.EXEC: ("total_exec_time", "mean_exec_time"),
    PssColumns.PLAIN: ("total_time", "mean_time"),
}

# SQLSTATEs that mean pg_stat_statements changed under us: detect again and retry once.
PSS_TROUBLE = frozenset({"55000", "42501", "42P01", "42703", "42883"})

# The kinds as the statement writes them.
_HEADER, _SESSION, _LOCK_WAIT, _IDLE_UNCHANGED, _CONSOLE_SESSION = (int(kind) for kind in RowKind)


# --- parameters ----------------------------------------------------------------------------


def activity_args(
    own_pids: Iterable[int], text_cap: int, since: float | None, read_locks: bool, top: int | None
) -> tuple:
    """The refresh statement's bind parameters ($1..$5), in order: the console's own backend
    pids, characters of query text, the server time (epoch) before which an idle session
    counts as unchanged (None: every session in full), whether to read pg_locks, and the size
    of the top-statements list (only for a variant reading pg_stat_statements; None otherwise).
    """
    args = (sorted(own_pids), text_cap, since, read_locks)
    return args if top is None else (*args, top)


def locks_args(pids: Iterable[int]) -> tuple:
    """The second statement's bind parameter ($1): the pids whose awaited lock to read."""
    return (list(pids),)


# --- fragments -----------------------------------------------------------------------------


def _waitstart(pg14: bool) -> str:
    """When the wait began: pg_locks.waitstart exists from 14 on."""
    return "l.waitstart" if pg14 else "NULL::timestamptz"


def _my_query_id(pg14: bool) -> str:
    """The console's own query id in pg_stat_activity (from 14 on; before, nothing matches)."""
    return "me.query_id" if pg14 else "NULL::int8"


# Which locks the lock CTEs read: in the refresh statement every lock, only when $4 says so
# (pg_lock_status() is the other large cost); in the second statement those of the pids $1.
_EVERY_LOCK_IF_ASKED = "$4::bool"
_LOCKS_OF_PIDS = "l.pid = ANY ($1::int[])"


def _lock_ctes(*, pids_only: bool, pg14: bool) -> str:
    """lk, waits, waits_named: the lock each session waits for, from pg_locks. A
    transactionid wait names the row's relation through the tuple lock the same session
    holds."""
    which = _LOCKS_OF_PIDS if pids_only else _EVERY_LOCK_IF_ASKED
    return f"""lk AS (
    SELECT l.pid, l.locktype, l.mode, l.granted, l.database, l.relation, l.page, l.tuple,
           l.transactionid::text AS xid, l.virtualxid, l.classid, l.objid, l.objsubid,
           {_waitstart(pg14)} AS waitstart
    FROM pg_catalog.pg_locks l
    WHERE (NOT l.granted OR l.locktype = 'tuple') AND {which}
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


# LOCK_WAIT rows, one per awaited lock, by pid. In the refresh statement the header names the
# columns; alone (the second statement) these names do, the NULL ones being unused.
_LOCK_WAIT_ROWS = f"""SELECT {_LOCK_WAIT}::int2 AS kind, w.pid, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       w.locktype, w.mode, w.relname, w.relation, w.lock_db AS lock_database, w.page, w.tuple,
       w.xid, w.virtualxid, w.classid, w.objid, w.objsubid, w.since AS lock_since
FROM waits_named w"""


_NO_STATEMENTS = "SELECT NULL::json AS data"


#: What marks a statement of the console's own, among those of its role: this source's
#: statements begin with the mark; asyncpg's type introspection is the driver's.
_OWN_TEXT = (f"{CONSOLE_MARK}%", "WITH RECURSIVE typeinfo_tree(%")


def _top_statements(pss: PssColumns | None, pg14: bool) -> str:
    """The top list as one JSON value, slowest mean first, $5 long ($5 = 0: pg_stat_statements()
    does not run). The console's own statements are left out: of its role, the one running (its
    query id) and those its text marks (:data:`_OWN_TEXT`)."""
    if pss is None:
        return _NO_STATEMENTS
    total, mean = pss.total, pss.mean
    return f"""
    SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
        'queryid', p.queryid, 'query', pg_catalog.left(p.query, $2::int), 'calls', p.calls,
        'total_ms', p.total_ms, 'mean_ms', p.mean_ms, 'rows', p.rows) ORDER BY p.mean_ms DESC) AS data
    FROM (SELECT p.queryid, p.query, p.calls, p.{total} AS total_ms, p.{mean} AS mean_ms, p.rows
          FROM pg_stat_statements p
          WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) me
                            WHERE me.usesysid = p.userid
                              AND ({_my_query_id(pg14)} = p.queryid
                                   OR {" OR ".join(f"p.query LIKE '{like}'" for like in _OWN_TEXT)}))
          ORDER BY p.{mean} DESC
          LIMIT $5::int) p
"""


# The HEADER row; its column names name every column of the statement.
_HEADER_ROW = f"""SELECT {_HEADER}::int2 AS kind, NULL::int AS pid,
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
       NULL::int2 AS objsubid, NULL::float8 AS lock_since"""

# SESSION, IDLE_UNCHANGED and CONSOLE_SESSION rows: one per session of pg_stat_activity that is
# a client, in a transaction or waiting on a lock. Only a SESSION row carries the session's
# values; a waiting one also its blockers and a key for its wait (pid, query start and wait
# event: a new key is a new wait). The kind is computed in a subquery kept apart (OFFSET 0):
# pulled up, each use of it would evaluate its expression again.
_SESSION_ROWS = f"""SELECT s.kind, s.pid, NULL, NULL, NULL, NULL, NULL, NULL, s.is_client, s.state,
       CASE WHEN s.kind = {_SESSION} THEN s.usename::text END,
       CASE WHEN s.kind = {_SESSION} THEN s.datname::text END,
       CASE WHEN s.kind = {_SESSION} THEN s.application_name END,
       CASE WHEN s.kind <> {_SESSION} THEN NULL WHEN s.client_port = -1 THEN 'local'
            ELSE coalesce(s.client_hostname, pg_catalog.host(s.client_addr), '') END,
       CASE WHEN s.kind = {_SESSION} THEN s.wait_event_type END,
       CASE WHEN s.kind = {_SESSION} THEN s.wait_event END,
       CASE WHEN s.kind = {_SESSION} THEN s.backend_type END,
       CASE WHEN s.kind = {_SESSION} THEN pg_catalog.date_part('epoch', s.backend_start) END,
       CASE WHEN s.kind = {_SESSION} THEN pg_catalog.date_part('epoch', s.xact_start) END,
       CASE WHEN s.kind = {_SESSION} THEN pg_catalog.date_part('epoch', s.query_start) END,
       CASE WHEN s.kind = {_SESSION} THEN pg_catalog.date_part('epoch', s.state_change) END,
       CASE WHEN s.kind = {_SESSION} THEN pg_catalog.left(s.query, $2::int) END,
       CASE WHEN s.kind = {_SESSION} AND s.wait_event_type = 'Lock' THEN pg_catalog.pg_blocking_pids(s.pid)::text END,
       CASE WHEN s.kind = {_SESSION} AND s.wait_event_type = 'Lock'
            THEN s.pid::text || ' ' || coalesce(pg_catalog.date_part('epoch', s.query_start)::text, '')
                 || ' ' || coalesce(s.wait_event, '') END,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (SELECT a.*, c.is_client,
             CASE WHEN a.pid = ANY ($1::int[]) THEN {_CONSOLE_SESSION}
                  WHEN a.state IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
                       AND a.wait_event_type IS DISTINCT FROM 'Lock'
                       AND a.state_change < pg_catalog.to_timestamp($3::float8)
                       AND a.backend_start < pg_catalog.to_timestamp($3::float8) THEN {_IDLE_UNCHANGED}
                  ELSE {_SESSION} END::int2 AS kind
      FROM pg_catalog.pg_stat_activity a,
           LATERAL (SELECT a.backend_type = 'client backend'
                           OR (a.backend_type IS NULL AND a.datname IS NOT NULL) AS is_client) c
      WHERE c.is_client OR a.xact_start IS NOT NULL OR a.wait_event_type = 'Lock'
      OFFSET 0) s"""


# --- statements ----------------------------------------------------------------------------


def activity_sql(pss: PssColumns | None, pg14: bool) -> str:
    """The refresh statement: the HEADER row, the session rows, and the LOCK_WAIT rows when
    $4 asks for pg_locks; the top statements when ``pss`` names pg_stat_statements' columns."""
    return f"""{CONSOLE_MARK}
WITH stmts AS ({_top_statements(pss, pg14)}),
{_lock_ctes(pids_only=False, pg14=pg14)}
{_HEADER_ROW}
UNION ALL
{_SESSION_ROWS}
UNION ALL
{_LOCK_WAIT_ROWS}
"""


def locks_sql(pg14: bool) -> str:
    """The LOCK_WAIT rows of some waiting sessions ($1), when a refresh finds waits it has not
    seen without reading pg_locks: the refresh's second statement."""
    return f"""{CONSOLE_MARK}
WITH {_lock_ctes(pids_only=True, pg14=pg14)}
{_LOCK_WAIT_ROWS}
"""


#: Every refresh statement the source can send, by (pg_stat_statements columns, server >= 14).
ACTIVITY_SQL: dict[tuple[PssColumns | None, bool], str] = {
    (pss, pg14): activity_sql(pss, pg14) for pss in (None, *PssColumns) for pg14 in (False, True)
}
#: The lock rows of the given pids (a refresh's second statement), by server >= 14.
LOCKS_SQL: dict[bool, str] = {pg14: locks_sql(pg14) for pg14 in (False, True)}
