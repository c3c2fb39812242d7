"""Review under a grant: a timeline per camera, the still at the cursor, a flipbook (C9, C17, C19).

Everything comes from the API under the grant: the timeline (`footage.timeline`), the
still at the size the picture widget shows (`footage.still` with width and height), the
flipbook (`footage.clip`, its length and rate as the person sets them with F, within
what the API allows). What the grant does not cover is refused by the API and the
refusal is shown with its clause; the screen decides nothing. The Director picks the
stills of a suspension notice here (N, C21).
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Label, Static

from appliance.client import ApiError
from tui.actions import bindings
from tui.format import local, refusal, to_api, window
from tui.screens.base import CustodianScreen, is_director
from tui.screens.dialogs import Field, Fields
from tui.widgets.picture import Picture
from tui.widgets.timeline import STEPS, Timeline

CLIP_SECONDS, CLIP_FPS = 10, 2    # the flipbook asked for until the person sets another (F)
HINT = "Left/Right: earlier/later (PgUp/PgDn: 10 steps). Up/Down: camera. Enter: the still. P: play."


class GrantsScreen(CustodianScreen):
    """Grants you may use now; Enter reviews one."""

    NAME = SCOPE = "grants"
    BINDINGS = bindings("app", "list")

    def body(self) -> ComposeResult:
        yield DataTable(id="grants", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Grant", 10), ("Kind", 15), ("Cameras", 16), ("Window", 16), ("Until", 12)):
            table.add_column(label, width=width)
        self.grants: list[dict] = []

    def fetch(self, call):
        return call("grant.list", {"active_only": True})

    def show(self, answer: dict) -> None:
        self.grants = [g for g in answer["grants"] if g["kind"] in ("review", "imminent_danger")]
        table = self.query_one(DataTable)
        table.clear()
        for g in self.grants:
            table.add_row(g["id"], g["kind"].replace("_", " "), ", ".join(g["cameras"])[:16],
                          window(g["start"], g["end"])[:16], local(g["expires_at"]), key=g["id"])
        self.say("Enter reviews the selected grant." if self.grants else
                 "No grant to review: file an incident and ask the Director (F4).")

    def action_open(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.grants):
            self.app.push_screen(ReviewScreen(self.grants[row]["id"]))

    def on_data_table_row_selected(self, event) -> None:
        self.action_open()


class ReviewScreen(CustodianScreen):
    SCOPE = "review"
    BINDINGS = bindings("app", "review")

    def __init__(self, grant_id: str, danger_use: str | None = None):
        super().__init__()
        self.grant_id = grant_id
        self.danger_use = danger_use
        self.clip: dict | None = None
        self.frame = 0
        self.playing = None
        self.clip_seconds, self.clip_fps = CLIP_SECONDS, CLIP_FPS
        self.notice_stills: list[dict] = []   # picked for a suspension notice (N), until it is made

    def body(self) -> ComposeResult:
        yield Label(f"Grant {self.grant_id}", id="review-title")
        yield Timeline(ascii=self.app.profile.ascii, id="timeline")
        yield Static("", id="axis")
        with Horizontal(id="review-main"):
            yield Picture(mode=self.app.profile.picture, id="picture")
            yield Static("", id="frame-info")

    def refresh_data(self, background: bool = False) -> None:
        if self.query_one(Timeline).cursor is None:   # once: the timeline keeps its cursor and zoom
            self.call("footage.timeline", {"grant": self.grant_id}, self.show_timeline, self.refused)

    def refused(self, e: ApiError) -> None:
        self.say(refusal(e), error=True)
        self.query_one(Picture).say(refusal(e) + (" This screen goes on by itself when it is unsealed."
                                                  if e.code == "sealed" else ""))

    def seal_changed(self, sealed: bool) -> None:
        """The Director unsealed the archive while this screen waited: what was refused comes now."""
        if sealed:
            return
        if self.query_one(Timeline).cursor is None:
            self.refresh_data()
        elif not self.app.profile.pictures_on_request:
            self.action_still()

    def show_timeline(self, answer: dict) -> None:
        timeline = self.query_one(Timeline)
        timeline.load(answer, latest=bool(self.danger_use))
        kind = answer["kind"].replace("_", " ")
        self.query_one("#review-title", Label).update(
            f"Grant {self.grant_id} ({kind}): {window(answer['start'], answer['end'])}")
        self.moved()
        self.say("" if self.note else HINT)
        if not self.app.profile.pictures_on_request:
            self.action_still()

    def moved(self) -> None:
        t = self.query_one(Timeline)
        if t.cursor is None:
            return
        legend = "#=held .=none" if t.ascii else "\u2588 held \u2593 recorded \u2591 none"
        self.query_one("#axis", Static).update(
            f"{t.camera} at {local(to_api(t.cursor), seconds=True)}  step {STEPS[t.zoom]} s  {legend}")

    def action_move(self, steps: int) -> None:
        self.query_one(Timeline).move(steps)
        self.stop_flipbook()
        self.moved()

    def action_camera(self, delta: int) -> None:
        self.query_one(Timeline).change_row(delta)
        self.stop_flipbook()
        self.moved()

    def action_zoom(self, delta: int) -> None:
        self.query_one(Timeline).change_zoom(delta)
        self.moved()

    def still_size(self) -> tuple[int, int]:
        width, height = self.query_one(Picture).pixel_size()
        return max(32, min(320, width)), max(16, min(240, height))

    def action_still(self) -> None:
        t = self.query_one(Timeline)
        if t.cursor is None or t.camera is None:
            return
        width, height = self.still_size()
        self.query_one(Picture).say("asking the central for the still...")
        self.call("footage.still", {"grant": self.grant_id, "camera": t.camera, "at": to_api(t.cursor),
                                    "width": width, "height": height}, self.show_still, self.refused,
                  group="still")

    def show_still(self, still: dict) -> None:
        self.query_one(Picture).show(still)
        self.query_one("#frame-info", Static).update(
            f"{still['camera']}\nasked {local(still['at'], seconds=True)}\n"
            f"shown {local(still['frame_at'], seconds=True)}")
        self.say("" if self.note else HINT)

    # ------------------------------------------------------------------ the flipbook (footage.clip)

    def action_flipbook(self) -> None:
        if self.playing is not None:
            self.stop_flipbook()
            self.say("Paused: S steps one frame, P plays on.")
            return
        if self.clip is not None and self.frame < len(self.clip["frames"]) - 1:
            self.play()
            return
        t = self.query_one(Timeline)
        if t.cursor is None:
            return
        width, _ = self.still_size()
        self.say("asking the central for the flipbook...")
        self.call("footage.clip", {"grant": self.grant_id, "camera": t.camera, "start": to_api(t.cursor),
                                   "seconds": self.clip_seconds, "fps": self.clip_fps, "width": min(160, width)},
                  self.got_clip, self.refused, group="still")

    def action_flipbook_length(self) -> None:
        def whole(text: str, label: str) -> int:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{label}: a whole number") from None

        def chosen(answer: dict | None) -> None:
            if answer:
                self.stop_flipbook()
                self.clip, self.clip_seconds, self.clip_fps = None, answer["seconds"], answer["fps"]
                self.say(f"Flipbook: {self.clip_seconds} s at {self.clip_fps} frames a second. P plays it.")
        fields = [Field("seconds", "Length in seconds", str(self.clip_seconds)),
                  Field("fps", "Frames a second", str(self.clip_fps))]
        self.app.push_screen(Fields("The flipbook", fields, yes="Set",
                                    intro=self.app.summary("footage.clip"),
                                    build=lambda v: {"seconds": whole(v["seconds"], "Length in seconds"),
                                                     "fps": whole(v["fps"], "Frames a second")}), chosen)

    def got_clip(self, clip: dict) -> None:
        self.clip, self.frame = clip, 0
        self.show_frame()
        self.play()

    def play(self) -> None:
        self.playing = self.set_interval(1 / self.clip["fps"], self.action_step)
        self.say("Playing: P pauses, S steps.")

    def stop_flipbook(self) -> None:
        if self.playing is not None:
            self.playing.stop()
            self.playing = None

    def action_step(self) -> None:
        if self.clip is None:
            return
        if self.frame < len(self.clip["frames"]) - 1:
            self.frame += 1
            self.show_frame()
        else:
            self.stop_flipbook()
            self.say("End of the flipbook: P asks for the next one.")

    def show_frame(self) -> None:
        clip, frame = self.clip, self.clip["frames"][self.frame]
        self.query_one(Picture).show({"width": clip["width"], "height": clip["height"], "pixels": frame["pixels"]})
        self.query_one("#frame-info", Static).update(
            f"{clip['camera']}\nframe {self.frame + 1}/{len(clip['frames'])}\n"
            f"{local(frame['frame_at'], seconds=True)}" + (f"\n{len(clip['missing'])} missing" if clip["missing"]
                                                           else ""))

    def action_live_here(self) -> None:
        from tui.screens.live import open_live

        t = self.query_one(Timeline)
        if t.camera:
            reason = "imminent danger" if self.danger_use else "monitoring under a grant"
            open_live(self, t.camera, f"{reason} ({self.grant_id})", self.grant_id)

    def action_notice_still(self) -> None:
        """The Director: the still at the cursor goes into a suspension notice; then the notice's form."""
        from tui.screens.notices import NoticeFormScreen

        t = self.query_one(Timeline)
        if t.cursor is None or t.camera is None:
            return
        if not is_director(self.app):
            self.say("Suspension notices are made by the Director (C21).", error=True)
            return
        still = {"grant": self.grant_id, "camera": t.camera, "at": to_api(t.cursor)}
        if still not in self.notice_stills:
            self.notice_stills.append(still)
        self.stop_flipbook()
        self.app.push_screen(NoticeFormScreen(self.notice_stills))

    def action_back(self) -> None:
        self.stop_flipbook()
        if self.danger_use:
            from tui.screens.incidents import OwedReportScreen
            self.app.pop_screen()
            self.app.push_screen(OwedReportScreen(self.danger_use))
        else:
            super().action_back()
