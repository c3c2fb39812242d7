"""Central ingest over real HTTP: verify, store crash-safely, refuse everything forged."""
from __future__ import annotations

import http.client
import json
import os
import struct
import urllib.parse

import nacl.signing
import pytest

from appliance.formats import segment as seg
from conftest import enrol_camera_record
from hw.backend import Frame


def put(url: str, camera: str, seq: int, body: bytes, length: int | None = None):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("PUT", f"/v1/segments/{camera}/{seq}", body=body,
                     headers={"Content-Length": str(len(body) if length is None else length)})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    except (ConnectionResetError, BrokenPipeError):
        return None, {}
    finally:
        conn.close()


def health(url):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("GET", "/v1/health")
    return conn.getresponse().status


class Node:
    """Writes real segments the way a node does (for tests that drive ingest directly)."""

    def __init__(self, central, tmp_path, name="cam-a", key=None):
        self.name = name
        self.key = key or nacl.signing.SigningKey.generate()
        self.archive_key = central.keys.archive_public_key()
        self.dir = tmp_path / f"node-{name}"
        self.dir.mkdir(exist_ok=True)
        self.prev = None
        self.seq = 0

    def make(self, seq=None, prev="auto", frames=20) -> bytes:
        seq = self.seq if seq is None else seq
        prev = self.prev if prev == "auto" else prev
        path = self.dir / f"{seq}-{os.urandom(4).hex()}.cseg"
        w = seg.SegmentWriter(path, params=seg.StreamParams(self.name, 64, 48, 10), seq=seq, prev_digest=prev,
                              archive_key=self.archive_key, signing_key=self.key, chunk_bytes=4096)
        for i in range(frames):
            w.write_frame(Frame(b"\x00\x00\x00\x01\x65" + os.urandom(900), i == 0, seq * 10_000_000 + i * 100_000))
        info = w.close()
        self.prev, self.seq = info.digest, seq + 1
        data = path.read_bytes()
        path.unlink()
        return data


@pytest.fixture
def node(central, tmp_path):
    n = Node(central, tmp_path)
    enrol_camera_record(central, n.name, n.key.verify_key.encode().hex())
    return n


def test_segments_are_stored_in_the_tree_and_chained(serving, central, node):
    for _ in range(3):
        data = node.make()
        status, answer = put(serving.url, node.name, node.seq - 1, data)
        assert status == 201 and answer["status"] == "stored"
    files = sorted((central.paths.archive / node.name).rglob("*.cseg"))
    assert [f.name.split("-")[0] for f in files] == ["0000000000", "0000000001", "0000000002"]
    rel = files[0].relative_to(central.paths.archive).parts
    assert len(rel) == 5 and len(rel[1]) == 4 and len(rel[2]) == 2 and len(rel[3]) == 2
    assert files[0].read_bytes()[:4] == b"CSEG"
    assert central.records.get("cameras", node.name)["last_segment_seq"] == 2
    assert not list((central.paths.archive / ".incoming").iterdir())


def test_duplicate_upload_is_acknowledged_not_stored_twice(serving, central, node):
    data = node.make()
    assert put(serving.url, node.name, 0, data)[0] == 201
    status, answer = put(serving.url, node.name, 0, data)
    assert status == 200 and answer["status"] == "duplicate"
    assert len(list((central.paths.archive / node.name).rglob("*.cseg"))) == 1


def test_unknown_camera_is_refused(serving, central, tmp_path):
    stranger = Node(central, tmp_path, name="cam-x")
    status, answer = put(serving.url, "cam-x", 0, stranger.make())
    assert status == 403 and "not enrolled" in answer["error"]


def test_segment_signed_by_another_nodes_key_is_refused(serving, central, node, tmp_path):
    impostor = Node(central, tmp_path, name=node.name)  # same name, its own key
    status, answer = put(serving.url, node.name, 0, impostor.make())
    assert status == 403 and "not enrolled" in answer["error"]
    entries = central.audit.query(action_prefix="ingest.rejected")
    assert entries and entries[-1]["details"]["kind"] == "signature"


