"""The journal's vocabulary: every kind of event a console writes, by name.

The names are the ``event`` field of the JSON lines and never change: journals written by earlier
releases are read with them, and earlier releases read ours.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    BREACH_START = "breach.start"
    BREACH_CHANGE = "breach.change"
    BREACH_END = "breach.end"
    RUNBOOK_OPENED = "runbook.opened"
    STEP_STATE = "step.state"
    INPUT_SET = "input.set"
    NOTE = "note"
    POSTINCIDENT_TICK = "postincident.tick"
    ACTION_REQUESTED = "action.requested"
    ACTION_DRY_RUN = "action.dry_run"
    ACTION_DECLINED = "action.declined"
    ACTION_REFUSED = "action.refused"
    ACTION_CLAIMED = "action.claimed"
    ACTION_CONFIRMED = "action.confirmed"
    ACTION_SUCCEEDED = "action.succeeded"
    ACTION_FAILED = "action.failed"
    CHECK_PASSED = "check.passed"
    CHECK_FAILED = "check.failed"
