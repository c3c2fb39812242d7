"""Camera backend `rtsp`: an IP camera's RTSP stream, pulled by ffmpeg.

One ffmpeg process per connection reads the camera (TCP by default, UDP by setting)
and writes the H.264 stream to its stdout in NUT, ffmpeg's own container, which frames
it: each access unit comes whole, with its size and the camera's timestamp, so the
reader thread reads a few header bytes per picture (``hw.ffmpeg_common.NutDemuxer``)
and never scans the video for start codes. The reader wakes twice a second and takes
everything ffmpeg wrote meanwhile in one read (the pipe is enlarged to hold it), instead
of waking for every picture. Access units go to a ``KeyframeSplitter`` exactly as from the
ffmpeg sources. Without privacy masks the camera's own stream is copied untouched
(``-c:v copy``: no decoding, no quality loss, little CPU). With masks it is decoded,
scaled to the configured size (the size the masks are given in), the masks are drawn
and it is encoded again (``h264_v4l2m2m`` on a Pi that has the encoder, libx264
elsewhere), because masked pixels must never reach storage (C6).

Credentials. The camera's user name and password come from a file readable only by
the node's user (``user:password`` on one line; a file that anyone else may read is
refused). They are never on a command line (``ps`` shows every process's arguments to
everyone) and never in a log line: ffmpeg gets the URL through a concat script
written to its stdin (``-f concat -safe 0 -i pipe:0``; the script's ``option`` lines
carry the RTSP options to the inner demuxer), and every line ffmpeg prints is
redacted before it is kept or logged. The configured URL carries no credentials.

Timestamps. ``pts_us`` follows the camera's own clock: the RTP timestamps of its
pictures (90 kHz; in the camera's encoder time base when masks are re-encoded), as
ffmpeg passes them on. The first picture of each connection is placed on the node's
monotonic clock (or just after the previous picture, whichever is later), and the
camera's clock runs from there. A jump of the camera's clock (more than
``timeout_seconds`` either way) continues from the node's clock instead; a picture
stamped earlier than the one before it (a camera that sends B-frames) gets 1 µs after
it, so ``pts_us`` always increases. ffmpeg's stream probing is cut to the first packet
so pictures flow as they arrive instead of in a burst after seconds of probing.

Connection loss. When the stream ends (the camera rebooted, the network dropped, no
picture for ``timeout_seconds``), the open segment is closed at once, so the time
without pictures lies between two segments, and the backend reconnects by itself
with exponential backoff (1 s, 2 s, 4 s ... ``reconnect_max_seconds``). Meanwhile
``waiting_for_source`` says why and ``alive_at`` beats, so the frame watchdog knows
the process is healthy and does not restart it (restarting would not bring the
camera back). Each outage is kept in ``outages`` (wall-clock microseconds and why), and
the reason the stream was lost is handed to the segment opener's ``note_break(why)``,
if it has one, so the gap in the recording says why.

Stream changes. The first keyframe after each connection (and every keyframe's SPS)
is checked: a stream that is not H.264 (an H.265 camera) is refused with the setting
to change on the camera; a change of picture size, profile, chroma format or bit
depth mid-stream starts a new segment at that keyframe. A keyframe that comes without
SPS and PPS gets the latest ones put in front of it, so every segment decodes alone.

This module takes its settings as an ``RtspSettings`` and imports nothing from
``appliance``; ``hw.factory`` builds the settings from ``[camera]``.
"""
from __future__ import annotations

import collections
import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass

import ffmpeg

from .annexb import NAL_AUD, NAL_IDR, NAL_PPS, NAL_SPS, START_CODE, nal_units, picture_head
from .backend import CameraBackend, CameraFailed, Frame, KeyframeSplitter, SegmentOpener
from .ffmpeg_common import ENCODERS, NutDemuxer, NutError, NutPacket, drain_lines, draw_masks, encoder_options
from .sps import PictureFormat, picture_format

log = logging.getLogger(__name__)

