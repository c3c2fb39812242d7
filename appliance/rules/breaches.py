"""Privacy breach cases (C15, C16). Reference: docs/api/breaches.md.

C15: "Any library employee who becomes aware of any unauthorized disclosure of a
video record and/or a potential privacy breach has a responsibility to ensure that
the Director is immediately informed." Anyone with an account (staff, IT, the
Director) files a breach report; the Director is alerted at once.

C16: "immediate action will be taken to control the situation (e.g. determine if
unauthorized access to an electronic system has occurred, retrieve copies of
recorded information, and investigate & resolve security issues) ... a review of
... the adequacy of existing policies, procedures and technology ... The Director
will notify individuals whose personal information has been disclosed and try to
resolve a complainant's concerns informally." A case holds one record per step; it
closes only when every step is done or marked not applicable. The steps that have
evidence in the system need it: an access query for `check_unauthorised_access`, an
export-register check for `retrieve_copies`, a notification for
`notify_individuals`, resolved complaints for `resolve_complaints`.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.legal import copy_times, outstanding
from appliance.rules.registry import ANYONE, DIRECTOR, iso, op, parse_iso, Scope
from appliance.wording import role_name, when

STEPS = ("contain", "check_unauthorised_access", "retrieve_copies", "investigate", "review_adequacy",
         "notify_individuals", "resolve_complaints")
# Audit actions that touch footage, keys, accounts or records (the C16 access check).
ACCESS_PREFIXES = ("footage.", "archive.", "keys.", "user.", "session.", "export.", "release.", "live.",
                   "notice.", "access.", "camera.snapshot_view")     # a snapshot is a picture of whoever is in view
MAX_ENTRIES = 2000          # an access query returns at most this many entries (and says so)
MAX_QUERY_DAYS = 400
FUTURE_SLACK = timedelta(minutes=5)
REPORTER_FIELDS = ("id", "what", "noticed_at", "suspected_window_start", "suspected_window_end",
                   "reported_at", "status", "closed_at")


def _get(central, breach_id: str) -> dict:
    breach = central.records.get("breaches", breach_id)
    if breach is None:
        raise NotFound(f"no breach case {breach_id}")
    return breach


# The Director sees every case; anyone else only the ones they reported (without revealing others).
REPORTED = Scope("breaches", "the breach reports they made",
                 lambda central, caller, b: b["reported_by"] == caller.user_id, what_one="breach case",
                 refusal="no breach case {id} that you reported", hidden=True)


def _view(caller, breach: dict) -> dict:
    """The Director's working record, or what the reporter needs to know about her report."""
    if caller.is_director:
        return breach
    return {k: breach[k] for k in REPORTER_FIELDS}


def _open_case(central, breach_id: str) -> dict:
    breach = _get(central, breach_id)
    if breach["status"] != "open":
        raise Refused(f"breach case {breach_id} is closed", clause="C16")
    return breach


def _not_future(central, args, t: datetime, name: str) -> None:
    if t > central.now() + FUTURE_SLACK:
        raise args.bad(name, f"({when(t)}) is in the future")


def _audit(central, caller, action: str, breach_id: str, *, why: str | None = None, details: dict | None = None):
    audit_action(central, caller, action, target=breach_id, refs={"breach": breach_id}, why=why, details=details)


