"""Cameras and signage (C1, C5, C6): enrolment, placement approval, privacy masks, view changes.

- C6: cameras only in public areas, never where people expect privacy, never
  positioned on what someone reads, views or listens to. Enrolment refuses the
  categories that say so. A new camera does not record until the Director
  approves its placement from a snapshot the camera itself sent (the node's gate,
  and ingest refuses segments of a camera never approved). Privacy masks are drawn
  on the node before encoding. A camera whose view departs from the approved one
  alerts the Director once.
- C5: signage at the library entrance at all times: a placement cannot be approved
  while no entrance sign is on record; the sign's wording comes from the policy.
- C1: an approved camera whose segments stop arriving alerts the Director once,
  and again when it is back.

Operations reference: docs/api/cameras.md. Live view (C8) is in appliance/rules/live.py.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import logging
from datetime import timedelta

from appliance.background import every
from appliance.rules.accounts import policy_text
from appliance.custody.archive import check_camera_id
from appliance.errors import CustodianError, SegmentError
from appliance.rules import live
from appliance.rules.ports import public_image
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import ANYONE, DIRECTOR, DIRECTOR_OR_IT, iso, op, parse_iso
from appliance.wording import when

log = logging.getLogger("custodian.cameras")

CATEGORIES = ("entrance", "collection", "seating", "parking", "service_desk", "corridor", "exterior",
              "other_public")
PRIVATE_AREAS = {
    "restroom": "restrooms", "changing_room": "changing rooms", "lactation_room": "lactation rooms",
    "staff_private": "private staff areas",
}
READING_POSITIONS = {
    "reading_position": "what someone reads", "computer_screens": "what someone views on a screen",
    "listening_station": "what someone listens to",
}
SNAPSHOT_MAX_AGE = timedelta(minutes=15)   # approval needs a view this recent
PLACEMENT_REFRESH = timedelta(seconds=60)  # a camera awaiting approval sends a fresh view this often
REFERENCE_WIDTH = 64                       # the stored reference view (people are not identifiable at this size)
# View change: mean absolute difference of grey levels (0-255) between the reference
# and a new view, both 64 px wide, after removing the difference in mean brightness.
# Measured on ffmpeg's testsrc2: the same view at other times 3-4, the view panned by
# 5 % of its width 18, by 10 % 32, another scene 50-80. 20 catches a pan of about a
# tenth of the frame and ignores people moving and lights dimming evenly.
VIEW_CHANGE_THRESHOLD = 20
DEFAULT_SEGMENT_SECONDS = 60
OFFLINE_CHECK_SECONDS = 30


# --------------------------------------------------------------------------- records


def get_camera(central, camera: str) -> dict:
    cam = central.records.get("cameras", camera)
    if cam is None:
        raise NotFound(f"no camera {camera!r} is enrolled")
    return cam


def in_service(central, camera: str) -> dict:
    """A camera that is not retired (a retired camera takes no more decisions)."""
    cam = get_camera(central, camera)
    if cam["status"] == "retired":
        raise Refused(f"camera {camera} is retired")
    return cam


def public_camera(central, cam: dict) -> dict:
    """What camera.list shows: no images, no keys beyond the public one."""
    hub = central.nodes
    return {"id": cam["id"], "category": cam["category"], "location": cam["location"], "status": cam["status"],
            "key": cam["key"], "masks": cam.get("masks", []), "resolution": cam.get("resolution"),
            "snapshot_at": cam.get("snapshot_at"), "snapshot_available": cam["id"] in hub.snapshots,
            "last_segment_seq": cam.get("last_segment_seq"), "last_segment_at": cam.get("last_segment_at"),
            "online": hub.online(cam["id"]), "offline_since": cam.get("offline_since"),
            "view_changed": bool(cam.get("view_changed")), "view_difference": cam.get("view_difference"),
            "placement": cam.get("placement"),
            "pairing_fingerprint": (cam.get("pairing") or {}).get("fingerprint")}


def _camera_id(args) -> str:
    camera = args.str("camera", max_len=40)
    try:
        return check_camera_id(camera)
    except SegmentError as e:
        raise BadRequest(str(e)) from None


# --------------------------------------------------------------------------- enrolment (C6)


def _check_category(category: str, reading_position: bool) -> None:
    if category in PRIVATE_AREAS:
        raise Refused(f"cameras are never installed in {PRIVATE_AREAS[category]}: people there have a "
                      "reasonable expectation of privacy", clause="C6")
    if category in READING_POSITIONS or reading_position:
        what = READING_POSITIONS.get(category, "what someone reads, views or listens to")
        raise Refused(f"a camera must not be positioned to identify {what}", clause="C6")
    if category not in CATEGORIES:
        raise BadRequest(f"category must be one of: {', '.join(CATEGORIES)}")


def _check_key(key: str) -> str:
    key = key.lower()
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise BadRequest("key must be the node's Ed25519 public key: 64 hex digits (from 'custodian node init')")
    return key


def read_place(args) -> tuple[str, str, bool]:
    """Where a camera goes, as enrolment and invitations (appliance/rules/enrolment.py) take it:
    category, location, and whether it would see what someone reads, views or listens to."""
    return (args.str("category", max_len=40).lower(), args.str("location", min_len=3, max_len=200),
            args.bool("reading_position"))


def insert_new_camera(central, camera: str, key: str, category: str, location: str, enrolled_by: str,
                      **extra) -> None:
    """A newly enrolled camera: pending placement, so it records nothing yet (C6); ingest knows its key."""
    doc = {"key": key, "category": category, "location": location, "status": "pending_placement",
           "masks": [], "snapshot_at": None, "last_segment_seq": None, "last_segment_at": None,
           "enrolled_by": enrolled_by, "enrolled_at": iso(central.now()), "placement": None,
           "reference": None, "view_changed": False, "offline_since": None, **extra}
    central.records.insert("cameras", doc, id=camera)
    central.reload_cameras()


@op("camera.enroll", DIRECTOR_OR_IT,
    labels={"key": "Node public key", "reading_position": "Shows what people read"})
def enroll(central, caller, args):
    """Enrol a camera node by its public key; it records only once its placement is approved (C6)."""
    camera = _camera_id(args)
    key = _check_key(args.str("key", max_len=64))
    category, location, reading_position = read_place(args)
    args.done()
    _check_category(category, reading_position)
    if central.records.get("cameras", camera) is not None:
        raise Refused(f"camera {camera!r} is already enrolled")
    if central.records.search("cameras", key=key):
        raise Refused("this node key is already enrolled for another camera: one node, one camera")
    insert_new_camera(central, camera, key, category, location, caller.user_id)
    audit_action(central, caller, "camera.enroll", target=camera,
                 details={"category": category, "location": location, "key": key})
    close_invites_enrolled_by_key(central, caller, camera)
    return {"camera": public_camera(central, central.records.get("cameras", camera))}


def close_invites_enrolled_by_key(central, caller, camera: str) -> None:
    """A camera enrolled by its key leaves no pairing code open for its name: a card flashed with
    the old code hears that the camera was enrolled by key, and the code opens nothing."""
    now = iso(central.now())
    for inv in central.records.search("invites", camera=camera, status="pending"):
        central.records.update("invites", inv["id"], {"status": "enrolled_by_key", "code_hash": None,
                                                      "closed_at": now})
        audit_action(central, caller, "camera.invite_closed", target=camera, refs={"invite": inv["id"]},
                     details={"reason": "the camera was enrolled by its key (camera.enroll)",
                              "invited_by": inv["invited_by"], "invited_at": inv["invited_at"]})


@op("camera.list", ANYONE)
def list_cameras(central, caller, args):
    """Every camera: placement status, masks, last segment, online (no images)."""
    args.done()
    cams = sorted(central.records.all("cameras"), key=lambda c: c["id"])
    return {"cameras": [public_camera(central, c) for c in cams]}


@op("camera.snapshot", DIRECTOR)
def snapshot(central, caller, args):
    """The latest view the camera sent (grey, small): what placement is approved from (C6)."""
    camera = _camera_id(args)
    args.done()
    get_camera(central, camera)
    image = central.nodes.snapshots.get(camera)
    if image is None:
        raise NotFound(f"camera {camera} has not sent a view since the central started: it sends one "
                       "within a few seconds of asking the central for its status")
    audit_action(central, caller, "camera.snapshot_view", target=camera, details={"snapshot_at": image["at"]})
    return {"camera": camera, **public_image(image)}


# --------------------------------------------------------------------------- placement (C5, C6)


def active_entrance_signs(central) -> list[dict]:
    return [s for s in central.records.all("signage") if s["entrance"] and s.get("removed_at") is None]


def shows_masks(image: dict, cam: dict) -> bool:
    """Whether the node drew every mask the camera has now on this image."""
    return all(list(m) in image.get("masks", []) for m in cam.get("masks", []))


def _fresh_snapshot(central, cam: dict) -> dict:
    camera = cam["id"]
    image = central.nodes.snapshots.get(camera)
    if image is None:
        raise Refused(f"no snapshot from camera {camera} yet: placement is approved from the camera's own "
                      "view; the node sends one when it contacts the central", clause="C6")
    if central.now() - image["received_at"] > SNAPSHOT_MAX_AGE:
        raise Refused(f"the latest snapshot from camera {camera} is older than "
                      f"{int(SNAPSHOT_MAX_AGE.total_seconds() // 60)} minutes: wait for a fresh one", clause="C6")
    if not shows_masks(image, cam):
        raise Refused(f"the latest snapshot from camera {camera} was taken before its current privacy masks: "
                      "wait a few seconds for one that shows them", clause="C6")
    return image


@op("camera.approve_placement", DIRECTOR)
def approve_placement(central, caller, args):
    """Approve where a camera points, from its latest snapshot; it starts recording (C6, C5)."""
    camera = _camera_id(args)
    note = args.str("note", min_len=3, max_len=1000)
    args.done()
    cam = in_service(central, camera)
    if cam["status"] == "approved" and not cam.get("view_changed"):
        raise Refused(f"camera {camera} is already approved and its view has not changed")
    image = _fresh_snapshot(central, cam)
    if not active_entrance_signs(central):
        raise Refused("no sign at the library entrance is on record: post one and record it with "
                      "signage.add before a camera records", clause="C5")
    digest = hashlib.sha256(base64.b64decode(image["pixels"])).hexdigest()
    placement = {"approved_by": caller.user_id, "approved_at": iso(central.now()), "note": note,
                 "snapshot_at": image["at"], "snapshot_sha256": digest}
    central.records.update("cameras", camera, {
        "status": "approved", "placement": placement, "reference": make_reference(image),
        "view_changed": False, "view_difference": 0, "offline_since": None})
    audit_action(central, caller, "camera.approve_placement", target=camera, why=note,
                 details={"snapshot_at": image["at"], "snapshot_sha256": digest, "previous_status": cam["status"]})
    return {"camera": public_camera(central, central.records.get("cameras", camera))}


@op("camera.reject_placement", DIRECTOR)
def reject_placement(central, caller, args):
    """Refuse where a camera points: it does not record (C6). IT can re-aim it and ask again."""
    camera = _camera_id(args)
    note = args.str("note", min_len=3, max_len=1000)
    args.done()
    cam = in_service(central, camera)
    if cam["status"] == "approved" and not cam.get("view_changed"):
        raise Refused(f"camera {camera} is approved and its view has not changed: retire it instead")
    central.records.update("cameras", camera, {"status": "rejected"})
    audit_action(central, caller, "camera.reject_placement", target=camera, why=note,
                 details={"previous_status": cam["status"]})
    return {"camera": public_camera(central, central.records.get("cameras", camera))}


@op("camera.set_masks", DIRECTOR)
def set_masks(central, caller, args):
    """Set a camera's privacy masks [x, y, w, h] in its pixels; drawn on the node before encoding (C6)."""
    camera = _camera_id(args)
    masks = args.rects("masks", required=True)
    why = args.str("why", required=False, max_len=1000)
    args.done()
    cam = in_service(central, camera)
    size = cam.get("resolution")
    if not size:
        raise Refused(f"the size of camera {camera}'s picture is not known yet: wait for its first snapshot")
    width, height = size
    for x, y, w, h in masks:
        if x >= width or y >= height:
            raise BadRequest(f"mask {[x, y, w, h]} starts outside the camera's {width}x{height} picture")
    central.records.update("cameras", camera, {"masks": [list(m) for m in masks]})
    audit_action(central, caller, "camera.set_masks", target=camera, why=why,
                 details={"masks": masks, "previous": cam.get("masks", [])})
    return {"camera": public_camera(central, central.records.get("cameras", camera))}


