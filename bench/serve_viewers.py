"""What browser viewers of ``incident-console serve`` cost: the backends' load, CPU, memory, traffic.

    make bench-serve        # = .venv/bin/python bench/serve_viewers.py: writes bench/SERVE_RESULTS.md
    .venv/bin/python bench/serve_viewers.py --config bench/serve-quiet.yaml --viewers 1 --output bench/SERVE_RESULTS-quiet.md
    .venv/bin/python bench/serve_viewers.py [--viewers 1,4,10] [--seconds 30] [--demo | --config FILE] [--output F]

By default it starts backends that count what they receive: a private Postgres with
pg_stat_statements (bench/cluster.py; the console connects as its own role, so its statements are
told apart) under ``--sessions`` sessions of bench/load.py, a health server counting its requests
(three targets), and the real Prometheus binary (five queries; its own
``prometheus_http_requests_total`` counts the console's API requests). ``--demo`` measures
against the demo stack (``incident-console demo --no-ui``) instead, ``--config`` against your
config; there only the Postgres sessions are counted. Then it starts ``serve`` and, for each
viewer count, opens that many websocket viewers (what the page does, at a wall-sized 166x47
terminal), waits ``--warmup`` seconds, and samples for ``--seconds``: the statements the
console's role ran (per refresh: per call of the refresh statement), the health and Prometheus
requests (per refresh of those sources), the console's Postgres sessions, CPU (utime+stime per
wall second) and RSS of each viewer's process and of serve (which runs the one engine), bytes
sent to each viewer. Every figure in the report comes from the run (bench/RESULTS.md belongs to
``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiohttp
import asyncpg

if __package__ in (None, ""):  # run as a script: make the repository importable (bench.*)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "console.cli"]
TICK = os.sysconf("SC_CLK_TCK")
WIDTH, HEIGHT = 166, 47  # a 1600x900 browser window at the page's 16 px font
HEALTH_TARGETS = 3
QUERIES = 5
REFRESH = {"health": 1.0, "prometheus": 2.0, "postgres": 1.0}


class CountingHealth:
    """A health+json endpoint on 127.0.0.1 (``/health/<i>``) that counts the requests it answers."""

    BODY = b'{"status": "pass", "checks": {"db:ping": [{"status": "pass", "observedValue": 1}]}}'

    def __init__(self) -> None:
        self.count = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with lock:
                    outer.count += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/health+json")
                self.send_header("Content-Length", str(len(outer.BODY)))
                self.end_headers()
                self.wfile.write(outer.BODY)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/health/{i}"

    def __enter__(self) -> CountingHealth:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def prometheus_api_requests(url: str) -> int:
    """The API requests a Prometheus has answered (its own counter; /metrics scrapes excluded)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


class Counters:
    """What the backends received, read before and after a round (None: not counted here)."""

    def __init__(self, cluster=None, role: str = "", health: CountingHealth | None = None, prom: str = ""):
        self.cluster, self.role, self.health, self.prom = cluster, role, health, prom

    async def read(self) -> dict:
        return {
            "statements": await self.cluster.statements(self.role) if self.cluster else None,
            "health": self.health.count if self.health else None,
            "prom": await asyncio.to_thread(prometheus_api_requests, self.prom) if self.prom else None,
        }

    @staticmethod
    def delta(before: dict, after: dict, seconds: float) -> dict:
        out: dict = {"statements_per_refresh": None, "refreshes": None, "server_ms_per_refresh": None,
                     "health_per_refresh": None, "prom_per_refresh": None}  # fmt: skip
        if before["statements"] is not None:
            d = after["statements"].delta(before["statements"])
            out["refreshes"] = d["refreshes"]  # calls of the refresh statement
            refreshes = seconds / REFRESH["postgres"]  # refresh intervals in the window
            out["statements_per_refresh"] = d["statements"] / refreshes
            out["server_ms_per_refresh"] = d["server_ms"] / refreshes
            out["statements_per_s"] = d["statements"] / seconds
        if before["health"] is not None:
            out["health_per_s"] = (after["health"] - before["health"]) / seconds
            out["health_per_refresh"] = out["health_per_s"] * REFRESH["health"]
        if before["prom"] is not None:
            out["prom_per_s"] = (after["prom"] - before["prom"]) / seconds
            out["prom_per_refresh"] = out["prom_per_s"] * REFRESH["prometheus"]
        return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def read_line(process: subprocess.Popen[str], pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        if match := re.search(pattern, line):
            return match
    raise SystemExit(f"no line matching {pattern!r} from {process.args}")


async def console_sessions(dsn: str) -> int:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'incident-console%'"
        )
    finally:
        await conn.close()


