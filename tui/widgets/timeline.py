"""One bar per camera across a grant's window: recorded, not recorded, held, and the cursor.

    █ recorded and held    ▓ recorded    ░ not recorded      (console and full)
    # recorded and held    = recorded    . not recorded      (serial: ASCII)

Each cell is one step of time (the zoom); the view follows the cursor.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

STEPS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)   # seconds a cell, the zoom levels
LABEL = 10          # the camera's name, at least: as wide as the longest name, up to LABEL_MAX
LABEL_MAX = 16
GLYPHS = {False: ("\u2588", "\u2593", "\u2591"), True: ("#", "=", ".")}
CURSOR = Style(reverse=True)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def spans(items) -> list[tuple[datetime, datetime]]:
    return [(parse(a), parse(b)) for a, b in items]


def covered(ranges, start: datetime, end: datetime) -> bool:
    return any(a < end and b > start for a, b in ranges)


class Timeline(Widget):
    DEFAULT_CSS = "Timeline { height: auto; }"

    def __init__(self, ascii: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.ascii = ascii
        self.cameras: list[dict] = []
        self.start = self.end = self.cursor = None
        self.zoom = 0
        self.row = 0
        self.label = LABEL

    def load(self, answer: dict, latest: bool = False) -> None:
        """The grant's timeline; the cursor where its recording starts (`latest`: where it ends, for
        imminent danger, where what just happened matters)."""
        self.start, self.end = parse(answer["start"]), parse(answer["end"])
        self.cameras = [{"camera": c["camera"], "recorded": spans(c["recorded"]), "held": spans(c["held"])}
                        for c in answer["cameras"]]
        self.label = min(LABEL_MAX, max([LABEL] + [len(c["camera"]) + 3 for c in self.cameras]))
        if self.cursor is None:
            spans_ = [s for c in self.cameras for s in c["recorded"]]
            if latest and spans_:
                a, b = max(spans_, key=lambda s: s[1])
                at = max(a, b - timedelta(seconds=2))
            else:
                at = min((a for a, _ in spans_), default=self.start)
            self.cursor = min(self.end, max(self.start, at))
            self.zoom = self.fitting_zoom()
        self.styles.height = len(self.cameras)
        self.refresh()

    def bar_width(self) -> int:
        return max(10, self.size.width - self.label)

    def fitting_zoom(self) -> int:
        seconds = (self.end - self.start).total_seconds()
        width = max(10, (self.size.width or 80) - self.label)
        return next((i for i, s in enumerate(STEPS) if s * width >= seconds), len(STEPS) - 1)

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=STEPS[self.zoom])

    @property
    def camera(self) -> str | None:
        return self.cameras[self.row]["camera"] if self.cameras else None

    def move(self, steps: int) -> None:
        if self.cursor is None:
            return
        self.cursor = min(self.end, max(self.start, self.cursor + steps * self.step))
        self.refresh()

    def change_zoom(self, delta: int) -> None:
        self.zoom = min(len(STEPS) - 1, max(0, self.zoom - delta))
        self.refresh()

    def change_row(self, delta: int) -> None:
        if self.cameras:
            self.row = (self.row + delta) % len(self.cameras)
            self.refresh()

    def view_start(self) -> datetime:
        width = self.bar_width()
        start = self.cursor - self.step * (width // 2)
        latest = self.end - self.step * width
        return max(self.start, min(start, latest)) if latest > self.start else self.start

    def render_line(self, y: int) -> Strip:
        if y >= len(self.cameras) or self.cursor is None:
            return Strip.blank(self.size.width)
        cam = self.cameras[y]
        held_rec, rec, gap = GLYPHS[self.ascii]
        first = self.view_start()
        cells = []
        for i in range(self.bar_width()):
            a = first + i * self.step
            b = a + self.step
            if a >= self.end:
                cells.append(" ")
            elif covered(cam["recorded"], a, b):
                cells.append(held_rec if covered(cam["held"], a, b) else rec)
            else:
                cells.append(gap)
        at = int((self.cursor - first) / self.step)
        label = (("> " if y == self.row else "  ") + cam["camera"])[:self.label - 1].ljust(self.label)
        segments = [Segment(label)]
        if y == self.row and 0 <= at < len(cells):
            segments += [Segment("".join(cells[:at])), Segment(cells[at], CURSOR), Segment("".join(cells[at + 1:]))]
        else:
            segments.append(Segment("".join(cells)))
        return Strip(segments).adjust_cell_length(self.size.width)
