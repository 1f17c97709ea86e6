"""Issue 19, point 3: the rules view (``P``), under Pilot and as a picture.

Fixed data through the real Poller (tests/ui_data.py): a Prometheus whose rules API lists three
groups — one rule failing at evaluation (with hostile text in its error), one group slower than
its interval, rules firing, pending, inactive and recording. The engine's side against a real
Prometheus is tests/test_prometheus_estate.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from console.app import ConsoleApp
from console.model import PromRule, RuleGroup, ScrapeTarget
from console.poller import Poller
from panels.detail import DetailScreen
from panels.rules import RulesScreen
from tests import ui_data
from tests.pilot import wait_for, wait_for_screen
from tests.test_ui_oncall import screen_text

ERROR = "vector contains metrics with the same labelset after applying alert labels"


def _rule(name: str, state: str = "inactive", **fields) -> PromRule:
    fields.setdefault("type", "alerting")
    fields.setdefault("health", "ok")
    fields.setdefault("duration", 300.0)
    fields.setdefault("evaluation_time", 0.0004)
    return PromRule(name=name, state=state, query=f"{name.lower()}_metric > 1", **fields)


GROUPS = (
    RuleGroup(
        name="incident-console.services", file="/etc/prometheus/rules.yml", interval=30.0,
        evaluation_time=0.004, rules_total=4,
        rules=(
            _rule("HighErrorRate", "firing", severity="critical", labels=(("severity", "critical"),), alerts=1),
            _rule("SyncJobFailure", "pending", severity="high", labels=(("severity", "high"),), alerts=1),
            _rule("QueueBacklog", severity="warning", labels=(("severity", "warning"),)),
            _rule("job:http_requests:rate5m", "", type="recording", duration=None),
        ),
    ),
    RuleGroup(
        name="postgres-exporter", file="/etc/prometheus/exporters.yml", interval=30.0, evaluation_time=0.002,
        rules_total=2,
        rules=(
            _rule("PostgresqlTooManyConnections", severity="warning", duration=120.0),
            _rule("PostgresqlDuplicateLabels", health="err", severity="critical", duration=0.0,
                  last_error=f"{ERROR} {ui_data.HOSTILE}"),
        ),
    ),
    RuleGroup(
        name="slow-recording", file="/etc/prometheus/heavy.yml", interval=1.0, evaluation_time=2.5, rules_total=1,
        rules=(_rule("instance:node_cpu:ratio", "", type="recording", duration=None, evaluation_time=2.49),),
    ),
)  # fmt: skip


def app() -> ConsoleApp:
    config = ui_data.config(ui={"bell": False})
    prom = dataclasses.replace(
        ui_data.prometheus_snapshot(),
        rule_groups=GROUPS,
        rules_total=7,
        targets=(
            ScrapeTarget(
                job="node", instance="10.0.0.7:9100", health="down", last_error="connection refused"
            ),
            ScrapeTarget(job="storefront", instance="127.0.0.1:8080", health="up"),
        ),
    )
    replay = [s for s in ui_data.sources() if s.key != "prometheus"]
    replay.append(ui_data.ReplaySource("prometheus", [prom], 5.0))
    poller = Poller(config, sources=replay, clock=lambda: ui_data.NOW)
    for source in replay:
        poller.publish(source.snapshots[0])
    return ConsoleApp(
        config, poller=poller, clock=lambda: ui_data.NOW, autopoll=False, pack=ui_data.pack(config)
    )


def rows(screen: RulesScreen) -> dict[str, list[str]]:
    table = screen.query_one("#rules-table")
    return {key: [str(c) for c in table.get_row(key)] for key in table.keys}


async def test_p_shows_every_group_and_rule_filters_and_opens_one() -> None:
    console = app()
    async with console.run_test(size=(160, 48)) as pilot:
        # The failing rule and the slow group are breaches on the main screen too.
        titles = [b.title for b in console.state.breaches]
        assert "rule PostgresqlDuplicateLabels fails to evaluate" in titles
        assert "rule group slow-recording evaluates slower than its interval" in titles
        await pilot.press("P")
        screen = await wait_for_screen(pilot, RulesScreen)
        shown = rows(screen)
        rule_rows = [k for k in shown if k.startswith("r:")]
        assert len(rule_rows) == 7 and sum(k.startswith("g:") for k in shown) == 3
        by_name = {cells[2].strip(): cells for key, cells in shown.items() if key.startswith("r:")}
        assert by_name["HighErrorRate"][:2] == ["✖ firing", "ok"] and by_name["HighErrorRate"][3:5] == [
            "5m00s",
            "critical",
        ]
        assert by_name["SyncJobFailure"][0] == "◌ pending" and by_name["SyncJobFailure"][4] == "high"
        assert by_name["job:http_requests:rate5m"][0] == "· recording"
        broken = by_name["PostgresqlDuplicateLabels"]
        assert broken[1] == "! ERROR" and broken[6].startswith(ERROR) and broken[3] == "0s"
        assert "[@click=app.quit]" in broken[6]  # hostile text shown as text, nothing acts
        slow = next(
            cells for key, cells in shown.items() if key.startswith("g:") and "slow-recording" in cells[2]
        )
        assert slow[1] == "▲ SLOW" and slow[5] == "2.5s"
        assert any("10.0.0.7:9100" in cells[2] and cells[1] == "down" for cells in shown.values())
        title = str(screen.query_one("#rules-title").render())
        assert "7 rules shown" in title and "1 failing" in title

        await pilot.press("slash", *"labelset", "enter")
        await wait_for(
            pilot, lambda: len([k for k in rows(screen) if k.startswith("r:")]) == 1, 5, "the filter"
        )
        filtered = rows(screen)
        assert [k for k in filtered if k.startswith("g:")] == [
            "g:prometheus:/etc/prometheus/exporters.yml:postgres-exporter"
        ]
        assert "6 hidden" in str(screen.query_one("#rules-title").render())

        table = screen.query_one("#rules-table")
        table.move_cursor(row=table.keys.index(next(k for k in table.keys if k.startswith("r:"))))
        await pilot.press("enter")
        detail = await wait_for_screen(pilot, DetailScreen)
        assert "postgresqlduplicatelabels_metric > 1" in detail.body and ERROR in detail.body
        await pilot.press("escape")
        await wait_for_screen(pilot, RulesScreen)
        await pilot.press("slash", "escape")  # Esc in the filter clears it
        await wait_for(
            pilot, lambda: len([k for k in rows(screen) if k.startswith("r:")]) == 7, 5, "all rules back"
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(console.screen, RulesScreen), 5, "the view closed")
        assert ("P", "Rules", "everywhere") in list(console.key_rows())


async def test_at_80x24_the_rules_fit_the_box_and_a_failing_rule_still_says_so() -> None:
    """At 80x24 the table ran past the box: "every 30s" was cut short without … and the
    rules' errors were out of sight. The for column now goes before the error is squeezed."""
    console = app()
    async with console.run_test(size=(80, 24)) as pilot:
        await pilot.press("P")
        screen = await wait_for_screen(pilot, RulesScreen)
        table = screen.query_one("#rules-table")
        await wait_for(pilot, lambda: table.row_count > 0, 5, "the rules")
        for _ in range(3):
            await pilot.pause()
        assert table.virtual_size.width <= table.scrollable_content_region.width
        assert table.shown_columns == ["state", "health", "rule", "error"]
        shown = rows(screen)
        broken = next(
            c for k, c in shown.items() if k.startswith("r:") and "PostgresqlDuplicateLabels" in c[2]
        )
        assert broken[1] == "! ERROR" and broken[3].startswith(ERROR[:10])
        picture = screen_text(console)
        assert "PostgresqlDuplicateLabels" in picture and ERROR[:6] in picture and "…" in picture


