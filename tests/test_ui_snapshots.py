"""Layout pictures (pytest-textual-snapshot) at 80x24 over SSH and 200x60 on a wall, NO_COLOR too.

Regenerate after an intended layout change with: .venv/bin/pytest tests/test_ui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import pytest

from console.app import ConsoleApp
from tests import ui_data


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
        ((200, 60), ()),
    ],
    ids=["80x24-breaches", "80x24-health", "80x24-metrics", "80x24-postgres", "80x24-locks", "200x60"],
)
def test_layout(snap_compare, size, keys):
    assert snap_compare(app(), terminal_size=size, press=list(keys), run_before=settle)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=["80x24", "200x60"])
def test_layout_no_color(snap_compare, monkeypatch, size):
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(app(), terminal_size=size, run_before=settle)


def test_terminate_dialog(snap_compare):
    assert snap_compare(app(), terminal_size=(80, 24), press=["shift+tab", "K"], run_before=settle)


def test_wall(snap_compare):
    config = ui_data.config(ui={"bell": False})
    wall = ConsoleApp(
        config, poller=ui_data.poller(config), clock=lambda: ui_data.NOW, autopoll=False, wall=True
    )
    assert snap_compare(wall, terminal_size=(200, 60), run_before=settle)
