"""The stack supervisor: starts Postgres, Prometheus, Alertmanager, the two services and the
agent (load + DB faults) on free loopback ports under one state dir, and stops them all. A
child that finds its port taken (another process bound it between the pick and the child's
start) makes the whole stack start again on other ports, up to PORT_ATTEMPTS times.

    stack = Stack(state_dir)
    stack.run()          # start, announce the config path, wait for SIGINT/SIGTERM/SIGHUP, stop

Every child runs in a process group of its own and is told by the kernel to stop when the
supervisor dies (PR_SET_PDEATHSIG; for Postgres run as another user, ``setpriv --pdeathsig``):
``q``, Ctrl+C, SIGTERM, SIGHUP — and even a SIGKILL of the supervisor — leave no process
behind. The supervisor holds ``demo.lock`` while it lives; ``state.json`` records the children
(pid, start time, process group) so that the next start can stop whatever a killed run left.
``python -m console.demo.stack STATE_DIR`` runs a supervisor (the console's ``demo`` command
starts one that way when it shows the UI).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from console.demo import configwriter, exporters, shopdb
from console.demo.cleanup import claim_pg_directory, sweep_orphans
from console.demo.configwriter import Endpoints
from console.demo.pgcluster import ClusterError, PrivateCluster, set_parent_death_signal
from console.demo.ports import free_port, says_port_taken
from console.demo.service import DSN_ENV
from console.demo.state import (
    StackLock,
    load_state_file,
    proc_start,
    same_process,
    write_state_file,
)
from console.journal.shared import grants, quoted, setup_sql

PROMETHEUS_BIN = Path("/usr/bin/prometheus")
ALERTMANAGER_BIN = Path("/usr/bin/prometheus-alertmanager")
READY_TIMEOUT = 60.0
PORT_ATTEMPTS = 3
STOP_TIMEOUT = 8.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PG_SETTINGS = {
    "max_parallel_workers_per_gather": 0,  # one plan for the slow query, whatever the machine
    "jit": False,
    "pg_stat_statements.track_utility": False,
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "client_connection_check_interval": "1s",  # a query whose client went away stops
}


class StackError(RuntimeError):
    pass


class PortTaken(StackError):
    """A child could not listen on the port picked for it: another process bound it between
    the pick and the child's start."""


class AlreadyRunning(StackError):
    def __init__(self, state_dir: Path, state: dict[str, Any] | None):
        self.state_dir, self.state = state_dir, state or {}
        pid = self.state.get("pid", "?")
        super().__init__(
            f"a demo stack is already running in {state_dir} (pid {pid}); config: {self.state.get('config', '?')}"
        )


