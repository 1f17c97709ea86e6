"""The one executor: every check and every action of the console runs through :class:`Executor`.

Specs (what a runbook step, the sessions table or an alert ack asks for) are rendered with a
:class:`Context` into a :class:`Plan`: exactly what will run, secrets masked, what to type to
confirm. ``preview`` shows what an action would touch, ``dry_run`` validates it without effect,
``execute`` runs it. The rules live here, not in the UI:

- read-only (config, ``--read-only``, wall and web modes) refuses every action on every path;
- confirmation: none for checks, yes/no (default No) for actions, the typed word for dangerous
  ones and for every action in a production environment; a wrong word refuses;
- single flight: a second action while one runs is answered "busy" and does nothing;
- a timeout on everything (SQL also gets a server-side statement_timeout);
- the journal line ``action.confirmed`` is fsynced before anything runs (or nothing runs), and
  the result is fsynced before success is reported;
- SQL values are bound parameters, never formatted into SQL text (which may not hold
  ``{{variables}}``); argv runs without a shell; backends are signalled only when pid and
  backend_start still match what the operator saw, in the same statement that signals them.

Templates: ``{{name}}`` or ``{{name|fallback}}`` (fallback: another name, a number, or a
'quoted literal'). Values from config variables and runbook text are trusted; values from
backends (alert labels, health checks, sessions) are not: they are percent-encoded in URLs,
refused in argv when they start with '-', escaped in PromQL, and bound in SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import signal as signals
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import asyncpg
import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from console import redact
from console.audit import Journal, JournalError, utc_iso
from console.config import Config, Duration, PostgresCluster, check_http_url
from console.rules import Breach, format_duration
from console.sanitize import one_line
from console.sources.base import BodyTooLarge, read_capped
from console.sources.postgres import classify_error, connect, console_pids

MASK = redact.MASK
BODY_LIMIT = 256 * 1024  # bytes read from an HTTP answer
OUTPUT_LIMIT = 256 * 1024  # bytes kept from a command's output
SHOW_LINES = 40  # lines of output / rows a result keeps
PREVIEW_ROWS = 200
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"})

# --- templates --------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REF = re.compile(rf"^\s*({_NAME})\s*(?:\|\s*(.*?)\s*)?$", re.DOTALL)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


class TemplateError(ValueError):
    pass


class RenderError(Exception):
    """A spec cannot become a plan: a variable without a value, an unknown cluster..."""


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    fallback_name: str | None = None
    fallback_text: str | None = None


def _parse_ref(inner: str) -> Ref:
    match = _REF.match(inner)
    if not match:
        raise TemplateError(
            f"'{{{{{inner[:40]}}}}}' is not a reference: use {{{{name}}}} or {{{{name|fallback}}}}"
        )
    name, fallback = match.group(1), match.group(2)
    if fallback is None:
        return Ref(name)
    if len(fallback) >= 2 and fallback[0] in "'\"" and fallback[-1] == fallback[0]:
        return Ref(name, fallback_text=fallback[1:-1])
    if _NUMBER.match(fallback):
        return Ref(name, fallback_text=fallback)
    if re.fullmatch(_NAME, fallback):
        return Ref(name, fallback_name=fallback)
    raise TemplateError(
        f"bad fallback '{fallback[:40]}' in {{{{{inner[:40]}}}}}: use a name, a number or 'text'"
    )


def template_refs(text: str) -> list[Ref]:
    """The references in ``text``; raises TemplateError on a malformed one."""
    refs = [_parse_ref(m.group(1)) for m in _TEMPLATE.finditer(text)]
    rest = _TEMPLATE.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise TemplateError("unbalanced '{{' or '}}'")
    return refs


def template_names(text: str) -> set[str]:
    names = set()
    for ref in template_refs(text):
        names.add(ref.name)
        if ref.fallback_name:
            names.add(ref.fallback_name)
    return names


@dataclass(frozen=True, slots=True)
class Value:
    text: str
    trusted: bool = True  # from the config or the runbook; False: from a backend
    secret: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    """Values templates refer to. Build it with :func:`console.runbooks.build_context`."""

    values: Mapping[str, Value] = field(default_factory=dict)

    def get(self, name: str) -> Value | None:
        return self.values.get(name)

    def with_values(self, trusted: bool = True, **values: object) -> Context:
        new = {k: Value(str(v), trusted) for k, v in values.items() if v is not None}
        return Context({**self.values, **new})

    def public(self) -> dict[str, str]:
        """Non-secret values, for the journal."""
        return {k: v.text for k, v in sorted(self.values.items()) if not v.secret}

    def lookup(self, ref: Ref) -> Value:
        value = self.values.get(ref.name)
        if value is not None:
            return value
        if ref.fallback_name is not None:
            value = self.values.get(ref.fallback_name)
            if value is not None:
                return value
        if ref.fallback_text is not None:
            return Value(ref.fallback_text)
        alternative = f" or '{ref.fallback_name}'" if ref.fallback_name else ""
        raise RenderError(
            f"'{ref.name}'{alternative} has no value here (open the runbook from a breach, or set it)"
        )


def _enc_text(value: Value) -> str:
    return value.text


def _enc_url(value: Value) -> str:
    return value.text if value.trusted else quote(value.text, safe="")


def _enc_promql(value: Value) -> str:
    return value.text.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\n", "\\n")


def _enc_argv(value: Value) -> str:
    if not value.trusted and value.text.startswith("-"):
        raise RenderError(
            f"refusing '{one_line(value.text, 40)}' as a command argument: it would read as an option"
        )
    return value.text


_ENCODERS: dict[str, Callable[[Value], str]] = {
    "text": _enc_text,
    "url": _enc_url,
    "promql": _enc_promql,
    "argv": _enc_argv,
}


def render_text(template: str, ctx: Context, mode: str = "text") -> tuple[str, str]:
    """``template`` with its references replaced: (the real text, the text to show)."""
    encode = _ENCODERS[mode]
    real: list[str] = []
    shown: list[str] = []
    last = 0
    for match in _TEMPLATE.finditer(template):
        literal = template[last : match.start()]
        value = ctx.lookup(_parse_ref(match.group(1)))
        text = encode(value)
        real += [literal, text]
        shown += [literal, MASK if value.secret else text]
        last = match.end()
    real.append(template[last:])
    shown.append(template[last:])
    return "".join(real), redact.scrub("".join(shown))


def _render_json(value: Any, ctx: Context) -> tuple[Any, Any]:
    if isinstance(value, str):
        return render_text(value, ctx)
    if isinstance(value, Mapping):
        pairs = {k: _render_json(v, ctx) for k, v in value.items()}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    if isinstance(value, list):
        pairs_list = [_render_json(v, ctx) for v in value]
        return [p[0] for p in pairs_list], [p[1] for p in pairs_list]
    return value, value


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


# --- plans, confirmations, results ------------------------------------------------------------


class ConfirmMode(StrEnum):
    NONE = "none"
    YES_NO = "yes/no"
    TYPED = "typed"


@dataclass(frozen=True, slots=True)
class ConfirmSpec:
    """What the dialog asks. ``default`` is the answer Enter gives: always No."""

    mode: ConfirmMode
    expected: str = ""  # the word to type, for TYPED
    prompt: str = ""
    default: bool = False


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The operator's answer: ``Confirmation(yes=True)`` or ``Confirmation(typed="4242")``."""

    yes: bool = False
    typed: str | None = None

    @property
    def word(self) -> str:
        return "typed" if self.typed is not None else ("yes" if self.yes else "no")


