"""What the terminal can draw: every character written is one its font has.

The Linux console's font is the cp437 set; a serial terminal (vt220) shows ASCII.
Our own screens keep to those, but Textual's widgets draw a few glyphs of their own
(the `•` of a passphrase field, the palette's `▔▁` edges and `…`), and a name or a
message from the central may hold any character. `Fold` turns each character the
terminal lacks into the nearest one it has (`?` when there is none), one cell for
one cell, so the screen's layout stays as Textual computed it. Escape sequences are
ASCII and pass untouched.
"""
from __future__ import annotations

import re

from rich.cells import cell_len

CONSOLE_FONT = frozenset(bytes(range(32, 256)).decode("cp437"))
ASCII = frozenset(chr(c) for c in range(32, 127))

# The nearest character, for those Textual and Rich draw (and common punctuation in text).
NEAREST = {
    "•": "*", "·": ".", "∙": ".", "…": ".", "–": "-", "—": "-", "‘": "'", "’": "'", "“": '"', "”": '"',
    "▔": "-", "▁": "_", "▏": "|", "▕": "|", "▎": "|", "▍": "|", "▌": "|", "▐": "|", "▊": "|", "▋": "|",
    "─": "-", "━": "-", "═": "=", "│": "|", "┃": "|", "║": "|", "╌": "-", "╍": "-", "┄": "-", "┅": "-",
    "┌": "+", "┐": "+", "└": "+", "┘": "+", "├": "+", "┤": "+", "┬": "+", "┴": "+", "┼": "+",
    "╭": "+", "╮": "+", "╰": "+", "╯": "+", "┏": "+", "┓": "+", "┗": "+", "┛": "+",
    "╔": "+", "╗": "+", "╚": "+", "╝": "+", "█": "#", "▓": "=", "▒": ":", "░": ".", "▀": '"', "▄": "_",
    "→": ">", "←": "<", "↑": "^", "↓": "v", "✓": "v", "✔": "v", "✗": "x", "✘": "x", "×": "x",
    "é": "e", "è": "e", "ê": "e", "á": "a", "à": "a", "ó": "o", "ö": "o", "ü": "u", "ñ": "n", "ç": "c",
}


class Fold:
    """Replace every character outside `allowed` with its nearest one that is allowed."""

    OUTSIDE_ASCII = re.compile(r"[^\x00-\x7f]+")

    def __init__(self, allowed: frozenset[str]):
        self.allowed = allowed
        self.cache: dict[str, str] = {}

    def nearest(self, ch: str) -> str:
        if ch in self.allowed:
            return ch
        folded = self.cache.get(ch)
        if folded is None:
            near = NEAREST.get(ch)
            folded = near if near is not None and all(c in self.allowed for c in near) else "?" * max(1, cell_len(ch))
            self.cache[ch] = folded   # a wide character keeps its two cells
        return folded

    def __call__(self, text: str) -> str:
        return self.OUTSIDE_ASCII.sub(lambda m: "".join(map(self.nearest, m.group(0))), text)


FOLDS = {"console": Fold(CONSOLE_FONT), "serial": Fold(ASCII)}
