"""Camera self-test for a real Pi: `custodian [--config node.toml] selftest [--seconds 3]`.

Checks, in order: the board, picamera2 importable, the encoder picamera2 will use,
the camera opens, a recording through the real adapter into RAM gives keyframe-aligned
segments that each start with SPS/PPS and an IDR picture, no frame was dropped across
at least three segment switches (the writer's drops and the gaps in the sensor's
timestamps), the privacy masks are valid and drawn on both camera streams, and the
clock is synchronised. Video stays in RAM: closing a segment writes and fsyncs as many
bytes of zeros in a scratch file (the node's data directory), so that a switch costs
what it costs on this card. Off a Pi every check still runs or is skipped with the
reason; nothing raises. Exit status 1 if a required check failed.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from hw.settings import CameraSettings, SettingsError

from . import board as board_mod
from .annexb import NAL_IDR, NAL_PPS, NAL_SPS, nal_types
from .backend import Frame, clip_masks


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    skipped: bool = False

    @property
    def status(self) -> str:
        if self.skipped:
            return "skip"
        if self.ok:
            return " ok "
        return "FAIL" if self.required else "warn"

    def line(self) -> str:
        return f"[{self.status}] {self.name}: {self.detail}"


SWITCHES = 3   # segment switches the recording waits for: where a slow disk would cost frames


class MemorySink:
    """A segment kept in RAM (for the self-test and tests). With a scratch path, closing it
    writes and fsyncs as many zero bytes there as the segment holds, then removes the file."""

    def __init__(self, scratch: Path | None = None) -> None:
        self.frames: list[Frame] = []
        self.closed = False
        self.scratch = scratch
        self.close_seconds = 0.0

    def write_frame(self, frame: Frame) -> None:
        if self.closed:
            raise RuntimeError("write to a closed segment")
        self.frames.append(frame)

    def close(self) -> None:
        started = time.monotonic()
        try:
            if self.scratch is not None:
                try:
                    with open(self.scratch, "wb") as f:
                        f.write(bytes(sum(len(fr.data) for fr in self.frames)))
                        f.flush()
                        os.fsync(f.fileno())
                finally:
                    self.scratch.unlink(missing_ok=True)
        finally:
            self.close_seconds = time.monotonic() - started
            self.closed = True

    @property
    def data(self) -> bytes:
        return b"".join(f.data for f in self.frames)


class MemoryOpener:
    """Opens MemorySinks; insists that a segment is closed before the next opens."""

    def __init__(self, scratch_dir: Path | None = None) -> None:
        self.segments: list[MemorySink] = []
        self.lock = threading.Lock()
        self.order_errors = 0
        self.scratch_dir = scratch_dir
        self.losses: list[str] = []

    def open_segment(self) -> MemorySink:
        with self.lock:
            if self.segments and not self.segments[-1].closed:
                self.order_errors += 1
            scratch = None
            if self.scratch_dir is not None:
                scratch = Path(self.scratch_dir) / f".selftest-{os.getpid()}-{len(self.segments)}.scratch"
            sink = MemorySink(scratch)
            self.segments.append(sink)
            return sink

    def record_loss(self, why: str) -> None:
        with self.lock:
            self.losses.append(why)

    @property
    def frames(self) -> list[Frame]:
        with self.lock:
            return [f for s in self.segments for f in s.frames]


def missing_frames(frames: list[Frame], fps: int) -> int:
    """Frames the sensor never delivered, from the gaps in the timestamps (a gap of more
    than 1.5 frame periods is round(gap / period) - 1 frames missing)."""
    period = 1_000_000 / fps
    missing = 0
    for a, b in zip(frames, frames[1:]):
        gap = b.pts_us - a.pts_us
        if gap > 1.5 * period:
            missing += round(gap / period) - 1
    return missing


def check_segments(segments: list[MemorySink]) -> tuple[bool, str]:
    """Every segment starts with a keyframe holding SPS, PPS and an IDR; pts increase."""
    if not segments or not any(s.frames for s in segments):
        return False, "no segment received a frame"
    last_pts = None
    for n, seg in enumerate(segments):
        if not seg.frames:
            return False, f"segment {n} is empty"
        first = seg.frames[0]
        types = set(nal_types(first.data))
        if not first.keyframe or not {NAL_SPS, NAL_PPS, NAL_IDR} <= types:
            return False, f"segment {n} does not start with SPS+PPS+IDR (NAL types {sorted(types)})"
        for f in seg.frames:
            if last_pts is not None and f.pts_us <= last_pts:
                return False, f"timestamps go backwards in segment {n}"
            last_pts = f.pts_us
    frames = sum(len(s.frames) for s in segments)
    return True, f"{len(segments)} segment(s), {frames} frames, each starting with SPS+PPS+IDR"


def run_selftest(cfg: CameraSettings, *, seconds: float = 3.0, compatible_path: str | Path = board_mod.COMPATIBLE_PATH,
                 model_path: str | Path = board_mod.MODEL_PATH, clock_synced=board_mod.clock_synced,
                 scratch_dir: str | Path | None = None) -> list[Check]:
    from .picamera2_backend import Picamera2Backend, choose_encoder, import_picamera2

    checks: list[Check] = []
    board = board_mod.detect_board(compatible_path, model_path)
    checks.append(Check("board", board.is_raspberry_pi,
                        f"{board.model} (family {board.family}, hardware H.264: "
                        f"{'yes' if board.has_hardware_h264 else 'no'})" if board.is_raspberry_pi else
                        f"not a Raspberry Pi (nothing usable in {compatible_path}); the camera needs a Pi"))

    p2 = None
    try:
        p2 = import_picamera2()
        where = getattr(p2.module, "__file__", "?")
        checks.append(Check("picamera2", True, f"importable ({where})"))
    except ImportError as e:
        checks.append(Check("picamera2", False, str(e)))
    except Exception as e:   # picamera2 present but broken (libcamera mismatch...)
        checks.append(Check("picamera2", False, f"import failed: {type(e).__name__}: {e}"))

    if p2 is None:
        for name in ("encoder", "camera opens", "recording", "dropped frames"):
            checks.append(Check(name, False, "skipped: picamera2 is not importable", skipped=True))
    else:
        choice = choose_encoder(board, p2.hw_encoder_available)
        checks.append(Check("encoder", True, f"{choice.name} ({choice.reason})"))
        opened = _check_open(p2, checks)
        if opened:
            _check_recording(cfg, board, seconds, checks, Picamera2Backend, scratch_dir)
        else:
            for name in ("recording", "dropped frames"):
                checks.append(Check(name, False, "skipped: the camera did not open", skipped=True))

    _check_masks(cfg, checks)
    synced = False
    try:
        synced = bool(clock_synced())
    except Exception:
        pass
    checks.append(Check("clock synced", synced,
                        "synchronised" if synced else
                        "not synchronised yet (no RTC: segments are flagged clock_synced=false until NTP syncs)",
                        required=False))
    return checks


def _check_open(p2, checks: list[Check]) -> bool:
    try:
        cam = p2.Picamera2(0)
    except Exception as e:
        checks.append(Check("camera opens", False,
                            f"{type(e).__name__}: {e} (is the ribbon cable seated, or is the node service "
                            "holding the camera? stop it first)"))
        return False
    try:
        model = cam.camera_properties.get("Model", "unknown sensor")
        checks.append(Check("camera opens", True, f"sensor {model}"))
    finally:
        try:
            cam.close()
        except Exception:
            pass
    return True


def _check_recording(cfg: CameraSettings, board, seconds: float, checks: list[Check], backend_cls,
                     scratch_dir: str | Path | None = None) -> None:
    opener = MemoryOpener(Path(scratch_dir) if scratch_dir is not None else None)
    result: dict = {}
    # at least `seconds`, and long enough for SWITCHES switches (each waits for a keyframe)
    limit = seconds + SWITCHES * (cfg.keyframe_seconds + 1) + 10

    def record():
        try:
            backend = backend_cls(cfg, "selftest", board=board)
            result["backend"] = backend
            backend.start(opener, 1.0)
            started = time.monotonic()
            while time.monotonic() - started < limit and (
                    time.monotonic() - started < seconds or backend.splits < SWITCHES):
                time.sleep(0.05)
            result["seconds"] = time.monotonic() - started
            backend.stop()
        except (RuntimeError, OSError, ValueError) as e:   # SettingsError is a ValueError
            result["error"] = f"{type(e).__name__}: {e}"

    worker = threading.Thread(target=record, name="selftest-record", daemon=True)
    worker.start()
    worker.join(limit + 30)
    if worker.is_alive():
        checks.append(Check("recording", False, f"the camera hung (no return within {limit + 30:.0f}s)"))
        return
    if "error" in result:
        checks.append(Check("recording", False, result["error"]))
        return
    ok, detail = check_segments(opener.segments)
    if ok and opener.order_errors:
        ok, detail = False, "a segment opened before the previous one closed"
    checks.append(Check("recording", ok, f"{result['seconds']:.0f}s: {detail}"))
    backend = result["backend"]
    checks.append(_dropped_frames_check(backend, opener, cfg.fps))
    if cfg.masks:
        drawn = backend.masked_frames
        checks.append(Check("masks drawn", drawn["main"] > 0 and drawn["lores"] > 0 and not backend._mask_failed,
                            f"on {drawn['main']} main and {drawn['lores']} lores frames"))


def _dropped_frames_check(backend, opener: MemoryOpener, fps: int) -> Check:
    by_writer = backend.frames_dropped
    missing = missing_frames(opener.frames, fps)
    closes = [s.close_seconds for s in opener.segments if s.closed]
    slowest = f"; slowest segment close {max(closes) * 1000:.0f} ms" if closes else ""
    if backend.splits < SWITCHES:
        return Check("dropped frames", False, f"only {backend.splits} segment switch(es) completed, "
                                              f"{SWITCHES} needed to measure{slowest}")
    total = by_writer + missing
    return Check("dropped frames", total == 0,
                 f"{total} across {backend.splits} segment switches ({by_writer} by the segment writer, "
                 f"{missing} missing from the sensor's timestamps){slowest}")


def _check_masks(cfg: CameraSettings, checks: list[Check]) -> None:
    try:
        masks = clip_masks(cfg.masks, cfg.width, cfg.height)
    except SettingsError as e:
        checks.append(Check("privacy masks", False, str(e)))
        return
    if not masks:
        checks.append(Check("privacy masks", True, "none configured", required=False))
    else:
        checks.append(Check("privacy masks", True, f"{len(masks)} configured: " +
                            ", ".join(f"{w}x{h}+{x}+{y}" for x, y, w, h in masks)))


def report(camera: CameraSettings, node_data_dir: str | Path, seconds: float = 3.0) -> int:
    """`custodian selftest`: run every check with the picamera2 backend, print them, 0 when all passed."""
    cfg = replace(camera, backend="picamera2")
    # segment closes fsync a scratch file where the node keeps its segments: the card that matters
    scratch = Path(node_data_dir)
    if not (scratch.is_dir() and os.access(scratch, os.W_OK)):
        scratch = Path(tempfile.gettempdir())
    checks = run_selftest(cfg, seconds=seconds, scratch_dir=scratch)
    for check in checks:
        print(check.line())
    failed = [c for c in checks if c.required and not c.ok and not c.skipped]
    print(f"{len(failed)} required check(s) failed" if failed else "all required checks passed")
    return 1 if failed else 0
