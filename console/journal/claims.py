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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from console.journal.events import ActionClaimed
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


class LocalClaims:
    """File locks in ``directory`` (one per target), held while the action runs."""

    shared = False

    def __init__(self, directory: Path, journal: Path) -> None:
        self.directory = Path(directory)
        self.journal = Path(journal)
        self._held: dict[str, int] = {}  # target -> open descriptor holding its lock

    @classmethod
    def beside(cls, journal: Path) -> LocalClaims:
        """The claims of every console writing ``journal`` on this machine: ``<journal>.claims/``."""
        return cls(journal.with_name(journal.name + ".claims"), journal)

    def _path(self, target: str) -> Path:
        return self.directory / (hashlib.blake2b(target.encode(), digest_size=12).hexdigest() + ".lock")

    def _try(self, target: str) -> int | None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._path(target), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
            os.close(fd)
        return Claim(held=False)

    async def release(self, targets: Sequence[str]) -> None:
        for target in targets:
            fd = self._held.pop(target, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def holder(self, target: str) -> Claim:
        since = time.time() - 3600
        claims = [e for e in read_journal(self.journal, since).events if isinstance(e, ActionClaimed)]
        newest = next((e for e in reversed(claims) if target in e.claims), None)
        if newest is None:
            return Claim(held=True)
        return Claim(held=True, by=newest.operator, what=newest.plan.summary, since=newest.ts)
