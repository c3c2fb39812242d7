"""docs/segment-format.md is true: an independent reader, written from the spec alone, reads
what appliance.formats.segment writes and rejects what the spec says a reader must reject.

The reader (the first part of this file) uses only struct, hashlib, json, base64 and
PyNaCl; it does not import appliance. Its field types come from the spec's own tables.
The tests then write segments with the reference implementation (SegmentWriter,
seal_truncated), read them with this reader, tamper with them, and check that the
spec's tables and constants still match the implementation and that the spec's worked
example is a real segment.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing
import pytest

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "segment-format.md"
SPEC = SPEC_PATH.read_text(encoding="utf-8")


# =========================================================================== the spec, parsed


def spec_section(heading: str) -> str:
    """The text under a markdown heading (exact heading line), up to the next heading of any level."""
    lines = SPEC.splitlines()
    start = lines.index(heading) + 1
    end, fenced = start, False
    while end < len(lines) and (fenced or not lines[end].startswith("#")):
        fenced ^= lines[end].startswith("```")
        end += 1
    return "\n".join(lines[start:end])


def spec_table(heading: str) -> list[dict[str, str]]:
    """The first table under `heading`, one dict per row, backticks stripped from cells."""
    rows = [line for line in spec_section(heading).splitlines() if line.startswith("|")]
    cells = [[c.strip().strip("`") for c in row.strip().strip("|").split("|")] for row in rows]
    names, body = cells[0], cells[2:]  # cells[1] is the |---| line
    assert all(set(c) <= set("-: ") for c in cells[1])
    return [dict(zip(names, row)) for row in body]


def spec_code_blocks(heading: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", spec_section(heading), re.S | re.M)


TYPE_WORDS = {"string": "str", "integer": "int", "boolean": "bool", "object": "dict",
              "string or null": "str|null", "integer or null": "int|null"}


def field_spec(heading: str) -> dict[str, tuple[str, bool]]:
    """{field: (type, reader requires)} from one of the spec's field tables."""
    out = {}
    for row in spec_table(heading):
        assert row["Type"] in TYPE_WORDS, f"unknown type word {row['Type']!r} in {heading}"
        assert row["Reader requires"] in ("yes", "no")
        out[row["Field"]] = (TYPE_WORDS[row["Type"]], row["Reader requires"] == "yes")
    return out


HEADER_SPEC = field_spec("### Header fields")
GAP_SPEC = field_spec("### Gap fields")
TRAILER_SPEC = field_spec("### Trailer fields")


# =========================================================================== the independent reader

MAGIC = b"CSEG"
VERSION = 1
SIG_BYTES = 64
MAX_JSON_BYTES = 65536
CHUNK_OVERHEAD = 17
MAX_CHUNK_PLAINTEXT = 16 * 1024 * 1024
U32 = struct.Struct(">I")
RECORD = struct.Struct(">qBI")
TAG_MESSAGE, TAG_FINAL = 0, 3
HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Rejected(Exception):
    """The reader refuses the segment. `frames_before`: authentic frames read before the failure."""

    def __init__(self, message: str, frames_before: list | None = None):
        super().__init__(message)
        self.frames_before = frames_before or []


def canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def parse_canonical_object(raw: bytes, what: str) -> dict:
    def no_duplicates(pairs):
        obj = {}
        for k, v in pairs:
            if k in obj:
                raise Rejected(f"{what}: duplicate key {k!r}")
            obj[k] = v
        return obj

    def no_float(text):
        raise Rejected(f"{what}: float {text}")

    try:
        value = json.loads(raw.decode("ascii"), object_pairs_hook=no_duplicates,
                           parse_float=no_float, parse_constant=no_float)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise Rejected(f"{what}: not an object")
    if canonical(value) != raw:
        raise Rejected(f"{what}: not canonical JSON")
    return value


def type_ok(value, word: str) -> bool:
    if value is None:
        return word.endswith("|null")
    word = word.removesuffix("|null")
    if word == "bool":
        return isinstance(value, bool)
    if word == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if word == "dict":
        return isinstance(value, dict)
    return isinstance(value, str)


def check_fields(obj: dict, spec: dict, what: str) -> None:
    for name, (word, required) in spec.items():
        if name in obj:
            if not type_ok(obj[name], word):
                raise Rejected(f"{what}: {name} is not {word}")
        elif required:
            raise Rejected(f"{what}: {name} missing")


def b64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise Rejected(f"{what} is not base64") from None
    if len(raw) != size:
        raise Rejected(f"{what} is {len(raw)} bytes, not {size}")
    return raw


class Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise Rejected("file ends early")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return U32.unpack(self.take(4))[0]


@dataclass
class Segment:
    header: dict
    trailer: dict
    chain_digest: str
    chunks: list[bytes] = field(repr=False)


@dataclass
class FrameRecord:
    pts_us: int
    keyframe: bool
    data: bytes


