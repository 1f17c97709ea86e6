"""What one browser viewer of ``incident-console serve`` costs: CPU, memory, traffic, backend sessions.

    make bench-serve        # = .venv/bin/python bench/serve_viewers.py: writes bench/SERVE_RESULTS.md
    .venv/bin/python bench/serve_viewers.py --config bench/serve-quiet.yaml --viewers 1 --output bench/SERVE_RESULTS-quiet.md
    .venv/bin/python bench/serve_viewers.py [--viewers 1,4] [--seconds 60] [--config FILE] [--output F]

Without ``--config`` it starts the demo stack (``incident-console demo --no-ui``: Postgres with load,
Prometheus, Alertmanager, two services) in a temporary state dir and measures against it. Then it
starts ``serve`` and, for each viewer count, opens that many websocket viewers (what the page does,
at a wall-sized 166x47 terminal), waits ``--warmup`` seconds, and samples /proc for ``--seconds``:
CPU (utime+stime per wall second) and RSS of each console process and of serve itself, bytes sent
to each viewer, and the console's Postgres sessions (application_name incident-console).
Every figure in the report comes from the run (bench/RESULTS.md belongs to ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "console.cli"]
TICK = os.sysconf("SC_CLK_TCK")
WIDTH, HEIGHT = 166, 47  # a 1600x900 browser window at the page's 16 px font


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
    url: str, serve_pid: int, count: int, warmup: float, seconds: float, dsn: str | None
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
    start_cpu = {pid: cpu_seconds(pid) for pid in [*pids, serve_pid]}
    start_bytes, start = list(received), time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - start
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
    }


def report(source: str, config_line: str, rounds: list[dict]) -> str:
    def span(values: list[float], unit: str) -> str:
        low, high = min(values), max(values)
        return f"{low:.1f} {unit}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f} {unit}"

    lines = [
        "# `incident-console serve`: what one viewer costs",
        "",
        f"Generated by `bench/serve_viewers.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPU(s), against {source}.",
        f"Config: {config_line}. Terminal {WIDTH}x{HEIGHT} (a 1600x900 window at 16 px).",
        "",
        "| viewers | CPU per console process (% of one core) | RSS per console process | serve CPU / RSS "
        "| to each browser | console Postgres sessions | load average |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        lines.append(
            f"| {r['viewers']} | {span(r['cpu'], '%')} | {span(r['rss'], 'MiB')} "
            f"| {r['serve_cpu']:.1f} % / {r['serve_rss']:.0f} MiB | {span(r['kib_s'], 'KiB/s')} "
            f"| {r['sessions'] if r['sessions'] is not None else '-'} | {r['load']:.2f} |"
        )
    lines += [
        "",
        f"Each round: viewers connected, {rounds[0]['seconds']:.0f} s sampled after the warm-up; CPU is "
        "utime+stime from /proc over that time. Each viewer is its own console process with its own "
        "pollers: backend requests and Postgres sessions grow with the viewer count.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="measure against this config instead of the demo stack")
    parser.add_argument("--viewers", default="1,4")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "SERVE_RESULTS.md")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = None
    state = tempfile.mkdtemp(prefix="ic-bench-serve-", dir="/tmp")
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
        print(f"config: {config_line}")
        source = (
            "the demo stack (`incident-console demo`, with its load generator)" if demo else f"`{config}`"
        )
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
            for count in (int(n) for n in args.viewers.split(",")):
                rounds.append(asyncio.run(measure(url, serve.pid, count, args.warmup, args.seconds, dsn)))
            args.output.write_text(report(source, config_line, rounds), encoding="utf-8")
            print(f"\nwrote {args.output}")
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)
    finally:
        if demo is not None:
            demo.send_signal(signal.SIGTERM)
            demo.wait(timeout=120)
        # the state dir and the stack's Postgres cluster (in /tmp, outside it, when run as root)
        subprocess.run([*CLI, "demo", "--state-dir", state, "clean"], cwd=ROOT, timeout=120, check=False)


if __name__ == "__main__":
    main()
