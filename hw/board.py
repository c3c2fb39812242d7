"""Which board are we on, is the clock synced, which boot is this.

Board identity comes from the device tree (``/proc/device-tree/compatible``: NUL-
separated strings, most specific first, e.g. ``raspberrypi,model-zero-2-w`` then
``brcm,bcm2837``). The family decides the encoder: the Pi 5 (BCM2712, also the CM5
and the Pi 500) has no hardware H.264 encoder, so picamera2 must use libx264 through
``LibavH264Encoder`` there. Off a Pi the family is ``other``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

COMPATIBLE_PATH = "/proc/device-tree/compatible"
MODEL_PATH = "/proc/device-tree/model"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"

# Most specific board strings first; the SoC strings are a fallback. The Zero 2 W
# shares the BCM2837 with the Pi 3, so board strings must win over SoC strings.
_BOARD_FAMILIES: tuple[tuple[str, str], ...] = (
    ("raspberrypi,model-zero-2", "pi02"),       # model-zero-2-w
    ("raspberrypi,model-zero", "pi0"),          # model-zero, model-zero-w
    ("raspberrypi,5", "pi5"),                   # 5-model-b, 5-compute-module
    ("raspberrypi,500", "pi5"),
    ("raspberrypi,4", "pi4"),                   # 4-model-b, 4-compute-module
    ("raspberrypi,400", "pi4"),
    ("raspberrypi,3", "pi3"),                   # 3-model-b, 3-model-b-plus, 3-model-a-plus, 3-compute-module
    ("raspberrypi,2", "pi2"),
    ("raspberrypi,model-", "pi1"),              # model-b, model-a-plus, compute-module...
    ("raspberrypi,compute-module", "pi1"),
)
_SOC_FAMILIES = {
    "brcm,bcm2712": "pi5",
    "brcm,bcm2711": "pi4",
    "brcm,bcm2837": "pi3",
    "brcm,bcm2836": "pi2",
    "brcm,bcm2835": "pi1",
}
# Families whose SoC has the VideoCore IV/VI H.264 encoder that picamera2's H264Encoder drives.
HARDWARE_H264_FAMILIES = frozenset({"pi0", "pi02", "pi1", "pi2", "pi3", "pi4"})


@dataclass(frozen=True)
class Board:
    model: str                      # /proc/device-tree/model, e.g. "Raspberry Pi Zero 2 W Rev 1.0"
    family: str                     # pi5 | pi4 | pi3 | pi02 | pi0 | pi2 | pi1 | other
    compatible: tuple[str, ...] = field(default=())

    @property
    def is_raspberry_pi(self) -> bool:
        return self.family != "other"

    @property
    def has_hardware_h264(self) -> bool:
        return self.family in HARDWARE_H264_FAMILIES


def _read_dt_strings(path: str | Path) -> list[str]:
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return []
    return [s.decode("ascii", "replace").strip() for s in raw.split(b"\x00") if s.strip()]


def family_of(compatible: list[str] | tuple[str, ...]) -> str:
    lowered = [c.lower() for c in compatible]
    for entry in lowered:
        for prefix, family in _BOARD_FAMILIES:
            if entry.startswith(prefix):
                return family
    for entry in lowered:
        if entry in _SOC_FAMILIES:
            return _SOC_FAMILIES[entry]
    return "other"


def detect_board(compatible_path: str | Path = COMPATIBLE_PATH, model_path: str | Path = MODEL_PATH) -> Board:
    """Read the device tree; never raises (off a Pi: family 'other')."""
    compatible = tuple(_read_dt_strings(compatible_path))
    model_strings = _read_dt_strings(model_path)
    family = family_of(compatible)
    model = model_strings[0] if model_strings else ("unknown Raspberry Pi" if family != "other" else "not a Raspberry Pi")
    return Board(model=model, family=family, compatible=compatible)


def has_hardware_h264(board: Board | None = None) -> bool:
    """True on Pi Zero/1/2/3/4; False on a Pi 5 and off a Pi."""
    return (board or detect_board()).has_hardware_h264


# -- clock --------------------------------------------------------------------

TIME_ERROR = 5   # adjtimex(2): the clock is not synchronised (STA_UNSYNC)


class _Timex(ctypes.Structure):
    # struct timex starts with `unsigned int modes`; the rest (longs and padding) is
    # only ever written by the kernel, so reserve generous room instead of spelling it out.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 508)]


def _adjtimex() -> int:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    tx = _Timex()
    tx.modes = 0                                  # read only, change nothing
    return int(libc.adjtimex(ctypes.byref(tx)))


def clock_synced(adjtimex=_adjtimex) -> bool:
    """Is the system clock synchronised (NTP or similar)? False when unsure.

    Pi 0-4 have no RTC: until NTP syncs, the clock continues from the last saved time,
    so segments record this flag next to their start time.
    """
    try:
        state = adjtimex()
    except Exception as e:   # no libc, no adjtimex (not Linux), seccomp...
        log.debug("adjtimex failed: %s", e)
        return False
    return 0 <= state != TIME_ERROR


def boot_id(path: str | Path = BOOT_ID_PATH) -> str:
    """This boot's random id (segments are ordered by sequence and boot id); '' if unknown."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