def verify(data: bytes, enrolled: dict[str, bytes]) -> Segment:
    """Stage 1 of the spec: structure, signatures with the enrolled key, body digest, counts."""
    r = Cursor(data)
    if r.take(4) != MAGIC:
        raise Rejected("bad magic")
    if r.take(1)[0] != VERSION:
        raise Rejected("unsupported version")
    lh = r.u32()
    if not 2 <= lh <= MAX_JSON_BYTES:
        raise Rejected("header length out of range")
    header_json, header_sig = r.take(lh), r.take(SIG_BYTES)
    header = parse_canonical_object(header_json, "header")
    check_fields(header, HEADER_SPEC, "header")
    if "gap" in header:
        check_fields(header["gap"], GAP_SPEC, "header gap")
    if header["type"] != "cseg-header" or header["v"] != VERSION:
        raise Rejected("header type or version")
    key = enrolled.get(header["camera"])
    if key is None:
        raise Rejected("camera not enrolled")
    if header["node_key"] != key.hex():
        raise Rejected("node_key is not the enrolled key")
    verify_key = nacl.signing.VerifyKey(key)
    try:
        verify_key.verify(header_json, header_sig)
    except nacl.exceptions.BadSignatureError:
        raise Rejected("header signature") from None
    chunks = []
    while True:
        n = r.u32()
        if n == 0:
            break
        if not CHUNK_OVERHEAD <= n <= MAX_CHUNK_PLAINTEXT + CHUNK_OVERHEAD:
            raise Rejected("chunk length out of range")
        chunks.append(r.take(n))
    body_bytes = r.pos
    lt = r.u32()
    if not 2 <= lt <= MAX_JSON_BYTES:
        raise Rejected("trailer length out of range")
    trailer_json, trailer_sig = r.take(lt), r.take(SIG_BYTES)
    if r.pos != len(data):
        raise Rejected("trailing bytes")
    trailer = parse_canonical_object(trailer_json, "trailer")
    check_fields(trailer, {k: v for k, v in TRAILER_SPEC.items() if v[1]}, "trailer")
    try:
        verify_key.verify(trailer_json, trailer_sig)
    except nacl.exceptions.BadSignatureError:
        raise Rejected("trailer signature") from None
    if trailer["type"] != "cseg-trailer" or trailer["v"] != VERSION:
        raise Rejected("trailer type or version")
    if trailer["body_sha256"] != hashlib.sha256(data[:body_bytes]).hexdigest():
        raise Rejected("body digest")
    if trailer["body_bytes"] != body_bytes or trailer["chunks"] != len(chunks):
        raise Rejected("counts")
    if (trailer["camera"], trailer["seq"]) != (header["camera"], header["seq"]):
        raise Rejected("trailer names another segment")
    return Segment(header, trailer, hashlib.sha256(data).hexdigest(), chunks)


def check_chain(segments: list[Segment]) -> None:
    """Stage 2: consecutive segments of one camera, in the order given."""
    for i, s in enumerate(segments):
        if s.header["seq"] > 0 and s.header["prev"] is None:
            raise Rejected("prev is null after seq 0")
        if i:
            before = segments[i - 1]
            if s.header["camera"] != before.header["camera"] or s.header["seq"] != before.header["seq"] + 1:
                raise Rejected("not consecutive")
            if s.header["prev"] != before.chain_digest:
                raise Rejected("chain broken")


def decrypt(segment: Segment, archive_secret: bytes) -> list[FrameRecord]:
    """Stage 3: open the segment key, pull every chunk, split frame records."""
    h, t = segment.header, segment.trailer
    if h["codec"] != "h264" or h["payload"] != "annexb-frames":
        raise Rejected("unknown codec or payload")
    try:
        key = nacl.public.SealedBox(nacl.public.PrivateKey(archive_secret)).decrypt(
            b64(h["sealed_key"], 80, "sealed_key"))
    except nacl.exceptions.CryptoError:
        raise Rejected("sealed_key does not open with this archive key") from None
    if len(key) != 32:
        raise Rejected("segment key is not 32 bytes")
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, b64(h["stream_header"], 24, "stream_header"), key)
    frames: list[FrameRecord] = []
    final = False
    for chunk in segment.chunks:
        if final:
            raise Rejected("data after TAG_FINAL", frames)
        try:
            plaintext, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, chunk, None)
        except nacl.exceptions.CryptoError:
            raise Rejected("chunk fails authentication", frames) from None
        if tag not in (TAG_MESSAGE, TAG_FINAL):
            raise Rejected(f"chunk tag {tag}", frames)
        final = tag == TAG_FINAL
        pos, got = 0, []
        while pos < len(plaintext):
            if pos + RECORD.size > len(plaintext):
                raise Rejected("chunk ends inside a record header", frames)
            pts, flags, n = RECORD.unpack_from(plaintext, pos)
            pos += RECORD.size
            if pos + n > len(plaintext):
                raise Rejected("chunk ends inside an access unit", frames)
            got.append(FrameRecord(pts, bool(flags & 1), plaintext[pos:pos + n]))
            pos += n
        frames += got
    if t["complete"]:
        if not final:
            raise Rejected("complete segment without TAG_FINAL", frames)
        counts = {"frames": len(frames), "keyframes": sum(f.keyframe for f in frames),
                  "payload_bytes": sum(len(f.data) for f in frames),
                  "first_pts_us": frames[0].pts_us if frames else None,
                  "last_pts_us": frames[-1].pts_us if frames else None}
        for name, value in counts.items():
            if t.get(name) != value or not type_ok(t.get(name), TRAILER_SPEC[name][0]):
                raise Rejected(f"trailer {name} does not match the frames", frames)
    return frames


