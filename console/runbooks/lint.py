"""The safety rules of a runbook: what makes it checkable and its runs safe (issue 17).

Each rule is checked on a runbook that loaded (the schema holds) and says what is wrong as one
``file:line:col: message`` at the step (or the field) concerned. ``incident-console runbook
lint`` prints them with the seed coverage; ``check-config`` and the console refuse a pack that
breaks one only when the config says ``runbooks: {strict: true}`` (docs/ARCHITECTURE.md,
Runbooks, has the same list and an example runbook).

What a runbook author writes for the rules (every field is optional for the schema):

- ``source: {file: <seed file>, section: <section>}``, or ``source: {added: "<why this runbook
  exists beyond the seeds>"}``; a seed runbook lists ``covers: [<scenario id>, ...]``, ids of the
  seed index (``config/seed-scenarios.yaml``: ``scenarios: [{id, file, section, title}, ...]``,
  the config's ``runbooks.seed_scenarios``).
- ``escalation: [levels]`` or ``escalation_none: "<why: the source gives none>"``, not both.
- On an action, ``impact: destructive`` (terminate, cancel, restart, disable, scale down),
  ``re-enable`` (automation, an integration or replies back on, a kill switch off) or
  ``protective`` (kill switch on, shadow mode, route-only).
- On a check, ``symptom: <threshold id | alert name>``: what it measures (a threshold id has a
  ``.`` and may hold ``{{cluster}}``; an alert name has none).
- In ``expect``, ``below: {threshold: <id>, level: warning|critical|recovery}`` (default: the
  threshold's first level) instead of a number.

The rules, and the start of each message:

1. source: ``no source: ...``; a seed source without ``covers``: ``a runbook from a seed says
   which scenarios it encodes: ...``; ``covers 'x': no scenario 'x' in <index>``.
2. escalation: ``no escalation: ...``; both: ``escalation and escalation_none: ...``.
3. an action that signals, or whose title or argv says restart, terminate, cancel, kill,
   disable, enable, roll back, resume, switch/turn ... on/off, scale down (or whose JSON body
   sets an enabled/kill switch/mode flag) declares its impact: ``a signal action is
   destructive: ...`` / ``the action says 'x': declare its impact: ...``.
4. a destructive action has a check step before it (the need): ``destructive action: no check
   step before it establishes the need ...``; and a wait step after it, before the next
   destructive action or the end: ``destructive action: no wait step after it verifies the
   fix ...``.
5. a re-enable action comes right after a check or a wait step: ``re-enable action: the step
   just before it must be a check or a wait ...`` (and at run time the session refuses it
   unless that step's last result passed).
6. a verification check (the check a wait step runs): declares its symptom (``verification
   check 'c' (run by wait 'w') has no symptom: ...``); the symptom is one of the runbook's
   triggers when it has any (``symptom 'x' is not one of this runbook's triggers ...``); it
   never passes on no data (``a verification check never passes on no data: ...``; a PromQL
   one expects a value: ``a PromQL verification check passes when the query finds no series:
   ...``); each PromQL range window is no longer than the wait before it, both after the time
   scale (``range window [5m] ... is longer than the wait before it ...``); it mentions the
   ``{{service}}`` / ``{{provider}}`` the runbook's actions act on (``the actions act on
   {{service}}, the verification check 'c' does not mention it ...``).
7. a check whose symptom is a threshold id compares with the threshold by reference, not a
   number (``expect.below is a number ...: refer to the threshold ...``), and that threshold
   exists in the config (``symptom 'x' names no threshold of the config``).
8. a trigger can fire: each threshold id glob of ``triggers`` (``thresholds``, ``errors``, the
   ``explains`` with a ``.``) matches a threshold of the config, and each ``health`` glob a health
   target (``trigger 'x' matches no threshold of the config ...``, ``trigger 'x' matches no health
   target of the config ...``). A typo there ranked the runbook for nothing, silently. Checked
   only for the sources the config watches: a glob that starts with a source (``postgres``,
   ``prometheus``, ``health``) no threshold id of the config starts with is for another estate,
   and health globs are checked only when there are health targets. Alert names are not checked:
   the alert rules live in Prometheus, not in the config. Likewise a ``health`` check probes a
   health target of the config (``health check target 'x' names no health target of the config
   ...``): its target as written, or the default of the one input it names (``{{service}}``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from console import promql
from console.config import Threshold
from console.model import SourceKind
from console.rules import format_duration
from console.runbooks.context import spec_names
from console.runbooks.schema import ActionStep, CheckStep, Runbook, Step, WaitStep, is_threshold
from console.yamlfile import ConfigError, Document, Problem, problems_from_validation, read_document

_TEMPLATE = re.compile(r"\{\{[^}]*\}\}")


def id_glob(text: str) -> str:
    """A threshold id that may hold ``{{variables}}`` as a glob: each reference is ``*``."""
    return _TEMPLATE.sub("*", text)


# --- the seed index -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scenario(_Model):
    """One scenario of the seed documents: what a runbook's ``covers`` names."""

    id: str = Field(min_length=1)
    file: str = Field(min_length=1)
    section: str = Field(min_length=1)
    title: str = ""


