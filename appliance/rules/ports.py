"""What the rules ask of the daemon around them, as interfaces the daemon provides.

The rules never import the central's node channel (`appliance/central/node_channel.py`,
a higher layer): they read what the camera nodes last sent through `central.nodes`, an
object of this shape (`NodeHub` there), and they do not care how it got there.
"""
from __future__ import annotations

from datetime import datetime
from typing import Protocol


class NodeLink(Protocol):
    snapshots: dict[str, dict]                      # camera -> its latest snapshot (image + received_at)
    segment_seconds: dict[tuple[str, int], int]     # (camera, head seq) -> that segment's length (a cache)

    def online(self, camera: str) -> bool:
        """Whether the camera's node asked the central for instructions within the last half minute."""

    def live_frame(self, camera: str, since: datetime) -> dict | None:
        """The camera's latest live frame, if it arrived after `since` (the live view's start)."""

    def live_frames_received(self, view: str) -> int:
        """How many frames arrived for this live view, forgetting the count (the view has ended)."""


def public_image(image: dict) -> dict:
    """An image as operations return it (gray8, base64; `masks`: the privacy masks drawn on it)."""
    return {k: image[k] for k in ("width", "height", "format", "pixels", "at", "masks")}
