"""Commands run as argv, never through a shell, in a process group of their own (a timeout kills
the whole group)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal as signals
from typing import TYPE_CHECKING

from console.actions.plans import OUTPUT_LIMIT, Plan, Status, _Argv, _body_lines, _Outcome
from console.sanitize import one_line

if TYPE_CHECKING:
    from console.actions.executor import Executor


# --- argv -----------------------------------------------------------------------------------------


async def _run_argv(executor: Executor, plan: Plan) -> _Outcome:
    spec: _Argv = plan.spec
    env = {**os.environ, **spec.env}
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills all of it
            env=env,
        )
    except FileNotFoundError:
        return _Outcome(Status.FAILED, f"command not found: {one_line(spec.argv[0], 120)}")
    except PermissionError:
        return _Outcome(Status.FAILED, f"not executable: {one_line(spec.argv[0], 120)}")
    try:
        output = await _read_output(proc)
        code = await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc)
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wait_for(proc.wait(), 5))
        raise
    lines = (f"exit status {code}", *_body_lines(output))
    if code == 0:
        return _Outcome(Status.SUCCEEDED, f"exit status 0{': ' + lines[1] if len(lines) > 1 else ''}", lines)
    return _Outcome(Status.FAILED, f"exit status {code}{': ' + lines[-1] if len(lines) > 1 else ''}", lines)


async def _read_output(proc: asyncio.subprocess.Process) -> bytes:
    kept = bytearray()
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(65536):
        if len(kept) < OUTPUT_LIMIT:
            kept += chunk[: OUTPUT_LIMIT - len(kept)]
    return bytes(kept)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signals.SIGKILL)


async def _validate_argv(executor: Executor, plan: Plan) -> list[str]:
    program = plan.spec.argv[0]
    if os.sep in program:
        ok = os.path.isfile(program) and os.access(program, os.X_OK)
    else:
        import shutil

        ok = shutil.which(program) is not None
    return [] if ok else [f"'{one_line(program, 120)}' is not an executable program here"]
