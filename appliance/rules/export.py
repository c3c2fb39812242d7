"""Evidence packages: building a registered release into files a recipient can verify (C3, C4, C13, C14, C16).

Reference: docs/api/legal.md (operations), docs/export-format.md (the package).

`release.build` checks everything before it writes a byte (the Director, the archive
unsealed, the instrument and its scope, counsel, the destination and its free space),
then builds in a background thread and returns at once; `release.build_status`
reports progress. Per camera, three threads and ffmpeg work at once: a worker reads
each segment once, verifies it (signature, chain, body digest) and only then decrypts
it in memory into blocks of canonical H.264; the build thread writes those blocks
into ffmpeg's stdin, hashing them; ffmpeg stream-copies them into a fragmented MP4 on
its stdout, which a reader thread hashes as it writes it into the package. The stills
of a camera come from one more ffmpeg run. So plaintext exists only in
memory, in pipes, and inside the package on the destination: a directory built under
a temporary name and renamed when complete, or an AES-256 ZIP (nothing in clear on
the medium at all). A gap in the recording starts a new clip and is listed, never
papered over. The export register records each copy: its manifest digest, the
medium and who took it.

An instrument's hold cannot be released while a release under it is unbuilt or was
built within the last 30 days, unless the Director states why (`retention.held_by_release`).
"""
from __future__ import annotations

import base64
import ctypes
import errno
import fcntl
import functools
import hashlib
import io
import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import ffmpeg

from appliance.background import Ahead
from appliance.formats import export_package as fmt
from appliance.media import decode as media
from appliance.formats import segment as seg
from appliance.rules.accounts import acting_director_now, require_unsealed
from appliance.formats.canonical import canonical_json
from appliance.media.report import custody_report, readme
from appliance.errors import CustodianError, MediaError, SegmentError
from appliance.rules.footage import (EPOCH, TimedFrame, _keyframe_before, _nearest, enrolled, overlapping_segments,
                                     timed_frames)
from appliance.rules.footage import _time as _from_us
from appliance.custody.keys import ed25519_public_pem
from appliance.rules.legal import KIND_NAMES, _check_in_scope, _refuse_if_hidden
from appliance.rules.warrants import audit_refs, instrument_view, is_sealed
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import DIRECTOR, iso, op, parse_iso
from appliance.rules.retention import free_bytes, storage_is_local



log = logging.getLogger("custodian.export")

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MOVFLAGS = "+frag_keyframe+empty_moov+default_base_moof"   # MP4 that can be written to a pipe
GAP_SECONDS = 5                   # a stretch of the window this long without a picture is listed as a gap
MAX_STILLS = 24
DEFAULT_STILLS_PER_CAMERA = 3
REENCODE_FACTOR = 2               # room kept for a re-encoded clip, against its segments' size
STILL_ROOM = 4 * 1024 * 1024      # room kept per still (PNG and its copy in the report)
FIXED_ROOM = 4 * 1024 * 1024      # manifest, report text, README, signed headers
BASE_TIMEOUT = 60.0               # seconds for one ffmpeg run, plus ...
PER_FRAME_TIMEOUT = 0.05          # ... this per picture (a Pi re-encoding a label runs slowly)
PIPE_BYTES = 1024 * 1024          # the pipes to and from ffmpeg
FEED_BLOCK = 256 * 1024           # bytes of H.264 handed to ffmpeg (and the hashes) at once
AHEAD_BLOCKS = 32                 # blocks the segment worker may prepare ahead of ffmpeg (8 MiB)
WRITEBACK_BYTES = 16 * 1024 * 1024   # written to a package file between asking the kernel to write it back
SYNC_FILE_RANGE_WRITE = 2         # <linux/fs.h>
PASSPHRASE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"   # no 0/O, 1/I/L: read over the phone
PASSPHRASE_GROUPS = 6


# --------------------------------------------------------------------------- progress


@dataclass
class Build:
    """One build in progress (kept in memory: a build dies with the central, its .part stays incomplete)."""

    id: str
    release: str
    started_by: str
    started_at: str
    total: int
    done: int = 0
    state: str = "running"       # running | built | failed
    _step: str = "starting"
    history: list = field(default_factory=list)   # [step, bytes done, seconds in] at each change
    clock: float = field(default_factory=time.monotonic)
    error: str | None = None
    result: dict | None = None
    finished_at: str | None = None

    @property
    def step(self) -> str:
        return self._step

    @step.setter
    def step(self, text: str) -> None:
        self._step = text
        self.history = (self.history + [[text, self.done, round(time.monotonic() - self.clock, 3)]])[-200:]

    def view(self) -> dict:
        percent = 100 if self.state == "built" else min(99, int(100 * self.done / max(1, self.total)))
        return {"build": self.id, "release": self.release, "state": self.state, "step": self.step,
                "done_bytes": self.done, "total_bytes": self.total, "percent": percent,
                "started_at": self.started_at, "finished_at": self.finished_at, "error": self.error,
                "result": self.result, "history": list(self.history)}


# --------------------------------------------------------------------------- writing the package


class _Hashing:
    """A writable file that hashes what goes through it, and has the kernel start writing it to
    disk every WRITEBACK_BYTES (`start_writeback`), so the sync at the end has little left to wait for."""

    def __init__(self, f, on_close, start_writeback=None):
        self.f, self.on_close, self.start_writeback = f, on_close, start_writeback
        self.digest, self.size = hashlib.sha256(), 0
        self.unsynced = 0

    def write(self, data) -> None:
        self.digest.update(data)
        self.size += len(data)
        self.f.write(data)
        self.unsynced += len(data)
        if self.start_writeback is not None and self.unsynced >= WRITEBACK_BYTES:
            self.start_writeback()
            self.unsynced = 0

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.on_close(self)
        return False


