"""Imminent danger from every screen (C19): one key, a reason, the cameras, a confirmation;
then at once the recent footage and the live view; afterwards the incident report it owes,
filed new or linked to one already filed."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from tui.format import names
from tui.screens.base import Dialog
from tui.screens.dialogs import Confirm


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
        cameras = names(self.query_one("#cameras", Input).value)
        try:
            minutes = int(self.query_one("#minutes", Input).value)
        except ValueError:
            self.say("Minutes back: a whole number", error=True)
            return
        if not reason:
            self.say("Say what the danger is.", error=True)
            self.query_one("#reason").focus()
            return
        args = {"reason": reason, "cameras": cameras, "minutes_back": minutes}
        # The API checks it first: a refusal (too short a reason, a camera misspelt, minutes out of
        # range) is said here, with what was typed still in the fields, not after the confirmation.
        self.call("imminent.invoke", args | {"check_only": True}, lambda _: self.dismiss(args), self.show_error)
