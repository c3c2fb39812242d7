"""A camera node on a small filesystem with the central down keeps the newest footage (issue 6, item 3).

A real `custodian node run` (real ffmpeg, a high-bitrate noise source) records onto a
12 MiB tmpfs while its central is unreachable. The spool's bound comes from the
filesystem, so the oldest segments make way; then another file takes almost all the
free space, the disk fills mid-segment, and the oldest still go, not the newest.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import nacl.public
import nacl.signing
import pytest

from appliance.node.identity import NodeIdentity
from appliance.formats.segment import enrolled_key, verify_file
from processes import CLI, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def noise_video(path) -> None:
    """Three seconds of random pixels: it keeps the encoder at its bitrate (a test pattern does not)."""
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                    "nullsrc=s=320x240:r=10,geq=lum='random(1)*255':cb=128:cr=128", "-t", "3",
                    "-c:v", "rawvideo", "-pix_fmt", "yuv420p", "-y", str(path)], check=True, timeout=120)


def spooled(node_dir) -> list[int]:
    return sorted(int(p.name[:10]) for p in (node_dir / "spool").glob("*.cseg"))


def test_node_on_a_small_filesystem_with_the_central_down_keeps_the_newest_footage(small_disk, tmp_path):
    noise = tmp_path / "noise.nut"
    noise_video(noise)
    archive_key = nacl.public.PrivateKey.generate().public_key
    identity = NodeIdentity.init(small_disk / "node", "cam-small", bytes(archive_key).hex(),
                                 "http://127.0.0.1:9", live_key_hex=bytes(archive_key).hex())
    (small_disk / "node" / "control.json").write_text(json.dumps({"status": "approved", "masks": []}))
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\nname = "cam-small"\ndata_dir = "{small_disk / "node"}"\n'
        'central_url = "http://127.0.0.1:9"\nsegment_seconds = 2\nretry_max_seconds = 2.0\n'
        f'[camera]\nbackend = "file"\nfile = "{noise}"\nwidth = 320\nheight = 240\nfps = 10\n'
        'bitrate_kbps = 6000\nkeyframe_seconds = 1\n')
    node_dir = small_disk / "node"
    losses = node_dir / "loss.jsonl"
    proc = subprocess.Popen(CLI + ["-v", "--config", str(config), "node", "run"],
                            stderr=open(tmp_path / "node.log", "wb"))
    try:
        wait_for(lambda: losses.exists(), 120, "the spool bound to evict a first segment")
        time.sleep(4)
        # Another file takes nearly all that is left: the disk fills in the middle of a segment.
        st = os.statvfs(small_disk)
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 300_000))
        full_since = time.time_ns() // 1000
        time.sleep(16)
        stopped_at = time.time_ns() // 1000
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = (tmp_path / "node.log").read_text()
    kept = spooled(node_dir)
    lost = [json.loads(line) for line in losses.read_text().splitlines()]
    head = json.loads((node_dir / "chain.json").read_text())["seq"]
    print(f"\nsmall disk: {len(kept)} segments kept ({kept[0]}..{kept[-1]}), {len(lost)} evicted, "
          f"{sum(1 for e in lost if e['why'].startswith('disk full'))} of them when the disk filled mid-segment")
    # The newest are kept, without a hole: the spool is the run of segments up to the chain's head.
    assert kept == list(range(kept[0], head + 1)) and len(kept) >= 3
    # Every older one is accounted for as evicted, oldest first; no frame was dropped.
    assert [e["segment"] for e in lost] == [f"{seq:010d}.cseg" for seq in range(kept[0])]
    assert {e["why"] for e in lost} <= {"spool full: evicted before upload", "disk full: evicted to keep recording"}
    assert any(e["why"] == "disk full: evicted to keep recording" for e in lost), "the disk did fill up"
    assert "No space left" not in log and "sealed as truncated" not in log, log[-2000:]
    # What is kept is whole, signed and chained, and reaches up to the moment the node stopped.
    lookup = enrolled_key(identity.signing_key.verify_key, "cam-small")
    infos = [verify_file(node_dir / "spool" / f"{seq:010d}.cseg", lookup) for seq in kept]
    assert all(i.complete for i in infos)
    assert all(b.header["prev"] == a.digest for a, b in zip(infos, infos[1:]))
    assert infos[-1].trailer["end_us"] >= stopped_at - 3_000_000
    assert sum(1 for i in infos if i.header["start_us"] >= full_since) >= 4, "recording went on on a full disk"
