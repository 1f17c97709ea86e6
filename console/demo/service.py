"""The demo services: ``storefront`` and ``sync-worker``, one program with two personalities.

    python -m console.demo.service storefront --port 8080 --dsn postgresql://... --token T

Starlette on uvicorn. The HTTP API is docs/demo-api.md; the state and the faults live in
:mod:`console.demo.faults`, the metrics in :mod:`console.demo.metrics`. Background tasks play
the service's own work: integration checks, sync jobs (sync-worker) and the action queue
towards Richpanel, against simulated upstreams whose answers the faults decide. Public routes
run real statements on the shop database (:mod:`console.demo.shopdb`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from console.demo import shopdb
from console.demo.faults import MODES, TIMEOUTS, FailedSync, Outcome, ServiceState
from console.demo.metrics import CONTENT_TYPE_LATEST, ServiceMetrics

UNMETERED = ("/metrics", "/health", "/actuator/", "/demo/")
DEMO_TENANT = "demo"  # the one tenant of the demo (the tenant-scoped admin routes of 002)
WEBHOOK_SOURCES = {"storefront": "chatwoot", "sync-worker": "richpanel"}
SIGNATURE_HEADER = "x-webhook-signature"
SYNCED = ("hubspot", "shopee")  # the integrations whose records the sync worker syncs
RECENT_SYNCS = 40  # sync_success_ratio: the share of a provider's last this-many syncs that succeeded
CLASSIFICATION_TIMEOUT = 5.0  # seconds a timed-out classification call waited (its latency)
DSN_ENV = "INCIDENT_CONSOLE_DEMO_DSN"  # the DSN holds a password: not on the command line


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Service:
    """Everything one service process holds; the routes are its methods."""

    def __init__(self, personality: str, dsn: str, token: str):
        self.name = personality
        self.dsn = dsn
        self.token = token
        self.state = ServiceState(personality)
        self.metrics = ServiceMetrics()
        self.pool: asyncpg.Pool | None = None
        self.db_ok = False
        self.db_error = ""
        self.tasks: list[asyncio.Task[None]] = []
        self.actions: deque[tuple[float, dict[str, Any]]] = deque()  # (not before, action)
        self.seen_events: OrderedDict[str, int] = OrderedDict()
        self.backoff_until = 0.0
        self.record_ids = itertools.count(1)
        self.action_keys = itertools.count(1)
        self.failed_actions: list[dict[str, Any]] = []  # actions that failed downstream (the DLQ)
        self.replied: set[str] = set()  # events whose reply was sent (a re-run never sends it twice)
        self.fallback: dict[str, str] = {}  # the fallback routing's default team and tag
        # Series that exist from the start, at 0: "no 5xx yet" is a value, not missing data.
        self.metrics.requests.labels(status="500")
        for provider in self.state.integrations:
            self.metrics.upstream.labels(provider=provider, status="429")
        source = WEBHOOK_SOURCES[personality]
        self.metrics.webhook_requests.labels(source=source, status="202")
        self.metrics.queue_receives.labels(source=source)
        if personality == "sync-worker":
            for kind in ("route", "tag", "fetch-order", "reply"):
                self.metrics.decisions.labels(action=kind)
                self.metrics.actions_success.labels(action=kind)
            self.metrics.classification_timeouts.inc(0)
            self.metrics.queue_depth.labels(queue="dead-letter").set(0)
            self.update_sync_ratio()

    # --- life cycle -----------------------------------------------------------------------

    async def startup(self) -> None:
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=3,  # a fixed pool: the connection count only moves when a fault moves it
            max_size=3,
            server_settings={"application_name": self.name},
            command_timeout=30,
        )
        self.db_ok = True
        self.metrics.db_up.set(1)
        loops = [self.db_check, self.integration_checks, self.housekeeping]
        if self.name == "sync-worker":
            loops += [self.sync_jobs, self.action_worker]
        self.tasks = [asyncio.create_task(self.forever(loop)) for loop in loops]

    async def shutdown(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 2)

    @staticmethod
    async def forever(loop: Callable[[], Awaitable[float]]) -> None:
        """Run one step of a background loop after another; a failing step is retried."""
        while True:
            try:
                delay = await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = 1.0
            await asyncio.sleep(delay)

    # --- database -------------------------------------------------------------------------

    async def db(self, method: str, sql: str, *args: Any) -> Any:
        assert self.pool is not None
        try:
            async with self.pool.acquire() as conn:
                result = await getattr(conn, method)(sql, *args)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            self.db_ok, self.db_error = False, str(exc)
            raise
        self.db_ok = True
        return result

    async def db_check(self) -> float:
        try:
            await self.db("fetchval", "SELECT 1")
        except Exception as exc:
            self.db_ok, self.db_error = False, f"{type(exc).__name__}: {exc}"
        self.metrics.db_up.set(1 if self.db_ok else 0)
        return 1.0

    async def housekeeping(self) -> float:
        with contextlib.suppress(Exception):
            await self.db(
                "execute", shopdb.TRIM_SYNC_LOG if self.name == "sync-worker" else shopdb.TRIM_ORDERS
            )
        return 30.0

    # --- upstreams ------------------------------------------------------------------------

    def call(self, provider: str, kind: str = "call") -> Outcome:
        """One call to a simulated upstream: decided by the faults, counted, remembered."""
        outcome = self.state.upstream(provider, kind)
        self.metrics.upstream.labels(provider=provider, status=str(outcome.status)).inc()
        self.state.integrations[provider].record(outcome)
        return outcome

    async def integration_checks(self) -> float:
        metrics = self.metrics
        for provider, integration in self.state.integrations.items():
            if provider == "google-analytics":
                metrics.quota.labels(provider=provider).set(round(integration.quota_used, 3))
            if not integration.enabled:
                with contextlib.suppress(KeyError):
                    metrics.integration_up.remove(provider)
                continue
            if provider != "webhooks":  # inbound only: judged by the signatures it sees
                self.call(provider, "ping")
            metrics.integration_up.labels(provider=provider).set(0 if integration.state == "error" else 1)
        return 1.0

    # --- sync-worker: sync jobs and the action queue --------------------------------------

    async def sync_jobs(self) -> float:
        for provider in SYNCED:
            integration = self.state.integrations[provider]
            if not integration.enabled:
                continue
            record = f"{provider}-{next(self.record_ids)}"
            outcome = self.sync_one(provider)
            if not outcome.ok:
                integration.failed.append(
                    FailedSync(record, f"{outcome.status} {outcome.error}".strip(), time.time())
                )
                del integration.failed[:-500]
            await self.db(
                "execute",
                shopdb.SYNC_LOG,
                provider,
                record,
                "OK" if outcome.ok else "FAILED",
                outcome.error or None,
            )
        self.update_sync_ratio()
        return 0.5

    def sync_one(self, provider: str) -> Outcome:
        """One record synced to ``provider``: the call, its counters, its place in the ratio."""
        outcome = self.call(provider, "sync")
        self.metrics.sync_jobs.labels(provider=provider).inc()
        if not outcome.ok:
            self.metrics.sync_failed.labels(provider=provider).inc()
        recent = self.state.recent_syncs.setdefault(provider, deque(maxlen=RECENT_SYNCS))
        recent.append(outcome.ok)
        return outcome

    def update_sync_ratio(self) -> None:
        if self.name != "sync-worker":
            return
        for provider in SYNCED:
            recent = self.state.recent_syncs.get(provider)
            self.metrics.sync_ratio.labels(provider=provider).set(
                sum(recent) / len(recent) if recent else 1.0
            )

    async def action_worker(self) -> float:
        """Send queued actions to Richpanel, honouring Retry-After; re-deliveries when looping."""
        now = time.monotonic()
        self.metrics.queue_depth.labels(queue="richpanel-actions").set(len(self.actions))
        if now < self.backoff_until or not self.actions:
            return 0.05
        due, action = self.actions[0]
        if due > now:
            return due - now
        self.actions.popleft()
        if self.state.kill_switch or self.state.mode == "shadow":
            return 0.0  # logged only: no side effect downstream
        if self.state.mode == "route-only" and action["kind"] != "route":
            return 0.0
        if action["kind"] == "reply" and action["event"] in self.replied:
            return 0.0  # idempotent by event: a reply already sent is never sent again
        outcome = self.call("richpanel", action["kind"])
        if outcome.status == 429:  # honour Retry-After: the action waits at the head of the queue
            self.backoff_until = now + (outcome.retry_after or 1.0)
            self.actions.appendleft((self.backoff_until, action))
            return 0.0
        self.metrics.decisions.labels(action=action["kind"]).inc()
        if not outcome.ok:
            self.failed_actions.append(
                {**action, "error": f"{outcome.status} {outcome.error}".strip(), "at": time.time()}
            )
            del self.failed_actions[:-500]
            self.metrics.queue_depth.labels(queue="dead-letter").set(len(self.failed_actions))
            return 0.0
        self.metrics.actions_success.labels(action=action["kind"]).inc()
        if action["kind"] == "reply":
            self.replied.add(action["event"])
            while len(self.replied) > 5000:
                self.replied.pop()
        if outcome.ok and action["kind"] == "reply":
            self.metrics.auto_replies.inc()
            if not self.state.loop_prevention and action.get("hops", 0) < 3:
                # Without the middleware_processed tag Richpanel delivers our reply back to us.
                asyncio.get_running_loop().call_later(
                    0.3, self.ingest, action["event"], action.get("hops", 0) + 1
                )
        return 0.0

    def ingest(self, event_id: str, hops: int = 0) -> str:
        """An inbound Richpanel event: idempotency check, classification, then actions."""
        if event_id in self.seen_events:
            self.metrics.duplicates.inc()
            if self.state.loop_prevention:
                return "duplicate"
        self.seen_events[event_id] = hops
        while len(self.seen_events) > 5000:
            self.seen_events.popitem(last=False)
        if self.state.mode == "route-only":  # routing without the model (004 1.4's fallback)
            self.metrics.fallback_routing.inc()
        else:
            started = time.perf_counter()
            classified = self.call("openai", "classify")
            timed_out = classified.status in TIMEOUTS
            took = CLASSIFICATION_TIMEOUT if timed_out else time.perf_counter() - started
            self.metrics.classification.observe(took)
            if timed_out:
                self.metrics.classification_timeouts.inc()
            if not classified.ok:
                self.metrics.fallback_routing.inc()
        now = time.monotonic()
        for kind in ("route", "tag", "fetch-order", "reply"):
            key = f"{event_id}:{kind}:{hops}"  # the action's idempotency key
            self.actions.append((now, {"kind": kind, "event": event_id, "hops": hops, "key": key}))
        return "accepted"

    # --- routes: health and metrics -------------------------------------------------------

    def checks(self) -> dict[str, tuple[str, str]]:
        """name -> (pass|warn|fail, detail) for the database and every integration."""
        out = {"database": ("pass", "connected") if self.db_ok else ("fail", self.db_error or "unreachable")}
        for provider, integration in self.state.integrations.items():
            if not integration.enabled:
                out[provider] = ("pass", "disabled by an operator")
            elif provider == "webhooks":
                failing = any(
                    f.active(self.state) for f, _ in self.state.faults.values() if f.provider == "webhooks"
                )
                out[provider] = ("warn", "invalid webhook signatures") if failing else ("pass", "verifying")
            elif provider == "google-analytics" and integration.quota_used >= 1.0:
                out[provider] = ("warn", "RESOURCE_EXHAUSTED: daily quota used up")
            else:
                level = {"connected": "pass", "error": "fail"}.get(integration.state, "warn")
                out[provider] = (
                    level,
                    integration.state + (f": {integration.last_error}" if level != "pass" else ""),
                )
        return out

    async def health(self, request: Request) -> Response:
        checks = self.checks()
        levels = [level for level, _ in checks.values()]
        status = "fail" if "fail" in levels else "warn" if "warn" in levels else "pass"
        body = {
            "status": status,
            "version": f"v{self.state.release}",
            "serviceId": self.name,
            "description": f"demo {self.name}",
            "checks": {
                f"{name}:{'connection' if name == 'database' else 'api'}": [
                    {"status": level, "output": detail if level != "pass" else "", "time": _iso(time.time())}
                ]
                for name, (level, detail) in checks.items()
            },
        }
        return JSONResponse(
            body, status_code=503 if status == "fail" else 200, media_type="application/health+json"
        )

    async def actuator_health(self, request: Request) -> Response:
        words = {"pass": "UP", "warn": "UP", "fail": "DOWN"}
        components = {
            ("db" if name == "database" else name): {"status": words[level], "details": {"state": detail}}
            for name, (level, detail) in self.checks().items()
        }
        status = "DOWN" if any(c["status"] == "DOWN" for c in components.values()) else "UP"
        return JSONResponse(
            {"status": status, "components": components},
            status_code=503 if status == "DOWN" else 200,
            media_type="application/vnd.spring-boot.actuator.v3+json",
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # --- routes: public (storefront) ------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return JSONResponse({"service": self.name, "release": f"v{self.state.release}"})

    async def products(self, request: Request) -> Response:
        category = request.query_params.get("category", "coffee")
        rows = await self.db("fetch", shopdb.PRODUCT_LISTING, category)
        return JSONResponse({"category": category, "products": [dict(r) for r in rows]})

    async def product(self, request: Request) -> Response:
        row = await self.db("fetchrow", shopdb.PRODUCT, int(request.path_params["id"]))
        return JSONResponse(dict(row)) if row else JSONResponse({"error": "not found"}, status_code=404)

    async def checkout(self, request: Request) -> Response:
        body = await _json(request)
        order = await self.db(
            "fetchval",
            shopdb.CHECKOUT,
            int(body.get("customer_id", 1)),
            str(body.get("sku", "SKU-1002")),
            int(body.get("quantity", 1)),
        )
        self.call("shopify", "order")
        return JSONResponse({"order": order}, status_code=201)

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        given = request.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given, sign(self.state.verify_secret, body)):
            self.metrics.signature_failures.inc()
            return JSONResponse({"error": "Invalid webhook signature"}, status_code=401)
        source = WEBHOOK_SOURCES[self.name]
        if self.name == "sync-worker":
            event = (await _json(request)).get("id") or f"evt-{random.getrandbits(48):x}"
            result = self.ingest(str(event))
            if result == "accepted":
                self.metrics.queue_receives.labels(source=source).inc()
            return JSONResponse({"result": result}, status_code=202)
        self.call("chatwoot", "webhook")
        self.metrics.queue_receives.labels(source=source).inc()
        return JSONResponse({"result": "accepted"}, status_code=202)

    # --- routes: integrations and admin (docs/demo-api.md) --------------------------------

    def integration(self, request: Request):
        provider = request.path_params["provider"]
        integration = self.state.integrations.get(provider)
        if integration is None:
            raise HTTPException(404, f"no integration {provider!r}: {', '.join(self.state.integrations)}")
        return integration

    async def integrations_status(self, request: Request) -> Response:
        return JSONResponse({"integrations": [i.summary() for i in self.state.integrations.values()]})

    async def integration_status(self, request: Request) -> Response:
        return JSONResponse(self.integration(request).summary())

    async def integration_failures(self, request: Request) -> Response:
        integration = self.integration(request)
        by_error: dict[str, int] = {}
        for failed in integration.failed:
            by_error[failed.error] = by_error.get(failed.error, 0) + 1
        return JSONResponse(
            {
                "provider": integration.provider,
                "failed": len(integration.failed),
                "by_error": by_error,
                "recent": [vars(f) for f in integration.failed[-10:]],
            }
        )

    async def set_integration(self, request: Request) -> Response:
        integration = self.integration(request)
        body = await _json(request)
        if not isinstance(body.get("enabled"), bool):
            return JSONResponse({"error": 'expected {"enabled": true|false}'}, status_code=400)
        integration.enabled = body["enabled"]
        if integration.enabled:
            integration.state = "connected"
        return JSONResponse(integration.summary())

    async def set_tenant_integration(self, request: Request) -> Response:
        """002's tenant-scoped switch; the demo has one tenant."""
        tenant = request.path_params["tenant"]
        if tenant != DEMO_TENANT:
            return JSONResponse(
                {"error": f"no tenant {tenant!r} (the demo has {DEMO_TENANT!r})"}, status_code=404
            )
        return await self.set_integration(request)

    async def probe(self, request: Request) -> Response:
        """One call to the provider from the server, the integration enabled or not (002: "test
        connectivity from server"); its answer, not the integration's state."""
        integration = self.integration(request)
        outcome = self.state.upstream(integration.provider, "probe")
        self.metrics.upstream.labels(provider=integration.provider, status=str(outcome.status)).inc()
        return JSONResponse(
            {
                "provider": integration.provider,
                "reachable": outcome.ok,
                "status": outcome.status,
                "error": outcome.error or None,
            }
        )

    async def sync_logs(self, request: Request) -> Response:
        integration = self.integration(request)
        status = request.query_params.get("status", "FAILED").upper()
        logs = [
            {"id": f.record, "status": "FAILED", "error": f.error, "at": f.at} for f in integration.failed
        ]
        return JSONResponse(
            {
                "provider": integration.provider,
                "status": status,
                "logs": logs[-50:] if status == "FAILED" else [],
            }
        )

    async def sync_log(self, request: Request) -> Response:
        integration = self.integration(request)
        log_id = request.path_params["log_id"]
        found = next((f for f in integration.failed if f.record == log_id), None)
        if found is None:
            return JSONResponse({"error": f"no failed sync log {log_id!r}"}, status_code=404)
        return JSONResponse({"id": found.record, "status": "FAILED", "error": found.error, "at": found.at})

    async def resync(self, request: Request) -> Response:
        """001's "re-sync data from that point": every failed record since ``since`` again."""
        integration = self.integration(request)
        body = await _json(request)
        since = _epoch(body.get("since"))
        if since is None:
            return JSONResponse(
                {"error": 'expected {"since": "<ISO time>" | <epoch seconds>} (the last successful sync)'},
                status_code=400,
            )
        again = [f for f in integration.failed if f.at >= since]
        integration.failed = [f for f in integration.failed if f.at < since]
        still = []
        for failed in again:
            outcome = self.sync_one(integration.provider)
            if not outcome.ok:
                still.append(
                    FailedSync(failed.record, f"{outcome.status} {outcome.error}".strip(), time.time())
                )
        integration.failed += still
        self.update_sync_ratio()
        return JSONResponse(
            {
                "provider": integration.provider,
                "since": since,
                "resynced": len(again),
                "still_failing": len(still),
            }
        )

    async def failed_actions_list(self, request: Request) -> Response:
        return JSONResponse({"failed": len(self.failed_actions), "actions": self.failed_actions[-50:]})

    async def rerun_failed(self, request: Request) -> Response:
        """004 1.5: each failed action again, by its idempotency key; a reply already sent is not."""
        now = time.monotonic()
        rerun, skipped = [], []
        for action in self.failed_actions:
            if action["kind"] == "reply" and action["event"] in self.replied:
                skipped.append(action["key"])
                continue
            self.actions.append((now, {k: action[k] for k in ("kind", "event", "hops", "key")}))
            rerun.append(action["key"])
        self.failed_actions.clear()
        self.metrics.queue_depth.labels(queue="dead-letter").set(0)
        return JSONResponse({"rerun": rerun, "skipped_replies_already_sent": skipped})

    async def fallback_routing(self, request: Request) -> Response:
        body = await _json(request)
        team, tag = body.get("team"), body.get("tag")
        if not isinstance(team, str) or not team or not isinstance(tag, str) or not tag:
            return JSONResponse({"error": 'expected {"team": "...", "tag": "..."}'}, status_code=400)
        self.fallback = {"team": team, "tag": tag}
        return JSONResponse({"fallback_routing": self.fallback})

    async def deploy(self, request: Request) -> Response:
        """What ``flyctl deploy --image`` does to the demo: a new release running that image."""
        body = await _json(request)
        image = body.get("image")
        if not isinstance(image, str) or not image:
            return JSONResponse({"error": 'expected {"image": "..."}'}, status_code=400)
        try:
            release = self.state.deploy(image)
        except KeyError as exc:
            return JSONResponse({"error": exc.args[0]}, status_code=404)
        self.actions.clear()
        return JSONResponse({"deployed": image, "release": f"v{release['version']}"})

    async def chatwoot_hc(self, request: Request) -> Response:
        """Chatwoot's own health endpoint (/hc), played by the storefront's simulated Chatwoot."""
        outcome = self.state.upstream("chatwoot", "hc")
        if outcome.ok:
            return PlainTextResponse("woot")
        return PlainTextResponse(outcome.error or "unavailable", status_code=outcome.status)

    async def refresh(self, request: Request) -> Response:
        integration = self.integration(request)
        self.state.refresh_token(integration.provider)
        return JSONResponse(
            {"provider": integration.provider, "refreshed": True, "token_version": integration.token_version}
        )

    async def retry_failed(self, request: Request) -> Response:
        integration = self.integration(request)
        integration.mapping_version += 1  # the retry runs with the corrected mapping
        retried, still = len(integration.failed), []
        for failed in integration.failed:
            outcome = self.sync_one(integration.provider)
            if not outcome.ok:
                still.append(
                    FailedSync(failed.record, f"{outcome.status} {outcome.error}".strip(), time.time())
                )
        integration.failed = still
        self.update_sync_ratio()
        return JSONResponse(
            {"provider": integration.provider, "retried": retried, "still_failing": len(still)}
        )

    async def queues(self, request: Request) -> Response:
        return JSONResponse(
            {"queues": {"richpanel-actions": len(self.actions)} if self.name == "sync-worker" else {}}
        )

    async def kill_switch(self, request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body.get("enabled"), bool):
            return JSONResponse({"error": 'expected {"enabled": true|false}'}, status_code=400)
        self.state.kill_switch = body["enabled"]
        return JSONResponse({"kill_switch": self.state.kill_switch})

    async def mode(self, request: Request) -> Response:
        body = await _json(request)
        if body.get("mode") not in MODES:
            return JSONResponse({"error": f"mode must be one of {', '.join(MODES)}"}, status_code=400)
        self.state.mode = body["mode"]
        return JSONResponse({"mode": self.state.mode})

    async def circuit_reset(self, request: Request) -> Response:
        self.state.circuit_open = False
        return JSONResponse({"circuit_breaker": "closed"})

    async def rotate_secret(self, request: Request) -> Response:
        self.state.rotate_webhook_secret()
        return JSONResponse(
            {"rotated": True, "shared_with": ["chatwoot"] if self.name == "storefront" else ["richpanel"]}
        )

    async def polling(self, request: Request) -> Response:
        integration = self.integration(request)
        body = await _json(request)
        interval = body.get("interval_seconds")
        if not isinstance(interval, int | float) or isinstance(interval, bool) or not 1 <= interval <= 86400:
            return JSONResponse({"error": 'expected {"interval_seconds": 1..86400}'}, status_code=400)
        integration.polling_interval = float(interval)
        return JSONResponse(integration.summary())

    async def restart(self, request: Request) -> Response:
        self.actions.clear()
        self.state.restart()
        return JSONResponse(
            {"restarted": True, "release": f"v{self.state.release}", "restarts": self.state.restarts}
        )

    async def status(self, request: Request) -> Response:
        """What ``flyctl status`` shows (demo)."""
        return JSONResponse(
            {
                "app": self.name,
                "release": f"v{self.state.release}",
                "started_at": self.state.started_at,
                "restarts": self.state.restarts,
                "mode": self.state.mode,
                "kill_switch": self.state.kill_switch,
                "releases": self.state.releases[-10:],
                "fallback_routing": self.fallback or None,
            }
        )

    async def warmup(self, request: Request) -> Response:
        await self.db("fetch", shopdb.PRODUCT_LISTING, "coffee")
        return JSONResponse({"warmed": ["products"]})

    # --- routes: demo faults ---------------------------------------------------------------

    async def faults_get(self, request: Request) -> Response:
        return JSONResponse({"service": self.name, "faults": self.state.fault_status()})

    async def faults_post(self, request: Request) -> Response:
        try:
            self.state.inject(request.path_params["name"])
        except KeyError as exc:
            return JSONResponse({"error": exc.args[0]}, status_code=404)
        return JSONResponse({"service": self.name, "faults": self.state.fault_status()})

    async def faults_delete(self, request: Request) -> Response:
        cleared = self.state.clear(request.path_params.get("name"))
        if not cleared and "name" in request.path_params:
            return JSONResponse({"error": "not injected"}, status_code=404)
        self.actions.clear()
        self.seen_events.clear()
        self.update_sync_ratio()
        return JSONResponse({"service": self.name, "cleared": cleared, "faults": self.state.fault_status()})

    # --- the app --------------------------------------------------------------------------

    def app(self) -> Starlette:
        admin = self.admin
        routes = [
            Route("/health", self.health),
            Route("/actuator/health", self.actuator_health),
            Route("/metrics", self.metrics_endpoint),
            Route("/", self.home),
            Route("/api/v1/integrations/status", self.integrations_status),
            Route("/api/v1/integrations/{provider}/status", self.integration_status),
            Route("/api/v1/integrations/{provider}/failures", self.integration_failures),
            Route("/api/v1/admin/integrations/{provider}", admin(self.set_integration), methods=["PATCH"]),
            Route(
                "/api/v1/admin/tenants/{tenant}/integrations/{provider}",
                admin(self.set_tenant_integration),
                methods=["PATCH"],
            ),
            Route("/api/v1/integrations/{provider}/probe", admin(self.probe)),
            Route("/api/v1/integrations/{provider}/sync-logs", self.sync_logs),
            Route("/api/v1/integrations/{provider}/sync-logs/{log_id}", self.sync_log),
            Route("/api/v1/integrations/{provider}/resync", admin(self.resync), methods=["POST"]),
            Route("/api/v1/actions/failed", admin(self.failed_actions_list)),
            Route("/api/v1/actions/rerun-failed", admin(self.rerun_failed), methods=["POST"]),
            Route("/admin/fallback-routing", admin(self.fallback_routing), methods=["POST"]),
            Route("/admin/deploy", admin(self.deploy), methods=["POST"]),
            Route("/api/v1/integrations/{provider}/refresh", admin(self.refresh), methods=["POST"]),
            Route("/api/v1/integrations/{provider}/retry-failed", admin(self.retry_failed), methods=["POST"]),
            Route("/api/v1/system-metrics/queues", self.queues),
            Route("/admin/kill-switch", admin(self.kill_switch), methods=["POST"]),
            Route("/admin/mode", admin(self.mode), methods=["POST"]),
            Route("/admin/circuit-breaker/reset", admin(self.circuit_reset), methods=["POST"]),
            Route("/admin/webhooks/rotate-secret", admin(self.rotate_secret), methods=["POST"]),
            Route("/admin/integrations/{provider}/polling", admin(self.polling), methods=["POST"]),
            Route("/admin/restart", admin(self.restart), methods=["POST"]),
            Route("/admin/status", admin(self.status)),
            Route("/api/cache/warmup", admin(self.warmup), methods=["POST"]),
            Route("/demo/faults", self.faults_get),
            Route("/demo/faults", admin(self.faults_delete), methods=["DELETE"]),
            Route("/demo/faults/{name}", admin(self.faults_post), methods=["POST"]),
            Route("/demo/faults/{name}", admin(self.faults_delete), methods=["DELETE"]),
            Route("/demo/webhook-secret", admin(self.webhook_secret)),
        ]
        if self.name == "storefront":
            routes += [
                Route("/api/products", self.products),
                Route("/api/products/{id:int}", self.product),
                Route("/api/checkout", self.checkout, methods=["POST"]),
                Route("/webhooks/chatwoot", self.webhook, methods=["POST"]),
                Route("/demo/chatwoot/hc", self.chatwoot_hc),
            ]
        else:
            routes.append(Route("/webhooks/richpanel", self.webhook, methods=["POST"]))

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette):
            await self.startup()
            yield
            await self.shutdown()

        return Starlette(routes=routes, middleware=[Middleware(_Metered, service=self)], lifespan=lifespan)

    async def webhook_secret(self, request: Request) -> Response:
        """The secret the partner signs with (demo only: the load generator plays the partner)."""
        return JSONResponse({"secret": self.state.shared_secret})

    def admin(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        expected = f"Bearer {self.token}".encode()

        async def guarded(request: Request) -> Response:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"error": "admin endpoint: Authorization: Bearer <admin_token> required"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await handler(request)

        return guarded


class _Metered:
    """Counts requests by status and times them; fails public requests under error-spike."""

    def __init__(self, app: Any, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        metered = not (path == "/health" or path.startswith(UNMETERED))
        public = metered and not path.startswith(
            ("/admin", "/api/v1/admin", "/api/v1/integrations", "/api/cache")
        )
        started = time.perf_counter()
        status, started_response = 500, False

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
            await send(message)

        try:
            if public and self.service.state.request_error():
                await _plain(500, f"worker error: TypeError in release v{self.service.state.release}")(
                    scope, receive, send_status
                )
            else:
                await self.app(scope, receive, send_status)
        except Exception:
            if started_response:
                raise
            await _plain(500, "internal error")(scope, receive, send_status)
        finally:
            if metered:
                self.service.metrics.requests.labels(status=str(status)).inc()
                self.service.metrics.duration.observe(time.perf_counter() - started)
                if path.startswith("/webhooks/"):
                    source = path.removeprefix("/webhooks/")
                    self.service.metrics.webhook_requests.labels(source=source, status=str(status)).inc()


def _plain(status: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=status)


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _epoch(value: Any) -> float | None:
    """An ISO 8601 time or epoch seconds, as epoch seconds; None when it is neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        from datetime import UTC, datetime

        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return None


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m console.demo.service")
    parser.add_argument("personality", choices=("storefront", "sync-worker"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", default=os.environ.get(DSN_ENV), help=f"default: ${DSN_ENV}")
    parser.add_argument("--token-file", required=True, help="file holding the admin token")
    parser.add_argument("--state-dir", help="the demo state dir (only to mark the process)")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error(f"--dsn or ${DSN_ENV} is required")
    with open(args.token_file) as f:
        token = f.read().strip()
    service = Service(args.personality, args.dsn, token)
    config = uvicorn.Config(
        service.app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False, lifespan="on"
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