class DirectorySink:
    """The package as a directory, built as `.NAME.part` beside its final name and renamed when whole."""

    def __init__(self, destination: Path, name: str):
        self.destination, self.name = destination, name
        self.temp = destination / f".{name}.part"
        self.final = destination / name
        self.files: dict[str, tuple[str, int]] = {}
        self.temp.mkdir(mode=0o700)

    def open(self, relpath: str) -> _Hashing:
        path = self.temp / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")

        def close(h: _Hashing) -> None:
            f.close()             # made durable all at once in finish(): an fsync per file costs seconds
            self.files[relpath] = (h.digest.hexdigest(), h.size)
        return _Hashing(f, close, lambda: _start_writeback(f))

    def finish(self) -> Path:
        _sync_filesystem(self.temp)
        os.rename(self.temp, self.final)
        _fsync_dir(self.destination)
        return self.final

    def abort(self) -> None:
        shutil.rmtree(self.temp, ignore_errors=True)


class ZipSink:
    """The package as one AES-256 ZIP (WinZip AES, stored): nothing is ever in clear on the medium."""

    def __init__(self, destination: Path, name: str, passphrase: str):
        import pyzipper

        self.destination, self.name = destination, name
        self.temp = destination / f".{name}.zip.part"
        self.final = destination / f"{name}.zip"
        self.files: dict[str, tuple[str, int]] = {}
        self.zip = pyzipper.AESZipFile(self.temp, "x", compression=pyzipper.ZIP_STORED,
                                       encryption=pyzipper.WZ_AES)
        self.zip.setpassword(passphrase.encode("ascii"))

    def open(self, relpath: str) -> _Hashing:
        f = self.zip.open(f"{self.name}/{relpath}", "w", force_zip64=True)

        def close(h: _Hashing) -> None:
            f.close()
            self.files[relpath] = (h.digest.hexdigest(), h.size)
        return _Hashing(f, close, lambda: _start_writeback(self.zip.fp))

    def finish(self) -> Path:
        self.zip.close()
        with open(self.temp, "rb+") as f:
            os.fsync(f.fileno())
        os.rename(self.temp, self.final)
        _fsync_dir(self.destination)
        return self.final

    def abort(self) -> None:
        try:
            self.zip.close()
        except Exception:  # noqa: BLE001  (closing a half-written zip may fail: it is deleted anyway)
            pass
        self.temp.unlink(missing_ok=True)


@functools.cache
def _libc_call(name: str):
    """A C library function (syncfs, sync_file_range: Python has neither), or None where it is missing."""
    return getattr(ctypes.CDLL(None, use_errno=True), name, None)


def _start_writeback(f) -> None:
    """Have the kernel start writing a file's dirty pages to disk, without waiting for them
    (sync_file_range(2) with SYNC_FILE_RANGE_WRITE). Durability still comes from the sync in
    finish(); this only moves most of its disk writes to while the build is still working."""
    f.flush()
    call = _libc_call("sync_file_range")
    if call is not None:
        call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
        call(f.fileno(), 0, 0, SYNC_FILE_RANGE_WRITE)     # the whole file; pages already written are skipped


def _sync_filesystem(directory: Path) -> None:
    """Make every file under `directory` durable: one syncfs(2) of its filesystem (hundreds of small
    files, one fsync each, took seconds on a journaled disk), or an fsync per file where syncfs is missing."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = _libc_call("syncfs")
        if syncfs is not None and syncfs(fd) == 0:
            return
    finally:
        os.close(fd)
    for dirpath, _dirs, files in os.walk(directory):
        for name in files:
            with open(Path(dirpath) / name, "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _widen(pipe) -> None:
    """A 1 MiB pipe instead of Linux's 64 KiB: fewer wake-ups between us and ffmpeg."""
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass      # over /proc/sys/fs/pipe-max-size for this user: the default works, a little slower


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError:
        pass    # some filesystems (vfat on a USB stick) do not fsync directories; the rename still happened
    finally:
        os.close(fd)


def _write(sink, relpath: str, data: bytes) -> None:
    with sink.open(relpath) as f:
        f.write(data)


def new_passphrase() -> str:
    groups = ["".join(secrets.choice(PASSPHRASE_ALPHABET) for _ in range(5)) for _ in range(PASSPHRASE_GROUPS)]
    return "-".join(groups)


# --------------------------------------------------------------------------- what goes in


@dataclass
class Options:
    label: bool = False
    redactions: dict[str, list[list[int]]] = field(default_factory=dict)
    stills: list[tuple[str, datetime]] = field(default_factory=list)
    encrypt: bool = False

    def filters(self, camera: str, height: int, release_id: str) -> list[tuple[str, dict]]:
        """ffmpeg filters for a camera's pictures: black boxes first, then the label on top."""
        found = [("drawbox", {"x": x, "y": y, "w": w, "h": h, "color": "black", "t": "fill"})
                 for x, y, w, h in self.redactions.get(camera, [])]
        if self.label:
            found.append(("drawtext", {"fontfile": FONT, "text": f"CONFIDENTIAL {release_id}", "x": 4, "y": 4,
                                       "fontsize": max(10, height // 18), "fontcolor": "white", "box": 1,
                                       "boxcolor": "black@0.6", "boxborderw": 3}))
        return found

    def described(self, camera: str) -> list[str]:
        return ((["redaction boxes " + json.dumps(self.redactions[camera])] if self.redactions.get(camera) else [])
                + (["burned-in label"] if self.label else []))


def _read_options(raw: dict, release: dict) -> Options:
    """The build's choices, checked against the release (its cameras and window)."""
    from appliance.rules.registry import Args

    cameras, start, end = release["cameras"], parse_iso(release["start"]), parse_iso(release["end"])
    options = Options(label=raw["label"], encrypt=raw["encrypt"])
    raw_redactions, raw_stills = raw["redactions"] or [], raw["stills"] or []
    if not isinstance(raw_redactions, list) or len(raw_redactions) > 64:
        raise BadRequest("redactions must be a list of at most 64 {camera, box: [x, y, w, h]}")
    for item in raw_redactions:
        box = item.get("box") if isinstance(item, dict) else None
        if (not isinstance(item, dict) or set(item) != {"camera", "box"} or item["camera"] not in cameras
                or not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10000 for v in box)
                or box[2] == 0 or box[3] == 0):
            raise BadRequest(f"redaction {item!r} must be {{camera: one of the release's cameras, box: [x, y, w, h]}}")
        options.redactions.setdefault(item["camera"], []).append(box)
    if not isinstance(raw_stills, list) or len(raw_stills) > MAX_STILLS:
        raise BadRequest(f"stills must be a list of at most {MAX_STILLS} {{camera, at}}")
    for item in raw_stills:
        if not isinstance(item, dict) or set(item) != {"camera", "at"} or item["camera"] not in cameras:
            raise BadRequest(f"still {item!r} must be {{camera: one of the release's cameras, at: a time}}")
        at = Args({"at": item["at"]}).time("at")
        if not start <= at <= end:
            raise BadRequest(f"still at {item['at']} is outside the release's window")
        options.stills.append((item["camera"], at))
    return options


