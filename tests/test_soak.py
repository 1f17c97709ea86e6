"""The soak (issue 8): its checker on synthetic samples (it must fail on a real leak), what it
counts as an exception, the bugs it found, and the 3-minute condensed soak on the demo stack."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import random
import socket
import warnings

import pytest

from bench.soak import ErrorLog, Limits, Sample, analyse, parse_duration, soak, soak_config
from console.demo.dbfaults import DbFaults, LockContention, SlowQueries
from tests.test_ui import make_app

SCENARIOS = ["lock-contention", "error-spike"]
SEEN = {"console": SCENARIOS, "engine": SCENARIOS}


def run(minutes=3.0, *, rss=lambda t: 95.0, fds=lambda t: 25, tasks=lambda t: 80, seed=1):
    """One sample every 0.5 s, with the noise a 0.1 s refresh gives (measured: fds 25-29, all
    tasks 70-102, tasks alive >= 30 s within a few, RSS steps of a few hundred KB) on top of
    the given curves; ``tasks`` is the curve of the long-lived ones."""
    rnd = random.Random(seed)
    out, t = [], 0.0
    while t <= minutes * 60:
        out.append(
            Sample(
                t,
                rss(t) + rnd.uniform(-0.3, 0.3),
                int(fds(t)) + rnd.randint(0, 4),
                int(tasks(t)) + rnd.randint(-10, 30),  # all tasks: reported, not judged
                8,
                0,
                int(tasks(t)) - 20 + rnd.randint(0, 2),
            )
        )
        t += 0.5
    return out


def warming(value, steady, until=30.0):
    """Climbs from ``value`` to ``steady`` during the warm-up, then stays."""
    return lambda t: value + (steady - value) * min(t / until, 1.0)


def test_a_flat_run_with_noise_and_a_warm_up_passes():
    for seed in range(20):
        samples = run(rss=warming(74, 97), fds=warming(17, 25), tasks=warming(65, 80), seed=seed)
        verdict = analyse(samples, scenarios=SCENARIOS, seen=SEEN)
        assert verdict.ok, (seed, verdict.problems)
    assert (
        verdict.figures["fds"]["start"] < verdict.figures["fds"]["after_warmup"]
    )  # the warm-up is not held against it


def test_one_leaked_descriptor_every_ten_seconds_fails():
    verdict = analyse(run(fds=lambda t: 25 + t // 10), scenarios=SCENARIOS, seen=SEEN)
    assert not verdict.ok and any(p.startswith("fds grew") for p in verdict.problems), verdict.problems


def test_one_leaked_task_every_five_seconds_fails():
    verdict = analyse(run(tasks=lambda t: 80 + t // 5), scenarios=SCENARIOS, seen=SEEN)
    assert any(p.startswith("old_tasks grew") for p in verdict.problems), verdict.problems


def test_rss_growing_past_the_limit_fails_and_the_allocators_steps_do_not():
    # The 3-minute run catches a gross leak (12 MB a minute); the 30-minute one 1 MB a minute
    # (the Footer's leak was 1.2).
    leak = analyse(run(rss=lambda t: 95 + t / 5), scenarios=SCENARIOS, seen=SEEN)
    assert any(p.startswith("rss_mb grew") for p in leak.problems), leak.problems
    leak = analyse(run(30, rss=lambda t: 130 + t / 60), scenarios=SCENARIOS, seen=SEEN)
    assert any(p.startswith("rss_mb grew") for p in leak.problems), leak.problems
    assert analyse(run(30, rss=lambda t: 130 + 2 * (t > 900)), scenarios=SCENARIOS, seen=SEEN).ok
    steps = analyse(run(rss=lambda t: 95 + 2 * (t > 100)), scenarios=SCENARIOS, seen=SEEN)
    assert steps.ok, steps.problems


def test_anything_left_after_quitting_is_a_leak():
    samples = run()
    before = Sample(0, 63, 9, 1, 2, 0)
    verdict = analyse(samples, before=before, after=Sample(200, 99, 9, 1, 8, 0))
    assert verdict.ok, verdict.problems
    verdict = analyse(samples, before=before, after=Sample(200, 99, 11, 3, 8, 0))
    assert [p.split(" more")[0] for p in verdict.problems] == ["2 fds", "2 tasks"]


def test_a_descriptor_left_open_is_named_by_what_it_is():
    """A fresh-clone CI soak once counted one descriptor more after quitting than before, and
    said no more: the report now names it (a socket by its addresses, a pipe, a path)."""
    import os
    import socket

    from bench.soak import describe_fds, left_open

    before = describe_fds()
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    read_end, write_end = os.pipe()
    try:
        left = left_open(before, describe_fds())
        port = server.getsockname()[1]
        assert any(f"tcp 127.0.0.1:{port} -> 0.0.0.0:0" in d for d in left), left  # listening
        assert any(d.endswith(f"-> 127.0.0.1:{port}") for d in left), left  # the client
        assert {f"{read_end} pipe:", f"{write_end} pipe:"} <= {d.split("[")[0] for d in left}, left
        verdict = analyse(run(), before=Sample(0, 63, 9, 1, 2, 0), after=Sample(200, 99, 10, 1, 8, 0),
                          left_descriptors=left)  # fmt: skip
        assert verdict.problems[0].startswith("1 fds more") and f":{port}" in verdict.problems[0]
    finally:
        client.close()
        server.close()
        os.close(read_end)
        os.close(write_end)
    assert not [d for d in left_open(before, describe_fds()) if f":{port}" in d]


def test_exceptions_unseen_scenarios_and_too_short_runs_fail():
    verdict = analyse(
        run(), errors=["worker: poll:health:x: ValueError('x')"], scenarios=SCENARIOS, seen=SEEN
    )
    assert verdict.problems == [
        "1 exception(s)/error(s) logged; first: worker: poll:health:x: ValueError('x')"
    ]
    verdict = analyse(run(), scenarios=SCENARIOS, seen={"console": SCENARIOS, "engine": ["error-spike"]})
    assert verdict.problems == ["the engine never showed: lock-contention"]
    assert not analyse(run(minutes=0.05)).ok
    short = analyse(run(minutes=0.7, tasks=lambda t: 20 + t), scenarios=SCENARIOS, seen=SEEN)
    assert short.ok and short.figures["old_tasks"]["judged"] is False  # no task can be 30 s old yet


def test_limits_are_what_the_docstring_says():
    limits = Limits()
    assert (limits.fds, limits.old_tasks, limits.rss_mb) == (3, 3, 10.0)
    assert (limits.left_fds, limits.left_tasks) == (0, 0)
    assert parse_duration("30m") == 1800 and parse_duration("180s") == 180 and parse_duration("3") == 180


async def test_the_error_log_counts_lost_coroutines_loop_and_logged_errors():
    errors = ErrorLog()
    undo = errors.install(asyncio.get_running_loop())
    try:

        async def work() -> None:
            pass

        work()  # never awaited
        gc.collect()
        logging.getLogger("somewhere").error("boom")
        logging.getLogger("somewhere").warning("only a warning")
        asyncio.get_running_loop().call_exception_handler({"message": "lost", "exception": OSError(9)})
    finally:
        undo()
    assert [line.split(":")[0] for line in errors.lines] == ["logging", "logging", "event loop"]
    assert "never awaited" in errors.lines[0] and "boom" in errors.lines[1]
    assert errors.warnings == ["somewhere WARNING only a warning"]


async def test_the_error_log_counts_what_leaks_after_it_starts_not_what_was_garbage_before():
    """Under pytest the soak runs in a worker that ran other tests first: sockets those left in
    reference cycles were collected mid-soak and counted as the console's (4 unclosed transports
    at 170 s in a fresh-clone run with three workers, not reproduced by the soak alone)."""

    def unclosed_socket_in_a_cycle() -> None:
        cycle: list[object] = [socket.socket()]
        cycle.append(cycle)  # freed only by the cyclic collector, which warns when it runs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the earlier test's, reported by pytest
        unclosed_socket_in_a_cycle()
        errors = ErrorLog()
        undo = errors.install(asyncio.get_running_loop())
        try:
            gc.collect()
            assert errors.lines == []
            unclosed_socket_in_a_cycle()  # the soak's own leak still counts
            gc.collect()
        finally:
            undo()
    assert len(errors.lines) == 1 and "unclosed <socket.socket" in errors.lines[0], errors.lines


def test_the_textual_log_scan_finds_failed_workers(tmp_path):
    log = tmp_path / "textual.log"
    log.write_text("Worker(name='poll:x') RUNNING\nWorker(name='poll:x') failed ValueError('boom')\nok\n")
    errors = ErrorLog()
    errors.scan_textual_log(log)
    assert len(errors.lines) == 1 and "failed ValueError" in errors.lines[0]


# --- bugs the soak found -------------------------------------------------------------------------


async def test_a_poll_cancelled_before_it_started_leaves_no_unawaited_coroutine():
    """At exit a poll timer could start a worker that was cancelled before it ran: its coroutine,
    made by _start_poll, was never awaited (a RuntimeWarning on the way out)."""
    app = make_app(autopoll=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with app.run_test(size=(120, 40)) as pilot:
            key = next(iter(app.poller.sources))
            app._start_poll(key)
            app.workers.cancel_group(app, f"poll:{key}")
            await pilot.pause()
        gc.collect()
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)]


async def test_a_wall_timeline_replaced_before_it_started_leaves_no_unawaited_coroutine():
    """The wall's timeline is one exclusive worker: a second refresh cancels the first before it
    runs, whose coroutine was then never awaited (a RuntimeWarning in the fresh-clone CI at
    37a6eb0, tests/test_ui_shared.py's wall)."""
    app = make_app(autopoll=False, wall=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            assert app.wall_screen is not None and app.wall_screen.is_mounted
            app._wall_timeline()
            app._wall_timeline()  # exclusive: the first is cancelled before it started
            await pilot.pause()
        gc.collect()
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)]


