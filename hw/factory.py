"""make_backend: the one place that maps `[camera] backend` to a backend class."""
from __future__ import annotations

from hw.settings import CameraSettings, SettingsError

from .backend import CameraBackend, clip_masks

BACKENDS = ("synthetic", "v4l2", "file", "picamera2", "rtsp")


def make_backend(cfg: CameraSettings, name: str = "camera", **options) -> CameraBackend:
    """A backend for cfg.backend; `name` is the camera's name (burned into synthetic video).

    Raises SettingsError for an unknown backend or invalid settings (masks, sizes), so a
    misconfigured node refuses to start instead of recording wrongly.
    """
    if cfg.backend in ("synthetic", "v4l2", "file"):
        from .ffmpeg_source import FfmpegBackend
        return FfmpegBackend(cfg, name, **options)
    if cfg.backend == "picamera2":
        from .picamera2_backend import Picamera2Backend
        return Picamera2Backend(cfg, name, **options)
    if cfg.backend == "rtsp":
        from .rtsp_source import RtspBackend, RtspSettingError
        settings = rtsp_settings(cfg)
        try:
            return RtspBackend(settings, name, **options)       # refuses an unsafe credentials file
        except RtspSettingError as e:
            raise SettingsError(f"[camera] {e}") from None
    raise SettingsError(f"[camera] backend {cfg.backend!r}: expected one of {', '.join(BACKENDS)}")


def rtsp_settings(cfg: CameraSettings, board=None):
    """The rtsp backend's settings from [camera]; SettingsError names what to fix."""
    from .board import has_hardware_h264
    from .ffmpeg_common import has_encoder
    from .rtsp_source import RtspSettingError, RtspSettings

    masks = tuple(clip_masks(cfg.masks, cfg.width, cfg.height))
    # Masks mean decoding and encoding again: on the Pi's VideoCore where there is one.
    hardware = bool(masks) and has_hardware_h264(board) and has_encoder("h264_v4l2m2m")
    try:
        return RtspSettings(
            url=cfg.url, credentials_file=cfg.credentials_file, transport=cfg.rtsp_transport,
            width=cfg.width, height=cfg.height, fps=cfg.fps, bitrate_kbps=cfg.bitrate_kbps,
            keyframe_seconds=cfg.keyframe_seconds, masks=masks,
            encoder="h264_v4l2m2m" if hardware else "libx264",
            # the backend notices a silent camera before the frame watchdog would
            timeout_seconds=max(1.0, cfg.stall_seconds / 2), reconnect_max_seconds=cfg.reconnect_max_seconds,
            reconnect_min_seconds=min(1.0, cfg.reconnect_max_seconds))
    except RtspSettingError as e:
        raise SettingsError(f"[camera] {e}") from None
