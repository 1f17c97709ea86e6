"""The ``incident-console`` command (pyproject's entry point): the garbage collector waits out
start-up.

Start-up builds what lives as long as the process: ~90,000 tracked objects (modules, classes,
pydantic's validators, Textual's app, screens and styles). The collector's young passes during
it, one every 700 new objects, walked them again and again and found little: ~0.1 s of the
console's start-up CPU before its first data was on screen (bench/CHANGES.md). It is off from
here. The console collects once, freezes what start-up built and turns it back on after its
first data is drawn (panels.app.settle_heap); every other command turns it on as soon as its
command line is parsed (console.cli.main). ``python -m console.entry`` is the same command (a
``serve`` viewer's console is started so).
"""

from __future__ import annotations

import gc
import sys


def main() -> int:
    gc.disable()
    from console.cli import main as command

    return command()


if __name__ == "__main__":
    sys.exit(main())
