"""Alerts, what needs attention, the screens' watch and the idle rule, at the API (C8, C15, C19, C9).

Operations are called through `central.call` (the path the Unix-socket API takes);
the long poll and the `background` flag are also checked over the real socket.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from appliance.client import ApiClient, ApiError
from appliance.errors import CustodianError
from appliance.rules.registry import iso
from conftest import DIRECTOR, enrol_camera_record
from test_footage import encode_testsrc2, record, recording_start, review_grant


def code_of(central, op, args, token):
    try:
        central.call(op, args, token)
        return "ok"
    except CustodianError as e:
        return e.code


@pytest.fixture
def alerts(central, people):
    """One alert of each audience: an imminent-danger use by sam, a breach report by sue, a camera offline."""
    enrol_camera_record(central, "entrance", "33" * 32)
    people.login("sam"), people.login("sue"), people.login("ivy")
    used = people.call("sam", "imminent.invoke", reason="a man is threatening staff at the desk",
                       cameras=["entrance"])
    reported = people.call("sue", "breach.report", what="a printout of a still was left on the copier",
                           noticed_at=iso(central.now()))
    offline = central.alert("camera_offline", "camera entrance has sent no segment", camera="entrance")
    return {"imminent": used["alert"], "breach": reported["alert"], "offline": offline["id"]}


def listed(people, who, **args):
    return [a["id"] for a in people.call(who, "alert.list", **args)["alerts"]]


def test_C19_C15_the_director_sees_every_alert(people, alerts):
    assert set(listed(people, "director")) == set(alerts.values())


def test_C8_it_sees_system_alerts_only_never_peoples_actions(people, alerts):
    assert listed(people, "ivy") == [alerts["offline"]]


def test_C19_staff_see_the_alerts_about_their_own_use_only(people, alerts):
    assert listed(people, "sam") == [alerts["imminent"]]
    assert listed(people, "sue") == [alerts["breach"]]      # her own report; never sam's danger call
    assert people.call("sue", "alert.list")["unacknowledged"] == 1


def test_alert_acknowledge_is_per_person_audited_and_the_directors_marks_it_for_all(central, people, alerts):
    people.call("ivy", "alert.acknowledge", alert=alerts["offline"])
    assert listed(people, "ivy", unacknowledged=True) == []
    record = central.records.get("alerts", alerts["offline"])
    assert record["acknowledged"] is False               # IT has seen it; the Director has not
    assert alerts["offline"] in listed(people, "director", unacknowledged=True)
    people.call("director", "alert.acknowledge", alert=alerts["offline"])
    people.call("director", "alert.acknowledge", alert=alerts["offline"])   # twice changes nothing
    assert central.records.get("alerts", alerts["offline"])["acknowledged"] is True
    entries = central.audit.query(action_prefix="alert.acknowledge")
    assert [(e["actor"], e["target"]) for e in entries] == [(people.ids["ivy"], alerts["offline"]),
                                                             (people.ids["director"], alerts["offline"])]


def test_C8_an_alert_you_may_not_see_cannot_be_acknowledged(central, people, alerts):
    before = len(central.audit.query(action_prefix="alert."))
    assert code_of(central, "alert.acknowledge", {"alert": alerts["breach"]}, people.tokens["ivy"]) == "not_found"
    assert code_of(central, "alert.acknowledge", {"alert": alerts["imminent"]}, people.tokens["sue"]) == "not_found"
    assert len(central.audit.query(action_prefix="alert.")) == before
    assert central.records.get("alerts", alerts["breach"]).get("acknowledgements") is None


def test_session_watch_returns_new_alerts_after_the_one_shown(people, alerts):
    first = people.call("director", "session.watch", after=alerts["imminent"])
    assert [a["id"] for a in first["alerts"]] == [alerts["breach"], alerts["offline"]]
    assert first["changed"] is True and first["sealed"] is True
    latest = people.call("director", "session.watch", after=first["latest"], sealed=True)
    assert latest["changed"] is False and latest["alerts"] == []
    assert people.call("director", "session.watch", after=first["latest"], sealed=False)["changed"] is True


# --------------------------------------------------------------------------- what needs attention


def items(people, who) -> dict:
    return {i["item"]: i for i in people.call(who, "attention.summary")["items"]}


def test_C17_attention_shows_the_director_what_waits_for_her(central, people, alerts):
    now = central.now()
    incident = people.call("sam", "incident.create", grounds="conduct_violation", occurred_at=iso(now - timedelta(hours=1)),
                           location="desk", description="a patron shouted at staff and threw a book",
                           attestation=True)["incident"]
    request = people.call("sam", "request.create", incident=incident["id"], kind="review", cameras=["entrance"],
                          start=iso(now - timedelta(hours=2)), end=iso(now - timedelta(minutes=30)),
                          reason="see what happened at the desk")["request"]
    director = items(people, "director")
    assert director["pending_requests"]["ids"] == [request["id"]]
    assert director["imminent_unreviewed"]["count"] == 1
    assert director["open_breaches"]["count"] == 1
    assert director["alerts"]["count"] == 3
    assert "sealed" in director and "disk" in director and "cameras" in director
    sam = items(people, "sam")
    assert sam["my_pending_requests"]["ids"] == [request["id"]]
    assert sam["incident_owed"]["count"] == 1           # the report the imminent-danger use owes (C19)
    assert sam["my_grants"]["count"] == 1               # the imminent-danger grant
    assert "my_live_views" not in sam
    view = people.call("sam", "live.open", camera="entrance", purpose="the desk after the incident")["view"]
    assert items(people, "sam")["my_live_views"]["ids"] == [view["id"]]
    assert not {"pending_requests", "open_breaches", "imminent_unreviewed", "disk"} & set(sam)
    ivy = items(people, "ivy")
    assert set(ivy) >= {"disk", "cameras", "alerts"} and ivy["alerts"]["count"] == 1
    assert not {"pending_requests", "open_breaches", "incident_owed", "my_grants"} & set(ivy)


def test_C9_C17_the_attention_summary_shows_staff_their_own_requests_grants_and_live_views_only(central, people,
                                                                                             alerts):
    """Sue's pending request, her grant and her live view count in her summary, never in Sam's; and an
    acting director is not asked to decide her own request (the Director does, C17)."""
    now = central.now()
    incident = people.call("sue", "incident.create", grounds="conduct_violation", occurred_at=iso(now - timedelta(hours=1)),
                           location="desk", description="a patron shouted at staff and threw a book",
                           attestation=True)["incident"]
    review = dict(incident=incident["id"], kind="review", cameras=["entrance"], start=iso(now - timedelta(hours=2)),
                  end=iso(now - timedelta(minutes=30)), reason="see what happened at the desk")
    pending = people.call("sue", "request.create", **review)["request"]
    decided = people.call("sue", "request.create", **review)["request"]
    grant = people.call("director", "request.decide", request=decided["id"], decision="approve",
                        reason="a specific incident")["grant"]
    view = people.call("sue", "live.open", camera="entrance", purpose="the desk after the incident")["view"]
    sams_grants = [g["id"] for g in people.call("sam", "grant.list")["grants"]]     # his imminent-danger grant
    sam = items(people, "sam")
    assert "my_pending_requests" not in sam and "my_live_views" not in sam
    assert sam["my_grants"]["ids"] == sams_grants and grant["id"] not in sams_grants
    sue = items(people, "sue")
    assert (sue["my_pending_requests"]["ids"], sue["my_grants"]["ids"], sue["my_live_views"]["ids"]) == (
        [pending["id"]], [grant["id"]], [view["id"]])
    assert items(people, "director")["pending_requests"]["ids"] == [pending["id"]]
    people.call("director", "director.designate_acting", user="sue", start=iso(now - timedelta(minutes=1)),
                end=iso(now + timedelta(days=1)), why="Director on leave")
    assert "pending_requests" not in items(people, "sue")      # hers: the Director decides it


# --------------------------------------------------------------------------- the idle rule (C8)


def test_C8_background_calls_do_not_extend_a_session_a_persons_call_does(central, people):
    token = people.login("sam")
    session = central.sessions[token]
    session["last_seen"] -= 14 * 60          # fourteen idle minutes have passed
    central.call("camera.list", {}, token, background=True)
    assert central.call("session.whoami", {}, token, background=True)["idle_left"] < 61
    central.call("session.whoami", {}, token)                 # a person's action
    assert central.call("session.whoami", {}, token, background=True)["idle_left"] > 14 * 60
    session["last_seen"] -= 15 * 60 + 1
    assert code_of(central, "camera.list", {}, token) == "not_authenticated"


def test_C8_the_socket_honours_the_background_flag_and_the_long_poll_wakes_at_once(central, serving, people):
    sock = str(central.paths.data / "api.sock")
    director = ApiClient(sock)
    director.login(*DIRECTOR)
    central.sessions[director.token]["last_seen"] -= 10 * 60
    watch = director.call("session.watch", {}, background=True)
    assert watch["idle_left"] < 5 * 60 + 1                      # waiting is not activity
    answers = []

    def wait():
        answers.append(director.call("session.watch", {"after": watch["latest"] or "alr-000000", "wait": 20},
                                     background=True))
    waiter = threading.Thread(target=wait)
    started = time.monotonic()
    waiter.start()
    time.sleep(0.5)
    central.alert("camera_offline", "camera entrance has sent no segment", camera="entrance")
    waiter.join(30)
    assert answers and answers[0]["changed"] and answers[0]["alerts"][0]["kind"] == "camera_offline"
    assert time.monotonic() - started < 15, "the watch answered when the alert came, not at the end of its wait"
    assert central.idle_left(director.token) < 5 * 60 + 1
    director.call("session.whoami")
    assert central.idle_left(director.token) > 14 * 60
    central.sessions[director.token]["last_seen"] -= 15 * 60 + 1
    with pytest.raises(ApiError) as ended:
        director.call("session.watch", {"wait": 1}, background=True)
    assert ended.value.code == "not_authenticated"


# --------------------------------------------------------------------------- timeline and stills at a size (C9)


@pytest.fixture(scope="module")
def h264():
    return encode_testsrc2(4)


def test_C9_timeline_shows_recorded_gaps_and_held_inside_the_grant_only(central, people, h264):
    start = recording_start(central)
    record(central, "cam-a", h264, start)      # 4 s, two segments
    grant, _ = review_grant(people, "cam-a", start - timedelta(seconds=2), start + timedelta(seconds=8))
    people.unseal()
    line = people.call("sam", "footage.timeline", grant=grant["id"])
    [cam] = line["cameras"]
    assert cam["camera"] == "cam-a"
    [[rec_start, rec_end]] = cam["recorded"]
    assert rec_start == iso(start)
    assert rec_end == iso(start + timedelta(seconds=4))
    assert cam["not_recorded"] == [[grant["start"], iso(start)], [iso(start + timedelta(seconds=4)), grant["end"]]]
    assert cam["held"] == [[grant["start"], grant["end"]]]      # an approved review holds its window (C12)
    assert central.audit.query(action_prefix="footage.timeline")[-1]["refs"]["grant"] == grant["id"]
    people.login("sue")
    assert code_of(central, "footage.timeline", {"grant": grant["id"]}, people.tokens["sue"]) == "refused"
    assert central.audit.query(action_prefix="footage.refused")[-1]["actor"] == people.ids["sue"]


def test_C9_still_fits_the_size_the_screen_asks_for(central, people, h264):
    import base64

    start = recording_start(central)
    record(central, "cam-a", h264, start)
    grant, _ = review_grant(people, "cam-a", start, start + timedelta(seconds=4))
    people.unseal()
    still = people.call("sam", "footage.still", grant=grant["id"], camera="cam-a",
                        at=iso(start + timedelta(seconds=1)), width=160, height=40)
    assert still["height"] <= 40 and still["width"] <= 160
    assert abs(still["width"] / still["height"] - 160 / 120) < 0.05      # the camera's 4:3 kept
    assert len(base64.b64decode(still["pixels"])) == still["width"] * still["height"]


# --------------------------------------------------------------------------- forms that check as you type


def test_C7_C9_check_only_runs_every_rule_in_the_apis_words_and_writes_nothing(central, people):
    enrol_camera_record(central, "entrance", "44" * 32)
    now = central.now()
    filed = dict(grounds="conduct_violation", occurred_at=iso(now - timedelta(hours=1)), location="desk",
                 description="a patron shouted at staff and threw a book")
    before = (len(central.records.all("incidents")), len(central.audit.query()))
    assert code_of(central, "incident.create", dict(filed, attestation=False, check_only=True),
                   people.tokens["director"]) == "refused"           # C7: the attestation
    with pytest.raises(CustodianError) as short:
        people.call("director", "incident.create", **dict(filed, description="too short", attestation=True,
                                                           check_only=True))
    assert "What happened" in str(short.value)   # the field as the form calls it
    assert people.call("director", "incident.create", **filed, attestation=True, check_only=True) == {"checked": True}
    assert (len(central.records.all("incidents")), len(central.audit.query())) == before
    incident = people.call("sam", "incident.create", **filed, attestation=True)["incident"]
    request = dict(incident=incident["id"], kind="review", cameras=["entrance"], reason="see who threw the book",
                   check_only=True)
    future = dict(request, start=iso(now - timedelta(minutes=30)), end=iso(now + timedelta(hours=1)))
    assert code_of(central, "request.create", future, people.tokens["sam"]) == "refused"    # C9: in the past
    past = dict(request, start=iso(now - timedelta(hours=2)), end=iso(now - timedelta(minutes=30)))
    assert people.call("sam", "request.create", **past) == {"checked": True}
    assert central.records.all("requests") == []
