"""The Custodian terminal UI: a client of the central's local API, nothing more.

It never opens files, keys or the records database: every screen asks the API, and
the API decides. Screens live in `tui/screens/` (one file each), widgets in
`tui/widgets/`, every key in one registry (`tui/actions.py`) that the footer, the
help screen and the command palette read. Blocking calls run in thread workers that
post results back, so a slow answer never freezes the screen.

The app keeps the session's state: who is logged in, the archive's seal, new alerts
(a long poll, `session.watch`, brings them at once), the idle time left, and whether
the central answers. Only a person's key presses extend the session: refreshes and
the watch are background calls, and a key press tells the central at most every 30 s.
"""
from __future__ import annotations

import os
import threading
import time
from functools import partial

import textual.constants
from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from rich.segment import Segment
from rich.style import Style
from textual.filter import LineFilter
from textual.scrollbar import ScrollBarRender

from appliance.client import ApiClient, ApiError
from tui.actions import display, key_label, offered
from tui.profiles import Profile, color_system_for, detect
from tui.screens.login import LoginScreen
from tui.serial_output import ScreenDiff

# The Linux console font and serial terminals lack eighth-block glyphs: scrollbar thumbs in colour only.
ScrollBarRender.VERTICAL_BARS = [" "] * 8
ScrollBarRender.HORIZONTAL_BARS = [" "] * 8

TOUCH_EVERY = 30.0       # a key press tells the central at most this often (the idle rule)
WATCH_WAIT = 20          # seconds the long poll waits for an alert or a change of the seal
IDLE_WARNING = 180.0     # show the time left when less than this


class PlainText(LineFilter):
    """No colour at all: keep only reverse, bold and underline, and send nothing for plain text.

    Each styled run costs an escape sequence on the line; a serial terminal at 115200
    baud pays for every byte, and shows no colour anyway (reverse video marks the cursor).
    """

    def apply(self, segments: list[Segment], background) -> list[Segment]:
        plain = []
        for text, style, control in segments:
            if style is not None and not control:
                kept = Style(reverse=style.reverse or None, bold=style.bold or None,
                             underline=style.underline or None)
                style = kept if kept else None
            plain.append(Segment(text, style, control))
        return list(Segment.simplify(plain))


# The role in the status line, as people say it (not the API's role codes).
ROLE_WORDS = {"director": "the Director", "staff": "staff", "it": "IT staff"}


def may_invoke_danger(user: dict | None) -> bool:
    """Staff and the Director (C19: "any staff member"); IT never sees pictures (C8), so F9 is not offered."""
    return bool(user) and user.get("role") != "it"


