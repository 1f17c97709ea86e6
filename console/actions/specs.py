"""The pydantic schema every check and action spec shares (runbook steps; also built in code).

A step's ``action:`` holds one key naming its kind (``sql:``, ``signal:``, ``http:``, ``argv:``,
``silence:``) next to the fields every action has (``dangerous``, ``impact``, ``confirm``,
``timeout``); a ``check:`` holds ``sql:``, ``promql:``, ``http:`` or ``health:`` next to ``expect``,
``symptom`` and ``timeout``. In ``expect``, ``below``/``above`` may be a number or a reference to
a threshold of the config (:class:`ThresholdRef`), resolved when the plan is rendered
(:meth:`console.actions.kind.KindContext.resolve_expect`).
:class:`ActionSpec` and :class:`CheckSpec` are those common parts; each kind's module declares
its variant (the common part plus its key) and :mod:`console.actions.registry` joins the
variants into one discriminated union each."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from console.config import Duration
from console.oneof import OneOf


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _no_template(text: str) -> str:
    if "{{" in text or "}}" in text:
        raise ValueError("SQL text cannot hold {{variables}}: use $1, $2 ... and pass the values in 'params'")
    return text


SqlText = Annotated[str, Field(min_length=1), AfterValidator(_no_template)]
Scalar = str | int | float | bool | None


def _status_list(value: Any) -> Any:
    return [value] if isinstance(value, int) and not isinstance(value, bool) else value


#: A level of a threshold a reference may name; None: the threshold's first level.
Level = Literal["warning", "critical", "recovery"]


class ThresholdRef(Spec):
    """``{threshold: <threshold id>, level: warning|critical|recovery}``: a number that is one of
    the config's threshold levels (default: its first level, the one that opens a breach). The
    id may hold ``{{variables}}`` (``postgres.{{cluster}}.idle_in_transaction``)."""

    threshold: str = Field(min_length=1)
    level: Level | None = None

    def text(self) -> str:
        return f"threshold {self.threshold}" + (f" {self.level}" if self.level else "")


def _bound_tag(value: Any) -> str:
    return "threshold" if isinstance(value, dict | ThresholdRef) else "number"


#: A bound of ``expect``: a number, or a mapping that refers to a threshold. Tagged, so that a bad
#: value reads as one problem ("should be a valid number"), not one per member of the union.
Bound = Annotated[
    Annotated[float, Tag("number")] | Annotated[ThresholdRef, Tag("threshold")],
    Discriminator(_bound_tag),
]


class Expect(Spec):
    """What a check (or an HTTP action) must see. Every given field must hold. ``below`` and
    ``above`` are numbers or :class:`ThresholdRef`; a rendered plan holds numbers only."""

    status: Annotated[list[int] | None, BeforeValidator(_status_list)] = None  # HTTP; default 2xx
    json_: dict[str, Any] = Field(default_factory=dict, alias="json")  # dotted path -> value
    contains: str | None = None  # in the HTTP body
    min_rows: int | None = Field(None, ge=0)  # SQL rows / PromQL series
    max_rows: int | None = Field(None, ge=0)
    below: Bound | None = None  # every value (SQL: first column; PromQL: each series) <
    above: Bound | None = None  # every value >
    equals: Scalar = None  # first value ==
    no_data: Literal["pass", "fail"] = "fail"  # below/above/equals with no value at all
    #: What the rows (or the value) are, in words, for the result: "blocked sessions" makes a
    #: failed max_rows: 0 read "found 4 blocked sessions (none expected)", not "4 rows".
    found: str | None = Field(None, min_length=1, max_length=80)

    @property
    def references(self) -> dict[str, ThresholdRef]:
        """The bounds given as threshold references, by field name."""
        return {n: v for n in ("below", "above") if isinstance(v := getattr(self, n), ThresholdRef)}


#: What an action does to the estate, for the safety rules (console/runbooks/lint.py):
#: destructive (terminate, cancel, restart, disable, scale down), re-enable (automation, an
#: integration or replies back on, a kill switch off), protective (kill switch on, shadow mode,
#: route-only). destructive and re-enable ask for the typed word, like ``dangerous: true``.
Impact = Literal["destructive", "re-enable", "protective"]
TYPED_IMPACTS = frozenset({"destructive", "re-enable"})


class ActionSpec(Spec, OneOf):
    """What every action has. ``ActionSpec(sql=SqlAction(...))`` builds the variant of that kind
    (``spec.kind == "sql"``, ``spec.sql``)."""

    kind: ClassVar[str]  # the variant's key: sql, signal, http, argv, silence

    dangerous: bool = False  # typed confirmation even outside production
    impact: Impact | None = None  # what it does to the estate (see Impact)
    confirm: str | None = None  # the word to type (a template); default depends on the kind
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _positive_timeout(self) -> ActionSpec:
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self

    @property
    def typed(self) -> bool:
        """The spec itself asks for the typed word: ``dangerous``, or a destructive / re-enable
        impact."""
        return self.dangerous or self.impact in TYPED_IMPACTS


class CheckSpec(Spec, OneOf):
    """A read-only check: SQL (in a READ ONLY transaction), PromQL, an HTTP GET, or a health target
    of the config probed as the console polls it.
    ``CheckSpec(sql=SqlQuery(...))`` builds the variant of that kind."""

    kind: ClassVar[str]  # the variant's key: sql, promql, http, health

    expect: Expect = Field(default_factory=Expect)
    #: What the check measures: a threshold id (has a '.': ``prometheus.error_rate``,
    #: ``postgres.{{cluster}}.waiting``) or an alert name (``HighErrorRate``).
    symptom: str | None = Field(None, min_length=1)
    timeout: Duration = 10.0
