"""The shared journal: one table in a Postgres the team already runs, for every console of an
environment (configured as ``journal: {shared: {dsn, table}}``).

The local file stays the journal of record: every event is fsynced there first (the writer's
guarantees do not change). :class:`SharedJournal` then copies the local file's new lines into
the table, in order, each event once: the table's ``id`` is unique and an insert of an id already
there does nothing, so a copy interrupted at any moment (kill -9, a dropped connection) is simply
done again from the last line known to be in the table (``<journal>.shared``, a byte offset).
The console's role needs INSERT and SELECT only: history cannot be rewritten.

Other consoles' events come back by ``seq`` (LISTEN on the table's channel wakes the reader at
once; a poll every second is the fallback). Claims — "this console is acting on that target" —
are session advisory locks on a connection of their own: a console that dies loses its claims
with its connection. Presence (who has the environment open, and where) is a NOTIFY every few
seconds on a second channel: nothing is written for it.

Every failure is a state, never an exception to the console: :attr:`SharedJournal.status` says in
one line what is wrong and how many events wait ("shared journal unreachable — 7 events queued").
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from console.config import SharedJournal as SharedSettings
from console.journal.claims import Claim, done_by_others
from console.journal.events import JournalEvent, from_json
from console.journal.kinds import Kind
from console.journal.reader import merge  # noqa: F401  (re-exported for callers of the shared journal)
from console.pg import classify_error, connect
from console.sanitize import one_line

#: How often the reader looks for other consoles' events when no notification came.
POLL_SECONDS = 1.0
#: How often a console says it is here, and how long it counts as here after it last said so.
PRESENCE_EVERY = 3.0
PRESENCE_FOR = 10.0
BATCH = 500


def quoted(table: str) -> str:
    """A validated table name (config: ``[a-z_][a-z0-9_]*``, optionally schema-qualified),
    quoted as an identifier. Identifiers cannot be bound like values; the name was checked."""
    return ".".join(f'"{part}"' for part in table.split("."))


def channel(table: str, suffix: str = "") -> str:
    return table.replace(".", "_") + suffix


def setup_sql(table: str) -> list[str]:
    """What ``incident-console journal init`` runs: idempotent."""
    name, chan = quoted(table), channel(table)
    base = table.split(".")[-1]
    func = quoted(f"{table}_notify")  # next to the table, in its schema
    return [
        f"""CREATE TABLE IF NOT EXISTS {name} (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    ts timestamptz NOT NULL,
    environment text NOT NULL,
    incident text NOT NULL DEFAULT '',
    author text NOT NULL DEFAULT '',
    kind text NOT NULL,
    record jsonb NOT NULL
)""",
        f'CREATE INDEX IF NOT EXISTS "{base}_env_seq" ON {name} (environment, seq)',
        f"""CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{chan}', NEW.environment);
    RETURN NEW;