@dataclass(frozen=True, slots=True)
class Target:
    """A session to signal, as the operator saw it."""

    pid: int
    backend_start: float
    label: str = ""


@dataclass(frozen=True, slots=True)
class Preview:
    """What an action will touch: rows of a preview query (sanitised text), or a note."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    note: str = ""
    error: str = ""
    truncated: bool = False

    def lines(self) -> tuple[str, ...]:
        if self.error:
            return (f"preview failed: {self.error}",)
        out = [self.note] if self.note else []
        if self.columns:
            out.append(" | ".join(self.columns))
            out += [" | ".join(row) for row in self.rows]
            if not self.rows:
                out.append("(no rows)")
            if self.truncated:
                out.append(f"... first {len(self.rows)} rows shown")
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Exactly what will run, for the dialog and the journal. ``lines`` are masked, plain text
    (render them as Text, never as markup). ``spec`` holds the real values and is never shown."""

    id: str
    kind: str  # sql | signal | http | argv | silence | sql check | promql check | http check
    title: str
    summary: str  # one line: "POST http://.../admin/restart"
    lines: tuple[str, ...]
    target: str  # what it acts on, in words
    confirm: ConfirmSpec
    dangerous: bool = False
    timeout: float = 30.0
    check: bool = False
    runbook: str = ""
    run: str = ""
    step: str = ""
    preview: Preview | None = None
    targets: tuple[Target, ...] = ()
    spec: Any = field(default=None, repr=False, compare=False)

    def journal_fields(self) -> dict[str, Any]:
        plan = {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "summary": self.summary,
            "target": self.target,
            "lines": list(self.lines),
            "confirm": str(self.confirm.mode),
            "timeout": self.timeout,
        }
        if self.targets:
            plan["targets"] = [
                {"pid": t.pid, "backend_start": utc_iso(t.backend_start)} for t in self.targets
            ]
        return {"runbook": self.runbook, "run": self.run, "step": self.step, "plan": plan}


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    BUSY = "busy"
    DRY_RUN = "dry-run"
    PASSED = "passed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    plan: Plan
    status: Status
    message: str  # one line
    lines: tuple[str, ...] = ()
    duration: float = 0.0
    recorded: bool = True  # False: the journal could not be written after the action ran
    data: Mapping[str, Any] = field(default_factory=dict)  # silence_id, ends_at, rows...
    events: tuple[Mapping[str, Any], ...] = ()  # the journal records written for this call

    @property
    def ok(self) -> bool:
        return self.status in (Status.SUCCEEDED, Status.PASSED, Status.DRY_RUN)


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: Status
    message: str
    lines: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


# --- executable forms (real values) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sql:
    cluster: PostgresCluster
    statement: str
    params: tuple[Scalar, ...]
    preview: tuple[str, tuple[Scalar, ...]] | None = None
    transaction: bool = True
    read_only: bool = False
    expect: Expect | None = None


@dataclass(frozen=True, slots=True)
class _Signal:
    cluster: PostgresCluster
    signal: str
    select: str | None
    params: tuple[Scalar, ...]
    confirm_override: bool = False


@dataclass(frozen=True, slots=True)
class _Http:
    method: str
    url: str
    headers: Mapping[str, str]
    body: Any
    verify: bool
    expect: Expect | None
    check: bool = False


@dataclass(frozen=True, slots=True)
class _Argv:
    argv: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Silence:
    base: str
    headers: Mapping[str, str]
    verify: bool | str
    matchers: Mapping[str, str]
    duration: float
    comment: str
    expire: str | None


@dataclass(frozen=True, slots=True)
class _Prom:
    base: str
    headers: Mapping[str, str]
    verify: bool | str
    query: str
    expect: Expect


@dataclass(frozen=True, slots=True)
class _Rendered:
    kind: str
    summary: str
    lines: tuple[str, ...]
    target: str
    spec: Any
    word: str  # the default word to type


