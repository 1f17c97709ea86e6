"""Wall display: large high-contrast tiles for the worst states, pages rotating every N seconds.

No action keys exist here and the app is read-only. A fixed pool of tiles is updated in place,
so memory stays flat however long the wall runs.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Grid, Vertical
from textual.screen import Screen
from textual.widgets import Digits, Static

from console.model import (
    HealthSnapshot,
    PostgresSnapshot,
    PrometheusSnapshot,
    Severity,
    SourceKey,
    SourceKind,
)
from console.poller import ConsoleState
from console.present import (
    HEALTH_BADGE,
    NO_DATA_BADGE,
    NOTHING_BADGE,
    NOTHING_WATCHED,
    STALE_BADGE,
    breach_badge,
    overall_badge,
    severity_badge,
)
from console.rules import Breach, State, format_duration, format_number
from console.sanitize import one_line
from console.timeline import TimelineEntry
from panels.header import ConsoleHeader
from panels.text import breach_age_words, break_long_words, cell, sparkline

POOL = 12
#: The newest timeline entries the wall shows under its tiles (every console's, with a shared journal).
TIMELINE_LINES = 5
#: Values drawn with 3x3 digits: numbers with a short unit (7.2%, 613.3 ms, 1m35s).
BIG_DIGITS = re.compile(r"^[0-9][0-9.,:]*\s?[a-z%]{0,3}(?:[0-9.]+[a-z]{1,2})?$")
#: Rows of a tile's content besides its value (badge 1, title 2, detail 2) and the rows the
#: 3x3 digits need: a shorter tile says its value in words (one row of three showed "╶─╮╭─╴").
TILE_ROWS, DIGIT_ROWS = 5, 3
SEVERITY_CLASS = {
    Severity.CRITICAL: "-crit",
    Severity.WARNING: "-warn",
    Severity.UNKNOWN: "-unknown",
    Severity.INFO: "-ok",
    Severity.OK: "-ok",
}
HEALTH_SEVERITY = {
    "pass": Severity.OK,
    "warn": Severity.WARNING,
    "fail": Severity.CRITICAL,
    "unknown": Severity.UNKNOWN,
}


@dataclass(frozen=True)
class TileData:
    severity: Severity
    badge: str
    title: str
    big: str
    detail: str = ""
    source: str = ""  # the source the tile is read from: its tile goes stale with it


def _data_age(state: ConsoleState, key: str, now: float) -> str | None:
    """How old the source's last good data is ("1m00s"), None when it has none."""
    good = state.last_good.get(key)
    return None if good is None else format_duration(now - good.taken_at)


def stale_marked(tile: TileData, state: ConsoleState, now: float) -> TileData:
    """A tile whose source has no fresh data says so and is never the green OK: the last
    known state stays (a stale CRIT is still the last CRIT known), with the data's age."""
    if not tile.source or not state.is_stale(tile.source, now):
        return tile
    age = _data_age(state, tile.source, now)
    age = f"data {age} old" if age else "no data yet"
    # A stale green says STALE first, as the header does ("● PASS ◌ stale" read as a pass);
    # a stale breach keeps its severity in front: it is still the last one known.
    last = tile.badge.split(" ", 1)[-1]
    badge = f"{STALE_BADGE}, last {last}" if tile.severity <= Severity.OK else f"{tile.badge} ◌ stale"
    return replace(
        tile,
        severity=max(tile.severity, Severity.UNKNOWN),
        badge=badge,
        detail=f"{age} · {tile.detail}" if tile.detail else age,
    )


class Tile(Vertical):
    DEFAULT_CSS = """
    Tile { border: thick $panel-lighten-2; padding: 0 1; height: 1fr; }
    Tile .badge { text-style: bold; height: 1; }
    Tile .title { text-style: bold; height: 2; }
    Tile .big { text-style: bold; height: 1fr; content-align: center middle; }
    Tile Digits { width: 1fr; height: 1fr; text-align: center; content-align: center middle; }
    Tile .detail { height: 2; }
    Tile.-crit { border: thick $error; background: $error 35%; }
    Tile.-warn { border: thick $warning; background: $warning 25%; }
    Tile.-unknown { border: thick $secondary; background: $secondary 25%; }
    Tile.-ok { border: thick $success 60%; }
    """

    def compose(self) -> ComposeResult:
        yield Static(classes="badge")
        yield Static(classes="title")
        yield Static(classes="big")
        yield Digits(id="tile-digits")
        yield Static(classes="detail")

    data: TileData | None = None

    def show(self, data: TileData | None) -> None:
        self.display = data is not None
        if data == self.data:  # the once-a-second tick mostly finds it unchanged
            return
        self.data = data
        if data is None:
            return
        for name in set(SEVERITY_CLASS.values()):
            self.set_class(name == SEVERITY_CLASS[data.severity], name)
        badge, _, _, detail = self.query(Static)
        badge.update(Text(data.badge))
        self._show_title()
        self._show_value()
        detail.update(cell(data.detail, 120))

    def _show_title(self) -> None:
        if self.data is None:
            return
        # Broken where the name parts, at the tile's width (none before the first layout: the
        # resize that follows breaks it); the title is as wide as the tile's content.
        title = break_long_words(one_line(self.data.title, 60), self.size.width)
        self.query_one(".title", Static).update(Text(title))

    def _show_value(self) -> None:
        if self.data is None:
            return
        big, digits = self.query_one(".big", Static), self.query_one(Digits)
        value = self.data.big
        room = self.size.height >= TILE_ROWS + DIGIT_ROWS
        large = room and bool(BIG_DIGITS.match(value)) and len(value) <= 12
        big.display, digits.display = not large, large
        if large:
            digits.update(value)
        else:
            # One row: a wrapped "Probe of http://… fails" showed "Probe of", the rest cut unsaid.
            one_row = self.size.height - TILE_ROWS <= 1
            big.styles.text_wrap, big.styles.text_overflow = (
                ("nowrap", "ellipsis") if one_row else ("wrap", "fold")
            )
            big.update(Text(value, justify="center"))

    def on_resize(self) -> None:
        self._show_title()
        self._show_value()


