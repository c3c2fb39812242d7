"""Reports: the Director's monitoring oversight (C7), the public transparency summary
(counts only, C13) and audit-log queries. Reference: docs/api/reports.md.

C7 says no monitoring on the basis of protected characteristics. The system cannot
read minds, but it can make each person's monitoring visible to the Director: every
incident, request, imminent-danger use, live view and footage view, per staff
member, so a pattern stands out.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from appliance.rules.accounts import find_user, person_arg
from appliance.rules.warrants import is_sealed
from appliance.errors import BadRequest, NotFound
from appliance.rules.auditing import audit_action
from appliance.rules.registry import ANYONE, DIRECTOR, iso, op, parse_iso

ACTION_PREFIX = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]*)*$")
AUDIT_QUERY_LIMIT = 5000


def _when(value: str | None) -> datetime | None:
    """A record's timestamp: an ISO instant, or a date (taken as its midnight UTC)."""
    if not value:
        return None
    if "T" in value:
        return parse_iso(value)
    return datetime.combine(date.fromisoformat(value), time(), timezone.utc)


def _within(t: datetime | None, since: datetime | None, until: datetime | None) -> bool:
    if t is None:
        return since is None and until is None
    return (since is None or t >= since) and (until is None or t < until)


# --------------------------------------------------------------------------- oversight (C7)


def _activity_counts(incidents, requests, imminent, live, footage) -> dict:
    return {"incidents": len(incidents), "requests": len(requests),
            "approved": sum(r["status"] == "approved" for r in requests),
            "denied": sum(r["status"] == "denied" for r in requests),
            "pending": sum(r["status"] == "pending" for r in requests),
            "imminent_danger_uses": len(imminent),
            "imminent_not_justified": sum(u["review"] == "not_justified" for u in imminent),
            "imminent_without_incident": sum(not u["incident"] for u in imminent),
            "live_views": len(live),
            "footage_views": sum(e["action"] != "footage.refused" for e in footage),
            "footage_refused": sum(e["action"] == "footage.refused" for e in footage)}


def _person_activity(central, user: dict, since, until, footage_entries: list[dict]) -> dict:
    uid = user["id"]
    incidents = [{k: i[k] for k in ("id", "grounds", "occurred_at", "filed_at", "status")}
                 for i in central.records.search("incidents", filed_by=uid)
                 if _within(_when(i.get("filed_at")), since, until)]
    mine = [r for r in central.records.search("requests", requested_by=uid)
            if _within(_when(r.get("requested_at")), since, until)]
    requests = [{k: r[k] for k in ("id", "incident", "kind", "cameras", "start", "end", "requested_at",
                                   "status", "decided_by", "decided_at")}
                for r in mine if r["kind"] != "imminent_danger"]
    imminent = [{k: r[k] for k in ("id", "incident", "cameras", "start", "end", "reason", "requested_at")}
                | {"review": r["review"] and r["review"]["finding"]}
                for r in mine if r["kind"] == "imminent_danger"]
    live = [v for v in central.records.search("live_views", user=uid)
            if _within(_when(v.get("opened_at")), since, until)]
    footage = [{k: e[k] for k in ("seq", "ts", "action", "target", "refs", "why")}
               for e in footage_entries if e["actor"] == uid]
    return {"user": uid, "name": user["name"], "disabled": bool(user.get("disabled")),
            "counts": _activity_counts(incidents, requests, imminent, live, footage),
            "incidents": incidents, "requests": requests, "imminent_danger": imminent,
            "live_views": live, "footage": footage}


@op("report.oversight", DIRECTOR)
def oversight_report(central, caller, args):
    """Each staff member's monitoring: incidents, requests, imminent danger, live views, footage views."""
    person = person_arg(central, args, required=False)
    since = args.time("since", required=False)
    until = args.time("until", required=False)
    args.done()
    if since and until and until <= since:
        raise BadRequest("until must be after since")
    staff = [u for u in central.records.all("users") if u["role"] == "staff"]
    user_id = person and person["id"]
    if person is not None:
        staff = [u for u in staff if u["id"] == user_id]
        if not staff:
            raise NotFound(f"{person['name']} is not a staff member: the report covers staff")
    views = central.audit.query(since=since, until=until, action_prefix="footage.")
    people = [_person_activity(central, u, since, until, views) for u in sorted(staff, key=lambda u: u["name"])]
    audit_action(central, caller, "report.oversight", details={"user": user_id, "since": since and iso(since),
                                               "until": until and iso(until)})
    return {"generated_at": iso(central.now()), "staff": people}


