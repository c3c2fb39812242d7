"""Segment ingest: the central's only network port (HTTP on the library LAN).

`PUT /v1/segments/<camera>/<seq>` with the segment file as the body. The segment
authenticates itself: its header and trailer are signed by the node's Ed25519 key,
which must be the key enrolled for <camera>. The upload is verified while it is
written to disk, fsync'd, moved into the tree, and only then acknowledged.

Answers (JSON): 201 stored, 200 duplicate (already stored, same bytes), 400
malformed, 403 unknown camera or bad signature, 408 too slow, 409
conflict/replay/chain break, 413 too large, 429 busy, 507 refused because the disk
holds only held footage.

Nobody on the LAN can stall a camera's uploads (issue 6): the signed header must
arrive whole within HEADER_SECONDS of the request, and an upload takes its camera's
single slot only once that header verifies with the camera's enrolled key. A
verified upload from the camera replaces one still in progress for the same or an
older sequence number (the older connection is dropped): the node's own retry
always gets through, even past a replay of one of its stored segments.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
from typing import Protocol

import nacl.signing
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from appliance.custody.archive import Archive, check_camera_id
from appliance.errors import SegmentError
from appliance.formats.segment import SegmentVerifier, enrolled_key

log = logging.getLogger("custodian.ingest")

STATUS_FOR_KIND = {
    "malformed": 400, "digest": 400, "truncated": 400,
    "signature": 403, "unknown_camera": 403,
    "conflict": 409, "chain": 409, "replay": 409,
    "too_large": 413,
}
FLUSH_BYTES = 4 * 1024 * 1024
HEADER_SECONDS = 5.0       # the whole signed header, from the request's start (a trickle cannot last)
READ_TIMEOUT = 30.0        # seconds without a byte, after the header, before an upload is dropped
MAX_UPLOADS = 64           # at once, all cameras together


class IngestHost(Protocol):
    """What ingest needs from the central daemon."""

    archive: Archive
    max_segment_bytes: int

    def camera_key(self, camera: str) -> nacl.signing.VerifyKey | None: ...

    def ingest_refusal(self) -> str | None: ...      # a reason to refuse (disk full of held footage)

    def no_room_for(self, length: int) -> str | None: ...   # a reason to refuse: the data disk would be too full

    def sweep_soon(self) -> None: ...                   # a full disk: free unheld footage now

    def segment_stored(self, info, status: str) -> dict: ...   # returns extra fields for the answer

    def ingest_rejected(self, camera: str, seq: str, error: SegmentError, peer: str) -> None: ...


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class _Slot:
    """A camera's one upload in progress (memory and disk work stay bounded per camera)."""

    def __init__(self, seq: int, request: web.Request):
        self.seq = seq
        self.request = request


