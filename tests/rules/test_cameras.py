"""Cameras and signage at the API layer (C1, C5, C6); images arrive through the real node channel."""
from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from appliance.rules import cameras as cameras_mod
from appliance.node.control import ControlClient
from appliance.errors import BadRequest, NotFound, Refused
from appliance.formats.segment import SegmentWriter, StreamParams
from hw.backend import Frame
from test_node_control import (  # noqa: F401  (server is a fixture)
    approved_camera,
    audit_actions,
    enrol,
    new_node,
    pattern,
    post_entrance_sign,
    raw_request,
    send_view,
    server,
)

KEY = "ab" * 32


def alerts(central, kind: str) -> list[dict]:
    return [a for a in central.records.all("alerts") if a["kind"] == kind]


# --------------------------------------------------------------------------- enrolment (C6)


def test_C6_restroom_camera_refused(central, people):
    for category in ("restroom", "changing_room", "lactation_room", "staff_private"):
        with pytest.raises(Refused) as refused:
            people.call("ivy", "camera.enroll", camera="cam-1", key=KEY, category=category, location="Ground floor")
        assert refused.value.clause == "C6" and "expectation of privacy" in str(refused.value)
    assert people.call("director", "camera.list")["cameras"] == []
    assert central.camera_key("cam-1") is None
    assert audit_actions(central, "camera.enroll") == []


def test_C6_camera_that_would_identify_reading_viewing_or_listening_refused(central, people):
    for category in ("reading_position", "computer_screens", "listening_station"):
        with pytest.raises(Refused) as refused:
            people.call("ivy", "camera.enroll", camera="cam-1", key=KEY, category=category, location="Stacks")
        assert refused.value.clause == "C6"
    with pytest.raises(Refused) as refused:
        people.call("director", "camera.enroll", camera="cam-1", key=KEY, category="collection",
                    location="Over the reading tables", reading_position=True)
    assert refused.value.clause == "C6" and "reads, views or listens" in str(refused.value)
    assert people.call("director", "camera.list")["cameras"] == []


def test_C6_enrolment_checks_input_and_starts_pending(central, people):
    bad = [dict(camera="../etc", key=KEY), dict(camera="Cam_A", key=KEY), dict(camera="cam-1", key="12"),
           dict(camera="cam-1", key="zz" * 32)]
    for args in bad:
        with pytest.raises(BadRequest):
            people.call("ivy", "camera.enroll", category="entrance", location="Main doors", **args)
    with pytest.raises(BadRequest, match="category"):
        people.call("ivy", "camera.enroll", camera="cam-1", key=KEY, category="roof", location="Main doors")
    with pytest.raises(Refused, match="only the Director or IT staff may use camera.enroll"):
        people.call("sam", "camera.enroll", camera="cam-1", key=KEY, category="entrance", location="Main doors")
    assert central.records.all("cameras") == []

    cam = people.call("ivy", "camera.enroll", camera="cam-1", key=KEY, category="entrance",
                      location="Main doors")["camera"]
    assert cam["status"] == "pending_placement" and cam["masks"] == [] and cam["snapshot_at"] is None
    assert central.camera_key("cam-1") is not None                    # ingest knows the key...
    entry = audit_actions(central, "camera.enroll")[-1]
    assert entry["actor"] == people.ids["ivy"] and entry["target"] == "cam-1" and entry["role"] == "it"
    with pytest.raises(Refused, match="already enrolled"):
        people.call("ivy", "camera.enroll", camera="cam-1", key="cd" * 32, category="entrance", location="Doors")
    with pytest.raises(Refused, match="another camera"):
        people.call("ivy", "camera.enroll", camera="cam-2", key=KEY, category="entrance", location="Doors")
    listed = people.call("sam", "camera.list")["cameras"]
    assert [c["id"] for c in listed] == ["cam-1"] and "reference" not in listed[0]


# --------------------------------------------------------------------------- placement (C5, C6)


