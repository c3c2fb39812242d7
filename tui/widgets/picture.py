"""A grey picture drawn with text: half blocks (two pixels a cell, one grey each) or a shade ramp.

`full` and `console` draw `▀` with the upper pixel as foreground and the lower as
background: on the console Rich maps the greys to its 16 colours. `serial` draws
one ASCII character a cell from a ramp of ten, no colour at all (about a tenth of
the bytes). The API is asked for the picture at the size the widget shows
(`pixel_size`); a picture made at a fixed size (a suspension notice's still, a
flipbook, whose API takes only a width) is shrunk to fit, never enlarged.
"""
from __future__ import annotations

import base64
import textwrap

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


def shrink(pixels: bytes, width: int, height: int, max_width: int, max_height: int) -> tuple[bytes, int, int]:
    """The picture made to fit max_width x max_height, keeping its aspect: each pixel the mean of those it covers."""
    scale = min(max_width / width, max_height / height)
    if scale >= 1:
        return pixels, width, height
    w, h = max(1, int(width * scale)), max(2, int(height * scale))
    columns = [(x * width // w, max(x * width // w + 1, (x + 1) * width // w)) for x in range(w)]
    out = bytearray(w * h)
    for y in range(h):
        y0, y1 = y * height // h, max(y * height // h + 1, (y + 1) * height // h)
        rows = [pixels[r * width:(r + 1) * width] for r in range(y0, y1)]
        for x, (x0, x1) in enumerate(columns):
            out[y * w + x] = sum(sum(row[x0:x1]) for row in rows) // ((x1 - x0) * (y1 - y0))
    return bytes(out), w, h


class Picture(Widget):
    """Shows one gray8 image (`show(image)`), or a line of text while there is none."""

    DEFAULT_CSS = "Picture { width: 1fr; height: 1fr; }"

    def __init__(self, mode: str = "halfblock", **kwargs):
        super().__init__(**kwargs)
        self.mode = mode
        self._lines: list[list[Segment]] = []
        self._message = ""
        self._image: tuple[bytes, int, int] | None = None

    def pixel_size(self) -> tuple[int, int]:
        """The pixels the widget can show: one column a pixel, two pixels a row."""
        return max(1, self.size.width), max(2, self.size.height * 2)

    def show(self, image: dict) -> None:
        self._image = (base64.b64decode(image["pixels"]), image["width"], image["height"])
        self._message = ""
        self._draw()

    def _draw(self) -> None:
        pixels, width, height = self._image
        if self.size.width and self.size.height:   # laid out: fit what it shows
            pixels, width, height = shrink(pixels, width, height, *self.pixel_size())
        self._lines = picture_lines(pixels, width, height, self.mode)
        self.refresh()

    def on_resize(self) -> None:
        if self._image is not None:
            self._draw()

    def say(self, message: str) -> None:
        self._lines, self._message, self._image = [], message, None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        if self._lines:
            segments = self._lines[y] if y < len(self._lines) else []
        else:
            lines = textwrap.wrap(self._message, max(10, self.size.width)) if self._message else []
            segments = [Segment(lines[y])] if y < len(lines) else []
        return Strip(segments).adjust_cell_length(self.size.width)
