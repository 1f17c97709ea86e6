"""The blocking tree from sessions as Postgres describes them (console.locktree): pure, so
table cases. ``blocked_by`` is what pg_blocking_pids() returns: hard blockers (holding a
conflicting lock) and soft ones (ahead in the lock's queue, asking for a conflicting lock)
alike. The real-server counterpart (a lock chain built for real) is in test_postgres_source.py.
"""

from __future__ import annotations

import pytest

from console.locktree import build_lock_tree, direct_blockers
from console.model import LockNode, LockWait, Session


def s(
    pid: int,
    blocked_by: tuple[int, ...] = (),
    *,
    mode: str = "AccessExclusiveLock",
    state: str = "active",
    state_change: float | None = 100.0,
    since: float | None = None,
) -> Session:
    """A session; one with blockers waits for a ``mode`` lock on relation t."""
    waiting = bool(blocked_by)
    return Session(
        pid=pid,
        backend_start=None,
        user=f"u{pid}",
        database="d",
        application="",
        client="",
        state=state,
        wait_event_type="Lock" if waiting else "",
        wait_event="relation" if waiting else "",
        xact_start=None,
        query_start=None,
        state_change=state_change,
        backend_type="client backend",
        query=f"q{pid}",
        blocked_by=blocked_by,
        lock=LockWait(locktype="relation", mode=mode, relation="t", since=since) if waiting else None,
    )


def shape(tree: tuple[LockNode, ...]) -> list:
    """The tree as nested (pid, [children]) pairs, ordered as built."""
    return [(node.pid, shape(node.children)) for node in tree]


CASES = {
    # 1 holds; 2 waits for 1; 3 waits for 2 (a row lock chain: each waits for the one before).
    "a chain": (
        [s(1), s(2, (1,)), s(3, (2,))],
        [(1, [(2, [(3, [])])])],
    ),
    # One queue per table: a waiter's pg_blocking_pids() lists everyone ahead of it, and the
    # tree draws each queue as one line rather than every waiter under every one ahead.
    "two queues": (
        [s(1), s(2, (1,)), s(3, (1, 2)), s(4, (1, 2, 3)), s(10), s(11, (10,)), s(12, (10, 11))],
        [(1, [(2, [(3, [(4, [])])])]), (10, [(11, [(12, [])])])],
    ),
    # A deadlock before the server breaks it: no session is a natural root, so the smallest
    # pid is one and the edge back to it is dropped; a session waiting on the cycle hangs off it.
    "a deadlock of two": (
        [s(1, (2,)), s(2, (1,))],
        [(1, [(2, [])])],
    ),
    "a deadlock of three, with a waiter on it": (
        [s(1, (3,)), s(2, (1,)), s(3, (2,)), s(4, (3,))],
        [(1, [(2, [(3, [(4, [])])])])],
    ),
    # The blocker ended (or is hidden) between the server's answer and this refresh: it is a
    # bare node, and its waiter is not lost.
    "a waiter whose blocker vanished": (
        [s(5, (7,)), s(6, (5,))],
        [(7, [(5, [(6, [])])])],
    ),
    # Hard and soft: 1 reads t (AccessShareLock held); 2 asks for AccessExclusiveLock (hard
    # block: 1 holds a conflicting lock); 3 asks for AccessShareLock, which 1's lock allows but
    # 2's queued request does not (soft block: pg_blocking_pids(3) is 2 alone).
    "a soft block behind a hard one": (
        [s(1), s(2, (1,)), s(3, (2,), mode="AccessShareLock")],
        [(1, [(2, [(3, [])])])],
    ),
    # Two readers hold AccessShareLock (both hard blockers of 3, neither waiting): 3 shows
    # under each; 4, soft-blocked behind 3 only, follows 3 in both places.
    "two hard blockers holding together": (
        [s(1), s(2), s(3, (1, 2)), s(4, (3,), mode="AccessShareLock")],
        [(1, [(3, [(4, [])])]), (2, [(3, [(4, [])])])],
    ),
    # Two independent holders of different locks: the waiter is under each.
    "one waiter, two unrelated holders": (
        [s(1), s(2), s(3, (1, 2))],
        [(1, [(3, [])]), (2, [(3, [])])],
    ),
    # A session that blocks nobody and waits on nobody is no part of the tree.
    "no waits": (
        [s(1), s(2, state="idle in transaction")],
        [],
    ),
}


