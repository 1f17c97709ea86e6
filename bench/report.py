"""bench/RESULTS.md from a run's JSON: every number below comes from the run, none is typed in."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path

OURS, THEIRS = "incident-console", "pg_activity"
KEY_SHAPE = 1000  # sessions: the shape of the key-latency, first-paint and repeated windows
SHAPE_NAMES = {0: "idle server (one lock chain, 3 sessions)"}
CHANGES = Path(__file__).resolve().parent / "CHANGES.md"


def shape_name(n: int) -> str:
    return SHAPE_NAMES.get(n, f"{n} sessions (active, idle, idle in tx, churning, waiting in lock chains)")


def _f(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}{unit}"


def per_refresh(run: dict) -> dict[str, float | None]:
    n = run.get("refreshes") or 0
    if "error" in run or not n:
        return {}
    return {
        "refreshes": n,
        "window": run["window_s"],
        "statements": run["statements"] / n,
        "server_ms": run["server_ms"] / n,
        "cpu_ms": run["cpu_s"] * 1000 / n,
        "bytes": run["bytes"] / n,
        "rss": run["rss_mb"],
        "rss_at": run["rss_at_s"],
    }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "—"
    return f"{ours / theirs:.2f}×"


def key_stats(entry: dict) -> dict:
    lat = entry.get("latencies_ms", [])
    timeouts = entry.get("timeouts", 0)
    # A press whose effect never showed (10 s) counts as the slowest possible answer.
    full = lat + [math.inf] * timeouts
    return {
        "n": len(full),
        "p50": percentile(full, 0.5),
        "p90": percentile(full, 0.9),
        "p99": percentile(full, 0.99),
        "max": max(full) if full else None,
        "timeouts": timeouts,
    }


def soak_stats(soak: dict) -> dict:
    samples = soak.get("samples") or []
    if len(samples) < 3:
        return {}
    cycles = [s[0] for s in samples]
    rss = [s[1] for s in samples]
    half = [s for s in samples if s[0] >= cycles[-1] / 2]
    xs, ys = [s[0] for s in half], [s[1] for s in half]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return {
        "cycles": cycles[-1],
        "first": rss[0],
        "last": rss[-1],
        "growth": rss[-1] - rss[0],
        "slope_per_1000": slope * 1000,
        "seconds": samples[-1][2],
        "peak": max(rss),
    }


def exponent(rows: list[dict], key: str = "cpu_ms") -> list[str]:
    """Growth exponent between consecutive points: 1.0 is linear, below is better."""
    out = ["—"]
    for a, b in itertools.pairwise(rows):
        if a.get(key) and b.get(key):
            out.append(f"{math.log(b[key] / a[key]) / math.log(b['n'] / a['n']):.2f}")
        else:
            out.append("—")
    return out


def render(result: dict, history: list[dict]) -> str:
    m = result["machine"]
    mode = result["mode_settings"]
    lines = [
        "# Benchmarks: incident-console and pg_activity side by side",
        "",
        f"Written by `make bench` (`python -m bench.run --mode {result['mode']}`) on {result['date']}, "
        f"commit `{result['commit']}`, in {result['elapsed_s'] / 60:.1f} min. Do not edit: run it again.",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']:.1f} GB memory, Linux {m['kernel']}; "
        f"PostgreSQL {m.get('postgres', '?')} (private cluster, pg_stat_statements, track_planning on); "
        f"Python {m['python']}, Textual {m['textual']}, asyncpg {m['asyncpg']}; {m['pg_activity']}; "
        f"{m.get('prometheus', 'Prometheus not run')}.",
        "",
        f"Load average (1 min) at the start {result['load_start'][0]:.2f}, at the end "
        f"{result['load_end'][0]:.2f}; per run in the tables. The machine is shared with other work, "
        "so a higher load average means noisier times (CPU seconds are less affected than latencies).",
        "",
    ]
    lines += _targets(result)
    lines += _side_by_side(result, mode)
    lines += _keys_and_paint(result)
    lines += _memory(result)
    lines += _scale(result)
    lines += _method(result, mode)
    before = _before_run(history, result)
    if before is not None:
        later = [
            run for run in history if run.get("label") and run.get("stamp", "") > result.get("stamp", "")
        ]
        lines += _before_after(before, result, later)
    if history:
        lines += _history(history)
    if CHANGES.exists():
        lines += ["", CHANGES.read_text().strip(), ""]
    return "\n".join(lines) + "\n"


_SUMMED = ("refreshes", "statements", "server_ms", "cpu_s", "bytes", "window_s")


def pooled(runs: list[dict]) -> dict:
    """One tool's windows on one shape as one run: the counters summed (so per-refresh figures
    are totals over total refreshes), RSS and start figures from the first window, and each
    window's own per-refresh figures under "windows". Windows that failed are listed under
    "errors"; if every one failed, the first failure stands for them."""
    good = [r for r in runs if "error" not in r and r.get("refreshes")]
    if not good:
        return runs[0]
    out = {**good[0], **{key: sum(r[key] for r in good) for key in _SUMMED}}
    out["load"] = [good[0]["load"][0], good[-1]["load"][1]] if all(r.get("load") for r in good) else None
    out["windows"] = [per_refresh(r) for r in good]
    out["errors"] = [r["error"] for r in runs if "error" in r]
    return out


def _runs(result: dict) -> dict[tuple[int, str], dict]:
    """(sessions, tool) -> the run, windows of the same tool and shape pooled (see pooled)."""
    grouped: dict[tuple[int, str], list[dict]] = {}
    for r in result["runs"]:
        grouped.setdefault((r["sessions"], r["tool"]), []).append(r)
    return {key: pooled(runs) for key, runs in grouped.items()}


def _targets(result: dict) -> list[str]:
    runs = _runs(result)
    ours = {n: per_refresh(runs.get((n, OURS), {})) for n, _ in runs}
    theirs = {n: per_refresh(runs.get((n, THEIRS), {})) for n, _ in runs}
    big = max((n for n, _ in runs), default=None)
    rows: list[tuple[str, str, bool | None]] = []

    def check(name: str, value: str, ok: bool | None) -> None:
        rows.append((name, value, ok))

    if runs:
        stmts = [ours[n].get("statements") for n in sorted(ours) if ours[n]]
        check("one statement per refresh (every shape)",
              ", ".join(_f(s, 2) for s in stmts), bool(stmts) and all(s is not None and s <= 1.05 for s in stmts))  # fmt: skip
        o, t = ours.get(big, {}), theirs.get(big, {})
        for key, label in (("server_ms", "server time"), ("cpu_ms", "client CPU")):
            if o.get(key) is not None and t.get(key):
                check(f"{label} per refresh at {big} sessions <= 1/2 of pg_activity's",
                      f"{_f(o[key])} ms vs {_f(t[key])} ms ({_ratio(o[key], t[key])})", o[key] <= t[key] / 2)  # fmt: skip
        if o:
            windows = runs[(big, OURS)].get("windows") or [o]
            held = all(w["refreshes"] >= math.floor(w["window"]) for w in windows)
            check(f"1 s refresh held at {big} sessions",
                  f"{o['refreshes']} refreshes in {o['window']:.1f} s (pg_activity: {t.get('refreshes', '—')})", held)  # fmt: skip
        o0, t0 = ours.get(0, {}), theirs.get(0, {})
        if o0.get("bytes") is not None and t0.get("bytes"):
            check("terminal bytes per refresh, idle server, <= 1/4 of pg_activity's",
                  f"{_f(o0['bytes'], 0)} vs {_f(t0['bytes'], 0)} ({_ratio(o0['bytes'], t0['bytes'])})",
                  o0["bytes"] <= t0["bytes"] / 4)  # fmt: skip
    for entry in result.get("keys", []):
        if entry.get("tool") == OURS and "error" not in entry:
            k = key_stats(entry)
            check("key press to repaint p99 < 100 ms at 1000 sessions",
                  f"p99 {_f(k['p99'], 0)} ms (p50 {_f(k['p50'], 0)} ms, {k['n']} presses)",
                  k["p99"] is not None and k["p99"] < 100)  # fmt: skip
    soak = soak_stats(result.get("soak", {}))
    if soak:
        check(f"RSS growth < 5 MB over {soak['cycles']:,} engine cycles",
              f"{_f(soak['growth'], 2)} MB ({_f(soak['first'])} -> {_f(soak['last'])} MB)",
              soak["growth"] < 5 if soak["cycles"] >= 10000 else None)  # fmt: skip
    paints = _paint_values(result, OURS, big)
    if paints:
        median = statistics.median(paints)
        check(f"first paint (with data, {big} sessions) < 1.5 s",
              f"median {_f(median, 2)} s, max {_f(max(paints), 2)} s over {len(paints)} starts", median < 1.5)  # fmt: skip
    rows += _rest_targets(result, ours, theirs, big)
    out = ["## Targets (issues 7 and 20)", "", "| target | measured | met |", "|---|---|---|"]
    out += [
        f"| {name} | {value} | {'yes' if ok else ('no' if ok is not None else '—')} |"
        for name, value, ok in rows
    ]
    return [*out, ""]


def startup_cpu(result: dict, tool: str, sessions: int = 0) -> list[float]:
    """CPU seconds of the process before its first data paint, every start on this shape."""
    starts = [r for r in result["runs"] if r["tool"] == tool and r["sessions"] == sessions]
    starts += [p for p in result.get("paints", []) if p["tool"] == tool and p.get("sessions") == sessions]
    return [r["startup_cpu_s"] for r in starts if r.get("startup_cpu_s") is not None]


def _rest_targets(
    result: dict, ours: dict, theirs: dict, big: int | None
) -> list[tuple[str, str, bool | None]]:
    """Issue 20, point 1 (cheap at rest), side by side with pg_activity from the same run."""
    rows: list[tuple[str, str, bool | None]] = []
    o0, t0 = ours.get(0, {}), theirs.get(0, {})
    if o0.get("cpu_ms") is not None and t0.get("cpu_ms"):
        rows.append(
            (
                "steady idle CPU per refresh <= pg_activity's (idle server)",
                f"{_f(o0['cpu_ms'])} ms vs {_f(t0['cpu_ms'])} ms ({_ratio(o0['cpu_ms'], t0['cpu_ms'])}), "
                f"{o0['refreshes']} refreshes in {o0['window']:.0f} s{_floor_words(result)}",
                o0["cpu_ms"] <= t0["cpu_ms"],
            )
        )
    mine, other = startup_cpu(result, OURS), startup_cpu(result, THEIRS)
    if mine:
        theirs_text = f"; pg_activity {_f(statistics.median(other), 2)} s" if other else ""
        rows.append(
            (
                "start-up CPU (before the first data paint, idle server) <= 0.4 s",
                f"median {_f(statistics.median(mine), 2)} s over {len(mine)} starts{theirs_text}",
                statistics.median(mine) <= 0.4,
            )
        )
    paints, other = _paint_values(result, OURS, 0), _paint_values(result, THEIRS, 0)
    if paints:
        theirs_text = f"; pg_activity {_f(statistics.median(other), 2)} s" if other else ""
        rows.append(
            (
                "first paint (with data, idle server), median <= 0.6 s",
                f"median {_f(statistics.median(paints), 2)} s, max {_f(max(paints), 2)} s over {len(paints)} starts"
                f"{theirs_text}",
                statistics.median(paints) <= 0.6,
            )
        )
    o, t = ours.get(big, {}), theirs.get(big, {})
    if o.get("rss") is not None and t.get("rss"):
        rows.append(
            (
                f"RSS at {big} sessions <= 1.2× pg_activity's",
                f"{_f(o['rss'])} MB vs {_f(t['rss'])} MB ({_ratio(o['rss'], t['rss'])})",
                o["rss"] <= 1.2 * t["rss"],
            )
        )
    return rows


def _ms_per_s(run: dict) -> float | None:
    """A run's CPU ms per second of its window; None for a run that failed."""
    return None if "error" in run or not run.get("window_s") else run["cpu_s"] * 1000 / run["window_s"]