def _quote_param(value: Scalar, shown: str | None = None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + (shown if shown is not None else value).replace("'", "''") + "'"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _statement_lines(statement: str) -> list[str]:
    return [line.rstrip() for line in statement.strip().splitlines()]


def _show_header(name: str, shown: str) -> str:
    return f"{name}: {MASK if name.lower() in SENSITIVE_HEADERS else shown}"


class Executor:
    """Renders, previews, dry-runs and executes. One per console process (single flight)."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        *,
        read_only: bool = False,
        mode: Literal["console", "wall", "web"] = "console",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.journal = journal
        self.operator = journal.operator
        self.mode = mode
        self.clock = clock
        self._read_only_flag = read_only
        self.running: Plan | None = None
        self._running_since = 0.0
        self._checks: set[str] = set()

    # -- policy ------------------------------------------------------------------------------

    @property
    def read_only_reason(self) -> str:
        """Why actions are refused, or "" when they may run."""
        if self.config.read_only:
            return "read-only: the config says read_only: true"
        if self._read_only_flag:
            return "read-only: the console was started with --read-only"
        if self.mode in ("wall", "web"):
            return f"read-only: {self.mode} mode never runs actions"
        return ""

    @property
    def read_only(self) -> bool:
        return bool(self.read_only_reason)

    @property
    def production(self) -> bool:
        return self.config.environment.production

    def _confirm_spec(self, dangerous: bool, word: str, summary: str) -> ConfirmSpec:
        if dangerous or self.production:
            why = "production: " if self.production and not dangerous else ""
            return ConfirmSpec(ConfirmMode.TYPED, word, f"{why}type '{word}' to run: {summary}")
        return ConfirmSpec(ConfirmMode.YES_NO, "", f"Run {summary}? [y/N]")

    @staticmethod
    def confirmation_problem(plan: Plan, confirmation: Confirmation) -> str:
        """Why this answer does not allow the plan to run, or ""."""
        mode = plan.confirm.mode
        if mode == ConfirmMode.NONE:
            return ""
        if mode == ConfirmMode.YES_NO:
            return (
                ""
                if confirmation.yes or confirmation.typed is not None
                else "not confirmed (the answer was No)"
            )
        typed = (confirmation.typed or "").strip()
        if not typed:
            return f"not confirmed: type '{plan.confirm.expected}' to run this"
        if typed != plan.confirm.expected:
            return f"not confirmed: typed '{one_line(typed, 40)}', expected '{plan.confirm.expected}'"
        return ""

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self,
        spec: ActionSpec | CheckSpec,
        ctx: Context,
        *,
        title: str = "",
        runbook: str = "",
        run: str = "",
        step: str = "",
    ) -> Plan:
        """A plan for ``spec`` (pure: nothing is contacted). Raises RenderError."""
        check = isinstance(spec, CheckSpec)
        renderer = (_CHECK_RENDERERS if check else _ACTION_RENDERERS)[spec.kind]
        rendered: _Rendered = renderer(self, getattr(spec, spec.kind), spec, ctx)
        dangerous = (
            False
            if check
            else spec.dangerous or (spec.kind == "signal" and spec.signal.signal == "terminate")
        )
        word = rendered.word
        if not check and spec.confirm:
            real, shown = render_text(spec.confirm, ctx)
            if real != shown:
                raise RenderError("the confirmation word cannot be a secret")
            word = real
        confirm = (
            ConfirmSpec(ConfirmMode.NONE) if check else self._confirm_spec(dangerous, word, rendered.summary)
        )
        spec_exec = rendered.spec
        if isinstance(spec_exec, _Signal) and not check and spec.confirm:
            spec_exec = replace(spec_exec, confirm_override=True)
        return Plan(
            id=uuid.uuid4().hex[:12],
            kind=rendered.kind,
            title=title or rendered.summary,
            summary=rendered.summary,
            lines=rendered.lines,
            target=rendered.target,
            confirm=confirm,
            dangerous=dangerous,
            timeout=float(spec.timeout),
            check=check,
            runbook=runbook,
            run=run,
            step=step,
            spec=spec_exec,
        )

    def _cluster(self, template: str, ctx: Context) -> PostgresCluster:
        name, _ = render_text(template, ctx)
        for cluster in self.config.postgres:
            if cluster.name == name:
                return cluster
        known = ", ".join(c.name for c in self.config.postgres) or "none configured"
        raise RenderError(f"no postgres cluster '{one_line(name, 60)}' in the config (clusters: {known})")

    @staticmethod
    def _params(params: Sequence[Scalar], ctx: Context) -> tuple[tuple[Scalar, ...], list[str]]:
        real: list[Scalar] = []
        shown: list[str] = []
        for i, param in enumerate(params, 1):
            if isinstance(param, str):
                value, display = render_text(param, ctx)
                real.append(value)
                shown.append(f"  ${i} = {_quote_param(value, display)}")
            else:
                real.append(param)
                shown.append(f"  ${i} = {_quote_param(param)}")
        return tuple(real), shown

    def _render_sql_action(self, sql: SqlAction, spec: ActionSpec, ctx: Context) -> _Rendered:
        cluster = self._cluster(sql.cluster, ctx)
        params, shown = self._params(sql.params, ctx)
        preview = None
        lines = [
            f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
            *_statement_lines(sql.statement),
        ]
        lines += ["bound parameters:", *shown] if shown else []
        if sql.preview is not None:
            preview_params, _ = self._params(sql.preview.params, ctx)
            preview = (sql.preview.statement, preview_params)
        first = one_line(sql.statement, 80)
        return _Rendered(
            "sql",
            f"SQL on {cluster.name}: {first}",
            tuple(lines),
            f"postgres cluster {cluster.name}",
            _Sql(cluster, sql.statement, params, preview, sql.transaction),
            cluster.name,
        )

    def _render_signal(self, sig: SignalAction, spec: ActionSpec, ctx: Context) -> _Rendered:
        cluster = self._cluster(sig.cluster, ctx)
        params, shown = self._params(sig.params, ctx)
        verb = "terminate" if sig.signal == "terminate" else "cancel the query of"
        lines = [
            f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
            f"{verb} each session listed by:",
            *_statement_lines(sig.select),
            *(["bound parameters:", *shown] if shown else []),
            "only sessions whose pid and backend_start still match the preview are signalled",
        ]
        return _Rendered(
            "signal",
            f"{sig.signal} sessions on {cluster.name}",
            tuple(lines),
            f"postgres cluster {cluster.name}",
            _Signal(cluster, sig.signal, sig.select, params),
            cluster.name,
        )

    def _render_http_action(self, http: HttpAction, spec: ActionSpec, ctx: Context) -> _Rendered:
        return self._http(
            http.method, http.url, http.headers, http.json_, http.verify_tls, http.expect, ctx, False
        )

    def _http(
        self,
        method: str,
        url_template: str,
        header_templates: Mapping[str, str],
        body_template: Any,
        verify: bool,
        expect: Expect | None,
        ctx: Context,
        check: bool,
    ) -> _Rendered:
        url, url_shown = render_text(url_template, ctx, "url")
        try:
            check_http_url(url)
        except ValueError as exc:
            raise RenderError(str(exc)) from None
        headers: dict[str, str] = {}
        lines = [f"{method} {redact.url(url_shown)}"]
        for name, template in header_templates.items():
            headers[name], shown = render_text(template, ctx)
            lines.append(_show_header(name, shown))
        body = None
        if body_template is not None:
            body, body_shown = _render_json(body_template, ctx)
            lines.append("body: " + redact.scrub(json.dumps(body_shown, ensure_ascii=False)))
        service = ctx.get("service")
        host = urlsplit(url).hostname or "?"
        word = service.text if service and service.trusted else host
        return _Rendered(
            "http check" if check else "http",
            f"{method} {redact.url(url_shown)}",
            tuple(lines),
            f"{service.text if service else host} ({redact.url(url_shown)})",
            _Http(method, url, headers, body, verify, expect, check),
            word,
        )

    def _render_argv(self, argv: ArgvAction, spec: ActionSpec, ctx: Context) -> _Rendered:
        real, shown = [], []
        for template in argv.command:
            value, display = render_text(template, ctx, "argv")
            real.append(value)
            shown.append(display)
        env, env_lines = {}, []
        for name, template in argv.env.items():
            env[name], display = render_text(template, ctx)
            env_lines.append(f"env {name}={display}")
        command = shlex.join(shown)
        return _Rendered(
            "argv",
            f"run {one_line(command, 100)}",
            (f"argv (no shell): {command}", *env_lines),
            f"command {os.path.basename(real[0])}",
            _Argv(tuple(real), env),
            os.path.basename(real[-1]),
        )

    def _alertmanager(self) -> tuple[str, dict[str, str], bool | str]:
        prom = self.config.prometheus
        if prom is None or not prom.alertmanager_url:
            raise RenderError("no prometheus.alertmanager_url in the config: silences cannot be made")
        headers = {k: h.value for k, h in prom.headers.items()}
        return prom.alertmanager_url.rstrip("/"), headers, prom.verify_tls

    def _render_silence(self, sil: SilenceAction, spec: ActionSpec | None, ctx: Context) -> _Rendered:
        base, headers, verify = self._alertmanager()
        if sil.expire is not None:
            silence_id, shown = render_text(sil.expire, ctx)
            url = f"{base}/api/v2/silence/{quote(silence_id, safe='')}"
            return _Rendered(
                "silence",
                f"expire silence {shown}",
                (f"DELETE {redact.url(url)}",),
                f"Alertmanager silence {shown}",
                _Silence(base, headers, verify, {}, 0.0, "", silence_id),
                shown,
            )
        matchers, shown_matchers = {}, []
        for name, template in sil.matchers.items():
            matchers[name], shown = render_text(template, ctx)
            shown_matchers.append(f"{name}={shown}")
        comment = render_text(sil.comment, ctx)[0] if sil.comment else ""
        comment = comment or f"acknowledged in incident-console by {self.operator}"
        ends = utc_iso(self.clock() + sil.duration)
        lines = (
            f"POST {redact.url(base)}/api/v2/silences",
            f"matchers: {', '.join(shown_matchers)}",
            f"for {format_duration(sil.duration)} (until about {ends})",
            f"createdBy: {self.operator}",
            f"comment: {redact.scrub(comment)}",
        )
        alertname = matchers.get("alertname", "silence")
        return _Rendered(
            "silence",
            f"silence {', '.join(shown_matchers)} for {format_duration(sil.duration)}",
            lines,
            f"Alertmanager alerts matching {', '.join(shown_matchers)}",
            _Silence(base, headers, verify, matchers, sil.duration, comment, None),
            alertname,
        )

    def _render_sql_check(self, sql: SqlQuery, spec: CheckSpec, ctx: Context) -> _Rendered:
        cluster = self._cluster(sql.cluster, ctx)
        params, shown = self._params(sql.params, ctx)
        lines = [f"postgres cluster {cluster.name}, read-only", *_statement_lines(sql.statement)]
        lines += ["bound parameters:", *shown] if shown else []
        return _Rendered(
            "sql check",
            f"SQL on {cluster.name}: {one_line(sql.statement, 80)}",
            tuple(lines),
            f"postgres cluster {cluster.name}",
            _Sql(cluster, sql.statement, params, read_only=True, expect=spec.expect),
            cluster.name,
        )

    def _render_promql(self, prom_query: PromQuery, spec: CheckSpec, ctx: Context) -> _Rendered:
        prom = self.config.prometheus
        if prom is None:
            raise RenderError("no prometheus in the config: PromQL checks cannot run")
        query, shown = render_text(prom_query.query, ctx, "promql")
        headers = {k: h.value for k, h in prom.headers.items()}
        return _Rendered(
            "promql check",
            f"PromQL: {one_line(shown, 100)}",
            (f"GET {redact.url(prom.url)}/api/v1/query", f"query: {shown}"),
            f"Prometheus {redact.url(prom.url)}",
            _Prom(prom.url.rstrip("/"), headers, prom.verify_tls, query, spec.expect),
            "prometheus",
        )

    def _render_http_check(self, http: HttpGet, spec: CheckSpec, ctx: Context) -> _Rendered:
        return self._http("GET", http.url, http.headers, None, http.verify_tls, spec.expect, ctx, True)

    # -- plans built in code (sessions table, alert ack) -------------------------------------

    def signal_plan(
        self,
        cluster_name: str,
        pid: int,
        backend_start: float | None,
        signal: Literal["cancel", "terminate"],
        *,
        seen: str = "",
    ) -> Plan:
        """Cancel or terminate one session from the sessions table / lock tree, as it was seen."""
        if backend_start is None:
            raise RenderError(f"pid {pid}: backend_start unknown, so the session cannot be re-checked")
        ctx = Context({"cluster": Value(cluster_name)})
        cluster = self._cluster("{{cluster}}", ctx)
        verb = "terminate" if signal == "terminate" else "cancel the query of"
        target = Target(int(pid), float(backend_start), one_line(seen, 120))
        lines = (
            f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
            f"{verb} pid {pid} (backend started {utc_iso(backend_start)})"
            + (f": {target.label}" if seen else ""),
            f"SELECT pg_{'terminate' if signal == 'terminate' else 'cancel'}_backend(pid) only if pid {pid} "
            "still has that backend_start",
        )
        summary = f"{signal} pid {pid} on {cluster.name}"
        dangerous = signal == "terminate"
        return Plan(
            id=uuid.uuid4().hex[:12],
            kind="signal",
            title=summary,
            summary=summary,
            lines=lines,
            target=f"pid {pid} on postgres cluster {cluster.name}",
            confirm=self._confirm_spec(dangerous, str(pid), summary),
            dangerous=dangerous,
            timeout=max(cluster.statement_timeout, 5.0),
            targets=(target,),
            spec=_Signal(cluster, signal, None, ()),
        )

    def silence_plan(self, breach: Breach, duration: float = 3600.0, comment: str = "") -> Plan:
        """Ack a Prometheus alert: a silence on exactly its labels (createdBy = the operator)."""
        if breach.kind != "alert" or not breach.labels:
            raise RenderError("only Prometheus alerts can be acknowledged with a silence")
        # Labels and the comment are data, passed as values: a '{{' in them is never a template.
        values = {f"label{i}": Value(v, trusted=False) for i, (_, v) in enumerate(breach.labels)}
        values["comment"] = Value(comment, trusted=False)
        matchers = {name: f"{{{{label{i}}}}}" for i, (name, _) in enumerate(breach.labels)}
        spec = ActionSpec(silence=SilenceAction(matchers=matchers, duration=duration, comment="{{comment}}"))
        return self.render(spec, Context(values), title=f"ack {breach.title}")

    def expire_silence_plan(self, silence_id: str) -> Plan:
        """Un-ack: expire a silence made by :meth:`silence_plan`."""
        spec = ActionSpec(silence=SilenceAction(expire="{{silence_id}}"))
        ctx = Context({"silence_id": Value(silence_id, trusted=False)})
        return self.render(spec, ctx, title=f"un-ack: expire silence {one_line(silence_id, 60)}")

    # -- preview and dry-run ---------------------------------------------------------------------

    async def preview(self, plan: Plan) -> Plan:
        """The plan with ``preview`` filled in (and, for signals, the sessions it will act on
        bound as ``targets``). Read-only; allowed in read-only mode. Journals action.requested."""
        previewer = _PREVIEWERS.get(type(plan.spec))
        plan = (
            await previewer(self, plan)
            if previewer
            else replace(plan, preview=Preview(note=f"touches: {plan.target}"))
        )
        if not plan.check:
            with contextlib.suppress(JournalError):
                await self.journal.aappend(
                    "action.requested", **plan.journal_fields(), preview=list(plan.preview.lines())
                )
        return plan

    async def dry_run(self, plan: Plan) -> Result:
        """Everything but the effect: the preview and a validation of the plan."""
        started = time.monotonic()
        plan = await self.preview(plan) if plan.preview is None or plan.kind == "signal" else plan
        validator = _VALIDATORS.get(type(plan.spec))
        problems = await validator(self, plan) if validator else []
        if plan.preview is not None and plan.preview.error:
            problems.append(f"preview failed: {plan.preview.error}")
        message = "; ".join(problems) if problems else "would run as shown"
        lines = (
            *plan.lines,
            *(plan.preview.lines() if plan.preview else ()),
            *(f"problem: {p}" for p in problems),
        )
        status = Status.FAILED if problems else Status.DRY_RUN
        events = []
        with contextlib.suppress(JournalError):
            events.append(
                await self.journal.aappend(
                    "action.dry_run", **plan.journal_fields(), result=str(status), message=message
                )
            )
        return Result(
            plan=plan,
            status=status,
            message=message,
            lines=lines,
            duration=time.monotonic() - started,
            events=tuple(events),
        )

    async def decline(self, plan: Plan) -> None:
        """The operator answered No (or closed the dialog)."""
        with contextlib.suppress(JournalError):
            await self.journal.aappend("action.declined", **plan.journal_fields())

    # -- execution -------------------------------------------------------------------------------

    async def execute(self, plan: Plan, confirmation: Confirmation | None = None) -> Result:
        """Run a plan. Checks need no confirmation; actions go through every rule above."""
        if plan.check:
            return await self.run_check(plan)
        confirmation = confirmation or Confirmation()
        refusal = self.read_only_reason
        if not refusal and self.running is not None:
            waited = format_duration(time.monotonic() - self._running_since)
            return Result(
                plan=plan,
                status=Status.BUSY,
                message=f"busy: '{self.running.title}' is still running ({waited}); this did nothing",
            )
        refusal = refusal or self.confirmation_problem(plan, confirmation) or self._target_problem(plan)
        if refusal:
            events = []
            with contextlib.suppress(JournalError):
                events.append(
                    await self.journal.aappend("action.refused", **plan.journal_fields(), message=refusal)
                )
            return Result(plan=plan, status=Status.REFUSED, message=refusal, events=tuple(events))
        self.running, self._running_since = plan, time.monotonic()  # set before any await: single flight
        try:
            return await self._execute(plan, confirmation)
        finally:
            self.running = None

    @staticmethod
    def _target_problem(plan: Plan) -> str:
        if isinstance(plan.spec, _Signal) and not plan.targets:
            if plan.preview is None:
                return "preview first: sessions are signalled only as the operator saw them"
            return "nothing to do: the preview found no sessions"
        return ""

    async def _execute(self, plan: Plan, confirmation: Confirmation) -> Result:
        fields = plan.journal_fields()
        try:
            confirmed = await self.journal.aappend(
                "action.confirmed", **fields, confirmation=confirmation.word
            )
        except JournalError as exc:
            return Result(plan=plan, status=Status.REFUSED, message=f"not run: {exc}")
        started = time.monotonic()
        try:
            outcome = await self._run(plan)
        except asyncio.CancelledError:
            with contextlib.suppress(JournalError):
                self.journal.append(
                    "action.failed",
                    **fields,
                    result="cancelled",
                    duration=time.monotonic() - started,
                    message="the console stopped waiting; the action may have taken effect",
                )
            raise
        duration = time.monotonic() - started
        event = "action.succeeded" if outcome.status == Status.SUCCEEDED else "action.failed"
        recorded, message, events = True, outcome.message, [confirmed]
        try:
            events.append(
                await self.journal.aappend(
                    event,
                    **fields,
                    result=str(outcome.status),
                    message=outcome.message,
                    output=list(outcome.lines[:SHOW_LINES]),
                    duration=round(duration, 4),
                    data=dict(outcome.data),
                )
            )
        except JournalError as exc:
            recorded = False
            message = f"{outcome.message} — NOT RECORDED: {exc}"
        return Result(
            plan=plan,
            status=outcome.status,
            message=message,
            lines=outcome.lines,
            duration=duration,
            recorded=recorded,
            data=outcome.data,
            events=tuple(events),
        )

    async def _run(self, plan: Plan) -> _Outcome:
        runner = _RUNNERS[type(plan.spec)]
        try:
            async with asyncio.timeout(plan.timeout):
                return await runner(self, plan)
        except TimeoutError:
            return _Outcome(Status.TIMEOUT, f"timed out after {plan.timeout:g}s (stopped)")
        except RenderError as exc:
            return _Outcome(Status.FAILED, str(exc))
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            cluster = getattr(plan.spec, "cluster", None)
            return _Outcome(Status.FAILED, str(classify_error(exc, cluster)))
        except httpx.HTTPError as exc:
            return _Outcome(Status.FAILED, one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200))
        except Exception as exc:  # a broken backend must not take the console down
            return _Outcome(Status.FAILED, one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200))

    async def run_check(self, plan: Plan) -> Result:
        """Run a read-only check (no confirmation, allowed in read-only mode) and journal it."""
        if not plan.check:
            raise ValueError("run_check takes a check plan; actions go through execute()")
        key = f"{plan.run}/{plan.step}/{plan.summary}"
        if key in self._checks:
            return Result(
                plan=plan, status=Status.BUSY, message="this check is already running; this did nothing"
            )
        self._checks.add(key)
        started = time.monotonic()
        try:
            outcome = await self._run(plan)
        finally:
            self._checks.discard(key)
        duration = time.monotonic() - started
        status = Status.PASSED if outcome.status == Status.SUCCEEDED else Status.FAILED
        events = []
        with contextlib.suppress(JournalError):
            events.append(
                await self.journal.aappend(
                    f"check.{'passed' if status == Status.PASSED else 'failed'}",
                    **plan.journal_fields(),
                    result=str(status),
                    message=outcome.message,
                    output=list(outcome.lines[:SHOW_LINES]),
                    duration=round(duration, 4),
                )
            )
        return Result(
            plan=plan,
            status=status,
            message=outcome.message,
            lines=outcome.lines,
            duration=duration,
            recorded=bool(events),
            data=outcome.data,
            events=tuple(events),
        )


# --- SQL ------------------------------------------------------------------------------------------

_INT_TYPES = {"int2", "int4", "int8", "oid"}


def _to_datetime(value: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))


_COERCE: dict[str, Callable[[str], Any]] = {
    **{name: int for name in _INT_TYPES},
    "float4": float,
    "float8": float,
    "numeric": Decimal,
    "bool": lambda v: v.strip().lower() in ("true", "t", "yes", "y", "on", "1"),
    "timestamptz": _to_datetime,
    "timestamp": lambda v: _to_datetime(v).replace(tzinfo=None),
    "interval": lambda v: timedelta(seconds=float(v)),
}


def _coerce(value: Scalar, type_name: str) -> Any:
    """A rendered parameter as the Python value asyncpg wants for the parameter's type."""
    convert = _COERCE.get(type_name)
    if convert is None or not isinstance(value, str):
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and type_name in ("text", "varchar")
        ):
            return str(value)
        return value
    if value.strip() == "":
        return None
    try:
        return convert(value)
    except (ValueError, InvalidOperation, OverflowError):
        raise RenderError(f"parameter '{one_line(value, 40)}' is not a valid {type_name}") from None


