"""Segment ingest: the central's only network port (HTTP on the library LAN).

`PUT /v1/segments/<camera>/<seq>` with the segment file as the body. The segment
authenticates itself: its header and trailer are signed by the node's Ed25519 key,
which must be the key enrolled for <camera>. The upload is verified while it is
written to disk, fsync'd, moved into the tree, and only then acknowledged.

Answers (JSON): 201 stored, 200 duplicate (already stored, same bytes), 400
malformed, 403 unknown camera or bad signature, 409 conflict/replay/chain break,
413 too large, 507 refused because the disk holds only held footage.
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Protocol

import nacl.signing
from aiohttp import web

from .archive import Archive, check_camera_id
from .errors import SegmentError
from .segment import SegmentVerifier, enrolled_key

log = logging.getLogger("custodian.ingest")

STATUS_FOR_KIND = {
    "malformed": 400, "digest": 400, "truncated": 400,
    "signature": 403, "unknown_camera": 403,
    "conflict": 409, "chain": 409, "replay": 409,
    "too_large": 413,
}
FLUSH_BYTES = 4 * 1024 * 1024
READ_TIMEOUT = 30.0        # seconds without a byte before an upload is dropped
MAX_UPLOADS = 64           # at once, all cameras together


class IngestHost(Protocol):
    """What ingest needs from the central daemon."""

    archive: Archive
    max_segment_bytes: int

    def camera_key(self, camera: str) -> nacl.signing.VerifyKey | None: ...

    def ingest_refusal(self) -> str | None: ...      # a reason to refuse (disk full of held footage)

    def segment_stored(self, info, status: str) -> dict: ...   # returns extra fields for the answer

    def ingest_rejected(self, camera: str, seq: str, error: SegmentError, peer: str) -> None: ...


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def make_ingest_app(host: IngestHost) -> web.Application:
    app = web.Application(client_max_size=host.max_segment_bytes)
    uploading: set[str] = set()   # one upload per camera at a time: memory stays bounded

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def put_segment(request: web.Request) -> web.Response:
        camera, seq_text = request.match_info["camera"], request.match_info["seq"]
        peer = request.remote or "?"
        try:
            check_camera_id(camera)
            if not seq_text.isdigit() or len(seq_text) > 10:
                raise SegmentError("sequence must be a non-negative integer")
            key = host.camera_key(camera)
            if key is None:
                raise SegmentError(f"camera {camera!r} is not enrolled", kind="unknown_camera")
            length = request.content_length
            if length is None:
                return _error(411, "Content-Length is required")
            if length > host.max_segment_bytes:
                raise SegmentError(f"segment of {length} bytes exceeds the limit of {host.max_segment_bytes}",
                                   kind="too_large")
            refusal = host.ingest_refusal()
            if refusal:
                return _error(507, refusal)
            if camera in uploading or len(uploading) >= MAX_UPLOADS:
                return _error(429, "an upload for this camera is already under way: try again shortly")
            uploading.add(camera)
            try:
                info, tmp = await _receive(request, host, camera, int(seq_text), key)
                status = await asyncio.to_thread(host.archive.commit, tmp, info)
            finally:
                uploading.discard(camera)
        except SegmentError as e:
            await asyncio.to_thread(host.ingest_rejected, camera, seq_text, e, peer)
            return _error(STATUS_FOR_KIND.get(e.kind, 400), str(e))
        except asyncio.TimeoutError:
            return _error(408, f"no data for {READ_TIMEOUT:.0f} s: upload dropped")
        extra = await asyncio.to_thread(host.segment_stored, info, status)   # a records write: off the loop
        return web.json_response({"status": status, "digest": info.digest, **extra},
                                 status=201 if status == "stored" else 200)

    app.router.add_get("/v1/health", health)
    app.router.add_put("/v1/segments/{camera}/{seq}", put_segment)
    from .enrolment import add_enrol_routes  # pairing codes of flashed cameras (docs/node-protocol.md)
    from .nodeapi import add_node_routes  # the node control channel (docs/node-protocol.md)

    add_node_routes(app, host)
    add_enrol_routes(app, host)
    return app


async def _receive(request: web.Request, host: IngestHost, camera: str, seq: int,
                   key: nacl.signing.VerifyKey):
    """Stream the body to .incoming/ while verifying it; fsync before returning."""
    verifier = SegmentVerifier(enrolled_key(key, camera), max_bytes=host.max_segment_bytes)
    tmp = host.archive.incoming_path(camera, seq)
    f = open(tmp, "wb")
    try:
        pending: list[bytes] = []
        pending_bytes = 0
        while piece := await asyncio.wait_for(request.content.read(256 * 1024), READ_TIMEOUT):
            if verifier.header is None:
                # Until the signed header checks out, nothing is buffered: junk is refused at once.
                _feed_and_write(verifier, f, [piece])
                continue
            pending.append(piece)
            pending_bytes += len(piece)
            if pending_bytes >= FLUSH_BYTES:
                # Hashing and writing release the GIL: a worker thread does them, without copies here.
                await asyncio.to_thread(_feed_and_write, verifier, f, pending)
                pending, pending_bytes = [], 0
        if pending:
            await asyncio.to_thread(_feed_and_write, verifier, f, pending)
        info = verifier.finish()
        if info.seq != seq:
            raise SegmentError(f"upload for sequence {seq} carries segment {info.seq}", kind="malformed")
        await asyncio.to_thread(_fsync_close, f)
        return info, tmp
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise


def _feed_and_write(verifier: SegmentVerifier, f, pieces: list[bytes]) -> None:
    for piece in pieces:
        verifier.feed(piece)
        f.write(piece)


def _fsync_close(f) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()
