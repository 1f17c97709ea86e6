"""The pydantic schema every check and action spec shares (runbook steps; also built in code).

A step's ``action:`` holds one key naming its kind (``sql:``, ``signal:``, ``http:``, ``argv:``,
``silence:``) next to the fields every action has (``dangerous``, ``confirm``, ``timeout``); a
``check:`` holds ``sql:``, ``promql:`` or ``http:`` next to ``expect`` and ``timeout``.
:class:`ActionSpec` and :class:`CheckSpec` are those common parts; each kind's module declares
its variant (the common part plus its key) and :mod:`console.actions.registry` joins the
variants into one discriminated union each."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

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


class Expect(Spec):
    """What a check (or an HTTP action) must see. Every given field must hold."""

    status: Annotated[list[int] | None, BeforeValidator(_status_list)] = None  # HTTP; default 2xx
    json_: dict[str, Any] = Field(default_factory=dict, alias="json")  # dotted path -> value
    contains: str | None = None  # in the HTTP body
    min_rows: int | None = Field(None, ge=0)  # SQL rows / PromQL series
    max_rows: int | None = Field(None, ge=0)
    below: float | None = None  # every value (SQL: first column; PromQL: each series) <
    above: float | None = None  # every value >
    equals: Scalar = None  # first value ==
    no_data: Literal["pass", "fail"] = "fail"  # below/above/equals with no value at all


class ActionSpec(Spec, OneOf):
    """What every action has. ``ActionSpec(sql=SqlAction(...))`` builds the variant of that kind
    (``spec.kind == "sql"``, ``spec.sql``)."""

    kind: ClassVar[str]  # the variant's key: sql, signal, http, argv, silence

    dangerous: bool = False  # typed confirmation even outside production
    confirm: str | None = None  # the word to type (a template); default depends on the kind
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _positive_timeout(self) -> ActionSpec:
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self


class CheckSpec(Spec, OneOf):
    """A read-only check: SQL (in a READ ONLY transaction), PromQL, or an HTTP GET.
    ``CheckSpec(sql=SqlQuery(...))`` builds the variant of that kind."""

    kind: ClassVar[str]  # the variant's key: sql, promql, http

    expect: Expect = Field(default_factory=Expect)
    timeout: Duration = 10.0