async def _prepared_fetch(
    conn: asyncpg.Connection, statement: str, params: Sequence[Scalar], timeout: float
) -> tuple[list[asyncpg.Record], tuple[str, ...]]:
    prepared = await conn.prepare(statement)
    types = [t.name for t in prepared.get_parameters()]
    if len(types) != len(params):
        raise RenderError(f"the statement takes {len(types)} parameters, the spec gives {len(params)}")
    rows = await prepared.fetch(*(_coerce(v, t) for v, t in zip(params, types, strict=True)), timeout=timeout)
    return rows, tuple(a.name for a in prepared.get_attributes())


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, timedelta):
        return format_duration(value.total_seconds())
    if value is None:
        return "NULL"
    return one_line(redact.scrub(str(value)), 120)


def _table(rows: Sequence[asyncpg.Record], columns: Sequence[str], limit: int = PREVIEW_ROWS) -> Preview:
    shown = tuple(tuple(_cell(v) for v in row.values()) for row in rows[:limit])
    return Preview(tuple(one_line(c, 60) for c in columns), shown, truncated=len(rows) > limit)


@contextlib.asynccontextmanager
async def _session(cluster: PostgresCluster, timeout: float, purpose: str):
    conn = await connect(cluster, purpose=purpose)
    try:
        # Server-side limit as well: a cancelled client must not leave the statement running.
        await conn.execute(
            "SELECT pg_catalog.set_config('statement_timeout', $1, false)", f"{max(1, int(timeout * 1000))}ms"
        )
        yield conn
    finally:
        conn.terminate() if conn.is_in_transaction() else await _close(conn)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except (Exception, asyncio.CancelledError):
        conn.terminate()