def archive_path(header: dict) -> str:
    """The spec's archive path rule."""
    t = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=header["start_us"] // 1_000_000)
    return (f"archive/{header['camera']}/{t:%Y}/{t:%m}/{t:%d}/"
            f"{header['seq']:010d}-{t:%Y%m%dT%H%M%SZ}.cseg")


# =========================================================================== tests

from appliance.formats import segment as seg  # noqa: E402  (the implementation under test: writing only)
from appliance.custody.archive import Archive  # noqa: E402
from appliance.errors import SegmentError  # noqa: E402
from hw.backend import Frame  # noqa: E402

CAMERA = "cam-a"


@dataclass
class Keys:
    archive: nacl.public.PrivateKey
    node: nacl.signing.SigningKey

    @property
    def enrolled(self) -> dict[str, bytes]:
        return {CAMERA: self.node.verify_key.encode()}

    @property
    def archive_secret(self) -> bytes:
        return self.archive.encode()


@pytest.fixture
def keys() -> Keys:
    return Keys(nacl.public.PrivateKey.generate(), nacl.signing.SigningKey.generate())


def enrolled_lookup(key: nacl.signing.VerifyKey, enrolled_camera: str = CAMERA):
    """What the central does (appliance.central.ingest): the enrolled key, and node_key must name it."""
    def lookup(camera, header):
        if camera != enrolled_camera or header["node_key"] != key.encode().hex():
            raise SegmentError("not enrolled", kind="signature")
        return key
    return lookup


def ref_verify(data: bytes, keys: Keys) -> seg.SegmentInfo:
    v = seg.SegmentVerifier(enrolled_lookup(keys.node.verify_key))
    v.feed(data)
    return v.finish()


def make_frames(n=30, size=500, gop=10, pts0=5_000_000) -> list[Frame]:
    out = []
    for i in range(n):
        key = i % gop == 0
        au = (b"\x00\x00\x00\x01\x67sps\x00\x00\x00\x01\x68pps\x00\x00\x01\x65" if key
              else b"\x00\x00\x00\x01\x41") + os.urandom(size + i)
        out.append(Frame(au, key, pts0 + i * 33_333))
    return out


def write(path: Path, keys: Keys, frames, seq=0, prev=None, chunk_bytes=2000, **kw) -> seg.SegmentInfo:
    w = seg.SegmentWriter(path, params=seg.StreamParams(CAMERA, 320, 240, 30, boot_id="b-1", clock_synced=True),
                          seq=seq, prev_digest=prev, archive_key=keys.archive.public_key,
                          signing_key=keys.node, chunk_bytes=chunk_bytes, **kw)
    for f in frames:
        w.write_frame(f)
    return w.close()


def same_frames(got: list[FrameRecord], written: list[Frame]) -> bool:
    return [(f.pts_us, f.keyframe, f.data) for f in got] == [(f.pts_us, f.keyframe, f.data) for f in written]


def layout(data: bytes) -> dict:
    """Offsets of a segment's parts: [(offset of u32 n, n)] per chunk, end marker, trailer."""
    pos = 9 + U32.unpack_from(data, 5)[0] + SIG_BYTES
    chunks = []
    while (n := U32.unpack_from(data, pos)[0]):
        chunks.append((pos, n))
        pos += 4 + n
    return {"chunks": chunks, "end": pos, "trailer": pos + 4}


def split(data: bytes) -> tuple[dict, list[bytes], dict]:
    lay = layout(data)
    hlen = U32.unpack_from(data, 5)[0]
    tlen = U32.unpack_from(data, lay["trailer"])[0]
    header = json.loads(data[9:9 + hlen])
    trailer = json.loads(data[lay["trailer"] + 4:lay["trailer"] + 4 + tlen])
    return header, [data[p + 4:p + 4 + n] for p, n in lay["chunks"]], trailer


def assemble(header: dict, chunks: list[bytes], trailer: dict, node: nacl.signing.SigningKey,
             header_json: bytes | None = None) -> bytes:
    """Build and sign a segment file (a forger holding the node key), fixing the trailer's counts."""
    hj = header_json if header_json is not None else canonical(header)
    body = MAGIC + bytes([VERSION]) + U32.pack(len(hj)) + hj + node.sign(hj).signature
    for c in chunks:
        body += U32.pack(len(c)) + c
    body += U32.pack(0)
    trailer = dict(trailer, chunks=len(chunks), body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest())
    tj = canonical(trailer)
    return body + U32.pack(len(tj)) + tj + node.sign(tj).signature


