"""The console's terminal driver: Textual's Linux driver, told what a lost terminal looks like.

When an SSH connection drops or a tmux session is killed, the kernel hangs up the tty: a read
returns 0 (EOF) or fails with EIO, and a write fails with EIO. SIGHUP goes to the session leader
only: under ``make`` (``tmux new-session "make demo"``), make gets it and waits for its child, and
the console gets no signal at all. Textual 8.2.8's driver then did two things (issue 15):

- its input thread took read() == 0 for "nothing yet" and selected again: ~100 % of a core;
- its writer thread died on the first EIO, and once 30 writes were queued behind it, the event
  loop blocked for good in ``Queue.put``: no handler run by the loop ever ran again, so SIGTERM
  was ignored, and shutting down blocked as well.

:class:`TerminalDriver` ends its input thread on EOF or EIO from a terminal and reports the loss
to the app (``terminal_lost``, called from that thread; ConsoleApp ends as on SIGHUP), and never
lets output block: after EIO on a write the output is dropped, and the loss reported the same
way. EOF on a stdin that is not a terminal (``< /dev/null``, a pipe) means there is no input,
not that the screen is gone: the input thread ends and the console keeps running.

At rest the input thread sleeps until there is input (or a lone escape key's timeout is due):
Textual's woke every 0.1 s to look at its exit flag, ~1 ms of CPU a second of an idle console
(issue 20). Stopping the input writes to a pipe the thread also waits on.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import sys
import termios
from codecs import getincrementaldecoder
from typing import IO, Any

from textual._parser import ParseError
from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver


class TerminalOutput:
    """The file Textual's writer thread writes to: on EIO (the terminal is gone) it reports the
    loss once and drops every later write, so the thread keeps emptying its queue and a write
    from the event loop never blocks. Other errors drop that write only."""

    def __init__(self, file: IO[str], lost: Any) -> None:
        self._file = file
        self._lost = lost
        self.gone = False

    def _guarded(self, call: Any, *args: Any) -> None:
        if self.gone:
            return
        try:
            call(*args)
        except OSError as exc:
            if exc.errno == errno.EIO:
                self.gone = True
                self._lost("EIO writing to the terminal")
        except ValueError:  # closed
            self.gone = True

    def write(self, text: str) -> None:
        self._guarded(self._file.write, text)

    def flush(self) -> None:
        self._guarded(self._file.flush)

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return self._file.isatty()


class TerminalDriver(LinuxDriver):
    """Textual's LinuxDriver, ending on a lost terminal instead of spinning or blocking."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._lost_reported = False
        self._file = TerminalOutput(sys.__stderr__, self._terminal_lost)
        self._wake_r, self._wake_w = os.pipe()  # disable_input wakes the input thread through it

    def _terminal_lost(self, reason: str) -> None:
        """The terminal is gone (any thread). The app's ``terminal_lost(reason)`` must be safe to
        call from any thread; an app without one gets the SIGHUP the kernel did not send."""
        if self._lost_reported:
            return
        self._lost_reported = True
        lost = getattr(self._app, "terminal_lost", None)
        if lost is not None:
            lost(reason)
        else:
            os.kill(os.getpid(), signal.SIGHUP)

    def run_input_thread(self) -> None:
        """Textual 8.2.8's input loop, except that EOF or EIO ends it (see the module doc)."""
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        fileno = self.fileno
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode

        def feed(data: str) -> None:
            for event in parser.feed(data):
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                if any(key.fd == fileno for key, _ in selector.select(input_wait(parser))):
                    try:
                        data = os.read(fileno, 1024 * 4)
                    except BlockingIOError:  # another process made the tty non-blocking
                        data = None
                    except OSError as exc:  # EIO: a hung-up tty, or a background one of an orphan
                        self._input_ended(f"{errno.errorcode.get(exc.errno or 0, exc)} reading the terminal")
                        return
                    if data == b"":
                        self._input_ended("EOF on the terminal")
                        return
                    if data:
                        feed(decode(data))
                for event in parser.tick():
                    self.process_message(event)
            for event in parser.tick():  # a lone escape key pending in the parser
                self.process_message(event)
        finally:
            selector.close()
            with contextlib.suppress(EOFError, ParseError):
                for _event in parser.feed(""):
                    pass

    def disable_input(self) -> None:
        """Textual's, with the input thread woken to see that it is to end (it no longer wakes
        by itself): the exit flag, a byte on the wake pipe, then wait for the thread."""
        try:
            if self.exit_event.is_set():
                return
            signal.signal(signal.SIGWINCH, signal.SIG_DFL)
            self._disable_mouse_support()
            self.exit_event.set()
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            if self._key_thread is not None:
                self._key_thread.join()
            self.exit_event.clear()
            with contextlib.suppress(BlockingIOError, OSError):
                os.set_blocking(self._wake_r, False)
                os.read(self._wake_r, 64)
            with contextlib.suppress(termios.error):
                termios.tcflush(self.fileno, termios.TCIFLUSH)
        except Exception:  # as Textual's: a failure to stop input never stops the shutdown
            pass

    def close(self) -> None:
        super().close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _input_ended(self, reason: str) -> None:
        if self.input_tty:
            self._terminal_lost(reason)
        # Not a terminal (``< /dev/null``, a pipe at its end): there is no input, nothing is lost.


def input_wait(parser: XTermParser) -> float | None:
    """How long the input thread may wait for input: until a pending escape sequence times out
    (a lone escape key is one), else for as long as it takes."""
    due = parser._timeout_time
    return None if due is None else max(0.0, min(0.1, due - get_time()))
