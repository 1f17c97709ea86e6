"""A demo service's state and the HTTP-side faults that can be injected into it.

A :class:`ServiceState` is what one service process knows: its integrations, the operator's
switches (mode, kill switch, webhook secret...), and the faults injected. Each fault is a
small object (one class per scenario of docs/demo-api.md) with hooks the service consults:
``upstream()`` decides what a simulated provider answers, ``request_error()`` whether a public
request fails. A fault says whether it still has an effect (``active()``): the fix a runbook
prescribes (restart, disable, refresh, retry, kill switch, rotate, slow polling) changes the
state so that it does not, without the demo having to be told.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from console.demo import scenarios

PROVIDERS = {
    "storefront": ("shopify", "chatwoot", "google-analytics", "webhooks"),
    "sync-worker": ("hubspot", "shopee", "openai", "richpanel"),
}
MODES = ("normal", "shadow", "route-only")
DEFAULT_POLLING = 60.0
QUOTA_BASELINE = 0.35  # share of the Google Analytics quota a normal day uses


class Outcome(NamedTuple):
    """What a simulated upstream answered."""

    status: int
    error: str = ""
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400


OK = Outcome(200)
TIMEOUTS = (408, 504)  # a call that timed out (the classification timeouts count these)


@dataclass
class FailedSync:
    record: str
    error: str
    at: float


@dataclass
class Integration:
    provider: str
    enabled: bool = True
    token_version: int = 1  # bumped by a token refresh
    mapping_version: int = 1  # bumped when failed syncs are retried with the fixed mapping
    polling_interval: float = DEFAULT_POLLING
    quota_pressure: float = 1.0  # multiplies the quota a polling interval uses
    state: str = "connected"  # connected | error | needs_reauth | rate_limited | disabled
    last_error: str = ""
    last_ok: float | None = None
    calls: int = 0
    errors: int = 0
    failed: list[FailedSync] = field(default_factory=list)

    @property
    def quota_used(self) -> float:
        return min(
            1.0, QUOTA_BASELINE * self.quota_pressure * DEFAULT_POLLING / max(self.polling_interval, 1.0)
        )

    def record(self, outcome: Outcome) -> None:
        self.calls += 1
        if outcome.ok:
            self.state, self.last_ok = "connected", time.time()
            return
        self.errors += 1
        self.last_error = f"{outcome.status} {outcome.error}".strip()
        self.state = {401: "needs_reauth", 429: "rate_limited"}.get(outcome.status, "error")
        if outcome.status == 422 or outcome.status in TIMEOUTS:
            # A record failed validation, or a call timed out: the connection itself is fine (the
            # provider still answers its check).
            self.state = "connected"

    def summary(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "enabled": self.enabled,
            "state": "disabled" if not self.enabled else self.state,
            "last_error": self.last_error or None,
            "last_success_at": self.last_ok,
            "calls": self.calls,
            "errors": self.errors,
            "failed_records": len(self.failed),
            "polling_interval_seconds": self.polling_interval,
            "quota_used_ratio": round(self.quota_used, 3) if self.provider == "google-analytics" else None,
        }


class TokenBucket:
    def __init__(self, rate: float, burst: float):
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ServiceState:
    def __init__(self, personality: str):
        self.personality = personality
        self.integrations = {p: Integration(p) for p in PROVIDERS[personality]}
        self.faults: dict[str, tuple[Fault, float]] = {}
        self.started_at = time.time()
        self.release = 42
        self.releases: list[dict[str, object]] = [
            self.new_release(41, "deploy", self.started_at - 86400),
            self.new_release(42, "deploy", self.started_at - 3600),
        ]
        self.bad_image = ""  # the image a bad release (error-spike) deployed
        self.restarts = 0
        self.reset_switches()

    def image(self, version: int) -> str:
        """The image a release deploys (what ``flyctl releases --image`` lists)."""
        return f"registry.fly.io/{self.personality}:deployment-{version}"

    def new_release(self, version: int, description: str, at: float, image: str = "") -> dict[str, object]:
        return {
            "version": version,
            "status": "complete",
            "description": description,
            "at": at,
            "image": image or self.image(version),
        }

    @property
    def current_image(self) -> str:
        return str(self.releases[-1]["image"])

    def reset_switches(self) -> None:
        """The operator's switches back to a normal day (``demo reset``)."""
        for integration in self.integrations.values():
            integration.enabled = True
            integration.polling_interval = DEFAULT_POLLING
            integration.quota_pressure = 1.0
            integration.state, integration.last_error = "connected", ""
            integration.failed.clear()
        self.mode = "normal"
        self.kill_switch = False
        self.circuit_open = False
        self.workers_poisoned = False
        self.loop_prevention = True
        if not hasattr(self, "shared_secret"):
            self.shared_secret = secrets.token_hex(16)
        self.verify_secret = self.shared_secret  # the partners keep theirs: no failures after a reset
        self.limiters: dict[str, TokenBucket] = {}
        self.recent_syncs: dict[str, deque[bool]] = {}  # provider -> its last sync outcomes

    # --- faults -------------------------------------------------------------------------

    def inject(self, name: str) -> Fault:
        scenario = scenarios.get(name)
        if scenario.where != self.personality:
            raise KeyError(f"scenario {name!r} belongs to {scenario.where}, not {self.personality}")
        fault = FAULTS[name](scenario.provider)
        previous = self.faults.pop(name, None)
        if previous:
            previous[0].clear(self)
        fault.inject(self)
        self.faults[name] = (fault, time.time())
        return fault

    def clear(self, name: str | None = None) -> list[str]:
        names = list(self.faults) if name is None else [name] if name in self.faults else []
        for n in names:
            fault, _ = self.faults.pop(n)
            fault.clear(self)
        if name is None:
            self.reset_switches()
        return names

    def fault_status(self) -> list[dict[str, object]]:
        return [
            {"name": n, "injected_at": at, "active": f.active(self), "provider": f.provider}
            for n, (f, at) in self.faults.items()
        ]

    def upstream(self, provider: str, kind: str = "call") -> Outcome:
        """What ``provider`` answers to a call of ``kind`` (``call``, ``sync``, ``reply``...)."""
        for fault, _ in list(self.faults.values()):
            outcome = fault.upstream(self, provider, kind)
            if outcome is not None:
                return outcome
        return OK

    def request_error(self) -> bool:
        return any(f.request_error(self) for f, _ in self.faults.values())

    # --- the fixes runbooks apply ---------------------------------------------------------

    def restart(self) -> None:
        self.restarts += 1
        self.workers_poisoned = False
        self.circuit_open = False
        self.started_at = time.time()
        self.releases.append(self.new_release(self.release, "restart", self.started_at, self.current_image))

    def deploy(self, image: str) -> dict[str, object]:
        """``flyctl deploy --image``: a new release running ``image``, one of the releases' images
        (a rollback deploys an earlier one). The bad release's errors go with its image."""
        if image not in {r["image"] for r in self.releases}:
            raise KeyError(
                f"unknown image {image!r}: deploy one of the releases' images (flyctl releases --image)"
            )
        self.release += 1
        self.workers_poisoned = bool(self.bad_image) and image == self.bad_image
        release = self.new_release(self.release, f"deploy {image.rsplit(':', 1)[-1]}", time.time(), image)
        self.releases.append(release)
        return release

    def refresh_token(self, provider: str) -> None:
        integration = self.integrations[provider]
        integration.token_version += 1
        integration.state, integration.last_error = "connected", ""

    def rotate_webhook_secret(self) -> None:
        self.shared_secret = self.verify_secret = secrets.token_hex(16)


