"""The command line, run as a real process: what IT and an auditor type."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys

import nacl.public
import nacl.signing

from appliance.formats import segment as seg
from conftest import DIRECTOR, PEOPLE
from hw.backend import Frame


def cli(*args, env=None, **kwargs):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60, **kwargs)


def write_chain(tmp_path, n=3):
    archive = nacl.public.PrivateKey.generate()
    node = nacl.signing.SigningKey.generate()
    prev, paths = None, []
    for seq in range(n):
        path = tmp_path / f"{seq:010d}.cseg"
        w = seg.SegmentWriter(path, params=seg.StreamParams("entrance", 64, 48, 10), seq=seq, prev_digest=prev,
                              archive_key=archive.public_key, signing_key=node, chunk_bytes=2048)
        for i in range(12):
            w.write_frame(Frame(b"\x00\x00\x00\x01\x65" + os.urandom(500), i == 0, seq * 10**7 + i * 10**5))
        prev = w.close().digest
        paths.append(path)
    return node, paths




def test_segment_inspect_prints_public_json_and_never_the_sealed_key(tmp_path):
    _, paths = write_chain(tmp_path, 1)
    out = cli("segment", "inspect", str(paths[0]))
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert view["header"]["camera"] == "entrance" and view["trailer"]["complete"] is True
    assert "sealed_key" not in view["header"] and "stream_header" not in view["header"]


def test_segment_verify_exit_codes(tmp_path):
    node, paths = write_chain(tmp_path, 3)
    good = cli("segment", "verify", *map(str, paths), "--key", node.verify_key.encode().hex())
    assert good.returncode == 0 and "all good" in good.stdout
    gap = cli("segment", "verify", str(paths[0]), str(paths[2]))
    assert gap.returncode == 1 and "GAP" in gap.stdout
    other = cli("segment", "verify", str(paths[0]), "--key", nacl.signing.SigningKey.generate().verify_key.encode().hex())
    assert other.returncode == 1 and "FAIL" in other.stdout
    data = bytearray(paths[1].read_bytes())
    data[200] ^= 1
    paths[1].write_bytes(bytes(data))
    bad = cli("segment", "verify", *map(str, paths))
    assert bad.returncode == 1 and "FAIL" in bad.stdout


def test_camera_add_and_call_go_through_the_api(serving, central, people):
    sock = str(central.paths.data / "api.sock")
    it = {"CUSTODIAN_USER": "ivy", "CUSTODIAN_PASSPHRASE": PEOPLE["ivy"][1]}
    # IT acknowledges the policy first, like anyone at first login (C22).
    people.login("ivy")
    key = nacl.signing.SigningKey.generate().verify_key.encode().hex()
    added = cli("camera", "add", "lobby", "--key", key, "--category", "seating", "--location", "Lobby chairs",
                "--socket", sock, env=it)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["camera"]["status"] == "pending_placement"
    refused = cli("camera", "add", "loo", "--key", key[:-2] + "00", "--category", "restroom", "--location", "x y z",
                  "--socket", sock, env=it)
    assert refused.returncode != 0 and "C6" in refused.stderr + refused.stdout
    listed = cli("call", "camera.list", "--socket", sock, env=it)
    assert [c["id"] for c in json.loads(listed.stdout)["cameras"]] == ["lobby"]
    bad_json = cli("call", "camera.list", "{not json", "--socket", sock, env=it)
    assert bad_json.returncode == 2
    forbidden = cli("call", "archive.unseal", json.dumps({"passphrase": "x"}), "--socket", sock, env=it)
    assert forbidden.returncode == 1 and json.loads(forbidden.stderr)["error"]["code"] == "forbidden"
    wrong = cli("call", "camera.list", "--socket", sock, env={"CUSTODIAN_USER": DIRECTOR[0],
                                                               "CUSTODIAN_PASSPHRASE": "not-her-passphrase"})
    assert wrong.returncode != 0 and "wrong passphrase" in wrong.stderr


def test_central_init_names_the_directors_login_and_what_comes_next(tmp_path):
    out = cli("central", "init", "--data", str(tmp_path / "central"), "--director", "dana",
              env={"CUSTODIAN_PASSPHRASE": DIRECTOR[1]}, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert "RECOVERY CODE" in out.stdout
    assert "The Director logs in as 'dana'" in out.stdout
    assert "policy.acknowledge" in out.stdout and "user.create" in out.stdout and '"role": "it"' in out.stdout


def test_central_serve_says_where_it_serves_without_being_asked(tmp_path):
    """Started as the README says (no -v), on port 0: it says that it is up and on which port."""
    data = tmp_path / "central"
    assert cli("central", "init", "--data", str(data), env={"CUSTODIAN_PASSPHRASE": DIRECTOR[1]},
               stdin=subprocess.DEVNULL).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "central", "serve", "--data", str(data),
                             "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        line = proc.stderr.readline() if ready else ""
        assert re.search(r"central serving ingest on [0-9.]+:[1-9][0-9]* and the API on .*api\.sock", line), line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
