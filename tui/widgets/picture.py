"""A grey picture drawn with text: half blocks (two pixels a cell, one grey each) or a shade ramp.

`full` and `console` draw `▀` with the upper pixel as foreground and the lower as
background: on the console Rich maps the greys to its 16 colours. `serial` draws
one ASCII character a cell from a ramp of ten, no colour at all (about a tenth of
the bytes). The API is asked for the picture at the size the widget shows
(`pixel_size`), so nothing is scaled here.
"""
from __future__ import annotations

import base64

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

RAMP = " .:-=+*#%@"     # dark to light, ASCII only
HALF = "\u2580"          # upper half block: in the Linux console font (cp437)


def grey_style(top: int, bottom: int, cache: dict) -> Style:
    key = (top, bottom)
    style = cache.get(key)
    if style is None:
        style = cache[key] = Style(color=f"rgb({top},{top},{top})", bgcolor=f"rgb({bottom},{bottom},{bottom})")
    return style


def picture_lines(pixels: bytes, width: int, height: int, mode: str) -> list[list[Segment]]:
    """Text lines of a gray8 picture: half blocks (`halfblock`) or the ASCII ramp (`ascii`)."""
    lines, cache = [], {}
    for y in range(0, height - 1, 2):
        top, bottom = pixels[y * width:(y + 1) * width], pixels[(y + 1) * width:(y + 2) * width]
        if mode == "ascii":
            text = "".join(RAMP[min(9, (a + b) * 10 // 512)] for a, b in zip(top, bottom))
            lines.append([Segment(text)])
        else:
            segments, run, run_style = [], 0, None
            for a, b in zip(top, bottom):
                style = grey_style(a, b, cache)
                if style is run_style:
                    run += 1
                    continue
                if run:
                    segments.append(Segment(HALF * run, run_style))
                run, run_style = 1, style
            if run:
                segments.append(Segment(HALF * run, run_style))
            lines.append(segments)
    return lines


class Picture(Widget):
    """Shows one gray8 image (`show(image)`), or a line of text while there is none."""

    DEFAULT_CSS = "Picture { width: 1fr; height: 1fr; }"

    def __init__(self, mode: str = "halfblock", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode
        self._lines: list[list[Segment]] = []
        self._message = ""

    def pixel_size(self) -> tuple[int, int]:
        """The pixels the widget can show: one column a pixel, two pixels a row."""
        return max(1, self.size.width), max(2, self.size.height * 2)

    def show(self, image: dict) -> None:
        pixels = base64.b64decode(image["pixels"])
        self._lines = picture_lines(pixels, image["width"], image["height"], self.mode)
        self._message = ""
        self.refresh()

    def say(self, message: str) -> None:
        self._lines, self._message = [], message
        self.refresh()

    def render_line(self, y: int) -> Strip:
        if self._lines:
            segments = self._lines[y] if y < len(self._lines) else []
        else:
            segments = [Segment(self._message)] if y == 0 and self._message else []
        return Strip(segments).adjust_cell_length(self.size.width)