class Fault:
    """A scenario's effect on a service. Subclasses override the hooks they need."""

    name: ClassVar[str]

    def __init__(self, provider: str | None):
        self.provider = provider

    def inject(self, svc: ServiceState) -> None:
        pass

    def clear(self, svc: ServiceState) -> None:
        pass

    def active(self, svc: ServiceState) -> bool:
        return True

    def upstream(self, svc: ServiceState, provider: str, kind: str) -> Outcome | None:
        return None

    def request_error(self, svc: ServiceState) -> bool:
        return False


class ErrorSpike(Fault):
    """A bad release: a third of public requests answer 500 until the workers restart or the
    release is rolled back (``flyctl deploy --image`` with an earlier image)."""

    name = "error-spike"
    share = 0.35

    def inject(self, svc: ServiceState) -> None:
        svc.workers_poisoned = True
        svc.release += 1
        svc.releases.append(svc.new_release(svc.release, "deploy", time.time()))
        svc.bad_image = svc.current_image

    def clear(self, svc: ServiceState) -> None:
        svc.workers_poisoned = False

    def active(self, svc: ServiceState) -> bool:
        return svc.workers_poisoned

    def request_error(self, svc: ServiceState) -> bool:
        return svc.workers_poisoned and random.random() < self.share


class RateLimited(Fault):
    """The provider allows 6 calls/s in bursts of 12: the full workload (8 actions/s and a ping)
    gets 429s; route-only mode (2 routes/s) does not, and drains the backlog.

    The burst must cover the Retry-After wait (2 s): with a burst of one second's calls, every
    wait ended on an empty bucket and even route-only mode kept getting 429s behind a backlog
    that never drained (found by tests/test_runbooks_e2e.py)."""

    name = "upstream-rate-limit"
    rate = 6.0
    burst = 12.0

    def inject(self, svc: ServiceState) -> None:
        svc.limiters[self.provider] = TokenBucket(self.rate, self.burst)

    def clear(self, svc: ServiceState) -> None:
        svc.limiters.pop(self.provider, None)

    def active(self, svc: ServiceState) -> bool:
        return svc.mode == "normal" and not svc.kill_switch

    def upstream(self, svc: ServiceState, provider: str, kind: str) -> Outcome | None:
        bucket = svc.limiters.get(provider)
        if provider != self.provider or bucket is None or bucket.take():
            return None
        return Outcome(429, "Too Many Requests", retry_after=2.0)


