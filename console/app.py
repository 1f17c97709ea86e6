"""The one door from the engine to the UI (docs/ARCHITECTURE.md: ``console/`` imports neither
Textual nor ``panels``, except ``app.py``). The engine reaches it only inside functions:
``console.cli`` (``run``) and ``console.demo.cli`` (``demo``) for the console, ``console.serve``
for ``serve``'s web server.

Each name loads its UI module on first use, so ``serve``'s own process (the web server) does not
load Textual and the panels, and the engine stays importable without them:

- ``ConsoleApp``, ``run_console``: :mod:`panels.app`, the Textual application;
- ``serve_forever``, ``COOKIE``: :mod:`panels.serve_web`, aiohttp + textual-serve.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

_WHERE = {
    "ConsoleApp": "panels.app",
    "run_console": "panels.app",
    "serve_forever": "panels.serve_web",
    "COOKIE": "panels.serve_web",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(where), name)
