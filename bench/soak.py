"""Soak (issue 8): the real console, headless, and the engine's Poller on the demo stack for a
long time, every demo scenario cycling, all refreshes forced to 0.1 s.

    python -m bench.soak --duration 30m            # `make soak` (DURATION=3m for the CI size)
    python -m bench.soak --duration 3m --attach /tmp/ic-demo-x   # a stack that already runs

What it runs, in this one process and on one event loop:
- ``ConsoleApp`` under ``App.run_test`` (Textual's headless driver, the whole compositor), with
  a pilot pressing keys now and then: tab, the session filters and sort, enter/escape for the
  detail view, ``/`` filter, ``p`` pause/resume, ``r``, the timeline and the help;
- a second, headless ``Poller.run`` on the same config (the engine alone);
- the demo scenarios, each injected, held until both consoles saw one of its breaches (and a
  few refreshes more), then reset; several at a time so that a 3-minute run sees them all.

What it samples every second: RSS, open file descriptors (/proc/self/fd), asyncio tasks,
threads; and every exception it can see: failed Textual workers, errors logged (Python logging,
Textual's log file), exceptions the event loop, a thread or a ``__del__`` did not handle.

:func:`analyse` judges the samples (a pure function, tested on synthetic leaks): a leak is a
trend, so it compares the first window after the warm-up with the last window, never with the
start (connections, pools and caches fill up during the warm-up) and never a latency (the
machine is shared). This module is engine-side (no Textual, no panels): the headless console
and its pilot are :mod:`bench.soak_driver`, which :func:`soak` imports when it runs (Textual loads there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from console.config import Config, Refresh
from console.loader import load_config
from console.poller import ConsoleState

SOAK_INTERVAL = 0.1  # every refresh, forced (the condensed soak)
SAMPLE_EVERY = 0.5
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --- samples -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the soak began
    rss_mb: float
    fds: int
    tasks: int  # every asyncio task, polls in flight included
    threads: int
    errors: int  # exceptions seen so far (cumulative)
    old_tasks: int = 0  # tasks alive for OLD_TASK seconds or more: what a leak accumulates


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own descriptor


def describe_fds() -> dict[int, str]:
    """Every open descriptor of this process by what it is: a path, a pipe, or a socket named
    by its addresses (``tcp 127.0.0.1:41234 -> 127.0.0.1:5432``), so that a descriptor left
    open after quitting says whose it is."""
    sockets = _socket_names()
    out: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile (the listing's own descriptor among them)
            continue
        inode = re.fullmatch(r"socket:\[(\d+)\]", target)
        out[int(name)] = sockets.get(inode.group(1), target) if inode else target
    return out


def _socket_names() -> dict[str, str]:
    """inode -> "tcp local -> remote" (IPv4 and IPv6) or "unix path", from /proc/net."""
    names: dict[str, str] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError), open(f"/proc/net/{table}") as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                names[inode] = f"tcp {_address(local)} -> {_address(remote)}"
    with contextlib.suppress(OSError), open("/proc/net/unix") as rows:
        for row in list(rows)[1:]:
            fields = row.split()
            names[fields[6]] = f"unix {fields[7] if len(fields) > 7 else '(unnamed)'}"
    return names


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in reversed(raw))
    else:  # IPv6: four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = ipaddress.IPv6Address(words).compressed
    return f"{ip}:{int(port, 16)}"


def left_open(before: dict[int, str], after: dict[int, str]) -> list[str]:
    """The descriptors open after that were not before (a number reused for something else
    counts as new)."""
    return [f"{fd} {what}" for fd, what in sorted(after.items()) if before.get(fd) != what]


OLD_TASK = 30.0
_first_seen: weakref.WeakKeyDictionary[asyncio.Task[Any], float] = weakref.WeakKeyDictionary()


def take_sample(t: float, errors: int) -> Sample:
    """The process now. Tasks are counted twice: all of them (polls in flight make that swing
    by tens on a busy machine, where polls take longer) and those alive for OLD_TASK s or more,
    which polls, key presses and short-lived screens never are, and a leaked task soon is."""
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no running loop
        tasks = set()
    now = time.monotonic()
    old = sum(1 for task in tasks if now - _first_seen.setdefault(task, now) >= OLD_TASK)
    return Sample(
        round(t, 2), round(rss_mb(), 2), open_fds(), len(tasks), threading.active_count(), errors, old
    )


# --- the verdict -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How much a steady-state figure may grow from the first window after the warm-up to the
    last window. Counts are compared median to median: descriptors go up and down with the
    polls in flight (a poll every 0.1 s on five sources), so one sample is noise, a median over
    a window of tens of samples is not. Tasks in flight swing by tens on a busy machine (polls
    take longer, more overlap), so the trend is judged on tasks alive for 30 s or more; every
    task is also checked exactly once the console has quit (``left_tasks``).

    RSS: the allocator keeps freed memory and CPython grows its arenas in steps, so an RSS that
    has settled still moves by a few MB; 10 MB from the post-warm-up window to the end (measured
    runs: see RELIABILITY.md) flags a real leak (a snapshot kept per poll at 0.1 s is tens of MB
    a minute) without failing on the allocator."""

    fds: float = 3
    old_tasks: float = 3  # tasks alive >= 30 s; all tasks are reported, not judged (see take_sample)
    threads: float = 2
    rss_mb: float = 10.0
    left_fds: int = 0  # after quitting, over the count before starting
    left_tasks: int = 0
    warmup_fraction: float = 0.25  # of the run: pools, caches, sparkline histories fill up
    warmup_min: float = 90.0  # seconds, at least: Textual's caches are still filling before
    window_fraction: float = 0.15  # each compared window


