"""Textual's own floor for a live screen: what a Textual app costs at rest, ours aside.

    python -m bench.floor one-line | same-changes

A reference app, not the console: the same screen shape as the console's idle screen (a
one-line header, a breaches table of 2 rows, a 3-line lock tree, a sessions table of 3 rows, a
footer) and one tick a second, which changes

- ``one-line``: the header's clock only: the least a screen that shows the time can do;
- ``same-changes``: what the console's idle screen honestly changes each second: the clock, the
  2 breach ages, the 3 session durations and the lock tree's 3 "waits for Ns" lines, written the
  way Textual's documentation teaches (``DataTable.update_cell``, ``Static.update``).

The bench runs it beside the two tools on the idle server (bench/run.py), so that the idle
target of issue 20 can be read against what the framework itself costs on the same machine.
Nothing here polls: a tick is the screen's work alone.
"""

from __future__ import annotations

import sys
import time

from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Static

READY = "floor ready"
VARIANTS = ("one-line", "same-changes")


class Floor(App):
    BINDINGS = [("q", "quit", "Quit")]

    def __init__(self, variant: str) -> None:
        super().__init__()
        self.variant = variant
        self.started = time.monotonic()

    def compose(self) -> ComposeResult:
        yield Static(READY, id="clock")
        with Vertical():
            yield DataTable(id="breaches")
            yield Static("", id="tree")
            yield DataTable(id="sessions")
        yield Footer()

    def on_mount(self) -> None:
        breaches = self.query_one("#breaches", DataTable)
        breaches.add_columns("Severity", "State", "Age", "Breach", "Value (level)")
        for i in range(2):
            breaches.add_row("✖ CRIT", "firing", "0s", f"main: breach {i}", "2 sessions (>= 1)", key=f"b{i}")
        sessions = self.query_one("#sessions", DataTable)
        sessions.add_columns("pid", "user", "application", "state", "for", "wait", "query")
        for i in range(3):
            row = (str(9600 + i), "bench", "load", "active", "0s", "Lock:transactionid", "UPDATE t SET v = 1")
            sessions.add_row(*row, key=f"s{i}")
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        age = int(time.monotonic() - self.started)
        self.query_one("#clock", Static).update(f"{READY}  {time.strftime('%H:%M:%SZ')}", layout=False)
        if self.variant == "one-line":
            return
        breaches = self.query_one("#breaches", DataTable)
        for i in range(2):
            breaches.update_cell(f"b{i}", breaches.ordered_columns[2].key, f"{age}s")
        sessions = self.query_one("#sessions", DataTable)
        for i in range(3):
            sessions.update_cell(f"s{i}", sessions.ordered_columns[4].key, f"{age + i}s")
        tree = "\n".join(f"pid {9600 + i} waits for {age + i}s" for i in range(3))
        self.query_one("#tree", Static).update(tree, layout=False)


def main() -> None:
    variant = sys.argv[1] if len(sys.argv) > 1 else ""
    if variant not in VARIANTS:
        raise SystemExit(f"usage: python -m bench.floor {' | '.join(VARIANTS)}")
    Floor(variant).run()


if __name__ == "__main__":
    main()
