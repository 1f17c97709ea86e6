"""The shape of console/actions: no module uses another's private names, each kind lives in one
module behind the Kind protocol, and the executor has no per-kind code.

Read with ``ast``, so an import in a function that no test calls is caught too."""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

from console.actions import executor, registry
from console.actions.kind import Kind, KindContext

ROOT = Path(__file__).resolve().parent.parent
ACTIONS = "console.actions"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _in_actions(module: str) -> bool:
    return module == ACTIONS or module.startswith(ACTIONS + ".")


def private_uses(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, what) for every private name of a console.actions module that ``source`` (the
    module ``module``) takes from another module: ``from m import _x`` (absolute or relative),
    ``import m._x``, and ``alias._x`` where the alias is bound to a console.actions module by
    an import."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    aliases: dict[str, str] = {}  # local name -> the console.actions module it is bound to

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            if not _in_actions(base):
                continue
            for alias in node.names:
                private = any(_private(part) for part in base.split(".")) or _private(alias.name)
                if private and base != module:
                    found.append((node.lineno, f"from {base} import {alias.name}"))
                aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _in_actions(alias.name):
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    found.append((node.lineno, f"import {alias.name}"))
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]

    def dotted(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            inner = dotted(node.value)
            return f"{inner}.{node.attr}" if inner else None
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = dotted(node.value)
            if owner and _in_actions(owner) and owner != module:
                found.append((node.lineno, f"{owner}.{node.attr}"))
    return sorted(set(found))


def test_no_module_takes_a_private_name_of_console_actions_from_another_module():
    files = sorted(
        p for d in ("console", "panels") for p in (ROOT / d).rglob("*.py") if "__pycache__" not in p.parts
    )
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {what} (a private name of another module: make it public)"
        for path in files
        for line, what in private_uses(path.read_text(), module_name(path), path.name == "__init__.py")
    ]
    assert len(files) > 60 and ROOT / "console" / "actions" / "executor.py" in files
    assert not problems, "\n".join(problems)


def test_the_private_name_check_finds_every_form():
    source = textwrap.dedent(
        """
        import console.actions.sql
        import console.actions.plans as plans
        from console.actions.kind import touches, _hidden
        from console.actions import _private_module
        from . import sql as pg
        from .plans import Plan, _Outcome
        from ..actions.kinds import signal
        import console.actions._secret


        def later():
            from console.actions.executor import Executor, _RUNNERS
            return plans._body_lines, pg._session, signal._SIGNAL_SQL, console.actions.sql._reason


        fine = (plans.Plan, plans.__name__, _local(), self._field)
        """
    )
    assert private_uses(source, "console.actions.example") == [
        (4, "from console.actions.kind import _hidden"),
        (5, "from console.actions import _private_module"),
        (7, "from console.actions.plans import _Outcome"),
        (9, "import console.actions._secret"),
        (13, "from console.actions.executor import _RUNNERS"),
        (14, "console.actions.kinds.signal._SIGNAL_SQL"),
        (14, "console.actions.plans._body_lines"),
        (14, "console.actions.sql._reason"),
        (14, "console.actions.sql._session"),
    ]
    # A module's own private names are its own business.
    assert private_uses("from console.actions.sql import _x\n", "console.actions.sql") == []


# --- one module per kind, the executor without per-kind code --------------------------------------


def _kinds() -> list[Kind]:
    return [*registry.ACTIONS.values(), *registry.CHECKS.values()]


def test_each_kind_lives_in_one_module_behind_the_protocol():
    names = [kind.name for kind in _kinds()]
    assert names == [
        "sql",
        "signal",
        "http",
        "argv",
        "silence",
        "sql check",
        "promql check",
        "http check",
        "health check",
    ]
    modules = set()
    for kind in _kinds():
        module = type(kind).__module__
        assert module.startswith("console.actions.kinds."), module
        modules.add(module)
        # The kind's spec (the variant of ActionSpec / CheckSpec) and the model under its key
        # are declared in the kind's module.
        assert kind.spec.__module__ == module, (kind.name, kind.spec)
        body = kind.spec.model_fields[kind.key].annotation
        assert getattr(body, "__module__", module) == module, (kind.name, body)
        assert kind.spec.kind == kind.key
        for method in ("render", "preview", "validate", "run"):
            ours = inspect.signature(getattr(type(kind), method))
            theirs = inspect.signature(getattr(Kind, method))
            assert list(ours.parameters) == list(theirs.parameters), (kind.name, method)
        for method in ("preview", "validate", "run"):
            assert inspect.iscoroutinefunction(getattr(type(kind), method)), (kind.name, method)
        assert isinstance(kind.binds_targets, bool)
        assert isinstance(kind.last_write_wins, bool)
    assert len(modules) == len(_kinds())


def test_a_kind_gets_the_narrow_context_not_the_executor():
    fields = set(KindContext.__dataclass_fields__)
    # Data, never the executor: the backends (health targets too), who acts, the clock, the
    # thresholds an expect may name, the demo time scale of PromQL windows.
    assert fields == {
        "postgres", "prometheus", "operator", "clock", "thresholds", "time_scale", "min_window", "health"
    }  # fmt: skip
    for kind in _kinds():
        source = inspect.getsource(inspect.getmodule(type(kind)))
        tree = ast.parse(source)
        imported = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "console.actions.executor" not in imported, type(kind)
        assert "Executor" not in source, type(kind)


def test_the_executor_dispatches_through_the_registry_only():
    tree = ast.parse(inspect.getsource(executor))
    # No table keyed by kind, no test of a plan's kind by its name, no backend library.
    dicts = [n for n in ast.walk(tree) if isinstance(n, ast.Dict) and n.keys]
    assert not [ast.unparse(d)[:60] for d in dicts if any(isinstance(k, ast.Name) for k in d.keys)]
    compares = [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert not [c for c in compares if "kind ==" in c or ".kind in" in c], compares
    imports = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names} | {
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not imports & {"asyncpg", "httpx", "console.pg", "console.actions.sql", "console.actions.httpcall"}
