"""Privacy breaches (C15, C16): anyone reports one from any screen (F12); the Director works each case.

A case's steps, what each needs before it may be marked done, and when it may close
are the API's (`breach.*`): the screens show the case, run the queries it asks for
(the audit log over the window, the export register's copies) and record what the
Director says. A refusal comes back with its clause, in the dialog that asked.
"""
from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from tui.actions import bindings
from tui.format import local, typed, typed_time, window
from tui.screens.base import CustodianScreen
from tui.screens.dialogs import Field, Fields

# How the steps read on screen; the steps themselves, and their order, come from breach.get.
STEP_TEXT = {"contain": "Control the situation", "check_unauthorised_access": "Check for unauthorised access",
             "retrieve_copies": "Retrieve copies", "investigate": "Investigate, resolve security issues",
             "review_adequacy": "Review policy, procedures, technology",
             "notify_individuals": "Notify the individuals", "resolve_complaints": "Resolve complaints"}
TYPE_TIME = "HH:MM today, or YYYY-MM-DD HH:MM"


def now_typed() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M")


def report_breach(app) -> None:
    """F12 from any screen: what happened, when it was noticed, when it may have happened (C15)."""

    def build(v: dict) -> dict:
        args = {"what": v["what"], "noticed_at": typed_time(v["noticed_at"])}
        for name in ("suspected_window_start", "suspected_window_end"):
            if v[name]:
                args[name] = typed_time(v[name])
        return args

    def confirm(args: dict) -> str:
        suspected = "".join(f"\n{word} {local(args[name])}" for word, name in (
            ("It may have happened from", "suspected_window_start"), ("It may have happened until",
                                                                       "suspected_window_end")) if name in args)
        return (f"Tell the Director now (C15) that, noticed {local(args['noticed_at'])}:\n{args['what']}"
                f"{suspected}")

    def reported(answer: dict | None) -> None:
        if answer:
            app.notify_line(f"Reported: breach case {answer['breach']['id']}. The Director has been told.")

    fields = [Field("what", "What happened", hint="what was disclosed, or what you noticed"),
              Field("noticed_at", "When you noticed it", now_typed(), TYPE_TIME, time=True),
              Field("suspected_window_start", "Suspected from", hint="optional: " + TYPE_TIME, time=True),
              Field("suspected_window_end", "Suspected until", hint="optional: " + TYPE_TIME, time=True)]
    app.push_screen(Fields("Report a possible privacy breach (C15)", fields, op="breach.report", build=build,
                           confirm=confirm, yes="Report",
                           intro=app.summary("breach.report", "The Director is told at once.")), reported)


