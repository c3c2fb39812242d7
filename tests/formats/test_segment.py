"""Segment envelope v1: round trip, and every kind of tampering is detected."""
from __future__ import annotations

import io
import os
import struct

import nacl.public
import nacl.signing
import pytest

from appliance.formats import segment as seg
from appliance.errors import SegmentError
from hw.backend import Frame


@pytest.fixture
def keys():
    archive = nacl.public.PrivateKey.generate()
    node = nacl.signing.SigningKey.generate()
    return archive, node


def make_frames(n=40, size=3000, gop=10):
    frames = []
    for i in range(n):
        key = i % gop == 0
        body = (b"\x00\x00\x00\x01\x67SPS" if key else b"") + b"\x00\x00\x00\x01" + bytes([0x65 if key else 0x41])
        body += os.urandom(size)
        frames.append(Frame(body, key, 1_000_000 + i * 33_333))
    return frames


def write_segment(path, keys, frames, seq=0, prev=None, chunk_bytes=8000):
    archive, node = keys
    w = seg.SegmentWriter(path, params=seg.StreamParams(camera="cam-a", width=320, height=240, fps_num=30),
                          seq=seq, prev_digest=prev, archive_key=archive.public_key, signing_key=node,
                          chunk_bytes=chunk_bytes)
    for f in frames:
        w.write_frame(f)
    return w.close()


def test_round_trip_decrypts_every_frame_in_order(tmp_path, keys):
    frames = make_frames()
    info = write_segment(tmp_path / "a.cseg", keys, frames)
    assert info.complete and info.trailer["frames"] == len(frames)
    assert info.trailer["chunks"] > 3  # written as it arrives, not in one piece
    assert seg.verify_file(tmp_path / "a.cseg").digest == info.digest
    got = list(seg.iter_frames(tmp_path / "a.cseg", keys[0], seg.enrolled_key(keys[1].verify_key)))
    assert got == frames
    out = io.BytesIO()
    seg.decrypt_payload(tmp_path / "a.cseg", keys[0], out, seg.enrolled_key(keys[1].verify_key))
    assert out.getvalue() == b"".join(f.data for f in frames)



def test_read_verified_keeps_the_bytes_it_verified_and_reads_a_large_segment_twice(tmp_path, keys):
    """A segment up to IN_MEMORY_BYTES is read once: decrypting the bytes that were verified. A larger one is
    verified as it is read and decrypted from the file again; both give the same frames."""
    frames = make_frames()
    info = write_segment(tmp_path / "a.cseg", keys, frames)
    lookup = seg.enrolled_key(keys[1].verify_key)
    small, data = seg.read_verified(tmp_path / "a.cseg", lookup)
    assert data == (tmp_path / "a.cseg").read_bytes() and small.digest == info.digest
    large, none = seg.read_verified(tmp_path / "a.cseg", lookup, in_memory=len(data) - 1)
    assert none is None and large.digest == info.digest
    assert list(seg.decrypt_verified(tmp_path / "a.cseg", keys[0], small, data)) == frames
    assert list(seg.decrypt_verified(tmp_path / "a.cseg", keys[0], large)) == frames
    # What is decrypted is what was verified: the file changing afterwards does not matter.
    (tmp_path / "a.cseg").write_bytes(b"gone")
    assert list(seg.decrypt_verified(tmp_path / "a.cseg", keys[0], small, data)) == frames

def test_no_plaintext_in_the_file(tmp_path, keys):
    frames = make_frames()
    write_segment(tmp_path / "a.cseg", keys, frames)
    data = (tmp_path / "a.cseg").read_bytes()
    assert b"\x00\x00\x00\x01\x67" not in data
    assert frames[1].data[10:40] not in data


def test_streaming_verifier_accepts_any_piece_size(tmp_path, keys):
    info = write_segment(tmp_path / "a.cseg", keys, make_frames())
    data = (tmp_path / "a.cseg").read_bytes()
    for piece in (1, 7, 4096, len(data)):
        v = seg.SegmentVerifier()
        for i in range(0, len(data), piece):
            v.feed(data[i:i + piece])
        assert v.finish().digest == info.digest


def _layout(data):
    """Offsets of the parts of a segment file."""
    hlen = struct.unpack_from(">I", data, 5)[0]
    pos = 9 + hlen + 64
    chunks = []
    while True:
        n = struct.unpack_from(">I", data, pos)[0]
        if n == 0:
            break
        chunks.append((pos, n))
        pos += 4 + n
    return {"header": 9, "chunks": chunks, "end": pos, "trailer": pos + 8}


def _flip(data, at):
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize("where", ["header", "chunk", "trailer", "signature"])
def test_flipped_byte_is_detected(tmp_path, keys, where):
    write_segment(tmp_path / "a.cseg", keys, make_frames())
    data = (tmp_path / "a.cseg").read_bytes()
    lay = _layout(data)
    at = {"header": lay["header"] + 20, "chunk": lay["chunks"][1][0] + 100,
          "trailer": lay["trailer"] + 10, "signature": len(data) - 5}[where]
    (tmp_path / "b.cseg").write_bytes(_flip(data, at))
    with pytest.raises(SegmentError):
        seg.verify_file(tmp_path / "b.cseg")


