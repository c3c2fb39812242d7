"""Enrolment by pairing code: a flashed camera joins the central without keys typed by hand.

IT asks the central for an invitation (`camera.invite`: the camera's name, category
and location, checked as `camera.enroll` checks them, C6) and gets a one-time code,
valid for 24 hours, stored on the central only as a hash. `flash.sh --invite CODE`
puts the code on the card. At first boot the node makes its own Ed25519 key (it never
leaves the node), fetches the central's public keys, and sends its public key with the
code, sealed to the central's live key and signed by the new key. The central checks
the code, enrols the camera (`pending_placement`: it records nothing until the
Director approves its placement, C6), spends the code and answers, sealed to the node.

Both sides show the same pairing fingerprint, derived from the node's key and the
central's two keys: a machine in between that handed the node other keys, or the
central another node key, shows up as two different fingerprints for IT to see.

Refusals (each audited): no invitation, a spent, replaced or expired code, a wrong
code (five per invitation, then the invitation is cancelled and the Director
alerted), a request that is not sealed or signed as it should be. Guessing is rate
limited per address. The protocol: docs/node-protocol.md, "Enrolment".
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.signing
from aiohttp import web

from appliance.rules.cameras import _camera_id, _check_category, insert_new_camera, read_place
from appliance.errors import ConfigError, EnrolmentRefused
from appliance.fsutil import atomic_write, fsync_dir
from appliance.central.node_channel import seal_for_node
from appliance.rules.registry import Refused, iso, op, parse_iso
from appliance.custody.records import valid_id
from appliance.wording import when

log = logging.getLogger("custodian.enrolment")

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"   # Crockford's base 32: no I, L, O, U
CODE_LENGTH = 12                                     # 60 bits, shown as XXXX-XXXX-XXXX
INVITE_VALID = timedelta(hours=24)
WRONG_CODES_PER_INVITE = 5          # then the invitation is cancelled: guessing 60 bits 5 times is hopeless
PEER_FAILURES = 10                  # refused attempts from one address...
PEER_WINDOW = 600.0                 # ...within this many seconds, then 429 until the window passes
MAX_BODY = 4096
INVITE_FILE = "invite"              # in the node's data directory; setup moves it there from the card
KEYS_PATH = "/v1/enrol/keys"
ENROL_ROUTE = "/v1/enrol/{camera}"


class _Refusal(Exception):
    def __init__(self, status: int, kind: str, message: str, camera: str = "", invite: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.camera, self.invite = status, kind, message, camera, invite


# --------------------------------------------------------------------------- codes and fingerprints


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(text: str) -> str:
    """What IT typed, as the central hashes it: case, dashes and spaces do not matter,
    and the letters people confuse with digits read as those digits."""
    cleaned = str(text).upper().replace("-", "").replace(" ", "").translate(str.maketrans("OIL", "011"))
    if len(cleaned) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in cleaned):
        raise ValueError(f"a pairing code is {CODE_LENGTH} letters and digits, like 7K3Q-9XWP-2DMF")
    return cleaned


def format_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def code_hash(camera: str, code: str) -> str:
    """How the central keeps a code: bound to the camera's name, never the code itself."""
    return hashlib.sha256(f"custodian-invite-v1\0{camera}\0{normalise_code(code)}".encode()).hexdigest()


def pairing_fingerprint(node_key: bytes, archive_key: bytes, live_key: bytes) -> str:
    """64 bits of SHA-256 over the node's key and the central's two keys, as XXXX-XXXX-XXXX-XXXX."""
    digest = hashlib.sha256(b"custodian-pairing-v1" + node_key + archive_key + live_key).hexdigest()[:16].upper()
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


# --------------------------------------------------------------------------- the operation (IT)


@op("camera.invite", ("director", "it"))
def invite(central, caller, args):
    """Invite a camera: a one-time pairing code, valid 24 hours, for flash.sh --invite (C6 checks first)."""
    camera = _camera_id(args)
    category, location, reading_position = read_place(args)
    args.done()
    _check_category(category, reading_position)
    if central.records.get("cameras", camera) is not None:
        raise Refused(f"camera {camera!r} is already enrolled (a retired camera's name is never reused)")
    now = central.now()
    replaced = [i for i in central.records.search("invites", camera=camera) if i["status"] == "pending"]
    for old in replaced:
        # Its hash stays (it opens nothing now) so that the old card hears "replaced", not "wrong".
        central.records.update("invites", old["id"], {"status": "replaced", "closed_at": iso(now)})
    code = new_code()
    doc = {"camera": camera, "category": category, "location": location, "code_hash": code_hash(camera, code),
           "status": "pending", "invited_by": caller.user_id, "invited_at": iso(now),
           "expires_at": iso(now + INVITE_VALID), "wrong_codes": 0, "closed_at": None,
           "node_key": None, "fingerprint": None}
    invite_id = central.records.insert("invites", doc)
    central.audit.append(caller.user_id, "camera.invite", role=caller.role, target=camera,
                         refs={"invite": invite_id},
                         details={"category": category, "location": location, "expires_at": doc["expires_at"],
                                  "replaced": [old["id"] for old in replaced]})
    return {"invite": invite_id, "camera": camera, "code": format_code(code), "expires_at": doc["expires_at"],
            "next": f"./flash.sh --role camera --name {camera} --invite {format_code(code)} ..."}