def floors(result: dict) -> dict[str, float]:
    """Textual's floor on this machine (bench/floor.py): variant -> CPU ms per second of its
    window (one tick a second, so per refresh too)."""
    measured = {
        run["tool"].removeprefix("textual floor: "): _ms_per_s(run) for run in result.get("floors", [])
    }
    return {name: ms for name, ms in measured.items() if ms is not None}


def _floor_words(result: dict) -> str:
    shown = floors(result)
    if not shown:
        return ""
    parts = [f"{name} {_f(ms)} ms" for name, ms in shown.items()]
    return f"; Textual's floor here: {', '.join(parts)} (bench/floor.py)"


def _idle_window(mode: dict) -> float:
    return mode.get("idle_duration") or mode["duration"]


def _side_by_side(result: dict, mode: dict) -> list[str]:
    runs = _runs(result)
    out = [
        "## Side by side (figures 1-4)",
        "",
        f"Each tool alone against the same load, {mode['duration']:g} s window after its first data "
        f"paint + {mode['warmup']:g} s ({_idle_window(mode):g} s on the idle server: the steady idle "
        "cost of issue 20), `--refresh 1` / `refresh.postgres: 1s`, pty 120x40. "
        "Ratio = incident-console / pg_activity (below 1 is better for us)."
        + (
            f" At {KEY_SHAPE} sessions each tool runs {mode.get('repeats', 1)} windows, the two tools "
            "taking turns (A B B A ...) so that a drift of the machine falls on both; the figures "
            "are totals over all of a tool's windows, and each window is listed too."
            if mode.get("repeats", 1) > 1
            else ""
        ),
        "",
    ]
    for n in sorted({n for n, _ in runs}):
        o, t = per_refresh(runs.get((n, OURS), {})), per_refresh(runs.get((n, THEIRS), {}))
        ro, rt = runs.get((n, OURS), {}), runs.get((n, THEIRS), {})
        shapes = result.get("shapes", {}).get(str(n), {})
        out += [f"### {shape_name(n)}", ""]
        if shapes:
            mix = ", ".join(f"{k} {v}" for k, v in shapes.items() if k not in ("ready", "setup_s"))
            out += [f"Load: {mix}.", ""]
        out += ["| per refresh | pg_activity | incident-console | ratio |", "|---|---:|---:|---:|"]
        for key, label, digits in (
            ("statements", "statements", 2),
            ("server_ms", "server time, ms (exec + plan)", 2),
            ("cpu_ms", "client CPU, ms", 1),
            ("bytes", "terminal bytes", 0),
        ):
            out.append(
                f"| {label} | {_f(t.get(key), digits)} | {_f(o.get(key), digits)} | {_ratio(o.get(key), t.get(key))} |"
            )
        out.append(
            f"| refreshes in the window | {t.get('refreshes', '—')} in {_f(t.get('window'))} s | "
            f"{o.get('refreshes', '—')} in {_f(o.get('window'))} s | |"
        )
        out.append(
            f"| RSS, MB | {_f(t.get('rss'))} at {_f(t.get('rss_at'), 0)} s | {_f(o.get('rss'))} at {_f(o.get('rss_at'), 0)} s | "
            f"{_ratio(o.get('rss'), t.get('rss'))} |"
        )
        windows = (rt.get("windows") or [], ro.get("windows") or [])
        if max(len(w) for w in windows) > 1:
            for key, label, digits in (("server_ms", "server time, ms", 2), ("cpu_ms", "client CPU, ms", 1)):
                cells = [", ".join(_f(w.get(key), digits) for w in ws) for ws in windows]
                out.append(f"| {label}, each window in turn | {cells[0]} | {cells[1]} | |")
        loads = [f"{r['tool']} {r['load'][0]:.2f}->{r['load'][1]:.2f}" for r in (rt, ro) if r.get("load")]
        out.append(f"| load average during the window(s) | | | {'; '.join(loads)} |")
        for r in (rt, ro):
            for error in [r["error"]] if "error" in r else r.get("errors", []):
                out.append(f"\n{r['tool']}: **{error}**")
        out.append("")
        if n == 0:
            out += _floor_table(result)
    return out


