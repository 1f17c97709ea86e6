"""A refresh of N seconds is one poll every N seconds (bench/RESULTS.md: with the wait counted
from the end of a poll, 1 s gave 7 refreshes in 8 s at 1000 sessions), never back to back."""

from __future__ import annotations

import asyncio
import time

from console.poller import Poller, next_delay
from tests import ui_data


def test_the_wait_is_what_is_left_of_the_interval_and_at_least_half_of_it():
    assert next_delay(1.0, 0.1) == 0.9
    assert next_delay(1.0, 0.0) == 1.0
    assert next_delay(1.0, 0.7) == 0.5  # a slow poll: the server gets a pause
    assert next_delay(2.0, 5.0) == 1.0


class SlowSource(ui_data.ReplaySource):
    def __init__(self, interval: float, takes: float) -> None:
        super().__init__("postgres:main", [ui_data.postgres_snapshot()], interval)
        self.takes = takes
        self.started: list[float] = []

    async def poll(self):
        self.started.append(time.monotonic())
        await asyncio.sleep(self.takes)
        return await super().poll()


async def test_headless_polls_keep_the_rate_when_a_poll_takes_time():
    source = SlowSource(interval=1.0, takes=0.2)
    poller = Poller(ui_data.config(), sources=[source])
    stop = asyncio.Event()

    def on_state(_state) -> None:
        if len(source.started) >= 4:
            stop.set()

    await asyncio.wait_for(poller.run(on_state, stop=stop), 30)
    gaps = [b - a for a, b in zip(source.started, source.started[1:], strict=False)]
    # Waiting a full interval after each poll would give 1.2 s; a busy machine only delays the
    # poll itself, which the next wait absorbs.
    assert all(0.95 <= gap < 1.1 for gap in gaps), gaps