# --------------------------------------------------------------------------- the operations


def _check_release(central, caller, release_id: str) -> tuple[dict, dict]:
    """Everything release.create checked, checked again now: the records may have changed since (C3, C13, C14)."""
    release = central.records.get("releases", release_id)
    if release is None:
        raise NotFound(f"no release {release_id}")
    instrument = release.get("instrument") and central.records.get("instruments", release["instrument"])
    if not instrument:
        raise Refused(f"release {release_id} names no recorded legal instrument: footage leaves only under one",
                      clause="C3")
    _refuse_if_hidden(caller, instrument)
    _check_in_scope(instrument, release["cameras"], parse_iso(release["start"]), parse_iso(release["end"]))
    counsel = [central.records.get("counsel", c) for c in release.get("counsel", [])]
    if not counsel or None in counsel or any(c["instrument"] != instrument["id"] for c in counsel):
        clause = "C13" if instrument["kind"] == "search_warrant" else "C14"
        raise Refused(f"no counsel consultation is recorded for {instrument['id']}: record it before footage "
                      "leaves under it", clause=clause)
    return release, instrument


def _check_destination(central, raw: str) -> Path:
    destination = Path(raw)
    if not destination.is_absolute():
        raise BadRequest(f'"Destination" must be a folder on the appliance from / (e.g. /media/usb), not {raw!r}',
                         field="to")
    if not destination.is_dir():
        raise BadRequest(f"{raw} is not a folder: mount the medium there first", field="to")
    resolved = destination.resolve()
    data = central.paths.data.resolve()
    if resolved == data or data in resolved.parents:
        raise Refused(f"{raw} is inside the central's data directory: a package goes onto a separate medium",
                      clause="C4")
    local, fstype = storage_is_local(resolved)
    if not local:
        raise Refused(f"{raw} is on a {fstype} network filesystem: footage leaves the library only on a medium "
                      "handed to the recipient, never over the network", clause="C11")
    if not os.access(resolved, os.W_OK):
        raise BadRequest(f"the central cannot write to {raw}")
    return resolved


def _plan(central, release: dict) -> list[tuple[str, list[tuple]]]:
    start, end = parse_iso(release["start"]), parse_iso(release["end"])
    return [(camera, overlapping_segments(central, camera, start, end)) for camera in release["cameras"]]


def _room_needed(plan, options: Options) -> tuple[int, int]:
    """(bytes of segments to read, bytes the package may take on the destination)."""
    total = needed = 0
    for camera, segments in plan:
        size = sum(stored.path.stat().st_size for stored, _header in segments)
        total += size
        needed += size * (REENCODE_FACTOR if options.label or options.redactions.get(camera) else 1)
    stills = len(options.stills) or DEFAULT_STILLS_PER_CAMERA * len(plan)
    return total, needed + needed // 50 + stills * STILL_ROOM + FIXED_ROOM


@op("release.build", DIRECTOR,
    labels={"to": "Destination", "medium": "Medium", "taken_by": "Taken by"})
def start_build(central, caller, args):
    """Build a registered release's evidence package onto a medium; returns at once (poll release.build_status)."""
    release_id = args.id("release")
    raw_destination = args.str("to", min_len=1, max_len=1000)
    medium = args.str("medium", min_len=3, max_len=300)
    taken_by = args.str("taken_by", min_len=3, max_len=300)
    # Redactions and stills are checked against the release's cameras and window, once it is known.
    raw_options = {"label": args.bool("label"), "encrypt": args.bool("encrypt"),
                   "redactions": args._get("redactions", [], False), "stills": args._get("stills", [], False)}
    args.done()
    release, instrument = _check_release(central, caller, release_id)
    options = _read_options(raw_options, release)
    require_unsealed(central)
    destination = _check_destination(central, raw_destination)
    if any(b.release == release_id and b.state == "running" for b in central.package_builds.values()):
        raise Refused(f"release {release_id} is being built already: wait for it to finish")
    plan = _plan(central, release)
    if not any(segments for _camera, segments in plan):
        raise NotFound(f"nothing is stored for release {release_id}'s cameras in its window: no footage to build")
    total, needed = _room_needed(plan, options)
    free = free_bytes(destination)
    if free < needed:
        raise Refused(f"{raw_destination} has {free // 1_000_000} MB free; this package needs about "
                      f"{needed // 1_000_000 + 1} MB: use a larger medium")
    now = central.now()
    name = f"{release_id}-{now:%Y%m%dT%H%M%SZ}"
    for leftover in destination.glob(f".{release_id}-*.part"):   # a build of ours a crash cut short
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    if (destination / name).exists() or (destination / f"{name}.zip").exists():
        raise Refused(f"{destination / name} exists already: wait a second and build again")
    build = Build(id=f"bld-{secrets.token_hex(6)}", release=release_id, started_by=caller.user_id,
                  started_at=iso(now), total=total)
    passphrase = new_passphrase() if options.encrypt else None
    refs = audit_refs(instrument, incident=release.get("incident"), export=release["export"])
    sealed = is_sealed(instrument)
    audit_action(central, caller, "release.build", target=release_id, refs=refs,
                 why=f"package for {release['recipient']}" if not sealed else "package under a sealed warrant",
                 details={"build": build.id, "sealed": True, "encrypted": options.encrypt} if sealed else {
                     "build": build.id, "destination": str(destination), "medium": medium, "taken_by": taken_by,
                     "encrypted": options.encrypt, "label": options.label,
                     "redactions": sum(len(b) for b in options.redactions.values()), "stills": len(options.stills)})
    central.package_builds[build.id] = build
    job = _Job(central, caller, build, release, instrument, options, destination, name, passphrase,
               medium=medium, taken_by=taken_by, plan=plan)
    threading.Thread(target=job.run, name=f"export-{build.id}", daemon=True).start()
    result = {"build": build.view()}
    if passphrase:
        result["passphrase"] = passphrase
        result["passphrase_note"] = ("shown once and stored nowhere: give it to the recipient by another channel "
                                     "than the medium (C4, C16)")
    return result


