"""The engine (console/) must import and work without Textual or the panels (DESIGN.md section 1)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, pkgutil, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("textual", "panels", "textual_serve"):
                raise ImportError(f"engine imported {name}")
            return None

    sys.meta_path.insert(0, Block())
    import console
    allowed = {"console.app"}
    imported = []
    for info in pkgutil.walk_packages(console.__path__, "console."):
        if info.name in allowed or info.name.startswith("console.app."):
            continue
        importlib.import_module(info.name)
        imported.append(info.name)
    print(len(imported), " ".join(sorted(imported)))
    """
)


def test_engine_imports_without_textual_or_panels():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    count, names = result.stdout.split(" ", 1)
    assert int(count) >= 10, names
    for module in ("console.config", "console.rules", "console.poller", "console.cli"):
        assert module in names.split()
