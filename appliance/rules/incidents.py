"""Incidents, requests, the Director's decisions, grants and imminent danger
(C7, C9, C17, C18, C19). Reference: docs/api/incidents.md.

The policy's incident procedure, step by step:
  1. a staff member files an incident report (C17) on one of the three grounds the
     policy allows for recorded data (C9), describing conduct and attesting that it
     is not about who someone is (C7);
  2. she requests a review of recordings tied to the incident, or live monitoring;
  3. the Director approves (possibly narrower) or denies; an approval is a grant:
     scoped to cameras and a window, time-boxed, usable by the requester and the
     Director only (`check_grant`, used by the footage and live modules);
  4. the Director records the outcome (C18) and closes the incident.

Imminent danger (C19) is the break-glass path: a self-granted 60-minute grant on
recent and live footage, an automatic hold, the Director alerted at once, an incident
report owed within 24 hours, and the Director's after-action review. A use is kept
in the `requests` table with kind "imminent_danger".
"""
from __future__ import annotations

import functools
from datetime import datetime, timedelta

from appliance.background import every
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import ANYONE, DIRECTOR, STAFF_OR_DIRECTOR, Caller, iso, op, parse_iso, Scope
from appliance.custody.records import valid_id
from appliance.wording import when

GROUNDS = ("criminal_activity", "litigation", "conduct_violation")  # C9: the only allowed grounds
OUTCOMES = ("no_action", "corrective_action", "law_enforcement_referral", "insufficient_evidence")

REVIEW_MAX_LENGTH = timedelta(hours=12)     # one review window
REVIEW_MAX_DISTANCE = timedelta(hours=24)   # from the incident's time, either side
MONITOR_MAX_LENGTH = timedelta(hours=8)
MONITOR_MAX_LEAD = timedelta(hours=24)      # monitoring must start within a day
MONITOR_START_SLACK = timedelta(minutes=5)  # "now" typed a moment ago is still now
EXPIRES_HOURS_DEFAULT = 72
IMMINENT_LIVE = timedelta(minutes=60)
IMMINENT_INCIDENT_DUE = timedelta(hours=24)
OVERDUE_CHECK_SECONDS = 300

ATTESTATION_TEXT = (
    "I attest that this report concerns conduct I observed or was told of, tied to this specific "
    "incident, and that it is not made on the basis of race, color, religion, sex, age, national "
    "origin, veteran status, disability, or any other basis prohibited by federal, state, or local law."
)


# --------------------------------------------------------------------------- helpers


def _get(central, table: str, record_id: str, what: str) -> dict:
    doc = central.records.get(table, record_id)
    if doc is None:
        raise NotFound(f"no {what} {record_id}")
    return doc


def _held_grants(central, caller) -> list[dict]:
    return central.records.search("grants", lambda g: caller.user_id in g["holders"])


def _filed_or_granted(central, caller, incident: dict) -> bool:
    return (incident["filed_by"] == caller.user_id
            or any(g["incident"] == incident["id"] for g in _held_grants(central, caller)))


# Whose records staff reach (the Director reaches all): declared here, named in the rules below.
INCIDENTS = Scope("incidents", "the incidents they filed or hold a grant for", _filed_or_granted,
                  what_one="incident", clause="C9",
                  refusal="incident {id} is not yours: staff see the incidents they filed or hold a grant for")
REQUESTS = Scope("requests", "their own requests", lambda central, caller, r: r["requested_by"] == caller.user_id,
                 what_one="request", clause="C17", refusal="request {id} is not yours")
GRANTS = Scope("grants", "the grants they hold", lambda central, caller, g: caller.user_id in g["holders"],
               what_one="grant", clause="C9", refusal="grant {id} is not yours: it names who may use it")


def _approved_cameras(central, camera_ids: list[str]) -> None:
    for camera in camera_ids:
        record = central.records.get("cameras", camera)
        if record is None:
            raise NotFound(f"no camera {camera}")
        if record.get("status") != "approved":
            raise Refused(f"camera {camera} is {record.get('status')}, not approved: only cameras whose "
                          "placement the Director approved may be used", clause="C6")


