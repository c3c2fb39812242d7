"""A central killed (SIGKILL) in the middle of enrolling a camera by pairing code.

The enrolment writes three things: the camera's record, its `camera.enrol_by_code` audit
entry, and the spent code. A real central process is killed right after each of the
first two, as a power cut would leave it; then a central started again on the same
files answers the node's retry (the node got no answer, so it asks again, with the same
key, as `appliance/node/enrol.py` does). What must hold: the camera is enrolled once,
its enrolment is in the audit log once (a breach inquiry asks who let a camera in, C22),
its code is spent, and the log verifies.
"""
from __future__ import annotations

import json
import time

import nacl.public
import nacl.signing
import pytest

from appliance.central.ingest import make_ingest_app
from appliance.custody.audit import verify_log
from appliance.node.enrol import enrol_if_needed
from appliance.rules import enrolment
from conftest import add_people, _cheap_kdf, new_central
from crash_points import after_audit_entry, after_record, central_again, kill_central_at
from test_enrolment import flashed_node, invite
from test_node_control import ServerThread

pytestmark = pytest.mark.slow

DIE_AFTER = {"the camera's record": after_record("cameras"),
             "its audit entry": after_audit_entry("camera.enrol_by_code")}
ENROL = """
from appliance.rules import enrolment
enrolment.enrol_request(central, "entrance", Path(sys.argv[2]).read_bytes(), "192.0.2.7")
"""


def first_request(central, signing_key: nacl.signing.SigningKey, code: str) -> bytes:
    """The node's first attempt as appliance/node/enrol.py sends it: the one the central dies on."""
    live = central.keys.live_public_key()
    doc = {"camera": "entrance", "node_key": bytes(signing_key.verify_key).hex(), "code": code,
           "archive_key": bytes(central.keys.archive_public_key()).hex(), "live_key": bytes(live).hex(),
           "time": time.time_ns() // 1000}
    return bytes(nacl.public.SealedBox(live).encrypt(signing_key.sign(json.dumps(doc).encode())))


@pytest.mark.parametrize("step", list(DIE_AFTER))
def test_a_central_killed_mid_enrolment_finishes_it_when_the_node_asks_again(tmp_path, monkeypatch, step):
    _cheap_kdf(monkeypatch)
    data = tmp_path / "central"
    central = new_central(data)
    people = add_people(central)
    code = invite(people)["code"]
    cfg, node_data = flashed_node(tmp_path, "http://127.0.0.1:9", "entrance", code)
    node_key = nacl.signing.SigningKey.generate()
    (node_data / "node.key").write_bytes(bytes(node_key))     # written before its first attempt
    body = tmp_path / "request"
    body.write_bytes(first_request(central, node_key, code))
    central.close()

    kill_central_at(data, DIE_AFTER[step], ENROL, str(body))

    central = central_again(data)
    server = ServerThread(lambda: make_ingest_app(central))
    try:
        cfg.node.central_url = server.url
        enrolled = enrol_if_needed(cfg, node_data)
        assert enrolled.status == "pending_placement"
        [camera] = central.records.all("cameras")
        assert camera["key"] == bytes(node_key.verify_key).hex() and camera["status"] == "pending_placement"
        [spent] = central.records.search("invites", camera="entrance")
        assert spent["status"] == "spent" and spent["code_hash"] is None
        assert spent["fingerprint"] == enrolled.fingerprint
        [entry] = central.audit.query(action_prefix="camera.enrol_by_code")
        assert entry["target"] == "entrance" and entry["refs"] == {"invite": spent["id"]}
        assert entry["details"]["fingerprint"] == enrolled.fingerprint
        assert entry["details"]["invited_by"] == people.ids["ivy"]
        report = verify_log(central.paths.audit, central.keys.verify_key())
        assert report.ok, str(report)
    finally:
        server.stop()
        central.close()


def test_a_central_killed_mid_enrolment_finishes_it_at_start_when_the_node_never_asks_again(tmp_path, monkeypatch):
    """The node may never ask again (unplugged for good): the central's own check, run at start, audits
    the enrolment a kill left unaudited and spends its code, once."""
    _cheap_kdf(monkeypatch)
    data = tmp_path / "central"
    central = new_central(data)
    code = invite(add_people(central))["code"]
    body = tmp_path / "request"
    body.write_bytes(first_request(central, nacl.signing.SigningKey.generate(), code))
    central.close()
    kill_central_at(data, DIE_AFTER["the camera's record"], ENROL, str(body))

    central = central_again(data)
    try:
        assert central.audit.query(action_prefix="camera.enrol_by_code") == []          # what the kill left
        enrolment.finish_interrupted_enrolments(central)                                # the check run at start
        enrolment.finish_interrupted_enrolments(central)                                # again: nothing more
        [entry] = central.audit.query(action_prefix="camera.enrol_by_code")
        [spent] = central.records.search("invites", camera="entrance")
        assert entry["target"] == "entrance" and spent["status"] == "spent" and spent["code_hash"] is None
        assert verify_log(central.paths.audit, central.keys.verify_key()).ok
    finally:
        central.close()
