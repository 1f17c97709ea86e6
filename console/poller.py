"""Owns the sources, the clock and the threshold engine; publishes ConsoleState.

The TUI drives polls from its own workers (one per source, chained timers) and hands each
snapshot to :meth:`Poller.publish`; headless callers (``snapshot``, soak, benchmarks) use
:meth:`Poller.poll_all` or :meth:`Poller.run`. Either way a poll has a hard timeout and a
failed or timed-out poll is a snapshot with an error, never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from console import estate
from console.config import Config, Environment
from console.measure import measure
from console.model import (
    ErrorKind,
    PostgresSnapshot,
    PrometheusSnapshot,
    Severity,
    Snapshot,
    SourceError,
    SourceKey,
)
from console.rules import (
    Breach,
    State,
    ThresholdEngine,
    endpoint_breach,
    group_related,
    one_per_failing_source,
    sort_breaches,
    worst,
)
from console.sources.base import Source, source_error

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ConsoleState:
    """Everything the panels render, at one moment. Immutable."""

    taken_at: float
    environment: Environment
    read_only: bool
    snapshots: Mapping[str, Snapshot] = field(default_factory=lambda: MappingProxyType({}))
    last_good: Mapping[str, Snapshot] = field(default_factory=lambda: MappingProxyType({}))
    breaches: tuple[Breach, ...] = ()
    intervals: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def worst(self) -> Severity:
        return worst(self.breaches)

    def age(self, source: str, now: float) -> float | None:
        """Seconds since the source's last snapshot, or None before its first poll."""
        snapshot = self.snapshots.get(source)
        return None if snapshot is None else max(now - snapshot.taken_at, 0.0)

    def is_stale(self, source: str, now: float, factor: float = 3.0) -> bool:
        """True when the last good data is older than ``factor`` intervals (or there is none)."""
        good = self.last_good.get(source)
        interval = self.intervals.get(source, 10.0)
        return good is None or now - good.taken_at > factor * interval

    def old_sources(self, now: float, factor: float = 3.0) -> list[str]:
        """The sources without fresh data (see ``is_stale``): while any is, an empty breach
        list does not mean that all is well."""
        return [key for key in self.intervals if self.is_stale(key, now, factor)]


def next_delay(interval: float, elapsed: float) -> float:
    """Seconds to wait before a source's next poll, its last poll having taken ``elapsed``.

    A refresh of 1 s means one poll a second: the wait is what is left of the interval. Polls
    stay chained (the next is scheduled when the last finished, never on a fixed timer, so they
    cannot pile up), and a poll slower than half the interval is followed by a pause of half
    the interval, so a struggling server is never polled back to back."""
    return max(interval - elapsed, interval / 2)


def build_sources(config: Config) -> list[Source]:
    """One source per health target, Prometheus server and Postgres cluster. Each kind's module
    (and its client library: httpx, prometheus-api-client and requests, asyncpg) is imported only
    when the config has a source of that kind (start-up, docs/SCALE.md)."""
    sources: list[Source] = []
    if config.health:
        from console.sources.health import HealthSource

        sources += [HealthSource(target, config.refresh.health) for target in config.health]
    if config.prometheus_servers:
        from console.sources.prometheus import PrometheusSource

        fleet = config.fleet_server
        sources += [
            PrometheusSource(
                server, config.refresh.prometheus, fleet=config.fleet if server is fleet else None
            )
            for server in config.prometheus_servers
        ]
    if config.postgres:
        from console.sources.postgres import PostgresSource

        sources += [PostgresSource(cluster, config.refresh.postgres) for cluster in config.postgres]
    return sources


