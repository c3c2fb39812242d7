"""The node's bounded queue of finished segments, and its record of what was lost.

Segments wait here, oldest first, until the central acknowledges them. The bound is
the smaller of `spool_max_bytes` and 80% of the room the spool has on its filesystem;
past it, and on a full disk, the oldest unsent segment is evicted. Every eviction,
refusal and dropped frame is a line in `loss.jsonl`: nothing disappears silently.
"""
from __future__ import annotations

import logging

import json
import os
import time
from pathlib import Path



from appliance.fsutil import fsync_dir
from appliance.formats.segment import PART_SUFFIX

log = logging.getLogger("custodian.node.spool")



SEGMENT_GLOB = "*.cseg"
def append_record(path: Path, entry: dict) -> None:
    """One JSON line, fsync'd (the node's loss and gap records).

    A line is written whole or not at all: a write the disk cuts short is cut back, and a
    torn last line a crash left gets its newline first, so it never swallows this record.
    A full disk must not stop recording: a record that cannot be written is logged.
    """
    line = (json.dumps(entry) + "\n").encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        log.error("cannot write %s: %s", path, e)
        return
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line      # the torn line stays, as its own (unreadable) line
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)    # never half a line for the next record to follow
            raise
        if size == 0:
            fsync_dir(path.parent)    # a new file's name must survive a power cut too
    except OSError as e:
        log.error("cannot write %s: %s", path, e)
    finally:
        os.close(fd)


SPOOL_SHARE_OF_DISK = 0.8   # of the room the spool can have on its filesystem (the rest: the segment being written)


class Spool:
    """The node's bounded queue of finished segments, oldest first, named by sequence.

    Its bound is the smaller of `max_bytes` and 80% of the room it can have on its
    filesystem (what it holds plus what is free), checked after every segment: with
    the central away for long, the oldest unsent segments go, never the newest. A disk
    that fills anyway (another process, a burst of bitrate) evicts the oldest too, in
    the middle of a write (Recorder.make_room), and recording goes on.
    """

    def __init__(self, directory: Path, max_bytes: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rejected").mkdir(exist_ok=True)
        self.max_bytes = max_bytes
        self.losses = self.dir.parent / "loss.jsonl"
        bound = self.bound()
        if bound < max_bytes:
            log.info("spool bound: %d MB (%.0f%% of the room on its filesystem; spool_max_bytes is %d MB)",
                     bound // 10**6, SPOOL_SHARE_OF_DISK * 100, max_bytes // 10**6)

    def path_for(self, seq: int) -> Path:
        return self.dir / f"{seq:010d}.cseg"

    def finished(self) -> list[Path]:
        return sorted(self.dir.glob(SEGMENT_GLOB))

    def parts(self) -> list[Path]:
        return sorted(self.dir.glob(SEGMENT_GLOB + PART_SUFFIX))

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def reject(self, path: Path, why: str) -> None:
        """Keep a segment the central refused, out of the queue, never deleted silently."""
        os.replace(path, self.dir / "rejected" / path.name)
        fsync_dir(self.dir)
        self.record_loss(path.name, f"rejected by the central: {why}")

    def record_loss(self, name: str, why: str) -> None:
        log.error("spool loss: %s: %s", name, why)
        append_record(self.losses, {"at_us": time.time_ns() // 1000, "segment": name, "why": why})

    def _queue(self) -> list[tuple[Path, int]]:
        """Refused segments first, then unsent ones oldest first, with their sizes (present ones only)."""
        out = []
        for path in sorted((self.dir / "rejected").glob("*")) + self.finished():
            try:
                out.append((path, path.stat().st_size))
            except FileNotFoundError:   # the uploader just delivered it
                pass
        return out

    def _evict(self, path: Path, why: str) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False                 # delivered meanwhile: not a loss
        fsync_dir(path.parent)
        self.record_loss(path.name, why)
        return True

    def make_room(self, why: str) -> bool:
        """Evict the oldest unsent segment (or a refused one first) to free space. False if none."""
        return any(self._evict(path, why) for path, _size in self._queue())

    def bound(self, held: int | None = None) -> int:
        """The spool's bound now: max_bytes, or less when its filesystem has less room."""
        if held is None:
            held = sum(size for _path, size in self._queue())
        st = os.statvfs(self.dir)
        room = held + st.f_bavail * st.f_frsize
        return min(self.max_bytes, int(room * SPOOL_SHARE_OF_DISK))

    def enforce_bound(self) -> None:
        """Evict the oldest unsent segments while the spool (refused ones included) is over its bound."""
        files = self._queue()
        total = sum(size for _path, size in files)
        bound = self.bound(total)
        # The newest segment stays: where the disk has room for less than two, a write that
        # needs its space evicts it then (make_room), and not before.
        while len(files) > 1 and total > bound:
            oldest, size = files.pop(0)
            total -= size
            self._evict(oldest, "spool full: evicted before upload")
