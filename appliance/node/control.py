"""The node's side of the control channel (docs/node-protocol.md), and the camera's gate.

The node has no open port: it asks the central, every `control_seconds`, what it
may do (placement status, privacy masks, whether a snapshot or live frames are
wanted), and sends images when asked. Every request is signed by the node's key;
every answer is sealed by the central's live key to this node, so a machine on the
LAN can neither read the answers nor forge one (a forged answer could lift the
privacy masks, C6).

Pieces, from the camera outwards:

- `LatestGop` keeps the access units since the last keyframe in RAM (bounded).
  Every frame the backend produces goes through it.
- `CameraGate` sits between the backend and the `Recorder`: frames always feed
  the tap, but segments are written only while the central says the placement is
  approved (C6: a new camera does not record until the Director approves it).
- `render_gray` decodes the tap's GOP through an ffmpeg pipe into a small grey
  image (never a file) for snapshots and live view; images leave the node sealed
  to the central's live key (C4).
- `CameraRunner` owns the backend and its watchdog and restarts them when the
  privacy masks change (masks are drawn before encoding, so a change needs a
  new encoder pipeline).
- `NodeControl` is the polling thread (`service.py` wires the pieces together for
  `custodian node run` and for the tests).
"""
from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import logging
import subprocess
import threading
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import ffmpeg
import nacl.exceptions
import nacl.public
import nacl.signing

from hw.backend import CameraFailed, Frame, FrameSink
from hw.settings import SettingsError
from hw.sps import access_unit_format

from appliance.config import Config
from appliance.errors import ConfigError, CustodianError
from appliance.fsutil import atomic_write
from appliance.formats.node_protocol import MAX_IMAGE_WIDTH, signed_headers





log = logging.getLogger("custodian.node.control")

SNAPSHOT_WIDTH = 128            # placement and view-check snapshots (grey, pixels wide)
RENDER_TIMEOUT = 20.0           # seconds for ffmpeg to decode one GOP
MAX_ANSWER_BYTES = 64 * 1024


class ControlError(CustodianError):
    """The central could not be asked, or its answer cannot be trusted."""


# --------------------------------------------------------------------------- the signed request


def seal_image(live_key: nacl.public.PublicKey, image: dict) -> bytes:
    """An image as the central receives it: JSON sealed to the central's live key (C4)."""
    return nacl.public.SealedBox(live_key).encrypt(json.dumps(image, separators=(",", ":")).encode())


