"""Textual 8.2's partial screen update, drawing only the lines it updates.

A partial update (a clock, an age, a few table rows) crops the screen to one region around
everything that changed, then asks each widget that overlaps the crop for its lines. But a
widget wholly on screen is asked for *all* its lines, not those in the crop: one changed row
drew every line of a 40-line table, of its panel and of the screen behind them, and the
compositor then threw away all but the changed lines. At rest that was most of the console's
CPU (bench/CHANGES.md, docs/SCALE.md).

Here a widget is asked only for its lines within the crop's rows (its clip is narrowed to
them), which is what Textual already does for a widget that is partly scrolled out of view;
the columns stay whole, so the compositor cuts lines as before. A full update crops to the
whole screen, so it draws what it drew before. Installed once, by the console app module.
"""

from __future__ import annotations

from collections.abc import Iterator

from textual._compositor import Compositor
from textual.geometry import Region
from textual.strip import Strip


def _renders_in_rows(
    self: Compositor, crop: Region | None = None
) -> Iterator[tuple[Region, Region, list[Strip]]]:
    for widget, (region, clip) in self.visible_widgets.items():
        if crop is not None:
            if not crop.overlaps(clip):
                continue
            clip = clip.intersection(Region(clip.x, crop.y, clip.width, crop.height))
        x, y, width, height = region.intersection(clip)
        if width and height:
            yield region, clip, widget.render_lines(Region(x - region.x, y - region.y, width, height))


def install() -> None:
    if Compositor._get_renders is not _renders_in_rows:
        Compositor._get_renders = _renders_in_rows  # type: ignore[method-assign]
