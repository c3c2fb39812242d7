"""make_backend: the one place that maps `[camera] backend` to a backend class."""
from __future__ import annotations

from appliance.config import CameraConfig
from appliance.errors import ConfigError

from .backend import CameraBackend

BACKENDS = ("synthetic", "v4l2", "file", "picamera2")


def make_backend(cfg: CameraConfig, name: str = "camera", **options) -> CameraBackend:
    """A backend for cfg.backend; `name` is the camera's name (burned into synthetic video).

    Raises ConfigError for an unknown backend or invalid settings (masks, sizes), so a
    misconfigured node refuses to start instead of recording wrongly.
    """
    if cfg.backend in ("synthetic", "v4l2", "file"):
        from .ffmpeg_source import FfmpegBackend
        return FfmpegBackend(cfg, name, **options)
    if cfg.backend == "picamera2":
        from .picamera2_backend import Picamera2Backend
        return Picamera2Backend(cfg, name, **options)
    raise ConfigError(f"[camera] backend {cfg.backend!r}: expected one of {', '.join(BACKENDS)}")
