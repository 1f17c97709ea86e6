"""``incident-console`` command line: check-config, snapshot (and the console itself)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from console import __version__
from console.config import CONFIG_ENV, Config, find_config_path
from console.loader import Loaded, load
from console.yamlfile import ConfigError

EXIT_OK, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNKNOWN = 0, 1, 2, 3
EXIT_USAGE = 2


#: Modules that add their own subcommands: each has ``register(subparsers)``, which adds a parser
#: and sets ``func`` (a callable taking the parsed args and returning an exit code).
COMMAND_MODULES: tuple[str, ...] = (
    "console.demo.cli",
    "console.runbook_cli",
    "console.serve",
    "console.journal_cli",
)
#: The commands those modules add, and the ones this module has: a command line that names none of
#: the former (the console itself, above all) does not import them — start-up imports only what
#: the first screen needs (issue 20; the demo's and runbook commands' imports were ~0.1 s of CPU).
MODULE_COMMANDS = frozenset({"demo", "runbook", "export", "serve", "journal"})
CORE_COMMANDS = frozenset({"run", "check-config", "snapshot"})


def _light(argv: Sequence[str]) -> bool:
    """True when the command line needs no command module: the console (``run`` or no command),
    ``check-config`` or ``snapshot``, without asking for help."""
    if not argv or argv[0] in CORE_COMMANDS:
        return True
    return argv[0].startswith("-") and not set(argv) & (MODULE_COMMANDS | {"-h", "--help"})


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; given ``argv`` that needs no command module, without them."""
    parser = argparse.ArgumentParser(
        prog="incident-console",
        description="A terminal console for on-call engineers: health, Prometheus and Postgres, live.",
    )
    parser.add_argument("--version", action="version", version=f"incident-console {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    check = sub.add_parser("check-config", help="validate console.yaml and the runbook pack")
    check.add_argument("path", nargs="?", help="config file (default: the usual search order)")
    check.add_argument("--config", dest="config_flag", help=argparse.SUPPRESS)
    check.set_defaults(func=cmd_check_config)

    snap = sub.add_parser(
        "snapshot",
        help="poll every source once and print the state (exit 0 ok, 1 warning, 2 critical, 3 unknown)",
    )
    snap.add_argument("--config", help="config file")
    snap.add_argument("--format", choices=("text", "json"), default="text")
    snap.set_defaults(func=cmd_snapshot)

    run = sub.add_parser("run", help="open the live console (the default command)")
    _console_arguments(run)
    # One browser viewer of `incident-console serve` (console/serve.py starts it): wall, read-only,
    # no action key; not for terminals.
    run.add_argument("--web", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)
    _console_arguments(parser)

    if argv is None or not _light(argv):
        for name in COMMAND_MODULES:
            importlib.import_module(name).register(sub)
    return parser


def _console_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="config file")
    parser.add_argument(
        "--wall", action="store_true", help="wall display: large tiles, rotating pages, read-only"
    )
    parser.add_argument("--read-only", action="store_true", help="no action can run")


def cmd_run(args: argparse.Namespace, out=None, err=None) -> int:
    err = err or sys.stderr
    loaded = load_or_report(args.config, err)
    if loaded is None:
        return EXIT_USAGE
    from console.app import run_console

    web = getattr(args, "web", False)
    if web:  # a viewer of `serve` never outlives it, even if serve is killed
        from console.demo.pgcluster import set_parent_death_signal

        set_parent_death_signal()
    return run_console(loaded, wall=args.wall, read_only=args.read_only, web=web)


def load_or_report(path: str | None, err) -> Loaded | None:
    """Load the config and its pack, or print one line per distinct problem to ``err`` (the
    config's own first) and return None. No config anywhere: where it looked, how to start."""
    config_path = find_config_path(path)
    if path is None and not config_path.exists():
        for line in no_config_lines():
            print(line, file=err)
        return None
    try:
        return load(path)
    except ConfigError as exc:
        for line in exc.lines(first=config_path):
            print(line, file=err)
        return None


def no_config_lines(env: Mapping[str, str] | None = None) -> list[str]:
    """What to say when no config file is found in the usual places."""
    env = os.environ if env is None else env
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "incident-console" / "console.yaml"
    named = env.get(CONFIG_ENV)
    return [
        "incident-console: no config file found; looked at:",
        f"  --config PATH (not given), ${CONFIG_ENV} ({named or 'not set'})",
        f"  {xdg}",
        f"  {Path.cwd() / 'config' / 'console.yaml'}",
        "To start: `incident-console demo` runs a small demo stack with its own config and opens the",
        "console on it; or give yours with `--config PATH` (the source's config/console.yaml is an",
        "annotated example).",
    ]


def cmd_check_config(args: argparse.Namespace, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    loaded = load_or_report(args.path or args.config_flag, err)
    if loaded is None:
        return EXIT_USAGE
    config = loaded.config
    servers = config.prometheus_servers
    print(
        f"{config.path}: OK — environment {config.environment.name}"
        f"{' (production)' if config.environment.production else ''}, "
        f"{len(config.health)} health targets, "
        + (f"{len(servers)} Prometheus servers, " if len(servers) > 1 else "")
        + f"{sum(len(s.queries) for s in servers)} queries, "
        f"{len(config.postgres)} postgres clusters, {len(config.thresholds())} thresholds, "
        f"{len(loaded.pack.runbooks)} runbooks",
        file=out,
    )
    from console.journal import Journal

    if problem := Journal.of(config).probe():  # a warning: the config may be checked elsewhere
        print(f"{config.path}: warning: {problem} (every action would be refused)", file=err)
    return EXIT_OK


async def _snapshot(config: Config):
    from console.poller import Poller

    poller = Poller(config)
    try:
        return await poller.poll_all()
    finally:
        await poller.aclose()


def cmd_snapshot(args: argparse.Namespace, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from console.report import render_text, snapshot_exit_code, to_json

    loaded = load_or_report(args.config, err)
    if loaded is None:
        return EXIT_UNKNOWN
    state = asyncio.run(_snapshot(loaded.config))
    strict = loaded.config.snapshot.strict_pending  # a pending alert counts at its severity
    if args.format == "json":
        json.dump(to_json(state, strict_pending=strict), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        out.write(render_text(state, strict_pending=strict))
    return snapshot_exit_code(state, strict_pending=strict)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser(argv)
    args = parser.parse_args(argv)
    if args.command is None:
        args.func = cmd_run
    if args.func is not cmd_run:
        gc.enable()  # only the console waits for its first data to turn it on (console/entry.py)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader left (`| head`): no traceback, and none again when Python flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as the shell counts a command that SIGPIPE ended


if __name__ == "__main__":
    sys.exit(main())
