"""Enrolment by pairing code, at the API and over real HTTP on 127.0.0.1 (appliance/rules/enrolment.py).

The fingerprint is recomputed here from its specification (docs/node-protocol.md,
"Enrolment"), not taken from the code under test.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from datetime import timedelta
from pathlib import Path

import nacl.public
import nacl.signing
import pytest

from appliance import config
from appliance.formats.pairing import INVITE_FILE, code_hash, normalise_code
from appliance.node.enrol import enrol_if_needed
from appliance.errors import EnrolmentRefused
from appliance.node.identity import NodeIdentity
from appliance.node.control import ControlClient
from appliance.errors import Refused
from conftest import PEOPLE
from test_node_control import raw_request, server  # noqa: F401  (the served ingest app fixture)


def spec_fingerprint(node_key: bytes, central) -> str:
    digest = hashlib.sha256(b"custodian-pairing-v1" + node_key + bytes(central.keys.archive_public_key())
                            + bytes(central.keys.live_public_key())).hexdigest().upper()[:16]
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


def invite(people, camera="entrance", category="entrance", location="Main doors, facing in") -> dict:
    return people.call("ivy", "camera.invite", camera=camera, category=category, location=location)


def flashed_node(tmp_path: Path, url: str, name: str, code: str) -> tuple[config.Config, Path]:
    """What a flashed card holds after first boot's setup: its config and the code in its data directory."""
    data = tmp_path / "nodes" / name
    data.mkdir(parents=True)
    (data / INVITE_FILE).write_text(code + "\n")
    cfg = config.load(overrides={"node": {"name": name, "data_dir": str(data), "central_url": url}})
    return cfg, data


def refusals(central, kind: str | None = None) -> list[dict]:
    entries = central.audit.query(action_prefix="camera.enrol_refused")
    return [e for e in entries if kind is None or e["details"]["kind"] == kind]


def test_C6_invite_refuses_private_areas_and_reading_positions(central, people):
    with pytest.raises(Refused) as e:
        invite(people, "loo", "restroom", "Ground floor restroom")
    assert e.value.clause == "C6"
    with pytest.raises(Refused) as e:
        people.call("ivy", "camera.invite", camera="desks", category="seating", location="Reading tables",
                    reading_position=True)
    assert e.value.clause == "C6"
    assert central.records.all("invites") == []


def test_invite_keeps_only_a_hash_of_the_code_and_audits_without_it(central, people):
    result = invite(people)
    code = result["code"]
    assert len(code) == 14 and code.count("-") == 2
    stored = central.records.get("invites", result["invite"])
    assert stored["code_hash"] == hashlib.sha256(
        f"custodian-invite-v1\0entrance\0{code.replace('-', '')}".encode()).hexdigest()
    database = central.paths.records.read_text()
    assert code not in database and code.replace("-", "") not in database
    audit = (central.paths.audit / "audit.jsonl").read_text()
    assert code.replace("-", "") not in audit and code not in audit
    entry = central.audit.query(action_prefix="camera.invite")[-1]
    assert entry["actor"] == people.ids["ivy"] and entry["target"] == "entrance"
    assert stored["expires_at"] > stored["invited_at"]
    with pytest.raises(Refused):   # staff may not invite
        people.call("sam", "camera.invite", camera="x1", category="entrance", location="Main doors")


def test_code_typing_is_forgiving_but_exact():
    assert normalise_code("7k3q-9xwp-2dmf") == "7K3Q9XWP2DMF"
    assert normalise_code("OIL0 1111 2222") == "011011112222"
    assert code_hash("a", "7K3Q-9XWP-2DMF") != code_hash("b", "7K3Q-9XWP-2DMF")   # bound to the camera
    with pytest.raises(ValueError):
        normalise_code("7K3Q-9XWP")


