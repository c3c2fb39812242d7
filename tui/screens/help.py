"""Every key on the screen you came from, and everywhere: read from the one registry of actions."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label

from tui.actions import key_label, offered
from tui.screens.base import Dialog


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
        table.add_column("key", width=12)
        table.add_column("what", width=56)
        for action in self.actions:
            if action.key:
                table.add_row(key_label(action), action.help[:56], key=action.id)
        table.focus()
