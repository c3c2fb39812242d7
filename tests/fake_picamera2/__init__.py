"""A fake of the picamera2 API surface Custodian uses, for tests off a Raspberry Pi.

Put this directory first on ``sys.path`` (the ``fake_picamera2_path`` fixture in
``tests/conftest.py`` does) and ``import picamera2`` gets ``./picamera2``: the same
module paths, class names, method signatures and threading as picamera2 0.3.36
(camera loop thread running ``pre_callback`` then the encoders; an encoder thread
calling ``Output.outputframe``; ``SplittableOutput.split_output`` switching only at a
keyframe and waiting with no timeout; ``MappedArray`` as a context manager whose
``.array`` is a writable 2-D view of the request's buffer, shape ``(h*3/2, stride)``
for YUV420; ``picamera2.encoders._hw_encoder_available``).

Frames are real: a ``testsrc2`` raw YUV420 source (an ffmpeg process, through a pipe)
paced in real time with sensor timestamps from ``time.monotonic_ns()``, and the
encoders run libx264 in an ffmpeg process on exactly the bytes in the ``main`` buffer
after the callbacks, so what a ``pre_callback`` draws is what gets encoded.

Test controls live in ``picamera2._fake.control`` (stall a camera, fail the next
opens, make ``stop()`` hang, the unsplit encoded stream, the last buffers seen).

Differences from the real thing (documented, not hidden): the encoders always emit an
access unit delimiter; ``force_key_frame()`` is counted but not honoured; only YUV420
streams are supported; ``LibavH264Encoder`` also delivers from its own thread.
"""
from pathlib import Path

PATH = Path(__file__).resolve().parent
