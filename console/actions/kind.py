"""What a kind of action or check is: the :class:`Kind` protocol, and :class:`KindContext`, all a
kind may use of the console.

A kind (``console/actions/kinds/``, one module each) owns everything about itself: its spec
model, how the spec renders into what runs and what the dialog shows, what its preview looks at,
what a dry-run checks, and how it runs. It decides nothing about whether it may run: read-only,
confirmation, single flight, timeouts and the journal are the executor's, which calls a kind only
once those allow it. A kind never sees the executor."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import asyncpg

from console import promql, redact
from console.actions.plans import Outcome, Plan, Preview, Target
from console.actions.specs import ActionSpec, CheckSpec, Expect, ThresholdRef
from console.actions.templates import Context, RenderError, render_text
from console.config import HealthTarget, PostgresCluster, Prometheus, Threshold
from console.pg import classify_error
from console.sanitize import one_line


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An HTTP API from the config: base URL, headers (real values), TLS verification."""

    base: str
    headers: Mapping[str, str]
    verify: bool | str


@dataclass(frozen=True, slots=True)
class KindContext:
    """What a kind may use of the console: the configured backends (health targets too), who
    acts, the clock, the thresholds a check's ``expect`` may refer to, and the demo time scale of
    PromQL windows."""

    postgres: Sequence[PostgresCluster]
    prometheus: Prometheus | None
    operator: str
    clock: Callable[[], float]
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)  # threshold id -> levels
    time_scale: float = 1.0  # runbooks.time_scale of the config
    min_window: float = 5.0  # runbooks.min_window: a scaled range window keeps at least this
    health: Sequence[HealthTarget] = ()  # the health targets a ``health`` check probes

    def threshold_level(self, ref: ThresholdRef, ctx: Context) -> tuple[str, float]:
        """(the threshold id, the level's number) a reference names; RenderError when the
        config has no such threshold or the threshold no such level."""
        threshold_id, _ = render_text(ref.threshold, ctx)
        threshold = self.thresholds.get(threshold_id)
        if threshold is None:
            raise RenderError(f"no threshold '{one_line(threshold_id, 80)}' in the config")
        level = threshold.first_level if ref.level is None else getattr(threshold, ref.level)
        if level is None:
            raise RenderError(f"threshold '{threshold_id}' has no {ref.level} level")
        return threshold_id, float(level)

    def resolve_expect(self, expect: Expect, ctx: Context) -> Expect:
        """``expect`` with its threshold references replaced by the config's numbers."""
        refs = expect.references
        if not refs:
            return expect
        return expect.model_copy(
            update={name: self.threshold_level(ref, ctx)[1] for name, ref in refs.items()}
        )

    def scale_query(self, query: str) -> str:
        """A PromQL query with its range windows and offsets scaled by the time scale."""
        return promql.scale_expr(query, self.time_scale, self.min_window)

    def find_cluster(self, template: str, ctx: Context) -> PostgresCluster:
        """The Postgres cluster a (templated) name names; RenderError when there is none."""
        return _named(self.postgres, template, ctx, "postgres cluster", "clusters")

    def find_health_target(self, template: str, ctx: Context) -> HealthTarget:
        """The health target a (templated) name names; RenderError when there is none."""
        return _named(self.health, template, ctx, "health target", "targets")

    def prometheus_api(self) -> Endpoint:
        prom = self.prometheus
        if prom is None:
            raise RenderError("no prometheus in the config: PromQL checks cannot run")
        return Endpoint(prom.url.rstrip("/"), {k: h.value for k, h in prom.headers.items()}, prom.verify_tls)

    def alertmanager_api(self) -> Endpoint:
        prom = self.prometheus
        if prom is None or not prom.alertmanager_url:
            raise RenderError("no prometheus.alertmanager_url in the config: silences cannot be made")
        headers = {k: h.value for k, h in prom.headers.items()}
        return Endpoint(prom.alertmanager_url.rstrip("/"), headers, prom.verify_tls)


_Named = TypeVar("_Named", PostgresCluster, HealthTarget)


def _named(items: Sequence[_Named], template: str, ctx: Context, what: str, plural: str) -> _Named:
    name, _ = render_text(template, ctx)
    for item in items:
        if item.name == name:
            return item
    known = ", ".join(item.name for item in items) or "none configured"
    raise RenderError(f"no {what} '{one_line(name, 60)}' in the config ({plural}: {known})")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A spec made concrete: what the plan shows (masked) and what runs (``job``, real values)."""

    summary: str  # one line
    lines: tuple[str, ...]
    target: str  # what it acts on, in words
    job: Any  # the kind's executable form: Plan.spec
    word: str  # the word to type when the confirmation is typed (unless the spec names one)
    dangerous: bool = False  # the kind's own reason for a typed confirmation (terminate)
    scope: str = ""  # what its targets belong to ("postgres:main"), for claims


@dataclass(frozen=True, slots=True)
class Previewed:
    """What a preview found. ``targets``, ``word`` and ``summary`` are None when the preview does
    not change them."""

    preview: Preview
    targets: tuple[Target, ...] | None = None  # what the plan will act on, as the operator saw it
    word: str | None = None  # the word to type, when the plan lets the preview pick it
    summary: str | None = None


class Kind(Protocol):
    """One kind of action or check. ``name`` is the plan's kind as journaled; ``key`` its key in
    a runbook file; ``spec`` the variant of ActionSpec or CheckSpec that holds it."""

    name: str
    key: str
    spec: type[ActionSpec] | type[CheckSpec]
    binds_targets: bool  # its preview picks what it acts on: it acts only on what the operator saw
    #: Another action of the kind on the same target replaces this one's effect (mode normal after
    #: route-only, on one URL): a later one there means this one is no repeat (claims).
    last_write_wins: bool

    def render(self, spec: Any, ctx: Context, env: KindContext) -> Rendered:
        """Pure: nothing is contacted. RenderError when a value or a backend is missing."""
        ...

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        """Read-only: what the plan will touch. Never raises: a failure is ``Preview.error``."""
        ...

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        """A dry-run's problems with the plan (it would not run as shown); no effect."""
        ...

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        """Do it, within ``plan.timeout``. May raise: :func:`failure` says what went wrong."""
        ...


def touches(plan: Plan) -> Previewed:
    """The preview of a kind with nothing to look at: what it acts on, in words."""
    return Previewed(Preview(note=f"touches: {plan.target}"))


def failure(exc: Exception, plan: Plan) -> str:
    """One line for an error a kind's run raised: Postgres errors classified, secrets scrubbed."""
    if isinstance(exc, RenderError):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
        return str(classify_error(exc, getattr(plan.spec, "cluster", None)))
    return one_line(redact.scrub(f"{type(exc).__name__}: {exc}"), 200)
