"""The pydantic schema of check and action specs (runbook steps; also built in code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from console.config import Duration

# --- specs (the pydantic schema of runbook steps; also built in code) ---------------------------


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_of(model: BaseModel, names: Sequence[str]) -> str:
    present = [n for n in names if getattr(model, n.rstrip("_")) is not None]
    if len(present) != 1:
        raise ValueError(
            f"give exactly one of: {', '.join(names)}" + (f" (got {', '.join(present)})" if present else "")
        )
    return present[0]


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


class SqlQuery(Spec):
    cluster: str = "{{cluster}}"
    statement: SqlText
    params: list[Scalar] = Field(default_factory=list)


class PromQuery(Spec):
    query: str = Field(min_length=1)


class HttpGet(Spec):
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True


class CheckSpec(Spec):
    """A read-only check: SQL (in a READ ONLY transaction), PromQL, or an HTTP GET."""

    sql: SqlQuery | None = None
    promql: PromQuery | None = None
    http: HttpGet | None = None
    expect: Expect = Field(default_factory=Expect)
    timeout: Duration = 10.0

    @model_validator(mode="after")
    def _kind(self) -> CheckSpec:
        _one_of(self, ("sql", "promql", "http"))
        return self

    @property
    def kind(self) -> str:
        return _one_of(self, ("sql", "promql", "http"))


class SqlPreview(Spec):
    statement: SqlText
    params: list[Scalar] = Field(default_factory=list)


class SqlAction(Spec):
    cluster: str = "{{cluster}}"
    statement: SqlText
    params: list[Scalar] = Field(default_factory=list)
    preview: SqlPreview | None = None  # read-only query listing what the statement will touch
    transaction: bool = True  # false for statements that cannot run in one (ALTER SYSTEM...)


class SignalAction(Spec):
    """Cancel or terminate the sessions a read-only ``select`` lists (it must return ``pid``
    and ``backend_start``). Only the sessions the preview showed are signalled, and only if
    they are still the same sessions."""

    cluster: str = "{{cluster}}"
    signal: Literal["cancel", "terminate"]
    select: SqlText
    params: list[Scalar] = Field(default_factory=list)


class HttpAction(Spec):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(None, alias="json")
    verify_tls: bool = True
    expect: Expect | None = None  # default: any 2xx


def _argv_shorthand(value: Any) -> Any:
    return {"command": value} if isinstance(value, list) else value


class ArgvAction(Spec):
    command: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)  # added to the console's environment


class SilenceAction(Spec):
    """Create an Alertmanager silence (``matchers``: label -> exact value), or ``expire`` one."""

    matchers: dict[str, str] = Field(default_factory=dict)
    duration: Duration = 3600.0
    comment: str = ""
    expire: str | None = None

    @model_validator(mode="after")
    def _what(self) -> SilenceAction:
        if bool(self.matchers) == bool(self.expire):
            raise ValueError("give either 'matchers' (create a silence) or 'expire' (a silence id)")
        if self.matchers and self.duration <= 0:
            raise ValueError("a silence needs a duration > 0")
        return self


ACTION_KINDS = ("sql", "signal", "http", "argv", "silence")


class ActionSpec(Spec):
    sql: SqlAction | None = None
    signal: SignalAction | None = None
    http: HttpAction | None = None
    argv: Annotated[ArgvAction | None, BeforeValidator(_argv_shorthand)] = None
    silence: SilenceAction | None = None
    dangerous: bool = False  # typed confirmation even outside production
    confirm: str | None = None  # the word to type (a template); default depends on the kind
    timeout: Duration = 30.0

    @model_validator(mode="after")
    def _kind(self) -> ActionSpec:
        _one_of(self, ACTION_KINDS)
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self

    @property
    def kind(self) -> str:
        return _one_of(self, ACTION_KINDS)
