"""The runbook pack: config/runbooks/*.yaml.

For now this reads each runbook's id so that the config can check the runbook ids thresholds
link to; the full runbook schema and step machine come with the runbook issue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from console.yamlfile import ConfigError, Problem, read_document


def runbook_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_runbook_ids(
    directory: Path, env: Mapping[str, str] | None = None
) -> tuple[frozenset[str], list[Problem]]:
    env = os.environ if env is None else env
    if not directory.is_dir():
        return frozenset(), []
    ids: dict[str, str] = {}
    problems: list[Problem] = []
    for path in runbook_files(directory):
        try:
            doc = read_document(path, env)
        except ConfigError as exc:
            problems += exc.problems
            continue
        problems += doc.problems
        runbook_id = doc.data.get("id")
        if not isinstance(runbook_id, str) or not runbook_id:
            problems.append(doc.problem((), "a runbook needs an 'id'"))
        elif runbook_id in ids:
            problems.append(
                doc.problem(("id",), f"duplicate runbook id '{runbook_id}' (also in {ids[runbook_id]})")
            )
        else:
            ids[runbook_id] = path.name
    return frozenset(ids), problems
