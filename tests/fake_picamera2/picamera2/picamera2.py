"""Fake of picamera2.picamera2.Picamera2 (the parts Custodian uses)."""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections import namedtuple

from . import _fake
from ._fake import control
from .platform import Platform, get_platform
from .request import CompletedRequest

_log = logging.getLogger("picamera2.picamera2")

_ControlInfo = namedtuple("_ControlInfo", "min max default")
_FORMATS = ("YUV420", "YVU420", "XBGR8888", "XRGB8888", "RGB888", "BGR888")


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
        self._stalled = threading.Event()
        self._stop_loop = threading.Event()
        self._loop: threading.Thread | None = None
        self._source = None
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
        return {"Model": "imx708", "PixelArraySize": (4608, 2592), "Location": 2, "Rotation": 180}

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
        fps = config["controls"].get("FrameRate")
        if fps is None:
            fps = 1_000_000 / config["controls"]["FrameDurationLimits"][0]
        self._fps = float(fps)
        self.camera_config = config
        self.stream_map = {name: name for name in ("main", "lores") if config.get(name) is not None}
        control.configs.append(copy.deepcopy(camera_config))

    def camera_configuration(self):
        return self.camera_config

    def stream_configuration(self, name="main"):
        return self.camera_config[name]

    def set_controls(self, controls):
        if "FrameRate" in controls:
            self._fps = float(controls["FrameRate"])

    # -- running -------------------------------------------------------------

    def start(self, config=None, show_preview=False):
        if not self.is_open:
            raise RuntimeError("Camera not opened")
        if config is not None:
            self.configure(config)
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        main = self.camera_config["main"]
        self._source = _fake.RawSource(*main["size"], self._fps)
        self._stop_loop.clear()
        self._loop = threading.Thread(target=self._camera_loop, name="fake-libcamera-loop", daemon=True)
        self.started = True
        self._loop.start()

    def stop(self):
        if control.hang_stop:
            control._unhang.wait()     # a wedged camera: stop() never returns
        if not self.started:
            return
        self._stop_loop.set()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join()
        if self._source is not None:
            self._source.close()
            self._source = None
        self.started = False

    def close(self):
        if not self.is_open:
            return
        self.stop()
        self.is_open = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _camera_loop(self):
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
            if now - due > 2 * period_ns:          # fell behind: a real sensor drops frames
                n += (now - due) // period_ns
                continue
            n += 1
            if self._stalled.is_set():
                continue                             # the frontend timed out: nothing arrives
            frame = self._source.read()
            if frame is None:
                return
            buffers = {"main": _fake.to_buffer(frame, w, h, w, h, main["stride"])}
            if lores is not None:
                buffers["lores"] = _fake.to_buffer(frame, w, h, *lores["size"], lores["stride"])
            request = CompletedRequest(self, buffers, {"SensorTimestamp": due, "FrameDuration": period_ns // 1000})
            if self.pre_callback:
                self.pre_callback(request)
            if self.post_callback:
                self.post_callback(request)
            with control.lock:
                control.requests += 1
                control.samples = {name: bytes(buf) for name, buf in buffers.items()}
                control.sample_configs = {name: dict(self.camera_config[name]) for name in buffers}
            for encoder in list(self._encoders):
                if encoder.name in self.stream_map:
                    encoder.encode(encoder.name, request)
            request.release()

    # -- encoders --------------------------------------------------------------

    def start_encoder(self, encoder=None, output=None, pts=None, quality=None, name=None):
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
        encoder.start(quality=quality)
        self._encoders.add(encoder)
        control.encoders.append(encoder)

    def stop_encoder(self, encoders=None):
        if encoders is None:
            targets = list(self._encoders)
        elif isinstance(encoders, (list, set)):
            targets = list(encoders)
        else:
            targets = [encoders]
        for encoder in targets:
            encoder.stop()
        for encoder in targets:
            self._encoders.discard(encoder)

    def start_recording(self, encoder, output, pts=None, config=None, quality=None, name=None):
        if not self.camera_config and config is None:
            config = "video"
        if config is not None:
            self.configure(config)
        self.start_encoder(encoder, output, pts=pts, quality=quality, name=name)
        self.start()

    def stop_recording(self):
        self.stop()
        self.stop_encoder()
