"""Fake of picamera2.outputs.SplittableOutput (picamera2 0.3.36, outputs/splittableoutput.py).

``split_output(new)`` starts ``new``, hands it the streams, then blocks (no timeout)
until the encoder's delivering thread switches over, which happens at the next video
keyframe (or at once with ``wait_for_keyframe=False``), and finally stops the old output
in the caller's thread. Frames are neither dropped nor duplicated across a switch.

The order is the real one (l. 49-55): ``outputframe`` signals "split done" *before* it
swaps the outputs and passes the keyframe on, so the old output's ``stop()`` may run
before the new output has seen its first frame, or while it is receiving it.
"""
from threading import Event

from .output import Output


class SplittableOutput(Output):
    def __init__(self, output=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._output = output
        self._next = None
        self._split_done = Event()
        self._wait_for_keyframe = True
        self._streams = []
        self.needs_add_stream = True

    def split_output(self, new_output, wait_for_keyframe=True):
        previous = self._output
        new_output.start()
        for stream, codec, kwargs in self._streams:
            new_output._add_stream(stream, codec, **kwargs)
        self._wait_for_keyframe = wait_for_keyframe
        self._next = new_output
        self._split_done.wait()
        self._split_done.clear()
        if previous is not None:
            previous.stop()

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        if self._next is not None and (not self._wait_for_keyframe or (keyframe and not audio)):
            self._split_done.set()
            self._output, self._next = self._next, None
        if self._output is not None:
            self._output.outputframe(frame, keyframe, timestamp, packet, audio)

    def start(self):
        super().start()
        if self._output is not None:
            self._output.start()

    def stop(self):
        super().stop()
        if self._output is not None:
            self._output.stop()

    def _add_stream(self, encoder_stream, codec_name, **kwargs):
        self._streams.append((encoder_stream, codec_name, kwargs))
        if self._output is not None:
            self._output._add_stream(encoder_stream, codec_name, **kwargs)
