"""Fake of picamera2.picamera2.Picamera2 (the parts Custodian uses).

Threads, as in picamera2 0.3.36 (line numbers are of picamera2/picamera2.py there):

* the *sensor* thread stands in for libcamera: every frame period it fills the next
  queued request, or, when none is queued because every request is still held
  downstream, loses the frame (``control.buffer_drops``), as libcamera does;
* the *camera loop* thread stands in for the NullPreview event loop: it runs
  ``process_requests`` (l. 1411), which under ``self.lock`` runs the ``pre_callback``,
  hands each request to every encoder and releases it (l. 1435-1481).

There are exactly ``buffer_count`` requests (``_make_requests``, l. 1108), one buffer per
configured stream each, raw included unless ``raw=None`` (``_make_libcamera_config``,
l. 1007-1039). A request goes back to the sensor only when its last user releases it.
"""
from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from collections import namedtuple

from . import _fake
from ._fake import control
from .platform import Platform, get_platform
from .request import CompletedRequest, _LibcameraRequest

_log = logging.getLogger("picamera2.picamera2")

_ControlInfo = namedtuple("_ControlInfo", "min max default")
_FORMATS = ("YUV420", "YVU420", "XBGR8888", "XRGB8888", "RGB888", "BGR888")
SENSOR_FORMAT = "SRGGB10_CSI2P"                   # the imx708's native (raw) format: 10-bit packed Bayer
SENSOR_MODES = ((1536, 864), (2304, 1296), (4608, 2592))   # the imx708's modes, smallest first


