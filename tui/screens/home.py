"""Home: what needs your attention first, for your role (the API's attention.summary).

Each line opens its screen with one key (1-9, or Enter on the line). The list refreshes
itself as a background call (it never extends the session) and at once on a new alert.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Label

from tui.actions import bindings
from tui.screens.base import CustodianScreen
from tui.screens.registry import ITEM_SCREENS

MARK = {"action": "!", "warning": "!", "info": " ", "ok": " "}


class HomeScreen(CustodianScreen):
    NAME = SCOPE = "home"
    is_home = True
    BINDINGS = bindings("app", "list", "home") + [Binding(str(n), f"item({n})", show=False, id=f"item-{n}")
                                          for n in range(1, 10)]

    def body(self) -> ComposeResult:
        yield Label("What needs your attention (press its number, or Enter on it):", id="home-title")
        yield DataTable(id="items", cursor_type="row", zebra_stripes=False, show_header=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("key", width=3)
        table.add_column("what", width=72)
        self.items: list[dict] = []
        self.set_interval(self.app.profile.refresh_seconds, lambda: self.refresh_data(background=True))

    def fetch(self, call):
        return call("attention.summary")

    def show(self, summary: dict) -> None:
        self.app.sealed = summary["sealed"]
        self.app.update_status()
        if summary["items"] == self.items:
            return   # nothing changed: nothing repainted (serial lines are slow)
        self.items = summary["items"]
        table = self.query_one(DataTable)
        table.clear()
        for n, item in enumerate(self.items, start=1):
            key = str(n) if n <= 9 and ITEM_SCREENS.get(item["item"]) else ""
            table.add_row(f"{MARK[item['severity']]}{key}", item["text"][:72], key=item["item"])

    def alert_arrived(self, alert: dict) -> None:
        self.refresh_data(background=True)

    def action_item(self, n: int) -> None:
        if 0 < n <= len(self.items):
            self.open_item(self.items[n - 1])

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if self.items and table.cursor_row < len(self.items):
            self.open_item(self.items[table.cursor_row])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def open_item(self, item: dict) -> None:
        target = ITEM_SCREENS.get(item["item"])
        if target == "incident_owed":
            from tui.screens.incidents import OwedReportScreen
            self.app.push_screen(OwedReportScreen(item["ids"][0]))
        elif target:
            self.app.action_go(target)
