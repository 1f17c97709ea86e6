"""The demo's state dir: where it is, the lock a running stack holds, and its state file.

Layout of the state dir (``$XDG_STATE_HOME/incident-console/demo``, else ``./.demo``):

    demo.lock       flock()ed by the running supervisor: a second ``demo`` sees it taken
    state.json      the running stack: supervisor pid, URLs, children (pid, start time, group)
    console.yaml    the generated console config (0600: it holds the admin token)
    admin-token     the admin token (0600)
    bin/flyctl      the flyctl shim
    prometheus/ alertmanager/   their configs and data (the data is emptied at each start)
    journal.jsonl   the demo console's journal (the previous run's: journal.previous.jsonl)
    pg/             the Postgres cluster (or a dir in /tmp that names this dir, see cleanup.py)
    logs/           one log per child process

``incident-console demo clean`` removes all of it (console/demo/cleanup.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
LOCK_FILE = "demo.lock"
ENV_DIR = "INCIDENT_CONSOLE_DEMO_DIR"


class DemoNotRunning(RuntimeError):
    """No demo stack runs for this state dir."""


def default_state_dir(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(ENV_DIR):
        return Path(env[ENV_DIR]).absolute()
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]).absolute() / "incident-console" / "demo"
    return (cwd or Path.cwd()).absolute() / ".demo"


def proc_start(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), to tell it from a later one with the
    same pid; None when there is no such process (or it is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] == "Z":
        return None
    return int(fields[19])


def same_process(pid: int | None, start: int | None) -> bool:
    return bool(pid) and start is not None and proc_start(pid) == start


class StackLock:
    """The exclusive lock a running supervisor holds on ``demo.lock`` (released when it dies)."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def locked(state_dir: Path) -> bool:
    """True while a supervisor holds the state dir's lock."""
    probe = StackLock(state_dir)
    if not probe.path.exists():
        return False
    if probe.acquire():
        probe.release()
        return False
    return True


def load_state_file(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_state_file(state_dir: Path, state: Mapping[str, Any]) -> None:
    path = state_dir / STATE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def read_state(state_dir: Path) -> dict[str, Any]:
    """The state of the stack running in ``state_dir``; DemoNotRunning when there is none."""
    state = load_state_file(state_dir)
    if state is None:
        raise DemoNotRunning(f"no demo stack runs in {state_dir} (start one with: incident-console demo)")
    if not (locked(state_dir) and same_process(state.get("pid"), state.get("pid_start"))):
        raise DemoNotRunning(
            f"the demo stack recorded in {state_dir} is gone (pid {state.get('pid')}): start it again "
            "with: incident-console demo"
        )
    return state
