"""Health endpoint probes: one HealthSource per configured target.

Four formats, chosen by config (``health+json``, Spring actuator, Kubernetes ``/livez``
``/readyz``, plain ``status``), read by console/healthformats.py — which the runbooks' ``health``
check shares. A body we cannot read is an error snapshot, never an exception.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from console import redact
from console.config import HealthTarget
from console.healthformats import (
    AUTH_CODES,
    BODY_LIMIT,
    NotHealth,
    checks_of,
    parse,
)
from console.model import ErrorKind, HealthSnapshot, SourceError, SourceKey
from console.sources.base import (
    BodyTooLarge,
    Stopwatch,
    close_discarded,
    discard_client,
    http_error,
    http_status_error,
    read_capped,
    source_error,
    tls_verify,
)

TIMEOUT_MARGIN = 0.5  # the poller's hard limit sits just above our own deadline


class HealthSource:
    kind = "health"

    def __init__(self, target: HealthTarget, interval: float):
        self.target = target
        self.key = SourceKey.health(target.name)
        self.interval = interval
        self.timeout = target.timeout + TIMEOUT_MARGIN
        self._url = redact.url(target.url)
        self._client: httpx.AsyncClient | None = None
        # The config loader registers these too; a source built without it must not leak them.
        redact.register(*target.secrets())

    async def poll(self) -> HealthSnapshot:
        watch = Stopwatch()
        try:
            return await self._poll(watch)
        except Exception as exc:
            return self._snapshot(
                watch, error=source_error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")
            )

    def failed(self, error: SourceError, taken_at: float, latency: float | None) -> HealthSnapshot:
        return HealthSnapshot(
            source=self.key,
            taken_at=taken_at,
            latency=latency,
            error=error,
            target=self.target.name,
            url=self._url,
            format=self.target.format,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        await close_discarded()

    async def _poll(self, watch: Stopwatch) -> HealthSnapshot:
        try:
            client = self._ensure_client()
        except OSError as exc:  # unreadable or invalid CA file
            reason = f"cannot use CA file {self.target.verify_tls}: {exc}"
            return self._snapshot(watch, error=source_error(ErrorKind.CONFIG, reason))
        try:
            # httpx's timeout is per operation (and per redirect hop); this is the whole probe.
            async with asyncio.timeout(self.target.timeout):
                return await self._probe(client, watch)
        except asyncio.CancelledError:
            self._discard_client()
            raise
        except TimeoutError:
            self._discard_client()
            reason = f"no answer within {self.target.timeout:g}s"
            return self._snapshot(watch, error=source_error(ErrorKind.TIMEOUT, reason))
        except (httpx.HTTPError, OSError) as exc:
            return self._snapshot(watch, error=http_error(exc))

    def _discard_client(self) -> None:
        client, self._client = self._client, None
        discard_client(client)

    def _ensure_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                headers={"User-Agent": "incident-console"}
                | {name: h.value for name, h in self.target.headers.items()},
                verify=tls_verify(self.target.verify_tls),
                timeout=self.target.timeout,
                follow_redirects=True,
                max_redirects=5,
            )
        return self._client

    async def _probe(self, client: httpx.AsyncClient, watch: Stopwatch) -> HealthSnapshot:
        async with client.stream("GET", self.target.url) as response:
            code = response.status_code
            content_type = response.headers.get("content-type", "")
            try:
                # For "status" the code is the whole answer: the body is never read.
                body = b"" if self.target.format == "status" else await read_capped(response, BODY_LIMIT)
            except BodyTooLarge as exc:
                return self._snapshot(
                    watch, http_status=code, error=source_error(ErrorKind.BAD_RESPONSE, exc)
                )
        try:
            verdict = parse(self.target.format, code, content_type, body)
        except NotHealth as exc:
            error = (
                http_status_error(code, body)
                if code in AUTH_CODES
                else source_error(ErrorKind.BAD_RESPONSE, exc)
            )
            return self._snapshot(watch, http_status=code, error=error)
        checks, output = checks_of(verdict)
        return self._snapshot(watch, http_status=code, status=verdict.status, output=output, checks=checks)

    def _snapshot(self, watch: Stopwatch, **fields: Any) -> HealthSnapshot:
        return HealthSnapshot(
            source=self.key,
            taken_at=watch.taken_at,
            latency=watch.elapsed,
            target=self.target.name,
            url=self._url,
            format=self.target.format,
            **fields,
        )


# --- untrusted text -----------------------------------------------------------------------
