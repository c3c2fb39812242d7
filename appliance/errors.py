"""Errors the core raises; each carries a message a person can act on."""


class CustodianError(Exception):
    """Base class: a refusal or fault with a clear, human message."""

    code = "error"


class SegmentError(CustodianError):
    """A segment file is malformed, forged, truncated or out of chain."""

    code = "bad_segment"

    def __init__(self, message: str, *, kind: str = "malformed"):
        super().__init__(message)
        # kind: malformed | signature | digest | truncated | chain | unknown_camera | too_large
        self.kind = kind


class ConfigError(CustodianError):
    code = "bad_config"
