"""``incident-console runbook list|show|lint|docs`` and ``incident-console export``.

    incident-console runbook list                    every runbook: id, severity, title, triggers
    incident-console runbook show ID                 its steps and what each runs (secrets masked)
    incident-console runbook lint                    the safety rules' problems and the seed coverage
                                                     (exit 2 with a problem or a scenario not covered)
    incident-console runbook docs                    docs/RUNBOOKS.md, generated from the pack
    incident-console export --since 2h [--format markdown|json] [--output FILE]
                            [--environment NAME ... | --all-environments]
                                                     the incident report from the config's journal,
                                                     for the config's environment unless told

Exit codes: 0 ok, 1 the journal or the output file cannot be read/written, 2 bad input (a bad
config, an unknown runbook id, a bad --since).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import functools
import os
import re
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from console.config import Config, parse_duration
from console.loader import load_config
from console.yamlfile import ConfigError

EXIT_OK, EXIT_IO, EXIT_USAGE = 0, 1, 2
WIDTH = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    runbook = subparsers.add_parser("runbook", help="list the runbook pack, or show one runbook")
    runbook.add_argument("--config", help="config file")
    sub = runbook.add_subparsers(dest="runbook_command", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every runbook: id, severity, title, triggers")
    listing.add_argument("--config", dest="config_sub", help="config file")
    listing.set_defaults(func=cmd_list)
    show = sub.add_parser("show", help="one runbook: its steps, what each runs, escalation, checklist")
    show.add_argument("id", help="runbook id (see: incident-console runbook list)")
    show.add_argument("--config", dest="config_sub", help="config file")
    show.set_defaults(func=cmd_show)
    lint = sub.add_parser(
        "lint", help="the safety rules of every runbook (file:line:col: message) and the seed coverage"
    )
    lint.add_argument("--config", dest="config_sub", help="config file")
    lint.set_defaults(func=cmd_lint)
    docs = sub.add_parser("docs", help="docs/RUNBOOKS.md from the pack: runbooks by seed, coverage table")
    docs.add_argument("--config", dest="config_sub", help="config file")
    docs.set_defaults(func=cmd_docs)

    export = subparsers.add_parser(
        "export", help="write an incident report from the journal (timeline, breaches, actions, notes)"
    )
    export.add_argument("--config", help="config file (its journal: setting says where the journal is)")
    export.add_argument(
        "--since",
        default="2h",
        help="how far back: a duration (2h, 30m, 1d) or a UTC time (2026-11-23T10:00)",
    )
    which = export.add_mutually_exclusive_group()
    which.add_argument(
        "--environment",
        action="append",
        metavar="NAME",
        help="report this environment's events (repeat for more; default: the config's environment)",
    )
    which.add_argument(
        "--all-environments",
        action="store_true",
        help="report the events of every environment in the journal",
    )
    export.add_argument("--format", choices=("markdown", "json"), default="markdown")
    export.add_argument("--output", "-o", help="write the report to this file (default: standard output)")
    export.set_defaults(func=cmd_export)


def _config(args: argparse.Namespace, err: TextIO) -> Config | None:
    path = getattr(args, "config_sub", None) or args.config
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        return None


# --- runbook list -------------------------------------------------------------------------------


def triggers_text(runbook) -> str:
    t = runbook.triggers
    alerts = [a.name + "".join(f"{{{k}={v}}}" for k, v in a.labels.items()) for a in t.alerts]
    parts = [
        ("alerts", alerts),
        ("thresholds", t.thresholds),
        ("health", t.health),
        ("unreachable", t.errors),
        ("providers", t.providers),
    ]
    return "; ".join(f"{name} {', '.join(values)}" for name, values in parts if values) or "(opened by hand)"


def _quiet_pipe(command):
    """``runbook list | head`` closes the pipe early: stop quietly, like other tools."""

    @functools.wraps(command)
    def run(*args, **kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail too
            return EXIT_OK

    return run


@_quiet_pipe
def cmd_list(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from console.runbooks import pack_for

    out, err = out or sys.stdout, err or sys.stderr
    config = _config(args, err)
    if config is None:
        return EXIT_USAGE
    pack = pack_for(config)
    if not pack.runbooks:
        print(f"no runbooks in {config.runbooks_path}", file=err)
        return EXIT_OK
    width = max(len(r.id) for r in pack.runbooks)
    print(f"{'ID':<{width}}  {'SEVERITY':<8}  TITLE / TRIGGERS", file=out)
    for runbook in sorted(pack.runbooks, key=lambda r: r.id):
        print(f"{runbook.id:<{width}}  {runbook.severity:<8}  {runbook.title}", file=out)
        print(f"{'':<{width}}  {'':<8}  ↳ {triggers_text(runbook)}", file=out)
    print(f"{len(pack.runbooks)} runbooks in {config.runbooks_path}", file=out)
    return EXIT_OK


# --- runbook show --------------------------------------------------------------------------------


def _did_you_mean(wanted: str, ids: list[str]) -> str:
    close = difflib.get_close_matches(wanted, ids, n=3, cutoff=0.5)
    close += [i for i in ids if wanted and wanted in i and i not in close][: 3 - len(close)]
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), WIDTH, initial_indent=indent, subsequent_indent=indent)


def show_lines(config: Config, runbook, file_name: str) -> list[str]:
    """What ``runbook show`` prints: the runbook with every value filled in from the config
    (secrets masked); values that come from a breach show as <name>."""
    from console.actions import Executor, Value
    from console.journal import Journal
    from console.runbooks import CONTEXT_NAMES, EscalateStep, Progress, RunbookSession, build_context

    executor = Executor(config, Journal(config.journal_path()), read_only=True)  # nothing is written
    session = RunbookSession(runbook, executor, Progress(runbook, "show", time.time()))
    ctx = build_context(config, runbook, None, {}, str(executor.operator))
    missing = {n: Value(f"<{n}>") for n in CONTEXT_NAMES if ctx.get(n) is None}
    session.context = type(ctx)({**missing, **ctx.values})

    source = runbook.source.text() if runbook.source else "—"
    lines = [
        f"{runbook.id}: {runbook.title}",
        f"severity {runbook.severity}"
        + (f" · respond: {runbook.response_time}" if runbook.response_time else ""),
        f"source: {source}",
        *([f"covers: {', '.join(runbook.covers)}"] if runbook.covers else []),
        f"file: {config.runbooks_path / file_name}",
        "",
        *_wrap(runbook.summary, ""),
        "",
        f"triggers: {triggers_text(runbook)}",
    ]
    if runbook.inputs:
        lines.append("inputs:")
        for name, spec in runbook.inputs.items():
            value = session.context.get(name)
            shown = "***" if value is not None and value.secret else (value.text if value else "(no value)")
            default = f" (default {spec.default})" if spec.default is not None else ""
            lines.append(
                f"  {name} = {shown}{default}" + (f": {spec.description}" if spec.description else "")
            )
    lines += ["", "STEPS"]
    for i, step in enumerate(runbook.steps, 1):
        impact = getattr(getattr(step, "action", None), "impact", None)
        lines.append(f"{i:>2}. [{step.kind}{', ' + impact if impact else ''}] {session.title(step)}")
        if isinstance(step, EscalateStep):
            note = [step.escalate.note] if step.escalate.note else []
            described = [*note, "by the time since the incident started: see ESCALATION below"]
        else:
            described = list(session.describe(step))
        for n, line in enumerate(described):
            prose = step.kind == "manual" or (n == 0 and step.text)  # plan lines keep their layout
            lines += _wrap(line, "      ") if prose else [f"      {line}"]
    if runbook.escalation:
        lines += ["", "ESCALATION"]
        for level in runbook.escalation:
            when = f"after {_duration(level.after)}" if level.after is not None else f"if {level.when}"
            notify = f" (notify: {', '.join(level.notify)})" if level.notify else ""
            what = f"; {level.do}" if level.do else ""
            lines.append(f"  level {level.level}, {when}: {level.who}{notify}{what}")
    if runbook.escalation_none is not None:
        lines += ["", "ESCALATION", *_wrap(f"none: {runbook.escalation_none}", "  ")]
    if runbook.post_incident:
        lines += ["", "POST-INCIDENT CHECKLIST"]
        lines += [f"  [ ] {item}" for item in runbook.post_incident]
    if runbook.links:
        lines += ["", "LINKS"]
        lines += [f"  {link.title}: {link.url}" for link in runbook.links]
    return lines


def _duration(seconds: float) -> str:
    from console.rules import format_duration

    return "the start" if seconds == 0 else format_duration(seconds)


@_quiet_pipe
def cmd_show(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from console.runbooks import pack_for

    out, err = out or sys.stdout, err or sys.stderr
    config = _config(args, err)
    if config is None:
        return EXIT_USAGE
    pack = pack_for(config)
    runbook = pack.get(args.id)
    if runbook is None:
        ids = sorted(pack.ids)
        print(
            f"incident-console runbook show: no runbook '{args.id}'{_did_you_mean(args.id, ids)}; "
            "list them with: incident-console runbook list",
            file=err,
        )
        return EXIT_USAGE
    for line in show_lines(config, runbook, pack.files[runbook.id]):
        print(line, file=out)
    return EXIT_OK


# --- runbook lint and docs ----------------------------------------------------------------------


@_quiet_pipe
def cmd_lint(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Every problem of the pack (the safety rules whatever ``runbooks.strict`` says), one
    ``file:line:col: message`` a line, then the seed coverage. Exit 2 when there is a problem."""
    from console.config import cross_check, read_config
    from console.runbooks import coverage, load_for

    out, err = out or sys.stdout, err or sys.stderr
    try:
        config, doc = read_config(getattr(args, "config_sub", None) or args.config)
    except ConfigError as exc:
        for line in exc.lines(getattr(args, "config_sub", None) or args.config):
            print(line, file=err)
        return EXIT_USAGE
    pack, problems = load_for(config)
    found = sorted({*cross_check(config, doc, pack.ids), *problems, *pack.lint})
    for problem in found:
        print(problem, file=out)
    if pack.index is not None:
        for line in coverage(pack.runbooks, pack.index.index).lines():
            print(line, file=out)
    else:
        print(f"no seed index at {config.seed_scenarios_path}: no coverage report", file=out)
    strict = "on" if config.runbooks.strict else "off (check-config does not refuse them)"
    print(
        f"{len(found)} problem{'s' if len(found) != 1 else ''} in {len(pack.runbooks)} runbooks "
        f"of {config.runbooks_path}; runbooks.strict: {strict}",
        file=out,
    )
    return EXIT_USAGE if found else EXIT_OK


