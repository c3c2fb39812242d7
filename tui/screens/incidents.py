"""Incidents: the list, one incident's details, the form to file one, and requests for review or monitoring.

The forms check as the person types by asking the API itself (`check_only`): what is
wrong is said in the API's own words, and no rule is written twice.
"""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Button, Checkbox, DataTable, Input, Label, OptionList, Static, TextArea

from appliance.client import ApiError
from tui.actions import bindings
from tui.format import local, names, refusal, typed_time, window
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import Confirm, Field, Fields

GROUNDS = (("criminal_activity", "Criminal activity"), ("litigation", "Litigation"),
           ("conduct_violation", "Violation of the Library's conduct rules"))
OUTCOMES = (("no_action", "No action"), ("corrective_action", "Corrective action, which you approve"),
            ("law_enforcement_referral", "Referral to law enforcement"),
            ("insufficient_evidence", "Insufficient evidence"))
CHECK_DELAY = 0.4   # seconds after the last key before the API checks the form
STATUS_TEXT = {"pending": "waiting", "approved": "approved", "denied": "DENIED", "cancelled": "cancelled",
               "self_granted": "granted at once"}
KIND_TEXT = {"review": "review", "monitor": "monitor live", "imminent_danger": "imminent danger"}


class IncidentsScreen(CustodianScreen):
    NAME = SCOPE = "incidents"
    BINDINGS = bindings("app", "list", "incidents")

    def body(self) -> ComposeResult:
        yield DataTable(id="incidents", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Incident", 10), ("Grounds", 17), ("When", 12), ("Where", 22), ("Status", 8)):
            table.add_column(label, width=width)
        self.incidents: list[dict] = []

    def fetch(self, call):
        return call("incident.list")

    def show(self, answer: dict) -> None:
        self.incidents = list(reversed(answer["incidents"]))
        table = self.query_one(DataTable)
        table.clear()
        for i in self.incidents:
            table.add_row(i["id"], i["grounds"].replace("_", " ")[:17], local(i["occurred_at"]),
                          i["location"][:22], i["status"], key=i["id"])
        self.say("N files a new incident report; Enter opens one." if self.incidents
                 else "No incidents you may see. N files a new incident report.")

    def action_new(self) -> None:
        self.app.push_screen(IncidentFormScreen())

    def action_open(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.incidents):
            self.app.push_screen(IncidentDetailScreen(self.incidents[row]["id"]))

    def on_data_table_row_selected(self, event) -> None:
        self.action_open()


class IncidentDetailScreen(CustodianScreen):
    """One incident (incident.get, audited) with its requests, grants, holds and outcome."""

    SCOPE = "incident"
    BINDINGS = bindings("app", "list", "incident")

    def __init__(self, incident_id: str):
        super().__init__()
        self.incident_id = incident_id

    def body(self) -> ComposeResult:
        with VerticalScroll(id="detail"):
            yield Static("", id="incident-text")

    def fetch(self, call):
        answer = call("incident.get", {"incident": self.incident_id})
        if self.director:
            answer["holds"] = [h for h in call("hold.list")["holds"]
                               if h.get("refs", {}).get("incident") == self.incident_id]
        return answer

    def show(self, answer: dict) -> None:
        self.answer = answer
        i = answer["incident"]
        lines = [f"{i['id']}  {i['grounds'].replace('_', ' ')}  ({i['status']})",
                 f"When: {local(i['occurred_at'])}   Where: {i['location']}   Filed: {local(i['filed_at'])}",
                 "", i["description"], ""]
        outcome = i.get("outcome")
        lines.append(f"Outcome: {outcome['outcome'].replace('_', ' ')}: {outcome['notes']}" if outcome
                     else "Outcome: none recorded yet")
        lines.append("")
        lines.append("Requests:" if answer["requests"] else "Requests: none (Q asks for one)")
        for r in answer["requests"]:
            lines.append(f"  {r['id']} {KIND_TEXT.get(r['kind'], r['kind'])} {', '.join(r['cameras'])} "
                         f"{window(r['start'], r['end'])}: {STATUS_TEXT.get(r['status'], r['status'])}")
        lines.append("Grants:" if answer["grants"] else "Grants: none")
        for g in answer["grants"]:
            lines.append(f"  {g['id']} {KIND_TEXT.get(g['kind'], g['kind'])} {', '.join(g['cameras'])} "
                         f"{window(g['start'], g['end'])}, until {local(g['expires_at'])}"
                         f"{' (REVOKED)' if g.get('revoked_at') else ''}")
        for h in answer.get("holds", []):
            lines.append(f"Hold {h['id']}: {window(h['start'], h['end'])}"
                         f"{' (released)' if h.get('released_at') else ''}")
        if self.director and i["status"] == "open":
            lines += ["", "O records the outcome (C18); C closes the incident once it has one."]
        self.query_one("#incident-text", Static).update("\n".join(lines))

    def action_request(self) -> None:
        self.app.push_screen(RequestFormScreen(self.incident_id))

    def action_outcome(self) -> None:
        """The Director: what the incident led to (C18)."""
        def build(v: dict) -> dict:
            args = {"incident": self.incident_id, "outcome": v["outcome"], "notes": v["notes"]}
            return args | ({"corrective_action": v["corrective_action"]} if v["corrective_action"] else {})

        def confirm(a: dict) -> str:
            text = f"Record for incident {self.incident_id}: {dict(OUTCOMES)[a['outcome']]}.\nNotes: {a['notes']}"
            return text + (f"\nCorrective action you approve: {a['corrective_action']}"
                           if "corrective_action" in a else "")

        def recorded(answer: dict | None) -> None:
            if answer:
                self.say("Outcome recorded." + (f" Next: {answer['next']}." if answer.get("next") else
                                                " C closes the incident."))
        fields = [Field("outcome", "Outcome", choices=OUTCOMES), Field("notes", "Notes"),
                  Field("corrective_action", "Corrective action", hint="only with a corrective action")]
        self.app.push_screen(Fields(f"Outcome of {self.incident_id} (C18)", fields, op="incident.record_outcome",
                                    build=build, confirm=confirm, yes="Record",
                                    intro=self.app.summary("incident.record_outcome")), recorded)

    def action_close_incident(self) -> None:
        """The Director: close it once it has an outcome; the API ends its grants and cancels what is pending."""
        def closed(answer: dict | None) -> None:
            if answer:
                grants, requests = answer["grants_revoked"], answer["requests_cancelled"]
                self.say(f"Incident closed: grants ended: {', '.join(grants) or 'none'}; requests cancelled: "
                         f"{', '.join(requests) or 'none'}. Holds stay until you release them (C20).")
        self.app.push_screen(Fields(
            f"Close {self.incident_id}", [Field("notes", "Notes", hint="optional")], op="incident.close", yes="Close",
            intro=self.app.summary("incident.close"),
            build=lambda v: {"incident": self.incident_id} | ({"notes": v["notes"]} if v["notes"] else {}),
            confirm=lambda a: (f"Close incident {self.incident_id}? Its grants end now and its pending requests are "
                               "cancelled. Make any suspension notice first: its stills need the incident's grants "
                               "(C21).")), closed)


class FormScreen(CustodianScreen):
    """A form checked by the API as the person types (`check_only`), sent with F5 or the button."""

    SCOPE = "form"
    BINDINGS = bindings("app", "form")
    OP = ""
    CHECKS = True        # the operation takes `check_only`; else the API judges the form when it is sent
    DISCARD = ""         # the question Escape asks first when something is typed ("": none, Escape goes back)
    sending = False      # F5 was pressed and the form is on its way: a second F5 must not send it twice

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = False
        self._timer: Timer | None = None
        self.armed = False   # no verdict on a form nobody has touched yet: checks start at the first key
        self.first_field().focus()

    def on_key(self, event) -> None:
        if not self.armed:
            self.armed = True
            self.schedule_check()

    def first_field(self):
        return self.query(Input).first()

    def on_input_changed(self, event) -> None:
        self.schedule_check()

    def on_text_area_changed(self, event) -> None:
        self.schedule_check()

    def on_checkbox_changed(self, event) -> None:
        # Said in words too: a serial terminal shows no colour, so [X] alone would not tell.
        label = str(event.checkbox.label).split(": ")[0]
        event.checkbox.label = f"{label}: {'YES' if event.value else 'no'}"
        self.schedule_check()

    def on_option_list_option_highlighted(self, event) -> None:
        self.schedule_check()

    def schedule_check(self) -> None:
        if not self.CHECKS or not self.armed:
            return
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(CHECK_DELAY, self.check)

    def gathered(self) -> dict | None:
        try:
            return self.arguments()
        except ValueError as e:
            self.say(str(e), error=True)
            return None

    def check(self) -> None:
        args = self.gathered()
        if args is not None:
            self.call(self.OP, args | {"check_only": True}, lambda _: self.say("Ready to send: F5."),
                      self.show_check, background=True, group="check")

    def show_check(self, e: ApiError) -> None:
        self.say(refusal(e), error=True)

    def show_error(self, e) -> None:
        self.sending = False      # refused (or the central did not answer): F5 may send it again
        super().show_error(e)

    def not_sent(self, e: ApiError) -> None:
        self.sending = False
        self.show_check(e)

    def on_input_submitted(self, event) -> None:
        self.focus_next()

    def discard_question(self) -> str:
        """What to ask before this form is closed ("": nothing typed, nothing to ask)."""
        typed = any(i.value.strip() for i in self.query(Input)) or any(t.text.strip() for t in self.query(TextArea))
        return self.DISCARD if typed else ""

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_submit()

    def action_submit(self) -> None:
        if self.sending:
            return
        args = self.gathered()
        if args is None:
            return
        self.sending = True
        if not self.CHECKS:
            self.confirm_and_send(args)
            return
        # The API checks it first, whatever the check as one types has said so far: a refusal (too
        # short a reason, a window too long) is said here with the form as typed, before any confirmation.
        self.call(self.OP, args | {"check_only": True}, lambda _: self.confirm_and_send(args), self.not_sent)

    def confirm_and_send(self, args: dict) -> None:
        self.call(self.OP, args, self.sent)


class IncidentFormScreen(FormScreen):
    """File an incident report (C7, C9, C17); after an imminent-danger use, also link it (C19)."""

    OP = "incident.create"
    DISCARD = "Discard this report?"

    def __init__(self, link_use: str | None = None):
        super().__init__()
        self.link_use = link_use

    def body(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            if self.link_use:
                yield Label(f"File the incident report owed for imminent-danger use {self.link_use} (C19).")
            yield Label("Grounds (the only ones the policy allows):")
            yield OptionList(*(label for _, label in GROUNDS), id="grounds", compact=True)
            with Horizontal(classes="row"):
                yield Label(f"{self.app.label(self.OP, 'occurred_at', 'When')}:", classes="field-label")
                yield Input(id="when", placeholder="HH:MM today, or YYYY-MM-DD HH:MM", compact=True)
            with Horizontal(classes="row"):
                yield Label(f"{self.app.label(self.OP, 'location', 'Where')}:", classes="field-label")
                yield Input(id="where", placeholder="e.g. the returns desk", compact=True)
            yield Label(f"{self.app.label(self.OP, 'description', 'What happened')} (the conduct observed):")
            yield TextArea(id="description", compact=True, show_line_numbers=False)
            yield Static("", id="attestation-text")
            yield Checkbox("I attest to the above: no", id="attest", compact=True)
            yield Button("File the report (F5)", id="send", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.call("incident.attestation_text", None,
                  lambda a: self.query_one("#attestation-text", Static).update(a["text"]))

    def first_field(self):
        return self.query_one("#grounds")

    def arguments(self) -> dict:
        option = self.query_one("#grounds", OptionList).highlighted
        when = self.query_one("#when", Input).value
        return {"grounds": GROUNDS[option][0] if option is not None else None,
                "occurred_at": typed_time(when),
                "location": self.query_one("#where", Input).value,
                "description": self.query_one("#description", TextArea).text,
                "attestation": self.query_one("#attest", Checkbox).value}

    def sent(self, answer: dict) -> None:
        incident = answer["incident"]
        if self.link_use:
            self.call("imminent.link_incident", {"request": self.link_use, "incident": incident["id"]},
                      lambda _: self.filed(incident, linked=True))
        else:
            self.filed(incident)

    def filed(self, incident: dict, linked: bool = False) -> None:
        note = f"Incident {incident['id']} filed" + (f" and linked to {self.link_use}." if linked else ".")
        self.app.pop_screen()
        self.app.push_screen(IncidentDetailScreen(incident["id"]))
        self.app.notify_line(note + " Q asks to review recordings or to monitor.")


class RequestFormScreen(FormScreen):
    """Ask the Director to review recordings, or to monitor live, for an incident (C9, C17)."""

    OP = "request.create"
    DISCARD = "Discard this request?"

    def __init__(self, incident_id: str):
        super().__init__()
        self.incident_id = incident_id

    def body(self) -> ComposeResult:
        with VerticalScroll(id="form"):
            yield Label(f"Request for incident {self.incident_id}. Kind:")
            yield OptionList("Review recordings", "Monitor live", id="kind", compact=True)
            with Horizontal(classes="row"):
                yield Label("Cameras:", classes="field-label")
                yield Input(id="cameras", placeholder="names, separated by commas", compact=True)
            yield Static("", id="camera-names")
            with Horizontal(classes="row"):
                yield Label("From:", classes="field-label")
                yield Input(id="start", placeholder="HH:MM today, or YYYY-MM-DD HH:MM", compact=True)
            with Horizontal(classes="row"):
                yield Label("To:", classes="field-label")
                yield Input(id="end", placeholder="HH:MM today, or YYYY-MM-DD HH:MM", compact=True)
            with Horizontal(classes="row"):
                yield Label("Reason:", classes="field-label")
                yield Input(id="reason", placeholder="what you need to see, and why", compact=True)
            yield Button("Send the request (F5)", id="send", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        self.call("camera.list", None, self.show_cameras)

    def show_cameras(self, answer: dict) -> None:
        names = [c["id"] for c in answer["cameras"] if c["status"] == "approved"]
        self.query_one("#camera-names", Static).update("Cameras: " + ", ".join(names))

    def first_field(self):
        return self.query_one("#kind")

    def arguments(self) -> dict:
        kind = self.query_one("#kind", OptionList).highlighted
        start, end = self.query_one("#start", Input).value, self.query_one("#end", Input).value
        cameras = names(self.query_one("#cameras", Input).value)
        return {"incident": self.incident_id, "kind": ("review", "monitor")[kind or 0], "cameras": cameras,
                "start": typed_time(start), "end": typed_time(end),
                "reason": self.query_one("#reason", Input).value}

    def confirm_and_send(self, args: dict) -> None:
        what = ("review the recordings of" if args["kind"] == "review" else "monitor live")
        text = (f"Ask the Director to {what} {', '.join(args['cameras'])} from {local(args['start'])} "
                f"to {local(args['end'])} for incident {self.incident_id}?\nReason: {args['reason']}")

        def answered(yes: bool | None) -> None:
            if yes:
                self.call(self.OP, args, self.sent)
            else:
                self.sending = False
        self.app.push_screen(Confirm("Send this request?", text, yes="Send"), answered)

    def sent(self, answer: dict) -> None:
        request = answer["request"]
        self.app.pop_screen()
        self.app.notify_line(f"Request {request['id']} sent: it waits for the Director's decision.")




def request_text(r: dict, grant: dict | None) -> str:
    """What became of one of your requests, in words: the Director's reason, and what was granted."""
    if r["kind"] == "imminent_danger":
        review = r.get("review")
        return (f"Imminent danger, granted at once {local(r['requested_at'])}. "
                + (f"The Director found it {review['finding'].replace('_', ' ')}: {review['notes']}" if review
                   else "The Director reviews it afterwards.")
                + ("" if r["incident"] else " It owes an incident report (C19)."))
    if r["status"] == "pending":
        return f"Waiting for the Director since {local(r['requested_at'])}. Reason given: {r['reason']}"
    if r["status"] == "denied":
        return f"Denied by the Director {local(r['decided_at'])}: {r['decision_reason']}"
    if r["status"] == "cancelled":
        return f"Cancelled {local(r['decided_at'])}: the incident was closed."
    text = f"Approved by the Director {local(r['decided_at'])}: {r['decision_reason']}"
    if grant:
        narrower = (grant["cameras"] != r["cameras"] or grant["start"] != r["start"] or grant["end"] != r["end"])
        text += (f"\n{'Narrower than asked: ' if narrower else 'Granted: '}{', '.join(grant['cameras'])}, "
                 f"{window(grant['start'], grant['end'])}, until {local(grant['expires_at'])}."
                 + (" F6 reviews it." if grant.get("active") and grant["kind"] == "review" else ""))
    return text


class MyRequestsScreen(CustodianScreen):
    """Staff: your requests and what became of them (the Director's reason too); it watches for her decision."""

    NAME = SCOPE = "requests"
    BINDINGS = bindings("app", "list")

    def body(self) -> ComposeResult:
        yield DataTable(id="requests", cursor_type="row", zebra_stripes=False)
        yield Static("", id="request-text")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Request", 10), ("Incident", 10), ("Kind", 8), ("Cameras", 16), ("Window", 14),
                             ("Status", 9)):
            table.add_column(label, width=width)
        self.requests: list[dict] = []
        self.grants: dict[str, dict] = {}
        self.set_interval(self.app.profile.refresh_seconds, lambda: self.refresh_data(background=True))

    def fetch(self, call):
        return call("request.list")["requests"], {g["id"]: g for g in call("grant.list")["grants"]}

    def show(self, answer) -> None:
        requests, self.grants = answer
        requests = list(reversed(requests))
        was = {r["id"]: r["status"] for r in self.requests}
        decided = [r for r in requests if was.get(r["id"]) == "pending" and r["status"] != "pending"]
        if [(r["id"], r["status"], r.get("review")) for r in requests] == \
                [(r["id"], r["status"], r.get("review")) for r in self.requests]:
            return   # nothing changed: nothing repainted (serial lines are slow)
        self.requests = requests
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for r in self.requests:
            table.add_row(r["id"], r["incident"] or "-", "DANGER" if r["kind"] == "imminent_danger" else r["kind"],
                          ", ".join(r["cameras"])[:16], window(r["start"], r["end"])[:14],
                          "granted" if r["status"] == "self_granted" else STATUS_TEXT.get(r["status"], r["status"]),
                          key=r["id"])
        table.move_cursor(row=min(max(row, 0), max(len(self.requests) - 1, 0)))
        self.on_data_table_row_highlighted(None)
        if decided:
            self.app.bell()
            self.say(" ".join(f"The Director {'approved' if r['status'] == 'approved' else r['status']} {r['id']}."
                              for r in decided))
        elif not self.requests:
            self.say("No requests yet: open an incident (F4) and press Q.")

    def on_data_table_row_highlighted(self, event) -> None:
        row = self.query_one(DataTable).cursor_row
        r = self.requests[row] if 0 <= row < len(self.requests) else None
        self.query_one("#request-text", Static).update(request_text(r, self.grants.get(r["grant"])) if r else "")


class OwedReportScreen(IncidentsScreen):
    """The report an imminent-danger use owes (C19): N files a new one; Enter links one already filed.

    The incidents listed are those the API shows this person; which of them may be linked
    (staff: only their own) is the API's to say, with its clause."""

    NAME, SCOPE = "", "owed"
    BINDINGS = bindings("app", "list", "owed")

    def __init__(self, use_id: str):
        super().__init__()
        self.use_id = use_id

    def body(self) -> ComposeResult:
        yield Label(f"Imminent-danger use {self.use_id} owes an incident report (C19): file a new one, or "
                    "link one you already filed.", id="owed-title")
        yield from super().body()

    def show(self, answer: dict) -> None:
        super().show(answer)
        self.say("Enter links the selected incident to this use; N files a new report." if self.incidents
                 else "No incident filed yet: N files the report.")

    def action_new(self) -> None:
        self.app.pop_screen()
        self.app.push_screen(IncidentFormScreen(link_use=self.use_id))

    def action_open(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if not 0 <= row < len(self.incidents):
            return
        incident = self.incidents[row]

        def answered(yes: bool | None) -> None:
            if yes:
                self.call("imminent.link_incident", {"request": self.use_id, "incident": incident["id"]},
                          lambda _: self.linked(incident["id"]))
        self.app.push_screen(Confirm("Link the incident report", (
            f"Link imminent-danger use {self.use_id} to incident {incident['id']}: "
            f"{incident['grounds'].replace('_', ' ')}, {local(incident['occurred_at'])}, {incident['location']}?\n"
            "Its grant then belongs to that incident too."), yes="Link"), answered)

    def linked(self, incident_id: str) -> None:
        self.app.pop_screen()
        self.app.push_screen(IncidentDetailScreen(incident_id))
        self.app.notify_line(f"Use {self.use_id} linked to incident {incident_id}.")
