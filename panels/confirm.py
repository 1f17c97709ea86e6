"""Confirmation dialogs. The default is always the do-nothing button: Enter on a fresh dialog runs nothing.

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

from panels.footer import Footer


class ConfirmScreen(ModalScreen[bool]):
    """Fits 80x24 with its buttons (the plan scrolls, the buttons stay), and its own footer
    shows the dialog's keys, not the screen's behind it (issue 18)."""

    BINDINGS = [
        Binding("escape", "cancel", "Back (runs nothing)", id="confirm_cancel"),
        # The yes/no dialog asks "[y/N]": y answers it. A typed confirmation is answered only by
        # typing the word (its input has the focus; check_action keeps y away from it too).
        Binding("y", "confirm", "Yes", id="confirm_yes"),
        Binding("n", "cancel", "No", id="confirm_no", show=False),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    #confirm-box { width: 90%; max-width: 120; height: auto; max-height: 100%;
                   border: thick $error; background: $surface; padding: 0 1; }
    #confirm-box .title { text-style: bold; height: auto; }
    #confirm-scroll { height: auto; max-height: 70vh; }
    #confirm-input { width: 1fr; }
    #confirm-buttons { height: auto; width: 1fr; align-horizontal: right; margin-top: 1; }
    #confirm-buttons Button { margin-left: 2; min-width: 10; }
    """

    def __init__(
        self,
        title: str,
        plan: Text | str,
        *,
        reflow: Callable[[int], Text] | None = None,
        typed: str | None = None,
        confirm_label: str = "Run",
        decline_label: str = "Don't run",
        on_mistyped: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__()
        #: Told what was typed each time it does not match (the caller journals the refusal).
        self.on_mistyped = on_mistyped
        self.title_text = title
        self.plan = plan if isinstance(plan, Text) else Text(plan)
        #: The plan laid out for a width (wrapped rows indented); the dialog calls it as it sizes.
        self.reflow = reflow
        self.typed = typed
        self.confirm_label = confirm_label
        self.decline_label = decline_label
        self.value = ""  # what the operator typed (the executor checks it too)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(Text(self.title_text), classes="title")
            with VerticalScroll(id="confirm-scroll"):
                yield Static(self.plan, id="confirm-plan")
            if self.typed is not None:
                yield Static(Text.assemble("Type ", (self.typed, "bold"), " to confirm:"))
                # Not the word itself: without colour an empty field would read as filled in.
                yield Input(placeholder="type it here, exactly as above", id="confirm-input", compact=True)
            with Horizontal(id="confirm-buttons"):
                yield Button(self.decline_label, id="cancel", variant="primary", compact=True)
                yield Button(self.confirm_label, id="confirm", variant="error", compact=True)
        yield Footer()

    def on_resize(self, event) -> None:
        """The plan gets what the title, the typed word, the buttons and the footer leave."""
        width = min(max(event.size.width * 9 // 10, 20), 120) - 4  # box border and padding
        title = len(Text(self.title_text).wrap(self.app.console, max(width, 10)))
        fixed = 1 + 2 + title + (2 if self.typed is not None else 0) + 2  # footer, border, buttons
        self.query_one("#confirm-scroll").styles.max_height = max(event.size.height - fixed, 3)
        if self.reflow is not None:  # less the plan's scrollbar
            self.query_one("#confirm-plan", Static).update(self.reflow(max(width - 2, 10)))

    def on_mount(self) -> None:
        # Toasts are drawn over every screen: at 80x24 a step's result toasts covered what the
        # dialog touches and its buttons. Every result they told is on its step already.
        self.app.clear_notifications()
        target = "#confirm-input" if self.typed is not None else "#cancel"
        self.query_one(target).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action == "confirm" and self.typed is not None)

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        self._try_confirm()

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
