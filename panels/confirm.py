"""Confirmation dialogs. The default is always Cancel: Enter on a fresh dialog runs nothing.

``ConfirmScreen`` shows exactly what will run (the executor's rendered plan, secrets masked, and
what it will touch) and returns True only on an explicit choice. With ``typed=`` the operator
must type the expected text (a pid, a cluster, a service name); the executor checks it again.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="confirm_cancel")]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    #confirm-box { width: 90%; max-width: 120; height: auto; max-height: 95%;
                   border: thick $error; background: $surface; padding: 0 1; }
    #confirm-box .title { text-style: bold; height: auto; }
    #confirm-scroll { height: auto; max-height: 70vh; }
    #confirm-input { width: 1fr; }
    #confirm-buttons { height: auto; width: 1fr; align-horizontal: right; }
    #confirm-buttons Button { margin-left: 2; min-width: 10; }
    """

    def __init__(
        self,
        title: str,
        plan: Text | str,
        *,
        typed: str | None = None,
        confirm_label: str = "Run",
        on_mistyped: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__()
        #: Told what was typed each time it does not match (the caller journals the refusal).
        self.on_mistyped = on_mistyped
        self.title_text = title
        self.plan = plan if isinstance(plan, Text) else Text(plan)
        self.typed = typed
        self.confirm_label = confirm_label
        self.value = ""  # what the operator typed (the executor checks it too)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.title_text), classes="title")
            with VerticalScroll(id="confirm-scroll"):
                yield Static(self.plan, id="confirm-plan")
            if self.typed is not None:
                yield Static(Text.assemble("Type ", (self.typed, "bold"), " to confirm:"))
                yield Input(placeholder=self.typed, id="confirm-input")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self.confirm_label, id="confirm", variant="error")

    def on_mount(self) -> None:
        target = "#confirm-input" if self.typed is not None else "#cancel"
        self.query_one(target).focus()

    def action_cancel(self) -> None:
        self.dismiss(False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "cancel":
            self.dismiss(False)
        else:
            self._try_confirm()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._try_confirm()

    def _try_confirm(self) -> None:
        if self.typed is not None:
            self.value = self.query_one("#confirm-input", Input).value.strip()
            if self.value != self.typed:
                if self.on_mistyped is not None:
                    self.on_mistyped(self.value)
                self.notify(f"not confirmed: type {self.typed} exactly to confirm", severity="warning")
                return
        self.dismiss(True)
