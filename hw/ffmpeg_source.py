"""Camera backends built on an ffmpeg process: `synthetic`, `v4l2` and `file`.

One ffmpeg process per camera reads the source, draws the privacy masks (black boxes,
after scaling to the configured size and converting to yuv420p, so the masked pixels
never reach the encoder), encodes with libx264 and writes raw Annex-B H.264 to its
stdout. A reader thread parses the pipe into access units (``hw.annexb``), stamps
them and hands them to a ``KeyframeSplitter``, which opens and closes the segments.
Nothing touches the disk: video stays in the pipe and in RAM until the segment
writer (the node's encrypting writer) takes it.

Sources:

* ``synthetic``: lavfi ``testsrc2`` at the configured size and rate, with the wall
  clock (``%{localtime}``) and the camera name burned in, paced in real time (``-re``).
* ``v4l2``: a USB camera at ``cfg.device``, scaled to the configured size and made
  constant-rate with the ``fps`` filter (frames are duplicated or dropped against the
  device's timestamps).
* ``file``: ``cfg.file`` looped forever (``-stream_loop -1 -re``), scaled and made
  constant-rate the same way.

Timestamps: ``pts_us = base + index * 1_000_000 // fps``, where ``base`` is
``time.monotonic_ns() // 1000`` taken at ``start()`` and ``index`` counts the access
units of this run. The output is constant-rate for every source (testsrc2 and the
looped file are paced by ``-re``; the ``fps`` filter makes a v4l2 camera's output CFR),
so the index is an exact clock for the stream; the base ties it to the node's
monotonic clock. Each start (and so each watchdog restart) takes a new base.
"""
from __future__ import annotations

import collections
import logging
import os
import shutil
import subprocess
import threading
import time

import ffmpeg

from hw.settings import CameraSettings, SettingsError

from .annexb import AccessUnit, AnnexBParser
from .backend import CameraBackend, CameraFailed, Frame, KeyframeSplitter, SegmentOpener, clip_masks
from .ffmpeg_common import drain_lines, draw_masks, encoder_options

log = logging.getLogger(__name__)

FONT_FILE = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
SOURCES = ("synthetic", "v4l2", "file")
_READ_CHUNK = 1 << 16


def _overlay_text(name: str) -> str:
    """The camera name made safe for drawtext (no escaping games in filter syntax)."""
    safe = "".join(c if (c.isalnum() or c in " ._-") else "_" for c in name)[:40]
    return safe or "camera"


