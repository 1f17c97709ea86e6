"""Textual 8.2's Strip.divide without its reference cycle.

``Strip.divide(cuts)`` with the single cut at the strip's own length (the compositor does it for
every line it draws) caches ``[self]`` in the strip's own ``_divide_cache``: strip -> cache ->
list -> strip. Reference counting can then never free a drawn line; only the cyclic garbage
collector can, so each refresh of a 1000-row screen left ~800 strips (with their seven caches
and their segments) for it, and its passes stopped the event loop for tens of milliseconds —
the slowest key presses (bench/CHANGES.md). The same answer, ``[self]``, without caching it.
Installed once, by the console app module; a Textual whose ``divide`` has no such cache loses
nothing by it.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.strip import Strip

_textual_divide = Strip.divide


def _divide(self: Strip, cuts: Iterable[int]) -> list[Strip]:
    cell_length = self.cell_length
    cuts = [cut for cut in cuts if cut <= cell_length]
    if cuts == [cell_length]:
        return [self]
    return _textual_divide(self, cuts)


def install() -> None:
    if Strip.divide is not _divide:
        Strip.divide = _divide  # type: ignore[method-assign]
