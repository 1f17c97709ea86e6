"""The runbook pack (config/runbooks/*.yaml) and runs of its runbooks.

A runbook is one scenario of the source documents: what shows it (``triggers``), the steps that
fix it (check / action / manual / wait / escalate), who to escalate to as time passes, and the
post-incident checklist. The package, in import order:

- ``schema``: the pydantic models (the documentation of a runbook file);
- ``context``: the values a runbook's ``{{templates}}`` may use (:data:`CONTEXT_NAMES`);
- ``rank``: which runbooks fit a breach, best first, with why;
- ``lint``: the safety rules (:func:`lint`), the seed index and its coverage;
- ``pack``: reading and checking every runbook file (``file:line:col`` problems);
- ``progress``: step states of one run, rebuilt from the journal;
- ``session``: :class:`RunbookSession`, one run — the whole API of the runbook screen.

A screen uses :meth:`Pack.rank`, :meth:`RunbookSession.open` and the session's methods, then
renders ``session.progress``; it needs no logic of its own.
"""

from __future__ import annotations

from console.runbooks.context import CONTEXT_NAMES, InputView, breach_values, build_context, runbook_title
from console.runbooks.lint import (
    Coverage,
    IndexFile,
    Rules,
    Scenario,
    SeedIndex,
    coverage,
    lint,
    read_index,
)
from console.runbooks.pack import Pack, load_for, load_pack, pack_for, runbook_files
from console.runbooks.progress import EscalationView, Progress, StepState, StepStatus
from console.runbooks.rank import Match, breach_provider, rank
from console.runbooks.schema import (
    ActionStep,
    CheckStep,
    EscalateStep,
    EscalationLevel,
    ManualStep,
    Runbook,
    Step,
    StepKind,
    WaitStep,
)
from console.runbooks.session import RESUME_WINDOW, Need, RunbookSession, StepCommand, StepTask, run_key

__all__ = [
    "CONTEXT_NAMES",
    "RESUME_WINDOW",
    "ActionStep",
    "CheckStep",
    "Coverage",
    "EscalateStep",
    "EscalationLevel",
    "EscalationView",
    "IndexFile",
    "InputView",
    "ManualStep",
    "Match",
    "Need",
    "Pack",
    "Progress",
    "Rules",
    "Runbook",
    "RunbookSession",
    "Scenario",
    "SeedIndex",
    "Step",
    "StepCommand",
    "StepKind",
    "StepState",
    "StepStatus",
    "StepTask",
    "WaitStep",
    "breach_provider",
    "breach_values",
    "build_context",
    "coverage",
    "lint",
    "load_for",
    "load_pack",
    "pack_for",
    "rank",
    "read_index",
    "run_key",
    "runbook_files",
    "runbook_title",
]