class Poller:
    def __init__(
        self,
        config: Config,
        *,
        sources: list[Source] | None = None,
        clock: Clock = time.time,
        alert_runbooks: dict[str, tuple[str, ...]] | None = None,
    ):
        self.config = config
        self.clock = clock
        self.sources: dict[SourceKey, Source] = {
            SourceKey.of(s.key): s for s in (sources if sources is not None else build_sources(config))
        }
        self.engine = ThresholdEngine(config.thresholds())
        self.alert_runbooks = alert_runbooks or {}
        self._snapshots: dict[str, Snapshot] = {}
        self._last_good: dict[str, Snapshot] = {}
        self._endpoints_failing_since: dict[str, float] = {}
        self._failing_since: dict[str, float] = {}  # source -> when its polls began to fail
        self._seen_since: dict[str, float] = {}  # rule / Alertmanager breach id -> first seen
        # Kept from one publish to the next, so that a round of N sources' publishes does not
        # redo every source's work N times (docs/SCALE.md): a cluster's lock-tree pids by its
        # snapshot, and the grouped breaches (rules.group_related).
        self._tree_pids: dict[str, tuple[Snapshot, frozenset[int]]] = {}
        self._grouped: dict[str, tuple[Breach, str, Breach]] = {}
        self._intervals = MappingProxyType({key: s.interval for key, s in self.sources.items()})
        self.state = self._state()

    async def poll_source(self, key: str) -> Snapshot:
        """Poll one source under its hard timeout. Never raises (but for cancellation)."""
        source = self.sources[key]
        started, mono = self.clock(), time.monotonic()
        try:
            return await asyncio.wait_for(source.poll(), timeout=source.timeout)
        except TimeoutError:
            error = SourceError(ErrorKind.TIMEOUT, f"no answer within {source.timeout:g}s")
        except Exception as exc:  # a source broke its contract; still never fatal
            error = source_error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")
        return source.failed(error, started, time.monotonic() - mono)

    def publish(self, snapshot: Snapshot) -> ConsoleState:
        """Record a snapshot, advance the thresholds bound to it, return the new state."""
        self._snapshots[snapshot.source] = snapshot
        if snapshot.error is None:
            self._last_good[snapshot.source] = snapshot
            self._failing_since.pop(snapshot.source, None)
        else:
            self._failing_since.setdefault(snapshot.source, snapshot.taken_at)
        if isinstance(snapshot, PrometheusSnapshot) and snapshot.endpoint_errors:
            self._endpoints_failing_since.setdefault(snapshot.source, snapshot.taken_at)
        else:
            self._endpoints_failing_since.pop(snapshot.source, None)
        self.engine.update(measure(snapshot, self.engine.thresholds.values()), self.clock())
        self.state = self._state()
        return self.state

    def _state(self) -> ConsoleState:
        breaches = self.engine.breaches()
        proms = [s for s in self._snapshots.values() if isinstance(s, PrometheusSnapshot)]
        # The estate's alerts once (HA pairs, Alertmanager), its failing rules and Alertmanagers.
        breaches += estate.alert_breaches(proms, self.alert_runbooks)
        seen: dict[str, float] = {}

        def since(breach_id: str, at: float) -> float:
            seen[breach_id] = self._seen_since.get(breach_id, at)
            return seen[breach_id]

        for snapshot in proms:
            since_failing = self._endpoints_failing_since.get(snapshot.source, snapshot.taken_at)
            if (failing := endpoint_breach(snapshot, since_failing)) is not None:
                breaches.append(failing)
            breaches += estate.rule_breaches(snapshot, since)
        breaches += estate.alertmanager_breaches(proms, since)
        self._seen_since = seen
        failing = {
            key: (snapshot, self._failing_since.get(key, snapshot.taken_at))
            for key, snapshot in self._snapshots.items()
            if snapshot.error is not None
        }
        breaches = one_per_failing_source(breaches, failing)
        breaches = self._with_last_known(breaches, failing, proms)
        lock_pids = {
            key: self._lock_pids(snapshot)
            for key, snapshot in self._last_good.items()
            if isinstance(snapshot, PostgresSnapshot) and snapshot.lock_tree and key not in failing
        }
        breaches = group_related(breaches, lock_pids, self._grouped)
        return ConsoleState(
            taken_at=self.clock(),
            environment=self.config.environment,
            read_only=self.config.read_only,
            snapshots=MappingProxyType(dict(self._snapshots)),
            last_good=MappingProxyType(dict(self._last_good)),
            breaches=tuple(sort_breaches(breaches)),
            intervals=self._intervals,
        )

    def _with_last_known(
        self, breaches: list[Breach], failing: Mapping[str, object], proms: list[PrometheusSnapshot]
    ) -> list[Breach]:
        """The breaches, with what was last shown for what cannot be read now: the thresholds
        of a failing source that were not ok, and the alerts of a Prometheus whose alerts
        endpoint fails (and their values, where Alertmanager, which has none, still holds
        them). They stay as they were (their rows go stale with their source) beside the
        source's ERROR row: a Prometheus that timed out for 20 s had ended every alert and CRIT
        in the journal, and started them all again, new, when it answered."""
        last = getattr(self, "state", None)
        blind_alerts = {
            s.source
            for s in proms
            if s.error is not None or any(name == "alerts" for name, _ in s.endpoint_errors)
        }
        if last is None or not (failing or blind_alerts):
            return breaches
        before = {b.id: b for b in last.breaches}
        shown = []
        for b in breaches:
            was = before.get(b.id)
            if b.kind == "alert" and b.source in blind_alerts and not b.value_text and was and was.value_text:
                b = replace(b, value_text=was.value_text)
            shown.append(b)
        ids = {b.id for b in shown}
        return shown + [
            b
            for b in last.breaches
            if b.id not in ids
            and (
                (b.kind == "threshold" and b.source in failing and b.state not in (State.ERROR, State.NODATA))
                or (b.kind == "alert" and b.source in blind_alerts)
            )
        ]

    def _lock_pids(self, snapshot: PostgresSnapshot) -> frozenset[int]:
        """Every pid of the snapshot's blocking tree, walked once per snapshot."""
        cached = self._tree_pids.get(snapshot.source)
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        pids = frozenset(node.pid for root in snapshot.lock_tree for _, node in root.walk())
        self._tree_pids[snapshot.source] = (snapshot, pids)
        return pids

    async def poll_all(self) -> ConsoleState:
        """Poll every source once, concurrently, and publish the results."""
        snapshots = await asyncio.gather(*(self.poll_source(key) for key in self.sources))
        for snapshot in snapshots:
            self.publish(snapshot)
        return self.state

    async def run(
        self,
        on_state: Callable[[ConsoleState], Awaitable[None] | None],
        *,
        interval_scale: float = 1.0,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Headless loop: one task per source, each scheduling its next poll after the last."""
        stop = stop or asyncio.Event()

        async def loop(key: str) -> None:
            source = self.sources[key]
            while not stop.is_set():
                started = time.monotonic()
                state = self.publish(await self.poll_source(key))
                result = on_state(state)
                if asyncio.iscoroutine(result):
                    await result
                delay = next_delay(source.interval * interval_scale, time.monotonic() - started)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)

        await asyncio.gather(*(loop(key) for key in self.sources))

    async def aclose(self) -> None:
        for source in self.sources.values():
            # Closing a broken connection must not stop closing the others.
            with contextlib.suppress(Exception):
                await source.aclose()
