"""The demo services' Prometheus metrics (docs/demo-api.md lists them; the rules use them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServiceMetrics"]

# Buckets around the 003 runbook's levels (p95 target 2 s, alert 3 s) and the slow listing.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class ServiceMetrics:
    """One registry per service process; nothing global."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered, by status", ["status"], registry=r
        )
        self.duration = Histogram(
            "http_request_duration_seconds", "HTTP request duration", buckets=_BUCKETS, registry=r
        )
        self.sync_jobs = Counter("sync_jobs_total", "Sync jobs run", ["provider"], registry=r)
        self.sync_failed = Counter(
            "sync_jobs_failed_total", "Sync jobs that failed", ["provider"], registry=r
        )
        self.sync_ratio = Gauge(
            "sync_success_ratio",
            "Share of the provider's last sync jobs that succeeded",
            ["provider"],
            registry=r,
        )
        self.queue_depth = Gauge("queue_depth", "Items waiting in a work queue", ["queue"], registry=r)
        self.upstream = Counter(
            "upstream_requests_total",
            "Calls to upstream providers, by answer",
            ["provider", "status"],
            registry=r,
        )
        self.signature_failures = Counter(
            "webhook_signature_failures_total", "Inbound webhooks rejected: invalid signature", registry=r
        )
        self.duplicates = Counter(
            "idempotency_duplicates_detected_total", "Events seen again by the idempotency layer", registry=r
        )
        self.auto_replies = Counter(
            "auto_reply_sent_total", "Automatic replies sent to customers", registry=r
        )
        self.fallback_routing = Counter(
            "fallback_routing_total", "Conversations routed by the fallback rules", registry=r
        )
        # 004 1.1: deliveries reaching the webhook ingress (any answer) vs events accepted onto the
        # processing queue: "queue receives drop to zero while Richpanel traffic continues".
        self.webhook_requests = Counter(
            "webhook_requests_total",
            "Webhook deliveries reaching the ingress, by sender and answer",
            ["source", "status"],
            registry=r,
        )
        self.queue_receives = Counter(
            "queue_receives_total",
            "Inbound events accepted onto the processing queue",
            ["source"],
            registry=r,
        )
        # 004 1.5: actions decided and attempted (counted when the attempt is over, retries
        # aside) vs actions that succeeded: "mismatch metrics decisions_made vs actions_success".
        self.decisions = Counter(
            "decisions_made_total", "Actions decided and attempted", ["action"], registry=r
        )
        self.actions_success = Counter(
            "actions_success_total", "Actions that succeeded downstream", ["action"], registry=r
        )
        # 004 1.4: the classification call's latency and timeouts.
        self.classification = Histogram(
            "classification_duration_seconds", "Classification call duration", buckets=_BUCKETS, registry=r
        )
        self.classification_timeouts = Counter(
            "classification_timeouts_total", "Classification calls that timed out", registry=r
        )
        self.integration_up = Gauge(
            "integration_up",
            "1 when the integration's check passes (absent when disabled)",
            ["provider"],
            registry=r,
        )
        self.db_up = Gauge("db_connection_up", "1 when the service can query its database", registry=r)
        self.quota = Gauge(
            "api_quota_used_ratio", "Share of the provider's API quota used", ["provider"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