def test_a_segment_naming_another_camera_is_refused_though_its_key_is_enrolled(serving, central, node, tmp_path):
    # cam-a's own key signs a segment whose header says cam-b, sent to cam-a's address: one camera's
    # key must never write another camera's footage.
    cam_b = Node(central, tmp_path, name="cam-b")
    enrol_camera_record(central, "cam-b", cam_b.key.verify_key.encode().hex())
    forged = Node(central, tmp_path, name="cam-b", key=node.key).make()
    status, answer = put(serving.url, node.name, 0, forged)
    assert status == 403 and "cam-b" in answer["error"], answer
    assert not list(central.paths.archive.rglob("*.cseg"))
    assert central.records.get("cameras", "cam-b").get("last_segment_seq") is None
    assert central.audit.query(action_prefix="ingest.rejected")[-1]["details"]["kind"] == "signature"
    assert put(serving.url, "cam-b", 0, cam_b.make())[0] == 201      # cam-b's own still goes in


def layout(data: bytes) -> dict[str, int]:
    """Where each part of a segment file lies (docs/segment-format.md), found by walking it."""
    (header_len,) = struct.unpack_from(">I", data, 5)
    pos, chunks = 9 + header_len + 64, []
    while True:
        (n,) = struct.unpack_from(">I", data, pos)
        if n == 0:
            break
        chunks.append((pos, n))
        pos += 4 + n
    end_marker, trailer = pos, pos + 4
    (trailer_len,) = struct.unpack_from(">I", data, trailer)
    assert trailer + 4 + trailer_len + 64 == len(data) and len(chunks) >= 2
    (first, first_n), (last, last_n) = chunks[0], chunks[-1]
    return {"first chunk's length": first + 2, "first chunk's ciphertext": first + 4 + first_n // 2,
            "last chunk's tag": last + 4 + last_n - 1, "end marker": end_marker + 3,
            "trailer's length": trailer + 3, "trailer JSON": trailer + 4 + trailer_len // 2,
            "trailer signature": len(data) - 1}


@pytest.mark.parametrize("part", ["first chunk's length", "first chunk's ciphertext", "last chunk's tag",
                                  "end marker", "trailer's length", "trailer JSON", "trailer signature"])
def test_a_byte_flipped_in_the_body_or_trailer_is_refused_at_ingest(serving, central, node, part):
    data = node.make(frames=60)
    flipped = bytearray(data)
    flipped[layout(data)[part]] ^= 0x01
    status, answer = put(serving.url, node.name, 0, bytes(flipped))
    assert status in (400, 403), (part, status, answer)
    assert not list(central.paths.archive.rglob("*.cseg"))
    assert not list((central.paths.archive / ".incoming").iterdir())
    assert put(serving.url, node.name, 0, data)[0] == 201             # the intact segment still goes in


@pytest.mark.parametrize("offset", [30, 400, -40])
def test_flipped_byte_is_refused(serving, node, offset):
    data = bytearray(node.make())
    data[offset] ^= 0x40
    status, _ = put(serving.url, node.name, 0, bytes(data))
    assert status in (400, 403)


