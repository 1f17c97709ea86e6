"""Issue 20 point 4: a fleet read through Prometheus, against the demo stack's real Prometheus
scraping the real prometheus-postgres-exporter (Debian's, run against the demo's Postgres).

The exporter exports every metric the fleet reads; a cluster seen only through Prometheus gets a
row "via prometheus" with its scrape age and the same max_connections the direct connection
reads; with a direct DSN for the same cluster (an alias maps the exporter's instance to its
name) the direct row wins; the app shows the row and Enter on it tells what is known."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from console.app import ConsoleApp
from console.config import Config, FleetSettings
from console.fleet import fleet_rows
from console.fleet_prom import queries
from console.model import PostgresSnapshot, PrometheusSnapshot, SourceKey
from console.poller import ConsoleState, Poller
from panels.detail import DetailScreen
from panels.fleet import FleetPanel
from tests.fixtures.demo import DemoStack
from tests.pilot import poll_until as polling
from tests.pilot import wait_for, wait_for_screen

pytestmark = pytest.mark.timeout(180)


def api(demo_stack: DemoStack, path: str, **params: str) -> Any:
    prometheus = demo_stack.control.urls["prometheus"]
    return httpx.get(f"{prometheus}/api/v1/{path}", params=params, timeout=5).json()["data"]


def exporter_instance(demo_stack: DemoStack) -> str:
    result = api(demo_stack, "query", query='up{job="postgres"}')["result"]
    assert len(result) == 1, result
    return result[0]["metric"]["instance"]


def config_for(demo_stack: DemoStack, tmp_path: Path, *, direct: bool, **fleet: Any) -> Config:
    demo = yaml.safe_load(demo_stack.config_path.read_text())
    doc = {
        "environment": {"name": "fleet-prometheus"},
        "refresh": {"prometheus": "1s", "postgres": "1s"},
        "ui": {"bell": False},
        "journal": str(tmp_path / "journal.jsonl"),
        "prometheus": {k: v for k, v in demo["prometheus"].items() if k != "queries"},
        "fleet": {"prometheus": "prometheus", **fleet},
    }
    if direct:
        doc["postgres"] = demo["postgres"]
    return Config.model_validate(doc)


def poll_until(poller: Poller, check, timeout: float = 30) -> Awaitable[ConsoleState]:
    return polling(poller.poll_all, check, timeout, lambda state: fleet_rows(state, time.time()))


def test_the_exporter_exports_every_metric_the_fleet_reads(demo_stack: DemoStack) -> None:
    """The names in console/fleet_prom.py are those this exporter version (0.11.1) exports:
    every fleet query finds the demo's cluster by its instance."""
    instance = exporter_instance(demo_stack)
    for name, query in queries(FleetSettings()).items():
        result = api(demo_stack, "query", query=query)["result"]
        assert result and all(r["metric"].get("instance") == instance for r in result), (name, result)
    connections = api(demo_stack, "query", query=queries(FleetSettings())["connections"])["result"]
    states = {r["metric"]["state"] for r in connections}
    assert {"active", "idle", "idle in transaction"} <= states


async def test_a_cluster_through_prometheus_reads_like_the_direct_one_and_the_direct_row_wins(
    demo_stack: DemoStack, tmp_path: Path
) -> None:
    instance = exporter_instance(demo_stack)
    # Direct and through Prometheus at once, without an alias: two rows, the direct one says
    # what the exporter must agree with.
    both = Poller(config_for(demo_stack, tmp_path, direct=True))
    try:
        state = await poll_until(
            both,
            lambda s: (
                {r.via for r in fleet_rows(s, time.time())} == {"direct", "prometheus"}
                and all(r.badge != "… WAITING" for r in fleet_rows(s, time.time()))
            ),
        )
        rows = {r.cluster: r for r in fleet_rows(state, time.time())}
        direct = state.last_good[SourceKey.postgres("demo")]
        assert isinstance(direct, PostgresSnapshot)
        via = rows[instance]
        assert via.via == "prometheus" and via.via_words == "via prometheus" and via.source is None
        assert via.max_connections == direct.max_connections > 0
        assert via.used is not None and via.used > 0 and via.active is not None
        assert via.locks is not None and via.locks > 0 and via.longest_tx is not None
        assert via.waiting is None  # the exporter has no lock-wait count: unknown, not 0
        assert via.age is not None and via.age < 60 and via.badge in ("● OK", "▲ WARN", "✖ CRIT", "◆ INFO")
        assert rows["demo"].via == "direct"
    finally:
        await both.aclose()

    # The alias names the exporter's instance as the configured cluster: one row, the direct one.
    aliased = Poller(config_for(demo_stack, tmp_path, direct=True, aliases={instance: "demo"}))
    try:
        state = await poll_until(
            aliased,
            lambda s: (
                any(isinstance(p, PrometheusSnapshot) and p.fleet for p in s.last_good.values())
                and SourceKey.postgres("demo") in s.last_good
            ),
        )
        rows = fleet_rows(state, time.time())
        assert [(r.cluster, r.via) for r in rows] == [("demo", "direct")]
        assert rows[0].source == SourceKey.postgres("demo")
    finally:
        await aliased.aclose()


async def test_the_app_shows_a_cluster_via_prometheus_and_enter_says_what_is_known(
    demo_stack: DemoStack, tmp_path: Path
) -> None:
    instance = exporter_instance(demo_stack)
    config = config_for(demo_stack, tmp_path, direct=False, aliases={instance: "shop"})
    assert config.fleet_tab  # automatic with a fleet through Prometheus
    app = ConsoleApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        fleet = next(p for p in app.panels if isinstance(p, FleetPanel))
        await wait_for(pilot, lambda: fleet.table.keys == ["shop"], timeout=30, what=lambda: fleet.table.keys)
        await pilot.press("f")
        await wait_for(pilot, lambda: fleet.has_class("-active") and app.focused is fleet.table)
        await wait_for(
            pilot,
            lambda: "via prometheus" in fleet.rows["shop"].via_words and fleet.rows["shop"].age is not None,
        )
        await pilot.press("enter")
        detail = await wait_for_screen(pilot, DetailScreen)
        assert detail.title_text == "fleet: shop"
        assert "cluster: shop (via prometheus)" in detail.body and "no direct connection" in detail.body
        assert "pg_locks_count" in detail.body and "scrape: " in detail.body
