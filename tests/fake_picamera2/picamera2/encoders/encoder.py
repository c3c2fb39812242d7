"""Fake of picamera2.encoders.encoder: the Encoder base class, plus the libx264 engine
both fake H.264 encoders use (an ffmpeg process fed the main buffer's pixels).

Which thread calls ``Output.outputframe`` is each encoder's own (as in picamera2):
``LibavH264Encoder`` on the camera loop, inside ``encode()`` and so under the camera's
lock; ``H264Encoder`` (V4L2) on its poll thread, which also gives the camera its
requests back. The engine only turns pixels into access units.
"""
from __future__ import annotations

import collections
import subprocess
import threading
from enum import Enum

from .._fake import control
from ..outputs import Output


class Quality(Enum):
    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


class Encoder:
    def __init__(self, framerate=30):
        self._width = 0
        self._height = 0
        self._stride = 0
        self._format = None
        self._output = []
        self._running = False
        self._name = None
        self._framerate = framerate
        self._lock = threading.Lock()
        self._output_lock = threading.Lock()
        self.firsttimestamp = None
        self.frames_encoded = 0

    running = property(lambda self: self._running)

    @property
    def width(self):
        return self._width

    @width.setter
    def width(self, value):
        if not isinstance(value, int):
            raise RuntimeError("Width must be integer")
        self._width = value

    @property
    def height(self):
        return self._height

    @height.setter
    def height(self, value):
        if not isinstance(value, int):
            raise RuntimeError("Height must be integer")
        self._height = value

    @property
    def stride(self):
        return self._stride

    @stride.setter
    def stride(self, value):
        if not isinstance(value, int):
            raise RuntimeError("Stride must be integer")
        self._stride = value

    @property
    def format(self):
        return self._format

    @format.setter
    def format(self, value):
        self._format = value

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = value

    @property
    def output(self):
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value):
        outputs = value if isinstance(value, list) else [value]
        for out in outputs:
            if not isinstance(out, Output):
                raise RuntimeError("Must pass Output")
        self._output = outputs

    def start(self, quality=None):
        """encoder.py l. 299-309: running is set *before* _start(), so an encoder whose
        _start() raises is left running (with whatever _start() had started)."""
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self.frames_encoded = 0
            self._setup(quality)
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def stop(self):
        """encoder.py l. 332-344."""
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            self._stop()
            for out in self._output:
                out.stop()

    def encode(self, stream, request):
        """encoder.py l. 245-272: on the camera loop, under the camera's lock."""
        with self._lock:
            if not self._running:
                return
            self._encode(stream, request)
        self.frames_encoded += 1

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        with self._output_lock:
            for out in self._output:
                out.outputframe(frame, keyframe, timestamp, packet, audio)

    def _timestamp(self, request):
        ts = int(request.request.metadata["SensorTimestamp"] / 1000)   # ns -> us
        if self.firsttimestamp is None:
            self.firsttimestamp = ts
            return 0
        return ts - self.firsttimestamp

    def _setup(self, quality):
        pass

    def _start(self):
        pass

    def _stop(self):
        pass

    def _encode(self, stream, request):
        raise NotImplementedError


AUD = b"\x00\x00\x00\x01\x09"


class _X264Engine:
    """libx264 in an ffmpeg process. ``_engine_feed`` writes one frame's pixels; a reader
    thread cuts the Annex-B output into access units (every frame starts with an access
    unit delimiter, so a frame is whole when the next one begins, or at the end) and
    passes each to ``_engine_output(au, keyframe, timestamp)`` (keyframe: it holds an IDR
    slice; timestamp: the fed frame's, in order), then calls ``_engine_end()``.
    Subclasses decide on which thread those reach ``outputframe``.

    Settings arrive as ints: the encoders put them through fields typed as the real
    ones are (ctypes here, C ints in V4L2 and PyAV there), which refuse a float.
    """

    _proc = None

    def _engine_start(self, bitrate: int | None, iperiod: int | None, repeat: bool) -> None:
        if self._format not in ("YUV420", "YVU420"):
            raise RuntimeError(f"fake encoder supports YUV420 only, not {self._format}")
        params = f"repeat-headers={1 if repeat else 0}:aud=1"
        argv = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{self._width}x{self._height}",
                "-r", str(self.framerate or 30), "-i", "pipe:",
                "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                "-sc_threshold", "0", "-x264-params", params]
        if bitrate:
            argv += ["-b:v", str(bitrate)]
        if iperiod:
            argv += ["-g", str(iperiod), "-keyint_min", str(iperiod)]
        argv += ["-f", "h264", "-flush_packets", "1", "pipe:"]
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, bufsize=0)
        self._pending_ts = collections.deque()
        self._reader = threading.Thread(target=self._engine_read, name="fake-x264-output", daemon=True)
        self._reader.start()

    def _engine_feed(self, pixels: bytes, timestamp_us: int) -> None:
        self._pending_ts.append(timestamp_us)
        try:
            self._proc.stdin.write(pixels)
        except (BrokenPipeError, ValueError):
            pass

    def _engine_finish(self) -> None:
        """End of input: the reader passes on the last frames, then _engine_end()."""
        if self._proc is None:
            self._engine_end()
            return
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._reader.join()
        self._proc.wait()
        self._proc.stdout.close()
        self._proc = None

    def _engine_read(self):
        data = b""
        while True:
            chunk = self._proc.stdout.read(65536)
            if chunk:
                data += chunk
            while True:
                nxt = data.find(AUD, 1)
                if nxt < 0:
                    break
                self._engine_unit(data[:nxt])
                data = data[nxt:]
            if not chunk:
                break
        if data:
            self._engine_unit(data)
        self._engine_end()

    def _engine_unit(self, au: bytes) -> None:
        types, i = [], au.find(b"\x00\x00\x01")
        while i >= 0 and i + 3 < len(au):
            types.append(au[i + 3] & 0x1F)
            i = au.find(b"\x00\x00\x01", i + 3)
        timestamp = self._pending_ts.popleft() if self._pending_ts else None
        self._engine_output(au, 5 in types, timestamp)

    def _engine_output(self, au: bytes, keyframe: bool, timestamp: int | None) -> None:
        raise NotImplementedError

    def _engine_end(self) -> None:
        pass

    def _deliver(self, au: bytes, keyframe: bool, timestamp: int | None) -> None:
        """One encoded frame to the outputs, on the calling thread."""
        with control.lock:
            control.encoded.append((au, keyframe, timestamp))
        # Hand over a scratch buffer that is wiped afterwards (like a recycled capture
        # buffer): an output that keeps the frame without copying it is caught.
        scratch = bytearray(au)
        view = memoryview(scratch)
        try:
            self.outputframe(view, keyframe, timestamp)
        finally:
            view.release()
            scratch[:] = bytes(len(scratch))
