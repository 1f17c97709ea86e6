"""Where the demo's Postgres cluster lives, and removing the demo's traces.

The cluster lives in ``STATE_DIR/pg`` when the server's OS user can reach it. As root the server
runs as ``postgres``, which cannot traverse a 0700 home (``/root/.local/state/...``) or a pytest
tmp dir: then the cluster lives in the temp dir, in ``incident-console-demo-<hash of the state
dir>`` (so that the next start of the same state dir reuses it), and that directory names its
state dir in a ``state-dir`` file written before the directory appears under its final name.
That file ties the two together:

- :func:`remove_demo` (``incident-console demo clean``) stops the stack if it runs, then removes
  the cluster with the state dir (config, logs, journal, Prometheus and Alertmanager data);
- :func:`sweep_orphans` (every stack start, and ``demo clean``) removes a temp-dir cluster whose
  state dir no longer exists (deleted by hand, or by a run that died before its clean-up) and
  whose server is not running.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from console.demo.pgcluster import ClusterError, PrivateCluster
from console.demo.state import (
    LOCK_FILE,
    STATE_FILE,
    StackLock,
    default_state_dir,
    load_state_file,
    locked,
    same_process,
)

TEMP_DIR = Path("/tmp")
PREFIX = "incident-console-demo-"
OWNER_FILE = "state-dir"
#: What a demo stack writes into its state dir (state.py's layout); nothing else is removed.
STATE_ENTRIES = (
    LOCK_FILE,
    STATE_FILE,
    STATE_FILE + ".tmp",
    "console.yaml",
    "console.yaml.tmp",
    "admin-token",
    "admin-token.tmp",
    "journal.jsonl",
    "journal.jsonl.claims",  # this machine's claims (console/journal/claims.py)
    "journal.jsonl.shared",  # a shared journal's copy cursor (console/journal/shared.py)
    "journal.jsonl.shared.tmp",
    "journal.previous.jsonl",
    "bin",
    "prometheus",
    "alertmanager",
    "blackbox",  # the blackbox exporter's config (console/demo/exporters.py)
    "pg",
    "logs",
    "runbooks",
)
#: A cluster dir from a version that wrote no ``state-dir`` file is removed by ``demo clean`` only
#: once it is this old (seconds) and its server is not running.
LEGACY_MIN_AGE = 600.0
STOP_TIMEOUT = 30.0


class CleanError(RuntimeError):
    pass


def pg_directory(state_dir: Path) -> Path:
    """``state_dir/pg``, unless the server's OS user could not reach it (root running the
    server as ``postgres`` under a 0700 home) or the socket path would be too long: then a
    directory in the temp dir named after the state dir, so that the next start finds it again."""
    state_dir = Path(state_dir).absolute()
    wanted = state_dir / "pg"
    if len(str(wanted / "sock")) <= 90 and _reachable_by_postgres(state_dir):
        return wanted
    return temp_pg_directory(state_dir)


def temp_pg_directory(state_dir: Path) -> Path:
    """The temp-dir cluster directory of ``state_dir`` (whether or not it is the one in use)."""
    digest = hashlib.sha1(str(Path(state_dir).absolute()).encode(), usedforsecurity=False).hexdigest()[:10]
    return TEMP_DIR / f"{PREFIX}{digest}"


def _gone(path: Path) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False  # cannot tell: keep what may belong to it
    return False


def _reachable_by_postgres(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        return True
    for parent in [path, *path.parents]:
        try:
            st = parent.stat()
        except FileNotFoundError:
            continue
        if not (
            st.st_mode & 0o001
            or (st.st_uid == entry.pw_uid and st.st_mode & 0o100)
            or (st.st_gid == entry.pw_gid and st.st_mode & 0o010)
        ):
            return False
    return True


def owner_of(pg_dir: Path) -> Path | None:
    """The state dir a temp-dir cluster belongs to (None: no ``state-dir`` file)."""
    try:
        text = (pg_dir / OWNER_FILE).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(text) if text else None


def claim_pg_directory(state_dir: Path) -> Path:
    """The cluster directory of ``state_dir`` (:func:`pg_directory`); a temp-dir one is created
    with its ``state-dir`` file already inside (so that no sweep ever sees it without one), and
    an existing one without that file (an earlier version's) gets it."""
    state_dir = Path(state_dir).absolute()
    pg_dir = pg_directory(state_dir)
    if state_dir in pg_dir.parents:
        return pg_dir
    if pg_dir.is_dir():
        owner = owner_of(pg_dir)
        if owner is None:
            _write_owner(pg_dir, state_dir)
        elif owner != state_dir:
            raise ClusterError(f"{pg_dir} belongs to the demo state dir {owner}, not {state_dir}")
        return pg_dir
    staging = Path(tempfile.mkdtemp(prefix=f".{pg_dir.name}.", dir=pg_dir.parent))
    try:
        _write_owner(staging, state_dir)
        staging.rename(pg_dir)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not pg_dir.is_dir():  # not a concurrent claim of the same dir: a real failure
            raise
    return pg_dir


def _write_owner(directory: Path, state_dir: Path) -> None:
    path = directory / OWNER_FILE
    tmp = directory / (OWNER_FILE + ".tmp")
    tmp.write_text(f"{state_dir}\n")
    os.chmod(tmp, 0o644)
    tmp.replace(path)


def _cluster_running(pg_dir: Path) -> bool:
    try:
        return PrivateCluster(pg_dir, bin_dir=pg_dir).is_running()  # no binaries needed to look
    except (ValueError, OSError):
        return False


def _remove_cluster(pg_dir: Path) -> bool:
    """Stop the cluster's server if it runs, then delete the directory. True if it existed."""
    if not pg_dir.exists():
        return False
    if _cluster_running(pg_dir):
        try:
            PrivateCluster(pg_dir).stop(timeout=10)
        except (ClusterError, ValueError, OSError) as exc:
            raise CleanError(f"cannot stop the Postgres server in {pg_dir}: {exc}") from exc
    shutil.rmtree(pg_dir)
    return True


def sweep_orphans(out: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the temp-dir clusters whose state dir is gone and whose server is not running."""
    removed = []
    for pg_dir in sorted(TEMP_DIR.glob(f"{PREFIX}*")):
        owner = owner_of(pg_dir)
        if owner is None or not _gone(owner) or _cluster_running(pg_dir):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(pg_dir)
            removed.append(pg_dir)
            if out:
                out(f"incident-console demo: removed {pg_dir}, the Postgres cluster of {owner} (gone)")
    return removed


def legacy_clusters(keep: set[Path], now: float | None = None) -> list[Path]:
    """Temp-dir clusters without a ``state-dir`` file (written by an earlier version), not
    running, not ``keep``'s and older than LEGACY_MIN_AGE: nothing can find them again."""
    now = time.time() if now is None else now
    found = []
    for pg_dir in sorted(TEMP_DIR.glob(f"{PREFIX}*")):
        try:
            age = now - pg_dir.stat().st_mtime
        except OSError:
            continue
        if pg_dir in keep or owner_of(pg_dir) is not None or age < LEGACY_MIN_AGE:
            continue
        if not _cluster_running(pg_dir):
            found.append(pg_dir)
    return found


def _stop_stack(state_dir: Path, timeout: float) -> None:
    state = load_state_file(state_dir) or {}
    pid, start = state.get("pid"), state.get("pid_start")
    if same_process(pid, start):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while locked(state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    if locked(state_dir):
        raise CleanError(f"the demo stack in {state_dir} (pid {pid}) did not stop within {timeout:g}s")


def remove_demo(
    state_dir: Path,
    out: Callable[[str], None] | None = None,
    *,
    legacy: bool = False,
    stop_timeout: float = STOP_TIMEOUT,
) -> list[Path]:
    """Stop the stack of ``state_dir`` if it runs, then remove its cluster, what the stack wrote
    into the state dir (config, logs, journal, Prometheus and Alertmanager data) and the dir
    itself when nothing else is left in it; sweep orphaned clusters (and, with ``legacy``, those
    of earlier versions). Returns what was removed; CleanError if the stack would not stop."""
    say = out or (lambda line: None)
    state_dir = Path(state_dir).absolute()
    removed: list[Path] = []
    lock: StackLock | None = None
    # Every stack start takes demo.lock: without it the dir is no demo state dir (a mistyped
    # --state-dir such as ~ or /), and none of its entries (bin, logs...) are touched.
    ours = (state_dir / LOCK_FILE).is_file()
    if state_dir.is_dir() and not ours:
        say(f"incident-console demo: {state_dir} is no demo state dir (no {LOCK_FILE}): left alone")
    if ours:
        if locked(state_dir):
            say(f"incident-console demo: stopping the demo stack in {state_dir}")
            _stop_stack(state_dir, stop_timeout)
        lock = StackLock(state_dir)
        if not lock.acquire():
            raise CleanError(f"a demo stack started in {state_dir} meanwhile; nothing removed")
    try:
        if lock is not None and load_state_file(state_dir) is not None:
            from console.demo.stack import Stack  # what a killed supervisor left running

            Stack(state_dir, out=say).cleanup_stale()
        temp = temp_pg_directory(state_dir)
        for pg_dir in (state_dir / "pg", temp) if ours else (temp,):
            owner = owner_of(pg_dir) if pg_dir == temp else state_dir
            if owner is None and (ours or not state_dir.exists()):
                owner = state_dir  # an earlier version's, named after this dir
            if owner != state_dir:
                continue  # another state dir's (a hash collision), or an unknown one's
            if _remove_cluster(pg_dir):
                removed.append(pg_dir)
        if ours:
            entries = []
            for name in STATE_ENTRIES:
                path = state_dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
                else:
                    continue
                entries.append(path)
            left = sorted(p.name for p in state_dir.iterdir())
            if left:
                removed += entries
                say(
                    f"incident-console demo: kept {state_dir}: it holds files the demo did not write: "
                    + ", ".join(left)
                )
            else:
                state_dir.rmdir()
                removed.append(state_dir)
    finally:
        if lock is not None:
            lock.release()
    removed += sweep_orphans()
    if legacy:
        # Their state dir cannot be known, only recognised: the default one, this one, or any
        # directory right in the temp dir (where tests, the soak and scripts make theirs).
        homes = [state_dir, default_state_dir(), *(p for p in TEMP_DIR.iterdir() if p.is_dir())]
        keep = {temp_pg_directory(home) for home in homes}
        for pg_dir in legacy_clusters(keep):
            with contextlib.suppress(OSError):
                shutil.rmtree(pg_dir)
                removed.append(pg_dir)
    return removed