def breach_tiles(state: ConsoleState, now: float) -> list[TileData]:
    """Worst first, as the poller orders them; the screen shows as many as it has tiles."""
    # A breach grouped under another is that one's trouble seen from another side: no tile.
    shown = [b for b in state.breaches if b.state != State.PENDING and not b.parent]
    if not shown:
        return [_quiet_tile(state, now)]

    def tile(b: Breach) -> TileData:
        detail = f"{b.state.value} for {breach_age_words(b, now)}"
        if b.subject:
            detail += f" · {b.subject}"
        big = b.value_text if b.kind == "threshold" else (b.summary or b.value_text)
        source = "" if b.state is State.ERROR else b.source  # an ERROR says more than stale
        return TileData(b.counted_severity, breach_badge(b), b.title, big, detail, source)

    return [tile(b) for b in shown]


def _quiet_tile(state: ConsoleState, now: float) -> TileData:
    """Nothing in breach: ALL CLEAR only if every source's data is fresh. Old data (a paused
    console, a poll that no longer answers) showed ALL CLEAR across the wall, with the only
    sign of it a ◌ in the header."""
    badge = overall_badge(state, now)
    if badge == NOTHING_BADGE:
        return TileData(Severity.UNKNOWN, badge, NOTHING_WATCHED, "NOTHING WATCHED")
    if badge == NO_DATA_BADGE:
        return TileData(Severity.UNKNOWN, badge, "the first polls have not answered yet", "NO DATA YET")
    if badge != STALE_BADGE:
        return TileData(Severity.OK, badge, "no breach, no alert firing", "ALL CLEAR")
    ages = [
        f"{SourceKey.of(key).name or key} {_data_age(state, key, now) or 'no data yet'}"
        for key in state.old_sources(now)
    ]
    return TileData(
        Severity.UNKNOWN,
        badge,
        "no breach in the last data read, which is old",
        "NO FRESH DATA",
        "last good data: " + ", ".join(ages),
    )


def health_tiles(state: ConsoleState, now: float) -> list[TileData]:
    out = []
    for snap in state.snapshots.values():
        if not isinstance(snap, HealthSnapshot):
            continue
        if snap.error is not None:
            out.append(
                TileData(
                    Severity.UNKNOWN, "! ERROR", snap.target, str(snap.error.kind).upper(), snap.error.reason
                )  # a failing source: its ERROR says more than stale
            )
            continue
        latency = f"{snap.latency * 1000:.0f} ms" if snap.latency is not None else ""
        failing = ", ".join(c.name for c in snap.checks if c.status.value != "pass")
        out.append(TileData(HEALTH_SEVERITY[snap.status.value], HEALTH_BADGE[snap.status], snap.target,
                            snap.status.value.upper(), " · ".join(x for x in (latency, failing) if x), snap.source))  # fmt: skip
    return sorted(out, key=lambda t: -t.severity)


def metric_tiles(state: ConsoleState, history: dict[str, list[float | None]]) -> list[TileData]:
    breaches = {b.id: b for b in state.breaches}
    out = []
    for key, snap in state.last_good.items():  # every Prometheus server (a prometheus: list)
        if not isinstance(snap, PrometheusSnapshot):
            continue
        latest = state.snapshots.get(key)
        down = latest is not None and latest.error is not None  # one ERROR row says why
        for q in snap.queries:
            breach = breaches.get(f"prometheus.{q.id}")
            severity = Severity.UNKNOWN if down else breach.counted_severity if breach else Severity.OK
            value = "no data" if q.value is None else format_number(q.value, q.unit)
            badge = "! ERROR" if down else breach_badge(breach) if breach else "● OK"
            source = "" if down else key
            out.append(TileData(severity, badge, q.id, value, sparkline(history.get(q.id, []), 40), source))
    return sorted(out, key=lambda t: -t.severity)


