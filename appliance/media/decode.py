"""ffmpeg helpers for review: decrypted H.264 goes in through a pipe, grey pixels come out.

Plaintext video is never written to a file, and neither is a decoded image: the
caller decrypts a segment in memory (appliance.formats.segment.iter_frames), we hand the
Annex-B access units to ffmpeg on its stdin and read PGM images back from its
stdout. Command lines are built with ffmpeg-python and run with `subprocess` under
a timeout (ffmpeg-python has none).

Raw H.264 carries no timestamps: ffmpeg needs `-fflags +genpts -r FPS` on the
input (FIELD-NOTES), and `-fps_mode passthrough` so that it gives exactly one
picture out for every picture in. Frame numbers here are in decode order, which
is display order for our recordings: the camera backends encode without B-frames.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable

import ffmpeg

from hw.annexb import AccessUnit, AnnexBParser

from appliance.errors import MediaError

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
BASE_TIMEOUT = 30.0          # seconds for any one ffmpeg run ...
PER_PICTURE_TIMEOUT = 0.2    # ... plus this per picture fed (a Pi decodes in software)
DEFAULT_FPS = 25
_PGM_HEADER = re.compile(rb"P5\n(\d+) (\d+)\n(\d+)\n")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

AnnexB = bytes | bytearray | memoryview | Iterable


# --------------------------------------------------------------------------- public helpers


def access_units(annexb: AnnexB) -> list[AccessUnit]:
    """Split Annex-B (bytes, or an iterable of byte chunks or Frames) into access units."""
    parser = AnnexBParser()
    if isinstance(annexb, (bytes, bytearray, memoryview)):
        annexb = [bytes(annexb)]
    units: list[AccessUnit] = []
    for chunk in annexb:
        units.extend(parser.feed(getattr(chunk, "data", chunk)))
    last = parser.flush()
    if last is not None:
        units.append(last)
    return units


def decode_gray(annexb: AnnexB, width: int, height: int | None = None, *, frame_index: int = -1,
                fps: int = DEFAULT_FPS, fit: bool = False) -> tuple[int, int, bytes]:
    """One grey frame (frame_index in decode order; -1 = the last), `width` wide.

    Decodes from the last keyframe at or before the wanted frame, so only that
    group of pictures goes through ffmpeg. Height keeps the aspect ratio unless given;
    with `fit`, the picture fits inside width x height keeping its aspect ratio.
    """
    units = access_units(annexb)
    if not units:
        raise MediaError("there is no picture in this footage")
    index = frame_index + len(units) if frame_index < 0 else frame_index
    if not 0 <= index < len(units):
        raise MediaError(f"frame {frame_index} does not exist: the footage has {len(units)} pictures")
    key = next((i for i in range(index, -1, -1) if units[i].keyframe), None)
    if key is None:
        raise MediaError(f"no keyframe at or before frame {index}: it cannot be decoded on its own")
    w, h, frames = decode_gray_all(units[key:index + 1], width, height, fps=fps, fit=fit)
    return w, h, frames[-1]


def decode_gray_all(annexb: AnnexB, width: int, height: int | None = None, *,
                    fps: int = DEFAULT_FPS, fit: bool = False) -> tuple[int, int, list[bytes]]:
    """Every picture as a grey frame, one out for each in; the footage must start at a keyframe."""
    units = access_units(annexb)
    if not units:
        raise MediaError("there is no picture in this footage")
    if not units[0].keyframe:
        raise MediaError("footage handed to the decoder must start at a keyframe")
    if fit and height is not None:
        stream = _input(fps).filter("scale", width, height, force_original_aspect_ratio="decrease")
    else:
        stream = _input(fps).filter("scale", width, -1 if height is None else height)
    argv = _output(stream).compile(cmd=FFMPEG)
    w, h, frames = _parse_pgm(_run(argv, units))
    if len(frames) != len(units):
        # Showing a neighbouring frame as if it were the wanted one would mislead a reviewer.
        raise MediaError(f"the decoder gave {len(frames)} pictures for {len(units)}: the footage is damaged")
    return w, h, frames


def decode_gray_frames(annexb: AnnexB, fps_out: float, width: int, max_frames: int, *,
                       fps_in: int = DEFAULT_FPS, skip_seconds: float = 0.0,
                       height: int | None = None) -> tuple[int, int, list[bytes]]:
    """A flipbook: grey frames at `fps_out`, starting `skip_seconds` after the first picture.

    ffmpeg resamples (drops or repeats pictures) assuming a constant `fps_in`, so
    the frame times are nominal; appliance.rules.footage uses the recorded timestamps instead.
    """
    units = access_units(annexb)
    if not units:
        raise MediaError("there is no picture in this footage")
    stream = _input(fps_in)
    if skip_seconds > 0:
        stream = stream.filter("trim", start=skip_seconds).filter("setpts", "PTS-STARTPTS")
    # round=up: each output frame is the latest picture at or before its time (the default,
    # round=near, shows a picture up to half an output interval later than its slot).
    stream = stream.filter("fps", fps=fps_out, round="up").filter("scale", width, -1 if height is None else height)
    argv = _output(stream, max_frames).compile(cmd=FFMPEG)
    w, h, frames = _parse_pgm(_run(argv, units))
    return w, h, frames[:max_frames]


def png_frames(gops: list[AnnexB], *, fps: float = DEFAULT_FPS,
               filters: Iterable[tuple[str, dict]] = ()) -> list[bytes]:
    """The last picture of each group of pictures (each must start at a keyframe) as a colour PNG.

    One ffmpeg run for all of them: the groups go in one after another, and the wanted
    pictures are picked out by number, so several stills cost one start-up, not one each.
    The groups must share a picture size. `filters` are ffmpeg filters (name, arguments)
    drawn on them first, e.g. an export's redaction boxes and burned-in label, so a still
    shows what its clip shows.
    """
    units: list[AccessUnit] = []
    wanted = []
    for gop in gops:
        these = access_units(gop)
        if not these:
            raise MediaError("there is no picture in this footage")
        if not these[0].keyframe:
            raise MediaError("footage handed to the decoder must start at a keyframe")
        units += these
        wanted.append(len(units) - 1)
    if not wanted:
        return []
    stream = _input(fps)
    for name, kwargs in filters:
        stream = stream.filter(name, **kwargs)
    # ffmpeg-python escapes the commas; passthrough keeps the selected pictures from being repeated to fill time.
    stream = stream.filter("select", "+".join(f"eq(n,{n})" for n in wanted))
    argv = (stream.output("pipe:", format="image2pipe", vcodec="png", fps_mode="passthrough",
                          **{"frames:v": len(wanted)})
            .global_args("-hide_banner", "-loglevel", "error", "-nostats").compile(cmd=FFMPEG))
    pngs = _split_png(_run(argv, units))
    if len(pngs) != len(wanted):
        raise MediaError(f"the decoder returned {len(pngs)} pictures for {len(wanted)}: the footage is damaged")
    return pngs


def probe(annexb: AnnexB) -> dict:
    """What ffprobe sees in the footage: codec, profile, size, pixel format, picture count."""
    units = access_units(annexb)
    argv = [FFPROBE, "-v", "error", "-f", "h264", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,profile,width,height,pix_fmt,nb_read_frames",
            "-of", "json", "pipe:"]
    streams = json.loads(_run(argv, units) or b"{}").get("streams") or []
    if not streams:
        raise MediaError("ffprobe found no video stream in this footage")
    s = streams[0]
    return {"codec": s.get("codec_name"), "profile": s.get("profile"), "width": s.get("width"),
            "height": s.get("height"), "pix_fmt": s.get("pix_fmt"),
            "frames": int(s["nb_read_frames"]) if s.get("nb_read_frames") else None}


# --------------------------------------------------------------------------- plumbing


def _input(fps: float):
    return ffmpeg.input("pipe:", format="h264", fflags="+genpts", r=fps).video


def _output(stream, max_frames: int | None = None):
    extra = {"frames:v": max_frames} if max_frames else {}
    # PGM on stdout: each image carries its own size, so no second probe is needed.
    return (stream.output("pipe:", format="image2pipe", vcodec="pgm", pix_fmt="gray",
                          fps_mode="passthrough", **extra)
            .global_args("-hide_banner", "-loglevel", "error", "-nostats"))


def _run(argv: list[str], units: list[AccessUnit]) -> bytes:
    """Feed the access units to argv's stdin and return its stdout; never touches a file."""
    data = b"".join(u.data for u in units)
    timeout = BASE_TIMEOUT + PER_PICTURE_TIMEOUT * len(units)
    # FFREPORT would make ffmpeg write a log file next to wherever it runs.
    env = {k: v for k, v in os.environ.items() if k != "FFREPORT"}
    try:
        done = subprocess.run(argv, input=data, capture_output=True, timeout=timeout, env=env, cwd="/")
    except FileNotFoundError:
        raise MediaError(f"{argv[0]} is not installed (apt install ffmpeg)") from None
    except subprocess.TimeoutExpired:
        raise MediaError(f"{argv[0]} did not finish within {timeout:.0f}s and was stopped") from None
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MediaError(f"{argv[0]} could not decode the footage: {detail[-1] if detail else done.returncode}")
    return done.stdout


