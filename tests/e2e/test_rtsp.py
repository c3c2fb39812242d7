"""An IP camera end to end: GStreamer's RTSP server on loopback (with a password), `custodian node
run` with the rtsp backend as a real process, a real central's ingest, real ffmpeg.

These are slow tests (marked `slow`); they run in `make test`.
"""
from __future__ import annotations

import base64
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import timedelta
from pathlib import Path

import pytest

from appliance.rules import cameras as cameras_mod
from appliance.custody.keys import KeyStore
from appliance.formats.segment import verify_file
from bench.rtsp_camera import RtspCamera, available
from conftest import DIRECTOR
from hw.annexb import split_access_units
from hw.sps import access_unit_format
from test_e2e import assert_chain, decrypt_join, ffprobe_duration_and_errors, no_plaintext_under
from test_node_control import enrol, new_node, post_entrance_sign, server, wait_for  # noqa: F401 (server)

pytestmark = pytest.mark.slow

W, H, FPS = 320, 240, 10
SEGMENT_SECONDS = 5
MASK = [200, 40, 80, 120]          # across two of the SMPTE bars: not flat unless masked


@pytest.fixture(scope="module", autouse=True)
def gstreamer():
    missing = available()
    if missing:
        pytest.fail(missing)         # never a silent skip: `make test` installs it


def secret(tag: str) -> str:
    """A password unique to this run, with characters a URL and ffmpeg's concat script treat specially."""
    return f"{tag}:p a'ss@/%{os.urandom(4).hex()}"


def write_credentials(path: Path, user: str, password: str) -> Path:
    path.write_text(f"{user}:{password}\n")
    path.chmod(0o600)
    return path


def spellings(password: str) -> list[str]:
    return [password, urllib.parse.quote(password, safe=""), urllib.parse.quote(password)]


class ProcessWatch:
    """Reads every process's command line (what `ps` shows anyone) ten times a second."""

    def __init__(self, secrets: list[str]):
        self.secrets = [s.encode() for password in secrets for s in spellings(password)]
        self.found: list[str] = []
        self.scans = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.1):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        cmdline = f.read()
                except OSError:
                    continue
                if any(s in cmdline for s in self.secrets):
                    self.found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
            self.scans += 1

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(10)
        return self.found


class NodeProcess:
    """`custodian -vv --config NODE.toml node run` as a child process, its log in a file (DEBUG:
    ffmpeg's own lines included, so a leak would show)."""

    def __init__(self, tmp_path: Path, identity, url: str, credentials: Path | None, **camera):
        self.identity = identity
        self.config = tmp_path / f"{identity.name}.toml"
        self.log = tmp_path / f"node-{identity.name}.log"
        self.camera = {"backend": "rtsp", "url": url, "credentials_file": str(credentials or ""), "width": W,
                       "height": H, "fps": FPS, "keyframe_seconds": 1, "bitrate_kbps": 300, "stall_seconds": 6.0,
                       "reconnect_max_seconds": 2.0, **camera}
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> None:
        def toml(v):
            return f'"{v}"' if isinstance(v, str) else repr(v)

        self.config.write_text(
            f'[node]\nname = "{self.identity.name}"\ndata_dir = "{self.identity.data_dir}"\n'
            f'central_url = "{self.identity.central_url}"\nsegment_seconds = {SEGMENT_SECONDS}\n'
            "control_seconds = 0.5\nlive_interval_seconds = 0.5\nretry_max_seconds = 1.0\n\n[camera]\n"
            + "".join(f"{k} = {toml(v)}\n" for k, v in self.camera.items()))

    def start(self) -> NodeProcess:
        self.write_config()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "-vv", "--config", str(self.config), "node", "run"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 30.0) -> re.Match:
        return wait_for(lambda: re.search(pattern, self.text()), timeout, f"{pattern!r} in {self.log}", step=0.2)

    def ffmpeg_argv(self) -> list[str] | None:
        """The argv of the node's ffmpeg (its child), if one runs now."""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
                argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))
            if ppid == self.proc.pid and argv and argv[0].endswith(b"ffmpeg"):
                return [a.decode() for a in argv]
        return None


