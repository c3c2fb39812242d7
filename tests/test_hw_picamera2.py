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

from appliance.config import CameraConfig
from hw import board as board_mod
from hw.backend import CameraFailed
from hw.picamera2_backend import Picamera2Backend, choose_encoder, mask_plan
from hw.selftest import MemoryOpener, check_segments, run_selftest
from hw.watchdog import FrameWatchdog

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="the fake picamera2 encodes with ffmpeg")

ROOT = Path(__file__).resolve().parent.parent
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


def camera_cfg(**kw) -> CameraConfig:
    base = dict(backend="picamera2", width=W, height=H, fps=FPS, bitrate_kbps=800, keyframe_seconds=1,
                masks=[MASK], stall_seconds=1.0, max_restarts=3)
    base.update(kw)
    return CameraConfig(**base)


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
    backend.start(opener, 1)
    try:
        wait_for(lambda: backend.frames >= 40 and backend.splits >= 3)
    finally:
        backend.stop()
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
    assert config["buffer_count"] <= 5
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
    backend.start(opener, 1)
    try:
        wait_for(lambda: backend.frames >= 3)
    finally:
        backend.stop()
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
    backend.start(opener, 1)
    try:
        wait_for(lambda: backend.frames >= 5)
    finally:
        backend.stop()
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
    make_board(tmp_path, PI4, "Raspberry Pi 4 Model B Rev 1.5")
    checks = run_selftest(camera_cfg(), seconds=2, compatible_path=tmp_path / "compatible",
                          model_path=tmp_path / "model", clock_synced=lambda: True)
    by_name = {c.name: c for c in checks}
    assert [c.name for c in checks if c.required and not c.ok] == [], [c.line() for c in checks]
    for name in ("board", "picamera2", "encoder", "camera opens", "recording", "masks drawn",
                 "privacy masks", "clock synced"):
        assert by_name[name].ok, by_name[name].line()
    assert "H264Encoder" in by_name["encoder"].detail
    assert "SPS+PPS+IDR" in by_name["recording"].detail


def test_selftest_without_picamera2_fails_clearly():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-m", "hw.selftest", "--seconds", "1"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
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
