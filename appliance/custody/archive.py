"""The central's archive tree: archive/<camera>/<YYYY>/<MM>/<DD>/<seq>-<start>.cseg.

The tree is the index of what the cameras wrote: a range query is a directory
listing. Segments stay encrypted here; this module never needs the archive key.

Storing follows the crash-safety order: the upload is written to .incoming/,
fsync'd, verified, renamed into its day directory, the directory fsync'd; only
then does the caller acknowledge it to the node.
"""
from __future__ import annotations

import bisect
import json
import logging
import os
import re
import threading
import time
from array import array
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from appliance.errors import SegmentError
from appliance.fsutil import atomic_write, fsync_dir, sha256_file
from appliance.formats.segment import SegmentInfo, read_public

log = logging.getLogger("custodian.archive")

# Consecutive segments of one camera run meet (the next opens as the previous closes). Farther
# apart than this, and the node did not say why, the central still records the time gap.
TIME_GAP_TOLERANCE_US = 2_000_000
CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
SEGMENT_NAME = re.compile(r"^(\d{10})-(\d{8}T\d{6}Z)\.cseg$")
INCOMING = ".incoming"
HEAD_FILE = "head.json"


def check_camera_id(camera: str) -> str:
    if not isinstance(camera, str) or not CAMERA_ID.match(camera):
        raise SegmentError(f"camera id {camera!r} must be lower-case letters, digits and dashes",
                           kind="malformed")
    return camera


def start_stamp(start_us: int) -> datetime:
    return datetime.fromtimestamp(start_us / 1_000_000, tz=timezone.utc)


def describe_time_gap(from_us: int, to_us: int, why: str) -> str:
    """'no recording for 11.6 s, 2026-11-30 14:02:31 to 14:02:43 (local time): node restarted'."""
    seconds = (to_us - from_us) / 1e6
    length = (f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200
              else f"{seconds / 3600:.1f} h")
    start = datetime.fromtimestamp(from_us / 1e6).astimezone()
    end = datetime.fromtimestamp(to_us / 1e6).astimezone()
    end_text = f"{end:%H:%M:%S}" if end.date() == start.date() else f"{end:%Y-%m-%d %H:%M:%S}"
    return f"no recording for {length}, {start:%Y-%m-%d %H:%M:%S} to {end_text} (local time): {why}"


@dataclass(frozen=True)
class StoredSegment:
    camera: str
    seq: int
    start: datetime
    path: Path


def _epoch(stamp: str) -> int:
    return int(datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp())



class _CameraIndex:
    """One camera's stored segments as two sorted integer arrays (16 bytes a segment).

    A month of 60 s segments from 16 cameras is ~700k entries: ~11 MB here, where a
    dict of Path objects would take hundreds of megabytes on a Pi.
    """

    def __init__(self) -> None:
        self.seqs = array("q")
        self.starts = array("q")   # Unix seconds, as in the file name

    def add(self, seq: int, start: int) -> None:
        if not self.seqs or seq > self.seqs[-1]:
            self.seqs.append(seq)
            self.starts.append(start)
        else:
            i = bisect.bisect_left(self.seqs, seq)
            self.seqs.insert(i, seq)
            self.starts.insert(i, start)

    def find(self, seq: int) -> int | None:
        i = bisect.bisect_left(self.seqs, seq)
        return i if i < len(self.seqs) and self.seqs[i] == seq else None

    def remove(self, seq: int) -> None:
        i = self.find(seq)
        if i is not None:
            del self.seqs[i]
            del self.starts[i]


