"""The Custodian terminal UI: a client of the central's local API, nothing more.

It never opens files, keys or the records database: every screen asks the API,
and the API decides. Blocking calls run in thread workers that post results back
(Harlequin's rule), so a slow answer never freezes the screen.

Works at 80x24 with the keyboard alone on a serial line, SSH or the Linux console:
plain borders, no cursor blink, letters and F-keys for actions.
"""
from __future__ import annotations

import os

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.scrollbar import ScrollBarRender
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from appliance.client import ApiClient, ApiError


# The Linux console font and serial terminals lack eighth-block glyphs: draw scrollbar
# thumbs with colour only.
ScrollBarRender.VERTICAL_BARS = [" "] * 8
ScrollBarRender.HORIZONTAL_BARS = [" "] * 8
HEADER_ICON = "*"   # the default icon is a glyph the console font lacks


def _serial_profile() -> bool:
    return os.environ.get("TERM", "") in ("vt220", "vt100", "linux") or bool(os.environ.get("CUSTODIAN_SERIAL"))


class LoginScreen(Screen):
    BINDINGS = [Binding("escape", "app.quit", "Quit", id="quit")]

    def compose(self) -> ComposeResult:
        with Vertical(id="login-box"):
            yield Label("Custodian: library video surveillance", id="title")
            yield Label("Confidential records of the Library. Staff only.", id="subtitle")
            yield Input(placeholder="user name", id="user", compact=True)
            yield Input(placeholder="passphrase", password=True, id="passphrase", compact=True)
            yield Label("", id="login-error")
            yield Button("Log in", id="login", compact=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#user", Input).focus()

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
            self.query_one("#login-error", Label).update("Enter your user name and passphrase.")
            return
        self.login(user, passphrase)

    @work(thread=True, exclusive=True)
    def login(self, user: str, passphrase: str) -> None:
        try:
            result = self.app.api.login(user, passphrase)
        except ApiError as e:
            self.app.call_from_thread(self.query_one("#login-error", Label).update, e.message)
            self.app.call_from_thread(setattr, self.query_one("#passphrase", Input), "value", "")
            return
        self.app.call_from_thread(self.app.logged_in, result)


class PolicyScreen(Screen):
    """First login: read and acknowledge the policy (C22)."""

    BINDINGS = [Binding("a", "acknowledge", "Acknowledge", id="ack"),
                Binding("escape", "app.quit", "Quit", id="quit")]

    def __init__(self, text: str, version: str):
        super().__init__()
        self.text, self.version = text, version

    def compose(self) -> ComposeResult:
        yield Header(icon=HEADER_ICON)
        yield Label("Read the video surveillance policy, then press A to acknowledge it.")
        with VerticalScroll(id="policy"):
            yield Static(self.text)
        yield Footer(show_command_palette=False)

    def action_acknowledge(self) -> None:
        self.acknowledge()

    @work(thread=True, exclusive=True)
    def acknowledge(self) -> None:
        try:
            self.app.api.call("policy.acknowledge", {"version": self.version})
        except ApiError as e:
            self.app.call_from_thread(self.app.notify, e.message, severity="error")
            return
        self.app.call_from_thread(self.app.show_home)


class CamerasScreen(Screen):
    """Cameras and their latest segment, refreshed every few seconds."""

    BINDINGS = [Binding("r", "refresh", "Refresh", id="refresh"),
                Binding("x", "app.releases", "Releases", id="releases"),
                Binding("q", "app.quit", "Quit", id="quit")]

    def compose(self) -> ComposeResult:
        yield Header(icon=HEADER_ICON)
        yield Label("", id="status")
        yield DataTable(id="cameras", cursor_type="row", zebra_stripes=False)
        yield Label("", id="detail")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # Widths add up to less than 80 columns: no horizontal scrolling on a console.
        for label, width in (("Camera", 12), ("Location", 22), ("Status", 17), ("Last", 7), ("Received", 8)):
            table.add_column(label, width=width)
        self.action_refresh()
        self.set_interval(5.0, self.action_refresh)

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            cameras = self.app.api.call("camera.list")["cameras"]
            sealed = self.app.api.call("archive.status")["sealed"]
        except ApiError as e:
            self.app.call_from_thread(self.query_one("#status", Label).update, f"Error: {e.message}")
            return
        self.app.call_from_thread(self.show, cameras, sealed)

    def show(self, cameras: list[dict], sealed: bool) -> None:
        user = self.app.api.user or {}
        self.query_one("#status", Label).update(
            f"{user.get('name', '')} ({user.get('role', '')})  archive: {'SEALED' if sealed else 'unsealed'}"
            f"  cameras: {len(cameras)}")
        table = self.query_one(DataTable)
        self.cameras = {cam["id"]: cam for cam in cameras}
        table.clear()
        for cam in cameras:
            seq = cam.get("last_segment_seq")
            received = (cam.get("last_segment_at") or "")[11:19] or "-"
            table.add_row(cam["id"][:12], (cam.get("location") or "")[:22], cam.get("status", "")[:17],
                          "-" if seq is None else f"#{seq}", received, key=cam["id"])
        if not cameras:
            self.query_one("#detail", Label).update("")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted camera's pairing fingerprint: IT compares it with the camera's log."""
        cam = getattr(self, "cameras", {}).get(event.row_key.value if event.row_key else None)
        if cam is None:
            return
        pairing = cam.get("pairing_fingerprint")
        self.query_one("#detail", Label).update(
            f"{cam['id']}: pairing fingerprint {pairing}" if pairing else f"{cam['id']}: enrolled by key")


class CustodianApp(App):
    CSS_PATH = "custodian.tcss"
    # The palette's footer hint draws an eighth-block glyph the Linux console lacks.
    ENABLE_COMMAND_PALETTE = False
    TITLE = "Custodian"
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", id="quit-app", show=False)]

    def __init__(self, socket_path: str):
        super().__init__()
        self.api = ApiClient(socket_path)
        if _serial_profile():
            self.animation_level = "none"

    def on_mount(self) -> None:
        self.push_screen(LoginScreen())

    def logged_in(self, result: dict) -> None:
        if result.get("must_acknowledge_policy"):
            self.load_policy()
        else:
            self.show_home()

    @work(thread=True)
    def load_policy(self) -> None:
        policy = self.api.call("policy.text")
        self.call_from_thread(self.switch_screen, PolicyScreen(policy["text"], policy["version"]))

    def show_home(self) -> None:
        self.switch_screen(CamerasScreen())

    def action_releases(self) -> None:
        from tui.exports import ReleasesScreen

        self.push_screen(ReleasesScreen())


def run_tui(socket_path: str) -> int:
    CustodianApp(socket_path).run()
    return 0