def _window(central, breach: dict, since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    """The window to search: as given, else the case's suspected window."""
    since = since or (breach["suspected_window_start"] and parse_iso(breach["suspected_window_start"]))
    until = until or (breach["suspected_window_end"] and parse_iso(breach["suspected_window_end"]))
    if not since or not until:
        raise BadRequest("give since and until: this case has no suspected window to search")
    if until <= since:
        raise BadRequest("until must be after since")
    if until - since > timedelta(days=MAX_QUERY_DAYS):
        raise BadRequest(f"search at most {MAX_QUERY_DAYS} days at a time")
    return since, until


def _append(central, breach_id: str, field: str, item: dict) -> dict:
    return central.records.update("breaches", breach_id, lambda b: b[field].append(item))


# --------------------------------------------------------------------------- reporting (C15)


@op("breach.report", ANYONE,
    labels={"what": "What happened", "noticed_at": "When you noticed it",
            "suspected_window_start": "Suspected from", "suspected_window_end": "Suspected until"})
def report(central, caller, args):
    """Report an unauthorised disclosure or a possible privacy breach; the Director is told at once."""
    what = args.str("what", min_len=10, max_len=4000)
    noticed_at = args.time("noticed_at")
    start = args.time("suspected_window_start", required=False)
    end = args.time("suspected_window_end", required=False)
    args.done()
    _not_future(central, args, noticed_at, "noticed_at")
    if start and end and end <= start:
        raise BadRequest("suspected_window_end must be after suspected_window_start")
    for t, name in ((start, "suspected_window_start"), (end, "suspected_window_end")):
        if t:
            _not_future(central, args, t, name)
    now = iso(central.now())
    breach = {"what": what, "noticed_at": iso(noticed_at), "suspected_window_start": start and iso(start),
              "suspected_window_end": end and iso(end), "reported_by": caller.user_id,
              "reporter_role": caller.role, "reported_at": now, "status": "open",
              "steps": {step: None for step in STEPS}, "step_history": [], "access_queries": [],
              "copy_checks": [], "notifications": [], "complaints": [],
              "closed_at": None, "closed_by": None, "closing_summary": None}
    breach["id"] = central.records.insert("breaches", breach)
    # The description stays in the case record: the alert may leave the appliance by e-mail.
    alert = central.alert("breach", f"{caller.name} ({role_name(caller.role)}) reported a possible privacy breach at {when(now)}: "
                                    f"open breach case {breach['id']} on the appliance", breach=breach["id"],
                          user=caller.user_id)
    _audit(central, caller, "breach.report", breach["id"],
           details={"noticed_at": breach["noticed_at"], "suspected_window_start": breach["suspected_window_start"],
                    "suspected_window_end": breach["suspected_window_end"], "alert": alert["id"]})
    return {"breach": _view(caller, breach), "alert": alert["id"]}


@op("breach.list", ANYONE.own(REPORTED))
def list_breaches(central, caller, args):
    """Breach cases: the Director sees all, anyone else the ones they reported."""
    status = args.str("status", required=False, choices=("open", "closed"))
    args.done()
    found = [b for b in central.records.all("breaches")
             if REPORTED.reaches(central, caller, b) and status in (None, b["status"])]
    return {"breaches": [_view(caller, b) for b in sorted(found, key=lambda b: b["id"])]}


@op("breach.get", ANYONE.own(REPORTED, "breach"))
def get_breach(central, caller, args):
    """One breach case (the reporter sees her report and its status; the Director the whole case)."""
    breach = _get(central, args.id("breach"))
    args.done()
    if caller.is_director:
        _audit(central, caller, "breach.view", breach["id"])
    return {"breach": _view(caller, breach), "steps": list(STEPS)}


# --------------------------------------------------------------------------- the response (C16)


def _made_in(central, since, until) -> list[dict]:
    """The register's entries with a copy made in [since, until): approved then, or a package built
    then (a release approved before the window and built inside it is a copy made in it), oldest first."""
    return sorted((e for e in central.records.all("exports")
                   if any(since <= t < until for t in [parse_iso(e["created_at"]), *copy_times(e)])),
                  key=lambda e: e["created_at"])


def _not_retrieved(central, check: dict) -> list[str]:
    """The copies a copy check found, and any made in its window since, not retrieved (or built again since)."""
    wanted = set(check["exports"]) | {e["id"] for e in _made_in(central, parse_iso(check["since"]),
                                                                 parse_iso(check["until"]))}
    return [e["id"] for e in central.records.all("exports") if e["id"] in wanted and outstanding(e)]


def _evidence_missing(central, breach: dict, step: str) -> str | None:
    """Why `step` cannot be marked done yet, for the steps the system holds evidence of."""
    if step == "check_unauthorised_access" and not breach["access_queries"]:
        return "run breach.access_query over the window first"
    if step == "retrieve_copies":
        if not breach["copy_checks"]:
            return "check the export register with breach.copies first"
        outstanding = _not_retrieved(central, breach["copy_checks"][-1])
        if outstanding:
            return (f"{', '.join(outstanding)} not retrieved yet: record each with export.mark_retrieved "
                    "once it is back")
    if step == "notify_individuals" and not breach["notifications"]:
        return "record each notification with breach.notification first"
    if step == "resolve_complaints":
        if not breach["complaints"]:
            return "record the complaints with breach.complaint first"
        if any(c["resolution"] is None for c in breach["complaints"]):
            return "some complaints have no resolution recorded yet"
    return None


@op("breach.step", DIRECTOR,
    labels={"not_applicable": "Not applicable"})
def record_step(central, caller, args):
    """Record one response step as done (with notes), or as not applicable (with the reason)."""
    breach_id = args.id("breach")
    step = args.str("step", choices=STEPS)
    notes = args.str("notes", min_len=3, max_len=4000)
    not_applicable = args.bool("not_applicable")
    args.done()
    breach = _open_case(central, breach_id)
    if not not_applicable:
        missing = _evidence_missing(central, breach, step)
        if missing:
            raise Refused(f"{step} cannot be marked done: {missing} (or mark it not_applicable with the reason)",
                          clause="C16")
    entry = {"status": "not_applicable" if not_applicable else "done", "notes": notes, "by": caller.user_id,
             "at": iso(central.now())}

    def record(b):
        b["steps"][step] = entry
        b["step_history"].append(entry | {"step": step})
    breach = central.records.update("breaches", breach_id, record)
    _audit(central, caller, "breach.step", breach_id, why=notes, details={"step": step, "status": entry["status"]})
    return {"breach": breach}


def _actor_names(central) -> dict[str, str]:
    return {u["id"]: u["name"] for u in central.records.all("users")}


@op("breach.access_query", DIRECTOR)
def access_query(central, caller, args):
    """Every audited action on footage, keys, accounts or records in the window (default: the suspected one)."""
    breach = _open_case(central, args.id("breach"))
    since, until = _window(central, breach, args.time("since", required=False), args.time("until", required=False))
    args.done()
    entries = [e for e in central.audit.query(since=since, until=until) if e["action"].startswith(ACCESS_PREFIXES)]
    names = _actor_names(central)
    by_actor = Counter(e["actor"] for e in entries)
    summary = {"since": iso(since), "until": iso(until), "count": len(entries), "by": caller.user_id,
               "at": iso(central.now())}
    _append(central, breach["id"], "access_queries", summary)
    _audit(central, caller, "breach.access_query", breach["id"],
           details={"since": summary["since"], "until": summary["until"], "count": len(entries)})
    return {"since": summary["since"], "until": summary["until"], "count": len(entries),
            "truncated": len(entries) > MAX_ENTRIES, "entries": entries[:MAX_ENTRIES],
            "by_actor": [{"actor": a, "name": names.get(a, a), "entries": n} for a, n in by_actor.most_common()],
            "refused": sum(1 for e in entries if e["action"].endswith(".refused"))}


def _copy_view(central, caller, export: dict) -> dict:
    """An export-register entry; one under a sealed search warrant shows only that it exists (C13)."""
    from appliance.rules.warrants import instrument_hidden_from

    if export.get("instrument") and instrument_hidden_from(central, caller, export["instrument"]):
        return {k: export.get(k) for k in ("id", "kind", "created_at", "retrieved_at")} | {"sealed": True}
    return export


@op("breach.copies", DIRECTOR)
def copies(central, caller, args):
    """The copies made in the window (the export register): what to retrieve (export.mark_retrieved)."""
    breach = _open_case(central, args.id("breach"))
    since, until = _window(central, breach, args.time("since", required=False), args.time("until", required=False))
    args.done()
    found = _made_in(central, since, until)
    still_out = [e["id"] for e in found if outstanding(e)]
    check = {"since": iso(since), "until": iso(until), "exports": [e["id"] for e in found],
             "outstanding": still_out, "by": caller.user_id, "at": iso(central.now())}
    _append(central, breach["id"], "copy_checks", check)
    _audit(central, caller, "breach.copies", breach["id"],
           details={"since": check["since"], "until": check["until"], "exports": check["exports"],
                    "outstanding": still_out})
    return {"since": check["since"], "until": check["until"],
            "copies": [_copy_view(central, caller, e) for e in found], "outstanding": still_out}


@op("breach.notification", DIRECTOR,
    labels={"who": "Who was notified", "how": "How", "when": "When"})
def record_notification(central, caller, args):
    """Record that an individual whose personal information was disclosed was notified: who, how, when."""
    breach = _open_case(central, args.id("breach"))
    who = args.str("who", min_len=2, max_len=300)
    how = args.str("how", min_len=2, max_len=300)
    when = args.time("when")
    notes = args.str("notes", required=False, max_len=2000)
    args.done()
    _not_future(central, args, when, "when")
    item = {"who": who, "how": how, "when": iso(when), "notes": notes, "recorded_by": caller.user_id,
            "recorded_at": iso(central.now())}
    breach = _append(central, breach["id"], "notifications", item)
    # Who was notified is personal information: it stays in the case record, out of the audit log.
    _audit(central, caller, "breach.notification", breach["id"], details={"how": how, "when": item["when"]})
    return {"breach": breach}


@op("breach.complaint", DIRECTOR,
    labels={"received_at": "Received"})
def record_complaint(central, caller, args):
    """Record a complaint (with its informal resolution if reached), or the resolution of an earlier one."""
    breach = _open_case(central, args.id("breach"))
    complaint_id = args.str("complaint", required=False, max_len=16)
    complainant = args.str("complainant", required=complaint_id is None, min_len=2, max_len=300)
    received_at = args.time("received_at", required=complaint_id is None)
    concern = args.str("concern", required=complaint_id is None, min_len=3, max_len=4000)
    resolution = args.str("resolution", required=complaint_id is not None, min_len=3, max_len=4000)
    args.done()
    now = iso(central.now())
    if complaint_id is None:
        _not_future(central, args, received_at, "received_at")
        complaint_id = f"c{len(breach['complaints']) + 1}"
        item = {"id": complaint_id, "complainant": complainant, "received_at": iso(received_at),
                "concern": concern, "resolution": resolution, "resolved_at": resolution and now,
                "recorded_by": caller.user_id, "recorded_at": now}
        breach = _append(central, breach["id"], "complaints", item)
    else:
        if complainant or received_at or concern:
            raise BadRequest("to resolve an earlier complaint give only breach, complaint and resolution")
        earlier = next((c for c in breach["complaints"] if c["id"] == complaint_id), None)
        if earlier is None:
            raise NotFound(f"breach case {breach['id']} has no complaint {complaint_id}")
        if earlier["resolution"] is not None:
            raise Refused(f"complaint {complaint_id} was already resolved at {when(earlier['resolved_at'])}")

        def resolve(b):
            for c in b["complaints"]:
                if c["id"] == complaint_id:
                    c.update(resolution=resolution, resolved_at=now)
        breach = central.records.update("breaches", breach["id"], resolve)
    _audit(central, caller, "breach.complaint", breach["id"],
           details={"complaint": complaint_id, "resolved": resolution is not None})
    return {"breach": breach, "complaint": complaint_id}


@op("breach.close", DIRECTOR)
def close(central, caller, args):
    """Close a case once every step is done or marked not applicable."""
    breach = _open_case(central, args.id("breach"))
    summary = args.str("summary", min_len=3, max_len=4000)
    args.done()
    pending = [step for step in STEPS if breach["steps"][step] is None]
    if pending:
        raise Refused(f"these steps are neither done nor marked not applicable: {', '.join(pending)}", clause="C16")
    breach = central.records.update("breaches", breach["id"], {
        "status": "closed", "closed_at": iso(central.now()), "closed_by": caller.user_id,
        "closing_summary": summary})
    _audit(central, caller, "breach.close", breach["id"], why=summary)
    return {"breach": breach}