@dataclass
class Verdict:
    ok: bool
    problems: list[str]
    figures: dict[str, Any]


def _slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    ts = [p[0] for p in points]
    vs = [p[1] for p in points]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return 0.0 if den == 0 else 60 * sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / den


def analyse(
    samples: Sequence[Sample],
    *,
    limits: Limits = Limits(),
    errors: Sequence[str] = (),
    scenarios: Iterable[str] = (),
    seen: dict[str, Iterable[str]] | None = None,
    before: Sample | None = None,
    after: Sample | None = None,
    left_descriptors: Sequence[str] = (),
) -> Verdict:
    """Judge a soak. ``seen`` maps an observer ("console", "engine") to the scenarios it saw."""
    problems: list[str] = []
    figures: dict[str, Any] = {"samples": len(samples)}
    if len(samples) < 10:
        return Verdict(False, [f"too few samples ({len(samples)}) to judge a trend"], figures)
    start, end = samples[0].t, samples[-1].t
    duration = end - start
    warm_end = start + min(max(limits.warmup_fraction * duration, limits.warmup_min), 0.5 * duration)
    window = max(limits.window_fraction * duration, 1.0)
    first = [s for s in samples if warm_end <= s.t < warm_end + window]
    last = [s for s in samples if s.t > end - window]
    steady = [s for s in samples if s.t >= warm_end]
    if len(first) < 3 or len(last) < 3:
        return Verdict(False, ["too few samples in the compared windows"], figures)
    figures.update(
        duration_s=round(duration, 1),
        warmup_s=round(warm_end - start, 1),
        window_s=round(window, 1),
    )
    for name in ("rss_mb", "fds", "tasks", "old_tasks", "threads"):
        early = statistics.median(getattr(s, name) for s in first)
        late = statistics.median(getattr(s, name) for s in last)
        growth = late - early
        values = [getattr(s, name) for s in samples]
        figures[name] = {
            "start": values[0],
            "after_warmup": early,
            "end": late,
            "growth": round(growth, 2),
            "min": min(values),
            "max": max(values),
            "slope_per_min": round(_slope_per_minute([(s.t, getattr(s, name)) for s in steady]), 3),
        }
        limit = getattr(limits, name, None)
        if name == "old_tasks" and warm_end - start < OLD_TASK:
            figures[name]["judged"] = False  # a run this short has no task old enough yet
            continue
        if limit is not None and growth > limit:
            unit = " MB" if name == "rss_mb" else ""
            problems.append(
                f"{name} grew {growth:g}{unit} from the first steady window ({early:g}) to the end "
                f"({late:g}); limit {limit:g}{unit}"
            )
    if before is not None and after is not None:
        figures["before"], figures["after"] = asdict(before), asdict(after)
        for name in ("fds", "tasks"):
            left = getattr(after, name) - getattr(before, name)
            if left > getattr(limits, f"left_{name}"):
                opened = f": {'; '.join(left_descriptors)}" if name == "fds" and left_descriptors else ""
                problems.append(
                    f"{left} {name} more after the console quit and the engine closed "
                    f"({getattr(after, name)}) than before they started ({getattr(before, name)}){opened}"
                )
    figures["errors"] = len(errors)
    if errors:
        problems.append(f"{len(errors)} exception(s)/error(s) logged; first: {errors[0]}")
    wanted = list(scenarios)
    for observer, names in (seen or {}).items():
        missing = [n for n in wanted if n not in set(names)]
        figures[f"scenarios_seen_{observer}"] = len(wanted) - len(missing)
        if missing:
            problems.append(f"the {observer} never showed: {', '.join(missing)}")
    return Verdict(not problems, problems, figures)