# --------------------------------------------------------------------------- the central's side


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


_guard_lock = threading.Lock()


def guard_for(central) -> PeerGuard:
    with _guard_lock:
        return central.services.setdefault("enrolment", PeerGuard())


def central_keys(central) -> tuple[bytes, bytes]:
    return bytes(central.keys.archive_public_key()), bytes(central.keys.live_public_key())


def open_request(central, camera: str, body: bytes) -> dict:
    """The node's request, opened with the live key and checked against the key it names."""
    try:
        signed = nacl.public.SealedBox(central.keys.live_key()).decrypt(body)
    except nacl.exceptions.CryptoError:
        raise _Refusal(400, "forged", "the enrolment request is not sealed to this central's live key",
                       camera) from None
    try:
        doc = json.loads(signed[64:])
        node_key = nacl.signing.VerifyKey(bytes.fromhex(doc["node_key"]))
        node_key.verify(signed)
    except (ValueError, KeyError, TypeError, nacl.exceptions.CryptoError):
        raise _Refusal(400, "forged", "the enrolment request is not signed by the key it carries", camera) from None
    if doc.get("camera") != camera:
        raise _Refusal(400, "forged", "the enrolment request names another camera than its path", camera)
    archive_key, live_key = central_keys(central)
    if (doc.get("archive_key"), doc.get("live_key")) != (archive_key.hex(), live_key.hex()):
        raise _Refusal(400, "other_keys", "the node was given other public keys than this central's: "
                       "check for a machine in between on the LAN", camera)
    if not isinstance(doc.get("time"), int) or not isinstance(doc.get("code"), str):
        raise _Refusal(400, "forged", "the enrolment request lacks its code or time", camera)
    return doc


def current_invite(central, camera: str) -> dict | None:
    invites = central.records.search("invites", camera=camera)
    return max(invites, key=lambda i: i["invited_at"]) if invites else None


def check_code(central, camera: str, code: str) -> dict:
    """The camera's pending invitation if `code` is its code; otherwise a _Refusal (a wrong guess counted)."""
    inv = current_invite(central, camera)
    if inv is None:
        raise _Refusal(403, "no_invitation", f"there is no invitation for camera {camera}: IT issues one with "
                       "'custodian camera invite'", camera)
    if inv["status"] == "spent":
        raise _Refusal(410, "spent", f"this pairing code was already used (camera {camera} enrolled at "
                       f"{when(inv['closed_at'])}): each code enrols one node once", camera, inv["id"])
    if inv["status"] in ("replaced", "cancelled"):
        raise _Refusal(410, inv["status"], f"the invitation for camera {camera} was {inv['status']} at "
                       f"{when(inv['closed_at'])}: ask IT for the current code", camera, inv["id"])
    now = central.now()
    if now >= parse_iso(inv["expires_at"]):
        central.records.update("invites", inv["id"], {"status": "expired", "code_hash": None, "closed_at": iso(now)})
        raise _Refusal(410, "expired", f"the pairing code for camera {camera} expired at {when(inv['expires_at'])}: "
                       "IT issues a new one with 'custodian camera invite'", camera, inv["id"])
    if inv["status"] == "expired":
        raise _Refusal(410, "expired", f"the pairing code for camera {camera} expired at {when(inv['expires_at'])}",
                       camera, inv["id"])
    try:
        given = code_hash(camera, code)
    except ValueError:
        given = ""
    if not hmac.compare_digest(given, inv["code_hash"] or "-"):
        for old in central.records.search("invites", camera=camera, status="replaced"):
            if hmac.compare_digest(given, old["code_hash"] or "-"):
                raise _Refusal(410, "replaced", f"this pairing code for camera {camera} was replaced by a newer "
                               f"invitation at {old['closed_at']}: flash the card with the new code", camera,
                               old["id"])
        wrong = inv["wrong_codes"] + 1
        if wrong >= WRONG_CODES_PER_INVITE:
            central.records.update("invites", inv["id"], {"wrong_codes": wrong, "status": "cancelled",
                                                          "code_hash": None, "closed_at": iso(now)})
            central.alert("enrolment", f"the invitation for camera {camera} was cancelled after {wrong} wrong "
                          "pairing codes: someone may be guessing. IT issues a new one.", camera=camera)
            raise _Refusal(403, "wrong_code", f"wrong pairing code for camera {camera}: that was the last "
                           "attempt, the invitation is cancelled", camera, inv["id"])
        central.records.update("invites", inv["id"], {"wrong_codes": wrong})
        raise _Refusal(403, "wrong_code", f"wrong pairing code for camera {camera} "
                       f"({WRONG_CODES_PER_INVITE - wrong} attempts left)", camera, inv["id"])
    return inv