END $$""",
        f'DROP TRIGGER IF EXISTS "{base}_notify" ON {name}',
        f'CREATE TRIGGER "{base}_notify" AFTER INSERT ON {name} FOR EACH ROW EXECUTE FUNCTION {func}()',
    ]


def grants(table: str, role: str = "<console role>") -> list[str]:
    """What an operator grants the consoles' role: INSERT and SELECT only, never UPDATE or
    DELETE (history cannot be rewritten)."""
    name, sequence = quoted(table), quoted(f"{table}_seq_seq")
    if not role.startswith("<"):  # a placeholder stays as it is; a name is an identifier
        role = '"' + role.replace('"', '""') + '"'
    return [
        f"GRANT SELECT, INSERT ON {name} TO {role};",
        f"GRANT USAGE ON SEQUENCE {sequence} TO {role};",
    ]


async def init_store(settings: SharedSettings, role: str = "<console role>") -> list[str]:
    """Create the table, its index and its notify trigger (idempotent); the GRANT lines."""
    conn = await connect(settings.cluster(), purpose="journal init")
    try:
        async with conn.transaction():
            for statement in setup_sql(settings.table):
                await conn.execute(statement)
    finally:
        await conn.close()
    return grants(settings.table, role)


async def fetch_events(
    settings: SharedSettings, environments: Iterable[str] | None, since: float | None = None
) -> list[JournalEvent]:
    """Every event of the shared table (of ``environments``; None: all) since ``since``, for a
    report: one connection, read in pages, oldest first."""
    conn = await connect(settings.cluster(), purpose="journal read")
    wanted = None if environments is None else list(environments)
    try:
        out: list[JournalEvent] = []
        seq = 0
        while True:
            rows = await conn.fetch(
                f"SELECT seq, record::text FROM {quoted(settings.table)} "
                "WHERE seq > $1 AND ($2::text[] IS NULL OR environment = ANY($2::text[])) "
                "AND ($3::float8 IS NULL OR ts >= to_timestamp($3)) ORDER BY seq LIMIT $4",
                seq,
                wanted,
                since,
                BATCH * 10,
            )
            for row_seq, text in rows:
                seq = row_seq
                with contextlib.suppress(ValueError):
                    if (event := from_json(json.loads(text))) is not None:
                        out.append(event)
            if len(rows) < BATCH * 10:
                return out
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class Presence:
    console: str
    operator: str
    where: str  # "runbook lock-contention, step 3" or ""
    seen: float


@dataclass
class SharedState:
    """What the console shows about the shared journal."""

    configured: bool = False
    connected: bool = False
    queued: int = 0  # local events not yet in the table
    problem: str = ""  # one line, "" when all is well
    presence: dict[str, Presence] = field(default_factory=dict)

    def line(self) -> str:
        if not self.configured:
            return ""
        if self.problem:
            return f"shared journal {self.problem} — {self.queued} events queued"
        return f"shared journal ok{f', {self.queued} queued' if self.queued else ''}"


class SharedJournal:
    """Copies this machine's journal into the shared table and reads the others' events back;
    holds this console's claims (console/journal/claims.py) as advisory locks."""

    shared = True

    def __init__(
        self,
        settings: SharedSettings,
        local: Path,
        *,
        environment: str,
        console: str,
        operator: str,
        on_events: Callable[[list[JournalEvent]], Any] | None = None,
        clock: Callable[[], float] = time.time,
        copy: bool = True,
        announce: bool = True,
    ) -> None:
        self.settings = settings
        # A reader only (serve's engine, console/feed.py): copy no local line, announce no presence.
        self.copy = copy
        self.announce = announce
        self.local = Path(local)
        self.cursor_path = self.local.with_name(self.local.name + ".shared")
        self.environment = environment
        self.console = console
        self.operator = operator
        self.on_events = on_events
        self.clock = clock
        self.state = SharedState(configured=True)
        self.where = ""  # this console's presence detail
        self._conn: asyncpg.Connection | None = None
        self._claims_conn: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._seq = 0  # the last table row read
        self._events: dict[str, JournalEvent] = {}  # other consoles' events read, by id
        self._held: set[int] = set()  # advisory lock keys this console holds

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Copy and read until cancelled; every failure becomes :attr:`state`."""
        last_presence = 0.0
        while True:
            try:
                # A bound on the whole round as well (LISTEN at connect has none of its own).
                async with asyncio.timeout(self.settings.connect_timeout + 4 * self._bound):
                    conn = await self._connection()
                    local = await self._copy(conn) if self.copy else ""
                    await self._read(conn)
                    if self.announce and self.clock() - last_presence >= PRESENCE_EVERY:
                        last_presence = self.clock()
                        await self._announce(conn)
                self.state.connected, self.state.problem = True, local
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.state.connected = False
                self.state.problem = self._explain(exc)
                await self._drop()
            self.state.queued = self.pending_count() if self.copy else 0
            self._expire_presence()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    def wake(self) -> None:
        """Copy now (a local event was just written)."""
        self._wake.set()

    async def aclose(self) -> None:
        await self._drop()

    # -- copying this machine's lines -------------------------------------------------------

    def _cursor(self) -> int:
        try:
            return int(self.cursor_path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _save_cursor(self, offset: int) -> None:
        tmp = self.cursor_path.with_name(self.cursor_path.name + ".tmp")
        tmp.write_text(f"{offset}\n")
        os.replace(tmp, self.cursor_path)

    def _new_lines(self, limit: int = BATCH) -> tuple[list[dict[str, Any]], int]:
        """Whole lines after the cursor (at most ``limit``) and the offset after the last one."""
        start = self._cursor()
        try:
            with open(self.local, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if start > size:  # the file was replaced: start again (ids keep it exactly once)
                    start = 0
                handle.seek(start)
                data = handle.read()
        except FileNotFoundError:
            return [], start
        records: list[dict[str, Any]] = []
        offset = start
        for line in data.split(b"\n")[:-1]:  # the last piece is a partial line or b""
            offset += len(line) + 1
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line stays torn; readers skip it too
            if isinstance(record, dict) and from_json(record) is not None:
                records.append(record)
            if len(records) >= limit:
                break
        return records, offset

    def pending_count(self) -> int:
        try:
            with open(self.local, "rb") as handle:
                handle.seek(min(self._cursor(), os.fstat(handle.fileno()).st_size))
                return handle.read().count(b"\n")
        except OSError:  # none yet, or unreadable (the copy says why)
            return 0

    async def _copy(self, conn: asyncpg.Connection) -> str:
        """This machine's new lines into the table; why they could not be read, or "". A local
        file that cannot be read stops neither reading the others' events nor the loop."""
        while True:
            try:
                records, offset = self._new_lines()
            except OSError as exc:
                return f"cannot copy from {self.local}: {exc.strerror or exc}"
            if records:
                rows = []
                for record in records:
                    event = from_json(record)
                    assert event is not None
                    rows.append(
                        (event.id, event.ts, event.environment, event.incident, event.operator,
                         str(event.kind), json.dumps(dict(event.raw) | {"id": event.id}, ensure_ascii=False))
                    )  # fmt: skip
                await conn.executemany(
                    f"INSERT INTO {quoted(self.settings.table)} "
                    "(id, ts, environment, incident, author, kind, record) "
                    "VALUES ($1, to_timestamp($2), $3, $4, $5, $6, $7::jsonb) ON CONFLICT (id) DO NOTHING",
                    rows,
                    timeout=self._bound,
                )
            if offset == self._cursor():
                return ""
            self._save_cursor(offset)
            if not records:
                return ""

    # -- reading the others' events ---------------------------------------------------------

    async def _read(self, conn: asyncpg.Connection) -> None:
        while True:
            rows = await conn.fetch(
                f"SELECT seq, record::text FROM {quoted(self.settings.table)} "
                "WHERE environment = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                self.environment,
                self._seq,
                BATCH,
                timeout=self._bound,
            )
            fresh: list[JournalEvent] = []
            for seq, text in rows:
                self._seq = max(self._seq, seq)
                with contextlib.suppress(ValueError):
                    event = from_json(json.loads(text))
                    if event is not None and event.console != self.console and event.id not in self._events:
                        self._events[event.id] = event
                        fresh.append(event)
            if fresh and self.on_events is not None:
                self.on_events(fresh)
            if len(rows) < BATCH:
                return

    def events(self) -> list[JournalEvent]:
        """Other consoles' events read so far (this environment's), oldest first."""
        return sorted(self._events.values(), key=lambda e: e.ts)

    # -- presence -----------------------------------------------------------------------------

    async def _announce(self, conn: asyncpg.Connection) -> None:
        payload = json.dumps(
            {"console": self.console, "operator": self.operator, "environment": self.environment,
             "where": self.where, "ts": self.clock()}
        )  # fmt: skip
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            channel(self.settings.table, "_presence"),
            payload,
            timeout=self._bound,
        )

    def _on_presence(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            doc = json.loads(payload)
            if doc["environment"] != self.environment or doc["console"] == self.console:
                return
            self.state.presence[str(doc["console"])] = Presence(
                str(doc["console"]),
                one_line(doc["operator"], 80),
                one_line(doc.get("where", ""), 120),
                self.clock(),
            )

    def _expire_presence(self) -> None:
        now = self.clock()
        for key, seen in list(self.state.presence.items()):
            if now - seen.seen > PRESENCE_FOR:
                del self.state.presence[key]

    # -- claims -------------------------------------------------------------------------------

    @staticmethod
    def lock_key(environment: str, target: str) -> int:
        digest = hashlib.blake2b(f"{environment}\0{target}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    async def claim(self, targets: Iterable[str]) -> Claim:
        """Take every target, or none: a Claim that is not held means this console may act."""
        conn = await self._claims_connection()
        taken: list[int] = []
        for target in targets:
            key = self.lock_key(self.environment, target)
            if key in self._held or await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", key, timeout=self._bound
            ):
                taken.append(key)
                self._held.add(key)
                continue
            for held in taken:
                await self._unlock(conn, held)
            return await self.holder(target)
        return Claim(held=False)

    async def peek(self, targets: Iterable[str]) -> Claim:
        """Who holds one of the targets now, without keeping them."""
        conn = await self._claims_connection()
        for target in targets:
            key = self.lock_key(self.environment, target)
            if key in self._held:
                continue
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key, timeout=self._bound):
                return await self.holder(target)
            await self._unlock(conn, key)
        return Claim(held=False)

    async def recently_done(self, targets: Iterable[str], scope: str = "") -> Claim:
        """Another console's action on one of the targets that just succeeded and is still the
        newest there, from the events read back from the shared journal."""
        return done_by_others(self._events.values(), self.console, list(targets), self.clock(), scope)

    async def release(self, targets: Iterable[str]) -> None:
        conn = self._claims_conn
        if conn is None or conn.is_closed():
            self._held.clear()
            return
        for target in targets:
            key = self.lock_key(self.environment, target)
            if key in self._held:
                await self._unlock(conn, key)

    async def _unlock(self, conn: asyncpg.Connection, key: int) -> None:
        self._held.discard(key)
        with contextlib.suppress(Exception):
            await conn.fetchval("SELECT pg_advisory_unlock($1)", key, timeout=self._bound)

    async def holder(self, target: str) -> Claim:
        """Who holds ``target``: the newest claim journaled for it by another console."""
        conn = await self._connection()
        row = await conn.fetchrow(
            f"SELECT author, record->'plan'->>'summary', extract(epoch FROM ts) "
            f"FROM {quoted(self.settings.table)} "
            "WHERE environment = $1 AND kind = $3 AND record->'claims' ? $2 "
            "ORDER BY seq DESC LIMIT 1",
            self.environment,
            target,
            str(Kind.ACTION_CLAIMED),
            timeout=self._bound,
        )
        if row is None:
            return Claim(held=True)
        return Claim(held=True, by=row[0], what=row[1] or "", since=float(row[2]))

    # -- connections --------------------------------------------------------------------------

    @property
    def _bound(self) -> float:
        """The client's own limit on a statement: a store that hangs (the server-side
        statement_timeout never answers through a frozen network) must not hang the console."""
        return self.settings.statement_timeout + 1.0

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self.settings.cluster(), purpose="shared journal")
            await self._conn.add_listener(channel(self.settings.table), lambda *args: self._wake.set())
            await self._conn.add_listener(channel(self.settings.table, "_presence"), self._on_presence)
        return self._conn

    async def _claims_connection(self) -> asyncpg.Connection:
        if self._claims_conn is None or self._claims_conn.is_closed():
            self._held.clear()
            self._claims_conn = await connect(self.settings.cluster(), purpose="claims")
        return self._claims_conn

    async def _drop(self) -> None:
        for name in ("_conn", "_claims_conn"):
            conn = getattr(self, name)
            setattr(self, name, None)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 2)
                if not conn.is_closed():
                    conn.terminate()
        self._held.clear()

    def _explain(self, exc: BaseException) -> str:
        if isinstance(exc, asyncpg.UndefinedTableError):
            return f"table {self.settings.table} is missing (incident-console journal init)"
        if isinstance(exc, asyncpg.InsufficientPrivilegeError):
            return f"refused: {one_line(str(exc), 120)} (the role needs INSERT and SELECT)"
        if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            return "read-only (a standby?)"
        if isinstance(exc, TimeoutError):
            return "unreachable (no answer in time)"
        error = classify_error(exc, self.settings.cluster())
        return "unreachable" if error.kind.value in ("unreachable", "timeout") else f"{error}"