async def _read_only_query(
    cluster: PostgresCluster, statement: str, params: Sequence[Scalar], timeout: float
) -> tuple[list[asyncpg.Record], tuple[str, ...]]:
    async with _session(cluster, timeout, "check") as conn, conn.transaction(readonly=True):
        return await _prepared_fetch(conn, statement, params, timeout)


async def _run_sql(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Sql = plan.spec
    if spec.read_only:
        rows, columns = await _read_only_query(spec.cluster, spec.statement, spec.params, plan.timeout)
        return _judge(
            spec.expect or Expect(),
            _Observed(rows=len(rows), values=_first_column(rows)),
            _table(rows, columns),
        )
    async with _session(spec.cluster, plan.timeout, "action") as conn:
        if spec.transaction:
            async with conn.transaction():
                rows, columns = await _prepared_fetch(conn, spec.statement, spec.params, plan.timeout)
        else:
            rows, columns = await _prepared_fetch(conn, spec.statement, spec.params, plan.timeout)
    table = _table(rows, columns, SHOW_LINES)
    return _Outcome(
        Status.SUCCEEDED,
        f"done: {len(rows)} row{'s' if len(rows) != 1 else ''}",
        table.lines() if columns else (),
    )


# One statement re-checks and signals: a pid that now belongs to another session (or to no
# session, or to this one) is not signalled. Half a microsecond of slack: epoch floats.
_SIGNAL_SQL = """
SELECT t.pid,
       a.pid IS NOT NULL AS same_session,
       CASE WHEN a.pid IS NULL THEN NULL
            WHEN $3::text = 'terminate' THEN pg_catalog.pg_terminate_backend(a.pid)
            ELSE pg_catalog.pg_cancel_backend(a.pid) END AS signalled
FROM unnest($1::int[], $2::float8[]) AS t(pid, backend_start)
LEFT JOIN pg_catalog.pg_stat_activity a
       ON a.pid = t.pid
      AND abs(extract(epoch FROM a.backend_start)::float8 - t.backend_start) < 0.0000005
      AND a.pid <> pg_catalog.pg_backend_pid()
ORDER BY t.pid
"""


def _epoch(value: Any) -> float | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


async def _preview_signal(executor: Executor, plan: Plan) -> Plan:
    spec: _Signal = plan.spec
    if spec.select is None:  # a session picked in the table: show it again, bound as it was seen
        target = plan.targets[0]
        note = f"pid {target.pid}, backend started {utc_iso(target.backend_start)}" + (
            f": {target.label}" if target.label else ""
        )
        return replace(plan, preview=Preview(note=note))
    try:
        rows, columns = await _read_only_query(spec.cluster, spec.select, spec.params, plan.timeout)
    except Exception as exc:
        return replace(plan, preview=Preview(error=_reason(exc, spec.cluster)), targets=())
    if "pid" not in columns or "backend_start" not in columns:
        return replace(
            plan,
            preview=Preview(error="the select must return the columns pid and backend_start"),
            targets=(),
        )
    own = console_pids(spec.cluster)
    targets, kept = [], []
    for row in rows:
        pid, started = row["pid"], _epoch(row["backend_start"])
        if isinstance(pid, int) and started is not None and pid not in own:
            targets.append(Target(pid, started))
            kept.append(row)
    preview = _table(kept, columns)
    word = plan.confirm.expected
    if not spec.confirm_override:
        word = str(targets[0].pid) if len(targets) == 1 else spec.cluster.name
    count = f"{len(targets)} session{'s' if len(targets) != 1 else ''}"
    summary = f"{spec.signal} {count} on {spec.cluster.name}" + (
        f" (pid {targets[0].pid})" if len(targets) == 1 else ""
    )
    confirm = executor._confirm_spec(plan.dangerous, word, summary)
    return replace(plan, preview=preview, targets=tuple(targets), confirm=confirm, summary=summary)


async def _preview_sql(executor: Executor, plan: Plan) -> Plan:
    spec: _Sql = plan.spec
    if spec.preview is None:
        return replace(plan, preview=Preview(note=f"touches: {plan.target}"))
    try:
        rows, columns = await _read_only_query(spec.cluster, spec.preview[0], spec.preview[1], plan.timeout)
    except Exception as exc:
        return replace(plan, preview=Preview(error=_reason(exc, spec.cluster)))
    return replace(plan, preview=_table(rows, columns))


async def _run_signal(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Signal = plan.spec
    pids = [t.pid for t in plan.targets]
    starts = [t.backend_start for t in plan.targets]
    async with _session(spec.cluster, plan.timeout, "action") as conn:
        rows = await conn.fetch(_SIGNAL_SQL, pids, starts, spec.signal, timeout=plan.timeout)
    done = [r["pid"] for r in rows if r["signalled"]]
    stale = [r["pid"] for r in rows if not r["same_session"]]
    unsent = [r["pid"] for r in rows if r["same_session"] and not r["signalled"]]
    verb = "terminated" if spec.signal == "terminate" else "cancelled the query of"
    lines = [f"{verb} pid {pid}" for pid in done]
    lines += [
        f"skipped pid {pid}: no longer the session you saw (it ended, or the pid was reused)" for pid in stale
    ]
    lines += [f"pid {pid}: the server did not signal it" for pid in unsent]
    if done:
        return _Outcome(
            Status.SUCCEEDED,
            f"{verb} {_pids(done)}" + (f"; {len(stale) + len(unsent)} skipped" if stale or unsent else ""),
            tuple(lines),
            {"signalled": done},
        )
    if stale and not unsent:
        return _Outcome(
            Status.REFUSED, f"nothing signalled: {_pids(stale)} no longer the session you saw", tuple(lines)
        )
    return _Outcome(Status.FAILED, f"nothing signalled: {_pids(unsent or stale)}", tuple(lines))


def _pids(pids: Sequence[int]) -> str:
    return "pid " + ", ".join(map(str, pids)) if len(pids) <= 5 else f"{len(pids)} sessions"


async def _validate_sql(executor: Executor, plan: Plan) -> list[str]:
    spec = plan.spec
    statement = spec.statement if isinstance(spec, _Sql) else (spec.select or _SIGNAL_SQL)
    try:
        async with _session(spec.cluster, plan.timeout, "check") as conn:
            prepared = await conn.prepare(statement)  # parses and plans; runs nothing
            count = len(prepared.get_parameters())
    except Exception as exc:
        return [f"the statement does not prepare: {_reason(exc, spec.cluster)}"]
    given = len(spec.params)
    return [] if count == given else [f"the statement takes {count} parameters, the spec gives {given}"]


def _reason(exc: BaseException, cluster: PostgresCluster | None = None) -> str:
    if isinstance(exc, RenderError):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError | TimeoutError):
        return str(classify_error(exc, cluster))
    return one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200)


