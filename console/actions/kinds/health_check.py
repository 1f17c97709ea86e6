"""``check: {health: {target: ...}}``: a health target of the config probed the way the console
polls it — its URL, format, headers and timeout — passing when the target says pass.

A runbook that wrote ``http: {url: "{{service_url}}/health"}`` with a health+json expectation
asked a Spring service (whose health is ``/actuator/health``, ``{"status": "UP"}``) for a page it
does not have: the check could never pass. The config already says where each service's health
is and how to read it (console/healthformats.py reads the answer for both). NOT MET names the
checks that do not pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field, model_validator

from console import redact
from console.actions.httpcall import request
from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import SHOW_LINES, Outcome, Plan, Status, body_lines
from console.actions.specs import CheckSpec, Expect, Spec
from console.actions.templates import Context
from console.healthformats import NotHealth, checks_of, parse
from console.model import HealthStatus
from console.sanitize import one_line


class HealthProbe(Spec):
    target: str = Field(min_length=1)  # a health target's name; may hold {{service}}


class HealthCheckSpec(CheckSpec):
    kind: ClassVar[str] = "health"
    health: HealthProbe

    @model_validator(mode="after")
    def _no_expect(self) -> HealthCheckSpec:
        if self.expect != Expect():
            raise ValueError("a health check passes when its target says pass: it takes no expect")
        return self


@dataclass(frozen=True, slots=True)
class _Probe:
    name: str
    url: str
    format: str
    headers: Mapping[str, str]
    verify: bool | str
    timeout: float


class HealthCheckKind:
    name = "health check"
    key = "health"
    spec = HealthCheckSpec
    binds_targets = False
    last_write_wins = False

    def render(self, spec: HealthCheckSpec, ctx: Context, env: KindContext) -> Rendered:
        target = env.find_health_target(spec.health.target, ctx)
        url = redact.url(target.url)
        probe = _Probe(
            target.name,
            target.url,
            target.format,
            {name: header.value for name, header in target.headers.items()},
            target.verify_tls,
            target.timeout,
        )
        return Rendered(
            summary=f"health of {target.name}",
            lines=(
                f"GET {url} (format {target.format}, as the console polls it)",
                "passes when it says pass",
            ),
            target=f"health target {target.name}",
            job=probe,
            word=target.name,
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        return touches(plan)

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        return []  # the target was found when the plan was rendered; a dry-run sends nothing

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        probe: _Probe = plan.spec
        code, content_type, body = await request(
            "GET", probe.url, probe.headers, None, probe.verify, probe.timeout, follow_redirects=True
        )
        try:
            verdict = parse(probe.format, code, content_type, body)
        except NotHealth as exc:
            return Outcome(Status.FAILED, f"not a {probe.format} health answer: {exc}", body_lines(body, 3))
        checks, output = checks_of(verdict)
        failing = [check for check in checks if check.status is not HealthStatus.PASS]
        lines = [one_line(f"{check.status.value:<7} {check.name}: {check.detail}", 200) for check in failing]
        lines += [one_line(f"pass    {check.name}", 200) for check in checks if check not in failing]
        if output:
            lines += [one_line(line, 200) for line in output.splitlines()]
        status = verdict.status
        if status is HealthStatus.PASS:
            return Outcome(Status.SUCCEEDED, f"HTTP {code}: pass", tuple(lines[:SHOW_LINES]))
        names = ", ".join(check.name for check in failing[:3]) + (" …" if len(failing) > 3 else "")
        why = f"HTTP {code}: {status.value}{f' ({names})' if names else ''}, expected pass"
        return Outcome(Status.NOT_MET, one_line(why, 200), tuple(lines[:SHOW_LINES]))