def _floor_table(result: dict) -> list[str]:
    """The idle server's client CPU beside Textual's own floor, from the same run."""
    runs = list(result.get("floors", []))
    if not runs:
        return []
    idle = _runs(result)
    out = [
        "Textual's own floor, same window, same machine (`python -m bench.floor`: a reference app "
        "with the console's idle screen shape and no backend; `one-line` changes only its clock "
        "each second, `same-changes` what the console's idle screen changes each second: the "
        "clock, 2 breach ages, 3 session durations, a 3-line lock tree, written with "
        "`DataTable.update_cell` and `Static.update`):",
        "",
        "| client CPU, ms per second | value |",
        "|---|---:|",
    ]
    for tool in (THEIRS, OURS):
        ms = _ms_per_s(idle.get((0, tool), {}))
        if ms is not None:
            out.append(f"| {tool} (polls and draws) | {_f(ms)} |")
    for run in runs:
        value = "**" + run["error"] + "**" if "error" in run else _f(_ms_per_s(run))
        out.append(f"| {run['tool']} (draws only) | {value} |")
    return [*out, ""]


def _paint_values(result: dict, tool: str, sessions: int | None) -> list[float]:
    values = [  # extra starts: at KEY_SHAPE unless they say (runs before issue 20 did not)
        p["first_data_s"]
        for p in result.get("paints", [])
        if p["tool"] == tool and p.get("first_data_s") and p.get("sessions", KEY_SHAPE) == sessions
    ]
    values += [
        r["first_data_s"]
        for r in result["runs"]
        if r["tool"] == tool and r["sessions"] == sessions and r.get("first_data_s")
    ]
    return values


