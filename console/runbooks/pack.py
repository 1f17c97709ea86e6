"""The runbook pack: every file of the runbooks directory, read and checked with positions.

Files are read with :mod:`console.yamlfile`, so every problem is one ``file:line:col: message``
line; ``{{variables}}`` must name a config variable, a runbook input or one of
:data:`console.runbooks.context.CONTEXT_NAMES`."""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from console.actions import (
    Expect,
    TemplateError,
    template_refs,
)
from console.config import Config, Threshold
from console.runbooks.context import CONTEXT_NAMES
from console.runbooks.lint import Rules, coverage, id_glob, lint, read_index
from console.runbooks.packdata import Pack
from console.runbooks.schema import ActionStep, CheckStep, Runbook
from console.yamlfile import ConfigError, Document, Problem, problems_from_validation, read_document

# --- loading and validation -------------------------------------------------------------------


def runbook_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


_SQL_KEYS = {"statement", "select"}


def _template_problems(doc: Document, known: Collection[str] | None) -> list[Problem]:
    """Malformed or unknown ``{{references}}`` anywhere in the file, at their position."""
    problems: list[Problem] = []
    inputs = doc.data.get("inputs") if isinstance(doc.data, dict) else None
    allowed = None if known is None else set(known) | set(CONTEXT_NAMES) | set(inputs or {})

    def walk(node: Any, loc: tuple) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*loc, index))
        elif isinstance(node, str) and ("{{" in node or "}}" in node) and loc[-1] not in _SQL_KEYS:
            try:
                refs = template_refs(node)
            except TemplateError as exc:
                problems.append(doc.problem(loc, str(exc)))
                return
            if allowed is None:
                return
            for ref in refs:
                for name in filter(None, (ref.name, ref.fallback_name)):
                    if name not in allowed:
                        problems.append(
                            doc.problem(
                                loc,
                                f"unknown variable '{name}': define it under 'variables:' in the config "
                                "(or as an input of this runbook)",
                            )
                        )

    walk(doc.data, ())
    return problems


_STEP_CHECKS = ("top level: duplicate step id", "top level: step ")


def _step_problems(doc: Document) -> list[Problem]:
    """Duplicate step ids and waits on unknown checks, at the step that has them (the model
    validator can only say it about the whole file)."""
    steps = doc.data.get("steps") if isinstance(doc.data, dict) else None
    if not isinstance(steps, list):
        return []
    checks = {s.get("id") for s in steps if isinstance(s, dict) and s.get("check") is not None}
    seen: dict[str, int] = {}
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        step_id = step.get("id")
        if isinstance(step_id, str) and step_id in seen:
            out.append(
                doc.problem(
                    ("steps", i, "id"), f"duplicate step id '{step_id}' (also steps[{seen[step_id]}])"
                )
            )
        elif isinstance(step_id, str):
            seen[step_id] = i
        wait = step.get("wait")
        target = wait.get("check") if isinstance(wait, dict) else None
        if isinstance(target, str) and target not in checks:
            message = f"wait.check '{target}' is not a check step of this runbook"
            out.append(doc.problem(("steps", i, "wait", "check"), message))
    return out


def expects(runbook: Runbook) -> list[tuple[tuple, Expect]]:
    """Every ``expect`` of the runbook's steps with its location in the file."""
    found: list[tuple[tuple, Expect]] = []
    for i, step in enumerate(runbook.steps):
        if isinstance(step, CheckStep):
            found.append((("steps", i, "check", "expect"), step.check.expect))
        elif isinstance(step, ActionStep):
            expect = getattr(getattr(step.action, step.action.kind, None), "expect", None)
            if isinstance(expect, Expect):
                found.append((("steps", i, "action", step.action.kind, "expect"), expect))
    return found


