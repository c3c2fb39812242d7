"""How every ffmpeg pipeline in `hw/` draws privacy masks and encodes H.264.

Shared by the ffmpeg sources (hw/ffmpeg_source.py) and the RTSP backend when it has
masks to draw (hw/rtsp_source.py), so both store the same kind of stream: a keyframe
with SPS and PPS at a fixed cadence, an access unit delimiter on every picture.
"""
from __future__ import annotations

import functools
import subprocess

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
