"""The central's side of the node control channel: routes on the ingest app.

The protocol is specified in docs/node-protocol.md. In short, a node asks
`GET /v1/nodes/<camera>/control` what it may do and sends images with
`PUT /v1/nodes/<camera>/snapshot` and `PUT /v1/nodes/<camera>/live/<view>`.
Every request is signed by the node's enrolled Ed25519 key over
`METHOD\\nPATH\\nTIME\\nsha256(body)`, and TIME must be greater than the last one
accepted from that camera (a captured request cannot be replayed). Images arrive
sealed to the central's live key (C4); the control answer goes back sealed by the
live key to the node's key, so only that node can read it and nobody else can forge it.

Images are kept in RAM only (`NodeHub`): the latest snapshot per camera and the
latest live frame per camera. Only the approved reference view (a small
thumbnail) is stored, in the camera's record.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
import time
from datetime import datetime

import nacl.exceptions
import nacl.public
import nacl.signing
from aiohttp import web

from appliance.formats.node_protocol import HEADER_CAMERA, HEADER_SIGNATURE, HEADER_TIME, MAX_IMAGE_WIDTH, signed_message
from appliance.errors import NodeRefused
from appliance.rules.registry import iso, parse_iso
from appliance.custody.records import valid_id

log = logging.getLogger("custodian.nodes")

MAX_IMAGE_BODY = 1024 * 1024
ONLINE_SECONDS = 30              # a node that asked within this long is "online"
PERSIST_TIME_EVERY = 60.0        # seconds between writes of a camera's last request time
RESTART_MARGIN_US = 120_000_000  # after a restart, times this close to the last written one are refused
SEGMENT_ROUTE = "/v1/segments/{camera}/{seq}"


class NodeHub:
    """What the central knows about its nodes in RAM: last request times, images.

    The daemon keeps one as `central.nodes`; the rules read it through the shape
    `appliance.rules.ports.NodeLink` declares."""

    def __init__(self, central):
        self.central = central
        self.lock = threading.Lock()
        self.last_time: dict[str, int] = {}
        self._persisted: dict[str, float] = {}
        self.last_seen: dict[str, datetime] = {}
        self.snapshots: dict[str, dict] = {}     # camera -> image + received_at
        self.live: dict[str, dict] = {}          # camera -> image + received_at + view
        self.live_frames: dict[str, int] = {}    # live view -> frames received
        self.segment_seconds: dict[tuple[str, int], int] = {}   # (camera, head seq) -> segment length

    def accept_time(self, cam: dict, time_us: int) -> None:
        """Refuse a TIME not after the last accepted one (replay); remember it."""
        camera = cam["id"]
        with self.lock:
            last = self.last_time.get(camera)
            if last is None:
                # After a restart: requests accepted since the last write (at most a
                # minute ago) are newer than it, so refuse a margin beyond it too.
                written = cam.get("control_time_us") or 0
                last = written + RESTART_MARGIN_US if written else 0
            if time_us <= last:
                raise NodeRefused(403, "request time is not after the last one accepted (replayed?)",
                                  last_time=last)
            self.last_time[camera] = time_us
            due = time.monotonic() - self._persisted.get(camera, float("-inf")) >= PERSIST_TIME_EVERY
            if due:
                self._persisted[camera] = time.monotonic()
        if due:
            self.central.records.update("cameras", camera, {"control_time_us": time_us})

    def online(self, camera: str) -> bool:
        seen = self.last_seen.get(camera)
        return seen is not None and (self.central.now() - seen).total_seconds() <= ONLINE_SECONDS

    def store_live(self, camera: str, view: str, image: dict) -> None:
        with self.lock:
            self.live[camera] = dict(image, view=view)
            self.live_frames[view] = self.live_frames.get(view, 0) + 1

    def live_frames_received(self, view: str) -> int:
        with self.lock:
            return self.live_frames.pop(view, 0)

    def live_frame(self, camera: str, since: datetime) -> dict | None:
        """The camera's latest live frame, if it arrived after `since` (the live view's start)."""
        with self.lock:
            frame = self.live.get(camera)
        if frame is None or frame["received_at"] < since:
            return None
        return frame


# --------------------------------------------------------------------------- checking a request


def authenticate(central, camera: str, method: str, path: str, headers, body: bytes) -> dict:
    """The camera's record, if the request is signed by its enrolled key and is fresh."""
    cam = central.records.get("cameras", camera) if valid_id(camera) else None
    if cam is None:
        raise NodeRefused(403, f"camera {camera!r} is not enrolled")
    if headers.get(HEADER_CAMERA) != camera:
        raise NodeRefused(403, f"{HEADER_CAMERA} does not name the camera in the path")
    time_text = headers.get(HEADER_TIME, "")
    if not time_text.isdigit() or len(time_text) > 19:
        raise NodeRefused(403, f"{HEADER_TIME} must be microseconds since the epoch")
    try:
        signature = bytes.fromhex(headers.get(HEADER_SIGNATURE, ""))
        key = nacl.signing.VerifyKey(bytes.fromhex(cam["key"]))
        key.verify(signed_message(method, path, int(time_text), body), signature)
    except (ValueError, nacl.exceptions.BadSignatureError):
        raise NodeRefused(403, f"bad signature for camera {camera!r}") from None
    central.nodes.accept_time(cam, int(time_text))
    central.nodes.last_seen[camera] = central.now()
    return cam