class SeedIndex(_Model):
    scenarios: list[Scenario] = Field(default_factory=list)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(s.id for s in self.scenarios)


@dataclass(frozen=True, slots=True)
class IndexFile:
    """The seed index as read: the scenarios, and where each is in the file."""

    index: SeedIndex
    doc: Document

    def where(self, scenario_id: str) -> tuple:
        i = next((i for i, s in enumerate(self.index.scenarios) if s.id == scenario_id), None)
        return ("scenarios", i, "id") if i is not None else ()


def read_index(path: Path, env: Mapping[str, str] | None = None) -> tuple[IndexFile | None, list[Problem]]:
    """The seed index at ``path``: None (and no problem) when there is no such file."""
    if not path.is_file():
        return None, []
    try:
        doc = read_document(path, env)
    except ConfigError as exc:
        return None, list(exc.problems)
    try:
        index = SeedIndex.model_validate(doc.data)
    except ValidationError as exc:
        return None, doc.problems + problems_from_validation(exc, doc, SeedIndex)
    problems = list(doc.problems)
    seen: dict[str, int] = {}
    for i, scenario in enumerate(index.scenarios):
        if scenario.id in seen:
            message = f"duplicate scenario id '{scenario.id}' (also scenarios[{seen[scenario.id]}])"
            problems.append(doc.problem(("scenarios", i, "id"), message))
        seen.setdefault(scenario.id, i)
    return IndexFile(index, doc), problems


# --- the rules -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rules:
    """What the rules need of the config: its thresholds (None: not checked), the seed
    scenario ids (None: no index), the time scale of waits and PromQL windows."""

    thresholds: Mapping[str, Threshold] | None = None
    health: Collection[str] | None = None  # the config's health target names (None: not checked)
    scenarios: Collection[str] | None = None
    index_name: str = "seed-scenarios.yaml"
    time_scale: float = 1.0
    min_window: float = 5.0


DESTRUCTIVE, RE_ENABLE = "destructive", "re-enable"

# Words that say an action changes the estate: such an action declares its impact.
_IMPACT_WORDS = re.compile(
    r"\b(restart|terminate|cancel|kill|disable|re-?enable|enable|roll ?back|resume|scale down"
    r"|(?:switch|turn)(?:\s+\S+){0,3}?\s+(?:back\s+)?(?:on|off))\b",
    re.IGNORECASE,
)
_FLAG_KEYS = re.compile(r"enable|kill|switch|pause|active|mode", re.IGNORECASE)
_SCOPES = {"service": ("service", "service_url", "service_app", "job"), "provider": ("provider",)}


def lint(runbook: Runbook, doc: Document, rules: Rules | None = None) -> list[Problem]:
    """Every safety rule ``runbook`` (read from ``doc``) breaks, at its position."""
    rules = rules or Rules()
    return [
        *_source(runbook, doc, rules),
        *_escalation(runbook, doc),
        *_impacts(runbook, doc),
        *_destructive(runbook, doc),
        *_re_enable(runbook, doc),
        *_verification(runbook, doc, rules),
        *_symptoms(runbook, doc, rules),
        *_unmatched_triggers(runbook, doc, rules),
        *_health_targets(runbook, doc, rules),
    ]


def _source(runbook: Runbook, doc: Document, rules: Rules) -> list[Problem]:
    source = runbook.source
    if source is None:
        return [
            doc.problem(
                ("id",),
                "no source: say source: {file, section} (the seed document and its section) or "
                "source: {added: why this runbook exists beyond the seeds}",
            )
        ]
    out = []
    if source.seed and not runbook.covers:
        message = (
            "a runbook from a seed says which scenarios it encodes: covers: [<scenario id>, ...] "
            f"(ids of {rules.index_name})"
        )
        out.append(doc.problem(("source",), message))
    if rules.scenarios is not None:
        for i, scenario in enumerate(runbook.covers):
            if scenario not in rules.scenarios:
                message = f"covers '{scenario}': no scenario '{scenario}' in {rules.index_name}"
                out.append(doc.problem(("covers", i), message))
    return out


