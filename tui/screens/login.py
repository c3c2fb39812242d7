"""The login: user name and passphrase; why the last session ended; the demo's accounts in demo mode."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from tui.screens.base import ApiCalls
from tui.screens.dialogs import Confirm


class LoginScreen(ApiCalls, Screen):
    BINDINGS = [Binding("escape", "quit", "Quit", id="quit")]

    def __init__(self, reason: str = "", demo_accounts: list[tuple[str, str, str]] | None = None):
        super().__init__()
        self.reason = reason
        self.demo_accounts = demo_accounts or []

    def compose(self) -> ComposeResult:
        with Vertical(id="login-box"):
            yield Label("Custodian: library video surveillance", id="title")
            yield Label("Confidential records of the Library. Staff only.", id="subtitle")
            yield Input(placeholder="user name", id="user", compact=True)
            yield Input(placeholder="passphrase", password=True, id="passphrase", compact=True)
            yield Static(self.reason, id="message", classes="error" if self.reason else "")
            yield Button("Log in", id="login", compact=True)
        if self.demo_accounts:
            lines = "\n".join(f"  {role:9} {name:9} {passphrase}" for role, name, passphrase in self.demo_accounts)
            yield Static(f"Demo accounts (demo data only):\n{lines}", id="demo-accounts")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#user", Input).focus()
        # The app's first screen: on a loaded machine Textual sometimes renders its styled frame while
        # an update batch is open and drops it (App._display), leaving bare fields with no words until
        # a resize. Whole repaints once start-up is over put it right (a serial line: no bytes if none was lost).
        for delay in (0.5, 2.0):
            self.set_timer(delay, self.refresh)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "user":
            self.query_one("#passphrase", Input).focus()
        else:
            self.attempt()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.attempt()

    def attempt(self) -> None:
        user = self.query_one("#user", Input).value.strip()
        passphrase = self.query_one("#passphrase", Input).value
        if not user or not passphrase:
            self.say("Enter your user name and passphrase.", error=True)
            return
        self.say("Logging in...")
        self.work(lambda call: self.app.api.login(user, passphrase), self.app.logged_in, self.failed)

    def failed(self, e) -> None:
        self.query_one("#passphrase", Input).value = ""
        self.query_one("#passphrase", Input).focus()
        self.show_error(e)

    def action_quit(self) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                self.app.exit()
        what = "Quit the terminal?" + (" This also stops the demo (its central and cameras)."
                                       if self.demo_accounts else "")
        self.app.push_screen(Confirm("Quit", what, yes="Quit"), answered)
