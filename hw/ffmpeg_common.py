"""What the ffmpeg pipelines in `hw/` share: how they draw privacy masks, encode H.264 and
drain ffmpeg's messages.

Used by the ffmpeg sources (hw/ffmpeg_source.py) and the RTSP backend
(hw/rtsp_source.py), so both store the same kind of stream when they encode: a
keyframe with SPS and PPS at a fixed cadence, an access unit delimiter on every picture.
"""
from __future__ import annotations

import functools
import os
import subprocess
from typing import Callable, NamedTuple

ENCODERS = ("libx264", "h264_v4l2m2m")


def draw_masks(video, masks):
    """Black boxes over the masks, drawn last, in the pixel format the encoder receives:
    nothing after them can move or blend pixels back into a masked rectangle."""
    video = video.filter("format", "yuv420p")
    for x, y, w, h in masks:
        video = video.drawbox(x, y, w, h, color="black", t="fill")
    return video


def encoder_options(encoder: str, fps: int, keyframe_seconds: int, kbps: int) -> dict:
    """ffmpeg output options for `encoder` (ffmpeg-python keyword arguments)."""
    gop = fps * keyframe_seconds
    rate = {"b:v": f"{kbps}k", "g": gop}
    if encoder == "h264_v4l2m2m":
        # The Pi's VideoCore encoder (Pi 0-4). It repeats no headers itself: the reader puts the
        # latest SPS and PPS in front of any keyframe that lacks them (hw/rtsp_source.py).
        return {"vcodec": "h264_v4l2m2m", "pix_fmt": "yuv420p", **rate}
    if encoder != "libx264":
        raise ValueError(f"unknown H.264 encoder {encoder!r}: expected one of {', '.join(ENCODERS)}")
    return {"vcodec": "libx264", "preset": "ultrafast", "tune": "zerolatency", "pix_fmt": "yuv420p",
            "keyint_min": gop, "sc_threshold": 0, "maxrate": f"{kbps}k", "bufsize": f"{2 * kbps}k",
            "x264-params": "repeat-headers=1:aud=1", **rate}


