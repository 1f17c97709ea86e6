"""Deterministic console states for UI tests and snapshot pictures.

Layout tests need the same picture every run, so these snapshots are fixed data with a fixed
clock, replayed through the real Poller and threshold engine (not a mock of a backend: behaviour
against real backends is tested elsewhere, including the UI against a real Postgres).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from console.config import Config
from console.model import (
    HealthCheck,
    HealthSnapshot,
    HealthStatus,
    LockNode,
    LockWait,
    PostgresSnapshot,
    Privileges,
    PromAlert,
    PrometheusSnapshot,
    QueryResult,
    Sample,
    Session,
    Severity,
    Silence,
    Snapshot,
    SourceError,
    Statement,
)
from console.poller import Poller
from console.sanitize import clean

RUNBOOKS = Path(__file__).resolve().parents[1] / "config" / "runbooks"
NOW = 1_795_000_000.0  # a fixed moment: every age on screen is computed from it
HOSTILE = "[/foo] [@click=app.quit] [$accent]x[/] \x1b[2J\x1b]0;pwned\x07 \u202eevil\x00"

CONFIG = {
    "environment": {"name": "eu-prod", "production": True},
    "refresh": {"health": "5s", "prometheus": "5s", "postgres": "2s"},
    "health": [
        {"name": "storefront", "url": "http://127.0.0.1:1/health"},
        {"name": "sync-worker", "url": "http://127.0.0.1:2/actuator/health", "format": "spring"},
    ],
    "prometheus": {
        "url": "http://127.0.0.1:3",
        "queries": [
            {"id": "error_rate", "title": "5xx share", "query": "x", "unit": "ratio",
             "threshold": {"warning": 0.01, "critical": 0.05, "recovery": 0.008, "runbooks": []}},
            {"id": "p95_latency", "title": "p95 latency", "query": "y", "unit": "s",
             "threshold": {"warning": 0.5, "critical": 1}},
            {"id": "queue_depth", "title": "queue depth", "query": "z", "unit": ""},
            # the other thresholds the runbook pack compares with ({threshold: id}), as in config/console.yaml
            {"id": "sync_success_ratio", "title": "sync success", "query": "s", "unit": "ratio",
             "threshold": {"warning": 0.99, "critical": 0.95, "direction": "below"}},
            {"id": "upstream_429_rate", "title": "upstream 429s", "query": "u", "unit": "/s",
             "threshold": {"warning": 0.1}},
        ],
    },
    "runbooks_dir": str(RUNBOOKS),
    "variables": {
        "storefront_url": "http://127.0.0.1:5", "sync_worker_url": "http://127.0.0.1:6",
        "admin_token": {"value": "admin-canary-5521", "secret": True},
        "storefront_app": "storefront", "sync_worker_app": "sync-worker", "flyctl": "/bin/false",
        "pg_cluster": "main", "chatwoot_app": "chatwoot", "chatwoot_url": "http://127.0.0.1:7",
        "tenant_id": "default", "idle_connection_seconds": "300",
        **{f"status_page_{name}": "https://status.example"
           for name in ("shopify", "flyio", "supabase", "hubspot", "openai", "google_analytics")},
    },
    "postgres": [
        {"name": "main", "dsn": "postgresql://console:canary-pw-7731@127.0.0.1:4/shop",
         "thresholds": {"waiting": {"warning": 1, "critical": 2}, "long_running": {"warning": 300, "critical": 900}}},
    ],
}  # fmt: skip


def config(**overrides) -> Config:
    data = {**CONFIG, **overrides}
    return Config.model_validate(data)


class ReplaySource:
    """A source that returns given snapshots in turn (the last one repeats); ``hang`` makes
    every poll wait forever, like a backend that accepted the connection and went silent."""

    kind = "replay"

    def __init__(self, key: str, snapshots: Sequence[Snapshot], interval: float = 2.0, hang: bool = False):
        self.key = key
        self.interval = interval
        self.timeout = 3600.0 if hang else 5.0
        self.snapshots = list(snapshots)
        self.hang = hang
        self.polls = 0

    async def poll(self) -> Snapshot:
        self.polls += 1
        if self.hang:
            await asyncio.Event().wait()
        snapshot = self.snapshots[min(self.polls - 1, len(self.snapshots) - 1)]
        return snapshot

    def failed(self, error: SourceError, taken_at: float, latency: float | None) -> Snapshot:
        return dataclasses.replace(self.snapshots[0], error=error, taken_at=taken_at, latency=latency)

    async def aclose(self) -> None:
        pass


def session(pid: int, state: str, query: str, *, age: float, user: str = "app", app: str = "storefront",
            wait: tuple[str, str] = ("", ""), blocked_by: tuple[int, ...] = (), lock: LockWait | None = None) -> Session:  # fmt: skip
    start = NOW - age
    return Session(
        pid=pid, backend_start=NOW - 3600 - pid, user=clean(user), database="shop", application=clean(app),
        client="10.0.0.7", state=state, wait_event_type=wait[0], wait_event=wait[1],
        xact_start=start, query_start=start, state_change=start, backend_type="client backend",
        query=clean(query), blocked_by=blocked_by, lock=lock,
    )  # fmt: skip


def postgres_snapshot(taken_at: float = NOW, *, xact_total: int = 120_000) -> PostgresSnapshot:
    row_lock = LockWait(locktype="transactionid", mode="ShareLock", relation="public.orders")
    tuple_lock = LockWait(locktype="tuple", mode="ExclusiveLock", relation="public.orders")
    sessions = (
        session(4242, "idle in transaction", "UPDATE orders SET status = 'paid' WHERE id = 7", age=95),
        session(4250, "active", "UPDATE orders SET status = 'void' WHERE id = 7", age=61,
                wait=("Lock", "transactionid"), blocked_by=(4242,), lock=row_lock),
        session(4251, "active", "UPDATE orders SET total = 0 WHERE id = 7", age=58,
                wait=("Lock", "tuple"), blocked_by=(4250,), lock=tuple_lock),
        session(4300, "active", "SELECT pg_sleep(600) -- nightly report", age=412, user="report"),
        session(4310, "active", HOSTILE + "\nSELECT 1", age=3, user=HOSTILE, app=HOSTILE),
        session(4400, "idle", "SELECT 1", age=20),
        session(4401, "idle", "COMMIT", age=2),
    )  # fmt: skip
    leaf = LockNode(
        pid=4251, user="app", state="active", query=sessions[2].query, lock=tuple_lock, waiting_for=58
    )
    mid = LockNode(pid=4250, user="app", state="active", query=sessions[1].query, lock=row_lock, waiting_for=61,
                   children=(leaf,))  # fmt: skip
    root = LockNode(pid=4242, user="app", state="idle in transaction", query=sessions[0].query, lock=None,
                    waiting_for=None, children=(mid,))  # fmt: skip
    return PostgresSnapshot(
        source="postgres:main", taken_at=taken_at, latency=0.006, cluster="main",
        dsn="postgresql://console:***@127.0.0.1:4/shop", server_version="15.20", server_version_num=150020,
        server_now=taken_at, privileges=Privileges(user="console", pg_monitor=True, pg_signal_backend=True),
        max_connections=100, connections_by_state=(("active", 4), ("idle", 2), ("idle in transaction", 1)),
        sessions=sessions, xact_total=xact_total, lock_tree=(root,),
        statements=(
            Statement(queryid=11, query="SELECT * FROM orders WHERE email = $1", calls=812, total_ms=498_000.0,
                      mean_ms=613.3, rows=812),
            Statement(queryid=12, query="UPDATE inventory SET qty = qty - $1 WHERE sku = $2", calls=5400,
                      total_ms=21_600.0, mean_ms=4.0, rows=5400),
        ),
        statements_status="ok",
    )  # fmt: skip


def health_snapshots(taken_at: float = NOW) -> list[HealthSnapshot]:
    return [
        HealthSnapshot(
            source="health:storefront", taken_at=taken_at, latency=0.012, target="storefront",
            url="http://127.0.0.1:1/health", format="health+json", status=HealthStatus.FAIL, http_status=503,
            output="chatwoot unavailable",
            checks=(HealthCheck("chatwoot", HealthStatus.FAIL, "HTTP 503 from hotdash-chatwoot"),
                    HealthCheck("database", HealthStatus.PASS, "")),
        ),
        HealthSnapshot(
            source="health:sync-worker", taken_at=taken_at, latency=0.034, target="sync-worker",
            url="http://127.0.0.1:2/actuator/health", format="spring", status=HealthStatus.PASS, http_status=200,
        ),
    ]  # fmt: skip


def prometheus_snapshot(taken_at: float = NOW, error_rate: float = 0.072) -> PrometheusSnapshot:
    return PrometheusSnapshot(
        source="prometheus", taken_at=taken_at, latency=0.02, url="http://127.0.0.1:3",
        queries=(
            QueryResult(id="error_rate", query="x", unit="ratio", value=error_rate,
                        samples=(Sample((("job", "storefront"),), error_rate),)),
            QueryResult(id="p95_latency", query="y", unit="s", value=0.31),
            QueryResult(id="queue_depth", query="z", value=None),
        ),
        alerts=(
            PromAlert(name="HighErrorRate", state="firing", severity=Severity.CRITICAL,
                      labels=(("alertname", "HighErrorRate"), ("job", "storefront"), ("severity", "critical")),
                      annotations=(("summary", "5xx above 5% for 5 minutes"), ("label_test", HOSTILE)),
                      active_at=taken_at - 420, value="0.072"),
            PromAlert(name="SyncJobFailure", state="pending", severity=Severity.from_label("high"),
                      labels=(("alertname", "SyncJobFailure"), ("job", "sync-worker")), annotations=(),
                      active_at=taken_at - 30),
        ),
        alertmanager_url="http://127.0.0.1:5",
        silences=(Silence(id="abc", state="active", matchers=("alertname=SlowResponses",), starts_at=taken_at - 60,
                          ends_at=taken_at + 3540, created_by="alice@ops", comment="deploy"),),
    )  # fmt: skip


def sources(hang: bool = False) -> list[ReplaySource]:
    out: list[ReplaySource] = [ReplaySource(s.source, [s], 5.0, hang) for s in health_snapshots()]
    out.append(ReplaySource("prometheus", [prometheus_snapshot()], 5.0, hang))
    out.append(ReplaySource("postgres:main", [postgres_snapshot()], 2.0, hang))
    return out


def poller(cfg: Config | None = None, clock=lambda: NOW, **kwargs) -> Poller:
    """A Poller over replay sources with everything published once (state ready to render)."""
    replay = sources(**kwargs)
    p = Poller(cfg or config(), sources=replay, clock=clock)
    for source in replay:
        p.publish(source.snapshots[0])
    return p


_PACKS: dict[str, object] = {}


def pack(cfg: Config):
    """The repository's runbook pack for ``cfg`` (read once per test session)."""
    from console.runbooks import pack_for

    if "pack" not in _PACKS:
        _PACKS["pack"] = pack_for(cfg)
    return _PACKS["pack"]