@op("release.build_status", DIRECTOR)
def build_status(central, caller, args):
    """Progress of a package build: step, bytes done of total, percent; the result when built."""
    build_id = args.id("build")
    args.done()
    build = central.package_builds.get(build_id)
    if build is None:
        raise NotFound(f"no build {build_id} since the central started")
    release = central.records.get("releases", build.release)
    instrument = release and central.records.get("instruments", release["instrument"])
    if instrument:
        _refuse_if_hidden(caller, instrument)
    return {"build": build.view()}


# --------------------------------------------------------------------------- the build itself


@dataclass
class _Piece:
    camera: str
    index: int
    sources: list[tuple] = field(default_factory=list)     # (StoredSegment, SegmentInfo)


class _Job:
    def __init__(self, central, caller, build: Build, release: dict, instrument: dict, options: Options,
                 destination: Path, name: str, passphrase: str | None, *, medium: str, taken_by: str, plan):
        self.central, self.caller, self.build = central, caller, build
        self.release, self.instrument, self.options = release, instrument, options
        self.destination, self.name, self.passphrase = destination, name, passphrase
        self.medium, self.taken_by, self.plan = medium, taken_by, plan
        self.start, self.end = parse_iso(release["start"]), parse_iso(release["end"])

    def run(self) -> None:
        sink, registered = None, False
        try:
            sink = (ZipSink(self.destination, self.name, self.passphrase) if self.passphrase
                    else DirectorySink(self.destination, self.name))
            manifest_digest, cameras, stills = self._write(sink)
            # The copy goes into the register before it can look complete on the medium: a
            # central killed between the rename and the register would otherwise leave a
            # package nobody could find to retrieve after a breach (C16).
            self.build.step = "registering the copy"
            self.check_builder()
            self._register_copy(sink.final, manifest_digest)
            registered = True
            self.build.step = "renaming into place"
            final = sink.finish()
            sink = None
            self._register(final, manifest_digest, cameras, stills)
        except Exception as e:  # noqa: BLE001  (any failure: nothing that looks complete is left)
            writing = sink is not None
            if writing:
                sink.abort()
                if registered:
                    self._copy_failed(e)
            self._failed(e, writing_the_medium=writing)

    def check_builder(self) -> None:
        """The person building may still: her account not disabled, and an acting director still inside
        her period (revoked or run out, the package is no longer hers to make, C2). Checked at each
        segment and before the copy is registered."""
        user = self.central.records.get("users", self.caller.user_id)
        if user is None or user.get("disabled"):
            raise Refused("the account that started this build was disabled: the build stopped", clause="C8")
        if self.caller.acting_director and not acting_director_now(self.central, user):
            raise Refused("the acting director's period ended during this build: it stopped; the Director may "
                          "build the release again", clause="C2")

    # ---------------------------------------------------------------- the files

    def _write(self, sink) -> tuple[str, list[dict], list[dict]]:
        cameras = [self._camera(sink, camera, segments) for camera, segments in self.plan]
        self.build.step = "stills"
        stills = self._stills(sink, cameras)
        pem = self.central.keys.signing_public_pem().encode()
        _write(sink, fmt.APPLIANCE_KEY, pem)
        manifest = self._manifest(cameras, stills, pem)
        self.build.step = "custody report"
        _write(sink, fmt.README, readme(manifest).encode("utf-8"))
        _write(sink, fmt.REPORT, custody_report(manifest, {s["file"]: s["png"] for s in stills if s.get("png")}))
        self.build.step = "signing"
        sums = "".join(f"{digest}  {path}\n" for path, (digest, _size) in sorted(sink.files.items()))
        _write(sink, fmt.SUMS, sums.encode("ascii"))
        manifest["sha256sums"] = hashlib.sha256(sums.encode("ascii")).hexdigest()
        manifest["files"] = len(sink.files) - 1
        manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
        _write(sink, fmt.MANIFEST, manifest_bytes)
        _write(sink, fmt.SIGNATURE, self.central.keys.signing_key().sign(manifest_bytes).signature)
        for still in stills:
            still.pop("png", None)
        return hashlib.sha256(manifest_bytes).hexdigest(), cameras, stills

    def _camera(self, sink, camera: str, segments: list[tuple]) -> dict:
        """A camera's clips: a worker thread reads, verifies and decrypts each segment (`_segment_stream`)
        while this thread feeds the one before into ffmpeg and another writes ffmpeg's MP4 into the package."""
        header = segments[0][1] if segments else {}
        node_key = header.get("node_key") or self.central.records.get("cameras", camera)["key"]
        pem_path = f"segments/{camera}/node-key.pem"
        _write(sink, pem_path, ed25519_public_pem(bytes.fromhex(node_key)).encode())
        pieces: list[_Piece] = []
        written: list[dict] = []
        clip: _Clip | None = None
        try:
            with Ahead(_segment_stream(self, camera, segments), depth=AHEAD_BLOCKS,
                       name=f"export-{self.build.id}-{camera}") as stream:
                for item in stream:
                    if isinstance(item, bytes):
                        clip.write(item)
                    elif isinstance(item, _SegmentFed):
                        clip.segment_done(item)
                        self.build.done += item.info.size
                        self.build.step = f"{camera}: segment {item.stored.seq}"
                    else:                       # a new piece: the clip before it is complete
                        if clip is not None and (result := clip.finish()) is not None:
                            written.append(result)
                        pieces.append(item)
                        clip = _Clip(self, sink, item)
            if clip is not None and (result := clip.finish()) is not None:
                written.append(result)
            clip = None
        finally:
            if clip is not None:
                clip.abort()
        return {"camera": camera, "node_key": node_key, "node_key_pem": pem_path,
                "width": header.get("width"), "height": header.get("height"),
                "segments_found": len(segments), "pieces": written,
                "gaps": self._gaps(camera, pieces, written)}

    def _gaps(self, camera: str, pieces: list[_Piece], written: list[dict]) -> list[dict]:
        gaps = []
        for before, after in zip(pieces, pieces[1:]):
            last, first = before.sources[-1], after.sources[0]
            if not last[1].complete:
                gaps.append({"kind": "truncated", "after_seq": last[0].seq, "before_seq": first[0].seq,
                             "detail": f"segment {last[0].seq} ended early: "
                                       f"{last[1].trailer.get('truncated_reason', 'no reason given')}"})
            if first[0].seq != last[0].seq + 1:
                gaps.append({"kind": "missing", "after_seq": last[0].seq, "before_seq": first[0].seq,
                             "detail": f"segments {last[0].seq + 1} to {first[0].seq - 1} are not in the archive"})
        if pieces and not pieces[-1].sources[-1][1].complete:
            stored = pieces[-1].sources[-1][0]
            gaps.append({"kind": "truncated", "after_seq": stored.seq, "before_seq": None,
                         "detail": f"segment {stored.seq}, the last, ended early"})
        # Stretches of the window with no picture in the package, edges included.
        edges = [(self.start, None)] + [(parse_iso(p["first_frame_at"]), parse_iso(p["last_frame_at"]))
                                        for p in written] + [(None, self.end)]
        for (_s, prev_end), (next_start, _e) in zip(edges, edges[1:]):
            prev_end = prev_end or self.start
            next_start = next_start or self.end
            if (next_start - prev_end).total_seconds() >= GAP_SECONDS:
                gaps.append({"kind": "no_picture", "from": iso(prev_end), "to": iso(next_start),
                             "detail": f"no picture of {camera} for {(next_start - prev_end).total_seconds():.0f} s"})
        return gaps

    def _stills(self, sink, cameras: list[dict]) -> list[dict]:
        wanted = list(self.options.stills)
        if not wanted:    # a contact sheet needs pictures: evenly over each camera's clips
            for camera in cameras:
                times = [parse_iso(p[k]) for p in camera["pieces"] for k in ("first_frame_at", "last_frame_at")]
                if times:
                    lo, hi = min(times), max(times)
                    step = (hi - lo) / (DEFAULT_STILLS_PER_CAMERA + 1)
                    wanted += [(camera["camera"], lo + step * (k + 1)) for k in range(DEFAULT_STILLS_PER_CAMERA)]
        heights = {c["camera"]: c["height"] or 240 for c in cameras}
        by_camera: dict[str, list[int]] = {}
        for n, (camera, _at) in enumerate(wanted):
            by_camera.setdefault(camera, []).append(n)

        def render(camera: str, numbers: list[int]) -> dict[int, tuple[datetime, bytes]]:
            """A camera's stills, each the picture nearest its moment, decoded from the keyframe before it:
            one ffmpeg run per picture size, and each segment verified and decrypted once."""
            key = require_unsealed(self.central)
            cache: dict = {}
            groups: dict[tuple, list[tuple[int, list, TimedFrame]]] = {}
            for n in sorted(numbers, key=lambda n: wanted[n][1]):
                at = wanted[n][1]
                frames = timed_frames(self.central, key, camera, at, at, cache=cache)
                index = _nearest(frames, [f.at for f in frames], at, (self.start, self.end)) if frames else None
                if index is None:
                    continue
                first = _keyframe_before(frames, index)
                picked = frames[index]
                groups.setdefault((picked.fps, picked.size), []).append(
                    (n, [f.frame for f in frames[first:index + 1]], picked))
            found = {}
            filters = self.options.filters(camera, heights[camera], self.release["id"])
            for (fps, _size), group in groups.items():
                pngs = media.png_frames([gop for _n, gop, _f in group], fps=fps, filters=filters)
                found.update({n: (picked.at, png) for (n, _gop, picked), png in zip(group, pngs)})
            return found

        stills = []
        # One ffmpeg run per camera, two cameras at a time, so their start-up costs overlap.
        with ThreadPoolExecutor(max_workers=2) as pool:
            rendered = {camera: pool.submit(render, camera, numbers) for camera, numbers in by_camera.items()}
            for n, (camera, at) in enumerate(wanted):
                self.build.step = f"still {n + 1} of {len(wanted)}"
                frame_at, png = rendered[camera].result().get(n, (None, None))
                if png is None:
                    stills.append({"camera": camera, "at": iso(at), "file": None,
                                   "missing": "a gap in the recording"})
                    continue
                relpath = f"stills/{camera}-{frame_at:%Y%m%dT%H%M%S}{frame_at.microsecond // 1000:03d}Z-{n + 1}.png"
                _write(sink, relpath, png)
                stills.append({"camera": camera, "at": iso(at), "frame_at": iso(frame_at), "file": relpath,
                               "sha256": sink.files[relpath][0], "png": png})
        return stills

    # ---------------------------------------------------------------- the manifest

    def _person(self, user_id: str | None) -> dict | None:
        user = user_id and self.central.records.get("users", user_id)
        return {"id": user_id, "name": user["name"], "role": user["role"]} if user else None

    def _manifest(self, cameras: list[dict], stills: list[dict], pem: bytes) -> dict:
        release, central = self.release, self.central
        # What leaves the library shows a sealed warrant as the API shows it to anyone but the Director (C13).
        instrument = instrument_view(_Recipient(), self.instrument)
        incident = release.get("incident") and central.records.get("incidents", release["incident"])
        counsel = [central.records.get("counsel", c) for c in release["counsel"]]
        raw_key = bytes(central.keys.verify_key())
        return {
            "type": fmt.FORMAT, "v": fmt.VERSION, "package": self.name, "label": release["label"],
            "release": {"id": release["id"], "export": release["export"], "recipient": release["recipient"],
                        "cameras": release["cameras"], "start": release["start"], "end": release["end"],
                        "notes": release.get("notes") or "",
                        "segments_at_approval": release.get("segments_at_approval")},
            "instrument": instrument | ({"kind_name": KIND_NAMES[instrument["kind"]]}),
            "incident": {k: incident.get(k) for k in ("id", "grounds", "occurred_at", "location")} if incident else None,
            # Counsel's advice is privileged: who was consulted and when, never the summary.
            "counsel": [{k: c[k] for k in ("id", "counsel", "consulted_on", "recorded_at")} | {
                "recorded_by": self._person(c["recorded_by"])} for c in counsel if c],
            "approved": {"by": self._person(release["created_by"]), "role": release.get("created_role"),
                         "acting_director": bool(release.get("acting_director")), "at": release["created_at"]},
            "built": {"by": self._person(self.caller.user_id), "at": iso(central.now()), "build": self.build.id,
                      "medium": self.medium, "taken_by": self.taken_by, "encrypted": bool(self.passphrase),
                      "ffmpeg": _ffmpeg_version(), "custodian": _custodian_version()},
            "appliance_key": {"file": fmt.APPLIANCE_KEY, "sha256_raw": hashlib.sha256(raw_key).hexdigest()},
            "cameras": cameras,
            "stills": [{k: v for k, v in s.items() if k != "png"} for s in stills],
            "sha256sums": None,
        }

    # ---------------------------------------------------------------- the register

    def _register_copy(self, final: Path, manifest_digest: str) -> None:
        """The copy in the export register, `state: writing`, before the package takes its final name."""
        central = self.central
        copy = {"build": self.build.id, "package": final.name, "path": str(final), "manifest_sha256": manifest_digest,
                "medium": self.medium, "taken_by": self.taken_by, "encrypted": bool(self.passphrase),
                "built_by": self.caller.user_id, "built_at": iso(central.now()), "bytes": None, "state": "writing"}
        with central.decision_lock:
            export = central.records.get("exports", self.release["export"])
            central.records.update("exports", self.release["export"],
                                   {"copies": (export.get("copies") or []) + [copy]})

    def _update_copy(self, fields: dict) -> list[dict]:
        """Change this build's copy in the register (under the decision lock); returns every copy."""
        def edit(export: dict) -> None:
            for copy in export.get("copies") or []:
                if copy.get("build") == self.build.id:
                    copy.update(fields)
        return self.central.records.update("exports", self.release["export"], edit).get("copies") or []

    def _copy_failed(self, error: Exception) -> None:
        try:
            with self.central.decision_lock:
                self._update_copy({"state": "failed", "error": str(error)[:300]})
        except Exception:  # noqa: BLE001  (the records failing must not hide the build's failure)
            log.exception("build %s: cannot mark its copy failed in the register", self.build.id)

    def _register(self, final: Path, manifest_digest: str, cameras: list[dict], stills: list[dict]) -> None:
        central, release = self.central, self.release
        size = final.stat().st_size if final.is_file() else sum(
            p.stat().st_size for p in final.rglob("*") if p.is_file())
        segments = sum(len(p["segments"]) for c in cameras for p in c["pieces"])
        with central.decision_lock:
            copies = self._update_copy({"state": "complete", "bytes": size})
            built = [c for c in copies if c.get("state", "complete") == "complete"]
            package = {"status": "built", "built_at": iso(central.now()), "built_by": self.caller.user_id,
                       "manifest_sha256": manifest_digest, "copies": len(built)}
            central.records.update("releases", release["id"], {"package": package})
            sealed = is_sealed(self.instrument)
            audit_action(central, self.caller, "release.built", target=release["id"],
                         refs=audit_refs(self.instrument, incident=release.get("incident"), export=release["export"]),
                         details={"build": self.build.id, "manifest_sha256": manifest_digest, "bytes": size,
                                  "segments": segments, "stills": len(stills)}
                         | ({} if sealed else {"package": str(final), "medium": self.medium,
                                               "taken_by": self.taken_by}))
        self.build.result = {"package": str(final), "manifest_sha256": manifest_digest, "bytes": size,
                             "segments": segments, "clips": sum(len(c["pieces"]) for c in cameras),
                             "gaps": sum(len(c["gaps"]) for c in cameras), "encrypted": bool(self.passphrase)}
        self.build.done = self.build.total
        self.build.step, self.build.state, self.build.finished_at = "built", "built", iso(central.now())

    def _failed(self, error: Exception, writing_the_medium: bool = False) -> None:
        full = writing_the_medium and isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
        if full:
            message = (f"the medium at {self.destination} is full (it had room when the build started: something "
                       "else took it, or the package grew past the estimate): nothing was left on it; free space "
                       "or use a larger medium, and build again")
            log.warning("build %s failed: %s", self.build.id, message)
        elif not isinstance(error, CustodianError):
            log.error("build %s failed", self.build.id, exc_info=error)
        if not full:
            message = (str(error) if isinstance(error, (CustodianError, OSError))
                       else f"{type(error).__name__}: {error}")
        self.build.state, self.build.error, self.build.finished_at = "failed", message, iso(self.central.now())
        self.build.step = "failed: nothing was left on the medium"
        # The error may name a camera or a time: under a sealed warrant only the Director reads it, in the
        # build's status; the audit log, readable by an acting director, says only that it failed (C13).
        sealed = is_sealed(self.instrument)
        try:
            audit_action(self.central, self.caller, "release.build_failed", target=self.release["id"],
                         refs={"instrument": self.instrument["id"], "export": self.release["export"]},
                         why="the build under a sealed warrant failed" if sealed else message,
                         details={"build": self.build.id} | ({"sealed": True} if sealed else {}))
        except Exception:  # noqa: BLE001  (the audit log itself failing must not hide the build's failure)
            pass


