"""``check: {http: ...}``: a GET to a service; the answer judged by ``expect`` (status, JSON
paths, text; default: any 2xx)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from console.actions.httpcall import render_request, run_request
from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import Outcome, Plan
from console.actions.specs import CheckSpec, Spec
from console.actions.templates import Context


class HttpGet(Spec):
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True


class HttpCheckSpec(CheckSpec):
    kind: ClassVar[str] = "http"
    http: HttpGet


class HttpCheckKind:
    name = "http check"
    key = "http"
    spec = HttpCheckSpec
    binds_targets = False
    last_write_wins = False

    def render(self, spec: HttpCheckSpec, ctx: Context, env: KindContext) -> Rendered:
        http = spec.http
        expect = env.resolve_expect(spec.expect, ctx)
        return render_request("GET", http.url, http.headers, None, http.verify_tls, expect, ctx, check=True)

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        return touches(plan)

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        return []  # the URL was checked when the plan was rendered; a dry-run sends nothing

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        return await run_request(plan)
