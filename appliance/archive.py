"""The central's archive tree: archive/<camera>/<YYYY>/<MM>/<DD>/<seq>-<start>.cseg.

The tree is the index of what the cameras wrote: a range query is a directory
listing. Segments stay encrypted here; this module never needs the archive key.

Storing follows the crash-safety order: the upload is written to .incoming/,
fsync'd, verified, renamed into its day directory, the directory fsync'd; only
then does the caller acknowledge it to the node.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from .errors import SegmentError
from .fsutil import fsync_dir
from .segment import SegmentInfo

log = logging.getLogger("custodian.archive")

CAMERA_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
SEGMENT_NAME = re.compile(r"^(\d{10})-(\d{8}T\d{6}Z)\.cseg$")
INCOMING = ".incoming"


def check_camera_id(camera: str) -> str:
    if not isinstance(camera, str) or not CAMERA_ID.match(camera):
        raise SegmentError(f"camera id {camera!r} must be lower-case letters, digits and dashes",
                           kind="malformed")
    return camera


def start_stamp(start_us: int) -> datetime:
    return datetime.fromtimestamp(start_us / 1_000_000, tz=timezone.utc)


@dataclass(frozen=True)
class StoredSegment:
    camera: str
    seq: int
    start: datetime
    path: Path


def _stamp_of(path: Path) -> datetime:
    return datetime.strptime(SEGMENT_NAME.match(path.name).group(2), "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


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
        self._index: dict[str, dict[int, Path]] = defaultdict(dict)
        self._digests: dict[Path, str] = {}
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._index_lock = threading.Lock()
        self._load_index()

    def _load_index(self) -> None:
        for camera_dir in self.root.iterdir():
            if camera_dir.name == INCOMING or not camera_dir.is_dir():
                continue
            for dirpath, _dirs, files in os.walk(camera_dir):
                for name in files:
                    m = SEGMENT_NAME.match(name)
                    if m:
                        self._index[camera_dir.name][int(m.group(1))] = Path(dirpath) / name

    # ------------------------------------------------------------------ queries

    def cameras(self) -> list[str]:
        return sorted(c for c, segs in self._index.items() if segs)

    def head(self, camera: str) -> int | None:
        segs = self._index.get(camera)
        return max(segs) if segs else None

    def segments(self, camera: str, start: datetime | None = None, end: datetime | None = None
                 ) -> Iterator[StoredSegment]:
        """Stored segments of one camera in sequence order, optionally overlapping [start, end).

        A segment covers [its start, the next segment's start); the last one, up to now.
        """
        with self._index_lock:
            items = sorted(self._index.get(camera, {}).items())
        stored = [StoredSegment(camera, seq, _stamp_of(path), path) for seq, path in items]
        for this, following in zip(stored, stored[1:] + [None]):
            if end is not None and this.start >= end:
                continue
            if start is not None and following is not None and following.start <= start:
                continue
            yield this

    def get(self, camera: str, seq: int) -> StoredSegment | None:
        path = self._index.get(camera, {}).get(seq)
        return None if path is None else StoredSegment(camera, seq, _stamp_of(path), path)

    def digest(self, camera: str, seq: int) -> str | None:
        path = self._index.get(camera, {}).get(seq)
        if path is None:
            return None
        if path not in self._digests:
            self._digests[path] = _sha256_file(path)
        return self._digests[path]

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
                existing = self._index[camera].get(seq)
                if existing is not None:
                    if self.digest(camera, seq) == info.digest:
                        log.info("%s/%d: duplicate upload of a stored segment, acknowledged again", camera, seq)
                        return "duplicate"
                    raise SegmentError(f"{camera} already has a different segment {seq}", kind="conflict")
                head = self.head(camera)
                if head is not None and seq < head:
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
                if not info.complete:
                    gaps.append({"camera": camera, "kind": "truncated", "from_seq": seq, "to_seq": seq,
                                 "detail": info.trailer.get("truncated_reason", "segment ended early")})
                final = self.path_for(info.header)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
                fsync_dir(final.parent)
                fsync_dir(self.incoming)
                with self._index_lock:
                    self._index[camera][seq] = final
                self._digests[final] = info.digest
            finally:
                if tmp.exists():
                    tmp.unlink()
        for gap in gaps:
            log.warning("gap: %s", gap["detail"])
            self.on_gap(gap)
        return "stored"

    def remove(self, stored: StoredSegment) -> None:
        """Delete one segment (retention). The caller writes the deletion receipt first."""
        with self._locks[stored.camera]:
            stored.path.unlink(missing_ok=True)
            fsync_dir(stored.path.parent)
            with self._index_lock:
                self._index[stored.camera].pop(stored.seq, None)
            self._digests.pop(stored.path, None)