class Picamera2:
    platform = get_platform()

    @staticmethod
    def global_camera_info():
        return [{"Model": "imx708", "Location": 2, "Rotation": 180,
                 "Id": "/base/soc/i2c0mux/i2c@1/imx708@1a", "Num": 0}]

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        self.is_open = False
        self.pre_callback = None
        self.post_callback = None
        self._encoders: set = set()
        self.camera_config = None
        self.stream_map: dict = {}
        self.started = False
        self.stop_count = 0
        self.lock = threading.Lock()               # l. 399: process_requests runs under it
        self.request_lock = threading.Lock()       # l. 347: every CompletedRequest's count
        self._requestslock = threading.Lock()
        self._requests: list[CompletedRequest] = []     # completed by the sensor, not yet processed
        self.completed_requests: list[CompletedRequest] = []
        self._max_queue_len = 0
        self._buffers: dict[str, list[bytearray]] = {}
        self._queued: collections.deque = collections.deque()   # requests the sensor may fill
        self._queued_lock = threading.Lock()
        self._ready = threading.Event()            # the sensor completed a request (notifyme_w, l. 143)
        self._stalled = threading.Event()
        self._stop_loop = threading.Event()
        self._sensor: threading.Thread | None = None
        self._loop: threading.Thread | None = None
        self._source = None
        self.frames_dropped = 0
        self.camera_idx = self.global_camera_info()[camera_num]["Num"]   # IndexError, like the real one
        busy = any(cam.is_open for cam in control.opened)
        if control._take_open_failure() or busy:
            _log.error("Camera __init__ sequence did not complete.")
            raise RuntimeError("Camera __init__ sequence did not complete.")
        self.is_open = True
        self.camera_ctrl_info = {
            "FrameDurationLimits": (None, _ControlInfo(33333, 120000, 33333)),
            "NoiseReductionMode": (None, _ControlInfo(0, 4, 0)),
        }
        if control.stall_new:
            self._stalled.set()
        control.opened.append(self)

    # -- properties --------------------------------------------------------

    @property
    def camera_properties(self):
        return {"Model": "imx708", "PixelArraySize": (4608, 2592), "Location": 2, "Rotation": 180,
                "ColorFilterArrangement": 0}

    @property
    def camera_controls(self):
        return {name: (info.min, info.max, info.default) for name, (_, info) in self.camera_ctrl_info.items()}

    @property
    def encoders(self):
        return self._encoders

    @property
    def encode_stream_name(self):
        return self.camera_config["encode"]

    # -- configuration -------------------------------------------------------

    @staticmethod
    def _make_initial_stream_config(stream_config, updates):
        if updates is None:
            return None
        config = dict(stream_config)
        config.update(updates)
        return config

    @staticmethod
    def align_stream(stream_config, optimal=True):
        align = 64 if optimal else 2
        w, h = stream_config["size"]
        stream_config["size"] = (w - w % align, h - h % 2)

    def create_video_configuration(self, main={}, lores=None, raw={}, transform=None, colour_space=None,
                                   buffer_count=6, controls={}, display="main", encode="main", queue=True,
                                   sensor={}, use_case="video"):
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        main = self._make_initial_stream_config({"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main)
        self.align_stream(main, optimal=False)
        lores = self._make_initial_stream_config({"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores)
        if lores is not None:
            self.align_stream(lores, optimal=False)
        # l. 908-910: unless the caller passes raw=None there is a raw stream, in the sensor's format
        raw = self._make_initial_stream_config({"format": SENSOR_FORMAT, "size": main["size"]}, raw)
        controls = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | dict(controls)
        return {"use_case": use_case, "transform": transform, "colour_space": colour_space,
                "buffer_count": buffer_count, "queue": queue, "main": main, "lores": lores,
                "raw": raw, "controls": controls, "sensor": sensor, "display": display, "encode": encode}

    def _check(self, config):
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is None:
                if name == "main":
                    raise RuntimeError("main stream should be a dictionary")
                continue
            if stream["format"] not in _FORMATS:
                raise RuntimeError(f"Bad format {stream['format']} in {name} stream")
        lores = config.get("lores")
        if lores is not None:
            if self.platform == Platform.VC4 and lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            mw, mh = config["main"]["size"]
            lw, lh = lores["size"]
            if lw > mw or lh > mh:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        raw = config.get("raw")
        if raw is not None and not str(raw.get("format", SENSOR_FORMAT)).startswith("S"):
            raise RuntimeError("Unrecognised raw format " + str(raw["format"]))
        if not isinstance(config.get("buffer_count"), int) or config["buffer_count"] < 1:
            raise RuntimeError("buffer_count must be a positive integer")
        if config.get("encode") not in (None, "main", "lores"):
            raise RuntimeError("Bad encode stream")

    def configure(self, camera_config=None):
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None or isinstance(camera_config, str):
            camera_config = self.create_video_configuration()
        self._check(camera_config)
        config = copy.deepcopy(camera_config)
        for name in ("main", "lores"):
            stream = config.get(name)
            if stream is not None:
                w, h = stream["size"]
                # libcamera pads rows: Y stride a multiple of 64 bytes (so chroma rows are 32-aligned)
                stream["stride"] = (w + 63) // 64 * 64
                stream["framesize"] = stream["stride"] * h * 3 // 2
        raw = config.get("raw")
        if raw is not None:
            # libcamera picks the smallest sensor mode that covers the request; 10-bit packed
            # rows (5 bytes per 4 pixels) padded to 32 bytes
            want = raw.get("size") or config["main"]["size"]
            mode = next((m for m in SENSOR_MODES if m[0] >= want[0] and m[1] >= want[1]), SENSOR_MODES[-1])
            raw["format"], raw["size"] = raw.get("format") or SENSOR_FORMAT, mode
            raw["stride"] = (mode[0] * 5 // 4 + 31) // 32 * 32
            raw["framesize"] = raw["stride"] * mode[1]
        fps = config["controls"].get("FrameRate")
        if fps is None:
            fps = 1_000_000 / config["controls"]["FrameDurationLimits"][0]
        self._fps = float(fps)
        # l. 1249-1252: with queue=True (the default) process_requests keeps the newest
        # completed request back for capture calls: one buffer set never reaches the sensor
        self._max_queue_len = 1 if config["queue"] and config["buffer_count"] > 1 else 0
        # l. 1007-1039 and 1255-1256: buffer_count buffers for *every* configured stream
        names = [name for name in ("main", "lores", "raw") if config.get(name) is not None]
        self._buffers = {name: [bytearray(config[name]["framesize"]) for _ in range(config["buffer_count"])]
                         for name in names}
        self.camera_config = config
        self.stream_map = {name: (name if config.get(name) is not None else None) for name in ("main", "lores", "raw")}
        control.configs.append(copy.deepcopy(camera_config))
        control.allocations.append({name: (len(bufs), len(bufs[0])) for name, bufs in self._buffers.items()})

    def camera_configuration(self):
        return self.camera_config

    def stream_configuration(self, name="main"):
        return self.camera_config[name]

    def set_controls(self, controls):
        if "FrameRate" in controls:
            self._fps = float(controls["FrameRate"])

    # -- running -------------------------------------------------------------

    def _make_requests(self) -> list[_LibcameraRequest]:
        """l. 1108-1128: as many requests as the stream with the fewest buffers has."""
        count = min(len(bufs) for bufs in self._buffers.values())
        return [_LibcameraRequest({name: bufs[i] for name, bufs in self._buffers.items()}) for i in range(count)]

    def _queue_request(self, request: _LibcameraRequest) -> None:
        """camera.queue_request: the request may be filled again (request.py, CompletedRequest.release)."""
        with self._queued_lock:
            self._queued.append(request)

    def start(self, config=None, show_preview=False):
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        if control.take("fail_start"):
            # l. 1319-1320: "camera.start() now throws an error if it fails"
            raise RuntimeError("Failed to start camera: Cannot allocate memory")
        main = self.camera_config["main"]
        self._source = _fake.RawSource(*main["size"], self._fps)
        with self._queued_lock:
            self._queued = collections.deque(self._make_requests())   # l. 1321-1322
        self._stop_loop.clear()
        self._ready.clear()
        self.started = True
        self._sensor = threading.Thread(target=self._sensor_loop, name="fake-libcamera-sensor", daemon=True)
        self._loop = threading.Thread(target=self._camera_loop, name="fake-picamera2-loop", daemon=True)
        self._loop.start()
        self._sensor.start()

    def stop(self):
        if control.hang_stop:
            control._unhang.wait()     # a wedged camera: stop() never returns
        if not self.started:
            return
        # The real stop() runs stop_ on the camera loop between two process_requests
        # calls (l. 1394-1405); here the loop finishes its batch and ends, then stop_ runs.
        self._stop_loop.set()
        self._ready.set()
        for thread in (self._sensor, self._loop):
            if thread is not None and thread is not threading.current_thread():
                thread.join()
        # stop_ (l. 1368-1392): requests not yet processed are released, none is requeued
        self.stop_count += 1
        self.started = False
        with self._requestslock:
            unseen, self._requests = self._requests, []
        for request in unseen:
            request.release()
        while self.completed_requests:
            self.completed_requests.pop(0).release()
        if self._source is not None:
            self._source.close()
            self._source = None

    def close(self):
        """l. 704-733: stops the camera and releases it. It does *not* stop encoders: an
        encoder started on this camera keeps running (and its threads with it)."""
        if not self.is_open:
            return
        self.stop()
        self.is_open = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _sensor_loop(self):
        period_ns = int(1e9 / self._fps)
        t0 = time.monotonic_ns()
        n = 0
        main = self.camera_config["main"]
        lores = self.camera_config.get("lores")
        w, h = main["size"]
        while True:
            due = t0 + n * period_ns
            delay = (due - time.monotonic_ns()) / 1e9
            if delay > 0 and self._stop_loop.wait(delay):
                return
            if self._stop_loop.is_set():
                return
            now = time.monotonic_ns()
            if now - due > 2 * period_ns:          # this machine fell behind: not the camera's doing
                late = (now - due) // period_ns
                control.count("late_frames", late)
                n += late
                continue
            n += 1
            if self._stalled.is_set():
                continue                             # the frontend timed out: nothing arrives
            frame = self._source.read()
            if frame is None:
                return
            with self._queued_lock:
                request = self._queued.popleft() if self._queued else None
            if request is None:
                # every request is still held downstream: libcamera has nowhere to put the frame
                self.frames_dropped += 1
                control.count("buffer_drops")
                continue
            request.buffers["main"][:] = _fake.to_buffer(frame, w, h, w, h, main["stride"])
            if lores is not None:
                request.buffers["lores"][:] = _fake.to_buffer(frame, w, h, *lores["size"], lores["stride"])
            request.metadata = {"SensorTimestamp": due, "FrameDuration": period_ns // 1000}
            completed = CompletedRequest(request, self)      # l. 139-141 (CameraManager.handle_request)
            with self._requestslock:
                self._requests.append(completed)
            self._ready.set()

    def _camera_loop(self):
        """The NullPreview event loop: process_requests whenever the sensor completed some."""
        while not self._stop_loop.is_set():
            self._ready.wait(0.2)
            self._ready.clear()
            if self._stop_loop.is_set():
                return
            self.process_requests()

    def process_requests(self, display=None):
        """l. 1411-1493, without jobs and previews."""
        with self._requestslock:
            requests, self._requests = self._requests, []
        with self.lock:
            for request in requests:
                request.acquire()
            self.completed_requests += requests
            display_request = requests[-1] if requests else None
            if display_request is not None:
                display_request.acquire()
            if self.pre_callback:
                for request in requests:
                    self.pre_callback(request)
            for request in requests:
                if self.post_callback:
                    self.post_callback(request)
                with control.lock:
                    control.requests += 1
                    control.samples = {name: bytes(buf) for name, buf in request.request.buffers.items()
                                       if name != "raw"}
                    control.sample_configs = {name: dict(self.camera_config[name]) for name in control.samples}
                for encoder in self._encoders:
                    if encoder.name in self.stream_map:
                        encoder.encode(encoder.name, request)
                request.release()
            while len(self.completed_requests) > self._max_queue_len:
                self.completed_requests.pop(0).release()
        if display_request is not None:
            display_request.release()

    # -- encoders --------------------------------------------------------------

    def start_encoder(self, encoder=None, output=None, pts=None, quality=None, name=None):
        """l. 2434-2477."""
        if encoder is None:
            if len(self._encoders) != 1:
                raise RuntimeError("No encoder specified")
            encoder = next(iter(self._encoders))
        if output is not None:
            encoder.output = output
        streams = self.camera_configuration()
        if not streams:
            raise RuntimeError("Camera has not been configured")
        if name is None:
            name = self.encode_stream_name
        if streams.get(name) is None:
            raise RuntimeError(f"Encode stream {name} was not defined")
        encoder.name = name
        encoder.width, encoder.height = streams[name]["size"]
        encoder.format = streams[name]["format"]
        encoder.stride = streams[name]["stride"]
        min_frame_duration = max(self.camera_ctrl_info["FrameDurationLimits"][1].min, 33333)
        if getattr(encoder, "framerate", 0) is None:
            encoder.framerate = 1_000_000 / min_frame_duration
        control.encoders.append(encoder)
        encoder.start(quality=quality)           # if this raises, the camera never learns of the encoder
        with self.lock:
            self._encoders.add(encoder)

    def stop_encoder(self, encoders=None):
        """l. 2479-2496."""
        if encoders is None:
            targets = list(self._encoders)
        elif isinstance(encoders, (list, set)):
            targets = list(encoders)
        else:
            targets = [encoders]
        for encoder in targets:
            encoder.stop()
        with self.lock:
            for encoder in targets:
                self._encoders.discard(encoder)

    def start_recording(self, encoder, output, pts=None, config=None, quality=None, name=None):
        """l. 2521-2536: the encoder starts before the camera."""
        if not self.camera_config and config is None:
            config = "video"
        if config is not None:
            self.configure(config)
        self.start_encoder(encoder, output, pts=pts, quality=quality, name=name)
        self.start()

    def stop_recording(self):
        """l. 2538-2541."""
        self.stop()
        self.stop_encoder()
