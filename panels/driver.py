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
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import sys
from codecs import getincrementaldecoder
from typing import IO, Any

from textual._parser import ParseError
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
        fileno = self.fileno
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode

        def feed(data: str) -> None:
            for event in parser.feed(data):
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                if selector.select(0.1):
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

    def _input_ended(self, reason: str) -> None:
        if self.input_tty:
            self._terminal_lost(reason)
        # Not a terminal (``< /dev/null``, a pipe at its end): there is no input, nothing is lost.
