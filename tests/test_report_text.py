"""The text report of `incident-console snapshot` (console/report.py) on fixed states: every line
is one line, columns stay apart, untrusted text is folded and marked (issue 18)."""

from __future__ import annotations

import dataclasses

from console.model import HealthCheck, HealthSnapshot, HealthStatus, QueryResult
from console.poller import Poller
from console.report import render_text
from console.sanitize import NEWLINE_MARK, clean
from tests import ui_data
from tests.ui_data import NOW


def report(*snapshots, cfg=None) -> str:
    cfg = cfg or ui_data.config()
    replay = [ui_data.ReplaySource(s.source, [s]) for s in snapshots]
    poller = Poller(cfg, sources=replay, clock=lambda: NOW)
    for s in snapshots:
        poller.publish(s)
    return render_text(poller.state, NOW)


def health(name: str, **fields) -> HealthSnapshot:
    base = dict(
        source=f"health:{name}", taken_at=NOW, latency=0.012, target=name, url=f"http://127.0.0.1:1/{name}",
        format="health+json", status=HealthStatus.PASS, http_status=200,
    )  # fmt: skip
    return HealthSnapshot(**(base | fields))


def long_names_config():
    names = ["storefront", "sync-worker-eu-west-1-primary", "payments-gateway"]
    return ui_data.config(health=[{"name": n, "url": f"http://127.0.0.1:1/{n}"} for n in names]), names


def test_health_names_of_16_and_more_characters_do_not_run_into_the_next_column():
    cfg, names = long_names_config()
    text = report(*(health(n) for n in names), cfg=cfg)
    lines = {line.rsplit("/", 1)[1]: line for line in text.splitlines() if "127.0.0.1:1/" in line}
    assert set(lines) == set(names)
    for name, line in lines.items():
        assert f" {name}  " in line  # at least two spaces after the longest name
        assert line.index("HTTP 200") == lines[names[0]].index("HTTP 200")  # one column for every row


def test_long_query_ids_do_not_run_into_their_values():
    snap = ui_data.prometheus_snapshot()
    long_id = "checkout_p99_latency_by_region_seconds"
    queries = (*snap.queries, QueryResult(id=long_id, query="q", unit="s", value=1.5))
    text = report(dataclasses.replace(snap, queries=queries))
    line = next(line for line in text.splitlines() if long_id in line)
    assert f"{long_id}  1.5 s" in line


def test_a_check_without_detail_has_no_trailing_colon():
    snap = health(
        "storefront", status=HealthStatus.FAIL, http_status=503,
        checks=(HealthCheck("chatwoot", HealthStatus.FAIL, ""), HealthCheck("db", HealthStatus.WARN, "slow")),
    )  # fmt: skip
    text = report(snap)
    assert "✖ FAIL chatwoot\n" in text and "▲ WARN db: slow\n" in text


def test_line_and_paragraph_separators_never_reach_the_report():
    """U+2028/U+2029 from a body or a label break no line of the report and are not passed on."""
    snap = health("storefront", status=HealthStatus.FAIL, output=clean("down\u2028since 10:00\u2029really"))
    prom = ui_data.prometheus_snapshot()
    alert = dataclasses.replace(prom.alerts[0], labels=(*prom.alerts[0].labels, ("note", clean("a\u2028b"))))
    text = report(snap, dataclasses.replace(prom, alerts=(alert, *prom.alerts[1:])))
    assert "\u2028" not in text and "\u2029" not in text
    assert f"down {NEWLINE_MARK} since 10:00 {NEWLINE_MARK} really" in text
    breach = next(line for line in text.splitlines() if "HighErrorRate" in line)
    assert f"note=a {NEWLINE_MARK} b" in breach


def test_a_multi_line_query_says_it_continues_in_the_lock_tree_and_the_active_list():
    snap = ui_data.postgres_snapshot()
    multi = "UPDATE orders\n   SET status = 'void'\n WHERE id = 7"
    sessions = tuple(dataclasses.replace(x, query=multi) if x.pid == 4250 else x for x in snap.sessions)
    root = snap.lock_tree[0]
    waiter = dataclasses.replace(root.children[0], query=multi)
    snap = dataclasses.replace(
        snap, sessions=sessions, lock_tree=(dataclasses.replace(root, children=(waiter,)),)
    )
    lines = report(snap).splitlines()
    tree = next(line for line in lines if "pid 4250 app  waits" in line)
    assert tree.endswith(f"UPDATE orders {NEWLINE_MARK} SET status = 'void' {NEWLINE_MARK} WHERE id = 7")
    active = next(line for line in lines if line.startswith("  active pid 4250"))
    assert active.endswith(f"UPDATE orders {NEWLINE_MARK} SET status = 'void' {NEWLINE_MARK} WHERE id = 7")
    single = next(line for line in lines if line.startswith("  active pid 4300"))
    assert NEWLINE_MARK not in single


def test_a_threshold_breach_seen_once_does_not_claim_it_began_now():
    """`snapshot` looks once: each threshold breach read "for 0ms"; an alert knows its start."""
    text = render_text(ui_data.poller(ui_data.config()).publish(ui_data.postgres_snapshot()), NOW)
    lock = next(line for line in text.splitlines() if "sessions waiting on a lock" in line)
    assert "start unknown" in lock and "for 0ms" not in lock, lock
