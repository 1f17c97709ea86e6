"""Which runbooks fit a breach, best first, each with a one-line why."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from console.config import Config
from console.model import SourceKind
from console.rules import Breach, State
from console.runbooks.schema import Runbook, is_threshold

# --- matching ------------------------------------------------------------------------------------


#: Failing health checks with these names are the service's own parts, not an integration.
NOT_PROVIDERS = {"database", "db", "postgres", "postgresql", "disk", "memory", "self"}


@dataclass(frozen=True, slots=True)
class Match:
    runbook: Runbook
    score: float
    why: str
    #: The firing breach whose trouble this runbook is for, when it ranks as its cause: the run
    #: is opened for that breach (its provider and service fill the runbook's inputs).
    cause: Breach | None = None


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


# --- a cause firing beside the breach ------------------------------------------------------------


def breach_service(breach: Breach) -> str:
    """The service a breach is about: its ``job`` label, or the health target it comes from."""
    if job := breach.label("job"):
        return job
    return breach.source.name if breach.source.kind is SourceKind.HEALTH else ""


def explains(runbook: Runbook, breach: Breach) -> bool:
    """Whether ``breach`` is one the runbook's trouble causes (``triggers.explains``)."""
    for glob in runbook.triggers.explains:
        if is_threshold(glob):
            if breach.kind != "alert" and fnmatch.fnmatchcase(breach.id, glob):
                return True
        elif breach.kind == "alert" and fnmatch.fnmatchcase(breach.title, glob):
            return True
    return False


def _agree(cause: Breach, breach: Breach) -> bool:
    """Not about another integration or another service (where both say which)."""
    for about in (breach_provider, breach_service):
        mine, theirs = about(breach).lower(), about(cause).lower()
        if mine and theirs and mine != theirs:
            return False
    return True


def _cause(runbook: Runbook, breach: Breach, firing: Sequence[Breach]) -> Match | None:
    """The best firing breach (other than ``breach``, about the same integration and service)
    that the runbook is written for while it explains ``breach``, scored as for that breach."""
    if not explains(runbook, breach):
        return None
    best: Match | None = None
    for cause in firing:
        if cause.id == breach.id or cause.state is not State.FIRING or not _agree(cause, breach):
            continue
        if runbook.triggers.providers and not breach_provider(cause):
            # A runbook about an integration's trouble is the cause only where the firing breach
            # names the integration: a service's failing health (its database, say) does not.
            continue
        score, _ = _score(runbook, cause)
        if score > 0 and (best is None or score > best.score):
            provider = breach_provider(cause)
            why = f"{cause.title}{f' ({provider})' if provider else ''} fires too: it causes this"
            best = Match(runbook, score, why, cause)
    return best


_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
#: A cause ranks this far above the best runbook written for the breach itself.
CAUSE_AHEAD = 5.0


def rank(
    runbooks: Iterable[Runbook], breach: Breach, config: Config | None = None, firing: Sequence[Breach] = ()
) -> list[Match]:
    """Runbooks whose triggers match ``breach``, best first, each with a one-line why.

    Linked in the config (100) > alert name (60, +10 per matching label) > threshold id glob (50)
    > health target glob (40); more literal characters in a glob rank higher, and a matching
    provider adds 15. Ties: the more severe runbook, then the id. A runbook that explains the
    breach (``triggers.explains``) while one of ``firing`` (the other breaches on screen) is its
    own trouble ranks ahead of them all (the sync success ratio falls because the OAuth token
    expired: retrying the failed syncs would fail again), but never ahead of a config link."""
    runbooks = list(runbooks)
    matches = []
    for runbook in runbooks:
        score, why = _score(runbook, breach)
        if score > 0:
            matches.append(Match(runbook, score, why))
    causes = [m for runbook in runbooks if (m := _cause(runbook, breach, firing))] if firing else []
    if causes:
        linked = [m.score for m in matches if m.runbook.id in breach.runbooks]
        others = [m.score for m in matches if m.runbook.id not in breach.runbooks]
        ahead = max(others, default=0.0) + CAUSE_AHEAD
        if linked:  # the operator's own choice stays first
            ahead = min(ahead, min(linked) - 1.0)
        by_id = {m.runbook.id: m for m in matches}
        for cause in causes:
            found = by_id.get(cause.runbook.id)
            if found is None or found.score < ahead:
                by_id[cause.runbook.id] = replace(cause, score=ahead + cause.score / 1000)
        matches = list(by_id.values())
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
