"""Every key on the screen you came from, and everywhere: read from the one registry of actions."""
from __future__ import annotations

import textwrap

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from tui.actions import key_label, offered
from tui.screens.base import Dialog


WHAT = 60   # columns for what a key does: the dialog is 76 wide


class HelpScreen(Dialog):
    def __init__(self, under):
        super().__init__()
        self.actions = offered(under)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help"):
            yield Label("Keys (Escape closes; ctrl+p searches them)", classes="dialog-title")
            yield DataTable(id="keys", cursor_type="row", zebra_stripes=False, show_header=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("key", width=10)
        table.add_column("what", width=WHAT)
        for action in self.actions:
            if action.key:   # the whole text: a row is as many lines as it needs
                table.add_row(key_label(action), Text(textwrap.fill(action.help, WHAT - 2)), key=action.id, height=None)
        table.focus()