def make_ingest_app(host: IngestHost) -> web.Application:
    app = web.Application(client_max_size=host.max_segment_bytes)
    slots: dict[str, _Slot] = {}

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def claim(camera: str, seq: int, request: web.Request) -> _Slot:
        """Called once the header verified: take the camera's slot, replacing an older upload."""
        holder = slots.get(camera)
        if holder is not None:
            if seq < holder.seq:
                raise _Busy()
            log.warning("upload of %s/%d replaced by a newer verified upload of %s/%d from %s",
                        camera, holder.seq, camera, seq, request.remote)
            if holder.request.transport is not None:
                holder.request.transport.close()   # its next read fails: it unwinds and answers nobody
        elif len(slots) >= MAX_UPLOADS:
            raise _Busy()
        slots[camera] = slot = _Slot(seq, request)
        return slot

    async def put_segment(request: web.Request) -> web.Response:
        camera, seq_text = request.match_info["camera"], request.match_info["seq"]
        peer = request.remote or "?"
        slot = None
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
            no_room = host.no_room_for(length)                # (which also resumes ingest once there is room)
            refusal = host.ingest_refusal() or no_room
            if refusal:
                return _error(507, refusal)

            def take_slot(seq: int) -> None:
                nonlocal slot
                slot = claim(camera, seq, request)

            info, tmp = await _receive(request, host, camera, int(seq_text), key, take_slot)
            status = await asyncio.to_thread(host.archive.commit, tmp, info)
        except SegmentError as e:
            await asyncio.to_thread(host.ingest_rejected, camera, seq_text, e, peer)
            return _error(STATUS_FOR_KIND.get(e.kind, 400), str(e))
        except _Busy:
            return _error(429, "an upload for this camera is already under way: try again shortly")
        except _HeaderTooSlow:
            log.warning("upload %s/%s from %s dropped: no signed header within %.0f s", camera, seq_text, peer,
                        HEADER_SECONDS)
            return _error(408, f"the signed header did not arrive within {HEADER_SECONDS:.0f} s: upload dropped")
        except asyncio.TimeoutError:
            log.warning("upload %s/%s from %s dropped: no data for %.0f s", camera, seq_text, peer, READ_TIMEOUT)
            return _error(408, f"no data for {READ_TIMEOUT:.0f} s: upload dropped")
        except (ConnectionError, HttpProcessingError) as e:
            # The client went away mid-upload (or was replaced): one line, not a traceback.
            why = "replaced by a newer upload" if slot is not None and slots.get(camera) is not slot else str(e)
            log.warning("upload %s/%s from %s cut off: %s", camera, seq_text, peer, why or type(e).__name__)
            return _error(400, "the upload was cut off")
        except OSError as e:   # after ConnectionError, which is one too
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # Nothing was stored (the partial file is gone); the node keeps the segment and retries.
            log.warning("upload %s/%s from %s refused: the data disk is full (%s)", camera, seq_text, peer, e)
            host.sweep_soon()
            return _error(507, "the central's disk is full: upload refused, try again later")
        finally:
            if slot is not None and slots.get(camera) is slot:
                del slots[camera]
        extra = await asyncio.to_thread(host.segment_stored, info, status)   # a records write: off the loop
        return web.json_response({"status": status, "digest": info.digest, **extra},
                                 status=201 if status == "stored" else 200)

    app.router.add_get("/v1/health", health)
    app.router.add_put("/v1/segments/{camera}/{seq}", put_segment)
    from appliance.central.enrolment import add_enrol_routes
    from appliance.central.node_channel import add_node_routes  # the node control channel (docs/node-protocol.md)

    add_node_routes(app, host)
    add_enrol_routes(app, host)
    return app


class _Busy(Exception):
    pass


class _HeaderTooSlow(Exception):
    pass


async def _receive(request: web.Request, host: IngestHost, camera: str, seq: int,
                   key: nacl.signing.VerifyKey, take_slot):
    """Stream the body to .incoming/ while verifying it; fsync before returning.

    The signed header first, under one deadline; then `take_slot(seq)`; then the rest.
    """
    verifier = SegmentVerifier(enrolled_key(key, camera), max_bytes=host.max_segment_bytes)
    tmp = host.archive.incoming_path(camera, seq)
    f = open(tmp, "wb")
    try:
        try:
            async with asyncio.timeout(HEADER_SECONDS):
                # Until the signed header checks out, nothing is buffered: junk is refused at once.
                while verifier.header is None and (piece := await request.content.read(256 * 1024)):
                    _feed_and_write(verifier, f, [piece])
        except TimeoutError:
            raise _HeaderTooSlow() from None
        if verifier.header is None:
            verifier.finish()                       # raises: the body ended inside the header
        if verifier.header["seq"] != seq:
            raise SegmentError(f"upload for sequence {seq} carries segment {verifier.header['seq']}",
                               kind="malformed")
        take_slot(seq)
        pending: list[bytes] = []
        pending_bytes = 0
        while piece := await asyncio.wait_for(request.content.read(256 * 1024), READ_TIMEOUT):
            pending.append(piece)
            pending_bytes += len(piece)
            if pending_bytes >= FLUSH_BYTES:
                # Hashing and writing release the GIL: a worker thread does them, without copies here.
                await asyncio.to_thread(_feed_and_write, verifier, f, pending)
                pending, pending_bytes = [], 0
        if pending:
            await asyncio.to_thread(_feed_and_write, verifier, f, pending)
        info = verifier.finish()
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