def test_C6_camera_enrolled_by_code_awaits_placement_and_both_sides_show_one_fingerprint(tmp_path, central, people, server):
    code = invite(people)["code"]
    cfg, data = flashed_node(tmp_path, server.url, "entrance", code)
    enrolled = enrol_if_needed(cfg, data)
    node_key = bytes(nacl.signing.SigningKey((data / "node.key").read_bytes()).verify_key)
    fingerprint = spec_fingerprint(node_key, central)
    assert enrolled.fingerprint == fingerprint and enrolled.status == "pending_placement"
    cam = people.call("ivy", "camera.list")["cameras"][0]
    assert cam["id"] == "entrance" and cam["pairing_fingerprint"] == fingerprint
    assert cam["status"] == "pending_placement" and cam["key"] == node_key.hex()   # awaits the Director (C6)
    assert cam["location"] == "Main doors, facing in" and cam["category"] == "entrance"
    # The code is spent: gone from the node and from the central.
    assert not (data / INVITE_FILE).exists()
    spent = central.records.search("invites", camera="entrance")[0]
    assert spent["status"] == "spent" and spent["code_hash"] is None and spent["fingerprint"] == fingerprint
    entry = central.audit.query(action_prefix="camera.enrol_by_code")[-1]
    assert entry["details"]["fingerprint"] == fingerprint and entry["refs"]["invite"] == spent["id"]
    # The node holds the central's keys it was given and talks on the control channel.
    identity = NodeIdentity.load(data)
    assert bytes(identity.live_key) == bytes(central.keys.live_public_key())
    assert bytes(identity.archive_key) == bytes(central.keys.archive_public_key())
    assert ControlClient(identity).control()["status"] == "pending_placement"
    # A restart of the enrolled node does not enrol again.
    assert enrol_if_needed(cfg, data) is None


def test_reused_code_is_refused_with_an_audit_entry(tmp_path, central, people, server):
    code = invite(people)["code"]
    enrol_if_needed(*flashed_node(tmp_path / "a", server.url, "entrance", code))
    with pytest.raises(EnrolmentRefused, match="already used"):
        enrol_if_needed(*flashed_node(tmp_path / "b", server.url, "entrance", code))
    assert [e["details"]["kind"] for e in refusals(central)] == ["spent"]
    assert len(central.records.all("cameras")) == 1


def test_C6_one_node_key_enrols_one_camera_only(tmp_path, central, people, server):
    """A node key enrolled for one camera cannot enrol a second with that camera's own good code: the
    Director approves a placement from what a camera's key signs, so one key must be one camera (409
    key_in_use, audited, the second invitation left unspent)."""
    node = nacl.signing.SigningKey.generate()
    live = central.keys.live_public_key()

    def enrol(camera: str, code: str):
        doc = {"camera": camera, "node_key": bytes(node.verify_key).hex(), "code": code, "time": 1,
               "archive_key": bytes(central.keys.archive_public_key()).hex(), "live_key": bytes(live).hex()}
        sealed = nacl.public.SealedBox(live).encrypt(node.sign(json.dumps(doc).encode()))
        return raw_request(server.url, "POST", f"/v1/enrol/{camera}", {}, bytes(sealed))

    status, body = enrol("entrance", invite(people)["code"])
    assert status == 200, body
    status, body = enrol("side-door", invite(people, "side-door", "corridor", "Side door, facing out")["code"])
    assert status == 409 and "already enrolled for another camera" in body["error"]
    assert [e["details"]["kind"] for e in refusals(central)] == ["key_in_use"]
    assert [c["id"] for c in central.records.all("cameras")] == ["entrance"]
    assert central.records.search("invites", camera="side-door")[0]["status"] == "pending"


def test_expired_code_is_refused(tmp_path, central, people, server):
    code = invite(people)["code"]
    central.clock.offset += timedelta(hours=24, seconds=1)
    cfg, data = flashed_node(tmp_path, server.url, "entrance", code)
    with pytest.raises(EnrolmentRefused, match="expired"):
        enrol_if_needed(cfg, data)
    assert refusals(central, "expired") and central.records.all("cameras") == []
    assert central.records.search("invites", camera="entrance")[0]["code_hash"] is None
    assert (data / INVITE_FILE).exists()   # the node keeps what it was given: IT reads the refusal and re-flashes


