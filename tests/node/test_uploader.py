"""The node deletes a spooled segment only on the central's sealed receipt for exactly that segment."""
from __future__ import annotations

import base64
import http.server
import json
import os
import threading

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
