"""Only what changed goes to the terminal: a memory of the screen, cell by cell.

Textual re-sends every line of a widget region that was refreshed: a duration going from 15s to
16s in a table row re-sends the whole row, styles and all. Over SSH during an incident that is
bandwidth and latency, and it was most of what the console wrote (bench/RESULTS.md). curses-based
tools such as pg_activity send only the changed characters; :class:`ScreenMemory` does the same
for the console: it remembers what each cell of the terminal shows (character and style) and
turns each partial compositor update into the runs of cells that differ.

A full-screen update (start, resize, a screen pushed or popped, resume after suspend) is sent as
is and resets the memory, so the terminal and the memory can only drift apart until the next
one; nothing else writes cells to the terminal.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate, CompositorUpdate, LayoutUpdate
from textual.app import App
from textual.geometry import Size
from textual.strip import Strip

Cell = tuple[str, Style | None]  # ("", style) is the right half of a wide character
UNKNOWN: Cell = ("\x00", None)  # what the terminal shows is not known: any write differs
#: Unchanged cells shorter than this between two changed runs are re-sent rather than skipped
#: with a cursor move (``ESC[row;colH`` is up to 8 bytes).
GAP = 8


class Prerendered(CompositorUpdate):
    """Terminal output already computed (what App._display writes for a CompositorUpdate)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def render_segments(self, console: Console) -> str:
        return self.text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Segment(self.text)


def _cells(strip: Strip) -> list[Cell]:
    out: list[Cell] = []
    for text, style, control in strip:
        if control:
            continue
        if text.isascii():
            out.extend((char, style) for char in text)
            continue
        for char in text:
            width = cell_len(char)
            if width == 1:
                out.append((char, style))
            elif width == 2:
                out += [(char, style), ("", style)]
    return out


def _pieces(update: CompositorUpdate) -> Iterator[tuple[int, int, Strip]]:
    """(y, x, strip) in the order the update writes them; the same cropping as Textual's."""
    if isinstance(update, LayoutUpdate):
        for y, line in enumerate(update.strips, update.region.y):
            yield y, update.region.x, Strip.join(list(line))
        return
    assert isinstance(update, ChopsUpdate)
    for y, x1, x2 in update.spans:
        for end, (x, strip) in zip(update.chop_ends[y], update.chops[y].items(), strict=False):
            if strip is None or x > x2 or end <= x1:
                continue
            if not (x2 > x >= x1 and end <= x2):
                strip = strip.crop(0, min(end, x2) - x)
            yield y, x, strip


class ScreenMemory:
    def __init__(self) -> None:
        self.size = Size(0, 0)
        self.lines: list[list[Cell]] = []

    def reset(self, size: Size) -> None:
        self.size = size
        self.lines = [[UNKNOWN] * size.width for _ in range(size.height)]

    def filter_for(self, app: App, update: object) -> object:
        """:meth:`filter` when App._display is about to write ``update`` to a full-screen
        terminal; the update untouched otherwise (headless, inline, inside a batch, closing), so
        that the memory only ever records what was written."""
        driver = app._driver
        if (
            update is None
            or app._batch_count
            or not app._running
            or app._closed
            or app.is_headless
            or driver is None
            or driver.is_inline
        ):
            return update
        return self.filter(update, app.size, app.console)

    def filter(self, update: object, size: Size, console: Console) -> object:
        """What to write for ``update`` instead: the changed cells only (a Prerendered), or the
        update itself when it repaints the whole screen or is not a compositor update."""
        if not isinstance(update, LayoutUpdate | ChopsUpdate):
            return update
        full = (
            isinstance(update, LayoutUpdate) and update.region.size == size and update.region.offset == (0, 0)
        )
        if full or size != self.size:
            self.reset(size)
            self._remember(update)
            return update
        return Prerendered(self._changes(update, console))

    def _remember(self, update: CompositorUpdate) -> None:
        for y, x, strip in _pieces(update):
            if 0 <= y < len(self.lines):
                line, cells = self.lines[y], _cells(strip)
                line[x : x + len(cells)] = cells
                del line[self.size.width :]

    def _changes(self, update: CompositorUpdate, console: Console) -> str:
        out: list[str] = []
        for y, x, strip in _pieces(update):
            if not 0 <= y < len(self.lines):
                continue
            line = self.lines[y]
            cells = _cells(strip)[: max(0, self.size.width - x)]
            runs: list[list[int]] = []  # [start, end) in screen columns
            for i, cell in enumerate(cells, x):
                if line[i] != cell:
                    if runs and i - runs[-1][1] < GAP:
                        runs[-1][1] = i + 1
                    else:
                        runs.append([i, i + 1])
            for start, end in runs:
                # Never start or stop inside a wide character.
                while start > x and (line[start][0] == "" or cells[start - x][0] == ""):
                    start -= 1
                while end < x + len(cells) and (cells[end - x][0] == "" or line[end][0] == ""):
                    end += 1
                out.append(f"\x1b[{y + 1};{start + 1}H")
                out.append(Strip(self._segments(cells[start - x : end - x])).render(console))
                line[start:end] = cells[start - x : end - x]
        return "".join(out)

    @staticmethod
    def _segments(cells: list[Cell]) -> list[Segment]:
        segments: list[Segment] = []
        text: list[str] = []
        style = cells[0][1] if cells else None
        for char, cell_style in cells:
            if cell_style != style:
                segments.append(Segment("".join(text), style))
                text, style = [], cell_style
            text.append(char)
        if text:
            segments.append(Segment("".join(text), style))
        return segments
