"""One Postgres cluster: connections, tx/s, sessions (filter, sort), the blocking tree, top statements."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from console.model import PostgresSnapshot, Session, SourceKey
from console.poller import ConsoleState
from console.report import lock_tree_lines
from console.rules import format_duration
from panels.base import Panel, StatusLine, filter_words
from panels.breaches import critical
from panels.messages import ShowSession, SignalBackend
from panels.tables import Fit, KeyedTable
from panels.text import cell, query_cell

SESSION_COLUMNS = [
    ("pid", "PID"),
    ("user", "User"),
    ("db", "DB"),
    ("state", "State"),
    ("duration", "Duration"),
    ("wait", "Wait"),
    ("app", "Application"),
    ("client", "Client"),
    ("query", "Query"),
]
STATEMENT_COLUMNS = [("mean", "Mean"), ("calls", "Calls"), ("total", "Total"), ("query", "Statement")]
#: The sessions table fits its width (issue 18): the query takes what is left, cut with …; the
#: client, database, application and user go first when it would get less than 20 cells or 30%
#: of the width (the
#: details view, Enter, shows them all).
SESSION_FIT = Fit(
    "query",
    20,
    drop=("client", "db", "app", "user"),
    nominal=(("client", 16), ("db", 14), ("app", 16), ("user", 14)),
    flex_share=0.3,
)
STATEMENT_FIT = Fit("query", 10)

FILTERS: dict[str, Callable[[Session], bool]] = {
    "all": lambda s: True,
    "active": lambda s: s.state == "active",
    "idle in transaction": lambda s: s.state.startswith("idle in transaction"),
    "waiting": lambda s: s.waiting_on_lock,
}
SORTS = ("attention", "duration ↓", "duration ↑", "pid", "user", "state")
#: Lines of the blocking tree kept for the screen (it shows at most half the panel's height): a
#: waiter blocked by several sessions appears under each, and 100 waiters made 2000 lines whose
#: layout cost more than the rest of a refresh.
LOCK_LINES = 60
TEXT_CACHE = 20_000  # distinct cell texts kept for reuse (see PostgresPanel._text)
DURATION = next(i for i, (key, _) in enumerate(SESSION_COLUMNS) if key == "duration")


def session_key(session: Session) -> str:
    return f"{session.pid}:{session.backend_start or 0:.6f}"


def short_state(state: str) -> str:
    """'idle in tx' for 'idle in transaction' (the table's room goes to the query)."""
    return state.replace("idle in transaction", "idle in tx")


IDLE_WAIT = "Client:ClientRead"


def wait_words(session: Session) -> str:
    """What the session waits on, as ``type:event``; nothing for an idle session waiting on its
    client (Client:ClientRead is what idle means: in every idle row it took the query's room)."""
    waits = f"{session.wait_event_type}:{session.wait_event}" if session.wait_event_type else ""
    return "" if waits == IDLE_WAIT and session.state.startswith("idle") else waits


def attention(session: Session, blockers: frozenset[int]) -> int:
    """What needs attention first: a session in a lock chain (waiting on a lock, or the root
    that blocks others), then an active query, then one idle in transaction, then the rest."""
    if session.waiting_on_lock or session.pid in blockers:
        return 0
    if session.state == "active":
        return 1
    if session.state.startswith("idle in transaction"):
        return 2
    return 3


def session_duration(snapshot: PostgresSnapshot, session: Session) -> float | None:
    """Active: since the query started; idle in transaction: since the transaction went idle."""
    moment = session.query_start if session.state == "active" else session.state_change
    return snapshot.age(moment)


class PostgresPanel(Panel):
    BINDINGS = [
        Binding("a", "filter('active')", "Active", id="pg_filter_active", show=False),
        Binding("i", "filter('idle in transaction')", "Idle in tx", id="pg_filter_idle", show=False),
        Binding("w", "filter('waiting')", "Waiting", id="pg_filter_waiting", show=False),
        Binding("e", "filter('all')", "All", id="pg_filter_all", show=False),
        Binding("s", "sort", "Sort", id="pg_sort"),
        Binding("l", "toggle_side", "Locks/stmts", id="pg_side"),
        Binding("c", "signal('cancel')", "Cancel query", id="pg_cancel"),
        Binding("K", "signal('terminate')", "Terminate", id="pg_terminate"),
    ]
    DEFAULT_CSS = """
    PostgresPanel #pg-body { height: 1fr; }
    PostgresPanel #pg-side { width: 45%; margin-left: 1; }
    PostgresPanel.-compact #pg-side { width: 35%; }
    PostgresPanel #pg-locks { height: auto; max-height: 50%; text-wrap: nowrap; text-overflow: ellipsis; }
    PostgresPanel .side-title { text-style: bold; height: 1; }
    PostgresPanel .pg-summary { height: auto; max-height: 3; }
    """

    def __init__(self, cluster: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.title = f"Postgres {cluster}"
        self.sources = (SourceKey.postgres(cluster),)
        self.summary = StatusLine(classes="panel-body pg-summary")
        self.sessions = KeyedTable(columns=SESSION_COLUMNS, id="pg-sessions", fit=SESSION_FIT)
        self.locks = Static(classes="panel-body", id="pg-locks")
        self.statements = KeyedTable(
            columns=STATEMENT_COLUMNS, id="pg-statements", cursor_type="none", fit=STATEMENT_FIT
        )
        self.filter_name = "all"
        self.sort_index = 0
        self.text_filter = ""
        self.hidden = 0  # sessions the filters hide
        self.hidden_critical = 0  # ... that a critical breach points at
        self._sessions: dict[str, Session] = {}
        # Row key -> (the session, its cells but the duration): most sessions are the same from
        # one refresh to the next, and 1000 rows of 9 Text cells cost more than comparing them.
        self._cell_cache: dict[str, tuple[Session, list[Text]]] = {}
        self._cached_for: PostgresSnapshot | None = None
        self._built: list[tuple[str, Session, float | None, list[Text]]] = []
        self._sorted: tuple[int, list[tuple[str, Session, list[Text]]]] | None = None
        self._texts: dict[tuple, Text] = {}  # see _text
        self._texts_old: dict[tuple, Text] = {}  # the texts of the snapshot before
        self._shown: dict[int, Text] = {}  # id(widget) -> the Text it shows
        self._statements_subtitle: str | None = None
        self._statements_shown: tuple = ()  # the statements list the table was last synced with
        self._previous: PostgresSnapshot | None = None
        self._breaches_seen: tuple = ()  # the state's breaches at the last render
        #: Set by the app with more than three clusters (tabs, the Fleet tab the overview): a
        #: panel whose tab is not shown is not rendered; its tab shown, it renders at once.
        self.behind_tab = False
        self._behind = False
        self._tps: float | None = None

    def compose(self) -> ComposeResult:
        yield self.status
        yield self.summary
        with Horizontal(id="pg-body"):
            yield self.sessions
            with Vertical(id="pg-side"):
                yield Static(Text("Blocking tree"), classes="side-title")
                yield self.locks
                yield Static(Text("Top statements (mean time)"), classes="side-title")
                yield self.statements

    @property
    def snapshot(self) -> PostgresSnapshot | None:
        good = self.good(self.sources[0])
        return good if isinstance(good, PostgresSnapshot) else None

    def render_state(self, state: ConsoleState, now: float) -> None:
        snap = self.snapshot
        if snap is None:
            return
        # Every source's poll renders every panel: with 20 clusters, nineteen of twenty renders
        # of this panel had nothing new (2940 renders in 15 s, 60% of the console's CPU: bench/
        # FLEET_RESULTS.md). Its own snapshot unchanged, the table and the side are as drawn; only
        # a filter that hides rows reads the breaches (hidden_critical). Keys re-render it
        # through refresh_view.
        if snap is self._previous and (not self.hidden or state.breaches is self._breaches_seen):
            return
        if self.behind_tab and not self.has_class("-active"):
            self._behind = True  # drawn when its tab is shown (on_descendant_focus)
            return
        self._behind = False
        self._breaches_seen = state.breaches
        if snap is not self._previous:
            self._tps = self._rate(self._previous, snap)
            self._previous = snap
        self._render_sessions(snap)
        self._render_side(snap)
        self._show(self.summary, self._summary(snap))

    @staticmethod
    def _rate(before: PostgresSnapshot | None, after: PostgresSnapshot) -> float | None:
        if before is None or before.xact_total is None or after.xact_total is None:
            return None
        elapsed = (after.server_now or after.taken_at) - (before.server_now or before.taken_at)
        return (after.xact_total - before.xact_total) / elapsed if elapsed > 0 else None

    def _render_sessions(self, snap: PostgresSnapshot) -> None:
        keep = FILTERS[self.filter_name]
        needle = self.text_filter.lower()
        rows = [
            row
            for row in self._sorted_rows(snap)
            if keep(row[1]) and (not needle or needle in self._haystack(row[1]))
        ]
        self._sessions = {key: session for key, session, _ in rows}
        self.sessions.sync([(key, cells) for key, _, cells in rows])
        everyone = self._sorted_rows(snap)
        self.hidden = len(everyone) - len(rows)
        self.hidden_critical = 0
        if self.hidden and self.state is not None:
            # A session a critical breach points at, filtered out of sight.
            pointed = {b.pid for b in self.state.breaches if b.source == self.sources[0] and critical(b)}
            shown = {session.pid for _, session, _ in rows}
            self.hidden_critical = len({pid for pid in pointed if pid is not None and pid not in shown})

    @staticmethod
    def _haystack(session: Session) -> str:
        fields = (str(session.pid), session.user, session.database, session.application, session.state)
        return " ".join((*fields, session.query)).lower()

    def _sorted_rows(self, snap: PostgresSnapshot) -> list[tuple[str, Session, list[Text]]]:
        """Every session's row (key, session, cells) in the current sort order, built once per
        snapshot and sort: a filter key then only picks rows, and passes the table the same
        cell lists, which it knows unchanged by identity (a key press at 1000 sessions must not
        rebuild 1000 rows)."""
        if snap is not self._cached_for:
            self._cached_for = snap
            self._sorted = None
            self._texts_old, self._texts = self._texts, {}
            cache, fresh = self._cell_cache, {}
            built = []
            for session in snap.sessions:
                key = session_key(session)
                cached = cache.get(key)
                if cached is None or (cached[0] is not session and cached[0] != session):
                    cached = (session, self._cells(session, None))
                fresh[key] = cached  # sessions that are gone are forgotten
                duration = session_duration(snap, session)
                shown = "" if duration is None else format_duration(duration)
                cells = list(cached[1])
                cells[DURATION] = self._text(Text, shown)
                built.append((key, session, duration, cells))
            self._cell_cache = fresh
            self._built = built
        if self._sorted is None or self._sorted[0] != self.sort_index:
            ordered = sorted(self._built, key=self._sort_key(snap))
            self._sorted = (self.sort_index, [(key, s, cells) for key, s, _, cells in ordered])
        return self._sorted[1]

    def _show(self, widget: Static, text: Text) -> None:
        """Update a Static only when its text changed, and re-lay out the screen only when its
        height changes: a layout pass costs CPU and redraws every scrollbar on the screen."""
        old = self._shown.get(id(widget))
        if old == text:
            return
        self._shown[id(widget)] = text
        widget.update(text, layout=old is None or self._height(widget, old) != self._height(widget, text))

    def _height(self, widget: Static, text: Text) -> int:
        if text.no_wrap:
            return text.plain.count("\n") + 1
        return len(text.wrap(self.app.console, max(1, widget.content_size.width)))

    def _sort_key(
        self, snap: PostgresSnapshot
    ) -> Callable[[tuple[str, Session, float | None, list[Text]]], object]:
        mode = SORTS[self.sort_index]
        if mode == "attention":
            blockers = frozenset(root.pid for root in snap.lock_tree)
            return lambda row: (attention(row[1], blockers), row[2] is None, -(row[2] or 0.0), row[1].pid)
        if mode.startswith("duration"):
            sign = -1 if mode == "duration ↓" else 1
            return lambda row: (row[2] is None, sign * (row[2] or 0.0), row[1].pid)
        field = {"pid": "pid", "user": "user", "state": "state"}[mode]
        return lambda row: (getattr(row[1], field), row[1].pid)

    def _cells(self, session: Session, duration: float | None) -> list[Text]:
        wait = wait_words(session)
        style = "bold red" if session.waiting_on_lock else ""
        text = self._text
        return [
            Text(str(session.pid)),
            text(cell, session.user, 14),
            text(cell, session.database, 14),
            text(cell, short_state(session.state), 20),
            text(Text, "" if duration is None else format_duration(duration)),
            text(cell, wait, 18, style),
            text(cell, session.application, 16),
            text(cell, session.client, 16),
            text(query_cell, session.query, 100),
        ]

    def _text(self, make: Callable[..., Text], *args: object) -> Text:
        """One Text per distinct cell value: sessions share users, states, durations, clients,
        applications and often queries, and a Text costs more to build than to look up (1000
        durations and the cells of 200 churning sessions each refresh). Texts in a table are
        never changed in place, so one object can stand in several cells. A text lives for two
        snapshots unless used again (a bound that filled in ten minutes of a soak looked like a
        leak, and a full gen-2 garbage collection walked every cached text)."""
        key = (make, *args)
        found = self._texts.get(key)
        if found is None:
            found = self._texts_old.pop(key, None)
            if found is None:  # (not `or`: an empty Text is falsy, and would be made anew each time)
                found = make(*args)
            if len(self._texts) >= TEXT_CACHE:
                self._texts.clear()
            self._texts[key] = found
        return found

    def _render_side(self, snap: PostgresSnapshot) -> None:
        if snap.lock_tree:
            lines = lock_tree_lines(snap.lock_tree, limit=LOCK_LINES + 1)
            if len(lines) > LOCK_LINES:
                total = sum(1 for root in snap.lock_tree for _ in root.walk())  # a line per node
                hidden = total - LOCK_LINES + 1
                lines = [
                    *lines[: LOCK_LINES - 1],
                    f"… {hidden} more lines (the snapshot command prints them all)",
                ]
            tree = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")
            self._show(self.locks, tree)
        else:
            self._show(self.locks, Text("no session is waiting on a lock", style="italic"))
        subtitle = None
        if not snap.statements:
            self._statements_shown = ()
            self.statements.sync([])
            subtitle = f"pg_stat_statements: {snap.statements_status or 'not available'}"
        elif snap.statements is not self._statements_shown:  # the source passes the same list
            self._statements_shown = snap.statements  # between reads (every statements_every s)
            # One queryid has a row per role and database: the nth row of a queryid is key "id#n".
            seen: dict[str, int] = {}
            rows = []
            for i, st in enumerate(snap.statements):
                base = str(st.queryid if st.queryid is not None else f"?{i}")
                seen[base] = seen.get(base, 0) + 1
                key = base if seen[base] == 1 else f"{base}#{seen[base]}"
                rows.append((key, [Text(f"{st.mean_ms:.1f} ms"), Text(str(st.calls)),
                                   Text(f"{st.total_ms / 1000:.1f} s"), query_cell(st.query, 100)]))  # fmt: skip
            self.statements.sync(rows)
        if subtitle != self._statements_subtitle:  # setting it redraws the whole table
            self._statements_subtitle = subtitle
            self.statements.border_subtitle = None if subtitle is None else Text(subtitle)

    def _summary(self, snap: PostgresSnapshot) -> Text:
        used, limit = snap.connections_used, snap.max_connections
        share = f" ({used / limit:.0%})" if limit else ""
        waiting = sum(1 for s in snap.sessions if s.waiting_on_lock)
        idle_tx = sum(1 for s in snap.sessions if s.state.startswith("idle in transaction"))
        active = sum(1 for s in snap.sessions if s.state == "active")
        tps = "—" if self._tps is None else f"{self._tps:.1f}"
        out = Text(f"PG {snap.server_version.split(' ')[0]} · conn {used}/{limit}{share} · {tps} tx/s · ")
        out.append(f"active {active} · idle-in-tx {idle_tx} · ")
        out.append(f"waiting {waiting}", style="bold red" if waiting else "")
        out.append(f" · filter {self.filter_name} (a/i/w/e) · sort {SORTS[self.sort_index]}")
        if self.text_filter:
            out.append(" · /")
            out.append_text(cell(self.text_filter, 20))
        if snap.lock_tree:
            out.append(f" · {len(snap.lock_tree)} blocker(s) (l)", style="bold red")
        for note in snap.notes[:2]:
            out.append("\n")
            out.append_text(cell(f"note: {note}", 140))
        return out

    @property
    def selected(self) -> Session | None:
        key = self.sessions.selected_key
        return None if key is None else self._sessions.get(key)

    def refresh_view(self) -> None:
        if self.state is not None and self.snapshot is not None:
            self._render_sessions(self.snapshot)
            self._show(self.summary, self._summary(self.snapshot))
            self.tick(self.app.clock())

    def filter_note(self) -> Text | None:
        if self.text_filter:
            return filter_words(self.text_filter, self.hidden, self.hidden_critical)
        if self.filter_name != "all":
            return Text(f"showing {self.filter_name} only (e: all) · {self.hidden} hidden", style="bold")
        return None

    def action_filter(self, name: str) -> None:
        self.filter_name = name
        self.refresh_view()

    def action_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self.refresh_view()

    def on_descendant_focus(self, event) -> None:
        # Its tab shown (the app focuses its table): draw what was skipped meanwhile.
        if self._behind and self.state is not None:
            self.render_state(self.state, self.app.clock())

    def on_resize(self, event) -> None:
        # Beside the sessions the side column takes less of a narrower panel: the sessions keep
        # room for their query (issue 18).
        self.set_class(event.size.width < 156, "-compact")

    def action_toggle_side(self) -> None:
        # At narrow sizes the side column replaces the sessions table: keep focus in the panel.
        self.toggle_class("-side")
        (self.statements if self.has_class("-side") else self.sessions).focus()

    def action_signal(self, kind: str) -> None:
        if (session := self.selected) is not None:
            self.post_message(SignalBackend(kind, self.cluster, session))

    def on_data_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        event.stop()
        if event.data_table is self.sessions and (session := self.selected) is not None:
            self.post_message(ShowSession(self.cluster, session))
