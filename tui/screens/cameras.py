"""Cameras and their health (camera.list, no images); the Director decides where a camera points (C5, C6).

A new camera records nothing until the Director approves its placement from a view
the camera itself sent (`camera.snapshot`, audited); a camera whose view changed
waits for her again. Enter (or P) on such a camera opens its placement: the view,
where it is, its masks, when the view was taken; A approves and D rejects, each
with her note. The API decides (no entrance sign on record: C5; no view, a stale
one, or one taken before the current masks: C6) and its refusal is shown with its
clause where the note was typed.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from appliance.client import ApiError
from tui.actions import bindings
from tui.format import local
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import Field, Fields
from tui.widgets.picture import Picture


def health(cam: dict) -> str:
    if cam["status"] != "approved":
        return cam["status"].replace("_", " ")
    if cam.get("offline_since"):
        return "NOT RECORDING"
    if cam.get("view_changed"):
        return "VIEW CHANGED"
    return "recording"


def waiting(cam: dict) -> bool:
    """Waiting for the Director: new, or its view departed from the approved one (the home items count these)."""
    return cam["status"] == "pending_placement" or (cam["status"] == "approved" and bool(cam.get("view_changed")))


def decidable(cam: dict) -> bool:
    """Whether the API takes a placement decision on it: waiting, or rejected (IT may have re-aimed it)."""
    return waiting(cam) or cam["status"] == "rejected"


class CamerasScreen(CustodianScreen):
    NAME = SCOPE = "cameras"
    BINDINGS = bindings("app", "list", "cameras")

    def __init__(self):
        super().__init__()
        self.cameras: list[dict] = []

    def body(self) -> ComposeResult:
        yield DataTable(id="cameras", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # Widths add up to less than 80 columns: no horizontal scrolling on a console.
        for label, width in (("Camera", 12), ("Location", 26), ("State", 15), ("Last", 7), ("Received", 9)):
            table.add_column(label, width=width)
        self.set_interval(self.app.profile.refresh_seconds, lambda: self.refresh_data(background=True))

    def check_action(self, action: str, parameters) -> bool | None:
        """Enter and P are offered on a camera awaiting a placement decision, to the Director alone."""
        allowed = super().check_action(action, parameters)
        if allowed and action in ("open", "placement"):
            cam = self.selected() if self.is_mounted else None
            return self.director and cam is not None and decidable(cam)
        return allowed

    def fetch(self, call):
        return call("camera.list")

    def show(self, answer: dict) -> None:
        if answer["cameras"] == self.cameras:
            return
        first = not self.cameras
        kept = (self.selected() or {}).get("id")
        self.cameras = answer["cameras"]
        table = self.query_one(DataTable)
        table.clear()
        for cam in self.cameras:
            seq = cam.get("last_segment_seq")
            table.add_row(cam["id"][:12], (cam.get("location") or "")[:26], health(cam),
                          "-" if seq is None else f"#{seq}", local(cam.get("last_segment_at")), key=cam["id"])
        ids = [c["id"] for c in self.cameras]
        if kept in ids and not first:
            row = ids.index(kept)
        else:   # the Director comes here to decide (the home item): the cursor on the first camera waiting for her
            row = next((n for n, c in enumerate(self.cameras) if self.director and waiting(c)), 0)
        table.move_cursor(row=row)
        self.selection_changed()

    def selected(self) -> dict | None:
        if not self.cameras:
            return None
        row = self.query_one(DataTable).cursor_row
        return self.cameras[row] if 0 <= row < len(self.cameras) else None

    def selection_changed(self) -> None:
        self.refresh_bindings()
        cam = self.selected()
        if not self.director:
            self.say("")
        elif cam and decidable(cam):
            self.say(f"Enter or P: the view of {cam['id']}, to approve or reject where it points (C6).")
        else:
            others = [c["id"] for c in self.cameras if waiting(c)]
            self.say(f"Waiting for your placement decision: {', '.join(others)}." if others else "")

    def on_data_table_row_highlighted(self, event) -> None:
        if self.cameras:
            self.selection_changed()

    def on_data_table_row_selected(self, event) -> None:
        self.action_placement()

    def action_open(self) -> None:
        self.action_placement()

    def action_placement(self) -> None:
        cam = self.selected()
        if self.director and cam and decidable(cam):
            self.app.push_screen(PlacementScreen(cam))


class PlacementScreen(CustodianScreen):
    """One camera's latest view (camera.snapshot, audited as camera.snapshot_view), where it is, its masks;
    A approves where it points, D rejects it, each with the Director's note."""

    SCOPE = "placement"
    BINDINGS = bindings("app", "placement")

    def __init__(self, camera: dict):
        super().__init__()
        self.camera = camera                 # as camera.list gave it; asked again with each view
        self.image: dict | None = None
        self.asked = not self.app.profile.pictures_on_request   # serial: the view is asked for (V), not sent unasked
        self.fetched = False                 # one view per showing: coming back from a dialog asks nothing again

    def body(self) -> ComposeResult:
        yield Static(f"Where {self.camera['id']} points: approve or reject it from its own view (C5, C6)",
                     id="placement-title", markup=False)
        with Horizontal(id="placement-main"):
            yield Picture(mode=self.app.profile.picture, id="picture")
            yield Static("", id="placement-info", markup=False)

    def refresh_data(self, background: bool = False) -> None:
        if not self.fetched:
            self.fetched = True
            self.work(self.fetch, self.show, self.fetch_failed, background=background)

    def action_refresh(self) -> None:
        self.fetched = False
        self.refresh_data()

    def action_draw(self) -> None:
        if not self.asked or self.image is None:
            self.asked = True
            self.action_refresh()

    def fetch(self, call):
        cam = next((c for c in call("camera.list")["cameras"] if c["id"] == self.camera["id"]), self.camera)
        image, missing = None, ""
        if self.asked:
            try:
                image = call("camera.snapshot", {"camera": cam["id"]})
            except ApiError as e:
                if e.code != "not_found":
                    raise
                missing = e.message      # no view since the central started: the node sends one soon
        return cam, image, missing

    def fetch_failed(self, e: ApiError) -> None:
        self.fetched = False
        self.show_error(e)

    def show(self, data) -> None:
        self.camera, self.image, missing = data
        picture = self.query_one(Picture)
        if self.image is not None:
            picture.show(self.image)
        elif not self.asked:
            picture.say("V draws the camera's view.")
        else:
            picture.say(f"No view: {missing} R asks again.")
        self.query_one("#placement-info", Static).update(self.info())
        self.refresh_bindings()
        if not decidable(self.camera):
            self.say(f"{self.camera['id']} is {health(self.camera)}: no placement decision is waiting.")
        else:
            self.say(("" if self.asked else "V draws the view. ") + "A approves where it points (it starts "
                     "recording), D rejects it; each asks for your note. R: a newer view.")

    def info(self) -> str:
        cam = self.camera
        size = cam.get("resolution")
        masks = "; ".join(f"{x},{y} {w}x{h}" for x, y, w, h in cam.get("masks") or []) or "none"
        lines = [cam["id"], f"Where: {cam['location']}", f"Category: {cam['category'].replace('_', ' ')}",
                 f"State: {health(cam)}"]
        if cam.get("view_changed"):
            lines.append(f"View difference: {cam.get('view_difference')}")
        lines.append(f"View taken {local(self.image['at'], seconds=True)}" if self.image else "View: none shown")
        lines.append(f"Masks: {masks}" + (f" (of {size[0]}x{size[1]})" if size else ""))
        return "\n".join(lines)

    def check_action(self, action: str, parameters) -> bool | None:
        """A and D are offered while a decision is waiting on this camera."""
        allowed = super().check_action(action, parameters)
        if allowed and action in ("approve", "reject"):
            return decidable(self.camera)
        if allowed and action == "draw":
            return self.app.profile.pictures_on_request
        return allowed

    def action_approve(self) -> None:
        cam = self.camera
        taken = f"the view taken {local(self.image['at'], seconds=True)}" if self.image else "its latest view"
        self.decide("Approve", "camera.approve_placement",
                    lambda a: f"Approve where {cam['id']} points ({cam['location']}), from {taken}? It starts "
                              f"recording within seconds.\nNote: {a['note']}")

    def action_reject(self) -> None:
        cam = self.camera
        self.decide("Reject", "camera.reject_placement",
                    lambda a: f"Reject where {cam['id']} points ({cam['location']})? It records nothing until "
                              f"you approve a new view (IT can re-aim it).\nNote: {a['note']}")

    def decide(self, verb: str, op: str, confirm) -> None:
        """The note, then exactly what will happen; a refusal (C5, C6) is said in the dialog, the note kept."""
        camera = self.camera["id"]

        def decided(answer: dict | None) -> None:
            if answer:
                cam = answer["camera"]
                below = self.app.screen_stack[-2]
                below.note = (f"{camera} approved: it starts recording." if cam["status"] == "approved" else
                              f"{camera} {health(cam)}: it records nothing.")
                self.app.pop_screen()
        self.app.push_screen(Fields(f"{verb} where {camera} points", [Field("note", "Your note",
                                                                           hint="what you checked on the view")],
                                    intro="Kept in the audit log.", op=op, yes=verb, confirm=confirm,
                                    build=lambda v: {"camera": camera, "note": v["note"]}), decided)
