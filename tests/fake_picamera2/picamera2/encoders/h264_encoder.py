"""Fake of picamera2.encoders.h264_encoder.H264Encoder (the VideoCore hardware encoder)."""
from .encoder import Quality
from .v4l2_encoder import (V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER,
                           V4L2Encoder)

V4L2_PIX_FMT_H264 = 0x34363248   # v4l2_fourcc('H', '2', '6', '4')


class H264Encoder(V4L2Encoder):
    def __init__(self, bitrate=None, repeat=True, iperiod=None, framerate=None, enable_sps_framerate=False,
                 qp=None, profile=None):
        super().__init__(bitrate, V4L2_PIX_FMT_H264)
        self.iperiod = iperiod
        self.repeat = repeat
        self.qp = qp
        self.profile = profile
        self.framerate = framerate
        self._enable_framerate = enable_sps_framerate

    def _start(self):
        # h264_encoder.py l. 56-101: the settings become codec controls, set by V4L2Encoder._start
        self._controls = []
        if self.iperiod is not None:
            self._controls += [(V4L2_CID_MPEG_VIDEO_H264_I_PERIOD, self.iperiod)]
        if self.repeat:
            self._controls += [(V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER, 1)]
        super()._start()

    def _setup(self, quality):
        if quality is not None or (self.bitrate is None and self.qp is None):
            table = {Quality.VERY_LOW: 2, Quality.LOW: 4, Quality.MEDIUM: 6, Quality.HIGH: 9, Quality.VERY_HIGH: 15}
            quality = Quality.MEDIUM if quality is None else quality
            self.bitrate = int(table[quality] * 1e6 * self.width * self.height * (self.framerate or 30)
                               / (1920 * 1080 * 30))

    def force_key_frame(self):
        self._key_frames_requested += 1
