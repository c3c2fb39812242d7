"""Segment envelope v1: one encrypted, signed, chained piece of a camera's recording.

The normative spec is docs/segment-format.md; this module is its reference
implementation. In short:

    prefix   "CSEG" 0x01
    header   u32 length | canonical JSON | Ed25519 signature (64) over the JSON
    chunks   u32 length | secretstream ciphertext        (repeated, length >= 17)
    end      u32 0
    trailer  u32 length | canonical JSON | Ed25519 signature (64) over the JSON

The trailer carries the SHA-256 of every byte before it (the "body"), so its
signature covers the whole file. The chain digest of a segment is the SHA-256 of
the whole file; the next segment's header names it in `prev`.

Verification needs only the camera's public key (the central verifies while
sealed). Decryption needs the archive's secret key.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import io
import os
import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

from hw.backend import Frame

from appliance.formats.canonical import CanonicalError, canonical_json, parse_canonical
from appliance.errors import SegmentError
from appliance.fsutil import fsync_dir

MAGIC = b"CSEG"
VERSION = 1
PREFIX = MAGIC + bytes([VERSION])
SIG_BYTES = 64
MAX_JSON_BYTES = 64 * 1024
MAX_CHUNK_PLAINTEXT = 16 * 1024 * 1024
CHUNK_OVERHEAD = sodium.crypto_secretstream_xchacha20poly1305_ABYTES  # 17
MAX_CHUNK_CIPHERTEXT = MAX_CHUNK_PLAINTEXT + CHUNK_OVERHEAD
FRAME_RECORD = struct.Struct(">qBI")  # pts_us, flags, length; then the access unit
FLAG_KEYFRAME = 0x01
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
U32 = struct.Struct(">I")
HEADER_TYPE = "cseg-header"
TRAILER_TYPE = "cseg-trailer"
PART_SUFFIX = ".part"
IN_MEMORY_BYTES = 64 * 1024 * 1024   # a segment this size or smaller is read once, verified and decrypted in memory


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise SegmentError(f"header field {what} is not base64") from None


def wall_us() -> int:
    return time.time_ns() // 1000


@dataclass
class SegmentInfo:
    """What a verified (or just written) segment is, without its content."""

    header: dict
    trailer: dict
    digest: str            # SHA-256 of the whole file, hex: the chain link
    size: int

    @property
    def camera(self) -> str:
        return self.header["camera"]

    @property
    def seq(self) -> int:
        return self.header["seq"]

    @property
    def complete(self) -> bool:
        return bool(self.trailer.get("complete"))

    def public_view(self) -> dict:
        return {"header": self.header, "trailer": self.trailer, "digest": self.digest, "size": self.size}


# --------------------------------------------------------------------------- writing


@dataclass
class StreamParams:
    """What the node knows about its stream when it opens a segment."""

    camera: str
    width: int
    height: int
    fps_num: int
    fps_den: int = 1
    boot_id: str = ""
    clock_synced: bool = False
    codec: str = "h264"


class SegmentWriter:
    """Encrypts and signs frames into `<path>.part` as they arrive; `close()` renames to `path`.

    Memory is bounded by `chunk_bytes` (plus one access unit). Nothing in clear
    touches the disk: frames are buffered in RAM and pushed through secretstream.
    """

    def __init__(
        self,
        path: Path,
        *,
        params: StreamParams,
        seq: int,
        prev_digest: str | None,
        archive_key: nacl.public.PublicKey,
        signing_key: nacl.signing.SigningKey,
        chunk_bytes: int = 256 * 1024,
        chunk_seconds: float = 1.0,
        fsync_seconds: float = 2.0,
        start_us: int | None = None,
        make_room: Callable[[], bool] | None = None,
        gap: dict | None = None,
    ):
        if (prev_digest is None) != (seq == 0):
            raise SegmentError("only segment 0 starts a chain: every other names its predecessor's digest")
        self.path = Path(path)
        self.part_path = self.path.with_name(self.path.name + PART_SUFFIX)
        self._signing_key = signing_key
        self._make_room = make_room   # on a full disk: free space (True) so the write can go on
        self._chunk_bytes = min(chunk_bytes, MAX_CHUNK_PLAINTEXT)
        self._chunk_us = int(chunk_seconds * 1_000_000)
        self._fsync_ns = int(fsync_seconds * 1e9)
        segment_key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
        self._state = sodium.crypto_secretstream_xchacha20poly1305_state()
        stream_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(self._state, segment_key)
        sealed_key = nacl.public.SealedBox(archive_key).encrypt(segment_key)
        del segment_key
        self.header = {
            "type": HEADER_TYPE,
            "v": VERSION,
            "camera": params.camera,
            "seq": seq,
            "boot_id": params.boot_id,
            "start_us": wall_us() if start_us is None else start_us,
            "clock_synced": params.clock_synced,
            "codec": params.codec,
            "payload": "annexb-frames",
            "width": params.width,
            "height": params.height,
            "fps_num": params.fps_num,
            "fps_den": params.fps_den,
            "prev": prev_digest,
            "node_key": signing_key.verify_key.encode().hex(),
            "sealed_key": _b64(sealed_key),
            "stream_header": _b64(stream_header),
        }
        if gap is not None:   # the recording stopped before this segment: {"from_us", "why"}
            _check_fields(gap, GAP_FIELDS, "header gap")
            self.header["gap"] = {"from_us": gap["from_us"], "why": gap["why"]}
        self._body_hash = hashlib.sha256()
        self._buffer = bytearray()
        self._buffer_first_pts: int | None = None
        self._frames = 0
        self._chunks = 0
        self._payload_bytes = 0
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._keyframes = 0
        self._closed = False
        self.part_path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: never append to or clobber an older attempt at this sequence number.
        fd = os.open(self.part_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = os.fdopen(fd, "wb", buffering=0)
        header_json = canonical_json(self.header)
        self._write(PREFIX + U32.pack(len(header_json)) + header_json
                    + signing_key.sign(header_json).signature)
        # The header must be on disk before any chunk: recovery needs it to seal a torn segment.
        os.fsync(self._file.fileno())
        fsync_dir(self.part_path.parent)
        self._last_fsync = time.monotonic_ns()

    def _write(self, data: bytes) -> None:
        self._body_hash.update(data)
        try:
            _write_all(self._file, data, self._make_room)
        except OSError:
            # The file no longer matches the running digest: never sign it. The caller
            # aborts; recovery seals what is on disk as a truncated segment.
            self._closed = True
            raise

    def write_frame(self, frame: Frame) -> None:
        if self._closed:
            raise SegmentError("segment already closed")
        if len(frame.data) + FRAME_RECORD.size > MAX_CHUNK_PLAINTEXT:
            raise SegmentError(f"access unit of {len(frame.data)} bytes is larger than a chunk may be")
        if self._buffer and len(self._buffer) + FRAME_RECORD.size + len(frame.data) > MAX_CHUNK_PLAINTEXT:
            self._push(TAG_MESSAGE)
        if self._first_pts is None:
            if not frame.keyframe:
                raise SegmentError("a segment must start with a keyframe")
            self._first_pts = frame.pts_us
        if self._buffer_first_pts is None:
            self._buffer_first_pts = frame.pts_us
        self._last_pts = frame.pts_us
        self._buffer += FRAME_RECORD.pack(frame.pts_us, FLAG_KEYFRAME if frame.keyframe else 0, len(frame.data))
        self._buffer += frame.data
        self._frames += 1
        self._keyframes += frame.keyframe
        self._payload_bytes += len(frame.data)
        if len(self._buffer) >= self._chunk_bytes or frame.pts_us - self._buffer_first_pts >= self._chunk_us:
            self._push(TAG_MESSAGE)

    def _push(self, tag: int) -> None:
        ciphertext = sodium.crypto_secretstream_xchacha20poly1305_push(self._state, bytes(self._buffer), None, tag)
        self._write(U32.pack(len(ciphertext)))
        self._write(ciphertext)
        self._chunks += 1
        self._buffer.clear()
        self._buffer_first_pts = None
        now = time.monotonic_ns()
        if now - self._last_fsync >= self._fsync_ns:
            os.fsync(self._file.fileno())
            self._last_fsync = now

    def close(self) -> SegmentInfo:
        """Push the final chunk, sign the trailer, fsync and rename into place."""
        if self._closed:
            raise SegmentError("segment already closed")
        self._push(TAG_FINAL)
        self._write(U32.pack(0))
        trailer = {
            "type": TRAILER_TYPE,
            "v": VERSION,
            "camera": self.header["camera"],
            "seq": self.header["seq"],
            "complete": True,
            "end_us": wall_us(),
            "frames": self._frames,
            "keyframes": self._keyframes,
            "payload_bytes": self._payload_bytes,
            "first_pts_us": self._first_pts,
            "last_pts_us": self._last_pts,
            "chunks": self._chunks,
            "body_bytes": self._file.tell(),
            "body_sha256": self._body_hash.hexdigest(),
        }
        info = _finish(self._file, self._body_hash, trailer, self._signing_key, self.header, self._make_room)
        self._closed = True
        os.replace(self.part_path, self.path)
        fsync_dir(self.path.parent)
        return info

    def abort(self) -> None:
        """Stop without a trailer (after a failed write, or in tests): recovery seals what is on disk."""
        self._closed = True
        if not self._file.closed:
            self._file.close()


def _write_all(f, data: bytes, make_room: Callable[[], bool] | None = None) -> None:
    """Write all of `data` to an unbuffered file. A write may be short, or fail with ENOSPC
    part way (a disk filling up): then `make_room()` frees space and the rest is written,
    so the file still matches what was hashed. Raises when no room can be made."""
    view = memoryview(data)
    while view:
        try:
            view = view[f.write(view):]
        except OSError as e:
            if e.errno != errno.ENOSPC or make_room is None or not make_room():
                raise


def _finish(f, body_hash, trailer: dict, signing_key, header: dict, make_room=None) -> SegmentInfo:
    trailer_json = canonical_json(trailer)
    tail = U32.pack(len(trailer_json)) + trailer_json + signing_key.sign(trailer_json).signature
    _write_all(f, tail, make_room)
    file_hash = body_hash.copy()
    file_hash.update(tail)
    size = f.tell()
    os.fsync(f.fileno())
    f.close()
    return SegmentInfo(header=header, trailer=trailer, digest=file_hash.hexdigest(), size=size)


def seal_truncated(part_path: Path, signing_key: nacl.signing.SigningKey, reason: str) -> SegmentInfo | None:
    """Seal a segment a crash left without a trailer, as an explicitly truncated one.

    Keeps every whole chunk, cuts a torn last chunk, appends a signed trailer with
    `complete: false`, and renames `x.cseg.part` to `x.cseg`. Returns None when
    not even the header is whole (nothing was recorded in it): the part is removed.
    """
    part_path = Path(part_path)
    final_path = part_path.with_name(part_path.name[: -len(PART_SUFFIX)])
    with open(part_path, "rb") as f:
        crashed = os.fstat(f.fileno())
        data_len = crashed.st_size
        head = f.read(len(PREFIX) + 4)
        if len(head) < len(PREFIX) + 4 or head[: len(PREFIX)] != PREFIX:
            header_len = None
        else:
            (header_len,) = U32.unpack_from(head, len(PREFIX))
        if header_len is None or header_len > MAX_JSON_BYTES or data_len < len(head) + header_len + SIG_BYTES:
            part_path.unlink()
            fsync_dir(part_path.parent)
            return None
        header_json = f.read(header_len)
        sig = f.read(SIG_BYTES)
        header = _parse_json(header_json, "header")
        try:
            signing_key.verify_key.verify(header_json, sig)
        except nacl.exceptions.BadSignatureError:
            raise SegmentError(f"{part_path}: header not signed by this node; refusing to seal it",
                               kind="signature") from None
        good_end = f.tell()
        chunks = 0
        while True:
            raw = f.read(4)
            if len(raw) < 4:
                break
            (n,) = U32.unpack(raw)
            if n < CHUNK_OVERHEAD or n > MAX_CHUNK_CIPHERTEXT or good_end + 4 + n > data_len:
                break
            f.seek(n, os.SEEK_CUR)
            good_end += 4 + n
            chunks += 1
    body_hash = hashlib.sha256()
    with open(part_path, "r+b") as f:
        f.truncate(good_end)
        while block := f.read(1024 * 1024):
            body_hash.update(block)
        f.seek(good_end)
        end_marker = U32.pack(0)
        f.write(end_marker)
        body_hash.update(end_marker)
        trailer = {
            "type": TRAILER_TYPE,
            "v": VERSION,
            "camera": header["camera"],
            "seq": header["seq"],
            "complete": False,
            "truncated_reason": reason,
            "end_us": crashed.st_mtime_ns // 1000,   # last write before the crash: an upper bound
            "frames": None,
            "keyframes": None,
            "payload_bytes": None,
            "first_pts_us": None,
            "last_pts_us": None,
            "chunks": chunks,
            "body_bytes": good_end + 4,
            "body_sha256": body_hash.hexdigest(),
        }
        info = _finish(f, body_hash, trailer, signing_key, header)
    os.replace(part_path, final_path)
    fsync_dir(final_path.parent)
    return info


# --------------------------------------------------------------------------- verifying


def _parse_json(raw: bytes, what: str) -> dict:
    try:
        obj = parse_canonical(raw)
    except CanonicalError as e:
        raise SegmentError(f"{what} is not canonical JSON: {e}") from None
    if not isinstance(obj, dict):
        raise SegmentError(f"{what} is not a JSON object")
    return obj


HEADER_FIELDS = {
    "type": str, "v": int, "camera": str, "seq": int, "boot_id": str, "start_us": int,
    "clock_synced": bool, "codec": str, "payload": str, "width": int, "height": int,
    "fps_num": int, "fps_den": int, "prev": (str, type(None)), "node_key": str,
    "sealed_key": str, "stream_header": str,
}
# Optional: present when the writer knows the camera's recording stopped between the
# previous segment and this one (from the previous segment's end to this one's start_us).
HEADER_OPTIONAL_FIELDS = {"gap": dict}
GAP_FIELDS = {"from_us": int, "why": str}
TRAILER_FIELDS = {
    "type": str, "v": int, "camera": str, "seq": int, "complete": bool, "end_us": int,
    "chunks": int, "body_bytes": int, "body_sha256": str,
}


def _check_fields(obj: dict, fields: dict, what: str) -> None:
    for name, kind in fields.items():
        if name not in obj:
            raise SegmentError(f"{what} lacks {name!r}")
        value = obj[name]
        if isinstance(value, bool) and kind is int:
            raise SegmentError(f"{what} field {name!r} has the wrong type")
        if not isinstance(value, kind):
            raise SegmentError(f"{what} field {name!r} has the wrong type")


KeyLookup = Callable[[str, dict], nacl.signing.VerifyKey]
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _check_header_values(header: dict) -> None:
    if header["seq"] < 0:
        raise SegmentError("header seq is negative")
    if (header["prev"] is None) != (header["seq"] == 0) or (header["prev"] is not None
                                                             and not HEX64.match(header["prev"])):
        raise SegmentError("header prev must be null exactly for segment 0, else 64 hex digits", kind="chain")
    if not HEX64.match(header["node_key"]):
        raise SegmentError("header node_key is not 64 hex digits")
    if len(_unb64(header["sealed_key"], "sealed_key")) != 80:
        raise SegmentError("header sealed_key is not a 32-byte key sealed to X25519 (80 bytes)")
    if len(_unb64(header["stream_header"], "stream_header")) != 24:
        raise SegmentError("header stream_header is not 24 bytes")


def header_key(camera: str, header: dict) -> nacl.signing.VerifyKey:
    """Key lookup that trusts the key named in the header (self-consistency only)."""
    try:
        return nacl.signing.VerifyKey(bytes.fromhex(header["node_key"]))
    except (ValueError, TypeError, nacl.exceptions.CryptoError):
        raise SegmentError("header node_key is not an Ed25519 public key") from None


def enrolled_key(verify_key: nacl.signing.VerifyKey, camera: str | None = None) -> KeyLookup:
    """Key lookup that accepts only `verify_key` (and, if given, only camera `camera`)."""
    expected = verify_key.encode().hex()

    def lookup(header_camera: str, header: dict) -> nacl.signing.VerifyKey:
        if camera is not None and header_camera != camera:
            raise SegmentError(f"segment of {header_camera!r} where {camera!r} was expected", kind="signature")
        if header.get("node_key") != expected:
            raise SegmentError(f"segment is signed by a key not enrolled for {header_camera!r}", kind="signature")
        return verify_key
    return lookup


class SegmentVerifier:
    """Streaming verifier: feed it the file's bytes in any pieces, then call finish().

    It keeps only small parts in memory and hashes as it goes, so the central can
    verify an upload while writing it to disk. It needs no decryption key.
    """

    def __init__(self, key_lookup: KeyLookup = header_key, max_bytes: int | None = None):
        self._key_lookup = key_lookup
        self._max_bytes = max_bytes
        self._body_hash = hashlib.sha256()
        self._tail = bytearray()   # the trailer's bytes: the chain digest is the body hash plus these
        self._in_body = True
        self._buf = bytearray()
        self._need = len(PREFIX) + 4
        self._state = "prefix"
        self._skip = 0  # chunk ciphertext bytes still to pass through
        self._size = 0
        self._consumed = 0
        self._body_bytes = 0
        self._chunks = 0
        self.header: dict | None = None
        self.trailer: dict | None = None
        self._key: nacl.signing.VerifyKey | None = None
        self._json_len = 0

    def feed(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        self._size += len(mv)
        if self._max_bytes is not None and self._size > self._max_bytes:
            raise SegmentError(f"segment larger than {self._max_bytes} bytes", kind="too_large")
        while mv:
            if self._state == "done":
                raise SegmentError("bytes after the trailer")
            if self._skip:
                n = min(self._skip, len(mv))
                self._body_hash.update(mv[:n])
                self._consumed += n
                self._skip -= n
                mv = mv[n:]
                continue
            take = min(self._need - len(self._buf), len(mv))
            self._buf += mv[:take]
            self._consumed += take
            if self._in_body:
                self._body_hash.update(mv[:take])
            else:
                self._tail += mv[:take]
            mv = mv[take:]
            if len(self._buf) == self._need:
                self._step()

    def _step(self) -> None:
        buf = bytes(self._buf)
        self._buf.clear()
        state = self._state
        if state == "prefix":
            if buf[:4] != MAGIC:
                raise SegmentError("not a Custodian segment (bad magic)")
            if buf[4] != VERSION:
                raise SegmentError(f"unsupported segment version {buf[4]}")
            (self._json_len,) = U32.unpack_from(buf, 5)
            if not 2 <= self._json_len <= MAX_JSON_BYTES:
                raise SegmentError("header length out of range")
            self._state, self._need = "header", self._json_len + SIG_BYTES
        elif state == "header":
            header_json, sig = buf[: self._json_len], buf[self._json_len:]
            header = _parse_json(header_json, "header")
            _check_fields(header, HEADER_FIELDS, "header")
            if "gap" in header:
                _check_fields(header, HEADER_OPTIONAL_FIELDS, "header")
                _check_fields(header["gap"], GAP_FIELDS, "header gap")
            if header["type"] != HEADER_TYPE or header["v"] != VERSION:
                raise SegmentError("header type or version is wrong")
            _check_header_values(header)
            self._key = self._key_lookup(header["camera"], header)
            try:
                self._key.verify(header_json, sig)
            except nacl.exceptions.BadSignatureError:
                raise SegmentError("header signature does not verify", kind="signature") from None
            self.header = header
            self._state, self._need = "chunk_len", 4
        elif state == "chunk_len":
            (n,) = U32.unpack(buf)
            if n == 0:
                self._in_body = False
                self._body_bytes = self._consumed
                self._state, self._need = "trailer_len", 4
            elif CHUNK_OVERHEAD <= n <= MAX_CHUNK_CIPHERTEXT:
                self._chunks += 1
                self._skip = n
                self._need = 4
            else:
                raise SegmentError(f"chunk length {n} out of range")
        elif state == "trailer_len":
            (self._json_len,) = U32.unpack(buf)
            if not 2 <= self._json_len <= MAX_JSON_BYTES:
                raise SegmentError("trailer length out of range")
            self._state, self._need = "trailer", self._json_len + SIG_BYTES
        elif state == "trailer":
            trailer_json, sig = buf[: self._json_len], buf[self._json_len:]
            trailer = _parse_json(trailer_json, "trailer")
            _check_fields(trailer, TRAILER_FIELDS, "trailer")
            try:
                self._key.verify(trailer_json, sig)
            except nacl.exceptions.BadSignatureError:
                raise SegmentError("trailer signature does not verify", kind="signature") from None
            if trailer["type"] != TRAILER_TYPE or trailer["v"] != VERSION:
                raise SegmentError("trailer type or version is wrong")
            if not trailer["complete"] and not isinstance(trailer.get("truncated_reason"), str):
                raise SegmentError("a truncated segment's trailer must say why")
            if trailer["body_sha256"] != self._body_hash.hexdigest():
                raise SegmentError("body digest does not match the signed trailer", kind="digest")
            if trailer["body_bytes"] != self._body_bytes or trailer["chunks"] != self._chunks:
                raise SegmentError("chunk count or length does not match the signed trailer", kind="digest")
            if (trailer["camera"], trailer["seq"]) != (self.header["camera"], self.header["seq"]):
                raise SegmentError("trailer names another segment", kind="digest")
            self.trailer = trailer
            self._state, self._need = "done", 0

    def finish(self) -> SegmentInfo:
        if self._state != "done":
            raise SegmentError(f"segment ends early (while reading its {self._state.replace('_', ' ')})",
                               kind="truncated")
        return SegmentInfo(header=self.header, trailer=self.trailer,
                           digest=self._file_digest(), size=self._size)

    def _file_digest(self) -> str:
        # The body is a prefix of the file: one hashing pass serves both digests.
        file_hash = self._body_hash.copy()
        file_hash.update(self._tail)
        return file_hash.hexdigest()


def verify_file(path: Path, key_lookup: KeyLookup = header_key, block: int = 1024 * 1024) -> SegmentInfo:
    verifier = SegmentVerifier(key_lookup)
    with open(path, "rb") as f:
        while data := f.read(block):
            verifier.feed(data)
    return verifier.finish()


def read_verified(path: Path, key_lookup: KeyLookup,
                  in_memory: int = IN_MEMORY_BYTES) -> tuple[SegmentInfo, bytes | None]:
    """Verify a segment and keep the bytes that were verified, so decrypting it needs no second read.

    Returns (info, the file's bytes), or (info, None) for a segment larger than `in_memory`
    (up to the ingest limit, hundreds of MB): that one is verified as it is read and
    decrypted by reading the file again, where the chunks' authentication under the
    verified header's key catches any change in between.
    """
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > in_memory:
            return verify_file(path, key_lookup), None
        data = f.read(in_memory + 1)
    if len(data) > in_memory:           # it grew after the fstat: verify it as it is read
        return verify_file(path, key_lookup), None
    verifier = SegmentVerifier(key_lookup)
    verifier.feed(data)
    return verifier.finish(), data


def read_public(path: Path) -> SegmentInfo:
    """Header and trailer of a file, checked against the key the header names."""
    return verify_file(path, header_key)


# --------------------------------------------------------------------------- decrypting


def iter_frames(path: Path, archive_secret: nacl.public.PrivateKey, key_lookup: KeyLookup) -> Iterator[Frame]:
    """Verify, then decrypt a segment's frames one chunk at a time, reading the file once
    (memory: the segment's bytes, up to IN_MEMORY_BYTES, and one chunk's plaintext).

    `key_lookup` must give the camera's *enrolled* key (the central's, or --key):
    trusting the key a file names would accept a forgery. Raises SegmentError on a
    bad chunk, an unknown tag, a missing final chunk in a segment whose trailer says
    it is complete, data after the final chunk, or counts that differ from the trailer.
    """
    info, data = read_verified(path, key_lookup)
    yield from decrypt_verified(path, archive_secret, info, data)


def decrypt_verified(path: Path, archive_secret: nacl.public.PrivateKey, info: SegmentInfo,
                     data: bytes | None = None) -> Iterator[Frame]:
    """iter_frames for a segment the caller has just verified (`info`).

    `data`: the very bytes that were verified (`read_verified`), decrypted without
    reading the file again. Without it the file is read again: its chunks are
    authenticated under the stream key the verified header holds, so a file changed
    since it was verified yields an authentication error, not foreign frames.
    """
    header, trailer = info.header, info.trailer
    if header["codec"] != "h264" or header["payload"] != "annexb-frames":
        raise SegmentError(f"unsupported payload {header['codec']}/{header['payload']}")
    try:
        segment_key = nacl.public.SealedBox(archive_secret).decrypt(_unb64(header["sealed_key"], "sealed_key"))
    except nacl.exceptions.CryptoError:
        raise SegmentError("the archive key cannot open this segment's key", kind="signature") from None
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, _unb64(header["stream_header"], "stream_header"),
                                                           segment_key)
    seen_final = False
    frames = keyframes = payload = 0
    try:
        with open(path, "rb") if data is None else io.BytesIO(data) as f:
            (header_len,) = U32.unpack(f.read(len(PREFIX) + 4)[len(PREFIX):])
            f.seek(header_len + SIG_BYTES, os.SEEK_CUR)
            index = 0
            while True:
                (n,) = U32.unpack(f.read(4))
                if n == 0:
                    break
                if seen_final:
                    raise SegmentError("data after the final chunk")
                try:
                    plaintext, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, f.read(n), None)
                except nacl.exceptions.CryptoError:
                    raise SegmentError(f"chunk {index} fails authentication", kind="digest") from None
                if tag not in (TAG_MESSAGE, TAG_FINAL):
                    raise SegmentError(f"chunk {index} carries an unexpected stream tag {tag}")
                seen_final = tag == TAG_FINAL
                for frame in _frames_in(plaintext, index):
                    frames += 1
                    keyframes += frame.keyframe
                    payload += len(frame.data)
                    yield frame
                index += 1
    except struct.error:
        raise SegmentError("the file changed while it was being read", kind="truncated") from None
    if info.complete:
        if not seen_final:
            raise SegmentError("the final chunk is missing", kind="truncated")
        if (frames, keyframes, payload) != (trailer["frames"], trailer["keyframes"], trailer["payload_bytes"]):
            raise SegmentError("frame counts differ from the signed trailer", kind="digest")


def _frames_in(plaintext: bytes, index: int) -> Iterator[Frame]:
    mv = memoryview(plaintext)
    pos = 0
    while pos < len(mv):
        if pos + FRAME_RECORD.size > len(mv):
            raise SegmentError(f"chunk {index} ends inside a frame record")
        pts, flags, n = FRAME_RECORD.unpack_from(mv, pos)
        pos += FRAME_RECORD.size
        if pos + n > len(mv):
            raise SegmentError(f"chunk {index} ends inside a frame")
        yield Frame(bytes(mv[pos: pos + n]), bool(flags & FLAG_KEYFRAME), pts)
        pos += n


def decrypt_payload(path: Path, archive_secret: nacl.public.PrivateKey, out, key_lookup: KeyLookup) -> int:
    """Write the segment's Annex-B payload to `out` (a pipe, never a plaintext file)."""
    total = 0
    for frame in iter_frames(path, archive_secret, key_lookup):
        out.write(frame.data)
        total += len(frame.data)
    return total
