"""The blocking tree: root blockers with their waiters as children, from the sessions of one
refresh. Pure: no I/O, no clock; the caller gives the server's time.

The input is what Postgres says about each session: ``Session.blocked_by`` is
``pg_blocking_pids(pid)``, which lists hard blockers (sessions holding a lock that conflicts
with the one awaited) and soft blockers (sessions ahead in the lock's queue asking for a
conflicting lock) alike, with nothing to tell them apart. The tree makes the queue visible
instead: a waiter sits under each of its blockers that none of its other blockers waits for.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from console.model import LockNode, Session

__all__ = ["TREE_MAX_DEPTH", "TREE_MAX_NODES", "build_lock_tree", "direct_blockers"]

#: Upper bounds for the blocking tree, so that a pathological lock graph cannot blow up a poll.
TREE_MAX_NODES = 2000
TREE_MAX_DEPTH = 64


def direct_blockers(pid: int, by_pid: dict[int, Session]) -> set[int]:
    """The blockers of ``pid`` that no other of its blockers waits for. pg_blocking_pids() gives
    a waiter in a queue every session ahead of it, so a queue of n waiters drawn with every
    edge repeats each waiter under each one ahead (2^n nodes); without the implied edges it is
    one line per waiter, and each blocker still has the waiter in its subtree. A blocker that
    waits for ``pid`` (a cycle) implies nothing."""
    blockers = {b for b in by_pid[pid].blocked_by if b != pid}
    if len(blockers) < 2:
        return blockers
    implied: set[int] = set()
    for other in blockers:
        session = by_pid.get(other)
        if session is not None and pid not in session.blocked_by:
            implied.update(session.blocked_by)
    return (blockers - implied) or blockers


def build_lock_tree(
    sessions: Iterable[Session],
    server_now: float | None = None,
    *,
    console: frozenset[int] = frozenset(),
    max_nodes: int = TREE_MAX_NODES,
    max_depth: int = TREE_MAX_DEPTH,
) -> tuple[LockNode, ...]:
    """Root blockers (blocking others, waiting on nobody) with their waiters as children.

    A waiter blocked by several sessions appears under each of them that none of the others
    waits for (see :func:`direct_blockers`: a lock queue is a line per waiter). Pids that block
    someone but are not in ``sessions`` (hidden, gone since, or the console's own: ``console``)
    become bare nodes. A cycle has no natural root: its smallest pid becomes one, and the edge
    back to a node already on the path is dropped, so the result is always a finite tree. Roots
    and children are ordered by pid. A waiter's ``waiting_for`` is ``server_now`` less the
    start of its wait (the lock's, else the state change), None without ``server_now``.
    """
    by_pid = {s.pid: s for s in sessions}
    waiters: dict[int, list[int]] = defaultdict(list)
    for pid in sorted(by_pid):
        for blocker in sorted(direct_blockers(pid, by_pid)):
            waiters[blocker].append(pid)
    for pid in sorted(by_pid):  # a blocker that lost every edge to the reduction (cycles) keeps its own
        for blocker in by_pid[pid].blocked_by:
            if blocker != pid and blocker not in waiters:
                waiters[blocker].append(pid)
    if not waiters:
        return ()

    def waits(pid: int) -> bool:
        session = by_pid.get(pid)
        return session is not None and any(b != pid for b in session.blocked_by)

    visited: set[int] = set()
    budget = [max_nodes]

    def node(pid: int, path: frozenset[int]) -> LockNode:
        visited.add(pid)
        budget[0] -= 1
        children = []
        if len(path) <= max_depth:
            for waiter in waiters.get(pid, ()):
                if waiter in path or budget[0] <= 0:
                    continue
                children.append(node(waiter, path | {waiter}))
        session = by_pid.get(pid)
        if session is None:
            state = "incident-console" if pid in console else "not visible"
            return LockNode(
                pid=pid, user="", state=state, query="", lock=None, waiting_for=None, children=tuple(children)
            )
        started = session.lock.since if session.lock and session.lock.since else session.state_change
        waited = None
        if session.waiting_on_lock and started is not None and server_now is not None:
            waited = max(server_now - started, 0.0)
        return LockNode(
            pid=pid,
            user=session.user,
            state=session.state,
            query=session.query,
            lock=session.lock,
            waiting_for=waited,
            children=tuple(children),
        )

    roots = [node(pid, frozenset((pid,))) for pid in sorted(waiters) if not waits(pid)]
    while budget[0] > 0:
        rest = sorted(pid for pid in waiters if pid not in visited)
        if not rest:
            break
        roots.append(node(rest[0], frozenset((rest[0],))))
    return tuple(roots)
