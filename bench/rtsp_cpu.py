"""Benchmark 5: CPU per stream-hour of an IP camera (1080p25, 4 Mb/s) recorded by the rtsp
backend in stream copy, against a bare `ffmpeg -rtsp_transport tcp -i URL -c copy -f segment`.

The camera is GStreamer's RTSP server (bench/rtsp_camera.py) on loopback, with a
password, encoding `videotestsrc pattern=snow` (noise: x264 needs the whole 4 Mb/s
for it) at 1920x1080, 25 fps, a keyframe every 2 s. Its media is shared, so both
sides read the *same* stream at the same time: same bytes, same load on the machine.

Measured: the node's recording path in this process, `hw.rtsp_source.RtspBackend`
(copy mode: its ffmpeg child writing NUT, the reader thread, the NUT demuxer, the
splitter) into `appliance.node.recorder.Recorder` (encrypt, hash, sign, fsync every 2 s, 60 s
segments, each deleted once finished as the uploader would after its receipt). CPU
is this process's `getrusage(RUSAGE_SELF)` plus the node's ffmpeg's run time (the
sum of /proc/<pid>/task/*/schedstat, in nanoseconds), over the window.

Reference: `ffmpeg -rtsp_transport tcp -i URL -c copy -f segment -segment_time 60
out%03d.ts` (Frigate's recording path: no encryption, no fsync), its CPU from
schedstat over the same window.

Both start, get 5 s to connect and settle, then CPU is read at the start and end of
each window (5 windows of 40 s; quick mode one of 3 s); figures are scaled to one
hour of stream and the median of the per-window ratios is reported. The camera's
own CPU (encoding) is not counted on either side.

Diagnostics, not part of the ratio, one window each after the trials, on the same
camera: the node reading and parsing without writing segments (a counting sink),
and the node with one privacy mask (decode, mask, libx264, Recorder).
"""
from __future__ import annotations

import os
import resource
import subprocess
import time

from . import common
from .node_cpu import make_node
from .rtsp_camera import RtspCamera, available

NAME = "rtsp_cpu"
TITLE = "CPU per stream-hour, IP camera 1080p25 4 Mb/s: rtsp backend (stream copy) vs ffmpeg -c copy -f segment"
TARGET = 1.5
WIDTH, HEIGHT, FPS, KBPS, KEYFRAME_SECONDS = 1920, 1080, 25, 4000, 2
SEGMENT_SECONDS = 60
SETTLE_SECONDS = 5


def _proc_cpu(pid: int) -> float:
    """CPU time of a running process's threads, in seconds, to the nanosecond (/proc/PID/task/*/schedstat:
    /proc/PID/stat counts in 10 ms ticks, which is 5 % of what ffmpeg uses in a 40 s window)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass                 # a thread that just ended
    return total / 1e9


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Counting:
    """Opens the Recorder's segments (none: frames go nowhere) and counts the video that passes."""

    def __init__(self, recorder):
        self.recorder = recorder
        self.bytes = 0
        self.frames = 0

    def open_segment(self):
        sink = self.recorder.open_segment() if self.recorder is not None else None
        outer = self

        class Sink:
            def write_frame(self, frame):
                outer.bytes += len(frame.data)
                outer.frames += 1
                if sink is not None:
                    sink.write_frame(frame)

            def close(self):
                if sink is not None:
                    sink.close()

        return Sink()


