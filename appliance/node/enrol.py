"""A flashed camera's first boot: enrol with the pairing code on its card.

The node makes its own Ed25519 key (it never leaves the node), fetches the central's
public keys and sends its key with the code, sealed to the central's live key and signed
by the new key. On the central's sealed answer it writes its identity, deletes the code
and logs the pairing fingerprint for IT to compare with the central's camera screen; a
refusal is logged in words and ends the process for good (exit 78), a central out of
reach is retried.
"""
from __future__ import annotations

import logging

import http.client
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.signing

from appliance.errors import ConfigError, EnrolmentRefused
from appliance.fsutil import atomic_write, fsync_dir
from appliance.formats.pairing import INVITE_FILE, KEYS_PATH, normalise_code, pairing_fingerprint

log = logging.getLogger("custodian.node.enrol")



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
    # Logged only once the central has accepted (enrol_if_needed): a refused camera has nothing to compare.
    fingerprint = pairing_fingerprint(node_key, bytes(archive_key), bytes(live_key))
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
    from appliance.node.identity import NodeIdentity

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
        except EnrolmentRefused as e:
            log.error("not enrolled: %s. The camera stops here (no pairing fingerprint to compare) until it has a "
                      "new pairing code: IT runs 'custodian camera invite %s' and re-flashes the card, or writes "
                      "the code to %s and restarts the node", e, camera, invite_path)
            raise
        if stop is not None and stop.wait(delay):
            return None
        if stop is None:
            time.sleep(delay)
        delay = min(delay * 2, 60.0)
    NodeIdentity.write_meta(data_dir, camera, keys["archive_key"], cfg.node.central_url, keys["live_key"])
    _forget(invite_path)
    log.warning("enrolled as camera %s with the central at %s; pairing fingerprint %s: IT compares it with the "
                "central's camera screen; placement %s: the camera records once the Director approves where it "
                "points (C6)", camera, cfg.node.central_url, enrolled.fingerprint, enrolled.status)
    return enrolled


def _forget(path: Path) -> None:
    """The pairing code is spent: no copy of it stays on the node."""
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)
