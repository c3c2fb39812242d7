"""Fake of picamera2.outputs.output.Output: the base every output derives from."""


class Output:
    def __init__(self, pts=None):
        self.recording = False
        self.ptsoutput = pts
        self.needs_pacing = False
        self.needs_add_stream = False

    def start(self):
        self.recording = True

    def stop(self):
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        """One encoded frame (timestamp in microseconds), on the thread that delivers the encoder's
        frames: the camera loop for LibavH264Encoder, the poll thread for H264Encoder."""

    def outputtimestamp(self, timestamp):
        if self.ptsoutput is not None and timestamp is not None:
            print(f"{timestamp // 1000}.{timestamp % 1000:03}", file=self.ptsoutput, flush=True)

    def _add_stream(self, encoder_stream, *args, **kwargs):
        pass
