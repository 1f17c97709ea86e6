"""One line: environment (PROD is loud), worst severity, each source's state, flags, UTC clock."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from console.model import HealthSnapshot, HealthStatus, SourceKey, SourceKind
from console.poller import ConsoleState
from console.present import HEALTH_BADGE
from console.rules import State
from panels.text import HEALTH_STYLE, STATE_STYLE, overall_text

if TYPE_CHECKING:
    from console.journal.shared import SharedState

SEPARATOR = " │ "


def source_glyph(state: ConsoleState, key: str, now: float) -> Text:
    snapshot = state.snapshots.get(key)
    if snapshot is None:
        return Text("…", style="dim")
    if snapshot.error is not None:
        return Text("!", style="bold magenta")
    if state.is_stale(key, now):
        return Text("◌", style="bold yellow")
    return Text("●", style="green")


def health_count(state: ConsoleState, targets: list[SourceKey], now: float) -> Text:
    """'health 1/2 ✖': the targets that pass, and the glyph of the worst of them, never the
    healthy dot while one fails (under NO_COLOR the glyph is all there is, issue 18)."""
    snapshots = [state.snapshots.get(k) for k in targets]
    passing = sum(1 for s in snapshots if isinstance(s, HealthSnapshot) and s.error is None
                  and s.status is HealthStatus.PASS)  # fmt: skip
    out = Text(f"health {passing}/{len(targets)} ")
    if any(s is not None and s.error is not None for s in snapshots):
        return out.append_text(Text("!", style=STATE_STYLE[State.ERROR]))
    statuses = [s.status for s in snapshots if isinstance(s, HealthSnapshot)]
    if len(statuses) < len(targets):
        return out.append_text(Text("…", style="dim"))
    worst = max(statuses, key=HEALTH_ORDER.index)
    if worst is not HealthStatus.PASS:
        return out.append_text(Text(HEALTH_BADGE[worst].split()[0], style=HEALTH_STYLE[worst]))
    if any(state.is_stale(k, now) for k in targets):
        return out.append_text(Text("◌", style="bold yellow"))
    return out.append_text(Text("●", style=HEALTH_STYLE[HealthStatus.PASS]))


HEALTH_ORDER = [HealthStatus.PASS, HealthStatus.UNKNOWN, HealthStatus.WARN, HealthStatus.FAIL]
GLYPH_ORDER = ["●", "…", "◌", "!"]  # fresh, no answer yet, stale, failing: the worst shows


def source_count(label: str, state: ConsoleState, keys: list[SourceKey], now: float) -> Text:
    """'pg 3/4 !': the sources of a kind with fresh data, and the worst one's glyph — the
    header of a console too narrow to name each cluster (the Fleet tab names them)."""
    glyphs = [source_glyph(state, key, now) for key in keys]
    fresh = sum(1 for glyph in glyphs if glyph.plain == "●")
    worst = max(glyphs, key=lambda glyph: GLYPH_ORDER.index(glyph.plain))
    return Text(f"{label} {fresh}/{len(keys)} ").append_text(worst)


class ConsoleHeader(Static):
    _line: Text | None = None
    _now: float | None = None
    DEFAULT_CSS = """
    ConsoleHeader { height: 1; background: $panel; }
    ConsoleHeader.-flash { text-style: reverse; }
    """

    def __init__(self, environment: str, production: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.environment = environment
        self.production = production
        self.state: ConsoleState | None = None
        self.paused = False
        self.read_only = False
        self.mode = ""  # e.g. "WALL", "DEMO"
        self.monochrome = False
        self.hidden_critical = 0  # critical breaches a panel's filter hides (set by the app)
        self.journal_problem = False  # the journal cannot be written: every action is refused
        self.shared: SharedState | None = None  # the shared journal: its problem, who else is here

    def show(self, state: ConsoleState | None, now: float) -> None:
        self.state = state
        self._now = now
        line = self.compose_line(now, self.size.width)
        if line != self._line:  # one line high: no re-layout of the screen for a new clock
            self._line = line
            self.update(line, layout=False)

    def on_resize(self) -> None:
        if self._now is not None:
            self.show(self.state, self._now)

    def compose_line(self, now: float, width: int = 0) -> Text:
        """The header for ``width`` cells (0: as wide as it comes). The clock says the screen is
        live, so it always shows: too wide, the sources are counted per kind ("pg 3/4 ●", as
        the health targets are), then what is left is cut before the clock with "…"."""
        line = self._head(now, compact=False)
        clock = Text(SEPARATOR + time.strftime("%H:%M:%SZ", time.gmtime(now)))
        if width and line.cell_len + clock.cell_len > width:
            line = self._head(now, compact=True)
            if line.cell_len + clock.cell_len > width:
                line.truncate(max(1, width - clock.cell_len), overflow="ellipsis")
        return line.append_text(clock)

    def _head(self, now: float, *, compact: bool) -> Text:
        out = Text()
        if self.production:
            out.append(
                f" PROD {self.environment} ", style="reverse bold" if self.monochrome else "reverse bold red"
            )
        else:
            out.append(f" {self.environment} ", style="reverse")
        state = self.state
        out.append(SEPARATOR)
        out.append_text(overall_text(state, now))
        if state is not None and state.intervals:
            out.append(SEPARATOR)
            out.append_text(self._sources(state, now, compact=compact))
        if self.hidden_critical:
            out.append(SEPARATOR)
            out.append(f"✖ {self.hidden_critical} CRIT hidden by a filter", style="reverse bold")
        for flag, on in (
            ("NO JOURNAL", self.journal_problem),
            ("READ-ONLY", self.read_only),
            ("PAUSED", self.paused),
            (self.mode, bool(self.mode)),
        ):
            if on:
                out.append(SEPARATOR)
                out.append(flag, style="reverse bold")
        # Who else is here goes last: a narrow header cuts it first, never PAUSED or READ-ONLY
        # (at 80 columns a wall's read "+root@vm │ READ-O…").
        if self.shared is not None:
            out.append_text(self._shared(self.shared))
        return out

    @staticmethod
    def _shared(shared: SharedState) -> Text:
        """Who else has this environment open (and where), or why the shared journal is not
        reached — in one line with the rest."""
        out = Text()
        if shared.problem:
            out.append(SEPARATOR)
            out.append(shared.line(), style="reverse bold")
        for seen in sorted(shared.presence.values(), key=lambda p: p.operator):
            out.append(SEPARATOR)
            out.append(Text(f"+{seen.operator}" + (f" ({seen.where})" if seen.where else "")))
        return out

    @staticmethod
    def _sources(state: ConsoleState, now: float, *, compact: bool = False) -> Text:
        out = Text()
        health = [k for k in state.intervals if k.kind is SourceKind.HEALTH]
        postgres = [k for k in state.intervals if k.kind is SourceKind.POSTGRES]
        counted = compact and len(postgres) > 1
        for key in state.intervals:
            if key.kind is SourceKind.HEALTH or (counted and key.kind is SourceKind.POSTGRES):
                continue
            if key.kind is SourceKind.POSTGRES:
                out.append(f"pg:{key.name} ")
            else:  # a server of a prometheus: list by its name
                out.append(f"prom:{key.name} " if key.name else "prom ")
            out.append_text(source_glyph(state, key, now))
            out.append(" ")
        if counted:
            out.append_text(source_count("pg", state, postgres, now))
            out.append(" ")
        if health:
            out.append_text(health_count(state, health, now))
        out.rstrip()
        return out
