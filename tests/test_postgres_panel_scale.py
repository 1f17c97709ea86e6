"""The Postgres panel with 1000 sessions and a queue of 99 lock waiters, each blocked by the
holder and the waiters ahead of it (drawn with every edge it was a tree of 2000 nodes,
bench/RESULTS.md; now a line per waiter): the screen keeps the first lines of the tree and
says what it left out, and the filters switch between 1000 and 100 rows."""

from __future__ import annotations

import dataclasses

from console.locktree import build_lock_tree
from console.model import LockWait
from console.report import lock_tree_lines
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


async def showing_big_snapshot(pilot, app):
    snapshot = big_snapshot()
    app.render_state(app.poller.publish(snapshot))
    await pilot.pause()
    return panel(app, PostgresPanel), snapshot


async def test_a_huge_lock_tree_is_cut_for_the_screen_and_filters_switch_fast():
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        pg, _ = await showing_big_snapshot(pilot, app)
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


async def test_a_filter_key_rebuilds_no_row_of_the_same_snapshot(monkeypatch):
    """Rows are built once per snapshot: a key press only picks and orders them (at 1000
    sessions it rebuilt 1000 rows and their durations on every key)."""
    import panels.postgres

    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        pg, snapshot = await showing_big_snapshot(pilot, app)
        await goto(pilot, app, PostgresPanel)
        built: list[float] = []
        original = panels.postgres.format_duration
        monkeypatch.setattr(panels.postgres, "format_duration", lambda s: built.append(s) or original(s))
        for key, count in (("w", 99), ("e", 1000), ("s", 1000), ("s", 1000), ("w", 99)):
            await pilot.press(key)
            await pilot.pause()
            assert pg.sessions.row_count == count
        assert built == []
        # The 3rd sort (duration ascending; attention, then duration descending, before it)
        # orders the waiters: the shortest wait first.
        first = pg.sessions.coordinate_to_cell_key((0, 0)).row_key.value
        assert first.startswith("20060:")
        later = dataclasses.replace(
            snapshot, taken_at=snapshot.taken_at + 5, server_now=snapshot.server_now + 5
        )
        app.render_state(app.poller.publish(later))
        await pilot.pause()
        assert len(built) == len(snapshot.sessions)  # a new snapshot: its durations, once
        # Cells of equal text are one Text (users, states, durations): built once, not per row.
        rows = [pg.sessions.get_row_at(i) for i in range(3)]
        assert (
            rows[0][1] is rows[1][1] is rows[2][1]
        )  # the second column (user, or state when the fit left the user out)


def test_lock_tree_lines_can_stop_at_a_limit():
    tree = big_snapshot().lock_tree
    every = lock_tree_lines(tree)
    assert len(every) == 100  # the holder and each waiter once
    assert lock_tree_lines(tree, limit=LOCK_LINES) == every[:LOCK_LINES]
    assert lock_tree_lines(tree, indent="  ", limit=3) == lock_tree_lines(tree, indent="  ")[:3]


async def test_cell_texts_of_past_snapshots_are_let_go():
    """One Text per distinct cell value, kept for two snapshots: refreshes whose durations move
    on let the texts of durations no longer shown go, rather than pile them up to a bound."""
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        pg, snapshot = await showing_big_snapshot(pilot, app)
        seen: set[tuple] = set()
        original = pg._text
        pg._text = lambda make, *args: seen.add((make, *args)) or original(make, *args)
        for second in range(1, 31):
            later = dataclasses.replace(
                snapshot, taken_at=snapshot.taken_at + second, server_now=snapshot.server_now + second
            )
            app.render_state(app.poller.publish(later))
            await pilot.pause()
        held = len(pg._texts) + len(pg._texts_old)
        assert 0 < held <= len(seen) - 25  # each refresh retires at least one duration