def _keys_and_paint(result: dict) -> list[str]:
    out = ["## Key press to repaint, start to first paint (figures 5, 6)", ""]
    if result.get("keys"):
        out += [
            "At 1000 sessions. incident-console: `w` / `e` (sessions filter: waiting / everything, "
            "with the Postgres panel focused); pg_activity: `2` / `1` (waiting / running queries). "
            "Time from writing the key to the pty to reading the output that puts the new view's "
            "title on the emulated screen.",
            "",
            "| key latency, ms | pg_activity | incident-console |",
            "|---|---:|---:|",
        ]
        stats = {e["tool"]: key_stats(e) for e in result["keys"] if "error" not in e}
        for key in ("p50", "p90", "p99", "max"):
            out.append(
                f"| {key} | {_f(stats.get(THEIRS, {}).get(key), 0)} | {_f(stats.get(OURS, {}).get(key), 0)} |"
            )
        out.append(f"| presses (no repaint within 10 s) | {stats.get(THEIRS, {}).get('n', '—')} "
                   f"({stats.get(THEIRS, {}).get('timeouts', '—')}) | {stats.get(OURS, {}).get('n', '—')} "
                   f"({stats.get(OURS, {}).get('timeouts', '—')}) |")  # fmt: skip
        out.append("")
    runs = _runs(result)
    shapes = sorted({n for n, _ in runs})
    if shapes:
        out += [
            "Start to first paint: from fork/exec in the pty to the first byte written, and to the "
            "first screen showing Postgres data (incident-console: its `conn n/max` line; pg_activity: "
            "its `RUNNING QUERIES` list). Median (max) over the measured runs plus the extra starts.",
            "",
            "| start to first paint, s | pg_activity | incident-console |",
            "|---|---:|---:|",
        ]
        for n in shapes:
            cells = []
            for tool in (THEIRS, OURS):
                values = _paint_values(result, tool, n) if n == max(shapes) else (
                    [runs[(n, tool)]["first_data_s"]] if runs.get((n, tool), {}).get("first_data_s") else [])  # fmt: skip
                firsts = [runs.get((n, tool), {}).get("first_output_s")]
                cells.append(
                    f"{_f(statistics.median(values), 2) if values else '—'} ({_f(max(values), 2) if values else '—'}); "
                    f"first byte {_f(firsts[0], 2)}"
                )
            out.append(f"| data on screen, {shape_name(n).split(' (')[0]} | {cells[0]} | {cells[1]} |")
        out.append("")
    return out


