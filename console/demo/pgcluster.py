"""A private PostgreSQL cluster in a directory of its own: for the demo stack, tests and benchmarks.

    cluster = PrivateCluster("/tmp/ic-demo", scram_roles={"app": "s3cret"})
    cluster.start()                      # initdb on first use, then pg_ctl start -w
    dsn = cluster.dsn("app", "s3cret", "postgres")
    cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    cluster.stop()                       # fast, then immediate, then SIGKILL of our postmaster
    process = cluster.spawn()            # or: the postmaster as a foreground child (dies with us)
    cluster.wait_ready(process)

Layout inside ``directory``: ``data/`` (PGDATA), ``sock/`` (the unix socket directory, so that
nothing is shared with the machine's server in /var/run/postgresql) and ``server.log``.

The server listens on ``host`` (127.0.0.1) on a free port picked at start (or a fixed one), with:

- ``pg_hba.conf``: ``trust`` for every role over the unix socket; ``scram-sha-256`` over TCP for
  the roles in ``scram_roles`` (created with those passwords at start); everybody else over TCP
  gets ``trust`` (``tcp_trust=True``, the default, handy for tests) or ``scram-sha-256``.
- ``shared_preload_libraries`` from ``preload`` (``pg_stat_statements`` by default), the chosen
  ``max_connections`` and any ``settings`` (``{"log_min_duration_statement": "0"}``), written to
  ``incident_console.conf`` which ``postgresql.conf`` includes.
- ``fast=True`` (default) turns off fsync, synchronous_commit and full_page_writes: a throwaway
  cluster does not need durability. Benchmarks that care pass ``fast=False``.

initdb refuses to run as root, so when the process is root every server command runs as the
``postgres`` OS user (``runuser -u postgres --``) and the directory is handed to that user; its
parents must be traversable by it (``/tmp/...`` is fine, root's 0700 pytest tmp dirs are not).
Otherwise everything runs as the current user.

A postmaster.pid left by a crashed run is cleaned up before start (a dead pid is removed; a live
postmaster of this very data directory is reused). Every cluster started by this process is
stopped at interpreter exit if the caller forgot.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote

from console.demo.ports import free_port, says_port_taken

__all__ = ["ClusterError", "PrivateCluster", "find_bin_dir", "set_parent_death_signal"]

_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_HBA_ROLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")
_CONF_FILE = "incident_console.conf"
_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class ClusterError(RuntimeError):
    """initdb, start or stop failed; the message carries the tail of the server log."""


def set_parent_death_signal(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) dies (Linux
    PR_SET_PDEATHSIG; a no-op elsewhere). Meant for ``preexec_fn`` of a child process."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG = 1


def find_bin_dir() -> Path:
    """Where initdb/pg_ctl live: $INCIDENT_CONSOLE_PG_BIN, ``pg_config --bindir``, the newest
    /usr/lib/postgresql/*/bin, or the directory of ``pg_ctl`` on PATH."""
    env = os.environ.get("INCIDENT_CONSOLE_PG_BIN")
    if env:
        return Path(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidate = Path(out.stdout.strip())
            if out.returncode == 0 and (candidate / "initdb").exists():
                return candidate
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise ClusterError("PostgreSQL server binaries not found: set INCIDENT_CONSOLE_PG_BIN")


def _conf_value(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"


class PrivateCluster:
    """A PostgreSQL cluster owned by this process, in ``directory`` (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        superuser: str = "postgres",
        max_connections: int = 50,
        preload: Iterable[str] = ("pg_stat_statements",),
        settings: Mapping[str, object] | None = None,
        scram_roles: Mapping[str, str] | None = None,
        tcp_trust: bool = True,
        fast: bool = True,
        bin_dir: str | os.PathLike[str] | None = None,
        os_user: str | None = None,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "sock"
        self.log_file = self.directory / "server.log"
        self.host = host
        self.port = port
        self._fixed_port = port != 0
        self.superuser = superuser
        self.max_connections = max_connections
        self.preload = tuple(preload)
        self.settings = dict(settings or {})
        self.scram_roles = dict(scram_roles or {})
        self.tcp_trust = tcp_trust
        self.fast = fast
        self.bin_dir = Path(bin_dir) if bin_dir else find_bin_dir()
        if os_user is None and os.geteuid() == 0:
            os_user = "postgres"
        self.os_user = os_user
        for name in self.settings:
            if not _SETTING_NAME.match(name):
                raise ValueError(f"bad setting name {name!r}")
        for role in self.scram_roles:
            if not _HBA_ROLE.match(role):
                raise ValueError(f"role name {role!r} is not usable in pg_hba.conf here")
        if len(str(self.socket_dir)) > 90:
            raise ValueError(f"{self.socket_dir} is too long for a unix socket path")
        self._atexit_registered = False

    # --- introspection --------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"PrivateCluster({str(self.directory)!r}, port={self.port}, {state})"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def postmaster_pid(self) -> int | None:
        """The pid in postmaster.pid, whether or not that process still lives."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except (OSError, UnicodeDecodeError):
            return None
        return int(first) if first.isdigit() else None

    def _is_our_postmaster(self, pid: int) -> bool:
        """True when ``pid`` is alive and is a postmaster of this data directory.

        A pid from a stale postmaster.pid may have been reused by any process, including
        another cluster's postgres, so the command line must name our data directory."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, owned by someone else: check what it is below
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc: trust the signal probe
        if not cmdline or not cmdline[0]:
            return False  # a zombie: it has exited
        exe = Path(cmdline[0].decode(errors="replace")).name
        args = [arg.decode(errors="replace") for arg in cmdline[1:]]
        return exe in ("postgres", "postmaster") and str(self.data_dir) in args

    def is_running(self) -> bool:
        pid = self.postmaster_pid()
        return pid is not None and self._is_our_postmaster(pid)

    def dsn(
        self, user: str | None = None, password: str | None = None, db: str = "postgres", **params: str
    ) -> str:
        """A ``postgresql://`` URL over TCP for ``user`` (default: the superuser)."""
        user = user or self.superuser
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{quote(k, safe='')}={quote(str(v), safe='')}" for k, v in params.items())
        return f"postgresql://{auth}@{host}:{self.port}/{quote(db, safe='')}" + (f"?{query}" if query else "")

    # --- commands -------------------------------------------------------------------------

    def _owner_ids(self) -> tuple[int, int] | None:
        if self.os_user is None:
            return None
        entry = pwd.getpwnam(self.os_user)
        return entry.pw_uid, entry.pw_gid

    def _command(self, argv: list[str]) -> list[str]:
        if self.os_user is None or pwd.getpwuid(os.geteuid()).pw_name == self.os_user:
            return argv
        return ["runuser", "-u", self.os_user, "--", *argv]

    def _run(self, argv: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env["LANG"] = "C.UTF-8"
        try:
            done = subprocess.run(
                self._command(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.directory,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{Path(argv[0]).name} did not finish in {timeout:g}s") from exc
        if check and done.returncode != 0:
            raise ClusterError(
                f"{Path(argv[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-2000:]}{self._log_tail()}"
            )
        return done

    def _log_tail(self, lines: int = 15) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n--- server.log ---\n" + "\n".join(tail) if tail else ""

    def _give(self, path: Path, mode: int) -> None:
        ids = self._owner_ids()
        if ids is not None and os.geteuid() == 0:
            os.chown(path, *ids)
        os.chmod(path, mode)

    def _check_parents(self) -> None:
        ids = self._owner_ids()
        if ids is None or os.geteuid() != 0:
            return
        uid, gid = ids
        for parent in self.directory.parents:
            st = parent.stat()
            ok = (
                st.st_mode & 0o001
                or (st.st_uid == uid and st.st_mode & 0o100)
                or (st.st_gid == gid and st.st_mode & 0o010)
            )
            if not ok:
                raise ClusterError(
                    f"{parent} is not traversable by the OS user {self.os_user!r}: "
                    "put the cluster directory somewhere it can reach (e.g. under /tmp)"
                )

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._check_parents()
        self._give(self.directory, 0o700)
        self.socket_dir.mkdir(exist_ok=True)
        self._give(self.socket_dir, 0o700)

    def initdb(self) -> None:
        """Create the data directory (no-op when it already exists)."""
        self._prepare_directory()
        if self.initialized:
            return
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.superuser,
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--auth=trust",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude_if_exists = '{_CONF_FILE}'\n")

    def _write_config(self) -> None:
        values: dict[str, object] = {
            "listen_addresses": self.host,
            "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": self.max_connections,
            "shared_preload_libraries": ",".join(self.preload),
            "password_encryption": "scram-sha-256",
            "logging_collector": False,
        }
        if self.fast:
            values.update(_FAST)
        values.update(self.settings)
        lines = ["# written by console.demo.pgcluster on every start"]
        lines += [f"{name} = {_conf_value(value)}" for name, value in values.items()]
        path = self.data_dir / _CONF_FILE
        path.write_text("\n".join(lines) + "\n")
        self._give(path, 0o600)

        hba = ["# written by console.demo.pgcluster on every start", "local all all trust"]
        for address in ("127.0.0.1/32", "::1/128"):
            hba += [f'host all "{role}" {address} scram-sha-256' for role in self.scram_roles]
            hba.append(f"host all all {address} {'trust' if self.tcp_trust else 'scram-sha-256'}")
        path = self.data_dir / "pg_hba.conf"
        path.write_text("\n".join(hba) + "\n")
        self._give(path, 0o600)

    def cleanup_stale(self) -> bool:
        """Remove a postmaster.pid (and socket lock files) whose process is gone.

        Returns True when something was removed. A live postmaster is left alone.
        """
        pid = self.postmaster_pid()
        if pid is None or self._is_our_postmaster(pid):
            return False
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()
        for lock in self.socket_dir.glob(".s.PGSQL.*"):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        return True

    def start(self, timeout: float = 60) -> PrivateCluster:
        """initdb if needed, then start and wait until the server accepts connections."""
        self.initdb()
        self.cleanup_stale()
        if self.is_running():  # left running by an earlier process: adopt it
            self._read_running_port()
            self._remember_for_exit()
            if self.scram_roles:
                self._create_scram_roles()
            return self
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host)
            self._write_config()
            done = self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(int(timeout)),
                ],
                timeout=timeout + 15,
                check=False,
            )
            if done.returncode == 0:
                self._remember_for_exit()
                if self.scram_roles:
                    self._create_scram_roles()
                return self
            port_taken = says_port_taken(self._log_tail(30))
            if not (port_taken and attempt + 1 < attempts):
                self.stop()
                raise ClusterError(
                    f"pg_ctl start failed: {(done.stderr or done.stdout).strip()}{self._log_tail()}"
                )
        raise AssertionError("unreachable")

    def spawn(self, *, pdeathsig: int = signal.SIGINT) -> subprocess.Popen[bytes]:
        """initdb if needed, then run the postmaster in the foreground as a child of this process.

        Unlike :meth:`start` (``pg_ctl start``, which daemonizes), the postmaster stays our child:
        it runs in a process group of its own, and the kernel sends it ``pdeathsig`` (SIGINT: a
        fast shutdown) when this process dies, even by SIGKILL. As root the server runs as
        :attr:`os_user` through ``setpriv`` (which sets the parent-death signal after changing
        user: a credential change clears it). Output goes to :attr:`log_file`. Call
        :meth:`wait_ready` next; :meth:`stop` stops it like a ``pg_ctl``-started server.
        """
        self.initdb()
        self.cleanup_stale()
        if self.is_running():
            raise ClusterError(f"a postmaster (pid {self.postmaster_pid()}) already runs in {self.data_dir}")
        if not self._fixed_port:
            self.port = free_port(self.host)
        self._write_config()
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env["LANG"] = "C.UTF-8"
        preexec = None
        if self.os_user is not None and pwd.getpwuid(os.geteuid()).pw_name != self.os_user:
            argv = [
                "setpriv",
                f"--reuid={self.os_user}",
                f"--regid={pwd.getpwnam(self.os_user).pw_gid}",
                "--init-groups",
                f"--pdeathsig={signal.Signals(pdeathsig).name.removeprefix('SIG')}",
                "--",
                *argv,
            ]
        else:

            def preexec() -> None:  # pragma: no cover - runs in the child
                set_parent_death_signal(pdeathsig)

        self.log_file.touch()
        self._give(self.log_file, 0o600)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                env=env,
                process_group=0,
                preexec_fn=preexec,
            )
        self._remember_for_exit()
        return process

    def wait_ready(
        self, process: subprocess.Popen[bytes] | None = None, timeout: float = 60
    ) -> PrivateCluster:
        """Wait until the postmaster says ``ready`` in postmaster.pid (then create the scram roles).

        With ``process`` (from :meth:`spawn`), fail as soon as it exits."""
        deadline = time.monotonic() + timeout
        while True:
            if process is not None and process.poll() is not None:
                raise ClusterError(f"postgres exited with status {process.returncode}{self._log_tail()}")
            with contextlib.suppress(OSError):
                lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
                if len(lines) > 7 and lines[7].strip() == "ready" and self.is_running():
                    self._read_running_port()
                    break
            if time.monotonic() > deadline:
                raise ClusterError(f"postgres not ready after {timeout:g}s{self._log_tail()}")
            time.sleep(0.02)
        if self.scram_roles:
            self._create_scram_roles()
        return self

    def _read_running_port(self) -> None:
        with contextlib.suppress(OSError, IndexError, ValueError):
            self.port = int((self.data_dir / "postmaster.pid").read_text().splitlines()[3])

    def _create_scram_roles(self) -> None:
        for role, password in self.scram_roles.items():
            literal = "'" + password.replace("'", "''") + "'"
            self.psql(
                f'DO $$BEGIN CREATE ROLE "{role}" LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$;'
                f'ALTER ROLE "{role}" LOGIN PASSWORD {literal};'
            )

    def psql(self, sql: str, db: str = "postgres", user: str | None = None, timeout: float = 60) -> str:
        """Run SQL with psql over the unix socket (trust); returns unaligned tuples-only output.

        Meant for set-up statements written by the caller, not for untrusted input."""
        done = self._run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                user or self.superuser,
                "-d",
                db,
                "-c",
                sql,
            ],
            timeout=timeout,
        )
        return done.stdout

    def stop(self, timeout: float = 15) -> None:
        """Stop the server: fast shutdown, then immediate, then SIGKILL of our own postmaster."""
        self._forget_for_exit()
        if not self.initialized:
            return
        if not self.is_running():
            self.cleanup_stale()
            return
        pg_ctl = str(self.bin_dir / "pg_ctl")
        for mode in ("fast", "immediate"):
            done = self._run(
                [pg_ctl, "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout))],
                timeout=timeout + 10,
                check=False,
            )
            if done.returncode == 0 and not self.is_running():
                return
        pid = self.postmaster_pid()
        if pid is not None and self._is_our_postmaster(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while self._is_our_postmaster(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        self.cleanup_stale()

    def destroy(self) -> None:
        """Stop the server and delete the whole directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- interpreter exit -----------------------------------------------------------------

    def _remember_for_exit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True

    def _forget_for_exit(self) -> None:
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    def _stop_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(timeout=5)
