"""Evidence packages: building a registered release into files a recipient can verify (C3, C4, C13, C14, C16).

Reference: docs/api/legal.md (operations), docs/export-format.md (the package).

`release.build` checks everything before it writes a byte (the Director, the archive
unsealed, the instrument and its scope, counsel, the destination and its free space),
then builds in a background thread and returns at once; `release.build_status`
reports progress. Per camera, the segments are verified, decrypted in memory and fed
through a pipe to ffmpeg, which stream-copies them into a fragmented MP4 on its
stdout; we hash that as we write it into the package. So plaintext exists only in
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
import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import ffmpeg

from appliance.formats import export_package as fmt
from appliance.media import decode as media
from appliance.formats import segment as seg
from appliance.rules.accounts import require_unsealed
from appliance.formats.canonical import canonical_json
from appliance.media.report import custody_report, readme
from appliance.errors import CustodianError, MediaError, SegmentError
from appliance.rules.footage import EPOCH, _keyframe_before, _nearest, enrolled, overlapping_segments, timed_frames
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
    """A writable file that hashes what goes through it."""

    def __init__(self, f, on_close):
        self.f, self.on_close = f, on_close
        self.digest, self.size = hashlib.sha256(), 0

    def write(self, data) -> None:
        self.digest.update(data)
        self.size += len(data)
        self.f.write(data)

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
        return _Hashing(f, close)

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
        return _Hashing(f, close)

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


def _sync_filesystem(directory: Path) -> None:
    """Make every file under `directory` durable: one syncfs(2) of its filesystem (hundreds of small
    files, one fsync each, took seconds on a journaled disk), or an fsync per file where syncfs is missing."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
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
        lookup = enrolled(self.central, camera)
        pieces, current, previous = [], None, None
        for stored, _header in segments:
            self.build.step = f"{camera}: verifying segment {stored.seq}"
            info = seg.verify_file(stored.path, lookup)
            if current is None or previous is None or stored.seq != previous[0].seq + 1 or not previous[1].complete:
                current = _Piece(camera, len(pieces) + 1)
                pieces.append(current)
            current.sources.append((stored, info))
            previous = (stored, info)
        header = segments[0][1] if segments else {}
        node_key = header.get("node_key") or self.central.records.get("cameras", camera)["key"]
        pem_path = f"segments/{camera}/node-key.pem"
        _write(sink, pem_path, ed25519_public_pem(bytes.fromhex(node_key)).encode())
        written, started = [], False
        for piece in pieces:
            result, started = self._piece(sink, piece, started)
            if result is not None:
                written.append(result)
        return {"camera": camera, "node_key": node_key, "node_key_pem": pem_path,
                "width": header.get("width"), "height": header.get("height"),
                "segments_found": len(segments), "pieces": written,
                "gaps": self._gaps(camera, pieces, written)}

    def _piece(self, sink, piece: _Piece, started: bool) -> tuple[dict | None, bool]:
        """One MP4: the piece's segments decrypted into ffmpeg's stdin, its stdout into the package."""
        camera = piece.camera
        first_header = piece.sources[0][1].header
        fps = f"{first_header['fps_num']}/{first_header['fps_den']}"
        filters = self.options.filters(camera, first_header["height"], self.release["id"])
        stream = ffmpeg.input("pipe:", format="h264", fflags="+genpts", r=fps)
        if filters:
            video = stream.video
            for name, kwargs in filters:
                video = video.filter(name, **kwargs)
            out = video.output("pipe:", format="mp4", vcodec="libx264", preset="veryfast", crf=18,
                               pix_fmt="yuv420p", movflags=MOVFLAGS)
        else:
            out = stream.output("pipe:", format="mp4", vcodec="copy", movflags=MOVFLAGS)
        argv = out.global_args("-hide_banner", "-loglevel", "error", "-nostats").compile(cmd=media.FFMPEG)
        relpath = f"video/{camera}-{piece.index}.mp4"
        feeder = _Feeder(self, piece, started)
        env = {k: v for k, v in os.environ.items() if k != "FFREPORT"}
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env, cwd="/")
        except FileNotFoundError:
            raise MediaError("ffmpeg is not installed (apt install ffmpeg)") from None
        for pipe in (proc.stdin, proc.stdout):
            _widen(pipe)
        errors: list[bytes] = []
        threads = [threading.Thread(target=feeder.run, args=(proc.stdin,), daemon=True),
                   threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)]
        for t in threads:
            t.start()
        frames_total = sum((info.trailer.get("frames") or 0) for _s, info in piece.sources)
        deadline = BASE_TIMEOUT + PER_FRAME_TIMEOUT * max(frames_total, 1000)
        timer = threading.Timer(deadline, proc.kill)
        timer.start()
        out_file = None
        try:
            while block := proc.stdout.read(fmt.BLOCK):
                out_file = out_file or sink.open(relpath)     # opened once ffmpeg has something to say
                out_file.write(block)
            code = proc.wait()
            if out_file is not None:
                out_file.__exit__(None, None, None)
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for t in threads:
                t.join(30)
        if feeder.error is not None:
            raise feeder.error
        if not feeder.segments and out_file is None:
            # Nothing of this piece fell inside the window (its pictures before the first keyframe
            # in it, say): ffmpeg had no input and wrote nothing. No clip, and nothing to undo.
            return None, feeder.started
        if code != 0:
            detail = b"".join(errors).decode("utf-8", "replace").strip().splitlines()
            raise MediaError(f"ffmpeg could not make {relpath}: "
                             f"{detail[-1] if detail else 'stopped after ' + str(round(deadline)) + ' s'}")
        for path, data in feeder.signed_files:     # the camera's signed words, once the clip is closed
            _write(sink, path, data)
        digest, size = sink.files[relpath]
        fps_value = first_header["fps_num"] / first_header["fps_den"]
        return {
            "file": relpath, "sha256": digest, "bytes": size,
            "made": "reencoded" if filters else "stream_copy",
            "filters": self.options.described(camera),
            "ffmpeg": " ".join(argv), "fps": fps, "frames": feeder.frames,
            "duration_seconds": round(feeder.frames / fps_value, 3),
            "first_frame_at": iso(_from_us(feeder.first_us)), "last_frame_at": iso(_from_us(feeder.last_us)),
            "annexb": {"sha256": feeder.whole.hexdigest(), "bytes": feeder.offset},
            "segments": feeder.segments,
        }, feeder.started

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

        def render(camera: str, at: datetime):
            key = require_unsealed(self.central)
            frames = timed_frames(self.central, key, camera, at, at)
            index = _nearest(frames, [f.at for f in frames], at) if frames else None
            if index is None:
                return None, None
            first = _keyframe_before(frames, index)
            png = media.png_frame([f.frame for f in frames[first:index + 1]], fps=frames[index].fps,
                                  filters=self.options.filters(camera, heights[camera], self.release["id"]))
            return frames[index].at, png

        stills = []
        # Each still is its own short ffmpeg run: two at a time, so their start-up costs overlap.
        with ThreadPoolExecutor(max_workers=2) as pool:
            rendered = [pool.submit(render, camera, at) for camera, at in wanted]
            for n, ((camera, at), future) in enumerate(zip(wanted, rendered), start=1):
                self.build.step = f"still {n} of {len(wanted)}"
                frame_at, png = future.result()
                if png is None:
                    stills.append({"camera": camera, "at": iso(at), "file": None,
                                   "missing": "a gap in the recording"})
                    continue
                relpath = f"stills/{camera}-{frame_at:%Y%m%dT%H%M%S}{frame_at.microsecond // 1000:03d}Z-{n}.png"
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


