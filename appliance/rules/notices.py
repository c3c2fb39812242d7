"""Suspension notices (C21): "Images may be shared with other Library staff to identify
person(s) suspended from Library property." Reference: docs/api/notices.md.

The Director makes a notice for an incident: a description of the person, the reason,
the date the suspension ends, and a few small grey stills. Each still is rendered from
recorded footage under a grant for that same incident (appliance.rules.footage), so every
image traces to an approved grant. Staff and the Director see active notices; IT does
not. When the suspension ends (or the Director withdraws the notice) the notice leaves
view and its pixels and the person's description are purged from the records; what
remains says which footage the stills came from, for accountability.
"""
from __future__ import annotations

import functools
from datetime import date, datetime, time, timezone

from appliance.background import every
from appliance.rules.accounts import require_unsealed
from appliance.rules.footage import render_still
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import DIRECTOR, STAFF_OR_DIRECTOR, Args, iso, op, parse_iso
from appliance.wording import when


MAX_STILLS = 4
STILL_WIDTH = (32, 160, 96)          # lo, hi, default: small, for a terminal
MAX_YEARS = 5
EXPIRY_CHECK_SECONDS = 60
KEPT_STILL_FIELDS = ("grant", "camera", "at", "frame_at")  # what stays after the purge


def suspension_end(until: date) -> datetime:
    """A person suspended until a date may return that day: the notice ends at its start (UTC)."""
    return datetime.combine(until, time(0), tzinfo=timezone.utc)


def _latest_allowed(today: date) -> date:
    try:
        return today.replace(year=today.year + MAX_YEARS)
    except ValueError:  # 29 February
        return today.replace(year=today.year + MAX_YEARS, day=28)


def _is_active(central, notice: dict) -> bool:
    return notice["status"] == "active" and parse_iso(notice["expires_at"]) > central.now()


def _get(central, notice_id: str) -> dict:
    notice = central.records.get("notices", notice_id)
    if notice is None:
        raise NotFound(f"no notice {notice_id}")
    return notice


# --------------------------------------------------------------------------- ending notices


def _end(central, notice: dict, status: str, by: str, reason: str) -> dict:
    """Take a notice out of view and purge its pixels and the person's description."""
    now = iso(central.now())
    return central.records.update("notices", notice["id"], {
        "status": status, "ended_at": now, "ended_by": by, "end_reason": reason, "purged_at": now,
        "description": None,
        "stills": [{k: s.get(k) for k in KEPT_STILL_FIELDS} for s in notice["stills"]]})


def expire_notices(central) -> list[str]:
    """End every notice whose suspension is over (run periodically and before every list)."""
    ended = []
    for notice in central.records.search("notices", status="active"):
        if parse_iso(notice["expires_at"]) > central.now():
            continue
        _end(central, notice, "expired", "system", "suspension ended")
        central.audit.append("system", "notice.expired", role="system", target=notice["id"],
                             refs={"incident": notice["incident"], "notice": notice["id"]},
                             why="suspension ended", details={"suspended_until": notice["suspended_until"],
                                                              "stills_purged": len(notice["stills"])})
        ended.append(notice["id"])
    return ended


def periodic(central):
    return [every(EXPIRY_CHECK_SECONDS, functools.partial(expire_notices, central), name="suspension notice expiry",
                  lock=central.decision_lock)]


# --------------------------------------------------------------------------- operations


def _still_refs(args: Args) -> list[tuple[str, str, datetime]]:
    # Args has no reader for a list of objects: take the raw list, then read each item with its own Args.
    raw = args._get("stills", None, True)
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STILLS:
        raise BadRequest(f"stills must be a list of 1 to {MAX_STILLS} items {{grant, camera, at}}")
    refs = []
    for n, item in enumerate(raw):
        try:
            still = Args(item)
            refs.append((still.id("grant"), still.id("camera"), still.time("at")))
            still.done()
        except BadRequest as e:
            raise BadRequest(f"stills[{n}]: {e}") from None
    return refs


