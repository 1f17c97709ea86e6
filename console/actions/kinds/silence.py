"""``action: {silence: ...}``: create an Alertmanager silence on exact label matchers (an alert's
ack, createdBy the operator), or expire one (un-ack)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar
from urllib.parse import quote

import httpx
from pydantic import Field, model_validator

from console import redact
from console.actions.httpcall import request
from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import PREVIEW_ROWS, Outcome, Plan, Preview, Status, body_lines
from console.actions.specs import ActionSpec, Spec
from console.actions.templates import Context, render_text
from console.config import Duration
from console.journal import utc_iso
from console.rules import format_duration
from console.sanitize import one_line


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


class SilenceActionSpec(ActionSpec):
    kind: ClassVar[str] = "silence"
    silence: SilenceAction


@dataclass(frozen=True, slots=True)
class _Silence:
    base: str
    headers: Mapping[str, str]
    verify: bool | str
    matchers: Mapping[str, str]
    duration: float
    comment: str
    expire: str | None


class SilenceKind:
    name = "silence"
    key = "silence"
    spec = SilenceActionSpec
    binds_targets = False
    last_write_wins = False

    def render(self, spec: SilenceActionSpec, ctx: Context, env: KindContext) -> Rendered:
        sil = spec.silence
        api = env.alertmanager_api()
        if sil.expire is not None:
            silence_id, shown = render_text(sil.expire, ctx)
            url = f"{api.base}/api/v2/silence/{quote(silence_id, safe='')}"
            return Rendered(
                summary=f"expire silence {shown}",
                lines=(f"DELETE {redact.url(url)}",),
                target=f"Alertmanager silence {shown}",
                job=_Silence(api.base, api.headers, api.verify, {}, 0.0, "", silence_id),
                word=shown,
            )
        matchers, shown_matchers = {}, []
        for name, template in sil.matchers.items():
            matchers[name], shown = render_text(template, ctx)
            shown_matchers.append(f"{name}={shown}")
        comment = render_text(sil.comment, ctx)[0] if sil.comment else ""
        comment = comment or f"acknowledged in incident-console by {env.operator}"
        ends = utc_iso(env.clock() + sil.duration)
        lines = (
            f"POST {redact.url(api.base)}/api/v2/silences",
            f"matchers: {', '.join(shown_matchers)}",
            f"for {format_duration(sil.duration)} (until about {ends})",
            f"createdBy: {env.operator}",
            f"comment: {redact.scrub(comment)}",
        )
        return Rendered(
            summary=f"silence {', '.join(shown_matchers)} for {format_duration(sil.duration)}",
            lines=lines,
            target=f"Alertmanager alerts matching {', '.join(shown_matchers)}",
            job=_Silence(api.base, api.headers, api.verify, matchers, sil.duration, comment, None),
            word=matchers.get("alertname", "silence"),
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        job: _Silence = plan.spec
        if job.expire is not None:
            return touches(plan)
        filters = [f'{k}="{v}"' for k, v in job.matchers.items()]
        try:
            status, _, payload = await request(
                "GET",
                f"{job.base}/api/v2/alerts",
                job.headers,
                None,
                job.verify,
                min(plan.timeout, 5.0),
                params={"filter": filters},
            )
            alerts = json.loads(payload) if status == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            return Previewed(Preview(error=one_line(redact.scrub(str(exc)), 200)))
        if not isinstance(alerts, list):
            return Previewed(Preview(error=f"Alertmanager answered HTTP {status}"))
        rows = tuple(
            (
                one_line(a.get("labels", {}).get("alertname", "?"), 60),
                one_line((a.get("status") or {}).get("state", "?"), 20),
            )
            for a in alerts
            if isinstance(a, dict)
        )
        return Previewed(Preview(("alertname", "state"), rows[:PREVIEW_ROWS], note="alerts it silences now:"))

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        return []  # the Alertmanager was named when the plan was rendered; a dry-run sends nothing

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        job: _Silence = plan.spec
        if job.expire is not None:
            url = f"{job.base}/api/v2/silence/{quote(job.expire, safe='')}"
            status, _, payload = await request("DELETE", url, job.headers, None, job.verify, plan.timeout)
            if 200 <= status < 300:
                return Outcome(
                    Status.SUCCEEDED, f"silence {job.expire} expired", data={"silence_id": job.expire}
                )
            return Outcome(Status.FAILED, f"Alertmanager answered HTTP {status}", body_lines(payload))
        now = env.clock()
        ends_at = now + job.duration
        body = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in job.matchers.items()
            ],
            "startsAt": utc_iso(now),
            "endsAt": utc_iso(ends_at),
            "createdBy": env.operator,
            "comment": job.comment,
        }
        status, _, payload = await request(
            "POST", f"{job.base}/api/v2/silences", job.headers, body, job.verify, plan.timeout
        )
        if not 200 <= status < 300:
            return Outcome(Status.FAILED, f"Alertmanager answered HTTP {status}", body_lines(payload))
        try:
            silence_id = str(json.loads(payload)["silenceID"])
        except (ValueError, KeyError, TypeError):
            return Outcome(Status.FAILED, "Alertmanager's answer has no silenceID", body_lines(payload))
        until = datetime.fromtimestamp(ends_at, UTC).strftime("%H:%M:%S UTC")
        return Outcome(
            Status.SUCCEEDED,
            f"silenced until {until} (silence {one_line(silence_id, 60)})",
            data={"silence_id": one_line(silence_id, 60), "ends_at": ends_at},
        )
