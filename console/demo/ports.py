"""Loopback ports for processes that bind them later: the demo's children, private clusters,
test and bench servers.

A port is picked by binding it and letting it go; whoever it is for binds it a moment later.
A port from the kernel's ephemeral range (``net.ipv4.ip_local_port_range``) can be taken in
that moment by any outgoing connection on the machine, which the parallel tests make by the
thousand: so the pick comes from below that range when there is room, where only an explicit
bind takes a port. What can still collide (another picker's bind) is for the caller to retry.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10000  # below: well-known and registered services' usual ports
TRIES = 64
#: What a server logs when its port was taken: Go and Python; Postgres.
PORT_TAKEN = ("address already in use", "could not bind")


def says_port_taken(log: str) -> bool:
    said = log.lower()
    return any(phrase in said for phrase in PORT_TAKEN)


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default without /proc)."""
    try:
        low, high = (int(part) for part in PORT_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``, below the ephemeral range if it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    low, _ = ephemeral_range()
    candidates = range(LOWEST, low) if low > LOWEST else range(0)
    for port in random.sample(candidates, min(TRIES, len(candidates))):
        with socket.socket(family) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(family) as sock:  # no room below the range, or all tried were taken
        sock.bind((host, 0))
        return sock.getsockname()[1]
