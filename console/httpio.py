"""HTTP plumbing shared by the HTTP sources and the HTTP actions: one TLS context per CA
setting, and response bodies read with a size cap."""

from __future__ import annotations

import os
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where a request is made: a Postgres-only console never loads httpx
    import httpx

__all__ = ["BodyTooLarge", "read_capped", "tls_verify"]

_tls_contexts: dict[tuple[str, int], ssl.SSLContext] = {}


def tls_verify(verify: bool | str) -> ssl.SSLContext | bool:
    """What an httpx client verifies with: one shared SSLContext per CA setting.

    Building a context loads a CA bundle (about 30 ms of CPU, 0.1 ms for a client given one), and
    a client is made at start and again after every timed-out or cancelled request
    (:func:`console.sources.base.discard_client`): without sharing, a slow backend cost that on
    every poll. A CA file replaced on disk is read again (keyed by its mtime); a missing one
    raises OSError."""
    if verify is False:
        return False
    key = ("", 0) if verify is True else (verify, os.stat(verify).st_mtime_ns)
    context = _tls_contexts.get(key)
    if context is None:
        import httpx

        context = (
            httpx.create_ssl_context(verify=True)
            if verify is True
            else ssl.create_default_context(cafile=verify)
        )
        _tls_contexts[key] = context
    return context


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"response body larger than {limit // 1024} KiB")
        self.limit = limit


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    """Read a streamed response body, stopping with BodyTooLarge past ``limit`` bytes."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
