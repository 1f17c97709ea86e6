"""DemoControl: the one way to drive a running demo stack (the CLI and the console's demo menu).

    demo = DemoControl.attach()                  # or attach(state_dir); DemoNotRunning if none
    for s in demo.scenarios(): print(s.name, s.title, s.expected)
    demo.inject("lock-contention")               # -> a one-line message for the operator
    demo.status()                                # -> DemoStatus: processes and injected faults
    demo.reset()                                 # every fault off, switches back to normal
    demo.config_path                             # the generated console.yaml

Engine-side: no Textual. The calls block (HTTP to the services and the agent, a few ms to a
couple of seconds for DB faults); from an event loop use the ``a``-prefixed coroutines, which
run them in a thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from console.demo import scenarios as table
from console.demo.scenarios import Expected, Scenario
from console.demo.state import DemoNotRunning, default_state_dir, proc_start, read_state

__all__ = ["DemoControl", "DemoError", "DemoNotRunning", "DemoStatus", "ScenarioInfo"]

FAULT_HOSTS = {"storefront": "storefront", "sync-worker": "sync-worker", "db": "agent"}


class DemoError(RuntimeError):
    """An inject/reset the stack refused or could not do."""


class ScenarioInfo(NamedTuple):
    """(name, title, description, expected) — plus where it lives and what fixes it."""

    name: str
    title: str
    description: str
    expected: tuple[Expected, ...]

    @property
    def scenario(self) -> Scenario:
        return table.get(self.name)

    @property
    def fix(self) -> str:
        return self.scenario.fix

    @property
    def where(self) -> str:
        return self.scenario.where


@dataclass(frozen=True)
class FaultState:
    name: str
    where: str
    injected_at: float
    active: bool  # False once the operator's fix took effect
    detail: str = ""


@dataclass(frozen=True)
class DemoStatus:
    state_dir: Path
    pid: int
    started_at: float
    ready: bool
    config_path: Path
    urls: dict[str, str]
    processes: dict[str, bool]  # name -> alive
    faults: tuple[FaultState, ...] = ()
    errors: tuple[str, ...] = field(default=())

    @property
    def uptime(self) -> float:
        return max(0.0, time.time() - self.started_at)


class DemoControl:
    def __init__(self, state_dir: Path, state: dict[str, Any]):
        self.state_dir = state_dir
        self._state = state
        self._token = Path(state["token_file"]).read_text().strip()

    @classmethod
    def attach(cls, state_dir: str | os.PathLike[str] | None = None) -> DemoControl:
        """Attach to the stack running in ``state_dir`` (default: the usual demo dir)."""
        directory = Path(state_dir).absolute() if state_dir else default_state_dir()
        return cls(directory, read_state(directory))

    @property
    def config_path(self) -> Path:
        return Path(self._state["config"])

    @property
    def urls(self) -> dict[str, str]:
        return dict(self._state["urls"])

    def scenarios(self) -> list[ScenarioInfo]:
        return [ScenarioInfo(s.name, s.title, s.description, s.expected) for s in table.SCENARIOS]

    # --- actions ----------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        return httpx.Client(timeout=15, headers={"Authorization": f"Bearer {self._token}"})

    def _fault_url(self, where: str, name: str | None = None) -> str:
        base = self._state["urls"][FAULT_HOSTS[where]] + "/demo/faults"
        return f"{base}/{name}" if name else base

    def inject(self, name: str) -> str:
        """Turn scenario ``name`` on. Returns what to look for in the console."""
        try:
            scenario = table.get(name)
        except KeyError as exc:
            raise DemoError(exc.args[0]) from None
        with self._client() as client:
            response = self._call(client, "POST", self._fault_url(scenario.where, name))
        if response.status_code != 200:
            raise DemoError(f"{scenario.where} refused {name}: {_error(response)}")
        expected = ", ".join(str(e) for e in scenario.expected)
        return f"injected {name} ({scenario.title}); expect {expected}; fix: {scenario.fix}"

    def reset(self, name: str | None = None) -> str:
        """Turn one scenario off, or (``None``) every fault, and the operator switches back to normal."""
        with self._client() as client:
            if name is not None:
                try:
                    scenario = table.get(name)
                except KeyError as exc:
                    raise DemoError(exc.args[0]) from None
                response = self._call(client, "DELETE", self._fault_url(scenario.where, name))
                if response.status_code == 404:
                    return f"{name} was not injected"
                if response.status_code != 200:
                    raise DemoError(f"{scenario.where} could not reset {name}: {_error(response)}")
                return f"reset {name}"
            cleared: list[str] = []
            for where in FAULT_HOSTS:
                response = self._call(client, "DELETE", self._fault_url(where))
                if response.status_code != 200:
                    raise DemoError(f"{where} could not reset: {_error(response)}")
                cleared += response.json().get("cleared", [])
        return (
            "reset: "
            + (", ".join(cleared) + " off" if cleared else "no fault was on")
            + "; switches back to normal"
        )

    def status(self) -> DemoStatus:
        processes = {
            name: bool(child.get("pid")) and proc_start(child["pid"]) == child.get("start")
            for name, child in self._state.get("children", {}).items()
        }
        faults: list[FaultState] = []
        errors: list[str] = []
        with httpx.Client(timeout=5) as client:
            for where in FAULT_HOSTS:
                try:
                    answer = client.get(self._fault_url(where)).raise_for_status().json()
                except (httpx.HTTPError, ValueError) as exc:
                    errors.append(f"{where}: {exc}")
                    continue
                for fault in answer.get("faults", []):
                    detail = f"{fault['sessions']} session(s) held" if "sessions" in fault else ""
                    faults.append(
                        FaultState(
                            fault["name"], where, fault.get("injected_at", 0.0), bool(fault["active"]), detail
                        )
                    )
        return DemoStatus(
            state_dir=self.state_dir,
            pid=self._state["pid"],
            started_at=self._state["started_at"],
            ready=bool(self._state.get("ready")),
            config_path=self.config_path,
            urls=self.urls,
            processes=processes,
            faults=tuple(faults),
            errors=tuple(errors),
        )

    @staticmethod
    def _call(client: httpx.Client, method: str, url: str) -> httpx.Response:
        try:
            return client.request(method, url)
        except httpx.HTTPError as exc:
            raise DemoError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    # --- from an event loop -----------------------------------------------------------------

    async def ainject(self, name: str) -> str:
        return await asyncio.to_thread(self.inject, name)

    async def areset(self, name: str | None = None) -> str:
        return await asyncio.to_thread(self.reset, name)

    async def astatus(self) -> DemoStatus:
        return await asyncio.to_thread(self.status)


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.text)[:300]
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
