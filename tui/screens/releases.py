"""Releases to law enforcement, and building one onto a medium with its progress shown.

Talks only to the API (release.list, release.build, release.build_status): the central
checks everything and does the work; this screen shows what it says. The progress bar
is ASCII (`[#####.....]`), which every terminal the appliance serves can draw.
"""
from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Checkbox, DataTable, Input, Label, Static

from tui.actions import bindings
from tui.format import local, names, parse_local, to_api, typed
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import Field, Fields

KINDS = (("court_order", "Court order"), ("subpoena", "Subpoena"), ("search_warrant", "Search warrant"))

BAR_WIDTH = 30
POLL_SECONDS = 0.5


def progress_line(build: dict) -> str:
    """`[#########.....................]  30%  cam-a: segment 3`"""
    filled = BAR_WIDTH * build["percent"] // 100
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {build['percent']:3d}%  {build['step']}"[:78]


class ReleasesScreen(CustodianScreen):
    """Every release (release.list) with its package state; B builds the selected one."""

    NAME = SCOPE = "releases"
    BINDINGS = bindings("app", "list", "releases")

    def body(self) -> ComposeResult:
        yield DataTable(id="releases", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Release", 11), ("Instrument", 11), ("Cameras", 18), ("Recipient", 20),
                             ("Package", 9)):
            table.add_column(label, width=width)
        self.releases: list[dict] = []

    def fetch(self, call):
        return call("release.list")

    def show(self, answer: dict) -> None:
        self.releases = answer["releases"]
        table = self.query_one(DataTable)
        table.clear()
        for r in self.releases:
            if r.get("sealed"):       # a sealed warrant's release, seen by an acting director
                table.add_row(r["id"], r["instrument"], "(sealed)", "", "", key=r["id"])
                continue
            table.add_row(r["id"], r["instrument"], ", ".join(r["cameras"])[:18], r["recipient"][:20],
                          (r.get("package") or {}).get("status", "").replace("_", " ")[:9], key=r["id"])
        self.say("B builds the selected release onto a medium. I: legal instruments, and releases under them."
                 if self.releases else "No releases. I: record the legal instrument received, the counsel "
                 "consulted, and release under it (C3).")

    def action_build(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.releases) and not self.releases[row].get("sealed"):
            self.app.push_screen(BuildScreen(self.releases[row]["id"]))

    def action_open(self) -> None:
        self.action_build()

    def action_instruments(self) -> None:
        self.app.push_screen(InstrumentsScreen())


