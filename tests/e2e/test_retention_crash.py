"""`kill -9` of the real central in the middle of a retention sweep, again and again.

What must hold after every kill, once it is started again: every segment that is gone has
its deletion receipt (with the digest of the file as it was) in the audit log, which still
verifies; what is left is exactly what was not yet deleted, and once the sweeps are done each
camera keeps its place in the chain (its next segment is accepted, a replay of an old one
refused), though all its footage is gone.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from appliance.client import ApiClient
from appliance.custody.archive import Archive
from appliance.errors import SegmentError
from appliance.formats import segment as seg
from conftest import DIRECTOR, _cheap_kdf, new_central
from test_crash_central import start_central
from test_retention import Camera

pytestmark = pytest.mark.slow

SEGMENTS = 500            # per camera, all older than the schedule


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_9_during_a_retention_sweep_never_deletes_without_a_receipt(tmp_path):
    data = tmp_path / "central"
    stored: dict[str, tuple[str, str, int]] = {}      # archive path -> (digest, camera, seq)
    heads = {}
    with pytest.MonkeyPatch.context() as mp:
        _cheap_kdf(mp)
        central = new_central(data)
        try:
            old = central.now() - timedelta(days=40)
            cameras = [Camera(central, name) for name in ("cam-a", "cam-b")]
            for cam in cameras:
                for n in range(SEGMENTS):
                    path = cam.record(old + timedelta(minutes=n))
                    stored[path.relative_to(central.paths.archive).as_posix()] = (_digest(path), cam.name, cam.seq - 1)
                heads[cam.name] = (cam.seq - 1, cam.prev, cam)
        finally:
            central.close()
    log = open(tmp_path / "central.log", "ab")
    rng = random.Random(5)
    kills, remaining = 0, []
    for _round in range(8):
        proc = start_central(data, log)              # a sweep starts with the central
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        left = {p.relative_to(data / "archive").as_posix() for p in (data / "archive").rglob("*.cseg")}
        remaining.append(len(left))
        _check(data, stored, left)
    # Let the last sweeps finish, then the chain must hold without any footage.
    proc = start_central(data, log)
    try:
        client = ApiClient(str(data / "api.sock"), timeout=60)
        client.login(*DIRECTOR)
        client.call("policy.acknowledge", {"version": client.call("policy.text")["version"]})
        client.call("retention.sweep_now")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    left = {p.relative_to(data / "archive").as_posix() for p in (data / "archive").rglob("*.cseg")}
    assert left == set()
    _check(data, stored, left)
    archive = Archive(data / "archive")
    for name, (last_seq, last_digest, cam) in heads.items():
        assert archive.head(name) == last_seq and archive.digest(name, last_seq) == last_digest
        cam.seq, cam.prev = last_seq, "0" * 64           # a new file for a deleted sequence number
        replay = data / f"replay-{name}.cseg"
        cam.write(replay)
        with pytest.raises(SegmentError, match="replayed"):
            archive.commit(replay, seg.verify_file(replay))
        cam.seq, cam.prev = last_seq + 1, last_digest     # the camera's next segment chains on
        next_path = data / f"next-{name}.cseg"
        cam.write(next_path)
        assert archive.commit(next_path, seg.verify_file(next_path)) == "stored"
    audit = subprocess.run([sys.executable, "-m", "appliance.cli", "audit", "verify", "--data", str(data)],
                           capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    print(f"{kills} kills; segments left after each: {remaining}")
    assert any(0 < n < len(stored) for n in remaining)   # the kills did land in the middle of sweeps


def _check(data, stored: dict, left: set[str]) -> None:
    receipts = {}
    for line in (data / "audit" / "audit.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry["action"] == "retention.delete":
            receipts.setdefault(entry["target"], []).append(entry["details"]["digest"])
    gone = set(stored) - left
    without = sorted(p for p in gone if p not in receipts)
    assert not without, f"deleted without a receipt: {without[:5]}"
    assert all(set(receipts[p]) == {stored[p][0]} for p in gone)      # the digest of the file as it was
    assert left <= set(stored)
