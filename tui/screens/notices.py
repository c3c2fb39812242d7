"""Suspension notices (C21): staff see who is suspended from Library property, with their stills.

The Director makes a notice from stills she may see under a grant (on the review
screen, N at the cursor adds the still there) and withdraws one. The API decides
everything: whose grant, which incident, how long, and that a notice ends, its
pixels purged, when the suspension ends (`expires_at`), which this screen shows.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Checkbox, DataTable, Input, Label, Static

from tui.actions import bindings
from tui.format import local
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import Confirm, Field, Fields
from tui.screens.incidents import FormScreen
from tui.widgets.picture import Picture


class NoticesScreen(CustodianScreen):
    """The notices in force (notice.list, audited), the soonest to end first; S the next still."""

    NAME = SCOPE = "notices"
    BINDINGS = bindings("app", "list", "notices")

    def __init__(self, note: str = ""):
        super().__init__()
        self.note = note
        self.notices: list[dict] = []

    def check_action(self, action: str, parameters) -> bool | None:
        """S and W are shown only with a notice selected: with none they would do nothing."""
        allowed = super().check_action(action, parameters)
        if allowed and action in ("next_still", "withdraw"):
            return self.is_mounted and self.selected() is not None
        return allowed

    def body(self) -> ComposeResult:
        yield DataTable(id="notices", cursor_type="row", zebra_stripes=False)
        with Horizontal(id="notice-main"):
            yield Picture(mode=self.app.profile.picture, id="picture")
            yield Static("", id="notice-info")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Notice", 10), ("Until", 10), ("Stills", 6), ("Person", 44)):
            table.add_column(label, width=width)
        self.still = 0
        self.shown = False   # serial: a picture is drawn only when asked for (S)

    def fetch(self, call):
        return call("notice.list")

    def show(self, answer: dict) -> None:
        self.notices = answer["notices"]
        table = self.query_one(DataTable)
        table.clear()
        for n in self.notices:
            table.add_row(n["id"], n["suspended_until"], str(len(n["stills"])), n["description"][:44], key=n["id"])
        self.still, self.shown = 0, False
        self.draw()
        self.refresh_bindings()
        if not self.notices:
            hint = "No suspension notice is in force."
        elif self.director:
            hint = "S: the next still. W withdraws the selected notice."
        else:
            hint = "People suspended from Library property (C21). S: the next still."
        self.say(hint)

    def selected(self) -> dict | None:
        row = self.query_one(DataTable).cursor_row
        return self.notices[row] if 0 <= row < len(self.notices) else None

    def on_data_table_row_highlighted(self, event) -> None:
        self.refresh_bindings()
        self.still, self.shown = 0, False
        self.draw()

    def draw(self) -> None:
        notice, picture, info = self.selected(), self.query_one(Picture), self.query_one("#notice-info", Static)
        if notice is None:
            picture.say("")
            info.update("")
            return
        still = notice["stills"][self.still]
        if self.shown or not self.app.profile.pictures_on_request:
            picture.show(still)
        else:
            picture.say(f"S draws the still ({len(notice['stills'])} in all).")
        info.update(f"{notice['id']} ({notice['incident']})\nPerson: {notice['description']}\n"
                    f"Why: {notice['reason']}\nSuspended until {notice['suspended_until']}: the notice ends "
                    f"{local(notice['expires_at'])}\nStill {self.still + 1}/{len(notice['stills'])}: "
                    f"{still['camera']} {local(still['frame_at'], seconds=True)}")

    def action_next_still(self) -> None:
        notice = self.selected()
        if notice:
            if self.shown or not self.app.profile.pictures_on_request:
                self.still = (self.still + 1) % len(notice["stills"])
            self.shown = True
            self.draw()

    def action_new(self) -> None:
        self.say("A notice is made from stills: F6, open a grant of the incident, move to the person, press N "
                 "(up to four stills).")

    def action_withdraw(self) -> None:
        notice = self.selected()
        if notice is None:
            return

        def withdrawn(answer: dict | None) -> None:
            if answer:
                self.note = f"Notice {notice['id']} withdrawn: its stills are gone."
        self.app.push_screen(Fields(
            f"Withdraw notice {notice['id']}", [Field("reason", "Why")], op="notice.withdraw", yes="Withdraw",
            build=lambda v: {"notice": notice["id"], "reason": v["reason"]},
            confirm=lambda a: (f"Withdraw {notice['id']} before the suspension ends? Staff stop seeing it now, and "
                               f"its stills and description are purged.\nReason: {a['reason']}")), withdrawn)


class NoticeFormScreen(FormScreen):
    """A new notice from the stills picked on the review screen (notice.create; the API judges it when sent)."""

    OP = "notice.create"
    CHECKS = False   # notice.create has no check_only

    def __init__(self, stills: list[dict]):
        super().__init__()
        self.stills = stills   # the review screen's list: what is picked there stays picked

    def body(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            yield Label("Suspension notice (C21): every staff member sees these stills until the suspension ends.")
            for n, still in enumerate(self.stills):
                yield Checkbox(f"{still['camera']} {local(still['at'], seconds=True)} ({still['grant']}): YES", True,
                               id=f"still-{n}", compact=True)
            yield Label("Escape: back to the timeline to add another still.")
            for field, label, hint in (("incident", "Incident", "the incident of the grant"),
                                       ("description", "Description", "of the person: how to recognise them"),
                                       ("reason", "Reason", "why they are suspended"),
                                       ("suspended_until", "Suspended until", "YYYY-MM-DD, the day they may return")):
                with Horizontal(classes="row"):
                    yield Label(f"{self.app.label(self.OP, field, label)}:", classes="field-label")
                    yield Input(id=field, placeholder=hint, compact=True)
            yield Button("Share with staff (F5)", id="send", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.call("grant.list", None, self.prefill)

    def prefill(self, answer: dict) -> None:
        """The incident of the first still's grant: a notice's stills come from its own incident (the API checks)."""
        grant = next((g for g in answer["grants"] if g["id"] == self.stills[0]["grant"]), None)
        field = self.query_one("#incident", Input)
        if grant and grant.get("incident") and not field.value:
            field.value = grant["incident"]

    def first_field(self):
        return self.query_one("#description")

    def arguments(self) -> dict:
        value = {f: self.query_one(f"#{f}", Input).value.strip()
                 for f in ("incident", "description", "reason", "suspended_until")}
        chosen = [s for n, s in enumerate(self.stills) if self.query_one(f"#still-{n}", Checkbox).value]
        return value | {"stills": chosen}

    def confirm_and_send(self, args: dict) -> None:
        shown = ", ".join(f"{s['camera']} {local(s['at'], seconds=True)}" for s in args["stills"]) or "none"
        text = (f"Share these stills with every staff member, for incident {args['incident']}, until the "
                f"suspension ends ({args['suspended_until']})?\nStills: {shown}\nThe person: {args['description']}"
                f"\nReason: {args['reason']}")

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(self.OP, args, self.sent)
            else:
                self.sending = False
        self.app.push_screen(Confirm("Share a suspension notice", text, yes="Share"), answered)

    def sent(self, answer: dict) -> None:
        notice = answer["notice"]
        self.stills.clear()
        self.app.pop_screen()
        self.app.push_screen(NoticesScreen(
            note=f"Notice {notice['id']} shared with staff; it ends {local(notice['expires_at'])}."))