async def test_workers_cancelled_before_they_started_leave_no_unawaited_coroutine():
    """Every worker the console starts gets a callable: closing the console (or cancelling a
    group) before a worker ran left its coroutine never awaited, a RuntimeWarning at exit. The
    timeline (`t`) stands for them all."""
    app = make_app(autopoll=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            app.action_timeline()
            app.workers.cancel_group(app, "timeline-reload")  # before it ran
            await pilot.pause()
        gc.collect()
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)]


async def test_a_lock_fault_listed_while_it_is_being_injected_has_a_status():
    """The demo agent lists every fault in its answers; a lock-contention still being injected
    had no session yet and the listing raised IndexError (HTTP 500 for another scenario)."""
    status = await LockContention().status(None)
    assert status["active"] is False and status["sessions"] == 0


async def test_listing_the_faults_while_another_is_injected():
    """The agent awaits each fault's status; an inject meanwhile changed the dict under the
    listing: RuntimeError, HTTP 500 (the 30-minute soak, on slow-queries)."""

    class Ctx:
        async def admin(self, *args):
            await asyncio.sleep(0.01)
            return True

    faults = DbFaults(Ctx())
    faults.faults["slow-queries"] = SlowQueries()
    listing = asyncio.create_task(faults.status())
    await asyncio.sleep(0)
    faults.faults["lock-contention"] = LockContention()
    assert [f["name"] for f in await listing] == ["slow-queries"]