def _require_open(incident: dict) -> None:
    if incident["status"] != "open":
        raise Refused(f"incident {incident['id']} is closed: recorded data is used only for an open, "
                      "specific incident", clause="C9")


def _not_own_as_acting(caller, owner_id: str, what: str, clause: str) -> None:
    """An acting director decides other people's matters, never her own."""
    if caller.role != "director" and owner_id == caller.user_id:
        raise Refused(f"an acting director may not decide her own {what}: the Director does", clause=clause)


# --------------------------------------------------------------------------- incidents (C7, C9, C17)


@op("incident.attestation_text", ANYONE)
def attestation_text(central, caller, args):
    """The attestation a filer makes with every incident report (C7)."""
    args.done()
    return {"text": ATTESTATION_TEXT}


@op("incident.create", STAFF_OR_DIRECTOR,
    labels={"occurred_at": "When it happened", "description": "What happened"})
def create_incident(central, caller, args):
    """File an incident report: grounds, when, where, the conduct observed, the attestation."""
    grounds = args.str("grounds", choices=GROUNDS)
    occurred_at = args.time("occurred_at")
    location = args.str("location", min_len=2, max_len=200)
    description = args.str("description", min_len=20, max_len=4000)
    attested = args.bool("attestation")
    check_only = args.bool("check_only")
    args.done()
    now = central.now()
    if occurred_at > now:
        raise args.bad("occurred_at", f"({when(occurred_at)}) is in the future")
    if not attested:
        raise Refused("an incident report needs the attestation (see incident.attestation_text): it must "
                      "concern conduct, not race, color, religion, sex, age, national origin, veteran "
                      "status, disability or any other protected basis", clause="C7")
    if check_only:   # a form checking as the person types: every rule above, nothing written
        return {"checked": True}
    doc = {"grounds": grounds, "occurred_at": iso(occurred_at), "location": location,
           "description": description, "attestation": {"text": ATTESTATION_TEXT, "at": iso(now)},
           "filed_by": caller.user_id, "filed_at": iso(now), "status": "open",
           "outcome": None, "closed_at": None, "closed_by": None, "close_notes": None}
    doc["id"] = central.records.insert("incidents", doc)
    audit_action(central, caller, "incident.create", target=doc["id"], refs={"incident": doc["id"]},
           why=grounds, details={"occurred_at": doc["occurred_at"], "location": location, "attested": True})
    return {"incident": doc}


INCIDENT_SUMMARY = ("id", "grounds", "occurred_at", "location", "status", "filed_by", "filed_at")


@op("incident.list", STAFF_OR_DIRECTOR.own(INCIDENTS))
def list_incidents(central, caller, args):
    """Incidents you may see (the Director: all), as summaries; incident.get reads one (audited)."""
    status = args.str("status", required=False, choices=("open", "closed"))
    args.done()
    found = [i for i in central.records.all("incidents")
             if (status is None or i["status"] == status) and INCIDENTS.reaches(central, caller, i)]
    summaries = [{k: i[k] for k in INCIDENT_SUMMARY} | {"outcome": i["outcome"] and i["outcome"]["outcome"]}
                 for i in found]
    return {"incidents": sorted(summaries, key=lambda i: i["id"])}


@op("incident.get", STAFF_OR_DIRECTOR.own(INCIDENTS, "incident"))
def get_incident(central, caller, args):
    """One incident with the requests and grants you may see for it."""
    incident_id = args.id("incident")
    args.done()
    incident = _get(central, "incidents", incident_id, "incident")
    requests = central.records.search("requests", incident=incident_id)
    grants = central.records.search("grants", incident=incident_id)
    if not caller.is_director:
        requests = [r for r in requests if r["requested_by"] == caller.user_id]
        grants = [g for g in grants if caller.user_id in g["holders"]]
    audit_action(central, caller, "incident.view", target=incident_id, refs={"incident": incident_id})
    return {"incident": incident, "requests": requests, "grants": grants}


# --------------------------------------------------------------------------- requests (C9, C17)