def build_command(cfg: CameraSettings, camera_name: str = "camera", ffmpeg_bin: str = "ffmpeg",
                  font_file: str = FONT_FILE) -> list[str]:
    """The ffmpeg argv for cfg's source (built with ffmpeg-python; run by us)."""
    if cfg.backend not in SOURCES:
        raise SettingsError(f"[camera] backend {cfg.backend!r} is not an ffmpeg source ({', '.join(SOURCES)})")
    if cfg.width <= 0 or cfg.height <= 0 or cfg.width % 2 or cfg.height % 2:
        raise SettingsError(f"[camera] size {cfg.width}x{cfg.height}: width and height must be positive and even")
    if cfg.fps <= 0 or cfg.keyframe_seconds <= 0 or cfg.bitrate_kbps <= 0:
        raise SettingsError("[camera] fps, keyframe_seconds and bitrate_kbps must be positive")
    masks = clip_masks(cfg.masks, cfg.width, cfg.height)
    size = f"{cfg.width}x{cfg.height}"

    if cfg.backend == "synthetic":
        video = ffmpeg.input(f"testsrc2=size={size}:rate={cfg.fps}", f="lavfi", re=None).video
        fontsize = max(10, cfg.height // 24)
        video = video.drawtext(
            text=f"%{{localtime}} {_overlay_text(camera_name)}", escape_text=False,
            fontfile=font_file, fontsize=fontsize, fontcolor="white", box=1, boxcolor="black@0.6",
            x=8, y=f"h-th-{max(4, fontsize // 2)}",
        )
    elif cfg.backend == "v4l2":
        video = ffmpeg.input(cfg.device, f="v4l2", framerate=cfg.fps, video_size=size).video
        video = video.filter("scale", cfg.width, cfg.height).filter("fps", fps=cfg.fps)
    else:
        video = ffmpeg.input(cfg.file, stream_loop=-1, re=None).video
        video = video.filter("scale", cfg.width, cfg.height).filter("fps", fps=cfg.fps)

    video = draw_masks(video, masks)
    out = video.output(
        "pipe:", format="h264", flush_packets=1,
        **encoder_options("libx264", cfg.fps, cfg.keyframe_seconds, cfg.bitrate_kbps),
    ).global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning")
    argv = out.compile(cmd=ffmpeg_bin)
    return argv


class FfmpegBackend(CameraBackend):
    """Records from an ffmpeg source; see the module docstring."""

    def __init__(self, cfg: CameraSettings, name: str = "camera", *, ffmpeg_bin: str = "ffmpeg",
                 stop_timeout: float = 3.0, log_lines: int = 200):
        super().__init__()
        self.cfg = cfg
        self.name = cfg.backend
        self.camera_name = name
        self.ffmpeg_bin = ffmpeg_bin
        self.stop_timeout = stop_timeout
        self.argv = build_command(cfg, name, ffmpeg_bin)     # validates cfg now, not at start
        self.stderr_ring: collections.deque[str] = collections.deque(maxlen=log_lines)
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self._lock = threading.RLock()
        self._reader: threading.Thread | None = None
        self._err_reader: threading.Thread | None = None
        self._splitter: KeyframeSplitter | None = None
        self._stopping = False
        self._base_us = 0
        self._index = 0

    # -- lifecycle ---------------------------------------------------------

    def start(self, opener: SegmentOpener, segment_seconds: float) -> None:
        with self._lock:
            if self.proc is not None:
                raise RuntimeError(f"{self.name} backend already started")
            self._check_source()
            self._reset_liveness()
            self._splitter = KeyframeSplitter(opener, segment_seconds)
            self._stopping = False
            self._index = 0
            self.exit_code = None
            self._base_us = time.monotonic_ns() // 1000
            try:
                proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    bufsize=0, close_fds=True,
                    # our own process group: a terminal's Ctrl-C reaches us, and we stop ffmpeg
                    # in order (closing the open segment) instead of racing it
                    start_new_session=True,
                )
            except OSError as e:
                self._splitter = None
                raise CameraFailed(f"cannot run {self.ffmpeg_bin}: {e}") from e
            self.proc = proc
            self._reader = threading.Thread(target=self._read_video, args=(proc, self._splitter),
                                            name=f"ffmpeg-{self.name}-video", daemon=True)
            self._err_reader = threading.Thread(target=self._read_log, args=(proc,),
                                                name=f"ffmpeg-{self.name}-log", daemon=True)
            self._reader.start()
            self._err_reader.start()
            log.info("camera %s: %s source started (pid %d)", self.camera_name, self.name, proc.pid)

    def stop(self) -> None:
        with self._lock:
            proc = self.proc
            if proc is None:
                return
            self._stopping = True
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning("camera %s: ffmpeg ignored SIGTERM for %.0fs; killing it",
                                self.camera_name, self.stop_timeout)
                    proc.kill()
                    proc.wait()
            for t in (self._reader, self._err_reader):
                if t is not None:
                    t.join(self.stop_timeout + 5)
            for f in (proc.stdout, proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
            if self._splitter is not None:
                self._splitter.close()
            self.exit_code = proc.returncode
            self.proc = None
            self._reader = self._err_reader = None
            self._splitter = None

    def _check_source(self) -> None:
        if shutil.which(self.ffmpeg_bin) is None:
            raise CameraFailed(f"{self.ffmpeg_bin} not found: install ffmpeg (apt install ffmpeg)")
        if self.cfg.backend == "v4l2" and not os.path.exists(self.cfg.device):
            raise CameraFailed(f"no video device at {self.cfg.device} (is the USB camera plugged in?)")
        if self.cfg.backend == "file" and not os.path.isfile(self.cfg.file):
            raise CameraFailed(f"camera file {self.cfg.file!r} not found")

    # -- threads -------------------------------------------------------------

    def _read_video(self, proc: subprocess.Popen, splitter: KeyframeSplitter) -> None:
        parser = AnnexBParser()
        fd = proc.stdout.fileno()
        failed = None
        try:
            while True:
                chunk = os.read(fd, _READ_CHUNK)
                if not chunk:
                    break
                for au in parser.feed(chunk):
                    self._emit(au, splitter)
        except Exception as e:   # the segment writer failed, or the pipe broke
            failed = e
            log.exception("camera %s: recording stopped", self.camera_name)
            if proc.poll() is None:
                proc.terminate()   # nobody will read the pipe any more
        rc = proc.wait()
        if failed is None and rc != -9:
            # ffmpeg finished its output (SIGTERM or end of input): the last unit is whole.
            # After SIGKILL it may be cut short, so it is dropped.
            last = parser.flush()
            if last is not None:
                try:
                    self._emit(last, splitter)
                except Exception as e:
                    failed = e
                    log.exception("camera %s: writing the last frame failed", self.camera_name)
        if failed is not None:
            self._report_stall(f"segment writer failed: {failed}")
        elif not self._stopping:
            tail = " | ".join(list(self.stderr_ring)[-3:])
            log.error("camera %s: ffmpeg exited with code %s: %s", self.camera_name, rc, tail or "(no output)")
            self._report_stall(f"ffmpeg exited with code {rc}")

    def _emit(self, au: AccessUnit, splitter: KeyframeSplitter) -> None:
        pts = self._base_us + self._index * 1_000_000 // self.cfg.fps
        self._index += 1
        self._saw_frame()
        splitter.on_frame(Frame(au.data, au.keyframe, pts))

    def _read_log(self, proc: subprocess.Popen) -> None:
        """Drain stderr into a bounded ring (the pipe never fills; the log never grows)."""
        drain_lines(proc.stderr.fileno(), self._log_line)

    def _log_line(self, text: str) -> None:
        text = text[:500]
        self.stderr_ring.append(text)
        log.debug("ffmpeg[%s]: %s", self.camera_name, text)

    def stderr_tail(self, n: int = 20) -> list[str]:
        return list(self.stderr_ring)[-n:]
