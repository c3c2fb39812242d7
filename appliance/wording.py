"""How messages a person reads name times and roles: one place, so every screen agrees.

Records and the API keep times as UTC ISO 8601 with microseconds (exact, sortable);
a person reads them in the library's local time zone, to the minute. Roles are
codes in records (`staff`, `director`, `it`); a person reads "the Director".

Standard library only: the terminal UI may use it too.
"""
from __future__ import annotations

from datetime import datetime, timezone

# How people say each role (docs/policy-clauses.md, Roles: the Director is the custodian; IT operates the system).
ROLE_NAMES = {"staff": "staff", "director": "the Director", "it": "IT staff"}


def role_name(role: str) -> str:
    return ROLE_NAMES.get(role, role)


def roles_phrase(roles) -> str:
    """`("director", "staff")` -> "staff or the Director" (always in the table's order)."""
    names = [name for role, name in ROLE_NAMES.items() if role in roles]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


def when(t: datetime | str | None, seconds: bool = False) -> str:
    """A moment as a person reads it, in messages and on screens alike: local time, to the minute
    (or second), no zone; the day only when it is not today, the year only when not this year:
    "13:12", "29 Nov 13:12", "01 Jan 2099 10:00".

    Accepts a datetime (naive means UTC, as everywhere in the records) or an ISO 8601 string.
    """
    if t is None:
        return "(no time)"
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    local = t.astimezone()
    today = datetime.now(timezone.utc).astimezone().date()
    clock = local.strftime("%H:%M:%S" if seconds else "%H:%M")
    if local.date() == today:
        return clock
    return f"{local:%d %b} {clock}" if local.year == today.year else f"{local:%d %b %Y} {clock}"
