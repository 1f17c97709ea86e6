"""``action: {argv: [...]}``: a command run as argv, never through a shell, in a process group
of its own (a timeout kills the whole group). Values from backends that start with '-' are
refused as arguments."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal as signals
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field

from console.actions.kind import KindContext, Previewed, Rendered, touches
from console.actions.plans import OUTPUT_LIMIT, Outcome, Plan, Status, body_lines
from console.actions.specs import ActionSpec, Spec
from console.actions.templates import Context, render_text
from console.sanitize import one_line


class ArgvAction(Spec):
    command: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)  # added to the console's environment


def _shorthand(value: Any) -> Any:
    return {"command": value} if isinstance(value, list) else value


class ArgvActionSpec(ActionSpec):
    kind: ClassVar[str] = "argv"
    argv: Annotated[ArgvAction, BeforeValidator(_shorthand)]  # argv: [cmd, arg] is argv: {command: [...]}


@dataclass(frozen=True, slots=True)
class _Argv:
    argv: tuple[str, ...]
    env: Mapping[str, str]


class ArgvKind:
    name = "argv"
    key = "argv"
    spec = ArgvActionSpec
    binds_targets = False
    last_write_wins = False

    def render(self, spec: ArgvActionSpec, ctx: Context, env: KindContext) -> Rendered:
        real, shown = [], []
        for template in spec.argv.command:
            value, display = render_text(template, ctx, "argv")
            real.append(value)
            shown.append(display)
        environ, env_lines = {}, []
        for name, template in spec.argv.env.items():
            environ[name], display = render_text(template, ctx)
            env_lines.append(f"env {name}={display}")
        command = shlex.join(shown)
        return Rendered(
            summary=f"run {one_line(command, 100)}",
            lines=(f"argv (no shell): {command}", *env_lines),
            target=f"command {os.path.basename(real[0])}",
            job=_Argv(tuple(real), environ),
            word=os.path.basename(real[-1]),
        )

    async def preview(self, plan: Plan, env: KindContext) -> Previewed:
        return touches(plan)

    async def validate(self, plan: Plan, env: KindContext) -> list[str]:
        program = plan.spec.argv[0]
        if os.sep in program:
            ok = os.path.isfile(program) and os.access(program, os.X_OK)
        else:
            ok = shutil.which(program) is not None
        return [] if ok else [f"'{one_line(program, 120)}' is not an executable program here"]

    async def run(self, plan: Plan, env: KindContext) -> Outcome:
        job: _Argv = plan.spec
        try:
            proc = await asyncio.create_subprocess_exec(
                *job.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout kills all of it
                env={**os.environ, **job.env},
            )
        except FileNotFoundError:
            return Outcome(Status.FAILED, f"command not found: {one_line(job.argv[0], 120)}")
        except PermissionError:
            return Outcome(Status.FAILED, f"not executable: {one_line(job.argv[0], 120)}")
        try:
            output = await _read_output(proc)
            code = await proc.wait()
        except asyncio.CancelledError:
            _kill_group(proc)
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(proc.wait(), 5))
            raise
        lines = (f"exit status {code}", *body_lines(output))
        if code == 0:
            return Outcome(
                Status.SUCCEEDED, f"exit status 0{': ' + lines[1] if len(lines) > 1 else ''}", lines
            )
        return Outcome(
            Status.FAILED, f"exit status {code}{': ' + lines[-1] if len(lines) > 1 else ''}", lines
        )


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
