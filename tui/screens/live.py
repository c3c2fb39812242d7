"""Live view (C8): open a live view with its purpose, watch frames at the profile's rate, close it.

The Director sees everyone's open live views (live.list) and may close any; frames are
shown to the view's owner only (the API refuses anyone else's).
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from appliance.client import ApiError
from tui.actions import bindings
from tui.format import local, parse, refusal
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import AskText
from tui.widgets.picture import Picture


def open_live(screen, camera: str, purpose: str, grant: str | None = None) -> None:
    """live.open, then the live view. Called from the live list and from a live grant's review."""
    args = {"camera": camera, "purpose": purpose} | ({"grant": grant} if grant else {})
    screen.call("live.open", args, lambda answer: screen.app.push_screen(LiveViewScreen(answer["view"])))


class LiveScreen(CustodianScreen):
    NAME = SCOPE = "live"
    BINDINGS = bindings("app", "list", "live")

    def body(self) -> ComposeResult:
        yield DataTable(id="views", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("View", 10), ("Who", 10), ("Camera", 12), ("Until", 8), ("Purpose", 29)):
            table.add_column(label, width=width)
        self.views: list[dict] = []

    def fetch(self, call):
        names = {u["id"]: u["name"] for u in call("user.list")["users"]} if self.director else {}
        return names, call("live.list")["views"], call("camera.list")["cameras"]

    def show(self, answer) -> None:
        names, self.views, cameras = answer
        self.cameras = [c["id"] for c in cameras if c["status"] == "approved"]
        table = self.query_one(DataTable)
        table.clear()
        for v in self.views:
            table.add_row(v["id"], names.get(v["user"], "you" if v["user"] == self.app.user["id"] else v["user"])[:10],
                          v["camera"][:12], local(v["until"]), v["purpose"][:29], key=v["id"])
        self.say(f"O opens a live view ({', '.join(self.cameras)}); Enter watches yours; C closes.")

    def action_open_session(self) -> None:
        def camera_given(camera: str | None) -> None:
            if camera:
                def purpose_given(purpose: str | None) -> None:
                    if purpose:
                        open_live(self, camera, purpose)
                self.app.push_screen(AskText("Live view", "Purpose (in the audit log):", min_len=3), purpose_given)
        first = self.cameras[0] if self.cameras else ""
        self.app.push_screen(AskText("Live view", f"Camera ({', '.join(self.cameras)}):", value=first), camera_given)

    def selected(self) -> dict | None:
        row = self.query_one(DataTable).cursor_row
        return self.views[row] if 0 <= row < len(self.views) else None

    def action_open(self) -> None:
        v = self.selected()
        if v:
            self.app.push_screen(LiveViewScreen(v))

    def on_data_table_row_selected(self, event) -> None:
        self.action_open()

    def action_close_session(self) -> None:
        v = self.selected()
        if v:
            self.call("live.close", {"view": v["id"]}, lambda _: self.refresh_data())


class LiveViewScreen(CustodianScreen):
    SCOPE = "live-view"
    BINDINGS = bindings("app", "live-view")

    def __init__(self, view: dict):
        super().__init__()
        self.view = view

    def body(self) -> ComposeResult:
        # Said from the start, frame or not: which camera, and what for (two lines at most, marked if cut).
        purpose = self.view["purpose"] if len(self.view["purpose"]) <= 120 else self.view["purpose"][:117] + "..."
        yield Static(f"Live: {self.view['camera']}  purpose: {purpose}", id="live-title", markup=False)
        with Horizontal(id="review-main"):
            yield Picture(mode=self.app.profile.picture, id="picture")
            yield Static("", id="frame-info")

    def on_mount(self) -> None:
        self.until = parse(self.view["until"])
        self.set_interval(self.app.profile.live_seconds, self.next_frame)

    def refresh_data(self, background: bool = False) -> None:
        """On showing the screen (and after a reconnect): the latest frame now."""
        self.next_frame()

    def next_frame(self) -> None:
        self.call("live.frame", {"view": self.view["id"]}, self.show_frame, self.no_frame,
                  background=True, group="frame")

    def show_frame(self, frame: dict) -> None:
        self.query_one(Picture).show(frame)
        left = max(0, int((self.until - parse(frame["at"])).total_seconds())) if frame.get("at") else 0
        self.query_one("#frame-info", Static).update(
            f"frame {local(frame.get('at'), seconds=True)}\nopen until {local(self.view['until'])}\n"
            f"about {left // 60} min left\nC closes")

    def no_frame(self, e: ApiError) -> None:
        self.query_one(Picture).say(refusal(e)[:60])
        if e.code == "refused":
            self.say(refusal(e), error=True)

    def action_close_session(self) -> None:
        self.call("live.close", {"view": self.view["id"]}, lambda _: self.action_back())

