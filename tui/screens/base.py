"""What every screen after the login shares: the status line, the message line, the footer,
and API calls in thread workers that post their results back to the screen.

A worker never touches widgets: it hands the answer to `call_from_thread`. Errors
are sorted once, in the app (`App.api_failed`): the central not answering, the
session ended, or a refusal shown on this screen's message line with its clause.
"""
from __future__ import annotations

from typing import Callable

from textual.app import ComposeResult
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from appliance.client import ApiError
from tui.actions import bindings, directors_actions
from tui.format import refusal


def is_director(app) -> bool:
    """Whether the person logged in is the Director or an acting director (for what a screen offers;
    the API decides what she may do)."""
    return bool(app.user) and (app.user.get("role") == "director" or bool(app.user.get("acting_director")))


def has_widgets(screen) -> bool:
    """Whether `screen` can be painted now. `is_attached` alone is not enough: a pushed screen is
    on top before it has composed its widgets, and a popped one loses them before it leaves."""
    return screen.is_attached and screen.is_mounted and not _being_removed(screen)


def _being_removed(screen) -> bool:
    return getattr(screen, "_pruning", False)   # Textual marks a node it is removing (no public name for it)


def when_shown(screen, fn: Callable, *args) -> None:
    """Run `fn(*args)` in the UI thread once `screen` has its widgets: now if it has them, after its
    mount if it is still composing (its own queue runs only then), never once it has been popped.
    Every answer and every piece of news for a screen goes through here."""
    if has_widgets(screen):
        fn(*args)
    elif screen.is_attached and not screen.is_mounted and not _being_removed(screen):
        screen.call_later(fn, *args)


class ApiCalls:
    """Mixin: `call` / `work` run API calls in a thread worker and post the result back."""

    def work(self, fn: Callable, then: Callable | None = None, failed: Callable | None = None, *,
             background: bool = False, group: str = "api") -> None:
        """Run `fn(call)` in a thread, where `call(op, args)` calls the API; then `then(result)`.

        Calls in the default group all run (a decision must never be cancelled by the
        refresh that follows it); a named group ("still", "frame", "check") keeps only
        its latest call, since an older answer is no longer wanted."""
        app = self.app

        def call(op: str, args: dict | None = None) -> dict:
            return app.api_call(op, args, background=background)

        def run() -> None:
            try:
                result = fn(call)
            except ApiError as e:
                app.call_from_thread(app.api_failed, e, self, failed)
                return
            except Exception as e:   # never a traceback on screen
                app.call_from_thread(app.api_failed, ApiError("internal", f"unexpected error: {e}"), self, failed)
                return
            if then is not None:
                app.call_from_thread(self._deliver, then, result)

        self.run_worker(run, thread=True, group=group, exclusive=group != "api", exit_on_error=False)

    def _deliver(self, then: Callable, result) -> None:
        when_shown(self, then, result)

    def call(self, op: str, args: dict | None = None, then: Callable | None = None,
             failed: Callable | None = None, *, background: bool = False, group: str = "api") -> None:
        self.work(lambda call: call(op, args), then, failed, background=background, group=group)

    def show_error(self, e: ApiError | str) -> None:
        self.say(refusal(e) if isinstance(e, ApiError) else e, error=True)

    def say(self, text: str, error: bool = False) -> None:
        for line in self.query("#message"):
            line.update(text)
            line.set_class(error, "error")


class StatusLine(Static):
    """Who is logged in, the archive's seal, new alerts, the session's idle time, the central's state.

    One line, two when there is news (an alert, the central not answering); composed with
    its text so that the first paint is the only one (a serial line pays for each)."""

    def __init__(self, app, **kwargs):
        text, warn = app.status_text()
        super().__init__(text, classes=self._classes(text, warn), **kwargs)

    @staticmethod
    def _classes(text: str, warn: bool) -> str:
        return " ".join(c for c, on in (("warn", warn), ("two", "\n" in text)) if on)

    def update_from(self, app) -> None:
        text, warn = app.status_text()
        if str(self.content) != text:
            self.update(text)
        self.set_class(warn, "warn")
        self.set_class("\n" in text, "two")


class CustodianScreen(ApiCalls, Screen):
    """A screen after the login: status line, body, message line, footer."""

    NAME = ""
    BINDINGS = bindings("app")
    preloaded = None          # data fetched before the screen was shown: painted once, with it
    note = ""                 # what was just done: said before the screen's own hints until the next key

    def compose(self) -> ComposeResult:
        yield StatusLine(self.app, id="status")
        yield from self.body()
        yield Static(self.note, id="message")
        yield Footer(show_command_palette=False)

    def __init__(self, *args, **kwargs):

        super().__init__(*args, **kwargs)
        # The Director (or an acting director in her period) is logged in: what her screens show.
        # Known when the screen is made (in the UI thread): `fetch` reads it in a worker thread.
        self.director = is_director(self.app)

    def check_action(self, action: str, parameters) -> bool | None:
        """The Director's actions (`director` in the registry) are shown and bound for her alone;
        the API decides all the same."""
        if action == "danger":
            return self.app.check_action(action, parameters)   # the help lists F9 only where the app offers it
        return not (action in directors_actions(type(self)) and not self.director)

    def say(self, text: str, error: bool = False) -> None:
        if self.note and not error and not text.startswith(self.note):
            text = f"{self.note} {text}".strip()
        super().say(text, error)

    def body(self) -> ComposeResult:
        return iter(())

    def on_screen_resume(self) -> None:
        for line in self.query(StatusLine):
            line.update_from(self.app)
        self.refresh_data()

    def fetch(self, call):
        """The data this screen shows, from `call(op, args)` (in a worker thread); None: nothing."""
        return None

    def show(self, data) -> None:
        """Paint what `fetch` returned."""

    def refresh_data(self, background: bool = False) -> None:
        """Ask the central again (on showing the screen, on R, after a reconnect)."""
        if self.preloaded is not None:
            data, self.preloaded = self.preloaded, None
            self.show(data)
        elif type(self).fetch is not CustodianScreen.fetch:
            self.work(self.fetch, self.show, background=background)

    def discard_question(self) -> str:
        """What to ask before leaving throws away what was typed here ("": nothing to lose)."""
        return ""

    def action_back(self) -> None:
        """Escape: a screen with something typed asks first (Escape, or an F-key: App.action_go)."""
        question = self.discard_question()
        if question:
            self.app.ask_to_discard(question, self._back)
        else:
            self._back()

    def _back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_refresh(self) -> None:
        self.refresh_data()


class Dialog(ApiCalls, ModalScreen):
    """A modal question over the current screen; Escape answers None."""

    BINDINGS = bindings("app")   # the danger key works from every dialog too

    def action_back(self) -> None:
        self.dismiss(None)

    def say(self, text: str, error: bool = False) -> None:
        for line in self.query("#message"):
            line.update(text)
            line.set_class(error, "error")
