"""The runbook schema (pydantic): a runbook, its triggers, inputs, steps and escalation levels.

The models are the documentation of config/runbooks/*.yaml; :mod:`console.runbooks.pack` reads
files into them. What a runbook must say to be trusted (its source and the seed scenarios it
covers, escalation or why there is none, the impact of each action, the symptom each check
measures) is optional here and required by the safety rules of :mod:`console.runbooks.lint`
(docs/ARCHITECTURE.md, Runbooks)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from console.actions import AnyActionSpec, AnyCheckSpec
from console.config import Duration, Name
from console.oneof import OneOf, one_of

VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _var_name(value: str) -> str:
    if not VAR_NAME.match(value):
        raise ValueError(f"'{value[:40]}' is not a variable name: letters, digits and '_'")
    return value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceRef(Model):
    """Where a runbook comes from: ``{file, section}`` of a seed document, or
    ``{added: "why this runbook exists beyond the seeds"}``."""

    file: str = ""
    section: str = ""
    added: str = ""

    @model_validator(mode="after")
    def _seed_or_added(self) -> SourceRef:
        seed = bool(self.file or self.section)
        if seed and self.added:
            raise ValueError("a source is a seed ({file, section}) or added ({added: why}), not both")
        if not seed and not self.added.strip():
            raise ValueError(
                "give {file, section} (a seed) or {added: why this runbook exists beyond the seeds}"
            )
        if seed and not (self.file and self.section):
            raise ValueError("a seed source names both its file and its section")
        return self

    @property
    def seed(self) -> bool:
        return bool(self.file)

    def text(self) -> str:
        """``file › section``, or ``added: why``."""
        return f"{self.file} › {self.section}" if self.seed else f"added: {self.added}"


class AlertTrigger(Model):
    name: str  # alert name (glob)
    labels: dict[str, str] = Field(default_factory=dict)  # label -> glob, all must match


def _alert_trigger(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


def is_threshold(name: str) -> bool:
    """A symptom or ``explains`` entry with a '.' is a threshold id; without one, an alert name."""
    return "." in name


class Triggers(Model):
    thresholds: list[str] = Field(default_factory=list)  # threshold id globs: postgres.*.waiting
    alerts: list[Annotated[AlertTrigger, BeforeValidator(_alert_trigger)]] = Field(default_factory=list)
    health: list[str] = Field(default_factory=list)  # health target globs
    errors: list[str] = Field(default_factory=list)  # threshold id globs whose source cannot be reached
    providers: list[str] = Field(default_factory=list)  # integration globs: a match ranks higher
    # Breaches this runbook's trouble causes (threshold id globs have a '.', the rest are alert
    # name globs): while one of its own triggers fires, it ranks first for them too.
    explains: list[str] = Field(default_factory=list)


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


class StepKind(StrEnum):
    """What a step is; its one key in the runbook file has the same name."""

    CHECK = "check"
    ACTION = "action"
    MANUAL = "manual"
    WAIT = "wait"
    ESCALATE = "escalate"


class Step(Model, OneOf):
    """What every step has. A step is one of :class:`CheckStep`, :class:`ActionStep`,
    :class:`ManualStep`, :class:`WaitStep`, :class:`EscalateStep` (``Step(id=..., title=...,
    check=...)`` builds a CheckStep); match on the class to read its part."""

    kind: ClassVar[StepKind]

    id: Name
    title: str = Field(min_length=1)
    text: str = ""


class CheckStep(Step):
    kind: ClassVar[StepKind] = StepKind.CHECK
    check: AnyCheckSpec


class ActionStep(Step):
    kind: ClassVar[StepKind] = StepKind.ACTION
    action: AnyActionSpec


class ManualStep(Step):
    kind: ClassVar[StepKind] = StepKind.MANUAL
    manual: Annotated[Manual, BeforeValidator(_manual)]


class WaitStep(Step):
    kind: ClassVar[StepKind] = StepKind.WAIT
    wait: Wait

    @staticmethod
    def again(seconds: float, waited: str, what: str) -> str:
        """'wait 1m00s, then <what> again' (``waited``: the duration as shown); a wait of no
        time (a second re-check right after the first) runs it 'again now'."""
        return f"wait {waited}, then {what} again" if seconds else f"{what} again now"


class EscalateStep(Step):
    kind: ClassVar[StepKind] = StepKind.ESCALATE
    escalate: Escalate


AnyStep = one_of(
    Step,
    {str(v.kind): v for v in (CheckStep, ActionStep, ManualStep, WaitStep, EscalateStep)},
    "a step is exactly one of",
)


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
    steps: list[AnyStep] = Field(default_factory=list)
    #: The seed scenarios this runbook encodes: ids of the index (config/seed-scenarios.yaml).
    covers: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    escalation: list[EscalationLevel] = Field(default_factory=list)
    #: Why there are no escalation levels: the source gives none (instead of ``escalation``).
    escalation_none: str | None = Field(None, min_length=1)
    post_incident: list[str] = Field(default_factory=list)
    links: list[Link] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Runbook:
        ids = [s.id for s in self.steps]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate step id {', '.join(duplicates)}")
        checks = {s.id for s in self.steps if isinstance(s, CheckStep)}
        for step in self.steps:
            if isinstance(step, WaitStep) and step.wait.check not in checks:
                raise ValueError(
                    f"step {step.id}: wait.check '{step.wait.check}' is not a check step of this runbook"
                )
            if isinstance(step, EscalateStep) and not self.escalation:
                raise ValueError(f"step {step.id} escalates, but the runbook has no 'escalation' levels")
        timed = [lvl.after for lvl in self.escalation if lvl.after is not None]
        if timed != sorted(timed):
            raise ValueError("escalation levels with 'after' must be in time order")
        return self

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def waited_check(self, step: WaitStep) -> CheckStep:
        """The check a wait step runs again (a check step of this runbook: validated)."""
        check = self.step(step.wait.check)
        assert isinstance(check, CheckStep)
        return check
