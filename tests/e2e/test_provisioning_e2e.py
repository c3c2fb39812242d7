"""From a blank card to a recording camera, end to end, against a real central on loopback.

IT invites the camera, flashes a card with flash.sh, and the node is started the way the
card's first boot starts it: Custodian installed from the card's own offline bundle into a
venv, the card's node.toml, the pairing code moved into the node's data directory (what
firstboot.sh does). The node, a real `custodian node run` process, enrols with its code,
logs the same pairing fingerprint the central shows, waits for the Director's placement
approval (C6) and records after it. A reused, a forged and an expired code are refused,
each by a node process that exits with status 78 (systemd does not restart it).
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path

import nacl.signing
import pytest

from appliance.formats.segment import verify_file
from test_flash import ROOT, blank_card, boot_files, bundle, flash, make_stock_image, run, ssh_key  # noqa: F401

pytestmark = pytest.mark.slow


def card_for(tmp_path: Path, name: str, code: str, central_url: str, bundle: Path, key: Path) -> Path:
    """Flash a card and return its custodian/ folder as the Pi would see it on /boot/firmware."""
    image = tmp_path / "stock" / "raspios-trixie-lite.img.xz"
    if not image.exists():
        make_stock_image(tmp_path / "stock")
    card = blank_card(tmp_path / f"{name}.img")
    flash("--image", image, "--device", card, "--role", "camera", "--name", name,
          "--central", central_url.removeprefix("http://"), "--invite", code, "--ssh-key", key,
          "--bundle", bundle, "--camera-backend", "synthetic", "--yes")
    boot = tmp_path / f"{name}-bootfs"
    for rel, data in boot_files(card).items():
        (boot / rel).parent.mkdir(parents=True, exist_ok=True)
        (boot / rel).write_bytes(data)
    return boot / "custodian"


def first_boot(card: Path, data: Path) -> Path:
    """What firstboot.sh does for the node: the code leaves the card for the node's data
    directory; the config is the card's, with test-speed settings added (short segments,
    a small synthetic picture)."""
    data.mkdir(parents=True)
    (data / "invite").write_bytes((card / "invite").read_bytes())
    (data / "invite").chmod(0o600)
    (card / "invite").unlink()
    text = (card / "node.toml").read_text()
    text = text.replace("[node]\n", "[node]\nsegment_seconds = 2\ncontrol_seconds = 0.3\nretry_max_seconds = 1.0\n")
    text = text.replace("[camera]\n", "[camera]\nwidth = 320\nheight = 180\nfps = 10\nkeyframe_seconds = 1\n"
                                      "bitrate_kbps = 300\n")
    config = data.parent / f"{data.name}.toml"
    config.write_text(text)
    return config


class NodeProcess:
    def __init__(self, venv: Path, config: Path, data: Path):
        self.log = data.parent / f"{data.name}.log"
        self.proc = subprocess.Popen([str(venv / "bin" / "custodian"), "--config", str(config), "node", "run",
                                      "--data", str(data)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the node's log:\n{self.text()}")

    def exit_code(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def approve_when_a_snapshot_arrives(people, camera: str) -> dict:
    from appliance.errors import Refused

    def attempt():
        try:
            return people.call("director", "camera.approve_placement", camera=camera,
                               note="entrance doors only, no desks in view")
        except Refused as e:
            if "snapshot" in str(e):
                return None
            raise
    return wait_until(attempt, 60, "a snapshot to approve the placement from")


def test_flashed_camera_enrols_waits_for_approval_and_records(tmp_path, central, people, serving, bundle, ssh_key):
    code = people.call("ivy", "camera.invite", camera="entrance", category="entrance",
                       location="Main doors, facing in")["code"]
    card = card_for(tmp_path, "entrance", code, serving.url, bundle, ssh_key)
    venv = tmp_path / "venv"
    run("bash", card / "install-bundle.sh", card / "bundle", venv)   # Custodian from the card's own bundle

    data = tmp_path / "var-lib-custodian"
    node = NodeProcess(venv, first_boot(card, data), data)
    try:
        logged = node.wait_for(r"enrolled as camera entrance .*pairing fingerprint ([0-9A-F-]{19})").group(1)
        cam = people.call("ivy", "camera.list")["cameras"][0]
        node_key = bytes(nacl.signing.SigningKey((data / "node.key").read_bytes()).verify_key)
        digest = hashlib.sha256(b"custodian-pairing-v1" + node_key + bytes(central.keys.archive_public_key())
                                + bytes(central.keys.live_public_key())).hexdigest().upper()[:16]
        assert logged == cam["pairing_fingerprint"] == "-".join(digest[i:i + 4] for i in range(0, 16, 4))
        assert re.search(rf"pairing fingerprint {logged}: IT compares it", node.text())
        assert cam["status"] == "pending_placement" and cam["key"] == node_key.hex()
        assert not (data / "invite").exists()                                   # the code is spent and gone
        assert central.records.search("invites", camera="entrance")[0]["status"] == "spent"

        # C6: online and sending its view, but recording nothing until the Director approves.
        wait_until(lambda: people.call("ivy", "camera.list")["cameras"][0]["online"], 30, "the node to poll")
        time.sleep(4)
        assert central.archive.head("entrance") is None and not list((data / "spool").glob("*.cseg"))
        people.call("ivy", "signage.add", location="entrance", posted_on=date.today().isoformat())
        approve_when_a_snapshot_arrives(people, "entrance")
        node.wait_for(r"placement approved: recording from the next keyframe")     # IT sees it in the journal
        wait_until(lambda: (central.archive.head("entrance") or 0) >= 2, 60, "three segments in the archive")
        stored = [central.archive.get("entrance", seq).path for seq in range(3)]
        infos = [verify_file(p) for p in stored]
        assert [i.seq for i in infos] == [0, 1, 2]
        assert all(b.header["prev"] == a.digest for a, b in zip(infos, infos[1:]))
        assert infos[0].header["node_key"] == node_key.hex()
    finally:
        assert node.stop() == 0, node.text()

    # The same card's code again, on another node: refused, and that node stops for good.
    again = tmp_path / "reused"
    (card / "invite").write_text(code + "\n")
    reused = NodeProcess(venv, first_boot(card, again), again)
    assert reused.exit_code() == 78, reused.text()
    assert "already used" in reused.text() and not (again / "node.json").exists()
    # Refused: the log says why and what to do, and offers no fingerprint the central will never show.
    assert "not enrolled: the central refused" in reused.text() and not re.search(r"[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}", reused.text())

    # A forged code for a camera IT did invite.
    people.call("ivy", "camera.invite", camera="lobby", category="seating", location="Lobby chairs")
    forged_card = card_for(tmp_path, "lobby", "0000-0000-0000", serving.url, bundle, ssh_key)
    forged = NodeProcess(venv, first_boot(forged_card, tmp_path / "lobby-data"), tmp_path / "lobby-data")
    assert forged.exit_code() == 78, forged.text()
    assert "wrong pairing code for camera lobby" in forged.text()

    # A code used after its 24 hours.
    late = people.call("ivy", "camera.invite", camera="garden", category="exterior", location="Garden gate")["code"]
    late_card = card_for(tmp_path, "garden", late, serving.url, bundle, ssh_key)
    central.clock.offset += timedelta(hours=24, minutes=1)
    expired = NodeProcess(venv, first_boot(late_card, tmp_path / "garden-data"), tmp_path / "garden-data")
    assert expired.exit_code() == 78, expired.text()
    assert "expired" in expired.text()

    kinds = [e["details"]["kind"] for e in central.audit.query(action_prefix="camera.enrol_refused")]
    assert kinds == ["spent", "wrong_code", "expired"]
    assert [c["id"] for c in people.call("director", "camera.list")["cameras"]] == ["entrance"]
