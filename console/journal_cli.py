"""``incident-console journal init``: create the shared journal table (idempotent) and print the
grants the consoles' role needs (INSERT and SELECT only)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

EXIT_OK, EXIT_USAGE, EXIT_IO = 0, 2, 4


def register(sub: argparse._SubParsersAction) -> None:
    journal = sub.add_parser("journal", help="the shared journal: journal init")
    commands = journal.add_subparsers(dest="journal_command", metavar="SUBCOMMAND", required=True)
    init = commands.add_parser("init", help="create the shared journal table (idempotent), print the GRANTs")
    init.add_argument("--config", help="config file")
    init.add_argument("--role", default="<console role>", help="the role to name in the GRANTs")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from console.cli import load_or_report
    from console.journal.shared import init_store
    from console.pg import classify_error

    out, err = out or sys.stdout, err or sys.stderr
    loaded = load_or_report(args.config, err)
    if loaded is None:
        return EXIT_USAGE
    shared = loaded.config.journal.shared
    if shared is None:
        print(
            f"{loaded.config.path}: no shared journal configured (journal: {{shared: {{dsn: …}}}})", file=err
        )
        return EXIT_USAGE
    try:
        grants = asyncio.run(init_store(shared, role=args.role))
    except Exception as exc:  # a refused or unreachable server: one line, no password
        print(f"incident-console journal init: {classify_error(exc, shared.cluster())}", file=err)
        return EXIT_IO
    print(f"shared journal table {shared.table} is ready. Grant the consoles' role:", file=out)
    for line in grants:
        print(f"  {line}", file=out)
    return EXIT_OK
