"""Fake of picamera2.encoders.v4l2_encoder.V4L2Encoder (the VideoCore codec at /dev/video11).

What it mirrors (line numbers are of picamera2 0.3.36's v4l2_encoder.py):

* ``_start`` (l. 52-161) opens the device and starts the poll thread *first*, then sets
  the controls through ctypes structures: an int field refuses a float with TypeError
  (l. 66-68 bitrate, l. 104-115 the codec controls such as the I-frame period), and
  gets its buffers, which can fail for lack of CMA. Whatever fails after the thread
  started leaves it polling, since ``Encoder.start`` has already set running.
* ``_encode`` (l. 282-330), on the camera loop: acquires the request, takes one of 16
  codec input buffers (waiting if none is free) and queues the frame.
* ``thread_poll`` (l. 207-280): the one thread that both gives the camera its requests
  back (an input buffer done, l. 231-246) and calls ``outputframe`` with each encoded
  frame (l. 248-267). While an output is slow, requests are not given back.
"""
from __future__ import annotations

import ctypes
import errno
import queue
import threading

from .. import _fake
from .._fake import control
from ..platform import Platform, get_platform
from ..request import _MappedBuffer
from .encoder import Encoder, _X264Engine

# linux/v4l2-controls.h
V4L2_CID_CODEC_BASE = 0x00990000 | 0x900
V4L2_CID_MPEG_VIDEO_BITRATE = V4L2_CID_CODEC_BASE + 207
V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER = V4L2_CID_CODEC_BASE + 226
V4L2_CID_MPEG_VIDEO_H264_I_PERIOD = V4L2_CID_CODEC_BASE + 358
NUM_OUTPUT_BUFFERS = 16     # l. 117


class v4l2_control(ctypes.Structure):
    """struct v4l2_control (linux/videodev2.h), as the videodev2 package declares it."""
    _fields_ = [("id", ctypes.c_uint32), ("value", ctypes.c_int32)]


class v4l2_ext_control(ctypes.Structure):
    """struct v4l2_ext_control, with its value union reduced to the 32-bit member."""
    _fields_ = [("id", ctypes.c_uint32), ("size", ctypes.c_uint32), ("reserved2", ctypes.c_uint32),
                ("value", ctypes.c_int32)]


class _Device:
    """Stands in for the open /dev/video11 file."""

    closed = False

    def close(self) -> None:
        self.closed = True


class V4L2Encoder(_X264Engine, Encoder):
    def __init__(self, bitrate, pixformat):
        super().__init__()
        self.bufs = {}
        self.bitrate = bitrate
        self._pixformat = pixformat
        self._controls = []
        self.vd = None
        self.framerate = None
        self._enable_framerate = False
        self._key_frames_requested = 0
        self._key_frames_generated = 0
        self.thread = None

    def _start(self):
        if get_platform() != Platform.VC4:
            # l. 53: the VideoCore codec, which a Pi 5 does not have
            raise FileNotFoundError(2, "No such file or directory", "/dev/video11")
        self.vd = _Device()
        self.buf_available = queue.Queue()
        self.buf_frame = queue.Queue()
        self._events = queue.Queue()      # what poll() would report: ("out", index), ("in", frame), ("end",)
        self.thread = threading.Thread(target=self.thread_poll, args=(self.buf_available,),
                                       name="fake-v4l2-poll", daemon=True)
        self.thread.start()
        if self.bitrate is not None:
            ctrl = v4l2_control()
            ctrl.id = V4L2_CID_MPEG_VIDEO_BITRATE
            ctrl.value = self.bitrate                     # TypeError for a float, as on a Pi
        settings = {}
        if self._controls:
            controls = (v4l2_ext_control * len(self._controls))()
            for i, (cid, value) in enumerate(self._controls):
                controls[i].id = cid
                controls[i].value = value                 # TypeError for a float, as on a Pi
                controls[i].size = 0
                settings[cid] = controls[i].value
        if control.take("fail_encoder_buffers"):
            raise OSError(errno.ENOMEM, "Cannot allocate memory")    # VIDIOC_REQBUFS (l. 120-133)
        for i in range(NUM_OUTPUT_BUFFERS):
            self.buf_available.put(i)
        self._engine_start(self.bitrate, settings.get(V4L2_CID_MPEG_VIDEO_H264_I_PERIOD),
                           bool(settings.get(V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER)))

    def _stop(self):
        # The real one joins the poll thread, which gives up 400 ms after the last event
        # (l. 163-164, 212-225); the fake first lets the codec finish, so that every frame
        # fed is delivered and the tests can compare streams exactly.
        self._engine_finish()
        if self.thread is not None:
            self.thread.join()
        self.vd.close()

    def _encode(self, stream, request):
        if self.vd is None or self.vd.closed:
            return
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1   # counted, not honoured (see the package docstring)
        request.acquire()
        timestamp_us = self._timestamp(request)
        index = self.buf_available.get()          # l. 319: waits while all 16 are with the codec
        with _MappedBuffer(request, stream) as b:
            pixels = _fake.from_buffer(b, self._width, self._height, self._stride)
        self.buf_frame.put(request)
        self._engine_feed(pixels, timestamp_us)
        self._events.put(("out", index))          # the codec has read this input buffer

    def _engine_output(self, au, keyframe, timestamp):
        self._events.put(("in", au, keyframe, timestamp))

    def _engine_end(self):
        self._events.put(("end",))

    def thread_poll(self, buf_available):
        while True:
            try:
                event = self._events.get(timeout=0.4)      # pollit.poll(400)
            except queue.Empty:
                if self._running:
                    continue
                event = ("end",)
            if event[0] == "out":
                buf_available.put(event[1])
                self.buf_frame.get().release()             # the camera gets its request back
            elif event[0] == "in":
                self._deliver(*event[1:])                  # outputframe, on this thread
            else:
                while self.buf_frame.qsize() > 0:
                    self.buf_frame.get().release()
                return
