"""The Textual application: wires the poller to the panels. The engine reaches it through
``console.app`` (its one door to the UI) only.

Polling follows docs/ARCHITECTURE.md (rules of the house): one async worker per source, each
in its own group with ``exit_on_error=False``; the next poll of a source is scheduled with ``set_timer`` when the
previous one finished, never with ``set_interval``. Keys never wait on a backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Tab, Tabs

from console import actions
from console.config import Config
from console.loader import Loaded
from console.model import PrometheusSnapshot, Severity, Silence, SourceKey
from console.poller import ConsoleState, Poller, next_delay
from console.rules import Breach, State, silence_for
from console.runbooks.packdata import Pack
from console.sanitize import one_line
from console.yamlfile import ConfigError
from panels.base import Panel
from panels.breaches import BreachesPanel
from panels.confirm import ConfirmScreen
from panels.detail import DetailScreen, breach_detail, session_detail
from panels.fleet import FleetPanel
from panels.footer import Footer
from panels.header import ConsoleHeader
from panels.health import HealthPanel
from panels.help import HelpScreen
from panels.messages import AckBreach, ShowBreach, ShowRunbooks, ShowSession, ShowText, SignalBackend
from panels.metrics import MetricsPanel
from panels.partial import install as install_partial_update_fix
from panels.plan import DialogWords, answer, confirm_for, result_line, result_severity, signal_words
from panels.postgres import PostgresPanel
from panels.rules import RulesScreen
from panels.strips import install as install_strip_fix
from panels.terminal import ScreenMemory
from panels.text import use_monochrome

if TYPE_CHECKING:
    from console.actions import Confirmation, Plan, Result
    from console.actions.executor import Executor
    from console.demo.control import DemoControl
    from console.feed import FeedClient, WallTimeline
    from console.journal import Journal, JournalEvent
    from console.journal.shared import SharedJournal
    from console.timeline import TimelineEntry
    from panels.demo_menu import DemoMenu, DemoRequest
    from panels.runbook import StepRequest
    from panels.timeline import TimelineScreen
    from panels.wall import WallScreen

NARROW_WIDTH, NARROW_HEIGHT = 120, 36
FLASH_SECONDS = 1.5
TICK_SECONDS = 1.0  # data ages, staleness and the clock between renders
TICK_AFTER_RENDER = 1.25  # after a render, the next tick waits past the next 1 s poll's render
#: At start-up the panels show with the first data, or by then with what they have (waiting
#: sources say so). Drawing them empty first cost a whole layout and paint, ~60 ms of start-up
#: CPU and of the time to the first data on screen (issue 20, bench/CHANGES.md).
STARTUP_REVEAL = 0.5
#: The heap is settled (settle_heap) this long after the first round of data is drawn, so that
#: its one full collection does not hold that screen back; and at the latest this long after
#: start, whether every source has answered or not.
HEAP_SETTLE_DELAY = 0.5
HEAP_SETTLE_LIMIT = 15.0
STARTUP_BELL_WAIT = 5.0  # at start-up the bell waits this long at most for every source's first poll
EXIT_GRACE_SECONDS = 2.0  # a stop request or a lost terminal ends the process within this (issue 15)
TIMELINE_WINDOW = 24 * 3600
JOURNAL_REPROBE = 30.0  # seconds between probes of a journal that could not be written

install_strip_fix()  # Textual's Strip.divide keeps every drawn line in a reference cycle
install_partial_update_fix()  # Textual draws every line of a widget a partial update touches


class ConsoleApp(App[int]):
    TITLE = "incident-console"
    CSS = """
    #panel-tabs { display: none; height: 2; }
    #panels { layout: grid; grid-size: 2; grid-gutter: 0 1; height: 1fr; }
    #panels > BreachesPanel { column-span: 2; }
    #panels > PostgresPanel { column-span: 2; }
    #panels > FleetPanel { column-span: 2; }
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
        Binding("R", "runbooks", "Runbooks", id="runbooks"),
        Binding("t", "timeline", "Timeline", id="timeline"),
        Binding("P", "rules", "Rules", id="rules", show=False),
        Binding("D", "demo_menu", "Demo", id="demo_menu"),
        Binding("f", "fleet", "Fleet", id="fleet", show=False),
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
        web: bool = False,
        journal: Journal | None = None,
        pack: Pack | None = None,
        demo: DemoControl | None = None,
        feed: FeedClient | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.clock = clock
        # A viewer of `serve` (console/feed.py): its states come from serve's one engine, and its
        # poller has no source, so it never opens a backend connection of its own.
        self.feed = feed
        self.poller = poller or Poller(config, clock=clock, sources=[] if feed is not None else None)
        self.autopoll = autopoll
        self.wall = wall or web
        self.web = web
        self.read_only = read_only or self.wall or config.read_only
        self._journal = journal  # opened on first use (the property): start-up cost
        self._executor_options = {
            "read_only": read_only,
            "mode": "web" if web else ("wall" if wall else "console"),
        }
        self._executor: Executor | None = None  # made on first use (the property): start-up cost
        # With a shared journal: the other consoles' events, their presence, and claims that
        # reach them (docs/ARCHITECTURE.md, the journal). A viewer of `serve` opens no link to
        # the store: its wall's timeline comes from the engine's feed like its states.
        self.shared: SharedJournal | None = None
        self._feed_timeline: WallTimeline | None = None
        self._shared_events_seen = 0  # other consoles' events received (the timeline's key)
        if config.journal.shared is not None and feed is None:
            from console.journal.shared import SharedJournal

            self.shared = SharedJournal(
                config.journal.shared,
                self.journal.path,
                environment=self.journal.environment,
                console=self.journal.console,
                operator=str(self.journal.operator),
                on_events=self._on_shared_events,
            )
        self._pack = pack
        self._hints: dict[str, str] = {}  # breach id -> best-ranked runbook id
        self._hints_firing: frozenset[str] = frozenset()  # the firing breaches they were ranked with
        self.demo = demo
        self._journal_shown = ""  # the journal problem the operator was last told of
        self._journal_probed: float | None = None  # monotonic time of the last probe
        self._journaled: tuple[Breach, ...] = ()  # the breach list the journal has seen
        self.paused = False
        self.state: ConsoleState = self.poller.state
        self._poll_timers: dict[str, Timer] = {}
        self._inflight: set[str] = set()
        self._critical_seen: set[str] = set()
        self._rang_at: float | None = None  # monotonic time of the last bell
        self._bell_due = False  # a new critical not rung for yet (start-up waits for every source)
        self._started = time.monotonic()
        self._terminal = ScreenMemory()
        self._previous_handlers: dict[int, Any] = {}
        self._stopping: signal.Signals | None = None
        self._stop_task: asyncio.Task[None] | None = None
        use_monochrome(self.no_color)
        self.header = ConsoleHeader(config.environment.name, config.environment.production, id="header")
        self.header.read_only = self.read_only
        self.header.monochrome = self.no_color
        self.panels = [] if self.wall else self._make_panels()
        self.grid = Container(id="panels")  # kept: every render sizes it (a DOM query walked 700 nodes)
        self.tabs = Tabs(*(Tab(Text(p.title), id=f"tab-{p.id}") for p in self.panels), id="panel-tabs")
        # Held back until the first data (STARTUP_REVEAL) when this console polls for itself.
        self.grid.display = not (self.autopoll and feed is None and self.poller.sources)
        self.wall_screen: WallScreen | None = None
        if self.wall:
            self.header.mode = "WALL"
            from panels.wall import WallScreen

            self.wall_screen = WallScreen(self.header, config.ui.wall.rotate, config.ui.wall.tiles)

    # --- layout -----------------------------------------------------------------------------

    def _make_panels(self) -> list[Panel]:
        config = self.config
        breaches = BreachesPanel(id="p-breaches")
        breaches.hints = self._hints
        panels: list[Panel] = [breaches]
        if config.health:
            panels.append(HealthPanel([t.name for t in config.health], id="p-health"))
        if any(server.queries for server in config.prometheus_servers):
            thresholds = {
                b.metric.removeprefix("query:"): b
                for b in config.thresholds()
                if b.metric.startswith("query:")
            }
            servers = config.prometheus_servers
            queries = [(q.id, q.title, q.unit) for server in servers for q in server.queries]
            owners = {q.id: server.key for server in servers for q in server.queries}
            keys = tuple(server.key for server in servers)
            panels.append(MetricsPanel(queries, thresholds, owners, keys, id="p-metrics"))
        if config.fleet_tab:
            server = config.fleet_server
            prometheus = server.key if server is not None else None
            panels.append(
                FleetPanel(stale_after=config.fleet.stale_after, prometheus=prometheus, id="p-fleet")
            )
        clusters = [PostgresPanel(c.name, id=f"p-pg-{i}") for i, c in enumerate(config.postgres)]
        for panel in clusters:
            panel.behind_tab = len(clusters) > 3  # tabbed (_apply_size): drawn when shown
        return panels + clusters

    def compose(self) -> ComposeResult:
        if self.wall:
            return
        yield self.header
        yield self.tabs
        with self.grid:
            yield from self.panels
        yield Input(placeholder="filter: Enter keeps it, Esc clears it", id="filter")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        if self.config.ui.keymap:
            self.set_keymap(self.config.ui.keymap)
        self._tick_timer = self.set_timer(TICK_SECONDS, self._tick)
        if self.freeze_heap:
            self.set_timer(HEAP_SETTLE_LIMIT, self._settle_heap)
        self._install_signal_handlers()
        if self.wall_screen is not None:
            self.push_screen(self.wall_screen)
            self.call_after_refresh(self._wall_timeline)
            self.set_interval(self.config.ui.wall.rotate, self._wall_timeline)
        else:
            self._layout_panels()
            if not self.grid.display:
                self.set_timer(STARTUP_REVEAL, self._reveal_panels)
        self.render_state(self.state)
        self.run_worker(self._journal_breaches, group="journal", exit_on_error=False)
        self.run_worker(self._load_pack, group="runbooks", exit_on_error=False)
        if self.shared is not None:
            loop, shared = asyncio.get_running_loop(), self.shared
            self.journal.after_append.append(lambda: loop.call_soon_threadsafe(shared.wake))
            self.header.shared = shared.state
            self.run_worker(shared.run, group="shared-journal", exit_on_error=False)
        if self.autopoll:
            for key in self.poller.sources:
                self._start_poll(key)
        if self.feed is not None:
            self.run_worker(
                functools.partial(
                    self.feed.follow, self.render_state, self._feed_problem, self._on_feed_timeline
                ),
                group="feed",
                exit_on_error=False,
            )

    def _on_feed_timeline(self, wall: WallTimeline) -> None:
        self._feed_timeline = wall
        self._wall_timeline()

    def _feed_problem(self, problem: str | None) -> None:
        """serve's engine feed is lost (said at each retry) or back (None): the header says so, and
        the last state is drawn again, its ages growing until its sources show stale."""
        assert self.feed is not None
        lost = self.feed.lost_since
        if problem is None or lost is None:
            self.header.mode = "WALL"
        else:
            self.header.mode = f"WALL · FEED LOST since {time.strftime('%H:%M:%SZ', time.gmtime(lost))}"
            if self.header.mode != getattr(self, "_feed_said", None):
                self._feed_said = self.header.mode
                self.notify(f"{problem}: the data shown is not live; retrying", severity="error", timeout=10)
        self.render_state(self.state)
        self._wall_timeline()

    def get_driver_class(self):
        """In a terminal, panels/driver.py's TerminalDriver: a lost terminal without SIGHUP (EOF
        or EIO on the tty) ends the console instead of spinning. Textual chooses otherwise: a
        TEXTUAL_DRIVER from the environment (``serve``'s web driver), Windows."""
        from textual import constants

        if constants.DRIVER is not None or sys.platform == "win32":
            return super().get_driver_class()
        from panels.driver import TerminalDriver

        return TerminalDriver

    def _install_signal_handlers(self) -> None:
        """SIGHUP and SIGTERM end the process (:meth:`stop_process`). These are plain signal
        handlers, not the event loop's: Python runs them on the main thread even while the loop
        is blocked, and the watchdog they arm ends the process regardless. (A handler run by the
        loop never ran once Textual's writer queue had blocked the loop after a lost terminal:
        SIGTERM was ignored, issue 15.) The previous handlers come back at unmount."""
        if threading.current_thread() is not threading.main_thread():
            return  # not possible off the main thread (tests)
        for sig in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(ValueError, OSError):
                self._previous_handlers[sig] = signal.signal(sig, self._signal_handler)

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._previous_handlers.items():
            with contextlib.suppress(ValueError, OSError, TypeError):  # TypeError: set from C
                signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _signal_handler(self, signum: int, frame: object) -> None:
        self.stop_process(signal.Signals(signum))

    def terminal_lost(self, reason: str) -> None:
        """The terminal is gone and no SIGHUP came (EOF or EIO on it, seen by panels/driver.py in
        its own threads; under ``make`` only make, the session leader, gets SIGHUP): end as on
        SIGHUP."""
        self.stop_process(signal.SIGHUP)

    def stop_process(self, sig: signal.Signals) -> None:
        """End the process as for ``sig``; safe in a signal handler and from any thread. The
        watchdog is armed here, so the process ends within EXIT_GRACE_SECONDS even if the event
        loop never runs the clean stop (:meth:`_on_signal`) it is handed. A second request while
        stopping changes nothing."""
        if self._stopping is not None:
            return
        self._stopping = sig
        watchdog = threading.Timer(EXIT_GRACE_SECONDS, os._exit, (128 + int(sig),))
        watchdog.daemon = True
        watchdog.start()
        loop = self._loop  # Textual's: set while the app runs (also before mount), then None
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the watchdog ends it
                loop.call_soon_threadsafe(self._on_signal, sig)

    def _reveal_panels(self) -> None:
        """Show the panels held back at start-up, and focus the active one's table (a hidden
        table cannot take the focus)."""
        if self.grid.display or not self.panels or not self.grid.is_attached:
            return  # shown already, or the console is closing (its screens may be gone)
        self.grid.display = True
        self._activate(self.focused_panel())

    def _layout_panels(self) -> None:
        middle = [p for p in self.panels if isinstance(p, HealthPanel | MetricsPanel)]
        grid = self.grid
        grid.set_class(len(middle) == 1, "-single")
        self._apply_size(self.size.width, self.size.height)
        self._activate(self.panels[0])

    def _on_signal(self, sig: signal.Signals) -> None:
        """A lost terminal (SIGHUP, or EOF/EIO on it) or a stop request (SIGTERM) ends the process
        cleanly; runs on the event loop, handed over by :meth:`stop_process` (which armed the
        watchdog).

        A running action is cancelled first (the executor journals 'action.failed' and stops its
        process), then the backends are closed, then the app exits. Textual's shutdown used to
        block on a dead tty before it cancelled any worker (its writer thread died on EIO and the
        terminal-restore sequences queued behind it for good); panels/driver.py drops output to a
        dead terminal now, and the watchdog still ends the process if anything else blocks
        (journal lines are fsynced as written)."""
        code = 128 + int(sig)

        async def close_then_exit() -> None:
            actions = self.workers.cancel_group(self, "action")
            waits = asyncio.gather(*(worker.wait() for worker in actions), return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(waits, EXIT_GRACE_SECONDS / 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.poller.aclose(), EXIT_GRACE_SECONDS / 4)
            self.exit(code)

        self._stop_task = asyncio.get_running_loop().create_task(close_then_exit())

    def _display(self, screen: Screen, renderable) -> None:
        # Only the cells that changed reach the terminal (panels/terminal.py).
        super()._display(screen, self._terminal.filter_for(self, renderable))

    def on_resize(self, event) -> None:
        if not self.wall:
            self._apply_size(event.size.width, event.size.height)

    def _apply_size(self, width: int, height: int) -> None:
        # More than three clusters do not share one screen (each Postgres panel needs ~10 rows):
        # tabs, the Fleet tab being the overview (README, the fleet view).
        crowded = any(isinstance(p, PostgresPanel) and p.behind_tab for p in self.panels)
        if (screen := self._panels_screen) is not None:
            screen.set_class(width < NARROW_WIDTH or height < NARROW_HEIGHT or crowded, "-narrow")
        self.call_after_refresh(self.size_panels)

    @property
    def _panels_screen(self) -> Screen | None:
        """The screen the panels are on, whatever screen is on top of it (a runbook, help, a
        dialog): a resize while one is open sizes the panels for when it closes."""
        return self.screen_stack[0] if self.screen_stack else None

    @property
    def narrow(self) -> bool:
        screen = self._panels_screen
        return screen is not None and screen.has_class("-narrow")

    # --- polling ----------------------------------------------------------------------------

    def _start_poll(self, key: str) -> None:
        if key in self._inflight or self.paused:
            return
        self._inflight.add(key)
        # The work as a callable: a coroutine made here and never started (the worker cancelled
        # first, as at exit) was 'never awaited', a RuntimeWarning on the way out (found by the soak).
        poll = functools.partial(self._poll, key)
        self.run_worker(poll, group=f"poll:{key}", exit_on_error=False, exclusive=False)

    async def _poll(self, key: str) -> None:
        started = time.monotonic()
        try:
            snapshot = await self.poller.poll_source(key)
            self.render_state(self.poller.publish(snapshot))
            await self._journal_breaches()
        finally:
            self._inflight.discard(key)
            self._schedule(key, next_delay(self.poller.sources[key].interval, time.monotonic() - started))

    def _schedule(self, key: str, delay: float) -> None:
        if timer := self._poll_timers.pop(key, None):
            timer.stop()
        if not self.paused and self.autopoll:
            self._poll_timers[key] = self.set_timer(delay, lambda: self._start_poll(key))

    def render_state(self, state: ConsoleState) -> None:
        """Show a new ConsoleState on every panel (also the entry point for tests)."""
        self.state = state
        if state.snapshots and not self.grid.display:
            self._reveal_panels()
        now = self.clock()
        self._suggest_runbooks(state)
        acks = self._acks(state)
        for panel in self.panels:
            if isinstance(panel, BreachesPanel):
                panel.acks = acks
        with self.batch_update():
            for panel in self.panels:
                panel.update_state(state, now)
            if self.wall_screen is not None and self.wall_screen.is_mounted:
                self.wall_screen.show(state, now)
            self.header.hidden_critical = self._hidden_critical()
            self._flag_journal_problem()
            self.header.show(state, now)
            self.size_panels()
        self._note_where()
        self._schedule_tick(TICK_AFTER_RENDER)  # this render did the tick's work
        self._ring_for_new_criticals(state)
        if self.freeze_heap and len(state.snapshots) >= len(state.intervals):
            self.set_timer(HEAP_SETTLE_DELAY, self._settle_heap)

    #: settle_heap() once every source has been drawn; only in the console's own process
    #: (run_console): in a process that makes many apps (tests) it would keep each one.
    freeze_heap = False

    def _settle_heap(self) -> None:
        """Once: after the first round of data is drawn, or at HEAP_SETTLE_LIMIT when a source
        has not answered yet (the collector stays off until then, console/entry.py)."""
        if self.freeze_heap:
            self.freeze_heap = False
            settle_heap()

    @property
    def journal(self) -> Journal:
        """This console's journal, made on first use: its event classes are ~50 ms of start-up
        CPU that the first screen does not need (docs/SCALE.md, start-up)."""
        if self._journal is None:
            from console.journal import Journal

            self._journal = Journal.of(self.config)
        return self._journal

    async def _journal_breaches(self) -> None:
        """Breach start/change/end into the journal; a wall or web viewer only watches."""
        before, after = self._journaled, self.state.breaches
        if self.wall:
            return
        if self._probe_due():
            await self._probe_journal()
        if before == after:
            return
        self._journaled = after
        await self._load_journal()
        from console.journal import JournalError, breach_events, record_breaches

        if not breach_events(before, after):  # values and ages moved: nothing to journal, no thread
            return
        with contextlib.suppress(JournalError):  # the journal keeps why: told below
            await asyncio.to_thread(record_breaches, self.journal, before, after)
        self._show_journal_problem()

    async def _load_journal(self) -> None:
        if "console.journal" not in sys.modules:  # the first time: once the first data is drawn
            await self._after_refresh()
            await asyncio.to_thread(importlib.import_module, "console.journal")

    def _probe_due(self) -> bool:
        if self._journal_probed is None:
            return bool(self.state.snapshots)
        problem = self._journal is not None and self._journal.problem
        return bool(problem) and time.monotonic() - self._journal_probed >= JOURNAL_REPROBE

    async def _probe_journal(self) -> None:
        """Whether the journal can be written, checked without writing it: once the first data
        is drawn, then every JOURNAL_REPROBE seconds while it cannot. Every action is refused
        without it, and the operator should know before asking for the first one."""
        self._journal_probed = time.monotonic()
        await self._load_journal()
        await asyncio.to_thread(self.journal.probe)
        self._show_journal_problem()

    def _show_journal_problem(self) -> None:
        """The journal's problem, told once (a toast) and kept in the header ("NO JOURNAL")
        until a write or a probe succeeds."""
        problem = "" if self._journal is None else self._journal.problem
        if problem and problem != self._journal_shown:
            self.notify(f"journal: {problem}", severity="error", timeout=10)
        self._journal_shown = problem
        if self._flag_journal_problem():
            self.header.show(self.state, self.clock())

    def _flag_journal_problem(self) -> bool:
        """The header's NO JOURNAL in step with the journal, whichever path wrote last (an
        action or a note that met the problem tells the operator itself; a tick that sees it
        first must not swallow the toast of the breach write that met it). True if it changed."""
        problem = "" if self._journal is None else self._journal.problem
        if not problem:
            self._journal_shown = ""  # the same problem again later is told again
        changed = self.header.journal_problem != bool(problem)
        self.header.journal_problem = bool(problem)
        return changed

    async def _after_refresh(self, bound: float = 1.0) -> None:
        """Wait until the screen has been refreshed (``bound`` seconds at most)."""
        refreshed = asyncio.Event()
        self.call_after_refresh(refreshed.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(refreshed.wait(), bound)

    async def _load_pack(self) -> None:
        """The runbook pack, off the event loop, for the Runbooks column and ``R``."""
        if self._pack is not None or self.wall:
            return
        try:
            from console.runbooks.pack import pack_for

            self._pack = await asyncio.to_thread(pack_for, self.config)
        except ConfigError as exc:
            self.notify(f"runbooks: {exc.lines()[0]}", severity="error", timeout=10)
            return
        self.render_state(self.state)

    def _suggest_runbooks(self, state: ConsoleState) -> None:
        """The best-ranked runbook for each breach the config links none to (Runbooks column);
        ranked again for all when what fires changes (a cause firing beside a breach ranks first)."""
        if self._pack is None:
            return
        firing = frozenset(b.id for b in state.breaches if b.state is State.FIRING)
        if firing != self._hints_firing:
            self._hints.clear()
            self._hints_firing = firing
        new = [b for b in state.breaches if not b.runbooks and b.id not in self._hints]
        for breach in new:
            matches = self._pack.rank(breach, self.config, state.breaches)
            self._hints[breach.id] = matches[0].runbook.id if matches else ""

    def _ring_for_new_criticals(self, state: ConsoleState) -> None:
        """A new critical flashes the header and rings the bell, once per poll at most: at
        start-up the first round of polls lands in a burst (it rang once per critical, issue
        18), so the bell waits for every source's first answer (STARTUP_BELL_WAIT at most),
        and a critical new within the shortest poll interval after a ring shares that ring."""
        critical = {
            b.id for b in state.breaches if b.severity == Severity.CRITICAL and b.state == State.FIRING
        }
        new = critical - self._critical_seen
        self._critical_seen = critical
        if new:
            self._bell_due = True
            self.header.add_class("-flash")
            self.set_timer(FLASH_SECONDS, lambda: self.header.remove_class("-flash"))
        self._ring_if_due()

    def _ring_if_due(self) -> None:
        if not self._bell_due:
            return
        state, now = self.state, time.monotonic()
        first_round = len(state.snapshots) >= len(state.intervals)
        if not first_round and now - self._started < STARTUP_BELL_WAIT:
            self.set_timer(STARTUP_BELL_WAIT - (now - self._started) + 0.05, self._ring_if_due)
            return
        self._bell_due = False
        poll = min(state.intervals.values(), default=1.0)
        if self._rang_at is not None and now - self._rang_at < poll:
            return  # rung for this poll already
        self._rang_at = now
        if self.config.ui.bell:
            self.bell()

    def _schedule_tick(self, delay: float) -> None:
        """The once-a-second tick (ages, staleness, the clock) runs only between renders: a
        poll's render does the same work, and a tick half a second after it was a second screen
        update each second at a 1 s refresh (half the idle cost, bench/RESULTS.md)."""
        timer = getattr(self, "_tick_timer", None)
        if timer is not None:
            timer.stop()
        if self.is_running:
            self._tick_timer = self.set_timer(delay, self._tick)

    def _note_where(self) -> None:
        if self.shared is not None:  # where this console is, for the others' headers
            screen = self.screen
            self.shared.where = (
                f"runbook {screen.session.runbook.id}, step {screen.session.progress.current + 1}"
                if isinstance(screen, runbook_screen_type())
                else ""
            )

    def _tick(self) -> None:
        # The header is on whichever screen shows the data (the panels' or the wall's; a wall has
        # no panel grid, and a guard on the grid stopped its clock and ages between states).
        if not self.header.is_attached:
            return  # the console is closing: its screens may be gone
        now = self.clock()
        self._note_where()
        self._flag_journal_problem()
        for panel in self.panels:
            panel.tick(now)
        if self.wall_screen is not None and self.wall_screen.is_mounted:
            self.wall_screen.show(self.state, now)  # ages, and a quiet wall going stale
        self.header.show(self.state, now)
        self.size_panels()
        self._schedule_tick(TICK_SECONDS)

    def _hidden_critical(self) -> int:
        return sum(getattr(panel, "hidden_critical", 0) for panel in self.panels)

    # --- panel sizes ----------------------------------------------------------------------------

    def size_panels(self) -> None:
        """Side by side (from 120x36), panels get the rows their content needs, breaches first:
        the breaches table as tall as its rows (it showed 3 of 8 at 120x36, the lock CRIT off
        screen), health and metrics as tall as theirs, Postgres the rest; each keeps a few rows."""
        if self.wall or not self.panels or not self.is_mounted:
            return
        grid = self.grid
        if not grid.is_attached:  # the console is closing: its screen is gone, a tick came after it
            return
        if self.narrow:
            rows = ""
        else:
            height = max(self.size.height - 2, 10)  # the header and the footer
            breaches = next(p for p in self.panels if isinstance(p, BreachesPanel))
            middle = [p for p in self.panels if isinstance(p, HealthPanel | MetricsPanel)]
            clusters = sum(1 for p in self.panels if isinstance(p, PostgresPanel | FleetPanel))
            chrome = 4  # border, status line, table header
            want_breaches = chrome + max(breaches.row_count, 1)
            want_middle = max((p.rows_wanted() for p in middle), default=0)
            floor_middle = 6 if middle else 0
            floor_pg = 10 * clusters
            sizes = [min(want_breaches, max(5, height - floor_middle - floor_pg))]
            if middle:
                sizes.append(max(min(want_middle, height - sizes[0] - floor_pg), floor_middle))
            rows = (
                " ".join([*map(str, sizes), *(["1fr"] * clusters)])
                if clusters
                else " ".join([*map(str, sizes[:-1]), "1fr"])
            )
        if rows != getattr(self, "_grid_rows", None):
            self._grid_rows = rows
            grid.styles.grid_rows = rows or None

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
        tabs = self.tabs
        if tabs.is_attached and tabs.active != f"tab-{panel.id}":
            tabs.active = f"tab-{panel.id}"
        table = next(iter(panel.query("KeyedTable")), None)
        if table is not None and table.can_focus:
            table.focus()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab.id != event.tabs.active:  # a later activation came first: this one is stale
            return
        panel_id = event.tab.id.removeprefix("tab-") if event.tab.id else ""
        panel = next((p for p in self.panels if p.id == panel_id), None)
        if panel is not None and not panel.has_class("-active"):
            self._activate(panel)

    def action_next_panel(self) -> None:
        self._step_panel(1)

    def action_previous_panel(self) -> None:
        self._step_panel(-1)

    def _step_panel(self, step: int) -> None:
        if self.screen is not self._panels_screen or self.query_one("#filter").has_class("-open"):
            (self.screen.focus_next if step > 0 else self.screen.focus_previous)()
            return
        # From the panel activated last, not the focused one: a table's focus() lands a moment
        # later, so keys typed faster than that stepped from the old panel (tab tab tab reached
        # the second panel, not the fourth).
        current = next((p for p in self.panels if p.has_class("-active")), None) or self.focused_panel()
        index = self.panels.index(current)
        self._activate(self.panels[(index + step) % len(self.panels)])

    def on_descendant_focus(self, event) -> None:
        if not self.panels or not self.screen_stack:
            return  # a focus that arrives as the console closes, its screens gone (seen in CI)
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
            self._apply_filter(panel, event.value.strip())

    def _apply_filter(self, panel: Panel, text: str) -> None:
        panel.text_filter = text
        if isinstance(panel, PostgresPanel):
            panel.refresh_view()
        else:
            panel.update_state(self.state, self.clock())
        self.header.hidden_critical = self._hidden_critical()
        self.header.show(self.state, self.clock())
        self.size_panels()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self._close_filter()

    def _close_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.remove_class("-open")
        if (panel := getattr(self, "_filter_target", None)) is not None:
            self._activate(panel)

    def on_key(self, event) -> None:
        # The wall has no filter field (escape used to crash it: NoMatches).
        field = None if self.wall else self.query_one("#filter", Input)
        if event.key == "escape" and field is not None and field.has_class("-open"):
            event.stop()  # escape clears the filter (Enter keeps it)
            field.value = ""
            if (panel := getattr(self, "_filter_target", None)) is not None:
                self._apply_filter(panel, "")
            self._close_filter()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(list(self.key_rows())))

    def key_rows(self) -> Iterable[tuple[str, str, str]]:
        """Every binding of the app and its panels, with the keys the keymap gives it; on a
        screen opened over the panels (a runbook, the rules), that screen's keys first: at 80
        columns its footer cannot show them all."""
        keymap = self._keymap if hasattr(self, "_keymap") else {}
        owners: list[tuple[str, list]] = []
        if len(self.screen_stack) > 1 and not isinstance(self.screen, HelpScreen):
            # The keys its class declares (not Screen's own tab/shift+tab; the wall has none).
            owners.append(("this screen", type(self.screen).__dict__.get("BINDINGS", [])))
        owners.append(("everywhere", type(self).BINDINGS))
        owners += [(p.title, type(p).BINDINGS) for p in self.panels]
        seen: set[tuple[str, str]] = set()
        for where, bindings in owners:
            for binding in bindings:
                if not isinstance(binding, Binding) or (where, binding.action) in seen:
                    continue
                if where == "everywhere" and not self.check_action(binding.action, ()):
                    continue
                seen.add((where, binding.action))
                keys = keymap.get(binding.id, binding.key) if binding.id else binding.key
                yield (self.keys_display(binding, keys), binding.description or binding.action, where)
        if self.check_action("command_palette", ()):
            yield (
                self.keys_display(Binding("ctrl+p", "command_palette"), "ctrl+p"),
                "Command palette",
                "everywhere",
            )
        if self.panels:
            yield (
                self.keys_display(Binding("enter", "select"), "enter"),
                "Details of the selected row",
                "tables",
            )

    def keys_display(self, binding: Binding, keys: str) -> str:
        """Keys as the footer shows them ('?', '/', '^p'), not their names ('question_mark')."""
        shown = [
            self.get_key_display(dataclasses.replace(binding, key=key.strip(), key_display=None))
            for key in keys.split(",")
        ]
        return " ".join(dict.fromkeys(shown))

    @property
    def executor(self) -> Executor:
        """The one executor, made when first needed: a console that runs no action never imports
        the action kinds (docs/SCALE.md, start-up)."""
        if self._executor is None:
            from console.actions.executor import Executor

            # The explicit flag only: the executor names config and wall/web modes as reasons itself.
            self._executor = Executor(self.config, self.journal, clock=self.clock, **self._executor_options)
            if self.shared is not None:
                self._executor.claims = self.shared
        return self._executor

    @property
    def action_running(self) -> bool:
        return self._executor is not None and self._executor.running is not None

    async def action_quit_console(self) -> None:
        if self.action_running:
            self.push_screen(
                ConfirmScreen("An action is running. Quit anyway?", "The action keeps running on the server side; "
                              "its result will be missing from this console's journal.", confirm_label="Quit",
                              decline_label="Stay"),
                lambda ok: self.exit(0) if ok else None,
            )  # fmt: skip
            return
        self.exit(0)

    async def on_unmount(self) -> None:
        await self.poller.aclose()
        if self.shared is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.shared.aclose(), 2)
        self._restore_signal_handlers()

    # --- intents from panels ----------------------------------------------------------------

    def on_show_breach(self, message: ShowBreach) -> None:
        breach = message.breach
        body = breach_detail(
            breach, self.clock(), ack=self._ack_words(breach, full=True), runbooks=self._runbook_ids(breach)
        )
        self.push_screen(DetailScreen(breach.title, body))

    def _runbook_ids(self, breach: Breach) -> list[str] | None:
        """The runbooks ``R`` lists first for ``breach``; None while the pack cannot be read. The
        detail said "runbooks —" for a breach whose picker offered two (config links only)."""
        from console.runbooks.rank import relevant

        pack = self.pack()
        if pack is None:
            return None
        return [m.runbook.id for m in relevant(pack.rank(breach, self.config, self.state.breaches))]

    def action_fleet(self) -> None:
        fleet = next((p for p in self.panels if isinstance(p, FleetPanel)), None)
        if fleet is None:
            self.notify(
                "no Fleet tab: it comes past 3 clusters, or with fleet: {tab: always}", severity="warning"
            )
            return
        self._activate(fleet)

    def on_fleet_panel_open_cluster(self, message: FleetPanel.OpenCluster) -> None:
        panel = next(
            (p for p in self.panels if isinstance(p, PostgresPanel) and p.cluster == message.cluster), None
        )
        if panel is not None:
            self._activate(panel)

    def on_show_text(self, message: ShowText) -> None:
        self.push_screen(DetailScreen(message.title, message.body))

    def on_show_session(self, message: ShowSession) -> None:
        snapshot = self.state.last_good.get(SourceKey.postgres(message.cluster))
        server_now = getattr(snapshot, "server_now", None)
        title = f"{message.cluster}: pid {message.session.pid}"
        self.push_screen(DetailScreen(title, session_detail(message.cluster, message.session, server_now)))

    # --- actions: everything runs through the one executor -----------------------------------

    def _run_action(self, work: Callable[[], Awaitable[None]], name: str) -> None:
        # Workers get the callable, never a coroutine: one cancelled before it started (the
        # console closing, an exclusive group's next one) leaves no coroutine never awaited.
        self.run_worker(work, group="action", name=name, exit_on_error=False)

    async def confirm_and_execute(self, plan: Plan, words: DialogWords | None = None) -> Result | None:
        """Show the plan, ask (default No / the typed word), run it, say what happened.

        Must run in a worker (it waits for the dialog). In read-only mode nothing is asked: the
        executor refuses and the refusal is shown and journaled."""
        confirmation = await self.ask(plan, words=words)
        if confirmation is None:
            return None
        result = await self.executor.execute(plan, confirmation)
        self.notify(result_line(result), severity=result_severity(result), timeout=8)
        return result

    async def ask(
        self,
        plan: Plan,
        decline: Callable[..., Awaitable[None]] | None = None,
        words: DialogWords | None = None,
        say_running: bool = True,
    ) -> Confirmation | None:
        """The operator's answer to the plan's dialog, or None when declined (journaled by
        ``decline``, the executor's by default). Read-only, or a preview that found nothing to
        act on: no dialog, an empty answer (the executor refuses it and says why). Each
        mistyped word is journaled as it happens."""
        if self.executor.refusal_before_asking(plan):
            return actions.Confirmation()
        decline = decline or self.executor.decline
        dialog = confirm_for(
            plan,
            words,
            on_mistyped=lambda typed: self.run_worker(
                functools.partial(self.executor.mistyped, plan, typed), group="journal", exit_on_error=False
            ),
        )
        try:
            confirmed = await self.push_screen_wait(dialog)
        except asyncio.CancelledError:  # the console is closing with the dialog open
            with contextlib.suppress(Exception):
                await asyncio.shield(decline(plan, "abandoned: the console closed"))
            raise
        if not confirmed:
            await decline(plan)
            self.notify(f"not run: {plan.summary}", timeout=4)
            return None
        if say_running:
            self.notify(f"running: {plan.summary}", timeout=3)
        return answer(dialog, True)

    def on_signal_backend(self, message: SignalBackend) -> None:
        session = message.session
        try:
            plan = self.executor.signal_plan(
                message.cluster, session.pid, session.backend_start, message.kind, seen=session.query
            )
        except actions.RenderError as exc:
            self.notify(str(exc), severity="error")
            return
        if self.executor.read_only:
            self.notify(self.executor.read_only_reason, severity="warning")
            return

        words = signal_words(message.kind, session.pid, message.cluster)

        async def run() -> None:
            await self.confirm_and_execute(await self.executor.preview(plan), words)
            self.action_refresh()

        self._run_action(run, f"signal {session.pid}")

    def on_ack_breach(self, message: AckBreach) -> None:
        breach = message.breach
        if message.ack:
            try:
                plan = self.executor.silence_plan(
                    breach, comment=f"ack from incident-console: {breach.title}"
                )
            except actions.RenderError as exc:
                self.notify(str(exc), severity="warning")
                return
        else:
            silence = silence_for(breach, self._silences())
            if silence is None:
                self.notify("no active silence covers this alert", severity="warning")
                return
            silence_id = silence.id
            plan = self.executor.expire_silence_plan(silence_id)

        if message.ack:
            words = DialogWords(
                f"Ack {breach.title}: silence it in Alertmanager for 1 h?", "Ack alert", "Don't ack"
            )
        else:
            words = DialogWords(f"Un-ack {breach.title}: expire its silence?", "Un-ack", "Keep the ack")

        async def run() -> None:
            result = await self.confirm_and_execute(await self.executor.preview(plan), words)
            if result is not None and result.ok:
                self.action_refresh()  # Alertmanager's silences are the truth: read them again

        self._run_action(run, f"ack {breach.id}")

    def _silences(self) -> tuple[Silence, ...]:
        """Every Prometheus server's Alertmanager silences (one Alertmanager's once)."""
        found: dict[str, Silence] = {}
        for snapshot in self.state.last_good.values():
            if isinstance(snapshot, PrometheusSnapshot):
                found |= {s.id: s for s in snapshot.silences if s.id not in found}
        return tuple(found.values())

    def _acks(self, state: ConsoleState) -> dict[str, str]:
        """'acked →14:05Z' for each alert an active silence covers (who acked it: in the
        details; the State column stays narrow, issue 18)."""
        return {b.id: words for b in state.breaches if (words := self._ack_words(b))}

    def _ack_words(self, breach: Breach, full: bool = False) -> str:
        if breach.kind == "alert" and breach.inhibited_by and silence_for(breach, self._silences()) is None:
            return (
                "inhibited"
                if not full
                else f"inhibited in Alertmanager by {', '.join(breach.inhibited_by[:3])}"
            )
        if breach.kind != "alert" or (silence := silence_for(breach, self._silences())) is None:
            return ""
        until = time.strftime("%H:%MZ", time.gmtime(silence.ends_at)) if silence.ends_at else "?"
        if not full:
            return f"acked →{until}"
        who = f" by {silence.created_by}" if silence.created_by else ""
        return f"acked until {until}{who}" + (f": {silence.comment}" if silence.comment else "")

    # --- runbooks -------------------------------------------------------------------------------

    def pack(self) -> Pack | None:
        if self._pack is None:
            from console.runbooks.pack import pack_for

            try:
                self._pack = pack_for(self.config)
            except ConfigError as exc:
                self.notify(f"runbooks: {exc.lines()[0]}", severity="error", timeout=10)
                return None
        return self._pack

    def on_show_runbooks(self, message: ShowRunbooks) -> None:
        self._runbooks_from(self.focused_panel() if self.panels else None, message.breach)

    def action_runbooks(self) -> None:
        panel = self.focused_panel() if self.panels else None
        self._runbooks_from(panel, panel.selected if isinstance(panel, BreachesPanel) else None)

    def _runbooks_from(self, panel: Panel | None, selected: Breach | None) -> None:
        """The picker for the selected breach. With none (another panel, or a filter hiding every
        breach) it ranks for the worst breach the panel shows (the lock chain on the Postgres
        panel), else the worst of all, and says so: never "nothing is in breach" while one is."""
        if selected is not None:
            self._pick_runbook(selected)
            return
        breaches = self.state.breaches
        own = (
            []
            if panel is None or isinstance(panel, BreachesPanel)
            else [b for b in breaches if b.source in panel.sources]
        )
        if own:
            self._pick_runbook(own[0], "worst breach on this panel")
        elif breaches:
            self._pick_runbook(breaches[0], "worst breach; none selected")
        else:
            self._pick_runbook(None)

    def _pick_runbook(self, breach: Breach | None, chosen: str = "") -> None:
        """The picker for ``breach`` (None: nothing is in breach); ``chosen`` says why this
        breach when the operator did not select it."""
        from console.runbooks import runbook_title
        from console.runbooks.rank import relevant
        from panels.runbook import RunbookPicker

        pack = self.pack()
        if pack is None:
            return
        matches = pack.rank(breach, self.config, self.state.breaches) if breach is not None else []
        shown = relevant(matches)  # the rest, and every runbook, behind `a` (issue 18)
        title = f"Runbooks for {breach.title}" if breach is not None else "Runbooks"
        if chosen:
            title += f" ({chosen})"
        if len(shown) < len(matches):
            title += f" ({len(shown)} most relevant of {len(matches)} matching; a: every runbook)"
        picker = RunbookPicker(
            title,
            shown,
            pack.runbooks,
            title_of=lambda runbook: runbook_title(self.config, runbook, breach),
            empty="no runbook matches" if breach is not None else "nothing is in breach",
        )

        causes = {m.runbook.id: m.cause for m in matches if m.cause is not None}

        def opened(runbook_id: str | None) -> None:
            runbook = pack.get(runbook_id) if runbook_id else None
            if runbook is not None:  # a cause's runbook is opened for the breach it is written for
                for_breach = causes.get(runbook.id, breach)
                self._run_action(
                    functools.partial(self._open_runbook, runbook, for_breach), f"open {runbook.id}"
                )

        self.push_screen(picker, opened)

    async def _open_runbook(self, runbook, breach: Breach | None) -> None:
        from console.runbooks.session import RunbookSession
        from panels.runbook import RunbookScreen

        others = self.shared.events() if self.shared is not None else ()
        session = await RunbookSession.open(runbook, self.executor, breach=breach, others=others)
        if session.last_error:
            self.notify(f"journal: {session.last_error}", severity="error", timeout=10)
        await self.push_screen(RunbookScreen(session))

    def _on_shared_events(self, events: list[JournalEvent]) -> None:
        """Another console's events: a step of the run on screen it changed shows at once, and
        the timelines (the wall's, and `t` at its next tick) have them."""
        from console.journal import RunEvent

        self._shared_events_seen += len(events)
        self._wall_timeline()
        for screen in self.screen_stack:
            if isinstance(screen, runbook_screen_type()):
                run = screen.session.progress.run_id
                mine = [e for e in events if isinstance(e, RunEvent) and e.run == run]
                for event in mine:
                    screen.session.progress.apply(event)
                if mine and screen.is_mounted:
                    screen.refresh_steps()

    def on_step_request(self, message: StepRequest) -> None:
        self._run_action(functools.partial(self._step, message), f"step {message.step_id}")

    async def _step(self, message: StepRequest) -> None:
        """The runbook screen's key on a step: the session says what it means and needs; the
        app only asks the operator for it (the dialog, the note) and shows the outcome."""
        from console.runbooks.session import Need
        from panels.runbook import NoteScreen, ValueScreen

        screen, session = message.screen, message.screen.session
        step = session.runbook.step(message.step_id)
        try:
            task = await session.task(message.command, step)
            confirmation, note, value = None, "", None
            if task.need is Need.CONFIRMATION and task.plan is not None:
                # The step's row says RUNNING.
                confirmation = await self.ask(task.plan, decline=session.decline, say_running=False)
                if confirmation is None:
                    return
            elif task.need is Need.NOTE:
                note = await self.push_screen_wait(NoteScreen(f"Note on: {session.title(step)}")) or ""
                if not note:
                    return
            elif task.need is Need.VALUE:
                if not session.runbook.inputs:
                    self.notify(f"{session.runbook.id} has no inputs to set", severity="warning")
                    return
                title = f"Values of {session.runbook.id} (journaled; step: {session.title(step)})"
                value = await self.push_screen_wait(ValueScreen(title, session.inputs(step)))
                if value is None:
                    return
            result = await session.perform(task, confirmation=confirmation, note=note, value=value)
            # On the runbook screen the step says it (a toast there covered the step's output at
            # 80x24); an operator who went back to the panels while a wait ran is told here.
            if result is not None and self.screen is not screen:
                self.notify(result_line(result), severity=result_severity(result), timeout=8)
        except actions.RenderError as exc:
            # A value the operator has to give (it comes from no breach): say which key sets it.
            needs = screen.needs(step)
            if needs:
                self.notify(f"cannot run this step yet: it {needs}", severity="warning", timeout=8)
            else:
                self.notify(f"cannot run this step: {exc}", severity="error", timeout=8)
        except ValueError as exc:  # a value the runbook refuses (not one of its choices)
            self.notify(f"not set: {exc}", severity="error", timeout=8)
        finally:
            if session.last_error:
                self.notify(f"journal: {session.last_error}", severity="error", timeout=10)
            if screen.is_mounted:
                screen.refresh_steps()

    # --- the Prometheus estate's rules ---------------------------------------------------------

    def action_rules(self) -> None:
        servers = self.config.prometheus_servers
        if not servers:
            self.notify("no prometheus in the config: there are no rules to show", severity="warning")
            return
        self.push_screen(RulesScreen(self.state, [server.key for server in servers]))

    # --- timeline and demo --------------------------------------------------------------------

    def action_timeline(self) -> None:
        """Open at once and fill when the journal is read: the screen came only after the read,
        so an Escape pressed meanwhile went to the panels and the timeline opened after it."""
        from panels.timeline import TimelineScreen

        screen = TimelineScreen(
            [], self._timeline_title(), "reading the journal…", reload=lambda: self._reload_timeline(screen)
        )
        self.push_screen(screen)
        self._reload_timeline(screen)

    def _timeline_key(self) -> object:
        """Changes when there is more to read: this machine's journal file (this console or
        another on the host), or other consoles' events from the shared journal."""
        return self.journal.file_key(), self._shared_events_seen

    def _timeline_title(self) -> str:
        where = str(self.journal.path) + (" + shared" if self.shared is not None else "")
        return f"{self.journal.environment}, last {TIMELINE_WINDOW // 3600:.0f} h, {where}"

    async def _read_timeline(self) -> tuple[list[TimelineEntry], str]:
        """The timeline's entries and the problem reading them ("" when none)."""
        from console.journal import merge
        from console.timeline import timeline

        since = self.clock() - TIMELINE_WINDOW
        read = await asyncio.to_thread(self.journal.read_own, since)
        problem = read.error or (f"{read.skipped} unreadable line(s) skipped" if read.skipped else "")
        events = read.events
        if self.shared is not None:  # every console's events, each once
            events = merge(events, (e for e in self.shared.events() if e.ts >= since))
            problem = problem or self.shared.state.problem
        return timeline(events), problem

    def _reload_timeline(self, screen: TimelineScreen) -> None:
        """The open timeline, read again when something was written (its RELOAD_SECONDS tick)."""
        key = self._timeline_key()
        if key == screen.read_key:
            return
        screen.read_key = key

        async def reload() -> None:
            entries, problem = await self._read_timeline()
            screen.show(entries, problem)

        self.run_worker(reload, group="timeline-reload", exclusive=True, exit_on_error=False)

    def _wall_timeline(self) -> None:
        """The wall's timeline: every console's events with a shared journal, else this
        machine's journal (read off the event loop); a viewer of `serve`: as its engine sent it."""
        wall = self.wall_screen
        if wall is None or not wall.is_mounted:
            return

        async def show() -> None:
            since = self.clock() - TIMELINE_WINDOW
            if self.feed is not None:
                sent = self._feed_timeline
                entries = list(sent.entries) if sent is not None else []
                source = sent.source if sent is not None else "from serve's engine"
                problem = sent.problem if sent is not None else "waiting for the engine's timeline"
                if self.feed.lost_since is not None:
                    lost = time.strftime("%H:%M:%SZ", time.gmtime(self.feed.lost_since))
                    problem = f"FEED LOST since {lost}: not live" + (f"; {problem}" if problem else "")
                if wall.is_mounted:
                    wall.show_timeline(entries, source, problem)
                return
            if self.shared is not None:
                events = [e for e in self.shared.events() if e.ts >= since]
                source, problem = "every console, shared journal", self.shared.state.problem
            else:
                read = await asyncio.to_thread(self.journal.read_own, since)
                events, source, problem = list(read.events), "this machine's journal", read.error
            if wall.is_mounted:
                from console.timeline import timeline

                wall.show_timeline(timeline(events), source, problem)

        self.run_worker(show, group="wall-timeline", exclusive=True, exit_on_error=False)

    def action_demo_menu(self) -> None:
        if self.demo is None:
            self.notify("the demo menu exists in `incident-console demo` only", severity="warning")
            return
        from panels.demo_menu import DemoMenu

        menu = DemoMenu(self.demo.scenarios())
        self.push_screen(menu)
        self.run_worker(functools.partial(self._demo_status, menu), group="demo", exit_on_error=False)

    async def _demo_status(self, menu: DemoMenu, message: str = "") -> None:
        try:
            status = await self.demo.astatus()
        except Exception as exc:  # the stack is gone: say so, keep the console
            menu.show_status(None, f"demo stack: {one_line(exc, 200)}")
            return
        menu.show_status(status, message)

    def on_demo_request(self, request: DemoRequest) -> None:
        from panels.demo_menu import DemoMenu

        menu = self.screen if isinstance(self.screen, DemoMenu) else None

        async def run() -> None:
            try:
                if request.on and request.name:
                    said = await self.demo.ainject(request.name)
                else:
                    said = await self.demo.areset(request.name)
            except Exception as exc:
                said = f"demo: {one_line(exc, 200)}"
            self.notify(said, timeout=8)
            if menu is not None:
                await self._demo_status(menu, said)

        self.run_worker(run, group="demo", exit_on_error=False)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume polling", "Stop or restart every poll", self.action_pause)
        yield SystemCommand("Refresh now", "Poll every source now", self.action_refresh)
        if not self.wall:
            yield SystemCommand("Runbooks", "Every runbook of the pack", lambda: self._pick_runbook(None))
            yield SystemCommand("Timeline", "The incident timeline from the journal", self.action_timeline)
            yield SystemCommand("Rules", "Every Prometheus rule: state, health, errors", self.action_rules)
        if self.demo is not None:
            yield SystemCommand("Demo scenarios", "Turn demo faults on or off", self.action_demo_menu)
        for panel in self.panels:
            yield SystemCommand(f"Show {panel.title}", "Focus this panel", lambda p=panel: self._activate(p))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "demo_menu" and self.demo is None:
            return False
        if self.web:  # a browser viewer (``serve``): look and read the help, nothing else
            return action == "help"
        return not self.wall or action in ("quit_console", "help", "command_palette", "quit")