def _check_review_window(incident: dict, start: datetime, end: datetime, now: datetime) -> None:
    if end > now:
        raise Refused("a review covers recorded footage, so its window must be in the past; "
                      "ask for kind monitor to watch live", clause="C9")
    if end - start > REVIEW_MAX_LENGTH:
        raise Refused("a review window may be at most 12 hours long", clause="C9")
    occurred = parse_iso(incident["occurred_at"])
    if start < occurred - REVIEW_MAX_DISTANCE or end > occurred + REVIEW_MAX_DISTANCE:
        raise Refused(f"a review window must lie within 24 hours of the incident ({when(incident['occurred_at'])}): "
                      "recorded data is used only for that specific incident", clause="C9")


def _check_monitor_window(start: datetime, end: datetime, now: datetime) -> None:
    if start < now - MONITOR_START_SLACK or start > now + MONITOR_MAX_LEAD:
        raise Refused("live monitoring must start between now and 24 hours from now", clause="C17")
    if end - start > MONITOR_MAX_LENGTH:
        raise Refused("live monitoring may last at most 8 hours", clause="C17")


@op("request.create", STAFF_OR_DIRECTOR.own(INCIDENTS, "incident"),
    labels={"cameras": "Cameras", "start": "From", "end": "To", "reason": "Reason"})
def create_request(central, caller, args):
    """Ask the Director to review recordings (kind review) or monitor live (kind monitor)."""
    incident_id = args.id("incident")
    kind = args.str("kind", choices=("review", "monitor"))
    cameras = args.ids("cameras")
    start = args.time("start")
    end = args.time("end")
    reason = args.str("reason", min_len=10, max_len=2000)
    check_only = args.bool("check_only")
    args.done()
    if end <= start:
        raise BadRequest("end must be after start")
    incident = _get(central, "incidents", incident_id, "incident")
    _require_open(incident)
    _approved_cameras(central, cameras)
    now = central.now()
    if kind == "review":
        _check_review_window(incident, start, end, now)
    else:
        _check_monitor_window(start, end, now)
    if check_only:   # a form checking as the person types: every rule above, nothing written
        return {"checked": True}
    doc = {"incident": incident_id, "kind": kind, "cameras": cameras, "start": iso(start), "end": iso(end),
           "reason": reason, "requested_by": caller.user_id, "requested_at": iso(now), "status": "pending",
           "decided_by": None, "decided_at": None, "decision_reason": None, "grant": None}
    doc["id"] = central.records.insert("requests", doc)
    audit_action(central, caller, "request.create", target=doc["id"], refs={"incident": incident_id, "request": doc["id"]},
           why=reason, details={"kind": kind, "cameras": cameras, "start": doc["start"], "end": doc["end"]})
    return {"request": doc}


@op("request.list", STAFF_OR_DIRECTOR.own(REQUESTS))
def list_requests(central, caller, args):
    """Requests (the Director: all; staff: their own), optionally by kind and status."""
    kind = args.str("kind", required=False, choices=("review", "monitor", "imminent_danger"))
    status = args.str("status", required=False,
                      choices=("pending", "approved", "denied", "cancelled", "self_granted"))
    args.done()
    found = [r for r in central.records.all("requests")
             if REQUESTS.reaches(central, caller, r)
             and (kind is None or r["kind"] == kind) and (status is None or r["status"] == status)]
    return {"requests": sorted(found, key=lambda r: r["id"])}


# --------------------------------------------------------------------------- decisions and grants (C17)


def _narrowed_scope(request: dict, cameras: list[str], start: datetime | None, end: datetime | None):
    """The approved scope: what was requested, or a narrower part of it (never wider)."""
    cameras = cameras or request["cameras"]
    start = start or parse_iso(request["start"])
    end = end or parse_iso(request["end"])
    wider = [c for c in cameras if c not in request["cameras"]]
    if wider:
        raise Refused(f"cameras {', '.join(wider)} were not requested: an approval may narrow a request, "
                      "never widen it", clause="C17")
    if start < parse_iso(request["start"]) or end > parse_iso(request["end"]):
        raise Refused(f"the approved window must lie inside the requested one ({when(request['start'])} to "
                      f"{when(request['end'])})", clause="C17")
    if end <= start:
        raise BadRequest("end must be after start")
    return cameras, start, end