def run(settings: common.Settings) -> dict:
    from hw.rtsp_source import RtspBackend, RtspSettings

    missing = available()
    if missing:
        raise RuntimeError(missing)
    windows, seconds = (1, 3.0) if settings.quick else (5, 40.0)
    password = f"bench-{os.urandom(4).hex()}"
    with common.scratch(settings, NAME) as tmp:
        camera = RtspCamera(f"bench:{password}", width=WIDTH, height=HEIGHT, fps=FPS, kbps=KBPS,
                            keyframe_seconds=KEYFRAME_SECONDS, pattern="snow", log=tmp / "camera.log")
        camera.start()
        credentials = tmp / "camera.credentials"
        credentials.write_text(f"bench:{password}\n")
        credentials.chmod(0o600)
        recorder, segments = make_node(tmp / "node", SEGMENT_SECONDS)
        counting = _Counting(recorder)
        backend = RtspBackend(RtspSettings(url=camera.url, credentials_file=str(credentials), width=WIDTH,
                                           height=HEIGHT, fps=FPS), "bench-cam")
        (tmp / "ffmpeg").mkdir()
        bare = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-rtsp_transport", "tcp",
             "-i", camera.url.replace("rtsp://", f"rtsp://bench:{password}@"), "-c", "copy", "-f", "segment",
             "-segment_time", str(SEGMENT_SECONDS), str(tmp / "ffmpeg" / "out%03d.ts")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        backend.start(counting, SEGMENT_SECONDS)
        trials = []
        try:
            time.sleep(SETTLE_SECONDS)
            if backend.proc is None or bare.poll() is not None or not backend.frames:
                raise RuntimeError(f"a side did not connect: node {backend.stderr_tail(3)}, "
                                   f"ffmpeg {bare.poll()} {bare.stderr.read(500) if bare.poll() is not None else ''}")
            node_ffmpeg = backend.proc.pid
            for _ in range(windows):
                t0, b0, f0 = time.monotonic(), counting.bytes, counting.frames
                node0, ff0, ref0 = _self_cpu(), _proc_cpu(node_ffmpeg), _proc_cpu(bare.pid)
                time.sleep(seconds)
                node1, ff1, ref1 = _self_cpu(), _proc_cpu(node_ffmpeg), _proc_cpu(bare.pid)
                wall = time.monotonic() - t0
                if backend.proc is None or backend.proc.pid != node_ffmpeg:
                    raise RuntimeError("the node's connection dropped during the window")
                per_hour = 3600 / wall
                trials.append({
                    "wall": wall, "node_python": (node1 - node0) * per_hour, "node_ffmpeg": (ff1 - ff0) * per_hour,
                    "node": (node1 - node0 + ff1 - ff0) * per_hour, "ffmpeg": (ref1 - ref0) * per_hour,
                    "mbps": (counting.bytes - b0) * 8 / wall / 1e6, "fps": (counting.frames - f0) / wall,
                })
            backend.stop()
            bare.terminate()
            bare.wait(10)
            diagnostics = {
                "read_and_parse_only": _one_window(camera.url, credentials, _Counting(None), seconds),
                "masked": _one_window(camera.url, credentials, _Counting(make_node(tmp / "m", SEGMENT_SECONDS)[0]),
                                      seconds, masks=((100, 100, 400, 300),)),
            }
        finally:
            backend.stop()
            if bare.poll() is None:
                bare.terminate()
                bare.wait(10)
            camera.stop()
    for t in trials:
        t["ratio"] = t["node"] / t["ffmpeg"] if t["ffmpeg"] > 0 else float("inf")
    node = common.median([t["node"] for t in trials])
    reference = common.median([t["ffmpeg"] for t in trials])
    ratio = common.median([t["ratio"] for t in trials])
    return common.result(
        NAME, TITLE, figure=round(node, 2), unit="CPU s per stream-hour", baseline=round(reference, 2),
        baseline_unit="CPU s per stream-hour", baseline_name="ffmpeg -rtsp_transport tcp -i URL -c copy -f segment",
        ratio=round(ratio, 3), checks=[common.check("node / ffmpeg CPU", round(ratio, 3), "<=", TARGET)],
        details={"trials": trials, "windows": windows, "window_seconds": seconds, "segments_finished": len(segments),
                 "stream": f"{WIDTH}x{HEIGHT} {FPS} fps, {KBPS} kb/s target, keyframe every {KEYFRAME_SECONDS} s",
                 "node_python": common.median([t["node_python"] for t in trials]),
                 "node_ffmpeg": common.median([t["node_ffmpeg"] for t in trials]),
                 "mbps": common.median([t["mbps"] for t in trials]),
                 "fps": common.median([t["fps"] for t in trials]), **diagnostics})


def _one_window(url: str, credentials, counting: _Counting, seconds: float, masks: tuple = ()) -> dict:
    """Diagnostic, not in the ratio: the node alone on the same camera, without writing segments
    (a counting sink), or with a privacy mask (decode, mask, libx264, Recorder)."""
    from hw.rtsp_source import RtspBackend, RtspSettings

    backend = RtspBackend(RtspSettings(url=url, credentials_file=str(credentials), width=WIDTH, height=HEIGHT,
                                       fps=FPS, bitrate_kbps=KBPS, keyframe_seconds=KEYFRAME_SECONDS,
                                       masks=masks), "bench-diagnostic")
    backend.start(counting, SEGMENT_SECONDS)
    try:
        time.sleep(SETTLE_SECONDS)
        if backend.proc is None or not backend.frames:
            raise RuntimeError(f"the diagnostic side did not connect: {backend.stderr_tail(3)}")
        pid, t0, f0 = backend.proc.pid, time.monotonic(), counting.frames
        node0, ff0 = _self_cpu(), _proc_cpu(pid)
        time.sleep(seconds)
        node1, ff1 = _self_cpu(), _proc_cpu(pid)
        wall = time.monotonic() - t0
    finally:
        backend.stop()
    per_hour = 3600 / wall
    return {"node_python": (node1 - node0) * per_hour, "node_ffmpeg": (ff1 - ff0) * per_hour,
            "node": (node1 - node0 + ff1 - ff0) * per_hour, "fps": (counting.frames - f0) / wall}
