"""Fake of picamera2.encoders.h264_encoder.H264Encoder (the VideoCore hardware encoder)."""
from ..platform import Platform, get_platform
from .encoder import Encoder, Quality, _X264Engine


class H264Encoder(_X264Engine, Encoder):
    def __init__(self, bitrate=None, repeat=True, iperiod=None, framerate=None, enable_sps_framerate=False,
                 qp=None, profile=None):
        super().__init__()
        self.bitrate = bitrate
        self.repeat = repeat
        self.iperiod = iperiod
        self.framerate = framerate
        self._enable_framerate = enable_sps_framerate
        self.qp = qp
        self.profile = profile
        self._key_frames_requested = 0

    def _setup(self, quality):
        if quality is not None or (self.bitrate is None and self.qp is None):
            table = {Quality.VERY_LOW: 2, Quality.LOW: 4, Quality.MEDIUM: 6, Quality.HIGH: 9, Quality.VERY_HIGH: 15}
            quality = Quality.MEDIUM if quality is None else quality
            self.bitrate = int(table[quality] * 1e6 * self.width * self.height * (self.framerate or 30)
                               / (1920 * 1080 * 30))

    def _start(self):
        if get_platform() != Platform.VC4:
            # the real encoder opens the VideoCore codec, which a Pi 5 does not have
            raise FileNotFoundError(2, "No such file or directory", "/dev/video11")
        self._engine_start(self.bitrate, self.iperiod, self.repeat)

    def _encode(self, stream, request):
        self._engine_encode(stream, request)

    def _stop(self):
        self._engine_stop()

    def force_key_frame(self):
        self._key_frames_requested += 1
