"""Names of a package that load their module on first use (PEP 562).

Start-up imports only what the first screen needs (docs/SCALE.md): ``console.actions`` and
``console.runbooks`` keep ``from console.actions import Executor`` working while a process that
never runs an action or opens a runbook never imports the executor, the kinds or httpx.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``: ``where`` maps each submodule (relative to the
    package) to the names it exports. A name is imported from its module when first asked for,
    then kept in the package's namespace."""
    module_of = {name: module for module, names in where.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__, sorted(module_of)
