"""bench/report.py: a tool's repeated windows on one shape are pooled, never the last one kept."""

from __future__ import annotations

from bench import report


def window(tool: str, server_ms: float, refreshes: int = 20, **extra) -> dict:
    return {
        "tool": tool, "sessions": 1000, "refreshes": refreshes, "statements": refreshes,
        "server_ms": server_ms * refreshes, "cpu_s": 0.05 * refreshes, "bytes": 800 * refreshes,
        "window_s": 20.0, "load": [0.5, 0.6], "rss_mb": 80.0, "rss_at_s": 60.0, **extra,
    }  # fmt: skip


def result(*runs: dict) -> dict:
    return {"runs": list(runs), "mode_settings": {"duration": 20, "warmup": 3, "repeats": 2}, "shapes": {}}


def test_windows_of_one_tool_are_pooled_and_listed():
    runs = report._runs(result(
        window(report.OURS, 8.0), window(report.THEIRS, 16.0),
        window(report.THEIRS, 12.0), window(report.OURS, 10.0, refreshes=19),
    ))  # fmt: skip
    ours = report.per_refresh(runs[(1000, report.OURS)])
    assert ours["refreshes"] == 39 and ours["window"] == 40.0
    assert abs(ours["server_ms"] - (8.0 * 20 + 10.0 * 19) / 39) < 1e-9
    assert [w["server_ms"] for w in runs[(1000, report.OURS)]["windows"]] == [8.0, 10.0]
    assert report.per_refresh(runs[(1000, report.THEIRS)])["server_ms"] == 14.0


def test_the_refresh_is_held_only_if_every_window_held_it():
    lines = report._targets(result(window(report.OURS, 8.0, refreshes=19), window(report.OURS, 8.0),
                                   window(report.THEIRS, 16.0), window(report.THEIRS, 16.0)))  # fmt: skip
    held = next(line for line in lines if "1 s refresh held" in line)
    assert held.endswith("| no |"), held


def test_a_failed_window_is_reported_and_left_out_of_the_totals():
    failed = {"tool": report.OURS, "sessions": 1000, "error": "no data on screen after 60 s"}
    r = result(window(report.OURS, 8.0), failed, window(report.THEIRS, 16.0), window(report.THEIRS, 12.0))
    runs = report._runs(r)
    assert report.per_refresh(runs[(1000, report.OURS)])["server_ms"] == 8.0
    text = "\n".join(report._side_by_side(r, r["mode_settings"]))
    assert "no data on screen after 60 s" in text
    assert "| server time, ms, each window in turn | 16.00, 12.00 | 8.00 |" in text


def test_the_idle_rows_carry_textuals_floor_from_the_same_run():
    idle = {**window(report.OURS, 1.0, refreshes=90), "sessions": 0, "cpu_s": 0.9, "window_s": 90.0}
    theirs = {**window(report.THEIRS, 2.0, refreshes=90), "sessions": 0, "cpu_s": 0.45, "window_s": 90.0}
    floor = {"tool": "textual floor: one-line", "sessions": 0, "cpu_s": 0.27, "window_s": 90.0}
    failed = {"tool": "textual floor: same-changes", "sessions": 0, "error": "no data on screen after 60 s"}
    r = {**result(idle, theirs), "floors": [floor, failed]}
    target = next(line for line in report._targets(r) if "steady idle CPU" in line)
    assert "10.0 ms vs 5.0 ms (2.00×)" in target and "Textual's floor here: one-line 3.0 ms" in target
    assert "same-changes" not in target  # a failed floor window is no figure
    text = "\n".join(report._side_by_side(r, r["mode_settings"]))
    assert "| pg_activity (polls and draws) | 5.0 |" in text
    assert "| textual floor: one-line (draws only) | 3.0 |" in text
    assert "| textual floor: same-changes (draws only) | **no data on screen after 60 s** |" in text


def _floor_screen(app) -> dict[str, str]:
    from textual.widgets import DataTable, Static

    tables = {n: app.query_one(f"#{n}", DataTable) for n in ("breaches", "sessions")}
    out = {n: str([t.get_row_at(i) for i in range(t.row_count)]) for n, t in tables.items()}
    out.update({n: str(app.query_one(f"#{n}", Static).render()) for n in ("clock", "tree")})
    return out


async def test_the_floor_app_changes_what_it_says_each_tick():
    from bench.floor import Floor

    for variant, changed in (
        ("one-line", {"clock"}),
        ("same-changes", {"clock", "breaches", "sessions", "tree"}),
    ):
        app = Floor(variant)
        async with app.run_test(size=(120, 40)) as pilot:
            app.started -= 5  # five seconds in: every age reads 5s or more
            before = _floor_screen(app)
            app.tick()
            await pilot.pause()
            after = _floor_screen(app)
            assert {name for name in before if before[name] != after[name]} == changed, variant
