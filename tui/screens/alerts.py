"""Alerts meant for you (alert.list), newest first; A acknowledges the selected one; Enter opens a breach case."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from tui.actions import bindings
from tui.format import local
from tui.screens.base import CustodianScreen


class AlertsScreen(CustodianScreen):
    NAME = SCOPE = "alerts"
    BINDINGS = bindings("app", "list", "alerts")

    def body(self) -> ComposeResult:
        yield DataTable(id="alerts", cursor_type="row", zebra_stripes=False)
        yield Static("", id="alert-text")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("", 1), ("When", 12), ("Kind", 16), ("Message", 42)):
            table.add_column(label, width=width)
        self.alerts: list[dict] = []

    def fetch(self, call):
        return call("alert.list", {"limit": 200})

    def show(self, answer: dict) -> None:
        self.alerts = answer["alerts"]
        table = self.query_one(DataTable)
        table.clear()
        for a in self.alerts:
            table.add_row(" " if a["acknowledged_by_me"] else "*", local(a["at"]), a["kind"].replace("_", " ")[:16],
                          a["message"][:42], key=a["id"])
        self.app.unacknowledged = answer["unacknowledged"]
        self.app.banner = ""
        self.app.update_status()
        self.say("* not yet acknowledged by you. A acknowledges the selected alert." if self.alerts
                 else "No alerts for you.")

    def alert_arrived(self, alert: dict) -> None:
        self.refresh_data()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = event.cursor_row
        if 0 <= row < len(self.alerts):
            self.query_one("#alert-text", Static).update(self.alerts[row]["message"])

    def selected(self) -> dict | None:
        row = self.query_one(DataTable).cursor_row
        return self.alerts[row] if 0 <= row < len(self.alerts) else None

    def action_open(self) -> None:
        """Enter on a breach report's alert opens its case."""
        alert = self.selected()
        if alert and alert.get("breach"):
            from tui.screens.breaches import BreachCaseScreen, BreachReportScreen
            self.app.push_screen((BreachCaseScreen if self.director else BreachReportScreen)(alert["breach"]))

    def on_data_table_row_selected(self, event) -> None:
        self.action_open()

    def action_acknowledge(self) -> None:
        alert = self.selected()
        if alert:
            self.call("alert.acknowledge", {"alert": alert["id"]}, lambda _: self.refresh_data())

    def action_acknowledge_all(self) -> None:
        ids = [a["id"] for a in self.alerts if not a["acknowledged_by_me"]]
        self.work(lambda call: [call("alert.acknowledge", {"alert": i}) for i in ids], lambda _: self.refresh_data())
