"""Recorded footage under a grant: segment lists, stills and flipbooks (C8, C9, C17, C19).

Reference: docs/api/footage.md. Every operation needs a grant that covers the camera
and the moment (appliance.rules.incidents.check_grant: an approved, unexpired, unrevoked
grant held by the caller, or the Director) and the archive unsealed by the Director.
IT is refused by role: IT runs the cameras but never views footage (C8).

Segments are decrypted in memory and their H.264 goes to ffmpeg through a pipe
(appliance.media.decode); no plaintext video or decoded image is ever written to a file.
A frame's wall time is its segment's header start time plus its offset from the
segment's first frame (pts_us - first pts_us).
"""
from __future__ import annotations

import base64
from bisect import bisect_left
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import nacl.signing

from hw.backend import Frame

from appliance.media import decode as media
from appliance.formats import segment as seg
from appliance.rules.accounts import require_unsealed
from appliance.formats.canonical import CanonicalError, parse_canonical
from appliance.errors import SegmentError
from appliance.errors import NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import STAFF_OR_DIRECTOR, iso, op, parse_iso
from appliance.wording import when

STILL_WIDTH = (32, 320, 96)         # lo, hi, default
STILL_HEIGHT = (16, 240)            # lo, hi: optional, to fit a terminal widget
CLIP_WIDTH = (32, 160, 64)          # a flipbook holds many frames: kept smaller
CLIP_SECONDS = (1, 60)
CLIP_FPS = (1, 5, 2)
GAP_FRAMES = 2                      # a moment farther than 2 frame intervals from any picture is a gap
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class TimedFrame:
    at: datetime        # wall time of the picture
    frame: Frame
    fps: float          # the recording's nominal rate (ffmpeg needs one for raw H.264)
    size: tuple[int, int] | None = None     # the segment header's width and height


