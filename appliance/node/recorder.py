"""Segments written as the camera delivers them: encrypted, signed, chained, crash-safe.

Crash-safety order (Moonfire's rule): a segment is written to `<seq>.cseg.part`,
fsync'd, renamed to `<seq>.cseg`, and only then recorded as the chain head; the
uploader deletes a spooled segment only after the central acknowledged it. After a
crash, a `.part` is sealed as an explicitly truncated segment, and a hole in time
between two segments carries its reason in the next one's header (`gap`).

The node holds the archive's *public* key only: nothing it stores can be decrypted
on it, and no plaintext video is ever written to its storage.
"""
from __future__ import annotations

import errno
import json
import logging
import threading
import time


from hw.backend import Frame, FrameSink

from appliance.config import Config
from appliance.errors import SegmentError
from appliance.fsutil import atomic_write, sha256_file
from appliance.formats.segment import SegmentInfo, SegmentWriter, StreamParams, read_public, seal_truncated
from appliance.node.identity import NodeIdentity
from appliance.node.spool import Spool, append_record



log = logging.getLogger("custodian.node")

SPLIT_SECONDS = 0.5   # a segment opened later than this after the previous one closed follows a stop


class Recorder:
    """Opens segments for the camera backend and keeps the chain head durable.

    A full disk must not break the chain or the node: a segment that cannot be
    written further is sealed as truncated (the whole chunks survive), a part that
    cannot even be sealed is retried before the next segment opens (frames are
    dropped and logged meanwhile, never written out of chain), and the oldest unsent
    segment is evicted, as a recorded loss, to make room.

    Where the recording stopped between two segments (the node restarted or rebooted,
    the camera restarted, the disk was full, the placement was withdrawn), the next
    segment's signed header says so (`gap`: from the previous segment's end, and why),
    and the node keeps the same record in `gaps.jsonl`. Consecutive segments of one
    camera run are cut at a keyframe and meet exactly: they never make a gap.
    """

    def __init__(self, identity: NodeIdentity, cfg: Config, spool: Spool,
                 on_segment=lambda info: None, boot_id: str = "", clock_synced=lambda: False):
        self.identity = identity
        self.cfg = cfg
        self.spool = spool
        self.on_segment = on_segment
        self.boot_id = boot_id
        self.clock_synced = clock_synced
        self.state_path = identity.data_dir / "chain.json"
        self.gaps_path = identity.data_dir / "gaps.jsonl"
        self._lock = threading.RLock()
        self._prev_end_us: int | None = None   # the end of the chain head's recording, when known
        self._prev_boot: str | None = None
        self._closed_at: float | None = None    # when this process last closed a segment normally
        self.next_seq, self.prev_digest = self._load_head()
        crashed = bool(self.spool.parts())
        self._seal_leftovers("node restarted mid-segment")   # the head is now the crashed segment, if any
        rebooted = bool(self._prev_boot and boot_id and self._prev_boot != boot_id)
        self._break: str | None = (
            ("node rebooted after a crash or power cut" if rebooted else "node restarted after a crash") if crashed
            else "node rebooted" if rebooted else "node restarted")

    def _load_head(self) -> tuple[int, str | None]:
        """The chain head from the state file and the finished segments in the spool."""
        seq, digest = -1, None
        try:
            state = json.loads(self.state_path.read_text())
            seq, digest = state["seq"], state["digest"]
            self._prev_end_us, self._prev_boot = state.get("end_us"), state.get("boot_id")
        except FileNotFoundError:
            pass
        finished = self.spool.finished()
        if finished:
            newest = finished[-1]
            newest_seq = int(newest.name.split(".")[0])
            if newest_seq > seq:
                try:
                    info = read_public(newest)
                except SegmentError:
                    seq, digest, self._prev_end_us = newest_seq, sha256_file(newest), None
                    self._save_head(seq, digest)
                else:
                    self._advance(info)
                    return self.next_seq, self.prev_digest
        return seq + 1, digest

    def _save_head(self, seq: int, digest: str) -> None:
        data = json.dumps({"seq": seq, "digest": digest, "end_us": self._prev_end_us,
                           "boot_id": self._prev_boot}).encode()
        while True:
            try:
                return atomic_write(self.state_path, data, mode=0o644)
            except OSError as e:
                if e.errno != errno.ENOSPC or not self.make_room():
                    raise

    def note_break(self, why: str) -> None:
        """The recording stops here for a reason the node knows (the first reason noted is kept)."""
        with self._lock:
            if self._break is None:
                self._break = why

    def _gap_before_next(self) -> dict | None:
        """The gap between the chain head and a segment opened now, or None if they meet."""
        if self._prev_end_us is None:
            return None                   # no earlier segment (or its end is unknown)
        why = self._break
        if why is None and (self._closed_at is None or time.monotonic() - self._closed_at > SPLIT_SECONDS):
            why = "camera restarted"      # the stream stopped and started again (watchdog, masks)
        return None if why is None else {"from_us": self._prev_end_us, "why": why}

    def _record_gap(self, seq: int, gap: dict, start_us: int) -> None:
        log.warning("recording gap of %.1f s before segment %d: %s", (start_us - gap["from_us"]) / 1e6, seq,
                    gap["why"])
        append_record(self.gaps_path, {"seq": seq, "from_us": gap["from_us"], "to_us": start_us, "why": gap["why"]})

    def make_room(self) -> bool:
        """The disk is full mid-write: evict the oldest unsent segment so recording goes on."""
        return self.spool.make_room("disk full: evicted to keep recording")

    def _seal_leftovers(self, reason: str) -> bool:
        """Seal every part without a trailer. False while one cannot be sealed (disk full)."""
        for part in self.spool.parts():
            seq = int(part.name.split(".")[0])
            try:
                info = seal_truncated(part, self.identity.signing_key, reason)
            except SegmentError as e:
                # Kept aside, never deleted: the node must start recording again regardless.
                self.spool.reject(part, f"cannot seal after a crash: {e}")
                continue
            except OSError as e:
                log.error("%s: cannot seal it yet (%s); retrying before the next segment", part.name, e)
                return False
            if info is None:
                log.warning("%s: header never reached the disk; nothing was recorded in it", part.name)
                continue
            log.warning("%s: sealed as truncated (%s; %d chunks kept)", part.name, reason, info.trailer["chunks"])
            if seq >= self.next_seq - 1:
                self._advance(info)
        return True

    def _advance(self, info: SegmentInfo) -> None:
        self.next_seq, self.prev_digest = info.seq + 1, info.digest
        self._prev_end_us, self._prev_boot = info.trailer["end_us"], info.header["boot_id"]
        self._save_head(info.seq, info.digest)

    def open_segment(self, picture_size: tuple[int, int] | None = None) -> FrameSink:
        """The next segment. `picture_size` is the size the stream's SPS states (an IP camera's
        copied stream has the camera's size, whatever [camera] says); default: [camera]'s."""
        cam = self.cfg.camera
        width, height = picture_size or (cam.width, cam.height)
        with self._lock:
            if not self._seal_leftovers("disk full while recording"):
                self.make_room()
                if not self._seal_leftovers("disk full while recording"):
                    return _Dropped(self, "the previous segment cannot be sealed: disk full")
            seq = self.next_seq
            gap = self._gap_before_next()
            try:
                writer = SegmentWriter(
                    self.spool.path_for(seq),
                    params=StreamParams(camera=self.identity.name, width=width, height=height,
                                        fps_num=cam.fps, boot_id=self.boot_id, clock_synced=self.clock_synced()),
                    seq=seq, prev_digest=self.prev_digest, archive_key=self.identity.archive_key,
                    signing_key=self.identity.signing_key, chunk_bytes=self.cfg.node.chunk_bytes,
                    chunk_seconds=self.cfg.node.chunk_seconds, fsync_seconds=self.cfg.node.fsync_seconds,
                    make_room=self.make_room, gap=gap)
            except OSError as e:
                self._seal_leftovers("disk full while recording")   # removes a torn header: seq is reused
                self.make_room()
                return _Dropped(self, f"cannot start a segment: {e}")
            self.next_seq = seq + 1
            self._break = None
            if gap is not None:
                self._record_gap(seq, gap, writer.header["start_us"])
        return _OpenSegment(self, writer)

    def record_loss(self, why: str) -> None:
        """Frames the camera backend dropped before they reached a segment: a loss like any other."""
        self.spool.record_loss("-", why)

    def _finished(self, info: SegmentInfo) -> None:
        with self._lock:
            self._advance(info)
        self.spool.enforce_bound()
        self.on_segment(info)
        self._closed_at = time.monotonic()   # the next segment opens at once, unless the camera stopped

    def _failed(self, writer: SegmentWriter, error: Exception) -> None:
        """A write failed mid-segment: keep what is on disk as a truncated segment."""
        log.error("segment %s failed: %s", writer.path.name, error)
        writer.abort()
        self.note_break(f"recording interrupted: {error}")
        with self._lock:
            if self._seal_leftovers("disk full while recording"):
                self.on_segment(None)