class Stopping(BaseException):  # like KeyboardInterrupt: not an error
    """A stop signal arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM
    log_start: int = 0  # where this process's lines begin (the log is appended to across runs)

    def new_log(self) -> str:
        """What this process has written to its log."""
        try:
            with self.log.open("rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def could_not_bind(self) -> bool:
        return says_port_taken(self.new_log())

    def record(self) -> dict[str, Any]:
        return {
            "pid": self.process.pid,
            "pgid": self.process.pid,
            "start": proc_start(self.process.pid),
            "log": str(self.log),
        }


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    set_parent_death_signal(signal.SIGTERM)


class Stack:
    def __init__(
        self,
        state_dir: Path,
        *,
        load: bool = True,
        out: Callable[[str], None] | None = None,
    ):
        self.state_dir = Path(state_dir).absolute()
        self.load = load
        self.out = out or (lambda line: print(line, flush=True))
        self.logs = self.state_dir / "logs"
        self.lock = StackLock(self.state_dir)
        self.children: dict[str, Child] = {}
        self.cluster: PrivateCluster | None = None
        self.state: dict[str, Any] = {}
        self.started = time.monotonic()
        self._stopping = False
        self._owns_lock = False

    # --- the whole life ---------------------------------------------------------------------

    def run(self, on_ready: Callable[[Stack], None] | None = None) -> int:
        """Start, announce, supervise until a stop signal, stop. Returns the exit code."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in SIGNALS}
        try:
            try:
                self.start()
                self.announce()
                if on_ready:
                    on_ready(self)
                while True:
                    self.watch()
                    time.sleep(0.25)
            except Stopping as stop:
                self.out(f"incident-console demo: {stop} received, stopping the stack")
                return 0
            finally:
                self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            self._stopping = True
            raise Stopping(signum)

    # --- start ------------------------------------------------------------------------------

    def start(self) -> None:
        self.started = time.monotonic()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.lock.acquire():
            raise AlreadyRunning(self.state_dir, load_state_file(self.state_dir))
        self._owns_lock = True
        self.cleanup_stale()
        sweep_orphans(self.out)
        self.fresh_start()
        self.logs.mkdir(exist_ok=True)
        token_file = self.state_dir / "admin-token"
        token = secrets.token_urlsafe(24)
        configwriter._write(token_file, token + "\n", 0o600)
        passwords = {
            role: secrets.token_urlsafe(18)
            for role in (shopdb.APP_ROLE, shopdb.FAULT_ROLE, shopdb.CONSOLE_ROLE, exporters.EXPORTER_ROLE)
        }
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._start_children(token_file, token, passwords)
                return
            except PortTaken as taken:
                if attempt == PORT_ATTEMPTS:
                    raise
                said = str(taken).splitlines()[0]
                self.out(f"incident-console demo: {said}; starting the stack again on other ports")
                self._stop_children()

    def _start_children(self, token_file: Path, token: str, passwords: dict[str, str]) -> None:
        """Every child on freshly picked ports, the console's config, and the wait for ready."""
        ports = {
            name: free_port() for name in ("storefront", "sync-worker", "agent", "prometheus", "alertmanager")
        }
        exporter_ports = exporters.ExporterPorts(free_port(), free_port(), free_port())
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        ends = Endpoints(
            urls["storefront"], urls["sync-worker"], urls["agent"], urls["prometheus"], urls["alertmanager"],
            ports["prometheus"], ports["alertmanager"],
        )  # fmt: skip
        self.state = {
            "version": 1,
            "pid": os.getpid(),
            "pid_start": proc_start(os.getpid()),
            "started_at": time.time(),
            "ready": False,
            "state_dir": str(self.state_dir),
            "config": str(self.state_dir / "console.yaml"),
            "token_file": str(token_file),
            "urls": urls,
            "children": {},
        }
        self._save()

        # Prometheus and Alertmanager first: they start while Postgres does.
        self._start_alertmanager(ends)
        self._start_prometheus(ends, exporter_ports)
        self._start_exporters(exporter_ports)
        cluster = self._start_postgres(passwords)
        self._start_postgres_exporter(cluster, exporter_ports, passwords[exporters.EXPORTER_ROLE])
        self.state["postgres"] = {
            "dir": str(cluster.directory),
            "port": cluster.port,
            "database": shopdb.DATABASE,
        }
        app_dsn = cluster.dsn(shopdb.APP_ROLE, passwords[shopdb.APP_ROLE], shopdb.DATABASE)
        for name in ("storefront", "sync-worker"):
            self._spawn(
                name,
                [sys.executable, "-m", "console.demo.service", name, "--port", str(ports[name]),
                 "--token-file", str(token_file), "--state-dir", str(self.state_dir)],
                env={DSN_ENV: app_dsn},
            )  # fmt: skip
        agent_argv = [
            sys.executable, "-m", "console.demo.agent", "--port", str(ports["agent"]),
            "--storefront", urls["storefront"], "--sync-worker", urls["sync-worker"],
            "--token-file", str(token_file), "--socket-dir", str(cluster.socket_dir),
            "--pg-port", str(cluster.port), "--superuser", cluster.superuser, "--state-dir", str(self.state_dir),
        ]  # fmt: skip
        if not self.load:
            agent_argv.append("--no-load")
        fault_dsn = cluster.dsn(shopdb.FAULT_ROLE, passwords[shopdb.FAULT_ROLE], shopdb.DATABASE)
        self._spawn("agent", agent_argv, env={DSN_ENV: fault_dsn})

        flyctl = configwriter.write_flyctl(self.state_dir / "bin" / "flyctl", self.state_dir)
        console_dsn = cluster.dsn(shopdb.CONSOLE_ROLE, passwords[shopdb.CONSOLE_ROLE], shopdb.DATABASE)
        config = configwriter.console_config(self.state_dir, ends, token, console_dsn, flyctl)
        configwriter.write_console_config(self.state_dir / "console.yaml", config)
        self.state["flyctl"] = str(flyctl)
        self._save()

        self._wait_ready(urls)
        self.state["ready"] = True
        self.state["ready_seconds"] = round(time.monotonic() - self.started, 2)
        self._save()

    def fresh_start(self) -> None:
        """A new run shows only itself: Prometheus' TSDB (whose last samples of the previous run's
        targets kept its alerts firing for the 5-minute lookback, restored at once from
        ALERTS_FOR_STATE) and Alertmanager's silences and notification log go; the previous
        run's journal is kept as journal.previous.jsonl and the shared journal table is emptied. The
        Postgres cluster is reused (its
        statistics are reset in _start_postgres). Attaching to a running stack never gets here."""
        journal = self.state_dir / configwriter.JOURNAL
        try:
            for name in ("prometheus", "alertmanager"):
                data = self.state_dir / name / "data"
                if data.exists():
                    shutil.rmtree(data)
            if journal.exists():
                journal.replace(journal.with_name(configwriter.PREVIOUS_JOURNAL))
            # The new journal starts at its first line for the shared one too (emptied with it).
            journal.with_name(journal.name + ".shared").unlink(missing_ok=True)
        except OSError as exc:
            raise StackError(f"cannot clear the previous run's state in {self.state_dir}: {exc}") from exc

    def _save(self) -> None:
        self.state["children"] = {name: child.record() for name, child in self.children.items()}
        write_state_file(self.state_dir, self.state)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            log_start = out.tell()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                env={**os.environ, **(env or {})},
                process_group=0,
                preexec_fn=_child_setup,
            )
        child = self.children[name] = Child(name, process, log, log_start=log_start)
        self._save()
        return child

    def _start_alertmanager(self, ends: Endpoints) -> None:
        home = self.state_dir / "alertmanager"
        config = configwriter.write_alertmanager(home)
        self._spawn(
            "alertmanager",
            [
                _binary(ALERTMANAGER_BIN, "prometheus-alertmanager"),
                f"--config.file={config}",
                f"--storage.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{ends.alertmanager_port}",
                "--cluster.listen-address=",  # no gossip: nothing listens or dials out
                "--log.level=warn",
            ],
        )

    def _start_prometheus(self, ends: Endpoints, exporter_ports: exporters.ExporterPorts) -> None:
        home = self.state_dir / "prometheus"
        probes = [f"{ends.storefront}/health", f"{ends.sync_worker}/actuator/health"]
        config = configwriter.write_prometheus(home, ends, exporters.scrape_configs(exporter_ports, probes))
        self._spawn(
            "prometheus",
            [
                _binary(PROMETHEUS_BIN, "prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                "--storage.tsdb.retention.time=2h",
                # 1 minute scaled like the rules: the alerts of the first evaluations, dropped
                # before Alertmanager is discovered, reach it seconds later, not a minute later
                "--rules.alert.resend-delay=2s",
                f"--web.listen-address=127.0.0.1:{ends.prometheus_port}",
                "--log.level=warn",
            ],
        )

    def _start_exporters(self, ports: exporters.ExporterPorts) -> None:
        """The blackbox and node exporters (the postgres one waits for Postgres)."""
        blackbox = _binary(exporters.BLACKBOX_EXPORTER_BIN, "prometheus-blackbox-exporter")
        config = exporters.write_blackbox_config(self.state_dir / "blackbox")
        self._spawn("blackbox-exporter", exporters.blackbox_argv(blackbox, ports.blackbox, config))
        node = _binary(exporters.NODE_EXPORTER_BIN, "prometheus-node-exporter")
        self._spawn("node-exporter", exporters.node_argv(node, ports.node))

    def _start_postgres_exporter(
        self, cluster: PrivateCluster, ports: exporters.ExporterPorts, password: str
    ) -> None:
        binary = _binary(exporters.POSTGRES_EXPORTER_BIN, "prometheus-postgres-exporter")
        cluster.psql(exporters.EXPORTER_ROLE_SQL)
        dsn = cluster.dsn(exporters.EXPORTER_ROLE, password, shopdb.DATABASE, sslmode="disable")
        self._spawn(
            "postgres-exporter",
            exporters.postgres_argv(binary, ports.postgres),
            env={"DATA_SOURCE_NAME": dsn},
        )

    def _start_postgres(self, passwords: dict[str, str]) -> PrivateCluster:
        cluster = self.cluster = PrivateCluster(
            claim_pg_directory(self.state_dir),
            max_connections=50,
            settings=PG_SETTINGS,
            scram_roles=passwords,
            tcp_trust=False,
        )
        log_start = _size(cluster.log_file)
        process = cluster.spawn()
        child = self.children["postgres"] = Child(
            "postgres", process, cluster.log_file, signal.SIGINT, log_start=log_start
        )
        self._save()
        try:
            cluster.wait_ready(process, timeout=READY_TIMEOUT)
        except ClusterError as exc:
            if process.poll() is not None and child.could_not_bind():
                raise PortTaken(
                    f"postgres could not listen on port {cluster.port}{cluster._log_tail()}"
                ) from exc
            raise
        cluster.psql(shopdb.ROLES_SQL)
        if not cluster.psql(f"SELECT 1 FROM pg_database WHERE datname = '{shopdb.DATABASE}'").strip():
            self.out("incident-console demo: creating the shop database (first start)")
            cluster.psql(shopdb.CREATE_DATABASE_SQL)
            cluster.psql(shopdb.SCHEMA_SQL, db=shopdb.DATABASE, timeout=120)
        # Whatever a killed run left: the index back, and statistics from a clean slate.
        # (Untracked: the reset is no statement of the shop's.)
        cluster.psql(
            f"SET pg_stat_statements.track = 'none'; {shopdb.CREATE_INDEX_SQL}; SELECT pg_stat_statements_reset();",
            db=shopdb.DATABASE,
        )
        cluster.psql(shopdb.CONSOLE_GRANTS_SQL, db=shopdb.DATABASE)
        cluster.psql(_shared_journal_sql(), db=shopdb.DATABASE)
        return cluster

    def _wait_ready(self, urls: dict[str, str]) -> None:
        checks: dict[str, Callable[[httpx.Client], bool]] = {
            "storefront": lambda c: c.get(f"{urls['storefront']}/health").status_code in (200, 503),
            "sync-worker": lambda c: (
                c.get(f"{urls['sync-worker']}/actuator/health").status_code in (200, 503)
            ),
            "agent": lambda c: c.get(f"{urls['agent']}/health").status_code == 200,
            "alertmanager": lambda c: c.get(f"{urls['alertmanager']}/-/ready").status_code == 200,
            "prometheus": lambda c: _scraping(c, urls["prometheus"]),
        }
        deadline = time.monotonic() + READY_TIMEOUT
        with httpx.Client(timeout=1.0) as client:
            while checks:
                for name, check in list(checks.items()):
                    self._check_alive()
                    with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
                        if check(client):
                            del checks[name]
                if not checks:
                    break
                if time.monotonic() > deadline:
                    raise StackError(
                        f"not ready after {READY_TIMEOUT:g}s: {', '.join(checks)}{self._tails(checks)}"
                    )
                time.sleep(0.05)

    def _check_alive(self) -> None:
        for child in self.children.values():
            if child.process.poll() is not None:
                if child.could_not_bind():
                    raise PortTaken(
                        f"{child.name} could not listen on the port picked for it{self._tails([child.name])}"
                    )
                raise StackError(
                    f"{child.name} exited with status {child.process.returncode} while starting{self._tails([child.name])}"
                )

    def _tails(self, names: Any, lines: int = 12) -> str:
        out = []
        for name in names:
            child = self.children.get(name)
            if child is None:
                continue
            with contextlib.suppress(OSError):
                tail = child.log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"\n--- {child.log} ---\n" + "\n".join(tail))
        return "".join(out)

    def announce(self) -> None:
        urls = self.state["urls"]
        pg = self.state["postgres"]
        self.out(
            f"incident-console demo: stack ready in {self.state['ready_seconds']:.1f}s (state dir {self.state_dir})"
        )
        self.out(f"  storefront    {urls['storefront']}  (/health, health+json)")
        self.out(f"  sync-worker   {urls['sync-worker']}  (/actuator/health, Spring)")
        self.out(f"  prometheus    {urls['prometheus']}")
        self.out(f"  alertmanager  {urls['alertmanager']}")
        self.out(
            "  exporters     postgres, blackbox (probing the two health endpoints), node: their targets up"
        )
        self.out(f"  postgres      127.0.0.1:{pg['port']} database {pg['database']} (data in {pg['dir']})")
        self.out(
            "  inject a fault: incident-console demo inject NAME   (list them: incident-console demo scenarios)"
        )
        self.out(f"config: {self.state['config']}")

    # --- supervise ------------------------------------------------------------------------

    def watch(self) -> None:
        """Note children that died on their own (the state file says so; nothing restarts)."""
        changed = False
        for child in self.children.values():
            code = child.process.poll()
            if code is not None and child.name not in self.state.setdefault("exited", {}):
                self.state["exited"][child.name] = code
                self.out(f"incident-console demo: {child.name} exited with status {code} (log: {child.log})")
                changed = True
        if changed:
            self._save()

    # --- stop -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop every child (all at once; SIGKILL after STOP_TIMEOUT), then forget the state."""
        self._stopping = True
        if not self._owns_lock:  # another supervisor's stack: not ours to stop
            return
        for sig in SIGNALS:  # nothing interrupts the clean-up
            with contextlib.suppress(ValueError):
                signal.signal(sig, signal.SIG_IGN)
        self._stop_children()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "state.json").unlink()
        self.lock.release()
        self._owns_lock = False

    def _stop_children(self) -> None:
        for child in self.children.values():
            _signal_group(child.process.pid, child.stop_signal)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for child in self.children.values():
            _signal_group(child.process.pid, signal.SIGKILL)  # stragglers, and their own children
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=5)
        if self.cluster is not None:
            self.cluster._forget_for_exit()
            with contextlib.suppress(ClusterError, OSError):
                self.cluster.cleanup_stale()
        self.children.clear()

    def cleanup_stale(self) -> int:
        """Stop what a killed supervisor left behind (by pid *and* start time, so that a reused
        pid is never hit) and remove its state file. Returns the number of processes stopped."""
        state = load_state_file(self.state_dir)
        if state is None:
            return 0
        stopped = 0
        for child in (state.get("children") or {}).values():
            pid, start = child.get("pid"), child.get("start")
            if same_process(pid, start):
                _signal_group(child.get("pgid") or pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while same_process(pid, start) and time.monotonic() < deadline:
                    time.sleep(0.02)
                stopped += 1
        pg_dir = (state.get("postgres") or {}).get("dir")
        if pg_dir and Path(pg_dir, "data").is_dir():
            with contextlib.suppress(ClusterError, OSError, ValueError):
                PrivateCluster(pg_dir).cleanup_stale()
        (self.state_dir / "state.json").unlink(missing_ok=True)
        self.out(
            f"incident-console demo: cleaned up after an earlier run that did not stop cleanly "
            f"(pid {state.get('pid')}): {stopped} leftover process(es) stopped"
        )
        return stopped


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _binary(path: Path, package: str) -> str:
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise StackError(
            f"{path} not found: install the Debian package '{package}' "
            f"(make demo does, via scripts/ensure-system-packages.sh)"
        )
    return str(path)


def _scraping(client: httpx.Client, url: str) -> bool:
    """Prometheus is ready and every target of the demo's jobs is up: all of a job's, not one
    (the blackbox job probes two endpoints, each a target scraped on its own)."""
    if client.get(f"{url}/-/ready").status_code != 200:
        return False
    targets = client.get(f"{url}/api/v1/targets", params={"state": "active"}).json()["data"]["activeTargets"]
    health: dict[str, list[bool]] = {}
    for target in targets:
        health.setdefault(target["labels"]["job"], []).append(target["health"] == "up")
    return all(all(health.get(job, [False])) for job in ("storefront", "sync-worker", *exporters.JOBS))


def _shared_journal_sql() -> str:
    """The demo's shared journal: the table (as ``journal init`` makes it), the console role's
    INSERT and SELECT, and no event of an earlier run (a new run starts a new incident)."""
    table = configwriter.SHARED_JOURNAL_TABLE
    statements = [*setup_sql(table), *grants(table, shopdb.CONSOLE_ROLE), f"TRUNCATE {quoted(table)}"]
    return ";\n".join(s.rstrip(";") for s in statements) + ";"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m console.demo.stack", description="run a demo stack supervisor"
    )
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--no-load", action="store_true")
    args = parser.parse_args(argv)
    try:
        return Stack(args.state_dir, load=not args.no_load).run()
    except AlreadyRunning as exc:
        print(f"incident-console demo: {exc}", file=sys.stderr)
        return 4
    except (StackError, ClusterError) as exc:
        print(f"incident-console demo: could not start the stack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
