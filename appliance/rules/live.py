"""Live view (C8): staff watch a camera as part of their normal duties, logged and time-boxed.

A live view lasts at most 15 minutes and belongs to one person; opening and closing
it (or its running out) are in the audit log, with its purpose. While a view is open,
the camera's node sends a small grey frame about once a second, sealed to the
central's live key; the frames stay in the central's RAM and are shown only to the
view's owner. Live view does not need the archive unsealed: it never touches recorded
footage. IT never views footage, live or recorded.

Monitoring tied to an incident uses a grant (kind monitor, or imminent_danger for
C19), checked by appliance.rules.incidents.check_grant; the view then also ends with
the grant's window.

("Session" means a login only. The API's `view` argument and result name a live view;
its audit entries name it in `refs` as `live_session`, as they always have.)
"""
from __future__ import annotations

from datetime import timedelta

from appliance.rules import incidents
from appliance.rules.ports import public_image
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import STAFF_OR_DIRECTOR, Caller, iso, op, parse_iso, Scope

LIVE_MAX_MINUTES = 15
LIVE_WIDTH = 96        # pixels wide: enough for a terminal, too few to read a page
# Staff reach their own live views; the Director everyone's (C8).
LIVE_VIEWS = Scope("live_views", "their own live views", lambda central, caller, v: v["user"] == caller.user_id,
                   what_one="live view", clause="C8",
                   refusal="live view {id} is not yours: only its owner or the Director closes it")


def view_is_open(central, view: dict) -> bool:
    return view["closed_at"] is None and parse_iso(view["until"]) > central.now()


def current_view(central, camera: str) -> dict | None:
    """The most recently opened open live view of a camera (what its node sends frames for)."""
    open_views = [v for v in central.records.search("live_views", camera=camera, closed_at=None)
                  if view_is_open(central, v)]
    return max(open_views, key=lambda v: v["opened_at"], default=None)


def _audit_refs(view: dict) -> dict:
    refs = {"live_session": view["id"]}     # the audit log's name for it since its first entry
    if view.get("grant"):
        refs["grant"] = view["grant"]
    if view.get("incident"):
        refs["incident"] = view["incident"]
    return refs


def _close(central, view: dict, at, reason: str, by: Caller | None) -> dict:
    """Close a live view: `live.close` by a person, or `live.expired` by the system (`by` None)."""
    frames = central.nodes.live_frames_received(view["id"])
    central.records.update("live_views", view["id"], {"closed_at": iso(at), "close_reason": reason})
    entry = {"target": view["camera"], "refs": _audit_refs(view), "why": reason,
             "details": {"opened_at": view["opened_at"], "closed_at": iso(at), "frames_received": frames,
                         "user": view["user"]}}
    if by is None:
        central.audit.append("system", "live.expired", **entry)
    else:
        audit_action(central, by, "live.close", **entry)
    return central.records.get("live_views", view["id"])


@op("live.open", STAFF_OR_DIRECTOR)
def open_view(central, caller, args):
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
        try:
            grant = incidents.check_grant(central, caller, grant_id, camera, live=True)
        except Refused as e:
            _audit_refused(central, caller, camera, {"grant": grant_id}, e)
            raise
        incident = grant.get("incident")
        until = min(until, parse_iso(grant["end"]), parse_iso(grant["expires_at"]))
    mine = [v for v in central.records.search("live_views", user=caller.user_id, camera=camera, closed_at=None)
            if view_is_open(central, v)]
    if mine:
        raise Refused(f"you already have live view {mine[0]['id']} of camera {camera}: close it first")
    doc = {"user": caller.user_id, "camera": camera, "purpose": purpose, "grant": grant_id, "incident": incident,
           "opened_at": iso(now), "until": iso(until), "closed_at": None}
    view = central.records.get("live_views", central.records.insert("live_views", doc))
    audit_action(central, caller, "live.open", target=camera, refs=_audit_refs(view), why=purpose,
                 details={"until": view["until"], "acting_director": caller.acting_director})   # named even when false
    return {"view": view}


def _own_view(central, caller, view_id: str) -> dict:
    view = central.records.get("live_views", view_id)
    if view is None:
        raise NotFound(f"no live view {view_id}")
    if view["user"] != caller.user_id:
        error = Refused("a live view is shown only to the person who opened it", clause="C8")
        _audit_refused(central, caller, view["camera"], {"live_session": view_id}, error)
        raise error
    return view


def _audit_refused(central, caller, camera: str, refs: dict, error: Refused) -> None:
    """A refused attempt to watch someone else's view or under a grant one may not use, written
    as `live.refused` (like `footage.refused`) so a breach investigation (C16) finds it."""
    audit_action(central, caller, "live.refused", target=camera, refs=refs, why=str(error))


@op("live.frame", STAFF_OR_DIRECTOR.noting("a live view's frames go to its owner only, the Director included"))
def frame(central, caller, args):
    """The latest frame of your open live view (grey, small)."""
    view_id = args.id("view")
    args.done()
    view = _own_view(central, caller, view_id)
    if not view_is_open(central, view):
        raise Refused(f"live view {view_id} has ended (a live view lasts at most {LIVE_MAX_MINUTES} minutes): "
                      "open a new one", clause="C8")
    image = central.nodes.live_frame(view["camera"], parse_iso(view["opened_at"]))
    if image is None:
        raise NotFound("no frame yet: the camera sends one within a few seconds")
    return {"view": view_id, "camera": view["camera"], "until": view["until"], **public_image(image)}


@op("live.close", STAFF_OR_DIRECTOR.own(LIVE_VIEWS, "view"))
def close_view(central, caller, args):
    """Close a live view (your own; the Director may close anyone's)."""
    view_id = args.id("view")
    reason = args.str("reason", required=False, default="closed", max_len=500)
    args.done()
    view = central.records.get("live_views", view_id)
    if view is None:
        raise NotFound(f"no live view {view_id}")
    if view["closed_at"] is not None:
        raise BadRequest(f"live view {view_id} is already closed")
    at = min(central.now(), parse_iso(view["until"]))
    return {"view": _close(central, view, at, reason, caller)}


@op("live.list", STAFF_OR_DIRECTOR.own(LIVE_VIEWS))
def list_views(central, caller, args):
    """Open live views (the Director sees everyone's; staff their own); all=true adds closed ones."""
    everything = args.bool("all")
    args.done()
    views = [v for v in central.records.all("live_views") if LIVE_VIEWS.reaches(central, caller, v)]
    if not everything:
        views = [v for v in views if view_is_open(central, v)]
    return {"views": sorted(views, key=lambda v: v["opened_at"])}


def expire_views(central) -> int:
    """Close live views whose time is up (periodic), each with its audit entry."""
    now = central.now()
    expired = [v for v in central.records.search("live_views", closed_at=None) if parse_iso(v["until"]) <= now]
    for view in expired:
        _close(central, view, parse_iso(view["until"]), "time is up", None)
    return len(expired)


def close_camera_views(central, camera: str, reason: str) -> None:
    close_views(central, reason, camera=camera)


def close_views(central, reason: str, **which) -> None:
    """End the open live views that match `which` (a camera, a user, a grant) now, by the system: what
    they were watched under (a placement, an account, a grant) ended (C8, C17)."""
    for view in central.records.search("live_views", closed_at=None, **which):
        _close(central, view, min(central.now(), parse_iso(view["until"])), reason, None)


def _grant_ended(central, grant_id: str) -> None:
    close_views(central, f"grant {grant_id} revoked", grant=grant_id)


incidents.WHEN_A_GRANT_ENDS.append(_grant_ended)