class InstrumentsScreen(CustodianScreen):
    """The legal instruments received (instrument.list): N records one, C the counsel consulted about the
    selected one, L a release under it; each in a dialog that keeps what was typed when the API refuses."""

    NAME = SCOPE = "instruments"
    BINDINGS = bindings("app", "list", "instruments")

    def body(self) -> ComposeResult:
        yield DataTable(id="instruments", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Instrument", 10), ("Kind", 14), ("Reference", 14), ("Court", 18), ("Received", 10)):
            table.add_column(label, width=width)
        self.instruments: list[dict] = []

    def fetch(self, call):
        return call("instrument.list")

    def show(self, answer: dict) -> None:
        self.instruments = answer["instruments"]
        table = self.query_one(DataTable)
        table.clear()
        kinds = dict(KINDS)
        for i in self.instruments:
            if "reference" not in i:     # a sealed warrant, seen by an acting director (C13)
                table.add_row(i["id"], kinds[i["kind"]], "(sealed)", "", "", key=i["id"])
                continue
            table.add_row(i["id"], kinds[i["kind"]], i["reference"][:14], i["court"][:18], i["received_on"],
                          key=i["id"])
        self.say("C: counsel consulted about the selected one; L: release under it. N records a new one."
                 if self.instruments else "No instrument recorded. N records one received (C3).")

    def selected(self) -> dict | None:
        row = self.query_one(DataTable).cursor_row
        i = self.instruments[row] if 0 <= row < len(self.instruments) else None
        return i if i and "reference" in i else None

    def action_new(self) -> None:
        def build(v: dict) -> dict:
            args = {"kind": v["kind"], "reference": v["reference"], "court": v["court"],
                    "issued_on": v["issued_on"], "received_on": v["received_on"],
                    "description": v["description"], "cameras": names(v["cameras"]),
                    "start": to_api(parse_local(v["start"])), "end": to_api(parse_local(v["end"]))}
            return args | ({"incident": v["incident"]} if v["incident"] else {})

        def confirm(a: dict) -> str:
            return (f"Record the {dict(KINDS)[a['kind']].lower()} {a['reference']} of {a['court']}?\n"
                    f"Its scope, {', '.join(a['cameras']) or 'every camera'} from {local(a['start'])} to "
                    f"{local(a['end'])}, is held at once (C12).")

        today = datetime.now().strftime("%Y-%m-%d")
        fields = [Field("kind", "Kind", choices=KINDS), Field("reference", "Reference", hint="the court's number"),
                  Field("court", "Court"), Field("issued_on", "Issued on", today, hint="YYYY-MM-DD"),
                  Field("received_on", "Received on", today, hint="YYYY-MM-DD"),
                  Field("description", "What it demands"), Field("cameras", "Cameras", hint="names, commas"),
                  Field("start", "From", hint="YYYY-MM-DD HH:MM", time=True),
                  Field("end", "To", hint="YYYY-MM-DD HH:MM", time=True),
                  Field("incident", "Incident", hint="optional, e.g. inc-000001")]
        self.app.push_screen(Fields("Record a legal instrument (C3)", fields, op="instrument.record", build=build,
                                    confirm=confirm, yes="Record"), self.recorded)

    def recorded(self, answer: dict | None) -> None:
        if answer:
            self.note = f"{answer['instrument']['id']} recorded; its scope is held ({answer['hold']})."
            self.refresh_data()

    def action_counsel(self) -> None:
        i = self.selected()
        if i is None:
            self.say("Select an instrument first (N records one).", error=True)
            return
        fields = [Field("counsel", "Counsel consulted"),
                  Field("consulted_on", "Consulted on", datetime.now().strftime("%Y-%m-%d"), hint="YYYY-MM-DD"),
                  Field("summary", "Their advice")]

        def counselled(answer: dict | None) -> None:
            if answer:
                self.note = f"Counsel recorded for {i['id']}. L releases under it."
                self.refresh_data()
        self.app.push_screen(Fields(f"Counsel about {i['id']} (C13, C14)", fields, op="counsel.record",
                                    build=lambda v: v | {"instrument": i["id"]}, yes="Record"), counselled)

    def action_release(self) -> None:
        i = self.selected()
        if i is None:
            self.say("Select an instrument first (N records one).", error=True)
            return

        def build(v: dict) -> dict:
            return {"instrument": i["id"], "cameras": names(v["cameras"]), "start": to_api(parse_local(v["start"])),
                    "end": to_api(parse_local(v["end"])), "recipient": v["recipient"], "notes": v["notes"]}

        def confirm(a: dict) -> str:
            return (f"Release {', '.join(a['cameras'])} from {local(a['start'])} to {local(a['end'])} to "
                    f"{a['recipient']} under {i['id']}?\nThe release is registered now; B on the releases screen "
                    "builds its package.")

        def released(answer: dict | None) -> None:
            if answer:
                self.app.pop_screen()
                self.app.notify_line(f"{answer['release']['id']} registered.")
        fields = [Field("cameras", "Cameras", ", ".join(i["cameras"])),
                  Field("start", "From", typed(i["start"]), time=True), Field("end", "To", typed(i["end"]), time=True),
                  Field("recipient", "Recipient", hint="e.g. Det. R. Lane, PD"),
                  Field("notes", "Notes", hint="optional")]
        self.app.push_screen(Fields(f"Release under {i['id']} (C3)", fields, op="release.create", build=build,
                                    confirm=confirm, yes="Release"), released)


class BuildScreen(CustodianScreen):
    """Where to, on what, taken by whom; then the build's progress until it ends."""

    NAME = SCOPE = "form"
    BINDINGS = bindings("app", "form")

    def __init__(self, release: str):
        super().__init__()
        self.release = release
        self.build_id: str | None = None
        self.starting = False              # F5 pressed: the central is asked to start the build
        self.timer = None
        self.passphrase_note = ""
        self.seen: list[str] = []          # every progress line shown (the tests read it)

    def body(self) -> ComposeResult:
        with VerticalScroll(id="build-form"):
            yield Label(f"Build the evidence package of {self.release}", id="title")
            for field, label, hint in (("to", "Destination:", "folder on the appliance, e.g. /media/usb"),
                                       ("medium", "Medium:", "e.g. USB stick SanDisk 32 GB, tag 4411"),
                                       ("taken-by", "Taken by:", "e.g. Det. R. Lane, Chariton PD")):
                with Horizontal(classes="row"):
                    yield Label(label, classes="field-label")
                    yield Input(id=field, placeholder=hint, compact=True)
            yield Checkbox("Encrypted ZIP (the passphrase is shown once)", True, id="encrypt", compact=True)
            # markup=False: "[####...]" and paths are text, not Rich markup.
            yield Label("F5 builds the package.", id="progress", markup=False)
            yield Static("", id="outcome", markup=False)

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self.query_one("#to", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.focus_next()

    def check_action(self, action: str, parameters) -> bool | None:
        """F5 is shown until the build starts: one build per screen, so after that it would do nothing."""
        allowed = super().check_action(action, parameters)
        return allowed and self.build_id is None if action == "submit" else allowed

    def show_error(self, e) -> None:
        self.starting = False     # refused (or the central did not answer): F5 may start it again
        super().show_error(e)

    def discard_question(self) -> str:
        """Before the build starts, what was typed is lost on leaving; once it runs, it runs on by itself."""
        typed = any(i.value.strip() for i in self.query(Input))
        return "Leave without building?" if typed and self.build_id is None else ""

    def action_submit(self) -> None:
        if self.build_id is not None or self.starting:
            return      # a second F5 while the first is on its way would start a second build
        self.starting = True
        args = {"release": self.release, "to": self.query_one("#to", Input).value.strip(),
                "medium": self.query_one("#medium", Input).value.strip(),
                "taken_by": self.query_one("#taken-by", Input).value.strip(),
                "encrypt": self.query_one("#encrypt", Checkbox).value}
        self.call("release.build", args, self.started)

    def started(self, answer: dict) -> None:
        self.build_id = answer["build"]["build"]
        self.refresh_bindings()
        self.say("Building: its progress is shown here; Escape goes back and the build goes on.")
        if answer.get("passphrase"):
            self.passphrase_note = ("Passphrase (shown once; give it to the recipient by another channel):\n"
                                    f"    {answer['passphrase']}\n")
        self.progress(answer["build"])
        self.timer = self.set_interval(POLL_SECONDS, self.poll)

    def poll(self) -> None:
        # A build is the person's own action running on: its progress does not extend the session.
        self.call("release.build_status", {"build": self.build_id}, lambda a: self.progress(a["build"]),
                  background=True, group="poll")

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
