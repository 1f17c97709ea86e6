"""The runbook pack (config/runbooks/*.yaml): schema, loading, trigger ranking, step progress.

A runbook is one scenario of the source documents: what shows it (``triggers``), the steps that
fix it (check / action / manual / wait / escalate), who to escalate to as time passes, and the
post-incident checklist. Files are read with :mod:`console.yamlfile`, so every problem is one
``file:line:col: message`` line; ``{{variables}}`` must name a config variable, a runbook input
or one of :data:`CONTEXT_NAMES`.

A screen uses three things: :meth:`Pack.rank` (runbooks for a breach, best first, with why),
:meth:`RunbookSession.open` (progress read back from the journal) and the session's methods
(``plan``, ``prepare``, ``execute``, ``dry_run``, ``mark_done``, ``skip``, ``note``...), then
renders ``session.progress``. It needs no logic of its own.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
import secrets
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from console.actions import (
    ActionSpec,
    CheckSpec,
    Confirmation,
    ConfirmMode,
    Context,
    Executor,
    Plan,
    RenderError,
    Result,
    Status,
    TemplateError,
    Value,
    render_text,
    template_refs,
)
from console.audit import Event, JournalError, parse_ts, utc_iso
from console.config import Config, Duration, Name
from console.rules import Breach, State, format_duration
from console.sanitize import one_line
from console.yamlfile import ConfigError, Document, Problem, problems_from_validation, read_document

#: Names a runbook may use besides config variables and its own inputs: filled from the breach
#: the runbook was opened for (or set by the operator).
CONTEXT_NAMES: dict[str, str] = {
    "cluster": "Postgres cluster of the breach (postgres.<cluster>.*)",
    "pid": "the session the breach points at",
    "backend_start": "backend start of that session",
    "service": "health target, or the alert's job label",
    "service_url": "the config variable <service>_url (storefront_url, sync_worker_url)",
    "service_app": "the config variable <service>_app",
    "provider": "the alert's provider label, or the first failing health check",
    "alertname": "the alert's name",
    "job": "the alert's job label",
    "instance": "the alert's instance label",
    "threshold": "the breached threshold id",
    "threshold_level": "the first level of the breached threshold, in its unit",
    "subject": "what the breach is about, as the breach says",
    "breach": "the breach id",
    "operator": "who runs the console",
}

_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_PROVIDERS = {"database", "db", "postgres", "postgresql", "disk", "memory", "self"}


def _var_name(value: str) -> str:
    if not _VAR_NAME.match(value):
        raise ValueError(f"'{value[:40]}' is not a variable name: letters, digits and '_'")
    return value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceRef(Model):
    file: str
    section: str


class AlertTrigger(Model):
    name: str  # alert name (glob)
    labels: dict[str, str] = Field(default_factory=dict)  # label -> glob, all must match


def _alert_trigger(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class Triggers(Model):
    thresholds: list[str] = Field(default_factory=list)  # threshold id globs: postgres.*.waiting
    alerts: list[Annotated[AlertTrigger, BeforeValidator(_alert_trigger)]] = Field(default_factory=list)
    health: list[str] = Field(default_factory=list)  # health target globs
    errors: list[str] = Field(default_factory=list)  # threshold id globs whose source cannot be reached
    providers: list[str] = Field(default_factory=list)  # integration globs: a match ranks higher


def _scalar_input(value: Any) -> Any:
    return {"default": value} if not isinstance(value, dict) else value


class Input(Model):
    """A runbook parameter: the breach, a config variable of the same name, or this default."""

    default: str | int | float | None = None  # may hold {{references}}
    description: str = ""
    choices: list[str] = Field(default_factory=list)


class Link(Model):
    title: str
    url: str


def _manual(value: Any) -> Any:
    return {"text": value} if isinstance(value, str) else ({} if value is True else value)


class Manual(Model):
    text: str = ""
    link: str | None = None


class Wait(Model):
    seconds: Duration
    check: str  # id of a check step to run again after the wait


class Escalate(Model):
    note: str = ""


class EscalationLevel(Model):
    level: int | str
    after: Duration | None = None  # time since the incident started; None: by condition only
    when: str = ""  # the condition, in words
    who: str
    notify: list[str] = Field(default_factory=list)
    do: str = ""


STEP_KINDS = ("check", "action", "manual", "wait", "escalate")


class Step(Model):
    id: Name
    title: str = Field(min_length=1)
    text: str = ""
    check: CheckSpec | None = None
    action: ActionSpec | None = None
    manual: Annotated[Manual | None, BeforeValidator(_manual)] = None
    wait: Wait | None = None
    escalate: Escalate | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        present = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(present) != 1:
            got = f" (got {', '.join(present)})" if present else ""
            raise ValueError(f"a step is exactly one of: {', '.join(STEP_KINDS)}{got}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)


Severity = Literal["critical", "high", "medium", "low"]


class Runbook(Model):
    id: Name
    title: str = Field(min_length=1)
    source: SourceRef | None = None
    severity: Severity = "medium"
    response_time: str = ""  # from the source's severity table, e.g. "15-30 minutes"
    summary: str = ""
    triggers: Triggers = Field(default_factory=Triggers)
    inputs: dict[
        Annotated[str, AfterValidator(_var_name)], Annotated[Input, BeforeValidator(_scalar_input)]
    ] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    escalation: list[EscalationLevel] = Field(default_factory=list)
    post_incident: list[str] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        ids = [s.id for s in self.steps]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate step id {', '.join(duplicates)}")
        checks = {s.id for s in self.steps if s.kind == "check"}
        for step in self.steps:
            if step.wait is not None and step.wait.check not in checks:
                raise ValueError(
                    f"step {step.id}: wait.check '{step.wait.check}' is not a check step of this runbook"
                )
            if step.escalate is not None and not self.escalation:
                raise ValueError(f"step {step.id} escalates, but the runbook has no 'escalation' levels")
        timed = [lvl.after for lvl in self.escalation if lvl.after is not None]
        if timed != sorted(timed):
            raise ValueError("escalation levels with 'after' must be in time order")
        return self

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)


# --- loading and validation -------------------------------------------------------------------


def runbook_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


@dataclass(frozen=True)
class Pack:
    runbooks: tuple[Runbook, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # runbook id -> file name

    def get(self, runbook_id: str) -> Runbook | None:
        return next((r for r in self.runbooks if r.id == runbook_id), None)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.runbooks)

    def rank(self, breach: Breach, config: Config | None = None) -> list[Match]:
        """Runbooks for a breach, best first (see :func:`rank`)."""
        return rank(self.runbooks, breach, config)


_SQL_KEYS = {"statement", "select"}


def _template_problems(doc: Document, known: Collection[str] | None) -> list[Problem]:
    """Malformed or unknown ``{{references}}`` anywhere in the file, at their position."""
    problems: list[Problem] = []
    inputs = doc.data.get("inputs") if isinstance(doc.data, dict) else None
    allowed = None if known is None else set(known) | set(CONTEXT_NAMES) | set(inputs or {})

    def walk(node: Any, loc: tuple) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, (*loc, index))
        elif isinstance(node, str) and ("{{" in node or "}}" in node) and loc[-1] not in _SQL_KEYS:
            try:
                refs = template_refs(node)
            except TemplateError as exc:
                problems.append(doc.problem(loc, str(exc)))
                return
            if allowed is None:
                return
            for ref in refs:
                for name in filter(None, (ref.name, ref.fallback_name)):
                    if name not in allowed:
                        problems.append(
                            doc.problem(
                                loc,
                                f"unknown variable '{name}': define it under 'variables:' in the config "
                                "(or as an input of this runbook)",
                            )
                        )

    walk(doc.data, ())
    return problems


_STEP_CHECKS = ("top level: duplicate step id", "top level: step ")


def _step_problems(doc: Document) -> list[Problem]:
    """Duplicate step ids and waits on unknown checks, at the step that has them (the model
    validator can only say it about the whole file)."""
    steps = doc.data.get("steps") if isinstance(doc.data, dict) else None
    if not isinstance(steps, list):
        return []
    checks = {s.get("id") for s in steps if isinstance(s, dict) and s.get("check") is not None}
    seen: dict[str, int] = {}
    out = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        step_id = step.get("id")
        if isinstance(step_id, str) and step_id in seen:
            out.append(
                doc.problem(
                    ("steps", i, "id"), f"duplicate step id '{step_id}' (also steps[{seen[step_id]}])"
                )
            )
        elif isinstance(step_id, str):
            seen[step_id] = i
        wait = step.get("wait")
        target = wait.get("check") if isinstance(wait, dict) else None
        if isinstance(target, str) and target not in checks:
            message = f"wait.check '{target}' is not a check step of this runbook"
            out.append(doc.problem(("steps", i, "wait", "check"), message))
    return out


def load_pack(
    directory: Path, variables: Collection[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[Pack, list[Problem]]:
    """Every runbook file in ``directory``. ``variables``: the config's variable names (None:
    references are checked for syntax only). Returns the valid runbooks and every problem."""
    env = os.environ if env is None else env
    if not directory.is_dir():
        return Pack(), []
    runbooks: list[Runbook] = []
    files: dict[str, str] = {}
    problems: list[Problem] = []
    for path in runbook_files(directory):
        try:
            doc = read_document(path, env)
        except ConfigError as exc:
            problems += exc.problems
            continue
        problems += doc.problems
        try:
            runbook = Runbook.model_validate(doc.data)
        except ValidationError as exc:
            positioned = _step_problems(doc)
            found = problems_from_validation(exc, doc, Runbook)
            if positioned:  # the model says it at the top level; these say it at the step
                found = [p for p in found if not p.message.startswith(_STEP_CHECKS)]
            problems += found + positioned + _template_problems(doc, variables)
            continue
        file_problems = _template_problems(doc, variables)
        if runbook.id in files:
            file_problems.append(
                doc.problem(("id",), f"duplicate runbook id '{runbook.id}' (also in {files[runbook.id]})")
            )
        problems += file_problems
        if not file_problems:
            runbooks.append(runbook)
            files[runbook.id] = path.name
    return Pack(tuple(runbooks), files), problems


def validate_pack(
    config: Config, env: Mapping[str, str] | None = None
) -> tuple[frozenset[str], list[Problem]]:
    """What ``load_config`` calls: the ids of the valid runbooks and every problem of the pack."""
    pack, problems = load_pack(config.runbooks_path, config.variables.keys(), env)
    if not problems:
        config._pack = pack  # pack_for() reuses it: the console does not read the pack twice
    return pack.ids, problems


def load_runbook_ids(
    directory: Path, env: Mapping[str, str] | None = None
) -> tuple[frozenset[str], list[Problem]]:
    """Runbook ids with syntax-level checks only (no config at hand)."""
    pack, problems = load_pack(directory, None, env)
    return pack.ids, problems


def pack_for(config: Config, env: Mapping[str, str] | None = None) -> Pack:
    """The pack of a loaded config; raises ConfigError when it has problems."""
    if config._pack is not None and env is None:
        return config._pack
    pack, problems = load_pack(config.runbooks_path, config.variables.keys(), env)
    if problems:
        raise ConfigError(problems)
    return pack


# --- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Match:
    runbook: Runbook
    score: float
    why: str


def _labels(breach: Breach) -> dict[str, str]:
    """Alert labels, or ``k=v`` pairs of a Prometheus-query threshold's subject."""
    if breach.labels:
        return dict(breach.labels)
    pairs = {}
    for part in breach.subject.split(","):
        key, sep, value = part.strip().partition("=")
        if sep and _VAR_NAME.match(key):
            pairs[key] = value
    return pairs