def _escalation(runbook: Runbook, doc: Document) -> list[Problem]:
    if runbook.escalation and runbook.escalation_none is not None:
        message = "escalation and escalation_none: give one (the levels, or why there are none)"
        return [doc.problem(("escalation_none",), message)]
    if not runbook.escalation and runbook.escalation_none is None:
        message = 'no escalation: give escalation levels, or escalation_none: "why: the source gives none"'
        return [doc.problem(("id",), message)]
    return []


def _at(step_index: int, *rest: str | int) -> tuple:
    return ("steps", step_index, *rest)


def _impact_words(step: ActionStep) -> str | None:
    """The word that says the action changes the estate, or None."""
    action = step.action
    texts = [step.title]
    argv = getattr(action, "argv", None)
    if argv is not None:
        texts.append(" ".join(argv.command))
    for text in texts:
        if match := _IMPACT_WORDS.search(text):
            return match.group(1).lower()
    http = getattr(action, "http", None)
    body = getattr(http, "json_", None)
    for key, value in _flags(body):
        if isinstance(value, bool) and _FLAG_KEYS.search(key):
            return f"{key}: {str(value).lower()}"
    return None


def _flags(body: Any) -> list[tuple[str, Any]]:
    if isinstance(body, dict):
        return [(str(k), v) for k, v in body.items()] + [f for v in body.values() for f in _flags(v)]
    if isinstance(body, list):
        return [f for v in body for f in _flags(v)]
    return []


def _impacts(runbook: Runbook, doc: Document) -> list[Problem]:
    out = []
    for i, step in enumerate(runbook.steps):
        if not isinstance(step, ActionStep):
            continue
        impact = step.action.impact
        if step.action.kind == "signal" and impact != DESTRUCTIVE:
            now = f", not {impact}" if impact else ""
            message = f"a signal action is destructive{now}: say impact: destructive (step '{step.id}')"
            out.append(doc.problem(_at(i, "action", "impact") if impact else _at(i), message))
        elif impact is None and (word := _impact_words(step)) is not None:
            message = (
                f"the action says '{word}': declare its impact: destructive, re-enable or protective "
                f"(step '{step.id}')"
            )
            out.append(doc.problem(_at(i), message))
    return out


def _impact(step: Step) -> str | None:
    return step.action.impact if isinstance(step, ActionStep) else None


def _destructive(runbook: Runbook, doc: Document) -> list[Problem]:
    steps = runbook.steps
    marks = [i for i, s in enumerate(steps) if _impact(s) == DESTRUCTIVE]
    out = []
    for n, i in enumerate(marks):
        step = steps[i]
        if not any(isinstance(s, CheckStep | WaitStep) for s in steps[:i]):
            message = (
                f"destructive action '{step.id}': no check step before it establishes the need "
                "(add a check step earlier in the runbook)"
            )
            out.append(doc.problem(_at(i), message))
        end = marks[n + 1] if n + 1 < len(marks) else len(steps)
        if not any(isinstance(s, WaitStep) for s in steps[i + 1 : end]):
            until = f"step '{steps[end].id}'" if end < len(steps) else "the end"
            message = (
                f"destructive action '{step.id}': no wait step after it verifies the fix before {until} "
                "(add a wait step whose check measures the symptom)"
            )
            out.append(doc.problem(_at(i), message))
    return out


def _re_enable(runbook: Runbook, doc: Document) -> list[Problem]:
    out = []
    for i, step in enumerate(runbook.steps):
        if _impact(step) != RE_ENABLE:
            continue
        before = runbook.steps[i - 1] if i else None
        if not isinstance(before, CheckStep | WaitStep):
            message = (
                f"re-enable action '{step.id}': the step just before it must be a check or a wait "
                "(a passing check before turning something back on)"
            )
            out.append(doc.problem(_at(i), message))
    return out


def trigger_names(runbook: Runbook) -> list[str]:
    """What a symptom may be: the runbook's threshold id globs (health targets as
    ``health.<glob>``) and alert names."""
    t = runbook.triggers
    return [*t.thresholds, *(f"health.{h}" for h in t.health), *(a.name for a in t.alerts)]


