"""What a camera backend takes: its settings, and the error for settings it cannot use.

`hw/` stands alone (it imports nothing from `appliance/`): the node's configuration
(`appliance/config.py`) reads the `[camera]` section of its TOML file into a
`CameraSettings` and hands it to `hw.factory.make_backend`.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class SettingsError(ValueError):
    """A camera setting a backend cannot use; the message names the setting and what to change."""


@dataclass
class CameraSettings:
    """The `[camera]` section of a node's configuration: what a backend records, and how."""

    backend: str = "synthetic"          # synthetic | v4l2 | file | picamera2 | rtsp
    width: int = 1280
    height: int = 720
    fps: int = 15
    bitrate_kbps: int = 2000
    keyframe_seconds: int = 2           # one keyframe (with SPS/PPS) every N seconds
    device: str = "/dev/video0"         # v4l2
    file: str = ""                      # file backend: the video to loop
    # rtsp backend (an IP camera; docs/camera-backends.md): the stream's URL without credentials,
    # "user:password" in credentials_file (mode 0600, owned by the node's user), TCP or UDP
    url: str = ""
    credentials_file: str = ""
    rtsp_transport: str = "tcp"
    reconnect_max_seconds: float = 30.0 # longest wait between attempts to reach a camera that dropped
    # privacy masks, drawn on the node before encoding: [[x, y, w, h], ...] in pixels
    masks: list[list[int]] = field(default_factory=list)
    stall_seconds: float = 10.0         # no frame for this long = the camera stalled
    max_restarts: int = 3               # reopen failures before the process exits for systemd
