"""The node deletes a spooled segment only on the central's sealed receipt for exactly that segment."""
from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import threading
import time

import nacl.public
import pytest

from appliance.config import Config
from appliance.node.identity import NodeIdentity
from appliance.node.recorder import Recorder
from appliance.node.spool import Spool
from appliance.node.uploader import Uploader, _RetryLater
from hw.backend import Frame


class Impostor(http.server.BaseHTTPRequestHandler):
    """Something on the LAN pretending to be the central: answers every upload with 201."""

    answer: dict = {"status": "stored"}

    def do_PUT(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(self.answer).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def impostor():
    server = http.server.HTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def node_with_a_segment(tmp_path, url):
    live = nacl.public.PrivateKey.generate()
    archive = nacl.public.PrivateKey.generate()
    identity = NodeIdentity.init(tmp_path / "node", "cam-1", bytes(archive.public_key).hex(), url,
                                 live_key_hex=bytes(live.public_key).hex())
    cfg = Config()
    spool = Spool(tmp_path / "node" / "spool", 10**9)
    sink = Recorder(identity, cfg, spool).open_segment()
    for i in range(5):
        sink.write_frame(Frame(os.urandom(2000), i == 0, i * 40_000))
    sink.close()
    return identity, cfg, spool, live


def test_an_unsealed_acknowledgement_deletes_nothing(tmp_path, impostor):
    identity, cfg, spool, _live = node_with_a_segment(tmp_path, f"http://127.0.0.1:{impostor.server_port}")
    uploader = Uploader(spool, identity, cfg)
    with pytest.raises(_RetryLater, match="receipt"):
        uploader._send(spool.finished()[0])
    assert len(spool.finished()) == 1


def test_a_receipt_for_another_segment_deletes_nothing(tmp_path, impostor):
    identity, cfg, spool, live = node_with_a_segment(tmp_path, f"http://127.0.0.1:{impostor.server_port}")
    node_key = identity.signing_key.verify_key.to_curve25519_public_key()
    replayed = {"camera": "cam-1", "seq": 0, "digest": "00" * 32, "status": "stored", "audit_head": None}
    Impostor.answer = {"receipt": base64.b64encode(
        bytes(nacl.public.Box(live, node_key).encrypt(json.dumps(replayed).encode()))).decode()}
    try:
        with pytest.raises(_RetryLater, match="another segment"):
            Uploader(spool, identity, cfg)._send(spool.finished()[0])
    finally:
        Impostor.answer = {"status": "stored"}
    assert len(spool.finished()) == 1


class Garbler(http.server.BaseHTTPRequestHandler):
    """Something on the LAN answering uploads with JSON that is not an object, then, once told, as the central."""

    status, body, receipt_key, answered = 201, b"[]", None, 0

    def do_PUT(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        Garbler.answered += 1
        body, status = Garbler.body, Garbler.status
        if Garbler.receipt_key is not None:
            live, node_key = Garbler.receipt_key
            seq = int(self.path.rsplit("/", 1)[1])
            receipt = {"camera": "cam-1", "seq": seq, "digest": hashlib.sha256(data).hexdigest(),
                       "status": "stored", "audit_head": None}
            body, status = json.dumps({"status": "stored", "receipt": base64.b64encode(bytes(
                nacl.public.Box(live, node_key).encrypt(json.dumps(receipt).encode()))).decode()}).encode(), 201
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, body", [(201, b"[]"), (200, b'"stored"'), (403, b"[1]"), (503, b"7")])
def test_an_answer_that_is_not_a_json_object_keeps_the_segment_and_the_uploader_running(tmp_path, status, body):
    # Before, `answer.get(...)` on a list or a string raised AttributeError in the uploader's
    # thread, which ended it: the node recorded on, but never uploaded again until restarted.
    server = http.server.HTTPServer(("127.0.0.1", 0), Garbler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Garbler.status, Garbler.body, Garbler.receipt_key, Garbler.answered = status, body, None, 0
    try:
        identity, cfg, spool, live = node_with_a_segment(tmp_path, f"http://127.0.0.1:{server.server_port}")
        cfg.node.retry_max_seconds = 0.5
        uploader = Uploader(spool, identity, cfg)
        uploader.start()
        rejected = spool.dir / "rejected"
        # Until it has had three such answers (a refusal: until the segment is set aside), not a fixed 2 s
        # (loaded, it may not have sent one yet): the thread must be alive all along.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                (rejected.is_dir() and any(rejected.iterdir())) if status == 403 else Garbler.answered >= 3):
            assert uploader.is_alive()
            time.sleep(0.1)
        assert uploader.is_alive()
        if status != 403:
            assert len(spool.finished()) == 1                  # kept: nothing acknowledged it
        else:
            assert len(list(rejected.iterdir())) == 1   # a refusal: kept aside
            return
        Garbler.receipt_key = (live, identity.signing_key.verify_key.to_curve25519_public_key())
        uploader.wake.set()
        deadline = time.monotonic() + 10
        while (spool.finished() or uploader.uploaded == 0) and time.monotonic() < deadline:
            time.sleep(0.1)      # the spool file goes before the count goes up: wait for both
        assert not spool.finished() and uploader.uploaded == 1   # still uploading once a real receipt comes
    finally:
        Garbler.receipt_key = None
        server.shutdown()
        if "uploader" in locals():
            uploader.stopping.set()
            uploader.wake.set()
