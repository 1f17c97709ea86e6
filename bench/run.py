"""The benchmark: incident-console and pg_activity side by side, on one private Postgres.

    python -m bench.run --mode full     # make bench: writes bench/RESULTS.md and bench/runs/*.json
    python -m bench.run --mode quick    # make bench-quick (< 2 min): bench/.quick/RESULTS.md

Every figure in the report is computed from this run; see bench/report.py for how each is shown.
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
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench import floor, report, tools
from bench.backends import HealthServer, Load, PrometheusServer, proc_cpu, promql
from bench.cluster import LOAD_ROLE, TOOL_ROLES, BenchCluster
from bench.ptyrun import PtyProcess

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Mode:
    name: str
    shapes: tuple[int, ...]  # client sessions; 0 = the idle server (one lock chain only)
    duration: float  # seconds of the measured window, per tool and shape
    warmup: float  # seconds after the first data paint before the window opens
    rss_at: float  # RSS read this many seconds after start, in the 1000-session run
    presses: int  # key presses per tool for the latency figure
    paints: int  # extra start-to-first-paint runs per tool (besides the measured runs)
    soak_sessions: int
    soak_cycles: int
    soak_every: int
    scale_sessions: tuple[int, ...]
    scale_targets: tuple[int, ...]
    scale_cycles: int
    max_connections: int
    repeats: int = 1  # measured windows per tool at KEY_SHAPE, the tools taking turns
    idle_duration: float = 0  # seconds of the idle server's window (issue 20: steady idle cost); 0 = duration
    idle_paints: int = 0  # extra start-to-first-paint runs per tool on the idle server (issue 20)
    floors: bool = False  # Textual's floor (bench/floor.py) beside the tools on the idle server


MODES = {
    "full": Mode(
        "full",
        (0, 200, 1000),
        20,
        3,
        60,
        120,
        4,
        200,
        10000,
        250,
        (10, 100, 1000, 5000),
        (10, 100, 500),
        20,
        5200,
        3,
        90,
        4,
        True,
    ),
    "quick": Mode(
        "quick", (0, 1000), 8, 2, 0, 30, 0, 200, 500, 50, (10, 100, 1000), (10, 100), 5, 1200, 1, 0, 1
    ),
}
KEY_SHAPE = report.KEY_SHAPE


def log(*args: object) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


# --- one tool, one shape ---------------------------------------------------------------------


def measure(cluster: BenchCluster, tool: tools.Tool, mode: Mode, sessions: int, rss: bool = True) -> dict:
    """Start the tool in a 120x40 pty, wait for its first data, then measure a window."""
    process = PtyProcess(tool.argv, tool.env).start()
    out: dict = {"tool": tool.name, "sessions": sessions}
    try:
        ready = process.wait_for(lambda text: tool.ready in text, 60)
        if ready is None:
            out["error"] = "no data on screen after 60 s: " + " | ".join(process.display()[:5])
            return out
        # CPU time of the process before its first data paint: start-up (imports, config, first
        # poll and layout), the issue 20 figure.
        out["startup_cpu_s"] = process.cpu_seconds()
        out["first_output_s"] = (process.first_output or ready) - process.started
        out["first_data_s"] = ready - process.started
        process.stop_emulating()
        time.sleep(mode.warmup)
        polls = bool(tool.role)  # Textual's floor polls nothing
        before = asyncio.run(cluster.statements(tool.role)) if polls else None
        cpu0, t0, load0 = process.cpu_seconds(), time.monotonic(), loadavg()
        time.sleep(mode.idle_duration if sessions == 0 and mode.idle_duration else mode.duration)
        after = asyncio.run(cluster.statements(tool.role)) if polls else None
        cpu1, t1, load1 = process.cpu_seconds(), time.monotonic(), loadavg()
        if after is not None:
            out.update(after.delta(before))
            out["statement_texts"] = [(n, text[:160]) for n, text in after.texts()[:8]]
        out.update(
            cpu_s=cpu1 - cpu0,
            bytes=process.bytes_between(t0, t1),
            window_s=t1 - t0,
            load=[load0[0], load1[0]],
            rss_mb=process.rss_mb(),
            rss_at_s=time.monotonic() - process.started,
        )
        if rss and mode.rss_at and sessions == KEY_SHAPE:
            time.sleep(max(0.0, process.started + mode.rss_at - time.monotonic()))
            out.update(rss_mb=process.rss_mb(), rss_at_s=time.monotonic() - process.started)
        out["alive"] = process.alive()
        return out
    finally:
        process.stop(tool.quit_keys)


def key_latency(tool: tools.Tool, presses: int, seed: int) -> dict:
    """Press keys that switch between two views; time from the write to the pty until the
    terminal output that puts the new view's title on the screen has been read."""
    rng = random.Random(seed)
    process = PtyProcess(tool.argv, tool.env).start()
    try:
        if process.wait_for(lambda text: tool.ready in text, 60) is None:
            return {"tool": tool.name, "error": "no data on screen"}
        time.sleep(2)
        if tool.name == "incident-console":  # the Postgres panel gets the keys: tab to it
            process.send(b"\t")
            time.sleep(0.5)
        load0 = loadavg()
        latencies, timeouts = process.press_and_time(tool.keys, presses, rng)
        return {"tool": tool.name, "latencies_ms": latencies, "timeouts": timeouts, "presses": presses,
                "load": [load0[0], loadavg()[0]]}  # fmt: skip
    finally:
        process.stop(tool.quit_keys)