def forge_stream(keys: Keys, header: dict, plaintexts_and_tags) -> tuple[dict, list[bytes]]:
    """A fresh segment key and stream under `header`, with chosen chunk tags."""
    key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sh = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    header = dict(header, sealed_key=base64.b64encode(nacl.public.SealedBox(keys.archive.public_key).encrypt(key)
                                                      ).decode(),
                  stream_header=base64.b64encode(sh).decode())
    chunks = [sodium.crypto_secretstream_xchacha20poly1305_push(state, p, None, t) for p, t in plaintexts_and_tags]
    return header, chunks


def records(frames) -> bytes:
    return b"".join(RECORD.pack(f.pts_us, int(f.keyframe), len(f.data)) + f.data for f in frames)


# --------------------------------------------------------------------------- the spec matches the code


def _type_word(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "str", int: "int", bool: "bool", dict: "dict", type(None): "null"}
    return "|".join(names[k] for k in kinds)


def test_header_table_matches_HEADER_FIELDS_and_the_writer(tmp_path, keys):
    assert HEADER_SPEC == ({name: (_type_word(kind), True) for name, kind in seg.HEADER_FIELDS.items()}
                           | {name: (_type_word(kind), False) for name, kind in seg.HEADER_OPTIONAL_FIELDS.items()})
    assert GAP_SPEC == {name: (_type_word(kind), True) for name, kind in seg.GAP_FIELDS.items()}
    info = write(tmp_path / "a.cseg", keys, make_frames(3))
    assert set(info.header) == {name for name, (_w, required) in HEADER_SPEC.items() if required}
    with_gap = write(tmp_path / "b.cseg", keys, make_frames(3), gap={"from_us": 1, "why": "node restarted"})
    assert set(with_gap.header) == set(HEADER_SPEC)


def test_a_gap_in_the_header_is_optional_and_checked_by_both_readers(tmp_path, keys):
    before = write(tmp_path / "a.cseg", keys, make_frames(3, pts0=1_000_000))
    assert "gap" not in before.header                        # as every segment written before gaps existed
    after = write(tmp_path / "b.cseg", keys, make_frames(3), seq=1, prev=before.digest,
                  gap={"from_us": before.trailer["end_us"], "why": "node restarted"})
    segs = [verify((tmp_path / name).read_bytes(), keys.enrolled) for name in ("a.cseg", "b.cseg")]
    check_chain(segs)
    assert segs[1].header["gap"] == {"from_us": before.trailer["end_us"], "why": "node restarted"}
    assert ref_verify((tmp_path / "b.cseg").read_bytes(), keys).header["gap"] == after.header["gap"]
    header, chunks, trailer = split((tmp_path / "b.cseg").read_bytes())
    for bad in (5, "node restarted", {"why": "x"}, {"from_us": "1", "why": "x"}, {"from_us": 1, "why": None},
                {"from_us": True, "why": "x"}):
        forged = assemble(dict(header, gap=bad), chunks, trailer, keys.node)
        with pytest.raises(Rejected, match="gap"):
            verify(forged, keys.enrolled)
        with pytest.raises(SegmentError, match="gap"):
            ref_verify(forged, keys)


def test_trailer_table_matches_TRAILER_FIELDS_and_the_writers(tmp_path, keys):
    required = {k: w for k, (w, req) in TRAILER_SPEC.items() if req}
    assert required == {k: _type_word(v) for k, v in seg.TRAILER_FIELDS.items()}
    complete = write(tmp_path / "a.cseg", keys, make_frames(3))
    w = seg.SegmentWriter(tmp_path / "b.cseg", params=seg.StreamParams(CAMERA, 320, 240, 30), seq=0,
                          prev_digest=None, archive_key=keys.archive.public_key, signing_key=keys.node)
    w.abort()
    truncated = seg.seal_truncated(tmp_path / "b.cseg.part", keys.node, "test")
    assert set(complete.trailer) | set(truncated.trailer) == set(TRAILER_SPEC)
    assert set(TRAILER_SPEC) - set(complete.trailer) == {"truncated_reason"}
    assert set(truncated.trailer) == set(TRAILER_SPEC)
    for trailer in (complete.trailer, truncated.trailer):
        for name, value in trailer.items():
            assert type_ok(value, TRAILER_SPEC[name][0]), name


