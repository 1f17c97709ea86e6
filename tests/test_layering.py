"""The engine (console/) must import and work without Textual or the panels: the UI depends on
the engine, never the other way.

The UI lives in panels/ (the widgets, the Textual app, the soak's headless console, the ``serve``
web server); ``console.app`` is the engine's one door to it, loading each UI module on first use.
Every other module of console/ is the engine: it imports none of ``textual``, ``panels`` or
``textual_serve``, not even inside a function, and imports ``console.app`` only inside a function
(``console.cli`` opening the console for ``run``).
Two checks: every engine module imports with those packages blocked, and the source of every
engine module, read with ``ast``, has no such import anywhere (which also catches an import in a
function that no test calls).

Inside the engine, the actions (console/actions/) act on backends through the layer below the
sources — ``console.pg`` (connections, the console's own pids, error classification),
``console.httpio``, ``console.errors`` — and never import ``console.sources``: an action must
not depend on how a panel's data is polled. Those shared modules do not import the sources
either.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "console"
FORBIDDEN = ("textual", "panels", "textual_serve")
UI = "console.app"
# Calls that import (or locate) a module named by a string.
IMPORT_CALLS = ("import_module", "__import__", "find_spec")

PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("textual", "panels", "textual_serve"):
                raise ImportError(f"engine imported {name}")
            return None

    sys.meta_path.insert(0, Block())
    for name in sys.argv[1:]:
        importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m == "console.app" or m.startswith("console.app."))
    print(" ".join(loaded) or "-")
    """
)


def engine_files() -> list[Path]:
    """Every module of console/ but console/app.py."""
    return sorted(
        path for path in ENGINE.rglob("*.py") if "__pycache__" not in path.parts and path != ENGINE / "app.py"
    )


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_ui(name: str) -> bool:
    return name == UI or name.startswith(UI + ".")


def imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The modules ``node`` imports (for ``from m import n``: m and m.n, n may be a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        return [base, *(f"{base}.{alias.name}" for alias in node.names)]
    if isinstance(node, ast.Call) and node.args:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        first = node.args[0]
        if name in IMPORT_CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
            return [first.value]
    return []


def violations(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, what) for every import of Textual, panels or textual-serve anywhere in ``source``
    (module level, functions, classes, ``if TYPE_CHECKING:``), and every import of console.app
    that is not inside a function (one that runs when the module is imported)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            targets = imported(child, module, is_package)
            bad = [t for t in targets if t.split(".")[0] in FORBIDDEN]
            if bad:
                found.append(
                    (
                        child.lineno,
                        f"imports {bad[0]} (UI code belongs in panels/, reached through console.app)",
                    )
                )
            elif not in_function and any(is_ui(t) for t in targets):
                ui = next(t for t in targets if is_ui(t))
                found.append((child.lineno, f"imports {ui} at import time (only inside a function)"))
            function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            visit(child, in_function or function)

    visit(ast.parse(source), False)
    return found


def test_engine_imports_without_textual_or_panels():
    names = [module_name(path) for path in engine_files()]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *names], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # Every engine module was imported, and none of them pulled in the UI package.
    assert len(names) >= 40, names
    for module in ("console.config", "console.rules", "console.poller", "console.cli"):
        assert module in names
    assert result.stdout.split() == ["-"], result.stdout


def test_no_engine_module_imports_textual_panels_or_textual_serve_even_inside_a_function():
    problems = []
    files = engine_files()
    for path in files:
        for line, what in violations(path.read_text(), module_name(path), path.name == "__init__.py"):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert len(files) >= 40 and ENGINE / "cli.py" in files
    assert not problems, "\n".join(problems)


def test_the_source_check_finds_nested_typing_and_dynamic_imports():
    source = textwrap.dedent(
        """
        import importlib
        from typing import TYPE_CHECKING

        import textualize_not_textual
        from console.config import Config
        from . import rules
        from console.app import ConsoleApp

        if TYPE_CHECKING:
            from textual_serve.app_service import AppService


        class Thing:
            import panels

            def method(self):
                import textual.constants


        async def driver():
            from panels.postgres import PostgresPanel
            from console.app import run_console
            from . import app
            importlib.import_module("textual.app")
            return importlib.util.find_spec("textual_serve")


        from console import app
        from .app.web import COOKIE
        handler = lambda: __import__("console.app.web")
        """
    )
    assert violations(source, "console.example") == [
        (8, "imports console.app at import time (only inside a function)"),
        (11, "imports textual_serve.app_service (UI code belongs in panels/, reached through console.app)"),
        (15, "imports panels (UI code belongs in panels/, reached through console.app)"),
        (18, "imports textual.constants (UI code belongs in panels/, reached through console.app)"),
        (22, "imports panels.postgres (UI code belongs in panels/, reached through console.app)"),
        (25, "imports textual.app (UI code belongs in panels/, reached through console.app)"),
        (26, "imports textual_serve (UI code belongs in panels/, reached through console.app)"),
        (29, "imports console.app at import time (only inside a function)"),
        (30, "imports console.app.web at import time (only inside a function)"),
    ]
    # Relative imports resolve from the module's package; in a package's __init__, from itself.
    assert violations("from ..app import web", "console.demo.cli") == [
        (1, "imports console.app at import time (only inside a function)")
    ]
    assert violations("from .app import web", "console", is_package=True) == [
        (1, "imports console.app at import time (only inside a function)")
    ]
    assert violations("from .app import web", "console.demo", is_package=True) == []


