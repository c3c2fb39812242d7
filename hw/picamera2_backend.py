"""The Raspberry Pi camera through picamera2: a thin adapter onto the backend interface.

* Configuration: ``main`` and ``lores`` both YUV420 (``lores`` is half of ``main`` by
  default and never larger), no raw stream (``raw=None``), ``buffer_count`` 6 with
  ``queue=False`` (see BUFFER_COUNT), ``FrameRate`` from the config.
* Encoder: ``H264Encoder(bitrate, repeat=True, iperiod=fps*keyframe_seconds)`` on boards
  with the VideoCore encoder; ``LibavH264Encoder`` (libx264, software) on a Pi 5, or
  whenever ``picamera2.encoders._hw_encoder_available`` is False. ``repeat=True`` puts
  SPS/PPS before every keyframe, so each segment decodes on its own. Every setting is an
  int: both encoders write them into C integer fields, which refuse a float.
* Who calls ``outputframe``: with ``LibavH264Encoder`` the camera loop itself, inside
  ``process_requests`` under ``picam2.lock``; with ``H264Encoder`` the V4L2 poll thread,
  which also hands the camera its buffers back. Either way, time spent there is time the
  camera has no buffer to fill, and a frame with no buffer is lost at the sensor. So
  ``outputframe`` only copies the frame and queues it; a writer thread opens, writes
  (encrypts) and closes (seals, signs, fsyncs) segments. The queue is bounded
  (WRITER_QUEUE_SECONDS): when it is full a frame is dropped, and every frame after it up
  to the next keyframe, all counted (``frames_dropped``) and reported to the node as a
  loss (``opener.record_loss``).
* Output: a ``SplittableOutput`` wrapping one ``_SegmentOutput`` per segment. A timer
  thread asks for a switch every ``segment_seconds`` with ``split_output()``, which
  switches at the next keyframe without dropping a frame. ``split_output`` waits with
  no timeout, so it runs in a helper thread under a deadline (two keyframe intervals
  plus 5 s by default); a missed deadline marks the camera stalled for the watchdog.
  ``SplittableOutput`` signals the switch before it makes it, so the old output may be
  stopped before the new one has its first frame: the writer closes a segment when the
  old output stops or the new output's first frame arrives, whichever comes first.
* Start: ``start_recording`` starts the encoder before the camera, and ``close()`` does
  not stop encoders, so a start that fails stops the encoder itself before closing.
* Timestamps: picamera2 gives microseconds since the first frame on the sensor clock;
  adding the encoder's ``firsttimestamp`` puts them back on that clock (CLOCK_MONOTONIC,
  the same base as ``time.monotonic_ns()``), so they keep counting across segments.
* Privacy masks: a ``pre_callback`` blacks out every mask in *both* the ``main`` and the
  ``lores`` buffers (they are separate buffers) before the encoder or anyone else sees
  them: Y set to 0, U and V to 128. A mask that cannot be applied fails closed: frames
  stop reaching segments and the camera reports a stall.

picamera2 is imported only when a backend starts, so this module imports anywhere.
"""
from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from types import SimpleNamespace

from hw.settings import CameraSettings, SettingsError

from . import board as board_mod
from .backend import CameraBackend, CameraFailed, Frame, SegmentOpener, clip_masks

log = logging.getLogger(__name__)

PICAMERA2_HINT = ("install it with 'sudo apt install python3-picamera2' and make the venv with "
                  "'python3 -m venv --system-site-packages' (PyPI's picamera2 cannot work without libcamera)")
HW_ENCODER_MAX = (1920, 1080)
INTEGER_SETTINGS = ("width", "height", "fps", "bitrate_kbps", "keyframe_seconds")

# Camera buffer sets (CMA). 6 is picamera2's own default for video. With frames leaving
# the delivering thread at once, a set is held only while the encoder reads it (libav
# keeps one more), so 6 leaves about four frame times (~270 ms at 15 fps) for a busy
# moment before the sensor has nowhere to write. CMA is scarce on a Zero 2 W, and the
# sets are smaller than they were: no raw stream (at 1280x720 the imx708's raw frame is
# 1536x864 packed Bayer, 1.66 MB) and queue=False (picamera2 would otherwise keep one set
# back for capture calls we never make). A set of 1280x720 main + 640x360 lores is 1.73 MB:
# 6 of them take 10.4 MB, less than the 13.6 MB the 4 sets with a raw stream took before.
BUFFER_COUNT = 6
# Frames the writer may fall behind by (a slow fsync at a segment switch, a busy card)
# before any is dropped: at 2 Mb/s, 10 s of video is 2.5 MB of RAM.
WRITER_QUEUE_SECONDS = 10.0


