"""``incident-console serve``: the wall display in a browser, for an ops-room screen.

    incident-console serve --config FILE              http://127.0.0.1:8000/, this machine only
    incident-console serve --config FILE --host 0.0.0.0 --token-file /etc/incident-console/wall.token
    incident-console serve --config FILE --host 10.0.0.5 --behind-proxy --public-url https://wall.example/

One engine polls the backends for every viewer: serve runs the Poller and the threshold engine in
its own process and publishes each ConsoleState on a private Unix socket (console/feed.py). Every
viewer (browser tab) gets a console process of its own (textual-serve) that renders the states of
that feed and opens no backend connection: Postgres, Prometheus and the health endpoints see one
console whether 1 or 10 browsers watch. The viewer is always in wall mode and read-only: ``run
--web``, where no key runs an action and the executor refuses every one.
Binding another address than loopback needs a token (the page must present it) or
``--behind-proxy`` (an authenticating reverse proxy in front); otherwise serve refuses to start.
The token comes from $INCIDENT_CONSOLE_SERVE_TOKEN or ``--token-file``, never from the command
line (which ``ps`` shows to every user). README "Wall screen in a browser" has the set-up.

This module parses and checks, and makes the engine (console/feed.py; engine side);
panels/serve_web.py is the web server (aiohttp and textual-serve, UI side), which starts the engine
before it listens; it is taken through console.app when serve starts so the other commands never
load it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_ENV = "INCIDENT_CONSOLE_SERVE_TOKEN"
MIN_TOKEN_LENGTH = 16
DEFAULT_PORT = 8000
DEFAULT_MAX_VIEWERS = 4
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
MAKE_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


class ServeError(Exception):
    """A setting serve refuses to start with; the message is the one line the operator sees."""


@dataclass(frozen=True)
class ServeSettings:
    config_path: Path
    host: str
    port: int
    max_viewers: int
    token: str | None
    behind_proxy: bool
    public_url: str | None
    title: str


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="publish the wall display to browsers (read-only; 127.0.0.1 unless a token or proxy guards it)",
        description="Publish the wall display (read-only) to browsers: one engine polls the backends, "
        "each viewer renders its state.",
    )
    serve.add_argument("--config", help="config file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    serve.add_argument(
        "--max-viewers",
        type=int,
        default=DEFAULT_MAX_VIEWERS,
        help=f"browsers served at once, each a console process drawing the one engine's state "
        f"(default {DEFAULT_MAX_VIEWERS})",
    )
    serve.add_argument(
        "--token-file",
        type=Path,
        help=f"file holding the token the page must present (or set ${TOKEN_ENV}); not readable by all users",
    )
    serve.add_argument(
        "--behind-proxy",
        action="store_true",
        help="an authenticating reverse proxy guards every request (README: Wall screen in a browser)",
    )
    serve.add_argument("--public-url", help="the URL browsers use, when a proxy publishes it elsewhere")
    serve.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def exposure_problem(host: str, token: str | None, behind_proxy: bool) -> str | None:
    """Why serve must not listen on ``host`` as configured, or None."""
    if is_loopback(host) or token or behind_proxy:
        return None
    return (
        f"serve: refusing to listen on {host} without a guard: give a token "
        f"(${TOKEN_ENV} or --token-file) or put an authenticating proxy in front (--behind-proxy)"
    )


def read_token(token_file: Path | None, env: dict[str, str] | os._Environ[str]) -> str | None:
    """The viewer token from ``--token-file`` or the environment; ServeError if it is unusable."""
    from_env = env.get(TOKEN_ENV, "")
    if token_file is not None and from_env:
        raise ServeError(f"serve: both ${TOKEN_ENV} and --token-file are set; keep one")
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ServeError(f"serve: cannot read the token file {token_file}: {exc}") from None
        if mode & stat.S_IROTH:
            raise ServeError(f"serve: {token_file} is readable by every user: chmod o-rwx {token_file}")
        where = str(token_file)
    elif from_env:
        token, where = from_env.strip(), f"${TOKEN_ENV}"
    else:
        return None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise ServeError(
            f"serve: the token in {where} must be at least {MIN_TOKEN_LENGTH} characters without "
            f"spaces; make one with {MAKE_TOKEN}"
        )
    return token


def settings_from(args: argparse.Namespace, config_path: Path, title: str, env=None) -> ServeSettings:
    env = os.environ if env is None else env
    if not 1 <= args.max_viewers <= 64:
        raise ServeError("serve: --max-viewers must be between 1 and 64 (each viewer is a process)")
    if not 0 <= args.port <= 65535:
        raise ServeError(f"serve: --port {args.port} is not a TCP port")
    if args.public_url and urlsplit(args.public_url).scheme not in ("http", "https"):
        raise ServeError(f"serve: --public-url {args.public_url} must start with http:// or https://")
    token = read_token(args.token_file, env)
    if problem := exposure_problem(args.host, token, args.behind_proxy):
        raise ServeError(problem)
    return ServeSettings(
        config_path=config_path,
        host=args.host,
        port=args.port,
        max_viewers=args.max_viewers,
        token=token,
        behind_proxy=args.behind_proxy,
        public_url=args.public_url,
        title=title,
    )


def cmd_serve(args: argparse.Namespace, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    from console.cli import load_or_report

    loaded = load_or_report(args.config, err)  # a bad config fails here, not in every viewer
    if loaded is None:
        return EXIT_USAGE
    config = loaded.config
    try:
        settings = settings_from(args, config.path.resolve(), f"incident-console · {config.environment.name}")
    except ServeError as exc:
        print(exc, file=err)
        return EXIT_USAGE
    # The viewers' processes inherit this environment: the token stays in this process only.
    os.environ.pop(TOKEN_ENV, None)
    from console.app import serve_forever
    from console.feed import Engine

    return serve_forever(settings, out, err, Engine(config))
