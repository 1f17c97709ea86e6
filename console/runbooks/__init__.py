"""The runbook pack (config/runbooks/*.yaml) and runs of its runbooks.

A runbook is one scenario of the source documents: what shows it (``triggers``), the steps that
fix it (check / action / manual / wait / escalate), who to escalate to as time passes, and the
post-incident checklist. The package, in import order:

- ``schema``: the pydantic models (the documentation of a runbook file);
- ``context``: the values a runbook's ``{{templates}}`` may use (:data:`CONTEXT_NAMES`);
- ``rank``: which runbooks fit a breach, best first, with why;
- ``lint``: the safety rules (:func:`lint`), the seed index and its coverage;
- ``packdata``: the :class:`Pack` value (light: a config without runbooks imports nothing more);
- ``pack``: reading and checking every runbook file (``file:line:col`` problems);
- ``progress``: step states of one run, rebuilt from the journal;
- ``session``: :class:`RunbookSession`, one run — the whole API of the runbook screen.

A screen uses :meth:`Pack.rank`, :meth:`RunbookSession.open` and the session's methods, then
renders ``session.progress``; it needs no logic of its own.

Each name imports its module on first use (console/lazy.py): the console's first screen needs
none of them.
"""

from __future__ import annotations

from console.lazy import exports

_WHERE: dict[str, tuple[str, ...]] = {
    "context": (
        "CONTEXT_NAMES",
        "InputView",
        "breach_values",
        "build_context",
        "runbook_title",
    ),
    "lint": (
        "Coverage",
        "IndexFile",
        "Rules",
        "Scenario",
        "SeedIndex",
        "coverage",
        "lint",
        "read_index",
    ),
    "packdata": ("Pack",),
    "pack": (
        "load_for",
        "load_pack",
        "pack_for",
        "runbook_files",
    ),
    "progress": (
        "EscalationView",
        "Progress",
        "StepState",
        "StepStatus",
    ),
    "rank": (
        "Match",
        "breach_provider",
        "rank",
    ),
    "schema": (
        "ActionStep",
        "CheckStep",
        "EscalateStep",
        "EscalationLevel",
        "ManualStep",
        "Runbook",
        "Step",
        "StepKind",
        "WaitStep",
    ),
    "session": (
        "RESUME_WINDOW",
        "Need",
        "RunbookSession",
        "StepCommand",
        "StepTask",
        "run_key",
    ),
}
__getattr__, __all__ = exports(__name__, _WHERE)
