"""`kill -9` the real central daemon during a burst of record writes, 20 times.

After every kill the central starts again, the records database loads, every write
the API acknowledged is there, and the audit log still verifies.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.central.daemon import init_central
from appliance.client import ApiClient, ApiError

pytestmark = pytest.mark.slow

DIRECTOR = ("director", "director-passphrase-1")


def start_central(data: Path, log) -> subprocess.Popen:
    cfg = data.parent / "central.toml"
    cfg.write_text(f'[central]\ndata_dir = "{data}"\ningest_host = "127.0.0.1"\ningest_port = 0\n')
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "--config", str(cfg), "central", "serve"],
                            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"central exited with {proc.returncode}"
        try:
            client = ApiClient(str(data / "api.sock"), timeout=5)
            client.login(*DIRECTOR)
            return proc
        except ApiError as e:
            if e.code != "unavailable":
                raise
        time.sleep(0.05)
    raise AssertionError("central did not start")


def test_kill_9_during_record_writes_20_times(tmp_path):
    data = tmp_path / "central"
    init_central(data, *DIRECTOR)
    acknowledged: list[str] = []
    log = open(tmp_path / "central.log", "ab")
    rng = random.Random(1234)
    for round_no in range(20):
        proc = start_central(data, log)
        client = ApiClient(str(data / "api.sock"), timeout=10)
        client.login(*DIRECTOR)
        if round_no == 0:
            client.call("policy.acknowledge", {"version": client.call("policy.text")["version"]})
        stop = threading.Event()

        def burst():
            n = 0
            while not stop.is_set():
                name = f"u{round_no}x{n}"
                try:
                    client.call("user.create", {"name": name, "role": "staff", "passphrase": "a-long-passphrase"})
                except (ApiError, OSError):
                    return  # the central died under us: this write was never acknowledged
                acknowledged.append(name)
                n += 1

        writer = threading.Thread(target=burst)
        writer.start()
        time.sleep(rng.uniform(0.3, 1.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        writer.join(10)
    proc = start_central(data, log)
    try:
        client = ApiClient(str(data / "api.sock"))
        client.login(*DIRECTOR)
        names = {u["name"] for u in client.call("user.list")["users"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert len(acknowledged) >= 10  # writes really were under way when the kills came
    missing = [n for n in acknowledged if n not in names]
    assert not missing, f"acknowledged but lost: {missing}"
    audit = subprocess.run([sys.executable, "-m", "appliance.cli", "audit", "verify", "--data", str(data)],
                           capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
