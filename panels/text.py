"""Building Rich ``Text`` for widgets. Untrusted strings only ever enter a widget through here.

Every function returns ``Text`` (never a markup string), so ``[/x]``, ``[@click=...]`` or
``[$var]`` in a query or a label shows literally and cannot act. The strings have already been
sanitised at the source boundary (console.sanitize); table cells are folded to one line and capped.
Colour is decoration only: every state also reads as a glyph and a word.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from rich.text import Text

from console.model import HealthStatus, Severity
from console.present import (
    HEALTH_BADGE,
    NO_DATA_BADGE,
    NOTHING_BADGE,
    SEVERITY_BADGE,
    STALE_BADGE,
    STATE_BADGE,
    overall_badge,
)
from console.rules import Breach, State, format_duration
from console.sanitize import one_line, query_line

if TYPE_CHECKING:
    from console.poller import ConsoleState

COLOR_SEVERITY = {
    Severity.CRITICAL: "bold red",
    Severity.WARNING: "bold yellow",
    Severity.UNKNOWN: "bold magenta",
    Severity.INFO: "cyan",
    Severity.OK: "green",
}
COLOR_STATE = {State.NODATA: "bold magenta", State.ERROR: "bold magenta"}
COLOR_HEALTH = {
    HealthStatus.PASS: "green",
    HealthStatus.WARN: "bold yellow",
    HealthStatus.FAIL: "bold red",
    HealthStatus.UNKNOWN: "bold magenta",
}
#: NO_COLOR / monochrome: Textual greys colours by luminance, which leaves red nearly invisible;
#: these styles keep the order of loudness without colour.
MONOCHROME_SEVERITY = {
    Severity.CRITICAL: "bold reverse",
    Severity.WARNING: "bold underline",
    Severity.UNKNOWN: "bold italic",
    Severity.INFO: "",
    Severity.OK: "",
}
MONOCHROME_HEALTH = {
    HealthStatus.PASS: "",
    HealthStatus.WARN: "bold underline",
    HealthStatus.FAIL: "bold reverse",
    HealthStatus.UNKNOWN: "bold italic",
}


MONOCHROME_STATE = {State.NODATA: "bold italic", State.ERROR: "bold italic"}
SEVERITY_STYLE = dict(COLOR_SEVERITY)
STATE_STYLE = dict(COLOR_STATE)
HEALTH_STYLE = dict(COLOR_HEALTH)


def use_monochrome(enabled: bool) -> None:
    """Badge styles for NO_COLOR (enabled) or colour; glyphs and words are the same either way."""
    for table, color, mono in (
        (SEVERITY_STYLE, COLOR_SEVERITY, MONOCHROME_SEVERITY),
        (STATE_STYLE, COLOR_STATE, MONOCHROME_STATE),
        (HEALTH_STYLE, COLOR_HEALTH, MONOCHROME_HEALTH),
    ):
        table.clear()
        table.update(mono if enabled else color)


CELL_LIMIT = 80
SPARK = "▁▂▃▄▅▆▇█"


def cell(value: object, limit: int = CELL_LIMIT, style: str = "") -> Text:
    """A one-line table cell: newlines folded into a visible mark, length capped."""
    return Text(one_line(value, limit), style=style, no_wrap=True, overflow="ellipsis")


#: Where a long name may be broken: before a capital that follows a lower-case letter or a
#: digit (BlackboxProbe|HttpFailure), and after _ - . / : (pg_stat_|activity).
NAME_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[_\-./:])(?=.)")


def break_long_words(text: str, width: int) -> str:
    """``text`` with every word longer than ``width`` broken by a newline where its name parts
    (see NAME_BREAK), at the last such place that fits, else at ``width``; the rest is left
    for the widget to wrap at spaces. A wall tile folded "BlackboxProbeHttpFailure" at its
    width: "BlackboxProbeHttpFai" over "lure"."""
    if width < 4:
        return text
    words = []
    for word in text.split(" "):
        pieces = []
        while len(word) > width:
            cuts = [m.start() for m in NAME_BREAK.finditer(word, 1, width + 1)]
            at = cuts[-1] if cuts else width
            pieces.append(word[:at])
            word = word[at:]
        words.append("\n".join([*pieces, word]))
    return " ".join(words)


def query_cell(query: str, limit: int = CELL_LIMIT) -> Text:
    """A query in a cell: its lines joined by ⏎ (a multi-line query shows that it goes on)."""
    return Text(query_line(query, limit), no_wrap=True, overflow="ellipsis")


HANG = 4  # how much deeper a wrapped line's continuation is indented than the line itself


def hanging(line: str, width: int) -> str:
    """``line`` wrapped to ``width`` with its continuation lines indented ``HANG`` cells deeper
    than the line itself: a preview row (``pid | backend_start | user | application | idle``)
    that wraps at 80 columns still reads as one row, where Rich's wrap began the rest of it at
    the margin, like a row of its own. Counted in characters: a line of wide characters that
    still overflows is wrapped again by Rich (without the indent)."""
    if len(line) <= width:
        return line
    lead = len(line) - len(line.lstrip(" "))
    if width - lead - HANG < 16:  # too narrow to indent usefully
        return line

    wrapper = _separator_wrapper()(
        width,
        initial_indent=" " * lead,
        subsequent_indent=" " * (lead + HANG),
        break_on_hyphens=False,  # keep 2026-12-07 and uuids whole
        expand_tabs=False,
        replace_whitespace=False,
        drop_whitespace=True,
    )
    return "\n".join(wrapper.wrap(line[lead:]))


_BREAK_AFTER = re.compile(r"(?<=[/,])(?=[^/,\s])")  # after a path's '/' or a list's ',' ('//' whole)


@functools.cache
def _separator_wrapper() -> type:
    """textwrap's wrapper (imported here: not on the first screen's path), made once, that may
    also break a chunk too long for a line after a '/' or a ','."""
    import textwrap

    class SeparatorWrapper(textwrap.TextWrapper):
        def _split(self, text: str) -> list[str]:
            # textwrap breaks only between its chunks, and cuts a chunk longer than a line
            # anywhere: a URL or a label set too long for a line breaks after a '/' or a ','
            room = self.width - len(self.subsequent_indent)
            return [
                piece
                for chunk in super()._split(text)
                for piece in (_BREAK_AFTER.split(chunk) if len(chunk) > room else (chunk,))
                if piece
            ]

    return SeparatorWrapper


def plain(value: object) -> Text:
    """Untrusted text kept whole (detail views): literal, newlines kept."""
    return Text(str(value))


def severity_text(severity: Severity) -> Text:
    return Text(SEVERITY_BADGE[severity], style=SEVERITY_STYLE[severity])


def overall_text(state: ConsoleState | None, now: float) -> Text:
    """The header's one word for everything (console.present.overall_badge): a stale or
    unanswered quiet is loud as an unknown is, never the green OK."""
    badge = overall_badge(state, now)
    if badge in (NO_DATA_BADGE, NOTHING_BADGE):
        return Text(badge, style="dim")
    if badge == STALE_BADGE:
        return Text(badge, style=SEVERITY_STYLE[Severity.UNKNOWN])
    return severity_text(state.worst if state is not None else Severity.OK)


def breach_text(breach: Breach) -> Text:
    if breach.state in STATE_BADGE:
        return Text(STATE_BADGE[breach.state], style=STATE_STYLE[breach.state])
    return severity_text(breach.severity)


def health_text(status: HealthStatus) -> Text:
    return Text(HEALTH_BADGE[status], style=HEALTH_STYLE[status])


def error_text(reason: object) -> Text:
    return Text("! ERROR ", style="bold magenta") + cell(reason, 160)


def age_words(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return "now" if seconds < 1 else format_duration(seconds)


def ago(seconds: float) -> str:
    """ "12s ago", or "just now" (not "now ago")."""
    return "just now" if seconds < 1 else f"{format_duration(seconds)} ago"


def age_text(seconds: float | None) -> Text:
    return Text(age_words(seconds))


def breach_age_words(breach: Breach, now: float) -> str:
    """A breach's age; "≥" when it was already so at this console's first look (Breach.since_known)."""
    age = breach.age(now)
    if breach.since_known:
        return age_words(age)
    return "≥" + (format_duration(age) if age >= 1 else "0s")  # "≥now" read as nothing


def sparkline(values: list[float | None], width: int = 16) -> str:
    """Unicode block sparkline of the last ``width`` values (gaps shown as spaces)."""
    window = values[-width:]
    numbers = [v for v in window if v is not None]
    if not numbers:
        return ""
    low, high = min(numbers), max(numbers)
    span = (high - low) or 1.0
    return "".join(
        " " if v is None else SPARK[min(int((v - low) / span * (len(SPARK) - 1)), 7)] for v in window
    )
