"""The console in a real pseudo-terminal: a lost terminal (SIGHUP, closed SSH) ends the process
cleanly, and so does SIGTERM, instead of spinning on a dead tty."""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import pytest
import yaml

from console.demo.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "console.yaml"
    config = {
        "environment": {"name": "pty"},
        "health": [{"name": "gone", "url": f"http://127.0.0.1:{free_port()}/"}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def start(config_file: Path) -> tuple[int, int]:
    from tests.fixtures.faults import start_console

    return start_console(config_file, rows=24, cols=80)


def read_until(master: int, needle: bytes, timeout: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never appeared; got {seen[-400:]!r}")
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    return seen


def drain(master: int) -> None:
    """Keep reading so the child never blocks on a full pty buffer."""
    while select.select([master], [], [], 0)[0]:
        try:
            if not os.read(master, 65536):
                return
        except OSError:
            return


def wait_exit(pid: int, master: int | None, timeout: float = 10.0) -> tuple[int, float]:
    """Wait for the child; returns its exit status and the CPU seconds it used."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master is not None:
            drain(master)
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the console did not exit within {timeout}s")


@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM", "close the terminal"])
def test_a_lost_terminal_or_stop_request_ends_the_console(config_file, how):
    pid, master = start(config_file)
    try:
        read_until(master, b"Breaches")
        started = time.monotonic()
        if how == "close the terminal":
            os.close(master)
            master = None
        else:
            os.kill(pid, getattr(signal, how))
        status, cpu = wait_exit(pid, master)
        elapsed = time.monotonic() - started
    finally:
        if master is not None:
            os.close(master)
    assert os.WIFEXITED(status) or os.WIFSIGNALED(status)
    if how != "close the terminal":  # our handler exits with 128 + signal number
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + getattr(signal, how), status
    assert elapsed < 10
    assert cpu < 15  # a spinning input thread would burn the whole wait in CPU