# --- HTTP -----------------------------------------------------------------------------------------


async def _request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: Any,
    verify: bool | str,
    timeout: float,
    params: Mapping[str, str] | None = None,
) -> tuple[int, str, bytes]:
    async with (
        httpx.AsyncClient(verify=verify, follow_redirects=False, timeout=timeout) as client,
        client.stream(method, url, headers=dict(headers), json=body, params=params) as response,
    ):
        try:
            payload = await read_capped(response, BODY_LIMIT)
        except BodyTooLarge:
            payload = b"(answer larger than the read limit)"
        return response.status_code, response.headers.get("content-type", ""), payload


def _body_lines(payload: bytes, limit: int = SHOW_LINES) -> tuple[str, ...]:
    text = redact.scrub(payload.decode("utf-8", "replace"))
    return tuple(one_line(line, 200) for line in text.splitlines()[:limit] if line.strip())


async def _run_http(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Http = plan.spec
    status, content_type, payload = await _request(
        spec.method, spec.url, spec.headers, spec.body, spec.verify, plan.timeout
    )
    observed = _Observed(status=status, body=payload, content_type=content_type)
    expect = spec.expect or Expect()
    passed, why = _evaluate(expect, observed)
    lines = (f"HTTP {status}", *_body_lines(payload))
    if passed:
        return _Outcome(
            Status.SUCCEEDED, f"HTTP {status}" + (f": {why}" if why and spec.check else ""), lines
        )
    return _Outcome(Status.FAILED, f"HTTP {status}: {why}", lines)


async def _validate_http(executor: Executor, plan: Plan) -> list[str]:
    return []  # the URL was checked when the plan was rendered; a dry-run sends nothing


# --- argv -----------------------------------------------------------------------------------------


async def _run_argv(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Argv = plan.spec
    env = {**os.environ, **spec.env}
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills all of it
            env=env,
        )
    except FileNotFoundError:
        return _Outcome(Status.FAILED, f"command not found: {one_line(spec.argv[0], 120)}")
    except PermissionError:
        return _Outcome(Status.FAILED, f"not executable: {one_line(spec.argv[0], 120)}")
    try:
        output = await _read_output(proc)
        code = await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc)
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wait_for(proc.wait(), 5))
        raise
    lines = (f"exit status {code}", *_body_lines(output))
    if code == 0:
        return _Outcome(Status.SUCCEEDED, f"exit status 0{': ' + lines[1] if len(lines) > 1 else ''}", lines)
    return _Outcome(Status.FAILED, f"exit status {code}{': ' + lines[-1] if len(lines) > 1 else ''}", lines)


