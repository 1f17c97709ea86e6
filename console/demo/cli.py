"""``incident-console demo``: start the embedded demo stack and open the console on it.

    incident-console demo                  start the stack, open the console; q stops everything
    incident-console demo --no-ui          run the stack alone (prints the config path); Ctrl+C stops
    incident-console demo scenarios        list the scenarios
    incident-console demo inject NAME      turn a scenario on (in a second terminal)
    incident-console demo reset [NAME]     turn one scenario, or all of them, off
    incident-console demo status           processes and faults of the running stack
    incident-console demo stop             stop the running stack
    incident-console demo clean            stop it if it runs, then remove every trace of the demo

Exit codes: 0 ok, 1 error, 4 a stack already runs in this state dir (``--attach`` opens the
console on it instead).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from console.demo.cleanup import CleanError, remove_demo
from console.demo.control import DemoControl, DemoError
from console.demo.pgcluster import ClusterError, set_parent_death_signal
from console.demo.scenarios import SCENARIOS
from console.demo.state import (
    DemoNotRunning,
    default_state_dir,
    load_state_file,
    locked,
    read_state,
    same_process,
)

EXIT_OK, EXIT_ERROR, EXIT_RUNNING = 0, 1, 4
START_TIMEOUT = 90.0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="start a demo stack (Postgres, Prometheus, Alertmanager, two services) and open the console on it",
        description=__doc__.split("\n\n")[0],
    )
    demo.add_argument(
        "--state-dir",
        type=Path,
        help="where the stack keeps its data (default: $INCIDENT_CONSOLE_DEMO_DIR, "
        "$XDG_STATE_HOME/incident-console/demo, or ./.demo)",
    )
    demo.add_argument("--no-ui", action="store_true", help="run the stack alone and print the config path")
    demo.add_argument("--attach", action="store_true", help="if a stack already runs, open the console on it")
    demo.add_argument("--no-load", action="store_true", help=argparse.SUPPRESS)
    sub = demo.add_subparsers(dest="demo_command", metavar="ACTION")
    sub.add_parser("scenarios", help="list the scenarios")
    inject = sub.add_parser("inject", help="turn a scenario on")
    inject.add_argument("name", choices=[s.name for s in SCENARIOS], metavar="NAME")
    reset = sub.add_parser("reset", help="turn a scenario (default: all) off")
    reset.add_argument("name", nargs="?", choices=[s.name for s in SCENARIOS], metavar="NAME")
    sub.add_parser("status", help="show the running stack")
    sub.add_parser("stop", help="stop the running stack")
    sub.add_parser(
        "clean",
        help="stop the stack if it runs, then remove the state dir (config, logs, journal, Prometheus "
        "and Alertmanager data) and the Postgres cluster, wherever it lives",
    )
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    state_dir = (args.state_dir or default_state_dir()).absolute()
    action = getattr(args, "demo_command", None)
    try:
        if action is None:
            return _start(args, state_dir)
        if action == "scenarios":
            return _scenarios()
        if action == "stop":
            return _stop(state_dir)
        if action == "clean":
            return _clean(state_dir)
        demo = DemoControl.attach(state_dir)
        if action == "inject":
            print(demo.inject(args.name))
        elif action == "reset":
            print(demo.reset(args.name))
        else:
            _print_status(demo)
        return EXIT_OK
    except (DemoNotRunning, DemoError, ClusterError, CleanError) as exc:
        print(f"incident-console demo: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _scenarios() -> int:
    for s in SCENARIOS:
        print(f"{s.name:<28}{s.title}")
        print(f"{'':28}shows: {', '.join(str(e) for e in s.expected)}")
        print(f"{'':28}fix:   {s.fix}")
    return EXIT_OK


def _print_status(demo: DemoControl) -> None:
    status = demo.status()
    print(f"demo stack pid {status.pid}, up {status.uptime:.0f}s, state dir {status.state_dir}")
    print(f"config: {status.config_path}")
    for name, alive in status.processes.items():
        print(f"  {name:<19}{'running' if alive else 'EXITED'}  {status.urls.get(name, '')}")
    if not status.faults:
        print("faults: none")
    for fault in status.faults:
        state = "on" if fault.active else "fixed"
        print(f"  fault {fault.name:<28}{state:<7}{fault.where:<12}{fault.detail}")
    for error in status.errors:
        print(f"  ! {error}")


def _stop(state_dir: Path) -> int:
    state = read_state(state_dir)
    with contextlib.suppress(ProcessLookupError):
        os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 30
    while same_process(state["pid"], state.get("pid_start")) and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"stopped the demo stack in {state_dir}")
    return EXIT_OK


def _clean(state_dir: Path) -> int:
    try:
        removed = remove_demo(state_dir, out=print, legacy=True)
    except OSError as exc:
        print(f"incident-console demo: clean: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print(f"nothing to clean: no demo state in {state_dir}")
    return EXIT_OK


# --- starting ------------------------------------------------------------------------------


def _start(args: argparse.Namespace, state_dir: Path) -> int:
    if locked(state_dir):
        return _already_running(args, state_dir)
    if args.no_ui:
        from console.demo.stack import AlreadyRunning, Stack, StackError

        try:
            return Stack(state_dir, load=not args.no_load).run()
        except AlreadyRunning as exc:
            print(f"incident-console demo: {exc}", file=sys.stderr)
            return EXIT_RUNNING
        except StackError as exc:
            print(f"incident-console demo: could not start the stack: {exc}", file=sys.stderr)
            return EXIT_ERROR
    return _start_with_console(args, state_dir)


def _already_running(args: argparse.Namespace, state_dir: Path) -> int:
    state = load_state_file(state_dir) or {}
    print(
        f"incident-console demo: a demo stack is already running in {state_dir} "
        f"(pid {state.get('pid', '?')}); config: {state.get('config', '?')}",
        file=sys.stderr,
    )
    attach = args.attach
    if not attach and not args.no_ui and sys.stdin.isatty():
        answer = input("Attach the console to it? [Y/n] ").strip().lower()
        attach = answer in ("", "y", "yes")
    if not attach:
        print(
            "  attach with: incident-console demo --attach   "
            "(or: incident-console demo inject/reset/status, or demo stop)",
            file=sys.stderr,
        )
        return EXIT_RUNNING
    demo = DemoControl.attach(state_dir)
    return _console(demo)


def _start_with_console(args: argparse.Namespace, state_dir: Path) -> int:
    """Run the stack in a supervisor child (it dies with us), then the console in front."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    log = state_dir / "logs" / "supervisor.log"
    argv = [sys.executable, "-m", "console.demo.stack", str(state_dir)] + (
        ["--no-load"] if args.no_load else []
    )
    started = time.monotonic()
    print(f"incident-console demo: starting the stack in {state_dir} ...", flush=True)
    with log.open("ab") as out:
        supervisor = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,  # Ctrl+C reaches the console, not the stack: we stop it ourselves
            preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM),
        )

    def on_signal(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        demo = _wait_for_stack(supervisor, state_dir, log)
        if demo is None:
            return EXIT_RUNNING if supervisor.returncode == EXIT_RUNNING else EXIT_ERROR
        print(
            f"incident-console demo: stack ready in {time.monotonic() - started:.1f}s; config: {demo.config_path}"
        )
        return _console(demo)
    except KeyboardInterrupt:
        return 130
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)  # the clean-up is not interrupted
        _stop_supervisor(supervisor)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _wait_for_stack(supervisor: subprocess.Popen[bytes], state_dir: Path, log: Path) -> DemoControl | None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if supervisor.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            print(f"incident-console demo: the stack did not start:\n{tail}", file=sys.stderr)
            return None
        state = load_state_file(state_dir)
        if state and state.get("ready") and state.get("pid") == supervisor.pid:
            return DemoControl(state_dir, state)
        time.sleep(0.05)
    print(
        f"incident-console demo: the stack was not ready after {START_TIMEOUT:g}s (log: {log})",
        file=sys.stderr,
    )
    return None


def _stop_supervisor(supervisor: subprocess.Popen[bytes]) -> None:
    if supervisor.poll() is None:
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(timeout=30)
        except subprocess.TimeoutExpired:
            supervisor.kill()
            supervisor.wait(timeout=10)


def _console(demo: DemoControl) -> int:
    from console.app import run_console  # Textual loads only when the console opens
    from console.loader import load

    return run_console(load(demo.config_path), demo=demo)
