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
from typing import Callable

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
