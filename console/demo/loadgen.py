"""The built-in load generator: customers on the storefront, partners delivering webhooks.

A handful of loops, each one request at a time with a pause, so the load is steady (about 15
requests/s in all) and a slow endpoint slows its own loop instead of piling up requests.
Chatwoot's and Richpanel's webhook deliveries are signed with the secret the service shares
with them (``/demo/webhook-secret``), fetched again after a rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable

import httpx

from console.demo import shopdb
from console.demo.service import SIGNATURE_HEADER, sign


class LoadGenerator:
    def __init__(self, storefront_url: str, sync_worker_url: str, token: str):
        self.storefront = storefront_url.rstrip("/")
        self.sync_worker = sync_worker_url.rstrip("/")
        self.token = token
        self.client = httpx.AsyncClient(timeout=10)
        self.secrets: dict[str, tuple[str, float]] = {}
        self.sent = 0

    async def run(self) -> None:
        loops: list[tuple[Callable[[], Awaitable[object]], float]] = [
            (self.category_page, 0.15),
            (self.product_page, 0.2),
            (self.home, 0.3),
            (self.checkout, 0.5),
            (lambda: self.webhook(self.storefront, "/webhooks/chatwoot"), 0.7),
            (lambda: self.webhook(self.sync_worker, "/webhooks/richpanel"), 0.5),
        ]
        try:
            await asyncio.gather(*(self._loop(step, pause) for step, pause in loops))
        finally:
            await self.client.aclose()

    async def _loop(self, step: Callable[[], Awaitable[object]], pause: float) -> None:
        await asyncio.sleep(random.random() * pause)
        while True:
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError):
                await step()
                self.sent += 1
            await asyncio.sleep(pause * random.uniform(0.8, 1.2))

    async def category_page(self) -> None:
        await self.client.get(
            f"{self.storefront}/api/products", params={"category": random.choice(shopdb.CATEGORIES)}
        )

    async def product_page(self) -> None:
        await self.client.get(f"{self.storefront}/api/products/{random.randint(1, shopdb.PRODUCTS)}")

    async def home(self) -> None:
        await self.client.get(f"{self.storefront}/")

    async def checkout(self) -> None:
        sku = f"SKU-{1002 + random.randint(0, shopdb.PRODUCTS - 2)}"  # never the contended HOT_SKU
        body = {"customer_id": random.randint(1, 5000), "sku": sku, "quantity": random.randint(1, 3)}
        await self.client.post(f"{self.storefront}/api/checkout", json=body)

    async def secret(self, base: str, refresh: bool = False) -> str:
        cached = self.secrets.get(base)
        if cached and not (refresh and time.monotonic() - cached[1] > 1.0):
            return cached[0]
        response = await self.client.get(
            f"{base}/demo/webhook-secret", headers={"Authorization": f"Bearer {self.token}"}
        )
        secret = response.json()["secret"]
        self.secrets[base] = (secret, time.monotonic())
        return secret

    async def webhook(self, base: str, path: str) -> None:
        event = {"id": f"evt-{random.getrandbits(48):012x}", "type": "message.created", "at": time.time()}
        body = json.dumps(event).encode()
        response = await self.client.post(
            base + path,
            content=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(await self.secret(base), body),
            },
        )
        if response.status_code == 401:
            await self.secret(base, refresh=True)