async def _read_output(proc: asyncio.subprocess.Process) -> bytes:
    kept = bytearray()
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(65536):
        if len(kept) < OUTPUT_LIMIT:
            kept += chunk[: OUTPUT_LIMIT - len(kept)]
    return bytes(kept)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signals.SIGKILL)


async def _validate_argv(executor: Executor, plan: Plan) -> list[str]:
    program = plan.spec.argv[0]
    if os.sep in program:
        ok = os.path.isfile(program) and os.access(program, os.X_OK)
    else:
        import shutil

        ok = shutil.which(program) is not None
    return [] if ok else [f"'{one_line(program, 120)}' is not an executable program here"]


# --- Alertmanager silences ----------------------------------------------------------------------------


async def _run_silence(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Silence = plan.spec
    if spec.expire is not None:
        url = f"{spec.base}/api/v2/silence/{quote(spec.expire, safe='')}"
        status, _, payload = await _request("DELETE", url, spec.headers, None, spec.verify, plan.timeout)
        if 200 <= status < 300:
            return _Outcome(
                Status.SUCCEEDED, f"silence {spec.expire} expired", data={"silence_id": spec.expire}
            )
        return _Outcome(Status.FAILED, f"Alertmanager answered HTTP {status}", _body_lines(payload))
    now = executor.clock()
    ends_at = now + spec.duration
    body = {
        "matchers": [
            {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in spec.matchers.items()
        ],
        "startsAt": utc_iso(now),
        "endsAt": utc_iso(ends_at),
        "createdBy": str(executor.operator),
        "comment": spec.comment,
    }
    status, _, payload = await _request(
        "POST", f"{spec.base}/api/v2/silences", spec.headers, body, spec.verify, plan.timeout
    )
    if not 200 <= status < 300:
        return _Outcome(Status.FAILED, f"Alertmanager answered HTTP {status}", _body_lines(payload))
    try:
        silence_id = str(json.loads(payload)["silenceID"])
    except (ValueError, KeyError, TypeError):
        return _Outcome(Status.FAILED, "Alertmanager's answer has no silenceID", _body_lines(payload))
    until = datetime.fromtimestamp(ends_at, UTC).strftime("%H:%M:%S UTC")
    return _Outcome(
        Status.SUCCEEDED,
        f"silenced until {until} (silence {one_line(silence_id, 60)})",
        data={"silence_id": one_line(silence_id, 60), "ends_at": ends_at},
    )


async def _preview_silence(executor: Executor, plan: Plan) -> Plan:
    spec: _Silence = plan.spec
    if spec.expire is not None:
        return replace(plan, preview=Preview(note=f"touches: {plan.target}"))
    filters = [f'{k}="{v}"' for k, v in spec.matchers.items()]
    try:
        status, _, payload = await _request(
            "GET",
            f"{spec.base}/api/v2/alerts",
            spec.headers,
            None,
            spec.verify,
            min(plan.timeout, 5.0),
            params={"filter": filters},  # type: ignore[dict-item]
        )
        alerts = json.loads(payload) if status == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        return replace(plan, preview=Preview(error=one_line(redact.scrub(str(exc)), 200)))
    if not isinstance(alerts, list):
        return replace(plan, preview=Preview(error=f"Alertmanager answered HTTP {status}"))
    rows = tuple(
        (
            one_line(a.get("labels", {}).get("alertname", "?"), 60),
            one_line((a.get("status") or {}).get("state", "?"), 20),
        )
        for a in alerts
        if isinstance(a, dict)
    )
    return replace(
        plan, preview=Preview(("alertname", "state"), rows[:PREVIEW_ROWS], note="alerts it silences now:")
    )


# --- checks: PromQL and expectations ------------------------------------------------------------------


async def _run_promql(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Prom = plan.spec
    status, _, payload = await _request(
        "GET",
        f"{spec.base}/api/v1/query",
        spec.headers,
        None,
        spec.verify,
        plan.timeout,
        params={"query": spec.query},
    )
    try:
        doc = json.loads(payload)
        data = doc["data"]
        kind, result = data["resultType"], data["result"]
    except (ValueError, KeyError, TypeError):
        return _Outcome(
            Status.FAILED, f"Prometheus answered HTTP {status} without a result", _body_lines(payload, 5)
        )
    if kind == "scalar":
        samples = [("", float(result[1]))]
    elif kind == "vector":
        samples = [
            (", ".join(f"{k}={v}" for k, v in sorted(s.get("metric", {}).items())), float(s["value"][1]))
            for s in result
        ]
    else:
        return _Outcome(Status.FAILED, f"expected an instant vector or scalar, got {kind}")
    lines = tuple(one_line(f"{labels or '{}'} = {value:g}", 200) for labels, value in samples[:SHOW_LINES])
    passed, why = _evaluate(spec.expect, _Observed(rows=len(samples), values=[v for _, v in samples]))
    return _Outcome(Status.SUCCEEDED if passed else Status.FAILED, why, lines or ("(no series)",))


@dataclass(slots=True)
class _Observed:
    rows: int | None = None
    values: list[Any] | None = None
    status: int | None = None
    body: bytes = b""
    content_type: str = ""


def _first_column(rows: Sequence[asyncpg.Record]) -> list[Any]:
    return [row[0] for row in rows if len(row)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None


def _expect_status(expect: Expect, seen: _Observed) -> tuple[bool, str]:
    if seen.status is None:
        return True, ""
    wanted = expect.status
    ok = seen.status in wanted if wanted else 200 <= seen.status < 300
    return ok, "" if ok else f"expected HTTP {', '.join(map(str, wanted)) if wanted else '2xx'}"


def _json_path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise KeyError(path)
    return doc


def _expect_json(expect: Expect, seen: _Observed) -> tuple[bool, str]:
    if not expect.json_:
        return True, ""
    try:
        doc = json.loads(seen.body)
    except ValueError:
        return False, "the answer is not JSON"
    for path, wanted in expect.json_.items():
        try:
            got = _json_path(doc, path)
        except KeyError:
            return False, f"no '{path}' in the answer"
        if got != wanted:
            return (
                False,
                f"{path} is {one_line(json.dumps(got), 60)}, expected {one_line(json.dumps(wanted), 60)}",
            )
    return True, ", ".join(f"{p} = {json.dumps(v)}" for p, v in expect.json_.items())


def _expect_contains(expect: Expect, seen: _Observed) -> tuple[bool, str]:
    if expect.contains is None:
        return True, ""
    ok = expect.contains in seen.body.decode("utf-8", "replace")
    return ok, "" if ok else f"the answer does not contain '{one_line(expect.contains, 40)}'"


def _expect_rows(expect: Expect, seen: _Observed) -> tuple[bool, str]:
    if seen.rows is None:
        return True, ""
    if expect.max_rows is not None and seen.rows > expect.max_rows:
        return False, f"{seen.rows} rows, expected at most {expect.max_rows}"
    if expect.min_rows is not None and seen.rows < expect.min_rows:
        return False, f"{seen.rows} rows, expected at least {expect.min_rows}"
    return True, f"{seen.rows} row{'s' if seen.rows != 1 else ''}"


def _expect_values(expect: Expect, seen: _Observed) -> tuple[bool, str]:
    if expect.below is None and expect.above is None and expect.equals is None:
        return True, ""
    values = seen.values or []
    if not values:
        return expect.no_data == "pass", "no value" + ("" if expect.no_data == "pass" else " (no data)")
    if expect.equals is not None:
        got = values[0]
        same = (
            _number(got) == _number(expect.equals)
            if _number(expect.equals) is not None
            else str(got) == str(expect.equals)
        )
        if not same:
            return False, f"value {one_line(str(got), 40)}, expected {expect.equals}"
    numbers = [_number(v) for v in values]
    if (expect.below is not None or expect.above is not None) and None in numbers:
        return False, "a value is not a number"
    for n in numbers:
        if expect.below is not None and not n < expect.below:
            return False, f"value {n:g}, expected below {expect.below:g}"
        if expect.above is not None and not n > expect.above:
            return False, f"value {n:g}, expected above {expect.above:g}"
    worst = (
        max(numbers)
        if expect.below is not None
        else (min(numbers) if numbers and None not in numbers else None)
    )
    return True, f"value {worst:g}" if isinstance(worst, float) else "value as expected"


_EXPECTATIONS = (_expect_status, _expect_json, _expect_contains, _expect_rows, _expect_values)


def _evaluate(expect: Expect, seen: _Observed) -> tuple[bool, str]:
    notes = []
    for rule in _EXPECTATIONS:
        ok, why = rule(expect, seen)
        if not ok:
            return False, why
        if why:
            notes.append(why)
    return True, "; ".join(notes) or "as expected"


def _judge(expect: Expect, seen: _Observed, table: Preview) -> _Outcome:
    passed, why = _evaluate(expect, seen)
    return _Outcome(Status.SUCCEEDED if passed else Status.FAILED, why, table.lines()[:SHOW_LINES])


# --- dispatch tables ----------------------------------------------------------------------------------

_ACTION_RENDERERS: dict[str, Callable[..., _Rendered]] = {
    "sql": Executor._render_sql_action,
    "signal": Executor._render_signal,
    "http": Executor._render_http_action,
    "argv": Executor._render_argv,
    "silence": Executor._render_silence,
}
_CHECK_RENDERERS: dict[str, Callable[..., _Rendered]] = {
    "sql": Executor._render_sql_check,
    "promql": Executor._render_promql,
    "http": Executor._render_http_check,
}
_RUNNERS: dict[type, Callable[[Executor, Plan], Awaitable[_Outcome]]] = {
    _Sql: _run_sql,
    _Signal: _run_signal,
    _Http: _run_http,
    _Argv: _run_argv,
    _Silence: _run_silence,
    _Prom: _run_promql,
}
_PREVIEWERS: dict[type, Callable[[Executor, Plan], Awaitable[Plan]]] = {
    _Signal: _preview_signal,
    _Sql: _preview_sql,
    _Silence: _preview_silence,
}
_VALIDATORS: dict[type, Callable[[Executor, Plan], Awaitable[list[str]]]] = {
    _Sql: _validate_sql,
    _Signal: _validate_sql,
    _Http: _validate_http,
    _Argv: _validate_argv,
}
