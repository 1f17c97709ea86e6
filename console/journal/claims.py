"""Claims: "this console is acting on that target", so that two engineers do not run the same
action on the same thing seconds apart (terminate the same pid, restart the same app).

A claim is a lock held while the action runs, and an ``action.claimed`` event that says who holds
it. With a shared journal the lock is a Postgres advisory lock on the shared store (every console
of the environment sees it; see console/journal/shared.py). Without one, :class:`LocalClaims`
locks files next to the local journal: this machine only, and the confirmation says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from console.journal.events import ActionClaimed, ActionSucceeded, JournalEvent
from console.journal.reader import read_journal


@dataclass(frozen=True, slots=True)
class Claim:
    """Whether a target is held by another console, and who (the newest claim event for it)."""

    held: bool
    by: str = ""  # operator
    what: str = ""  # the plan's summary
    since: float | None = None

    def text(self, now: float) -> str:
        if not self.held:
            return ""
        who = self.by or "another console"
        ago = "" if self.since is None else f" (started {max(now - self.since, 0):.0f} s ago)"
        return f"{who} is running '{self.what or 'an action'}' on this target{ago}"

    def done_text(self) -> str:
        at = "" if self.since is None else time.strftime(" at %H:%M:%SZ", time.gmtime(self.since))
        return f"{self.by or 'another console'} already ran '{self.what or 'this action'}' on this target{at}"


#: How long an action another console ran on the same target counts as just done.
RECENT = 600.0


def scope_of(kind: str, target: str) -> str:
    """What an action without sessions acts on, whatever it does there: ``http on sync-worker
    (…/admin/mode)`` for route-only and for normal mode alike (see :func:`done_by_others`)."""
    return f"{kind} on {target}"


def done_by_others(
    events: Iterable[JournalEvent], console: str, targets: Sequence[str], now: float, scope: str = ""
) -> Claim:
    """Another console's action on one of ``targets`` that ran to success within :data:`RECENT`
    and is still the newest action there (two engineers confirming the same terminate one after
    the other: the second is told, instead of failing on a session that is gone).

    The newest action on the same ``targets`` or ``scope`` decides: when it is this console's, or
    another action on the same thing (route-only, then normal mode again), the earlier one was
    undone or superseded, and running it again is no duplicate."""
    events = [e for e in events if now - e.ts <= RECENT]
    succeeded = {e.plan.id for e in events if isinstance(e, ActionSucceeded)}
    wanted = set(targets)
    for event in reversed(events):
        if not isinstance(event, ActionClaimed) or event.plan.id not in succeeded:
            continue
        same = bool(wanted & set(event.claims))
        if not same and not (
            scope and not event.plan.targets and scope_of(event.plan.kind, event.plan.target) == scope
        ):
            continue
        if same and event.console != console:
            return Claim(held=True, by=event.operator, what=event.plan.summary, since=event.ts)
        return Claim(held=False)
    return Claim(held=False)


class Claims(Protocol):
    #: False: the claims reach this machine only (no shared journal).
    shared: bool

    async def claim(self, targets: Sequence[str]) -> Claim:
        """Take every target, or none; a held Claim says who has one of them."""
        ...

    async def peek(self, targets: Sequence[str]) -> Claim:
        """Who holds one of the targets now, without taking them."""
        ...

    async def release(self, targets: Sequence[str]) -> None: ...

    async def recently_done(self, targets: Sequence[str], scope: str = "") -> Claim:
        """Another console's action on one of the targets that just succeeded and is still the
        newest there (see :func:`done_by_others`)."""
        ...


class LocalClaims:
    """File locks in ``directory`` (one per target), held while the action runs."""

    shared = False

    def __init__(self, directory: Path, journal: Path, console: str = "") -> None:
        self.directory = Path(directory)
        self.journal = Path(journal)
        self.console = console  # this console's id: its own actions are not "another's"
        self._held: dict[str, int] = {}  # target -> open descriptor holding its lock

    @classmethod
    def beside(cls, journal: Path, console: str = "") -> LocalClaims:
        """The claims of every console writing ``journal`` on this machine: ``<journal>.claims/``."""
        return cls(journal.with_name(journal.name + ".claims"), journal, console)

    async def recently_done(self, targets: Sequence[str], scope: str = "") -> Claim:
        now = time.time()
        read = read_journal(self.journal, now - RECENT)
        return done_by_others(read.events, self.console, targets, now, scope)

    def _path(self, target: str) -> Path:
        return self.directory / (hashlib.blake2b(target.encode(), digest_size=12).hexdigest() + ".lock")

    def _try(self, target: str) -> int | None:
        """A descriptor holding the target's lock, None if another console holds it, or -1 when
        no lock file can be made (the journal's directory is unwritable: the journal write that
        must come next refuses the action and says why)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._path(target), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def claim(self, targets: Sequence[str]) -> Claim:
        taken: list[str] = []
        for target in targets:
            if target in self._held:
                continue
            fd = self._try(target)
            if fd is None:
                await self.release(taken)
                return self.holder(target)
            self._held[target] = fd
            taken.append(target)
        return Claim(held=False)

    async def peek(self, targets: Sequence[str]) -> Claim:
        for target in targets:
            if target in self._held:
                continue
            fd = self._try(target)
            if fd is None:
                return self.holder(target)
            if fd >= 0:
                os.close(fd)
        return Claim(held=False)

    async def release(self, targets: Sequence[str]) -> None:
        for target in targets:
            fd = self._held.pop(target, None)
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def holder(self, target: str) -> Claim:
        since = time.time() - 3600
        claims = [e for e in read_journal(self.journal, since).events if isinstance(e, ActionClaimed)]
        newest = next((e for e in reversed(claims) if target in e.claims), None)
        if newest is None:
            return Claim(held=True)
        return Claim(held=True, by=newest.operator, what=newest.plan.summary, since=newest.ts)
