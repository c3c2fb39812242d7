"""The Director's approvals queue: approve as asked, approve narrower, or deny with a reason (C17).

Every decision goes through a confirmation that says exactly what will be granted.
The API checks that an approval is never wider than the request; the screen only asks.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from tui.actions import bindings
from tui.format import local, names, parse_local, to_api, typed, window
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import AskText, Confirm, Field, Fields

EXPIRES_HOURS = 72   # the API's default lifetime of a grant; shown, not decided, here


def grant_text(request: dict, who: str, cameras, start: str, end: str, hours: int) -> str:
    expiry = local(to_api(datetime.now(timezone.utc) + timedelta(hours=hours)))
    what = "review the recordings of" if request["kind"] == "review" else "watch live"
    text = (f"{who} may {what} {', '.join(cameras)}\nfrom {local(start)} to {local(end)}\n"
            f"for incident {request['incident']}, until {expiry} ({hours} h).")
    if request["kind"] == "review":
        text += "\nA hold keeps this footage until you release it (C12, C20)."
    return text


class ApprovalsScreen(CustodianScreen):
    NAME = SCOPE = "approvals"
    BINDINGS = bindings("app", "list", "approvals")

    # The footer shows the keys for the selected line: A, N, D for a request, J, U for a DANGER use.
    FOOTERS = ({"approve", "narrow", "deny"}, {"review_use"})

    def check_action(self, action: str, parameters) -> bool | None:
        allowed = super().check_action(action, parameters)
        if not allowed or action not in set().union(*self.FOOTERS):
            return allowed
        try:
            r = self.selected()
        except Exception:   # before the table is mounted
            r = None
        danger = bool(r) and r["kind"] == "imminent_danger"
        return (action == "review_use") == danger

    def body(self) -> ComposeResult:
        yield DataTable(id="queue", cursor_type="row", zebra_stripes=False)
        yield Static("", id="request-text")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Request", 10), ("By", 6), ("Kind", 6), ("Cameras", 13), ("Window", 18),
                             ("Incident", 10)):
            table.add_column(label, width=width)
        self.requests = getattr(self, "requests", [])
        self.names: dict[str, str] = {}
        self.incidents: dict[str, dict] = {}

    def fetch(self, call):
        users = {u["id"]: u["name"] for u in call("user.list")["users"]}
        incidents = {i["id"]: i for i in call("incident.list")["incidents"]}
        uses = [r for r in call("request.list", {"kind": "imminent_danger"})["requests"] if not r.get("review")]
        return users, call("request.list", {"status": "pending"})["requests"] + uses, incidents

    def show(self, answer) -> None:
        self.names, self.requests, self.incidents = answer
        table = self.query_one(DataTable)
        table.clear()
        for r in self.requests:
            table.add_row(r["id"], self.names.get(r["requested_by"], r["requested_by"])[:6],
                          "DANGER" if r["kind"] == "imminent_danger" else r["kind"][:6],
                          ", ".join(r["cameras"])[:13], window(r["start"], r["end"])[:18], r["incident"], key=r["id"])
        hint = ("A approves as asked, N narrower, D denies; a DANGER use: J justified, U not justified. "
                "Enter: the incident report." if self.requests else "No request waits for you.")
        self.say(hint)
        self.on_data_table_row_highlighted(None)

    def on_data_table_row_highlighted(self, event) -> None:
        """The selected request in full: what is asked, for which incident, and why."""
        self.refresh_bindings()
        r = self.selected()
        if r is None:
            self.query_one("#request-text", Static).update("")
            return
        what = {"review": "review the recordings of", "monitor": "monitor live",
                "imminent_danger": "used imminent danger on"}.get(r["kind"], r["kind"])
        incident = self.incidents.get(r["incident"])
        about = (f"{r['incident']}: {incident['grounds'].replace('_', ' ')} at {incident['location']}, "
                 f"{local(incident['occurred_at'])}" if incident else r["incident"] or "no incident yet")
        self.query_one("#request-text", Static).update(
            f"{self.who(r)} {'asks to ' if r['kind'] != 'imminent_danger' else ''}{what} {', '.join(r['cameras'])}, "
            f"{window(r['start'], r['end'])}. Incident {about}.\nReason: {r['reason']}")

    def action_open(self) -> None:
        r = self.selected()
        if r and r["incident"]:
            from tui.screens.incidents import IncidentDetailScreen
            self.app.push_screen(IncidentDetailScreen(r["incident"]))

    def on_data_table_row_selected(self, event) -> None:
        self.action_open()

    def selected(self) -> dict | None:
        row = self.query_one(DataTable).cursor_row
        requests = getattr(self, "requests", [])
        return requests[row] if 0 <= row < len(requests) else None

    def who(self, r: dict) -> str:
        return self.names.get(r["requested_by"], r["requested_by"])

    def action_review_use(self, justified: bool) -> None:
        r = self.selected()
        if not r or r["kind"] != "imminent_danger":
            self.say("J and U review an imminent-danger use (DANGER lines).", error=True)
            return
        finding = "justified" if justified else "not_justified"

        def notes_given(notes: str | None) -> None:
            if notes:
                self.confirmed(f"Record that {self.who(r)}'s imminent-danger use {r['id']} on "
                               f"{', '.join(r['cameras'])} was {finding.replace('_', ' ')}?\nNotes: {notes}",
                               {"request": r["id"], "finding": finding, "notes": notes}, "Record",
                               op="imminent.review")
        self.app.push_screen(AskText("After-action review (C19)", f"Why {finding.replace('_', ' ')}:", min_len=3),
                             notes_given)

    def action_approve(self) -> None:
        r = self.selected()
        if r and r["kind"] != "imminent_danger":
            self.decide(r, {}, grant_text(r, self.who(r), r["cameras"], r["start"], r["end"], EXPIRES_HOURS))

    def action_narrow(self) -> None:
        """One dialog: the narrower scope and the reason, sent after the confirmation; a refusal (wider
        than asked, a time that is not one) is said in the dialog, with everything typed kept."""
        r = self.selected()
        if not r or r["kind"] == "imminent_danger":
            return

        def build(v: dict) -> dict:
            try:
                hours = int(v["expires_hours"])
            except ValueError:
                raise ValueError("Expires in hours: a whole number") from None
            return {"request": r["id"], "decision": "approve", "reason": v["reason"],
                    "cameras": names(v["cameras"]),
                    "start": to_api(parse_local(v["start"])), "end": to_api(parse_local(v["end"])),
                    "expires_hours": hours}

        def confirm(a: dict) -> str:
            text = grant_text(r, self.who(r), a["cameras"], a["start"], a["end"], a["expires_hours"])
            return f"Approve {r['id']}?\n{text}\nReason: {a['reason']}"

        fields = [Field("cameras", "Cameras", ", ".join(r["cameras"])),
                  Field("start", "From", typed(r["start"]), time=True), Field("end", "To", typed(r["end"]), time=True),
                  Field("expires_hours", "Expires in hours", str(EXPIRES_HOURS)),
                  Field("reason", "Your reason", hint="kept in the audit log")]
        self.app.push_screen(Fields(f"Approve {r['id']} narrower", fields, op="request.decide", build=build,
                                    confirm=confirm, yes="Approve"),
                             lambda answer: answer and self.decided(answer))

    def action_deny(self) -> None:
        r = self.selected()
        if r:
            def reason_given(reason: str | None) -> None:
                if reason:
                    self.confirmed(f"Deny {r['id']} of {self.who(r)}? Nothing will be granted.\nReason: {reason}",
                                   {"request": r["id"], "decision": "deny", "reason": reason}, "Deny")
            self.app.push_screen(AskText("Deny", "Why (the requester sees this):", min_len=3), reason_given)

    def decide(self, r: dict, scope: dict, text: str) -> None:
        def reason_given(reason: str | None) -> None:
            if reason:
                args = {"request": r["id"], "decision": "approve", "reason": reason} | scope
                self.confirmed(f"Approve {r['id']}?\n{text}\nReason: {reason}", args, "Approve")
        self.app.push_screen(AskText("Approve", "Your reason (kept in the audit log):", min_len=3), reason_given)

    def confirmed(self, text: str, args: dict, yes: str, op: str = "request.decide") -> None:
        def answered(ok: bool | None) -> None:
            if ok:
                self.call(op, args, self.decided)
        self.app.push_screen(Confirm(f"{yes}: exactly this", text, yes=yes), answered)

    def decided(self, answer: dict) -> None:
        request, grant = answer["request"], answer.get("grant")
        if request.get("review"):
            self.note = f"{request['id']} reviewed: {request['review']['finding'].replace('_', ' ')}."
        else:
            self.note = f"{request['id']} {request['status']}" + (f": grant {grant['id']} created." if grant else ".")
        self.refresh_data()