class _Feeder:
    """Decrypts a piece's segments into ffmpeg's stdin, keeping the window, hashing the canonical H.264."""

    def __init__(self, job: _Job, piece: _Piece, started: bool):
        self.job, self.piece, self.started = job, piece, started
        self.start_us, self.end_us = _us(job.start), _us(job.end)
        self.whole = hashlib.sha256()
        self.offset = self.frames = 0
        self.first_us: int | None = None
        self.last_us: int | None = None
        self.segments: list[dict] = []
        self.signed_files: list[tuple[str, bytes]] = []
        self.error: BaseException | None = None

    def run(self, stdin) -> None:
        try:
            for stored, info in self.piece.sources:
                self._segment(stdin, stored, info)
        except BrokenPipeError:
            pass                          # ffmpeg stopped: its exit status says why
        except BaseException as e:  # noqa: BLE001  (handed to the job, which fails the build)
            self.error = e
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def _segment(self, stdin, stored, info) -> None:
        job, camera = self.job, self.piece.camera
        job.build.step = f"{camera}: segment {stored.seq}"
        key = require_unsealed(job.central)          # sealing the archive stops a build at the next segment
        header = info.header
        digest, size, used, first_index, rewritten = hashlib.sha256(), 0, 0, None, 0
        first_pts, index, note = None, -1, None
        batch: list[bytes] = []
        batched = 0

        def flush() -> None:      # one write and one hash update per block, not per picture
            nonlocal batched
            data = b"".join(batch)
            stdin.write(data)
            digest.update(data)
            self.whole.update(data)
            batch.clear()
            batched = 0

        try:
            for frame in seg.decrypt_verified(stored.path, key, info):
                index += 1
                first_pts = frame.pts_us if first_pts is None else first_pts
                at_us = header["start_us"] + frame.pts_us - first_pts
                if at_us > self.end_us:
                    break
                if not self.started:
                    if at_us < self.start_us or not frame.keyframe:
                        continue          # a stream copy starts at a keyframe inside the window (C3)
                    self.started = True
                data, changed = fmt.canonical_annexb(frame.data)
                rewritten += changed
                batch.append(data)
                batched += len(data)
                size += len(data)
                used += 1
                if first_index is None:
                    first_index = index
                    self.first_us = self.first_us if self.first_us is not None else at_us
                self.last_us = at_us
                if batched >= FEED_BLOCK:
                    flush()
        except SegmentError as e:
            if info.complete:
                raise
            note = f"frames after {index} not used: {e} (the segment was sealed after a crash)"
        flush()                   # the frames before a failed chunk are authentic (docs/segment-format.md)
        job.build.done += stored.path.stat().st_size
        if not used:
            return
        header_bytes, header_sig, trailer_bytes, trailer_sig = signed_parts(stored.path, info)
        base = f"segments/{camera}/{stored.seq:010d}"
        entry = {
            "seq": stored.seq, "digest": info.digest, "bytes": info.size, "complete": info.complete,
            "start": iso(_from_us(header["start_us"])), "end": iso(_from_us(info.trailer["end_us"])),
            "clock_synced": header["clock_synced"], "prev": header["prev"],
            "header": f"{base}.header.json", "header_signature": _b64(header_sig),
            "trailer": f"{base}.trailer.json", "trailer_signature": _b64(trailer_sig),
            "frames_in_segment": info.trailer.get("frames"), "payload_bytes": info.trailer.get("payload_bytes"),
            "frames_used": {"first": first_index, "count": used},
            "annexb": {"offset": self.offset, "bytes": size, "sha256": digest.hexdigest()},
            "start_codes_rewritten": rewritten,
        }
        if note:
            entry["note"] = note
        self.segments.append(entry)
        self.offset += size
        self.frames += used
        self.signed_files += [(f"{base}.header.json", header_bytes), (f"{base}.header.sig", header_sig),
                              (f"{base}.trailer.json", trailer_bytes), (f"{base}.trailer.sig", trailer_sig)]


def signed_parts(path: Path, info: seg.SegmentInfo) -> tuple[bytes, bytes, bytes, bytes]:
    """A verified segment's header JSON and signature, trailer JSON and signature: the camera's signed words."""
    with open(path, "rb") as f:
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
    try:
        return subprocess.run([media.FFMPEG, "-version"], capture_output=True, text=True,
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