def _place_hold(central, grant: dict, kind: str, why: str, by: Caller | None) -> str:
    """Hold a grant's footage from retention until the Director releases it (C12, C20).
    `by`: the person whose decision places it, or None when the system does (imminent danger)."""
    refs = {k: grant[k] for k in ("incident", "request") if grant[k]}
    hold = {"kind": kind, "cameras": grant["cameras"], "start": grant["start"], "end": grant["end"],
            "refs": refs, "why": why, "placed_by": by.user_id if by else "system", "placed_at": iso(central.now()),
            "released_at": None, "released_by": None, "release_reason": None}
    hold_id = central.records.insert("holds", hold)
    details = {"kind": kind, "cameras": hold["cameras"], "start": hold["start"], "end": hold["end"], "automatic": True}
    if by is None:
        central.audit.append("system", "hold.place", role="system", target=hold_id, refs=refs, why=why, details=details)
    else:
        audit_action(central, by, "hold.place", target=hold_id, refs=refs, why=why, details=details)
    return hold_id


def _approve(central, caller, request: dict, cameras, start, end, expires_hours: int) -> tuple[dict, str | None]:
    now = central.now()
    grant = {"request": request["id"], "incident": request["incident"], "kind": request["kind"],
             "cameras": cameras, "start": iso(start), "end": iso(end),
             "expires_at": iso(now + timedelta(hours=expires_hours)), "holders": [request["requested_by"]],
             "granted_by": caller.user_id, "granted_at": iso(now), "revoked_at": None,
             "revoked_by": None, "revoke_reason": None}
    grant["id"] = central.records.insert("grants", grant)
    hold_id = None
    if request["kind"] == "review":
        # An approved review is an ongoing investigation: its footage outlives the schedule (C12).
        hold_id = _place_hold(central, grant, "incident", f"approved review for incident {request['incident']}",
                              caller)
    return grant, hold_id


def _pending_request(central, caller, request_id: str) -> dict:
    request = _get(central, "requests", request_id, "request")
    if request["kind"] == "imminent_danger":
        raise Refused("an imminent-danger use is self-granted: review it with imminent.review", clause="C19")
    if request["status"] != "pending":
        raise Refused(f"request {request_id} was already decided ({request['status']})", clause="C17")
    _not_own_as_acting(caller, request["requested_by"], "request", "C17")
    return request


def _approvable_scope(central, request: dict, cameras, start, end):
    _require_open(_get(central, "incidents", request["incident"], "incident"))
    cameras, start, end = _narrowed_scope(request, cameras, start, end)
    if request["kind"] == "monitor" and end <= central.now():
        raise Refused("that monitoring window is already over: the staff member may ask again", clause="C17")
    return cameras, start, end


def _decision_details(decision: str, request: dict, grant: dict | None, hold_id: str | None) -> dict:
    if grant is None:
        return {"decision": decision}
    scope = (grant["cameras"], grant["start"], grant["end"])
    return {"decision": decision, "cameras": grant["cameras"], "start": grant["start"], "end": grant["end"],
            "expires_at": grant["expires_at"], "hold": hold_id,
            "narrowed": scope != (request["cameras"], request["start"], request["end"])}


@op("request.decide", DIRECTOR,
    labels={"expires_hours": "Grant lasts (hours)"})