def _threshold_problems(
    runbook: Runbook, doc: Document, thresholds: Mapping[str, Threshold]
) -> list[Problem]:
    """``{threshold: <id>}`` references that name no threshold of the config, or a level it lacks,
    at the reference."""
    problems = []
    for loc, expect in expects(runbook):
        for name, ref in expect.references.items():
            glob = id_glob(ref.threshold)
            matching = {i: t for i, t in thresholds.items() if fnmatchcase(i, glob)}
            where = (*loc, name, "threshold")
            if not matching:
                close = difflib.get_close_matches(glob, list(thresholds), n=3, cutoff=0.6)
                hint = (
                    f" (did you mean {', '.join(close)}?)"
                    if close
                    else (f" (thresholds: {', '.join(sorted(thresholds)) or 'none'})")
                )
                problems.append(doc.problem(where, f"no threshold '{ref.threshold}' in the config{hint}"))
                continue
            lacking = sorted(i for i, t in matching.items() if ref.level and getattr(t, ref.level) is None)
            if lacking:
                message = f"threshold {', '.join(lacking)} has no {ref.level} level"
                problems.append(doc.problem((*loc, name, "level"), message))
    return problems


def load_pack(
    directory: Path,
    variables: Collection[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    thresholds: Mapping[str, Threshold] | None = None,
    rules: Rules | None = None,
) -> tuple[Pack, list[Problem]]:
    """Every runbook file in ``directory``. ``variables``: the config's variable names (None:
    references are checked for syntax only); ``thresholds``: the config's thresholds by id, that
    ``expect`` may refer to (None: not checked); ``rules``: what the safety rules need (their
    problems go to ``Pack.lint``, not to the problems returned). Returns the valid runbooks and
    every problem."""
    rules = rules or Rules(thresholds=thresholds)
    env = os.environ if env is None else env
    if not directory.is_dir():
        return Pack(), []
    runbooks: list[Runbook] = []
    files: dict[str, str] = {}
    problems: list[Problem] = []
    linted: list[Problem] = []
    for path in runbook_files(directory):
        try:
            doc = read_document(path, env)
        except ConfigError as exc:
            problems += exc.problems
            continue
        problems += doc.problems
        try:
            runbook = Runbook.model_validate(doc.data)
        except ValidationError as exc:
            positioned = _step_problems(doc)
            found = problems_from_validation(exc, doc, Runbook)
            if positioned:  # the model says it at the top level; these say it at the step
                found = [p for p in found if not p.message.startswith(_STEP_CHECKS)]
            problems += found + positioned + _template_problems(doc, variables)
            continue
        file_problems = _template_problems(doc, variables)
        if thresholds is not None:
            file_problems += _threshold_problems(runbook, doc, thresholds)
        if runbook.id in files:
            file_problems.append(
                doc.problem(("id",), f"duplicate runbook id '{runbook.id}' (also in {files[runbook.id]})")
            )
        problems += file_problems
        if not file_problems:
            runbooks.append(runbook)
            files[runbook.id] = path.name
            linted += lint(runbook, doc, rules)
    return Pack(tuple(runbooks), files, tuple(sorted(linted))), problems


def load_for(config: Config, env: Mapping[str, str] | None = None) -> tuple[Pack, list[Problem]]:
    """The pack of a config, checked against it: its variables and thresholds, the seed index it
    names, its time scale. The safety rules' problems are in ``Pack.lint``, and among the problems
    returned when the config says ``runbooks: {strict: true}``."""
    settings = config.runbooks
    index, index_problems = read_index(config.seed_scenarios_path, env)
    thresholds = config.threshold_levels()
    rules = Rules(
        thresholds=thresholds,
        health=[target.name for target in config.health],
        scenarios=None if index is None else index.index.ids,
        index_name=settings.seed_scenarios,
        time_scale=settings.time_scale,
        min_window=settings.min_window,
    )
    pack, problems = load_pack(
        config.runbooks_path, config.variables.keys(), env, thresholds=thresholds, rules=rules
    )
    if index is not None:
        index_problems += coverage(pack.runbooks, index.index).problems(index)
    pack = replace(pack, lint=tuple(sorted([*index_problems, *pack.lint])), index=index)
    return pack, problems + (list(pack.lint) if settings.strict else [])


def pack_for(config: Config, env: Mapping[str, str] | None = None) -> Pack:
    """The pack of a loaded config; raises ConfigError when it has problems."""
    pack, problems = load_for(config, env)
    if problems:
        raise ConfigError(problems)
    return pack
