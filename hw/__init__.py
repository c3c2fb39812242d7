"""Camera hardware: backends that produce H.264 frames, board detection, watchdog.

`make_backend(cfg, name)` picks the backend for `[camera] backend`; see
docs/camera-backends.md. Nothing here imports picamera2 until a picamera2 backend
starts, so the package imports on any machine.
"""
from __future__ import annotations


def make_backend(cfg, name: str = "camera", **options):
    """See hw.factory.make_backend."""
    from .factory import make_backend as _make
    return _make(cfg, name, **options)
