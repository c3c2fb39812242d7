"""A camera node whose disk fills up: nothing signed is garbage, the chain holds, recording resumes.

Runs on a real 2 MiB tmpfs (we are root in CI); skipped where mounting is not allowed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import nacl.public
import pytest

from appliance.custody.archive import Archive
from appliance.config import Config
from appliance.node.identity import NodeIdentity
from appliance.node.recorder import Recorder
from appliance.node.spool import Spool
from appliance.formats.segment import enrolled_key, verify_file
from hw.backend import Frame


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    st = os.statvfs(disk)
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def record(recorder: Recorder, frames: int, size: int = 20_000, pts0: int = 0) -> None:
    sink = recorder.open_segment()
    for i in range(frames):
        sink.write_frame(Frame(os.urandom(size), i == 0, pts0 + i * 40_000))
    sink.close()


def test_disk_full_mid_segment_keeps_the_chain_and_recording_resumes(small_disk, tmp_path):
    archive_key = nacl.public.PrivateKey.generate()
    identity = NodeIdentity.init(small_disk / "node", "cam-1", bytes(archive_key.public_key).hex(),
                                 "http://127.0.0.1:9", live_key_hex=bytes(archive_key.public_key).hex())
    cfg = Config()
    cfg.node.chunk_bytes = 16_000                         # a chunk a frame: what fits is kept
    spool = Spool(small_disk / "node" / "spool", 10**9)
    recorder = Recorder(identity, cfg, spool)
    record(recorder, 3)                                   # segment 0
    filler = fill(small_disk, leave=60_000)               # someone else fills the disk
    record(recorder, 50, pts0=10**7)                      # runs out of disk: evicts segment 0, then must not raise
    filler.unlink()
    record(recorder, 3, pts0=3 * 10**7)                   # room again: recording resumes
    record(recorder, 3, pts0=4 * 10**7)
    restarted = Recorder(identity, cfg, Spool(small_disk / "node" / "spool", 10**9))
    # Everything spooled verifies, chains, and is accepted by the central's archive in order.
    archive = Archive(tmp_path / "archive")
    lookup = enrolled_key(identity.signing_key.verify_key, "cam-1")
    infos = []
    for path in spool.finished():
        incoming = archive.incoming_path("cam-1", 0)
        shutil.copy(path, incoming)
        info = verify_file(incoming, lookup)
        assert archive.commit(incoming, info) == "stored"
        infos.append(info)
    assert [i.seq for i in infos] == [1, 2, 3]
    assert not infos[0].complete and infos[0].trailer["truncated_reason"] == "disk full while recording"
    assert infos[0].trailer["chunks"] > 0, "what fitted after evicting the oldest is kept"
    assert infos[-1].complete
    assert restarted.next_seq == 4
    assert not list(spool.dir.glob("*.part"))
    losses = [json.loads(line) for line in spool.losses.read_text().splitlines()]
    assert losses[0]["segment"] == "0000000000.cseg" and losses[0]["why"] == "disk full: evicted to keep recording"
    assert [entry["segment"] for entry in losses[1:]] == ["-"]   # the frames that did not fit, counted


def test_spool_bound_is_the_smaller_of_the_setting_and_four_fifths_of_the_disks_room(small_disk):
    spool = Spool(small_disk / "spool", 10**9)
    st = os.statvfs(small_disk)
    room = st.f_bavail * st.f_frsize
    assert spool.bound() == int(room * 0.8)               # 2 MiB of tmpfs: the disk decides
    assert Spool(small_disk / "spool2", 100_000).bound() == 100_000   # the setting, when smaller
    for seq in range(4):
        spool.path_for(seq).write_bytes(os.urandom(450_000))
    spool.enforce_bound()                                 # 1.8 MB held of ~2.1 MB room: over 80%
    kept = [p.name for p in spool.finished()]
    assert kept[-1] == "0000000003.cseg" and kept[0] != "0000000000.cseg", "the oldest went, the newest stayed"
    assert sum(p.stat().st_size for p in spool.finished()) <= spool.bound()
    evicted = [json.loads(line)["segment"] for line in spool.losses.read_text().splitlines()]
    assert evicted == [f"{seq:010d}.cseg" for seq in range(4 - len(kept))]


def _lines(path: Path) -> list:
    """Every line of a JSON-lines record, parsed; a line that does not parse is kept as its text."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append(line)
    return out


def test_a_record_cut_short_by_a_full_disk_or_a_crash_never_swallows_the_next(small_disk):
    # loss.jsonl and gaps.jsonl are appended a line at a time. Before, a line cut short (the disk
    # filled in the middle of it, or the power went) stayed, and the next record was appended
    # straight after it: the two ran into one line that no reader can parse, so that next record
    # was lost too.
    from appliance.node.spool import append_record

    losses = small_disk / "loss.jsonl"
    losses.write_bytes(b"x" * (4096 - 10))                  # 10 bytes left in the file's last page
    filler = fill(small_disk, 0)
    while True:                                             # tmpfs counts pages: take every one left
        try:
            with open(small_disk / f"f{os.urandom(4).hex()}", "wb") as f:
                f.write(b"\0" * 4096)
        except OSError:
            break
    append_record(losses, {"segment": "0000000001.cseg", "why": "the disk was full"})   # a short write, then ENOSPC
    assert losses.stat().st_size == 4096 - 10               # what could not be written whole was cut back
    filler.unlink()
    append_record(losses, {"segment": "0000000002.cseg", "why": "evicted"})
    # A crash (power cut) in the middle of a line leaves a torn tail.
    with open(losses, "ab") as f:
        f.write(b'{"segment": "0000000003.cs')
    append_record(losses, {"segment": "0000000004.cseg", "why": "evicted"})
    records = [r for r in _lines(losses) if isinstance(r, dict)]
    assert [r["segment"] for r in records] == ["0000000002.cseg", "0000000004.cseg"]
    assert losses.read_text().endswith('"evicted"}\n')