def test_C5_signage_text_comes_from_policy(central, people):
    text = people.call("sam", "signage.text")["text"]
    policy = people.call("sam", "policy.text")["text"]
    assert text.startswith("Areas of the building are under video surveillance.")
    assert text.endswith("Rules of Conduct.")
    assert f"Common wording is: \u201c{text}\u201d" in policy
    source = Path(cameras_mod.__file__).read_text()
    assert "Images may be collected" not in source                   # taken from the policy, not retyped


def test_C5_placement_needs_entrance_signage(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    assert send_view(ControlClient(identity), pattern(128, 72)) == 200
    with pytest.raises(Refused) as refused:
        people.call("director", "camera.approve_placement", camera="cam-a", note="looks right")
    assert refused.value.clause == "C5"
    people.call("ivy", "signage.add", location="children's area", posted_on=date.today().isoformat())
    with pytest.raises(Refused) as refused:
        people.call("director", "camera.approve_placement", camera="cam-a", note="looks right")
    assert refused.value.clause == "C5"
    assert central.records.get("cameras", "cam-a")["status"] == "pending_placement"
    with pytest.raises(BadRequest, match="future"):
        people.call("ivy", "signage.add", location="entrance",
                    posted_on=(date.today() + timedelta(days=2)).isoformat())
    with pytest.raises(Refused):
        people.call("sam", "signage.add", location="entrance", posted_on=date.today().isoformat())

    post_entrance_sign(people)
    assert people.call("sam", "signage.list")["entrance_signed"] is True
    cam = people.call("director", "camera.approve_placement", camera="cam-a", note="looks right")["camera"]
    assert cam["status"] == "approved" and cam["placement"]["note"] == "looks right"
    assert central.records.get("cameras", "cam-a")["reference"]["width"] == cameras_mod.REFERENCE_WIDTH
    assert [e["target"] for e in audit_actions(central, "signage.add")] == ["sgn-000001", "sgn-000002"]

    # Taking the last entrance sign down alerts the Director at once.
    sign = [s for s in people.call("ivy", "signage.list")["signs"] if s["entrance"]][0]
    people.call("ivy", "signage.remove", sign=sign["id"], reason="damaged, replacement ordered")
    assert people.call("ivy", "signage.list")["entrance_signed"] is False
    assert len(alerts(central, "signage")) == 1 and audit_actions(central, "signage.remove")


def test_C6_placement_is_approved_from_a_recent_snapshot_by_the_director(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    post_entrance_sign(people)
    with pytest.raises(Refused) as refused:
        people.call("director", "camera.approve_placement", camera="cam-a", note="trust me")
    assert refused.value.clause == "C6" and "snapshot" in str(refused.value)
    with pytest.raises(NotFound):
        people.call("director", "camera.snapshot", camera="cam-a")
    client = ControlClient(identity)
    assert send_view(client, pattern(128, 72)) == 200
    assert client.control()["snapshot_wanted"] is False

    for who in ("ivy", "sam"):
        with pytest.raises(Refused, match="only the Director may"):
            people.call(who, "camera.approve_placement", camera="cam-a", note="fine")
        with pytest.raises(Refused, match="only the Director may"):
            people.call(who, "camera.snapshot", camera="cam-a")           # IT never sees pictures
    view = people.call("director", "camera.snapshot", camera="cam-a")
    assert (view["width"], view["height"], view["format"]) == (128, 72, "gray8")
    assert audit_actions(central, "camera.snapshot_view")[-1]["actor"] == people.ids["director"]

    central.clock.offset += timedelta(minutes=16)
    with pytest.raises(Refused, match="older than 15 minutes"):
        people.call("director", "camera.approve_placement", camera="cam-a", note="fine")
    assert client.control()["snapshot_wanted"] is True                  # the node is asked for a fresh one
    assert send_view(client, pattern(128, 72)) == 200
    people.call("director", "camera.set_masks", camera="cam-a", masks=[[0, 0, 100, 100]])
    with pytest.raises(Refused, match="before its current privacy masks"):
        people.call("director", "camera.approve_placement", camera="cam-a", note="fine")
    assert client.control()["snapshot_wanted"] is True
    assert send_view(client, pattern(128, 72), masks=[[0, 0, 100, 100]]) == 200
    people.call("director", "camera.approve_placement", camera="cam-a", note="fine")
    assert client.control()["status"] == "approved"


def test_C6_reject_and_retire(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    client = ControlClient(identity)
    assert send_view(client, pattern(128, 72)) == 200
    people.call("director", "camera.reject_placement", camera="cam-a", note="sees the restroom door")
    assert client.control()["status"] == "rejected"
    with pytest.raises(Refused):
        people.call("ivy", "camera.retire", camera="cam-a", why="moving it")
    people.call("director", "camera.retire", camera="cam-a", why="taken down")
    assert central.camera_key("cam-a") is None                          # ingest refuses it now
    assert client.control()["status"] == "retired"
    assert client.put_image(f"/v1/nodes/cam-a/snapshot", {"width": 2, "height": 2, "pixels": "AAAAAA==",
                                                          "at": "2026-01-01T00:00:00Z"}) == 409
    with pytest.raises(Refused, match="retired"):
        people.call("director", "camera.approve_placement", camera="cam-a", note="again")
    actions = [e["action"] for e in central.audit.query(action_prefix="camera.")]
    assert actions == ["camera.enroll", "camera.reject_placement", "camera.retire"]


def test_C6_masks_are_checked_and_reach_the_node(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    client = ControlClient(identity)
    with pytest.raises(Refused, match="not known yet"):
        people.call("director", "camera.set_masks", camera="cam-a", masks=[[0, 0, 10, 10]])
    assert send_view(client, pattern(128, 72), frame=(1280, 720)) == 200
    for masks in ([[0, 0, 0, 10]], [[1, 2, 3]], [[2000, 0, 10, 10]], "all"):
        with pytest.raises(BadRequest):
            people.call("director", "camera.set_masks", camera="cam-a", masks=masks)
    with pytest.raises(Refused):
        people.call("ivy", "camera.set_masks", camera="cam-a", masks=[[0, 0, 10, 10]])
    assert central.records.get("cameras", "cam-a")["masks"] == []
    people.call("director", "camera.set_masks", camera="cam-a", masks=[[0, 0, 640, 720], [1200, 600, 200, 200]],
                why="reading tables on the left")
    assert client.control()["masks"] == [[0, 0, 640, 720], [1200, 600, 200, 200]]
    entry = audit_actions(central, "camera.set_masks")[-1]
    assert entry["why"] == "reading tables on the left" and entry["details"]["previous"] == []


# --------------------------------------------------------------------------- view changes (C6)


def test_C6_view_change_alerts_director(tmp_path, central, people, server):
    client = approved_camera(tmp_path, central, people, server)
    # The same view, lights brighter: not a change.
    assert send_view(client, pattern(128, 72, brighten=30)) == 200
    cam = central.records.get("cameras", "cam-a")
    assert cam["view_difference"] <= 2 and not cam["view_changed"] and alerts(central, "camera_moved") == []
    # Panned by a sixth of the frame: the Director is alerted, once.
    assert send_view(client, pattern(128, 72, shift=20)) == 200
    assert send_view(client, pattern(128, 72, shift=24)) == 200
    moved = alerts(central, "camera_moved")
    assert len(moved) == 1 and moved[0]["camera"] == "cam-a"
    assert moved[0]["difference"] > cameras_mod.VIEW_CHANGE_THRESHOLD
    listed = people.call("ivy", "camera.list")["cameras"][0]
    assert listed["view_changed"] is True
    entry = audit_actions(central, "camera.view_changed")
    assert len(entry) == 1 and entry[0]["actor"] == "system"
    # The Director looks at the new view and approves it: it becomes the reference.
    people.call("director", "camera.approve_placement", camera="cam-a", note="moved to see the whole desk")
    assert send_view(client, pattern(128, 72, shift=24)) == 200
    assert not central.records.get("cameras", "cam-a")["view_changed"] and len(alerts(central, "camera_moved")) == 1


def test_C6_view_difference_ignores_masked_areas():
    reference = cameras_mod.make_reference({"width": 128, "height": 72, "pixels": _b64(pattern(128, 72)),
                                            "at": "x"})
    masked = bytearray(pattern(128, 72))
    for y in range(72):
        masked[y * 128:y * 128 + 64] = bytes(64)                          # left half blacked out
    image = {"width": 128, "height": 72, "pixels": _b64(bytes(masked)), "frame": [1280, 720],
             "masks": [[0, 0, 640, 720]]}
    assert cameras_mod.view_difference(reference, image, [[0, 0, 640, 720]]) == 0
    assert cameras_mod.view_difference(reference, dict(image, masks=[]), []) > cameras_mod.VIEW_CHANGE_THRESHOLD


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- offline (C1)


def store_segment(central, server, client_identity, seq: int, prev: str | None, seconds: int):
    """A real segment `seconds` long, uploaded through the real ingest route."""
    path = Path(central.paths.data) / f"upload-{seq}.cseg"
    start_us = time.time_ns() // 1000 - seconds * 1_000_000
    writer = SegmentWriter(path, params=StreamParams(camera=client_identity.name, width=320, height=180, fps_num=10),
                           seq=seq, prev_digest=prev, archive_key=central.keys.archive_public_key(),
                           signing_key=client_identity.signing_key, start_us=start_us)
    writer.write_frame(Frame(b"\x00\x00\x00\x01\x65" + bytes(50), True, 0))
    info = writer.close()
    body = path.read_bytes()
    path.unlink()
    status, answer = raw_request(server.url, "PUT", f"/v1/segments/{client_identity.name}/{seq}",
                                 {"Content-Length": str(len(body))}, body)
    assert status == 201, answer
    return info


def test_C1_offline_camera_alerts(tmp_path, central, people, server):
    identity = new_node(tmp_path, central, server.url)
    enrol(people, identity)
    assert send_view(ControlClient(identity), pattern(128, 72)) == 200
    post_entrance_sign(people)
    people.call("director", "camera.approve_placement", camera="cam-a", note="view checked")
    info = store_segment(central, server, identity, 0, None, seconds=10)
    assert cameras_mod.segment_seconds(central, "cam-a") == 10           # limit: 2 x 10 s + 60 s
    central.clock.offset += timedelta(seconds=70)
    assert cameras_mod.check_offline(central) == []
    central.clock.offset += timedelta(seconds=20)
    raised = cameras_mod.check_offline(central)
    assert [a["kind"] for a in raised] == ["camera_offline"] and raised[0]["camera"] == "cam-a"
    assert cameras_mod.check_offline(central) == []                      # once, not every check
    assert people.call("ivy", "camera.list")["cameras"][0]["offline_since"] is not None
    store_segment(central, server, identity, 1, info.digest, seconds=10)
    back = cameras_mod.check_offline(central)
    assert [a["kind"] for a in back] == ["camera_online"]
    assert [e["action"] for e in central.audit.query(since=None) if e["action"] in ("camera.offline", "camera.online")
            ] == ["camera.offline", "camera.online"]


def test_C1_camera_approved_but_never_recording_alerts(central, people, tmp_path, server):
    approved_camera(tmp_path, central, people, server)
    central.clock.offset += timedelta(seconds=2 * 60 + 61)
    assert [a["kind"] for a in cameras_mod.check_offline(central)] == ["camera_offline"]
    assert central.nodes.online("cam-a") is False                     # no request for 3 minutes


def test_C1_offline_check_runs_in_the_central_background(tmp_path, central, people, server):
    import asyncio

    approved_camera(tmp_path, central, people, server)
    central.clock.offset += timedelta(seconds=2 * 60 + 61)

    async def serve_a_moment():
        tasks = [asyncio.create_task(work) for work in central.background_tasks()]
        try:
            for _ in range(200):
                if alerts(central, "camera_offline"):
                    return
                await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(serve_a_moment())
    assert [a["camera"] for a in alerts(central, "camera_offline")] == ["cam-a"]
