"""Small modal questions: confirm exactly what will happen; ask for one line of text."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Input, Label, Static

from tui.screens.base import Dialog


class Confirm(Dialog):
    """Says exactly what will happen; Y or Enter on Yes goes ahead, N or Escape does not."""

    BINDINGS = Dialog.BINDINGS + [Binding("y", "answer(True)", "Yes", id="yes"),
                                  Binding("n", "answer(False)", "No", id="no")]

    def __init__(self, title: str, text: str, yes: str = "Yes"):
        super().__init__()
        self.title_text, self.text, self.yes = title, text, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Static(self.text, id="confirm-text")
            yield Button(f"{self.yes} (Y)", id="yes", compact=True, variant="primary")
            yield Button("No (N)", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#yes").focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class AskText(Dialog):
    """One line of text (a reason, a purpose, a passphrase); Enter answers it."""

    def __init__(self, title: str, prompt: str, *, password: bool = False, value: str = "", min_len: int = 0):
        super().__init__()
        self.title_text, self.prompt, self.password, self.value, self.min_len = title, prompt, password, value, min_len

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Label(self.prompt)
            yield Input(value=self.value, password=self.password, id="answer", compact=True)
            yield Static("", id="message")

    def on_mount(self) -> None:
        field = self.query_one(Input)
        field.cursor_blink = False
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value if self.password else event.value.strip()
        if len(text) < self.min_len:
            self.say(f"at least {self.min_len} characters, please", error=True)
            return
        self.dismiss(text)