def test_truncated_upload_is_refused_and_nothing_stored(serving, central, node):
    data = node.make()
    status, answer = put(serving.url, node.name, 0, data[: len(data) // 2])
    assert status == 400 and "ends early" in answer["error"]
    assert not list(central.paths.archive.rglob("*.cseg"))
    assert not list((central.paths.archive / ".incoming").iterdir())


def test_oversized_upload_is_refused_before_reading(serving, central, node):
    status, answer = put(serving.url, node.name, 0, b"x" * 10, length=central.max_segment_bytes + 1)
    assert status in (413, None)


def test_malformed_bodies_and_paths_get_clear_errors(serving, node):
    assert put(serving.url, node.name, 0, b"hello world, not a segment")[0] == 400
    assert put(serving.url, "Bad_Name", 0, b"x")[0] == 400
    data = node.make()
    status, answer = put(serving.url, node.name, 5, data)  # URL says 5, segment says 0
    assert status == 400 and "carries segment 0" in answer["error"]
    assert health(serving.url) == 200


def test_a_deeply_nested_header_from_anyone_is_a_clear_400_without_a_traceback(serving, node, caplog):
    # Nothing authenticates the header's bytes until they have been parsed: anyone on the LAN
    # can send this. Before, json's RecursionError escaped as a 500 and a traceback per upload.
    nested = b"[" * 20000 + b"]" * 20000
    body = seg.PREFIX + struct.pack(">I", len(nested)) + nested + bytes(64) + bytes(4)
    status, answer = put(serving.url, node.name, 0, body)
    assert status == 400 and "not canonical JSON" in answer["error"], (status, answer)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert health(serving.url) == 200


def test_replayed_older_segment_is_refused(serving, central, node):
    first = node.make()
    assert put(serving.url, node.name, 0, first)[0] == 201
    for _ in range(2):
        assert put(serving.url, node.name, node.seq, node.make())[0] == 201
    # A different segment 0 (e.g. replayed from another recording) cannot replace or join the chain.
    other = Node(serving.central, node.dir.parent, name=node.name, key=node.key).make(seq=0, prev=None)
    status, answer = put(serving.url, node.name, 0, other)
    assert status == 409 and "different segment" in answer["error"]


def test_chain_break_is_refused(serving, node):
    assert put(serving.url, node.name, 0, node.make())[0] == 201
    forged = node.make(prev="00" * 32)
    status, answer = put(serving.url, node.name, 1, forged)
    assert status == 409 and "does not chain" in answer["error"]


def test_sequence_gap_is_stored_and_recorded(serving, central, node):
    assert put(serving.url, node.name, 0, node.make())[0] == 201
    node.make()  # segment 1 is lost on the way
    status, _ = put(serving.url, node.name, 2, node.make())
    assert status == 201
    gaps = central.records.all("gaps")
    assert [(g["from_seq"], g["to_seq"], g["kind"]) for g in gaps] == [(1, 1, "missing")]
    assert any(a["kind"] == "gap" for a in central.records.all("alerts"))


def test_disk_refusal_answers_507_so_nodes_keep_spooling(serving, central, node):
    central.set_ingest_refusal("archive full of held footage")
    status, answer = put(serving.url, node.name, 0, node.make())
    assert status == 507 and "held footage" in answer["error"]


def test_upload_of_a_truncated_but_sealed_segment_records_a_gap(serving, central, node, tmp_path):
    part_dir = tmp_path / "crash"
    part_dir.mkdir()
    w = seg.SegmentWriter(part_dir / "x.cseg", params=seg.StreamParams(node.name, 64, 48, 10), seq=0,
                          prev_digest=None, archive_key=node.archive_key, signing_key=node.key, chunk_bytes=2048)
    for i in range(10):
        w.write_frame(Frame(b"\x00\x00\x00\x01\x65" + os.urandom(900), i == 0, i))
    w.abort()
    seg.seal_truncated(part_dir / "x.cseg.part", node.key, "node restarted mid-segment")
    status, _ = put(serving.url, node.name, 0, (part_dir / "x.cseg").read_bytes())
    assert status == 201
    assert [g["kind"] for g in central.records.all("gaps")] == ["truncated"]


def test_frame_record_layout_is_what_the_reader_expects():
    assert struct.calcsize(">qBI") == seg.FRAME_RECORD.size == 13


def test_a_flood_of_forgeries_is_one_audit_entry_and_one_alert(serving, central, node, tmp_path):
    impostor = Node(central, tmp_path, name=node.name)
    forged = impostor.make()
    for _ in range(30):
        assert put(serving.url, node.name, 0, forged)[0] == 403
    entries = central.audit.query(action_prefix="ingest.rejected")
    assert len(entries) == 1
    assert [a["kind"] for a in central.records.all("alerts")].count("integrity") == 1


def test_a_gap_is_recorded_once_even_when_its_segment_arrives_twice(central):
    # The archive records a gap before it stores the segment; if the central dies in between,
    # the node's retry reports the same gap again: it must be one record and one alert.
    gap = {"camera": "cam-a", "kind": "missing", "from_seq": 3, "to_seq": 4, "detail": "segments 3..4 never arrived"}
    central._gap_found(dict(gap))
    central._gap_found(dict(gap))
    assert len(central.records.all("gaps")) == 1
    assert [a["kind"] for a in central.records.all("alerts")].count("gap") == 1
