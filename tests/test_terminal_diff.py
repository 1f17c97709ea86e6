"""panels/terminal.py: writing only the changed cells leaves the terminal showing exactly what
writing every update in full shows, byte streams checked through a terminal emulator (pyte)."""

from __future__ import annotations

import random

import pyte
from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from textual._compositor import ChopsUpdate, LayoutUpdate
from textual.geometry import Region, Size
from textual.strip import Strip

from panels.terminal import ScreenMemory

W, H = 40, 8
STYLES = [Style(color="red"), Style(bgcolor="blue", bold=True), Style(reverse=True), Style(color="#00ff00")]
WORDS = ["pid", "12s", "idle", "漢字", "waits", "—", " ", "→x"]


def random_strip(rng: random.Random, width: int) -> Strip:
    segments, used = [], 0
    while used < width:
        text = rng.choice(WORDS)
        room = width - used
        if Segment(text).cell_length > room:
            text = " " * room
        segments.append(Segment(text, rng.choice(STYLES)))
        used += Segment(text).cell_length
    return Strip(segments, width)


def screen_of(emulator: pyte.Screen) -> list[list[tuple]]:
    return [
        [(c.data, c.fg, c.bg, c.bold, c.reverse) for c in (emulator.buffer[y][x] for x in range(W))]
        for y in range(H)
    ]


def test_changed_cells_only_give_the_same_screen_with_fewer_bytes():
    rng = random.Random(3)
    console = Console(width=W, height=H, color_system="truecolor", force_terminal=True)
    full, diffed = pyte.Screen(W, H), pyte.Screen(W, H)
    full_stream, diffed_stream = pyte.Stream(full), pyte.Stream(diffed)
    memory = ScreenMemory()
    size = Size(W, H)
    lines = [random_strip(rng, W) for _ in range(H)]
    sent_full = sent_diffed = 0
    for step in range(300):
        if step == 0 or step % 97 == 0:  # a full repaint now and then
            update = LayoutUpdate([[line] for line in lines], Region(0, 0, W, H))
        elif step % 13 == 0:  # a partial layout update: a box inside the screen
            x, y = rng.randrange(W - 10), rng.randrange(H - 3)
            update = LayoutUpdate([[random_strip(rng, 10)] for _ in range(3)], Region(x, y, 10, 3))
        else:  # chops: a few lines, each split in pieces, most pieces unchanged
            ys = sorted(rng.sample(range(H), rng.randint(1, 3)))
            chops, ends = [{} for _ in range(H)], [[] for _ in range(H)]
            for y in ys:
                cut = rng.randrange(1, W - 1)
                old = lines[y]
                if rng.random() < 0.5:  # change a few cells of the line
                    old = Strip.join([old.crop(0, cut), random_strip(rng, 3), old.crop(cut + 3, W)]).crop(
                        0, W
                    )
                lines[y] = old
                chops[y] = {0: old.crop(0, cut), cut: old.crop(cut, W)}
                ends[y] = [cut, W]
            update = ChopsUpdate(chops, [(y, 0, W) for y in ys], ends)
        plain = update.render_segments(console)
        filtered = memory.filter(update, size, console).render_segments(console)
        full_stream.feed(plain)
        diffed_stream.feed(filtered)
        sent_full += len(plain.encode())
        sent_diffed += len(filtered.encode())
        assert screen_of(diffed) == screen_of(full), f"screens differ after step {step}"
    assert sent_diffed < sent_full / 3


def test_a_resize_resets_the_memory():
    console = Console(width=W, height=H, color_system="truecolor", force_terminal=True)
    memory = ScreenMemory()
    line = Strip([Segment("x" * W, STYLES[0])], W)
    first = LayoutUpdate([[line]] * H, Region(0, 0, W, H))
    assert memory.filter(first, Size(W, H), console) is first
    same = ChopsUpdate([{0: line}] + [{}] * (H - 1), [(0, 0, W)], [[W]] + [[]] * (H - 1))
    assert memory.filter(same, Size(W, H), console).render_segments(console) == ""
    # Another size: nothing is known about the terminal, so the update goes out whole.
    assert memory.filter(same, Size(W + 1, H), console) is same
