"""``check: {promql: ...}``: an instant query to the configured Prometheus; each series' value
judged by ``expect``. Values from backends are escaped in the query. Under a demo time scale
(``runbooks.time_scale``) the query's range windows are scaled (``[5m]`` runs as ``[10s]`` at
1/30); ``expect`` may name a threshold of the config instead of a number."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from console import redact
from console.actions.expect import Observed, verdict
from console.actions.httpcall import request
from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import SHOW_LINES, Outcome, Plan, Status, body_lines
from console.actions.specs import CheckSpec, Expect, Spec
from console.actions.templates import Context, render_text
from console.sanitize import one_line


class PromQuery(Spec):
    query: str = Field(min_length=1)


class PromQLCheckSpec(CheckSpec):
    kind: ClassVar[str] = "promql"
    promql: PromQuery


@dataclass(frozen=True, slots=True)
class _Prom:
    base: str
    headers: Mapping[str, str]
    verify: bool | str
    query: str
    expect: Expect


class PromQLCheckKind:
    name = "promql check"
    key = "promql"
    spec = PromQLCheckSpec
    binds_targets = False
    last_write_wins = False

    def render(self, spec: PromQLCheckSpec, ctx: Context, env: KindContext) -> Rendered:
        api = env.prometheus_api()
        query, shown = render_text(spec.promql.query, ctx, "promql")
        scaled, shown_scaled = env.scale_query(query), env.scale_query(shown)
        lines = [f"GET {redact.url(api.base)}/api/v1/query", f"query: {shown_scaled}"]
        if shown_scaled != shown:
            lines.append(f"(time scale {env.time_scale:g}: as written {shown})")
        return Rendered(
            summary=f"PromQL: {one_line(shown_scaled, 100)}",
            lines=tuple(lines),
            target=f"Prometheus {redact.url(api.base)}",
            job=_Prom(api.base, api.headers, api.verify, scaled, env.resolve_expect(spec.expect, ctx)),
            word="prometheus",
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        return touches(plan)

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        return []  # the query is sent only when the check runs

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        job: _Prom = plan.spec
        status, _, payload = await request(
            "GET",
            f"{job.base}/api/v1/query",
            job.headers,
            None,
            job.verify,
            plan.timeout,
            params={"query": job.query},
        )
        try:
            data = json.loads(payload)["data"]
            kind, result = data["resultType"], data["result"]
        except (ValueError, KeyError, TypeError):
            return Outcome(
                Status.FAILED, f"Prometheus answered HTTP {status} without a result", body_lines(payload, 5)
            )
        if kind == "scalar":
            samples = [("", float(result[1]))]
        elif kind == "vector":
            samples = [
                (", ".join(f"{k}={v}" for k, v in sorted(s.get("metric", {}).items())), float(s["value"][1]))
                for s in result
            ]
        else:
            return Outcome(Status.FAILED, f"expected an instant vector or scalar, got {kind}")
        # An aggregate has no labels: "value = 0.25", not Prometheus's "{} = 0.25".
        lines = tuple(
            one_line(f"{labels or 'value'} = {value:g}", 200) for labels, value in samples[:SHOW_LINES]
        )
        seen = Observed(
            rows=len(samples),
            values=[v for _, v in samples],
            one_value=len(samples) == 1 and not samples[0][0],
        )
        status, why = verdict(job.expect, seen)
        return Outcome(status, why, lines or ("(no series)",))
