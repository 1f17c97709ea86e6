"""The Postgres panel with 1000 sessions and a lock graph that explodes into a tree of 2000
nodes (bench/RESULTS.md): the screen keeps the first lines of the tree and says what it left
out, and the filters switch between 1000 and 100 rows."""

from __future__ import annotations

import dataclasses

from console.model import LockWait
from console.sources.postgres import build_lock_tree
from panels.postgres import LOCK_LINES, PostgresPanel
from tests import ui_data
from tests.test_ui import goto, make_app, panel


def big_snapshot():
    lock = LockWait(locktype="tuple", mode="ExclusiveLock", relation="public.orders")
    sessions = [ui_data.session(10_000 + i, "idle", f"SELECT {i}", age=i % 50) for i in range(900)]
    holder = ui_data.session(20_000, "idle in transaction", "UPDATE orders SET v = 1", age=300)
    waiters = []
    for i in range(99):  # each waiter is blocked by the holder and by every waiter before it
        blocked = (20_000, *(20_001 + j for j in range(max(0, i - 3), i)))
        waiters.append(ui_data.session(20_001 + i, "active", "UPDATE orders SET v = 2", age=60 - i % 60,
                                       wait=("Lock", "tuple"), blocked_by=blocked, lock=lock))  # fmt: skip
    everything = (*sessions, holder, *waiters)
    base = ui_data.postgres_snapshot()
    tree = build_lock_tree(everything, base.server_now)
    return dataclasses.replace(base, sessions=everything, lock_tree=tree)


async def test_a_huge_lock_tree_is_cut_for_the_screen_and_filters_switch_fast():
    app = make_app()
    snapshot = big_snapshot()
    async with app.run_test(size=(160, 48)) as pilot:
        app.render_state(app.poller.publish(snapshot))
        await pilot.pause()
        pg = panel(app, PostgresPanel)
        lines = str(pg.locks.render()).splitlines()
        assert len(lines) == LOCK_LINES
        assert lines[0].startswith("pid 20000 ") and "more lines" in lines[-1]
        assert pg.sessions.row_count == 1000
        await goto(pilot, app, PostgresPanel)
        await pilot.press("w")
        await pilot.pause()
        assert pg.sessions.row_count == 99
        await pilot.press("e")
        await pilot.pause()
        assert pg.sessions.row_count == 1000