def enrol_request(central, camera: str, body: bytes, peer: str) -> dict:
    """Runs under the policy lock: check everything, then enrol and spend the code. Returns the answer."""
    if not valid_id(camera):
        raise _Refusal(400, "forged", "the path does not name a camera")
    doc = open_request(central, camera, body)
    node_key = doc["node_key"].lower()
    archive_key, live_key = central_keys(central)
    fingerprint = pairing_fingerprint(bytes.fromhex(node_key), archive_key, live_key)
    cam = central.records.get("cameras", camera)
    if cam is not None and cam["key"] == node_key:
        # The same node asking again (its answer was lost): only it holds this key's secret half.
        return {"camera": camera, "status": cam["status"], "fingerprint": fingerprint, "time": doc["time"]}
    inv = check_code(central, camera, doc["code"])
    if cam is not None:
        raise _Refusal(409, "enrolled", f"camera {camera} is already enrolled with another node key", camera,
                       inv["id"])
    if central.records.search("cameras", key=node_key):
        raise _Refusal(409, "key_in_use", "this node key is already enrolled for another camera", camera, inv["id"])
    now = iso(central.now())
    pairing = {"fingerprint": fingerprint, "invite": inv["id"], "enrolled_at": now, "peer": peer}
    insert_new_camera(central, camera, node_key, inv["category"], inv["location"], inv["invited_by"],
                      pairing=pairing)
    central.records.update("invites", inv["id"], {"status": "spent", "code_hash": None, "closed_at": now,
                                                  "node_key": node_key, "fingerprint": fingerprint})
    central.audit.append("system", "camera.enrol_by_code", target=camera, refs={"invite": inv["id"]},
                         details={"category": inv["category"], "location": inv["location"], "key": node_key,
                                  "fingerprint": fingerprint, "invited_by": inv["invited_by"], "peer": peer})
    log.warning("camera %s enrolled by pairing code from %s; pairing fingerprint %s", camera, peer, fingerprint)
    return {"camera": camera, "status": "pending_placement", "fingerprint": fingerprint, "time": doc["time"]}


def refused(central, refusal: _Refusal, peer: str) -> None:
    guard_for(central).failed(peer)
    central.audit.append("system", "camera.enrol_refused", target=refusal.camera or None,
                         refs={"invite": refusal.invite} if refusal.invite else None,
                         details={"kind": refusal.kind, "message": refusal.message, "peer": peer})
    log.warning("enrolment of %s from %s refused: %s", refusal.camera, peer, refusal.message)


def _enrol_work(central, camera: str, body: bytes, peer: str) -> tuple[int, dict | bytes]:
    guard = guard_for(central)
    wait = guard.blocked_for(peer)
    if wait:
        folded = guard.fold_throttled(peer)
        if folded is not None:
            central.audit.append("system", "camera.enrol_throttled", target=camera,
                                 details={"peer": peer, "similar_refusals_since_last_entry": folded})
        return 429, {"error": f"too many refused enrolment attempts from {peer}: try again in "
                              f"{int(wait // 60) + 1} minutes", "retry_after": int(wait) + 1}
    with central.policy_lock:
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


@dataclass
class Enrolled:
    camera: str
    fingerprint: str
    status: str


def _http(url: str, method: str, path: str, body: bytes | None = None, timeout: float = 15.0):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(64 * 1024)
    finally:
        conn.close()


def _error_of(answer: bytes) -> str:
    try:
        return str(json.loads(answer).get("error", ""))[:300]
    except (ValueError, AttributeError):
        return answer[:300].decode(errors="replace")


class _TryLater(Exception):
    pass