def open_image(central, body: bytes) -> dict:
    """Open a sealed image and check its shape; returns it with `received_at`."""
    try:
        doc = json.loads(nacl.public.SealedBox(central.keys.live_key()).decrypt(body))
    except nacl.exceptions.CryptoError:
        raise NodeRefused(400, "the image is not sealed to this central's live key") from None
    except (ValueError, RecursionError):
        raise NodeRefused(400, "the sealed image is not JSON (or nests too deeply)") from None
    if not isinstance(doc, dict):
        raise NodeRefused(400, "the sealed image is not a JSON object")
    w, h = doc.get("width"), doc.get("height")
    if not all(_whole(v) and 2 <= v <= MAX_IMAGE_WIDTH for v in (w, h)):
        raise NodeRefused(400, f"image width and height must be whole numbers from 2 to {MAX_IMAGE_WIDTH}")
    try:
        pixels = base64.b64decode(doc.get("pixels", ""), validate=True)
        at = iso(parse_iso(str(doc.get("at"))))
    except (binascii.Error, ValueError, TypeError):
        raise NodeRefused(400, "image pixels must be base64 and `at` an ISO time") from None
    if len(pixels) != w * h:
        raise NodeRefused(400, f"a {w}x{h} gray8 image has {w * h} pixels, not {len(pixels)}")
    frame = doc.get("frame")
    if not (isinstance(frame, list) and len(frame) == 2 and all(_whole(v) and 0 < v <= 10000 for v in frame)):
        frame = None
    masks = doc.get("masks")
    if not (isinstance(masks, list) and all(isinstance(m, list) and len(m) == 4 and all(map(_whole, m))
                                            for m in masks)):
        masks = []
    return {"width": w, "height": h, "format": "gray8", "pixels": doc["pixels"], "at": at, "frame": frame,
            "masks": masks, "received_at": central.now()}


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --------------------------------------------------------------------------- the three requests


def seal_for_node(central, node_key_hex: str, doc: dict) -> bytes:
    """An answer only this node can open, and only this central can have written (live key)."""
    node_key = nacl.signing.VerifyKey(bytes.fromhex(node_key_hex)).to_curve25519_public_key()
    return bytes(nacl.public.Box(central.keys.live_key(), node_key).encrypt(json.dumps(doc).encode()))


def control_answer(central, cam: dict, time_us: int) -> bytes:
    from appliance.rules.cameras import control_for

    return seal_for_node(central, cam["key"], dict(control_for(central, cam), time=time_us))