@_quiet_pipe
def cmd_docs(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """docs/RUNBOOKS.md on standard output."""
    from console.runbook_docs import render
    from console.runbooks import pack_for

    out, err = out or sys.stdout, err or sys.stderr
    config = _config(args, err)
    if config is None:
        return EXIT_USAGE
    out.write(render(pack_for(config)))
    return EXIT_OK


# --- export -----------------------------------------------------------------------------------------


def parse_since(value: str, now: float) -> float:
    """``2h`` (a duration back from now) or ``2026-11-23T10:00`` (a UTC time) -> epoch seconds."""
    parts = re.findall(r"\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)", value)
    if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))+\s*", value):
        return now - sum(parse_duration(part) for part in parts)  # 2h, 1h30m
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since: expected a duration such as 2h or 30m, or a UTC time such as 2026-11-23T10:00, "
            f"got '{value[:40]}'"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _write_file(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (a report is half-read otherwise), mode 0600."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cmd_export(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from console.incident_report import build_report, render_json, render_markdown
    from console.journal import read_journal
    from console.runbooks import pack_for

    out, err = out or sys.stdout, err or sys.stderr
    now = time.time()
    try:
        since = parse_since(args.since, now)
    except ValueError as exc:
        print(f"incident-console export: {exc}", file=err)
        return EXIT_USAGE
    config = _config(args, err)
    if config is None:
        return EXIT_USAGE
    journal = config.journal_path()
    read = read_journal(journal)
    if read.error:
        print(f"incident-console export: {read.error}", file=err)
        return EXIT_IO
    if not journal.exists():
        print(f"incident-console export: no journal at {journal} yet: nothing was recorded", file=err)
    events, environments = read.events, None
    shared = config.journal.shared
    if shared is not None:  # the other consoles' events too, each once
        from console.journal.shared import fetch_events, merge
        from console.pg import classify_error

        wanted = None if getattr(args, "all_environments", False) else (
            sorted(set(getattr(args, "environment", None) or [config.environment.name]))
        )  # fmt: skip
        try:
            events = tuple(merge(events, asyncio.run(fetch_events(shared, wanted))))
        except Exception as exc:
            print(
                f"incident-console export: shared journal unreachable ({classify_error(exc, shared.cluster())}): "
                "this machine's events only",
                file=err,
            )
    if not getattr(args, "all_environments", False):
        environments = sorted(set(getattr(args, "environment", None) or [config.environment.name]))
        seen = {e.environment for e in events if since <= e.ts <= now}
        events = tuple(e for e in events if e.environment in environments)
        others = sorted(seen - set(environments))
        if others:
            print(
                f"incident-console export: left out the events of {', '.join(others)} "
                "(--environment NAME or --all-environments includes them)",
                file=err,
            )
    report = build_report(
        events,
        pack_for(config),
        since=since,
        until=now,
        journal=str(journal),
        skipped_lines=read.skipped,
        environments=environments,
    )
    text = render_json(report) if args.format == "json" else render_markdown(report)
    if not args.output:
        out.write(text)
        return EXIT_OK
    try:
        _write_file(Path(args.output), text)
    except OSError as exc:
        print(f"incident-console export: cannot write {args.output}: {exc.strerror or exc}", file=err)
        return EXIT_IO
    events = len(report.timeline)
    print(f"wrote {args.output}: {events} event{'s' if events != 1 else ''} since {_utc(since)}", file=out)
    return EXIT_OK


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