class _Recipient:
    """Whoever reads a package: not the Director, so a sealed warrant shows only that it exists."""

    role = "recipient"


@dataclass
class _SegmentFed:
    """What the worker took from one segment; it comes after that segment's blocks of H.264."""

    stored: object                 # StoredSegment
    info: seg.SegmentInfo
    used: int = 0                  # pictures in the clip
    first_index: int | None = None
    first_us: int | None = None
    last_us: int | None = None
    rewritten: int = 0
    note: str | None = None
    signed: tuple[bytes, bytes, bytes, bytes] | None = None   # header, its signature, trailer, its signature


def _segment_stream(job: _Job, camera: str, segments: list[tuple]) -> Iterator[_Piece | bytes | _SegmentFed]:
    """A camera's footage for its clips, made in the worker thread: each segment read once and verified
    (camera signature, chain, body digest) before any of its bytes is decrypted, then its pictures in the
    window as blocks of canonical H.264. Yields a _Piece where a clip starts (after a missing sequence
    number or a truncated segment), the blocks, and a _SegmentFed after each segment."""
    lookup = enrolled(job.central, camera)
    start_us, end_us = _us(job.start), _us(job.end)
    piece: _Piece | None = None
    previous: tuple | None = None
    started = False                # a stream copy starts at a keyframe inside the window (C3)
    for stored, _header in segments:
        try:
            info, data = seg.read_verified(stored.path, lookup)
        except SegmentError as e:                    # say which one: the person will look at that file
            raise SegmentError(f"{camera} segment {stored.seq}: {e}", kind=e.kind) from None
        _check_link(camera, stored, info, previous)
        if piece is None or stored.seq != previous[0].seq + 1 or not previous[1].complete:
            piece = _Piece(camera, piece.index + 1 if piece else 1)
            piece.sources.append((stored, info))
            yield piece
        else:
            piece.sources.append((stored, info))
        previous = (stored, info)
        key = require_unsealed(job.central)          # sealing the archive stops a build at the next segment
        job.check_builder()                          # and so does her custody ending
        fed = _SegmentFed(stored, info)
        header_start = info.header["start_us"]
        batch: list[bytes] = []
        batched, first_pts, index = 0, None, -1
        try:
            for frame in seg.decrypt_verified(stored.path, key, info, data):
                index += 1
                first_pts = frame.pts_us if first_pts is None else first_pts
                at_us = header_start + frame.pts_us - first_pts
                if at_us > end_us:
                    break
                if not started:
                    if at_us < start_us or not frame.keyframe:
                        continue
                    started = True
                unit, changed = fmt.canonical_annexb(frame.data)
                fed.rewritten += changed
                batch.append(unit)
                batched += len(unit)
                fed.used += 1
                if fed.first_index is None:
                    fed.first_index, fed.first_us = index, at_us
                fed.last_us = at_us
                if batched >= FEED_BLOCK:      # one write and one hash update per block, not per picture
                    yield b"".join(batch)
                    batch.clear()
                    batched = 0
        except SegmentError as e:
            if info.complete:
                raise
            fed.note = f"frames after {index} not used: {e} (the segment was sealed after a crash)"
        if batch:                              # the frames before a failed chunk are authentic (docs/segment-format.md)
            yield b"".join(batch)
        if fed.used:
            fed.signed = signed_parts(stored.path, info, data)
        yield fed