def receive_snapshot(central, cam: dict, body: bytes) -> dict:
    from appliance.rules.cameras import snapshot_received

    if cam["status"] == "retired":
        raise NodeRefused(409, f"camera {cam['id']} is retired")
    image = open_image(central, body)
    with central.decision_lock:
        snapshot_received(central, cam["id"], image)
    return {"ok": True}


def receive_live(central, cam: dict, view_id: str, body: bytes) -> dict:
    from appliance.rules.live import view_is_open

    view = central.records.get("live_views", view_id) if valid_id(view_id) else None
    if view is None or view["camera"] != cam["id"] or not view_is_open(central, view):
        raise NodeRefused(409, f"no open live view {view_id!r} of camera {cam['id']}: frame dropped")
    image = open_image(central, body)
    central.nodes.store_live(cam["id"], view_id, image)
    return {"ok": True}


def _request_work(central, request_info: dict, body: bytes):
    """Runs in a worker thread: authenticate, then do what the route asks."""
    camera, method, path, headers = (request_info[k] for k in ("camera", "method", "path", "headers"))
    cam = authenticate(central, camera, method, path, headers, body)
    kind = request_info["kind"]
    if kind == "control":
        return control_answer(central, cam, int(headers[HEADER_TIME]))
    if kind == "snapshot":
        return receive_snapshot(central, cam, body)
    return receive_live(central, cam, request_info["view"], body)


def add_node_routes(app: web.Application, host) -> None:
    """Add the node control routes, and refuse segments from a camera never approved (C6)."""

    async def handle(request: web.Request, kind: str) -> web.Response:
        peer = request.remote or "?"
        if request.method == "PUT":
            if request.content_length is None:
                return web.json_response({"error": "Content-Length is required"}, status=411)
            if request.content_length > MAX_IMAGE_BODY:
                return web.json_response({"error": "image too large"}, status=413)
        body = await request.read()
        info = {"kind": kind, "camera": request.match_info["camera"], "method": request.method,
                "path": request.raw_path, "headers": request.headers, "view": request.match_info.get("view")}
        try:
            result = await asyncio.to_thread(_request_work, host, info, body)
        except NodeRefused as e:
            log.warning("node request %s %s from %s refused: %s", request.method, request.raw_path, peer, e.message)
            return web.json_response({"error": e.message, **e.extra}, status=e.status)
        if isinstance(result, bytes):
            return web.Response(body=result, content_type="application/octet-stream")
        return web.json_response(result)

    async def control(request):
        return await handle(request, "control")

    async def snapshot(request):
        return await handle(request, "snapshot")

    async def live(request):
        return await handle(request, "live")

    @web.middleware
    async def placement_gate(request: web.Request, handler):
        resource = request.match_info.route.resource
        if request.method == "PUT" and resource is not None and resource.canonical == SEGMENT_ROUTE:
            refusal = await asyncio.to_thread(_never_approved, host, request.match_info["camera"])
            if refusal:
                log.warning("segment upload %s refused: %s", request.raw_path, refusal)
                return web.json_response({"error": refusal}, status=403)
        return await handler(request)

    app.router.add_get("/v1/nodes/{camera}/control", control)
    app.router.add_put("/v1/nodes/{camera}/snapshot", snapshot)
    app.router.add_put("/v1/nodes/{camera}/live/{view}", live)
    app.middlewares.append(placement_gate)


def _never_approved(host, camera: str) -> str | None:
    """A reason to refuse a camera's segments: its placement was never approved (C6).

    A camera approved once and later rejected or moved keeps its uploads: the
    node may still hold segments recorded while it was approved.
    """
    records = getattr(host, "records", None)
    if records is None or not valid_id(camera):
        return None
    cam = records.get("cameras", camera)
    if cam is None or cam.get("placement") is not None or cam.get("status") == "approved":
        return None
    return f"camera {camera} has no approved placement: it must not record yet (C6)"
