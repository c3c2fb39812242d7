"""End to end with real processes: `custodian central serve`, `custodian node run`, real ffmpeg.

These are the slow tests of the recording spine (marked `slow`); they run in `make test`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.demo import DEMO_PEOPLE, DemoSystem
from appliance.custody.keys import KeyStore
from appliance.formats.segment import header_key, iter_frames, verify_file
from processes import archive_files as archive_files_under
from processes import wait_for

pytestmark = pytest.mark.slow

SPS_PATTERNS = (b"\x00\x00\x00\x01\x67", b"\x00\x00\x01\x67")


def archive_files(system: DemoSystem, camera: str) -> list[Path]:
    return archive_files_under(system.central_dir, camera)


def assert_chain(files: list[Path]) -> list:
    infos = [verify_file(p) for p in files]
    for prev, info in zip(infos, infos[1:]):
        assert info.seq == prev.seq + 1, f"sequence jumps from {prev.seq} to {info.seq}"
        assert info.header["prev"] == prev.digest, f"segment {info.seq} does not chain"
    return infos


def no_plaintext_under(directory: Path) -> None:
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for pattern in SPS_PATTERNS:
                assert pattern not in data, f"H.264 SPS in clear in {path}"
            for start in range(min(len(data), 188)):
                if data[start::188][:5] == b"\x47" * 5 and len(data) > start + 188 * 5:
                    raise AssertionError(f"MPEG-TS sync pattern in {path}")


def decrypt_join(files: list[Path], secret) -> bytes:
    return b"".join(frame.data for path in files for frame in iter_frames(path, secret, header_key))


def ffprobe_duration_and_errors(annexb: bytes, fps: int) -> tuple[float, str]:
    decode = subprocess.run(["ffmpeg", "-v", "error", "-fflags", "+genpts", "-r", str(fps), "-f", "h264",
                             "-i", "pipe:0", "-f", "null", "-"], input=annexb, capture_output=True, timeout=120)
    probe = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
                            "-show_entries", "stream=nb_read_frames", "-of", "json", "-f", "h264", "pipe:0"],
                           input=annexb, capture_output=True, timeout=120)
    frames = int(json.loads(probe.stdout)["streams"][0]["nb_read_frames"])
    return frames / fps, decode.stderr.decode()


@pytest.fixture
def system(tmp_path):
    s = DemoSystem(tmp_path / "demo", cameras=2, segment_seconds=10, width=320, height=240, fps=10)
    s.setup()
    yield s
    s.stop()


def start(system: DemoSystem) -> None:
    system.start_central()
    system.seed()
    system.start_nodes()
    system.after_start()


def test_two_cameras_record_verify_chain_and_decode(system):
    start(system)
    t0 = time.monotonic()
    time.sleep(45)
    system.stop_nodes()           # each node finishes its open segment and uploads it
    recorded = time.monotonic() - t0
    system.stop_central()
    names = ["entrance", "stacks"]
    for name in names:
        assert not list((system.node_dir(name) / "spool").glob("*.cseg")), "every segment arrived"
        files = archive_files(system, name)
        assert len(files) >= 4
        infos = assert_chain(files)
        assert all(i.complete for i in infos)
        no_plaintext_under(system.node_dir(name))
    keys = KeyStore(system.central_dir)
    secret = keys.unseal_with_passphrase("director", DEMO_PEOPLE["director"][1])
    files = archive_files(system, names[0])
    duration, errors = ffprobe_duration_and_errors(decrypt_join(files, secret), fps=10)
    assert errors == "", errors
    # Recording starts once placement is approved; the joined stream covers it within one segment.
    assert recorded - 10 - 12 <= duration <= recorded + 1, (duration, recorded)
    summary = system.verify_archive()
    assert summary["gaps"] == 0 and summary["verified"] == summary["segments"]
    assert_nodes_hold_audit_heads_that_catch_a_rewritten_log(system)


def audit_verify(system: DemoSystem, *heads: Path) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "appliance.cli", "audit", "verify", "--data", str(system.central_dir)]
    if heads:
        args += ["--node-heads", *map(str, heads)]
    return subprocess.run(args, capture_output=True, text=True)


def assert_nodes_hold_audit_heads_that_catch_a_rewritten_log(system: DemoSystem) -> None:
    heads_file = system.node_dir("entrance") / "audit-heads.json"
    heads = json.loads(heads_file.read_text())
    assert heads, "each acknowledgement hands the node the latest signed checkpoint"
    assert audit_verify(system, heads_file).returncode == 0
    # Rewrite history: cut the log back before the node's newest head and drop the
    # checkpoints that would show it. The log alone now looks consistent...
    keep = heads[-1]["checkpoint"]["seq"]
    log = system.central_dir / "audit" / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:keep]))
    for cp in (system.central_dir / "audit" / "checkpoints").iterdir():
        if int(cp.name.split(".")[0]) >= keep:
            cp.unlink()
    assert audit_verify(system).returncode == 0
    # ...but not to the heads the camera node kept.
    result = audit_verify(system, heads_file)
    assert result.returncode != 0, result.stdout


def test_node_killed_mid_segment_seals_truncated_records_gap_and_resumes(tmp_path):
    system = DemoSystem(tmp_path / "demo", cameras=1, segment_seconds=4, width=320, height=240, fps=10)
    system.setup()
    try:
        start(system)
        wait_for(lambda: len(archive_files(system, "entrance")) >= 1, 60, "a first segment")
        time.sleep(2)  # into the next segment
        system.node_procs["entrance"].send_signal(signal.SIGKILL)
        system.node_procs["entrance"].wait()
        assert list((system.node_dir("entrance") / "spool").glob("*.part")), "a half-written segment"
        before = len(archive_files(system, "entrance"))
        system.start_node("entrance")
        wait_for(lambda: len(archive_files(system, "entrance")) >= before + 3, 60, "recording to resume")
        system.stop_nodes()
    finally:
        system.stop()
    infos = assert_chain(archive_files(system, "entrance"))
    truncated = [i for i in infos if not i.complete]
    assert len(truncated) == 1 and truncated[0].trailer["truncated_reason"] == "node restarted mid-segment"
    assert infos[-1].complete
    from appliance.custody.records import open_records

    records = open_records(system.central_dir / "records" / "records.json")
    try:
        gaps = {g["kind"]: g for g in records.all("gaps")}
    finally:
        records.close()
    assert sorted(gaps) == ["time", "truncated"]
    assert gaps["time"]["why"] == "node restarted after a crash"
    assert gaps["time"]["from_seq"] == truncated[0].seq and gaps["time"]["from_us"] == truncated[0].trailer["end_us"]


def test_central_killed_mid_upload_node_retries_nothing_lost_or_duplicated(tmp_path):
    system = DemoSystem(tmp_path / "demo", cameras=1, segment_seconds=3, width=320, height=240, fps=10)
    system.setup()
    try:
        start(system)
        wait_for(lambda: len(archive_files(system, "entrance")) >= 1, 60, "a first segment")
        # An upload cut off in the middle: headers and half a body, then the central dies. (Sent
        # just after one of the node's: a newer verified upload of the camera would replace it.)
        wait_for(lambda: len(archive_files(system, "entrance")) >= 2, 60, "a fresh upload from the node")
        stored = archive_files(system, "entrance")[0].read_bytes()
        sock = socket.create_connection(("127.0.0.1", system.port))
        sock.sendall(f"PUT /v1/segments/entrance/0 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(stored)}\r\n\r\n"
                     .encode() + stored[: len(stored) // 2])
        time.sleep(0.3)
        assert list((system.central_dir / "archive" / ".incoming").iterdir()), "the upload was in flight"
        for _ in range(3):
            system.central_proc.send_signal(signal.SIGKILL)
            system.central_proc.wait()
            time.sleep(2.5)           # the node keeps recording and spooling meanwhile
            system.start_central()
        sock.close()
        time.sleep(4)
        system.stop_nodes()           # drains the spool into the restarted central
    finally:
        system.stop()
    assert not list((system.central_dir / "archive" / ".incoming").iterdir()), "half uploads are cleaned up"
    assert not list((system.node_dir("entrance") / "spool").glob("*.cseg")), "the node delivered everything"
    files = archive_files(system, "entrance")
    seqs = [int(re.match(r"(\d+)-", p.name).group(1)) for p in files]
    assert seqs == list(range(len(seqs))), "no loss, no duplicates"
    infos = assert_chain(files)
    assert all(i.complete for i in infos)
    assert not (system.node_dir("entrance") / "loss.jsonl").exists()
    assert os.path.getsize(files[0]) > 0


def run_headless_demo(data: Path, seconds: int) -> tuple[list[int], str]:
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "demo", "--headless", "--seconds", str(seconds),
                          "--cameras", "2", "--segment-seconds", "4", "--data", str(data)],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"demo: cameras=(\d+) segments=(\d+) verified=(\d+) gaps=(\d+)", last)
    assert m, last
    return list(map(int, m.groups())), out.stdout


def test_headless_demo_ends_with_its_summary_line_and_runs_again_on_its_data(tmp_path):
    (cameras, segments, verified, gaps), stdout = run_headless_demo(tmp_path / "demo", 14)
    assert cameras == 2 and segments >= 2 and verified == segments and gaps == 0
    assert "passphrase demo-staff-pass" in stdout  # one account per role, printed at start
    # A second run on the same data (new ingest port) carries on the same chains.
    (_, more, verified, gaps), _ = run_headless_demo(tmp_path / "demo", 10)
    assert more > segments and verified == more and gaps == 0
