"""Run a terminal program in a real pseudo-terminal of a fixed size and watch what it writes.

Every byte the program writes is counted with the time it was read. Optionally the bytes also go
through a terminal emulator (pyte), so that the harness can wait for something to be ON THE
SCREEN (a first paint, the effect of a key) and take the time of the read that completed it.
CPU time and RSS come from /proc/<pid> (the whole process: every thread).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import random
import re
import select
import signal
import struct
import termios
import threading
import time
from collections.abc import Callable, Sequence

import pyte

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

Watch = Callable[[str], bool]
DSR_CURSOR = b"\x1b[6n"  # "where is the cursor?": blessed (pg_activity) waits for the answer


class _Screen(pyte.Screen):
    """A screen that answers the terminal's reports (cursor position, device attributes) to the
    program, as a real terminal does."""

    def __init__(self, cols: int, rows: int, answer: Callable[[bytes], None]) -> None:
        super().__init__(cols, rows)
        self._answer = answer

    def write_process_input(self, data: str) -> None:
        self._answer(data.encode())


class PtyProcess:
    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        cols: int = 120,
        rows: int = 40,
        cwd: str | None = None,
    ) -> None:
        self.argv, self.env, self.cols, self.rows, self.cwd = list(argv), env, cols, rows, cwd
        self.pid = 0
        self.master = -1
        self.started = 0.0
        self.first_output: float | None = None
        self.bytes = 0
        self.chunks: list[tuple[float, int]] = []  # (monotonic time of the read, bytes)
        self.screen: pyte.Screen | None = None
        self._stream: pyte.ByteStream | None = None
        self._lock = threading.Lock()
        self._watch: tuple[Watch, threading.Event, list[float]] | None = None
        self._reader: threading.Thread | None = None
        self._done = threading.Event()

    # --- life ---------------------------------------------------------------------------

    def start(self, emulate: bool = True) -> PtyProcess:
        if emulate:
            self.screen = _Screen(self.cols, self.rows, self._write)
            self._stream = pyte.ByteStream(self.screen)
        winsize = struct.pack("HHHH", self.rows, self.cols, 0, 0)
        self.started = time.monotonic()
        pid, master = pty.fork()
        if pid == 0:  # child: the pty is its controlling terminal; the size is set before exec
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, winsize)
                if self.cwd:
                    os.chdir(self.cwd)
                os.execve(self.argv[0], self.argv, self.env)
            finally:
                os._exit(127)
        self.pid, self.master = pid, master
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self.master, 1 << 16)
            except OSError:
                break
            if not data:
                break
            now = time.monotonic()
            with self._lock:
                if self.first_output is None:
                    self.first_output = now
                self.bytes += len(data)
                self.chunks.append((now, len(data)))
                if self._stream is None:
                    if DSR_CURSOR in data:  # not emulating: still answer like a terminal
                        self._write(b"\x1b[1;1R")
                else:
                    self._stream.feed(data)
                    watch = self._watch
                    if watch is not None and not watch[1].is_set() and watch[0](self._text()):
                        watch[2].append(now)
                        watch[1].set()
        self._done.set()

    def _text(self) -> str:
        assert self.screen is not None
        # Lines joined and spaces folded: a phrase that wraps still reads as one phrase.
        return re.sub(r"\s+", " ", " ".join(self.screen.display))

    def text(self) -> str:
        with self._lock:
            return self._text()

    def display(self) -> list[str]:
        with self._lock:
            return list(self.screen.display) if self.screen else []

    def stop_emulating(self) -> None:
        """Only count bytes from now on (the emulator costs the harness CPU time)."""
        with self._lock:
            self._stream = None

    def wait_for(self, watch: Watch, timeout: float) -> float | None:
        """Monotonic time of the read after which ``watch(screen text)`` held, or None."""
        event, when = threading.Event(), []
        with self._lock:
            if self._watch is None and watch(self._text()):
                return time.monotonic()
            self._watch = (watch, event, when)
        try:
            event.wait(timeout)
        finally:
            with self._lock:
                self._watch = None
        return when[0] if when else None

    def _write(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self.master, data)

    def send(self, data: bytes) -> float:
        now = time.monotonic()
        os.write(self.master, data)
        return now

    def press_and_time(
        self, keys: Sequence[tuple[bytes, str]], presses: int, rng: random.Random
    ) -> tuple[list[float], int]:
        """Key latency: press two keys that switch between two views, in turn, and time each
        from the write until the output that shows the view's ``marker`` has been read.
        Returns (latencies in ms, presses with no repaint within 10 s)."""
        latencies: list[float] = []
        timeouts = 0
        for i in range(presses):
            key, marker = keys[i % 2]
            if marker in self.text():  # the view already shows it: press the other key first
                key, marker = keys[(i + 1) % 2]
            sent = self.send(key)
            seen = self.wait_for(lambda text, m=marker: m in text, 10)
            if seen is None:
                timeouts += 1
            else:
                latencies.append((seen - sent) * 1000)
            time.sleep(rng.uniform(0.2, 0.6))  # presses land at every phase of the refresh
        return latencies, timeouts

    def alive(self) -> bool:
        with contextlib.suppress(ChildProcessError):
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            return done == 0
        return False

    def stop(self, quit_keys: bytes = b"q", timeout: float = 10.0) -> None:
        if self.pid == 0:
            return
        with contextlib.suppress(OSError):
            os.write(self.master, quit_keys)
        deadline = time.monotonic() + timeout
        sent_term = False
        while True:
            with contextlib.suppress(ChildProcessError):
                done, _ = os.waitpid(self.pid, os.WNOHANG)
                if done == 0:
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    if not sent_term:
                        os.kill(self.pid, signal.SIGTERM)
                        sent_term, deadline = True, time.monotonic() + 5
                        continue
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
            break
        self._done.set()
        if self._reader is not None:
            self._reader.join(2)
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.pid = 0

    # --- measurements -------------------------------------------------------------------

    def cpu_seconds(self) -> float:
        """utime + stime of the process (all its threads) so far."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20

    def bytes_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(n for t, n in self.chunks if start <= t < end)
