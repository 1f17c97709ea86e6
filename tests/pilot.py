"""Waiting on the real app under Pilot, and on real sources: a busy 2-core machine makes every
fixed pause a race."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def wait_for(pilot: Any, condition: Callable[[], Any], timeout: float = 20.0, what: Any = "") -> float:
    """Pause the app until ``condition()`` is true; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"not seen within {timeout:g}s: {what() if callable(what) else what or condition}"
            )
        await pilot.pause(0.05)
    return time.monotonic() - started


async def wait_for_screen(pilot: Any, kind: type, timeout: float = 20.0) -> Any:
    """The screen an action opens from a worker (a confirmation after its preview) arrives some
    event-loop turns after the key press: wait for it and return it."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, kind), timeout, f"a {kind.__name__}")
    return app.screen


async def detail_text(pilot: Any, timeout: float = 5.0, what: str = "a detail view") -> str:
    """The text of the detail view a key opened, once its TextArea is mounted: the screen is
    pushed a turn before its children are (a slow machine read NoMatches for the TextArea of a
    DetailScreen already on top)."""
    from panels.detail import DetailScreen

    app = pilot.app
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, DetailScreen) and bool(app.screen.query("TextArea")),
        timeout,
        what,
    )
    return app.screen.query_one("TextArea").text


async def poll_until(
    poll: Callable[[], Awaitable[T]],
    check: Callable[[T], Any],
    timeout: float = 20.0,
    describe: Callable[[T], Any] = repr,
    interval: float = 0.3,
) -> T:
    """Poll a source or a poller (``poll``: its ``poll``/``poll_all``) until ``check(result)`` is
    truthy; fail with ``describe(last result)`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await poll()
        if check(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout:g}s: {describe(result)}")
        await asyncio.sleep(interval)
