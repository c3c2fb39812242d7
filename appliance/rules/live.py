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
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.registry import STAFF_OR_DIRECTOR, Scope, iso, op, parse_iso

LIVE_MAX_MINUTES = 15
LIVE_WIDTH = 96        # pixels wide: enough for a terminal, too few to read a page
# Staff reach their own live sessions; the Director everyone's (C8).
LIVE_SESSIONS = Scope("live_sessions", "their own live sessions",
                      lambda central, caller, s: s["user"] == caller.user_id, what_one="live session", clause="C8",
                      refusal="live session {id} is not yours: only its owner or the Director closes it")


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


def _close(central, session: dict, actor: str, action: str, at, reason: str, role: str | None = None) -> dict:
    frames = central.nodes.live_frames_received(session["id"])
    central.records.update("live_sessions", session["id"], {"closed_at": iso(at), "close_reason": reason})
    central.audit.append(actor, action, role=role, target=session["camera"], refs=_audit_refs(session),
                         why=reason, details={"opened_at": session["opened_at"], "closed_at": iso(at),
                                              "frames_received": frames, "user": session["user"]})
    return central.records.get("live_sessions", session["id"])


@op("live.open", STAFF_OR_DIRECTOR)
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
    central.audit.append(caller.user_id, "live.open", role=caller.role, target=camera, refs=_audit_refs(session),
                         why=purpose, details={"until": session["until"], "acting_director": caller.acting_director})
    return {"session": session}


def _own_session(central, caller, session_id: str) -> dict:
    session = central.records.get("live_sessions", session_id)
    if session is None:
        raise NotFound(f"no live session {session_id}")
    if session["user"] != caller.user_id:
        raise Refused("a live session is shown only to the person who opened it", clause="C8")
    return session


@op("live.frame", STAFF_OR_DIRECTOR.noting("a live session's frames go to its owner only, the Director included"))
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


@op("live.close", STAFF_OR_DIRECTOR.own(LIVE_SESSIONS, "session"))
def close_session(central, caller, args):
    """Close a live session (your own; the Director may close anyone's)."""
    session_id = args.id("session")
    reason = args.str("reason", required=False, default="closed", max_len=500)
    args.done()
    session = central.records.get("live_sessions", session_id)
    if session is None:
        raise NotFound(f"no live session {session_id}")
    if session["closed_at"] is not None:
        raise BadRequest(f"live session {session_id} is already closed")
    at = min(central.now(), parse_iso(session["until"]))
    return {"session": _close(central, session, caller.user_id, "live.close", at, reason, role=caller.role)}


@op("live.list", STAFF_OR_DIRECTOR.own(LIVE_SESSIONS))
def list_sessions(central, caller, args):
    """Open live sessions (the Director sees everyone's; staff their own); all=true adds closed ones."""
    everything = args.bool("all")
    args.done()
    sessions = central.records.all("live_sessions")
    sessions = [s for s in sessions if LIVE_SESSIONS.reaches(central, caller, s)]
    if not everything:
        sessions = [s for s in sessions if session_is_open(central, s)]
    return {"sessions": sorted(sessions, key=lambda s: s["opened_at"])}


def expire_sessions(central) -> int:
    """Close sessions whose time is up (periodic), each with its audit entry."""
    now = central.now()
    expired = [s for s in central.records.search("live_sessions", closed_at=None) if parse_iso(s["until"]) <= now]
    for session in expired:
        _close(central, session, "system", "live.expired", parse_iso(session["until"]), "time is up")
    return len(expired)


def close_camera_sessions(central, camera: str, reason: str) -> None:
    for session in central.records.search("live_sessions", camera=camera, closed_at=None):
        _close(central, session, "system", "live.expired", min(central.now(), parse_iso(session["until"])), reason)
