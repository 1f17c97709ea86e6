"""What every panel shares: a title, the data age, staleness and the last error, told honestly."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static

from console.model import Snapshot, SourceKey
from console.poller import ConsoleState
from console.present import NOTHING_WATCHED
from console.rules import format_duration
from panels.text import cell

STALE_FACTOR = 3.0


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; color: $text-muted; }
    """

    _text: object = None

    def update(self, content="", *, layout: bool = False) -> None:
        # Ticked every second with mostly the same text: only a change is an update, and a
        # one-line status needs no re-layout of the screen (which redraws every scrollbar).
        if content != self._text:
            self._text = content
            super().update(content, layout=layout)


class Panel(Vertical, can_focus=False):
    """A bordered region that renders part of a ConsoleState.

    Subclasses set ``sources`` (snapshot keys they show) and implement ``render_state``. The
    status line says how old the data is, goes ``stale`` past 3x the poll interval, and keeps
    showing the last good data with the last error's one-line reason.
    """

    DEFAULT_CSS = """
    Panel { border: round $primary 50%; padding: 0 1; height: 1fr; }
    Panel:focus-within { border: round $accent; }
    Panel.-stale { border: round $warning 60%; }
    Panel.-stale > KeyedTable, Panel.-stale > .panel-body { text-opacity: 60%; }
    """

    title = "panel"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sources: tuple[str, ...] = ()
        self.state: ConsoleState | None = None
        self.status = StatusLine()

    def on_mount(self) -> None:
        self.border_title = Text(self.title)

    def update_state(self, state: ConsoleState, now: float) -> None:
        self.state = state
        self.render_state(state, now)
        self.tick(now)

    def render_state(self, state: ConsoleState, now: float) -> None:
        raise NotImplementedError

    def tick(self, now: float) -> None:
        """Once a second: refresh the data age and staleness (no re-render of the data)."""
        state = self.state
        if state is not None and not state.intervals:
            self.status.update(Text(f"nothing watched: {NOTHING_WATCHED}", style="italic"))
            return
        if state is None or not self.sources:
            self.status.update(Text("waiting for the first poll…", style="italic"))
            return
        stale, text = self.status_text(state, now)
        self.set_class(stale, "-stale")
        note = self.filter_note()
        if note is not None:  # first: at 80 columns the end of a status line is cut off
            text = Text.assemble(note, "  ", text)
        self.status.update(text)

    def stale_sources(self, state: ConsoleState, now: float) -> list[str]:
        """The sources whose last good data is older than STALE_FACTOR intervals. A source that
        never had good data is not stale (it is failing, or not polled yet: said apart)."""
        return [
            key for key in self.sources if key in state.last_good and state.is_stale(key, now, STALE_FACTOR)
        ]

    def status_text(self, state: ConsoleState, now: float) -> tuple[bool, Text]:
        """(stale, the status line). Staleness is per source: the panel is stale only when all it
        shows is old; a source without good data, or old among fresh ones, is named instead
        (one target never valid among 28 marked Health and Breaches stale for good, issue 18)."""
        latest = [state.snapshots[k] for k in self.sources if k in state.snapshots]
        if not latest:
            return False, Text("waiting for the first poll…", style="italic")
        good = {k: state.last_good[k] for k in self.sources if k in state.last_good}
        stale = self.stale_sources(state, now)
        fresh = [snapshot for key, snapshot in good.items() if key not in stale]
        out = Text()
        panel_stale = bool(good) and not fresh
        if not good:
            out.append("no data yet")
        elif panel_stale:
            newest = max(s.taken_at for s in good.values())
            out.append(f"◌ stale {format_duration(now - newest)}", style="bold yellow")
        else:
            oldest = min(s.taken_at for s in fresh)
            out.append(
                "updated just now" if now - oldest < 1 else f"updated {format_duration(now - oldest)} ago"
            )
            if stale:
                ages = ", ".join(f"{_name(k)} {format_duration(now - good[k].taken_at)}" for k in stale[:3])
                more = f" (+{len(stale) - 3})" if len(stale) > 3 else ""
                out.append(f"  ◌ stale: {ages}{more}", style="bold yellow")
        errors = [s for s in latest if s.error is not None]
        if errors:
            first = errors[0]
            out.append("  ")
            who = f"{_name(first.source)} " if len(self.sources) > 1 else ""
            out.append(f"! {who}{first.error.kind}: ", style="bold magenta")
            out.append_text(cell(first.error.reason, 100))
            if len(errors) > 1:
                out.append(f" (+{len(errors) - 1} more failing)")
        return panel_stale, out

    def filter_note(self) -> Text | None:
        """What a filter hides ("filter 'store' · 6 hidden, 1 CRIT"), when one is on."""
        return None

    def latest(self, key: str) -> Snapshot | None:
        return None if self.state is None else self.state.snapshots.get(key)

    def good(self, key: str) -> Snapshot | None:
        """The last snapshot without error: what stays on screen while a backend is down."""
        return None if self.state is None else self.state.last_good.get(key)


def _name(key: str) -> str:
    """A source as the status line names it: the target or cluster, or 'prometheus'."""
    key = SourceKey.of(key)
    return key.name or str(key)


def filter_words(text: str, hidden: int, critical: int, loud: str = "CRIT") -> Text:
    """'filter 'store' · 6 hidden, 1 CRIT' (loud when it hides a critical: ``loud`` names what)."""
    out = Text("filter ", style="bold")
    out.append_text(cell(repr(text), 24))
    out.append(f" · {hidden} hidden")
    if critical:
        out.append(f", {critical} {loud}", style="bold reverse")
    return out