def _rebuild(data, chunks_order, keys, drop_final=False):
    """Re-sign a file whose chunks were rearranged: only decryption can catch it then."""
    lay = _layout(data)
    body = bytearray(data[: lay["chunks"][0][0]])
    chunk_blobs = [data[p: p + 4 + n] for p, n in lay["chunks"]]
    order = chunks_order(list(range(len(chunk_blobs))))
    if drop_final:
        order = order[:-1]
    for i in order:
        body += chunk_blobs[i]
    body += struct.pack(">I", 0)
    import hashlib
    import json
    tlen = struct.unpack_from(">I", data, lay["end"] + 4)[0]
    trailer = json.loads(data[lay["end"] + 8: lay["end"] + 8 + tlen])
    trailer.update(chunks=len(order), body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest())
    tj = seg.canonical_json(trailer)
    return bytes(body) + struct.pack(">I", len(tj)) + tj + keys[1].sign(tj).signature


def test_dropped_final_chunk_is_detected_even_when_resigned(tmp_path, keys):
    frames = make_frames()
    data = (tmp_path / "a.cseg", write_segment(tmp_path / "a.cseg", keys, frames))[0].read_bytes()
    forged = _rebuild(data, lambda order: order, keys, drop_final=True)
    (tmp_path / "b.cseg").write_bytes(forged)
    seg.verify_file(tmp_path / "b.cseg")  # signature is valid: the node key signed it
    with pytest.raises(SegmentError, match="final chunk is missing"):
        list(seg.iter_frames(tmp_path / "b.cseg", keys[0], seg.enrolled_key(keys[1].verify_key)))


def test_reordered_chunks_are_detected_even_when_resigned(tmp_path, keys):
    write_segment(tmp_path / "a.cseg", keys, make_frames())
    data = (tmp_path / "a.cseg").read_bytes()
    forged = _rebuild(data, lambda o: [o[1], o[0]] + o[2:], keys)
    (tmp_path / "b.cseg").write_bytes(forged)
    with pytest.raises(SegmentError, match="authentication"):
        list(seg.iter_frames(tmp_path / "b.cseg", keys[0], seg.enrolled_key(keys[1].verify_key)))


def test_reordered_chunks_without_resigning_fail_verification(tmp_path, keys):
    write_segment(tmp_path / "a.cseg", keys, make_frames())
    data = (tmp_path / "a.cseg").read_bytes()
    lay = _layout(data)
    (p0, n0), (p1, n1) = lay["chunks"][0], lay["chunks"][1]
    swapped = data[:p0] + data[p1:p1 + 4 + n1] + data[p0:p0 + 4 + n0] + data[p1 + 4 + n1:]
    (tmp_path / "b.cseg").write_bytes(swapped)
    with pytest.raises(SegmentError, match="digest"):
        seg.verify_file(tmp_path / "b.cseg")


def test_signed_by_another_node_is_refused(tmp_path, keys):
    write_segment(tmp_path / "a.cseg", keys, make_frames())
    enrolled = keys[1].verify_key
    other = (keys[0], nacl.signing.SigningKey.generate())
    write_segment(tmp_path / "b.cseg", other, make_frames())

    def lookup(camera, header):
        if header["node_key"] != enrolled.encode().hex():
            raise SegmentError("not the enrolled key", kind="signature")
        return enrolled

    seg.verify_file(tmp_path / "a.cseg", lookup)
    with pytest.raises(SegmentError, match="enrolled"):
        seg.verify_file(tmp_path / "b.cseg", lookup)


def test_truncated_file_is_detected(tmp_path, keys):
    write_segment(tmp_path / "a.cseg", keys, make_frames())
    data = (tmp_path / "a.cseg").read_bytes()
    for cut in (3, 50, len(data) // 2, len(data) - 1):
        (tmp_path / "b.cseg").write_bytes(data[:cut])
        with pytest.raises(SegmentError):
            seg.verify_file(tmp_path / "b.cseg")


def test_crash_leftover_is_sealed_as_truncated(tmp_path, keys):
    archive, node = keys
    frames = make_frames(60)
    w = seg.SegmentWriter(tmp_path / "a.cseg", params=seg.StreamParams("cam-a", 320, 240, 30), seq=5,
                          prev_digest="ab" * 32, archive_key=archive.public_key, signing_key=node, chunk_bytes=8000)
    for f in frames[:45]:
        w.write_frame(f)
    w.abort()
    part = tmp_path / "a.cseg.part"
    # a torn write: half a chunk at the end
    with open(part, "ab") as f:
        f.write(struct.pack(">I", 5000) + b"x" * 100)
    info = seg.seal_truncated(part, node, "node restarted mid-segment")
    assert not part.exists() and (tmp_path / "a.cseg").exists()
    assert info.complete is False and info.trailer["truncated_reason"] == "node restarted mid-segment"
    assert seg.verify_file(tmp_path / "a.cseg").digest == info.digest
    got = list(seg.iter_frames(tmp_path / "a.cseg", archive, seg.enrolled_key(node.verify_key)))
    assert got == frames[: len(got)] and len(got) >= 30  # every whole chunk survives


def test_torn_header_part_is_removed(tmp_path, keys):
    part = tmp_path / "a.cseg.part"
    part.write_bytes(seg.PREFIX + b"\x00\x00")
    assert seg.seal_truncated(part, keys[1], "x") is None
    assert not part.exists()


def test_non_canonical_header_is_refused(tmp_path, keys):
    write_segment(tmp_path / "a.cseg", keys, make_frames())
    data = (tmp_path / "a.cseg").read_bytes()
    hlen = struct.unpack_from(">I", data, 5)[0]
    header = data[9:9 + hlen].replace(b'{"boot_id"', b'{ "boot_id"')
    forged = data[:5] + struct.pack(">I", len(header)) + header + data[9 + hlen:]
    (tmp_path / "b.cseg").write_bytes(forged)
    with pytest.raises(SegmentError):
        seg.verify_file(tmp_path / "b.cseg")