def test_forged_codes_are_refused_and_five_cancel_the_invitation(tmp_path, central, people, server):
    real = invite(people)["code"]
    for attempt in range(5):
        forged = "0000-0000-000" + str(attempt)
        with pytest.raises(EnrolmentRefused, match="wrong pairing code"):
            enrol_if_needed(*flashed_node(tmp_path / str(attempt), server.url, "entrance", forged))
    assert len(refusals(central, "wrong_code")) == 5
    assert any(a["kind"] == "enrolment" for a in central.records.all("alerts"))
    # IT, whom the alert tells to issue a new invitation, sees it (it is about the system, not a person).
    assert "enrolment" in [a["kind"] for a in people.call("ivy", "alert.list")["alerts"]]
    # Cancelled: even the real code no longer works.
    with pytest.raises(EnrolmentRefused, match="cancelled"):
        enrol_if_needed(*flashed_node(tmp_path / "real", server.url, "entrance", real))
    # A code for a camera never invited.
    with pytest.raises(EnrolmentRefused, match="no invitation"):
        enrol_if_needed(*flashed_node(tmp_path / "other", server.url, "lobby", real))
    assert central.records.all("cameras") == []


def test_a_new_invitation_replaces_the_previous_code(tmp_path, central, people, server):
    first = invite(people)["code"]
    second = invite(people)["code"]
    with pytest.raises(EnrolmentRefused, match="replaced"):
        enrol_if_needed(*flashed_node(tmp_path / "a", server.url, "entrance", first))
    assert enrol_if_needed(*flashed_node(tmp_path / "b", server.url, "entrance", second)).status \
        == "pending_placement"


def test_requests_not_sealed_or_signed_as_specified_are_refused(tmp_path, central, people, server):
    code = invite(people)["code"]
    live = central.keys.live_public_key()
    status, body = raw_request(server.url, "POST", "/v1/enrol/entrance", {"Content-Length": "5"}, b"hello")
    assert status == 400 and "sealed" in body["error"]
    # Signed by another key than the one it carries.
    node, other = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    doc = {"camera": "entrance", "node_key": bytes(node.verify_key).hex(), "code": code, "time": 1,
           "archive_key": bytes(central.keys.archive_public_key()).hex(), "live_key": bytes(live).hex()}
    sealed = nacl.public.SealedBox(live).encrypt(other.sign(json.dumps(doc).encode()))
    status, body = raw_request(server.url, "POST", "/v1/enrol/entrance", {}, bytes(sealed))
    assert status == 400 and "signed" in body["error"]
    # Carrying other central keys than this central's (someone in between handed them out).
    doc["live_key"] = bytes(nacl.public.PrivateKey.generate().public_key).hex()
    sealed = nacl.public.SealedBox(live).encrypt(node.sign(json.dumps(doc).encode()))
    status, body = raw_request(server.url, "POST", "/v1/enrol/entrance", {}, bytes(sealed))
    assert status == 400 and "other public keys" in body["error"]
    assert [e["details"]["kind"] for e in refusals(central)] == ["forged", "forged", "other_keys"]
    # None of that touched the invitation: the real code still works.
    assert central.records.search("invites", camera="entrance")[0]["wrong_codes"] == 0


def test_guessing_from_one_address_is_rate_limited(tmp_path, central, people, server):
    invite(people)
    for _ in range(10):
        assert raw_request(server.url, "POST", "/v1/enrol/nobody", {}, b"x" * 80)[0] == 400
    status, body = raw_request(server.url, "POST", "/v1/enrol/nobody", {}, b"x" * 80)
    assert status == 429 and "too many" in body["error"]
    assert central.audit.query(action_prefix="camera.enrol_throttled")
    # Throttled attempts are folded: one audit entry a minute, not one each.
    for _ in range(5):
        raw_request(server.url, "POST", "/v1/enrol/nobody", {}, b"x" * 80)
    assert len(central.audit.query(action_prefix="camera.enrol_throttled")) == 1