def gray_image(width: int, height: int, pixels: bytes, frame_size: tuple[int, int], at: datetime,
               masks: list[list[int]]) -> dict:
    """An image as the node sends it: small, grey, with the frame size and the masks drawn on it."""
    return {"width": width, "height": height, "format": "gray8",
            "pixels": base64.b64encode(pixels).decode("ascii"), "frame": list(frame_size), "masks": masks,
            "at": at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")}


class ControlClient:
    """Signed requests from this node to the central; answers checked and opened."""

    def __init__(self, identity, timeout: float = 10.0):
        if identity.live_key is None:
            raise ConfigError("this node has no live key for the central: run 'custodian node init' "
                              "with --live-key (see 'custodian central keys')")
        url = urllib.parse.urlsplit(identity.central_url)
        self._host, self._port = url.hostname, url.port or 80
        self.camera = identity.name
        self.timeout = timeout
        self._key = identity.signing_key
        self._live_key = identity.live_key
        self._box = nacl.public.Box(self._key.to_curve25519_private_key(), identity.live_key)
        self._last_time = 0
        self._lock = threading.Lock()

    def _next_time(self) -> int:
        """Wall-clock microseconds, made strictly increasing (the central refuses repeats)."""
        with self._lock:
            self._last_time = max(time.time_ns() // 1000, self._last_time + 1)
            return self._last_time

    def send(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes, int]:
        """(status, answer body, the TIME signed). A stale TIME is corrected once and retried:
        after a reboot the clock may be behind the last request the central accepted."""
        for attempt in range(2):
            time_us = self._next_time()
            headers = signed_headers(self._key, self.camera, method, path, time_us, body)
            if body:
                headers["Content-Type"] = "application/octet-stream"
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                answer = response.read(MAX_ANSWER_BYTES)
            finally:
                conn.close()
            last = _stale_time(response.status, answer)
            if last is None or attempt:
                return response.status, answer, time_us
            with self._lock:
                self._last_time = max(self._last_time, last)
        raise AssertionError("unreachable")

    def control(self) -> dict:
        status, answer, time_us = self.send("GET", f"/v1/nodes/{self.camera}/control")
        if status != 200:
            raise ControlError(f"central answered {status}: {_error_text(answer)}")
        try:
            doc = json.loads(self._box.decrypt(answer))
        except (nacl.exceptions.CryptoError, ValueError):
            raise ControlError("the control answer is not sealed by this central's live key") from None
        if doc.get("time") != time_us:
            raise ControlError("the control answer does not belong to this request (replayed?)")
        return doc

    def put_image(self, path: str, image: dict) -> int:
        status, answer, _ = self.send("PUT", path, seal_image(self._live_key, image))
        if status != 200:
            log.info("central refused %s: %s %s", path, status, _error_text(answer))
        return status


def _stale_time(status: int, answer: bytes) -> int | None:
    if status != 403:
        return None
    try:
        last = json.loads(answer).get("last_time")
    except (ValueError, AttributeError):
        return None
    return last if isinstance(last, int) and not isinstance(last, bool) else None


def _error_text(answer: bytes) -> str:
    try:
        return str(json.loads(answer).get("error", ""))[:200]
    except (ValueError, AttributeError):
        return answer[:200].decode(errors="replace")


# --------------------------------------------------------------------------- the frame tap


class LatestGop:
    """The access units since the last keyframe, in RAM only, bounded.

    Past the bound, later units are dropped until the next keyframe: what is kept
    still decodes (to a slightly older frame).
    """

    def __init__(self, max_bytes: int = 16 * 1024 * 1024, max_units: int = 1200):
        self.max_bytes = max_bytes
        self.max_units = max_units
        self._lock = threading.Lock()
        self._units: list[bytes] = []
        self._bytes = 0
        self._key_at: datetime | None = None
        self._last_at: datetime | None = None
        self.frames = 0

    def feed(self, frame: Frame) -> None:
        now = datetime.now(timezone.utc)
        with self._lock:
            self.frames += 1
            if frame.keyframe:
                self._units, self._bytes, self._key_at = [frame.data], len(frame.data), now
            elif not self._units:
                return                   # nothing decodable before the first keyframe
            elif self._bytes + len(frame.data) <= self.max_bytes and len(self._units) < self.max_units:
                self._units.append(frame.data)
                self._bytes += len(frame.data)
            else:
                return
            self._last_at = now

    def clear(self) -> None:
        """Forget the GOP (the camera restarted with other masks: old pictures must not be sent)."""
        with self._lock:
            self._units, self._bytes = [], 0

    def keyframe(self) -> tuple[list[bytes], datetime] | None:
        """The latest keyframe alone (a snapshot decodes one picture)."""
        with self._lock:
            return (self._units[:1], self._key_at) if self._units else None

    def gop(self) -> tuple[list[bytes], datetime] | None:
        """Everything since the latest keyframe (live view shows its last picture)."""
        with self._lock:
            return (list(self._units), self._last_at) if self._units else None


def image_size(frame_size: tuple[int, int], width: int) -> tuple[int, int]:
    """A small image's size: `width` wide (even, at most the frame's), the frame's aspect."""
    fw, fh = frame_size
    w = max(16, min(int(width), fw, MAX_IMAGE_WIDTH)) // 2 * 2
    h = max(2, round(fh * w / fw / 2) * 2)
    return w, h


def render_gray(units: list[bytes], frame_size: tuple[int, int], width: int, *,
                ffmpeg_bin: str = "ffmpeg", timeout: float = RENDER_TIMEOUT) -> tuple[int, int, bytes]:
    """Decode Annex-B access units (a keyframe first) through an ffmpeg pipe; return the
    last picture as (width, height, gray8 pixels). Nothing touches the disk."""
    w, h = image_size(frame_size, width)
    argv = (ffmpeg.input("pipe:", format="h264")
            .filter("scale", w, h, flags="area")
            .output("pipe:", format="rawvideo", pix_fmt="gray")
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
            .compile(cmd=ffmpeg_bin))
    done = subprocess.run(argv, input=b"".join(units), capture_output=True, timeout=timeout)
    size = w * h
    if done.returncode != 0 or len(done.stdout) < size:
        raise ControlError(f"ffmpeg could not decode the picture: {done.stderr[-300:].decode(errors='replace')}")
    return w, h, done.stdout[-size:]


# --------------------------------------------------------------------------- the gate


class CameraGate:
    """The backend's SegmentOpener: every frame feeds the tap; segments only while `recording`.

    The control thread sets `recording` (placement approved, C6). A segment opens
    only at a keyframe, so every segment decodes on its own.
    """

    def __init__(self, recorder, tap: LatestGop, recording: bool = False):
        self.recorder = recorder
        self.tap = tap
        self.recording = recording
        self.segments_opened = 0

    def open_segment(self) -> FrameSink:
        return _GatedSegment(self)

    def record_loss(self, why: str) -> None:
        if self.recording:             # frames of a camera that is not recording are no loss
            self.recorder.record_loss(why)

    def note_break(self, why: str) -> None:
        """The backend knows why pictures stopped (an IP camera's stream lost): the next
        segment's gap says so. Only while recording: a paused placement keeps its own reason."""
        if self.recording:
            self.recorder.note_break(why)


class _GatedSegment:
    def __init__(self, gate: CameraGate):
        self.gate = gate
        self.real: FrameSink | None = None

    def write_frame(self, frame: Frame) -> None:
        self.gate.tap.feed(frame)
        if not self.gate.recording:
            self.close()               # placement withdrawn: stop at once
            return
        if self.real is None:
            if not frame.keyframe:
                return
            picture = access_unit_format(frame.data)     # the header states the stream's real size
            self.real = self.gate.recorder.open_segment(
                picture_size=None if picture is None else (picture.width, picture.height))
            self.gate.segments_opened += 1
        self.real.write_frame(frame)

    def close(self) -> None:
        if self.real is not None:
            real, self.real = self.real, None
            real.close()


# --------------------------------------------------------------------------- the camera and its masks


class CameraRunner:
    """The camera backend and its watchdog; restarted with new privacy masks when they change.

    Masks that cannot be applied fail closed: the camera stays stopped (the central
    then reports it offline) until the Director sets masks that fit.
    """

    def __init__(self, cfg: Config, name: str, opener, on_fatal, make_backend=None):
        if make_backend is None:
            from hw.factory import make_backend
        self.cfg = cfg
        self.name = name
        self.opener = opener
        self.on_fatal = on_fatal
        self._make_backend = make_backend
        self._lock = threading.Lock()
        self.backend = None
        self.watchdog = None
        self.masks: list[list[int]] | None = None
        self.failed: str | None = None

    def start(self, masks: list[list[int]]) -> None:
        """First start: a camera that cannot open, or a bad setting, raises (the process exits)."""
        with self._lock:
            self._start(masks, raise_failure=True)

    def apply_masks(self, masks: list[list[int]]) -> None:
        with self._lock:
            if masks == self.masks and self.backend is not None:
                return
            log.info("camera %s: privacy masks now %s: restarting the camera", self.name, masks)
            self._stop()
            self._start(masks, raise_failure=False)

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def _start(self, masks: list[list[int]], raise_failure: bool) -> None:
        from hw.watchdog import FrameWatchdog

        self.masks = [list(m) for m in masks]
        camera_cfg = dataclasses.replace(self.cfg.camera, masks=self.masks)
        try:
            backend = self._make_backend(camera_cfg, name=self.name)
            backend.start(self.opener, self.cfg.node.segment_seconds)
        except (ConfigError, SettingsError, CameraFailed) as e:
            self.failed = str(e)
            log.critical("camera %s stopped: %s", self.name, e)
            if raise_failure:
                raise
            return
        self.failed = None
        self.backend = backend
        self.watchdog = FrameWatchdog(backend, self.opener, self.cfg.node.segment_seconds,
                                      self.cfg.camera.stall_seconds, self.cfg.camera.max_restarts,
                                      on_fatal=self.on_fatal)
        self.watchdog.start()

    def _stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        if self.backend is not None:
            self.backend.stop()
            self.backend = None


def union_masks(*mask_lists: list) -> list[list[int]]:
    """Masks from the node's own config and from the central: all of them apply."""
    out: list[list[int]] = []
    for masks in mask_lists:
        for m in masks or []:
            if list(m) not in out:
                out.append(list(m))
    return out


# --------------------------------------------------------------------------- what the central said


@dataclasses.dataclass
class ControlState:
    """The central's last word, kept on disk so a reboot without the central keeps it:
    an approved camera goes on recording (C1) with its masks (C6); a new one does not record."""

    path: Path
    status: str = "unknown"
    masks: list = dataclasses.field(default_factory=list)

    @classmethod
    def load(cls, data_dir: Path) -> ControlState:
        path = Path(data_dir) / "control.json"
        try:
            doc = json.loads(path.read_text())
            return cls(path, str(doc["status"]), _checked_masks(doc["masks"]))
        except FileNotFoundError:
            return cls(path)
        except (ValueError, KeyError, TypeError) as e:
            log.error("%s is unreadable (%s): waiting for the central's word before recording", path, e)
            return cls(path)

    def save(self) -> None:
        atomic_write(self.path, json.dumps({"status": self.status, "masks": self.masks}).encode(), mode=0o600)


def _checked_masks(masks) -> list[list[int]]:
    if not isinstance(masks, list) or not all(
            isinstance(m, list) and len(m) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in m)
            for m in masks):
        raise ValueError(f"masks must be a list of [x, y, w, h]: {masks!r}")
    return masks


class NodeControl(threading.Thread):
    """Polls the central, applies what it says, sends snapshots and live frames when due."""

    def __init__(self, client: ControlClient, cfg: Config, state: ControlState, gate: CameraGate,
                 tap: LatestGop, runner: CameraRunner, render=render_gray):
        super().__init__(name="node-control", daemon=True)
        self.client = client
        self.cfg = cfg
        self.state = state
        self.gate = gate
        self.tap = tap
        self.runner = runner
        self.render = render
        self.stopping = threading.Event()
        self.snapshot_wanted = False
        self.live: dict | None = None
        self._last_snapshot = float("-inf")
        self._last_live = float("-inf")
        self._complaint: str | None = None
        self.polls = self.snapshots_sent = self.live_sent = self.live_refused = 0

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(self.client.timeout + RENDER_TIMEOUT + 5)

    def run(self) -> None:
        next_poll = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_poll:
                self.poll()
                next_poll = time.monotonic() + self.cfg.node.control_seconds
            self.send_due_images()
            self.stopping.wait(min(0.2, max(0.0, next_poll - time.monotonic())))

    def poll(self) -> None:
        try:
            control = self.client.control()
            self.apply(control)
        except (OSError, http.client.HTTPException, ControlError, ValueError, KeyError, TypeError) as e:
            self._complain(f"control channel: {e}")
            return
        self.polls += 1
        self._complaint = None

    def apply(self, control: dict) -> None:
        status, masks = str(control["status"]), _checked_masks(control["masks"])
        # Masks first: a camera approved together with new masks never records without them.
        effective = union_masks(self.cfg.camera.masks, masks)
        if effective != self.runner.masks or self.runner.backend is None:
            if effective != self.runner.masks:
                self.gate.recorder.note_break("camera restarted: privacy masks changed")
            self.runner.apply_masks(effective)
            self.tap.clear()
        recording = status == "approved" and self.runner.backend is not None
        if self.gate.recording and not recording:
            self.gate.recorder.note_break(f"recording paused: placement {status}" if status != "approved"
                                          else "recording paused: the camera stopped")
        if recording != self.gate.recording:
            # At the level the unit's journal shows: IT watching it after enrolment sees recording start.
            log.warning("placement %s: %s", status, "recording from the next keyframe" if recording
                        else "not recording")
        self.gate.recording = recording
        self.snapshot_wanted = bool(control.get("snapshot_wanted"))
        live = control.get("live")
        self.live = live if isinstance(live, dict) and status == "approved" else None
        if (status, masks) != (self.state.status, self.state.masks):
            self.state.status, self.state.masks = status, masks
            try:
                self.state.save()
            except OSError as e:             # applied anyway; only a reboot would miss it
                log.error("cannot keep the central's word in %s: %s", self.state.path, e)

    def send_due_images(self) -> None:
        now = time.monotonic()
        view_check_due = (self.state.status == "approved"
                          and now - self._last_snapshot >= self.cfg.node.view_check_seconds)
        if self.snapshot_wanted or view_check_due:
            self._send_snapshot(now)
        if self.live is not None and now - self._last_live >= self.cfg.node.live_interval_seconds:
            self._send_live(now)

    def _send_snapshot(self, now: float) -> None:
        taken = self.tap.keyframe()
        if taken is None:
            return                       # no picture yet: try again shortly
        units, at = taken
        status = self._send_image(f"/v1/nodes/{self.client.camera}/snapshot", units, at, SNAPSHOT_WIDTH)
        if status == 200:
            self.snapshots_sent += 1
            self.snapshot_wanted = False
            self._last_snapshot = now
        elif status is not None:
            self._last_snapshot = now   # refused: wait for the next view check or the central's ask

    def _send_live(self, now: float) -> None:
        taken = self.tap.gop()
        if taken is None:
            return
        units, at = taken
        self._last_live = now
        view = str(self.live.get("view", ""))
        status = self._send_image(f"/v1/nodes/{self.client.camera}/live/{view}", units, at,
                                  int(self.live.get("width") or SNAPSHOT_WIDTH))
        if status == 200:
            self.live_sent += 1
        elif status is not None:
            self.live_refused += 1
            self.live = None             # the live view is over: wait for the central's next word

    def _send_image(self, path: str, units: list[bytes], at: datetime, width: int) -> int | None:
        frame_size = (self.cfg.camera.width, self.cfg.camera.height)
        try:
            w, h, pixels = self.render(units, frame_size, width)
            return self.client.put_image(path, gray_image(w, h, pixels, frame_size, at, self.runner.masks or []))
        except (OSError, http.client.HTTPException, ControlError, subprocess.TimeoutExpired) as e:
            self._complain(f"sending {path}: {e}")
            return None

    def _complain(self, message: str) -> None:
        if message != self._complaint:  # once per distinct problem, not every 2 s
            log.warning("%s", message)
            self._complaint = message


# --------------------------------------------------------------------------- the whole node