@op("camera.retire", DIRECTOR)
def retire(central, caller, args):
    """Take a camera out of service: it stops recording; its recordings stay in the archive."""
    camera = _camera_id(args)
    why = args.str("why", min_len=3, max_len=1000)
    args.done()
    cam = in_service(central, camera)
    central.records.update("cameras", camera, {"status": "retired", "retired_at": iso(central.now()),
                                               "retired_by": caller.user_id})
    live.close_camera_views(central, camera, "camera retired")
    central.reload_cameras()
    audit_action(central, caller, "camera.retire", target=camera, why=why, details={"previous_status": cam["status"]})
    return {"camera": public_camera(central, central.records.get("cameras", camera))}


# --------------------------------------------------------------------------- what a node is told


def control_for(central, cam: dict) -> dict:
    """The control answer for a node (docs/node-protocol.md)."""
    hub = central.nodes
    image = hub.snapshots.get(cam["id"])
    stale = image is not None and central.now() - image["received_at"] > PLACEMENT_REFRESH
    wanted = cam["status"] != "retired" and (image is None or not shows_masks(image, cam)
                                             or (cam["status"] != "approved" and stale))
    view = live.current_view(central, cam["id"]) if cam["status"] == "approved" else None
    # `session`: the same id, for nodes installed before the live view had its own name.
    return {"status": cam["status"], "masks": cam.get("masks", []), "snapshot_wanted": wanted,
            "live": None if view is None else {"view": view["id"], "session": view["id"], "until": view["until"],
                                               "width": live.LIVE_WIDTH}}


