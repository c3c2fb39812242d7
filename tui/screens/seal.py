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

    def body(self) -> ComposeResult:
        yield Static("", id="seal-text")

    def fetch(self, call):
        return call("archive.status")

    def show(self, answer: dict) -> None:
        self.app.sealed = answer["sealed"]
        self.app.update_status()
        state = ("SEALED: cameras record, nobody can review or export recordings." if answer["sealed"]
                 else "UNSEALED: recordings can be reviewed under grants.")
        self.query_one("#seal-text", Static).update(
            f"The archive is {state}\n\nU unseals with your passphrase; K with the recovery code.\n"
            "S seals it now.")

    def action_unseal(self, key: str = "passphrase") -> None:
        def given(secret: str | None) -> None:
            if secret:
                self.call("archive.unseal", {key: secret}, lambda _: self.refresh_data())
        prompt = "Your passphrase:" if key == "passphrase" else "The recovery code:"
        self.app.push_screen(AskText("Unseal", prompt, password=True), given)

    def action_unseal_recovery(self) -> None:
        self.action_unseal("recovery_code")

    def action_seal(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.call("archive.seal", None, lambda _: self.refresh_data())
        self.app.push_screen(Confirm("Seal the archive", "Seal now? Review and export stop until you unseal it.",
                                     yes="Seal"), answered)