def test_limits_table_matches_the_code_and_this_reader():
    limits = {row["Name"]: row["Value"] for row in spec_table("## Limits")}
    code = {"MAGIC": seg.MAGIC.decode(), "VERSION": str(seg.VERSION), "SIG_BYTES": str(seg.SIG_BYTES),
            "MAX_JSON_BYTES": str(seg.MAX_JSON_BYTES), "MAX_CHUNK_PLAINTEXT": str(seg.MAX_CHUNK_PLAINTEXT),
            "CHUNK_OVERHEAD": str(seg.CHUNK_OVERHEAD), "FRAME_RECORD_BYTES": str(seg.FRAME_RECORD.size)}
    mine = {"MAGIC": MAGIC.decode(), "VERSION": str(VERSION), "SIG_BYTES": str(SIG_BYTES),
            "MAX_JSON_BYTES": str(MAX_JSON_BYTES), "MAX_CHUNK_PLAINTEXT": str(MAX_CHUNK_PLAINTEXT),
            "CHUNK_OVERHEAD": str(CHUNK_OVERHEAD), "FRAME_RECORD_BYTES": str(RECORD.size)}
    assert limits == code == mine
    assert (TAG_MESSAGE, TAG_FINAL) == (seg.TAG_MESSAGE, seg.TAG_FINAL)
    assert sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES == 24


# --------------------------------------------------------------------------- reading what the writer wrote


def test_reads_a_complete_segment(tmp_path, keys):
    frames = make_frames(40)
    frames.insert(5, Frame(b"\x00\x00\x01\x41" + os.urandom(9000), False, 6_000_000))  # bigger than a chunk
    info = write(tmp_path / "a.cseg", keys, frames, seq=3, prev="ab" * 32)
    data = (tmp_path / "a.cseg").read_bytes()
    s = verify(data, keys.enrolled)
    assert s.header == info.header and s.trailer == info.trailer
    assert s.chain_digest == info.digest == hashlib.sha256(data).hexdigest()
    assert len(s.chunks) == info.trailer["chunks"] > 5
    got = decrypt(s, keys.archive_secret)
    assert same_frames(got, frames)
    assert s.trailer["complete"] is True and s.trailer["frames"] == len(frames)
    assert s.header["start_us"] <= s.trailer["end_us"]


def test_reads_a_segment_without_frames(tmp_path, keys):
    info = write(tmp_path / "a.cseg", keys, [])
    s = verify((tmp_path / "a.cseg").read_bytes(), keys.enrolled)
    assert decrypt(s, keys.archive_secret) == []
    assert len(s.chunks) == 1 and len(s.chunks[0]) == CHUNK_OVERHEAD  # the empty TAG_FINAL chunk
    assert info.trailer["first_pts_us"] is None and info.trailer["frames"] == 0


def _crashed_writer(tmp_path, keys, frames, seq=0, prev=None) -> Path:
    w = seg.SegmentWriter(tmp_path / "t.cseg", params=seg.StreamParams(CAMERA, 320, 240, 30), seq=seq,
                          prev_digest=prev, archive_key=keys.archive.public_key, signing_key=keys.node,
                          chunk_bytes=2000)
    for f in frames:
        w.write_frame(f)
    w.abort()
    return tmp_path / "t.cseg.part"


def test_reads_a_sealed_truncated_segment(tmp_path, keys):
    frames = make_frames(42)  # the last two are still in the writer's buffer at the crash
    part = _crashed_writer(tmp_path, keys, frames)
    with open(part, "ab") as f:
        f.write(U32.pack(5000) + os.urandom(300))  # a torn chunk
    info = seg.seal_truncated(part, keys.node, "node restarted mid-segment")
    data = (tmp_path / "t.cseg").read_bytes()
    s = verify(data, keys.enrolled)
    assert s.header == info.header and s.trailer == info.trailer and s.chain_digest == info.digest
    t = s.trailer
    assert t["complete"] is False and t["truncated_reason"] == "node restarted mid-segment"
    assert all(t[k] is None for k in ("frames", "keyframes", "payload_bytes", "first_pts_us", "last_pts_us"))
    got = decrypt(s, keys.archive_secret)  # no TAG_FINAL required
    assert 30 <= len(got) < len(frames) and same_frames(got, frames[:len(got)])


def test_reads_a_truncated_segment_without_chunks(tmp_path, keys):
    part = _crashed_writer(tmp_path, keys, [])
    info = seg.seal_truncated(part, keys.node, "crash")
    s = verify((tmp_path / "t.cseg").read_bytes(), keys.enrolled)
    assert s.chunks == [] and s.trailer == info.trailer and decrypt(s, keys.archive_secret) == []


def test_reads_a_segment_sealed_after_its_final_chunk(tmp_path, keys):
    """A crash between the end marker and the trailer: truncated, yet its last chunk is TAG_FINAL."""
    frames = make_frames(20)
    write(tmp_path / "a.cseg", keys, frames)
    data = (tmp_path / "a.cseg").read_bytes()
    (tmp_path / "t.cseg.part").write_bytes(data[:layout(data)["trailer"] + 2])
    info = seg.seal_truncated(tmp_path / "t.cseg.part", keys.node, "crash")
    s = verify((tmp_path / "t.cseg").read_bytes(), keys.enrolled)
    assert s.trailer["complete"] is False and s.trailer["chunks"] == info.trailer["chunks"] == len(s.chunks)
    assert same_frames(decrypt(s, keys.archive_secret), frames)


