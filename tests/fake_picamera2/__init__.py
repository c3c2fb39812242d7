"""A fake of the picamera2 API surface Custodian uses, for tests off a Raspberry Pi.

Put this directory first on ``sys.path`` (the ``fake_picamera2_path`` fixture in
``tests/conftest.py`` does) and ``import picamera2`` gets ``./picamera2``: the same
module paths, class names, method signatures and threading as picamera2 0.3.36, read
from its source (each module says which lines it mirrors):

* a fixed pool of ``buffer_count`` requests (plus one buffer per stream each, raw
  included unless ``raw=None``); a frame that finds no request queued is lost, as
  libcamera loses it, and counted (``control.buffer_drops``); ``queue=True`` keeps one
  request back;
* a sensor thread and a camera loop thread running ``pre_callback`` then the encoders
  under ``Picamera2.lock``; ``close()`` does not stop encoders;
* ``LibavH264Encoder`` calling ``Output.outputframe`` on the camera loop, under that
  lock; ``H264Encoder`` (V4L2) calling it on its poll thread, which also releases the
  camera's requests; both refuse float settings as their ctypes / PyAV fields do;
* ``SplittableOutput.split_output`` switching only at a keyframe, waiting with no
  timeout, and signalling "done" before it swaps outputs;
* ``MappedArray`` as a context manager whose ``.array`` is a writable 2-D view of the
  request's buffer, shape ``(h*3/2, stride)`` for YUV420;
  ``picamera2.encoders._hw_encoder_available``.

Frames are real: a ``testsrc2`` raw YUV420 source (an ffmpeg process, through a pipe)
paced in real time with sensor timestamps from ``time.monotonic_ns()``, and the
encoders run libx264 in an ffmpeg process on exactly the bytes in the ``main`` buffer
after the callbacks, so what a ``pre_callback`` draws is what gets encoded.

Test controls live in ``picamera2._fake.control`` (stall a camera, fail the next
opens, starts or encoder buffer allocations, make ``stop()`` hang; the unsplit encoded
stream, the last buffers seen, the buffers allocated, frames lost for want of one).

Differences from the real thing (documented, not hidden): the encoders always emit an
access unit delimiter and hand over each frame one frame later than the real ones
(the fake knows a frame is whole when the next begins); ``force_key_frame()`` is
counted but not honoured; only YUV420 streams are supported; the camera loop thread
ends at ``stop()`` (the real NullPreview loop lives until ``close()``); at stop the
V4L2 fake delivers every frame fed (the real poll thread may give up on the last one).
"""
from pathlib import Path

PATH = Path(__file__).resolve().parent
