"""Footage review through pipes (C8, C9): real H.264, real encrypted segments, real ffmpeg.

The footage is testsrc2 encoded by ffmpeg in memory, cut into access units, written
as signed, encrypted segments and committed to the central's archive exactly as
ingest does. A still fetched through the API must show what testsrc2 shows at that
moment, and no plaintext H.264 may be left in any file.
"""
from __future__ import annotations

import base64
import os
import subprocess
from datetime import datetime, timedelta

import nacl.signing
import pytest

from appliance.media import decode as media
from appliance.rules import timeline as timeline_mod
from appliance.formats import segment as seg
from appliance.errors import ArchiveSealed, MediaError
from appliance.errors import NotAuthenticated, NotFound, Refused
from appliance.rules.registry import iso, parse_iso
from conftest import enrol_camera_record
from hw.annexb import split_access_units
from hw.backend import Frame

FPS = 10
SECONDS = 4
SIZE = (160, 120)
SPS_START = b"\x00\x00\x00\x01\x67"   # a 4-byte start code and an SPS NAL header: plaintext H.264


def _ffmpeg(*argv: str) -> bytes:
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", *argv],
                          capture_output=True, check=True, timeout=60).stdout


def encode_testsrc2(seconds: int = SECONDS) -> bytes:
    """testsrc2 as a camera node encodes it: keyframe every second, SPS/PPS repeated, AUDs, no B-frames."""
    return _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={FPS}", "-t", str(seconds),
                   "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(FPS),
                   "-x264-params", "repeat-headers=1:aud=1", "-f", "h264", "-")


def reference_gray(frame: int, width: int) -> bytes:
    """The reference picture: testsrc2's frame, straight from the source (never encoded), grey, scaled."""
    return _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={FPS}",
                   "-vf", f"select=eq(n\\,{frame}),scale={width}:-1", "-frames:v", "1",
                   "-f", "rawvideo", "-pix_fmt", "gray", "-")


def mean_difference(a: bytes, b: bytes) -> float:
    assert len(a) == len(b)
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def record(central, camera: str, h264: bytes, start: datetime, frames_per_segment: int = 2 * FPS) -> None:
    """Store h264 as camera's segments starting at wall time `start`, the way ingest stores them."""
    node = nacl.signing.SigningKey.generate()
    enrol_camera_record(central, camera, node.verify_key.encode().hex())
    units = split_access_units(h264)
    start_us = (start - datetime(1970, 1, 1, tzinfo=start.tzinfo)) // timedelta(microseconds=1)
    step_us = 1_000_000 // FPS
    pts0 = 7_000_000  # the camera's monotonic clock: unrelated to wall time
    prev = None
    for seq, first in enumerate(range(0, len(units), frames_per_segment)):
        path = central.archive.incoming_path(camera, seq)
        writer = seg.SegmentWriter(
            path, params=seg.StreamParams(camera=camera, width=SIZE[0], height=SIZE[1], fps_num=FPS),
            seq=seq, prev_digest=prev, archive_key=central.keys.archive_public_key(), signing_key=node,
            start_us=start_us + first * step_us, chunk_bytes=16 * 1024)
        for n, unit in enumerate(units[first:first + frames_per_segment], start=first):
            writer.write_frame(Frame(unit.data, unit.keyframe, pts0 + n * step_us))
        prev = writer.close().digest
        assert central.archive.commit(path, seg.verify_file(path)) == "stored"


def recording_start(central) -> datetime:
    # An hour ago, at .6 of a second: the second segment then starts mid-second (file names round down).
    t = central.now() - timedelta(hours=1)
    return t.replace(microsecond=600_000)