def import_picamera2() -> SimpleNamespace:
    """Import the parts of picamera2 we use; ImportError (with a hint) if it is missing."""
    try:
        import picamera2
        import picamera2.encoders as encoders
        from picamera2 import MappedArray, Picamera2
        from picamera2.encoders import LibavH264Encoder
        from picamera2.outputs import Output, SplittableOutput
    except ImportError as e:
        if getattr(e, "name", None) in ("picamera2", "libcamera"):
            raise ImportError(f"picamera2 is not importable ({e}): {PICAMERA2_HINT}") from e
        raise ImportError(f"picamera2 is too old or broken ({e}): Custodian needs picamera2 0.3.26 or "
                          "later (SplittableOutput); 'sudo apt install --only-upgrade python3-picamera2'") from e
    return SimpleNamespace(
        module=picamera2, Picamera2=Picamera2, MappedArray=MappedArray, Output=Output,
        SplittableOutput=SplittableOutput, LibavH264Encoder=LibavH264Encoder,
        H264Encoder=getattr(encoders, "H264Encoder", None),
        hw_encoder_available=bool(getattr(encoders, "_hw_encoder_available", False)),
    )


@dataclass(frozen=True)
class EncoderChoice:
    name: str       # "H264Encoder" | "LibavH264Encoder"
    reason: str


def choose_encoder(board: board_mod.Board, hw_encoder_available: bool) -> EncoderChoice:
    if board.family == "pi5":
        return EncoderChoice("LibavH264Encoder", f"{board.model}: the Pi 5 has no hardware H.264 encoder")
    if not hw_encoder_available:
        return EncoderChoice("LibavH264Encoder", "picamera2 reports no hardware H.264 encoder")
    return EncoderChoice("H264Encoder", "hardware H.264 encoder")


