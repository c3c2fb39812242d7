"""Test controls and the raw frame source of the fake picamera2."""
from __future__ import annotations

import operator
import subprocess
import threading


class FakeControl:
    """What a test can see and do. ``reset()`` between tests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.fail_open = 0            # the next N opens raise (-1: every open)
        self.fail_start = 0           # the next N Picamera2.start() calls raise (libcamera's camera.start() failing)
        self.fail_encoder_buffers = 0 # the next N V4L2 encoder starts fail to get their buffers (ENOMEM from CMA)
        self.stall_new = False        # cameras opened from now on never deliver a frame
        self.hang_stop = False        # Picamera2.stop() blocks until release_hang()
        self._unhang = threading.Event()
        self.open_attempts = 0
        self.opened: list = []        # every Picamera2 that opened
        self.configs: list[dict] = [] # every configuration passed to configure()
        self.allocations: list[dict] = []   # per configure(): {stream: (buffers, bytes each)}
        self.encoders: list = []      # every encoder whose start() was called (even if it raised)
        self.buffer_drops = 0         # frames the sensor delivered while no request was queued: lost, as
                                      # libcamera loses them when every buffer is still held downstream
        self.late_frames = 0          # frames the fake skipped because this machine was too busy to keep
                                      # time (not a libcamera behaviour: host load, kept apart)
        self.encoded: list[tuple[bytes, bool, int]] = []   # everything any encoder output, in order
        self.samples: dict[str, bytes] = {}   # the last request's buffers, after the callbacks
        self.sample_configs: dict[str, dict] = {}
        self.requests = 0

    # -- faults ---------------------------------------------------------------

    def stall(self) -> None:
        """Every open camera stops delivering frames (a "frontend has timed out" stall)."""
        for cam in list(self.opened):
            if cam.is_open:
                cam._stalled.set()

    def release_hang(self) -> None:
        self._unhang.set()

    def _take_open_failure(self) -> bool:
        with self.lock:
            self.open_attempts += 1
        return self.take("fail_open")

    def take(self, fault: str) -> bool:
        """True if the named fault counter says this call fails (and counts it down)."""
        with self.lock:
            left = getattr(self, fault)
            if left < 0:
                return True
            if left > 0:
                setattr(self, fault, left - 1)
                return True
            return False

    def count(self, counter: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, counter, getattr(self, counter) + n)


control = FakeControl()


class RawSource:
    """testsrc2 as raw yuv420p frames from an ffmpeg process (not paced: the camera loop paces)."""

    def __init__(self, width: int, height: int, fps: float):
        self.width, self.height = width, height
        self.frame_bytes = width * height * 3 // 2
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
             "-i", f"testsrc2=size={width}x{height}:rate={fps}", "-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0,
        )

    def read(self) -> bytes | None:
        want = self.frame_bytes
        parts, got = [], 0
        while got < want:
            chunk = self.proc.stdout.read(want - got)
            if not chunk:
                return None
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def planes(frame: bytes, width: int, height: int) -> list[tuple[bytes, int, int]]:
    """Split a packed yuv420p frame into (plane, plane_width, plane_height)."""
    ysize = width * height
    csize = (width // 2) * (height // 2)
    return [(frame[:ysize], width, height),
            (frame[ysize:ysize + csize], width // 2, height // 2),
            (frame[ysize + csize:ysize + 2 * csize], width // 2, height // 2)]


def scale_plane(plane: bytes, w: int, h: int, ow: int, oh: int) -> bytes:
    """Nearest-neighbour resize of one 8-bit plane."""
    if (w, h) == (ow, oh):
        return plane
    cols = [x * w // ow for x in range(ow)]
    pick = operator.itemgetter(*cols)
    rows = []
    for y in range(oh):
        sy = y * h // oh
        row = plane[sy * w:(sy + 1) * w]
        picked = pick(row)
        rows.append(bytes(picked) if ow > 1 else bytes([picked]))
    return b"".join(rows)


def to_buffer(frame: bytes, width: int, height: int, out_w: int, out_h: int, stride: int) -> bytearray:
    """A camera buffer as libcamera lays out YUV420: Y rows of `stride` bytes, then U and V
    with rows of stride/2 bytes (padding bytes left at 0)."""
    buf = bytearray(stride * out_h * 3 // 2)
    off = 0
    for plane, pw, ph in planes(frame, width, height):
        opw, oph = (out_w, out_h) if pw == width else (out_w // 2, out_h // 2)
        pstride = stride if pw == width else stride // 2
        data = scale_plane(plane, pw, ph, opw, oph)
        if pstride == opw:
            buf[off:off + opw * oph] = data
        else:
            for r in range(oph):
                buf[off + r * pstride: off + r * pstride + opw] = data[r * opw:(r + 1) * opw]
        off += pstride * oph
    return buf


def from_buffer(buf: bytes | bytearray | memoryview, width: int, height: int, stride: int) -> bytes:
    """The packed yuv420p frame in a camera buffer (strips the stride padding)."""
    if stride == width:
        return bytes(buf[: width * height * 3 // 2])
    out = []
    off = 0
    for pw, ph, ps in ((width, height, stride), (width // 2, height // 2, stride // 2),
                       (width // 2, height // 2, stride // 2)):
        for r in range(ph):
            out.append(bytes(buf[off + r * ps: off + r * ps + pw]))
        off += ps * ph
    return b"".join(out)
