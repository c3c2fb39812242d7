"""The archive's seal: everyone sees it in the status line; the Director unseals and seals here."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from tui.actions import bindings
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import AskText, Confirm


class SealScreen(CustodianScreen):
    NAME = SCOPE = "seal"
    BINDINGS = bindings("app", "seal")
    sealed: bool | None = None

    def body(self) -> ComposeResult:
        yield Static("", id="seal-text")

    def fetch(self, call):
        return call("archive.status")

    def check_action(self, action: str, parameters) -> bool | None:
        """Unseal while it is sealed, seal while it is not: the keys offered are the ones that do something."""
        if (action in ("unseal", "unseal_recovery") and self.sealed is False) or (action == "seal" and self.sealed):
            return False
        return super().check_action(action, parameters)

    def show(self, answer: dict) -> None:
        self.sealed = self.app.sealed = answer["sealed"]
        self.app.update_status()
        self.refresh_bindings()
        if answer["sealed"]:
            text = "The archive is SEALED: cameras record, nobody can review or export recordings."
            todo = "U unseals it with your passphrase; K with the recovery code." if self.director else \
                "Only the Director can unseal it."
        else:
            text = "The archive is UNSEALED: recordings can be reviewed under grants."
            todo = "S seals it now." if self.director else "Only the Director can seal it."
        self.query_one("#seal-text", Static).update(f"{text}\n\n{todo}")

    def seal_changed(self, sealed: bool) -> None:
        self.refresh_data()

    def action_unseal(self, key: str = "passphrase") -> None:
        def given(secret: str | None) -> None:
            if secret:
                self.say("Opening the archive key: this takes a few seconds...")
                self.call("archive.unseal", {key: secret}, lambda _: self.done("Archive unsealed: recordings can "
                                                                               "be reviewed under grants."))
        prompt = "Your passphrase:" if key == "passphrase" else "The recovery code (six groups of five, from the printout):"
        self.app.push_screen(AskText("Unseal", prompt, password=True), given)

    def action_unseal_recovery(self) -> None:
        self.action_unseal("recovery_code")

    def action_seal(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.call("archive.seal", None, lambda _: self.done("Archive sealed: review and export stop until "
                                                                    "you unseal it."))
        self.app.push_screen(Confirm("Seal the archive", "Seal now? Review and export stop until you unseal it.",
                                     yes="Seal"), answered)

    def done(self, what: str) -> None:
        self.note = what
        self.say("")
        self.refresh_data()