@pytest.mark.parametrize("size", [(120, 36)], ids=["120x36"])
def test_rules_view_picture(snap_compare, size) -> None:
    async def settle(pilot) -> None:
        await pilot.pause()
        pilot.app.header.remove_class("-flash")

    assert snap_compare(app(), terminal_size=size, press=["P"], run_before=settle)


async def test_several_servers_each_under_its_name() -> None:
    """prometheus: as a list: the header, the metrics summary and the rules view name each server;
    the queries of the first one keep their rows."""
    data = dict(ui_data.CONFIG)
    data["prometheus"] = [
        {**ui_data.CONFIG["prometheus"], "name": "eu-a"},
        {"name": "eu-b", "url": "http://127.0.0.1:9"},
    ]
    config = ui_data.config(ui={"bell": False}, prometheus=data["prometheus"])
    first = dataclasses.replace(
        ui_data.prometheus_snapshot(), source="prometheus:eu-a", name="eu-a", rule_groups=GROUPS[:1]
    )
    second = dataclasses.replace(
        ui_data.prometheus_snapshot(),
        source="prometheus:eu-b",
        name="eu-b",
        queries=(),
        rule_groups=GROUPS[1:2],
    )
    replay = [s for s in ui_data.sources() if s.key != "prometheus"]
    replay += [
        ui_data.ReplaySource("prometheus:eu-a", [first], 5.0),
        ui_data.ReplaySource("prometheus:eu-b", [second], 5.0),
    ]
    poller = Poller(config, sources=replay, clock=lambda: ui_data.NOW)
    for source in replay:
        poller.publish(source.snapshots[0])
    console = ConsoleApp(
        config, poller=poller, clock=lambda: ui_data.NOW, autopoll=False, pack=ui_data.pack(config)
    )
    async with console.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        header = str(console.header.render())
        assert "prom:eu-a" in header and "prom:eu-b" in header
        metrics = next(p for p in console.panels if p.id == "p-metrics")
        assert metrics.table.row_count == 5 and "eu-a:" in str(metrics.summary.render())
        # The same alerts from both servers (an HA pair): one row each.
        assert sum(1 for b in console.state.breaches if b.title == "HighErrorRate") == 1
        await pilot.press("P")
        screen = await wait_for_screen(pilot, RulesScreen)
        servers = [cells[0] for key, cells in rows(screen).items() if key.startswith("s:")]
        assert servers == ["▸ eu-a", "▸ eu-b"]
        assert "2 Prometheus servers, 6 rules shown" in str(screen.query_one("#rules-title").render())
