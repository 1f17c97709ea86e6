"""Ports for processes that bind them later (console/demo/ports.py), and the demo stack's start
again on other ports when one was taken before its child bound it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from console.demo import pgcluster, ports, stack
from console.demo.stack import Stack
from tests.fixtures.demo import new_state_dir, remove_stack_dir, stack_processes
from tests.fixtures.prometheus import ALERTMANAGER_BIN, PROMETHEUS_BIN, require_binary


def test_a_picked_port_is_below_the_ephemeral_range_and_free() -> None:
    """Outgoing connections take their local ports from the ephemeral range: a port picked
    there was taken by one before the demo's sync-worker bound it (the CI run at aab686c)."""
    low, _ = ports.ephemeral_range()
    if low <= ports.LOWEST:
        pytest.skip(f"no room below this machine's ephemeral range (it starts at {low})")
    for _ in range(20):
        port = ports.free_port()
        assert ports.LOWEST <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_with_no_room_below_the_range_the_kernel_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    range_file = tmp_path / "ip_local_port_range"
    monkeypatch.setattr(ports, "PORT_RANGE_FILE", range_file)
    range_file.write_text(f"{ports.LOWEST}\t60999\n")
    assert ports.ephemeral_range() == (ports.LOWEST, 60999)
    port = ports.free_port()
    assert port > 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    range_file.write_text("not a range\n")
    assert ports.ephemeral_range() == (32768, 60999)  # Linux's default


@pytest.fixture
def listening() -> Iterator[Callable[[], int]]:
    """Listening sockets on picked ports, as another process's would be; closed at the end."""
    held: list[socket.socket] = []

    def listen() -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", ports.free_port()))
        sock.listen()
        held.append(sock)
        return sock.getsockname()[1]

    yield listen
    for sock in held:
        sock.close()


def taken_first(taken: int, pick: Callable[..., int]) -> Callable[..., int]:
    """A port picker whose first pick is ``taken`` (bound by someone else before the child)."""
    calls = []

    def picker(*args: object) -> int:
        calls.append(args)
        return taken if len(calls) == 1 else pick(*args)

    return picker


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_port_taken_before_its_child_binds_it_starts_the_stack_again_elsewhere(
    listening: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Postgres's port taken on the first start, the storefront's on the second: the stack
    starts a third time and runs, on ports other than the two taken."""
    require_binary(PROMETHEUS_BIN, "prometheus")
    require_binary(ALERTMANAGER_BIN, "prometheus-alertmanager")
    pg_taken, storefront_taken = listening(), listening()
    monkeypatch.setattr(pgcluster, "free_port", taken_first(pg_taken, pgcluster.free_port))
    starts = 0
    children = Stack._start_children

    def start_children(self: Stack, *args: object) -> None:
        nonlocal starts
        starts += 1
        if starts == 2:  # the storefront's is the first pick of a start
            monkeypatch.setattr(stack, "free_port", taken_first(storefront_taken, ports.free_port))
        children(self, *args)

    monkeypatch.setattr(Stack, "_start_children", start_children)
    state_dir, said = new_state_dir("ic-demo-ports-"), []
    demo = Stack(state_dir, load=False, out=said.append)
    try:
        demo.start()
        assert starts == 3
        retries = [line for line in said if "starting the stack again on other ports" in line]
        assert [line.split(": ")[1].split(" could")[0] for line in retries] == ["postgres", "storefront"]
        assert demo.state["ready"] and demo.state["postgres"]["port"] != pg_taken
        assert not demo.state["urls"]["storefront"].endswith(f":{storefront_taken}")
        assert all(child.process.poll() is None for child in demo.children.values())
        groups = {child.process.pid for child in demo.children.values()}
    finally:
        demo.stop()
    try:
        assert not stack_processes([str(state_dir)], groups)
    finally:
        remove_stack_dir(state_dir)