def test_truncated_segment_whose_kept_last_chunk_is_garbage(tmp_path, keys):
    """The sealer cannot authenticate what it keeps: a reader gets the frames before the bad chunk."""
    frames = make_frames(20)
    part = _crashed_writer(tmp_path, keys, frames)
    with open(part, "ab") as f:
        f.write(U32.pack(100) + os.urandom(100))  # whole length, whole body, not a real chunk
    seg.seal_truncated(part, keys.node, "crash")
    s = verify((tmp_path / "t.cseg").read_bytes(), keys.enrolled)  # signed: stage 1 passes
    with pytest.raises(Rejected, match="authentication") as e:
        decrypt(s, keys.archive_secret)
    assert e.value.frames_before and same_frames(e.value.frames_before, frames[:len(e.value.frames_before)])
    got = []
    with pytest.raises(SegmentError, match="authentication"):  # the reference behaves the same way
        for f in seg.iter_frames(tmp_path / "t.cseg", keys.archive, seg.header_key):
            got.append(f)
    assert got == frames[:len(got)] and len(got) == len(e.value.frames_before)


def test_chain_of_segments_including_a_truncated_one(tmp_path, keys):
    a = write(tmp_path / "0.cseg", keys, make_frames(10), seq=0)
    part = _crashed_writer(tmp_path, keys, make_frames(15), seq=1, prev=a.digest)
    b = seg.seal_truncated(part, keys.node, "crash")
    c = write(tmp_path / "2.cseg", keys, make_frames(10), seq=2, prev=b.digest)
    segs = [verify(p.read_bytes(), keys.enrolled) for p in (tmp_path / "0.cseg", tmp_path / "t.cseg",
                                                             tmp_path / "2.cseg")]
    assert segs[0].header["prev"] is None and segs[2].chain_digest == c.digest
    check_chain(segs)
    for broken in ([segs[0], segs[2]], [segs[1], segs[0]], [segs[0], segs[2], segs[1]]):
        with pytest.raises(Rejected):
            check_chain(broken)


# --------------------------------------------------------------------------- tampering


@pytest.fixture
def small(tmp_path, keys) -> bytes:
    write(tmp_path / "s.cseg", keys, make_frames(6, size=20, gop=3), chunk_bytes=60)
    return (tmp_path / "s.cseg").read_bytes()


def test_every_flipped_bit_is_rejected_by_both_readers(small, keys):
    assert verify(small, keys.enrolled) and ref_verify(small, keys)
    for at in range(len(small)):
        for mask in (0x01, 0x80):
            bad = bytearray(small)
            bad[at] ^= mask
            bad = bytes(bad)
            with pytest.raises(Rejected):
                verify(bad, keys.enrolled)
            with pytest.raises(SegmentError):
                ref_verify(bad, keys)


def test_every_cut_and_any_trailing_bytes_are_rejected(small, keys):
    for cut in range(len(small)):
        with pytest.raises(Rejected):
            verify(small[:cut], keys.enrolled)
        with pytest.raises(SegmentError):
            ref_verify(small[:cut], keys)
    for extra in (b"\x00", b"\x00\x00\x00\x00", U32.pack(17) + bytes(17), small):
        with pytest.raises(Rejected, match="trailing"):
            verify(small + extra, keys.enrolled)
        with pytest.raises(SegmentError):
            ref_verify(small + extra, keys)


def test_dropped_final_chunk(tmp_path, keys):
    frames = make_frames(20)
    write(tmp_path / "a.cseg", keys, frames)
    data = (tmp_path / "a.cseg").read_bytes()
    lay = layout(data)
    last = lay["chunks"][-1][0]
    unsigned = data[:last] + data[lay["end"]:]  # cut out, trailer untouched
    with pytest.raises(Rejected):
        verify(unsigned, keys.enrolled)
    with pytest.raises(SegmentError):
        ref_verify(unsigned, keys)
    # A holder of the node key re-signs it: only the missing TAG_FINAL betrays it.
    header, chunks, trailer = split(data)
    resigned = assemble(header, chunks[:-1], trailer, keys.node)
    s = verify(resigned, keys.enrolled)
    with pytest.raises(Rejected, match="TAG_FINAL"):
        decrypt(s, keys.archive_secret)
    (tmp_path / "b.cseg").write_bytes(resigned)
    with pytest.raises(SegmentError, match="final chunk is missing"):
        list(seg.iter_frames(tmp_path / "b.cseg", keys.archive, seg.header_key))


def test_reordered_chunks_resigned_fail_authentication(tmp_path, keys):
    write(tmp_path / "a.cseg", keys, make_frames(20))
    header, chunks, trailer = split((tmp_path / "a.cseg").read_bytes())
    forged = assemble(header, [chunks[1], chunks[0]] + chunks[2:], trailer, keys.node)
    with pytest.raises(Rejected, match="authentication"):
        decrypt(verify(forged, keys.enrolled), keys.archive_secret)


