"""hw.ffmpeg_source: real ffmpeg, recorded into RAM, checked with ffprobe/ffmpeg."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from hw.settings import CameraSettings
from hw.settings import SettingsError
from hw.annexb import nal_types
from hw.backend import CameraFailed
from hw.factory import make_backend
from hw.ffmpeg_source import FfmpegBackend, build_command
from hw.selftest import MemoryOpener, check_segments

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="needs ffmpeg and ffprobe")

W, H, FPS = 320, 240, 10
MASK = [40, 40, 100, 60]


def wait_for(cond, timeout=30.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def decode(data: bytes, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "h264", "-i", "pipe:", *args],
                          input=data, capture_output=True, timeout=60)


def count_frames(data: bytes) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-f", "h264", "-i", "pipe:", "-count_frames",
                          "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"],
                         input=data, capture_output=True, timeout=60, check=True).stdout
    return int(out.decode().strip())


def gray_frames(data: bytes, width: int, height: int) -> list[bytes]:
    raw = decode(data, "-f", "rawvideo", "-pix_fmt", "gray", "pipe:")
    assert raw.returncode == 0, raw.stderr
    n = width * height
    return [raw.stdout[i:i + n] for i in range(0, len(raw.stdout), n)]


def rect_values(frame: bytes, width: int, x: int, y: int, w: int, h: int) -> list[int]:
    return [frame[r * width + c] for r in range(y, y + h) for c in range(x, x + w)]


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def synthetic():
    """~5 s of the synthetic camera: 10 fps, a keyframe every second, 2 s segments, one mask."""
    cfg = CameraSettings(backend="synthetic", width=W, height=H, fps=FPS, bitrate_kbps=800,
                       keyframe_seconds=1, masks=[MASK])
    backend = make_backend(cfg, name="lobby-1")
    opener = MemoryOpener()
    started_us = time.monotonic_ns() // 1000
    backend.start(opener, 2)
    pid = backend.proc.pid
    try:
        wait_for(lambda: backend.frames >= 50)
    finally:
        backend.stop()
    return {"backend": backend, "opener": opener, "pid": pid, "started_us": started_us}


def test_every_segment_starts_with_a_keyframe_carrying_sps(synthetic):
    segments = synthetic["opener"].segments
    assert len(segments) >= 3
    assert synthetic["opener"].order_errors == 0
    for seg in segments:
        assert seg.closed
        first = seg.frames[0]
        assert first.keyframe
        types = nal_types(first.data)
        assert 7 in types and 8 in types and 5 in types
        # a segment holds whole GOPs: 2 s at one keyframe per second
        keys = [i for i, f in enumerate(seg.frames) if f.keyframe]
        assert keys[0] == 0 and all(k % FPS == 0 for k in keys)
    assert all(len(s.frames) == 2 * FPS for s in segments[:-1])
    ok, detail = check_segments(segments)
    assert ok, detail


def test_joined_segments_decode_without_errors(synthetic):
    segments = synthetic["opener"].segments
    joined = b"".join(s.data for s in segments)
    frames = sum(len(s.frames) for s in segments)
    result = decode(joined, "-f", "null", "-")
    assert result.returncode == 0 and result.stderr == b""
    assert count_frames(joined) == frames
    # and each segment decodes on its own
    for seg in segments:
        assert count_frames(seg.data) == len(seg.frames)


def test_pts_steps_are_exact(synthetic):
    frames = synthetic["opener"].frames
    steps = {b.pts_us - a.pts_us for a, b in zip(frames, frames[1:])}
    assert steps == {1_000_000 // FPS}
    # on the node's monotonic clock, from the moment the backend started
    assert 0 <= frames[0].pts_us - synthetic["started_us"] < 5_000_000


def test_mask_is_black_in_every_frame(synthetic):
    joined = b"".join(s.data for s in synthetic["opener"].segments)
    frames = gray_frames(joined, W, H)
    assert len(frames) == len(synthetic["opener"].frames)
    x, y, w, h = MASK
    for frame in frames:
        inside = rect_values(frame, W, x + 2, y + 2, w - 4, h - 4)    # x264 may soften the edge
        assert max(inside) <= 24
    # the rest of the picture is the test pattern, not black
    outside = rect_values(frames[-1], W, 200, 40, 100, 100)
    assert sum(outside) / len(outside) > 60


def test_stop_leaves_no_ffmpeg_behind(synthetic):
    backend = synthetic["backend"]
    assert backend.proc is None and backend.exit_code is not None
    assert not pid_alive(synthetic["pid"])
    assert backend.stall_reason is None             # an orderly stop is not a stall
    backend.stop()                                   # idempotent


def test_command_line(tmp_path):
    cfg = CameraSettings(backend="synthetic", width=W, height=H, fps=15, bitrate_kbps=1500, keyframe_seconds=2,
                       masks=[[0, 0, 10, 10], [300, 200, 100, 100]])
    argv = build_command(cfg, "Front desk: 1")
    joined = " ".join(argv)
    assert argv[:5] == ["ffmpeg", "-f", "lavfi", "-re", "-i"]
    assert "%{localtime}" in joined and "DejaVuSans.ttf" in joined and "Front desk_ 1" in joined
    fc = argv[argv.index("-filter_complex") + 1]
    # masks come after the overlay and the pixel format conversion: the last thing before the encoder
    assert fc.index("drawtext") < fc.index("format=yuv420p") < fc.index("drawbox=0:0:10:10:black:t=fill")
    assert "drawbox=300:200:20:40:black:t=fill" in fc                # clipped to the frame
    for opt, val in (("-g", "30"), ("-keyint_min", "30"), ("-sc_threshold", "0"), ("-b:v", "1500k"),
                     ("-x264-params", "repeat-headers=1:aud=1"), ("-f", "h264"), ("-preset", "ultrafast"),
                     ("-tune", "zerolatency"), ("-vcodec", "libx264")):
        assert argv[argv.index(opt, argv.index("-map")) + 1] == val, opt
    assert argv[argv.index("-map") + 1:].count("pipe:") == 1

    with pytest.raises(SettingsError):
        build_command(CameraSettings(masks=[[5000, 5000, 10, 10]]))
    with pytest.raises(SettingsError):
        build_command(CameraSettings(masks=[[0, 0, 0, 10]]))
    with pytest.raises(SettingsError):
        make_backend(CameraSettings(backend="webcam"))

    v4l2 = build_command(CameraSettings(backend="v4l2", device="/dev/video7", width=640, height=480, fps=10))
    assert v4l2[v4l2.index("-i") + 1] == "/dev/video7" and v4l2[v4l2.index("-f") + 1] == "v4l2"
    assert "fps=fps=10" in " ".join(v4l2)
    looped = build_command(CameraSettings(backend="file", file=str(tmp_path / "in.mp4")))
    assert looped[looped.index("-stream_loop") + 1] == "-1" and "-re" in looped[:looped.index("-i")]


def test_missing_sources_fail_cleanly(tmp_path):
    backend = FfmpegBackend(CameraSettings(backend="v4l2", device=str(tmp_path / "video9")))
    with pytest.raises(CameraFailed, match="no video device"):
        backend.start(MemoryOpener(), 2)
    backend = FfmpegBackend(CameraSettings(backend="file", file=str(tmp_path / "missing.mp4")))
    with pytest.raises(CameraFailed, match="not found"):
        backend.start(MemoryOpener(), 2)
    assert backend.proc is None


def test_file_backend_loops_the_file(tmp_path: Path):
    clip = tmp_path / "clip.mp4"           # the input fixture; the backend itself writes nothing
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
                    "-t", "1", "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=60)
    cfg = CameraSettings(backend="file", file=str(clip), width=160, height=120, fps=10, keyframe_seconds=1,
                       bitrate_kbps=300)
    backend = FfmpegBackend(cfg, "file-cam")
    opener = MemoryOpener()
    backend.start(opener, 1)
    try:
        wait_for(lambda: backend.frames >= 25)       # 2.5 s from a 1 s file: it looped
    finally:
        backend.stop()
    ok, detail = check_segments(opener.segments)
    assert ok, detail
    frames = opener.frames
    assert {b.pts_us - a.pts_us for a, b in zip(frames, frames[1:])} == {100_000}
    joined = b"".join(s.data for s in opener.segments)
    assert count_frames(joined) == len(frames)
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4"]