# --- what counts as an exception ---------------------------------------------------------------


class ErrorLog(logging.Handler):
    """Every exception or error the soak can see, as one line each."""

    # Textual's log: a failed worker ("... failed ValueError(...)"), a traceback, an error.
    TEXTUAL_ERROR = re.compile(r"\bfailed\b|Traceback|\bError\b|Exception")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.warnings: list[str] = []

    def add(self, where: str, text: str) -> None:
        with self.lock:
            self.lines.append(f"{where}: {text}"[:500])

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name} {record.levelname} {record.getMessage()}"
        # An unawaited coroutine (lost work) or an unclosed socket/file (a leak) counts too.
        lost = record.name == "py.warnings" and re.search(r"RuntimeWarning|ResourceWarning", text)
        if record.exc_info or record.levelno >= logging.ERROR or lost:
            self.add("logging", text)
        else:
            with self.lock:
                self.warnings.append(text[:500])

    def install(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Hook logging, the loop, threads and unraisable exceptions; returns the undo.

        What was garbage before is collected first, unhooked: under pytest the soak shares its
        process with earlier tests, whose unclosed sockets were otherwise counted as its own."""
        gc.collect()
        root = logging.getLogger()
        root.addHandler(self)
        logging.captureWarnings(True)
        catch = warnings.catch_warnings()
        catch.__enter__()
        warnings.simplefilter("default", ResourceWarning)
        old_thread, old_unraisable = threading.excepthook, sys.unraisablehook
        old_loop = loop.get_exception_handler()
        threading.excepthook = lambda a: self.add("thread", f"{a.exc_type.__name__}: {a.exc_value}")
        sys.unraisablehook = lambda u: self.add("unraisable", f"{u.exc_type.__name__}: {u.exc_value}")
        loop.set_exception_handler(lambda _loop, ctx: self.add("event loop", str(ctx.get("message"))[:200]
                                   + f" {ctx.get('exception')!r}"))  # fmt: skip

        def undo() -> None:
            root.removeHandler(self)
            catch.__exit__(None, None, None)
            logging.captureWarnings(False)
            threading.excepthook, sys.unraisablehook = old_thread, old_unraisable
            loop.set_exception_handler(old_loop)

        return undo

    def scan_textual_log(self, path: Path) -> None:
        if not path.exists():
            return
        with path.open(encoding="utf-8", errors="replace") as log:
            for line in log:
                if self.TEXTUAL_ERROR.search(line):
                    self.add("textual log", line.strip())


# --- the soak ----------------------------------------------------------------------------------


def demo_tracebacks(state_dir: Path) -> dict[str, int]:
    """Tracebacks in each log of the demo stack (its services, agent, load generator)."""
    counts = {}
    for log in sorted((Path(state_dir) / "logs").glob("*.log")):
        with contextlib.suppress(OSError):
            counts[log.name] = log.read_text(errors="replace").count("Traceback (most recent call last)")
    return counts


def soak_config(config: Config, interval: float = SOAK_INTERVAL) -> Config:
    """The same config with every refresh at ``interval``."""
    return config.model_copy(
        update={"refresh": Refresh(health=interval, prometheus=interval, postgres=interval)}
    )


def matches(expected: Iterable[Any], state: ConsoleState) -> bool:
    return any(e.matches(b.id) for e in expected for b in state.breaches)


@dataclass
class Soak:
    """One run: what was sampled, seen and logged."""

    duration: float
    out_dir: Path
    samples: list[Sample] = field(default_factory=list)
    errors: ErrorLog = field(default_factory=ErrorLog)
    seen: dict[str, set[str]] = field(default_factory=lambda: {"console": set(), "engine": set()})
    cycles: int = 0
    injections: int = 0
    keys: int = 0
    engine_states: int = 0
    notes: list[str] = field(default_factory=list)
    before: Sample | None = None  # before the console started
    after: Sample | None = None  # after it quit and the engine closed: what is left is leaked
    fds_before: dict[int, str] = field(default_factory=dict)  # describe_fds() with ``before``
    fds_after: dict[int, str] = field(default_factory=dict)  # and with ``after``


async def sample_loop(soak: Soak, t0: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        soak.samples.append(take_sample(time.monotonic() - t0, len(soak.errors.lines)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


async def cycle_scenarios(soak: Soak, control, observed: Callable[[], dict[str, ConsoleState]],
                          stop: asyncio.Event, *, parallel: int = 3, hold: float = 1.0,
                          give_up: float = 60.0) -> None:  # fmt: skip
    """Inject each scenario, hold it until every observer saw it (then ``hold`` s more, a few
    refreshes), reset it; ``parallel`` at a time, round after round until ``stop``."""
    scenarios = control.scenarios()

    async def one(info) -> None:
        soak.injections += 1
        try:
            await control.ainject(info.name)
        except Exception as exc:  # the stack refused: an error of the soak, which goes on
            soak.errors.add("demo", f"inject {info.name}: {type(exc).__name__}: {exc}")
            return
        deadline = time.monotonic() + give_up
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                states = observed()
                for who, state in states.items():
                    if matches(info.expected, state):
                        soak.seen[who].add(info.name)
                if all(info.name in soak.seen[who] for who in states):
                    break
                await asyncio.sleep(SOAK_INTERVAL)
            else:
                if not stop.is_set():
                    soak.notes.append(f"{info.name}: not seen by every observer within {give_up:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), hold)
        finally:
            try:
                await control.areset(info.name)
            except Exception as exc:
                soak.errors.add("demo", f"reset {info.name}: {type(exc).__name__}: {exc}")

    while not stop.is_set():
        queue = list(scenarios)
        running: set[asyncio.Task[None]] = set()
        while (queue or running) and not stop.is_set():
            while queue and len(running) < parallel:
                running.add(asyncio.create_task(one(queue.pop(0))))
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        for task in running:
            await task
        soak.cycles += 1


def write_report(soak: Soak, verdict: Verdict, scenarios: list[str]) -> tuple[Path, str]:
    doc = {
        "ok": verdict.ok,
        "problems": verdict.problems,
        "figures": verdict.figures,
        "duration_s": soak.duration,
        "interval_s": SOAK_INTERVAL,
        "cycles": soak.cycles,
        "injections": soak.injections,
        "keys": soak.keys,
        "engine_states": soak.engine_states,
        "scenarios": scenarios,
        "seen": {k: sorted(v) for k, v in soak.seen.items()},
        "errors": soak.errors.lines[:50],
        "warnings": soak.errors.warnings[:50],
        "notes": soak.notes,
        "samples": [asdict(s) for s in soak.samples],
    }
    path = soak.out_dir / "soak-report.json"
    path.write_text(json.dumps(doc, indent=1))
    f = verdict.figures

    def line(name: str, unit: str = "") -> str:
        g = f.get(name, {})
        return (f"  {name:8} start {g.get('start')}{unit}, after warm-up {g.get('after_warmup')}{unit}, "
                f"end {g.get('end')}{unit}, growth {g.get('growth')}{unit}, "
                f"steady slope {g.get('slope_per_min')}{unit}/min")  # fmt: skip

    text = "\n".join(
        [
            f"soak {'PASSED' if verdict.ok else 'FAILED'}: {f.get('duration_s')} s at {SOAK_INTERVAL:g} s "
            f"refresh, warm-up {f.get('warmup_s')} s, windows {f.get('window_s')} s, "
            f"{f.get('samples')} samples",
            f"  {soak.cycles} full scenario cycle(s), {soak.injections} injections, {soak.keys} key plans, "
            f"{soak.engine_states} engine states; seen by the console "
            f"{len(soak.seen['console'])}/{len(scenarios)}, by the engine {len(soak.seen['engine'])}/{len(scenarios)}",
            line("rss_mb", " MB"),
            line("fds"),
            line("tasks"),
            line("old_tasks"),
            line("threads"),
            f"  before the console: {f.get('before')}; after it quit: {f.get('after')}",
            f"  exceptions/errors logged: {len(soak.errors.lines)}; warnings: {len(soak.errors.warnings)}",
            *(f"  PROBLEM: {p}" for p in verdict.problems),
            *(f"  note: {n}" for n in soak.notes[:10]),
            f"  report: {path}",
        ]
    )
    (soak.out_dir / "soak-report.txt").write_text(text + "\n")
    return path, text


# --- the demo stack ----------------------------------------------------------------------------


@contextlib.contextmanager
def demo_stack(attach: str | None, timeout: float = 120.0):
    """A DemoControl on the stack in ``attach``, or on a new ``demo --no-ui`` stopped at the end."""
    from console.demo.control import DemoControl

    if attach:
        yield DemoControl.attach(attach)
        return
    state_dir = Path(tempfile.mkdtemp(prefix="ic-soak-demo-", dir="/tmp"))
    process = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "demo", "--no-ui", "--state-dir", str(state_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("config: "):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the demo stack did not start")
        else:
            raise RuntimeError(f"the demo stack exited ({process.wait()})")
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        yield DemoControl.attach(state_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        from console.demo.cleanup import remove_demo

        remove_demo(state_dir)  # the stack's logs, config, journal and its cluster (in /tmp as root)


def soak(duration: float, out_dir: Path, attach: str | None = None, limits: Limits = Limits()):
    """Run a whole soak; returns (verdict, report path, report text)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with demo_stack(attach) as control:
        config = soak_config(load_config(control.config_path))
        run = Soak(duration, out_dir)
        from bench.soak_driver import run_console_soak  # the UI side: Textual loads here

        asyncio.run(run_console_soak(run, config, control))
    scenarios = [s.name for s in control.scenarios()]
    verdict = analyse(
        run.samples,
        limits=limits,
        errors=run.errors.lines,
        scenarios=scenarios,
        seen=run.seen,
        before=run.before,
        after=run.after,
        left_descriptors=left_open(run.fds_before, run.fds_after),
    )
    path, text = write_report(run, verdict, scenarios)
    return verdict, path, text


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 180s, 1h)")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 60}[match.group(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=parse_duration, default=30 * 60.0, help="e.g. 30m (default), 3m")
    parser.add_argument("--attach", help="state dir of a running demo stack (default: start one)")
    parser.add_argument("--out", type=Path, default=Path("soak-out"), help="report directory")
    args = parser.parse_args(argv)
    verdict, _path, text = soak(args.duration, args.out, args.attach)
    print(text)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
