"""Suspension notices (C21): stills shared with staff, gone (and purged) when the suspension ends."""
from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from appliance.rules import notices
from appliance.errors import ArchiveSealed
from appliance.errors import BadRequest, Refused
from appliance.rules.registry import iso
from test_footage import mean_difference, record, recording_start, reference_gray, review_grant

FPS = 10


@pytest.fixture
def case(central, people, h264):
    """cam-a recorded an hour ago; sam's incident with a review grant over it."""
    start = recording_start(central)
    record(central, "cam-a", h264, start)
    grant, incident = review_grant(people, "cam-a", start - timedelta(seconds=1), start + timedelta(seconds=10))
    return {"start": start, "grant": grant["id"], "incident": incident["id"]}


@pytest.fixture(scope="module")
def h264():
    from test_footage import encode_testsrc2

    return encode_testsrc2()


def moment(case, frame: int) -> str:
    return iso(case["start"] + timedelta(milliseconds=frame * 100 + 20))


def create(people, central, case, days: int = 30, **overrides):
    args = dict(incident=case["incident"], description="tall, grey hooded coat, red backpack",
                reason="damaged the returns box; suspended for 30 days",
                suspended_until=(central.now() + timedelta(days=days)).date().isoformat(),
                stills=[{"grant": case["grant"], "camera": "cam-a", "at": moment(case, 12)},
                        {"grant": case["grant"], "camera": "cam-a", "at": moment(case, 31)}])
    return people.call("director", "notice.create", **(args | overrides))["notice"]


def records_file(central) -> str:
    return central.paths.records.read_text()


def test_C21_notice_visible_to_staff_until_suspension_ends(central, people, case):
    people.unseal()
    notice = create(people, central, case)

    # Any staff member sees it, with the stills, though she holds no grant herself.
    [shown] = people.call("sue", "notice.list")["notices"]
    assert shown["id"] == notice["id"] and shown["description"].startswith("tall")
    for still, frame in zip(shown["stills"], (12, 31)):
        pixels = base64.b64decode(still["pixels"])
        assert (still["width"], still["height"], still["format"]) == (96, 72, "gray8")
        assert mean_difference(pixels, reference_gray(frame, 96)) < 3
        assert still["grant"] == case["grant"]
    # Seeing the notices is audited: who looked, and which notices (their stills) she was shown.
    [seen] = central.audit.query(action_prefix="notice.view")
    assert seen["actor"] == people.ids["sue"] and seen["details"]["notices"] == [notice["id"]]
    created = central.audit.query(action_prefix="notice.create")
    assert created[0]["refs"]["incident"] == case["incident"] and created[0]["details"]["grants"] == [case["grant"]]

    # IT never sees footage, notices included; staff cannot make a notice.
    with pytest.raises(Refused):
        people.call("ivy", "notice.list")
    with pytest.raises(Refused):
        people.call("sam", "notice.create", incident=case["incident"], description="x" * 20, reason="r" * 5,
                    suspended_until="2099-01-01", stills=[])

    # The suspension ends: the notice leaves view and its pixels and description are purged.
    central.clock.offset += timedelta(days=30)
    assert people.call("sue", "notice.list")["notices"] == []
    stored = central.records.get("notices", notice["id"])
    assert stored["status"] == "expired" and stored["description"] is None
    assert [set(s) for s in stored["stills"]] == [{"grant", "camera", "at", "frame_at"}] * 2
    assert notice["stills"][0]["pixels"] not in records_file(central)
    [expired] = central.audit.query(action_prefix="notice.expired")
    assert expired["target"] == notice["id"] and expired["details"]["stills_purged"] == 2


def test_C21_expiry_runs_without_anyone_looking(central, people, case):
    people.unseal()
    notice = create(people, central, case, days=2)
    assert notices.expire_notices(central) == []
    central.clock.offset += timedelta(days=2)
    assert notices.expire_notices(central) == [notice["id"]]      # what the periodic task runs
    assert central.records.get("notices", notice["id"])["stills"][0].get("pixels") is None
    assert notices.expire_notices(central) == []                  # once only


def test_C21_director_withdraws_a_notice(central, people, case):
    people.unseal()
    notice = create(people, central, case)
    people.call("director", "notice.withdraw", notice=notice["id"], reason="suspension lifted by the board")
    assert people.call("sam", "notice.list")["notices"] == []
    assert notice["stills"][1]["pixels"] not in records_file(central)
    assert central.audit.query(action_prefix="notice.withdraw")[0]["why"] == "suspension lifted by the board"
    with pytest.raises(Refused, match="already ended"):
        people.call("director", "notice.withdraw", notice=notice["id"], reason="again")


def test_C21_every_still_traces_to_a_grant_for_the_incident(central, people, case):
    # Sealed: the grant is fine but nothing can be rendered.
    with pytest.raises(ArchiveSealed):
        create(people, central, case)
    people.unseal()
    other_grant, _ = review_grant(people, "cam-a", case["start"], case["start"] + timedelta(seconds=3), who="sue")
    today = central.now().date()
    bad = [
        (dict(suspended_until=today.isoformat()), BadRequest, None),                       # not in the future
        (dict(suspended_until=today.replace(year=today.year + 6).isoformat()), BadRequest, None),
        (dict(stills=[]), BadRequest, None),
        (dict(stills=[{"grant": case["grant"], "camera": "cam-a"}]), BadRequest, None),    # no time
        (dict(stills=[{"grant": "grt-999999", "camera": "cam-a", "at": moment(case, 3)}]), Refused, "C9"),
        (dict(stills=[{"grant": case["grant"], "camera": "cam-a",                          # outside the grant
                       "at": iso(case["start"] + timedelta(minutes=5))}]), Refused, "C9"),
        (dict(stills=[{"grant": other_grant["id"], "camera": "cam-a", "at": moment(case, 3)}]), Refused, "C9"),
    ]
    for overrides, error, clause in bad:
        with pytest.raises(error) as raised:
            create(people, central, case, **overrides)
        assert getattr(raised.value, "clause", None) == clause, overrides
    assert central.records.all("notices") == []
    assert central.audit.query(action_prefix="notice.create") == []


def test_C21_a_notices_still_is_a_picture_inside_its_grant(central, people, case):
    """A grant for the incident that starts between two pictures: a still asked for at its first instant
    is the first picture inside it, never the nearer one 30 ms before (C9: only what the grant allows)."""
    opens = case["start"] + timedelta(milliseconds=30)          # pictures every 100 ms from the start
    request = people.call("sam", "request.create", incident=case["incident"], kind="review", cameras=["cam-a"],
                          start=iso(opens), end=iso(opens + timedelta(seconds=2)),
                          reason="the moment the patron came in")["request"]
    grant = people.call("director", "request.decide", request=request["id"], decision="approve",
                        reason="the same incident")["grant"]
    people.unseal()
    notice = create(people, central, case, stills=[{"grant": grant["id"], "camera": "cam-a", "at": iso(opens)}])
    assert [s["frame_at"] for s in notice["stills"]] == [iso(case["start"] + timedelta(milliseconds=100))]
