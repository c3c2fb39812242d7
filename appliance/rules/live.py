"""Live view (C8): staff watch a camera as part of their normal duties, in logged, time-boxed sessions.

A session lasts at most 15 minutes and belongs to one person; opening and closing
it (or its running out) are in the audit log, with its purpose. While a session is
open, the camera's node sends a small grey frame about once a second, sealed to the
central's live key; the frames stay in the central's RAM and are shown only to the
session's owner. Live view does not need the archive unsealed: it never touches
recorded footage. IT never views footage, live or recorded.

Monitoring tied to an incident uses a grant (kind monitor, or imminent_danger for
C19), checked by appliance.rules.incidents.check_grant; the session then also ends with
the grant's window.
"""
from __future__ import annotations

from datetime import timedelta

from appliance.rules.ports import public_image
from appliance.rules.auditing import audit_action
from appliance.rules.registry import BadRequest, Caller, NotFound, Refused, iso, op, parse_iso

LIVE_MAX_MINUTES = 15
LIVE_WIDTH = 96        # pixels wide: enough for a terminal, too few to read a page


def session_is_open(central, session: dict) -> bool:
    return session["closed_at"] is None and parse_iso(session["until"]) > central.now()


def current_session(central, camera: str) -> dict | None:
    """The most recently opened open session on a camera (what its node sends frames for)."""
    open_sessions = [s for s in central.records.search("live_sessions", camera=camera, closed_at=None)
                     if session_is_open(central, s)]
    return max(open_sessions, key=lambda s: s["opened_at"], default=None)


def _audit_refs(session: dict) -> dict:
    refs = {"live_session": session["id"]}
    if session.get("grant"):
        refs["grant"] = session["grant"]
    if session.get("incident"):
        refs["incident"] = session["incident"]
    return refs


def _close(central, session: dict, at, reason: str, by: Caller | None) -> dict:
    """Close a session: `live.close` by a person, or `live.expired` by the system (`by` None)."""
    frames = central.nodes.live_frames_received(session["id"])
    central.records.update("live_sessions", session["id"], {"closed_at": iso(at), "close_reason": reason})
    entry = {"target": session["camera"], "refs": _audit_refs(session), "why": reason,
             "details": {"opened_at": session["opened_at"], "closed_at": iso(at), "frames_received": frames,
                         "user": session["user"]}}
    if by is None:
        central.audit.append("system", "live.expired", **entry)
    else:
        audit_action(central, by, "live.close", **entry)
    return central.records.get("live_sessions", session["id"])


@op("live.open", ("staff", "director"))
def open_session(central, caller, args):
    """Open a live view of an approved camera for at most 15 minutes, with its purpose (C8)."""
    camera = args.id("camera")
    purpose = args.str("purpose", min_len=3, max_len=500)
    grant_id = args.id("grant", required=False)
    minutes = args.int("minutes", required=False, default=LIVE_MAX_MINUTES, lo=1, hi=LIVE_MAX_MINUTES)
    args.done()
    cam = central.records.get("cameras", camera)
    if cam is None:
        raise NotFound(f"no camera {camera!r} is enrolled")
    if cam["status"] != "approved":
        raise Refused(f"camera {camera} is {cam['status']}: only cameras whose placement the Director "
                      "approved may be viewed", clause="C6")
    now = central.now()
    until = now + timedelta(minutes=minutes)
    incident = None
    if grant_id is not None:
        from appliance.rules.incidents import check_grant

        grant = check_grant(central, caller, grant_id, camera, live=True)
        incident = grant.get("incident")
        until = min(until, parse_iso(grant["end"]), parse_iso(grant["expires_at"]))
    mine = [s for s in central.records.search("live_sessions", user=caller.user_id, camera=camera, closed_at=None)
            if session_is_open(central, s)]
    if mine:
        raise Refused(f"you already have live session {mine[0]['id']} on camera {camera}: close it first")
    doc = {"user": caller.user_id, "camera": camera, "purpose": purpose, "grant": grant_id, "incident": incident,
           "opened_at": iso(now), "until": iso(until), "closed_at": None}
    session_id = central.records.insert("live_sessions", doc)
    session = central.records.get("live_sessions", session_id)
    audit_action(central, caller, "live.open", target=camera, refs=_audit_refs(session), why=purpose,
                 details={"until": session["until"], "acting_director": caller.acting_director})   # named even when false
    return {"session": session}


def _own_session(central, caller, session_id: str) -> dict:
    session = central.records.get("live_sessions", session_id)
    if session is None:
        raise NotFound(f"no live session {session_id}")
    if session["user"] != caller.user_id:
        raise Refused("a live session is shown only to the person who opened it", clause="C8")
    return session


@op("live.frame", ("staff", "director"))
def frame(central, caller, args):
    """The latest frame of your open live session (grey, small)."""
    session_id = args.id("session")
    args.done()
    session = _own_session(central, caller, session_id)
    if not session_is_open(central, session):
        raise Refused(f"live session {session_id} has ended (sessions last at most {LIVE_MAX_MINUTES} minutes): "
                      "open a new one", clause="C8")
    image = central.nodes.live_frame(session["camera"], parse_iso(session["opened_at"]))
    if image is None:
        raise NotFound("no frame yet: the camera sends one within a few seconds")
    return {"session": session_id, "camera": session["camera"], "until": session["until"], **public_image(image)}


@op("live.close", ("staff", "director"))
def close_session(central, caller, args):
    """Close a live session (your own; the Director may close anyone's)."""
    session_id = args.id("session")
    reason = args.str("reason", required=False, default="closed", max_len=500)
    args.done()
    session = central.records.get("live_sessions", session_id)
    if session is None:
        raise NotFound(f"no live session {session_id}")
    if session["user"] != caller.user_id and not caller.is_director:
        raise Refused("only the session's owner or the Director may close it", clause="C8")
    if session["closed_at"] is not None:
        raise BadRequest(f"live session {session_id} is already closed")
    at = min(central.now(), parse_iso(session["until"]))
    return {"session": _close(central, session, at, reason, caller)}


@op("live.list", ("staff", "director"))
def list_sessions(central, caller, args):
    """Open live sessions (the Director sees everyone's; staff their own); all=true adds closed ones."""
    everything = args.bool("all")
    args.done()
    sessions = central.records.all("live_sessions")
    if not caller.is_director:
        sessions = [s for s in sessions if s["user"] == caller.user_id]
    if not everything:
        sessions = [s for s in sessions if session_is_open(central, s)]
    return {"sessions": sorted(sessions, key=lambda s: s["opened_at"])}


def expire_sessions(central) -> int:
    """Close sessions whose time is up (periodic), each with its audit entry."""
    now = central.now()
    expired = [s for s in central.records.search("live_sessions", closed_at=None) if parse_iso(s["until"]) <= now]
    for session in expired:
        _close(central, session, parse_iso(session["until"]), "time is up", None)
    return len(expired)


def close_camera_sessions(central, camera: str, reason: str) -> None:
    for session in central.records.search("live_sessions", camera=camera, closed_at=None):
        _close(central, session, min(central.now(), parse_iso(session["until"])), reason, None)
