"""Releases to law enforcement, and building one onto a medium with its progress shown.

Talks only to the API (release.list, release.build, release.build_status): the central
checks everything and does the work; this screen shows what it says. The progress bar
is ASCII (`[#####.....]`), which every terminal the appliance serves can draw.
"""
from __future__ import annotations

from textual import work
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from appliance.client import ApiError

HEADER_ICON = "*"
BAR_WIDTH = 30
POLL_SECONDS = 0.5


def progress_line(build: dict) -> str:
    """`[#########.....................]  30%  cam-a: segment 3`"""
    filled = BAR_WIDTH * build["percent"] // 100
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {build['percent']:3d}%  {build['step']}"[:78]


class ReleasesScreen(Screen):
    """Every release (release.list) with its package state; B builds the selected one."""

    BINDINGS = [Binding("b", "build", "Build package", id="build-package"),
                Binding("r", "refresh", "Refresh", id="refresh-releases"),
                Binding("escape", "app.pop_screen", "Back", id="back")]

    def compose(self):
        yield Header(icon=HEADER_ICON)
        yield Label("Releases to law enforcement. B: build the selected one onto a medium.", id="status")
        yield DataTable(id="releases", cursor_type="row", zebra_stripes=False)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Release", 11), ("Instrument", 11), ("Cameras", 18), ("Recipient", 20),
                             ("Package", 9)):
            table.add_column(label, width=width)
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        try:
            releases = self.app.api.call("release.list")["releases"]
        except ApiError as e:
            self.app.call_from_thread(self.query_one("#status", Label).update, f"Error: {e.message}")
            return
        self.app.call_from_thread(self.show, releases)

    def show(self, releases: list[dict]) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for r in releases:
            if r.get("sealed"):       # a sealed warrant's release, seen by an acting director
                table.add_row(r["id"], r["instrument"], "(sealed)", "", "", key=r["id"])
                continue
            table.add_row(r["id"], r["instrument"], ", ".join(r["cameras"])[:18], r["recipient"][:20],
                          (r.get("package") or {}).get("status", "")[:9], key=r["id"])

    def action_build(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return
        release = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.app.push_screen(BuildScreen(release))


class BuildScreen(Screen):
    """Where to, on what, taken by whom; then the build's progress until it ends."""

    BINDINGS = [Binding("f2", "toggle_encrypt", "Encrypt on/off", id="toggle-encrypt"),
                Binding("escape", "app.pop_screen", "Back", id="back")]

    def __init__(self, release: str):
        super().__init__()
        self.release = release
        self.encrypt = True
        self.build_id: str | None = None
        self.timer = None
        self.passphrase_note = ""
        self.seen: list[str] = []          # every progress line shown (the tests read it)

    def compose(self):
        yield Header(icon=HEADER_ICON)
        with Vertical(id="build-form"):
            yield Label(f"Build the evidence package of {self.release}", id="title")
            yield Input(placeholder="destination folder on the appliance, e.g. /media/usb", id="to", compact=True)
            yield Input(placeholder="medium, e.g. USB stick SanDisk 32 GB, tag 4411", id="medium", compact=True)
            yield Input(placeholder="taken by, e.g. Det. R. Lane, Chariton PD", id="taken-by", compact=True)
            # markup=False: "[x]", "[####...]" and paths are text, not Rich markup.
            yield Label("", id="encrypt", markup=False)
            yield Label("", id="progress", markup=False)
            yield Static("", id="outcome", markup=False)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#to", Input).focus()
        self.show_encrypt()

    def show_encrypt(self) -> None:
        self.query_one("#encrypt", Label).update(
            f"[{'x' if self.encrypt else ' '}] encrypted ZIP (F2 changes it); Enter in the last field starts")

    def action_toggle_encrypt(self) -> None:
        if self.build_id is None:
            self.encrypt = not self.encrypt
            self.show_encrypt()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        order = ["to", "medium", "taken-by"]
        if event.input.id != order[-1]:
            self.query_one(f"#{order[order.index(event.input.id) + 1]}", Input).focus()
        elif self.build_id is None:
            self.start()

    @work(thread=True, exclusive=True)
    def start(self) -> None:
        args = {"release": self.release, "to": self.query_one("#to", Input).value.strip(),
                "medium": self.query_one("#medium", Input).value.strip(),
                "taken_by": self.query_one("#taken-by", Input).value.strip(), "encrypt": self.encrypt}
        try:
            started = self.app.api.call("release.build", args)
        except ApiError as e:
            clause = f" (policy {e.clause})" if e.clause else ""
            self.app.call_from_thread(self.query_one("#outcome", Static).update, f"Refused: {e.message}{clause}")
            return
        self.build_id = started["build"]["build"]
        if started.get("passphrase"):
            self.passphrase_note = ("Passphrase (shown once; give it to the recipient by another channel):\n"
                                    f"    {started['passphrase']}\n")
        self.app.call_from_thread(self.progress, started["build"])
        self.timer = self.app.call_from_thread(self.set_interval, POLL_SECONDS, self.poll)

    def poll(self) -> None:
        self.fetch()

    @work(thread=True, exclusive=True, group="poll")
    def fetch(self) -> None:
        try:
            build = self.app.api.call("release.build_status", {"build": self.build_id})["build"]
        except ApiError as e:
            self.app.call_from_thread(self.query_one("#progress", Label).update, f"Error: {e.message}")
            return
        self.app.call_from_thread(self.progress, build)

    def progress(self, build: dict) -> None:
        line = progress_line(build)
        if not self.seen or self.seen[-1] != line:
            self.seen.append(line)
        self.query_one("#progress", Label).update(line)
        outcome = self.query_one("#outcome", Static)
        if build["state"] == "running":
            outcome.update(self.passphrase_note)
            return
        if self.timer is not None:
            self.timer.stop()
        if build["state"] == "failed":
            outcome.update(f"FAILED: {build['error']}\nNothing was left on the medium.")
        else:
            result = build["result"]
            outcome.update(f"{self.passphrase_note}Built {result['package']}\n"
                           f"manifest SHA-256 {result['manifest_sha256']}\n"
                           f"{result['segments']} segments, {result['clips']} clip(s), {result['gaps']} gap(s) listed")
