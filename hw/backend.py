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

from hw.settings import SettingsError


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

    def record_loss(self, why: str) -> None:
        """Frames the backend received but could not hand over (`why` says how many and why)."""

    def note_break(self, why: str) -> None:
        """Pictures stopped for a reason the backend knows (a camera's stream lost): the next
        segment's time gap carries it. Optional: a backend calls it only where it exists."""


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

    def on_frame(self, frame: Frame, new_segment: bool = False) -> None:
        """Hand on one frame; `new_segment` starts a new segment at this keyframe whatever
        its time (the stream changed its picture format)."""
        with self._lock:
            if frame.keyframe and (
                self._sink is None or new_segment or frame.pts_us - self._start_pts >= self._segment_us
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
        # Set (by the backend itself) when it knows it is stuck although frames may still
        # arrive or the stall clock has not run out yet: ffmpeg exited, a segment switch
        # missed its deadline, privacy masks could not be applied. The watchdog treats it
        # as a stall at once. start() clears it.
        self.stall_reason: str | None = None
        # Set by a backend that lost its source and reconnects by itself (an IP camera that
        # dropped: restarting this process would not bring it back), saying why. Meanwhile
        # the watchdog watches `alive_at`, the reconnect loop's heartbeat, instead of frames.
        self.waiting_for_source: str | None = None
        self.alive_at = time.monotonic()

    def _saw_frame(self) -> None:
        self.last_frame_at = time.monotonic()
        self.frames += 1

    def _reset_liveness(self) -> None:
        """Called by start(): the stall clock runs from now, no stall is pending."""
        self.last_frame_at = time.monotonic()
        self.stall_reason = None

    def _report_stall(self, reason: str) -> None:
        if self.stall_reason is None:
            self.stall_reason = reason

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


def clip_masks(masks: list[list[int]], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Validate privacy masks ([x, y, w, h] in frame pixels) and clip them to the frame.

    A mask that is malformed, empty or wholly outside the frame is a configuration
    error: a camera must not record with a privacy mask that silently covers nothing.
    """
    out = []
    for n, m in enumerate(masks or []):
        if (not isinstance(m, (list, tuple)) or len(m) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in m)):
            raise SettingsError(f"[camera] masks[{n}]: expected [x, y, w, h] in whole pixels, got {m!r}")
        x, y, w, h = m
        if w <= 0 or h <= 0:
            raise SettingsError(f"[camera] masks[{n}]: width and height must be positive, got {m!r}")
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + w), min(height, y + h)
        if x0 >= x1 or y0 >= y1:
            raise SettingsError(f"[camera] masks[{n}] {m!r} lies outside the {width}x{height} frame")
        out.append((x0, y0, x1 - x0, y1 - y0))
    return out