class ProviderDown(Fault):
    name = "provider-down"

    def active(self, svc: ServiceState) -> bool:
        return svc.integrations[self.provider].enabled

    def upstream(self, svc: ServiceState, provider: str, kind: str) -> Outcome | None:
        return Outcome(503, "Service Unavailable") if provider == self.provider else None


class OAuthExpired(Fault):
    name = "oauth-expired"

    def inject(self, svc: ServiceState) -> None:
        self.expired = svc.integrations[self.provider].token_version

    def active(self, svc: ServiceState) -> bool:
        return svc.integrations[self.provider].token_version == self.expired

    def upstream(self, svc: ServiceState, provider: str, kind: str) -> Outcome | None:
        if provider == self.provider and self.active(svc):
            return Outcome(401, "invalid_grant: access token expired")
        return None


class PartialSyncFailures(Fault):
    name = "partial-sync-failures"
    share = 0.4

    def inject(self, svc: ServiceState) -> None:
        self.broken = svc.integrations[self.provider].mapping_version

    def active(self, svc: ServiceState) -> bool:
        return svc.integrations[self.provider].mapping_version == self.broken

    def upstream(self, svc: ServiceState, provider: str, kind: str) -> Outcome | None:
        if provider == self.provider and kind == "sync" and self.active(svc) and random.random() < self.share:
            return Outcome(422, "VALIDATION_ERROR: property 'lifecyclestage' has an unknown option")
        return None


class DuplicateEvents(Fault):
    """Loop prevention is off: the worker's own replies come back as new deliveries."""

    name = "duplicate-events"

    def inject(self, svc: ServiceState) -> None:
        svc.loop_prevention = False

    def clear(self, svc: ServiceState) -> None:
        svc.loop_prevention = True

    def active(self, svc: ServiceState) -> bool:
        return not svc.loop_prevention and not svc.kill_switch and svc.mode != "shadow"


class WebhookSecretMismatch(Fault):
    name = "webhook-signature-failures"

    def inject(self, svc: ServiceState) -> None:
        svc.verify_secret = secrets.token_hex(16)  # a deploy shipped the wrong secret

    def clear(self, svc: ServiceState) -> None:
        svc.verify_secret = svc.shared_secret

    def active(self, svc: ServiceState) -> bool:
        return svc.verify_secret != svc.shared_secret


class LLMTimeouts(Fault):
    """004 1.4, high latency: the model's classification calls time out while the provider still
    answers its health check (slow, not down). Route-only mode stops calling the model."""

    name = "llm-timeouts"

    def active(self, svc: ServiceState) -> bool:
        return svc.mode != "route-only"

    def upstream(self, svc: ServiceState, provider: str, kind: str) -> Outcome | None:
        if provider == self.provider and kind == "classify":
            return Outcome(504, "Gateway Timeout: the classification call timed out")
        return None


class QuotaExhausted(Fault):
    """Polling so often that the daily quota runs out; polling 3x less often fixes it."""

    name = "quota-exhausted"

    def inject(self, svc: ServiceState) -> None:
        svc.integrations[self.provider].quota_pressure = 3.5

    def clear(self, svc: ServiceState) -> None:
        integration = svc.integrations[self.provider]
        integration.quota_pressure, integration.polling_interval = 1.0, DEFAULT_POLLING

    def active(self, svc: ServiceState) -> bool:
        return svc.integrations[self.provider].quota_used >= 1.0

    def upstream(self, svc: ServiceState, provider: str, kind: str) -> Outcome | None:
        if provider == self.provider and self.active(svc):
            return Outcome(429, "RESOURCE_EXHAUSTED: daily quota exceeded, resets 00:00 UTC")
        return None


FAULTS: dict[str, type[Fault]] = {
    cls.name: cls
    for cls in (
        ErrorSpike,
        RateLimited,
        ProviderDown,
        OAuthExpired,
        PartialSyncFailures,
        DuplicateEvents,
        LLMTimeouts,
        WebhookSecretMismatch,
        QuotaExhausted,
    )
}
assert set(FAULTS) == {s.name for s in scenarios.SCENARIOS if s.where != "db"}, "a scenario has no fault"
