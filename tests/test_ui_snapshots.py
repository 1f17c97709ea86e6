"""Layout pictures (pytest-textual-snapshot) at 80x24 over SSH and 200x60 on a wall, NO_COLOR too.

Regenerate after an intended layout change with: .venv/bin/pytest tests/test_ui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from console.app import ConsoleApp
from panels.confirm import ConfirmScreen
from tests import ui_data
from tests.pilot import wait_for, wait_for_screen


def app() -> ConsoleApp:
    config = ui_data.config(ui={"bell": False})
    return ConsoleApp(
        config,
        poller=ui_data.poller(config),
        clock=lambda: ui_data.NOW,
        autopoll=False,
        pack=ui_data.pack(config),  # loaded up front: the Runbooks column is in every picture
    )


async def settle(pilot) -> None:
    await pilot.pause()
    pilot.app.header.remove_class("-flash")


@pytest.mark.parametrize(
    ("size", "keys"),
    [
        ((80, 24), ()),
        ((80, 24), ("tab",)),
        ((80, 24), ("tab", "tab")),
        ((80, 24), ("shift+tab",)),
        ((80, 24), ("shift+tab", "l")),
        ((120, 36), ()),
        ((200, 60), ()),
        ((120, 36), ("slash", *"storefront", "enter")),
        ((120, 36), ("down", "down", "down", "space")),
        ((80, 24), ("shift+tab", "enter")),
    ],
    ids=[
        "80x24-breaches",
        "80x24-health",
        "80x24-metrics",
        "80x24-postgres",
        "80x24-locks",
        "120x36",
        "200x60",
        "120x36-filtered",
        "120x36-grouped-expanded",
        "80x24-session-details",
    ],
)
def test_layout(snap_compare, size, keys):
    assert snap_compare(app(), terminal_size=size, press=list(keys), run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_layout_no_color(snap_compare, monkeypatch, size):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(app(), terminal_size=size, run_before=settle)


def test_terminate_dialog(snap_compare):
    """At 80x24 with its buttons on screen and its own keys in the footer (issue 18)."""

    async def dialog_open(pilot) -> None:
        await settle(pilot)
        await pilot.press("shift+tab", "K")
        await wait_for_screen(pilot, ConfirmScreen)
        await pilot.pause()

    assert snap_compare(app(), terminal_size=(80, 24), run_before=dialog_open)


def test_wall(snap_compare):
    config = ui_data.config(ui={"bell": False})
    wall = ConsoleApp(
        config, poller=ui_data.poller(config), clock=lambda: ui_data.NOW, autopoll=False, wall=True
    )

    async def timeline_read(pilot) -> None:  # the wall reads its journal off the event loop
        await settle(pilot)
        await wait_for(pilot, lambda: wall.wall_screen.query_one("#wall-timeline").display, 5, "the timeline")
        await pilot.pause()

    assert snap_compare(wall, terminal_size=(200, 60), run_before=timeline_read)