@functools.lru_cache(maxsize=8)
def has_encoder(name: str, ffmpeg_bin: str = "ffmpeg") -> bool:
    """Whether this ffmpeg was built with the encoder `name`."""
    try:
        out = subprocess.run([ffmpeg_bin, "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.startswith(" "))


def drain_lines(fd: int, on_line: Callable[[str], None], max_line: int = 4096) -> None:
    """Read a pipe (ffmpeg's stderr) to its end, handing on each stripped, non-empty line whole.

    A line longer than `max_line` bytes is replaced by a note, never cut: a cut line could
    hold part of a secret that a redactor would no longer recognise. The pipe is always
    drained, so ffmpeg never blocks on it.
    """
    pending = b""
    overflow = False
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            for line in lines:
                _deliver(b"(a line too long to keep)" if overflow else line, on_line)
                overflow = False
            if len(pending) > max_line:
                pending, overflow = b"", True
    except (OSError, ValueError):
        pass
    _deliver(b"(a line too long to keep)" if overflow else pending, on_line)


def _deliver(line: bytes, on_line: Callable[[str], None]) -> None:
    text = line.decode("utf-8", "replace").strip()
    if text:
        on_line(text)


# --------------------------------------------------------------------------- ffmpeg's NUT output

# NUT (ffmpeg's own container, https://ffmpeg.org/~michael/nut.txt): an ffmpeg that writes
# NUT to a pipe frames the stream for us. Each packet comes with its size, its keyframe
# flag and its timestamp in the stream's time base (for RTSP: the camera's 90 kHz RTP
# clock), and its bytes are the codec's bytes unchanged (Annex-B for H.264). Reading it
# costs a few bytes of header per picture instead of a scan of every byte for start codes.

NUT_ID = b"nut/multimedia container\0"
_MAIN = 0x4E4D7A561F5F04AD
_STREAM = 0x4E5311405BF2F9DB
_SYNCPOINT = 0x4E4BE4ADEECA4569
_FLAG_KEY, _FLAG_CODED_PTS, _FLAG_STREAM_ID, _FLAG_SIZE_MSB = 1, 8, 16, 32
_FLAG_CHECKSUM, _FLAG_RESERVED, _FLAG_SM_DATA, _FLAG_HEADER_IDX = 64, 128, 256, 1024
_FLAG_MATCH_TIME, _FLAG_CODED, _FLAG_INVALID = 2048, 4096, 8192
_NUT_BROADCAST = 1


class NutError(ValueError):
    """The NUT stream is malformed, or uses a feature ffmpeg does not write for us."""


class NutPacket(NamedTuple):
    stream: int
    pts: int          # in the stream's time base (NutDemuxer.time_bases[stream])
    keyframe: bool    # as the muxer flagged it
    data: bytes


class _NutStream:
    __slots__ = ("time_base", "msb_pts_shift", "last_pts", "fourcc", "extradata")

    def __init__(self, time_base: tuple[int, int], msb_pts_shift: int, fourcc: bytes, extradata: bytes):
        self.time_base, self.msb_pts_shift, self.fourcc, self.extradata = time_base, msb_pts_shift, fourcc, extradata
        self.last_pts = 0


def _v(buf: memoryview, pos: int) -> tuple[int, int]:
    """A NUT variable-length unsigned number at `pos`: (value, position after it)."""
    value = 0
    while True:
        byte = buf[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, pos


def _s(buf: memoryview, pos: int) -> tuple[int, int]:
    value, pos = _v(buf, pos)
    value += 1
    return (-(value >> 1) if value & 1 else value >> 1), pos


class NutDemuxer:
    """Incremental NUT reader: `read()` a pipe (or `feed()` bytes), then take the `packets()`.

    It reads what ffmpeg's NUT muxer writes (version 3, the default): the main header
    (frame code table, time bases, elision headers), stream headers, syncpoints (which
    reset the timestamp predictions) and frames; info and index packets are skipped.
    Checksums are not verified (a pipe does not corrupt bytes). A packet is returned
    only once all of it has arrived; its bytes are exactly what ffmpeg muxed.

    The pipe is read straight into one reused buffer, and each packet is copied out of
    it once, as the bytes it returns.
    """

    def __init__(self, capacity: int = 1 << 20) -> None:
        self.streams: dict[int, _NutStream] = {}
        self._time_bases: list[tuple[int, int]] = []
        self._codes: list[tuple] | None = None
        self._elision: list[bytes] = [b""]
        self._buf = bytearray(capacity)
        self._start = self._end = 0      # what is read and not yet parsed: _buf[_start:_end]
        self._started = False

    def time_base(self, stream: int = 0) -> tuple[int, int]:
        return self.streams[stream].time_base

    def read(self, fd: int) -> int:
        """One read of what `fd` holds, up to the free buffer (at least a quarter of it): the
        number of bytes read, 0 at the end of the stream."""
        self._make_room(1)
        with memoryview(self._buf) as view:
            n = os.readv(fd, [view[self._end:]])
        self._end += n
        return n

    def feed(self, chunk: bytes) -> list[NutPacket]:
        """Bytes from elsewhere (a file, a test); the packets they completed."""
        self._make_room(len(chunk))
        self._buf[self._end:self._end + len(chunk)] = chunk
        self._end += len(chunk)
        return self.packets()

    def _make_room(self, need: int) -> None:
        """At least `need` bytes (and a quarter of the buffer) free after the unparsed bytes."""
        need = max(need, len(self._buf) // 4)
        if len(self._buf) - self._end >= need:
            return
        rest = self._end - self._start
        self._buf[:rest] = self._buf[self._start:self._end]      # a packet's beginning, to the front
        self._start, self._end = 0, rest
        if len(self._buf) - rest < need:                         # a packet larger than the buffer
            self._buf.extend(bytes(max(need, len(self._buf))))

    def packets(self) -> list[NutPacket]:
        """The packets complete in what was read so far (each returned once)."""
        out: list[NutPacket] = []
        with memoryview(self._buf) as whole, whole[:self._end] as buf:
            pos = self._start
            if not self._started:
                if self._end - pos < len(NUT_ID):
                    return out
                if buf[pos:pos + len(NUT_ID)] != NUT_ID:
                    raise NutError("not a NUT stream (ffmpeg wrote something else)")
                pos, self._started = pos + len(NUT_ID), True
            end = self._end
            while pos < end:
                try:
                    nxt = self._packet(buf, pos, out) if buf[pos] != 0x4E else self._startcode_packet(buf, pos)
                except IndexError:       # the rest of this packet has not arrived yet
                    break
                if nxt is None:
                    break
                pos = nxt
            self._start = pos
        if self._start == self._end:
            self._start = self._end = 0
        return out

    def _startcode_packet(self, buf: memoryview, pos: int) -> int | None:
        if len(buf) < pos + 8:
            return None
        code = int.from_bytes(buf[pos:pos + 8], "big")
        size, body = _v(buf, pos + 8)
        if size > 4096:
            body += 4                # header checksum
        end = body + size
        if end > len(buf):
            return None
        if code == _MAIN:
            self._main_header(buf, body, end)
        elif code == _STREAM:
            self._stream_header(buf, body)
        elif code == _SYNCPOINT:
            stamp, _ = _v(buf, body)
            base = self._time_bases[stamp % len(self._time_bases)]
            stamp //= len(self._time_bases)
            for stream in self.streams.values():    # the timestamps predicted from here on
                num, den = stream.time_base
                stream.last_pts = stamp * base[0] * den // (base[1] * num)
        elif code >> 56 != 0x4E:
            raise NutError(f"unknown NUT startcode {code:016x}")
        return end                   # info and index packets: nothing we need

    def _main_header(self, buf: memoryview, pos: int, end: int) -> None:
        version, pos = _v(buf, pos)
        if version != 3:
            raise NutError(f"NUT version {version}: only version 3 is read (do not set -syncpoints)")
        _, pos = _v(buf, pos)                       # stream count
        _, pos = _v(buf, pos)                       # max distance
        count, pos = _v(buf, pos)
        bases = []
        for _ in range(count):
            num, pos = _v(buf, pos)
            den, pos = _v(buf, pos)
            bases.append((num, den))
        codes: list[tuple] = []
        pts_delta, mul, stream, head = 0, 1, 0, 0
        while len(codes) < 256:
            flags, pos = _v(buf, pos)
            fields, pos = _v(buf, pos)
            size, reserved = 0, 0
            if fields > 0:
                pts_delta, pos = _s(buf, pos)
            if fields > 1:
                mul, pos = _v(buf, pos)
            if fields > 2:
                stream, pos = _v(buf, pos)
            if fields > 3:
                size, pos = _v(buf, pos)
            if fields > 4:
                reserved, pos = _v(buf, pos)
            if fields > 5:
                count, pos = _v(buf, pos)
            else:
                count = mul - size
            if fields > 6:
                _, pos = _s(buf, pos)               # match time delta
            if fields > 7:
                head, pos = _v(buf, pos)
            for _ in range(fields - 8):
                _, pos = _v(buf, pos)
            if count <= 0:
                raise NutError("malformed NUT frame code table")
            j = 0
            while j < count and len(codes) < 256:
                if len(codes) == 0x4E:              # 'N' starts a startcode, never a frame
                    codes.append((_FLAG_INVALID, 0, 0, 1, 0, 0, 0))
                    continue
                codes.append((flags, pts_delta, stream, mul, size + j, reserved, head))
                j += 1
        elision = [b""]
        count, pos = _v(buf, pos) if pos < end - 4 else (0, pos)   # elision headers, if any
        for _ in range(count):
            length, pos = _v(buf, pos)
            elision.append(bytes(buf[pos:pos + length]))
            pos += length
        self._time_bases, self._codes, self._elision = bases, codes, elision

    def _stream_header(self, buf: memoryview, pos: int) -> None:
        stream, pos = _v(buf, pos)
        _, pos = _v(buf, pos)                       # class: 0 video
        length, pos = _v(buf, pos)
        fourcc, pos = bytes(buf[pos:pos + length]), pos + length
        time_base, pos = _v(buf, pos)
        shift, pos = _v(buf, pos)
        for _ in range(3):                          # max pts distance, decode delay, flags
            _, pos = _v(buf, pos)
        length, pos = _v(buf, pos)
        old = self.streams.get(stream)
        self.streams[stream] = _NutStream(self._time_bases[time_base], shift, fourcc, bytes(buf[pos:pos + length]))
        if old is not None:
            self.streams[stream].last_pts = old.last_pts

    def _packet(self, buf: memoryview, pos: int, out: list[NutPacket]) -> int | None:
        if self._codes is None:
            raise NutError("a NUT frame before the main header")
        flags, pts_delta, stream_id, mul, size, reserved, head = self._codes[buf[pos]]
        if flags & _FLAG_INVALID:
            raise NutError(f"invalid NUT frame code {buf[pos]}")
        pos += 1
        if flags & _FLAG_CODED:
            coded, pos = _v(buf, pos)
            flags ^= coded
        if flags & _FLAG_STREAM_ID:
            stream_id, pos = _v(buf, pos)
        stream = self.streams[stream_id]
        if flags & _FLAG_CODED_PTS:
            coded, pos = _v(buf, pos)
            shift = stream.msb_pts_shift
            if coded < 1 << shift:                  # the low bits: the rest from the prediction
                mask = (1 << shift) - 1
                delta = stream.last_pts - mask // 2
                pts = ((coded - delta) & mask) + delta
            else:
                pts = coded - (1 << shift)
        else:
            pts = stream.last_pts + pts_delta
        if flags & _FLAG_SIZE_MSB:
            msb, pos = _v(buf, pos)
            size += mul * msb
        if flags & _FLAG_MATCH_TIME:
            _, pos = _s(buf, pos)
        if flags & _FLAG_HEADER_IDX:
            head, pos = _v(buf, pos)
        if flags & _FLAG_RESERVED:
            reserved, pos = _v(buf, pos)
        for _ in range(reserved):
            _, pos = _v(buf, pos)
        if flags & _FLAG_SM_DATA:
            raise NutError("NUT side data is not read (NUT version 4)")
        if size > 4096:
            head = 0
        elided = self._elision[head]
        size -= len(elided)
        if flags & _FLAG_CHECKSUM:
            pos += 4
        end = pos + size
        if end > len(buf):
            return None
        stream.last_pts = pts
        out.append(NutPacket(stream_id, pts, bool(flags & _FLAG_KEY), elided + buf[pos:end] if elided
                             else bytes(buf[pos:end])))
        return end
