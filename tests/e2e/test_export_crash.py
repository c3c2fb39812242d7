"""`kill -9` of the real central while it builds an evidence package (release.build).

What must hold after every kill, once the central is started again:
- whatever on the medium looks complete (a name without `.part`) is in the export
  register: a copy that left the library unregistered could not be retrieved after a
  breach (C16);
- a build cut short leaves only its `.part`, removed by the next build of the release;
- the audit log verifies.
"""
from __future__ import annotations

import ctypes
import os
import random
import select
import signal
import struct
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import nacl.signing
import pytest

from appliance.client import ApiClient
from appliance.rules.registry import iso
from conftest import DIRECTOR, People, _cheap_kdf, new_central
from hw.annexb import split_access_units
from test_crash_central import start_central
from test_export import TAKEN, encode, store

pytestmark = pytest.mark.slow

IN_MOVED_TO, IN_CREATE = 0x80, 0x100


class Inotify:
    """The kernel tells us the moment a name appears in a directory (a rename into it, say)."""

    def __init__(self, directory: Path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        assert self.fd >= 0 and libc.inotify_add_watch(self.fd, str(directory).encode(),
                                                       IN_MOVED_TO | IN_CREATE) >= 0

    def wait_for(self, wanted, timeout: float) -> str | None:
        """The first name appearing for which `wanted(name)` holds, or None after `timeout`."""
        while select.select([self.fd], [], [], timeout)[0]:
            data = os.read(self.fd, 65536)
            at = 0
            while at < len(data):
                _wd, _mask, _cookie, size = struct.unpack_from("iIII", data, at)
                name = data[at + 16:at + 16 + size].rstrip(b"\0").decode()
                at += 16 + size
                if wanted(name):
                    return name
        return None

    def close(self) -> None:
        os.close(self.fd)


def _world(data: Path) -> str:
    """A central with one camera's minute and a half of footage and a release of it; returns its id."""
    with pytest.MonkeyPatch.context() as mp:
        _cheap_kdf(mp)
        central = new_central(data)
        try:
            people = People(central)
            people.login("director")
            start = (central.now() - timedelta(hours=2)).replace(microsecond=0)
            store(central, "cam-a", split_access_units(encode("testsrc2", (160, 120), 90)), start,
                  nacl.signing.SigningKey.generate())
            instrument = people.call("director", "instrument.record", kind="subpoena", reference="SUB-1",
                                     court="Lucas County District Court",
                                     issued_on=(central.now() - timedelta(days=1)).date().isoformat(),
                                     received_on=central.now().date().isoformat(), description="The theft",
                                     cameras=["cam-a"], start=iso(start), end=iso(start + timedelta(hours=1)))
            instrument = instrument["instrument"]
            people.call("director", "counsel.record", instrument=instrument["id"], counsel="J. Ortiz",
                        consulted_on=central.now().date().isoformat(), summary="Valid.")
            return people.call("director", "release.create", instrument=instrument["id"], cameras=["cam-a"],
                               start=iso(start), end=iso(start + timedelta(seconds=90)),
                               recipient="Chariton PD")["release"]["id"]
        finally:
            central.close()


def _client(data: Path) -> ApiClient:
    client = ApiClient(str(data / "api.sock"), timeout=60)
    client.login(*DIRECTOR)
    client.call("archive.unseal", {"passphrase": DIRECTOR[1]})
    return client


def _registered(client: ApiClient, release: str) -> set[str]:
    exports = client.call("export.list")["exports"]
    return {c["package"] for e in exports for c in (e.get("copies") or [])}


def _looks_complete(medium: Path) -> set[str]:
    return {p.name for p in medium.iterdir() if not p.name.endswith(".part")}


def test_kill_9_during_release_build_never_leaves_an_unregistered_package(tmp_path):
    data, medium = tmp_path / "central", tmp_path / "usb"
    medium.mkdir()
    release = _world(data)
    log = open(tmp_path / "central.log", "ab")
    rng = random.Random(7)
    watcher = Inotify(medium)
    kills = {"at the rename": 0, "at random": 0}
    try:
        # First the moment that matters most: the package has just been renamed into place.
        # Then kills at random moments of a build.
        for round_no in range(4):
            proc = start_central(data, log)
            client = _client(data)
            build = client.call("release.build", {"release": release, "to": str(medium), **TAKEN})["build"]
            if round_no == 0:
                name = watcher.wait_for(lambda n: not n.endswith(".part"), timeout=120)
                assert name, "the build never renamed its package into place"
                kills["at the rename"] += 1
            else:
                watcher.wait_for(lambda n: False, timeout=rng.uniform(0.2, 3.0))
                kills["at random"] += 1
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc = start_central(data, log)
            client = _client(data)
            unregistered = _looks_complete(medium) - _registered(client, release)
            assert not unregistered, (f"kill {round_no + 1} (build {build['build']}): {sorted(unregistered)} on the "
                                      "medium looks complete but is not in the export register")
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        # A build after the kills: it completes, removes what the killed ones left, and is registered.
        proc = start_central(data, log)
        client = _client(data)
        build = client.call("release.build", {"release": release, "to": str(medium), **TAKEN})["build"]
        while (status := client.call("release.build_status", {"build": build["build"]})["build"])["state"] == "running":
            watcher.wait_for(lambda n: False, timeout=0.2)
        assert status["state"] == "built", status["error"]
        assert not [p.name for p in medium.iterdir() if p.name.endswith(".part")]
        assert _looks_complete(medium) <= _registered(client, release)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        watcher.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    audit = subprocess.run([sys.executable, "-m", "appliance.cli", "audit", "verify", "--data", str(data)],
                           capture_output=True, text=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    print(f"kills: {kills}; on the medium at the end: {sorted(p.name for p in medium.iterdir())}")
