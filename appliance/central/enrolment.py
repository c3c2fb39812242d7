"""Enrolment by pairing code, served on the LAN (docs/node-protocol.md, "Enrolment").

`GET /v1/enrol/keys` gives the central's public keys; `POST /v1/enrol/<camera>` takes a
node's sealed, signed request and hands it to the rules (`rules/enrolment.py`) under the
decision lock. Each refusal is audited, and guessing is rate-limited per address
(`PeerGuard`: ten refusals in ten minutes, then 429).
"""
from __future__ import annotations

import logging

import asyncio
import threading
import time

from aiohttp import web

from appliance.central.node_channel import seal_for_node
from appliance.formats.pairing import ENROL_ROUTE, KEYS_PATH, MAX_BODY
from appliance.rules.enrolment import _Refusal, central_keys, enrol_request

log = logging.getLogger("custodian.enrolment")



PEER_FAILURES = 10                  # refused attempts from one address...
PEER_WINDOW = 600.0                 # ...within this many seconds, then 429 until the window passes
class PeerGuard:
    """Refused enrolment attempts per address in a sliding window (in RAM)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.failures: dict[str, list[float]] = {}
        self.throttled_since_entry: dict[str, tuple[float, int]] = {}

    def blocked_for(self, peer: str) -> float:
        now = time.monotonic()
        with self.lock:
            recent = [t for t in self.failures.get(peer, []) if now - t < PEER_WINDOW]
            self.failures[peer] = recent
            return PEER_WINDOW - (now - recent[0]) if len(recent) >= PEER_FAILURES else 0.0

    def failed(self, peer: str) -> None:
        with self.lock:
            self.failures.setdefault(peer, []).append(time.monotonic())

    def fold_throttled(self, peer: str) -> int | None:
        """Throttled attempts are audited once a minute per address: the count folded since, or None."""
        now = time.monotonic()
        with self.lock:
            last, folded = self.throttled_since_entry.get(peer, (-1e9, 0))
            if now - last < 60:
                self.throttled_since_entry[peer] = (last, folded + 1)
                return None
            self.throttled_since_entry[peer] = (now, 0)
            return folded


def refused(central, refusal: _Refusal, peer: str) -> None:
    central.enrolment_guard.failed(peer)
    central.audit.append("system", "camera.enrol_refused", target=refusal.camera or None,
                         refs={"invite": refusal.invite} if refusal.invite else None,
                         details={"kind": refusal.kind, "message": refusal.message, "peer": peer})
    log.warning("enrolment of %s from %s refused: %s", refusal.camera, peer, refusal.message)


def _enrol_work(central, camera: str, body: bytes, peer: str) -> tuple[int, dict | bytes]:
    guard = central.enrolment_guard
    wait = guard.blocked_for(peer)
    if wait:
        folded = guard.fold_throttled(peer)
        if folded is not None:
            central.audit.append("system", "camera.enrol_throttled", target=camera,
                                 details={"peer": peer, "similar_refusals_since_last_entry": folded})
        return 429, {"error": f"too many refused enrolment attempts from {peer}: try again in "
                              f"{int(wait // 60) + 1} minutes", "retry_after": int(wait) + 1}
    with central.decision_lock:
        try:
            answer = enrol_request(central, camera, body, peer)
        except _Refusal as e:
            refused(central, e, peer)
            return e.status, {"error": e.message, "kind": e.kind}
    return 200, seal_for_node(central, central.records.get("cameras", camera)["key"], answer)


def add_enrol_routes(app: web.Application, central) -> None:
    """`GET /v1/enrol/keys` and `POST /v1/enrol/<camera>` on the ingest port (the LAN)."""

    async def keys(_request: web.Request) -> web.Response:
        archive_key, live_key = central_keys(central)
        return web.json_response({"archive_key": archive_key.hex(), "live_key": live_key.hex()})

    async def enrol(request: web.Request) -> web.Response:
        if request.content_length is None:
            return web.json_response({"error": "Content-Length is required"}, status=411)
        if request.content_length > MAX_BODY:
            return web.json_response({"error": "enrolment request too large"}, status=413)
        body = await request.read()
        camera = request.match_info["camera"]
        if len(camera) > 40:
            return web.json_response({"error": "camera name too long"}, status=400)
        status, answer = await asyncio.to_thread(_enrol_work, central, camera, body, request.remote or "?")
        if isinstance(answer, bytes):
            return web.Response(body=answer, content_type="application/octet-stream")
        return web.json_response(answer, status=status)

    app.router.add_get(KEYS_PATH, keys)
    app.router.add_post(ENROL_ROUTE, enrol)


# --------------------------------------------------------------------------- the node's side
