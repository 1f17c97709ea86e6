"""An executor plan as the confirmation dialog shows it, and the operator's answer back.

The plan's lines are already masked plain text from the executor; they are rendered as Text,
never as markup, because they carry query text, labels and other backend data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text

from console import actions  # its modules load with the first action, not at start-up
from panels.confirm import ConfirmScreen
from panels.text import hanging

if TYPE_CHECKING:
    from console.actions import Confirmation, Plan, Result

#: By :class:`console.actions.Status` value (a StrEnum, so a Status looks its glyph up here).
RESULT_GLYPH = {
    "succeeded": "✔ OK",
    "passed": "✔ PASS",
    "dry-run": "◇ DRY-RUN",
    "failed": "✖ FAILED",
    "not met": "✖ NOT MET",
    "timeout": "✖ TIMEOUT",
    "refused": "⊘ REFUSED",
    "busy": "… BUSY",
}


def plan_text(plan: Plan, width: int | None = None) -> Text:
    """What it touches first (the sessions, the alerts), then exactly what will run. With
    ``width``, a line that wraps continues indented (:func:`panels.text.hanging`)."""

    def fit(line: str) -> str:
        return hanging(line, width) if width else line

    text = Text()
    if plan.claimed:  # another console's claim first: Execute will be refused while it holds
        held = not plan.claimed.startswith("claims:")
        text.append(f"{'⚠ ' if held else ''}{plan.claimed}\n", style="bold red" if held else "dim")
    text.append("What it touches\n", style="bold")
    if plan.preview is not None:
        for line in plan.preview.lines():
            text.append(f"{fit(f'  {line}')}\n")
    else:
        text.append(f"  {plan.target}\n")
    text.append("What will run\n", style="bold")
    for line in plan.lines:
        text.append(f"{fit(f'  {line}')}\n")
    text.append(f"timeout {plan.timeout:g}s", style="dim")
    return text


@dataclass(frozen=True, slots=True)
class DialogWords:
    """What a confirmation dialog says: the question, and its buttons named by what they do
    ('Cancel query' / 'Keep running'; a do-nothing button labelled 'Cancel' on a dialog that
    cancels a query says the opposite of what it does, issue 18)."""

    title: str = ""  # empty: the plan's own summary
    confirm: str = "Run"
    decline: str = "Don't run"


def signal_words(kind: str, pid: int, cluster: str) -> DialogWords:
    """The dialog of ``c`` (cancel) and ``K`` (terminate) on a session."""
    if kind == "cancel":
        return DialogWords(f"Cancel the query of pid {pid} on {cluster}?", "Cancel query", "Keep running")
    return DialogWords(
        f"Terminate pid {pid} on {cluster}? Its connection closes and its transaction rolls back.",
        "Terminate session",
        "Keep session",
    )


def confirm_for(
    plan: Plan, words: DialogWords | None = None, on_mistyped: Callable[[str], object] | None = None
) -> ConfirmScreen:
    """The dialog for an action plan: yes/no (default: the do-nothing button) or the typed word."""
    words = words or DialogWords()
    typed = plan.confirm.expected if plan.confirm.mode == actions.ConfirmMode.TYPED else None
    title = ("DANGEROUS: " if plan.dangerous else "") + (words.title or plan.summary)
    return ConfirmScreen(
        title,
        plan_text(plan),
        reflow=lambda width: plan_text(plan, width),
        typed=typed,
        confirm_label=words.confirm,
        decline_label=words.decline,
        on_mistyped=on_mistyped,
    )


def answer(dialog: ConfirmScreen, confirmed: bool) -> Confirmation:
    if not confirmed:
        return actions.Confirmation()
    return actions.Confirmation(yes=True, typed=dialog.value if dialog.typed is not None else None)


def result_line(result: Result) -> str:
    return f"{RESULT_GLYPH.get(result.status, str(result.status))}: {result.message}"


def result_severity(result: Result) -> str:
    if result.ok:
        return "information"
    return "warning" if result.status in (actions.Status.REFUSED, actions.Status.BUSY) else "error"
