"""HTTP for the HTTP kinds (actions, checks, PromQL, Alertmanager silences): one capped httpx
request per call; a request rendered into what it sends and what the plan shows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from console import redact
from console.actions.expect import Observed, verdict
from console.actions.kind import Rendered
from console.actions.plans import BODY_LIMIT, Outcome, Plan, Status, body_lines, show_header
from console.actions.specs import Expect
from console.actions.templates import Context, RenderError, render_json, render_text
from console.config import check_http_url
from console.httpio import BodyTooLarge, read_capped, tls_verify
from console.sanitize import one_line

BODY_IN_SUMMARY = 80  # characters of a request's body in its one-line summary


async def request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: Any,
    verify: bool | str,
    timeout: float,
    params: Mapping[str, Any] | None = None,
    follow_redirects: bool = False,
) -> tuple[int, str, bytes]:
    """(status, content type, body read up to BODY_LIMIT). Redirects are followed (five at most)
    only when asked: a health probe does, as the console's polls do; an action never."""
    client = httpx.AsyncClient(
        verify=tls_verify(verify), follow_redirects=follow_redirects, max_redirects=5, timeout=timeout
    )
    async with (
        client,
        client.stream(method, url, headers=dict(headers), json=body, params=params) as response,
    ):
        try:
            payload = await read_capped(response, BODY_LIMIT)
        except BodyTooLarge:
            payload = b"(answer larger than the read limit)"
        return response.status_code, response.headers.get("content-type", ""), payload


@dataclass(frozen=True, slots=True)
class HttpJob:
    """A request with its real values, as an HTTP action or check runs it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: Any
    verify: bool
    expect: Expect | None
    check: bool = False


def render_request(
    method: str,
    url_template: str,
    header_templates: Mapping[str, str],
    body_template: Any,
    verify: bool,
    expect: Expect | None,
    ctx: Context,
    *,
    check: bool,
) -> Rendered:
    """A request made concrete; the word to type is the (trusted) service, else the host."""
    url, url_shown = render_text(url_template, ctx, "url")
    try:
        check_http_url(url)
    except ValueError as exc:
        raise RenderError(str(exc)) from None
    headers: dict[str, str] = {}
    lines = [f"{method} {redact.url(url_shown)}"]
    for name, template in header_templates.items():
        headers[name], shown = render_text(template, ctx)
        lines.append(show_header(name, shown))
    body, summary = None, f"{method} {redact.url(url_shown)}"
    if body_template is not None:
        body, body_shown = render_json(body_template, ctx)
        lines.append("body: " + redact.scrub(json.dumps(body_shown, ensure_ascii=False)))
        # The body is part of what the action is: route-only and normal are two POSTs to
        # /admin/mode, and a claim (console/journal/claims.py) is keyed by the summary.
        compact = redact.scrub(json.dumps(body_shown, ensure_ascii=False, separators=(",", ":")))
        summary = f"{summary} {one_line(compact, BODY_IN_SUMMARY)}"
    service = ctx.get("service")
    host = urlsplit(url).hostname or "?"
    return Rendered(
        summary=summary,
        lines=tuple(lines),
        target=f"{service.text if service else host} ({redact.url(url_shown)})",
        job=HttpJob(method, url, headers, body, verify, expect, check),
        word=service.text if service and service.trusted else host,
    )


async def run_request(plan: Plan) -> Outcome:
    """Send the plan's request; the answer is judged by its expect (default: any 2xx)."""
    job: HttpJob = plan.spec
    status, content_type, payload = await request(
        job.method, job.url, job.headers, job.body, job.verify, plan.timeout
    )
    observed = Observed(status=status, body=payload, content_type=content_type)
    judged, why = verdict(job.expect or Expect(), observed)
    lines = (f"HTTP {status}", *body_lines(payload))
    if judged is Status.SUCCEEDED:
        return Outcome(judged, f"HTTP {status}" + (f": {why}" if why and job.check else ""), lines)
    if judged is Status.NOT_MET and not job.check:
        judged = Status.FAILED  # an action answered otherwise than it should: it failed
    return Outcome(judged, f"HTTP {status}: {why}", lines)