TRANSPORTS = ("tcp", "udp")
SCHEMES = ("rtsp", "rtsps")
_PIPE_BYTES = 1 << 20             # ffmpeg's stdout pipe holds this much (1 s of a 8 Mb/s camera)
_READ_EVERY = 0.5                 # the reader takes what ffmpeg wrote this often, not at every picture
_POLL = 2.0                       # the connection loop's checks and beats (ffmpeg's end wakes it at once)
_LOG_AGAIN_SECONDS = 600          # the same connection error is logged again after this long
_PROTOCOLS = "pipe,rtsp,rtsps,rtp,tcp,udp,tls"
_CODEC_NAMES = {"hevc": "H.265 (HEVC)", "mjpeg": "MJPEG", "mpeg4": "MPEG-4 part 2", "av1": "AV1"}


class RtspSettingError(ValueError):
    """A setting of the rtsp backend is wrong (hw.factory reports it as a configuration error)."""


@dataclass(frozen=True)
class RtspSettings:
    url: str                                # rtsp://camera[:port]/path: no user name or password
    credentials_file: str = ""              # "user:password" on one line; empty: the camera asks for none
    transport: str = "tcp"                  # tcp | udp
    width: int = 1920                       # the picture masks are given in (and re-encoded to)
    height: int = 1080
    fps: int = 15                           # re-encoding only: the output frame rate
    bitrate_kbps: int = 4000                # re-encoding only
    keyframe_seconds: int = 2               # re-encoding only
    masks: tuple = ()                       # ((x, y, w, h), ...) already clipped to width x height
    encoder: str = "libx264"                # re-encoding only: libx264 | h264_v4l2m2m
    timeout_seconds: float = 5.0            # no answer or no picture for this long: reconnect
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 30.0

    def __post_init__(self) -> None:
        camera_url(self.url)
        if self.transport not in TRANSPORTS:
            raise RtspSettingError(f"rtsp_transport {self.transport!r}: expected one of {', '.join(TRANSPORTS)}")
        if self.encoder not in ENCODERS:
            raise RtspSettingError(f"encoder {self.encoder!r}: expected one of {', '.join(ENCODERS)}")
        if self.masks and (self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2):
            raise RtspSettingError(f"size {self.width}x{self.height}: width and height must be positive and even")
        if min(self.fps, self.bitrate_kbps, self.keyframe_seconds) <= 0:
            raise RtspSettingError("fps, keyframe_seconds and bitrate_kbps must be positive")
        if not 0 < self.reconnect_min_seconds <= self.reconnect_max_seconds or self.timeout_seconds <= 0:
            raise RtspSettingError("timeouts and reconnect delays must be positive (and min <= max)")

    @property
    def copy(self) -> bool:
        """No masks: the camera's stream is stored as it comes (stream copy)."""
        return not self.masks


# --------------------------------------------------------------------------- URL and credentials


