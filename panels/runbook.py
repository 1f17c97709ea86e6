"""Runbooks: the list ranked for a breach (``R``) and the step-through screen.

The screen has no logic of its own: it renders ``RunbookSession.progress`` and posts what the
operator asks to the app, which runs it through the one executor (with the confirmation dialog
for actions). Progress lives in the journal, so leaving the screen loses nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Static

from console.runbooks import (
    InputView,
    Match,
    Runbook,
    RunbookSession,
    Step,
    StepCommand,
    StepState,
    StepStatus,
)
from console.sanitize import one_line
from panels.base import STALE_FACTOR
from panels.footer import Footer
from panels.tables import Fit, KeyedTable
from panels.text import ago, breach_text, cell, hanging

STEP_BADGE = {
    StepState.TODO: "○ TODO",
    StepState.RUNNING: "◌ RUNNING",
    StepState.DONE: "✔ DONE",
    StepState.FAILED: "✖ FAILED",
    StepState.NOT_MET: "✖ NOT MET",
    StepState.SKIPPED: "– SKIPPED",
}
STEP_STYLE = {
    StepState.TODO: "",
    StepState.RUNNING: "bold",
    StepState.DONE: "green",
    StepState.FAILED: "bold red",
    StepState.NOT_MET: "bold yellow",
    StepState.SKIPPED: "dim",
}
# The step's title takes what the number, state and kind leave, cut with …: at 80 columns a
# horizontal scrollbar took a line under the steps (the detail below shows the whole title).
STEPS_FIT = Fit("title", 20)
#: At 80 columns the picker's title takes what the id leaves and the why column goes: the line
#: under the table says the highlighted runbook's title and why, whole (it was cut off the box).
WHY_CELLS = 60  # a why is cut at this width: the column is reckoned at it (less overflows the box)
PICKER_FIT = Fit("title", 16, drop=("why",), nominal=(("why", WHY_CELLS),))
SEVERITY_WORD = {"critical": "✖ CRIT", "high": "▲ HIGH", "medium": "■ MED", "low": "· LOW"}


class RunbookPicker(ModalScreen[str | None]):
    """Runbooks for a breach, best match first; Enter opens one. ``a`` shows every runbook."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close", id="runbooks_close"),
        Binding("enter", "open", "Open", id="runbooks_open"),
        Binding("a", "all", "All runbooks", id="runbooks_all"),
    ]
    DEFAULT_CSS = """
    RunbookPicker { align: center middle; }
    #picker-box { width: 95%; max-width: 140; height: 90%; border: thick $primary;
                  background: $surface; padding: 0 1; }
    #picker-title { height: auto; text-style: bold; }
    #picker-why { height: auto; max-height: 4; color: $text-muted; }
    """

    def __init__(
        self,
        title: str,
        matches: Sequence[Match],
        runbooks: Sequence[Runbook],
        title_of: Callable[[Runbook], str] = lambda runbook: runbook.title,
        empty: str = "no runbook matches",
    ) -> None:
        """``title_of``: a runbook's title as the operator reads it (values filled for the breach);
        ``empty``: why every runbook is listed when nothing ranks."""
        super().__init__()
        self.title_text = title
        self.empty = empty
        self.title_of = title_of
        self.matches = list(matches)
        self.runbooks = list(runbooks)
        self.show_all = not self.matches

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Static(Text(self.title_text), id="picker-title")
            yield KeyedTable(
                columns=[("severity", "sev"), ("id", "runbook"), ("title", "title"), ("why", "why")],
                id="picker-table",
                fit=PICKER_FIT,
            )
            yield Static(id="picker-why")
            yield Footer(compact=True)

    def on_mount(self) -> None:
        self._fill()
        self._explain()
        self.query_one(KeyedTable).focus()

    def _fill(self) -> None:
        if self.show_all:
            rows = [(rb, "") for rb in sorted(self.runbooks, key=lambda r: r.id)]
        else:
            rows = [(m.runbook, m.why) for m in self.matches]
        self.query_one(KeyedTable).sync(
            [
                (
                    rb.id,
                    (
                        cell(SEVERITY_WORD.get(rb.severity, rb.severity), 8),
                        cell(rb.id, 32),
                        cell(self.title_of(rb), 60),
                        cell(why or "—", WHY_CELLS),
                    ),
                )
                for rb, why in rows
            ]
        )
        if not self.matches:
            title = f"{self.title_text} — {self.empty}: every runbook"
        elif self.show_all:
            title = f"{self.title_text} — showing every runbook; a: the matching ones again"
        else:
            title = self.title_text
        self.query_one("#picker-title", Static).update(Text(title))

    def action_all(self) -> None:
        if not self.matches:
            return  # nothing ranks: the list is every runbook already (an empty one would say so)
        self.show_all = not self.show_all
        self._fill()
        self._explain()

    def on_data_table_row_highlighted(self, event) -> None:
        self._explain()

    def _explain(self) -> None:
        """The highlighted runbook's title and why it matches, whole."""
        key = self.query_one(KeyedTable).selected_key
        runbook = next((rb for rb in self.runbooks if rb.id == key), None)
        why = next((m.why for m in self.matches if m.runbook.id == key), "") if not self.show_all else ""
        text = Text() if runbook is None else Text(self.title_of(runbook))
        if why:
            text.append(f"\nwhy: {why}")
        self.query_one("#picker-why", Static).update(text)

    def action_open(self) -> None:
        self.dismiss(self.query_one(KeyedTable).selected_key)

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.action_open()


class NoteScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="note_cancel")]
    DEFAULT_CSS = """
    NoteScreen { align: center middle; }
    #note-box { width: 90%; max-width: 100; height: auto; border: thick $primary;
                background: $surface; padding: 0 1; }
    """

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="note-box"):
            yield Static(Text(self.title_text))
            yield Input(placeholder="note for the journal (Enter saves, Esc cancels)", id="note-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)


class ValueScreen(ModalScreen[tuple[str, str] | None]):
    """Set a runbook input: the inputs with their values now (those the step needs and lacks
    first); Enter saves the value typed for the highlighted one. Journaled by the session."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="value_cancel")]
    DEFAULT_CSS = """
    ValueScreen { align: center middle; }
    #value-box { width: 95%; max-width: 120; height: auto; max-height: 90%; border: thick $primary;
                 background: $surface; padding: 0 1; }
    #value-table { height: auto; max-height: 10; }
    """

    def __init__(self, title: str, inputs: Sequence[InputView]) -> None:
        super().__init__()
        self.title_text = title
        self.inputs = list(inputs)

    def compose(self) -> ComposeResult:
        with Vertical(id="value-box"):
            yield Static(Text(self.title_text), classes="title")
            yield KeyedTable(
                columns=[("name", "input"), ("value", "now"), ("about", "what it is")], id="value-table"
            )
            yield Static(id="value-label")
            yield Input(id="value-input", compact=True)
            yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(KeyedTable).sync(
            [
                (
                    v.name,
                    (
                        cell(v.name, 24),
                        cell("(not set)" if v.value is None else v.value, 40),
                        cell(v.about, 80),
                    ),
                )
                for v in self.inputs
            ]
        )
        self._label()
        self.query_one(Input).focus()

    @property
    def selected(self) -> InputView | None:
        key = self.query_one(KeyedTable).selected_key
        return next((v for v in self.inputs if v.name == key), None)

    def _label(self) -> None:
        view = self.selected
        if view is None:
            return
        choices = f" (one of {', '.join(view.choices)})" if view.choices else ""
        self.query_one("#value-label", Static).update(
            Text(f"{view.name}{choices}, Enter saves (Tab: choose another input):")
        )

    def on_data_table_row_highlighted(self, event) -> None:
        self._label()

    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        view, value = self.selected, event.value.strip()
        if view is not None and value:
            self.dismiss((view.name, value))


@dataclass
class StepRequest(Message):
    """The operator asked for ``command`` on a step."""

    screen: RunbookScreen
    command: StepCommand
    step_id: str


class RunbookScreen(Screen):
    """One run of a runbook: every step with its state; keys act on the selected step."""

    BINDINGS = [
        Binding("escape", "close", "Back", id="runbook_close"),
        Binding("n", "move(1)", "Next", id="runbook_next"),
        Binding("b", "move(-1)", "Previous", id="runbook_previous"),
        Binding("x", "request('execute')", "Execute", id="runbook_execute"),
        Binding("d", "request('dry_run')", "Dry-run", id="runbook_dry_run"),
        Binding("m", "request('done')", "Mark done", id="runbook_done"),
        Binding("k", "request('skip')", "Skip", id="runbook_skip"),
        Binding("u", "request('reopen')", "Reopen", id="runbook_reopen"),
        Binding("o", "request('add_note')", "Note", id="runbook_note"),
        Binding("i", "request('set_value')", "Set value", id="runbook_set_value"),
    ]
    DEFAULT_CSS = """
    RunbookScreen { layout: vertical; }
    #rb-title { height: auto; text-style: bold; padding: 0 1; }
    #rb-trigger { height: auto; padding: 0 1; }
    #rb-escalation { height: auto; padding: 0 1; color: $text-muted; }
    #rb-steps { height: auto; max-height: 45%; min-height: 4; }
    #rb-detail { height: 1fr; border-top: solid $primary; padding: 0 1; }
    /* A short terminal (80x24 over SSH): the title and the escalation take a line each, cut
       with "…", so the selected step's output has the room (it had 4 lines of 24). */
    RunbookScreen.-short #rb-title, RunbookScreen.-short #rb-escalation {
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    """
    SHORT_ROWS = 32  # below this many rows the title and the escalation are cut to one line

    def __init__(self, session: RunbookSession) -> None:
        super().__init__()
        self.session = session
        self.sub_title = session.runbook.id
        self._seen_breached = False  # the trigger was on the breach list while this was open
        self._cleared_at: float | None = None

    @property
    def runbook(self) -> Runbook:
        return self.session.runbook

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="rb-title")
        if self.session.breach is not None:
            yield Static(self._trigger(), id="rb-trigger")
        yield Static(id="rb-escalation")
        yield KeyedTable(
            columns=[("n", "#"), ("state", "state"), ("kind", "kind"), ("title", "step")],
            id="rb-steps",
            fit=STEPS_FIT,
        )
        with VerticalScroll(id="rb-detail"):
            yield Static(id="rb-detail-text")
        yield Footer(compact=True)

    def _title(self) -> Text:
        rb = self.runbook
        source = f" — {rb.source.file} § {rb.source.section}" if rb.source and rb.source.seed else ""
        # As `runbook show` says it: most response times are no duration ("SEV1: routing broken",
        # "the quota resets at 00:00 UTC; alert the team") and read wrong after "respond within".
        response = f" · respond: {rb.response_time}" if rb.response_time else ""
        return Text(
            f"{SEVERITY_WORD.get(rb.severity, rb.severity)} {self.session.runbook_title}{response}{source}",
            overflow="fold",
        )

    def _trigger(self) -> Text:
        """What the runbook was opened for, and whether it is breached now: after the fix the
        operator saw the same "for:" line whether the breach had cleared or not."""
        opened_for = self.session.breach
        state = getattr(self.app, "state", None)
        clock = getattr(self.app, "clock", time.time)
        now = clock()
        current = next((b for b in state.breaches if b.id == opened_for.id), None) if state else None
        tail = Text()
        if current is None:
            self._cleared_at = self._cleared_at or now
            cleared = now - self._cleared_at
            tail.append("not breached now", style="bold")
            tail.append(f" (cleared {ago(cleared)})" if self._seen_breached else "")
        else:
            self._seen_breached, self._cleared_at = True, None
            tail.append("now ")
            tail.append_text(breach_text(current))
            tail.append(f" {current.state.value}")
            if current.value_text:
                tail.append(f", {one_line(current.value_text, 40)}")
            if state.is_stale(current.source, now, STALE_FACTOR):
                tail.append(" ◌ stale", style="bold yellow")
        # One line where it fits: the title gives way (it is the breach the operator picked, and
        # is on the header), what it is now does not. At 80x24 "(cleared 2.8s\n ago)" took a
        # line from the step's output.
        width = (self.size.width or self.app.size.width) - 2  # padding
        room = width - len("for:  · ") - tail.cell_len
        title = Text(opened_for.title)
        if room >= 12:
            title.truncate(room, overflow="ellipsis")
        return Text.assemble("for: ", title, " · ", tail)

    def on_resize(self) -> None:
        self.set_class(self.size.height < self.SHORT_ROWS, "-short")
        self.show_detail()  # its rows wrap to the new width

    def on_mount(self) -> None:
        self.set_class(self.app.size.height < self.SHORT_ROWS, "-short")
        self.refresh_steps()
        table = self.query_one("#rb-steps", KeyedTable)
        table.move_cursor(row=self.session.progress.current, animate=False)
        table.focus()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        self.query_one("#rb-escalation", Static).update(self._escalation())
        if self.session.breach is not None:
            self.query_one("#rb-trigger", Static).update(self._trigger())
        if any(self.session.time_left(s.step) is not None for s in self.session.steps):
            self.refresh_steps(tick=False)  # a wait counts down

    def badge(self, status: StepStatus) -> str:
        """The step's state; a waiting wait step says how long is left: "◌ RUNNING 12 s left"."""
        left = self.session.time_left(status.step)
        if status.state == StepState.RUNNING and left is not None:
            return f"{STEP_BADGE[status.state]} {math.ceil(left)} s left"
        return STEP_BADGE[status.state]

    def _escalation(self) -> Text:
        progress = self.session.progress
        done = f"{progress.done}/{len(progress.steps)} steps done"
        lines = self.session.escalation().lines() if self.runbook.escalation else ()
        return Text(" · ".join([done, *lines[:2]]), overflow="fold")

    def refresh_steps(self, *, tick: bool = True) -> None:
        rows = []
        for status in self.session.steps:
            title = self.session.title(status.step)
            rows.append(
                (
                    status.step.id,
                    (
                        cell(status.index + 1, 3),
                        cell(self.badge(status), 22, STEP_STYLE[status.state]),
                        cell(status.step.kind, 8),
                        cell(title, 100),
                    ),
                )
            )
        self.query_one("#rb-steps", KeyedTable).sync(rows)
        if tick:
            self._tick()
        self.show_detail()

    @property
    def selected(self) -> StepStatus | None:
        key = self.query_one("#rb-steps", KeyedTable).selected_key
        return next((s for s in self.session.steps if s.step.id == key), None)

    def show_detail(self) -> None:
        status = self.selected
        self.query_one("#rb-detail-text", Static).update(self._detail(status) if status else Text(""))

    def _detail(self, status: StepStatus) -> Text:
        step = status.step
        text = Text()
        text.append(f"{status.index + 1}. {self.session.title(step)}", style="bold")
        text.append(f"   {self.badge(status)}", style=STEP_STYLE[status.state])
        if status.by and status.at is not None and status.state is not StepState.TODO:
            text.append(Text(f"  by {status.by} at {time.strftime('%H:%M:%SZ', time.gmtime(status.at))}"))
        text.append("\n")
        # What the operator acts on first (the detail pane is a few lines at 80x24): the key the
        # step waits for, the last result and its rows; then what the step runs.
        if (needs := self.needs(step)) and status.state != StepState.DONE:
            text.append(f"{needs} first\n", style="bold")
        if (expected := self.session.expected(step)) is not None and status.state != StepState.DONE:
            text.append(f"press {self.key_for(expected)} when done\n", style="bold")
        if status.message:
            text.append("last: ", style="bold")
            text.append(f"{one_line(status.message, 400)}\n")
        width = (self.size.width or self.app.size.width) - 4  # the pane's padding and scrollbar
        for line in status.lines[:40]:
            text.append(f"{hanging(f'  {line}', width)}\n")
        if status.message or status.lines:
            text.append("\n")
        for i, line in enumerate(self.session.describe(step)):
            prose = i == 0 and bool(step.text)  # the step's own words wrap as a paragraph
            text.append(f"{line if prose else hanging(line, width)}\n")
        for note in status.notes:
            text.append(f"note {note}\n", style="italic")
        if status.index == len(self.session.steps) - 1 and self.runbook.post_incident:
            text.append("\nafter the incident:\n", style="bold")
            for i, item in enumerate(self.runbook.post_incident):
                mark = "☑" if i in self.session.progress.ticked else "☐"
                text.append(f"  {mark} {item}\n")
        if self.session.last_error:
            text.append(f"\n! journal: {self.session.last_error}\n", style="bold red")
        return text

    def on_data_table_row_highlighted(self, event) -> None:
        status = self.selected
        if status is not None:
            self.session.progress.current = status.index
        self.show_detail()

    def on_data_table_row_selected(self, event) -> None:
        event.stop()  # Enter selects; x executes (Enter never runs an action by accident)

    def action_move(self, step: int) -> None:
        progress = self.session.progress
        index = progress.next() if step > 0 else progress.previous()
        self.query_one("#rb-steps", KeyedTable).move_cursor(row=index, animate=False)

    def action_request(self, command: str) -> None:
        status = self.selected
        if status is not None:
            self.post_message(StepRequest(self, StepCommand(command), status.step.id))

    def needs(self, step: Step) -> str:
        """What the step lacks before it can run, and the key that sets it; "" when nothing."""
        unset = self.session.unset_inputs(step)
        if not unset:
            return ""
        return f"needs {', '.join(unset)}: press {self.key_for(StepCommand.SET_VALUE)} to set it"

    def key_for(self, command: StepCommand) -> str:
        """The key that gives ``command`` here, as the user's keymap has it."""
        binding = next(
            b for b in self.BINDINGS if isinstance(b, Binding) and b.action == f"request('{command}')"
        )
        keymap = getattr(self.app, "_keymap", {}) or {}
        return keymap.get(binding.id, binding.key) if binding.id else binding.key

    def action_close(self) -> None:
        self.app.pop_screen()
