"""PromQL durations: read them, write them, and scale every range window and offset of a query.

Used by the demo's alert rules (``console.demo.rules``: the real estate's durations shortened)
and by runbook checks under a demo time scale (``runbooks: {time_scale: ...}`` in the config:
docs/ARCHITECTURE.md, Runbooks). String literals of the query are left alone: a label value
``"[5m]"`` is not a window.
"""

from __future__ import annotations

import re

_UNITS = {"y": 365 * 86400.0, "w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_DURATION = r"(?:\d+(?:ms|y|w|d|h|m|s))+"
_RANGE = re.compile(rf"\[\s*({_DURATION})\s*(?::\s*({_DURATION})?\s*)?\]")
_OFFSET = re.compile(rf"\boffset\s+({_DURATION})")
# A PromQL string literal: "...", '...' (with backslash escapes) or `...` (raw).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')


def parse(text: str) -> float:
    """A Prometheus duration (``1h30m``, ``500ms``) in seconds."""
    text = text.strip()
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def render(seconds: float) -> str:
    """Seconds as a Prometheus duration: whole seconds when possible, else milliseconds."""
    if seconds <= 0:
        return "0s"
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    if seconds >= 10:
        return f"{round(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def scale(text: str, factor: float, minimum: float = 0.0) -> str:
    return render(max(parse(text) * factor, minimum))


def _outside_strings(expr: str, change) -> str:
    """``change`` applied to the parts of ``expr`` that are not string literals."""
    out, last = [], 0
    for match in _STRING.finditer(expr):
        out += [change(expr[last : match.start()]), match.group()]
        last = match.end()
    out.append(change(expr[last:]))
    return "".join(out)


def scale_expr(expr: str, factor: float, min_window: float = 0.0) -> str:
    """``expr`` with every range window (``[5m]``, ``[1h:1m]``) and ``offset`` multiplied by
    ``factor``; a window keeps at least ``min_window`` seconds (``rate()`` needs a few scrapes).
    A factor of 1 changes nothing."""
    if factor == 1:
        return expr

    def window(match: re.Match[str]) -> str:
        out = "[" + scale(match.group(1), factor, min_window)
        if ":" in match.group(0):
            step = match.group(2)
            out += ":" + (scale(step, factor, 1.0) if step else "")
        return out + "]"

    def change(part: str) -> str:
        part = _RANGE.sub(window, part)
        return _OFFSET.sub(lambda m: "offset " + scale(m.group(1), factor), part)

    return _outside_strings(expr, change)


def windows(expr: str) -> list[tuple[str, float]]:
    """Every range window of ``expr`` (outside string literals): (as written, seconds)."""
    found: list[tuple[str, float]] = []

    def collect(part: str) -> str:
        found.extend((m.group(1), parse(m.group(1))) for m in _RANGE.finditer(part))
        return part

    _outside_strings(expr, collect)
    return found