def test_node_keeps_trying_while_the_central_is_unreachable(tmp_path, central, people):
    cfg, data = flashed_node(tmp_path, "http://127.0.0.1:9", "entrance", "7K3Q-9XWP-2DMF")
    stop = threading.Event()
    threading.Timer(2.5, stop.set).start()
    assert enrol_if_needed(cfg, data, stop) is None
    assert (data / "node.key").exists() and not (data / "node.json").exists() and (data / INVITE_FILE).exists()


def test_camera_invite_from_the_command_line(serving, central, people):
    from test_cli import cli

    people.login("ivy")
    sock = str(central.paths.data / "api.sock")
    env = {"CUSTODIAN_USER": "ivy", "CUSTODIAN_PASSPHRASE": PEOPLE["ivy"][1]}
    out = cli("camera", "invite", "lobby", "--category", "seating", "--location", "Lobby chairs", "--socket", sock,
              env=env)
    assert out.returncode == 0, out.stderr
    assert "pairing code for camera lobby:" in out.stdout and "flash.sh" in out.stdout
    code = out.stdout.split("lobby: ")[1].split()[0]
    assert central.records.search("invites", camera="lobby")[0]["code_hash"] == code_hash("lobby", code)
    refused = cli("camera", "invite", "loo", "--category", "restroom", "--location", "Ground floor", "--socket",
                  sock, env=env)
    assert refused.returncode == 2 and "C6" in refused.stderr


def test_a_deeply_nested_request_is_refused_audited_and_counted(tmp_path, central, people, server, caplog):
    # The live key is public (GET /v1/enrol/keys): anyone can seal a body to it. Before, json's
    # RecursionError escaped as a 500 with a traceback, unaudited and outside the rate limit.
    invite(people)
    node = nacl.signing.SigningKey.generate()
    nested = b"[" * 1900 + b"]" * 1900
    sealed = bytes(nacl.public.SealedBox(central.keys.live_public_key()).encrypt(node.sign(nested)))
    status, body = raw_request(server.url, "POST", "/v1/enrol/entrance", {}, sealed)
    assert status == 400 and body["kind"] == "forged", (status, body)
    assert [e["details"]["kind"] for e in refusals(central)] == ["forged"]
    assert len(central.enrolment_guard.failures[next(iter(central.enrolment_guard.failures))]) == 1
    assert not [r for r in caplog.records if r.exc_info]