def first_paint(tool: tools.Tool, sessions: int = KEY_SHAPE) -> dict:
    process = PtyProcess(tool.argv, tool.env).start()
    try:
        ready = process.wait_for(lambda text: tool.ready in text, 60)
        return {
            "tool": tool.name,
            "sessions": sessions,
            "startup_cpu_s": None if ready is None else process.cpu_seconds(),
            "first_output_s": (process.first_output or 0) - process.started if process.first_output else None,
            "first_data_s": None if ready is None else ready - process.started,
        }
    finally:
        process.stop(tool.quit_keys)


# --- the engine alone ------------------------------------------------------------------------


def engine(what: str, config: dict, workdir: Path, **options: int) -> dict:
    path = workdir / f"engine-{what}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "bench.engine", what, "--config", str(path)]
    for name, value in options.items():
        argv += [f"--{name}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-500:]}
    return json.loads(done.stdout)


def _engine_config(workdir: Path, **sections: object) -> dict:
    return {"environment": {"name": "bench"}, "journal": str(workdir / "engine-journal.jsonl"), **sections}


def scale_postgres(cluster: BenchCluster, mode: Mode, workdir: Path) -> list[dict]:
    rows = []
    role = TOOL_ROLES["incident-console"]
    config = _engine_config(workdir, postgres=[{"name": "main", "dsn": cluster.dsn(role)}])
    for n in mode.scale_sessions:
        log(f"scale: {n} sessions")
        with Load(cluster.dsn(LOAD_ROLE), n) as load:
            before = asyncio.run(cluster.statements(role))
            result = engine("cost", config, workdir, cycles=mode.scale_cycles, warmup=3)
            after = asyncio.run(cluster.statements(role))
            delta = after.delta(before)
        rows.append({"n": n, "setup_s": load.counts.get("setup_s"), **_summary(result),
                     "server_ms": delta["server_ms"] / max(delta["refreshes"], 1),
                     "statements": delta["statements"] / max(delta["refreshes"], 1),
                     "cycles_seen": delta["refreshes"]})  # fmt: skip
    return rows


def scale_health(mode: Mode, workdir: Path) -> list[dict]:
    rows = []
    with HealthServer() as server:
        for n in mode.scale_targets:
            log(f"scale: {n} health targets")
            health = [{"name": f"svc-{i}", "url": server.url(i), "format": "health+json"} for i in range(n)]
            cpu0 = proc_cpu(server.process.pid)
            result = engine(
                "cost", _engine_config(workdir, health=health), workdir, cycles=mode.scale_cycles, warmup=3
            )
            served = proc_cpu(server.process.pid) - cpu0
            rows.append(
                {"n": n, **_summary(result), "backend_cpu_ms": served * 1000 / (mode.scale_cycles + 3)}
            )
    return rows


def scale_prometheus(mode: Mode, workdir: Path) -> tuple[list[dict], str]:
    rows = []
    with PrometheusServer() as prom:
        for n in mode.scale_targets:
            log(f"scale: {n} PromQL queries")
            queries = [{"id": f"q{i}", "query": promql(i)} for i in range(n)]
            config = _engine_config(
                workdir, prometheus={"url": prom.url, "queries": queries, "timeout": "30s"}
            )
            cpu0 = proc_cpu(prom.process.pid)
            result = engine("cost", config, workdir, cycles=mode.scale_cycles, warmup=3)
            served = proc_cpu(prom.process.pid) - cpu0
            rows.append(
                {"n": n, **_summary(result), "backend_cpu_ms": served * 1000 / (mode.scale_cycles + 3)}
            )
        return rows, prom.version()


def _summary(result: dict) -> dict:
    if "error" in result:
        return {"error": result["error"]}
    return {
        "wall_ms": statistics.median(result["wall_ms"]),
        "cpu_ms": statistics.mean(result["cpu_ms"]),
        "cpu_ms_p90": sorted(result["cpu_ms"])[int(0.9 * (len(result["cpu_ms"]) - 1))],
        "errors": result["errors"],
    }


# --- the whole run -----------------------------------------------------------------------------


def machine() -> dict:
    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    import asyncpg
    import textual

    pga = subprocess.run([str(tools.BIN / "pg_activity"), "--version"], capture_output=True, text=True)
    return {
        "cores": os.cpu_count(),
        "cpu": first("/proc/cpuinfo", "model name"),
        "memory_gb": int(first("/proc/meminfo", "MemTotal").split()[0]) / 2**20,
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "textual": textual.__version__,
        "asyncpg": asyncpg.__version__,
        "pg_activity": pga.stdout.strip(),
    }


def git_commit() -> str:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
    ).stdout
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "console", "panels", "bench/*.py"],
        capture_output=True, text=True, cwd=HERE.parent,
    ).stdout.strip()  # fmt: skip
    return sha.strip() + ("+dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=sorted(MODES), default="quick")
    parser.add_argument("--skip", default="", help="comma list of: tools,keys,paint,soak,scale")
    parser.add_argument("--label", default="", help="also keep a quick run in bench/runs/, with this label")
    args = parser.parse_args()
    mode = MODES[args.mode]
    skip = set(filter(None, args.skip.split(",")))
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="ic-bench-work-"))
    result: dict = {
        "mode": mode.name,
        "label": args.label,
        "mode_settings": mode.__dict__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "stamp": time.strftime("%Y%m%d-%H%M%S", time.gmtime(started)),
        "commit": git_commit(),
        "machine": machine(),
        "load_start": loadavg(),
        "runs": [],
        "keys": [],
        "paints": [],
    }
    log(f"mode {mode.name}; load average {result['load_start']}")
    cluster = BenchCluster(mode.max_connections).start()
    try:
        result["machine"]["postgres"] = cluster.version()
        both = (tools.ours(cluster, workdir), tools.pg_activity(cluster, workdir))
        for index, sessions in enumerate(mode.shapes):
            with Load(cluster.dsn(LOAD_ROLE), sessions) as load:
                log(f"shape {sessions} sessions ready in {load.counts['setup_s']:.1f}s: {load.counts}")
                result.setdefault("shapes", {})[str(sessions)] = load.counts
                order = both if index % 2 == 0 else both[::-1]
                if "tools" not in skip:
                    repeats = mode.repeats if sessions == KEY_SHAPE else 1
                    for repeat in range(repeats):  # A B, B A, A B: a drifting machine weighs on both
                        for tool in order if repeat % 2 == 0 else order[::-1]:
                            log(f"  {tool.name}: {mode.duration:g}s window ({repeat + 1}/{repeats})")
                            result["runs"].append(measure(cluster, tool, mode, sessions, rss=repeat == 0))
                if sessions == 0 and mode.floors and "tools" not in skip:  # Textual's floor, same window
                    for variant in floor.VARIANTS:
                        log(f"  textual floor: {variant}")
                        run = measure(cluster, tools.floor(variant, workdir), mode, sessions, rss=False)
                        result.setdefault("floors", []).append(run)
                if sessions == 0 and "paint" not in skip:  # start-up on the idle server (issue 20)
                    for _ in range(mode.idle_paints):
                        for tool in order:
                            result["paints"].append(first_paint(tool, sessions))
                if sessions == KEY_SHAPE:
                    if "keys" not in skip:
                        for tool in order:
                            log(f"  {tool.name}: {mode.presses} key presses")
                            result["keys"].append(key_latency(tool, mode.presses, seed=7))
                    if "paint" not in skip:
                        for _ in range(mode.paints):
                            for tool in order:
                                result["paints"].append(first_paint(tool))
        if "soak" not in skip:
            soak_shape = mode.soak_sessions
            log(f"engine soak: {mode.soak_cycles} cycles at {soak_shape} sessions")
            with Load(cluster.dsn(LOAD_ROLE), soak_shape):
                config = _engine_config(
                    workdir, postgres=[{"name": "main", "dsn": cluster.dsn(TOOL_ROLES["incident-console"])}]
                )
                result["soak"] = {
                    "sessions": soak_shape,
                    **engine("soak", config, workdir, cycles=mode.soak_cycles, every=mode.soak_every),
                }
        if "scale" not in skip:
            result["scale_postgres"] = scale_postgres(cluster, mode, workdir)
            result["scale_health"] = scale_health(mode, workdir)
            result["scale_prometheus"], result["machine"]["prometheus"] = scale_prometheus(mode, workdir)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)  # the tools' configs and journals, the engine's
    result["load_end"] = loadavg()
    result["elapsed_s"] = time.time() - started
    write(result)


def write(result: dict) -> None:
    runs = HERE / "runs"
    if result["mode"] == "full" or result["label"]:
        runs.mkdir(exist_ok=True)
        label = f"-{result['label']}" if result["label"] else ""
        name = f"{result['stamp']}-{result['commit'].replace('+', '-')}-{result['mode']}{label}.json"
        (runs / name).write_text(json.dumps(result, indent=1) + "\n")
    history = [json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))]
    if result["mode"] == "full":
        target = HERE / "RESULTS.md"
    else:
        out = HERE / ".quick"
        out.mkdir(exist_ok=True)
        (out / "last.json").write_text(json.dumps(result, indent=1) + "\n")
        target = out / "RESULTS.md"
    target.write_text(report.render(result, history))
    log(f"wrote {target.relative_to(HERE.parent)} in {result['elapsed_s']:.0f}s")
    print(target.read_text())


if __name__ == "__main__":
    main()
