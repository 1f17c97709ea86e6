"""docs/RUNBOOKS.md, generated from the runbook pack: ``incident-console runbook docs``.

Every runbook by seed file and section (then those added beyond the seeds, then any without a
source), with its triggers, its steps one line each and its escalation; then the coverage table:
every scenario of the seed index and the runbooks that encode it. Nothing here depends on the
environment (no rendered values, no paths outside the repository, no time): the same pack writes
the same file, and tests/test_runbook_docs.py fails when the committed file is not what this
writes now.
"""

from __future__ import annotations

from console.rules import format_duration
from console.runbooks import (
    ActionStep,
    CheckStep,
    EscalateStep,
    ManualStep,
    Pack,
    Runbook,
    Step,
    WaitStep,
    coverage,
)

COMMAND = "incident-console runbook docs > docs/RUNBOOKS.md"


def _cell(text: str) -> str:
    """Text for one Markdown table cell or list line: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def triggers_text(runbook: Runbook) -> str:
    t = runbook.triggers
    alerts = [a.name + "".join(f"{{{k}={v}}}" for k, v in a.labels.items()) for a in t.alerts]
    parts = [
        ("alerts", alerts),
        ("thresholds", t.thresholds),
        ("health", t.health),
        ("unreachable", t.errors),
        ("providers", t.providers),
    ]
    return "; ".join(f"{name} {', '.join(values)}" for name, values in parts if values) or "opened by hand"


def step_line(runbook: Runbook, step: Step) -> str:
    """One step in one line: its kind (an action's kind and impact, a check's symptom), title."""
    match step:
        case CheckStep():
            symptom = f", measures {step.check.symptom}" if step.check.symptom else ""
            what = f"check ({step.check.kind}{symptom})"
        case ActionStep():
            impact = f", {step.action.impact}" if step.action.impact else ""
            what = f"action ({step.action.kind}{impact})"
        case WaitStep():
            check = runbook.waited_check(step)
            what = step.again(step.wait.seconds, format_duration(step.wait.seconds), f"`{check.id}`")
        case ManualStep():
            what = "manual"
        case EscalateStep():
            what = "escalate"
        case _:
            what = str(step.kind)
    return _cell(f"{what}: {step.title}")


def escalation_text(runbook: Runbook) -> list[str]:
    if runbook.escalation_none is not None:
        return [f"none: {_cell(runbook.escalation_none)}"]
    if not runbook.escalation:
        return ["not said"]
    out = []
    for level in runbook.escalation:
        if level.after is not None:
            when = "from the start" if level.after == 0 else f"after {format_duration(level.after)}"
        else:
            when = f"if {level.when}" if level.when else "by condition"
        notify = f" (notify: {', '.join(level.notify)})" if level.notify else ""
        out.append(_cell(f"level {level.level}, {when}: {level.who}{notify}"))
    return out


def _runbook(runbook: Runbook, file_name: str, heading: str) -> list[str]:
    lines = [f"### {_cell(heading)}", "", f"`{runbook.id}` ({file_name}): {_cell(runbook.title)}", ""]
    if runbook.source and not runbook.source.seed:
        lines.append(f"- added: {_cell(runbook.source.added)}")
    lines.append(f"- severity: {runbook.severity}")
    if runbook.covers:
        lines.append(f"- covers: {', '.join(runbook.covers)}")
    lines.append(f"- triggers: {_cell(triggers_text(runbook))}")
    lines.append("- steps:")
    lines += [f"  {i}. {step_line(runbook, step)}" for i, step in enumerate(runbook.steps, 1)]
    escalation = escalation_text(runbook)
    if len(escalation) == 1:
        lines.append(f"- escalation: {escalation[0]}")
    else:
        lines.append("- escalation:")
        lines += [f"  - {line}" for line in escalation]
    return [*lines, ""]


def render(pack: Pack) -> str:
    """docs/RUNBOOKS.md for ``pack``."""
    runbooks = sorted(pack.runbooks, key=lambda r: r.id)
    seeds = sorted({r.source.file for r in runbooks if r.source and r.source.seed})
    added = [r for r in runbooks if r.source and not r.source.seed]
    unsourced = [r for r in runbooks if r.source is None]
    index = pack.index.index if pack.index else None
    report = coverage(runbooks, index) if index is not None else None

    out = [
        "# Runbooks",
        "",
        f"Generated from the runbook pack (config/runbooks/) by `{COMMAND}`: do not edit by hand.",
        "tests/test_runbook_docs.py fails when this file is not what the command writes now.",
        "",
        f"{len(runbooks)} runbooks"
        + (f"; {report.summary()}" if report is not None else "; no seed index: no coverage"),
        "",
    ]
    for seed in seeds:
        out += [f"## {seed}", ""]
        in_seed = sorted(
            (r for r in runbooks if r.source and r.source.file == seed),
            key=lambda r: (r.source.section, r.id),
        )
        for runbook in in_seed:
            out += _runbook(runbook, pack.files[runbook.id], runbook.source.section)
    if added:
        out += ["## Added beyond the seeds", ""]
        for runbook in added:
            out += _runbook(runbook, pack.files[runbook.id], runbook.title)
    if unsourced:
        out += ["## Without a source", ""]
        for runbook in unsourced:
            out += _runbook(runbook, pack.files[runbook.id], runbook.title)
    if report is not None:
        out += ["## Seed coverage", "", report.summary(), ""]
        out += ["| scenario | seed file | section | title | runbooks |", "|---|---|---|---|---|"]
        for scenario in report.index.scenarios:
            covered = ", ".join(f"`{r}`" for r in report.by_scenario.get(scenario.id, ())) or "**none**"
            out.append(
                f"| {_cell(scenario.id)} | {_cell(scenario.file)} | {_cell(scenario.section)} | "
                f"{_cell(scenario.title)} | {covered} |"
            )
        out.append("")
    return "\n".join(out)