def _check_link(camera: str, stored, info: seg.SegmentInfo, previous: tuple | None) -> None:
    """The verified segment is the one the archive lists, and chains to the one before it."""
    if info.seq != stored.seq:
        raise SegmentError(f"{camera} segment {stored.seq}: the file holds segment {info.seq}", kind="chain")
    if previous is not None and stored.seq == previous[0].seq + 1 and info.header["prev"] != previous[1].digest:
        raise SegmentError(f"{camera} segment {stored.seq} does not chain to segment {previous[0].seq}: "
                           "its signed prev is not that segment's digest", kind="chain")


class _Clip:
    """One MP4: blocks of H.264 written into ffmpeg's stdin (and hashed), ffmpeg's stdout hashed into the
    package by a reader thread. ffmpeg starts with the first block: a piece with no picture in the
    window makes no clip."""

    def __init__(self, job: _Job, sink, piece: _Piece):
        self.job, self.sink, self.piece = job, sink, piece
        first_header = piece.sources[0][1].header
        self.fps = f"{first_header['fps_num']}/{first_header['fps_den']}"
        self.fps_value = first_header["fps_num"] / first_header["fps_den"]
        self.filters = job.options.filters(piece.camera, first_header["height"], job.release["id"])
        self.relpath = f"video/{piece.camera}-{piece.index}.mp4"
        stream = ffmpeg.input("pipe:", format="h264", fflags="+genpts", r=self.fps)
        if self.filters:
            video = stream.video
            for name, kwargs in self.filters:
                video = video.filter(name, **kwargs)
            out = video.output("pipe:", format="mp4", vcodec="libx264", preset="veryfast", crf=18,
                               pix_fmt="yuv420p", movflags=MOVFLAGS)
        else:
            out = stream.output("pipe:", format="mp4", vcodec="copy", movflags=MOVFLAGS)
        self.argv = out.global_args("-hide_banner", "-loglevel", "error", "-nostats").compile(cmd=media.FFMPEG)
        # The most pictures the window can hold at this rate: ffmpeg is stopped if it takes longer than that allows.
        window_frames = (job.end - job.start).total_seconds() * self.fps_value
        self.deadline = BASE_TIMEOUT + PER_FRAME_TIMEOUT * max(window_frames, 1000)
        self.proc: subprocess.Popen | None = None
        self.threads: list[threading.Thread] = []
        self.timer: threading.Timer | None = None
        self.errors: list[bytes] = []
        self.reader_error: BaseException | None = None
        self.whole, self.part = hashlib.sha256(), hashlib.sha256()
        self.offset = self.part_bytes = self.frames = 0
        self.first_us: int | None = None
        self.last_us: int | None = None
        self.segments: list[dict] = []
        self.signed_files: list[tuple[str, bytes]] = []

    def _start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "FFREPORT"}
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, cwd="/")
        except FileNotFoundError:
            raise MediaError("ffmpeg is not installed (apt install ffmpeg)") from None
        for pipe in (self.proc.stdin, self.proc.stdout):
            _widen(pipe)
        self.threads = [threading.Thread(target=self._read_mp4, name=f"export-{self.job.build.id}-mp4", daemon=True),
                        threading.Thread(target=lambda: self.errors.append(self.proc.stderr.read()),
                                         name=f"export-{self.job.build.id}-ffmpeg-errors", daemon=True)]
        for t in self.threads:
            t.start()
        self.timer = threading.Timer(self.deadline, self.proc.kill)
        self.timer.start()

    def _read_mp4(self) -> None:
        """ffmpeg's stdout into the package, hashed as it is written (the reader thread)."""
        out = None
        try:
            while block := self.proc.stdout.read(fmt.BLOCK):
                out = out or self.sink.open(self.relpath)     # opened once ffmpeg has something to say
                out.write(block)
            if out is not None:
                out.__exit__(None, None, None)
        except BaseException as e:  # noqa: BLE001  (handed to finish(); ffmpeg is stopped so the feed ends)
            self.reader_error = e
            self.proc.kill()

    def write(self, block: bytes) -> None:
        if self.proc is None:
            self._start()
        try:
            self.proc.stdin.write(block)
        except BrokenPipeError:
            self.finish()                      # ffmpeg stopped: raises with its reason
            raise MediaError(f"ffmpeg stopped before the end of {self.relpath}") from None
        self.part.update(block)
        self.whole.update(block)
        self.part_bytes += len(block)

    def segment_done(self, fed: _SegmentFed) -> None:
        if not fed.used:
            return
        stored, info, header = fed.stored, fed.info, fed.info.header
        camera = self.piece.camera
        base = f"segments/{camera}/{stored.seq:010d}"
        header_bytes, header_sig, trailer_bytes, trailer_sig = fed.signed
        entry = {
            "seq": stored.seq, "digest": info.digest, "bytes": info.size, "complete": info.complete,
            "start": iso(_from_us(header["start_us"])), "end": iso(_from_us(info.trailer["end_us"])),
            "clock_synced": header["clock_synced"], "prev": header["prev"],
            "header": f"{base}.header.json", "header_signature": _b64(header_sig),
            "trailer": f"{base}.trailer.json", "trailer_signature": _b64(trailer_sig),
            "frames_in_segment": info.trailer.get("frames"), "payload_bytes": info.trailer.get("payload_bytes"),
            "frames_used": {"first": fed.first_index, "count": fed.used},
            "annexb": {"offset": self.offset, "bytes": self.part_bytes, "sha256": self.part.hexdigest()},
            "start_codes_rewritten": fed.rewritten,
        }
        if fed.note:
            entry["note"] = fed.note
        self.segments.append(entry)
        self.offset += self.part_bytes
        self.part, self.part_bytes = hashlib.sha256(), 0
        self.frames += fed.used
        self.first_us = fed.first_us if self.first_us is None else self.first_us
        self.last_us = fed.last_us
        self.signed_files += [(f"{base}.header.json", header_bytes), (f"{base}.header.sig", header_sig),
                              (f"{base}.trailer.json", trailer_bytes), (f"{base}.trailer.sig", trailer_sig)]

    def finish(self) -> dict | None:
        """Close ffmpeg's input, wait for the MP4, and describe it (None: no picture of the piece was in the window)."""
        if self.proc is None:
            return None
        try:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass                           # ffmpeg stopped already: its exit status says why
            for t in self.threads:
                t.join()
            code = self.proc.wait()
        finally:
            self._stop()
        if self.reader_error is not None:
            raise self.reader_error
        if code != 0:
            detail = b"".join(self.errors).decode("utf-8", "replace").strip().splitlines()
            raise MediaError(f"ffmpeg could not make {self.relpath}: "
                             f"{detail[-1] if detail else 'stopped after ' + str(round(self.deadline)) + ' s'}")
        if self.relpath not in self.sink.files:
            raise MediaError(f"ffmpeg wrote nothing for {self.relpath}")
        for path, data in self.signed_files:     # the camera's signed words, once the clip is closed
            _write(self.sink, path, data)
        digest, size = self.sink.files[self.relpath]
        return {
            "file": self.relpath, "sha256": digest, "bytes": size,
            "made": "reencoded" if self.filters else "stream_copy",
            "filters": self.job.options.described(self.piece.camera),
            "ffmpeg": " ".join(self.argv), "fps": self.fps, "frames": self.frames,
            "duration_seconds": round(self.frames / self.fps_value, 3),
            "first_frame_at": iso(_from_us(self.first_us)), "last_frame_at": iso(_from_us(self.last_us)),
            "annexb": {"sha256": self.whole.hexdigest(), "bytes": self.offset},
            "segments": self.segments,
        }

    def abort(self) -> None:
        """Stop ffmpeg and its threads (the build failed: the sink removes what was written)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        for pipe in (self.proc.stdin,):
            try:
                pipe.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(30)
        self.proc.wait()
        self._stop()

    def _stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def signed_parts(path: Path, info: seg.SegmentInfo, data: bytes | None = None) -> tuple[bytes, bytes, bytes, bytes]:
    """A verified segment's header JSON and signature, trailer JSON and signature: the camera's signed words
    (from `data`, the bytes that were verified, when given; else read from the file and compared)."""
    with open(path, "rb") if data is None else io.BytesIO(data) as f:
        (header_len,) = seg.U32.unpack(f.read(len(seg.PREFIX) + 4)[len(seg.PREFIX):])
        header, header_sig = f.read(header_len), f.read(seg.SIG_BYTES)
        f.seek(info.trailer["body_bytes"])
        (trailer_len,) = seg.U32.unpack(f.read(4))
        trailer, trailer_sig = f.read(trailer_len), f.read(seg.SIG_BYTES)
    if canonical_json(info.header) != header or canonical_json(info.trailer) != trailer:
        raise SegmentError(f"{path.name} changed since it was verified")
    return header, header_sig, trailer, trailer_sig


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def _ffmpeg_version() -> str:
    """The first line of `ffmpeg -version`, asked again only when the ffmpeg binary changes."""
    path = shutil.which(media.FFMPEG)
    try:
        stamp = os.stat(path).st_mtime_ns if path else None
    except OSError:
        stamp = None
    return _ffmpeg_version_of(path, stamp)


@functools.lru_cache(maxsize=4)
def _ffmpeg_version_of(path: str | None, _stamp: int | None) -> str:
    try:
        return subprocess.run([path or media.FFMPEG, "-version"], capture_output=True, text=True,
                              timeout=30).stdout.split("\n", 1)[0].split(" Copyright")[0]
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _custodian_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("custodian-appliance")
    except PackageNotFoundError:
        return "unknown"


def wait_for(central, build_id: str, timeout: float = 600.0) -> dict:
    """Block until a build ends (tests, the demo); returns its status."""
    deadline = time.monotonic() + timeout
    build = central.package_builds[build_id]
    while build.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    return build.view()