def stored(central, camera: str) -> list:
    """The camera's segments in the archive, verified, in sequence order."""
    infos = [verify_file(p) for p in (central.paths.archive / camera).rglob("*.cseg")]
    return sorted(infos, key=lambda i: i.seq)


def archive_paths(central, camera: str) -> list[Path]:
    return sorted((central.paths.archive / camera).rglob("*.cseg"), key=lambda p: verify_file(p).seq)


def approve_from_snapshot(people, camera: str) -> dict:
    """The Director approves the placement from the view the node sent (C6)."""
    wait_for(lambda: people.call("director", "camera.list")["cameras"][0]["snapshot_at"], 45, "a snapshot", 0.5)
    view = people.call("director", "camera.snapshot", camera=camera)
    people.call("director", "camera.approve_placement", camera=camera, note="view checked on the snapshot")
    return view


def gray_first_picture(annexb: bytes, width: int, height: int) -> bytes:
    done = subprocess.run(["ffmpeg", "-v", "error", "-f", "h264", "-i", "pipe:0", "-frames:v", "1", "-vf",
                           f"scale={width}:{height}", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
                          input=annexb, capture_output=True, timeout=60)
    assert done.returncode == 0 and len(done.stdout) == width * height, done.stderr
    return done.stdout


def region(pixels: bytes, width: int, x: int, y: int, w: int, h: int) -> list[int]:
    return [pixels[r * width + c] for r in range(y, y + h) for c in range(x, x + w)]


def test_ip_camera_recorded_through_an_outage_a_size_change_and_a_mask(tmp_path, central, people, server, caplog):
    caplog.set_level(logging.DEBUG)
    password = secret("alice")
    camera = RtspCamera(f"alice:{password}", width=W, height=H, fps=FPS, kbps=300, keyframe_seconds=1,
                        log=tmp_path / "camera.log")
    camera.start()
    watch = ProcessWatch([password])
    identity = new_node(tmp_path, central, server.url, "lobby")
    enrol(people, identity)
    post_entrance_sign(people)
    node = NodeProcess(tmp_path, identity, camera.url, write_credentials(tmp_path / "lobby.cred", "alice", password))
    node.start()
    try:
        # Placement is approved from a snapshot of the camera's own stream (C6)
        view = approve_from_snapshot(people, "lobby")
        assert len(set(base64.b64decode(view["pixels"]))) > 10                      # the test pattern
        assert people.call("director", "camera.list")["cameras"][0]["resolution"] == [W, H]
        approved_at = time.monotonic()
        wait_for(lambda: stored(central, "lobby"), 30, "a first segment", 0.5)
        argv = node.ffmpeg_argv()
        assert ("-c:v", "copy") in set(zip(argv, argv[1:])), argv          # no masks: no re-encoding
        assert not any("rtsp://" in a or "libx264" in a for a in argv)

        # Live view (C8) from the same stream
        live_view = people.call("sam", "live.open", camera="lobby", purpose="checking the lobby camera")["view"]
        frame = wait_for(lambda: _live_frame(people, live_view["id"]), 20, "a live frame", 0.5)
        assert frame["format"] == "gray8" and frame["width"] > 0
        people.call("sam", "live.close", view=live_view["id"])

        # The camera is reconfigured to 640x480 mid-stream: a new segment starts at the change
        time.sleep(3)
        camera.switch_size()
        node.wait_log(r"the stream changed from 320x240 .* to 640x480")

        # The camera goes away for 15 s
        time.sleep(max(0.0, approved_at + 20 - time.monotonic()))
        camera.stop()
        down_at = time.monotonic()
        time.sleep(15)
        camera.start()
        outage = time.monotonic() - down_at
        node.wait_log(r"pictures again after [\d.]+ s without")
        time.sleep(8)

        # The Director sets a privacy mask: the node decodes, masks and encodes from then on
        people.call("director", "camera.set_masks", camera="lobby", masks=[MASK], why="the staff door")
        argv = wait_for(lambda: (a := node.ffmpeg_argv()) and any("drawbox" in x for x in a) and a, 20,
                        "ffmpeg with the mask", 0.2)
        assert "libx264" in argv and "copy" not in argv
        masked_from = len(stored(central, "lobby"))
        wait_for(lambda: len(stored(central, "lobby")) >= masked_from + 2, 30, "masked segments", 0.5)
    finally:
        node.stop()
        stopped_at = time.monotonic()
        camera.stop()
        leaks = watch.stop()

    log_text = node.text()
    assert not list((identity.data_dir / "spool").glob("*.cseg")), "every segment arrived"
    no_plaintext_under(identity.data_dir)
    paths = archive_paths(central, "lobby")
    infos = assert_chain(paths)
    assert len(infos) >= 8 and all(i.complete for i in infos), "nothing corrupt or truncated is stored"

    # The joined stream decodes, as long as the camera was there
    secret_key = KeyStore(central.paths.data).unseal_with_passphrase(*DIRECTOR)
    joined = decrypt_join(paths, secret_key)
    duration, errors = ffprobe_duration_and_errors(joined, fps=FPS)
    assert errors == "", errors
    recorded = stopped_at - approved_at - outage
    assert recorded - 9 <= duration <= recorded + 1, (duration, recorded)

    # Each segment holds one picture size, and its header states it
    sizes = []
    for path, info in zip(paths, infos):
        units = split_access_units(decrypt_join([path], secret_key))
        keyframe_sizes = {access_unit_format(u.data)[3:] for u in units if u.keyframe}
        assert keyframe_sizes == {(info.header["width"], info.header["height"])}, (info.seq, keyframe_sizes)
        if not sizes or sizes[-1] != keyframe_sizes:
            sizes.append(keyframe_sizes)
    assert sizes == [{(320, 240)}, {(640, 480)}, {(320, 240)}]   # the restarted camera is 320x240 again

    # The outage is a hole between two complete segments, and the node says why
    holes = [(b.header["start_us"] - a.trailer["end_us"]) / 1e6 for a, b in zip(infos, infos[1:])]
    long_holes = [h for h in holes if h > 5]
    assert len(long_holes) == 1 and outage - 1 <= long_holes[0] <= outage + 8, holes
    assert "camera ended the stream" in log_text and "nothing answers at 127.0.0.1" in log_text
    # ... and the central recorded it: one time gap from the end of the segment before to the start
    # of the one after (the only other time gap is the masks change's)
    before, after = next((a, b) for a, b in zip(infos, infos[1:])
                         if b.header["start_us"] - a.trailer["end_us"] > 5_000_000)
    time_gaps = [g for g in central.records.all("gaps") if g["camera"] == "lobby" and g["kind"] == "time"]
    spanning = [g for g in time_gaps
                if g["from_us"] < after.header["start_us"] and g["to_us"] > before.trailer["end_us"]]
    assert len(spanning) == 1, time_gaps
    gap = spanning[0]
    assert (gap["from_seq"], gap["to_seq"], gap["from_us"], gap["to_us"]) == (
        before.seq, after.seq, before.trailer["end_us"], after.header["start_us"])
    assert [g["why"] for g in time_gaps if g is not gap] == ["camera restarted: privacy masks changed"]
    assert gap["why"] == after.header["gap"]["why"]          # as the node signed it
    lost = re.search(r"camera lobby: stream lost after \d+ pictures: (.+); reconnecting", log_text).group(1)

    # The mask: flat black in the masked segments, the test pattern before
    masked = gray_first_picture(decrypt_join(paths[-1:], secret_key), W, H)
    before = gray_first_picture(decrypt_join(paths[:1], secret_key), W, H)
    inside, earlier = region(masked, W, *MASK), region(before, W, *MASK)
    assert max(inside) - min(inside) <= 8 and max(inside) < 40, (min(inside), max(inside))
    assert max(earlier) - min(earlier) > 60

    # The password is in no process's command line and in no log line (ffmpeg's lines are logged, redacted)
    assert watch.scans > 100 and leaks == [], leaks
    assert "alice:***@127.0.0.1" in log_text and "Stream #0:0" in log_text
    for text in (log_text, caplog.text, (tmp_path / "camera.log").read_text()):
        assert not any(s in text for s in spellings(password))

    # The gap says why in the backend's words
    assert gap["why"] == f"camera stream lost: {lost}"


def _live_frame(people, view_id: str):
    from appliance.errors import NotFound

    try:
        return people.call("sam", "live.frame", view=view_id)
    except NotFound:
        return None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wrong_password_and_unreachable_camera_logged_clearly_and_alerted(tmp_path, central, people, server):
    password = secret("bob")
    camera = RtspCamera(f"bob:{password}", width=W, height=H, fps=FPS, keyframe_seconds=1, log=tmp_path / "cam.log")
    camera.start()
    watch = ProcessWatch([password, password + "x"])
    identity = new_node(tmp_path, central, server.url, "stacks")
    enrol(people, identity, category="collection", location="Stacks")
    post_entrance_sign(people)
    credentials = write_credentials(tmp_path / "stacks.cred", "bob", password)
    node = NodeProcess(tmp_path, identity, camera.url, credentials)
    node.start()
    limit = timedelta(seconds=2 * SEGMENT_SECONDS + 61)

    def offline_alerts():
        cameras_mod.check_offline(central)
        return [a for a in central.records.all("alerts") if a["kind"] == "camera_offline"]

    try:
        approve_from_snapshot(people, "stacks")
        wait_for(lambda: stored(central, "stacks"), 30, "a first segment", 0.5)
        node.stop()

        # A wrong password: the node says so and keeps trying; the central sees the camera go silent
        write_credentials(credentials, "bob", password + "x")
        node.start()
        node.wait_log(r"camera stacks: cannot record from rtsp://127\.0\.0\.1:\d+/stream: the camera refused "
                      r"the user name or password \(401 Unauthorized\): check .*stacks\.cred")
        time.sleep(3)
        assert node.proc.poll() is None, "the node keeps running and retrying"
        central.clock.offset += limit
        assert [a["camera"] for a in offline_alerts()] == ["stacks"]

        # The right password again: recording resumes without a restart (the file is read at every attempt)
        count = len(stored(central, "stacks"))
        write_credentials(credentials, "bob", password)
        wait_for(lambda: len(stored(central, "stacks")) > count, 30, "recording to resume", 0.5)
        cameras_mod.check_offline(central)
        assert [a["kind"] for a in central.records.all("alerts") if a["kind"].startswith("camera_o")] == [
            "camera_offline", "camera_online"]
        node.stop()

        # A camera nobody answers for
        node.camera["url"] = f"rtsp://127.0.0.1:{_closed_port()}/stream"
        node.start()
        node.wait_log(r"camera stacks: cannot record from rtsp://127\.0\.0\.1:\d+/stream: nothing answers at "
                      r"127\.0\.0\.1:\d+ \(connection refused\)")
        central.clock.offset += limit
        assert [a["camera"] for a in offline_alerts()] == ["stacks", "stacks"]
        assert node.proc.poll() is None
    finally:
        node.stop()
        camera.stop()
        leaks = watch.stop()
    log_text = node.text()
    assert watch.scans > 50 and leaks == [], leaks
    assert "bob:***@127.0.0.1" in log_text
    assert not any(s in log_text for p in (password, password + "x") for s in spellings(p))


def test_h265_camera_refused_with_the_setting_to_change(tmp_path, central, people, server):
    camera = RtspCamera("", codec="h265", width=W, height=H, fps=FPS, log=tmp_path / "cam.log")
    camera.start()
    identity = new_node(tmp_path, central, server.url, "parking")
    enrol(people, identity, category="parking", location="Car park")
    node = NodeProcess(tmp_path, identity, camera.url, None).start()     # this camera asks for no password
    try:
        node.wait_log(r"the camera sends H\.265 \(HEVC\), and Custodian records H\.264 only .*set Video > "
                      r"Encoding > Video Encoding .* to H\.264")
        time.sleep(2)
        assert node.proc.poll() is None
    finally:
        node.stop()
        camera.stop()
    assert people.call("director", "camera.list")["cameras"][0]["snapshot_at"] is None   # nothing was decoded
    assert not list((identity.data_dir / "spool").glob("*.cseg*"))


class NotingOpener:
    """hw.selftest's MemoryOpener that also keeps what the backend says about breaks."""

    def __init__(self):
        from hw.selftest import MemoryOpener

        self.memory = MemoryOpener()
        self.notes: list[str] = []

    def open_segment(self):
        return self.memory.open_segment()

    def record_loss(self, why: str) -> None:
        self.memory.record_loss(why)

    def note_break(self, why: str) -> None:
        self.notes.append(why)


def test_a_lost_stream_is_noted_with_why_and_pictures_keep_the_cameras_timing(tmp_path):
    """The backend alone: the reason for an outage goes to the opener's note_break, and the
    pictures carry the camera's own timestamps although they are read in batches."""
    from hw.rtsp_source import RtspBackend, RtspSettings
    from hw.selftest import check_segments

    camera = RtspCamera("", width=W, height=H, fps=FPS, keyframe_seconds=1, log=tmp_path / "cam.log")
    camera.start()
    backend = RtspBackend(RtspSettings(url=camera.url, width=W, height=H, fps=FPS, reconnect_max_seconds=1.0),
                          "gap-cam")
    opener = NotingOpener()
    backend.start(opener, 2)
    try:
        wait_for(lambda: backend.frames >= 40, 30, "pictures", 0.2)
        camera.stop()
        wait_for(lambda: opener.notes, 30, "the outage noted", 0.2)
        camera.start()
        wait_for(lambda: backend.connections == 2 and backend.frames >= 80, 60, "pictures again", 0.2)
    finally:
        backend.stop()
        camera.stop()
    assert opener.notes == ["camera stream lost: the camera ended the stream (it stopped, restarted or closed "
                            "the connection)"]
    ok, detail = check_segments(opener.memory.segments)
    assert ok, detail
    frames = opener.memory.frames
    steps = [b.pts_us - a.pts_us for a, b in zip(frames, frames[1:])]
    # The first picture after the reconnection is placed at its arrival, the ones before it ran
    # on the camera's clock from the first arrival: under load that first arrival came late, which
    # shortens the step across the outage (it was 2 s and more when idle, less under load). What
    # holds whatever the load: it is the one step off the camera's 100 ms cadence, and a long one.
    outage = [s for s in steps if s % 100_000 or s > 2_000_000]
    assert len(outage) == 1 and outage[0] > 300_000, outage   # the outage lies between two pictures...
    within = [s for s in steps if s not in outage]            # ...the rest are the camera's 100 ms (10 fps)
    assert all(s % 100_000 == 0 for s in within) and within.count(100_000) >= 0.9 * len(within), within


def test_udp_transport_by_setting(tmp_path):
    """rtsp_transport = "udp": RTP arrives on UDP sockets of the node's ffmpeg, and records."""
    from hw.rtsp_source import RtspBackend, RtspSettings
    from hw.selftest import MemoryOpener, check_segments

    camera = RtspCamera("", width=W, height=H, fps=FPS, keyframe_seconds=1, log=tmp_path / "cam.log")
    camera.start()
    backend = RtspBackend(RtspSettings(url=camera.url, transport="udp", width=W, height=H, fps=FPS), "udp-cam")
    opener = MemoryOpener()
    backend.start(opener, 2)
    try:
        wait_for(lambda: backend.frames >= 30, 30, "pictures over UDP", 0.2)
        pid = backend.proc.pid
        sockets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        inodes = {s[len("socket:["):-1] for s in sockets if s.startswith("socket:[")}
        udp = {line.split()[9] for name in ("udp", "udp6") for line in
               Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]}
    finally:
        backend.stop()
        camera.stop()
    assert inodes & udp, "ffmpeg holds no UDP socket"
    ok, detail = check_segments(opener.segments)
    assert ok and len(opener.segments) >= 2, detail
