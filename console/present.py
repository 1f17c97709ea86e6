"""Words and glyphs for states: severity must read without colour (docs/ARCHITECTURE.md, rules of the house).

Shared by the headless output and the panels, so a state looks the same everywhere.
"""

from __future__ import annotations

from console.model import HealthStatus, Severity
from console.rules import Breach, State

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


def breach_badge(breach: Breach) -> str:
    """``✖ CRIT`` for a critical breach, ``? NODATA`` / ``! ERROR`` when we do not know."""
    return STATE_BADGE.get(breach.state) or SEVERITY_BADGE[breach.severity]


def severity_badge(severity: Severity) -> str:
    return SEVERITY_BADGE[severity]
