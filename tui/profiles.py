"""Terminal profiles: what the terminal can show, chosen from TERM, COLORTERM and NO_COLOR.

    console  TERM=linux: 16 colours; only glyphs the Linux console font has (half
             blocks, shades, box drawing; no eighth blocks, rounded corners or emoji)
    serial   vt100/vt220 on a serial getty at 115200 baud: no colour assumed, ASCII
             drawing, no animation, no cursor blink, minimal repaints, pictures on request
    full     SSH or a local terminal emulator: truecolour where COLORTERM says so
"""
from __future__ import annotations

from dataclasses import dataclass

SERIAL_TERMS = ("vt52", "vt100", "vt102", "vt220", "vt320", "vt420", "dumb", "ansi", "xterm-mono")


@dataclass(frozen=True)
class Profile:
    name: str
    color_system: str | None   # Rich's: "truecolor", "256", "standard", None (no colour at all)
    ascii: bool                # draw with ASCII only (borders, pictures, marks)
    animation: bool
    picture: str               # "halfblock": two grey pixels a cell; "ascii": a shade ramp, one a cell
    pictures_on_request: bool  # draw a still only when asked (slow links)
    refresh_seconds: float     # how often lists refresh themselves
    live_seconds: float        # how often a live view asks for a frame

    @property
    def css_class(self) -> str:
        return f"-profile-{self.name}"


PROFILES = {
    "full": Profile("full", "auto", ascii=False, animation=True, picture="halfblock", pictures_on_request=False,
                    refresh_seconds=10, live_seconds=1),
    "console": Profile("console", "standard", ascii=False, animation=False, picture="halfblock",
                       pictures_on_request=False, refresh_seconds=10, live_seconds=1),
    "serial": Profile("serial", None, ascii=True, animation=False, picture="ascii", pictures_on_request=True,
                      refresh_seconds=30, live_seconds=5),
}


def detect(env: dict, override: str | None = None) -> Profile:
    """The profile for this terminal; `override` (--profile) wins."""
    if override:
        if override not in PROFILES:
            raise ValueError(f"unknown profile {override!r}: choose {', '.join(PROFILES)}")
        return PROFILES[override]
    term = env.get("TERM", "").lower()
    if term == "linux":
        return PROFILES["console"]
    if term.startswith(SERIAL_TERMS):
        return PROFILES["serial"]
    return PROFILES["full"]


def color_system_for(profile: Profile, env: dict) -> str | None:
    """NO_COLOR turns colour off in any profile; full follows COLORTERM (SSH usually drops it: 256)."""
    if "NO_COLOR" in env or profile.color_system is None:
        return None
    if profile.color_system == "auto":
        return "truecolor" if env.get("COLORTERM", "").lower() in ("truecolor", "24bit") else "256"
    return profile.color_system