class CustodianApp(App):
    CSS_PATH = "custodian.tcss"
    TITLE = "Custodian"
    COMMAND_PALETTE_BINDING = "ctrl+p"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", id="quit-app", show=False)]

    def __init__(self, socket_path: str, profile: str | Profile | None = None,
                 demo_accounts: list[tuple[str, str, str]] | None = None, env: dict | None = None):
        env = dict(os.environ if env is None else env)
        self.profile = profile if isinstance(profile, Profile) else detect(env, profile)
        colors = color_system_for(self.profile, env)
        # Textual renders "no colour system" as truecolour: take the 16 colours and strip them below.
        textual.constants.COLOR_SYSTEM = colors or "standard"
        super().__init__()
        if colors is None:
            self._filters.append(PlainText())   # serial: no colour assumed, and none sent
        self.api = ApiClient(socket_path, timeout=60)
        self.operations: dict = {}   # GET /v1/operations: each operation's summary and argument labels
        self.demo_accounts = demo_accounts
        self.watch_wait = WATCH_WAIT
        if not self.profile.animation:
            self.animation_level = "none"
        if self.profile.ascii:
            from textual.widgets._toggle_button import ToggleButton
            ToggleButton.BUTTON_LEFT, ToggleButton.BUTTON_INNER, ToggleButton.BUTTON_RIGHT = "[", "X", "]"
        self._reset_session_state()

    def _reset_session_state(self) -> None:
        self.session_gen = getattr(self, "session_gen", 0) + 1
        self.user: dict | None = None
        self.sealed: bool | None = None
        self.unacknowledged = 0
        self.latest_alert: str | None = None
        self.banner = ""
        self.idle_left: float | None = None
        self.idle_at = time.monotonic()
        self.last_touch = 0.0
        self.central_ok = True
        self.lost_once = False

    # ------------------------------------------------------------------ start

    def on_unmount(self) -> None:
        self.session_gen += 1   # the watch thread stops at its next answer

    def on_mount(self) -> None:
        self.add_class(self.profile.css_class)
        self.push_screen(LoginScreen(demo_accounts=self.demo_accounts))
        self.set_interval(15, self.update_status)

    def on_event(self, event: events.Event):
        if isinstance(event, events.Key) and getattr(self.screen, "note", ""):
            self.screen.note = ""   # what was just done has been read: the person moves on
        # Only a person's key presses extend the session: tell the central (at most every 30 s).
        if isinstance(event, events.Key) and self.user and time.monotonic() - self.last_touch > TOUCH_EVERY:
            self.last_touch = time.monotonic()
            self.run_worker(self._touch, thread=True, group="touch", exclusive=True, exit_on_error=False)
        return super().on_event(event)

    def _touch(self) -> None:
        try:
            answer = self.api.call("session.whoami")
        except ApiError:
            return   # the next call from a screen or the watch reports what went wrong
        self.call_from_thread(self._idle, answer.get("idle_left"))

    # ------------------------------------------------------------------ API calls from screens

    def api_call(self, op: str, args: dict | None = None, *, background: bool = False) -> dict:
        """Called in worker threads. A person's call (not `background`) counts as activity."""
        if not background:
            self.last_touch = time.monotonic()
        return self.api.call(op, args, background=background)

    def api_failed(self, e: ApiError, screen, failed=None) -> None:
        """Every error from a worker comes here (in the UI thread): sorted once for every screen."""
        from tui.screens.base import when_shown

        if e.code == "unavailable":
            self.connection_lost(e.message)
            self._tell(screen, "show_error", "The central is not answering; retrying.")
        elif e.code == "not_authenticated" and self.user:
            self.session_ended(e.message)
        elif e.code == "passphrase_change_required":
            from tui.screens.session import PassphraseScreen
            self.switch_screen(PassphraseScreen(forced=True))
        elif e.code == "policy_ack_required":
            self.load_policy()
        elif failed is not None:
            when_shown(screen, failed, e)
        else:
            self._tell(screen, "show_error", e)

    # ------------------------------------------------------------------ the session

    def logged_in(self, result: dict) -> None:
        self.user = result["user"]
        self.last_touch = time.monotonic()
        if result.get("must_change_passphrase"):
            from tui.screens.session import PassphraseScreen
            self.switch_screen(PassphraseScreen(forced=True))
        elif result.get("must_acknowledge_policy"):
            self.load_policy()
        else:
            self.after_login()

    def load_policy(self) -> None:
        from tui.screens.session import PolicyScreen

        def show(policy: dict) -> None:
            self.switch_screen(PolicyScreen(policy["text"], policy["version"]))
        # Asked by our topmost screen: Textual's own (the command palette) make no API calls.
        asking = next(s for s in reversed(self.screen_stack) if hasattr(s, "call"))
        asking.call("policy.text", None, show)

    def after_login(self) -> None:
        """The policy acknowledged and the passphrase the person's own: home, and the watch."""
        from tui.screens.home import HomeScreen

        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(HomeScreen())
        self.start_watch()
        if not self.operations:
            self.run_worker(self._load_operations, thread=True, group="operations", exit_on_error=False)

    def _load_operations(self) -> None:
        try:
            operations = self.api.operations()
        except ApiError:
            return   # the forms fall back to their own labels
        self.call_from_thread(setattr, self, "operations", operations)

    def label(self, op: str, arg: str, fallback: str) -> str:
        """The API's own label for an argument (what its refusals call it), else `fallback`."""
        return self.operations.get(op, {}).get("labels", {}).get(arg, fallback)

    def summary(self, op: str, fallback: str = "") -> str:
        """The API's one-line summary of an operation (its limits, e.g. the flipbook's)."""
        return self.operations.get(op, {}).get("summary", fallback)

    def session_ended(self, reason: str) -> None:
        """Back to the login with the reason; nothing of the last screen stays."""
        if self.lost_once and "log in again" in reason and "restart" not in reason:
            reason = "The central restarted, which ended your session: log in again."
        self.api.token = None
        self._reset_session_state()
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(LoginScreen(reason=reason, demo_accounts=self.demo_accounts))

    def action_logout(self) -> None:
        api = self.api

        def logout() -> None:
            try:
                api.logout()
            except ApiError:
                pass
        self.run_worker(logout, thread=True, exit_on_error=False)
        self.session_ended("You logged out.")

    # ------------------------------------------------------------------ the watch (long poll)

    def start_watch(self) -> None:
        # A daemon thread, not a worker: quitting must not wait for a long poll to come back.
        threading.Thread(target=self._watch_loop, args=(self.session_gen,), name="watch", daemon=True).start()

    def _watch_loop(self, gen: int) -> None:
        first = True
        while gen == self.session_gen:
            args = {"wait": 0 if first else self.watch_wait}
            if self.latest_alert:
                args["after"] = self.latest_alert
            if self.sealed is not None:
                args["sealed"] = self.sealed
            try:
                answer = self.api.call("session.watch", args, background=True)
            except ApiError as e:
                if gen != self.session_gen or not self.is_running:
                    return
                try:
                    self.call_from_thread(self._watch_failed, e, gen)
                except RuntimeError:
                    return
                if e.code in ("not_authenticated", "passphrase_change_required", "policy_ack_required"):
                    return
                time.sleep(2)
                continue
            first = False
            if gen != self.session_gen:
                return
            try:
                self.call_from_thread(self._watched, answer, gen)
            except RuntimeError:   # the app has quit
                return

    def _watch_failed(self, e: ApiError, gen: int) -> None:
        if gen == self.session_gen and self.is_running:
            self.api_failed(e, self.screen)

    def _watched(self, answer: dict, gen: int) -> None:
        # Not running: the app is closing its screens (the stack may be empty) before its unmount ends the watch.
        if gen != self.session_gen or not self.is_running:
            return
        if not self.central_ok:
            self.central_ok = True
            self._tell_screen("say", "The central answers again.")
            self._tell_screen("refresh_data")
        fresh = [a for a in answer["alerts"]]
        if self.latest_alert is not None and fresh:
            newest = fresh[-1]
            self.banner = f"NEW ALERT: {newest['message']}"[:200]
            self.bell()
            self._tell_screen("alert_arrived", newest)
        self.latest_alert = answer["latest"] or self.latest_alert or "alr-000000"
        self.unacknowledged = answer["unacknowledged"]
        changed = self.sealed is not None and answer["sealed"] != self.sealed
        self.sealed = answer["sealed"]
        if changed:
            self._tell_screen("seal_changed", self.sealed)
        self._idle(answer.get("idle_left"))

    def _tell_screen(self, hook: str, *args) -> None:
        self._tell(self.screen, hook, *args)

    def _tell(self, screen, hook: str, *args) -> None:
        """News for `screen` if it has `hook` (Textual's own, like the command palette, have no message
        line); one still mounting hears it once it has its widgets."""
        from tui.screens.base import when_shown

        if hasattr(screen, hook):
            when_shown(screen, getattr(screen, hook), *args)

    def _idle(self, idle_left: float | None) -> None:
        self.idle_left, self.idle_at = idle_left, time.monotonic()
        self.update_status()

    def connection_lost(self, message: str) -> None:
        if self.central_ok:
            self.central_ok = False
            self.lost_once = True
            self.update_status()

    # ------------------------------------------------------------------ the status line

    def status_text(self) -> tuple[str, bool]:
        if not self.user:
            return "Custodian", False
        role = ("acting director" if self.user.get("acting_director")
                else ROLE_WORDS.get(self.user.get("role", ""), self.user.get("role", "")))
        parts = [f"Custodian | {self.user.get('name')} ({role})"]
        if self.sealed is not None and self.central_ok:   # while it does not answer, nobody knows
            parts.append("archive SEALED" if self.sealed else "archive unsealed")
        if self.unacknowledged:
            parts.append(f"{self.unacknowledged} alert{'s' if self.unacknowledged != 1 else ''} (F3)")
        warn = False
        if self.idle_left is not None:
            left = self.idle_left - (time.monotonic() - self.idle_at)
            if left < IDLE_WARNING:
                parts.append(f"idle: ends in {max(0, int(left // 60) + 1)} min")
                warn = True
        text = " | ".join(parts)
        if not self.central_ok:
            text += "\nThe central is not answering; retrying."
            warn = True
        elif self.banner:
            # One line: what does not fit is cut with a pointer to the alerts screen, which shows it all.
            room = max(20, self.size.width - 2)
            text += "\n" + (self.banner if len(self.banner) <= room else self.banner[:room - 8].rstrip() + "... (F3)")
            warn = True
        return text, warn

    def update_status(self) -> None:
        from tui.screens.base import StatusLine

        if not self.is_running:   # closing: its screens are going (a worker's answer can still come)
            return
        for line in self.screen.query(StatusLine):
            line.update_from(self)

    def notify_line(self, text: str) -> None:
        """Say what was just done on the screen now shown; it stays through the screen's repaint."""
        if hasattr(self.screen, "note"):
            self.screen.note = text
        if hasattr(self.screen, "say"):
            self.screen.say(text)

    # ------------------------------------------------------------------ going places

    def check_action(self, action: str, parameters) -> bool | None:
        from textual.screen import ModalScreen

        if action == "go" and isinstance(self.screen, ModalScreen):
            return False     # a question on screen is answered (or Escaped) first: F-keys do not leave it
        if action in ("go", "danger") and not self.at_work():
            return False     # choosing one's passphrase, or reading the policy: the API opens nothing else yet
        if action == "danger":
            return may_invoke_danger(self.user)
        return True

    def at_work(self) -> bool:
        """Logged in, her own passphrase chosen and the policy acknowledged: home is under every screen."""
        return bool(self.user) and len(self.screen_stack) >= 2 and getattr(self.screen_stack[1], "is_home", False)

    def ask_to_discard(self, question: str, then) -> None:
        """Ask before what was typed is thrown away (Escape, or an F-key that leaves); `then()` on yes."""
        from tui.screens.dialogs import Confirm

        self.push_screen(Confirm(question, "What you typed here is lost.", yes="Discard"),
                         lambda yes: then() if yes else None)

    def action_go(self, name: str) -> None:
        if not self.at_work():
            return
        # Leaving by an F-key closes every screen above home: one with something typed asks first, as Escape does.
        question = next((q for s in reversed(self.screen_stack[2:]) if (q := getattr(s, "discard_question", str)())), "")
        if question:
            self.ask_to_discard(question, lambda: self._go(name))
        else:
            self._go(name)

    def _go(self, name: str) -> None:
        from tui.screens import registry
        from tui.screens.base import CustodianScreen

        if name == "alerts":
            self.banner = ""
        screen = None if name == "home" else registry.make(name, self)

        def show(data=None) -> None:
            while len(self.screen_stack) > 2:
                self.pop_screen()
            if screen is not None:
                screen.preloaded = data
                self.push_screen(screen)
        if screen is not None and type(screen).fetch is not CustodianScreen.fetch:
            # Fetched first, painted once with its data: a serial line pays for every repaint.
            self.screen.work(screen.fetch, show)
        else:
            show()

    def action_danger(self) -> None:
        from tui.screens.imminent import start_imminent

        if may_invoke_danger(self.user):
            start_imminent(self)

    def action_report_breach(self) -> None:
        from tui.screens.breaches import report_breach

        if self.user:
            report_breach(self)

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(self.screen))

    def get_driver_class(self):
        """Console and serial: only the characters the terminal's font has (tui/glyphs.py); serial:
        only the cells that changed (tui/serial_output.py)."""
        from tui.glyphs import FOLDS

        base = super().get_driver_class()
        fold = FOLDS.get(self.profile.name)
        if fold is None:
            return base
        diff = ScreenDiff() if self.profile.ascii else None
        app = self

        class TerminalFont(base):
            def write(self, data: str) -> None:
                data = fold(data)
                if diff is not None:
                    try:
                        width, height = app.size
                    except Exception:
                        width, height = diff.width, diff.height
                    if (width, height) != (diff.width, diff.height):
                        diff.resize(width, height)
                    data = diff.feed(data)
                super().write(data)
        return TerminalFont

    def _handle_exception(self, error: Exception) -> None:
        """Quitting as a screen opens: the app removes its widgets before that screen's on_mount looks them
        up. Nothing is left to paint then, so that NoMatches is no error to show (or to exit with)."""
        from textual.css.query import NoMatches

        if isinstance(error, NoMatches) and (self._exit or not self.is_running):   # _exit: exit() was called
            return
        super()._handle_exception(error)

    def get_key_display(self, binding) -> str:
        return display(binding.key)

    def get_system_commands(self, screen):
        """The command palette lists the same actions as the help screen (one registry)."""
        for action in offered(screen):
            namespace = self if action.action.startswith("app.") else screen
            title, _, more = action.help.partition(": ") if action.scope == "app" else (action.label, "", action.help)
            key = key_label(action) if action.key else ""   # its key, so that next time it is one press
            yield SystemCommand(title, " - ".join(t for t in (key, more) if t),
                                partial(self.run_action, action.action.removeprefix("app."), namespace))


def run_tui(socket_path: str, profile: str | None = None, demo_accounts=None) -> int:
    CustodianApp(socket_path, profile=profile, demo_accounts=demo_accounts).run()
    return 0
