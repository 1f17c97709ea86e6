"""Loading a config together with its runbook pack: the one loader, above both.

``console.config`` knows the config, ``console.runbooks`` the pack; each is checked on its own,
then against the other (a threshold linking a runbook the pack does not have). Every command and
the console use :func:`load` (or :func:`load_config`); ``check-config`` shows the same problems
the console refuses to start with: one ``file:line:col: message`` line each.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from console.config import Config, cross_check, read_config
from console.runbooks.packdata import Pack
from console.yamlfile import ConfigError


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    pack: Pack


def load(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    check_runbooks: bool = True,
) -> Loaded:
    """Read, validate and cross-check a config and its runbook pack. Raises ConfigError with
    every problem of both; without ``check_runbooks`` the pack is not read (an empty one)."""
    config, doc = read_config(path, env)
    pack, problems = Pack(), []
    if check_runbooks and has_pack(config):
        from console.runbooks.pack import load_for

        pack, problems = load_for(config, env)
    problems = cross_check(config, doc, pack.ids if check_runbooks else None) + problems
    if problems:
        raise ConfigError(problems)
    return Loaded(config, pack)


def has_pack(config: Config) -> bool:
    """Whether the config has runbooks to read: its runbooks directory or its seed index exists.
    Without either the pack is empty and nothing of the runbook code is imported (start-up)."""
    return config.runbooks_path.is_dir() or config.seed_scenarios_path.is_file()


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    check_runbooks: bool = True,
) -> Config:
    """:func:`load`, for a caller that needs the config only."""
    return load(path, env, check_runbooks=check_runbooks).config
