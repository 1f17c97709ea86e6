"""Which runbooks fit a breach, best first, each with a one-line why."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

from console.config import Config
from console.model import SourceKind
from console.rules import Breach, State
from console.runbooks.schema import Runbook

# --- matching ------------------------------------------------------------------------------------


#: Failing health checks with these names are the service's own parts, not an integration.
NOT_PROVIDERS = {"database", "db", "postgres", "postgresql", "disk", "memory", "self"}


@dataclass(frozen=True, slots=True)
class Match:
    runbook: Runbook
    score: float
    why: str


def breach_provider(breach: Breach) -> str:
    """The integration a breach is about: its ``provider`` label, or the first health check
    that does not pass and names no part of the service itself."""
    if provider := breach.label("provider"):
        return provider
    return next((c.component for c in breach.checks if c.component.lower() not in NOT_PROVIDERS), "")


def _specificity(glob: str) -> float:
    return min(len(re.sub(r"[*?\[\]]", "", glob)), 40) / 4


def _score(runbook: Runbook, breach: Breach) -> tuple[float, str]:
    best, why = 0.0, ""
    if runbook.id in breach.runbooks:
        best, why = 100.0, "linked to this threshold in the config"
    triggers = runbook.triggers
    if breach.kind == "alert":
        labels = dict(breach.labels)
        for trigger in triggers.alerts:
            if not fnmatch.fnmatchcase(breach.title, trigger.name):
                continue
            if not all(fnmatch.fnmatchcase(labels.get(k, ""), v) for k, v in trigger.labels.items()):
                continue
            score = 60 + 10 * len(trigger.labels) - (5 if any(c in trigger.name for c in "*?[") else 0)
            if score > best:
                extra = ", ".join(f"{k}={labels.get(k)}" for k in trigger.labels)
                best, why = score, f"alert {breach.title}" + (f" ({extra})" if extra else "")
    else:
        for glob in triggers.thresholds:
            if fnmatch.fnmatchcase(breach.id, glob):
                score = 50 + _specificity(glob)
                if score > best:
                    best, why = score, f"threshold {breach.id} matches {glob}"
        if breach.state == State.ERROR:
            for glob in triggers.errors:
                if fnmatch.fnmatchcase(breach.id, glob):
                    score = 58 + _specificity(glob)
                    if score > best:
                        best, why = score, f"{breach.id} cannot be measured (matches {glob})"
        if breach.source.kind is SourceKind.HEALTH:
            target = breach.source.name
            for glob in triggers.health:
                if fnmatch.fnmatchcase(target, glob):
                    score = 40 + _specificity(glob)
                    if score > best:
                        best, why = score, f"health target {target} matches {glob}"
    if best and triggers.providers:
        best, why = _provider_score(triggers.providers, breach, best, why)
    return best, why


def _provider_score(globs: list[str], breach: Breach, score: float, why: str) -> tuple[float, str]:
    """A runbook that names integrations: up when the breach's integration is one of them (more
    for a literal name than for a glob), down when the breach names another one, a little down
    when the breach names none — ``*`` included: a runbook written for "any integration" fits a
    breach about no integration less than a general one (tests/test_runbook_ranking.py)."""
    provider = breach_provider(breach).lower()
    if not provider:
        return score - 3, why
    matching = [g for g in globs if fnmatch.fnmatchcase(provider, g.lower())]
    if not matching:
        return max(score - 20, 1.0), f"{why}; written for {', '.join(globs)}, not {provider}"
    glob = max(matching, key=_specificity)
    literal = not any(c in glob for c in "*?[")
    return score + 5 + (10 if literal else 0) + _specificity(glob), f"{why}; integration {provider}"


_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def rank(runbooks: Iterable[Runbook], breach: Breach, config: Config | None = None) -> list[Match]:
    """Runbooks whose triggers match ``breach``, best first, each with a one-line why.

    Linked in the config (100) > alert name (60, +10 per matching label) > threshold id glob (50)
    > health target glob (40); more literal characters in a glob rank higher, and a matching
    provider adds 15. Ties: the more severe runbook, then the id."""
    matches = []
    for runbook in runbooks:
        score, why = _score(runbook, breach)
        if score > 0:
            matches.append(Match(runbook, score, why))
    return sorted(matches, key=lambda m: (-m.score, _SEVERITY_ORDER[m.runbook.severity], m.runbook.id))


#: A match this many points below the best is shown behind ``a`` only: a runbook written for
#: another integration drops 20 (see :func:`_provider_score`).
RELEVANT_WITHIN = 15.0


def relevant(matches: list[Match]) -> list[Match]:
    """The matches worth showing first: those within :data:`RELEVANT_WITHIN` of the best (``R``
    on a sync-worker breach listed chatwoot-unavailable and ga-quota-exhausted, issue 18)."""
    if not matches:
        return []
    best = matches[0].score
    return [m for m in matches if m.score >= best - RELEVANT_WITHIN]
