"""Plans (exactly what will run), confirmations, previews, outcomes and results, and the helpers
every kind shows its plan lines with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from console import redact
from console.actions.specs import Scalar
from console.actions.templates import MASK
from console.journal import JournalEvent, PlanEvent, PlanRecord, TargetRecord, utc_iso
from console.journal.claims import scope_of
from console.sanitize import one_line

P = TypeVar("P", bound=PlanEvent)

BODY_LIMIT = 256 * 1024  # bytes read from an HTTP answer
OUTPUT_LIMIT = 256 * 1024  # bytes kept from a command's output
SHOW_LINES = 40  # lines of output / rows a result keeps
PREVIEW_ROWS = 200
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "x-auth-token"})


# --- plans, confirmations, results ------------------------------------------------------------


class ConfirmMode(StrEnum):
    NONE = "none"
    YES_NO = "yes/no"
    TYPED = "typed"


@dataclass(frozen=True, slots=True)
class ConfirmSpec:
    """What the dialog asks. ``default`` is the answer Enter gives: always No."""

    mode: ConfirmMode
    expected: str = ""  # the word to type, for TYPED
    prompt: str = ""
    default: bool = False


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The operator's answer: ``Confirmation(yes=True)`` or ``Confirmation(typed="4242")``."""

    yes: bool = False
    typed: str | None = None

    @property
    def word(self) -> str:
        return "typed" if self.typed is not None else ("yes" if self.yes else "no")


@dataclass(frozen=True, slots=True)
class Target:
    """A session to signal, as the operator saw it."""

    pid: int
    backend_start: float
    label: str = ""


@dataclass(frozen=True, slots=True)
class Preview:
    """What an action will touch: rows of a preview query (sanitised text), or a note.
    ``nothing``: why it will touch nothing, when the preview knows (the session picked in the
    table has gone); the executor refuses with it, before asking."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    note: str = ""
    error: str = ""
    truncated: bool = False
    nothing: str = ""

    def lines(self) -> tuple[str, ...]:
        if self.error:
            return (f"preview failed: {self.error}",)
        out = [text for text in (self.note, self.nothing) if text]
        if self.columns:
            out.append(" | ".join(self.columns))
            out += [" | ".join(row) for row in self.rows]
            if not self.rows:
                out.append("(no rows)")
            if self.truncated:
                out.append(f"... first {len(self.rows)} rows shown")
        return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Exactly what will run, for the dialog and the journal. ``lines`` are masked, plain text
    (render them as Text, never as markup). ``spec`` holds the real values and is never shown."""

    id: str
    kind: str  # the kind's name: sql | signal | http | argv | silence | sql check | promql check | http check | health check
    title: str
    summary: str  # one line: "POST http://.../admin/restart"
    lines: tuple[str, ...]
    target: str  # what it acts on, in words
    confirm: ConfirmSpec
    dangerous: bool = False
    timeout: float = 30.0
    check: bool = False
    runbook: str = ""
    run: str = ""
    step: str = ""
    preview: Preview | None = None
    targets: tuple[Target, ...] = ()
    word_after_preview: bool = False  # the preview picks the word to type (the one pid it lists)
    #: What the targets belong to ("postgres:main"): with a pid, the name of a session.
    scope: str = ""
    #: Another console's claim on what this plan touches, in words (the dialog shows it), or how
    #: far claims reach ("claims: this machine only"); set by the executor's preview.
    claimed: str = ""
    spec: Any = field(default=None, repr=False, compare=False)  # the kind's executable form

    def claim_keys(self) -> tuple[str, ...]:
        """What two consoles must not act on at once: each session it signals, else what it
        does (its summary, masked: "POST …/restart", "flyctl restart -a storefront")."""
        if self.targets:
            return tuple(f"{self.scope} pid {t.pid}" for t in self.targets)
        return (f"{self.kind}: {self.summary}",)

    def claim_scope(self) -> str:
        """What an action without sessions acts on, whatever it does there ("" for a signal): for
        a kind whose last write wins, the newest action there decides whether this one repeats it
        (console/journal/claims.py)."""
        return "" if self.targets else scope_of(self.kind, self.target)

    def event(self, kind: type[P], **fields: Any) -> P:
        """A journal event about this plan (its run, its step, what it showed)."""
        return kind(runbook=self.runbook, run=self.run, step=self.step, plan=self.record(), **fields)

    def record(self) -> PlanRecord:
        return PlanRecord(
            id=self.id,
            kind=self.kind,
            title=self.title,
            summary=self.summary,
            target=self.target,
            lines=self.lines,
            confirm=str(self.confirm.mode),
            timeout=self.timeout,
            targets=tuple(
                TargetRecord(pid=t.pid, backend_start=utc_iso(t.backend_start)) for t in self.targets
            ),
        )


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    BUSY = "busy"
    DRY_RUN = "dry-run"
    PASSED = "passed"
    #: A check that ran and found what its ``expect`` does not allow (the problem is there);
    #: FAILED is a check that could not run or be judged (docs/ARCHITECTURE.md, Runbooks).
    NOT_MET = "not met"


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    plan: Plan
    status: Status
    message: str  # one line
    lines: tuple[str, ...] = ()
    duration: float = 0.0
    recorded: bool = True  # False: the journal could not be written after the action ran
    data: Mapping[str, Any] = field(default_factory=dict)  # silence_id, ends_at, rows...
    events: tuple[JournalEvent, ...] = ()  # the journal events written for this call, as written

    @property
    def ok(self) -> bool:
        return self.status in (Status.SUCCEEDED, Status.PASSED, Status.DRY_RUN)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a plan gave, before the executor journals it and makes it a :class:`Result`."""

    status: Status
    message: str
    lines: tuple[str, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)


# --- what a plan shows ----------------------------------------------------------------------------


def quote_param(value: Scalar, shown: str | None = None) -> str:
    """A bound parameter as the plan shows it (``shown``: the masked text of a string)."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + (shown if shown is not None else value).replace("'", "''") + "'"
    return str(value).lower() if isinstance(value, bool) else str(value)


def statement_lines(statement: str) -> list[str]:
    return [line.rstrip() for line in statement.strip().splitlines()]


def show_header(name: str, shown: str) -> str:
    return f"{name}: {MASK if name.lower() in SENSITIVE_HEADERS else shown}"


def body_lines(payload: bytes, limit: int = SHOW_LINES) -> tuple[str, ...]:
    """An answer or a command's output as result lines: scrubbed of secrets, one line each."""
    text = redact.scrub(payload.decode("utf-8", "replace"))
    return tuple(one_line(line, 200) for line in text.splitlines()[:limit] if line.strip())
