"""Fake of picamera2.encoders.libav_h264_encoder.LibavH264Encoder (libx264 in software)."""
from .encoder import Encoder, Quality, _X264Engine


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
        self._key_frames_requested = 0

    def _setup(self, quality):
        if quality is not None or (self.bitrate is None and self.qp is None):
            table = {Quality.VERY_LOW: 3, Quality.LOW: 4, Quality.MEDIUM: 7, Quality.HIGH: 10, Quality.VERY_HIGH: 14}
            quality = Quality.MEDIUM if quality is None else quality
            self.bitrate = int(table[quality] * 1e6 * ((self.width * self.height * self.framerate)
                                                       / (1920 * 1080 * 30)) ** 0.5)

    def _start(self):
        self._engine_start(self.bitrate, self.iperiod, self.repeat)

    def _encode(self, stream, request):
        self._engine_encode(stream, request)

    def _stop(self):
        self._engine_stop()

    def force_key_frame(self):
        self._key_frames_requested += 1
