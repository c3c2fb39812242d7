"""Small modal questions: confirm exactly what will happen; ask for one line of text; a few fields."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, OptionList, Static

from tui.actions import bindings
from tui.format import parse_local
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


@dataclass(frozen=True)
class Field:
    """One line of a `Fields` dialog: text typed, or one of `choices` ((value, text) pairs)."""

    name: str                  # the API's argument name; the API's label for it wins over `label`
    label: str
    value: str = ""
    hint: str = ""
    choices: tuple = ()
    time: bool = False         # a time typed as people do (tui.format.parse_local): checked where it is typed


class Fields(Dialog):
    """A few fields answered together: Enter on the last one, or F5.

    `build(values)` turns what was typed into the API's arguments (a ValueError, such
    as a time that is not one, is said here). With `op` the dialog sends them itself,
    after the confirmation `confirm(args)` returns (if any), and stays open on a
    refusal, which it shows with its clause: nothing typed is lost. It answers the
    API's result, or (without `op`) the arguments; Escape answers None. Labels are the
    API's own (`GET /v1/operations`) where it names the argument."""

    BINDINGS = bindings("app", "form")
    sending = False      # sent (or asking to confirm): until the answer, F5 does nothing

    def __init__(self, title: str, fields: list[Field], *, intro: str = "", op: str | None = None,
                 build: Callable[[dict], dict] | None = None, confirm: Callable[[dict], str] | None = None,
                 yes: str = "Send"):
        super().__init__()
        self.title_text, self.fields, self.intro, self.op = title, fields, intro, op
        self.build, self.confirm, self.yes = build, confirm, yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            if self.intro:
                yield Static(self.intro, classes="dialog-intro")
            for f in self.fields:
                label = self.app.label(self.op, f.name, f.label) if self.op else f.label
                if f.choices:
                    yield Label(f"{label}:")
                    yield OptionList(*(text for _, text in f.choices), id=f.name, compact=True,
                                     classes="choices")
                else:
                    with Horizontal(classes="row"):
                        yield Label(f"{label}:", classes="field-label")
                        yield Input(value=f.value, placeholder=f.hint, id=f.name, compact=True)
            yield Static("", id="message")
            yield Button(f"{self.yes} (F5)", id="go", compact=True)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        for choice in self.query(OptionList):
            choice.highlighted = 0
        self.query_one(f"#{self.fields[0].name}").focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.wrong_time(event.input.id):
            return
        if event.input is list(self.query(Input))[-1]:
            self.action_submit()
        else:
            self.focus_next()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.focus_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_submit()

    def discard_question(self) -> str:
        """Asked before what was typed is thrown away ("": nothing typed beyond what the dialog offered)."""
        typed = any(self.query_one(f"#{f.name}", Input).value.strip() != f.value.strip()
                    for f in self.fields if not f.choices)
        return f"{self.title_text}: discard what you typed?" if typed else ""

    def action_back(self) -> None:
        """Escape: with something typed it asks first (a stray key loses nothing), else closes."""
        question = self.discard_question()
        if question:
            self.app.ask_to_discard(question, lambda: self.dismiss(None))
        else:
            self.dismiss(None)

    def values(self) -> dict:
        values = {}
        for f in self.fields:
            if f.choices:
                values[f.name] = f.choices[self.query_one(f"#{f.name}", OptionList).highlighted or 0][0]
            else:
                values[f.name] = self.query_one(f"#{f.name}", Input).value.strip()
        return values

    def wrong_time(self, *names: str) -> bool:
        """Whether one of these fields (all, without names) holds what is not a time: said, with the cursor on it."""
        for f in self.fields:
            text = self.query_one(f"#{f.name}", Input).value if f.time else ""
            if text.strip() and (not names or f.name in names):
                try:
                    parse_local(text)
                except ValueError as e:
                    self.say(str(e), error=True)
                    self.query_one(f"#{f.name}").focus()
                    return True
        return False

    def action_submit(self) -> None:
        if self.sending or self.wrong_time():
            return      # a second F5 while the first is on its way would send it twice
        try:
            args = self.build(self.values()) if self.build else self.values()
        except ValueError as e:
            self.say(str(e), error=True)
            return
        self.sending = True
        if self.confirm is None:
            self.send(args)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.send(args)
            else:
                self.sending = False
        self.app.push_screen(Confirm(self.title_text, self.confirm(args), yes=self.yes), answered)

    def send(self, args: dict) -> None:
        if self.op is None:
            self.dismiss(args)
        else:
            self.say("asking the central...")
            self.call(self.op, args, self.dismiss, self.refused)

    def show_error(self, e) -> None:
        self.sending = False      # refused (or the central did not answer): F5 may send it again
        super().show_error(e)

    def refused(self, e) -> None:
        """Said here, with its clause; the field the API names (`field`) gets the cursor."""
        self.show_error(e)
        for field in self.query(f"#{e.field}") if e.field and e.field.isidentifier() else ():
            field.focus()