class Archive:
    """Owns the tree. Thread-safe: stores for one camera are serialised by a lock."""

    def __init__(self, root: Path, on_gap: Callable[[dict], None] = lambda gap: None):
        self.root = Path(root)
        self.incoming = self.root / INCOMING
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.on_gap = on_gap
        for leftover in self.incoming.iterdir():
            # An upload cut off by a crash was never acknowledged: the node still has it.
            leftover.unlink()
        self._index: dict[str, _CameraIndex] = defaultdict(_CameraIndex)
        self._head_digest: dict[str, tuple[int, str]] = {}   # camera -> (seq, digest) of its head
        self._head_end: dict[str, tuple[int, int]] = {}      # camera -> (seq, end_us) of its head
        # The head of a camera whose newest segment retention deleted: the chain (and replay
        # protection) must outlive the footage. Kept in <camera>/head.json.
        self._retired: dict[str, tuple[int, str]] = {}
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._index_lock = threading.Lock()
        self._load_index()

    def _load_index(self) -> None:
        for camera_dir in self.root.iterdir():
            if camera_dir.name == INCOMING or not camera_dir.is_dir():
                continue
            found = []
            for _dirpath, _dirs, files in os.walk(camera_dir):
                for name in files:
                    m = SEGMENT_NAME.match(name)
                    if m:
                        found.append((int(m.group(1)), _epoch(m.group(2))))
            index = self._index[camera_dir.name]
            for seq, start in sorted(found):
                index.add(seq, start)
            retired = camera_dir / HEAD_FILE
            if retired.exists():
                doc = json.loads(retired.read_text())
                self._retired[camera_dir.name] = (doc["seq"], doc["digest"])

    def _stored(self, camera: str, seq: int, start: int) -> StoredSegment:
        stamp = datetime.fromtimestamp(start, tz=timezone.utc)
        path = (self.root / camera / f"{stamp:%Y}" / f"{stamp:%m}" / f"{stamp:%d}"
                / f"{seq:010d}-{stamp:%Y%m%dT%H%M%SZ}.cseg")
        return StoredSegment(camera, seq, stamp, path)

    # ------------------------------------------------------------------ queries

    def cameras(self) -> list[str]:
        return sorted(c for c, index in self._index.items() if index.seqs)

    def head(self, camera: str) -> int | None:
        """The newest sequence number stored for a camera, or deleted by retention after it was."""
        index = self._index.get(camera)
        stored = index.seqs[-1] if index is not None and index.seqs else None
        retired = self._retired.get(camera, (None,))[0]
        return max((s for s in (stored, retired) if s is not None), default=None)

    def segments(self, camera: str, start: datetime | None = None, end: datetime | None = None
                 ) -> Iterator[StoredSegment]:
        """Stored segments of one camera in sequence order, optionally overlapping [start, end).

        A segment covers [its start, the next segment's start); the last one, up to now.
        """
        index = self._index.get(camera)
        if index is None:
            return
        with self._index_lock:
            seqs, starts = array("q", index.seqs), array("q", index.starts)
        # A plain scan, not a bisection: a Pi's clock can step back when NTP syncs,
        # so start times are not guaranteed to rise with the sequence number.
        lo = None if start is None else start.timestamp()
        hi = None if end is None else end.timestamp()
        for i in range(len(seqs)):
            if hi is not None and starts[i] >= hi:
                continue
            # Over when its successor starts by `lo`; where the clock stepped back between
            # them, keep it (what it covers is unknown, so it may matter).
            if lo is not None and i + 1 < len(seqs) and starts[i] <= starts[i + 1] <= lo:
                continue
            yield self._stored(camera, seqs[i], starts[i])

    def get(self, camera: str, seq: int) -> StoredSegment | None:
        index = self._index.get(camera)
        i = index.find(seq) if index is not None else None
        return None if i is None else self._stored(camera, seq, index.starts[i])

    def digest(self, camera: str, seq: int) -> str | None:
        retired = self._retired.get(camera)
        if retired is not None and retired[0] == seq:
            return retired[1]
        cached = self._head_digest.get(camera)
        if cached is not None and cached[0] == seq:
            return cached[1]
        stored = self.get(camera, seq)
        if stored is None:
            return None
        digest = sha256_file(stored.path)
        if seq == self.head(camera):
            self._head_digest[camera] = (seq, digest)
        return digest

    def path_for(self, header: dict) -> Path:
        stamp = start_stamp(header["start_us"])
        return (self.root / header["camera"] / f"{stamp:%Y}" / f"{stamp:%m}" / f"{stamp:%d}"
                / f"{header['seq']:010d}-{stamp:%Y%m%dT%H%M%SZ}.cseg")

    def incoming_path(self, camera: str, seq: int) -> Path:
        return self.incoming / f"{camera}-{seq}-{os.getpid()}-{time.monotonic_ns()}.tmp"

    # ------------------------------------------------------------------ storing

    def commit(self, tmp: Path, info: SegmentInfo) -> str:
        """Move a verified, fsync'd upload into the tree. Returns 'stored' or 'duplicate'.

        Raises SegmentError(kind='conflict'|'chain'|'replay') and removes `tmp` when
        the segment does not fit the camera's chain.
        """
        camera, seq = info.camera, info.seq
        with self._locks[camera]:
            try:
                existing = self._index[camera].find(seq)
                if existing is not None:
                    if self.digest(camera, seq) == info.digest:
                        log.info("%s/%d: duplicate upload of a stored segment, acknowledged again", camera, seq)
                        return "duplicate"
                    raise SegmentError(f"{camera} already has a different segment {seq}", kind="conflict")
                head = self.head(camera)
                if head is not None and seq <= head:
                    raise SegmentError(f"{camera} segment {seq} is older than the stored head {head}: "
                                       "replayed or out of order", kind="replay")
                gaps = []
                if head is not None and seq == head + 1:
                    if info.header["prev"] != self.digest(camera, head):
                        raise SegmentError(f"{camera} segment {seq} does not chain to segment {head}",
                                           kind="chain")
                elif head is not None:
                    gaps.append({"camera": camera, "kind": "missing", "from_seq": head + 1, "to_seq": seq - 1,
                                 "detail": f"segments {head + 1}..{seq - 1} never arrived"})
                time_gap = self._time_gap(info, head)
                if time_gap is not None:
                    gaps.append(time_gap)
                if not info.complete:
                    gaps.append({"camera": camera, "kind": "truncated", "from_seq": seq, "to_seq": seq,
                                 "detail": info.trailer.get("truncated_reason", "segment ended early")})
                for gap in gaps:
                    # Before the segment is stored: a crash between the two repeats the gap
                    # record on the node's retry (recorded once) rather than losing it.
                    log.warning("gap: %s", gap["detail"])
                    self.on_gap(gap)
                final = self.path_for(info.header)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                fsync_dir(final.parent)
                fsync_dir(self.incoming)
                with self._index_lock:
                    self._index[camera].add(seq, info.header["start_us"] // 1_000_000)
                if seq == self.head(camera):
                    self._head_digest[camera] = (seq, info.digest)
                    self._head_end[camera] = (seq, info.trailer["end_us"])
            finally:
                if tmp.exists():
                    tmp.unlink()
        return "stored"

    def _end_us(self, camera: str, seq: int) -> int | None:
        """When a stored segment's recording ended (its signed trailer), or None if not here."""
        cached = self._head_end.get(camera)
        if cached is not None and cached[0] == seq:
            return cached[1]
        stored = self.get(camera, seq)
        if stored is None:
            return None
        try:
            return read_public(stored.path).trailer["end_us"]   # once per camera after a restart
        except (OSError, SegmentError):
            return None

    def _time_gap(self, info: SegmentInfo, head: int | None) -> dict | None:
        """A time gap before this segment: the one its node declares, or one it did not explain."""
        camera, seq, start_us = info.camera, info.seq, info.header["start_us"]
        prev_end = self._end_us(camera, seq - 1) if head == seq - 1 else None
        declared = info.header.get("gap")
        if declared is not None:
            from_us, why = (prev_end if prev_end is not None else declared["from_us"]), declared["why"]
        elif prev_end is not None and start_us - prev_end > TIME_GAP_TOLERANCE_US:
            from_us, why = prev_end, "not explained by the node"
        else:
            return None
        return {"camera": camera, "kind": "time", "from_seq": seq - 1, "to_seq": seq, "from_us": from_us,
                "to_us": start_us, "why": why, "detail": describe_time_gap(from_us, start_us, why)}

    def remove(self, stored: StoredSegment) -> None:
        """Delete one segment (retention). The caller writes the deletion receipt first."""
        with self._locks[stored.camera]:
            index = self._index[stored.camera]
            if index.seqs and index.seqs[-1] == stored.seq and stored.seq >= self._retired.get(stored.camera, (-1,))[0]:
                # The camera's newest segment is going: keep its place in the chain first.
                digest = self.digest(stored.camera, stored.seq)
                atomic_write(self.root / stored.camera / HEAD_FILE,
                             json.dumps({"seq": stored.seq, "digest": digest}).encode(), mode=0o640)
                self._retired[stored.camera] = (stored.seq, digest)
            stored.path.unlink(missing_ok=True)
            fsync_dir(stored.path.parent)
            with self._index_lock:
                self._index[stored.camera].remove(stored.seq)
            if self._head_digest.get(stored.camera, (None,))[0] == stored.seq:
                del self._head_digest[stored.camera]
