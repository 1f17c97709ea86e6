"""The one place where untrusted text is made safe to show (docs/ARCHITECTURE.md, rules of the house).

Every string that comes from a backend (query text, application names, user names, labels,
annotations, HTTP bodies) passes through :func:`clean` at the source boundary. After that it
may still contain ``[`` and other markup characters: widgets render it as ``Text``/``Content``,
never as markup. What ``clean`` removes is what Rich's ``Text`` lets through to the terminal:
C0 controls (ESC, BEL, NUL...), DEL, C1 controls (U+0080-U+009F, including the 8-bit CSI),
bidirectional overrides, lone surrogates and invalid UTF-8. The Unicode line and paragraph
separators (U+2028, U+2029) are line breaks like ``\n``: a terminal would start a new line (or
not) at its own discretion, so they become ``\n`` and fold into ``⏎`` in one-line cells.
"""

from __future__ import annotations

import re

#: Longest text kept in a snapshot; the detail view shows this much, tables far less.
TEXT_LIMIT = 32_768

_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# C0 except \t \n \r, DEL, C1, bidi controls, BOM/zero-width no-break, and lone surrogates.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f" + _BIDI + "\ufeff\ud800-\udfff]")
_NEWLINES = re.compile("\r\n?|\n|\u2028|\u2029")
_TRUNCATED = "… [{} more characters]"
NEWLINE_MARK = "⏎"


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # control pictures: ␛ for ESC, ␀ for NUL
    if code == 0x7F:
        return "\u2421"  # ␡
    return "\ufffd"


def clean(value: object, limit: int = TEXT_LIMIT) -> str:
    """Return ``value`` as printable text: controls made visible, newlines kept, length capped."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("utf-8", errors="replace")
    else:
        text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + _TRUNCATED.format(len(text) - limit)
    text = _NEWLINES.sub("\n", text).replace("\t", "    ")
    return _UNSAFE.sub(_visible, text)


def one_line(value: object, limit: int = 120) -> str:
    """Text for a single table cell or log line: newlines folded into a visible mark, capped."""
    text = clean(value, limit=max(limit * 4, 256)).strip()
    text = text.replace("\n", f" {NEWLINE_MARK} ")
    if len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return text


def first_line(value: object, limit: int = 120) -> str:
    """The first non-empty line of ``value``, capped; for query previews. When more text
    follows on other lines it ends in `` ⏎`` (inside ``limit``): the query goes on."""
    lines = [line for line in clean(value, limit=max(limit * 4, 256)).split("\n") if line.strip()]
    if not lines:
        return ""
    line = " ".join(lines[0].split())
    mark = f" {NEWLINE_MARK}" if len(lines) > 1 else ""
    if len(line) + len(mark) <= limit:
        return line + mark
    return line[: max(limit - 1 - len(mark), 0)] + "…" + mark


def query_line(value: object, limit: int = 120) -> str:
    """A query on one line: each non-empty line with its spaces collapsed, the lines joined by
    `` ⏎ `` (so a cut after the first line still shows that the query goes on), capped."""
    lines = [" ".join(line.split()) for line in clean(value, limit=max(limit * 4, 256)).split("\n")]
    text = f" {NEWLINE_MARK} ".join(line for line in lines if line)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