# --------------------------------------------------------------------------- the view check (C6)


def shrink(pixels: bytes, w: int, h: int, tw: int, th: int) -> bytes:
    """Area-average a gray8 image down to tw x th."""
    out = bytearray(tw * th)
    for ty in range(th):
        y0 = ty * h // th
        y1 = max(y0 + 1, (ty + 1) * h // th)
        for tx in range(tw):
            x0 = tx * w // tw
            x1 = max(x0 + 1, (tx + 1) * w // tw)
            total = sum(sum(pixels[y * w + x0:y * w + x1]) for y in range(y0, y1))
            out[ty * tw + tx] = total // ((y1 - y0) * (x1 - x0))
    return bytes(out)


def make_reference(image: dict) -> dict:
    w, h = image["width"], image["height"]
    tw = min(REFERENCE_WIDTH, w)
    th = max(1, round(h * tw / w))
    pixels = shrink(base64.b64decode(image["pixels"]), w, h, tw, th)
    return {"width": tw, "height": th, "pixels": base64.b64encode(pixels).decode("ascii"), "at": image["at"]}


def unmasked_cells(tw: int, th: int, frame: list[int] | None, masks: list[list[int]]) -> list[int]:
    """Indices of the reference's pixels that no privacy mask touches (masks are in frame pixels)."""
    if not frame or not masks:
        return list(range(tw * th))
    fw, fh = frame
    cells = []
    for ty in range(th):
        y0, y1 = ty * fh / th, (ty + 1) * fh / th
        for tx in range(tw):
            x0, x1 = tx * fw / tw, (tx + 1) * fw / tw
            if not any(x < x1 and x + w > x0 and y < y1 and y + h > y0 for x, y, w, h in masks):
                cells.append(ty * tw + tx)
    return cells


def view_difference(reference: dict, image: dict, masks: list[list[int]] = ()) -> int:
    """Mean absolute grey-level difference (0-255) after equalising mean brightness,
    outside the privacy masks (a mask added after approval is not a moved camera)."""
    tw, th = reference["width"], reference["height"]
    if abs(image["height"] / image["width"] - th / tw) > 0.05:
        return 255                                  # another shape of picture: another view
    a = base64.b64decode(reference["pixels"])
    b = shrink(base64.b64decode(image["pixels"]), image["width"], image["height"], tw, th)
    cells = unmasked_cells(tw, th, image.get("frame"), list(masks) + list(image.get("masks", [])))
    if not cells:
        return 0
    shift = sum(a[i] - b[i] for i in cells) / len(cells)
    return round(sum(abs(a[i] - b[i] - shift) for i in cells) / len(cells))


def snapshot_received(central, camera: str, image: dict) -> None:
    """Keep the view (RAM only), and compare it with the approved reference (C6)."""
    central.nodes.snapshots[camera] = image
    cam = get_camera(central, camera)
    fields = {"snapshot_at": iso(image["received_at"])}
    if image.get("frame"):
        fields["resolution"] = image["frame"]
    reference = cam.get("reference")
    if cam["status"] == "approved" and reference:
        difference = view_difference(reference, image, cam.get("masks", []))
        fields["view_difference"] = difference
        if difference > VIEW_CHANGE_THRESHOLD and not cam.get("view_changed"):
            fields.update(view_changed=True, view_changed_at=iso(central.now()))
            central.audit.append("system", "camera.view_changed", target=camera,
                                 details={"difference": difference, "threshold": VIEW_CHANGE_THRESHOLD,
                                          "snapshot_at": image["at"]})
            central.alert("camera_moved", f"camera {camera} ({cam['location']}) no longer shows the view "
                                          "whose placement was approved: check it and approve or reject the "
                                          "new view", camera=camera, difference=difference)
    central.records.update("cameras", camera, fields)


# --------------------------------------------------------------------------- offline (C1)


def segment_seconds(central, camera: str) -> int:
    """The camera's segment length, from its latest stored segment (default 60 s)."""
    from appliance.formats.segment import read_public

    head = central.archive.head(camera)
    if head is None:
        return DEFAULT_SEGMENT_SECONDS
    cache = central.nodes.segment_seconds
    if (camera, head) not in cache:
        seconds = DEFAULT_SEGMENT_SECONDS
        stored = central.archive.get(camera, head)
        if stored is not None:
            try:
                info = read_public(stored.path)
                seconds = max(1, min(3600, (info.trailer["end_us"] - info.header["start_us"]) // 1_000_000))
            except (OSError, CustodianError, KeyError) as e:
                log.warning("cannot read the length of %s: %s", stored.path, e)
        cache[(camera, head)] = seconds
    return cache[(camera, head)]


def check_offline(central) -> list[dict]:
    """Alert once when an approved camera's segments stop, and once when they come back (C1)."""
    now = central.now()
    alerts = []
    for cam in central.records.search("cameras", status="approved"):
        last = cam.get("last_segment_at") or (cam.get("placement") or {}).get("approved_at")
        if last is None:
            continue
        limit = 2 * segment_seconds(central, cam["id"]) + 60
        silent = (now - parse_iso(last)).total_seconds()
        if silent > limit and not cam.get("offline_since"):
            central.records.update("cameras", cam["id"], {"offline_since": iso(now)})
            central.audit.append("system", "camera.offline", target=cam["id"],
                                 details={"last_segment_at": last, "limit_seconds": limit})
            alerts.append(central.alert("camera_offline", f"camera {cam['id']} ({cam['location']}) has sent no "
                                        f"recording since {when(last)}: it may be unplugged, broken or covered",
                                        camera=cam["id"]))
        elif silent <= limit and cam.get("offline_since"):
            central.records.update("cameras", cam["id"], {"offline_since": None})
            central.audit.append("system", "camera.online", target=cam["id"],
                                 details={"offline_since": cam["offline_since"], "last_segment_at": last})
            alerts.append(central.alert("camera_online", f"camera {cam['id']} is recording again "
                                        f"(silent since {when(cam['offline_since'])})", camera=cam["id"]))
    return alerts


def periodic(central):
    return [every(OFFLINE_CHECK_SECONDS, functools.partial(check_offline, central), name="camera offline check",
                  lock=central.decision_lock),
            every(OFFLINE_CHECK_SECONDS, functools.partial(live.expire_views, central), name="live view expiry",
                  lock=central.decision_lock)]


# --------------------------------------------------------------------------- signage (C5)


def signage_wording() -> str:
    """The sign's wording, taken from the policy's attachment (never retyped here)."""
    marker = "Common wording is:"
    text = policy_text()
    if marker not in text:
        raise CustodianError("the policy text has no signage wording ('Common wording is:')")
    paragraph = text.split(marker, 1)[1].strip().split("\n", 1)[0]
    return paragraph.strip().strip("\u201c\u201d\"").strip()


@op("signage.add", DIRECTOR_OR_IT,
    labels={"posted_on": "Posted on"})
def add_sign(central, caller, args):
    """Record a posted sign: location 'entrance' for the library entrance, or another place (C5)."""
    location = args.str("location", min_len=3, max_len=200)
    posted_on = args.date("posted_on")
    note = args.str("note", required=False, default="", max_len=1000)
    args.done()
    if posted_on > central.now().date():
        raise BadRequest("posted_on is in the future: record a sign once it is up")
    doc = {"location": location, "entrance": location.lower() == "entrance", "posted_on": posted_on.isoformat(),
           "note": note, "added_by": caller.user_id, "added_at": iso(central.now()),
           "removed_at": None, "removed_by": None, "removed_reason": None}
    sign_id = central.records.insert("signage", doc)
    audit_action(central, caller, "signage.add", target=sign_id,
                 details={"location": location, "posted_on": doc["posted_on"]})
    return {"sign": central.records.get("signage", sign_id)}


@op("signage.remove", DIRECTOR_OR_IT)
def remove_sign(central, caller, args):
    """Record that a sign came down; the Director is alerted if no entrance sign remains (C5)."""
    sign_id = args.id("sign")
    reason = args.str("reason", min_len=3, max_len=1000)
    args.done()
    sign = central.records.get("signage", sign_id)
    if sign is None:
        raise NotFound(f"no sign {sign_id}")
    if sign["removed_at"] is not None:
        raise Refused(f"sign {sign_id} was already removed")
    central.records.update("signage", sign_id, {"removed_at": iso(central.now()), "removed_by": caller.user_id,
                                                "removed_reason": reason})
    audit_action(central, caller, "signage.remove", target=sign_id, why=reason)
    if sign["entrance"] and not active_entrance_signs(central):
        central.alert("signage", "no sign at the library entrance is on record any more: the policy requires "
                                 "one at all times (C5)", sign=sign_id)
    return {"sign": central.records.get("signage", sign_id)}


@op("signage.list", ANYONE)
def list_signs(central, caller, args):
    """The signage register, and whether the entrance is signed (C5)."""
    args.done()
    signs = central.records.all("signage")
    return {"signs": signs, "entrance_signed": bool(active_entrance_signs(central))}


@op("signage.text", ANYONE)
def sign_text(central, caller, args):
    """The wording for signs, from the policy's attachment (C5)."""
    args.done()
    return {"text": signage_wording(), "source": "Video Surveillance Policy, Attachment: Signage"}