def _memory(result: dict) -> list[str]:
    soak = soak_stats(result.get("soak", {}))
    if not soak:
        return []
    s = result["soak"]
    return [
        "## Memory of the engine over many refreshes (figure 4)",
        "",
        f"`python -m bench.engine soak`: the real Poller (Postgres source, thresholds, ConsoleState) "
        f"polling back to back, headless, against {s['sessions']} churning sessions.",
        "",
        "| cycles | seconds | RSS first cycle | RSS last | growth | slope, 2nd half | peak |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {soak['cycles']:,} | {_f(soak['seconds'], 0)} | {_f(soak['first'])} MB | {_f(soak['last'])} MB | "
        f"{_f(soak['growth'], 2)} MB | {_f(soak['slope_per_1000'], 3)} MB / 1000 cycles | {_f(soak['peak'])} MB |",
        "",
        *([f"Errors seen: {s['errors']}", ""] if s.get("errors") else []),
    ]


def _scale(result: dict) -> list[str]:
    out = ["## Scale curve of the engine (figure 7)", ""]
    out += [
        "`python -m bench.engine cost`: the real Poller, `poll_all()` back to back after 3 warm-up "
        "cycles; client CPU = this process's CPU time (all threads) per refresh; wall = median "
        "refresh time. Exponent = log(cost ratio) / log(size ratio) from the previous row: "
        "1.00 is linear, below 1 is better than linear.",
        "",
    ]
    sections = (
        ("scale_postgres", "Postgres sessions (real sessions from bench/load.py)", "server ms/refresh", "server_ms"),
        ("scale_health", "health targets (a real uvicorn HTTP server on 127.0.0.1, one URL per target)",
         "server CPU ms/refresh", "backend_cpu_ms"),
        ("scale_prometheus", "PromQL queries (the real Prometheus binary, scraping itself every second)",
         "Prometheus CPU ms/refresh", "backend_cpu_ms"),
    )  # fmt: skip
    for key, title, backend_label, backend_key in sections:
        rows = result.get(key)
        if not rows:
            continue
        exps = exponent(rows)
        out += [f"**{title}**", "", f"| n | client CPU ms/refresh | exponent | wall ms/refresh | {backend_label} | CPU µs per item |",
                "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row, exp in zip(rows, exps, strict=True):
            if "error" in row:
                out.append(f"| {row['n']} | error: {row['error'][-200:]} | | | | |")
                continue
            out.append(
                f"| {row['n']:,} | {_f(row['cpu_ms'], 2)} | {exp} | {_f(row['wall_ms'], 1)} | "
                f"{_f(row.get(backend_key), 2)} | {_f(row['cpu_ms'] * 1000 / row['n'], 0)} |"
            )
            if row.get("errors"):
                out.append(f"| | errors: {'; '.join(row['errors'])[:200]} | | | | |")
        out.append("")
    return out


def _method(result: dict, mode: dict) -> list[str]:
    texts = {r["tool"]: r.get("statement_texts", []) for r in result["runs"] if r["sessions"] == max(r2["sessions"] for r2 in result["runs"])} if result["runs"] else {}  # fmt: skip
    out = [
        "## How it is measured",
        "",
        "- One private PostgreSQL cluster (`console.demo.pgcluster.PrivateCluster`) per run, "
        "pg_stat_statements preloaded with `track_planning = on`. Each tool connects as its own "
        "SUPERUSER role (`bench_ic`, `bench_pga`); the load runs as `bench_load`. Figures 1 are "
        "pg_stat_statements deltas of the tool's role over the window: statements = calls, server "
        "time = total_exec_time + total_plan_time. A refresh = one call of the statement the tool "
        "runs most often (each refresh runs it exactly once).",
        "- The load (`bench/load.py`, a separate process, fixed seed): the same shape for both tools, "
        "set up before the first tool starts and kept for both.",
        "- Tools run one after the other (order alternates by shape), in a pty of 120x40, "
        "TERM=xterm-256color. Client CPU = utime + stime of the tool's process (all threads) from "
        "/proc over the window. Terminal bytes = every byte read from the pty master in the window.",
        "- pg_activity: `pg_activity --refresh 1 -h 127.0.0.1 -p PORT -U bench_pga -d bench` (its "
        "defaults; the server is local, so it also samples per-backend CPU/MEM/IO from /proc). "
        "incident-console: `incident-console run --config` with one Postgres cluster, "
        "`refresh.postgres: 1s`, no health or Prometheus sources.",
        "- Key latency and first paint: the pty output is fed to a terminal emulator (pyte); the "
        "time taken is that of the read() after which the screen showed the expected text, so the "
        "emulator's own cost is not counted, but the terminal write path is.",
        "- Start-up CPU (issue 20): utime + stime of the tool's process (all threads) when its first "
        "data is on the emulated screen, over every start on the idle server (its measured window's "
        "start and the extra first-paint starts there).",
        f"- Mode `{result['mode']}`: {mode['duration']:g} s windows ({_idle_window(mode):g} s on the idle "
        f"server), {mode['presses']} key presses per tool, "
        f"{mode['soak_cycles']:,} soak cycles, scale points {tuple(mode['scale_sessions'])} sessions and "
        f"{tuple(mode['scale_targets'])} targets/queries with {mode['scale_cycles']} cycles each.",
        "",
    ]
    for tool, rows in texts.items():
        if rows:
            out += [f"Statements of {tool} in the last window (calls, text):", "", "```"]
            out += [f"{n:>6}  {' '.join(text.split())[:150]}" for n, text in rows]
            out += ["```", ""]
    return out


def _history(history: list[dict]) -> list[str]:
    out = [
        "## Runs so far (bench/runs/*.json): before and after the changes",
        "",
        "Every full run, and the quick runs kept with a label (`--label`). Each cell is "
        "incident-console / pg_activity from the same run.",
        "",
        "| run | mode | commit | load avg | client CPU ms/refresh @1000 | server ms/refresh @1000 | "
        "bytes/refresh idle | key p99 ms @1000 | refreshes @1000 in the window | soak growth MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in history:
        runs = _runs(h)
        big = max((n for n, _ in runs), default=0)
        o, t = per_refresh(runs.get((big, OURS), {})), per_refresh(runs.get((big, THEIRS), {}))
        o0, t0 = per_refresh(runs.get((0, OURS), {})), per_refresh(runs.get((0, THEIRS), {}))
        keys = {e["tool"]: key_stats(e) for e in h.get("keys", []) if "error" not in e}
        soak = soak_stats(h.get("soak", {}))
        out.append(
            f"| {h.get('stamp', h['date'])} | {h['mode']}{' ' + h['label'] if h.get('label') else ''} | "
            f"`{h['commit']}` | {h['load_start'][0]:.2f} | "
            f"{_f(o.get('cpu_ms'))} / {_f(t.get('cpu_ms'))} | {_f(o.get('server_ms'), 2)} / {_f(t.get('server_ms'), 2)} | "
            f"{_f(o0.get('bytes'), 0)} / {_f(t0.get('bytes'), 0)} | "
            f"{_f(keys.get(OURS, {}).get('p99'), 0)} / {_f(keys.get(THEIRS, {}).get('p99'), 0)} | "
            f"{o.get('refreshes', '—')} / {t.get('refreshes', '—')} | {_f(soak.get('growth'), 2)} |"
        )
    return [*out, ""]


def _figures(run: dict) -> dict[str, float | None]:
    """The target figures of one run (as in the targets table), for before/after."""
    runs = _runs(run)
    big = max((n for n, _ in runs), default=0)
    o, t = per_refresh(runs.get((big, OURS), {})), per_refresh(runs.get((big, THEIRS), {}))
    o0, t0 = per_refresh(runs.get((0, OURS), {})), per_refresh(runs.get((0, THEIRS), {}))
    keys = {e["tool"]: key_stats(e) for e in run.get("keys", []) if "error" not in e}
    paints = _paint_values(run, OURS, big)
    soak = soak_stats(run.get("soak", {}))
    ours_stmts = [per_refresh(r).get("statements") for (n, tool), r in sorted(runs.items()) if tool == OURS]
    return {
        "statements": max((s for s in ours_stmts if s is not None), default=None),
        "server_ms": o.get("server_ms"),
        "server_ratio": o["server_ms"] / t["server_ms"]
        if o.get("server_ms") is not None and t.get("server_ms")
        else None,
        "cpu_ms": o.get("cpu_ms"),
        "cpu_ratio": o["cpu_ms"] / t["cpu_ms"] if o.get("cpu_ms") is not None and t.get("cpu_ms") else None,
        "refreshes": o.get("refreshes"),
        "window": o.get("window"),
        "bytes_idle": o0.get("bytes"),
        "bytes_ratio": o0["bytes"] / t0["bytes"] if o0.get("bytes") is not None and t0.get("bytes") else None,
        "key_p50": keys.get(OURS, {}).get("p50"),
        "key_p99": keys.get(OURS, {}).get("p99"),
        "pga_key_p99": keys.get(THEIRS, {}).get("p99"),
        "paint": statistics.median(paints) if paints else None,
        "soak_growth": soak.get("growth"),
        "soak_cycles": soak.get("cycles"),
    }


def _before_run(history: list[dict], result: dict) -> dict | None:
    """The run the changes are measured against: the first kept run labelled 'before'."""
    for run in history:
        if run.get("label", "").startswith("before") and run.get("stamp") != result.get("stamp"):
            return run
    return None


def _before_after(before: dict, after: dict, later: list[dict] = ()) -> list[str]:
    columns = [_figures(run) for run in (before, after, *later)]

    def name(run: dict) -> str:
        load = f"load avg {run['load_start'][0]:.2f} -> {run['load_end'][0]:.2f}"
        return f"{run['stamp']}, {run['mode']} mode, `{run['commit']}`, {load}"

    rows = [
        ("statements per refresh (worst shape)", "statements", 2, ""),
        ("server time per refresh at 1000 sessions, ms", "server_ms", 1, ""),
        ("· as a share of pg_activity's (target <= 0.50)", "server_ratio", 2, "×"),
        ("client CPU per refresh at 1000 sessions, ms", "cpu_ms", 1, ""),
        ("· as a share of pg_activity's (target <= 0.50)", "cpu_ratio", 2, "×"),
        ("refreshes in the window at 1000 sessions", "refreshes", 0, ""),
        ("terminal bytes per refresh, idle server", "bytes_idle", 0, ""),
        ("· as a share of pg_activity's (target <= 0.25)", "bytes_ratio", 2, "×"),
        ("key press to repaint p50 at 1000 sessions, ms", "key_p50", 0, ""),
        ("key press to repaint p99 at 1000 sessions, ms (target < 100)", "key_p99", 0, ""),
        ("· pg_activity's key p99 in the same run, ms", "pga_key_p99", 0, ""),
        ("first paint with data, median, s (target < 1.5)", "paint", 2, ""),
        ("engine RSS growth over the soak, MB (target < 5 over 10,000)", "soak_growth", 2, ""),
        ("· soak cycles", "soak_cycles", 0, ""),
    ]
    out = [
        "## Before and after the changes",
        "",
        f"Every column is read from bench/runs/*.json. Before: {name(before)}. "
        f"After: {name(after)} (this report's run)."
        + "".join(f" Later ({run['label']}): {name(run)}." for run in later)
        + " A quick run has 8 s windows and 30 key presses, a full run 20 s and 120; figures "
        "under a higher load average are noisier (latencies most).",
        "",
        "| figure | before | after | "
        + " | ".join(f"later: {run['label']}" for run in later)
        + (" |" if later else ""),
        "|---|---:|---:|" + "---:|" * len(later),
    ]
    for label, key, digits, unit in rows:
        out.append(f"| {label} | " + " | ".join(_f(c.get(key), digits, unit) for c in columns) + " |")
    return [*out, ""]


def main() -> None:
    """Render bench/RESULTS.md again from the saved runs: the latest full run, with every kept
    run in the history (a quick run labelled after it shows there without a new full run)."""
    import json

    runs = Path(__file__).resolve().parent / "runs"
    history = [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]
    full = [run for run in history if run["mode"] == "full"]
    if not full:
        raise SystemExit("no full run in bench/runs: make bench")
    target = runs.parent / "RESULTS.md"
    target.write_text(render(full[-1], history))
    print(f"wrote {target} from {len(history)} runs (main run {full[-1]['stamp']})")


if __name__ == "__main__":
    main()