#: Net new objects between two young garbage collections (Python's default is 700).
YOUNG_GC_THRESHOLD = 10_000


def settle_heap() -> None:
    """What the process holds once every source is drawn is mostly for its lifetime (code,
    Textual, the screens, the panels): gc.freeze() takes it out of the garbage collector's full
    passes, which walked all of it every few seconds and stopped the event loop for 90-190 ms,
    the slowest key presses at 1000 sessions. With Textual's strip cycle gone (panels/strips.py)
    a refresh leaves little cyclic garbage, so young collections can wait for 10,000 new
    objects rather than 700: fewer, and fewer objects promoted to the full passes. Key press
    p99 at 1000 sessions 164-173 -> 64-77 ms in quick runs (bench/CHANGES.md).

    The command starts with the collector off (console/entry.py): start-up's garbage, ~6,000
    objects (~1 MB), is collected once here rather than frozen with the rest, and the collector
    is turned on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_GC_THRESHOLD, 10, 10)
    gc.enable()


def runbook_screen_type() -> type:
    """The runbook screen's class, or a class no screen is, before panels/runbook.py was ever
    imported (then no runbook screen exists): the tick asks, and start-up imports no runbook code."""
    module = sys.modules.get("panels.runbook")
    return module.RunbookScreen if module is not None else type(None)


def run_console(
    loaded: Loaded,
    *,
    wall: bool = False,
    read_only: bool = False,
    web: bool = False,
    demo: DemoControl | None = None,
) -> int:
    feed = None
    if web:  # a viewer of `serve`: its engine's feed
        from console.feed import FeedClient

        feed = FeedClient.from_environ()
    app = ConsoleApp(
        loaded.config, pack=loaded.pack, wall=wall, read_only=read_only, web=web, demo=demo, feed=feed
    )
    app.freeze_heap = True
    result = app.run()
    return int(result or 0)
