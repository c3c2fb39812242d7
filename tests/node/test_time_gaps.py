"""A hole in the recording is recorded, with its times and why (issue 6, item 4).

The chain proves no segment is missing, not that the camera was recording: the node
says in the next segment's signed header when and why it stopped (`gap`), keeps the
same record in gaps.jsonl, and the central records a `time` gap with an alert.
"""
from __future__ import annotations

import json
import os
import time

import nacl.public
import nacl.signing
import pytest

from appliance.formats import segment as seg
from appliance.config import Config
from appliance.node.identity import NodeIdentity
from appliance.node.recorder import Recorder
from appliance.node.spool import Spool
from conftest import enrol_camera_record
from hw.backend import Frame
from test_ingest import put

FPS_US = 100_000


# --------------------------------------------------------------------------- the node


@pytest.fixture
def identity(tmp_path):
    archive = nacl.public.PrivateKey.generate().public_key
    return NodeIdentity.init(tmp_path / "node", "cam-g", bytes(archive).hex(), "http://127.0.0.1:9",
                             live_key_hex=bytes(archive).hex())


def recorder(identity, boot_id="boot-1") -> Recorder:
    return Recorder(identity, Config(), Spool(identity.data_dir / "spool", 10**9), boot_id=boot_id)


class Camera:
    """Frames at 10 fps, cut into segments the way KeyframeSplitter does (close, then open at once)."""

    def __init__(self, rec: Recorder):
        self.rec, self.pts, self.sink = rec, 0, None

    def run(self, segments: int, frames: int = 5) -> None:
        for _ in range(segments):
            if self.sink is not None:
                self.sink.close()
            self.sink = self.rec.open_segment()
            for i in range(frames):
                self.sink.write_frame(Frame(b"\x00\x00\x00\x01\x65" + os.urandom(50), i == 0, self.pts))
                self.pts += FPS_US

    def stop(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None


def headers(identity) -> list[dict]:
    return [seg.read_public(p).header for p in sorted((identity.data_dir / "spool").glob("*.cseg"))]


def node_gaps(identity) -> list[dict]:
    path = identity.data_dir / "gaps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_segments_of_one_camera_run_meet_and_a_camera_restart_is_a_gap(identity):
    rec = recorder(identity)
    camera = Camera(rec)
    camera.run(3)
    camera.stop()                                  # the backend stops (watchdog, new masks)...
    time.sleep(0.7)
    camera.run(2)                                  # ...and starts again
    camera.stop()
    found = headers(identity)
    assert ["gap" in h for h in found] == [False, False, False, True, False]
    ends = [seg.read_public(p).trailer["end_us"] for p in sorted((identity.data_dir / "spool").glob("*.cseg"))]
    assert found[3]["gap"] == {"from_us": ends[2], "why": "camera restarted"}
    assert node_gaps(identity) == [{"seq": 3, "from_us": ends[2], "to_us": found[3]["start_us"],
                                    "why": "camera restarted"}]
    assert found[3]["start_us"] - ends[2] >= 700_000


def test_a_restarted_node_says_why_restart_reboot_or_crash(identity):
    camera = Camera(recorder(identity))
    camera.run(2)
    camera.stop()
    camera = Camera(recorder(identity))            # the process restarted, same boot
    camera.run(1)
    camera.stop()
    camera = Camera(recorder(identity, boot_id="boot-2"))   # the machine rebooted
    camera.run(1)
    camera.sink.write_frame(Frame(b"\x00\x00\x00\x01\x41" + os.urandom(50), False, camera.pts))
    camera.sink._writer.abort()                    # killed mid-segment: a part is left behind
    camera = Camera(recorder(identity, boot_id="boot-2"))
    camera.run(1)
    camera.stop()
    whys = [(g["seq"], g["why"]) for g in node_gaps(identity)]
    assert whys == [(2, "node restarted"), (3, "node rebooted"), (4, "node restarted after a crash")]
    truncated = seg.read_public(identity.data_dir / "spool" / "0000000003.cseg")
    assert not truncated.complete
    assert headers(identity)[4]["gap"]["from_us"] == truncated.trailer["end_us"]


def test_a_note_from_the_node_is_the_why_of_the_next_gap(identity):
    rec = recorder(identity)
    camera = Camera(rec)
    camera.run(1)
    rec.note_break("recording paused: placement pending")
    camera.run(1)
    rec.note_break("camera restarted: privacy masks changed")
    rec.note_break("a second reason is not kept")
    camera.run(1)
    camera.stop()
    assert [g["why"] for g in node_gaps(identity)] == ["recording paused: placement pending",
                                                      "camera restarted: privacy masks changed"]


# --------------------------------------------------------------------------- the central


class Writer:
    """Segments of one camera with chosen times, as ingest receives them."""

    def __init__(self, central, tmp_path, name="cam-t"):
        self.name, self.dir = name, tmp_path
        self.key = nacl.signing.SigningKey.generate()
        self.archive_key = central.keys.archive_public_key()
        self.prev, self.seq = None, 0
        enrol_camera_record(central, name, self.key.verify_key.encode().hex())

    def make(self, start_us: int, gap: dict | None = None) -> tuple[bytes, seg.SegmentInfo]:
        path = self.dir / f"{self.seq}.cseg"
        w = seg.SegmentWriter(path, params=seg.StreamParams(self.name, 64, 48, 10), seq=self.seq,
                              prev_digest=self.prev, archive_key=self.archive_key, signing_key=self.key,
                              start_us=start_us, gap=gap)
        w.write_frame(Frame(b"\x00\x00\x00\x01\x65" + os.urandom(100), True, self.seq * 1_000_000))
        info = w.close()
        self.prev, self.seq = info.digest, self.seq + 1
        return path.read_bytes(), info


def test_central_records_the_gap_a_node_declares_and_one_it_did_not_explain(serving, central, tmp_path):
    cam = Writer(central, tmp_path)
    now = time.time_ns() // 1000
    data, first = cam.make(now - 60_000_000)
    assert put(serving.url, cam.name, 0, data)[0] == 201
    end0 = first.trailer["end_us"]
    data, second = cam.make(end0 + 10_000_000)                               # 10 s later, nothing said
    assert put(serving.url, cam.name, 1, data)[0] == 201
    data, third = cam.make(second.trailer["end_us"] + 4_000_000,
                           gap={"from_us": second.trailer["end_us"], "why": "camera restarted"})
    assert put(serving.url, cam.name, 2, data)[0] == 201
    data, _ = cam.make(third.trailer["end_us"] + 20_000)                     # the next cut: they meet
    assert put(serving.url, cam.name, 3, data)[0] == 201
    gaps = sorted(central.records.all("gaps"), key=lambda g: g["to_seq"])
    assert [(g["kind"], g["from_seq"], g["to_seq"], g["from_us"], g["to_us"], g["why"]) for g in gaps] == [
        ("time", 0, 1, end0, end0 + 10_000_000, "not explained by the node"),
        ("time", 1, 2, second.trailer["end_us"], second.trailer["end_us"] + 4_000_000, "camera restarted")]
    assert gaps[0]["detail"].startswith("no recording for 10.0 s, ") and "(local time)" in gaps[0]["detail"]
    assert [a["message"] for a in central.records.all("alerts") if a["kind"] == "gap"] == [g["detail"] for g in gaps]
    assert len(central.audit.query(action_prefix="archive.gap")) == 2


# --------------------------------------------------------------------------- real processes


@pytest.mark.slow
def test_a_graceful_restart_of_a_real_node_leaves_a_recorded_gap_with_the_right_times(tmp_path):
    from appliance.demo import DemoSystem
    from appliance.custody.records import open_records
    from processes import archive_files, wait_for

    system = DemoSystem(tmp_path / "demo", cameras=1, segment_seconds=2, width=320, height=240, fps=10)
    system.setup()
    try:
        system.start_central()
        system.seed()
        system.start_nodes()
        system.after_start()
        wait_for(lambda: len(archive_files(system.central_dir, "entrance")) >= 3, 90, "segments archived")
        system.stop_nodes()                                   # SIGTERM: the open segment is closed and sent
        stopped = time.time_ns() // 1000
        before = len(archive_files(system.central_dir, "entrance"))
        time.sleep(3)
        restarted = time.time_ns() // 1000
        system.start_node("entrance")
        wait_for(lambda: len(archive_files(system.central_dir, "entrance")) >= before + 3, 90, "recording again")
        system.stop_nodes()
    finally:
        system.stop()
    infos = [seg.read_public(p) for p in archive_files(system.central_dir, "entrance")]
    last_before, first_after = infos[before - 1], infos[before]
    assert first_after.seq == last_before.seq + 1 and first_after.header["prev"] == last_before.digest
    end, start = last_before.trailer["end_us"], first_after.header["start_us"]
    assert end <= stopped and start >= restarted and start - end >= 3_000_000
    # Said by the node, in the signed header and in its own record...
    assert first_after.header["gap"] == {"from_us": end, "why": "node restarted"}
    assert [i.seq for i in infos if "gap" in i.header] == [first_after.seq], "segments of one run meet"
    gaps_file = system.node_dir("entrance") / "gaps.jsonl"
    assert [json.loads(line) for line in gaps_file.read_text().splitlines()] == [
        {"seq": first_after.seq, "from_us": end, "to_us": start, "why": "node restarted"}]
    # ...and recorded by the central, with an alert and an audit entry.
    records = open_records(system.central_dir / "records" / "records.json")
    try:
        gaps = records.all("gaps")
        alerts = [a["message"] for a in records.all("alerts") if a["kind"] == "gap"]
    finally:
        records.close()
    assert [(g["kind"], g["from_seq"], g["to_seq"], g["from_us"], g["to_us"], g["why"]) for g in gaps] == [
        ("time", last_before.seq, first_after.seq, end, start, "node restarted")]
    assert alerts == [gaps[0]["detail"]]
    audit = (system.central_dir / "audit" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["details"]["why"] for line in audit if '"archive.gap"' in line] == ["node restarted"]