def decide_request(central, caller, args):
    """Approve (optionally narrower; creates the grant) or deny a pending request."""
    request_id = args.id("request")
    decision = args.str("decision", choices=("approve", "deny"))
    reason = args.str("reason", min_len=3, max_len=2000)
    cameras = args.ids("cameras", required=False)
    start = args.time("start", required=False)
    end = args.time("end", required=False)
    expires_hours = args.int("expires_hours", required=False, default=EXPIRES_HOURS_DEFAULT, lo=1, hi=336)
    args.done()
    request = _pending_request(central, caller, request_id)
    grant, hold_id = None, None
    if decision == "deny":
        approval_args = [n for n in ("cameras", "start", "end", "expires_hours") if args.raw.get(n) is not None]
        if approval_args:
            raise BadRequest(f"{', '.join(approval_args)} apply to approvals only")
    else:
        scope = _approvable_scope(central, request, cameras, start, end)
        grant, hold_id = _approve(central, caller, request, *scope, expires_hours)
    updated = central.records.update("requests", request_id, {
        "status": "approved" if grant else "denied", "decided_by": caller.user_id,
        "decided_at": iso(central.now()), "decision_reason": reason, "grant": grant and grant["id"]})
    audit_action(central, caller, "request.decide", target=request_id,
           refs={"incident": request["incident"], "request": request_id, "grant": grant and grant["id"]},
           why=reason, details=_decision_details(decision, request, grant, hold_id))
    return {"request": updated, "grant": grant, "hold": hold_id}


def grant_is_active(central, grant: dict) -> bool:
    return not grant["revoked_at"] and parse_iso(grant["expires_at"]) > central.now()


@op("grant.list", STAFF_OR_DIRECTOR.own(GRANTS),
    labels={"active_only": "Active only"})
def list_grants(central, caller, args):
    """Grants (the Director: all; staff: those they hold), each marked active or not."""
    active_only = args.bool("active_only")
    args.done()
    grants = [g for g in central.records.all("grants") if GRANTS.reaches(central, caller, g)]
    grants = [g | {"active": grant_is_active(central, g)} for g in grants]
    if active_only:
        grants = [g for g in grants if g["active"]]
    return {"grants": sorted(grants, key=lambda g: g["id"])}


@op("grant.revoke", DIRECTOR)
def revoke_grant(central, caller, args):
    """End a grant now, with a reason."""
    grant_id = args.id("grant")
    reason = args.str("reason", min_len=3, max_len=2000)
    args.done()
    grant = _get(central, "grants", grant_id, "grant")
    if grant["revoked_at"]:
        raise Refused(f"grant {grant_id} was already revoked at {when(grant['revoked_at'])}")
    updated = _revoke(central, caller.user_id, grant_id, reason)
    audit_action(central, caller, "grant.revoke", target=grant_id,
           refs={"grant": grant_id, "incident": grant["incident"], "request": grant["request"]}, why=reason)
    return {"grant": updated}


# What else ends with a grant, each `f(central, grant_id)`: live.py adds the live views opened under it
# (it imports this module, so this one cannot import it).
WHEN_A_GRANT_ENDS: list = []


def _revoke(central, by: str, grant_id: str, reason: str) -> dict:
    """End a grant now, and what was opened under it (WHEN_A_GRANT_ENDS)."""
    grant = central.records.update("grants", grant_id, {"revoked_at": iso(central.now()), "revoked_by": by,
                                                         "revoke_reason": reason})
    for ended in WHEN_A_GRANT_ENDS:
        ended(central, grant_id)
    return grant