def _time(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


# --------------------------------------------------------------------------- reading the archive


def segment_header(path) -> dict:
    """A stored segment's header, read without decrypting (iter_frames verifies it before use)."""
    with open(path, "rb") as f:
        head = f.read(len(seg.PREFIX) + 4)
        if len(head) < len(seg.PREFIX) + 4 or head[:len(seg.PREFIX)] != seg.PREFIX:
            raise SegmentError(f"{path.name} is not a Custodian segment")
        (length,) = seg.U32.unpack_from(head, len(seg.PREFIX))
        if length > seg.MAX_JSON_BYTES:
            raise SegmentError(f"{path.name}: header length out of range")
        try:
            return parse_canonical(f.read(length))
        except CanonicalError as e:
            raise SegmentError(f"{path.name}: header is not canonical JSON ({e})") from None


def overlapping_segments(central, camera: str, start: datetime, end: datetime) -> list[tuple]:
    """(StoredSegment, header) of every segment of `camera` holding footage in [start, end].

    A segment runs from its start to the next one's start. The file name's start is
    rounded down to the second, so names are used only to skip what is surely outside.
    """
    second = timedelta(seconds=1)   # names are rounded down to the second: widen by one
    stored = list(central.archive.segments(camera, start=start - second, end=end + second))
    candidates = [s for i, s in enumerate(stored)
                  if i + 1 == len(stored) or stored[i + 1].start + second > start]
    headers = [segment_header(s.path) for s in candidates]
    found = []
    for i, (s, header) in enumerate(zip(candidates, headers)):
        seg_start = _time(header["start_us"])
        next_start = _time(headers[i + 1]["start_us"]) if i + 1 < len(headers) else None
        if seg_start > end or (next_start is not None and next_start <= start):
            continue
        found.append((s, header))
    return found


def enrolled(central, camera: str):
    """A key lookup that accepts only the camera's enrolled key (a retired camera's footage too)."""
    record = central.records.get("cameras", camera)
    if record is None:
        raise NotFound(f"no camera {camera}")
    return seg.enrolled_key(nacl.signing.VerifyKey(bytes.fromhex(record["key"])), camera)


def timed_frames(central, key, camera: str, start: datetime, end: datetime,
                 cache: dict | None = None) -> list[TimedFrame]:
    """Every recorded picture of the segments that hold [start, end], decrypted in memory.

    `cache`: a dict kept between calls for nearby moments (stills in time order), so a segment
    holding several of them is verified and decrypted once; it keeps only the last call's segments.
    """
    frames = []
    segments = overlapping_segments(central, camera, start, end)
    lookup = enrolled(central, camera) if segments else None
    kept = {}
    for stored, header in segments:
        if cache is not None and stored.path in cache:
            kept[stored.path] = cache[stored.path]
            frames += kept[stored.path]
            continue
        fps = header["fps_num"] / max(1, header["fps_den"])
        size = (header["width"], header["height"])
        first_pts = None
        these = []
        for frame in seg.iter_frames(stored.path, key, lookup):
            first_pts = frame.pts_us if first_pts is None else first_pts
            these.append(TimedFrame(_time(header["start_us"] + frame.pts_us - first_pts), frame, fps, size))
        kept[stored.path] = these
        frames += these
    if cache is not None:
        cache.clear()
        cache.update(kept)
    return frames


def _nearest(frames: list[TimedFrame], times: list[datetime], at: datetime,
             within: tuple[datetime, datetime] | None = None) -> int | None:
    """Index of the picture nearest `at`, or None when the recording has a gap there
    (no picture within two frame intervals). `within`: the window a grant or a release allows
    (`at` inside it); a picture outside it is never chosen, however near (C3, C9)."""
    i = bisect_left(times, at)
    allowed = [j for j in (i - 1, i) if 0 <= j < len(frames)
               and (within is None or within[0] <= times[j] <= within[1])]
    best = min(allowed, key=lambda j: abs(times[j] - at), default=None)
    if best is None or abs(times[best] - at) > timedelta(seconds=GAP_FRAMES / frames[best].fps):
        return None
    return best


def _keyframe_before(frames: list[TimedFrame], index: int) -> int:
    for i in range(index, -1, -1):
        if frames[i].frame.keyframe:
            return i
    raise SegmentError("no keyframe before the wanted picture: the recording is damaged")


def _b64(pixels: bytes) -> str:
    return base64.b64encode(pixels).decode("ascii")


# --------------------------------------------------------------------------- rendering


def render_still(central, camera: str, at: datetime, width: int, height: int | None = None, *,
                 within: tuple[datetime, datetime]) -> dict:
    """The grey picture of `camera` nearest `at`, `width` wide (or fitting inside width x height),
    taken inside `within` (the grant's window). No grant check: callers check first."""
    key = require_unsealed(central)
    frames = timed_frames(central, key, camera, at, at)
    index = _nearest(frames, [f.at for f in frames], at, within)
    if index is None:
        raise NotFound(f"camera {camera} has no recording at {when(at)} (a gap, or outside what is stored)")
    key_index = _keyframe_before(frames, index)
    w, h, pixels = media.decode_gray([f.frame for f in frames[key_index:index + 1]], width, height,
                                     fps=frames[index].fps, fit=height is not None)
    return {"camera": camera, "at": iso(at), "frame_at": iso(frames[index].at), "width": w, "height": h,
            "format": "gray8", "pixels": _b64(pixels)}


def render_clip(central, camera: str, start: datetime, seconds: int, fps: int, width: int, *,
                within: tuple[datetime, datetime]) -> dict:
    """A flipbook: the picture nearest each of start, start + 1/fps, ... inside `within` (the grant's
    window; gaps listed as missing)."""
    key = require_unsealed(central)
    end = start + timedelta(seconds=seconds)
    frames = timed_frames(central, key, camera, start, end)
    wanted = [start + timedelta(seconds=k / fps) for k in range(seconds * fps)]
    times = [f.at for f in frames]
    picks = [(t, _nearest(frames, times, t, within)) for t in wanted]
    found = [i for _, i in picks if i is not None]
    if not found:
        raise NotFound(f"camera {camera} has no recording between {when(start)} and {when(end)}")
    first = _keyframe_before(frames, min(found))
    w, h, decoded = media.decode_gray_all([f.frame for f in frames[first:max(found) + 1]], width,
                                          fps=frames[first].fps)
    return {"camera": camera, "start": iso(start), "seconds": seconds, "fps": fps, "width": w, "height": h,
            "format": "gray8",
            "frames": [{"at": iso(t), "frame_at": iso(frames[i].at), "pixels": _b64(decoded[i - first])}
                       for t, i in picks if i is not None],
            "missing": [iso(t) for t, i in picks if i is None]}


# --------------------------------------------------------------------------- operations


def _granted(central, caller, grant_id: str, camera: str, start=None, end=None) -> dict:
    """check_grant, with refused attempts written to the audit log (C16 looks for them)."""
    from appliance.rules.incidents import check_grant

    try:
        return check_grant(central, caller, grant_id, camera, start, end)
    except Refused as e:
        audit_action(central, caller, "footage.refused", target=camera, refs={"grant": grant_id}, why=str(e),
                     details={"start": start and iso(start), "end": end and iso(end)})
        raise


def _deliver(central, caller, action: str, grant: dict, camera: str, window: tuple, details: dict) -> None:
    """After a decode (which ran outside the decision lock): check again, under the lock, that the
    caller may still see it, the grant still stands and the archive is still unsealed; only then
    record the use and hand it over."""
    from appliance.rules.incidents import check_grant

    with central.decision_lock:
        caller = caller_now(central, caller)
        check_grant(central, caller, grant["id"], camera, *window)
        require_unsealed(central)
        _audit_use(central, caller, action, grant, camera, details)


def caller_now(central, caller):
    """The caller as she stands now, for a result made outside the decision lock: meanwhile her
    account may have been disabled, her session ended, or her acting director's period run out
    (NotAuthenticated, or a caller who is no longer the Director)."""
    return central.caller_for(caller.session, background=True) if caller.session else caller


def _window(grant: dict) -> tuple[datetime, datetime]:
    return parse_iso(grant["start"]), parse_iso(grant["end"])


def _audit_use(central, caller, action: str, grant: dict, camera: str, details: dict) -> None:
    why = (f"{grant['kind']} for incident {grant['incident']}" if grant.get("incident")
           else f"{grant['kind']} (no incident linked yet)")
    audit_action(central, caller, action, target=camera, why=why, details=details,
                 refs={"grant": grant["id"], "incident": grant.get("incident"), "request": grant.get("request")})


@op("footage.segments", STAFF_OR_DIRECTOR, concurrent=True)
def list_segments(central, caller, args):
    """The recorded segments of one camera inside a grant's window (times and sizes, no content)."""
    grant_id = args.id("grant")
    camera = args.id("camera")
    args.done()
    grant = _granted(central, caller, grant_id, camera)
    require_unsealed(central)
    start, end = parse_iso(grant["start"]), parse_iso(grant["end"])
    segments = [{"seq": s.seq, "start": iso(_time(h["start_us"])), "size": s.path.stat().st_size}
                for s, h in overlapping_segments(central, camera, start, end)]
    _deliver(central, caller, "footage.segments", grant, camera, (None, None),
             {"start": grant["start"], "end": grant["end"], "count": len(segments)})
    return {"camera": camera, "grant": grant_id, "start": grant["start"], "end": grant["end"],
            "segments": segments}


@op("footage.still", STAFF_OR_DIRECTOR, concurrent=True)
def still(central, caller, args):
    """One grey still of a camera at a moment inside your grant."""
    grant_id = args.id("grant")
    camera = args.id("camera")
    at = args.time("at")
    width = args.int("width", required=False, default=STILL_WIDTH[2], lo=STILL_WIDTH[0], hi=STILL_WIDTH[1])
    height = args.int("height", required=False, lo=STILL_HEIGHT[0], hi=STILL_HEIGHT[1])
    args.done()
    grant = _granted(central, caller, grant_id, camera, at, at)
    require_unsealed(central)
    result = render_still(central, camera, at, width, height, within=_window(grant))
    _deliver(central, caller, "footage.still", grant, camera, (at, at),
             {"at": result["at"], "frame_at": result["frame_at"], "width": result["width"]})
    return result


@op("footage.clip", STAFF_OR_DIRECTOR, concurrent=True)
def clip(central, caller, args):
    """A short flipbook of grey frames (1-60 s, 1-5 frames a second) inside your grant."""
    grant_id = args.id("grant")
    camera = args.id("camera")
    start = args.time("start")
    seconds = args.int("seconds", lo=CLIP_SECONDS[0], hi=CLIP_SECONDS[1])
    fps = args.int("fps", required=False, default=CLIP_FPS[2], lo=CLIP_FPS[0], hi=CLIP_FPS[1])
    width = args.int("width", required=False, default=CLIP_WIDTH[2], lo=CLIP_WIDTH[0], hi=CLIP_WIDTH[1])
    args.done()
    grant = _granted(central, caller, grant_id, camera, start, start + timedelta(seconds=seconds))
    require_unsealed(central)
    result = render_clip(central, camera, start, seconds, fps, width, within=_window(grant))
    _deliver(central, caller, "footage.clip", grant, camera, (start, start + timedelta(seconds=seconds)),
             {"start": result["start"], "seconds": seconds, "fps": fps, "width": result["width"],
              "frames": len(result["frames"]), "missing": len(result["missing"])})
    return result
