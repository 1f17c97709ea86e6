"""Waiting on the real app under Pilot: a busy 2-core machine makes every fixed pause a race."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


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
