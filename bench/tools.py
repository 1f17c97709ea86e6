"""The two tools as the harness starts them: command line, environment, and what their screens say.

Both run from the bench's own environment (bench/.venv), at a 1 s refresh, as their own role,
in a 120x40 pty with TERM=xterm-256color, against the same database. pg_activity runs with its
defaults plus ``--refresh 1`` (the server is local, so it also reads /proc for its CPU/MEM/IO
columns, as it does for a DBA on the database host).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.cluster import TOOL_ROLES, BenchCluster

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Tool:
    name: str
    role: str
    argv: list[str]
    env: dict[str, str]
    quit_keys: bytes
    ready: str  # on the screen once the first data is painted (a regex-free substring)
    # Key-latency probe: two keys that switch between two views, and what each view says.
    keys: tuple[tuple[bytes, str], tuple[bytes, str]]


def _env(workdir: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "USER", "LOGNAME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(TERM="xterm-256color", LANG="C.UTF-8", LC_ALL="C.UTF-8", XDG_STATE_HOME=str(workdir / "state"))
    env.update(XDG_CONFIG_HOME=str(workdir / "config"))  # no user profile for pg_activity either
    return env


def ours(cluster: BenchCluster, workdir: Path) -> Tool:
    role = TOOL_ROLES["incident-console"]
    config = {
        "environment": {"name": "bench"},
        "refresh": {"postgres": "1s"},
        "journal": str(workdir / "journal.jsonl"),
        "ui": {"bell": False},
        "postgres": [{"name": "main", "dsn": cluster.dsn(role)}],
    }
    path = workdir / "console.yaml"
    path.write_text(yaml.safe_dump(config))
    return Tool(
        name="incident-console",
        role=role,
        argv=[str(BIN / "incident-console"), "run", "--config", str(path)],
        env=_env(workdir),
        quit_keys=b"q",
        ready="conn ",
        keys=((b"w", "filter waiting"), (b"e", "filter all")),
    )


def pg_activity(cluster: BenchCluster, workdir: Path) -> Tool:
    role = TOOL_ROLES["pg_activity"]
    argv = [str(BIN / "pg_activity"), "--refresh", "1", "-h", "127.0.0.1", "-p", str(cluster.port)]
    return Tool(
        name="pg_activity",
        role=role,
        argv=[*argv, "-U", role, "-d", "bench"],
        env=_env(workdir),
        quit_keys=b"q",
        ready="RUNNING QUERIES",
        keys=((b"2", "WAITING QUERIES"), (b"1", "RUNNING QUERIES")),
    )


def floor(variant: str, workdir: Path) -> Tool:
    """Textual's floor (bench/floor.py): a reference app, no backend, one tick a second."""
    return Tool(
        name=f"textual floor: {variant}",
        role="",  # polls nothing: no statements to count
        argv=[sys.executable, "-m", "bench.floor", variant],
        env={**_env(workdir), "PYTHONPATH": str(ROOT)},
        quit_keys=b"q",
        ready="floor ready",
        keys=((b"", ""), (b"", "")),
    )
