"""Enrolment by pairing code, the rules' side (C6): invitations and checking a code.

IT asks for an invitation (`camera.invite`: the camera's name, category and location,
checked as `camera.enroll` checks them) and gets a one-time code, valid for 24 hours,
kept only as a hash. When a node sends its new public key with the code
(`central/enrolment.py` takes the request off the LAN), `enrol_request` opens and checks
it, enrols the camera (`pending_placement`: it records nothing until the Director
approves its placement, C6) and spends the code. Refusals: no invitation, a spent,
replaced or expired code, a code closed because the camera was enrolled by key, a wrong code (five per invitation, then it is cancelled and
the Director alerted), a request not sealed or signed as it should be.
"""
from __future__ import annotations

import functools
import hmac
import json
import logging
import re
import secrets
from datetime import timedelta

import nacl.exceptions
import nacl.public
import nacl.signing

from appliance.background import every
from appliance.rules.cameras import _camera_id, _check_category, insert_new_camera, read_place
from appliance.errors import Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import DIRECTOR_OR_IT, iso, op, parse_iso
from appliance.custody.records import valid_id
from appliance.wording import when
from appliance.formats.pairing import CODE_ALPHABET, CODE_LENGTH, code_hash, format_code, pairing_fingerprint





log = logging.getLogger("custodian.enrolment")

INVITE_VALID = timedelta(hours=24)
ENROLMENT_CHECK_SECONDS = 3600    # finishing enrolments a crash cut short: at start, then hourly
WRONG_CODES_PER_INVITE = 5          # then the invitation is cancelled: guessing 60 bits 5 times is hopeless
class _Refusal(Exception):
    def __init__(self, status: int, kind: str, message: str, camera: str = "", invite: str | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.camera, self.invite = status, kind, message, camera, invite


# --------------------------------------------------------------------------- codes and fingerprints


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@op("camera.invite", DIRECTOR_OR_IT,
    labels={"camera": "Camera name", "category": "Kind of place", "location": "Location",
            "reading_position": "Shows what people read"})
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
    audit_action(central, caller, "camera.invite", target=camera, refs={"invite": invite_id},
                 details={"category": category, "location": location, "expires_at": doc["expires_at"],
                                  "replaced": [old["id"] for old in replaced]})
    return {"invite": invite_id, "camera": camera, "code": format_code(code), "expires_at": doc["expires_at"],
            "next": f"./flash.sh --role camera --name {camera} --invite {format_code(code)} ..."}


# --------------------------------------------------------------------------- the central's side


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
        if not isinstance(doc, dict) or not isinstance(doc.get("node_key"), str) \
                or not re.fullmatch(r"[0-9a-f]{64}", doc["node_key"]):
            raise ValueError("no node_key of 64 lower-case hex digits")
        node_key = nacl.signing.VerifyKey(bytes.fromhex(doc["node_key"]))
        node_key.verify(signed)
    except (ValueError, KeyError, TypeError, RecursionError, nacl.exceptions.CryptoError):
        # RecursionError: a body nested thousands deep, which anyone can seal to the public live key.
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
    if inv["status"] == "enrolled_by_key":
        raise _Refusal(410, "enrolled_by_key", f"camera {camera} was enrolled by key (custodian camera add) at "
                       f"{when(inv['closed_at'])}: its pairing code was closed then and enrols nothing", camera,
                       inv["id"])
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
    """Runs under the decision lock: check everything, then enrol and spend the code. Returns the answer."""
    if not valid_id(camera):
        raise _Refusal(400, "forged", "the path does not name a camera")
    doc = open_request(central, camera, body)
    node_key = doc["node_key"]
    archive_key, live_key = central_keys(central)
    fingerprint = pairing_fingerprint(bytes.fromhex(node_key), archive_key, live_key)
    cam = central.records.get("cameras", camera)
    if cam is not None and cam["key"] == node_key:
        # The same node asking again (its answer was lost): only it holds this key's secret half.
        # A central killed in the middle of enrolling it finishes now what it had not written.
        _finish_enrolment(central, cam, resumed=True)
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
    _finish_enrolment(central, central.records.get("cameras", camera))
    log.warning("camera %s enrolled by pairing code from %s; pairing fingerprint %s", camera, peer, fingerprint)
    return {"camera": camera, "status": "pending_placement", "fingerprint": fingerprint, "time": doc["time"]}


def _finish_enrolment(central, cam: dict, resumed: bool = False) -> None:
    """After the camera's record (which names its invitation): its audit entry, then its code spent,
    which marks the enrolment done. A central killed between these steps finishes them when the node
    asks again (it got no answer, so it does): the enrolment is audited once and its code spent."""
    pairing = cam.get("pairing") or {}
    inv = pairing.get("invite") and central.records.get("invites", pairing["invite"])
    if not inv or inv["status"] == "spent":
        return
    camera = cam["id"]
    # Resumed: the central may have died after the entry (the log is read only then: a rare retry).
    written = resumed and any(e["target"] == camera and e["refs"].get("invite") == inv["id"]
                              for e in central.audit.query(action_prefix="camera.enrol_by_code"))
    if not written:
        central.audit.append("system", "camera.enrol_by_code", target=camera, refs={"invite": inv["id"]},
                             details={"category": cam["category"], "location": cam["location"], "key": cam["key"],
                                      "fingerprint": pairing["fingerprint"], "invited_by": inv["invited_by"],
                                      "peer": pairing["peer"]})
    central.records.update("invites", inv["id"], {"status": "spent", "code_hash": None,
                                                  "closed_at": pairing["enrolled_at"], "node_key": cam["key"],
                                                  "fingerprint": pairing["fingerprint"]})


def finish_interrupted_enrolments(central) -> list[str]:
    """Cameras enrolled by code whose enrolment a crash cut short (their code not spent): audit and
    spend it now, as the node's retry would (it may never come: a node unplugged for good)."""
    finished = []
    for cam in central.records.all("cameras"):
        invite_id = (cam.get("pairing") or {}).get("invite")
        inv = invite_id and central.records.get("invites", invite_id)
        if inv and inv["status"] != "spent":
            _finish_enrolment(central, cam, resumed=True)
            finished.append(cam["id"])
    return finished


def periodic(central):
    """At start (and hourly, which costs a scan of the cameras): enrolments a crash cut short."""
    return [every(ENROLMENT_CHECK_SECONDS, functools.partial(finish_interrupted_enrolments, central),
                  name="finishing interrupted enrolments", lock=central.decision_lock)]
