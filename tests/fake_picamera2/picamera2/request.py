"""Fake of picamera2.request: CompletedRequest and MappedArray."""
from __future__ import annotations

from typing import Any


class _LibcameraRequest:
    """Stands in for the libcamera request: metadata (SensorTimestamp in ns) and buffers."""

    def __init__(self, metadata: dict, buffers: dict[str, bytearray]):
        self.metadata = metadata
        self.buffers = buffers


class CompletedRequest:
    def __init__(self, picam2, buffers: dict[str, bytearray], metadata: dict):
        self.request = _LibcameraRequest(metadata, buffers)
        self.picam2 = picam2
        self.ref_count = 1
        self.config = dict(picam2.camera_config)
        self.stream_map = dict(picam2.stream_map)

    def acquire(self) -> None:
        self.ref_count += 1

    def release(self) -> None:
        self.ref_count -= 1

    def get_metadata(self) -> dict:
        return dict(self.request.metadata)


class _MappedBuffer:
    def __init__(self, request: CompletedRequest, stream: str, write: bool = True) -> None:
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