def _check_still_grants(central, caller, incident_id: str, refs) -> list[str]:
    from appliance.rules.incidents import check_grant

    grants = []
    for grant_id, camera, at in refs:
        grant = check_grant(central, caller, grant_id, camera, at, at)
        if grant.get("incident") != incident_id:
            raise Refused(f"grant {grant_id} is for {grant.get('incident') or 'no incident'}, not {incident_id}: "
                          "a notice's stills come from its own incident's footage", clause="C9")
        grants.append(grant_id)
    return list(dict.fromkeys(grants))


def _grant_window(central, grant_id: str) -> tuple[datetime, datetime]:
    grant = central.records.get("grants", grant_id)
    return parse_iso(grant["start"]), parse_iso(grant["end"])


@op("notice.create", DIRECTOR,
    labels={"suspended_until": "Suspended until"})
def create_notice(central, caller, args):
    """Share stills of a person suspended from Library property with staff, until the suspension ends."""
    incident_id = args.id("incident")
    description = args.str("description", min_len=10, max_len=2000)
    reason = args.str("reason", min_len=3, max_len=2000)
    until = args.date("suspended_until")
    width = args.int("width", required=False, default=STILL_WIDTH[2], lo=STILL_WIDTH[0], hi=STILL_WIDTH[1])
    refs = _still_refs(args)
    args.done()
    today = central.now().date()
    if until <= today:
        raise BadRequest(f"suspended_until {until} must be after today ({today})")
    if until > _latest_allowed(today):
        raise BadRequest(f"a suspension notice may last at most {MAX_YEARS} years (until {_latest_allowed(today)})")
    if central.records.get("incidents", incident_id) is None:
        raise NotFound(f"no incident {incident_id}")
    grants = _check_still_grants(central, caller, incident_id, refs)
    require_unsealed(central)
    stills = [render_still(central, camera, at, width, within=_grant_window(central, grant_id)) | {"grant": grant_id}
              for grant_id, camera, at in refs]
    now = central.now()
    notice = {"incident": incident_id, "description": description, "reason": reason,
              "suspended_until": until.isoformat(), "expires_at": iso(suspension_end(until)), "stills": stills,
              "created_by": caller.user_id, "created_at": iso(now), "status": "active",
              "ended_at": None, "ended_by": None, "end_reason": None, "purged_at": None}
    notice["id"] = central.records.insert("notices", notice)
    audit_action(central, caller, "notice.create", target=notice["id"],
                 refs={"incident": incident_id, "notice": notice["id"], "grant": grants[0]}, why=reason,
                 details={"suspended_until": notice["suspended_until"], "grants": grants,
                          "stills": [{"camera": s["camera"], "frame_at": s["frame_at"]} for s in stills],
                          "acting_director": caller.acting_director})   # named even when false
    return {"notice": notice}


@op("notice.list", STAFF_OR_DIRECTOR)
def list_notices(central, caller, args):
    """Active suspension notices, with their stills (ended ones are gone from view)."""
    args.done()
    expire_notices(central)
    active = sorted((n for n in central.records.search("notices", status="active") if _is_active(central, n)),
                    key=lambda n: n["expires_at"])
    audit_action(central, caller, "notice.view", details={"notices": [n["id"] for n in active]})
    return {"notices": active}


@op("notice.withdraw", DIRECTOR)
def withdraw_notice(central, caller, args):
    """End a notice before its suspension ends (e.g. the suspension was lifted); its stills are purged."""
    notice_id = args.id("notice")
    reason = args.str("reason", min_len=3, max_len=2000)
    args.done()
    expire_notices(central)
    notice = _get(central, notice_id)
    if notice["status"] != "active":
        raise Refused(f"notice {notice_id} already ended ({notice['status']} at {when(notice['ended_at'])})")
    notice = _end(central, notice, "withdrawn", caller.user_id, reason)
    audit_action(central, caller, "notice.withdraw", target=notice_id,
                 refs={"incident": notice["incident"], "notice": notice_id}, why=reason,
                 details={"stills_purged": len(notice["stills"])})
    return {"notice": notice}
