"""The camera node: camera -> segments (encrypted, signed, chained) -> spool -> central.

Crash-safety order (Moonfire's rule): a segment is written to `<seq>.cseg.part`,
fsync'd, renamed to `<seq>.cseg`, and only then recorded as the chain head; the
uploader deletes a spooled segment only after the central acknowledged it.
After a crash, a `.part` is sealed as an explicitly truncated segment.

The node holds the archive's *public* key only: nothing it stores can be decrypted
on it, and no plaintext video is ever written to its storage.
"""
from __future__ import annotations

import base64
import errno
import hashlib
import http.client
import json
import logging
import os
import signal
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.public
import nacl.signing

from hw.backend import Frame, FrameSink

from appliance.config import Config
from appliance.datalock import NODE_LOCK, DataDirLock, lock_data_dir
from appliance.errors import ConfigError, CustodianError, SegmentError
from appliance.fsutil import atomic_write, fsync_dir, sha256_file
from appliance.formats.segment import PART_SUFFIX, SegmentInfo, SegmentWriter, StreamParams, read_public, seal_truncated

log = logging.getLogger("custodian.node")

SEGMENT_GLOB = "*.cseg"
HEADS_KEPT = 16


def lock_node_dir(data_dir: Path) -> DataDirLock:
    """Own a node's data directory (appliance/datalock.py), or raise naming who does."""
    if not (Path(data_dir) / "node.json").exists():
        raise ConfigError(f"{data_dir} holds no node identity: run 'custodian node init' first")
    return lock_data_dir(data_dir, NODE_LOCK, "camera node")


@dataclass
class NodeIdentity:
    """What a node keeps: its signing key, the archive and live public keys, its name."""

    data_dir: Path
    name: str
    signing_key: nacl.signing.SigningKey
    archive_key: nacl.public.PublicKey
    central_url: str
    live_key: nacl.public.PublicKey | None = None   # the central's live-view key (control channel)

    @staticmethod
    def init(data_dir: Path, name: str, archive_key_hex: str, central_url: str,
             live_key_hex: str | None = None) -> "NodeIdentity":
        data_dir = Path(data_dir)
        if (data_dir / "node.key").exists():
            raise ConfigError(f"{data_dir} already holds a node identity")
        try:
            archive_key = nacl.public.PublicKey(bytes.fromhex(archive_key_hex))
        except (ValueError, TypeError, nacl.exceptions.CryptoError):
            raise ConfigError("the archive key must be 64 hex digits (32 bytes)") from None
        live_key = _live_key(live_key_hex)
        data_dir.mkdir(parents=True, exist_ok=True)
        key = nacl.signing.SigningKey.generate()
        atomic_write(data_dir / "node.key", key.encode(), mode=0o600)
        NodeIdentity.write_meta(data_dir, name, archive_key_hex, central_url, live_key_hex)
        return NodeIdentity(data_dir, name, key, archive_key, central_url, live_key)

    @staticmethod
    def write_meta(data_dir: Path, name: str, archive_key_hex: str, central_url: str,
                   live_key_hex: str | None) -> None:
        """node.json: what the node knows of the central (written last: it completes the identity)."""
        atomic_write(Path(data_dir) / "node.json", json.dumps({
            "name": name, "archive_key": archive_key_hex, "central_url": central_url, "live_key": live_key_hex,
        }, indent=2).encode(), mode=0o644)

    @staticmethod
    def load(data_dir: Path) -> "NodeIdentity":
        data_dir = Path(data_dir)
        try:
            meta = json.loads((data_dir / "node.json").read_text())
            key = nacl.signing.SigningKey((data_dir / "node.key").read_bytes())
        except FileNotFoundError:
            raise ConfigError(f"{data_dir} holds no node identity: run 'custodian node init' first") from None
        return NodeIdentity(data_dir, meta["name"], key,
                            nacl.public.PublicKey(bytes.fromhex(meta["archive_key"])), meta["central_url"],
                            _live_key(meta.get("live_key")))

    @property
    def public_key_hex(self) -> str:
        return self.signing_key.verify_key.encode().hex()


def _live_key(hex_key: str | None) -> nacl.public.PublicKey | None:
    if hex_key is None:
        return None
    try:
        return nacl.public.PublicKey(bytes.fromhex(hex_key))
    except (ValueError, TypeError, nacl.exceptions.CryptoError):
        raise ConfigError("the central's live key must be 64 hex digits (32 bytes)") from None


def append_record(path: Path, entry: dict) -> None:
    """One JSON line, fsync'd (the node's loss and gap records)."""
    try:
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:   # a full disk must not stop recording; the log line remains
        log.error("cannot write %s: %s", path, e)


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


