"""Regenerate screenshots/ from the real console on the real demo stack (``make screenshots``).

Starts ``incident-console demo --no-ui`` in a temporary state dir, turns a few faults on, drives
the real app headless (Textual's test driver: same widgets, same data path) until the breaches
are on screen, saves each view as SVG (Textual's export) and renders it to PNG with Debian's
chromium in headless mode. Nothing here is drawn by hand.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.app import ConsoleApp  # noqa: E402
from console.demo.cleanup import remove_demo  # noqa: E402
from console.demo.control import DemoControl  # noqa: E402
from console.journal import Journal  # noqa: E402
from console.loader import load_config  # noqa: E402
from panels.confirm import ConfirmScreen  # noqa: E402
from panels.rules import RulesScreen  # noqa: E402
from panels.runbook import RunbookScreen  # noqa: E402
from tests.fixtures.chromium import launched  # noqa: E402

OUT = ROOT / "screenshots"
FAULTS = ("lock-contention", "error-spike", "provider-down", "idle-in-transaction")
WANTED = {
    "postgres.demo.waiting",
    "postgres.demo.idle_in_transaction",  # shown grouped under the lock chain's breach
    "prometheus.error_rate",
    "health.sync-worker",
}
ALERTS = {"HighErrorRate", "IntegrationDown"}  # Prometheus' alerts for the faults, firing
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def start_demo(state_dir: Path) -> tuple[subprocess.Popen[str], Path]:
    cli = [sys.executable, "-m", "console.cli", "demo", "--no-ui", "--state-dir", str(state_dir)]
    process = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    assert process.stdout is not None
    for line in process.stdout:
        print("  demo:", line.rstrip())
        if line.startswith("config: "):
            return process, Path(line.removeprefix("config: ").strip())
    raise SystemExit(f"the demo stack did not start (exit {process.wait()})")


async def until(pilot, condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        await pilot.pause(0.2)


def breach_ids(app: ConsoleApp) -> set[str]:
    return {b.id for b in app.state.breaches}


def all_shown(app: ConsoleApp) -> bool:
    """The faults' breaches, and Prometheus' alerts for them firing: the picture of the README."""
    firing = {b.title for b in app.state.breaches if b.kind == "alert" and b.state == "firing"}
    return breach_ids(app) >= WANTED and firing >= ALERTS


def rule_firing(app: ConsoleApp, name: str) -> bool:
    return any(
        r.name == name and r.state == "firing"
        for s in app.state.snapshots.values()
        for g in getattr(s, "rule_groups", ())
        for r in g.rules
    )


async def shoot(config_path: Path, control: DemoControl, journal: Path) -> list[Path]:
    config = load_config(config_path)
    saved: list[Path] = []

    def save(app: ConsoleApp, name: str) -> None:
        path = OUT / f"{name}.svg"
        app.save_screenshot(filename=path.name, path=str(OUT))
        saved.append(path)
        print(f"  saved {path.relative_to(ROOT)}")

    for size, name in (((200, 60), "console-200x60"), ((80, 24), "console-80x24")):
        app = ConsoleApp(config, journal=Journal(journal), demo=control)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda a=app: all_shown(a), "the injected breaches and their alerts")
            await pilot.pause(1.0)
            save(app, name)
            if size == (200, 60):
                table = app.panels[0].table
                table.focus()
                table.move_cursor(row=table.get_row_index("postgres.demo.waiting"))
                await pilot.press("R", "enter")
                await until(pilot, lambda a=app: isinstance(a.screen, RunbookScreen), "the runbook screen")
                screen = app.screen
                steps = screen.query_one("#rb-steps")
                steps.move_cursor(row=steps.get_row_index("terminate-root-blocker"))  # the action
                await pilot.pause(0.5)
                save(app, "runbook-lock-contention")
                await pilot.press("x")
                await until(pilot, lambda a=app: isinstance(a.screen, ConfirmScreen), "the confirmation")
                await pilot.pause(0.5)
                save(app, "confirm-terminate")
                await pilot.press("escape", "escape")

    # The rules view (P): every rule of the demo's Prometheus, the blackbox probe of the sync
    # worker's health firing under provider-down (config/prometheus/exporters.yml).
    app = ConsoleApp(config, journal=Journal(journal), demo=control)
    async with app.run_test(size=(160, 50)) as pilot:
        await until(pilot, lambda a=app: all_shown(a), "the injected breaches and their alerts (rules)")
        await pilot.press("P")
        await until(pilot, lambda a=app: isinstance(a.screen, RulesScreen), "the rules view")
        await until(pilot, lambda a=app: rule_firing(a, "BlackboxProbeFailed"), "BlackboxProbeFailed firing")
        await pilot.pause(1.0)
        save(app, "rules-160x50")

    app = ConsoleApp(config, journal=Journal(journal), wall=True)
    async with app.run_test(size=(160, 45)) as pilot:
        await until(pilot, lambda: all_shown(app), "the injected breaches and their alerts (wall)")
        await pilot.pause(1.0)
        save(app, "wall-160x45")
    return saved


async def shoot_served_wall(config_path: Path) -> Path:
    """The wall as a browser shows it: ``incident-console serve`` on the demo's config, one
    headless Chromium viewer, a 1600x900 PNG of the page."""
    cli = [sys.executable, "-m", "console.cli", "serve", "--config", str(config_path), "--port", "0"]
    serve = subprocess.Popen(
        cli, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, start_new_session=True
    )
    try:
        assert serve.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(serve.stdout.readline), 60)
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        if not match:
            raise SystemExit(f"screenshots: serve did not start: {line!r}")
        async with launched() as browser:
            page = await browser.open(match.group(1), width=1600, height=900)
            await page.wait_for(
                lambda: "WALL" in page.screen_text() and "CRIT" in page.screen_text(), "the wall"
            )
            await asyncio.sleep(1.5)  # let the browser paint the last frame it got
            path = OUT / "serve-wall.png"
            await page.screenshot(path)
            print(f"  saved {path.relative_to(ROOT)}")
            return path
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=30)


def to_png(svg: Path) -> Path:
    match = re.search(r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg.read_text())
    width, height = (int(float(v)) for v in match.groups()) if match else (1600, 1000)
    png = svg.with_suffix(".png")
    with tempfile.TemporaryDirectory(prefix="ic-chromium-") as profile:
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                svg.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(f"  rendered {png.relative_to(ROOT)}")
    return png


def main() -> int:
    OUT.mkdir(exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="ic-screenshots-"))
    process, config_path = start_demo(state_dir)
    try:
        control = DemoControl.attach(state_dir)
        for fault in FAULTS:
            print(" ", control.inject(fault))
        svgs = asyncio.run(shoot(config_path, control, state_dir / "journal.jsonl"))
        asyncio.run(shoot_served_wall(config_path))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        remove_demo(state_dir)  # the state dir and the stack's Postgres cluster (in /tmp as root)
    for svg in svgs:
        to_png(svg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
