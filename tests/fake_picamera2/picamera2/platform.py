"""Fake of picamera2.platform: VC4 (Pi 0-4, hardware H.264) or PISP (Pi 5).

The real module probes /dev/video* at import; the fake reads FAKE_PICAMERA2_PLATFORM
(VC4 unless told otherwise).
"""
import os
from enum import Enum


class Platform(Enum):
    VC4 = 0
    PISP = 1


_platform = Platform.PISP if os.environ.get("FAKE_PICAMERA2_PLATFORM", "VC4").upper() == "PISP" else Platform.VC4


def get_platform():
    return _platform