def camera_url(url: str) -> urllib.parse.SplitResult:
    """Check the configured camera URL; RtspSettingError says what is wrong with it."""
    if not url:
        raise RtspSettingError("url is empty: set it to the camera's stream, e.g. rtsp://192.0.2.10:554/stream1")
    if any(c in url for c in "'\\\"") or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise RtspSettingError(f"url {url!r} holds quotes, backslashes, spaces or control characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise RtspSettingError(f"url {url!r}: expected rtsp://host[:port]/path")
    if "@" in parts.netloc:
        raise RtspSettingError("url: put the camera's user name and password in credentials_file, not in the url "
                               "(the configuration file is not secret, and the url is logged)")
    try:
        parts.port
    except ValueError:
        raise RtspSettingError(f"url {url!r}: the port is not a number from 0 to 65535") from None
    return parts


def read_credentials(path: str) -> tuple[str, str]:
    """(user, password) from `path`: "user:password" on one line, in a file that only the
    node's user may read. RtspSettingError (with the fix) for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise RtspSettingError(f"credentials_file {path}: cannot open it ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RtspSettingError(f"credentials_file {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise RtspSettingError(f"credentials_file {path} belongs to uid {st.st_uid}, not to the node's user "
                                   f"(uid {os.geteuid()}): chown it to the node's user and chmod 600 it")
        if st.st_mode & 0o077:
            raise RtspSettingError(f"credentials_file {path} may be read by others (mode "
                                   f"{stat.S_IMODE(st.st_mode):04o}): refusing it; run chmod 600 {path}")
        raw = os.read(fd, 4097)
    finally:
        os.close(fd)
    if len(raw) > 4096:
        raise RtspSettingError(f"credentials_file {path} is too long for one 'user:password' line")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RtspSettingError(f"credentials_file {path} is not UTF-8 text") from None
    user, colon, password = (lines[0] if lines else "").partition(":")
    if len([line for line in lines if line.strip()]) != 1 or not colon or not user or not password:
        raise RtspSettingError(f"credentials_file {path}: expected one line 'user:password'")
    return user, password


def concat_script(url: str, credentials: tuple[str, str] | None, settings: RtspSettings) -> bytes:
    """The ffconcat script that hands ffmpeg the camera's URL (with credentials) on its stdin.

    The user name and password are percent-encoded (ffmpeg decodes them for the
    camera's Basic or Digest challenge), so no character of theirs can end the quoted
    URL or start a directive; the rest of the URL was checked by camera_url().
    """
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if credentials is not None:
        user, password = (urllib.parse.quote(v, safe="") for v in credentials)
        netloc = f"{user}:{password}@{netloc}"
    full = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    options = {
        "rtsp_transport": settings.transport,
        "timeout": str(int(settings.timeout_seconds * 1_000_000)),   # socket I/O and connect, in µs
        "allowed_media_types": "video",
        # probe no more than the first packet: pictures flow as they come, not in a burst later
        "probesize": "32",
        "analyzeduration": "0",
    }
    lines = ["ffconcat version 1.0", f"file '{full}'"] + [f"option {k} {v}" for k, v in options.items()]
    return ("\n".join(lines) + "\n").encode()


def redactor(credentials: tuple[str, str] | None):
    """A function that removes the password from a line, however ffmpeg spelled it."""
    secrets = []
    if credentials is not None:
        password = credentials[1]
        secrets = sorted({password, urllib.parse.quote(password, safe=""), urllib.parse.quote(password)},
                         key=len, reverse=True)
    userinfo = re.compile(r"(rtsps?://[^/\s:@]*):[^@\s]*@")

    def redact(text: str) -> str:
        text = userinfo.sub(r"\1:***@", text)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return redact


# --------------------------------------------------------------------------- the ffmpeg command


def build_command(settings: RtspSettings, ffmpeg_bin: str = "ffmpeg") -> list[str]:
    """The ffmpeg argv for one connection. It holds no URL: that comes on stdin."""
    # the concat demuxer probes too: no more than the first packet here either
    video = ffmpeg.input("pipe:0", f="concat", safe=0, protocol_whitelist=_PROTOCOLS, probesize=32,
                         analyzeduration=0)["v:0"]
    # NUT frames the stream (NutDemuxer); each packet is written as soon as it is muxed, so a
    # low-bitrate camera's pictures are not held back in ffmpeg's buffer. No index: for one,
    # ffmpeg would keep every syncpoint while the camera stays connected (10 MB an hour at 4 Mb/s)
    nut = {"format": "nut", "flush_packets": 1, "write_index": 0}
    if settings.copy:
        # dump_extra: the SPS/PPS the camera announced (SDP) go in front of every keyframe too,
        # for cameras that send them only there
        out = video.output("pipe:1", **nut, **{"c:v": "copy", "bsf:v": "dump_extra=freq=keyframe"})
    else:
        video = video.filter("scale", settings.width, settings.height)
        video = draw_masks(video, settings.masks)
        out = video.output("pipe:1", **nut, **encoder_options(settings.encoder, settings.fps,
                                                              settings.keyframe_seconds, settings.bitrate_kbps))
    # info: ffmpeg describes the input stream (its codec) before it writes any picture
    return out.global_args("-hide_banner", "-nostdin", "-nostats", "-loglevel", "info").compile(cmd=ffmpeg_bin)


_INPUT_VIDEO = re.compile(r"^\s*Stream #0:\d+.*?: Video: (\w+)")

# ffmpeg's words for why a connection failed -> what to tell the person who fixes it
_DIAGNOSES = (
    ("401 Unauthorized", "the camera refused the user name or password (401 Unauthorized): check {creds}"),
    ("403 Forbidden", "the camera refused access to this stream (403 Forbidden): check the user's rights on "
                      "the camera"),
    ("404 Not Found", "the camera has no stream at {url} (404 Not Found): check the path in the url"),
    ("Connection refused", "nothing answers at {host} (connection refused): is the camera on, and is the port "
                           "in the url right?"),
    ("timed out", "{host} did not answer within {timeout:g} s (timed out): is the camera on and reachable?"),
    ("No route to host", "{host} cannot be reached (no route to host): check the address and the network"),
    ("Network is unreachable", "{host} cannot be reached (network unreachable): check the network"),
    ("Name or service not known", "the camera's host name in {url} does not resolve"),
    ("Temporary failure in name resolution", "the camera's host name in {url} does not resolve (yet)"),
)


def diagnose(lines: list[str], settings: RtspSettings) -> str | None:
    """What went wrong, in words a person can act on, from ffmpeg's (redacted) lines."""
    parts = urllib.parse.urlsplit(settings.url)
    host = f"{parts.hostname}:{parts.port or (322 if parts.scheme == 'rtsps' else 554)}"
    for needle, message in _DIAGNOSES:
        if any(needle in line for line in lines):
            return message.format(creds=settings.credentials_file or "credentials_file", url=settings.url,
                                  host=host, timeout=settings.timeout_seconds)
    return None


def refusal_for_codec(codec: str) -> str | None:
    """None for H.264; otherwise why the stream is refused and the camera setting to change."""
    if codec == "h264":
        return None
    name = _CODEC_NAMES.get(codec, codec)
    return (f"the camera sends {name}, and Custodian records H.264 only (segment format v1): on the camera, "
            f"set Video > Encoding > Video Encoding (the stream's codec) to H.264, and turn off H.265+/'smart "
            f"codec' modes")


def reconnect_delay(failures: int, lo: float, hi: float) -> float:
    """Seconds to wait after `failures` consecutive connections that brought no picture."""
    return min(hi, lo * 2 ** min(failures, 30))


# --------------------------------------------------------------------------- parameter sets


class ParameterSets:
    """Keeps the latest SPS and PPS; gives every keyframe both, and says its picture format."""

    def __init__(self) -> None:
        self.sps: bytes | None = None
        self.pps: bytes | None = None
        self._format: tuple[bytes, PictureFormat] | None = None

    def keyframe(self, data: bytes) -> tuple[bytes, PictureFormat] | None:
        """The keyframe with SPS and PPS (added if missing) and its format; None until both are known."""
        _, head = picture_head(data)
        types = [t for t, _ in head]
        for nal_type, nal in head:
            if nal_type == NAL_SPS:
                self.sps = nal
            elif nal_type == NAL_PPS:
                self.pps = nal
        if self.sps is None or self.pps is None:
            return None
        if NAL_SPS not in types or NAL_PPS not in types:
            data = _insert_after_aud(data, types, b"".join(b"\x00\x00\x00\x01" + n for n in (self.sps, self.pps)))
        if self._format is None or self._format[0] != self.sps:
            self._format = (self.sps, picture_format(self.sps))
        return data, self._format[1]

    def seed(self, extradata: bytes) -> None:
        """Take the SPS and PPS of the stream's global header (ffmpeg's extradata: Annex-B, or an
        avcC record), for an encoder that puts them only there; the keyframes' own come after."""
        if extradata[:1] == b"\x01":                       # avcC (ISO/IEC 14496-15)
            nals, pos = [], 5
            for _ in range(2):                             # the SPS, then the PPS
                count, pos = extradata[pos:pos + 1], pos + 1
                for _ in range((count[0] & 0x1F) if count else 0):
                    size = int.from_bytes(extradata[pos:pos + 2], "big")
                    nals.append(extradata[pos + 2:pos + 2 + size])
                    pos += 2 + size
        else:
            nals = [nal for _, nal in nal_units(extradata)]
        for nal in nals:
            if nal[:1] and nal[0] & 0x1F == NAL_PPS:
                self.pps = nal
            elif nal[:1] and nal[0] & 0x1F == NAL_SPS:
                try:
                    picture_format(nal)
                except ValueError:
                    continue                               # not one we can use
                self.sps = nal


def _insert_after_aud(data: bytes, types: list[int], params: bytes) -> bytes:
    """Put parameter sets at the start of an access unit (after its delimiter, which must come first)."""
    if not types or types[0] != NAL_AUD:
        return params + data
    second = data.find(START_CODE, data.find(START_CODE) + 3)
    while second > 0 and data[second - 1] == 0:
        second -= 1
    return data[:second] + params + data[second:]


# --------------------------------------------------------------------------- timestamps


class CameraClock:
    """Turns the camera's timestamps into ``Frame.pts_us`` (see the module docstring)."""

    def __init__(self, jump_us: int):
        self.jump_us = jump_us
        self.last_us = 0             # the pts_us handed out last
        self._offset: int | None = None
        self._camera_last = 0
        self._arrived_last = 0

    def reconnected(self) -> None:
        """A new connection: its timestamps start afresh."""
        self._offset = None

    def stamp(self, camera_us: int, arrived_us: int) -> int:
        """pts_us for a picture the camera stamped `camera_us` that arrived at `arrived_us` (monotonic)."""
        if self._offset is None or abs(camera_us - self._camera_last) > self.jump_us:
            # from the node's clock: at least as much later as the node saw pass
            start = max(arrived_us, self.last_us + 1) if self._offset is None else \
                self.last_us + max(1, arrived_us - self._arrived_last)
            self._offset = start - camera_us
        self._camera_last, self._arrived_last = camera_us, arrived_us
        self.last_us = max(camera_us + self._offset, self.last_us + 1)
        return self.last_us


# --------------------------------------------------------------------------- the backend


class RtspBackend(CameraBackend):
    """Records an IP camera's RTSP stream; see the module docstring."""

    name = "rtsp"

    def __init__(self, settings: RtspSettings, camera_name: str = "camera", *, ffmpeg_bin: str = "ffmpeg",
                 stop_timeout: float = 3.0, log_lines: int = 200):
        super().__init__()
        self.settings = settings
        self.camera_name = camera_name
        self.ffmpeg_bin = ffmpeg_bin
        self.stop_timeout = stop_timeout
        self.argv = build_command(settings, ffmpeg_bin)
        if settings.credentials_file:
            read_credentials(settings.credentials_file)   # refuse a bad file now, not at the first connect
        self.stderr_ring: collections.deque[str] = collections.deque(maxlen=log_lines)
        self.waiting_for_source: str | None = None
        self.alive_at = time.monotonic()
        self.outages: collections.deque[dict] = collections.deque(maxlen=50)
        self.connections = 0            # connections that brought pictures
        self.codec: str | None = None
        self.picture: PictureFormat | None = None
        self.proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._splitter: KeyframeSplitter | None = None
        self._params = ParameterSets()
        self._clock = CameraClock(int(settings.timeout_seconds * 1_000_000))
        self._opener: SegmentOpener | None = None
        self._last_frame_wall_us = 0
        self._lost: dict | None = None   # the outage under way: since when, why
        self._logged: tuple[str, float] | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self, opener: SegmentOpener, segment_seconds: float) -> None:
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("rtsp backend already started")
            if shutil.which(self.ffmpeg_bin) is None:
                raise CameraFailed(f"{self.ffmpeg_bin} not found: install ffmpeg (apt install ffmpeg)")
            self._reset_liveness()
            self._stop.clear()
            self._splitter = KeyframeSplitter(opener, segment_seconds)
            self._opener = opener
            self._lost = {"from_us": time.time_ns() // 1000, "why": "recording (re)started"}
            self._waiting("connecting")
            self._thread = threading.Thread(target=self._run, name=f"rtsp-{self.camera_name}", daemon=True)
            self._thread.start()
            mode = "stream copy" if self.settings.copy else f"masks drawn, re-encoded with {self.settings.encoder}"
            log.info("camera %s: recording %s over %s (%s)", self.camera_name, self.settings.url,
                     self.settings.transport.upper(), mode)

    def stop(self) -> None:
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stop.set()
            self._end_process()
        thread.join(self.stop_timeout + 10)    # not under the lock: the loop takes it to start ffmpeg
        with self._lock:
            if self._splitter is not None:
                self._splitter.close()
            self._thread = None
            self._splitter = None

    def _end_process(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("camera %s: ffmpeg ignored SIGTERM for %.0fs; killing it", self.camera_name,
                        self.stop_timeout)
            proc.kill()
            proc.wait()

    # -- the connection loop -------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pictures, why = self._connect_once()
            if self._stop.is_set():
                break
            self._splitter.close()      # the segment ends with the stream; the outage lies between segments
            if pictures:
                failures = 0
                self._lost = {"from_us": self._last_frame_wall_us, "why": why}
                log.warning("camera %s: stream lost after %d pictures: %s; reconnecting", self.camera_name,
                            pictures, why)
                note_break = getattr(self._opener, "note_break", None)
                if note_break is not None:        # the next segment's gap says why
                    note_break(f"camera stream lost: {why}")
            delay = reconnect_delay(failures, self.settings.reconnect_min_seconds,
                                    self.settings.reconnect_max_seconds)
            failures += 0 if pictures else 1
            if not pictures:
                self._complain(why, delay)
            self._waiting(f"{why}; retrying in {delay:.0f} s")
            self._beat_for(delay)

    def _beat_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.wait(min(_POLL, max(0.0, deadline - time.monotonic()))):
            self.alive_at = time.monotonic()
            if time.monotonic() >= deadline:
                return

    def _waiting(self, why: str) -> None:
        self.waiting_for_source = why
        self.alive_at = time.monotonic()

    def _complain(self, why: str, delay: float) -> None:
        """Log a failed connection: at once when the reason is new, then every ten minutes."""
        now = time.monotonic()
        if self._logged is None or self._logged[0] != why or now - self._logged[1] > _LOG_AGAIN_SECONDS:
            log.error("camera %s: cannot record from %s: %s; retrying every %.0f s at most", self.camera_name,
                      self.settings.url, why, max(delay, self.settings.reconnect_max_seconds))
            self._logged = (why, now)
        else:
            log.debug("camera %s: still failing: %s", self.camera_name, why)

    def _connect_once(self) -> tuple[int, str]:
        """Run ffmpeg for one connection until it ends; (pictures it brought, why it ended)."""
        credentials = None
        if self.settings.credentials_file:
            try:
                credentials = read_credentials(self.settings.credentials_file)
            except RtspSettingError as e:
                return 0, str(e)
        redact = redactor(credentials)
        conn = _Connection(redact)
        with self._lock:
            if self._stop.is_set():
                return 0, "stopping"
            try:
                proc = subprocess.Popen(
                    self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                    close_fds=True, start_new_session=True)
            except OSError as e:
                return 0, f"cannot run {self.ffmpeg_bin}: {e}"
            self.proc = proc
        try:
            proc.stdin.write(concat_script(self.settings.url, credentials, self.settings))
        except OSError:
            pass                         # ffmpeg died at once; its stderr says why
        finally:
            proc.stdin.close()
        del credentials
        readers = [threading.Thread(target=self._read_log, args=(proc, conn), daemon=True,
                                    name=f"rtsp-{self.camera_name}-log"),
                   threading.Thread(target=self._read_video, args=(proc, conn), daemon=True,
                                    name=f"rtsp-{self.camera_name}-video")]
        for t in readers:
            t.start()
        started = time.monotonic()
        # a silent camera is noticed within 1.5 x timeout_seconds: before the frame watchdog's
        # stall_seconds (twice the timeout), so the backend reconnects by itself
        while not conn.ended.wait(min(_POLL, self.settings.timeout_seconds / 2)):
            now = time.monotonic()
            if self.waiting_for_source:
                self.alive_at = now
            if self._stop.is_set():
                break
            # any picture counts here, also those before the first keyframe (a long GOP is no outage)
            if conn.refused is None and conn.units == 0 and now - started > 2 * self.settings.timeout_seconds:
                conn.refused = f"connected, but no picture came within {2 * self.settings.timeout_seconds:g} s"
            elif conn.units and now - conn.last_unit_at > self.settings.timeout_seconds:
                conn.refused = conn.refused or f"no picture for {self.settings.timeout_seconds:g} s"
            if conn.refused is not None:
                self._end_process()
        try:
            proc.wait(self.stop_timeout)     # its output ended: it exits
        except subprocess.TimeoutExpired:
            self._end_process()
        for t in readers:
            t.join(self.stop_timeout + 5)
        rc = proc.wait()
        for f in (proc.stdout, proc.stderr):
            try:
                f.close()
            except OSError:
                pass
        with self._lock:
            self.proc = None
        if conn.refused:
            return conn.pictures, conn.refused
        why = diagnose(conn.lines, self.settings)
        if why is None and rc == 0:
            why = "the camera ended the stream (it stopped, restarted or closed the connection)"
        elif why is None:
            why = f"ffmpeg exited with code {rc}: {' | '.join(conn.lines[-3:]) or '(no output)'}"
        return conn.pictures, why

    # -- threads -------------------------------------------------------------

    def _read_log(self, proc: subprocess.Popen, conn: _Connection) -> None:
        """Drain stderr (redacted) into the ring; learn the input's codec from ffmpeg's description of it."""
        drain_lines(proc.stderr.fileno(), lambda text: self._log_line(text, proc, conn))
        conn.described.set()            # ffmpeg is gone: nothing more will be described

    def _log_line(self, text: str, proc: subprocess.Popen, conn: _Connection) -> None:
        text = conn.redact(text)[:500]          # redacted whole, then shortened
        self.stderr_ring.append(text)
        conn.lines.append(text)
        del conn.lines[:-20]
        log.debug("ffmpeg[%s]: %s", self.camera_name, text)
        match = None if conn.described.is_set() else _INPUT_VIDEO.match(text)
        if match:
            conn.codec = self.codec = match.group(1)
            refusal = refusal_for_codec(conn.codec)
            if refusal is not None:
                conn.refused = refusal
                proc.terminate()
            conn.described.set()

    def _read_video(self, proc: subprocess.Popen, conn: _Connection) -> None:
        # ffmpeg describes its input before it writes a picture; wait for that, so no byte of
        # a stream that is not H.264 is ever parsed as H.264
        while not conn.described.wait(_POLL):
            if proc.poll() is not None and conn.described.wait(1.0) is False:
                break
        try:
            self._read_packets(proc, conn)
        finally:
            conn.ended.set()

    def _read_packets(self, proc: subprocess.Popen, conn: _Connection) -> None:
        fd = proc.stdout.fileno()
        pipe_bytes = _enlarge_pipe(fd)
        demuxer = NutDemuxer(2 * _PIPE_BYTES)
        self._clock.reconnected()
        try:
            while n := demuxer.read(fd):
                packets = demuxer.packets()
                if conn.refused is None and conn.codec == "h264":    # else drain and drop
                    if not conn.seeded and 0 in demuxer.streams:
                        self._params.seed(demuxer.streams[0].extradata)
                        conn.seeded = True
                    arrived_us = time.monotonic_ns() // 1000
                    for packet in packets:
                        if packet.stream == 0:
                            self._emit(packet, demuxer, arrived_us, conn)
                if n < pipe_bytes // 2:
                    time.sleep(_READ_EVERY)  # ffmpeg writes on into the pipe meanwhile
        except NutError as e:
            log.error("camera %s: cannot read ffmpeg's output: %s", self.camera_name, e)
            conn.refused = conn.refused or f"unreadable output from ffmpeg: {e}"
            proc.terminate()
        except Exception as e:           # the segment writer failed, or the pipe broke
            log.exception("camera %s: recording stopped", self.camera_name)
            self._report_stall(f"segment writer failed: {e}")
            conn.refused = conn.refused or f"recording failed: {e}"
            if proc.poll() is None:
                proc.terminate()         # nobody will read the pipe any more
        # a packet cut short when the stream broke off is dropped

    def _emit(self, packet: NutPacket, demuxer: NutDemuxer, arrived_us: int, conn: _Connection) -> None:
        conn.units += 1
        conn.last_unit_at = time.monotonic()
        data = conn.held + packet.data if conn.held else packet.data
        first_slice, _ = picture_head(data)
        if not first_slice:
            conn.held = data             # no picture in it (parameter sets alone): goes with the next
            return
        conn.held = b""
        keyframe = first_slice == NAL_IDR
        new_format = False
        if keyframe:
            repaired = self._params.keyframe(data)
            if repaired is None:
                return                   # no SPS/PPS yet: this keyframe cannot be decoded alone
            data, picture = repaired
            if picture != self.picture:
                if self.picture is not None:
                    log.warning("camera %s: the stream changed from %s to %s: starting a new segment",
                                self.camera_name, _describe(self.picture), _describe(picture))
                if self.settings.copy and (picture.width, picture.height) != (self.settings.width,
                                                                              self.settings.height):
                    log.warning("camera %s: the camera sends %dx%d but [camera] width and height say %dx%d: "
                                "recordings keep the camera's size, snapshots and masks use %dx%d; set width "
                                "and height to the camera's size", self.camera_name, picture.width,
                                picture.height, *(self.settings.width, self.settings.height) * 2)
                new_format = self.picture is not None
                self.picture = picture
        elif not conn.pictures:
            return                       # nothing decodable before the first keyframe
        num, den = demuxer.time_base(packet.stream)
        pts = self._clock.stamp(packet.pts * num * 1_000_000 // den, arrived_us)
        self._last_frame_wall_us = time.time_ns() // 1000
        if not conn.pictures:
            self._connected()
        conn.pictures += 1
        self._saw_frame()
        self._splitter.on_frame(Frame(data, keyframe, pts), new_segment=new_format)

    def _connected(self) -> None:
        self.connections += 1
        self.waiting_for_source = None
        lost, self._lost = self._lost, None
        now_us = time.time_ns() // 1000
        if lost is not None and self.connections > 1:
            outage = dict(lost, to_us=now_us)
            self.outages.append(outage)
            log.warning("camera %s: pictures again after %.1f s without (%s)", self.camera_name,
                        (now_us - lost["from_us"]) / 1e6, lost["why"])
        log.info("camera %s: connected; %s %s", self.camera_name, self.codec,
                 _describe(self.picture) if self.picture else "")
        self._logged = None

    def stderr_tail(self, n: int = 20) -> list[str]:
        return list(self.stderr_ring)[-n:]


class _Connection:
    """What the threads of one ffmpeg run share."""

    def __init__(self, redact) -> None:
        self.redact = redact
        self.described = threading.Event()
        self.ended = threading.Event()   # ffmpeg's output ended (it exits, or was stopped)
        self.refused: str | None = None
        self.codec: str | None = None    # the input's codec, as ffmpeg described it
        self.units = 0                   # access units ffmpeg delivered
        self.last_unit_at = 0.0
        self.pictures = 0                # ... of which recorded (from the first keyframe on)
        self.held = b""                  # a packet without a picture, waiting for the next
        self.seeded = False              # the parameter sets of ffmpeg's stream header are taken
        self.lines: list[str] = []


def _enlarge_pipe(fd: int) -> int:
    """Let ffmpeg's stdout pipe hold a whole read interval of video (Linux: 64 KiB by default);
    returns what it holds. (The reader reads on at once while the pipe is half full or more.)"""
    try:
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError as e:                         # over /proc/sys/fs/pipe-max-size or the user's quota
        log.debug("cannot enlarge ffmpeg's pipe to %d bytes: %s", _PIPE_BYTES, e)
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


def _describe(picture: PictureFormat) -> str:
    return f"{picture.width}x{picture.height} (profile {picture.profile_idc}, {picture.bit_depth}-bit)"