def review_grant(people, camera: str, start: datetime, end: datetime, who: str = "sam") -> tuple[dict, dict]:
    """An incident filed by `who`, a review request, the Director's approval: the grant."""
    incident = people.call(who, "incident.create", grounds="conduct_violation", occurred_at=iso(start),
                           location="entrance", description="a patron kicked the returns box until it broke",
                           attestation=True)["incident"]
    request = people.call(who, "request.create", incident=incident["id"], kind="review", cameras=[camera],
                          start=iso(start), end=iso(end), reason="see who broke the returns box")["request"]
    decided = people.call("director", "request.decide", request=request["id"], decision="approve",
                          reason="a specific incident of damage")
    return decided["grant"], incident


def gray(result: dict) -> bytes:
    assert result["format"] == "gray8"
    pixels = base64.b64decode(result["pixels"])
    assert len(pixels) == result["width"] * result["height"]
    return pixels


def files_holding_plaintext(root) -> list[str]:
    found = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    if SPS_START in f.read():
                        found.append(path)
    return found


def audit_actions(central, action: str) -> list[dict]:
    return central.audit.query(action_prefix=action)


@pytest.fixture(scope="module")
def h264() -> bytes:
    return encode_testsrc2()


@pytest.fixture
def footage(central, people, h264):
    """cam-a recorded for 4 s an hour ago (two 2 s segments); a review grant for sam over it."""
    start = recording_start(central)
    record(central, "cam-a", h264, start)
    grant, incident = review_grant(people, "cam-a", start - timedelta(seconds=1), start + timedelta(seconds=10))
    return {"start": start, "grant": grant, "incident": incident}