def _is_trigger(symptom: str, triggers: Sequence[str]) -> bool:
    glob = id_glob(symptom)
    return any(glob == t or fnmatchcase(glob, t) or fnmatchcase(t, glob) for t in triggers)


def _verification(runbook: Runbook, doc: Document, rules: Rules) -> list[Problem]:
    steps = runbook.steps
    index = {s.id: i for i, s in enumerate(steps)}
    triggers = trigger_names(runbook)
    acted_on = {
        scope
        for s in steps
        if isinstance(s, ActionStep)
        for scope, names in _SCOPES.items()
        if spec_names(s.action) & set(names)
    }
    out: list[Problem] = []
    seen: set[str] = set()
    for wait in (s for s in steps if isinstance(s, WaitStep)):
        check = runbook.waited_check(wait)
        j = index[check.id]
        spec = check.check
        if check.id not in seen:  # said once per check, however many waits run it
            seen.add(check.id)
            out += _verification_check(check, j, wait, doc, triggers, acted_on)
        if spec.kind == "promql":
            waited = wait.wait.seconds * rules.time_scale
            for text, seconds in promql.windows(spec.promql.query):
                window = seconds
                if rules.time_scale != 1:
                    window = max(seconds * rules.time_scale, rules.min_window)
                if window > waited + 1e-9:
                    scaled = (
                        f" (time scale {rules.time_scale:g}: {promql.render(window)} > "
                        f"{format_duration(waited)})"
                        if rules.time_scale != 1
                        else ""
                    )
                    message = (
                        f"range window [{text}] of verification check '{check.id}' is longer than the wait "
                        f"before it ('{wait.id}', {format_duration(wait.wait.seconds)}){scaled}: it still "
                        "sees the time before the fix"
                    )
                    out.append(doc.problem(_at(j, "check", "promql", "query"), message))
    return out


def _verification_check(
    check: CheckStep, j: int, wait: WaitStep, doc: Document, triggers: Sequence[str], acted_on: set[str]
) -> list[Problem]:
    spec = check.check
    out = []
    if spec.symptom is None:
        message = (
            f"verification check '{check.id}' (run by wait '{wait.id}') has no symptom: say what it "
            "measures (symptom: a threshold id or an alert name)"
        )
        out.append(doc.problem(_at(j), message))
    elif triggers and not _is_trigger(spec.symptom, triggers):
        message = (
            f"symptom '{spec.symptom}' is not one of this runbook's triggers ({', '.join(triggers)}): "
            "a verification check measures the symptom that opened the runbook"
        )
        out.append(doc.problem(_at(j, "check", "symptom"), message))
    expect = spec.expect
    if expect.no_data == "pass":
        message = f"a verification check never passes on no data: remove no_data: pass (check '{check.id}')"
        out.append(doc.problem(_at(j, "check", "expect", "no_data"), message))
    elif spec.kind == "promql" and not (
        expect.below is not None
        or expect.above is not None
        or expect.equals is not None
        or (expect.min_rows or 0) >= 1
    ):
        message = (
            f"a PromQL verification check passes when the query finds no series: expect below, above or "
            f"equals (no data then fails), or min_rows >= 1 (check '{check.id}')"
        )
        out.append(doc.problem(_at(j, "check", "expect"), message))
    names = spec_names(spec)
    for scope in sorted(acted_on):
        if not names & set(_SCOPES[scope]):
            message = (
                f"the actions act on {{{{{scope}}}}}, the verification check '{check.id}' does not mention "
                f"it: measure the same {scope}"
            )
            out.append(doc.problem(_at(j), message))
    return out


def _symptoms(runbook: Runbook, doc: Document, rules: Rules) -> list[Problem]:
    out = []
    for j, step in enumerate(runbook.steps):
        if not isinstance(step, CheckStep) or step.check.symptom is None:
            continue
        symptom = step.check.symptom
        if not is_threshold(symptom):
            continue
        if rules.thresholds is not None and not any(
            fnmatchcase(t, id_glob(symptom)) for t in rules.thresholds
        ):
            message = f"symptom '{symptom}' names no threshold of the config"
            out.append(doc.problem(_at(j, "check", "symptom"), message))
        expect = step.check.expect
        for name in ("below", "above"):
            value = getattr(expect, name)
            if isinstance(value, int | float):
                message = (
                    f"expect.{name} is a number ({value:g}) while check '{step.id}' measures threshold "
                    f"'{symptom}': refer to the threshold: {name}: {{threshold: {symptom}}}"
                )
                out.append(doc.problem(_at(j, "check", "expect", name), message))
    return out


