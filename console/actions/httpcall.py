"""HTTP actions and checks, Alertmanager silences and PromQL checks: one capped httpx request
per call, answers scrubbed of secrets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from console import redact
from console.actions.expect import _evaluate, _Observed
from console.actions.plans import (
    BODY_LIMIT,
    PREVIEW_ROWS,
    SHOW_LINES,
    Plan,
    Preview,
    Status,
    _body_lines,
    _Http,
    _Outcome,
    _Prom,
    _Silence,
)
from console.actions.specs import Expect
from console.httpio import BodyTooLarge, read_capped, tls_verify
from console.journal import utc_iso
from console.sanitize import one_line

if TYPE_CHECKING:
    from console.actions.executor import Executor


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
        httpx.AsyncClient(verify=tls_verify(verify), follow_redirects=False, timeout=timeout) as client,
        client.stream(method, url, headers=dict(headers), json=body, params=params) as response,
    ):
        try:
            payload = await read_capped(response, BODY_LIMIT)
        except BodyTooLarge:
            payload = b"(answer larger than the read limit)"
        return response.status_code, response.headers.get("content-type", ""), payload


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