@pytest.mark.parametrize(("sessions", "expected"), CASES.values(), ids=CASES.keys())
def test_tree_shape(sessions, expected):
    assert shape(build_lock_tree(sessions, server_now=110.0)) == expected
    # The order sessions come in does not matter.
    assert build_lock_tree(list(reversed(sessions)), server_now=110.0) == build_lock_tree(
        sessions, server_now=110.0
    )


DIRECT = {
    "a queue: the one just ahead": ([s(1), s(2, (1,)), s(3, (1, 2))], 3, {2}),
    "unrelated holders: both": ([s(1), s(2), s(3, (1, 2))], 3, {1, 2}),
    "a cycle implies nothing": ([s(1), s(2, (1, 3)), s(3, (1, 2))], 2, {1, 3}),
    "a blocker not in view: kept": ([s(2, (1,)), s(3, (1, 2))], 3, {2}),
    "a pid never blocks itself": ([s(1), s(2, (1, 2))], 2, {1}),
}


@pytest.mark.parametrize(("sessions", "pid", "expected"), DIRECT.values(), ids=DIRECT.keys())
def test_direct_blockers(sessions, pid, expected):
    assert direct_blockers(pid, {x.pid: x for x in sessions}) == expected


def test_bare_nodes_say_whose_they_are():
    """A blocker not among the sessions is the console's own (by pid) or not visible."""
    tree = build_lock_tree([s(5, (7,)), s(6, (8,))], console=frozenset({8}))
    seven, eight = tree
    assert (seven.pid, seven.state, seven.user, seven.query, seven.lock) == (7, "not visible", "", "", None)
    assert (eight.pid, eight.state) == (8, "incident-console")
    assert [c.pid for c in seven.children] == [5] and [c.pid for c in eight.children] == [6]


def test_waiting_for_counts_from_the_lock_else_the_state_change():
    sessions = [s(1), s(2, (1,), since=104.0), s(3, (2,), state_change=101.0)]
    (root,) = build_lock_tree(sessions, server_now=110.0)
    ((two,),) = [root.children]
    ((three,),) = [two.children]
    assert root.waiting_for is None and root.lock is None  # a root waits on nobody
    assert two.waiting_for == pytest.approx(6.0) and two.lock.mode == "AccessExclusiveLock"
    assert three.waiting_for == pytest.approx(9.0)
    # No server time: no wait durations; a clock behind the start: zero, never negative.
    assert all(n.waiting_for is None for _, n in build_lock_tree(sessions)[0].walk())
    (late,) = build_lock_tree(sessions, server_now=50.0)
    assert [n.waiting_for for _, n in late.walk()] == [None, 0.0, 0.0]


def test_bounds_keep_a_pathological_graph_finite():
    # Past max_depth a chain goes on as a root of its own: nothing is lost to the depth bound.
    chain = [s(1), *(s(pid, (pid - 1,)) for pid in range(2, 31))]
    tree = build_lock_tree(chain, max_depth=10)
    assert [(r.pid, max(depth for depth, _ in r.walk())) for r in tree] == [(1, 10), (12, 10), (23, 7)]
    assert [n.pid for r in tree for _, n in r.walk()] == list(range(1, 31))
    # The node budget is a hard stop.
    fan = [s(1), *(s(pid, (1,)) for pid in range(2, 102))]
    (wide,) = build_lock_tree(fan, max_nodes=20)
    assert sum(1 for _ in wide.walk()) == 20
    # Every node of a cycle is kept, whichever pid it is entered by.
    cycle = [s(pid, ((pid % 50) + 1,)) for pid in range(1, 51)]
    (root,) = build_lock_tree(cycle)
    assert root.pid == 1 and sorted(n.pid for _, n in root.walk()) == list(range(1, 51))