def _failing_checks(breach: Breach) -> list[str]:
    """Names of failing/warning checks in a health breach's summary ("shopify: fail"), without
    the health+json measurement part ("google-analytics:api" is google-analytics)."""
    out = []
    for part in breach.summary.split("; "):
        name, sep, status = part.rpartition(": ")
        if sep and status.strip() in ("fail", "warn", "unknown") and name.strip():
            out.append(name.strip().split(":", 1)[0])
    return out


def breach_provider(breach: Breach) -> str:
    provider = _labels(breach).get("provider", "")
    if provider:
        return provider
    return next((c for c in _failing_checks(breach) if c.lower() not in _NOT_PROVIDERS), "")


def _specificity(glob: str) -> float:
    return min(len(re.sub(r"[*?\[\]]", "", glob)), 40) / 4


def _score(runbook: Runbook, breach: Breach) -> tuple[float, str]:
    best, why = 0.0, ""
    if runbook.id in breach.runbooks:
        best, why = 100.0, "linked to this threshold in the config"
    triggers = runbook.triggers
    if breach.kind == "alert":
        labels = _labels(breach)
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
        if breach.source.startswith("health:"):
            target = breach.source.split(":", 1)[1]
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
    when the breach names none (a general runbook fits better then)."""
    provider = breach_provider(breach).lower()
    specific = any(g.strip("*") for g in globs)
    if not provider:
        return (score - 3, why) if specific else (score, why)
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


# --- context ------------------------------------------------------------------------------------------


def _service_key(service: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", service)


def breach_values(breach: Breach, config: Config | None = None) -> dict[str, Value]:
    """What a breach tells the runbook. Values from backends (labels, subjects) are untrusted."""
    values: dict[str, Value] = {"breach": Value(breach.id, False), "subject": Value(breach.subject, False)}
    kind, _, name = breach.source.partition(":")
    if kind == "postgres" and name:
        values["cluster"] = Value(name)
    if kind == "health" and name:
        values["service"] = Value(name)
    if breach.kind == "threshold":
        values["threshold"] = Value(breach.id)
        bound = config.threshold(breach.id) if config is not None else None
        if bound is not None:
            values["threshold_level"] = Value(f"{bound.threshold.first_level:g}")
    pid = re.match(r"^pid (\d+)\b", breach.subject)
    if pid:
        values["pid"] = Value(pid.group(1))
    labels = _labels(breach)
    for key in ("alertname", "job", "instance"):
        if labels.get(key):
            values[key] = Value(labels[key], False)
    if "service" not in values and labels.get("job"):
        values["service"] = Value(labels["job"], False)
    provider = breach_provider(breach)
    if provider:
        values["provider"] = Value(provider, False)
    return values


def build_context(
    config: Config,
    runbook: Runbook | None = None,
    breach: Breach | None = None,
    inputs: Mapping[str, str] | None = None,
    operator: str = "",
) -> Context:
    """Values for a runbook's templates. Precedence: what the operator set, the breach, config
    variables, then the runbook's input defaults; ``service_url``/``service_app`` follow
    ``service`` to the variables ``<service>_url``/``<service>_app``."""
    values: dict[str, Value] = {n: Value(v.value, True, v.secret) for n, v in config.variables.items()}
    if breach is not None:
        values.update(breach_values(breach, config))
    values.update({k: Value(str(v), False) for k, v in (inputs or {}).items()})
    if operator:
        values["operator"] = Value(operator)
    ctx = Context(dict(values))
    for name, spec in (runbook.inputs if runbook else {}).items():
        if name in values or spec.default is None:
            continue
        default = str(spec.default)
        try:
            text, _ = render_text(default, ctx)
            refs = [ctx.lookup(r) for r in template_refs(default)]
        except (RenderError, TemplateError):
            continue
        values[name] = Value(text, all(v.trusted for v in refs), any(v.secret for v in refs))
        ctx = Context(dict(values))
    service = values.get("service")
    if service is not None:
        for suffix in ("url", "app"):
            variable = config.variables.get(f"{_service_key(service.text)}_{suffix}")
            if variable is not None and f"service_{suffix}" not in values:
                values[f"service_{suffix}"] = Value(variable.value, True, variable.secret)
    return Context(values)


# --- progress ------------------------------------------------------------------------------------------


class StepState(StrEnum):
    TODO = "todo"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class StepStatus:
    """One step as the screen shows it."""

    step: Step
    index: int
    state: StepState = StepState.TODO
    message: str = ""  # the last result, refusal or dry-run, in one line
    lines: tuple[str, ...] = ()  # the last result's output
    at: float | None = None  # when the state last changed
    notes: list[str] = field(default_factory=list)  # "10:31 alice: text"


@dataclass(frozen=True, slots=True)
class EscalationView:
    elapsed: float
    current: EscalationLevel | None
    next: EscalationLevel | None
    next_in: float | None
    by_condition: tuple[EscalationLevel, ...] = ()

    def lines(self) -> tuple[str, ...]:
        out = [f"incident running for {format_duration(self.elapsed)}"]
        if self.current is not None:
            out.append(f"now: level {self.current.level} — {_level_text(self.current)}")
        if self.next is not None and self.next_in is not None:
            out.append(
                f"in {format_duration(self.next_in)}: level {self.next.level} — {_level_text(self.next)}"
            )
        out += [f"if {lvl.when}: level {lvl.level} — {_level_text(lvl)}" for lvl in self.by_condition]
        return tuple(out)


def _level_text(level: EscalationLevel) -> str:
    notify = f" (notify: {', '.join(level.notify)})" if level.notify else ""
    return f"{level.who}{notify}" + (f"; {level.do}" if level.do else "")


def _clock(ts: float) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


class Progress:
    """Step states of one run of a runbook, rebuilt from journal events (and kept by them)."""

    def __init__(self, runbook: Runbook, run_id: str, incident_start: float) -> None:
        self.runbook = runbook
        self.run_id = run_id
        self.incident_start = incident_start
        self.steps = [StepStatus(step, i) for i, step in enumerate(runbook.steps)]
        self.current = 0
        self.opened = False
        self.inputs: dict[str, str] = {}
        self.notes: list[str] = []  # notes not tied to a step
        self.ticked: set[int] = set()  # post-incident items done
        self._timeouts: dict[str, tuple[float, float]] = {}  # step -> (confirmed at, timeout)

    @classmethod
    def from_events(
        cls,
        runbook: Runbook,
        run_id: str,
        events: Iterable[Event],
        incident_start: float,
        now: float | None = None,
    ) -> Progress:
        progress = cls(runbook, run_id, incident_start)
        for event in events:
            if event.get("run") == run_id:
                progress.apply(event)
        progress.settle(time.time() if now is None else now)
        progress.current = progress.first_open()
        return progress

    def status(self, step_id: str) -> StepStatus:
        return next(s for s in self.steps if s.step.id == step_id)

    def apply(self, event: Event) -> None:
        handler = _APPLY.get(event.kind)
        if handler is not None:
            handler(self, event)

    def settle(self, now: float) -> None:
        """A step left running by a console that stopped (its timeout long past) is failed."""
        for step_id, (since, timeout) in list(self._timeouts.items()):
            status = self.status(step_id)
            if status.state == StepState.RUNNING and now - since > timeout + 5:
                status.state = StepState.FAILED
                status.message = (
                    "no result was recorded: the console stopped while it ran; check before re-running"
                )
                del self._timeouts[step_id]

    def _set(self, event: Event, state: StepState | None, message: str | None = None) -> StepStatus | None:
        step_id = event.get("step")
        try:
            status = self.status(step_id)
        except StopIteration:
            return None
        if state is not None:
            status.state, status.at = state, event.ts
        if message is not None:
            status.message = one_line(message, 300)
        return status

    def first_open(self) -> int:
        for status in self.steps:
            if status.state not in (StepState.DONE, StepState.SKIPPED):
                return status.index
        return max(len(self.steps) - 1, 0)

    def next(self) -> int:
        self.current = min(self.current + 1, max(len(self.steps) - 1, 0))
        return self.current

    def previous(self) -> int:
        self.current = max(self.current - 1, 0)
        return self.current

    @property
    def done(self) -> int:
        return sum(1 for s in self.steps if s.state in (StepState.DONE, StepState.SKIPPED))

    @property
    def complete(self) -> bool:
        return self.done == len(self.steps)

    def escalation(self, now: float | None = None) -> EscalationView:
        now = time.time() if now is None else now
        elapsed = max(now - self.incident_start, 0.0)
        timed = [lvl for lvl in self.runbook.escalation if lvl.after is not None]
        current = next((lvl for lvl in reversed(timed) if lvl.after <= elapsed), None)
        upcoming = next((lvl for lvl in timed if lvl.after > elapsed), None)
        return EscalationView(
            elapsed,
            current,
            upcoming,
            None if upcoming is None else upcoming.after - elapsed,
            tuple(lvl for lvl in self.runbook.escalation if lvl.after is None),
        )


def _on_opened(p: Progress, e: Event) -> None:
    p.opened = True
    start = e.get("incident_start")
    if start:
        p.incident_start = parse_ts(start)
    p.inputs.update({k: str(v) for k, v in (e.get("inputs", {}) or {}).items()})


def _on_input(p: Progress, e: Event) -> None:
    p.inputs[str(e.get("name"))] = str(e.get("value"))


def _on_note(p: Progress, e: Event) -> None:
    text = f"{_clock(e.ts)} {e.get('user')}: {e.get('text')}"
    status = p._set(e, None) if e.get("step") else None
    (status.notes if status is not None else p.notes).append(text)


def _on_step_state(p: Progress, e: Event) -> None:
    try:
        state = StepState(str(e.get("state")))
    except ValueError:
        return
    p._set(e, state, str(e.get("message")))


def _on_confirmed(p: Progress, e: Event) -> None:
    status = p._set(e, StepState.RUNNING, "running")
    plan = e.get("plan", {})
    if status is not None:
        timeout = plan.get("timeout", 60) if isinstance(plan, Mapping) else 60
        p._timeouts[status.step.id] = (e.ts, float(timeout) if isinstance(timeout, int | float) else 60.0)


def _on_result(state: StepState):
    def apply(p: Progress, e: Event) -> None:
        status = p._set(e, state, str(e.get("message")))
        if status is not None:
            output = e.get("output", [])
            status.lines = tuple(str(x) for x in output) if isinstance(output, list) else ()
            p._timeouts.pop(status.step.id, None)

    return apply


def _on_refused(p: Progress, e: Event) -> None:
    p._set(e, None, f"refused: {e.get('message')}")


def _on_dry_run(p: Progress, e: Event) -> None:
    p._set(e, None, f"dry-run: {e.get('message')}")


def _on_tick(p: Progress, e: Event) -> None:
    index = e.get("index", -1)
    if isinstance(index, int):
        (p.ticked.add if e.get("done", True) else p.ticked.discard)(index)


_APPLY = {
    "runbook.opened": _on_opened,
    "input.set": _on_input,
    "note": _on_note,
    "step.state": _on_step_state,
    "action.confirmed": _on_confirmed,
    "action.succeeded": _on_result(StepState.DONE),
    "action.failed": _on_result(StepState.FAILED),
    "check.passed": _on_result(StepState.DONE),
    "check.failed": _on_result(StepState.FAILED),
    "action.refused": _on_refused,
    "action.dry_run": _on_dry_run,
    "postincident.tick": _on_tick,
}


# --- a run of a runbook ---------------------------------------------------------------------------------


def run_key(runbook: Runbook, breach: Breach | None, now: float) -> str:
    """The run id: one per runbook and breach episode, so reopening it resumes it."""
    if breach is not None:
        return f"{runbook.id}@{breach.id}@{int(breach.since)}"
    # A random part: two runs opened within the same second must not share their progress.
    return f"{runbook.id}@manual@{int(now)}-{secrets.token_hex(3)}"


RESUME_WINDOW = 24 * 3600.0


class RunbookSession:
    """One run of a runbook: the screen's whole API. Every change goes through the journal
    and is applied to :attr:`progress` from the records written, so what the screen shows is
    what a restart will read back."""

    def __init__(
        self, runbook: Runbook, executor: Executor, progress: Progress, breach: Breach | None = None
    ) -> None:
        self.runbook = runbook
        self.executor = executor
        self.journal = executor.journal
        self.progress = progress
        self.breach = breach
        self.context = self._context()
        self.last_error = ""  # why the last journal write failed, for the screen

    @classmethod
    async def open(
        cls,
        runbook: Runbook,
        executor: Executor,
        *,
        breach: Breach | None = None,
        inputs: Mapping[str, str] | None = None,
        new: bool = False,
    ) -> RunbookSession:
        """Open (or resume) a run: for a breach, the run of that breach episode; without one,
        the latest unfinished run of this runbook in the last 24 h unless ``new``."""
        now = executor.clock()
        read = await asyncio.to_thread(executor.journal.read, now - RESUME_WINDOW if breach is None else None)
        run_id = run_key(runbook, breach, now)
        if breach is None and not new:
            opened = [e for e in read.events if e.kind == "runbook.opened" and e.get("runbook") == runbook.id]
            for event in reversed(opened):
                candidate = Progress.from_events(runbook, event.get("run"), read.events, event.ts, now)
                if not candidate.complete:
                    run_id = candidate.run_id
                    break
        start = breach.since if breach is not None else now
        progress = Progress.from_events(runbook, run_id, read.events, start, now)
        session = cls(runbook, executor, progress, breach)
        if not progress.opened:
            await session._record(
                "runbook.opened",
                title=runbook.title,
                incident_start=utc_iso(start),
                breach=breach.id if breach else "",
                inputs=dict(inputs or {}),
            )
        for name, value in (inputs or {}).items():
            if progress.inputs.get(name) != str(value):
                await session.set_input(name, str(value))
        return session

    def _context(self) -> Context:
        return build_context(
            self.executor.config, self.runbook, self.breach, self.progress.inputs, str(self.executor.operator)
        )

    async def _record(self, event: str, **fields: Any) -> Event | None:
        """Journal an event of this run and apply it; None when the journal cannot be written
        (the caller says so: nothing is pretended)."""
        try:
            record = await self.journal.aappend(
                event, runbook=self.runbook.id, run=self.progress.run_id, **fields
            )
        except JournalError as exc:
            self.last_error = str(exc)
            return None
        applied = Event(parse_ts(record["ts"]), event, record)
        self.progress.apply(applied)
        return applied

    # -- what the screen shows ------------------------------------------------------------------

    @property
    def steps(self) -> list[StepStatus]:
        return self.progress.steps

    def plan(self, step: Step) -> Plan:
        """The rendered plan of a check or action step (a wait step: its check). RenderError when
        a value is missing; the screen shows the message."""
        spec = (
            self.runbook.step(step.wait.check).check if step.wait is not None else (step.check or step.action)
        )
        if spec is None:
            raise RenderError(f"step {step.id} is a {step.kind} step: nothing to run")
        return self.executor.render(
            spec,
            self.context,
            title=self.title(step),
            runbook=self.runbook.id,
            run=self.progress.run_id,
            step=step.id,
        )

    def title(self, step: Step) -> str:
        """The step's title with its values filled in (as written when a value is missing)."""
        try:
            return one_line(render_text(step.title, self.context)[1], 200)
        except (RenderError, TemplateError):
            return step.title

    def describe(self, step: Step, now: float | None = None) -> tuple[str, ...]:
        """Lines for the step's detail pane: what it will do, with values filled in (masked)."""
        lines = [one_line(render_text(step.text, self.context)[0], 500)] if step.text else []
        try:
            return tuple(lines + list(_DESCRIBE[step.kind](self, step, now)))
        except RenderError as exc:
            return tuple([*lines, f"cannot render: {exc}"])

    def escalation(self, now: float | None = None) -> EscalationView:
        return self.progress.escalation(self.executor.clock() if now is None else now)

    # -- what the keys do ---------------------------------------------------------------------------

    async def prepare(self, step: Step) -> Plan:
        """Plan and, for actions, preview: everything the confirmation dialog shows."""
        plan = self.plan(step)
        return plan if plan.check else await self.executor.preview(plan)

    async def execute(
        self, step: Step, confirmation: Confirmation | None = None, plan: Plan | None = None
    ) -> Result:
        """``x``: run a check (no confirmation) or an action (pass the plan the dialog showed)."""
        if step.kind == "wait":
            return await self.wait(step)
        plan = plan or self.plan(step)
        status = self.progress.status(step.id)
        before = (status.state, status.at)
        status.state = StepState.RUNNING
        result = await self.executor.execute(plan, confirmation)
        status.state, status.at = before
        self._apply(result)
        if result.status == Status.BUSY:
            status.message = result.message
        return result

    async def dry_run(self, step: Step) -> Result:
        """``d``: preview and validate the step's action or check without effect."""
        result = await self.executor.dry_run(self.plan(step))
        self._apply(result)
        return result

    async def decline(self, plan: Plan, message: str = "") -> None:
        await self.executor.decline(plan, message)

    async def wait(self, step: Step) -> Result:
        """A wait step: wait its seconds, then run its check again; the step follows the check,
        and a check that passes now settles the check step too (its earlier failure was the
        problem the runbook just fixed)."""
        assert step.wait is not None
        await self._record(
            "step.state", step=step.id, state=StepState.RUNNING, message=f"waiting {step.wait.seconds:g}s"
        )
        await asyncio.sleep(step.wait.seconds)
        result = await self.executor.run_check(self.plan(step))
        self._apply(result)
        state = StepState.DONE if result.ok else StepState.FAILED
        await self._record("step.state", step=step.id, state=state, message=result.message)
        if result.ok and self.progress.status(step.wait.check).state == StepState.FAILED:
            message = f"{result.message} (re-checked by '{step.id}')"
            await self._record("step.state", step=step.wait.check, state=StepState.DONE, message=message)
        return result

    async def mark_done(self, step: Step, note: str = "") -> bool:
        """``m``: tick a manual item (or any step the operator did by hand)."""
        return await self._step_state(step, StepState.DONE, note or "done by hand")

    async def skip(self, step: Step, reason: str = "") -> bool:
        return await self._step_state(step, StepState.SKIPPED, reason or "skipped")

    async def reopen(self, step: Step) -> bool:
        return await self._step_state(step, StepState.TODO, "reopened")

    async def _step_state(self, step: Step, state: StepState, message: str) -> bool:
        return await self._record("step.state", step=step.id, state=state, message=message) is not None

    async def note(self, text: str, step: Step | None = None) -> bool:
        """``o``: a note for the record (and the report)."""
        return await self._record("note", step=step.id if step else "", text=text) is not None

    async def set_input(self, name: str, value: str) -> bool:
        ok = await self._record("input.set", name=name, value=value) is not None
        self.context = self._context()
        return ok

    async def tick(self, index: int, done: bool = True) -> bool:
        """Tick a post-incident checklist item (by index in ``runbook.post_incident``)."""
        item = self.runbook.post_incident[index]
        return await self._record("postincident.tick", index=index, item=item, done=done) is not None

    def _apply(self, result: Result) -> None:
        for record in result.events:
            self.progress.apply(Event(parse_ts(record["ts"]), str(record["event"]), record))
        if not result.events and result.plan.step:
            status = self.progress.status(result.plan.step)
            status.message = one_line(f"{result.status}: {result.message}", 300)
            status.lines = result.lines