def test_data_after_the_final_chunk_is_rejected(tmp_path, keys):
    frames = make_frames(6)
    info = write(tmp_path / "a.cseg", keys, frames)
    header, chunks = forge_stream(keys, info.header, [(records(frames[:3]), TAG_MESSAGE),
                                                      (records(frames[3:5]), TAG_FINAL),
                                                      (records(frames[5:]), TAG_MESSAGE)])
    forged = assemble(header, chunks, info.trailer, keys.node)
    with pytest.raises(Rejected, match="after TAG_FINAL"):
        decrypt(verify(forged, keys.enrolled), keys.archive_secret)
    (tmp_path / "b.cseg").write_bytes(forged)
    with pytest.raises(SegmentError, match="after the final chunk"):
        list(seg.iter_frames(tmp_path / "b.cseg", keys.archive, seg.header_key))


def test_push_and_rekey_tags_are_rejected(tmp_path, keys):
    frames = make_frames(4)
    info = write(tmp_path / "a.cseg", keys, frames)
    for tag in (sodium.crypto_secretstream_xchacha20poly1305_TAG_PUSH,
                sodium.crypto_secretstream_xchacha20poly1305_TAG_REKEY):
        header, chunks = forge_stream(keys, info.header, [(records(frames[:2]), tag), (records(frames[2:]), TAG_FINAL)])
        with pytest.raises(Rejected, match="tag"):
            decrypt(verify(assemble(header, chunks, info.trailer, keys.node), keys.enrolled), keys.archive_secret)


def test_trailer_counts_must_match_the_frames(tmp_path, keys):
    frames = make_frames(6)
    info = write(tmp_path / "a.cseg", keys, frames)
    header, chunks, trailer = split((tmp_path / "a.cseg").read_bytes())
    for name, value in (("frames", 5), ("keyframes", 3), ("payload_bytes", 1), ("last_pts_us", None)):
        forged = assemble(header, chunks, dict(trailer, **{name: value}), keys.node)
        with pytest.raises(Rejected, match=name):
            decrypt(verify(forged, keys.enrolled), keys.archive_secret)
    assert same_frames(decrypt(verify(assemble(header, chunks, info.trailer, keys.node), keys.enrolled),
                               keys.archive_secret), frames)


def test_only_the_enrolled_key_is_trusted(tmp_path, keys):
    thief = nacl.signing.SigningKey.generate()
    write(tmp_path / "a.cseg", Keys(keys.archive, thief), make_frames(4))  # names its own key: self-consistent
    data = (tmp_path / "a.cseg").read_bytes()
    with pytest.raises(Rejected, match="enrolled"):
        verify(data, keys.enrolled)
    with pytest.raises(SegmentError):
        ref_verify(data, keys)
    # Naming the enrolled key but signing with another one fails on the signature.
    header, chunks, trailer = split(data)
    header["node_key"] = keys.node.verify_key.encode().hex()
    with pytest.raises(Rejected, match="signature"):
        verify(assemble(header, chunks, trailer, thief), keys.enrolled)
    with pytest.raises(Rejected, match="enrolled"):
        verify(data, {"someone-else": keys.node.verify_key.encode()})


def test_non_canonical_json_is_rejected_even_when_signed(tmp_path, keys):
    info = write(tmp_path / "a.cseg", keys, make_frames(4))
    header, chunks, trailer = split((tmp_path / "a.cseg").read_bytes())
    good = canonical(header)
    for bad in (good.replace(b'{"boot_id"', b'{ "boot_id"'), good + b"\n",
                good.replace(b'"width":320', b'"width":320.0'),
                good.replace(b'"width":320', b'"width":320,"width":320'),
                json.dumps(dict(reversed(header.items())), separators=(",", ":")).encode()):
        forged = assemble(header, chunks, trailer, keys.node, header_json=bad)
        with pytest.raises(Rejected):
            verify(forged, keys.enrolled)
        with pytest.raises(SegmentError):
            ref_verify(forged, keys)
    for name, value in (("seq", True), ("prev", 7), ("clock_synced", 1)):
        forged = assemble(dict(header, **{name: value}), chunks, trailer, keys.node)
        with pytest.raises(Rejected, match=name):
            verify(forged, keys.enrolled)
    assert verify(assemble(header, chunks, info.trailer, keys.node), keys.enrolled)


# --------------------------------------------------------------------------- payload, paths, example


def test_archive_path_rule_matches_the_archive(tmp_path):
    archive = Archive(tmp_path / "archive")
    for start_us in (0, 1767268800123456, 1767225599999999, 1767225600000000, 951782399999999, 4102444799999999):
        header = {"camera": "lobby-1", "seq": 7, "start_us": start_us}
        assert archive.path_for(header).relative_to(tmp_path).as_posix() == archive_path(header)
    assert archive_path({"camera": "lobby-1", "seq": 7, "start_us": 1767268800123456}) in spec_section(
        "## Archive path")