async def viewer(url: str, received: list[int], stop: asyncio.Event) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{url}ws?width={WIDTH}&height={HEIGHT}", max_msg_size=0) as ws,
    ):
        index = len(received)
        received.append(0)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(ws.receive(), 0.5)
                if message.type == aiohttp.WSMsgType.BINARY:
                    received[index] += len(message.data)
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    raise SystemExit("a viewer was closed by serve")


async def measure(
    url: str, serve_pid: int, count: int, warmup: float, seconds: float, dsn: str | None, counters: Counters
) -> dict:
    stop = asyncio.Event()
    received: list[int] = []
    tasks = [asyncio.create_task(viewer(url, received, stop)) for _ in range(count)]
    deadline = time.monotonic() + 60
    while len(pids := children(serve_pid)) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(pids)} console processes, expected {count}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(warmup)
    sessions = await console_sessions(dsn) if dsn else None
    pids = children(serve_pid)
    counted = await counters.read()
    start_cpu = {pid: cpu_seconds(pid) for pid in [*pids, serve_pid]}
    start_bytes, start = list(received), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
    backends = Counters.delta(counted, await counters.read(), elapsed)
    cpu = {pid: (cpu_seconds(pid) - start_cpu[pid]) / elapsed * 100 for pid in start_cpu}
    rss = {pid: rss_mib(pid) for pid in start_cpu}
    rates = [(after - before) / elapsed / 1024 for before, after in zip(start_bytes, received, strict=True)]
    stop.set()
    await asyncio.gather(*tasks)
    load = os.getloadavg()[0]
    print(f"\n{count} viewer(s), {elapsed:.0f} s after a {warmup:.0f} s warm-up (load average {load:.2f}):")
    for pid in pids:
        print(f"  console pid {pid}: CPU {cpu[pid]:5.1f} % of one core, RSS {rss[pid]:6.1f} MiB")
    print(f"  serve    pid {serve_pid}: CPU {cpu[serve_pid]:5.1f} %, RSS {rss[serve_pid]:6.1f} MiB")
    print(f"  to each browser: {', '.join(f'{r:.1f}' for r in rates)} KiB/s")
    if sessions is not None:
        print(f"  console Postgres sessions on the cluster: {sessions}")
    print(f"  backends: {json.dumps({k: round(v, 2) for k, v in backends.items() if v is not None})}")
    while children(serve_pid):  # the next round starts from none
        await asyncio.sleep(0.2)
    return {
        "viewers": count,
        "seconds": elapsed,
        "load": load,
        "cpu": [cpu[pid] for pid in pids],
        "rss": [rss[pid] for pid in pids],
        "serve_cpu": cpu[serve_pid],
        "serve_rss": rss[serve_pid],
        "kib_s": rates,
        "sessions": sessions,
        **backends,
    }


