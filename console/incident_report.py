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
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from console.audit import Event, parse_ts, timeline, utc_iso
from console.rules import format_duration
from console.runbooks import Pack, Progress, StepState

_SEVERITY_RANK = {"OK": 0, "INFO": 1, "UNKNOWN": 2, "WARN": 3, "CRIT": 4}  # Severity.word
_OUTCOME_WORD = {"ok": "✔ ok", "failed": "✖ failed", "refused": "⊘ refused", "info": "·"}


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
    events: Iterable[Event],
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
            else {str(e.get("environment")) for e in window if e.get("environment")}
        ),
        operators=sorted({str(e.get("operator")) for e in window if e.get("operator")}),
        timeline=[
            {
                "ts": entry.ts,
                "time": utc_iso(entry.ts),
                "who": entry.who,
                "event": entry.kind,
                "outcome": entry.outcome,
                "text": entry.text,
                "runbook": entry.runbook,
                "step": entry.step,
            }
            for entry in timeline(window)
        ],
        breaches=_breaches(window),
        actions=_actions(window),
        checks={
            "passed": sum(1 for e in window if e.kind == "check.passed"),
            "failed": sum(1 for e in window if e.kind == "check.failed"),
        },
        notes=[
            NoteEntry(
                e.ts, str(e.get("operator")), str(e.get("text")), str(e.get("runbook")), str(e.get("step"))
            )
            for e in window
            if e.kind == "note"
        ],
        runbooks=_runbooks(window, every, pack, until),
        skipped_lines=skipped_lines,
    )


def _breaches(window: list[Event]) -> list[BreachEntry]:
    """One entry per breach episode: started (the breach's own ``since``), worst severity, ended."""
    episodes: list[BreachEntry] = []
    current: dict[str, BreachEntry] = {}
    for e in window:
        if not e.kind.startswith("breach."):
            continue
        breach_id = str(e.get("breach"))
        entry = current.get(breach_id)
        if entry is None:
            try:
                started = parse_ts(str(e.get("since")))
            except ValueError:
                started = e.ts
            entry = BreachEntry(breach_id, str(e.get("title")), str(e.get("severity")), started)
            entry.subject = str(e.get("subject"))
            current[breach_id] = entry
            episodes.append(entry)
        severity = str(e.get("severity"))
        if _SEVERITY_RANK.get(severity, 0) > _SEVERITY_RANK.get(entry.severity, 0):
            entry.severity = severity
        entry.last_state = str(e.get("state"))
        entry.value = str(e.get("value")) or entry.value
        if e.kind == "breach.end":
            entry.ended = e.ts
            del current[breach_id]
    return sorted(episodes, key=lambda b: (b.started, b.id))


def _plan(e: Event) -> Mapping[str, Any]:
    plan = e.get("plan", {})
    return plan if isinstance(plan, Mapping) else {}


def _actions(window: list[Event]) -> list[ActionEntry]:
    confirmations = {
        _plan(e).get("id"): str(e.get("confirmation")) for e in window if e.kind == "action.confirmed"
    }
    out = []
    for e in window:
        if e.kind not in ("action.succeeded", "action.failed", "action.refused"):
            continue
        plan = _plan(e)
        duration = e.get("duration", None)
        output = e.get("output", [])
        out.append(
            ActionEntry(
                ts=e.ts,
                operator=str(e.get("operator")),
                result="refused" if e.kind == "action.refused" else str(e.get("result") or e.kind[7:]),
                title=str(plan.get("title") or plan.get("summary") or "action"),
                kind=str(plan.get("kind", "")),
                summary=str(plan.get("summary", "")),
                message=str(e.get("message")),
                runbook=str(e.get("runbook")),
                step=str(e.get("step")),
                confirmation="" if e.kind == "action.refused" else confirmations.get(plan.get("id"), ""),
                duration=float(duration) if isinstance(duration, int | float) else None,
                lines=[str(x) for x in plan.get("lines", []) if isinstance(x, str)],
                output=[str(x) for x in output] if isinstance(output, list) else [],
            )
        )
    return out


def _runbooks(window: list[Event], every: list[Event], pack: Pack, until: float) -> list[RunbookEntry]:
    runs: dict[str, Event] = {}
    for e in every:
        if e.kind == "runbook.opened" and e.get("run"):
            runs.setdefault(str(e.get("run")), e)
    used = {str(e.get("run")) for e in window if e.get("run")}
    out = []
    for run_id, opened in runs.items():
        if run_id not in used:
            continue
        runbook = pack.get(str(opened.get("runbook")))
        if runbook is None:
            out.append(
                RunbookEntry(
                    str(opened.get("runbook")),
                    str(opened.get("title")),
                    run_id,
                    opened.ts,
                    str(opened.get("operator")),
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
                str(opened.get("operator")),
                counts,
                [f"{s.step.id}: {s.message}" for s in progress.steps if s.state == StepState.FAILED],
                [(item, i in progress.ticked) for i, item in enumerate(runbook.post_incident)],
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
        f"- Checks: {report.checks['passed']} passed, {report.checks['failed']} failed",
        f"- Runbooks: {', '.join(md(r.id) for r in report.runbooks) or 'none'}",
        f"- Notes: {len(report.notes)}",
        "",
        "## Timeline",
        "",
        "| time (UTC) | who | outcome | event |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {_clock(t['ts'])} | {md(t['who'])} | {_OUTCOME_WORD.get(t['outcome'], t['outcome'])} | {md(t['text'])} |"
        for t in report.timeline
    ]
    out += ["", "## Breaches", ""]
    if report.breaches:
        out += ["| breach | severity | started | ended | lasted |", "|---|---|---|---|---|"]
        for b in report.breaches:
            ended = _clock(b.ended) if b.ended is not None else f"still {md(b.last_state)}"
            lasted = format_duration(b.duration) if b.duration is not None else "—"
            title = md(b.title) + (f" ({md(b.subject)})" if b.subject else "")
            out.append(f"| {title} | {md(b.severity)} | {_clock(b.started)} | {ended} | {lasted} |")
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