class _OpenSegment:
    def __init__(self, recorder: Recorder, writer: SegmentWriter):
        self._recorder = recorder
        self._writer = writer
        self._dropped: _Dropped | None = None

    def write_frame(self, frame: Frame) -> None:
        if self._dropped is not None:
            return self._dropped.write_frame(frame)
        try:
            self._writer.write_frame(frame)
        except OSError as e:
            self._recorder._failed(self._writer, e)
            self._dropped = _Dropped(self._recorder, f"segment {self._writer.path.name} failed: {e}")

    def close(self) -> None:
        if self._dropped is not None:
            return self._dropped.close()
        try:
            info = self._writer.close()
        except OSError as e:
            self._recorder._failed(self._writer, e)
            return
        self._recorder._finished(info)


class _Dropped:
    """Where frames go while nothing can be written: counted and logged as a loss, never out of chain."""

    def __init__(self, recorder: Recorder, why: str):
        self._recorder = recorder
        self.why = why
        self.frames = 0
        log.error("recording interrupted: %s", why)
        recorder.note_break(f"recording interrupted: {why}")

    def write_frame(self, frame: Frame) -> None:
        self.frames += 1

    def close(self) -> None:
        if self.frames:
            self._recorder.spool.record_loss("-", f"{self.frames} frames not recorded: {self.why}")
