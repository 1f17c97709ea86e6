"""The engine alone, headless (no Textual): what a refresh costs, and whether memory grows.

    python -m bench.engine cost --config FILE --cycles 20 --warmup 3
    python -m bench.engine soak --config FILE --cycles 10000 --every 250

Both build the real :class:`console.poller.Poller` from a config file (the one loader) and call
``poll_all()`` back to back: every source polled, thresholds evaluated, a ConsoleState built.
``cost`` prints JSON with the wall time and this process's CPU time (all threads, getrusage) of
each cycle after the warm-up; ``soak`` prints the RSS (from /proc/self/statm) every ``--every``
cycles. Run as a process of its own, so that nothing else in the harness is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import time

from console.loader import load_config
from console.poller import Poller

PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def _errors(state) -> list[str]:
    return sorted({f"{k}: {s.error.reason}" for k, s in state.snapshots.items() if s.error is not None})


async def cost(poller: Poller, cycles: int, warmup: int) -> dict:
    errors: set[str] = set()
    for _ in range(warmup):
        errors.update(_errors(await poller.poll_all()))
    wall, cpus = [], []
    for _ in range(cycles):
        c0, t0 = cpu(), time.perf_counter()
        state = await poller.poll_all()
        wall.append((time.perf_counter() - t0) * 1000)
        cpus.append((cpu() - c0) * 1000)
        errors.update(_errors(state))
    return {"wall_ms": wall, "cpu_ms": cpus, "errors": sorted(errors)[:5]}


async def soak(poller: Poller, cycles: int, every: int) -> dict:
    samples = []
    started = time.perf_counter()
    errors: set[str] = set()
    for cycle in range(1, cycles + 1):
        state = await poller.poll_all()
        if cycle % every == 0 or cycle == 1:
            errors.update(_errors(state))
            samples.append((cycle, rss_mb(), time.perf_counter() - started))
    gc.collect()
    return {"samples": samples, "rss_after_gc": rss_mb(), "errors": sorted(errors)[:5]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("cost", "soak"))
    parser.add_argument("--config", required=True)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--every", type=int, default=250)
    args = parser.parse_args()
    config = load_config(args.config, check_runbooks=False)

    async def run() -> dict:
        poller = Poller(config)
        try:
            if args.what == "cost":
                return await cost(poller, args.cycles, args.warmup)
            return await soak(poller, args.cycles, args.every)
        finally:
            await poller.aclose()

    print(json.dumps(asyncio.run(run())))


if __name__ == "__main__":
    main()