def test_the_door_to_the_ui_loads_textual_only_for_the_app():
    """console.app itself loads nothing of the UI; ``serve``'s process takes its web server
    through it without Textual or the app; ``from console.app import ConsoleApp`` loads them."""
    probe = textwrap.dedent(
        """
        import sys
        import console.app
        ui = lambda: sorted({m for m in sys.modules if m.split(".")[0] in ("textual", "panels")} & {"textual", "panels.app"})
        print(ui(), "panels" in sys.modules)
        from console.app import serve_forever
        print(ui(), serve_forever.__module__)
        from console.app import ConsoleApp, run_console
        print(ui(), ConsoleApp.__module__, run_console.__module__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "[] False",
        "[] panels.serve_web",
        "['panels.app', 'textual'] panels.app panels.app",
    ]


# --- inside the engine: actions and the shared layer never import the sources ----------------

SOURCES = "console.sources"
ACTIONS = ENGINE / "actions"
SHARED_BELOW_SOURCES = ("pg.py", "httpio.py", "errors.py", "locktree.py")


def source_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import of console.sources (or one of its modules) anywhere in
    ``source``: module level, functions, classes, ``if TYPE_CHECKING:``, dynamic imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        for target in imported(node, module, is_package):
            if target == SOURCES or target.startswith(SOURCES + "."):
                found.append((node.lineno, target))
                break
    return sorted(found)


def test_no_action_module_imports_the_sources():
    files = sorted(p for p in ACTIONS.rglob("*.py") if "__pycache__" not in p.parts)
    files += [ENGINE / name for name in SHARED_BELOW_SOURCES]
    problems = [
        f"{path.relative_to(ROOT)}:{line}: imports {target} (use console.pg, console.httpio or console.errors)"
        for path in files
        for line, target in source_imports(path.read_text(), module_name(path), path.name == "__init__.py")
    ]
    assert len(files) >= 10 and ACTIONS / "sql.py" in files and ACTIONS / "executor.py" in files
    assert not problems, "\n".join(problems)


def test_the_sources_check_finds_every_form_of_import():
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        import console.sourcesmith
        from console.pg import connect
        from console.sources.postgres import classify_error
        import console.sources.base as base

        if TYPE_CHECKING:
            from console.sources.base import Stopwatch


        def later():
            from console import sources
            from ..sources import health
            return importlib.import_module("console.sources.prometheus")
        """
    )
    assert source_imports(source, "console.actions.example") == [
        (5, "console.sources.postgres"),
        (6, "console.sources.base"),
        (9, "console.sources.base"),
        (13, "console.sources"),
        (14, "console.sources"),
        (15, "console.sources.prometheus"),
    ]


def test_the_actions_load_without_the_sources():
    """Importing the actions (and the layer they use) loads no module of console.sources."""
    probe = textwrap.dedent(
        """
        import sys
        import console.actions, console.actions.sql, console.actions.httpcall, console.actions.executor
        import console.pg, console.httpio, console.errors, console.locktree
        print(sorted(m for m in sys.modules if m == "console.sources" or m.startswith("console.sources.")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- no import cycle in the engine; the UI uses the engine's public names -----------------------


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks (imports for annotations only: no cycle)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(files: list[Path]) -> dict[str, set[str]]:
    """Engine module -> the engine modules it imports (anywhere in it, a function included)."""
    modules = {module_name(path): path for path in files}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in typing_only:
                continue
            for target in imported(node, name, path.name == "__init__.py"):
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_the_engine():
    files = [p for p in engine_files() if ENGINE / "demo" not in p.parents] + [ENGINE / "app.py"]
    graph = import_graph(files)
    assert len(graph) > 40 and "console.config" in graph
    assert "console.runbooks" not in graph["console.config"]  # the loader is above both
    found = cycles(graph)
    assert found == [], "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_ui_uses_only_public_names_of_the_engine():
    """panels/ (and the UI door console/app.py) import no ``_private`` name from console/."""
    problems = []
    for path in sorted(ROOT.joinpath("panels").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("console"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private or any(part.startswith("_") for part in (node.module or "").split(".")):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module} {private}")
    assert problems == [], "\n".join(problems)


def test_the_code_cites_no_document_outside_the_repository():
    """Comments and docstrings point to docs/ARCHITECTURE.md, which ships with the code."""
    outside = ("DESIGN.md", "../shared")
    files = [*ROOT.joinpath("console").rglob("*.py"), *ROOT.joinpath("panels").rglob("*.py")]
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        if "__pycache__" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(mark in line for mark in outside)
    ]
    assert found == [] and (ROOT / "docs" / "ARCHITECTURE.md").is_file(), found
