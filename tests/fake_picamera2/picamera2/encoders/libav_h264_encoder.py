"""Fake of picamera2.encoders.libav_h264_encoder.LibavH264Encoder (libx264 in software).

What it mirrors (line numbers are of picamera2 0.3.36's libav_h264_encoder.py):

* ``_start`` (l. 72-127) writes the bitrate and I-frame period into the PyAV codec
  context, whose ``bit_rate`` and ``gop_size`` are C integers (PyAV: av/codec/context.py
  ``bit_rate`` setter, av/video/codeccontext.py ``gop_size`` setter): a float raises
  TypeError.
* ``_encode`` (l. 146-160) runs on the camera loop, inside ``Encoder.encode`` and so
  under the camera's lock: it encodes the frame and calls ``outputframe`` with each
  packet right there, then gives back the request before last (it keeps one,
  ``_request_release_delay``). The camera loop does nothing else meanwhile.
* ``_stop`` (l. 129-144) flushes the encoder's last packets through ``outputframe`` on
  the stopping thread.

libx264 with ``tune=zerolatency`` returns each frame's packet at once; the fake learns
that a frame is whole only when the next one begins, so each packet is delivered one
frame later (on the same thread), and the last at stop.
"""
import collections
import ctypes
import threading

from .. import _fake
from ..request import MappedArray
from .encoder import Encoder, Quality, _X264Engine

PACKET_WAIT = 1.0   # seconds _encode waits for the previous frame's packet from ffmpeg


class _CodecContext(ctypes.Structure):
    """The integer fields LibavH264Encoder sets on PyAV's codec context, typed as PyAV types them."""
    _fields_ = [("bit_rate", ctypes.c_longlong), ("gop_size", ctypes.c_int)]


class LibavH264Encoder(_X264Engine, Encoder):
    def __init__(self, bitrate=None, repeat=True, iperiod=30, framerate=30, qp=None, profile=None):
        super().__init__()
        self.repeat = repeat
        self.bitrate = bitrate
        self.iperiod = iperiod
        self.framerate = framerate
        self.qp = qp
        self.profile = profile
        self.preset = None
        self.threads = 0
        self._request_release_delay = 1
        self._request_release_queue = None
        self._key_frames_requested = 0
        self._packets = collections.deque()
        self._packets_ready = threading.Condition()
        self._packets_made = 0
        self._fed = 0

    def _setup(self, quality):
        if quality is not None or (self.bitrate is None and self.qp is None):
            table = {Quality.VERY_LOW: 3, Quality.LOW: 4, Quality.MEDIUM: 7, Quality.HIGH: 10, Quality.VERY_HIGH: 14}
            quality = Quality.MEDIUM if quality is None else quality
            self.bitrate = int(table[quality] * 1e6 * ((self.width * self.height * self.framerate)
                                                       / (1920 * 1080 * 30)) ** 0.5)

    def _start(self):
        context = _CodecContext()
        if self.bitrate is not None:
            context.bit_rate = self.bitrate                    # TypeError for a float, as on a Pi 5
        context.gop_size = self.iperiod or (1 << 31) - 1       # l. 106; TypeError for a float
        self._request_release_queue = collections.deque()
        self._packets.clear()
        self._packets_made = self._fed = 0
        self._engine_start(context.bit_rate if self.bitrate is not None else None, context.gop_size, self.repeat)

    def _encode(self, stream, request):
        request.acquire()
        self._request_release_queue.append(request)
        timestamp_us = self._timestamp(request)
        with MappedArray(request, stream) as m:
            pixels = _fake.from_buffer(m.array.tobytes(), self._width, self._height, self._stride)
        self._engine_feed(pixels, timestamp_us)
        self._fed += 1
        for packet in self._take_packets(at_least=self._fed - 1):
            self._deliver(*packet)                             # outputframe on the camera loop
        while len(self._request_release_queue) > self._request_release_delay:
            self._request_release_queue.popleft().release()

    def _stop(self):
        self._engine_finish()
        for packet in self._take_packets(at_least=0):
            self._deliver(*packet)
        while self._request_release_queue:
            self._request_release_queue.popleft().release()

    def _engine_output(self, au, keyframe, timestamp):
        with self._packets_ready:
            self._packets.append((au, keyframe, timestamp))
            self._packets_made += 1
            self._packets_ready.notify_all()

    def _take_packets(self, at_least: int) -> list:
        """The packets made so far, once at least `at_least` have been (bounded wait)."""
        with self._packets_ready:
            self._packets_ready.wait_for(lambda: self._packets_made >= at_least, PACKET_WAIT)
            packets = list(self._packets)
            self._packets.clear()
        return packets

    def force_key_frame(self):
        self._key_frames_requested += 1
