"""What every panel shares: a title, the data age, staleness and the last error, told honestly."""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static

from console.model import Snapshot
from console.poller import ConsoleState
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
        if state is None or not self.sources:
            self.status.update(Text("waiting for the first poll…", style="italic"))
            return
        stale = any(state.is_stale(key, now, STALE_FACTOR) for key in self.sources)
        self.set_class(stale, "-stale")
        self.status.update(self.status_text(state, now, stale))

    def status_text(self, state: ConsoleState, now: float, stale: bool) -> Text:
        latest = [state.snapshots[k] for k in self.sources if k in state.snapshots]
        good = [state.last_good[k] for k in self.sources if k in state.last_good]
        if not latest:
            return Text("waiting for the first poll…", style="italic")
        oldest_good = min((s.taken_at for s in good), default=None)
        if oldest_good is None:
            age = "no data yet"
        elif now - oldest_good < 1:
            age = "updated just now"
        else:
            age = f"updated {format_duration(now - oldest_good)} ago"
        out = Text()
        if stale:
            since = "never" if oldest_good is None else format_duration(now - oldest_good)
            out.append(f"◌ stale {since}", style="bold yellow")
        else:
            out.append(age)
        errors = [s for s in latest if s.error is not None]
        if errors:
            out.append("  ")
            out.append(f"! {errors[0].error.kind}: ", style="bold magenta")
            out.append_text(cell(errors[0].error.reason, 100))
            if len(errors) > 1:
                out.append(f" (+{len(errors) - 1} more)")
        return out

    def latest(self, key: str) -> Snapshot | None:
        return None if self.state is None else self.state.snapshots.get(key)

    def good(self, key: str) -> Snapshot | None:
        """The last snapshot without error: what stays on screen while a backend is down."""
        return None if self.state is None else self.state.last_good.get(key)