class BreachesScreen(CustodianScreen):
    """Breach cases: the Director's every case; anyone else's own reports (breach.list)."""

    NAME = SCOPE = "breaches"
    BINDINGS = bindings("app", "list")

    def body(self) -> ComposeResult:
        yield DataTable(id="breaches", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Case", 10), ("Noticed", 12), ("Status", 6), ("What", 43)):
            table.add_column(label, width=width)
        self.breaches: list[dict] = []

    def fetch(self, call):
        return call("breach.list")

    def show(self, answer: dict) -> None:
        self.breaches = sorted(answer["breaches"], key=lambda b: (b["status"] != "open", b["id"]), reverse=False)
        table = self.query_one(DataTable)
        table.clear()
        for b in self.breaches:
            table.add_row(b["id"], local(b["noticed_at"]), b["status"], b["what"][:43], key=b["id"])
        if not self.breaches:
            self.say("No breach cases for you. F12 reports a possible breach from any screen.")
        else:
            self.say("Enter works the selected case." if self.director else "Enter shows your report and its status.")

    def action_open(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if 0 <= row < len(self.breaches):
            case = BreachCaseScreen if self.director else BreachReportScreen
            self.app.push_screen(case(self.breaches[row]["id"]))

    def on_data_table_row_selected(self, event) -> None:
        self.action_open()


def case_lines(b: dict, reporter: str = "") -> list[str]:
    since, until = b["suspected_window_start"], b["suspected_window_end"]
    # One end alone is said as given: a report of "from 20:00" is not "not given".
    suspected = (window(since, until) if since and until else f"from {local(since)}" if since
                 else f"until {local(until)}" if until else "not given")
    by = f" by {reporter}" if reporter else ""
    lines = [f"{b['id']}  {b['status'].upper()}  reported{by} {local(b['reported_at'])}, noticed "
             f"{local(b['noticed_at'])}; suspected window: {suspected}", f"What: {b['what']}"]
    if b["status"] == "closed":
        lines.append(f"Closed {local(b['closed_at'])}" + (f": {b['closing_summary']}" if b.get("closing_summary")
                                                           else ""))
    return lines


class BreachReportScreen(CustodianScreen):
    """A reporter's own report and what became of it (breach.get: the short form)."""

    SCOPE = "breach-report"
    BINDINGS = bindings("app", "list")

    def __init__(self, breach_id: str):
        super().__init__()
        self.breach_id = breach_id

    def body(self) -> ComposeResult:
        yield Static("", id="case-text")

    def fetch(self, call):
        return call("breach.get", {"breach": self.breach_id})

    def show(self, answer: dict) -> None:
        self.query_one("#case-text", Static).update("\n".join(case_lines(answer["breach"])))


class BreachCaseScreen(CustodianScreen):
    """The Director's working record of one case: its steps, and the evidence each rests on (C16)."""

    SCOPE = "breach"
    BINDINGS = bindings("app", "list", "breach")

    def __init__(self, breach_id: str):
        super().__init__()
        self.breach_id = breach_id
        self.breach: dict | None = None
        self.steps: list[str] = []

    def body(self) -> ComposeResult:
        yield Static("", id="case-text")
        yield DataTable(id="steps", cursor_type="row", zebra_stripes=False)
        yield Static("", id="evidence")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Step", 38), ("Status", 8), ("Notes", 27)):
            table.add_column(label, width=width)

    def fetch(self, call):
        names = {u["id"]: u["name"] for u in call("user.list")["users"]}
        return names, call("breach.get", {"breach": self.breach_id})

    def show(self, answer) -> None:
        names, got = answer
        b, self.steps = got["breach"], got["steps"]
        self.breach = b
        self.query_one("#case-text", Static).update("\n".join(case_lines(b, names.get(b["reported_by"], ""))))
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for step in self.steps:
            done = b["steps"].get(step)
            status = "-" if done is None else ("done" if done["status"] == "done" else "n/a")
            table.add_row(STEP_TEXT.get(step, step), status, (done or {}).get("notes", "")[:27], key=step)
        table.move_cursor(row=min(row, len(self.steps) - 1))
        self.query_one("#evidence", Static).update(self.evidence(b))
        if b["status"] == "open":
            self.say("Enter works the selected step; D done, N not applicable; X closes the case.")
        else:
            self.say("This case is closed.")

    @staticmethod
    def evidence(b: dict) -> str:
        queries = b["access_queries"]
        last = queries[-1] if queries else None
        access = (f"{len(queries)} (last: {last['count']} entries, {window(last['since'], last['until'])})" if last
                  else "none yet (A)")
        checks = b["copy_checks"]
        copies = (f"{len(checks)} (outstanding then: {', '.join(checks[-1]['outstanding']) or 'none'})" if checks
                  else "none yet (C)")
        notified = ", ".join(f"{n['who']} by {n['how']}" for n in b["notifications"]) or "nobody yet (I)"
        complaints = ", ".join(f"{c['id']} {'resolved' if c['resolution'] else 'OPEN (V resolves)'}"
                               for c in b["complaints"]) or "none recorded (P)"
        return (f"Access checks: {access}\nCopies checks: {copies}\nNotified: {notified}\n"
                f"Complaints: {complaints}")[:400]

    def selected_step(self) -> str | None:
        row = self.query_one(DataTable).cursor_row
        return self.steps[row] if 0 <= row < len(self.steps) else None

    def ask(self, title: str, fields: list[Field], op: str, build, then=None, confirm=None, yes="Record") -> None:
        """A dialog for one `breach.*` (or export) operation; the screen shows the case again afterwards."""
        def answered(answer: dict | None) -> None:
            if answer and then:
                then(answer)
        self.app.push_screen(Fields(title, fields, op=op, build=build, confirm=confirm, yes=yes,
                                    intro=self.app.summary(op)), answered)

    # ------------------------------------------------------------------ the steps

    def action_work(self) -> None:
        """Enter: the step's own work where it has some in the system, else its record."""
        step = self.selected_step()
        work = {"check_unauthorised_access": self.action_access, "retrieve_copies": self.action_copies,
                "notify_individuals": self.action_notify, "resolve_complaints": self.action_complaint}
        work.get(step, self.action_done)()

    def on_data_table_row_selected(self, event) -> None:
        self.action_work()

    def action_done(self, not_applicable: bool = False) -> None:
        step = self.selected_step()
        if step is None:
            return
        text = STEP_TEXT.get(step, step)
        label = "Why it does not apply" if not_applicable else "What was done"
        self.ask(f"{text}: {'not applicable' if not_applicable else 'done'}", [Field("notes", label)], "breach.step",
                 lambda v: {"breach": self.breach_id, "step": step, "notes": v["notes"]}
                 | ({"not_applicable": True} if not_applicable else {}),
                 then=lambda _: self.say(f"{text}: recorded."))

    def action_not_applicable(self) -> None:
        self.action_done(not_applicable=True)

    def window_fields(self) -> list[Field]:
        b = self.breach or {}
        return [Field("since", "From", typed(b.get("suspected_window_start")), TYPE_TIME, time=True),
                Field("until", "To", typed(b.get("suspected_window_end")), TYPE_TIME, time=True)]

    def window_args(self, v: dict) -> dict:
        return {"breach": self.breach_id} | {k: typed_time(v[k]) for k in ("since", "until") if v[k]}

    def action_access(self) -> None:
        self.ask("Check for unauthorised access", self.window_fields(), "breach.access_query", self.window_args,
                 then=lambda answer: self.app.push_screen(AccessScreen(answer)), yes="Search")

    def action_copies(self) -> None:
        self.ask("Copies made in the window", self.window_fields(), "breach.copies", self.window_args,
                 then=lambda answer: self.app.push_screen(CopiesScreen(answer)), yes="Search")

    def action_notify(self) -> None:
        fields = [Field("who", "Who was notified"), Field("how", "How", hint="letter, phone, in person"),
                  Field("when", "When", now_typed(), TYPE_TIME, time=True), Field("notes", "Notes", hint="optional")]

        def build(v: dict) -> dict:
            args = {"breach": self.breach_id, "who": v["who"], "how": v["how"], "when": typed_time(v["when"])}
            return args | ({"notes": v["notes"]} if v["notes"] else {})
        self.ask("An individual notified", fields, "breach.notification", build,
                 then=lambda _: self.say("Notification recorded."))

    def action_complaint(self) -> None:
        fields = [Field("complainant", "Complainant"),
                  Field("received_at", "Received", now_typed(), TYPE_TIME, time=True),
                  Field("concern", "Concern"), Field("resolution", "Resolution", hint="optional: if resolved")]

        def build(v: dict) -> dict:
            args = {"breach": self.breach_id, "complainant": v["complainant"],
                    "received_at": typed_time(v["received_at"]), "concern": v["concern"]}
            return args | ({"resolution": v["resolution"]} if v["resolution"] else {})
        self.ask("A complaint", fields, "breach.complaint", build,
                 then=lambda a: self.say(f"Complaint {a['complaint']} recorded."))

    def action_resolve(self) -> None:
        waiting = [c["id"] for c in (self.breach or {}).get("complaints", []) if not c["resolution"]]
        fields = [Field("complaint", "Complaint", waiting[0] if waiting else "", "c1, c2, ..."),
                  Field("resolution", "Resolution")]
        self.ask("A complaint resolved", fields, "breach.complaint",
                 lambda v: {"breach": self.breach_id, "complaint": v["complaint"], "resolution": v["resolution"]},
                 then=lambda a: self.say(f"Complaint {a['complaint']} resolved."))

    def action_close_case(self) -> None:
        self.ask("Close the case", [Field("summary", "Summary")], "breach.close",
                 lambda v: {"breach": self.breach_id, "summary": v["summary"]},
                 confirm=lambda a: f"Close breach case {self.breach_id}?\nSummary: {a['summary']}",
                 then=lambda _: self.say(f"Breach case {self.breach_id} closed."), yes="Close")


class AccessScreen(CustodianScreen):
    """What the audit log holds for the window: every access to footage, keys, accounts or records."""

    SCOPE = "access"
    BINDINGS = bindings("app")

    def __init__(self, answer: dict):
        super().__init__()
        self.answer = answer

    def body(self) -> ComposeResult:
        yield Static("", id="access-text")
        yield DataTable(id="entries", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        a = self.answer
        names = {p["actor"]: p["name"] for p in a["by_actor"]}
        people = ", ".join(f"{p['name']} {p['entries']}" for p in a["by_actor"]) or "nobody"
        more = " (the first 2000 listed)" if a["truncated"] else ""
        self.query_one("#access-text", Static).update(
            f"{a['count']} audited accesses {window(a['since'], a['until'])}{more}; {a['refused']} refused.\n"
            f"By person: {people}"[:240])
        table = self.query_one(DataTable)
        for label, width in (("When", 15), ("Who", 9), ("Action", 20), ("Target", 11), ("Why", 13)):
            table.add_column(label, width=width)
        for e in a["entries"]:
            table.add_row(local(e["ts"], seconds=True), names.get(e["actor"], e["actor"])[:9], e["action"][:20],
                          (e.get("target") or "")[:11], (e.get("why") or "")[:13])
        self.say("The search is kept in the case (C16). Escape: back to the case.")


class CopiesScreen(CustodianScreen):
    """Copies made in the window (the export register); M records one retrieved (export.mark_retrieved)."""

    SCOPE = "copies"
    BINDINGS = bindings("app", "copies")

    def __init__(self, answer: dict):
        super().__init__()
        self.answer = answer
        self.copies = list(answer["copies"])

    def body(self) -> ComposeResult:
        yield Static("", id="copies-text")
        yield DataTable(id="copies", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("Copy", 10), ("Kind", 8), ("Made", 12), ("Recipient", 24), ("Retrieved", 12)):
            table.add_column(label, width=width)
        self.paint()

    def paint(self) -> None:
        outstanding = [c["id"] for c in self.copies if not c.get("retrieved_at")]
        self.query_one("#copies-text", Static).update(
            f"{len(self.copies)} cop{'y' if len(self.copies) == 1 else 'ies'} made "
            f"{window(self.answer['since'], self.answer['until'])}; "
            f"to retrieve: {', '.join(outstanding) or 'none'}")
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for c in self.copies:
            recipient = "(sealed warrant)" if c.get("sealed") else (c.get("recipient") or "")
            table.add_row(c["id"], c["kind"], local(c["created_at"]), recipient[:24],
                          local(c["retrieved_at"]) if c.get("retrieved_at") else "NO", key=c["id"])
        table.move_cursor(row=row)
        self.say("M records that the selected copy was retrieved." if outstanding else
                 "Nothing to retrieve. Escape: back to the case.")

    def action_retrieved(self) -> None:
        row = self.query_one(DataTable).cursor_row
        if not 0 <= row < len(self.copies):
            return
        copy = self.copies[row]

        def retrieved(answer: dict | None) -> None:
            if answer:
                self.copies[row] = answer["export"]
                self.paint()
        self.app.push_screen(Fields(f"Copy {copy['id']} retrieved", [Field("note", "How, from whom")],
                                    op="export.mark_retrieved", yes="Record",
                                    intro=self.app.summary("export.mark_retrieved"),
                                    build=lambda v: {"export": copy["id"], "note": v["note"]}), retrieved)