def _as_time(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_iso(value)


def check_grant(central, caller, grant_id: str, camera: str, start=None, end=None, *, live: bool = False) -> dict:
    """The grant, if `caller` may use it now for `camera` over [start, end] (or live).

    Raises Refused (C9: no such grant or outside its scope; C17: revoked, expired,
    someone else's, or not a live grant). Used by the footage and live modules,
    which write their own audit entries for the use.
    """
    grant = central.records.get("grants", grant_id) if valid_id(grant_id) else None
    if grant is None:
        raise Refused(f"no grant {grant_id!r}: footage needs an approved grant for an incident", clause="C9")
    now = central.now()
    if grant["revoked_at"]:
        raise Refused(f"grant {grant_id} was revoked at {when(grant['revoked_at'])}", clause="C17")
    if parse_iso(grant["expires_at"]) <= now:
        raise Refused(f"grant {grant_id} expired at {when(grant['expires_at'])}: ask the Director again", clause="C17")
    if caller is None or not GRANTS.reaches(central, caller, grant):
        raise Refused(f"grant {grant_id} is not yours: only the staff member who requested it and the "
                      "Director may use it", clause="C17")
    if camera not in grant["cameras"]:
        raise Refused(f"grant {grant_id} does not cover camera {camera}", clause="C9")
    _check_inside_grant(grant, _as_time(start), _as_time(end))
    if live:
        _check_live(grant, now)
    elif grant["kind"] not in ("review", "imminent_danger"):
        raise Refused(f"grant {grant_id} is for watching live, not for reviewing recordings: "
                      "request a review for the incident", clause="C9")
    return grant


def _check_inside_grant(grant: dict, start: datetime | None, end: datetime | None) -> None:
    g_start, g_end = parse_iso(grant["start"]), parse_iso(grant["end"])
    for t in (start, end):
        if t is not None and not g_start <= t <= g_end:
            raise Refused(f"{when(t)} is outside grant {grant['id']} ({when(grant['start'])} to {when(grant['end'])})",
                          clause="C9")
    if start is not None and end is not None and end < start:
        raise BadRequest("end must not be before start")


def _check_live(grant: dict, now: datetime) -> None:
    if grant["kind"] not in ("monitor", "imminent_danger"):
        raise Refused(f"grant {grant['id']} is for reviewing recordings, not live monitoring", clause="C17")
    if not parse_iso(grant["start"]) <= now <= parse_iso(grant["end"]):
        raise Refused(f"grant {grant['id']} allows live monitoring from {when(grant['start'])} to {when(grant['end'])} only",
                      clause="C17")


# --------------------------------------------------------------------------- outcomes (C18)


@op("incident.record_outcome", DIRECTOR,
    labels={"corrective_action": "Corrective action"})
def record_outcome(central, caller, args):
    """Record what the incident led to, with any corrective action the Director approves."""
    incident_id = args.id("incident")
    outcome = args.str("outcome", choices=OUTCOMES)
    notes = args.str("notes", min_len=3, max_len=4000)
    corrective = args.str("corrective_action", required=False, min_len=3, max_len=2000)
    args.done()
    incident = _get(central, "incidents", incident_id, "incident")
    if outcome == "corrective_action" and not corrective:
        raise BadRequest("describe the corrective action you approve (corrective_action)")
    _require_open(incident)
    if incident["outcome"]:
        raise Refused(f"incident {incident_id} already has an outcome ({incident['outcome']['outcome']})",
                      clause="C18")
    _not_own_as_acting(caller, incident["filed_by"], "incident", "C18")
    record = {"outcome": outcome, "notes": notes, "corrective_action": corrective,
              "by": caller.user_id, "at": iso(central.now())}
    updated = central.records.update("incidents", incident_id, {"outcome": record})
    audit_action(central, caller, "incident.record_outcome", target=incident_id, refs={"incident": incident_id},
           why=notes, details={"outcome": outcome, "corrective_action": corrective})
    result = {"incident": updated}
    if outcome == "law_enforcement_referral":
        result["next"] = ("footage leaves the appliance only through release.create, with a recorded legal "
                          "instrument and counsel consulted (C3, C13, C14)")
    return result


@op("incident.close", DIRECTOR)
def close_incident(central, caller, args):
    """Close an incident that has an outcome: its grants end, pending requests are cancelled."""
    incident_id = args.id("incident")
    notes = args.str("notes", required=False, max_len=2000)
    args.done()
    incident = _get(central, "incidents", incident_id, "incident")
    if incident["status"] != "open":
        raise Refused(f"incident {incident_id} is already closed")
    if not incident["outcome"]:
        raise Refused("record the incident's outcome (incident.record_outcome) before closing it", clause="C18")
    now = iso(central.now())
    revoked = [g["id"] for g in central.records.search("grants", incident=incident_id) if not g["revoked_at"]]
    for grant_id in revoked:
        _revoke(central, caller.user_id, grant_id, "incident closed")
    cancelled = [r["id"] for r in central.records.search("requests", incident=incident_id, status="pending")]
    for request_id in cancelled:
        central.records.update("requests", request_id, {"status": "cancelled", "decided_by": caller.user_id,
                                                        "decided_at": now, "decision_reason": "incident closed"})
    updated = central.records.update("incidents", incident_id, {"status": "closed", "closed_at": now,
                                                                "closed_by": caller.user_id, "close_notes": notes})
    audit_action(central, caller, "incident.close", target=incident_id, refs={"incident": incident_id}, why=notes,
           details={"grants_revoked": revoked, "requests_cancelled": cancelled})
    return {"incident": updated, "grants_revoked": revoked, "requests_cancelled": cancelled}


# --------------------------------------------------------------------------- imminent danger (C19)


def _imminent_use(central, request_id: str) -> dict:
    use = _get(central, "requests", request_id, "imminent-danger use")
    if use["kind"] != "imminent_danger":
        raise BadRequest(f"{request_id} is a {use['kind']} request, not an imminent-danger use")
    return use


@op("imminent.invoke", STAFF_OR_DIRECTOR,
    labels={"minutes_back": "Minutes back"})
def invoke_imminent(central, caller, args):
    """Break glass: at once, a 60-minute grant on recent and live footage; the Director is alerted."""
    reason = args.str("reason", min_len=10, max_len=2000)
    cameras = args.ids("cameras")
    minutes_back = args.int("minutes_back", required=False, default=15, lo=1, hi=30)
    check_only = args.bool("check_only")
    args.done()
    _approved_cameras(central, cameras)
    if check_only:   # the danger form, checked before its confirmation: every rule above, nothing written
        return {"checked": True}
    now = central.now()
    start, end = iso(now - timedelta(minutes=minutes_back)), iso(now + IMMINENT_LIVE)
    use = {"incident": None, "kind": "imminent_danger", "cameras": cameras, "start": start, "end": end,
           "reason": reason, "requested_by": caller.user_id, "requested_at": iso(now), "status": "self_granted",
           "grant": None, "hold": None, "alert": None, "review": None, "overdue_alerted_at": None}
    use_id = central.records.insert("requests", use)
    grant = {"request": use_id, "incident": None, "kind": "imminent_danger", "cameras": cameras,
             "start": start, "end": end, "expires_at": end, "holders": [caller.user_id], "granted_by": None,
             "granted_at": iso(now), "revoked_at": None, "revoked_by": None, "revoke_reason": None}
    grant["id"] = central.records.insert("grants", grant)
    audit_action(central, caller, "imminent.invoke", target=use_id, refs={"request": use_id, "grant": grant["id"]},
           why=reason, details={"cameras": cameras, "start": start, "end": end})
    use = _finish_use(central, central.records.get("requests", use_id), grant, caller.name)
    return {"request": use, "grant": grant, "hold": use["hold"], "alert": use["alert"]}


def _finish_use(central, use: dict, grant: dict, invoker: str) -> dict:
    """After its grant and its audit entry: the use's hold and the Director's alert, each marked in the
    use when done. A central killed before both were written finishes them at its next start
    (`finish_interrupted_uses`): a grant given must never go untold or its footage unheld (C19)."""
    if use["hold"] is None:
        hold_id = _place_hold(central, grant, "imminent_danger", f"imminent danger: {use['reason']}", None)
        use = central.records.update("requests", use["id"], {"grant": grant["id"], "hold": hold_id})
    if use.get("alert", "alerted before this field") is None:
        alert = central.alert("imminent_danger", f"{invoker} invoked imminent danger on {', '.join(use['cameras'])}: "
                                                 f"{use['reason']}", request=use["id"], grant=grant["id"],
                              user=use["requested_by"])
        use = central.records.update("requests", use["id"], {"alert": alert["id"]})
    return use


def finish_interrupted_uses(central) -> list[str]:
    """Imminent-danger uses a crash cut short after their grant: write what is missing (the audit entry,
    the hold, the Director's alert). A use cut short before its grant gave nothing: it is left as it is."""
    finished = []
    for use in central.records.search("requests", kind="imminent_danger"):
        if use["hold"] is not None and use.get("alert", "alerted before this field") is not None:
            continue
        grants = central.records.search("grants", request=use["id"])
        if not grants:
            continue
        grant, user = grants[0], central.records.get("users", use["requested_by"])
        if not any(e["target"] == use["id"] for e in central.audit.query(action_prefix="imminent.invoke")):
            central.audit.append(user["id"], "imminent.invoke", role=user["role"], target=use["id"],
                                 refs={"request": use["id"], "grant": grant["id"]}, why=use["reason"],
                                 details={"cameras": use["cameras"], "start": use["start"], "end": use["end"],
                                          "written_after_a_restart": True})
        _finish_use(central, use, grant, user["name"])
        finished.append(use["id"])
    return finished


@op("imminent.link_incident", STAFF_OR_DIRECTOR.own(
    REQUESTS, "request", refusal="only the staff member who invoked imminent danger, or the Director, links "
    "its incident", clause="C19").noting("the incident linked must be one the caller filed"))
def link_incident(central, caller, args):
    """Attach the incident report filed after an imminent-danger use (invoker or Director)."""
    use_id = args.id("request")
    incident_id = args.id("incident")
    args.done()
    use = _imminent_use(central, use_id)
    incident = _get(central, "incidents", incident_id, "incident")
    if not caller.is_director and incident["filed_by"] != caller.user_id:
        raise Refused(f"incident {incident_id} was not filed by you: file your own report", clause="C19")
    if incident["status"] != "open":
        raise Refused(f"incident {incident_id} is closed: the report owed is about this danger; file it with "
                      "incident.create and link that", clause="C19")
    if use["incident"]:
        raise Refused(f"{use_id} is already linked to incident {use['incident']}", clause="C19")
    updated = central.records.update("requests", use_id, {"incident": incident_id})
    central.records.update("grants", use["grant"], {"incident": incident_id})
    audit_action(central, caller, "imminent.link_incident", target=use_id,
           refs={"request": use_id, "incident": incident_id, "grant": use["grant"]})
    return {"request": updated}


@op("imminent.review", DIRECTOR)
def review_imminent(central, caller, args):
    """The Director's after-action review of an imminent-danger use."""
    use_id = args.id("request")
    finding = args.str("finding", choices=("justified", "not_justified"))
    notes = args.str("notes", min_len=3, max_len=4000)
    args.done()
    use = _imminent_use(central, use_id)
    if use["review"]:
        raise Refused(f"{use_id} was already reviewed ({use['review']['finding']})", clause="C19")
    _not_own_as_acting(caller, use["requested_by"], "imminent-danger use", "C19")
    review = {"finding": finding, "notes": notes, "by": caller.user_id, "at": iso(central.now())}
    updated = central.records.update("requests", use_id, {"review": review})
    audit_action(central, caller, "imminent.review", target=use_id,
           refs={"request": use_id, "grant": use["grant"], "incident": use["incident"]},
           why=notes, details={"finding": finding})
    return {"request": updated}


def alert_overdue_incidents(central) -> list[str]:
    """Alert the Director once for each imminent-danger use 24 h old without an incident report."""
    now = central.now()
    alerted = []
    for use in central.records.search("requests", kind="imminent_danger"):
        if use["incident"] or use["overdue_alerted_at"]:
            continue
        if now - parse_iso(use["requested_at"]) < IMMINENT_INCIDENT_DUE:
            continue
        central.records.update("requests", use["id"], {"overdue_alerted_at": iso(now)})
        central.audit.append("system", "imminent.incident_overdue", role="system", target=use["id"],
                             refs={"request": use["id"], "grant": use["grant"]},
                             details={"invoked_by": use["requested_by"], "invoked_at": use["requested_at"]})
        central.alert("imminent_no_incident", f"imminent-danger use {use['id']} of {when(use['requested_at'])} has "
                                              "no incident report after 24 hours",
                      request=use["id"], user=use["requested_by"])
        alerted.append(use["id"])
    return alerted


def imminent_checks(central) -> None:
    """At start and every few minutes: finish uses a crash cut short, alert overdue incident reports."""
    finish_interrupted_uses(central)
    alert_overdue_incidents(central)


def periodic(central):
    return [every(OVERDUE_CHECK_SECONDS, functools.partial(imminent_checks, central),
                  name="imminent-danger checks", lock=central.decision_lock)]
