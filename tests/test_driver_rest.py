"""The terminal driver's input thread at rest (issue 20): it sleeps until there is input, a lone
escape key's timeout is due, or it is told to stop. Textual's woke ten times a second to look at
its exit flag, ~1 ms of an idle console's CPU a second. Counts of wake-ups, not timings."""

from __future__ import annotations

import asyncio
import os
import pty
import selectors
import signal
import threading
import time
import tty
from types import SimpleNamespace

from textual._xterm_parser import XTermParser

from panels.driver import TerminalDriver, input_wait


def test_the_input_thread_waits_without_a_timeout_unless_an_escape_is_pending():
    parser = XTermParser()
    assert input_wait(parser) is None
    list(parser.feed("\x1b"))  # a lone escape: a key or the start of a sequence, decided by a timeout
    wait = input_wait(parser)
    assert wait is not None and 0 <= wait <= 0.1
    list(parser.feed("[A"))  # the sequence completed: nothing pending
    assert input_wait(parser) is None


async def test_an_idle_input_thread_sleeps_reads_keys_and_stops_when_told(monkeypatch):
    """(A driver needs a running event loop.) On a real pty: one second without input is one or two waits (it was ten), a key is still
    read and delivered, and disable_input ends the thread at once."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTSTP, signal.SIGCONT, signal.SIGHUP)}
    # The pty may become this process's controlling terminal: closing it would hang it up.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    master, slave = pty.openpty()
    tty.setraw(slave)  # as the driver's application mode has it: keys, not lines
    lost: list[str] = []
    events: list[object] = []
    waits: list[float | None] = []
    real_select = selectors.SelectSelector.select

    def counting(self, timeout=None):
        waits.append(timeout)
        return real_select(self, timeout)

    monkeypatch.setattr(selectors.SelectSelector, "select", counting)
    driver = TerminalDriver(SimpleNamespace(terminal_lost=lost.append), mouse=False)
    try:
        driver.fileno, driver.input_tty = slave, True
        driver.process_message = events.append  # type: ignore[method-assign]
        thread = threading.Thread(target=driver.run_input_thread, daemon=True)
        driver._key_thread = thread
        thread.start()
        await asyncio.sleep(1.0)
        assert len(waits) <= 2, waits
        os.write(master, b"x")
        deadline = time.monotonic() + 5
        while not any(getattr(e, "key", None) == "x" for e in events) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert any(getattr(e, "key", None) == "x" for e in events), events
        driver.disable_input()
        thread.join(5)
        assert not thread.is_alive()
        assert lost == []  # it ended because it was told to, not on a lost terminal
    finally:
        driver.close()
        os.close(master)
        os.close(slave)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
