"""``action: {http: ...}``: one HTTP request (POST by default) to a service; its answer must be
what ``expect`` says (default: any 2xx)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from console.actions.httpcall import render_request, run_request
from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import Outcome, Plan
from console.actions.specs import ActionSpec, Expect, Spec
from console.actions.templates import Context


class HttpAction(Spec):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(None, alias="json")
    verify_tls: bool = True
    expect: Expect | None = None  # default: any 2xx


class HttpActionSpec(ActionSpec):
    kind: ClassVar[str] = "http"
    http: HttpAction


class HttpActionKind:
    name = "http"
    key = "http"
    spec = HttpActionSpec
    binds_targets = False
    last_write_wins = True  # a request with another body to the same URL replaces this one's effect

    def render(self, spec: HttpActionSpec, ctx: Context, env: KindContext) -> Rendered:
        http = spec.http
        expect = None if http.expect is None else env.resolve_expect(http.expect, ctx)
        return render_request(
            http.method, http.url, http.headers, http.json_, http.verify_tls, expect, ctx, check=False
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        return touches(plan)

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        return []  # the URL was checked when the plan was rendered; a dry-run sends nothing

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        return await run_request(plan)
