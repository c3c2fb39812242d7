"""Imminent danger from every screen (C19): one key, a reason, the cameras, a confirmation;
then at once the recent footage and the live view; afterwards the incident report it owes,
filed new or linked to one already filed."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Label, Static

from tui.actions import bindings
from tui.format import local
from tui.screens.base import Dialog
from tui.screens.dialogs import Confirm
from tui.screens.incidents import IncidentDetailScreen, IncidentFormScreen, IncidentsScreen


def start_imminent(app) -> None:
    def cameras_known(answer: dict) -> None:
        cameras = [c["id"] for c in answer["cameras"] if c["status"] == "approved"]
        app.push_screen(DangerDialog(cameras), asked)

    def asked(args: dict | None) -> None:
        if not args:
            return
        text = (f"Imminent danger on {', '.join(args['cameras'])}.\nAt once you get the last "
                f"{args['minutes_back']} minutes of recordings and 60 minutes of live view; the Director is "
                "alerted now and reviews this use afterwards.\nYou must then file an incident report (C19).\n"
                f"Reason: {args['reason']}")

        def confirmed(yes: bool | None) -> None:
            if yes:
                app.screen.call("imminent.invoke", args, invoked)
        app.push_screen(Confirm("IMMINENT DANGER", text, yes="Invoke"), confirmed)

    def invoked(answer: dict) -> None:
        from tui.screens.review import ReviewScreen

        app.push_screen(ReviewScreen(answer["grant"]["id"], danger_use=answer["request"]["id"]))
        app.notify_line("The Director has been alerted. L: live view of the camera at the cursor. "
                        "Escape: file the incident report.")

    app.screen.call("camera.list", None, cameras_known)


class DangerDialog(Dialog):
    def __init__(self, cameras: list[str]):
        super().__init__()
        self.cameras = cameras

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("IMMINENT DANGER (C19)", classes="dialog-title")
            with Horizontal(classes="row"):
                yield Label("The danger:", classes="field-label")
                yield Input(id="reason", compact=True)
            with Horizontal(classes="row"):
                yield Label("Cameras:", classes="field-label")
                yield Input(value=", ".join(self.cameras), id="cameras", compact=True)
            with Horizontal(classes="row"):
                yield Label("Minutes back (1-30):", classes="field-label")
                yield Input(value="15", id="minutes", compact=True)
            yield Static("", id="message")
            yield Button("Go on (Enter)", id="go", compact=True, variant="error")

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#reason").focus()

    def on_input_submitted(self, event) -> None:
        self.finish()

    def on_button_pressed(self, event) -> None:
        self.finish()

    def finish(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        cameras = [c.strip() for c in self.query_one("#cameras", Input).value.split(",") if c.strip()]
        try:
            minutes = int(self.query_one("#minutes", Input).value)
        except ValueError:
            self.say("Minutes back: a whole number", error=True)
            return
        if not reason:
            self.say("Say what the danger is.", error=True)
            self.query_one("#reason").focus()
            return
        self.dismiss({"reason": reason, "cameras": cameras, "minutes_back": minutes})


class OwedReportScreen(IncidentsScreen):
    """The report an imminent-danger use owes (C19): N files a new one; Enter links one already filed.

    The incidents listed are those the API shows this person; which of them may be linked
    (staff: only their own) is the API's to say, with its clause."""

    NAME, SCOPE = "", "owed"
    BINDINGS = bindings("app", "list", "owed")

    def __init__(self, use_id: str):
        super().__init__()
        self.use_id = use_id

    def body(self) -> ComposeResult:
        yield Label(f"Imminent-danger use {self.use_id} owes an incident report (C19): file a new one, or "
                    "link one you already filed.", id="owed-title")
        yield from super().body()

    def show(self, answer: dict) -> None:
        super().show(answer)
        self.say("Enter links the selected incident to this use; N files a new report." if self.incidents
                 else "No incident filed yet: N files the report.")

    def action_new(self) -> None:
        self.app.pop_screen()
        self.app.push_screen(IncidentFormScreen(link_use=self.use_id))

    def action_open(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if not 0 <= row < len(self.incidents):
            return
        incident = self.incidents[row]

        def answered(yes: bool | None) -> None:
            if yes:
                self.call("imminent.link_incident", {"request": self.use_id, "incident": incident["id"]},
                          lambda _: self.linked(incident["id"]))
        self.app.push_screen(Confirm("Link the incident report", (
            f"Link imminent-danger use {self.use_id} to incident {incident['id']}: "
            f"{incident['grounds'].replace('_', ' ')}, {local(incident['occurred_at'])}, {incident['location']}?\n"
            "Its grant then belongs to that incident too."), yes="Link"), answered)

    def linked(self, incident_id: str) -> None:
        self.app.pop_screen()
        self.app.push_screen(IncidentDetailScreen(incident_id))
        self.app.notify_line(f"Use {self.use_id} linked to incident {incident_id}.")
