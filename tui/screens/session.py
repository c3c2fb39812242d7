"""First login: the policy to acknowledge (C22); a temporary passphrase to replace; changing your own."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from tui.screens.base import CustodianScreen


class PolicyScreen(CustodianScreen):
    """Read the video surveillance policy, then acknowledge it (C22)."""

    NAME = "policy"
    BINDINGS = [Binding("a", "acknowledge", "Acknowledge", id="ack"),
                Binding("escape,f10", "app.logout", "Log out", id="logout")]

    def __init__(self, text: str, version: str):
        super().__init__()
        self.text, self.version = text, version

    def body(self) -> ComposeResult:
        yield Label("Read the video surveillance policy, then press A to acknowledge it.")
        with VerticalScroll(id="policy"):
            yield Static(self.text)

    def action_acknowledge(self) -> None:
        self.call("policy.acknowledge", {"version": self.version}, lambda _: self.app.after_login())


class PassphraseScreen(CustodianScreen):
    """Choose a passphrase: forced after a temporary one set by IT or the Director, or any time."""

    NAME = "passphrase"
    # Forced, Escape logs out (action_back): said in the footer, as on the policy screen.
    BINDINGS = [Binding("f10", "app.logout", "Log out", id="logout")]

    def __init__(self, forced: bool = False):
        super().__init__()
        self.forced = forced

    def body(self) -> ComposeResult:
        with Vertical(id="form"):
            if self.forced:
                yield Label("Your passphrase was set by someone else: choose your own before going on.")
            yield Label("Current passphrase")
            yield Input(password=True, id="old", compact=True)
            yield Label("New passphrase (at least 10 characters)")
            yield Input(password=True, id="new", compact=True)
            yield Label("New passphrase again")
            yield Input(password=True, id="again", compact=True)
            yield Button("Change passphrase", id="change", compact=True)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#old").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "again":
            self.change()
        else:
            self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.change()

    def change(self) -> None:
        old, new, again = (self.query_one(f"#{i}", Input).value for i in ("old", "new", "again"))
        if new != again:
            self.say("The two new passphrases differ.", error=True)
            return
        self.call("user.change_passphrase", {"old": old, "new": new}, self.changed)

    def action_back(self) -> None:
        if self.forced:
            self.app.action_logout()
        else:
            super().action_back()

    def changed(self, _result) -> None:
        self.app.notify_line("Passphrase changed.")
        if self.forced:
            self.app.after_login()
        else:
            self.action_back()
