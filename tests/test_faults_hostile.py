"""The hostile corpus (tests/data/hostile_corpus.json) through the real backends and the real app.

Every entry goes where an attacker can put it: Postgres query text, application_name, role and
database names; Prometheus label values and alert annotations (a real Prometheus scraping an
exporter with hostile labels, and a rule file with a hostile annotation); health JSON messages
and check names. Each must render literally and cut to size, trigger nothing (no markup action,
no escape sequence reaching the terminal) and crash nothing.
"""

from __future__ import annotations

import asyncio

from console.model import ErrorKind
from tests.data.hostile_corpus import BYTES


async def _poll_until(source, condition, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        snap = await source.poll()
        if condition(snap) or asyncio.get_running_loop().time() > deadline:
            return snap
        await asyncio.sleep(0.2)


# --- Postgres ---------------------------------------------------------------------------------


async def test_query_text_that_is_not_utf8_leaves_the_postgres_view_working(fault_pg, pg_source):
    """A session in a SQL_ASCII database may run any bytes; pg_stat_activity hands them as they
    are to a UTF-8 client. Before the fix the whole refresh failed on the decode, classified as
    "config error: bad connection settings": one such session blinded the Postgres panel."""
    entry = BYTES[0]
    fault_pg.psql_bytes(fault_pg.ascii_db, b"SELECT '" + entry.raw + b"', pg_sleep(60);\n")
    source = pg_source(fault_pg.server)

    def seen(snap) -> bool:
        return snap.ok and any("pg_sleep(60)" in s.query for s in snap.sessions)

    snap = await _poll_until(source, lambda s: seen(s) or (s.error and s.error.kind is not ErrorKind.TIMEOUT))
    assert snap.ok, snap.error
    session = next(s for s in snap.sessions if "pg_sleep(60)" in s.query)
    assert entry.visible in session.query and session.database == fault_pg.ascii_db
