"""The incident report: what the journal says happened, as Markdown or JSON.

``incident-console export --since 2h`` builds an :class:`IncidentReport` from the journal's
events in the window: the timeline, the breaches (start, end, worst severity), every action with
its result, the notes, the runbooks used with their step progress, and the post-incident
checklist of those runbooks (ticked items marked). The journal's text is already redacted and
sanitised; Markdown rendering escapes it again for Markdown, since a report is read in a
renderer where ``|``, ``<`` or ``[`` would act.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from console.journal import (
    ActionConfirmed,
    ActionFailed,
    ActionRefused,
    ActionSucceeded,
    BreachEnded,
    BreachEvent,
    CheckFailed,
    CheckPassed,
    JournalEvent,
    Note,
    RunbookOpened,
    RunEvent,
    parse_ts,
    utc_iso,
)
from console.model import Severity
from console.present import severity_badge
from console.rules import format_duration
from console.runbooks import Pack, Progress, StepState
from console.timeline import not_met, timeline

_OUTCOME_WORD = {
    "ok": "✔ ok",
    "failed": "✖ failed",
    "not met": "✖ not met",
    "refused": "⊘ refused",
    "info": "·",
}


def _outcome_word(outcome: str, severity: str) -> str:
    """A breach reads as its severity (``✖ CRIT``), not as a failure."""
    if outcome == "breach":
        return severity_badge(Severity.from_word(severity))
    return _OUTCOME_WORD.get(outcome, outcome)


@dataclass
class BreachEntry:
    id: str
    title: str
    severity: str
    started: float
    ended: float | None = None
    last_state: str = ""
    value: str = ""
    subject: str = ""
    started_known: bool = True  # False: ``started`` is the console's first look (it began then or earlier)

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class ActionEntry:
    ts: float
    operator: str
    result: str  # succeeded | failed | timeout | refused | cancelled ...
    title: str
    kind: str
    summary: str
    message: str
    runbook: str = ""
    step: str = ""
    confirmation: str = ""
    duration: float | None = None
    lines: list[str] = field(default_factory=list)  # what ran (masked)
    output: list[str] = field(default_factory=list)


@dataclass
class NoteEntry:
    ts: float
    operator: str
    text: str
    runbook: str = ""
    step: str = ""


@dataclass
class RunbookEntry:
    id: str
    title: str
    run: str
    opened: float
    operator: str
    steps: dict[str, int]  # state -> count
    failed_steps: list[str]
    checklist: list[tuple[str, bool]]  # post-incident item, ticked
    in_pack: bool = True
    unmet_steps: list[str] = field(default_factory=list)  # checks whose last result was "not met"


@dataclass
class IncidentReport:
    since: float
    until: float
    journal: str
    environments: list[str]
    operators: list[str]
    timeline: list[dict[str, Any]]
    breaches: list[BreachEntry]
    actions: list[ActionEntry]
    checks: dict[str, int]
    notes: list[NoteEntry]
    runbooks: list[RunbookEntry]
    skipped_lines: int = 0

    @property
    def empty(self) -> bool:
        return not self.timeline


def build_report(
    events: Iterable[JournalEvent],
    pack: Pack,
    *,
    since: float,
    until: float | None = None,
    journal: str = "",
    skipped_lines: int = 0,
    environments: Iterable[str] | None = None,
) -> IncidentReport:
    """The report of the events with ``since <= ts <= until``; ``events`` may hold older ones
    (a runbook's progress counts every event of a run that shows in the window). ``environments``
    names the environments the caller chose the events of (default: those the window holds)."""
    every = sorted(events, key=lambda e: e.ts)
    until = time.time() if until is None else until
    window = [e for e in every if since <= e.ts <= until]
    return IncidentReport(
        since=since,
        until=until,
        journal=journal,
        environments=sorted(
            set(environments)
            if environments is not None
            else {e.environment for e in window if e.environment}
        ),
        operators=sorted({e.operator for e in window if e.operator}),
        timeline=[
            {
                "ts": entry.ts,
                "time": utc_iso(entry.ts),
                "who": entry.who,
                "event": entry.kind,
                "outcome": entry.outcome,
                "severity": entry.severity,
                "text": entry.text,
                "runbook": entry.runbook,
                "step": entry.step,
            }
            for entry in timeline(window)
        ],
        breaches=_breaches(window),
        actions=_actions(window),
        checks={
            "passed": sum(1 for e in window if isinstance(e, CheckPassed)),
            "not_met": sum(1 for e in window if not_met(e)),
            "failed": sum(1 for e in window if isinstance(e, CheckFailed) and not not_met(e)),
        },
        notes=[NoteEntry(e.ts, e.operator, e.text, e.runbook, e.step) for e in window if isinstance(e, Note)],
        runbooks=_runbooks(window, every, pack, until),
        skipped_lines=skipped_lines,
    )


def _breaches(window: list[JournalEvent]) -> list[BreachEntry]:
    """One entry per breach episode: started (the breach's own ``since``), worst severity, ended."""
    episodes: list[BreachEntry] = []
    current: dict[str, BreachEntry] = {}
    for e in window:
        if not isinstance(e, BreachEvent):
            continue
        entry = current.get(e.breach)
        if entry is None:
            try:
                started = parse_ts(e.since)
            except ValueError:
                started = e.ts
            entry = BreachEntry(e.breach, e.title, e.severity, started, started_known=not e.since_first_look)
            entry.subject = e.subject
            current[e.breach] = entry
            episodes.append(entry)
        if Severity.from_word(e.severity) > Severity.from_word(entry.severity):
            entry.severity = e.severity
        entry.last_state = e.state
        entry.value = e.value or entry.value
        if isinstance(e, BreachEnded):
            entry.ended = e.ts
            del current[e.breach]
    return sorted(episodes, key=lambda b: (b.started, b.id))


def _actions(window: list[JournalEvent]) -> list[ActionEntry]:
    confirmations = {e.plan.id: e.confirmation for e in window if isinstance(e, ActionConfirmed)}
    out = []
    for e in window:
        if isinstance(e, ActionRefused):
            result, confirmation, output, duration = "refused", "", (), None
        elif isinstance(e, ActionSucceeded | ActionFailed):
            result = e.result or ("succeeded" if isinstance(e, ActionSucceeded) else "failed")
            confirmation, output, duration = confirmations.get(e.plan.id, ""), e.output, e.duration
        else:
            continue
        out.append(
            ActionEntry(
                ts=e.ts,
                operator=e.operator,
                result=result,
                title=e.plan.name,
                kind=e.plan.kind,
                summary=e.plan.summary,
                message=e.message,
                runbook=e.runbook,
                step=e.step,
                confirmation=confirmation,
                duration=duration,
                lines=list(e.plan.lines),
                output=list(output),
            )
        )
    return out


def _runbooks(
    window: list[JournalEvent], every: list[JournalEvent], pack: Pack, until: float
) -> list[RunbookEntry]:
    runs: dict[str, RunbookOpened] = {}
    for e in every:
        if isinstance(e, RunbookOpened) and e.run:
            runs.setdefault(e.run, e)
    used = {e.run for e in window if isinstance(e, RunEvent) and e.run}
    out = []
    for run_id, opened in runs.items():
        if run_id not in used:
            continue
        runbook = pack.get(opened.runbook)
        if runbook is None:
            out.append(
                RunbookEntry(
                    opened.runbook,
                    opened.title,
                    run_id,
                    opened.ts,
                    opened.operator,
                    {},
                    [],
                    [],
                    in_pack=False,
                )
            )
            continue
        progress = Progress.from_events(runbook, run_id, every, opened.ts, until)
        counts: dict[str, int] = {}
        for status in progress.steps:
            counts[str(status.state)] = counts.get(str(status.state), 0) + 1
        out.append(
            RunbookEntry(
                runbook.id,
                runbook.title,
                run_id,
                opened.ts,
                opened.operator,
                counts,
                [f"{s.step.id}: {s.message}" for s in progress.steps if s.state == StepState.FAILED],
                [(item, i in progress.ticked) for i, item in enumerate(runbook.post_incident)],
                unmet_steps=[
                    f"{s.step.id}: {s.message}" for s in progress.steps if s.state == StepState.NOT_MET
                ],
            )
        )
    return sorted(out, key=lambda r: r.opened)


# --- JSON ---------------------------------------------------------------------------------------------


def to_json(report: IncidentReport) -> dict[str, Any]:
    def stamp(ts: float | None) -> str | None:
        return None if ts is None else utc_iso(ts)

    return {
        "since": stamp(report.since),
        "until": stamp(report.until),
        "journal": report.journal,
        "environments": report.environments,
        "operators": report.operators,
        "skipped_lines": report.skipped_lines,
        "summary": _summary(report),
        "timeline": [{k: v for k, v in t.items() if k != "ts"} for t in report.timeline],
        "breaches": [
            asdict(b) | {"started": stamp(b.started), "ended": stamp(b.ended), "duration": b.duration}
            for b in report.breaches
        ],
        "actions": [asdict(a) | {"ts": stamp(a.ts)} for a in report.actions],
        "notes": [asdict(n) | {"ts": stamp(n.ts)} for n in report.notes],
        "runbooks": [
            asdict(r)
            | {"opened": stamp(r.opened), "checklist": [{"item": i, "done": d} for i, d in r.checklist]}
            for r in report.runbooks
        ],
    }


def render_json(report: IncidentReport) -> str:
    return json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"


def _summary(report: IncidentReport) -> dict[str, Any]:
    results: dict[str, int] = {}
    for action in report.actions:
        results[action.result] = results.get(action.result, 0) + 1
    return {
        "breaches": len(report.breaches),
        "breaches_open": sum(1 for b in report.breaches if b.ended is None),
        "actions": results,
        "checks": report.checks,
        "notes": len(report.notes),
        "runbooks": [r.id for r in report.runbooks],
    }


# --- Markdown ------------------------------------------------------------------------------------------

# Enough to keep text inert inside a line or a table cell: no emphasis, code, link (its '(' is
# harmless once '[' and ']' are escaped), HTML, cell break or strike-through.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|~])")


def md(text: str) -> str:
    """Plain text made inert in Markdown (and in the HTML a renderer makes of it)."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\r", " ").replace("\n", " ⏎ "))


def _fence(lines: list[str]) -> list[str]:
    longest = max((len(m) for line in lines for m in re.findall(r"`+|~+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}text", *lines, fence]


def _clock(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _where(runbook: str, step: str) -> str:
    return f"{runbook}/{step}" if runbook and step else runbook


def render_markdown(report: IncidentReport) -> str:
    env = ", ".join(report.environments) or "unknown"
    out = [
        f"# Incident report: {md(env)}, {_clock(report.since)} to {_clock(report.until)} UTC",
        "",
        f"Written by incident-console from the journal `{report.journal}`"
        + (f" ({report.skipped_lines} unreadable lines skipped)" if report.skipped_lines else "")
        + ".",
        "",
    ]
    if report.operators:
        out += [f"Operators: {', '.join(md(o) for o in report.operators)}", ""]
    if report.empty:
        return "\n".join([*out, "Nothing was journaled in this period.", ""])
    summary = _summary(report)
    actions = ", ".join(f"{n} {word}" for word, n in sorted(summary["actions"].items())) or "none"
    out += [
        "## Summary",
        "",
        f"- Breaches: {summary['breaches']} ({summary['breaches_open']} still open at the end)",
        f"- Actions: {actions}",
        f"- Checks: {report.checks['passed']} passed, "
        + (f"{report.checks['not_met']} not met, " if report.checks["not_met"] else "")
        + f"{report.checks['failed']} failed",
        f"- Runbooks: {', '.join(md(r.id) for r in report.runbooks) or 'none'}",
        f"- Notes: {len(report.notes)}",
        "",
        "## Timeline",
        "",
        "| time (UTC) | who | outcome | event |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {_clock(t['ts'])} | {md(t['who'])} | {_outcome_word(t['outcome'], t['severity'])} | {md(t['text'])} |"
        for t in report.timeline
    ]
    out += ["", "## Breaches", ""]
    if report.breaches:
        out += ["| breach | severity | started | ended | lasted |", "|---|---|---|---|---|"]
        for b in report.breaches:
            ended = _clock(b.ended) if b.ended is not None else f"still {md(b.last_state)}"
            lasted = format_duration(b.duration) if b.duration is not None else "—"
            started = _clock(b.started)
            if not b.started_known:  # already on when the console first looked
                started, lasted = (
                    f"{started} or earlier",
                    (f"≥{lasted}" if b.duration is not None else lasted),
                )
            title = md(b.title) + (f" ({md(b.subject)})" if b.subject else "")
            out.append(f"| {title} | {md(b.severity)} | {started} | {ended} | {lasted} |")
    else:
        out.append("No breach started or ended in this period.")
    out += ["", "## Actions", ""]
    if not report.actions:
        out.append("No action was run.")
    for a in report.actions:
        where = _where(a.runbook, a.step)
        out += [
            f"### {_clock(a.ts)} {md(a.result)}: {md(a.title)}" + (f" ({md(where)})" if where else ""),
            "",
            f"- by {md(a.operator)}"
            + (f", confirmed: {md(a.confirmation)}" if a.confirmation else "")
            + (f", took {format_duration(a.duration)}" if a.duration is not None else ""),
            f"- result: {md(a.message)}",
        ]
        if a.lines:
            out += ["", *_fence(a.lines)]
        if a.output:
            out += ["", "Output:", "", *_fence(a.output)]
        out.append("")
    out += ["## Notes", ""]
    out += [
        f"- {_clock(n.ts)} {md(n.operator)}"
        + (f" [{md(_where(n.runbook, n.step))}]" if n.runbook else "")
        + f": {md(n.text)}"
        for n in report.notes
    ] or ["No notes."]
    out += ["", "## Runbooks used", ""]
    for r in report.runbooks:
        if not r.in_pack:
            out.append(f"- {md(r.id)}: {md(r.title)} (no longer in the runbook pack)")
            continue
        states = ", ".join(f"{n} {state}" for state, n in sorted(r.steps.items()))
        out.append(
            f"- {md(r.id)}: {md(r.title)}, opened {_clock(r.opened)} by {md(r.operator)}; steps: {states}"
        )
        out += [f"  - failed: {md(f)}" for f in r.failed_steps]
        out += [f"  - not met: {md(f)}" for f in r.unmet_steps]
    if not report.runbooks:
        out.append("No runbook was opened.")
    out += ["", "## Post-incident checklist", ""]
    items = [(r, item, done) for r in report.runbooks for item, done in r.checklist]
    if not items:
        out.append("No runbook used in this period has a post-incident checklist.")
    for r in report.runbooks:
        if r.checklist:
            out += [f"From {md(r.id)}:", ""]
            out += [f"- [{'x' if done else ' '}] {md(item)}" for item, done in r.checklist]
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