def at(footage, frame: int, offset_ms: int = 20) -> str:
    return iso(footage["start"] + timedelta(milliseconds=frame * 1000 // FPS + offset_ms))


# --------------------------------------------------------------------------- the clauses


def test_C9_still_needs_a_grant_covering_camera_and_time(central, people, footage, tmp_path):
    people.unseal()
    grant = footage["grant"]["id"]
    refusals = [
        ("sam", dict(grant="grt-999999", camera="cam-a", at=at(footage, 15)), "C9"),      # no such grant
        ("sam", dict(grant=grant, camera="cam-b", at=at(footage, 15)), "C9"),             # another camera
        ("sam", dict(grant=grant, camera="cam-a",                                          # outside the window
                     at=iso(footage["start"] + timedelta(minutes=10))), "C9"),
        ("sue", dict(grant=grant, camera="cam-a", at=at(footage, 15)), "C17"),            # someone else's
    ]
    for who, args, clause in refusals:
        with pytest.raises(Refused) as refused:
            people.call(who, "footage.still", **args)
        assert refused.value.clause == clause, args
    assert len(audit_actions(central, "footage.refused")) == len(refusals)
    assert not audit_actions(central, "footage.still")

    # Inside the grant: the picture is the one testsrc2 drew at that moment, in each segment.
    for frame in (15, 25, 39):
        still = people.call("sam", "footage.still", grant=grant, camera="cam-a", at=at(footage, frame), width=96)
        assert (still["width"], still["height"]) == (96, 72)
        assert still["frame_at"] == iso(footage["start"] + timedelta(milliseconds=frame * 100))
        pixels = gray(still)
        assert mean_difference(pixels, reference_gray(frame, 96)) < 3
        assert mean_difference(pixels, reference_gray(frame - 10, 96)) > 6  # and not another moment's

    # The Director may use the grant too; each use is audited with its grant and incident.
    people.call("director", "footage.still", grant=grant, camera="cam-a", at=at(footage, 5))
    uses = audit_actions(central, "footage.still")
    assert [u["actor"] for u in uses] == [people.ids["sam"]] * 3 + [people.ids["director"]]
    assert all(u["refs"] == {"grant": grant, "incident": footage["incident"]["id"],
                             "request": footage["grant"]["request"]} and u["target"] == "cam-a" for u in uses)

    # No plaintext H.264 (nor a decoded image) was written anywhere.
    assert files_holding_plaintext(tmp_path) == []


def test_C9_footage_refused_when_sealed(central, people, footage):
    grant = footage["grant"]["id"]
    for op, args in (("footage.still", dict(at=at(footage, 15))), ("footage.segments", {}),
                     ("footage.clip", dict(start=at(footage, 0), seconds=1)), ("footage.timeline", {})):
        with pytest.raises(ArchiveSealed, match="sealed"):
            people.call("sam", op, grant=grant, camera="cam-a", **args)
    assert not audit_actions(central, "footage.")

    people.unseal()
    assert gray(people.call("sam", "footage.still", grant=grant, camera="cam-a", at=at(footage, 15)))
    people.call("director", "archive.seal")
    with pytest.raises(ArchiveSealed):
        people.call("sam", "footage.still", grant=grant, camera="cam-a", at=at(footage, 15))


def test_C17_a_grant_revoked_while_its_footage_decodes_hands_nothing_over(central, people, footage, monkeypatch):
    """A still decodes outside the decision lock (it may take a while): if the Director revokes the grant
    meanwhile, the picture is not handed over and no use is recorded. The decode itself is the real one;
    the Director's revocation is slipped in when it has finished."""
    people.unseal()
    grant = footage["grant"]["id"]
    real_decode = media.decode_gray

    def decode_then_revoke(*args, **kwargs):
        pixels = real_decode(*args, **kwargs)
        people.call("director", "grant.revoke", grant=grant, reason="the patron was identified another way")
        return pixels
    monkeypatch.setattr(media, "decode_gray", decode_then_revoke)
    with pytest.raises(Refused, match="revoked") as refused:
        people.call("sam", "footage.still", grant=grant, camera="cam-a", at=at(footage, 15))
    assert refused.value.clause == "C17"
    assert not audit_actions(central, "footage.still")


def test_C8_footage_decoded_for_a_session_that_ended_meanwhile_is_not_handed_over(central, people, footage,
                                                                                  monkeypatch):
    """A still or a clip decodes outside the decision lock, for a caller read before it began. If her
    account is disabled meanwhile, or the acting director using a grant as the Director may has her
    period end, the pictures are not handed over and no use is recorded: who may see footage is asked
    again when it is handed over, not only when the decode started."""
    people.unseal()
    grant = footage["grant"]["id"]
    real_still, real_clip = media.decode_gray, media.decode_gray_all
    meanwhile: list = []

    def decode_then(real):
        def decode(*args, **kwargs):
            pixels = real(*args, **kwargs)
            if meanwhile:                  # once (decode_gray decodes through decode_gray_all)
                meanwhile.pop()()
            return pixels
        return decode
    monkeypatch.setattr(media, "decode_gray", decode_then(real_still))
    monkeypatch.setattr(media, "decode_gray_all", decode_then(real_clip))

    # Sam's account is disabled while his still decodes.
    meanwhile.append(lambda: people.call("director", "user.set_disabled", user="sam", disabled=True))
    with pytest.raises(NotAuthenticated, match="session has ended"):
        people.call("sam", "footage.still", grant=grant, camera="cam-a", at=at(footage, 15))
    assert meanwhile == []                 # the decode ran, and the account was disabled while it ran

    # Sue, acting director for the next minute, may use sam's grant as the Director may; her
    # period ends while her clip decodes.
    now = central.now()
    people.call("director", "director.designate_acting", user="sue", start=iso(now - timedelta(minutes=1)),
                end=iso(now + timedelta(minutes=1)), why="the Director is at a conference")
    meanwhile.append(lambda: setattr(central.clock, "offset", central.clock.offset + timedelta(minutes=2)))
    with pytest.raises(Refused, match="not yours") as refused:
        people.call("sue", "footage.clip", grant=grant, camera="cam-a", start=at(footage, 0), seconds=1)
    assert refused.value.clause == "C17" and meanwhile == []

    # Sam again, disabled while his grant's timeline is read (its segments' signed times, no pictures).
    people.call("director", "user.set_disabled", user="sam", disabled=False)
    people.login("sam")
    real_timeline = timeline_mod.camera_timeline

    def timeline_then_disable(*args, **kwargs):
        found = real_timeline(*args, **kwargs)
        people.call("director", "user.set_disabled", user="sam", disabled=True)
        return found
    monkeypatch.setattr(timeline_mod, "camera_timeline", timeline_then_disable)
    with pytest.raises(NotAuthenticated, match="session has ended"):
        people.call("sam", "footage.timeline", grant=grant)
    assert not any(audit_actions(central, f"footage.{use}") for use in ("still", "clip", "timeline"))


def test_C9_a_still_or_clip_at_the_edge_of_a_grant_shows_no_picture_from_outside_it(central, people, h264):
    """A still is the picture nearest the moment asked for, up to two frames away. A grant that starts
    between two pictures must not hand over the one before it, however near: the grant is what the
    Director approved (C9). Asked for at the grant's first instant, the still is the first picture
    inside; a clip's first frame too."""
    start = recording_start(central)
    record(central, "cam-a", h264, start)
    grant_start = start + timedelta(milliseconds=30)          # 30 ms after picture 0, 70 ms before picture 1
    grant, _incident = review_grant(people, "cam-a", grant_start, start + timedelta(seconds=3))
    people.unseal()
    still = people.call("sam", "footage.still", grant=grant["id"], camera="cam-a", at=iso(grant_start))
    assert still["frame_at"] == iso(start + timedelta(milliseconds=100))
    clip = people.call("sam", "footage.clip", grant=grant["id"], camera="cam-a", start=iso(grant_start), seconds=1)
    assert clip["frames"][0]["frame_at"] == iso(start + timedelta(milliseconds=100))
    assert all(parse_iso(f["frame_at"]) >= grant_start for f in clip["frames"])


def test_C8_it_never_views_footage(central, people, footage):
    people.unseal()
    grant = footage["grant"]["id"]
    for op, args in (("footage.still", dict(at=at(footage, 15))), ("footage.segments", {}),
                     ("footage.clip", dict(start=at(footage, 0), seconds=1)), ("footage.timeline", {})):
        with pytest.raises(Refused) as refused:
            people.call("ivy", op, grant=grant, camera="cam-a", **args)
        assert refused.value.code == "forbidden"
    assert not audit_actions(central, "footage.")


def test_C9_segments_lists_the_grant_window_without_content(central, people, footage):
    people.unseal()
    listed = people.call("sam", "footage.segments", grant=footage["grant"]["id"], camera="cam-a")
    assert [s["seq"] for s in listed["segments"]] == [0, 1]
    assert listed["segments"][1]["start"] == iso(footage["start"] + timedelta(seconds=2))
    assert all(s["size"] > 1000 and set(s) == {"seq", "start", "size"} for s in listed["segments"])
    [entry] = audit_actions(central, "footage.segments")
    assert entry["refs"]["grant"] == footage["grant"]["id"] and entry["details"]["count"] == 2


def test_C13_the_timeline_shows_no_hold_of_a_sealed_warrant(central, people, footage):
    """A timeline marks what holds keep. A sealed warrant's hold would tell the grant's holder which
    cameras and hours a warrant nobody may know of covers: it is the Director's alone until filed."""
    grant, start = footage["grant"], footage["start"]
    [incident_hold] = people.call("director", "hold.list")["holds"]
    people.call("director", "hold.release", hold=incident_hold["id"], reason="the review is kept elsewhere")
    today = central.now().date().isoformat()
    people.call("director", "instrument.record", kind="search_warrant", reference="SW-2026-0101",
                court="District Court", issued_on=today, received_on=today, description="entrance, 2 s",
                cameras=["cam-a"], start=iso(start), end=iso(start + timedelta(seconds=2)))
    people.unseal()
    [line] = people.call("sam", "footage.timeline", grant=grant["id"])["cameras"]
    assert line["held"] == []
    [line] = people.call("director", "footage.timeline", grant=grant["id"])["cameras"]
    assert line["held"] == [[iso(start), iso(start + timedelta(seconds=2))]]           # hers to see


def test_C9_clip_is_a_flipbook_inside_the_grant(central, people, footage, tmp_path):
    people.unseal()
    grant = footage["grant"]["id"]
    clip = people.call("sam", "footage.clip", grant=grant, camera="cam-a", start=at(footage, 5, 0),
                       seconds=2, fps=2, width=64)
    assert [f["frame_at"] for f in clip["frames"]] == [
        iso(footage["start"] + timedelta(milliseconds=ms)) for ms in (500, 1000, 1500, 2000)]
    for n, frame in enumerate(clip["frames"]):
        pixels = gray(clip | {"pixels": frame["pixels"]})
        assert mean_difference(pixels, reference_gray(5 + 5 * n, 64)) < 3
    assert clip["missing"] == []

    # Past the end of the recording the flipbook says what is missing instead of repeating a frame.
    tail = people.call("sam", "footage.clip", grant=grant, camera="cam-a", start=at(footage, 30, 0),
                       seconds=2, fps=5)
    assert len(tail["frames"]) == 6 and len(tail["missing"]) == 4

    # A window reaching outside the grant is refused, and nothing is audited as viewed.
    with pytest.raises(Refused) as refused:
        people.call("sam", "footage.clip", grant=grant, camera="cam-a", start=at(footage, 30), seconds=60)
    assert refused.value.clause == "C9"
    assert len(audit_actions(central, "footage.clip")) == 2
    assert files_holding_plaintext(tmp_path) == []


def test_footage_arguments_are_checked_before_anything_happens(central, people, footage):
    from appliance.errors import BadRequest

    people.unseal()
    grant = footage["grant"]["id"]
    bad = [dict(grant=grant, camera="../cam-a", at=at(footage, 1)),
           dict(grant=grant, camera="cam-a", at="yesterday"),
           dict(grant=grant, camera="cam-a", at="1999-01-01T00:00:00Z"),
           dict(grant=grant, camera="cam-a", at=at(footage, 1), width=4000),
           dict(grant=grant, camera="cam-a", at=at(footage, 1), colour=True)]
    for args in bad:
        with pytest.raises(BadRequest):
            people.call("sam", "footage.still", **args)
    # Inside the grant but before the recording began: a clear "no recording", not a wrong picture.
    with pytest.raises(NotFound, match="no recording"):
        people.call("sam", "footage.still", grant=grant, camera="cam-a",
                    at=iso(footage["start"] - timedelta(milliseconds=500)))
    assert not audit_actions(central, "footage.still")


# --------------------------------------------------------------------------- media helpers


def test_media_decodes_and_probes_through_pipes(h264):
    info = media.probe(h264)
    assert (info["codec"], info["width"], info["height"], info["frames"]) == ("h264", 160, 120, SECONDS * FPS)
    w, h, pixels = media.decode_gray(h264, 48, frame_index=12)
    assert (w, h) == (48, 36) and mean_difference(pixels, reference_gray(12, 48)) < 3
    w, h, frames = media.decode_gray_frames(h264, 2, 48, 5, fps_in=FPS, skip_seconds=1.0)
    assert (w, h, len(frames)) == (48, 36, 5)
    assert mean_difference(frames[0], reference_gray(10, 48)) < 3
    assert mean_difference(frames[1], reference_gray(15, 48)) < 3


def test_media_refuses_what_it_cannot_decode(h264):
    units = split_access_units(h264)
    with pytest.raises(MediaError, match="keyframe"):
        media.decode_gray_all([u.data for u in units[1:5]], 48)
    with pytest.raises(MediaError, match="no picture"):
        media.decode_gray(b"not video at all", 48)
    with pytest.raises(MediaError, match="does not exist"):
        media.decode_gray(h264, 48, frame_index=SECONDS * FPS)
