"""Issue 20 point 3's bench: the fleet view at 1, 5 and 20 clusters x 200 sessions.

    python -m bench.fleet                      # 1, 5, 20 clusters; writes bench/FLEET_RESULTS.md
    python -m bench.fleet --clusters 1,5 --sessions 50 --window 20 --out /tmp/fleet.md

Private clusters as in the rest of bench/ (bench/cluster.py: pg_stat_statements, a role per
tool), each with its own load (bench/load.py: idle, idle in transaction, active, churning and
lock-waiting sessions). For each shape, the clusters are the first N of the same set:

- **engine**: ``python -m bench.engine cost`` on a config of the N clusters (the real Poller,
  headless, every cluster polled concurrently, back to back): wall and CPU per refresh round.
- **console**: ``incident-console run`` in a 100x30 pty (tabs at every shape), 1 s refresh, the
  Fleet tab shown: its CPU over a window, the refreshes each cluster got in that window (from
  pg_stat_statements, the console's role: the refresh statement runs once per refresh), RSS;
  and key latency — Enter on the fleet (the cluster's panel comes up) and ``f`` (the fleet comes
  back), from the write to the pty until the new view's text is on the emulated screen.

The machine is shared (2 cores, other work may run): the load average is recorded with each
shape. Memory: each cluster's sessions are real backends (~1.2 MB PSS each); ``--sessions`` is scaled
down when the machine has not the memory for them, and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench.cluster import LOAD_ROLE, TOOL_ROLES, BenchCluster
from bench.ptyrun import PtyProcess
from bench.tools import BIN, ROOT, _env

ROLE = TOOL_ROLES["incident-console"]
COLS, ROWS = 100, 30
#: What follows this line in the results file is kept from one run to the next (earlier runs, notes).
RECORD = "\n## Runs on record\n"
#: Measured (PSS, /proc/*/smaps_rollup) on one BenchCluster: 33 MB idle, 261 MB with bench/load.py's
#: 200 sessions (1.14 MB each), the load process 33 MB RSS.
MB_PER_SESSION = 1.2
MB_PER_CLUSTER = 70.0  # postmaster, auxiliary processes, the load process


def log(*args: object) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def name(i: int) -> str:
    return f"pg{i + 1:02d}"


def config_for(clusters: list[BenchCluster], workdir: Path) -> Path:
    config = {
        "environment": {"name": "bench-fleet"},
        "refresh": {"postgres": "1s"},
        "journal": str(workdir / "journal.jsonl"),
        "ui": {"bell": False},
        "fleet": {"tab": "always"},
        "postgres": [{"name": name(i), "dsn": c.dsn(ROLE)} for i, c in enumerate(clusters)],
    }
    path = workdir / f"fleet-{len(clusters)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_clusters(count: int, sessions: int) -> list[BenchCluster]:
    def start(_: int) -> BenchCluster:
        return BenchCluster(max_connections=sessions + 40).start()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(start, range(count)))


def start_load(cluster: BenchCluster, sessions: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--dsn", cluster.dsn(LOAD_ROLE), "--sessions", str(sessions)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def wait_ready(load: subprocess.Popen[str], timeout: float = 300) -> dict:
    assert load.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = load.stdout.readline()
        if not line:
            raise RuntimeError(f"the load ended before it was ready (exit {load.poll()})")
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("the load was not ready in time")


def engine_cost(config: Path, cycles: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.engine", "cost", "--config", str(config), "--cycles", str(cycles),
         "--warmup", "3"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        return {"error": done.stderr[-400:]}
    return json.loads(done.stdout)


def console_run(
    clusters: list[BenchCluster], config: Path, workdir: Path, window: float, presses: int
) -> dict:
    names = [name(i) for i in range(len(clusters))]
    argv = [str(BIN / "incident-console"), "run", "--config", str(config)]
    process = PtyProcess(argv, _env(workdir), cols=COLS, rows=ROWS).start()
    out: dict = {}
    try:
        process.wait_for(lambda text: "Breaches" in text, 60)
        process.send(b"f")
        ready = process.wait_for(lambda text: all(n in text for n in names) and "WAITING" not in text, 90)
        if ready is None:
            out["error"] = "the fleet did not show every cluster: " + " | ".join(process.display()[:12])
            return out
        out["first_data_s"] = ready - process.started
        time.sleep(3)
        # Key latency: Enter on the fleet opens the first row's cluster; f brings the fleet back.
        rng = random.Random(7)
        keys = ((b"\r", "sort attention"), (b"f", "Long tx"))
        load0 = os.getloadavg()[0]
        latencies, timeouts = process.press_and_time(keys, presses, rng)
        out.update(latencies_ms=latencies, key_timeouts=timeouts, key_load=[load0, os.getloadavg()[0]])
        if "Long tx" not in process.text():
            process.send(b"f")
            time.sleep(1)
        process.stop_emulating()  # the window counts the console, not the emulator
        before = [asyncio.run(c.statements(ROLE)) for c in clusters]
        cpu0, t0, load0 = process.cpu_seconds(), time.monotonic(), os.getloadavg()[0]
        time.sleep(window)
        cpu1, t1, load1 = process.cpu_seconds(), time.monotonic(), os.getloadavg()[0]
        after = [asyncio.run(c.statements(ROLE)) for c in clusters]
        refreshes = [a.delta(b)["refreshes"] for a, b in zip(after, before, strict=True)]
        out.update(
            window_s=t1 - t0,
            cpu_s=cpu1 - cpu0,
            refreshes=refreshes,
            server_ms=sum(a.delta(b)["server_ms"] for a, b in zip(after, before, strict=True)),
            rss_mb=process.rss_mb(),
            load=[load0, load1],
            alive=process.alive(),
        )
        return out
    finally:
        process.stop(b"q")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def f(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render(result: dict) -> str:
    lines = [
        "# Fleet view: cost at 1, 5 and 20 clusters",
        "",
        f"Generated by `python -m bench.fleet` on {result['when']} ({result['machine']}).",
        f"Sessions per cluster: {result['sessions']}"
        + (
            f" — scaled down from {result['asked_sessions']}: {result['scaled']}"
            if result.get("scaled")
            else ""
        )
        + f"; load per cluster: bench/load.py ({result['mix']}).",
        "",
        "| clusters | engine wall / refresh round (p50) | engine CPU / round (p50) | console CPU / s | "
        "console CPU / cluster refresh | refreshes / s per cluster (min–max) | key p50 / p95 / max | "
        "RSS | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape in result["shapes"]:
        n, engine, run = shape["clusters"], shape.get("engine", {}), shape.get("console", {})
        if "error" in run:
            lines.append(f"| {n} | | | | | | | | error: {run['error'][:120]} |")
            continue
        window = run.get("window_s") or 1.0
        refreshes = run.get("refreshes") or []
        per_s = [r / window for r in refreshes]
        cpu_per_s = run["cpu_s"] / window * 1000
        per_refresh = run["cpu_s"] * 1000 / max(sum(refreshes), 1)
        keys = run.get("latencies_ms") or []
        lines.append(
            f"| {n} | {f(pct(engine.get('wall_ms', []), 0.5))} ms | {f(pct(engine.get('cpu_ms', []), 0.5))} ms | "
            f"{f(cpu_per_s)} ms | {f(per_refresh, 2)} ms | {f(min(per_s, default=None), 2)}–"
            f"{f(max(per_s, default=None), 2)} | {f(pct(keys, 0.5), 0)} / {f(pct(keys, 0.95), 0)} / "
            f"{f(max(keys, default=None), 0)} ms ({run.get('key_timeouts', 0)} timeouts) | "
            f"{f(run.get('rss_mb'), 0)} MB | {f(run['load'][0])}–{f(run['load'][1])} |"
        )
    lines += ["", "## How it grows", ""]
    rows = [s for s in result["shapes"] if "cpu_s" in s.get("console", {})]
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        ratio_n = last["clusters"] / first["clusters"]

        def cpu(shape: dict) -> float:
            return shape["console"]["cpu_s"] / shape["console"]["window_s"]

        def eng(shape: dict) -> float:
            return statistics.median(shape["engine"]["cpu_ms"]) if shape["engine"].get("cpu_ms") else 0.0

        lines.append(
            f"From {first['clusters']} to {last['clusters']} clusters ({ratio_n:g}x): the console's CPU per "
            f"second grew {cpu(last) / cpu(first):.1f}x, the engine's CPU per refresh round "
            f"{eng(last) / max(eng(first), 1e-9):.1f}x (linear would be {ratio_n:g}x)."
        )
    lines += [
        "",
        "## Method",
        "",
        "- Clusters: bench/cluster.py's BenchCluster (PostgreSQL "
        f"{result['pg_version']}, fsync off), `max_connections` = sessions + 40, all started before the "
        "first shape; a shape uses the first N. Each has bench/load.py's sessions, owned by `bench_load`.",
        "- engine: `python -m bench.engine cost --cycles "
        f"{result['cycles']} --warmup 3` (every cluster polled concurrently by the real Poller, back to "
        "back, no UI): wall and CPU (getrusage, all threads) per round.",
        f"- console: `incident-console run` in a {COLS}x{ROWS} pty, refresh 1 s, `fleet: {{tab: always}}`, the "
        f"Fleet tab on screen; CPU of the process over a {result['window']:g} s window (the pty emulator off); "
        "refreshes per cluster from pg_stat_statements (the console's role: its refresh statement runs "
        "once per refresh); CPU per cluster refresh = CPU / every cluster's refreshes.",
        f"- keys: {result['presses']} presses alternating Enter (the first row's cluster panel: "
        "'sort attention' on screen) and `f` (the fleet: 'Long tx'), 0.2–0.6 s apart, from the write to "
        "the pty until the text is on the emulated screen.",
        "- The machine is shared (2 cores; other sessions' tests and benches may run): the load "
        "average is in the table. Timings are not asserted by any test.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", default="1,5,20")
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "bench" / "FLEET_RESULTS.md"))
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    shapes = sorted(int(x) for x in args.clusters.split(","))
    most = shapes[-1]
    sessions, scaled = args.sessions, ""
    available = mem_available_mb()
    budget = available * 0.5  # the machine is shared: half of what is free, at most
    need = most * (sessions * MB_PER_SESSION + MB_PER_CLUSTER)
    if need > budget:
        sessions = max(10, int((budget / most - MB_PER_CLUSTER) / MB_PER_SESSION))
        scaled = (
            f"{most} x {args.sessions} sessions need ~{need:.0f} MB, half the available memory is "
            f"{budget:.0f} MB"
        )
        log("scaling sessions down to", sessions, "-", scaled)
    workdir = Path(tempfile.mkdtemp(prefix="ic-bench-fleet-", dir="/tmp"))
    clusters: list[BenchCluster] = []
    loads: list[subprocess.Popen[str]] = []
    result: dict = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {available / 1024:.1f} GB available at start",
        "sessions": sessions,
        "asked_sessions": args.sessions,
        "scaled": scaled,
        "window": args.window,
        "presses": args.presses,
        "cycles": args.cycles,
        "shapes": [],
    }
    try:
        log(f"starting {most} clusters")
        clusters = start_clusters(most, sessions)
        result["pg_version"] = clusters[0].version()
        log(f"starting the load: {sessions} sessions on each")
        loads = [start_load(c, sessions) for c in clusters]
        mixes = [wait_ready(load) for load in loads]
        result["mix"] = ", ".join(f"{k} {v}" for k, v in mixes[0].items() if k != "ready")
        for n in shapes:
            subset = clusters[:n]
            config = config_for(subset, workdir)
            log(f"{n} clusters: engine")
            shape: dict = {"clusters": n, "engine": engine_cost(config, args.cycles)}
            log(f"{n} clusters: console")
            shape["console"] = console_run(subset, config, workdir, args.window, args.presses)
            result["shapes"].append(shape)
            log(json.dumps({k: v for k, v in shape["console"].items() if k != "latencies_ms"})[:300])
    finally:
        for load in loads:
            if load.stdin:
                load.stdin.close()
        for load in loads:
            try:
                load.wait(timeout=30)
            except subprocess.TimeoutExpired:
                load.kill()
        for cluster in clusters:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    out = Path(args.out)
    kept = out.read_text().partition(RECORD)[2] if out.exists() else ""
    out.write_text(render(result) + (RECORD + kept if kept else ""))
    log("wrote", args.out)


if __name__ == "__main__":
    main()
