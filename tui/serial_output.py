"""Send a serial terminal only the cells that changed.

Textual repaints whole regions (a screen switch paints the screen two or three times
over, and a scrollbar several more); at 115200 baud every byte is 87 µs of a person's
wait. In the serial profile the output goes through `ScreenDiff`: it keeps the
screen as the terminal shows it, applies what Textual writes to a copy, and sends only
the runs of cells that differ, like curses does.

It understands what the serial profile's output is made of: text, cursor positioning
(`ESC [ row ; col H`), `CR LF`, and SGR with 0, 1, 4 and 7 (PlainText leaves nothing
else). Any other escape sequence (modes, cursor shape, synchronised output) is passed
through as it comes. Anything it cannot follow (an unknown control character) makes
it fall back to sending that write unchanged and to send the next screen whole.
"""
from __future__ import annotations

import re

TOKEN = re.compile(r"\x1b\[(\d*);(\d*)H|\x1b\[([0-9;]*)m"          # cursor position; SGR
                   r"|\x1b\[[0-?]*[ -/]*[@-~]"                       # any other CSI
                   r"|\x1b[P\]_^X][^\x07\x1b]*(?:\x07|\x1b\\)"           # OSC, DCS...: up to their end
                   r"|\x1b[ -/]*[0-~]"                                # two-character escapes
                   r"|\r\n|[\x00-\x1f\x7f]|[^\x00-\x1f\x7f]+")
CLEARS = ("\x1b[?1049h", "\x1b[2J")   # the alternate screen, erase display: a blank screen
ATTRS = {"1": "bold", "4": "underline", "7": "reverse"}
SGR = {"bold": "1", "underline": "4", "reverse": "7"}


class ScreenDiff:
    def __init__(self, width: int = 80, height: int = 24):
        self.resize(width, height)

    def resize(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.shown = [[(" ", frozenset())] * width for _ in range(height)]
        self.valid = False    # the first screen goes whole

    def feed(self, data: str) -> str:
        """What to send the terminal instead of `data`."""
        screen = [row[:] for row in self.shown]
        row = col = 0
        attrs: frozenset = frozenset()
        passthrough: list[str] = []
        for m in TOKEN.finditer(data):
            token = m.group(0)
            if m.group(1) is not None or token == "\x1b[H":
                row = int(m.group(1) or 1) - 1
                col = int(m.group(2) or 1) - 1
            elif m.group(3) is not None:
                codes = m.group(3).split(";") if m.group(3) else ["0"]
                for code in codes:
                    if code in ("0", ""):
                        attrs = frozenset()
                    elif code in ATTRS:
                        attrs = attrs | {ATTRS[code]}
            elif token == "\r\n":
                row, col = row + 1, 0
            elif token == "\n":
                row += 1
            elif token == "\r":
                col = 0
            elif token.startswith("\x1b"):
                passthrough.append(token)
                if token in CLEARS:    # the terminal is blank now, and so is what it shows
                    screen = [[(" ", frozenset())] * self.width for _ in range(self.height)]
                    self.shown = [row[:] for row in screen]
                    self.valid = True
            elif len(token) == 1 and (token < " " or token == "\x7f"):
                if token == "\x07":
                    passthrough.append(token)
                    continue
                self.valid = False
                return data
            else:
                for ch in token:
                    if 0 <= row < self.height and 0 <= col < self.width:
                        screen[row][col] = (ch, attrs)
                    col += 1
        out = "".join(passthrough) + self._changes(screen)
        self.shown = screen
        self.valid = True
        if out:
            out += f"\x1b[{row + 1};{col + 1}H"   # where Textual left the cursor
        return out

    def _changes(self, screen) -> str:
        out: list[str] = []
        current: frozenset | None = None
        for r in range(self.height):
            new, old = screen[r], self.shown[r]
            c = 0
            while c < self.width:
                if self.valid and new[c] == old[c]:
                    c += 1
                    continue
                start = c
                while c < self.width and (not self.valid or new[c] != old[c]
                                          or (c + 1 < self.width and new[c + 1] != old[c + 1])):
                    c += 1
                out.append(f"\x1b[{r + 1};{start + 1}H")
                for ch, attrs in new[start:c]:
                    if attrs != current:
                        out.append("\x1b[0" + "".join(";" + SGR[a] for a in sorted(attrs)) + "m")
                        current = attrs
                    out.append(ch)
        if current:
            out.append("\x1b[0m")
        return "".join(out)
