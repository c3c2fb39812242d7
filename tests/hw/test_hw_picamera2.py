"""hw.picamera2_backend against the fake picamera2 (tests/fake_picamera2): real frames,
real x264, the same threading; plus the self-test with and without picamera2."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hw.settings import CameraSettings
from hw import board as board_mod
from hw.settings import SettingsError
from hw.backend import CameraFailed
from hw.picamera2_backend import Picamera2Backend, choose_encoder, mask_plan
from hw.selftest import MemoryOpener, check_segments, run_selftest
from hw.watchdog import FrameWatchdog

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="the fake picamera2 encodes with ffmpeg")

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fake_picamera2"
W, H, FPS = 320, 240, 10
MASK = [40, 40, 100, 60]
PI4 = b"raspberrypi,4-model-b\x00brcm,bcm2711\x00"
PI5 = b"raspberrypi,5-model-b\x00brcm,bcm2712\x00"


def wait_for(cond, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def make_board(tmp: Path, compatible: bytes, model: str) -> board_mod.Board:
    (tmp / "compatible").write_bytes(compatible)
    (tmp / "model").write_bytes(model.encode() + b"\x00")
    return board_mod.detect_board(tmp / "compatible", tmp / "model")


def camera_cfg(**kw) -> CameraSettings:
    base = dict(backend="picamera2", width=W, height=H, fps=FPS, bitrate_kbps=800, keyframe_seconds=1,
                masks=[MASK], stall_seconds=1.0, max_restarts=3)
    base.update(kw)
    return CameraSettings(**base)


def record(backend, opener, until, segment_seconds=1) -> None:
    """Start the backend, wait until `until()` holds, stop it (the segment is finished)."""
    backend.start(opener, segment_seconds)
    try:
        wait_for(until)
    finally:
        backend.stop()


def fake_pi_selftest(tmp_path):
    """The self-test on a (fake) Pi 4 with the fake picamera2; segment closes fsync in tmp_path."""
    make_board(tmp_path, PI4, "Raspberry Pi 4 Model B Rev 1.5")
    checks = run_selftest(camera_cfg(), seconds=2, compatible_path=tmp_path / "compatible",
                          model_path=tmp_path / "model", clock_synced=lambda: True, scratch_dir=tmp_path)
    return {c.name: c for c in checks}


@pytest.fixture(scope="module")
def p2():
    """The fake picamera2, first on sys.path for this module only."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(FAKE))
    import picamera2
    assert getattr(picamera2, "FAKE", False)
    yield picamera2
    for name in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        del sys.modules[name]
    mp.undo()


@pytest.fixture
def control(p2):
    p2._fake.control.reset()
    yield p2._fake.control
    p2._fake.control.release_hang()
    for cam in list(p2._fake.control.opened):
        try:
            cam.close()
        except Exception:
            pass


@pytest.fixture(scope="module")
def recording(p2, tmp_path_factory):
    """~4 s through the adapter on a (fake) Pi 4: 1 s keyframes, 1 s segments, one mask."""
    control = p2._fake.control
    control.reset()
    board = make_board(tmp_path_factory.mktemp("pi4"), PI4, "Raspberry Pi 4 Model B Rev 1.5")
    backend = Picamera2Backend(camera_cfg(), "lobby", board=board)
    opener = MemoryOpener()
    record(backend, opener, lambda: backend.frames >= 40 and backend.splits >= 3)
    return {"backend": backend, "opener": opener, "control": control,
            "config": control.configs[0], "encoder": control.encoders[0],
            "samples": dict(control.samples), "sample_configs": dict(control.sample_configs),
            "encoded": list(control.encoded)}


def test_configuration_passed_to_picamera2(recording):
    config, encoder = recording["config"], recording["encoder"]
    assert config["main"]["format"] == "YUV420" and tuple(config["main"]["size"]) == (W, H)
    assert config["lores"]["format"] == "YUV420"
    lw, lh = config["lores"]["size"]
    assert lw <= W and lh <= H
    assert config["buffer_count"] == 6 and config["queue"] is False   # picamera2's video default; none held back
    assert config["controls"]["FrameRate"] == FPS
    assert type(encoder).__name__ == "H264Encoder"
    assert encoder.repeat is True and encoder.iperiod == FPS * 1 and encoder.bitrate == 800_000
    assert recording["backend"].encoder_choice.name == "H264Encoder"


