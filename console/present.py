"""Words and glyphs for states: severity must read without colour (docs/ARCHITECTURE.md, rules of the house).

Shared by the headless output and the panels, so a state looks the same everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.model import HealthStatus, Severity
from console.rules import Breach, State

if TYPE_CHECKING:
    from console.poller import ConsoleState

SEVERITY_BADGE = {
    Severity.CRITICAL: "✖ CRIT",
    Severity.WARNING: "▲ WARN",
    Severity.UNKNOWN: "? UNKNOWN",
    Severity.INFO: "◆ INFO",
    Severity.OK: "● OK",
}
STATE_BADGE = {State.NODATA: "? NODATA", State.ERROR: "! ERROR"}
HEALTH_BADGE = {
    HealthStatus.PASS: "● PASS",
    HealthStatus.WARN: "▲ WARN",
    HealthStatus.FAIL: "✖ FAIL",
    HealthStatus.UNKNOWN: "? UNKNOWN",
}
ERROR_BADGE = "! ERROR"
#: With no breach: some source's data is old, or no source has answered yet (never "● OK").
STALE_BADGE, NO_DATA_BADGE = "◌ STALE", "… NO DATA"
#: The config names no source at all: nothing is watched, so nothing is known to be well.
NOTHING_BADGE = "○ NOTHING WATCHED"
NOTHING_WATCHED = "the config names no health target, Prometheus server or Postgres cluster"


def breach_badge(breach: Breach) -> str:
    """``✖ CRIT`` for a critical breach, ``? NODATA`` / ``! ERROR`` when we do not know."""
    return STATE_BADGE.get(breach.state) or SEVERITY_BADGE[breach.severity]


def severity_badge(severity: Severity) -> str:
    return SEVERITY_BADGE[severity]


def overall_badge(state: ConsoleState | None, now: float) -> str:
    """One word for everything (the header, the wall): the worst breach's severity, and with
    none, ``● OK`` only while every source's data is fresh."""
    if state is None:
        return NO_DATA_BADGE
    if not state.intervals:
        return NOTHING_BADGE
    if state.breaches:
        return SEVERITY_BADGE[state.worst]
    old = state.old_sources(now)
    if not old:
        return SEVERITY_BADGE[Severity.OK]
    return STALE_BADGE if any(key in state.snapshots for key in old) else NO_DATA_BADGE
