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
import signal
import subprocess
import sys
import time

import nacl.public
import nacl.signing
import pytest

from appliance.central.ingest import make_ingest_app
from appliance.custody.audit import verify_log
from appliance.node.enrol import enrol_if_needed
from conftest import add_people, _cheap_kdf, new_central
from test_enrolment import flashed_node, invite
from test_node_control import ServerThread

pytestmark = pytest.mark.slow

DIE_AFTER = {
    "the camera's record": """
real = enrolment.insert_new_camera
def insert_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
enrolment.insert_new_camera = insert_then_die
""",
    "its audit entry": """
real = central.audit.append
def append_then_die(actor, action, **kwargs):
    entry = real(actor, action, **kwargs)
    if action == "camera.enrol_by_code":
        os.kill(os.getpid(), signal.SIGKILL)
    return entry
central.audit.append = append_then_die
""",
}

CENTRAL_TO_KILL = """
import os, signal, sys
from pathlib import Path
from appliance import config
from appliance.central.daemon import Central
from appliance.rules import enrolment
data, body = Path(sys.argv[1]), Path(sys.argv[2]).read_bytes()
central = Central(config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0}}), data)
%s
enrolment.enrol_request(central, "entrance", body, "192.0.2.7")
sys.exit("the central was not killed: the enrolment went another way")
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

    killed = subprocess.run([sys.executable, "-c", CENTRAL_TO_KILL % DIE_AFTER[step], str(data), str(body)],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    central = new_central_again(data)
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


def new_central_again(data):
    from appliance import config
    from appliance.central.daemon import Central

    return Central(config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0}}), data)
