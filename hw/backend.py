"""The one interface every camera backend implements.

A backend produces H.264 access units (Annex-B, SPS/PPS before every keyframe) with
exact timestamps, and hands them to the segment that is open. Segments switch only
at a keyframe, so every segment decodes on its own and consecutive segments joined
in order are the continuous recording.
"""
from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes      # one access unit, Annex-B; a keyframe carries SPS and PPS before its IDR
    keyframe: bool
    pts_us: int      # microseconds on the camera's monotonic clock; keeps counting across segments


class FrameSink(Protocol):
    """One segment being written (the node's encrypting writer)."""

    def write_frame(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


class SegmentOpener(Protocol):
    """Opens the next segment; called at the first keyframe and at every switch."""

    def open_segment(self) -> FrameSink: ...


class CameraFailed(RuntimeError):
    """The camera could not be (re)opened: the process should exit for systemd to restart it."""


class KeyframeSplitter:
    """Cuts a frame stream into segments at the first keyframe after `segment_seconds`.

    Frames before the first keyframe are dropped (they cannot be decoded alone).
    """

    def __init__(self, opener: SegmentOpener, segment_seconds: float):
        self._opener = opener
        self._segment_us = int(segment_seconds * 1_000_000)
        self._sink: FrameSink | None = None
        self._start_pts = 0
        self._lock = threading.Lock()

    def on_frame(self, frame: Frame) -> None:
        with self._lock:
            if frame.keyframe and (
                self._sink is None or frame.pts_us - self._start_pts >= self._segment_us
            ):
                if self._sink is not None:
                    self._sink.close()
                self._sink = self._opener.open_segment()
                self._start_pts = frame.pts_us
            if self._sink is not None:
                self._sink.write_frame(frame)

    def close(self) -> None:
        with self._lock:
            if self._sink is not None:
                self._sink.close()
                self._sink = None


class CameraBackend(abc.ABC):
    """Start/stop recording into segments; report liveness for the watchdog."""

    name: str = "abstract"

    def __init__(self) -> None:
        self.last_frame_at = time.monotonic()   # updated on every frame, read by the watchdog
        self.frames = 0

    def _saw_frame(self) -> None:
        self.last_frame_at = time.monotonic()
        self.frames += 1

    @abc.abstractmethod
    def start(self, opener: SegmentOpener, segment_seconds: float) -> None:
        """Begin recording; returns at once. Raise CameraFailed if the camera cannot open."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop recording and close the open segment (it is finished and signed, not lost)."""

    def restart(self, opener: SegmentOpener, segment_seconds: float) -> None:
        """Close and reopen the camera (the watchdog calls this, under a deadline)."""
        self.stop()
        self.start(opener, segment_seconds)