class Uploader(threading.Thread):
    """Sends spooled segments in order; deletes each only after the central acknowledges it."""

    def __init__(self, spool: Spool, identity: NodeIdentity, cfg: Config):
        super().__init__(name="uploader", daemon=True)
        self.spool = spool
        self.identity = identity
        self.cfg = cfg
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.heads_path = identity.data_dir / "audit-heads.json"
        url = urllib.parse.urlsplit(identity.central_url)
        self._host, self._port = url.hostname, url.port or 80
        self.uploaded = 0

    def run(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            pending = self.spool.finished()
            if not pending:
                self.wake.wait(5.0)
                self.wake.clear()
                continue
            try:
                self._send(pending[0])
                delay = 0.5
            except (OSError, http.client.HTTPException, _RetryLater) as e:
                log.warning("upload of %s failed (%s); retrying in %.1fs", pending[0].name, e, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, self.cfg.node.retry_max_seconds)

    def drain(self, timeout: float) -> bool:
        """Try to send everything spooled within `timeout` seconds (used at shutdown)."""
        deadline = time.monotonic() + timeout
        while self.spool.finished() and time.monotonic() < deadline:
            self.wake.set()
            time.sleep(0.1)
        return not self.spool.finished()

    def _send(self, path: Path) -> None:
        seq = int(path.name.split(".")[0])
        size = path.stat().st_size
        conn = http.client.HTTPConnection(self._host, self._port, timeout=self.cfg.node.upload_timeout,
                                          blocksize=256 * 1024)   # fewer system calls per upload
        try:
            with open(path, "rb") as f:
                body = _HashingReader(f)
                conn.request("PUT", f"/v1/segments/{self.identity.name}/{seq}", body=body,
                             headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
                response = conn.getresponse()
                payload = response.read(1024 * 1024)
        finally:
            conn.close()
        try:
            answer = json.loads(payload or b"{}")
        except ValueError:
            answer = {"error": payload[:200].decode(errors="replace")}
        if response.status in (200, 201):
            receipt = self._open_receipt(answer.get("receipt"), seq, body.hexdigest())
            self.spool.remove(path)
            self.uploaded += 1
            if receipt.get("audit_head"):
                self._keep_head(receipt["audit_head"])
            log.info("uploaded %s (%s)", path.name, receipt["status"])
        elif response.status in (400, 403, 409, 413):
            self.spool.reject(path, f"{response.status} {answer.get('error', '')}")
        else:
            raise _RetryLater(f"central answered {response.status} {answer.get('error', '')}")

    def _open_receipt(self, sealed: str | None, seq: int, digest: str) -> dict:
        """The central's sealed receipt for exactly this segment, or _RetryLater (keep the file)."""
        try:
            box = nacl.public.Box(self.identity.signing_key.to_curve25519_private_key(), self.identity.live_key)
            receipt = json.loads(box.decrypt(base64.b64decode(sealed or "", validate=True)))
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as e:
            raise _RetryLater(f"an acknowledgement without a valid receipt from the central ({e}): "
                              "keeping the segment") from None
        if (receipt.get("camera"), receipt.get("seq"), receipt.get("digest")) != (self.identity.name, seq, digest):
            raise _RetryLater("the receipt is for another segment: keeping this one")
        return receipt

    def _keep_head(self, head: dict) -> None:
        """Keep the latest audit checkpoints the central sent: a rewritten log would contradict them."""
        try:
            heads = json.loads(self.heads_path.read_text())
        except (FileNotFoundError, ValueError):
            heads = []
        if heads and heads[-1] == head:
            return
        heads = (heads + [head])[-HEADS_KEPT:]
        atomic_write(self.heads_path, json.dumps(heads).encode(), mode=0o644)


class _HashingReader:
    """A file for http.client to send that hashes what it reads (no second pass over the file)."""

    def __init__(self, f):
        self._f = f
        self._hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _RetryLater(CustodianError):
    pass


def run_node(cfg: Config, data_dir: Path | None = None) -> int:
    """`custodian node run`: record until SIGTERM/SIGINT; exit non-zero if the camera fails.

    The camera runs from the start (snapshots for placement approval), but segments
    are written only once the central says the placement is approved (node_control).
    """
    from hw import board
    from hw.watchdog import SystemdNotifier

    from appliance.rules.enrolment import enrol_if_needed
    from appliance.node.control import NodeService

    stop = threading.Event()
    failed = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):   # SIGHUP: its terminal closed
        signal.signal(sig, lambda *_: stop.set())
    data_dir = Path(data_dir or cfg.node.data_dir)
    # A flashed card's first boot: enrol with the pairing code (docs/provisioning.md).
    enrol_if_needed(cfg, data_dir, stop, notifier=SystemdNotifier())
    if stop.is_set():
        return 0
    service = NodeService(cfg, data_dir, on_fatal=lambda: (failed.set(), stop.set()),
                          boot_id=board.boot_id(), clock_synced=board.clock_synced)
    service.start()
    while not stop.wait(1.0):
        pass   # a timed wait: the main thread wakes to run a signal handler even if another thread took the signal
    service.stop(drain_seconds=10.0)
    return 3 if failed.is_set() else 0