def report(source: str, config_line: str, rounds: list[dict], shared: bool) -> str:
    def span(values: list[float], unit: str) -> str:
        low, high = min(values), max(values)
        return f"{low:.1f} {unit}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f} {unit}"

    def num(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    load = max(r["load"] for r in rounds)
    lines = [
        "# `incident-console serve`: the backends' load and what a viewer costs",
        "",
        f"Generated by `bench/serve_viewers.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPU(s), against {source}.",
        f"Config: {config_line}. Terminal {WIDTH}x{HEIGHT} (a 1600x900 window at 16 px).",
        "",
        "serve runs one engine (the Poller and the thresholds) and every viewer's console process "
        "renders the states it publishes (console/feed.py): the backends' load does not depend on "
        "the number of viewers.",
        "",
        "## Backend load by viewer count (issue 20)",
        "",
        "| viewers | Postgres statements per refresh | Postgres server ms per refresh | health requests per "
        f"refresh ({HEALTH_TARGETS} targets) | Prometheus API requests per refresh | console Postgres "
        "sessions |",
        "|---|---|---|---|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['viewers']} | {num(r['statements_per_refresh'])} | {num(r['server_ms_per_refresh'])} "
            f"| {num(r['health_per_refresh'])} | {num(r['prom_per_refresh'])} "
            f"| {r['sessions'] if r['sessions'] is not None else '-'} |"
        )
    lines += [
        "",
        "Per refresh = what the backend received over the sampled window divided by the number of "
        "refresh intervals in it, for each source's interval: Postgres "
        f"{REFRESH['postgres']:g} s (statements and server time of the console's own role in "
        "pg_stat_statements, planning included), health "
        f"{REFRESH['health']:g} s ({HEALTH_TARGETS} targets: {HEALTH_TARGETS} requests is one "
        f"poll of each), Prometheus {REFRESH['prometheus']:g} s ({QUERIES} queries plus its "
        "alerts, rules and targets reads; counted by Prometheus's own "
        "`prometheus_http_requests_total`, /api/ handlers). A console polling for itself per viewer "
        "(serve before issue 20; the previous bench/SERVE_RESULTS.md in git: 4 viewers, 4 Postgres "
        "sessions) multiplies every column by the viewer count.",
        "",
        "## What a viewer costs",
        "",
        "| viewers | CPU per viewer process (% of one core) | RSS per viewer process | serve (the engine) "
        "CPU / RSS | to each browser | load average |",
        "|---|---|---|---|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['viewers']} | {span(r['cpu'], '%')} | {span(r['rss'], 'MiB')} "
            f"| {r['serve_cpu']:.1f} % / {r['serve_rss']:.0f} MiB | {span(r['kib_s'], 'KiB/s')} "
            f"| {r['load']:.2f} |"
        )
    lines += [
        "",
        f"Each round: viewers connected, a warm-up, then {rounds[0]['seconds']:.0f} s sampled; CPU is "
        "utime+stime from /proc over that time. serve's CPU includes the engine's polling and "
        "encoding each state once for all viewers; a viewer's includes decoding and drawing it.",
    ]
    if shared or load > os.cpu_count():
        lines += [
            "",
            f"The machine was shared with other work during this run (load average up to {load:.2f} on "
            f"{os.cpu_count()} CPUs): CPU figures are upper bounds; the counts above do not depend on it.",
        ]
    lines.append("")
    return "\n".join(lines)


def serve_rounds(
    config: Path, viewers: list[int], args, dsn: str | None, counters: Counters, env
) -> list[dict]:
    rounds = []
    serve = subprocess.Popen(
        [*CLI, "serve", "--config", str(config), "--port", "0", "--max-viewers", "16"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        url = read_line(serve, r"(http://127\.0\.0\.1:\d+/)", 60).group(1)
        for count in viewers:
            rounds.append(
                asyncio.run(measure(url, serve.pid, count, args.warmup, args.seconds, dsn, counters))
            )
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    return rounds


def private_backends(args, env, state: str) -> tuple[str, str, list[dict]]:
    """The default: backends that count what they receive (module docstring)."""
    import yaml

    from bench.backends import Load, PrometheusServer, promql
    from bench.cluster import LOAD_ROLE, TOOL_ROLES, BenchCluster

    role = TOOL_ROLES["incident-console"]
    cluster = BenchCluster(max_connections=args.sessions + 50).start()
    try:
        with (
            Load(cluster.dsn(LOAD_ROLE), args.sessions),
            CountingHealth() as health,
            PrometheusServer() as prom,
        ):
            config = Path(state) / "console.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "environment": {"name": "bench-serve"},
                        "journal": str(Path(state) / "journal.jsonl"),
                        "refresh": {k: f"{v:g}s" for k, v in REFRESH.items()},
                        "ui": {"bell": False},
                        "health": [
                            {"name": f"svc{i}", "url": health.url(i), "format": "health+json"}
                            for i in range(HEALTH_TARGETS)
                        ],
                        "prometheus": {
                            "url": prom.url,
                            "queries": [
                                {"id": f"q{i}", "title": f"query {i}", "query": promql(i)}
                                for i in range(QUERIES)
                            ],
                        },
                        "postgres": [{"name": "main", "dsn": cluster.dsn(role)}],
                    }
                ),
                encoding="utf-8",
            )
            counters = Counters(cluster, role, health, prom.url)
            rounds = serve_rounds(config, args.viewer_counts, args, cluster.dsn(role), counters, env)
            source = (
                f"private backends: PostgreSQL {cluster.version()} with {args.sessions} sessions of "
                f"bench/load.py, {HEALTH_TARGETS} counting health endpoints, {prom.version()}"
            )
            line = (
                f"{HEALTH_TARGETS} health targets, {QUERIES} Prometheus queries, 1 Postgres cluster; "
                f"refresh {', '.join(f'{k} {v:g} s' for k, v in REFRESH.items())}"
            )
            return source, line, rounds
    finally:
        cluster.stop()


