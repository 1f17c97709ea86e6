"""The garbage collector's full passes were the slowest key presses at 1000 sessions
(bench/CHANGES.md): Textual's Strip.divide kept each drawn line in a reference cycle
(panels/strips.py), and the console's lifetime objects were walked every few seconds
(settle_heap, once every source is drawn)."""

from __future__ import annotations

import sys

from rich.segment import Segment
from textual.strip import Strip

import panels.app  # installs the strip fix, as the console does
from console.poller import Poller
from tests import ui_data
from tests.test_ui import Clock


def test_a_line_divided_at_its_own_length_keeps_no_reference_to_itself():
    strip = Strip([Segment("abc"), Segment("de")], 5)
    references = sys.getrefcount(strip)
    assert strip.divide([5]) == [strip] and strip.divide([9, 5]) == [strip]
    assert sys.getrefcount(strip) == references, "the strip holds itself: only the cycle collector frees it"
    halves = strip.divide([2, 5])
    assert [h.text for h in halves] == ["ab", "cde"]


async def test_the_console_settles_its_heap_once_every_source_is_drawn(monkeypatch):
    settled: list[bool] = []
    monkeypatch.setattr(panels.app, "settle_heap", lambda: settled.append(True))
    config, clock = ui_data.config(), Clock()
    poller = Poller(config, sources=ui_data.sources(), clock=clock)  # nothing drawn yet
    app = panels.app.ConsoleApp(config, poller=poller, clock=clock, autopoll=False)
    app.freeze_heap = True  # as run_console does
    async with app.run_test(size=(120, 40)) as pilot:
        app.render_state(app.poller.publish(ui_data.postgres_snapshot()))
        await pilot.pause()
        assert settled == []  # health and Prometheus have not been drawn yet
        for snapshot in (*ui_data.health_snapshots(), ui_data.prometheus_snapshot()):
            app.render_state(app.poller.publish(snapshot))
        await pilot.pause()
        app.render_state(app.poller.publish(ui_data.postgres_snapshot()))
        await pilot.pause()
        assert settled == [True]
