"""The soak's headless console (UI side of ``python -m bench.soak``, see bench/soak.py).

``ConsoleApp`` runs under ``App.run_test`` (Textual's headless driver, the whole compositor) with
a pilot pressing keys now and then, next to a second, headless ``Poller.run`` on the same config
(the engine alone), while bench/soak.py's sampler and scenario cycler run on the same loop.
:func:`bench.soak.soak` imports it when it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

import textual.constants
from textual.worker import WorkerState

from bench.soak import (
    Sample,
    Soak,
    cycle_scenarios,
    demo_tracebacks,
    describe_fds,
    sample_loop,
    take_sample,
)
from console.config import Config
from console.journal import Journal
from console.poller import ConsoleState, Poller
from panels.app import ConsoleApp
from panels.postgres import PostgresPanel


async def _press_keys(soak: Soak, app, pilot, stop: asyncio.Event, every: float = 2.0) -> None:
    """Keys a person presses while watching: never an action key (c, K, a on a breach, q)."""

    async def to_postgres() -> None:
        for _ in range(len(app.panels)):
            if isinstance(app.focused_panel(), PostgresPanel):
                return
            await pilot.press("tab")

    async def back_to_main() -> None:
        for _ in range(5):
            if app.screen is app.screen_stack[0] and not app.query_one("#filter").has_class("-open"):
                return
            await pilot.press("escape")
            await pilot.pause()

    async def filter_text(text: str) -> None:
        await pilot.press("slash", *text, "enter")
        await pilot.pause(0.5)
        await pilot.press("slash", *["backspace"] * (len(text) + 2), "enter")

    plans: list[Callable[[], Any]] = [
        lambda: pilot.press("tab"),
        lambda: pilot.press("shift+tab"),
        lambda: pilot.press("r"),
        lambda: pilot.press("p"),  # paused for a while, then resumed by the next plan
        lambda: pilot.press("p"),
        lambda: pilot.press("enter"),  # the selected row's details
        lambda: pilot.press("escape"),
        lambda: filter_text("shop"),
        lambda: pilot.press("t"),
        lambda: pilot.press("escape"),
        lambda: pilot.press("question_mark"),
        lambda: pilot.press("escape"),
    ]
    postgres_keys = ["w", "i", "a", "e", "s", "enter", "escape", "l", "l"]
    step = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            break
        if step % 3 == 2:
            await back_to_main()
            await to_postgres()
            await pilot.press(postgres_keys[(step // 3) % len(postgres_keys)])
        else:
            await plans[step % len(plans)]()
        soak.keys += 1
        step += 1
    await back_to_main()
    if app.paused:
        await pilot.press("p")


# A request already running in a worker thread (a PromQL query) cannot be cancelled: its
# connection closes when it ends, the request timeout after quitting (the demo's 3 s, for the
# connect and again for the read) and longer on a loaded machine: one full-suite run counted 2
# descriptors and 2 tasks more at 7 s (the soak alone, and beside two busy loops: none). A leak
# stays however long this waits, so the longer bound hides none; it is only waited out when
# something is still open.
SETTLE_SECONDS = 20.0


async def _settled_sample(soak: Soak, t0: float, errors) -> Sample:
    """What is left after quitting, once what was closing has closed: sampled until it is no
    more than before starting, or SETTLE_SECONDS have passed (a leak stays, and is judged)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        gc.collect()  # what was dropped unawaited or unclosed says so now, while it is counted
        sample = take_sample(time.monotonic() - t0, len(errors.lines))
        before = soak.before
        settled = before is None or (sample.fds <= before.fds and sample.tasks <= before.tasks)
        if settled or time.monotonic() >= deadline:
            return sample
        await asyncio.sleep(0.25)


async def run_console_soak(soak: Soak, config: Config, control) -> None:
    """The soak itself, on the running loop (see bench/soak.py's module doc)."""
    errors = soak.errors

    class SoakApp(ConsoleApp):
        def on_worker_state_changed(self, event) -> None:
            if event.state == WorkerState.ERROR:
                errors.add("worker", f"{event.worker.name}: {event.worker.error!r}")

        def _handle_exception(self, error: Exception) -> None:
            errors.add("app", f"{type(error).__name__}: {error}")
            super()._handle_exception(error)

    textual_log = soak.out_dir / "textual.log"
    textual_log.unlink(missing_ok=True)
    textual.constants.LOG_FILE = str(textual_log)  # Textual's own log (read at each call)
    loop = asyncio.get_running_loop()
    undo = errors.install(loop)
    stop = asyncio.Event()
    t0 = time.monotonic()
    engine = Poller(config)
    engine_state: list[ConsoleState] = [engine.state]

    def on_engine_state(state: ConsoleState) -> None:
        engine_state[0] = state
        soak.engine_states += 1

    tracebacks = demo_tracebacks(control.state_dir)
    soak.before = take_sample(0.0, 0)
    soak.fds_before = describe_fds()
    app = SoakApp(config, journal=Journal(soak.out_dir / "journal.jsonl"), demo=control)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            sampler = asyncio.create_task(sample_loop(soak, t0, stop))
            engine_task = asyncio.create_task(engine.run(on_engine_state, stop=stop))
            observed = lambda: {"console": app.state, "engine": engine_state[0]}  # noqa: E731
            cycler = asyncio.create_task(cycle_scenarios(soak, control, observed, stop))
            keys = asyncio.create_task(_press_keys(soak, app, pilot, stop))
            tasks = [sampler, engine_task, cycler, keys]
            # Until the time is up, or one of them fails (said below).
            await asyncio.wait(tasks, timeout=soak.duration, return_when=asyncio.FIRST_EXCEPTION)
            stop.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, 90)
                except Exception as exc:
                    errors.add("soak", f"{task.get_coro().__name__}: {type(exc).__name__}: {exc}")
            await pilot.press("q")
    finally:
        await engine.aclose()
        with contextlib.suppress(Exception):
            await control.areset()
        for log, count in demo_tracebacks(control.state_dir).items():
            if count > tracebacks.get(log, 0):
                errors.add("demo stack", f"{count - tracebacks.get(log, 0)} traceback(s) in {log}")
        soak.after = await _settled_sample(soak, t0, errors)
        soak.fds_after = describe_fds()
        undo()
        textual.constants.LOG_FILE = None
        errors.scan_textual_log(textual_log)