def postgres_tiles(state: ConsoleState, now: float) -> list[TileData]:
    out = []
    breaches = [b for b in state.breaches if b.source.kind is SourceKind.POSTGRES]
    for key, snap in state.last_good.items():
        if not isinstance(snap, PostgresSnapshot):
            continue
        mine = [b for b in breaches if b.source == key]
        severity = max((b.counted_severity for b in mine), default=Severity.OK)
        waiting = sum(1 for s in snap.sessions if s.waiting_on_lock)
        blockers = ", ".join(f"pid {n.pid}" for n in snap.lock_tree[:3])
        big = f"{snap.connections_used}/{snap.max_connections} conn · {waiting} waiting"
        detail = f"blocked by {blockers}" if blockers else "no lock waits"
        out.append(TileData(severity, severity_badge(severity), f"Postgres {snap.cluster}", big, detail, key))
    return sorted(out, key=lambda t: -t.severity)


PAGES = ("Breaches", "Health", "Metrics", "Postgres")


def timeline_text(entries: list[TimelineEntry], source: str, problem: str = "") -> Text:
    """The newest entries, newest last, one line each: time, who, what (plain text; names and
    notes from the journal are never markup)."""
    out = Text()
    out.append(f"Timeline ({source})", style="bold")
    if problem:
        out.append(f"  ·  {problem}")
    if not entries:
        out.append("\n  nothing journaled yet")
    for entry in entries[-TIMELINE_LINES:]:
        out.append("\n")
        out.append(time.strftime("%H:%M:%SZ", time.gmtime(entry.ts)) + "  ")
        out.append(f"{entry.who:<22.22}  ", style="bold")
        out.append(entry.text)
    return out


class WallScreen(Screen):
    DEFAULT_CSS = """
    WallScreen #wall-page { height: 1; text-style: bold; padding: 0 1; }
    WallScreen Grid { grid-size: 3; grid-gutter: 1 2; padding: 0 1; height: 1fr; }
    WallScreen #wall-timeline {
        height: auto; max-height: 7; padding: 0 1; border-top: heavy $primary;
        text-wrap: nowrap; text-overflow: ellipsis;  /* one line each: a wrapped entry pushed the newest out */
    }
    """

    def __init__(self, header: ConsoleHeader, rotate: float, tiles: int) -> None:
        super().__init__()
        self.header = header
        self.rotate = rotate
        self.max_tiles = min(tiles, POOL)
        self.page = 0
        self.state: ConsoleState | None = None
        self.history: dict[str, list[float | None]] = {}
        self._seen_at: dict[str, float] | None = {}  # Prometheus source -> the snapshot recorded
        self.tiles = [Tile() for _ in range(POOL)]

    def compose(self) -> ComposeResult:
        yield self.header
        yield Static(id="wall-page")
        with Grid():
            yield from self.tiles
        timeline = Static(id="wall-timeline")
        timeline.display = False  # until there is a timeline to show
        yield timeline

    def on_mount(self) -> None:
        self.set_interval(self.rotate, self.next_page)
        self.show(self.app.state, self.app.clock())

    def next_page(self) -> None:
        self.page = (self.page + 1) % len(PAGES)
        if self.state is not None:
            self.show(self.state, self.app.clock())

    def show_timeline(self, entries: list[TimelineEntry], source: str, problem: str = "") -> None:
        timeline = self.query_one("#wall-timeline", Static)
        timeline.update(timeline_text(entries, source, problem))
        timeline.display = True

    def show(self, state: ConsoleState, now: float) -> None:
        self.state = state
        if not isinstance(self._seen_at, dict):  # None: record the next values whatever they are
            self._seen_at = {}
        for key, snap in state.snapshots.items():  # every Prometheus server
            if not isinstance(snap, PrometheusSnapshot) or snap.error is not None:
                continue
            if snap.taken_at == self._seen_at.get(key):
                continue
            self._seen_at[key] = snap.taken_at
            for q in snap.queries:
                series = self.history.setdefault(q.id, [])
                series.append(q.value)
                del series[:-60]  # bounded: flat memory over days
        name = PAGES[self.page]
        every = {
            "Breaches": lambda: breach_tiles(state, now),
            "Health": lambda: health_tiles(state, now),
            "Metrics": lambda: metric_tiles(state, self.history),
            "Postgres": lambda: postgres_tiles(state, now),
        }[name]()
        data = [stale_marked(tile, state, now) for tile in every[: self.max_tiles]]
        # More than the tiles hold: say so (the rest are the less severe ones, never a silent cut).
        count = f"  ·  {len(data)} of {len(every)}, worst first" if len(every) > len(data) else ""
        self.query_one("#wall-page", Static).update(
            Text(f"{name}{count}  ·  page {self.page + 1}/{len(PAGES)}  ·  next in {self.rotate:g}s")
        )
        grid = self.query_one(Grid)
        grid.styles.grid_size_columns = 1 if len(data) == 1 else 2 if len(data) <= 4 else 3
        for index, tile in enumerate(self.tiles):
            tile.show(data[index] if index < len(data) else None)