def _describe_check(session: RunbookSession, step: Step, now: float | None) -> list[str]:
    plan = session.plan(step)
    return [*plan.lines, f"expect: {_expect_text(step.check)}"]


def _expect_text(check: CheckSpec | None) -> str:
    if check is None:
        return ""
    fields = check.expect.model_dump(exclude_defaults=True, by_alias=True)
    return ", ".join(f"{k} {v}" for k, v in fields.items()) or "success"


def _describe_action(session: RunbookSession, step: Step, now: float | None) -> list[str]:
    plan = session.plan(step)
    confirm = plan.confirm
    if (
        plan.kind == "signal"
        and confirm.mode == ConfirmMode.TYPED
        and not (step.action and step.action.confirm)
    ):
        # The word is chosen by the preview: a pid the operator can check, or the cluster.
        word = f"the pid if the preview lists one session, else '{confirm.expected}'"
        return [*plan.lines, f"confirmation: typed, after the preview: {word}"]
    return [*plan.lines, f"confirmation: {confirm.prompt}"]


def _describe_manual(session: RunbookSession, step: Step, now: float | None) -> list[str]:
    manual = step.manual
    out = [render_text(manual.text, session.context)[1]] if manual and manual.text else []
    if manual and manual.link:
        out.append(f"link: {render_text(manual.link, session.context)[1]}")
    return [*out, "press m when done"]


def _describe_wait(session: RunbookSession, step: Step, now: float | None) -> list[str]:
    assert step.wait is not None
    check = session.runbook.step(step.wait.check)
    return [
        f"wait {format_duration(step.wait.seconds)}, then run '{session.title(check)}' again",
        *session.plan(step).lines,
    ]


def _describe_escalate(session: RunbookSession, step: Step, now: float | None) -> list[str]:
    note = [step.escalate.note] if step.escalate and step.escalate.note else []
    return [*note, *session.escalation(now).lines()]


_DESCRIBE = {
    "check": _describe_check,
    "action": _describe_action,
    "manual": _describe_manual,
    "wait": _describe_wait,
    "escalate": _describe_escalate,
}