def default_lores(width: int, height: int) -> tuple[int, int]:
    """Half the main size (even numbers), for previews and snapshots."""
    return max(2, width // 4 * 2), max(2, height // 4 * 2)


def mask_plan(masks: list[tuple[int, int, int, int]], ref_size: tuple[int, int],
              size: tuple[int, int], stride: int) -> list[tuple[int, bytes]]:
    """Byte writes that black out `masks` (given in ref_size pixels) in a YUV420 buffer.

    The buffer is laid out as libcamera does: `height` rows of `stride` bytes of Y,
    then U and V with rows of stride/2 bytes. Rectangles are scaled to the stream and
    rounded outwards, so a scaled mask never uncovers a pixel the configured one covers.
    """
    rw, rh = ref_size
    w, h = size
    cstride = stride // 2
    u_off = stride * h
    v_off = u_off + cstride * (h // 2)
    plan: list[tuple[int, bytes]] = []
    for x, y, mw, mh in masks:
        x0 = max(0, math.floor(x * w / rw))
        y0 = max(0, math.floor(y * h / rh))
        x1 = min(w, math.ceil((x + mw) * w / rw))
        y1 = min(h, math.ceil((y + mh) * h / rh))
        if x0 >= x1 or y0 >= y1:
            continue
        black = bytes(x1 - x0)
        plan += [(r * stride + x0, black) for r in range(y0, y1)]
        cx0, cx1 = x0 // 2, min(w // 2, (x1 + 1) // 2)
        cy0, cy1 = y0 // 2, min(h // 2, (y1 + 1) // 2)
        grey = b"\x80" * (cx1 - cx0)
        for base in (u_off, v_off):
            plan += [(base + r * cstride + cx0, grey) for r in range(cy0, cy1)]
    return plan


def apply_plan(array, plan: list[tuple[int, bytes]], needed: int) -> None:
    """Write the plan into a mapped buffer (numpy array or memoryview: any writable,
    C-contiguous buffer). Raises if the buffer is not what the plan was made for."""
    with memoryview(array) as view:
        with (view.cast("B") if view.ndim != 1 or view.format != "B" else view[:]) as flat:
            if flat.readonly:
                raise ValueError("mapped buffer is read-only")
            if flat.nbytes < needed:
                raise ValueError(f"mapped buffer is too small ({flat.nbytes} < {needed} bytes)")
            for offset, fill in plan:
                flat[offset:offset + len(fill)] = fill


class Picamera2Backend(CameraBackend):
    name = "picamera2"

    def __init__(self, cfg: CameraSettings, name: str = "camera", *, board: board_mod.Board | None = None,
                 lores_size: tuple[int, int] | None = None, buffer_count: int = BUFFER_COUNT, camera_num: int = 0,
                 force_key_frame: bool = False, split_deadline: float | None = None, stop_grace: float = 3.0,
                 writer_queue_frames: int | None = None):
        super().__init__()
        for setting in INTEGER_SETTINGS:
            value = getattr(cfg, setting)
            if type(value) is not int:      # the encoders' fields are C ints: a float fails every start
                raise SettingsError(f"[camera] {setting}: expected a whole number, got {value!r}")
        if cfg.width <= 0 or cfg.height <= 0 or cfg.width % 2 or cfg.height % 2:
            raise SettingsError(f"[camera] size {cfg.width}x{cfg.height}: width and height must be positive and even")
        if cfg.fps <= 0 or cfg.keyframe_seconds <= 0 or cfg.bitrate_kbps <= 0:
            raise SettingsError("[camera] fps, keyframe_seconds and bitrate_kbps must be positive")
        if not 1 <= buffer_count <= 8:
            raise SettingsError("picamera2 buffer_count must be 1..8 (camera buffers come from CMA)")
        self.cfg = cfg
        self.camera_name = name
        self.board = board or board_mod.detect_board()
        self.masks = clip_masks(cfg.masks, cfg.width, cfg.height)
        self.lores_size = tuple(lores_size or default_lores(cfg.width, cfg.height))
        if self.lores_size[0] > cfg.width or self.lores_size[1] > cfg.height:
            raise SettingsError(f"lores {self.lores_size} may not be larger than main {cfg.width}x{cfg.height}")
        if self.board.has_hardware_h264 and (cfg.width > HW_ENCODER_MAX[0] or cfg.height > HW_ENCODER_MAX[1]):
            raise SettingsError(f"[camera] {cfg.width}x{cfg.height}: the hardware H.264 encoder stops at "
                              f"{HW_ENCODER_MAX[0]}x{HW_ENCODER_MAX[1]}")
        self.buffer_count = buffer_count
        self.writer_queue_frames = writer_queue_frames or max(8, math.ceil(cfg.fps * WRITER_QUEUE_SECONDS))
        self.camera_num = camera_num
        self.force_key_frame = force_key_frame
        self.split_deadline = split_deadline if split_deadline is not None else 2 * cfg.keyframe_seconds + 5.0
        self.stop_grace = stop_grace
        self.encoder_choice: EncoderChoice | None = None
        self.camera_model = ""
        self.masked_frames = {"main": 0, "lores": 0}
        self.splits = 0
        self.frames_dropped = 0                   # frames the writer could not keep up with (a loss)
        self._lock = threading.RLock()            # start/stop
        self._picam2 = None
        self._encoder = None
        self._splittable = None
        self._writer: _SegmentWriter | None = None
        self._pts_base: int | None = None
        self._mask_failed = False
        self._plans: dict[str, tuple[tuple, list, int]] = {}
        self._split_stop = threading.Event()
        self._split_thread: threading.Thread | None = None
        self._p2: SimpleNamespace | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self, opener: SegmentOpener, segment_seconds: float) -> None:
        with self._lock:
            if self._picam2 is not None:
                raise RuntimeError("picamera2 backend already started")
            try:
                p2 = self._p2 = import_picamera2()
            except ImportError as e:
                raise CameraFailed(str(e)) from e
            self._reset_liveness()
            self._mask_failed = False
            self._pts_base = None
            self._plans = {}
            self.encoder_choice = choice = choose_encoder(self.board, p2.hw_encoder_available)
            encoder_cls = p2.LibavH264Encoder if choice.name == "LibavH264Encoder" else p2.H264Encoder
            try:
                picam2 = p2.Picamera2(self.camera_num)
            except Exception as e:
                raise CameraFailed(f"camera {self.camera_num} did not open: {e}") from e
            cfg = self.cfg
            encoder = None
            try:
                self.camera_model = str(picam2.camera_properties.get("Model", ""))
                config = picam2.create_video_configuration(
                    main={"size": (cfg.width, cfg.height), "format": "YUV420"},
                    lores={"size": self.lores_size, "format": "YUV420"},
                    raw=None,                     # otherwise picamera2 adds one, buffer_count buffers of it
                    buffer_count=self.buffer_count,
                    queue=False,                  # keep no buffer back for capture calls
                    controls={"FrameRate": cfg.fps},
                    encode="main",
                )
                picam2.configure(config)
                if self.masks:
                    picam2.pre_callback = self._mask_callback
                encoder = self._encoder = encoder_cls(bitrate=cfg.bitrate_kbps * 1000, repeat=True,
                                                      iperiod=cfg.fps * cfg.keyframe_seconds, framerate=cfg.fps)
                self._writer = _SegmentWriter(self, opener, self.writer_queue_frames)
                self._splittable = p2.SplittableOutput(self._new_output())
                picam2.start_recording(encoder, self._splittable)
            except Exception as e:
                log.error("camera %s: picamera2 start failed: %s", self.camera_name, e)
                self._abandon_start(picam2, encoder)
                raise CameraFailed(f"camera did not start ({choice.name}): {e}") from e
            self._picam2 = picam2
            self._split_stop = threading.Event()
            self._split_thread = threading.Thread(
                target=self._split_loop, args=(self._split_stop, self._splittable, segment_seconds),
                name=f"picamera2-{self.camera_name}-split", daemon=True)
            self._split_thread.start()
            log.info("camera %s: picamera2 %s recording with %s (%s)", self.camera_name, self.camera_model,
                     choice.name, choice.reason)

    def _abandon_start(self, picam2, encoder) -> None:
        """Undo a start that failed part-way (the encoder may be running: see _stop_camera)."""
        self._stop_camera(picam2, encoder)
        if self._writer is not None:
            self._writer.close()
        self._writer = self._encoder = self._splittable = None

    def stop(self) -> None:
        with self._lock:
            picam2 = self._picam2
            if picam2 is None:
                return
            self._split_stop.set()
            if self._split_thread is not None:
                self._split_thread.join(2.0)
            stopper = threading.Thread(target=self._stop_camera, args=(picam2, self._encoder),
                                       name=f"picamera2-{self.camera_name}-stop", daemon=True)
            stopper.start()
            stopper.join(self.stop_grace)
            if stopper.is_alive():
                log.warning("camera %s: stop_recording() has not returned after %.0fs; closing the segment "
                            "without the frames still in flight", self.camera_name, self.stop_grace)
            # write what is queued and finish the open segment now, whatever the camera does next
            self._writer.close()
            if stopper.is_alive():
                stopper.join()   # a wedged camera: whoever called us (the watchdog) holds the deadline
            # a split still waiting for a keyframe that will never come: let it finish
            done = getattr(self._splittable, "_split_done", None)
            if done is not None:
                done.set()
            self._picam2 = None
            self._encoder = None
            self._splittable = None
            self._writer = None
            self._split_thread = None

    def _stop_camera(self, picam2, encoder) -> None:
        """stop_recording(), then stop the encoder if it still runs, then close the camera.
        start_recording starts the encoder before the camera, and Encoder.start marks it
        running before it opens anything (the V4L2 encoder opens /dev/video11 and starts
        its poll thread first): after a failed start, or a stop_recording() that raised
        in the camera's stop, it still runs, and picam2.close() never stops encoders."""
        try:
            picam2.stop_recording()
        except Exception:
            log.exception("camera %s: stop_recording failed", self.camera_name)
        if encoder is not None and getattr(encoder, "running", False):
            try:
                encoder.stop()
            except Exception:
                log.exception("camera %s: stopping the encoder failed", self.camera_name)
        try:
            picam2.close()
        except Exception:
            log.exception("camera %s: close failed", self.camera_name)

    # -- segments ------------------------------------------------------------

    def _new_output(self):
        return _segment_output_class(self._p2.Output)(self, self._writer)

    def _split_loop(self, stop: threading.Event, splittable, segment_seconds: float) -> None:
        due = time.monotonic()
        while True:
            due += segment_seconds
            if stop.wait(max(0.0, due - time.monotonic())):
                return
            if stop.is_set():
                return
            new = self._new_output()
            encoder = self._encoder
            if self.force_key_frame and hasattr(encoder, "force_key_frame"):
                encoder.force_key_frame()
            done = threading.Event()

            def switch(new=new, done=done):
                try:
                    splittable.split_output(new)
                finally:
                    done.set()

            threading.Thread(target=switch, name=f"picamera2-{self.camera_name}-switch", daemon=True).start()
            limit = time.monotonic() + self.split_deadline
            while not done.wait(min(0.2, max(0.0, limit - time.monotonic()))):
                if stop.is_set():
                    return
                if time.monotonic() >= limit:
                    reason = f"segment switch did not complete within {self.split_deadline:.0f}s"
                    log.error("camera %s: %s (no keyframe: the camera or encoder is stuck)",
                              self.camera_name, reason)
                    self._report_stall(reason)
                    return
            self.splits += 1
            # a late switch does not shift the schedule; a very late one skips ahead
            now = time.monotonic()
            if now - due > segment_seconds:
                due = now

    def _pts(self, timestamp: int | None) -> int:
        if timestamp is None:
            return time.monotonic_ns() // 1000
        if self._pts_base is None:
            first = getattr(self._encoder, "firsttimestamp", None)
            if isinstance(first, int):
                self._pts_base = first
            else:
                self._pts_base = time.monotonic_ns() // 1000 - int(timestamp)
        return self._pts_base + int(timestamp)

    # -- privacy masks -----------------------------------------------------------

    def _mask_callback(self, request) -> None:
        """pre_callback: runs on the camera loop under its lock, before any encoder."""
        try:
            for stream in ("main", "lores"):
                with self._p2.MappedArray(request, stream) as mapped:
                    plan, needed = self._plan_for(stream, request, mapped.array)
                    apply_plan(mapped.array, plan, needed)
                self.masked_frames[stream] += 1
        except Exception as e:
            if not self._mask_failed:
                log.critical("camera %s: privacy masks could not be applied, recording stops: %s",
                             self.camera_name, e)
            self._mask_failed = True
            self._report_stall(f"privacy masks could not be applied: {e}")

    def _plan_for(self, stream: str, request, array) -> tuple[list, int]:
        config = request.config[stream]
        key = (tuple(config["size"]), tuple(array.shape))
        cached = self._plans.get(stream)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        if config["format"] not in ("YUV420", "YVU420"):
            raise ValueError(f"{stream} stream is {config['format']}, masks need YUV420")
        w, h = config["size"]
        shape = tuple(array.shape)
        if len(shape) != 2 or shape[0] != h * 3 // 2:
            raise ValueError(f"{stream} buffer has shape {shape}, expected ({h * 3 // 2}, stride)")
        stride = shape[1]
        plan = mask_plan(self.masks, (self.cfg.width, self.cfg.height), (w, h), stride)
        needed = stride * h * 3 // 2
        self._plans[stream] = (key, plan, needed)
        return plan, needed


class _SegmentWriter:
    """The segment work, on its own thread: opening, writing (encrypting) and closing
    (sealing, signing, fsyncing) segments, in the order frames were delivered.

    Frames come from whichever thread delivers the encoder's output through a bounded
    queue; putting never waits. When the queue is full the frame is dropped, and so is
    every later frame up to the next keyframe (they could not be decoded without the
    ones dropped): each counts in ``backend.frames_dropped``, and each run of them is
    reported to the opener as a loss. End-of-segment marks are never dropped.
    """

    def __init__(self, backend: Picamera2Backend, opener: SegmentOpener, max_frames: int):
        self._backend = backend
        self._opener = opener
        self.max_frames = max_frames
        self._items: collections.deque = collections.deque()   # (output, frame or None, dropped before)
        self._cond = threading.Condition()
        self._frames_queued = 0
        self._skipping = False          # dropping up to the next keyframe
        self._dropped_run = 0           # dropped since the last frame queued
        self._closing = False
        self._output = None             # the output whose segment is open (or opens at its keyframe)
        self._sink = None
        self._thread = threading.Thread(target=self._run, name=f"picamera2-{backend.camera_name}-writer",
                                        daemon=True)
        self._thread.start()

    # -- the delivering thread: never waits for the disk ---------------------------

    def put(self, output, frame: Frame) -> None:
        with self._cond:
            if self._closing:
                return
            if self._frames_queued >= self.max_frames or (self._skipping and not frame.keyframe):
                starts = not self._skipping
                self._skipping = True
                self._dropped_run += 1
                self._backend.frames_dropped += 1
            else:
                starts = self._skipping = False
                dropped, self._dropped_run = self._dropped_run, 0
                self._items.append((output, frame, dropped))
                self._frames_queued += 1
                self._cond.notify()
        if starts:
            log.warning("camera %s: the segment writer is %d frames behind; dropping frames up to the next "
                        "keyframe", self._backend.camera_name, self.max_frames)

    def finish(self, output) -> None:
        """`output`'s segment ends here (after the frames already queued for it)."""
        with self._cond:
            if not self._closing:
                self._items.append((output, None, 0))
                self._cond.notify()

    def close(self) -> None:
        """Write what is queued, finish the open segment, end the thread; later frames are ignored."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items:
                    dropped, self._dropped_run = self._dropped_run, 0
                    break
                output, frame, dropped = self._items.popleft()
                if frame is not None:
                    self._frames_queued -= 1
            if dropped:
                self._report_loss(dropped)
            if frame is None:
                self._end(output)
            else:
                self._write(output, frame)
        self._end(self._output)
        if dropped:
            self._report_loss(dropped)

    def _write(self, output, frame: Frame) -> None:
        if getattr(output, "ended", False):
            return
        if output is not self._output:
            self._end(self._output)           # segments close in order, before the next opens
            self._output = output
        try:
            if self._sink is None:
                if not frame.keyframe:
                    return                    # a segment starts at a keyframe
                self._sink = self._opener.open_segment()
            self._sink.write_frame(frame)
            output.frames += 1
        except Exception as e:
            log.exception("camera %s: segment writer failed", self._backend.camera_name)
            self._backend._report_stall(f"segment writer failed: {e}")
            self._end(output)

    def _end(self, output) -> None:
        if output is None:
            return
        output.ended = True
        if output is not self._output:
            return
        sink, self._sink, self._output = self._sink, None, None
        if sink is not None:
            try:
                sink.close()
            except Exception:
                log.exception("camera %s: closing a segment failed", self._backend.camera_name)
                self._backend._report_stall("closing a segment failed")

    def _report_loss(self, frames: int) -> None:
        why = (f"{frames} frames dropped: the segment writer fell behind by {self.max_frames} frames "
               "(a slow disk?)")
        log.error("camera %s: %s", self._backend.camera_name, why)
        record = getattr(self._opener, "record_loss", None)    # (openers written for tests may not keep one)
        if record is not None:
            try:
                record(why)
            except Exception:
                log.exception("camera %s: recording a loss failed", self._backend.camera_name)


_OUTPUT_CLASSES: dict[type, type] = {}


def _segment_output_class(output_base: type) -> type:
    """A picamera2 Output subclass (made on first use: picamera2 is imported lazily)."""
    cls = _OUTPUT_CLASSES.get(output_base)
    if cls is not None:
        return cls

    class _SegmentOutput(output_base):
        """One segment as picamera2 sees it. ``outputframe`` runs on the camera loop (Pi 5)
        or the V4L2 poll thread (Pi 0-4), where any delay costs camera buffers: it only
        copies the frame and hands it to the writer thread."""

        def __init__(self, backend: Picamera2Backend, writer: _SegmentWriter):
            super().__init__()
            self._backend = backend
            self._writer = writer
            self.ended = False        # set by the writer thread
            self.frames = 0           # written to this output's segment (by the writer thread)

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            if audio:
                return
            backend = self._backend
            backend._saw_frame()
            if backend._mask_failed:
                return                     # fail closed: an unmasked frame never reaches a segment
            # bytes(): the encoder reuses its buffer once we return
            self._writer.put(self, Frame(bytes(frame), bool(keyframe), backend._pts(timestamp)))

        def stop(self):
            super().stop()
            self._writer.finish(self)

    _OUTPUT_CLASSES[output_base] = _SegmentOutput
    return _SegmentOutput