def _unmatched_triggers(runbook: Runbook, doc: Document, rules: Rules) -> list[Problem]:
    out = []
    triggers = runbook.triggers
    if rules.thresholds is not None:
        ids = sorted(rules.thresholds)
        for field in ("thresholds", "errors", "explains"):
            for i, glob in enumerate(getattr(triggers, field)):
                if field == "explains" and not is_threshold(glob):
                    continue  # an alert name: Prometheus has the rules
                watched = _same_source(glob, ids)
                if watched is not None and not any(fnmatchcase(t, glob) for t in watched):
                    message = (
                        f"trigger '{glob}' matches no threshold of the config ({_some(watched)}): "
                        "the runbook is never offered for it"
                    )
                    out.append(doc.problem(("triggers", field, i), message))
    if rules.health:
        names = sorted(rules.health)
        for i, glob in enumerate(triggers.health):
            if not any(fnmatchcase(name, glob) for name in names):
                message = (
                    f"trigger '{glob}' matches no health target of the config ({_some(names)}): "
                    "the runbook is never offered for it"
                )
                out.append(doc.problem(("triggers", "health", i), message))
    return out


def _health_targets(runbook: Runbook, doc: Document, rules: Rules) -> list[Problem]:
    if not rules.health:
        return []
    names, out = sorted(rules.health), []
    for j, step in enumerate(runbook.steps):
        if not isinstance(step, CheckStep) or step.check.kind != "health":
            continue
        written = step.check.health.target
        target = written
        if (named := re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", written)) and named.group(1) in runbook.inputs:
            default = runbook.inputs[named.group(1)].default
            target = default if isinstance(default, str) else written
        if _TEMPLATE.search(target) or target in names:
            continue  # a value only a breach or the operator gives
        message = (
            f"health check target '{target}' names no health target of the config ({_some(names)}): "
            "the check can never run"
        )
        out.append(doc.problem(_at(j, "check", "health", "target"), message))
    return out


def _same_source(glob: str, ids: Sequence[str]) -> list[str] | None:
    """The threshold ids a glob is meant for: those of its first part (``postgres`` in
    ``postgres.*.waiting``), all of them when that part is itself a pattern or no source's name
    (a typo, or a custom id the config does not have), None when it names a source the config
    does not watch (a trigger for another estate)."""
    first = glob.split(".", 1)[0]
    if any(c in first for c in "*?["):
        return list(ids)
    same = [t for t in ids if t.split(".", 1)[0] == first]
    if not same and first in SourceKind.__members__.values():
        return None
    return same or list(ids)


def _some(names: Sequence[str], shown: int = 4) -> str:
    more = f", … {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


# --- coverage --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Coverage:
    """Which runbooks encode each scenario of the seed index."""

    index: SeedIndex
    by_scenario: Mapping[str, tuple[str, ...]]  # scenario id -> runbook ids, in pack order

    @property
    def missing(self) -> list[Scenario]:
        return [s for s in self.index.scenarios if not self.by_scenario.get(s.id)]

    def summary(self) -> str:
        total = len(self.index.scenarios)
        return f"{total - len(self.missing)}/{total} seed scenarios encoded"

    def lines(self) -> list[str]:
        """The summary, then each scenario no runbook covers."""
        return [self.summary()] + [f"  not covered: {uncovered(s)}" for s in self.missing]

    def problems(self, file: IndexFile) -> list[Problem]:
        """A problem at each scenario of the index that no runbook covers."""
        return [
            file.doc.problem(file.where(s.id), f"scenario {uncovered(s)}: no runbook covers it")
            for s in self.missing
        ]


def uncovered(scenario: Scenario) -> str:
    title = f": {scenario.title}" if scenario.title else ""
    return f"{scenario.id} ({scenario.file} › {scenario.section}){title}"


def coverage(runbooks: Sequence[Runbook], index: SeedIndex) -> Coverage:
    found: dict[str, list[str]] = {s.id: [] for s in index.scenarios}
    for runbook in runbooks:
        for scenario in runbook.covers:
            if scenario in found and runbook.id not in found[scenario]:
                found[scenario].append(runbook.id)
    return Coverage(index, {k: tuple(v) for k, v in found.items()})