def test_segments_switch_at_keyframes_with_no_lost_or_repeated_frame(recording):
    opener, encoded = recording["opener"], recording["encoded"]
    segments = opener.segments
    assert len(segments) >= 4 and opener.order_errors == 0
    assert all(s.closed for s in segments)
    ok, detail = check_segments(segments)
    assert ok, detail
    # the segments joined are exactly what the encoder produced, frame for frame
    frames = opener.frames
    assert [f.data for f in frames] == [au for au, _, _ in encoded]
    assert [f.keyframe for f in frames] == [k for _, k, _ in encoded]
    assert [f.pts_us - frames[0].pts_us for f in frames] == [ts - encoded[0][2] for _, _, ts in encoded]
    # timestamps are back on the sensor (monotonic) clock and keep counting across segments
    assert abs(frames[0].pts_us - recording["encoder"].firsttimestamp) == 0
    assert all(b.pts_us > a.pts_us for a, b in zip(frames, frames[1:]))
    joined = b"".join(s.data for s in segments)
    probe = subprocess.run(["ffprobe", "-v", "error", "-f", "h264", "-i", "pipe:", "-count_frames",
                            "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"],
                           input=joined, capture_output=True, timeout=60, check=True)
    assert int(probe.stdout.decode().strip()) == len(frames) and probe.stderr == b""


def _plane_rect(buf: bytes, offset: int, stride: int, x0: int, y0: int, x1: int, y1: int) -> set[int]:
    return {buf[offset + r * stride + c] for r in range(y0, y1) for c in range(x0, x1)}