def test_a_third_party_node_written_from_the_spec_enrols_with_raw_libsodium(tmp_path, central, people, server):
    """docs/node-protocol.md, "Enrolment", read as an outsider would: libsodium's own calls (no PyNaCl
    classes, nothing from appliance/), byte layouts as the text gives them, against a real central."""
    import time

    import nacl.bindings as sodium

    code = invite(people)["code"]
    status, keys = raw_request(server.url, "GET", "/v1/enrol/keys", {})
    assert status == 200 and set(keys) == {"archive_key", "live_key"}
    archive_key, live_key = bytes.fromhex(keys["archive_key"]), bytes.fromhex(keys["live_key"])
    node_pk, node_sk = sodium.crypto_sign_keypair()
    digest = hashlib.sha256(b"custodian-pairing-v1" + node_pk + archive_key + live_key).hexdigest()[:16].upper()
    fingerprint = "-".join(digest[i:i + 4] for i in range(0, 16, 4))
    request = {"camera": "entrance", "node_key": node_pk.hex(), "code": code, "archive_key": archive_key.hex(),
               "live_key": live_key.hex(), "time": time.time_ns() // 1000}
    signed = sodium.crypto_sign(json.dumps(request).encode(), node_sk)        # 64-byte signature, then the JSON
    assert len(signed) == 64 + len(json.dumps(request).encode())
    body = sodium.crypto_box_seal(signed, live_key)
    status, answer = raw_request(server.url, "POST", "/v1/enrol/entrance", {"Content-Length": str(len(body))}, body)
    assert status == 200, answer
    sealed = answer["raw"]                                                    # 24-byte nonce, then crypto_box
    opened = sodium.crypto_box_open(sealed[24:], sealed[:24], live_key,
                                    sodium.crypto_sign_ed25519_sk_to_curve25519(node_sk))
    assert json.loads(opened) == {"camera": "entrance", "status": "pending_placement", "fingerprint": fingerprint,
                                  "time": request["time"]}
    camera = central.records.get("cameras", "entrance")
    assert camera["key"] == node_pk.hex() and camera["pairing"]["fingerprint"] == fingerprint


FINGERPRINT = re.compile(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}")


def test_camera_added_by_key_closes_its_pending_invitation(tmp_path, central, people, server):
    """IT invited `entrance`, then enrolled it by hand with its key: the code is closed (audited), and a
    card still holding it hears that the camera was enrolled by key, not "wrong code" nor "already used"."""
    old_code = invite(people)["code"]
    other = invite(people, "side-door", "corridor", "Side door, facing out")
    key = bytes(nacl.signing.SigningKey.generate().verify_key).hex()
    people.call("ivy", "camera.enroll", camera="entrance", key=key, category="entrance",
                location="Main doors, facing in")
    closed = central.records.search("invites", camera="entrance")[0]
    assert closed["status"] == "enrolled_by_key" and closed["code_hash"] is None and closed["closed_at"]
    entry = central.audit.query(action_prefix="camera.invite_closed")[-1]
    assert entry["actor"] == people.ids["ivy"] and entry["target"] == "entrance"
    assert entry["refs"]["invite"] == closed["id"] and "enrolled by its key" in entry["details"]["reason"]
    # Only that camera's invitation: another camera's code stays open.
    assert central.records.get("invites", other["invite"])["status"] == "pending"
    assert len(central.audit.query(action_prefix="camera.invite_closed")) == 1

    with pytest.raises(EnrolmentRefused, match="camera entrance was enrolled by key"):
        enrol_if_needed(*flashed_node(tmp_path, server.url, "entrance", old_code))
    assert [e["details"]["kind"] for e in refusals(central)] == ["enrolled_by_key"]
    assert central.records.get("cameras", "entrance")["key"] == key          # the hand-enrolled key stays


def test_node_logs_the_fingerprint_to_compare_only_once_the_central_accepts(tmp_path, central, people, server,
                                                                            caplog):
    code = invite(people)["code"]
    caplog.set_level(logging.INFO, logger="custodian.node.enrol")
    # Refused (a wrong code): the log says why in words and shows no fingerprint.
    with pytest.raises(EnrolmentRefused):
        enrol_if_needed(*flashed_node(tmp_path / "wrong", server.url, "entrance", "0000-0000-0000"))
    node_said = lambda: [r.getMessage() for r in caplog.records if r.name == "custodian.node.enrol"]  # noqa: E731
    said = "\n".join(node_said())
    assert "not enrolled: the central refused to enrol camera entrance: wrong pairing code" in said
    assert "no pairing fingerprint to compare" in said and "camera invite entrance" in said
    assert not FINGERPRINT.search(said)
    caplog.clear()
    # Accepted: one line gives the fingerprint to compare, and it is the central's.
    enrol_if_needed(*flashed_node(tmp_path / "right", server.url, "entrance", code))
    lines = [m for m in node_said() if FINGERPRINT.search(m)]
    assert len(lines) == 1 and "enrolled as camera entrance" in lines[0] and "IT compares it" in lines[0]
    shown = people.call("ivy", "camera.list")["cameras"][0]["pairing_fingerprint"]
    assert FINGERPRINT.search(lines[0]).group(0) == shown
