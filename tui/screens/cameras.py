"""Cameras and their health: placement, recording, view changes (camera.list, no images)."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import DataTable

from tui.actions import bindings
from tui.format import local
from tui.screens.base import CustodianScreen


def health(cam: dict) -> str:
    if cam["status"] != "approved":
        return cam["status"].replace("_", " ")
    if cam.get("offline_since"):
        return "NOT RECORDING"
    if cam.get("view_changed"):
        return "VIEW CHANGED"
    return "recording"


class CamerasScreen(CustodianScreen):
    NAME = SCOPE = "cameras"
    BINDINGS = bindings("app", "list")

    def body(self) -> ComposeResult:
        yield DataTable(id="cameras", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # Widths add up to less than 80 columns: no horizontal scrolling on a console.
        for label, width in (("Camera", 12), ("Location", 26), ("State", 15), ("Last", 7), ("Received", 9)):
            table.add_column(label, width=width)
        self.cameras: list[dict] = []
        self.set_interval(self.app.profile.refresh_seconds, lambda: self.refresh_data(background=True))

    def fetch(self, call):
        return call("camera.list")

    def show(self, answer: dict) -> None:
        if answer["cameras"] == self.cameras:
            return
        self.cameras = answer["cameras"]
        table = self.query_one(DataTable)
        table.clear()
        for cam in self.cameras:
            seq = cam.get("last_segment_seq")
            table.add_row(cam["id"][:12], (cam.get("location") or "")[:26], health(cam),
                          "-" if seq is None else f"#{seq}", local(cam.get("last_segment_at")))