# --------------------------------------------------------------------------- transparency (counts only)


def _instrument_counts(central, since, until) -> dict:
    """Instruments by kind; a search warrant not yet filed with the court is only 'withheld' (C13)."""
    counts: dict[str, int] = {"withheld": 0}
    for ins in central.records.all("instruments"):
        if not _within(_when(ins.get("received_on")), since, until):
            continue
        kind = "withheld" if is_sealed(ins) else ins["kind"]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _release_count(central, since, until) -> int:
    """Releases made in the range; one under a warrant not yet filed is left out until it is (C13)."""
    sealed = {i["id"] for i in central.records.all("instruments") if is_sealed(i)}
    return sum(_within(_when(r.get("created_at")), since, until) and r["instrument"] not in sealed
               for r in central.records.all("releases"))


@op("report.transparency", ANYONE)
def transparency_report(central, caller, args):
    """Counts only, for a date range: incidents, requests, decisions, imminent danger, releases, instruments."""
    first = args.date("since")
    last = args.date("until")
    args.done()
    if last < first:
        raise BadRequest("until must not be before since")
    since = datetime.combine(first, time(), timezone.utc)
    until = datetime.combine(last + timedelta(days=1), time(), timezone.utc)  # the whole last day
    incidents = [i for i in central.records.all("incidents") if _within(_when(i.get("filed_at")), since, until)]
    requests = central.records.all("requests")
    made = [r for r in requests if _within(_when(r.get("requested_at")), since, until)]
    decided = [r for r in requests if _within(_when(r.get("decided_at")), since, until)]
    report = {
        "since": first.isoformat(), "until": last.isoformat(),
        "incidents": {"total": len(incidents),
                      "by_grounds": {g: sum(i["grounds"] == g for i in incidents)
                                     for g in ("criminal_activity", "litigation", "conduct_violation")}},
        "requests": {k: sum(r["kind"] == k for r in made) for k in ("review", "monitor")},
        "approvals": sum(r["status"] == "approved" for r in decided),
        "denials": sum(r["status"] == "denied" for r in decided),
        "imminent_danger_uses": sum(r["kind"] == "imminent_danger" for r in made),
        "releases": _release_count(central, since, until),
        "instruments": _instrument_counts(central, since, until),
    }
    audit_action(central, caller, "report.transparency", details={"since": report["since"], "until": report["until"]})
    return report


# --------------------------------------------------------------------------- audit queries


@op("audit.query", DIRECTOR,
    labels={"action_prefix": "Action"})
def audit_query(central, caller, args):
    """Audit entries by time (since <= ts < until), actor and action prefix; the latest `limit`."""
    since = args.time("since", required=False)
    until = args.time("until", required=False)
    actor = args.id("actor", required=False)
    prefix = args.str("action_prefix", required=False, max_len=64)
    limit = args.int("limit", required=False, default=500, lo=1, hi=AUDIT_QUERY_LIMIT)
    args.done()
    if prefix is not None and not ACTION_PREFIX.match(prefix):
        raise BadRequest(f"action_prefix {prefix!r} is not a dotted action name like 'footage.' or 'archive.unseal'")
    if since and until and until <= since:
        raise BadRequest("until must be after since")
    person = find_user(central, actor) if actor else None
    if person is not None:
        actor = person["id"]        # a login name or an account id; entries name the account id
    entries = central.audit.query(since=since, until=until, actor=actor, action_prefix=prefix)
    audit_action(central, caller, "audit.query", details={"since": since and iso(since), "until": until and iso(until),
                                          "actor": actor, "action_prefix": prefix, "found": len(entries)})
    return {"entries": entries[-limit:], "total": len(entries), "truncated": len(entries) > limit}
