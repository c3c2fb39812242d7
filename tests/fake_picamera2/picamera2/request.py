"""Fake of picamera2.request: CompletedRequest and MappedArray."""
from __future__ import annotations

from typing import Any


class _LibcameraRequest:
    """Stands in for a libcamera request: one buffer per configured stream, allocated once
    at configure() and reused frame after frame, and the metadata of the frame in it
    (SensorTimestamp in ns)."""

    def __init__(self, buffers: dict[str, bytearray]):
        self.buffers = buffers
        self.metadata: dict = {}


class CompletedRequest:
    """A filled request on its way through picamera2 (picamera2/request.py, CompletedRequest).

    It is reference counted: it starts at 1 (held by the list of completed requests the
    camera manager hands over, picamera2.py CameraManager.handle_request), and whoever
    keeps it longer acquires it (the encoders do, until they are done with its buffer).
    When the count reaches 0 it goes back to the camera to be filled again, unless the
    camera was stopped meanwhile (request.py, CompletedRequest.release). Until then the
    camera cannot use its buffers: a consumer that holds requests starves the camera.
    """

    def __init__(self, request: _LibcameraRequest, picam2) -> None:
        self.request: _LibcameraRequest | None = request
        self.ref_count = 1
        self.lock = picam2.request_lock
        self.picam2 = picam2
        self.stop_count = picam2.stop_count
        self.config = dict(picam2.camera_config)
        self.stream_map = dict(picam2.stream_map)

    def acquire(self) -> None:
        with self.lock:
            if self.ref_count == 0:
                raise RuntimeError("CompletedRequest: acquiring lock with ref_count 0")
            self.ref_count += 1

    def release(self) -> None:
        with self.lock:
            self.ref_count -= 1
            if self.ref_count < 0:
                raise RuntimeError("CompletedRequest: lock now has negative ref_count")
            if self.ref_count == 0:
                if self.picam2.is_open and self.stop_count == self.picam2.stop_count and self.picam2.started:
                    self.picam2._queue_request(self.request)
                # like the real one: a released request has no buffers any more
                self.request = None
                self.config = {}
                self.stream_map = {}

    def get_metadata(self) -> dict:
        return dict(self.request.metadata)


class _MappedBuffer:
    def __init__(self, request: CompletedRequest, stream: str, write: bool = True) -> None:
        assert request.request is not None, "buffer of a released request"
        self._buf = request.request.buffers[stream]
        self._mv: memoryview | None = None

    def __enter__(self) -> memoryview:
        self._mv = memoryview(self._buf)
        return self._mv

    def __exit__(self, *exc: Any) -> None:
        if self._mv is not None:
            self._mv.release()
            self._mv = None


class MappedArray:
    """``with MappedArray(request, "main") as m: m.array`` -- a writable view of the buffer.

    Real picamera2 gives a numpy array of shape (h*3//2, stride) for YUV420 that shares
    the buffer's memory; the fake gives a 2-D memoryview of the same shape (numpy is not
    a test dependency), released on exit so nobody can keep writing to a recycled buffer.
    """

    def __init__(self, request: CompletedRequest, stream: str, reshape: bool = True, write: bool = True) -> None:
        self._request = request
        self._stream = stream
        self._buffer = _MappedBuffer(request, stream, write=write)
        self._reshape = reshape
        self._array: memoryview | None = None

    def __enter__(self) -> "MappedArray":
        mv = self._buffer.__enter__()
        if self._reshape:
            config = self._request.config[self._stream]
            if config["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("fake picamera2 supports YUV420 streams only")
            w, h = config["size"]
            mv = mv.cast("B", (h * 3 // 2, config["stride"]))
        self._array = mv
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._array is not None:
            self._array.release()
            self._array = None
        self._buffer.__exit__(*exc)

    @property
    def array(self):
        return self._array
