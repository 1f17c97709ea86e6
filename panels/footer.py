"""The key footer, without Textual 8.2's leak.

Textual's Footer binds every FooterKey it composes to its own ``compact`` reactive
(``data_bind``): a watcher (key, setter) on the Footer. Textual drops the watchers of removed
widgets only when ``compact`` changes, which never happens here, while the Footer recomposes at
every focus or screen change. So each ``tab`` kept ~16 dead FooterKeys (with their styles and
caches) alive for good: +35 MB of RSS in the 30-minute soak. This Footer drops them after each
recompose, as Textual itself would on the next change of ``compact``.

It also recomposes only when what it shows would change. Textual's recomposes on every
bindings signal (each focus change, each screen), mounting every key anew: six times at start-up
for the same keys, ~80 ms of the console's start-up CPU (issue 20), and once per ``tab``.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer as TextualFooter
from textual.widgets._footer import FooterKey


class Footer(TextualFooter):
    """Only the keys that fit the width, in order, and the palette key when it fits too: at 80
    columns the last keys ran under the palette key (``…t Ti▏^p palettem``, issue 18). ``?``
    lists every key."""

    _width = 0
    _composed: tuple | None = None  # what the keys on show were composed from

    def compose(self) -> ComposeResult:
        widgets = list(super().compose())
        room = self.app.size.width
        palette = [w for w in widgets if isinstance(w, FooterKey) and w.has_class("-command-palette")]
        keys = [w for w in widgets if w not in palette]
        for key in palette:
            room -= _width(key, self.compact) + 1  # its border
        shown, used = [], 0
        for key in keys:
            need = _width(key, self.compact) if isinstance(key, FooterKey) else 0
            if used + need > room:
                break
            shown.append(key)
            used += need
        if room < 0:  # not even the palette key fits beside nothing
            palette = []
        yield from shown
        yield from palette

    def on_resize(self, event) -> None:
        if event.size.width != self._width:
            self._width = event.size.width
            self.call_after_refresh(self.recompose)

    async def recompose(self) -> None:
        if not self.is_attached:  # a dialog's footer, its dialog closed before this ran
            return
        shows = self.shows()
        if shows == self._composed:
            return
        self._composed = shows
        await super().recompose()
        self.drop_dead_watchers()

    def shows(self) -> tuple:
        """Everything :meth:`compose` reads: the width, the style, and each binding it would
        show (key, how it is displayed, description, action, group, enabled, tooltip)."""
        if not self._bindings_ready:
            return ()
        app = self.app
        active = self.screen.active_bindings

        def entry(binding, enabled, tooltip) -> tuple:
            group = binding.group and (binding.group.description, binding.group.compact)
            display = app.get_key_display(binding)
            return (binding.key, display, binding.description, binding.action, group, enabled, tooltip)

        shown = tuple(entry(b, enabled, tip) for _, b, enabled, tip in active.values() if b.show)
        palette = active.get(app.COMMAND_PALETTE_BINDING)
        palette_entry = entry(*palette[1:]) if palette is not None else None
        return (app.size.width, self.compact, self.show_command_palette, shown, palette_entry)

    def drop_dead_watchers(self) -> None:
        # Textual keeps watchers in the instance attribute "__watchers" (textual/reactive.py):
        # {reactive name: [(node, callback)]}. Without it (another Textual) there is nothing to do.
        for watchers in getattr(self, "__watchers", {}).values():
            watchers[:] = [(node, callback) for node, callback in watchers if node.is_attached]


def _width(key: FooterKey, compact: bool) -> int:
    """Cells a key takes: compact 'R Runbooks ' (key, space, words, margin), else ' R Runbooks '."""
    return len(key.key_display) + len(key.description) + (2 if compact else 3)