async def test_focus_changes_do_not_keep_old_footer_keys_alive():
    """Textual's Footer recomposes at each focus change and kept every FooterKey it had made
    (a data_bind watcher): ~16 widgets per tab, +35 MB RSS in the 30-minute soak."""
    from textual.widgets._footer import FooterKey

    def alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, FooterKey))

    app = make_app(autopoll=False)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        shown = len(app.screen.query(FooterKey))
        for _ in range(30):
            await pilot.press("tab")
            await pilot.pause()
        await pilot.press("enter", "escape", "question_mark", "escape")
        await pilot.pause()
        assert shown > 5 and alive() <= 2 * shown + 10, (shown, alive())


async def test_a_timed_out_health_probe_leaves_no_connection_behind(http_server):
    """httpcore 1.0 can keep the connection of a request cancelled at the wrong moment ACTIVE in
    its pool for good: the 30-minute soak on a busy machine ended with 45 such descriptors (up
    to 100 a client, then every probe waits for a pool slot). A probe that timed out or was
    cancelled now closes its client; the next poll opens a new one."""
    from console.config import HealthTarget
    from console.sources.health import HealthSource

    http_server.route("/slow", json={"status": "pass"}, delay=1.0)
    http_server.route("/ok", json={"status": "pass"})
    source = HealthSource(HealthTarget(name="x", url=http_server.url("/slow"), timeout=0.2), 0.1)
    client = source._ensure_client()
    snapshot = await source.poll()
    assert snapshot.error is not None and snapshot.error.kind.name == "TIMEOUT"
    await asyncio.sleep(0.1)
    assert client.is_closed

    client = source._ensure_client()
    probe = asyncio.create_task(source.poll())
    await asyncio.sleep(0.05)
    probe.cancel()  # the poller's hard limit
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    await asyncio.sleep(0.1)
    assert client.is_closed
    source.target = HealthTarget(name="x", url=http_server.url("/ok"), timeout=1)
    assert (await source.poll()).error is None  # a new client, working
    await source.aclose()