@pytest.mark.skipif(not shutil.which("ffmpeg") or not shutil.which("ffprobe"), reason="needs ffmpeg")
def test_payload_of_consecutive_segments_is_the_recording_and_plays(tmp_path, keys):
    stream = subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
         "-frames:v", "48", "-c:v", "libx264", "-g", "12", "-bf", "0", "-x264-params", "repeat-headers=1",
         "-f", "h264", "-"], capture_output=True, check=True, timeout=60).stdout
    from hw.annexb import AnnexBParser
    parser = AnnexBParser()
    units = parser.feed(stream)
    units.append(parser.flush())
    assert len(units) == 48
    frames = [Frame(u.data, u.keyframe, 9_000_000 + i * 40_000) for i, u in enumerate(units)]
    a = write(tmp_path / "0.cseg", keys, frames[:24], seq=0)
    write(tmp_path / "1.cseg", keys, frames[24:], seq=1, prev=a.digest)
    segs = [verify((tmp_path / f"{i}.cseg").read_bytes(), keys.enrolled) for i in (0, 1)]
    check_chain(segs)
    payload = []
    for s in segs:
        got = decrypt(s, keys.archive_secret)
        assert got[0].keyframe and got[0].data.startswith(b"\x00\x00\x00\x01\x67")  # SPS first
        payload += [f.data for f in got]
    assert b"".join(payload) == stream  # joined in order: the continuous recording
    # The spec's command, as written: the reader's plaintext in through a pipe, the MP4 out to standard output.
    section = " ".join(spec_section("## From payload to video").split("\\\n"))   # continued lines joined
    command = re.search(r"^READER SEGMENTS\.\.\. \| (ffmpeg -fflags \+genpts .*) > \S+$", section, re.M).group(1)
    fps = f"{segs[0].header['fps_num']}/{segs[0].header['fps_den']}"
    argv = ["ffmpeg", "-hide_banner", "-loglevel", "error"] + [fps if w == "FPS" else w for w in command.split()[1:]]
    with open(tmp_path / "out.mp4", "wb") as out:
        subprocess.run(argv, input=b"".join(payload), stdout=out, check=True, timeout=60)
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=nb_read_packets",
                            "-of", "csv=p=0", str(tmp_path / "out.mp4")], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    assert int(probe.strip()) == 48


def _example_values() -> dict[str, str]:
    return dict(re.findall(r"^(\w+)\s+([0-9a-f]{64})$", spec_code_blocks("## Example")[0], re.M))


def _example_file() -> bytes:
    data, expect = bytearray(), 0
    for line in spec_code_blocks("## Example")[1].splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([0-9a-f]{8})  ([0-9a-f ]{47})  \|", line)
        assert m, line
        assert int(m.group(1), 16) == len(data) == expect
        chunk = bytes.fromhex(m.group(2))
        data += chunk
        expect += len(chunk)
    return bytes(data)


def _example_plaintexts() -> list[bytes]:
    out = []
    for line in spec_code_blocks("## Example")[2].splitlines():
        if line.startswith("# chunk"):
            out.append(b"")
            continue
        hexes = []
        for word in line.split():
            if not re.fullmatch(r"[0-9a-f]{2}", word):
                break
            hexes.append(word)
        out[-1] += bytes.fromhex("".join(hexes))
    return out


def test_the_example_in_the_spec_is_a_real_segment():
    v = _example_values()
    node = nacl.signing.SigningKey(bytes.fromhex(v["node_seed"]))
    archive = nacl.public.PrivateKey(bytes.fromhex(v["archive_secret"]))
    assert node.verify_key.encode().hex() == v["node_key"]
    assert archive.public_key.encode().hex() == v["archive_public"]
    data = _example_file()
    assert f"{len(data)} bytes" in spec_section("## Example")
    s = verify(data, {"lobby-1": node.verify_key.encode()})
    assert s.chain_digest == v["chain_digest"] and s.header["prev"] == v["prev"]
    assert s.header["node_key"] == v["node_key"]
    assert nacl.public.SealedBox(archive).decrypt(base64.b64decode(s.header["sealed_key"])).hex() == v["segment_key"]
    frames = decrypt(s, archive.encode())
    assert [(f.pts_us, f.keyframe, len(f.data)) for f in frames] == [(81_000_000, True, 58), (81_040_000, False, 11),
                                                                     (81_080_000, False, 15)]
    assert sum(len(f.data) for f in frames) == s.trailer["payload_bytes"] == 84
    # the annotated plaintexts are what the chunks decrypt to
    key = bytes.fromhex(v["segment_key"])
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, base64.b64decode(s.header["stream_header"]), key)
    pulled = [sodium.crypto_secretstream_xchacha20poly1305_pull(state, c, None) for c in s.chunks]
    assert [p for p, _ in pulled] == _example_plaintexts()
    assert [t for _, t in pulled] == [TAG_MESSAGE, TAG_MESSAGE, TAG_MESSAGE, TAG_FINAL]
    assert f"`{archive_path(s.header)}`" in spec_section("## Example")
    # the reference implementation agrees
    ref = seg.SegmentVerifier(enrolled_lookup(node.verify_key, "lobby-1"))
    ref.feed(data)
    assert ref.finish().digest == v["chain_digest"]