def test_masks_applied_to_main_and_lores(recording):
    backend = recording["backend"]
    assert backend.masked_frames["main"] > 0 and backend.masked_frames["lores"] > 0
    x, y, w, h = MASK
    for stream in ("main", "lores"):
        cfg = recording["sample_configs"][stream]
        buf = recording["samples"][stream]
        sw, sh = cfg["size"]
        stride = cfg["stride"]
        fx, fy = sw / W, sh / H
        x0, y0, x1, y1 = int(x * fx), int(y * fy), int((x + w) * fx), int((y + h) * fy)
        assert _plane_rect(buf, 0, stride, x0, y0, x1, y1) == {0}                    # Y black
        u_off = stride * sh
        v_off = u_off + (stride // 2) * (sh // 2)
        for off in (u_off, v_off):                                                     # U, V neutral
            assert _plane_rect(buf, off, stride // 2, x0 // 2, y0 // 2, x1 // 2, y1 // 2) == {128}
        # the test pattern is still there outside the mask
        assert len(_plane_rect(buf, 0, stride, int(200 * fx), int(40 * fy), int(300 * fx), int(140 * fy))) > 4
    assert recording["sample_configs"]["lores"]["stride"] > recording["sample_configs"]["lores"]["size"][0]
    # and what was encoded is black there too
    first_key = b"".join(au for au, _, _ in recording["encoded"][:1])
    gray = subprocess.run(["ffmpeg", "-v", "error", "-f", "h264", "-i", "pipe:", "-frames:v", "1",
                           "-f", "rawvideo", "-pix_fmt", "gray", "pipe:"],
                          input=first_key, capture_output=True, timeout=60, check=True).stdout
    assert len(gray) == W * H
    assert max(gray[r * W + c] for r in range(y + 2, y + h - 2) for c in range(x + 2, x + w - 2)) <= 24


def test_mask_plan_rounds_outwards():
    # a 3-pixel mask at odd coordinates, scaled to a half-size stream, still covers its pixels
    plan = mask_plan([(3, 5, 3, 3)], (320, 240), (160, 120), 192)
    rows = sorted({off // 192 for off, fill in plan if off < 192 * 120})
    assert rows == [2, 3]
    spans = {(off % 192, len(fill)) for off, fill in plan if off < 192 * 120}
    assert spans == {(1, 2)}


def test_pi5_uses_the_software_encoder(p2, control, tmp_path, monkeypatch):
    pi5 = make_board(tmp_path, PI5, "Raspberry Pi 5 Model B Rev 1.0")
    assert pi5.family == "pi5" and not board_mod.has_hardware_h264(pi5)
    assert choose_encoder(pi5, True).name == "LibavH264Encoder"
    backend = Picamera2Backend(camera_cfg(masks=[]), "pi5", board=pi5)
    opener = MemoryOpener()
    record(backend, opener, lambda: backend.frames >= 3)
    assert type(control.encoders[-1]).__name__ == "LibavH264Encoder"
    assert control.encoders[-1].repeat is True and control.encoders[-1].iperiod == FPS
    assert check_segments(opener.segments)[0]
    # a Pi 4 whose picamera2 reports no hardware encoder also falls back
    monkeypatch.setattr(p2.encoders, "_hw_encoder_available", False)
    pi4 = board_mod.Board("Raspberry Pi 4", "pi4")
    assert choose_encoder(pi4, False).name == "LibavH264Encoder"


def test_board_families(tmp_path):
    cases = {
        b"raspberrypi,model-zero-2-w\x00brcm,bcm2837\x00": ("pi02", True),
        b"raspberrypi,3-model-b-plus\x00brcm,bcm2837\x00": ("pi3", True),
        b"raspberrypi,model-zero-w\x00brcm,bcm2835\x00": ("pi0", True),
        PI4: ("pi4", True),
        PI5: ("pi5", False),
        b"raspberrypi,5-compute-module\x00brcm,bcm2712\x00": ("pi5", False),
        b"pine64,rockpro64\x00rockchip,rk3399\x00": ("other", False),
    }
    for compatible, (family, hw) in cases.items():
        b = make_board(tmp_path, compatible, "some board")
        assert (b.family, b.has_hardware_h264) == (family, hw), compatible
    missing = board_mod.detect_board(tmp_path / "nope", tmp_path / "nope")
    assert missing.family == "other" and not missing.is_raspberry_pi
    assert board_mod.clock_synced(lambda: 0) and not board_mod.clock_synced(lambda: 5)
    assert not board_mod.clock_synced(lambda: -1)
    assert not board_mod.clock_synced(lambda: (_ for _ in ()).throw(OSError("no adjtimex")))
    assert isinstance(board_mod.clock_synced(), bool)
    (tmp_path / "boot_id").write_text("0f5e-boot\n")
    assert board_mod.boot_id(tmp_path / "boot_id") == "0f5e-boot"
    assert board_mod.boot_id(tmp_path / "nope") == ""


def test_failing_masks_fail_closed(p2, control, monkeypatch):
    backend = Picamera2Backend(camera_cfg(), "broken-mask", board=board_mod.Board("Raspberry Pi 4", "pi4"))

    def broken(*a, **k):
        raise ValueError("unexpected buffer layout")

    monkeypatch.setattr(backend, "_plan_for", broken)
    opener = MemoryOpener()
    record(backend, opener, lambda: backend.frames >= 5)
    assert opener.segments == []                      # not one frame reached a segment
    assert "privacy masks" in backend.stall_reason


def test_open_failure_raises_camera_failed(p2, control):
    control.fail_open = 1
    backend = Picamera2Backend(camera_cfg(), "nocam", board=board_mod.Board("Raspberry Pi 4", "pi4"))
    with pytest.raises(CameraFailed, match="did not open"):
        backend.start(MemoryOpener(), 1)


def test_a_switch_that_misses_its_deadline_is_a_stall(p2, control):
    backend = Picamera2Backend(camera_cfg(), "no-keyframe", board=board_mod.Board("Raspberry Pi 4", "pi4"),
                               split_deadline=0.6)
    opener = MemoryOpener()
    backend.start(opener, 0.5)
    try:
        wait_for(lambda: backend.frames >= 3)
        control.stall()                              # no keyframe will ever come: split_output blocks
        wait_for(lambda: backend.stall_reason is not None, timeout=10)
    finally:
        backend.stop()                               # and stop() still returns, segment closed
    assert "segment switch did not complete" in backend.stall_reason
    assert opener.segments and all(s.closed for s in opener.segments)
    # the abandoned split_output() call was released, not left blocked forever
    wait_for(lambda: not any(t.name.startswith("picamera2-no-keyframe") for t in threading.enumerate()), 5)


def test_stall_triggers_a_watchdog_restart(p2, control):
    backend = Picamera2Backend(camera_cfg(), "stalls", board=board_mod.Board("Raspberry Pi 4", "pi4"))
    opener = MemoryOpener()
    fatal = []
    backend.start(opener, 1)
    dog = FrameWatchdog(backend, opener, 1, stall_seconds=1.0, max_restarts=3, deadline_seconds=10,
                        on_fatal=lambda: fatal.append(1), notify_interval=0.2)
    dog.start()
    try:
        wait_for(lambda: backend.frames >= 10)
        restarts = dog.restarts          # (a loaded machine may already have restarted a slow start)
        control.stall()
        stalled_at = backend.frames
        wait_for(lambda: dog.restarts > restarts)
        wait_for(lambda: backend.frames >= stalled_at + 10 and dog.failures == 0)
    finally:
        dog.stop()
        backend.stop()
    assert not fatal
    assert len(control.opened) >= 2 and not any(cam.is_open for cam in control.opened)  # closed, reopened
    assert opener.order_errors == 0
    ok, detail = check_segments(opener.segments)
    assert ok, detail


def test_selftest_passes_on_a_fake_pi(p2, control, tmp_path):
    by_name = fake_pi_selftest(tmp_path)
    failed = [c.name for c in by_name.values() if c.required and not c.ok and c.name != "dropped frames"]
    assert failed == [], [c.line() for c in by_name.values()]
    for name in ("board", "picamera2", "encoder", "camera opens", "recording", "masks drawn",
                 "privacy masks", "clock synced"):
        assert by_name[name].ok, by_name[name].line()
    assert "H264Encoder" in by_name["encoder"].detail
    assert "SPS+PPS+IDR" in by_name["recording"].detail
    dropped = by_name["dropped frames"]
    switches = int(dropped.detail.split(" across ")[1].split()[0])
    assert switches >= 3 and "slowest segment close" in dropped.detail, dropped.line()
    if control.late_frames == 0:       # (a machine too busy to pace the fake skips frames itself)
        assert dropped.ok and dropped.detail.startswith("0 across"), dropped.line()
    assert list(tmp_path.glob("*.scratch")) == []            # the scratch files are gone


def test_selftest_reports_frames_missing_at_the_sensor(p2, control, tmp_path):
    def interrupt():                  # the sensor delivers nothing for 0.6 s (6 frames at 10 fps)
        wait_for(lambda: control.requests >= 15)
        cams = [cam for cam in control.opened if cam.is_open]
        for cam in cams:
            cam._stalled.set()
        time.sleep(0.6)
        for cam in cams:
            cam._stalled.clear()

    threading.Thread(target=interrupt, daemon=True).start()
    dropped = fake_pi_selftest(tmp_path)["dropped frames"]
    assert not dropped.ok and dropped.status == "FAIL", dropped.line()
    missing = int(dropped.detail.split(", ")[1].split()[0])
    assert missing >= 5, dropped.line()


def test_missing_frames_counts_the_gaps_in_timestamps():
    from hw.backend import Frame
    from hw.selftest import missing_frames
    step = 1_000_000 // 15
    pts = [0, step, 2 * step + 900, 3 * step - 700, 6 * step, 7 * step, 9 * step + 400]
    frames = [Frame(b"", i == 0, t) for i, t in enumerate(pts)]
    assert missing_frames(frames, 15) == 2 + 1        # jitter is no gap; 3->6 misses 2, 7->9 misses 1
    assert missing_frames(frames[:2], 15) == 0 and missing_frames([], 15) == 0


def test_selftest_without_picamera2_fails_clearly():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "selftest", "--seconds", "1"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "[FAIL] picamera2:" in out and "apt install python3-picamera2" in out
    assert "--system-site-packages" in out
    assert "[skip] camera opens: skipped: picamera2 is not importable" in out
    assert "[skip] recording" in out
    assert "Traceback" not in result.stderr


def test_modules_import_without_picamera2():
    code = ("import sys, hw, hw.picamera2_backend, hw.selftest, hw.watchdog, hw.factory, hw.board, "
            "hw.ffmpeg_source; assert 'picamera2' not in sys.modules; "
            "assert not any(m.startswith('textual') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# -- what the fake used to hide (issue 12) ------------------------------------------------

class SlowCloseSink:
    """A segment whose close takes 500 ms, like an fsync on a slow SD card: the segment's
    bytes go to a real file that is fsynced, and the rest of the 500 ms is waited out."""

    CLOSE_SECONDS = 0.5

    def __init__(self, path: Path):
        self.path = path
        self.frames = []
        self.closed = False

    def write_frame(self, frame) -> None:
        assert not self.closed, "write to a closed segment"
        self.frames.append(frame)

    def close(self) -> None:
        started = time.monotonic()
        with open(self.path, "wb") as f:
            f.write(b"".join(fr.data for fr in self.frames))
            f.flush()
            os.fsync(f.fileno())
        time.sleep(max(0.0, self.CLOSE_SECONDS - (time.monotonic() - started)))
        self.closed = True

    @property
    def data(self) -> bytes:
        return b"".join(f.data for f in self.frames)


class SlowCloseOpener(MemoryOpener):
    def __init__(self, directory: Path):
        super().__init__()
        self.directory = directory

    def open_segment(self):
        with self.lock:
            if self.segments and not self.segments[-1].closed:
                self.order_errors += 1
            sink = SlowCloseSink(self.directory / f"{len(self.segments)}.h264")
            self.segments.append(sink)
            return sink


@pytest.mark.parametrize("board_strings", [(PI4, "Raspberry Pi 4 Model B Rev 1.5"),
                                           (PI5, "Raspberry Pi 5 Model B Rev 1.0")], ids=["pi4-v4l2", "pi5-libav"])
def test_a_segment_switch_with_a_500ms_fsync_drops_no_frames(p2, control, tmp_path, board_strings):
    board = make_board(tmp_path, *board_strings)
    backend = Picamera2Backend(camera_cfg(), "slow-disk", board=board)
    opener = SlowCloseOpener(tmp_path)
    record(backend, opener, lambda: backend.splits >= 2 and backend.frames >= 25)
    assert len(opener.segments) >= 3 and all(s.closed for s in opener.segments) and opener.order_errors == 0
    # libcamera always had a buffer to fill: no frame was lost at the sensor...
    assert control.buffer_drops == 0, f"{control.buffer_drops} frames lost for want of a camera buffer"
    # ...and everything encoded reached the segments, in order
    assert getattr(backend, "frames_dropped", 0) == 0
    assert [f.data for f in opener.frames] == [au for au, _, _ in control.encoded]
    ok, detail = check_segments(opener.segments)
    assert ok, detail
    if control.late_frames == 0:      # (a machine too busy to pace the fake skips frames itself)
        steps = {b.pts_us - a.pts_us for a, b in zip(opener.frames, opener.frames[1:])}
        assert steps == {1_000_000 // FPS}, steps


def test_the_configuration_asks_for_no_raw_stream(recording):
    config = recording["config"]
    assert config["raw"] is None
    allocated = recording["control"].allocations[0]
    assert set(allocated) == {"main", "lores"}, allocated       # no CMA spent on raw Bayer frames


@pytest.mark.parametrize("fault", ["fail_start", "fail_encoder_buffers"])
def test_a_failed_start_leaves_no_running_encoder(p2, control, fault):
    setattr(control, fault, 1)
    backend = Picamera2Backend(camera_cfg(), "fails", board=board_mod.Board("Raspberry Pi 4", "pi4"))
    with pytest.raises(CameraFailed, match="did not start"):
        backend.start(MemoryOpener(), 1)
    assert len(control.encoders) == 1
    encoder = control.encoders[0]
    assert not encoder.running, "the encoder was left running"
    encoder.thread.join(2)                        # (its poll thread gives up 400 ms after it is stopped)
    assert not encoder.thread.is_alive() and encoder.vd.closed and encoder._proc is None
    assert not any(cam.is_open for cam in control.opened)
    # and the next start (the watchdog's, or systemd's) gets the camera
    opener = MemoryOpener()
    record(backend, opener, lambda: backend.frames >= 3)
    assert check_segments(opener.segments)[0]


def test_settings_reach_the_encoder_as_integers(recording):
    encoder = recording["encoder"]
    assert type(encoder.iperiod) is int and type(encoder.bitrate) is int


def test_a_float_setting_is_refused_before_the_camera_opens(p2, control):
    for setting in ({"fps": 12.5}, {"keyframe_seconds": 1.5}, {"bitrate_kbps": 800.0}):
        with pytest.raises(SettingsError, match=f"{next(iter(setting))}.*whole number"):
            Picamera2Backend(camera_cfg(**setting), "floats", board=board_mod.Board("Raspberry Pi 4", "pi4"))
    assert control.open_attempts == 0


class StuckCloseOpener(MemoryOpener):
    """The first segment's close hangs until `unstick` is set (a card that stops answering)."""

    def __init__(self):
        super().__init__()
        self.unstick = threading.Event()
        self.closing = threading.Event()
        self.losses: list[str] = []

    def open_segment(self):
        sink = super().open_segment()
        if len(self.segments) == 1:
            close = sink.close

            def stuck_close():
                self.closing.set()
                self.unstick.wait(30)
                close()
            sink.close = stuck_close
        return sink

    def record_loss(self, why: str) -> None:
        self.losses.append(why)


def test_a_writer_that_falls_behind_drops_up_to_a_keyframe_and_reports_the_loss(p2, control):
    backend = Picamera2Backend(camera_cfg(), "stuck-disk", board=board_mod.Board("Raspberry Pi 4", "pi4"),
                               writer_queue_frames=5)
    opener = StuckCloseOpener()
    backend.start(opener, 1)
    try:
        assert opener.closing.wait(30)
        wait_for(lambda: backend.frames_dropped >= 8)       # the queue of 5 is full: frames are dropped...
        assert control.buffer_drops == 0                     # ...by the writer, not starved at the camera
        opener.unstick.set()
        splits = backend.splits
        wait_for(lambda: backend.splits >= splits + 2)
    finally:
        opener.unstick.set()
        backend.stop()
    dropped = backend.frames_dropped
    assert [int(why.split()[0]) for why in opener.losses] and sum(int(w.split()[0]) for w in opener.losses) == dropped
    assert all("segment writer fell behind" in why for why in opener.losses)
    kept = opener.frames
    encoded = control.encoded
    assert len(kept) + dropped == len(encoded)
    # what was kept is the encoded stream minus whole runs that end just before a keyframe
    index = {au: n for n, (au, _, _) in enumerate(encoded)}
    positions = [index[f.data] for f in kept]
    assert positions == sorted(positions)
    for a, b in zip(positions, positions[1:]):
        if b != a + 1:
            assert encoded[b][1], "after a drop the next frame kept must be a keyframe"
    ok, detail = check_segments(opener.segments)
    assert ok, detail
    assert opener.order_errors == 0


# -- the fake itself: the behaviour of picamera2 that the tests above rely on ----------------

def fake_camera(p2, **config):
    cam = p2.Picamera2()
    cam.configure(cam.create_video_configuration(main={"size": (W, H), "format": "YUV420"},
                                                 controls={"FrameRate": FPS}, **config))
    return cam


def test_fake_camera_loses_frames_while_its_requests_are_held(p2, control):
    held = []
    cam = fake_camera(p2, buffer_count=3, raw=None, queue=False)
    cam.post_callback = lambda request: (request.acquire(), held.append(request))   # a consumer that never lets go
    cam.start()
    try:
        wait_for(lambda: control.buffer_drops >= 3)
        assert len(held) == 3                          # the pool: three requests, then nothing to fill
        for request in held:
            request.release()                          # given back: frames flow again
        wait_for(lambda: len(held) >= 6)
    finally:
        cam.close()
    assert control.allocations[-1] == {"main": (3, 320 * 240 * 3 // 2)}


def test_fake_camera_allocates_a_raw_stream_and_keeps_a_request_unless_told_not_to(p2, control):
    cam = fake_camera(p2, buffer_count=4)
    try:
        assert set(control.allocations[-1]) == {"main", "raw"} and control.allocations[-1]["raw"][0] == 4
        assert cam.camera_config["raw"]["size"] == (1536, 864) and cam._max_queue_len == 1
    finally:
        cam.close()


@pytest.mark.parametrize("encoder_name, settings", [("H264Encoder", {"bitrate": 800_000.0}),
                                                    ("H264Encoder", {"bitrate": 800_000, "iperiod": 12.5}),
                                                    ("LibavH264Encoder", {"bitrate": 800_000, "iperiod": 12.5}),
                                                    ("LibavH264Encoder", {"bitrate": 800_000.0, "iperiod": 10})])
def test_fake_encoders_refuse_float_settings_and_close_does_not_stop_them(p2, control, encoder_name, settings):
    import picamera2.encoders as encoders   # not left to an earlier test's import (the fixture clears the modules)
    from picamera2.outputs import Output
    cam = fake_camera(p2, raw=None)
    encoder = getattr(encoders, encoder_name)(repeat=True, framerate=FPS, **settings)
    with pytest.raises(TypeError):
        cam.start_recording(encoder, Output())
    cam.close()
    assert encoder.running                             # left running, as picamera2 leaves it
    if encoder_name == "H264Encoder":
        assert encoder.thread.is_alive()               # and its poll thread polling
    encoder.stop()
