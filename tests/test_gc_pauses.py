"""The garbage collector's full passes were the slowest key presses at 1000 sessions
(bench/CHANGES.md): Textual's Strip.divide kept each drawn line in a reference cycle
(panels/strips.py), and the console's lifetime objects were walked every few seconds
(settle_heap, once every source is drawn). At start-up the collector is off until then
(console/entry.py)."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest
from rich.segment import Segment
from textual.strip import Strip

import panels.app  # installs the strip fix, as the console does
from console.poller import Poller
from tests import ui_data
from tests.pilot import wait_for
from tests.test_config import VALID, write
from tests.test_ui import Clock


@pytest.fixture
def collector_restored():
    """Each test here turns the collector off or freezes objects: it is on again afterwards."""
    yield
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    gc.enable()


def test_a_line_divided_at_its_own_length_keeps_no_reference_to_itself():
    strip = Strip([Segment("abc"), Segment("de")], 5)
    references = sys.getrefcount(strip)
    assert strip.divide([5]) == [strip] and strip.divide([9, 5]) == [strip]
    assert sys.getrefcount(strip) == references, "the strip holds itself: only the cycle collector frees it"
    halves = strip.divide([2, 5])
    assert [h.text for h in halves] == ["ab", "cde"]


def test_the_command_starts_with_the_collector_off(monkeypatch, collector_restored):
    import console.cli
    import console.entry

    seen: list[bool] = []
    monkeypatch.setattr(console.cli, "main", lambda: seen.append(gc.isenabled()) or 0)
    assert console.entry.main() == 0
    assert seen == [False]


def test_a_serve_viewer_starts_through_the_entry_point(tmp_path):
    """serve starts each viewer's console as ``python -m MODULE run --web``: that module is the
    command's entry point (a viewer's start-up has the collector off too) and runs as one."""
    import importlib
    import shlex
    import subprocess

    import console.entry
    from panels.serve_web import child_command

    argv = shlex.split(child_command(tmp_path / "console.yaml"))
    assert argv[0] == "exec" and argv[2] == "-m"
    assert importlib.import_module(argv[3]).main is console.entry.main
    config = write(tmp_path, VALID)
    done = subprocess.run(
        [*argv[1:4], "check-config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr


def test_every_command_but_the_console_turns_the_collector_on(tmp_path, capsys, collector_restored):
    """Only the console turns it on later (after its first data): check-config, snapshot, the
    journal and runbook commands run with it on, however long they run."""
    from console.cli import main

    gc.disable()
    assert main(["check-config", str(write(tmp_path, VALID))]) == 0
    assert gc.isenabled()


def test_settling_collects_what_start_up_left_and_turns_the_collector_on(collector_restored):
    class Node:
        pass

    gc.disable()
    garbage = Node()
    garbage.me = garbage  # a cycle: only the collector frees it
    gone = weakref.ref(garbage)
    del garbage
    panels.app.settle_heap()
    assert gone() is None, "start-up's garbage was frozen for the life of the process"
    assert gc.isenabled() and gc.get_freeze_count() > 0


def settling_app(monkeypatch) -> tuple[panels.app.ConsoleApp, list[bool]]:
    """A console that has drawn nothing yet and settles its heap as run_console's does, and the
    list each settle_heap() call appends to."""
    settled: list[bool] = []
    monkeypatch.setattr(panels.app, "settle_heap", lambda: settled.append(True))
    config, clock = ui_data.config(), Clock()
    poller = Poller(config, sources=ui_data.sources(), clock=clock)  # nothing drawn yet
    app = panels.app.ConsoleApp(config, poller=poller, clock=clock, autopoll=False)
    app.freeze_heap = True  # as run_console does
    return app, settled


async def test_the_heap_is_settled_when_a_source_never_answers(monkeypatch):
    """The collector is off until the heap is settled: a source that never answers must not
    keep it off for the life of the console."""
    monkeypatch.setattr(panels.app, "HEAP_SETTLE_LIMIT", 0.3)
    app, settled = settling_app(monkeypatch)
    async with app.run_test(size=(120, 40)) as pilot:
        app.render_state(app.poller.publish(ui_data.postgres_snapshot()))  # the others never come
        await wait_for(pilot, lambda: settled, 10, "the heap settled")
        await pilot.pause(0.5)
        assert settled == [True]


async def test_the_console_settles_its_heap_once_every_source_is_drawn(monkeypatch):
    app, settled = settling_app(monkeypatch)
    async with app.run_test(size=(120, 40)) as pilot:
        app.render_state(app.poller.publish(ui_data.postgres_snapshot()))
        await pilot.pause()
        assert settled == []  # health and Prometheus have not been drawn yet
        for snapshot in (*ui_data.health_snapshots(), ui_data.prometheus_snapshot()):
            app.render_state(app.poller.publish(snapshot))
        await pilot.pause()
        app.render_state(app.poller.publish(ui_data.postgres_snapshot()))
        await wait_for(pilot, lambda: settled, 10, "the heap settled")
        app.render_state(app.poller.publish(ui_data.postgres_snapshot()))
        await pilot.pause(panels.app.HEAP_SETTLE_DELAY + 0.3)
        assert settled == [True]
