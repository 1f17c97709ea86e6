"""The demo's scenario table: what each fault is, where it lives, what the console shows, and
the runbook action that fixes it. One row per scenario; the services, the DB fault agent, the
CLI, the console's demo menu and the tests all read this table (docs/demo-api.md is its prose).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from console.model import Severity

Where = Literal["storefront", "sync-worker", "db"]


class Expected(NamedTuple):
    """A breach the console shows while the scenario is on.

    ``id`` is a threshold id (``postgres.demo.waiting``) or ``alert:<AlertName>`` for a
    Prometheus alert (the breach id is then ``alert:<AlertName>:<fingerprint>``)."""

    id: str
    severity: Severity

    def matches(self, breach_id: str) -> bool:
        if self.id.startswith("alert:"):
            return breach_id.startswith(self.id + ":")
        return breach_id == self.id

    def __str__(self) -> str:
        return f"{self.id} {self.severity.word}"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    description: str
    where: Where
    provider: str | None
    expected: tuple[Expected, ...]
    fix: str
    seed: str  # the source runbook(s) it comes from


CRIT, WARN = Severity.CRITICAL, Severity.WARNING

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "lock-contention",
        "Checkout blocked by a lock chain",
        "An admin session updated a hot inventory row and left its transaction open; checkout "
        "updates queue behind it, one behind the other (a chain of depth 2).",
        "db",
        None,
        (Expected("postgres.demo.waiting", CRIT),),
        "terminate the root blocker (pid and backend_start re-checked)",
        "001 (database locks), 003",
    ),
    Scenario(
        "long-running-query",
        "Long-running report query",
        "A revenue report runs for minutes against the shop database (the long-running level is "
        "shortened to seconds in the demo config).",
        "db",
        None,
        (Expected("postgres.demo.long_running", WARN),),
        "cancel the query, then terminate the session if it does not stop",
        "001 (queries over 5 minutes)",
    ),
    Scenario(
        "idle-in-transaction",
        "Sessions idle in transaction",
        "Two sessions opened a transaction, touched rows and went quiet, holding their snapshot and locks.",
        "db",
        None,
        (Expected("postgres.demo.idle_in_transaction", WARN),),
        "terminate idle-in-transaction sessions older than N (the preview lists them)",
        "001, 003",
    ),
    Scenario(
        "connection-exhaustion",
        "Connections near max_connections",
        "A leaky pool keeps opening connections and leaves them idle, until the server is close "
        "to max_connections.",
        "db",
        None,
        (Expected("postgres.demo.connections", WARN),),
        "terminate idle connections older than N",
        "000 (scenario 5), 001 (pool exhaustion), 003",
    ),
    Scenario(
        "slow-queries",
        "Slow queries: a missing index",
        "The index on reviews(product_id) is gone: every category page scans the reviews table "
        "once per product, and the mean statement time climbs past 500 ms.",
        "db",
        None,
        (Expected("postgres.demo.mean_statement_time", CRIT),),
        "create the missing index: CREATE INDEX IF NOT EXISTS reviews_product_id_idx ON reviews (product_id)",
        "001 (avg query > 500 ms), 003 (add database indexes)",
    ),
    Scenario(
        "error-spike",
        "5xx error spike on the storefront",
        "A bad release makes the storefront's workers answer 500 to about a third of requests.",
        "storefront",
        None,
        (Expected("prometheus.error_rate", CRIT), Expected("alert:HighErrorRate", CRIT)),
        "roll back the bad release: flyctl deploy --app storefront --image <the previous release's image> (the demo's flyctl shim, run as argv)",
        "001 (error rate > 5%), 003 (high error rate)",
    ),
    Scenario(
        "upstream-rate-limit",
        "Richpanel rate-limits the sync worker (429)",
        "Richpanel answers 429 Too Many Requests with Retry-After; actions back up in the queue.",
        "sync-worker",
        "richpanel",
        (Expected("prometheus.upstream_429_rate", WARN), Expected("alert:UpstreamRateLimited", WARN)),
        "switch to route-only mode (POST /admin/mode) or the kill switch: stop non-essential calls",
        "004 (downstream 429), 000 (Shopify 429), 002 (rate limit exhaustion)",
    ),
    Scenario(
        "provider-down",
        "HubSpot is down",
        "HubSpot answers 503: the integration check fails and the worker's health goes DOWN.",
        "sync-worker",
        "hubspot",
        (
            Expected("health.sync-worker", CRIT),
            Expected("alert:IntegrationDown", CRIT),
            Expected("alert:UpstreamServerErrors", WARN),
        ),
        "disable the integration: PATCH /api/v1/admin/integrations/hubspot {enabled: false}",
        "002 (provider downtime)",
    ),
    Scenario(
        "oauth-expired",
        "HubSpot OAuth token expired (401)",
        "HubSpot rejects the access token with 401 (invalid_grant); the integration needs re-authorisation.",
        "sync-worker",
        "hubspot",
        (Expected("alert:UpstreamAuthFailing", CRIT),),
        "force a token refresh: POST /api/v1/integrations/hubspot/refresh",
        "002 (OAuth token expiry), 001 (authentication errors)",
    ),
    Scenario(
        "partial-sync-failures",
        "Partial HubSpot sync failures",
        "A field-mapping change makes a third of HubSpot record syncs fail validation; the sync "
        "success ratio drops below 95%.",
        "sync-worker",
        "hubspot",
        (
            Expected("prometheus.sync_success_ratio", CRIT),
            Expected("alert:SyncJobFailure", WARN),
        ),
        "retry the failed syncs: POST /api/v1/integrations/hubspot/retry-failed",
        "002 (partial sync failures), 001 (SyncJobFailure)",
    ),
    Scenario(
        "duplicate-events",
        "Duplicate events: auto-replies sent twice",
        "The loop-prevention tag is missing: the middleware re-processes its own replies, the "
        "idempotency layer sees duplicates and customers get double replies (SEV0).",
        "sync-worker",
        "richpanel",
        (Expected("alert:DuplicateEventsDetected", CRIT),),
        "turn the kill switch on: POST /admin/kill-switch {enabled: true}",
        "004 (duplicate events / double actions)",
    ),
    Scenario(
        "llm-timeouts",
        "OpenAI times out: classification fails",
        "The model's classification calls time out while OpenAI still answers its health check "
        "(slow, not down): every conversation falls back to the default routing.",
        "sync-worker",
        "openai",
        (Expected("alert:ClassificationTimeouts", WARN), Expected("alert:UpstreamServerErrors", WARN)),
        "fallback routing without the model: route-only mode (POST /admin/mode {mode: route-only})",
        "004 (1.4 OpenAI outage / high latency)",
    ),
    Scenario(
        "webhook-signature-failures",
        "Webhook signature failures",
        "The storefront's webhook signing secret no longer matches Chatwoot's: every inbound "
        "webhook is rejected.",
        "storefront",
        "webhooks",
        (Expected("alert:WebhookSignatureFailures", WARN),),
        "rotate and re-share the webhook secret: POST /admin/webhooks/rotate-secret",
        "000 (scenario 4)",
    ),
    Scenario(
        "quota-exhausted",
        "Google Analytics quota exhausted",
        "The storefront polls Google Analytics so often that the daily quota is used up: RESOURCE_EXHAUSTED.",
        "storefront",
        "google-analytics",
        (Expected("alert:ApiQuotaHigh", WARN), Expected("health.storefront", WARN)),
        "reduce the polling frequency: POST /admin/integrations/google-analytics/polling {interval_seconds: 300}",
        "000 (scenario 3)",
    ),
)

BY_NAME: dict[str, Scenario] = {s.name: s for s in SCENARIOS}


def get(name: str) -> Scenario:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}: choose one of {', '.join(BY_NAME)}") from None


def for_service(where: Where) -> list[Scenario]:
    return [s for s in SCENARIOS if s.where == where]