def demo_or_config(args, env, state: str) -> tuple[str, str, list[dict]]:
    demo = None
    try:
        config = args.config
        if config is None:
            demo = subprocess.Popen(
                [*CLI, "demo", "--no-ui", "--state-dir", state],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
            config = Path(read_line(demo, r"^config: (.+)$", 120).group(1).strip())
            threading.Thread(target=demo.stdout.read, daemon=True).start()  # never a full pipe
            print(f"demo stack up: {config}")
        from console.loader import load_config

        loaded = load_config(config)
        dsn = loaded.postgres[0].dsn if loaded.postgres else None
        config_line = (
            f"{len(loaded.health)} health targets, "
            f"{len(loaded.prometheus.queries) if loaded.prometheus else 0} Prometheus queries, "
            f"{len(loaded.postgres)} Postgres clusters; refresh {loaded.refresh}"
        )
        source = (
            "the demo stack (`incident-console demo`, with its load generator)" if demo else f"`{config}`"
        )
        return source, config_line, serve_rounds(config, args.viewer_counts, args, dsn, Counters(), env)
    finally:
        if demo is not None:
            demo.send_signal(signal.SIGTERM)
            demo.wait(timeout=120)
            # the state dir and the stack's Postgres cluster (in /tmp, outside it, when run as root)
            subprocess.run([*CLI, "demo", "--state-dir", state, "clean"], cwd=ROOT, timeout=120, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", type=Path, help="measure against this config (only sessions counted)")
    where.add_argument(
        "--demo", action="store_true", help="measure against the demo stack (only sessions counted)"
    )
    parser.add_argument("--viewers", default="1,4,10")
    parser.add_argument(
        "--sessions", type=int, default=200, help="Postgres sessions of the load (default 200)"
    )
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "SERVE_RESULTS.md")
    parser.add_argument(
        "--shared", action="store_true", help="say in the report that the machine ran other work meanwhile"
    )
    args = parser.parse_args()
    args.viewer_counts = [int(n) for n in args.viewers.split(",")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    state = tempfile.mkdtemp(prefix="ic-bench-serve-", dir="/tmp")
    try:
        if args.config is None and not args.demo:
            source, config_line, rounds = private_backends(args, env, state)
        else:
            source, config_line, rounds = demo_or_config(args, env, state)
        args.output.write_text(report(source, config_line, rounds, args.shared), encoding="utf-8")
        print(f"\nwrote {args.output}")
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
