"""How times and refusals read on screen: local time, to the minute; the clause with the reason."""
from __future__ import annotations

from datetime import datetime, timezone

from appliance.client import ApiError


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def local(text: str | None, seconds: bool = False) -> str:
    """An API time as people read it: local, to the minute (or second), no zone noise; the day only
    when it is not today. As the API's messages write it (appliance.wording.when, held to agree by
    tests/tui/test_tui_format.py), except that a screen never writes the year: its lists are of
    this year's work, and its pictures must not change with the calendar."""
    if not text:
        return "-"
    t = parse(text).astimezone()
    today = datetime.now(timezone.utc).astimezone().date()
    clock = t.strftime("%H:%M:%S" if seconds else "%H:%M")
    return clock if t.date() == today else f"{t:%d %b} {clock}"


def window(start: str, end: str) -> str:
    """A window as people read it: the day once when both ends fall on it ('02 Nov 14:20-14:40')."""
    a, b = local(start), local(end)
    day = a.rsplit(" ", 1)[0] + " "
    return f"{a}-{b[len(day):]}" if " " in a and b.startswith(day) else f"{a}-{b}"


def to_api(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_local(text: str) -> datetime:
    """What a person types: 'YYYY-MM-DD HH:MM' or 'HH:MM' (today), in local time."""
    text = text.strip()
    now = datetime.now().astimezone()
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%H:%M", "%H:%M:%S"):
        try:
            t = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if fmt.startswith("%H"):
            t = t.replace(year=now.year, month=now.month, day=now.day)
        return t.replace(tzinfo=now.tzinfo)
    raise ValueError(f"{text!r} is not a time: type HH:MM or YYYY-MM-DD HH:MM")


def typed(text: str | None) -> str:
    """An API time as a person would type it back (local); '' for none."""
    return parse(text).astimezone().strftime("%Y-%m-%d %H:%M:%S") if text else ""


def names(text: str) -> list[str]:
    """A list a person types with commas ('entrance, stacks') as the names it holds."""
    return [n.strip() for n in text.split(",") if n.strip()]


def typed_time(text: str) -> str | None:
    """What a person typed as an API time; None when the field was left empty (the API says if it may be)."""
    return to_api(parse_local(text)) if text.strip() else None


def refusal(e: ApiError) -> str:
    """One line: what the API said, with its clause ('Refused (C9): ...')."""
    if e.clause:
        return f"Refused ({e.clause}): {e.message}"
    if e.code == "forbidden":
        return f"Not for your role: {e.message}"
    return e.message[:1].upper() + e.message[1:]
