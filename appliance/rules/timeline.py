"""What a grant's window holds, per camera: recorded, not recorded, held (C9, C12).

Reference: docs/api/footage.md (`footage.timeline`). The review screen draws one bar
per camera from this. It reads only the segments' signed headers and trailers (times,
never pictures), under the same checks as every footage operation: a grant that
covers the camera (C9, C17) and the archive unsealed.

A segment's recorded span runs from its header's `start_us` to its last frame (the
trailer's `last_pts_us - first_pts_us`, plus one frame); a segment sealed after a
crash has no frame count, and its span ends at the trailer's `end_us`, an upper
bound. Whatever in the window no segment covers is shown as not recorded: a camera
offline, a node restart, a segment lost or deleted.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import nacl.exceptions
import nacl.signing

from appliance.formats import segment as seg
from appliance.rules.accounts import require_unsealed
from appliance.formats.canonical import CanonicalError, parse_canonical
from appliance.rules.footage import _audit_use, _granted, _time, caller_now, overlapping_segments
from appliance.rules.incidents import check_grant
from appliance.rules.registry import STAFF_OR_DIRECTOR, iso, op, parse_iso

JOIN = timedelta(seconds=1)      # spans closer than this are drawn as one
TRAILER_MAX = 65536


def read_trailer(path, verify_key) -> dict | None:
    """The signed trailer at the end of a stored segment, checked with the camera's enrolled key.

    The trailer is `u32 L | L bytes of JSON | 64-byte signature` at the file's end; its
    length is found by trying each L from the end. None if no valid trailer is found.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - (TRAILER_MAX + 4 + 64)))
        tail = f.read()
    body, signature = tail[:-64], tail[-64:]
    for length in range(2, min(TRAILER_MAX, len(body) - 4) + 1):
        if seg.U32.unpack_from(body, len(body) - length - 4)[0] != length:
            continue
        text = body[len(body) - length:]
        try:
            verify_key.verify(text, signature)
            trailer = parse_canonical(text)
        except (nacl.exceptions.BadSignatureError, CanonicalError):
            continue
        if isinstance(trailer, dict) and trailer.get("type") == seg.TRAILER_TYPE:
            return trailer
    return None


def _span(header: dict, trailer: dict | None) -> tuple[datetime, datetime]:
    start = _time(header["start_us"])
    if trailer is None:
        return start, start
    fps = header["fps_num"] / max(1, header["fps_den"])
    if trailer.get("complete") and trailer.get("last_pts_us") is not None:
        frame = 1_000_000 / max(fps, 0.001)
        return start, start + timedelta(microseconds=trailer["last_pts_us"] - trailer["first_pts_us"] + frame)
    return start, max(start, _time(trailer["end_us"]))


def _merge(spans: list[tuple[datetime, datetime]]) -> list[list[datetime]]:
    merged: list[list[datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + JOIN:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _clip(spans, lo: datetime, hi: datetime) -> list[list[str]]:
    return [[iso(max(s, lo)), iso(min(e, hi))] for s, e in spans if e > lo and s < hi]


def camera_timeline(central, caller, camera: str, start: datetime, end: datetime) -> dict:
    from appliance.rules.footage import enrolled
    from appliance.rules.retention import active_holds, hold_covers, hold_hidden_from

    enrolled(central, camera)   # not found for an unknown camera
    verify_key = nacl.signing.VerifyKey(bytes.fromhex(central.records.get("cameras", camera)["key"]))
    spans = []
    for stored, header in overlapping_segments(central, camera, start, end):
        spans.append(_span(header, read_trailer(stored.path, verify_key)))
    recorded = _merge(spans)
    missing, cursor = [], start
    for s, e in recorded:
        if s > cursor:
            missing.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < end:
        missing.append((cursor, end))
    # A sealed warrant's hold is not shown but to the Director: it would tell its cameras and hours (C13).
    held = _merge([(parse_iso(h["start"]), parse_iso(h["end"])) for h in active_holds(central)
                   if hold_covers(h, camera, start, end) and not hold_hidden_from(central, caller, h)])
    return {"camera": camera, "recorded": _clip(recorded, start, end), "not_recorded": _clip(missing, start, end),
            "held": _clip(held, start, end)}


@op("footage.timeline", STAFF_OR_DIRECTOR, concurrent=True)
def timeline(central, caller, args):
    """Per camera of a grant: when it recorded, when it did not, what is held, across the grant's window."""
    grant_id = args.id("grant")
    camera = args.id("camera", required=False)
    args.done()
    record = central.records.get("grants", grant_id)
    cameras = [camera] if camera else list((record or {}).get("cameras") or ["-"])
    for c in cameras:
        grant = _granted(central, caller, grant_id, c)   # C9, C17; refused attempts are audited
    require_unsealed(central)
    start, end = parse_iso(grant["start"]), parse_iso(grant["end"])
    result = [camera_timeline(central, caller, c, start, end) for c in cameras]
    with central.decision_lock:   # read outside the lock: may she still see it (as footage._deliver asks)?
        caller = caller_now(central, caller)
        for c in cameras:
            check_grant(central, caller, grant_id, c)
        require_unsealed(central)
        _audit_use(central, caller, "footage.timeline", grant, ",".join(cameras),
                   {"start": grant["start"], "end": grant["end"], "cameras": cameras})
    return {"grant": grant_id, "start": grant["start"], "end": grant["end"], "kind": grant["kind"],
            "cameras": result}
