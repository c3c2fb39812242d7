"""The screens write times as the API's messages do (one way of reading a time for a person)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from appliance.wording import when
from tui.format import local


def test_screens_and_messages_write_a_time_alike_but_for_the_year():
    now = datetime.now(timezone.utc).replace(microsecond=0)
    for t in (now, now - timedelta(days=3), now + timedelta(days=40), now - timedelta(days=400)):
        text = t.isoformat().replace("+00:00", "Z")
        for seconds in (False, True):
            screen, message = local(text, seconds), when(text, seconds)
            if t.astimezone().year == now.astimezone().year:
                assert screen == message, (t, screen, message)
            else:                                   # a message names another year; a screen does not
                assert message == f"{t.astimezone():%d %b %Y} {screen.split(' ', 2)[2]}", (screen, message)
                assert screen == f"{t.astimezone():%d %b} {screen.split(' ', 2)[2]}"
