"""The Textual application: wires the poller to the panels. (One of the two engine modules
allowed to import Textual.)

Polling follows DESIGN.md section 2: one async worker per source, each in its own group with
``exit_on_error=False``; the next poll of a source is scheduled with ``set_timer`` when the
previous one finished, never with ``set_interval``. Keys never wait on a backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Tab, Tabs

from console.config import Config, load_config
from console.model import Severity
from console.poller import ConsoleState, Poller
from console.rules import State
from panels.base import Panel
from panels.breaches import BreachesPanel
from panels.confirm import ConfirmScreen
from panels.detail import DetailScreen, breach_detail, session_detail
from panels.header import ConsoleHeader
from panels.health import HealthPanel
from panels.help import HelpScreen
from panels.messages import ShowBreach, ShowRunbooks, ShowSession, ShowText, SignalBackend
from panels.metrics import MetricsPanel
from panels.postgres import PostgresPanel
from panels.text import use_monochrome
from panels.wall import WallScreen

NARROW_WIDTH, NARROW_HEIGHT = 120, 36
FLASH_SECONDS = 1.5
EXIT_GRACE_SECONDS = 3.0


class ConsoleApp(App[int]):
    TITLE = "incident-console"
    CSS = """
    #panel-tabs { display: none; height: 2; }
    #panels { layout: grid; grid-size: 2; grid-gutter: 0 1; height: 1fr; }
    #panels > BreachesPanel { column-span: 2; }
    #panels > PostgresPanel { column-span: 2; }
    #panels.-single > Panel { column-span: 2; }
    #filter { dock: bottom; display: none; }
    #filter.-open { display: block; }
    .-narrow #panel-tabs { display: block; }
    .-narrow #panels { layout: vertical; }
    .-narrow #panels > Panel { display: none; height: 1fr; }
    .-narrow #panels > Panel.-active { display: block; }
    .-narrow KeyedTable { scrollbar-size-horizontal: 0; }
    .-narrow PostgresPanel #pg-side { display: none; width: 1fr; margin-left: 0; }
    .-narrow PostgresPanel.-side #pg-side { display: block; }
    .-narrow PostgresPanel.-side #pg-sessions { display: none; }
    """
    BINDINGS = [
        Binding("q", "quit_console", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("p", "pause", "Pause", id="pause"),
        Binding("r", "refresh", "Refresh", id="refresh"),
        Binding("slash", "filter", "Filter", id="filter"),
        # Priority: the Screen binds tab to focus_next. In dialogs the default behaviour returns.
        Binding("tab", "next_panel", "Next panel", id="next_panel", show=False, priority=True),
        Binding(
            "shift+tab", "previous_panel", "Previous panel", id="previous_panel", show=False, priority=True
        ),
    ]

    def __init__(
        self,
        config: Config,
        *,
        poller: Poller | None = None,
        clock: Callable[[], float] = time.time,
        autopoll: bool = True,
        wall: bool = False,
        read_only: bool = False,
    ) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        self.poller = poller or Poller(config, clock=clock)
        self.autopoll = autopoll
        self.wall = wall
        self.read_only = read_only or wall or config.read_only
        self.paused = False
        self.state: ConsoleState = self.poller.state
        self.action_running = False
        self._poll_timers: dict[str, Timer] = {}
        self._inflight: set[str] = set()
        self._critical_seen: set[str] = set()
        use_monochrome(self.no_color)
        self.header = ConsoleHeader(config.environment.name, config.environment.production, id="header")
        self.header.read_only = self.read_only
        self.header.monochrome = self.no_color
        self.panels = [] if wall else self._make_panels()
        self.wall_screen: WallScreen | None = None
        if wall:
            self.header.mode = "WALL"
            self.wall_screen = WallScreen(self.header, config.ui.wall.rotate, config.ui.wall.tiles)

    # --- layout -----------------------------------------------------------------------------

    def _make_panels(self) -> list[Panel]:
        config = self.config
        panels: list[Panel] = [BreachesPanel(id="p-breaches")]
        if config.health:
            panels.append(HealthPanel([t.name for t in config.health], id="p-health"))
        if config.prometheus and config.prometheus.queries:
            thresholds = {
                b.metric.removeprefix("query:"): b
                for b in config.thresholds()
                if b.metric.startswith("query:")
            }
            queries = [(q.id, q.title, q.unit) for q in config.prometheus.queries]
            panels.append(MetricsPanel(queries, thresholds, id="p-metrics"))
        panels += [PostgresPanel(c.name, id=f"p-pg-{i}") for i, c in enumerate(config.postgres)]
        return panels

    def compose(self) -> ComposeResult:
        if self.wall:
            return
        yield self.header
        yield Tabs(*(Tab(Text(p.title), id=f"tab-{p.id}") for p in self.panels), id="panel-tabs")
        with Container(id="panels"):
            yield from self.panels
        yield Input(placeholder="filter (Enter to keep, empty to clear)", id="filter")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.config.ui.keymap:
            self.set_keymap(self.config.ui.keymap)
        self.set_interval(1.0, self._tick)
        self._install_signal_handlers()
        if self.wall_screen is not None:
            self.push_screen(self.wall_screen)
        else:
            self._layout_panels()
        self.render_state(self.state)
        if self.autopoll:
            for key in self.poller.sources:
                self._start_poll(key)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            # Not possible off the main thread (tests) or on platforms without signals.
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _layout_panels(self) -> None:
        middle = [p for p in self.panels if isinstance(p, HealthPanel | MetricsPanel)]
        grid = self.query_one("#panels")
        grid.set_class(len(middle) == 1, "-single")
        clusters = sum(1 for p in self.panels if isinstance(p, PostgresPanel))
        grid.styles.grid_rows = " ".join(["1fr"] + (["1fr"] if middle else []) + ["2fr"] * clusters)
        self._apply_size(self.size.width, self.size.height)
        self._activate(self.panels[0])

    def _on_signal(self, sig: signal.Signals) -> None:
        """A lost terminal (SIGHUP) or a stop request (SIGTERM) ends the process cleanly.

        After SIGHUP the tty is gone: Textual's writer thread dies on EIO and its shutdown then
        blocks forever putting the terminal-restore sequences on that thread's queue. So the
        backends are closed first, and a watchdog ends the process if the restore never returns
        (journal lines are fsynced as they are written; nothing is left to flush)."""
        code = 128 + int(sig)
        watchdog = threading.Timer(EXIT_GRACE_SECONDS, os._exit, (code,))
        watchdog.daemon = True
        watchdog.start()

        async def close_then_exit() -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.poller.aclose(), EXIT_GRACE_SECONDS / 2)
            self.exit(code)

        asyncio.get_running_loop().create_task(close_then_exit())

    def on_resize(self, event) -> None:
        if not self.wall:
            self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int, height: int) -> None:
        self.screen.set_class(width < NARROW_WIDTH or height < NARROW_HEIGHT, "-narrow")

    @property
    def narrow(self) -> bool:
        return self.screen.has_class("-narrow")

    # --- polling ----------------------------------------------------------------------------

    def _start_poll(self, key: str) -> None:
        if key in self._inflight or self.paused:
            return
        self._inflight.add(key)
        self.run_worker(self._poll(key), group=f"poll:{key}", exit_on_error=False, exclusive=False)

    async def _poll(self, key: str) -> None:
        try:
            snapshot = await self.poller.poll_source(key)
            self.render_state(self.poller.publish(snapshot))
        finally:
            self._inflight.discard(key)
            self._schedule(key, self.poller.sources[key].interval)

    def _schedule(self, key: str, delay: float) -> None:
        if timer := self._poll_timers.pop(key, None):
            timer.stop()
        if not self.paused and self.autopoll:
            self._poll_timers[key] = self.set_timer(delay, lambda: self._start_poll(key))

    def render_state(self, state: ConsoleState) -> None:
        """Show a new ConsoleState on every panel (also the entry point for tests)."""
        self.state = state
        now = self.clock()
        with self.batch_update():
            for panel in self.panels:
                panel.update_state(state, now)
            if self.wall_screen is not None and self.wall_screen.is_mounted:
                self.wall_screen.show(state, now)
            self.header.show(state, now)
        self._ring_for_new_criticals(state)

    def _ring_for_new_criticals(self, state: ConsoleState) -> None:
        critical = {
            b.id for b in state.breaches if b.severity == Severity.CRITICAL and b.state == State.FIRING
        }
        new = critical - self._critical_seen
        self._critical_seen = critical
        if new:
            if self.config.ui.bell:
                self.bell()
            self.header.add_class("-flash")
            self.set_timer(FLASH_SECONDS, lambda: self.header.remove_class("-flash"))

    def _tick(self) -> None:
        now = self.clock()
        for panel in self.panels:
            panel.tick(now)
        self.header.show(self.state, now)

    # --- panels and focus -------------------------------------------------------------------

    def focused_panel(self) -> Panel:
        node = self.focused
        while node is not None:
            if isinstance(node, Panel):
                return node
            node = node.parent
        return next((p for p in self.panels if p.has_class("-active")), self.panels[0])

    def _activate(self, panel: Panel) -> None:
        for other in self.panels:
            other.set_class(other is panel, "-active")
        tabs = self.query_one("#panel-tabs", Tabs)
        if tabs.active != f"tab-{panel.id}":
            tabs.active = f"tab-{panel.id}"
        table = next(iter(panel.query("KeyedTable")), None)
        if table is not None and table.can_focus:
            table.focus()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        panel_id = event.tab.id.removeprefix("tab-") if event.tab.id else ""
        panel = next((p for p in self.panels if p.id == panel_id), None)
        if panel is not None and not panel.has_class("-active"):
            self._activate(panel)

    def action_next_panel(self) -> None:
        self._step_panel(1)

    def action_previous_panel(self) -> None:
        self._step_panel(-1)

    def _step_panel(self, step: int) -> None:
        if self.screen is not self.screen_stack[0] or self.query_one("#filter").has_class("-open"):
            (self.screen.focus_next if step > 0 else self.screen.focus_previous)()
            return
        index = self.panels.index(self.focused_panel())
        self._activate(self.panels[(index + step) % len(self.panels)])

    def on_descendant_focus(self, event) -> None:
        if not self.panels:
            return
        panel = self.focused_panel()
        if not panel.has_class("-active"):
            for other in self.panels:
                other.set_class(other is panel, "-active")

    # --- keys -------------------------------------------------------------------------------

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.header.paused = self.paused
        if self.paused:
            for timer in self._poll_timers.values():
                timer.stop()
            self._poll_timers.clear()
        else:
            for key in self.poller.sources:
                self._start_poll(key)
        self.header.show(self.state, self.clock())

    def action_refresh(self) -> None:
        for key in self.poller.sources:
            if timer := self._poll_timers.pop(key, None):
                timer.stop()
            if not self.paused:
                self._start_poll(key)

    def action_filter(self) -> None:
        panel = self.focused_panel()
        if not hasattr(panel, "text_filter"):
            self.notify("this panel has no filter", severity="warning")
            return
        field = self.query_one("#filter", Input)
        field.value = panel.text_filter
        field.add_class("-open")
        field.focus()
        self._filter_target = panel

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter" and (panel := getattr(self, "_filter_target", None)) is not None:
            panel.text_filter = event.value.strip()
            if isinstance(panel, PostgresPanel):
                panel.refresh_view()
            else:
                panel.update_state(self.state, self.clock())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def _close_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.remove_class("-open")
        if (panel := getattr(self, "_filter_target", None)) is not None:
            self._activate(panel)

    def on_key(self, event) -> None:
        if event.key == "escape" and self.query_one("#filter", Input).has_class("-open"):
            event.stop()
            self._close_filter()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(list(self.key_rows())))

    def key_rows(self) -> Iterable[tuple[str, str, str]]:
        """Every binding of the app and its panels, with the keys the keymap gives it."""
        keymap = self._keymap if hasattr(self, "_keymap") else {}
        owners: list[tuple[str, type]] = [("everywhere", type(self))]
        owners += [(p.title, type(p)) for p in self.panels]
        seen: set[tuple[str, str]] = set()
        for where, owner in owners:
            for binding in owner.BINDINGS:
                if not isinstance(binding, Binding) or (where, binding.action) in seen:
                    continue
                seen.add((where, binding.action))
                keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
                yield (keys, binding.description or binding.action, where)
        yield ("ctrl+p", "Command palette", "everywhere")
        yield ("enter", "Details of the selected row", "tables")

    async def action_quit_console(self) -> None:
        if self.action_running:
            self.push_screen(
                ConfirmScreen("An action is running. Quit anyway?", "The action keeps running on the server side; "
                              "its result will be missing from this console's journal.", confirm_label="Quit"),
                lambda ok: self.exit(0) if ok else None,
            )  # fmt: skip
            return
        self.exit(0)

    async def on_unmount(self) -> None:
        await self.poller.aclose()

    # --- intents from panels ----------------------------------------------------------------

    def on_show_breach(self, message: ShowBreach) -> None:
        self.push_screen(DetailScreen(message.breach.title, breach_detail(message.breach, self.clock())))

    def on_show_text(self, message: ShowText) -> None:
        self.push_screen(DetailScreen(message.title, message.body))

    def on_show_session(self, message: ShowSession) -> None:
        snapshot = self.state.last_good.get(f"postgres:{message.cluster}")
        server_now = getattr(snapshot, "server_now", None)
        title = f"{message.cluster}: pid {message.session.pid}"
        self.push_screen(DetailScreen(title, session_detail(message.cluster, message.session, server_now)))

    def on_show_runbooks(self, message: ShowRunbooks) -> None:
        self.notify(
            f"runbooks for {message.breach.title}: {', '.join(message.breach.runbooks) or 'none linked'}"
        )

    def on_signal_backend(self, message: SignalBackend) -> None:
        if self.read_only:
            self.notify("read-only: actions are disabled", severity="warning")
            return
        session = message.session
        verb = "Cancel the query of" if message.kind == "cancel" else "Terminate"
        plan = Text(f"{verb} pid {session.pid} on {message.cluster}\n\n")
        plan.append(f"user {session.user}, database {session.database}, state {session.state}\n")
        plan.append(session.query[:2000])
        typed = (
            str(session.pid) if message.kind == "terminate" or self.config.environment.production else None
        )
        self.push_screen(ConfirmScreen(f"{verb} pid {session.pid}?", plan, typed=typed))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume polling", "Stop or restart every poll", self.action_pause)
        yield SystemCommand("Refresh now", "Poll every source now", self.action_refresh)
        for panel in self.panels:
            yield SystemCommand(f"Show {panel.title}", "Focus this panel", lambda p=panel: self._activate(p))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not self.wall or action in ("quit_console", "help", "command_palette", "quit")


def run_console(
    config_path: str | Path | None = None,
    *,
    config: Config | None = None,
    wall: bool = False,
    read_only: bool = False,
) -> int:
    config = config or load_config(config_path)
    app = ConsoleApp(config, wall=wall, read_only=read_only)
    result = app.run()
    return int(result or 0)