async def test_what_is_left_after_quitting_is_sampled_once_closing_is_done(tmp_path, monkeypatch):
    """A request running in a worker thread (PromQL) cannot be cancelled at quit: its socket
    closes when it ends. The after-quit sample waits for that (a fresh-clone CI soak counted
    one descriptor more than before starting), but a descriptor nobody closes stays counted.
    (Descriptors counted are this test's own: other tests in the same worker open and close
    theirs meanwhile.)"""
    from bench import soak_driver
    from bench.soak import Soak

    open_now: set[str] = set()
    # A long settle limit first: returning well before it proves the sample waited for the
    # closing, not for the limit (a 1.4 s bound failed on a loaded machine).
    monkeypatch.setattr(soak_driver, "SETTLE_SECONDS", 30.0)
    monkeypatch.setattr(
        soak_driver, "take_sample", lambda t, errors: Sample(t, 100.0, 10 + len(open_now), 1, 2, errors)
    )
    run = Soak(duration=1, out_dir=tmp_path)
    run.before = soak_driver.take_sample(0.0, 0)
    open_now.add("closing")
    asyncio.get_running_loop().call_later(0.5, open_now.discard, "closing")
    started = asyncio.get_running_loop().time()
    settled = await soak_driver._settled_sample(run, 0.0, ErrorLog())
    assert settled.fds == run.before.fds and 0.4 < asyncio.get_running_loop().time() - started < 20
    monkeypatch.setattr(soak_driver, "SETTLE_SECONDS", 1.5)
    open_now.add("leaked")
    left = await soak_driver._settled_sample(run, 0.0, ErrorLog())
    assert left.fds == run.before.fds + 1


async def test_a_timed_out_prometheus_request_closes_the_client_after_the_poll(http_server):
    from console.config import Prometheus
    from console.sources.prometheus import PrometheusSource

    http_server.route("/api/v1/alerts", json={"status": "success", "data": {"alerts": []}}, delay=1.0)
    source = PrometheusSource(Prometheus(url=http_server.url(), timeout=0.3), 0.1)
    client = source._http()
    await source.poll()  # the alerts request times out
    await asyncio.sleep(0.1)
    assert client.is_closed and source._client is None
    http_server.route("/api/v1/alerts", json={"status": "success", "data": {"alerts": []}})
    await source.poll()
    assert source._client is not None and not source._client.is_closed  # kept when nothing timed out
    await source.aclose()


async def test_closing_a_source_right_after_a_timed_out_poll_closes_the_discarded_client(http_server):
    """A poll that timed out hands its client to a background close; a source closed right
    after (the console quitting, a test ending) returned before that close ran, and the loop
    ended with the client's socket open (a ResourceWarning collected later, in whatever ran
    next: the fresh-clone soak with three workers counted 4 of them as its own)."""
    from console.config import HealthTarget, Prometheus
    from console.sources.health import HealthSource
    from console.sources.prometheus import PrometheusSource

    http_server.route("/api/v1/alerts", json={"status": "success", "data": {"alerts": []}}, delay=1.0)
    http_server.route("/slow", json={"status": "pass"}, delay=1.0)
    prometheus = PrometheusSource(Prometheus(url=http_server.url(), timeout=0.3), 0.1)
    health = HealthSource(HealthTarget(name="x", url=http_server.url("/slow"), timeout=0.3), 0.1)
    for source, client in ((prometheus, prometheus._http()), (health, health._ensure_client())):
        await source.poll()  # times out
        await source.aclose()  # at once
        assert client.is_closed, type(source).__name__


# --- the condensed soak -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_minute_soak_on_the_demo_stack(demo_stack, tmp_path):
    """The CI size of `make soak`: 3 minutes, every refresh at 0.1 s, every scenario cycling."""
    verdict, path, text = soak(180.0, tmp_path / "soak", attach=str(demo_stack.state_dir))
    print(text)
    doc = json.loads(path.read_text())
    # That everything ran all along, not how fast (the machine is shared): counts, loosely.
    assert doc["cycles"] >= 1 and doc["keys"] >= 5 and doc["engine_states"] >= 100, text
    assert verdict.ok, text


def test_the_soak_config_forces_every_refresh_and_keeps_the_rest():
    from tests import ui_data

    config = ui_data.config()
    forced = soak_config(config)
    assert (forced.refresh.health, forced.refresh.prometheus, forced.refresh.postgres) == (0.1, 0.1, 0.1)
    assert forced.health == config.health and forced.thresholds() == config.thresholds()
    assert forced.journal_path() == config.journal_path()