def enrol_once(central_url: str, camera: str, signing_key: nacl.signing.SigningKey, code: str) -> tuple[Enrolled, dict]:
    """One attempt: fetch the central's keys, send the sealed, signed request, open the answer.

    Returns (what was agreed, the central's keys); raises EnrolmentRefused (for good) or _TryLater.
    """
    try:
        status, answer = _http(central_url, "GET", KEYS_PATH)
        if status != 200:
            raise _TryLater(f"the central answered {status} for its keys")
        keys = json.loads(answer)
        archive_key = nacl.public.PublicKey(bytes.fromhex(keys["archive_key"]))
        live_key = nacl.public.PublicKey(bytes.fromhex(keys["live_key"]))
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError, nacl.exceptions.CryptoError) as e:
        raise _TryLater(f"cannot fetch the central's keys from {central_url}: {e}") from None
    node_key = bytes(signing_key.verify_key)
    fingerprint = pairing_fingerprint(node_key, bytes(archive_key), bytes(live_key))
    log.warning("pairing fingerprint %s (camera %s): IT compares it with the central's camera screen",
                fingerprint, camera)
    time_us = time.time_ns() // 1000
    request = {"camera": camera, "node_key": node_key.hex(), "code": code, "archive_key": bytes(archive_key).hex(),
               "live_key": bytes(live_key).hex(), "time": time_us}
    sealed = nacl.public.SealedBox(live_key).encrypt(signing_key.sign(json.dumps(request).encode()))
    try:
        status, answer = _http(central_url, "POST", f"/v1/enrol/{urllib.parse.quote(camera, safe='')}",
                               bytes(sealed))
    except (OSError, http.client.HTTPException) as e:
        raise _TryLater(f"cannot reach the central at {central_url}: {e}") from None
    if status in (400, 403, 409, 410):
        raise EnrolmentRefused(f"the central refused to enrol camera {camera}: {_error_of(answer)}")
    if status != 200:
        raise _TryLater(f"the central answered {status}: {_error_of(answer)}")
    try:
        box = nacl.public.Box(signing_key.to_curve25519_private_key(), live_key)
        doc = json.loads(box.decrypt(answer))
    except (nacl.exceptions.CryptoError, ValueError):
        raise _TryLater("the central's answer is not sealed by its live key to this node") from None
    if doc.get("time") != time_us or doc.get("fingerprint") != fingerprint or doc.get("camera") != camera:
        raise _TryLater("the central's answer does not match this request")
    return Enrolled(camera, fingerprint, str(doc.get("status"))), {"archive_key": bytes(archive_key).hex(),
                                                                   "live_key": bytes(live_key).hex()}


def enrol_if_needed(cfg, data_dir: Path, stop: threading.Event | None = None, notifier=None) -> Enrolled | None:
    """First boot of a flashed camera: enrol with the pairing code in <data>/invite, then forget it.

    Does nothing (but remove a leftover code) when the node already has an identity.
    Retries while the central cannot be reached; raises EnrolmentRefused when it says no.
    """
    from appliance.node.recorder import NodeIdentity

    data_dir = Path(data_dir)
    invite_path = data_dir / INVITE_FILE
    if (data_dir / "node.json").exists():
        _forget(invite_path)
        return None
    try:
        code = normalise_code(invite_path.read_text().strip())
    except FileNotFoundError:
        raise ConfigError(f"{data_dir} holds no node identity and no pairing code ({invite_path}): flash the card "
                          "with 'flash.sh --invite CODE', or set the node up by hand with 'custodian node init'") \
            from None
    except ValueError as e:
        raise EnrolmentRefused(f"{invite_path}: {e}") from None
    if not cfg.node.central_url:
        raise ConfigError("[node] central_url is not set: the node does not know where the central is")
    key_path = data_dir / "node.key"
    if key_path.exists():
        signing_key = nacl.signing.SigningKey(key_path.read_bytes())   # an attempt before a power cut
    else:
        signing_key = nacl.signing.SigningKey.generate()
        atomic_write(key_path, bytes(signing_key), mode=0o600)
    camera = cfg.node.name
    delay = 2.0
    while True:
        if notifier is not None:   # systemd: starting takes as long as the central takes to answer
            notifier.notify(f"EXTEND_TIMEOUT_USEC={int((delay + 60) * 1e6)}\nSTATUS=enrolling with {cfg.node.central_url}")
        try:
            enrolled, keys = enrol_once(cfg.node.central_url, camera, signing_key, code)
            break
        except _TryLater as e:
            log.warning("enrolment: %s; trying again in %.0f s", e, delay)
        if stop is not None and stop.wait(delay):
            return None
        if stop is None:
            time.sleep(delay)
        delay = min(delay * 2, 60.0)
    NodeIdentity.write_meta(data_dir, camera, keys["archive_key"], cfg.node.central_url, keys["live_key"])
    _forget(invite_path)
    log.warning("enrolled as camera %s with the central at %s; pairing fingerprint %s; placement %s: the camera "
                "records once the Director approves where it points (C6)", camera, cfg.node.central_url,
                enrolled.fingerprint, enrolled.status)
    return enrolled


def _forget(path: Path) -> None:
    """The pairing code is spent: no copy of it stays on the node."""
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)
