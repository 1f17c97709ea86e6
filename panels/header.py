"""One line: environment (PROD is loud), worst severity, each source's state, flags, UTC clock."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from console.model import Severity, SourceKind
from console.poller import ConsoleState
from panels.text import severity_text

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


class ConsoleHeader(Static):
    _line: Text | None = None
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

    def show(self, state: ConsoleState | None, now: float) -> None:
        self.state = state
        line = self.compose_line(now)
        if line != self._line:  # one line high: no re-layout of the screen for a new clock
            self._line = line
            self.update(line, layout=False)

    def compose_line(self, now: float) -> Text:
        out = Text()
        if self.production:
            out.append(
                f" PROD {self.environment} ", style="reverse bold" if self.monochrome else "reverse bold red"
            )
        else:
            out.append(f" {self.environment} ", style="reverse")
        state = self.state
        out.append(SEPARATOR)
        out.append_text(severity_text(state.worst if state else Severity.OK))
        if state is not None:
            out.append(SEPARATOR)
            out.append_text(self._sources(state, now))
        for flag, on in (
            ("READ-ONLY", self.read_only),
            ("PAUSED", self.paused),
            (self.mode, bool(self.mode)),
        ):
            if on:
                out.append(SEPARATOR)
                out.append(flag, style="reverse bold")
        out.append(SEPARATOR)
        out.append(time.strftime("%H:%M:%SZ", time.gmtime(now)))
        return out

    @staticmethod
    def _sources(state: ConsoleState, now: float) -> Text:
        out = Text()
        health = [k for k in state.intervals if k.kind is SourceKind.HEALTH]
        for key in state.intervals:
            if key.kind is SourceKind.HEALTH:
                continue
            out.append(f"pg:{key.name} " if key.kind is SourceKind.POSTGRES else "prom ")
            out.append_text(source_glyph(state, key, now))
            out.append(" ")
        if health:
            ok = sum(1 for k in health if (s := state.snapshots.get(k)) is not None and s.error is None
                     and getattr(s, "status", None) is not None and s.status.value == "pass")  # fmt: skip
            out.append(f"health {ok}/{len(health)} ")
            worst = next(
                (k for k in health if (s := state.snapshots.get(k)) is not None and s.error), health[0]
            )
            out.append_text(source_glyph(state, worst, now))
        out.rstrip()
        return out