def _split_png(data: bytes) -> list[bytes]:
    """Split ffmpeg's stream of PNG files: each is the signature, then chunks up to IEND."""
    pngs, pos = [], 0
    while pos < len(data):
        if not data.startswith(_PNG_SIGNATURE, pos):
            raise MediaError("the decoder returned something that is not a PNG")
        end = pos + len(_PNG_SIGNATURE)
        while True:
            if end + 8 > len(data):
                raise MediaError("the decoder's output ends inside a PNG")
            length, kind = int.from_bytes(data[end:end + 4], "big"), data[end + 4:end + 8]
            end += 12 + length                          # length, type, data, CRC
            if kind == b"IEND":
                break
        if end > len(data):
            raise MediaError("the decoder's output ends inside a PNG")
        pngs.append(data[pos:end])
        pos = end
    return pngs


def _parse_pgm(data: bytes) -> tuple[int, int, list[bytes]]:
    """Split ffmpeg's stream of binary PGM images into (width, height, [pixels])."""
    frames, pos, size = [], 0, None
    while pos < len(data):
        m = _PGM_HEADER.match(data, pos)
        if m is None or int(m.group(3)) != 255:
            raise MediaError("the decoder returned something that is not an 8-bit grey image")
        w, h = int(m.group(1)), int(m.group(2))
        end = m.end() + w * h
        if end > len(data):
            raise MediaError("the decoder's output ends inside an image")
        size = size or (w, h)
        frames.append(data[m.end():end])
        pos = end
    if not frames:
        raise MediaError("the decoder returned no picture")
    return size[0], size[1], frames
