"""Incidents, requests, Director decisions, grants, imminent danger, outcomes
(C7, C9, C17, C18, C19), through the API exactly as the TUI calls it."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import nacl.signing
import pytest

from appliance.rules import incidents
from appliance.custody import keys
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.registry import OPS, iso, parse_iso

CAM = "entrance-1"
CAM2 = "stacks-2"
INCIDENT_TABLES = ("incidents", "requests", "grants", "holds", "alerts")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def light_argon2(monkeypatch):
    """Real Argon2id at libsodium's minimum cost: these tests are about the policy, and
    each account and key slot would otherwise cost a tenth of a second."""
    from nacl.pwhash import argon2id

    monkeypatch.setattr(keys, "ARGON2_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(keys, "ARGON2_MEMLIMIT", argon2id.MEMLIMIT_MIN)


def add_camera(central, name: str, status: str = "approved") -> None:
    # Direct insert in the shared cameras format: the real path (camera.enroll, then
    # camera.approve_placement from a node's snapshot) needs a running node.
    key = nacl.signing.SigningKey.generate().verify_key.encode().hex()
    central.records.insert("cameras", {"key": key, "category": "entrance", "location": f"{name} area",
                                       "status": status, "masks": [], "snapshot_at": None,
                                       "last_segment_seq": None, "last_segment_at": None}, id=name)
    central.reload_cameras()


@pytest.fixture
def team(central, people):
    """Everyone logged in (so later logins do not add audit entries) and two approved cameras."""
    for name in ("sam", "sue", "ivy"):
        people.login(name)
    add_camera(central, CAM)
    add_camera(central, CAM2)
    return people


def file_incident(people, who="sam", hours_ago=2, **over):
    now = people.central.now()
    args = {"grounds": "conduct_violation", "occurred_at": iso(now - timedelta(hours=hours_ago)),
            "location": "main entrance", "description": "Patron kicked the book return until its door broke.",
            "attestation": True} | over
    return people.call(who, "incident.create", **args)["incident"]


def review_args(filed, **over):
    occurred = parse_iso(filed["occurred_at"])
    return {"incident": filed["id"], "kind": "review", "cameras": [CAM],
            "start": iso(occurred - timedelta(minutes=30)), "end": iso(occurred + timedelta(minutes=30)),
            "reason": "to see who broke the book return door"} | over


def request_review(people, filed, who="sam", **over):
    return people.call(who, "request.create", **review_args(filed, **over))["request"]


def approve(people, request, who="director", **over):
    return people.call(who, "request.decide", request=request["id"], decision="approve",
                       reason="conduct described is specific", **over)


def caller(people, name):
    return people.central.caller_for(people.tokens[name])


def state(central):
    """Everything these operations could change: the tables and the audit log's length, less the
    `access.refused` entries the dispatcher writes for a refusal by role or scope (C16; counted
    where a test refuses one)."""
    refusals = len(central.audit.query(action_prefix="access.refused"))
    return {t: central.records.all(t) for t in INCIDENT_TABLES}, central.audit.next_seq - refusals


def entries(central, action):
    return central.audit.query(action_prefix=action)


def refused(clause, fn, *args, **kwargs):
    with pytest.raises(Refused) as e:
        fn(*args, **kwargs)
    assert e.value.clause == clause, str(e.value)
    return e.value


# --------------------------------------------------------------------------- incidents (C7, C9)


def test_C7_incident_requires_attestation(central, team):
    before = state(central)
    base = {"grounds": "criminal_activity", "occurred_at": iso(central.now() - timedelta(hours=1)),
            "location": "parking lot", "description": "Someone pried open a car door in the lot."}
    e = refused("C7", team.call, "sam", "incident.create", **base)
    assert "attestation" in str(e)
    refused("C7", team.call, "sam", "incident.create", **base, attestation=False)
    assert state(central) == before

    text = team.call("ivy", "incident.attestation_text")["text"]  # anyone may read it
    for basis in ("race", "color", "religion", "sex", "age", "national origin", "veteran status", "disability"):
        assert basis in text
    incident = team.call("sam", "incident.create", **base, attestation=True)["incident"]
    assert incident["attestation"]["text"] == text
    assert incident["filed_by"] == team.ids["sam"] and incident["status"] == "open"
    assert parse_iso(incident["filed_at"]) <= central.now()
    [entry] = entries(central, "incident.create")
    assert entry["actor"] == team.ids["sam"] and entry["refs"] == {"incident": incident["id"]}
    assert entry["why"] == "criminal_activity" and entry["details"]["attested"] is True


def test_C9_incident_grounds_limited_to_the_policy(central, team):
    before = state(central)
    for grounds in ("suspicious_person", "loitering", "", "CRIMINAL_ACTIVITY"):
        with pytest.raises(BadRequest, match="grounds"):
            file_incident(team, grounds=grounds)
    assert state(central) == before
    for grounds in incidents.GROUNDS:
        assert file_incident(team, grounds=grounds)["grounds"] == grounds


def test_incident_input_errors_are_clear_and_change_nothing(central, team):
    before = state(central)
    cases = [
        ({"description": "too short"}, "at least 20"),
        ({"occurred_at": iso(central.now() + timedelta(hours=1))}, "future"),
        ({"occurred_at": "1999-12-31T23:00:00Z"}, "out of range"),
        ({"occurred_at": "yesterday"}, "not a valid date-time"),
        ({"location": ""}, "location"),
        ({"attestation": "yes"}, "true or false"),
        ({"colour": "red"}, "unknown argument"),
    ]
    for over, message in cases:
        with pytest.raises(BadRequest, match=message):
            file_incident(team, **over)
    assert state(central) == before


def test_C9_incident_visibility_director_all_staff_own_it_none(central, team):
    sams = file_incident(team, "sam")
    sues = file_incident(team, "sue")
    assert {i["id"] for i in team.call("director", "incident.list")["incidents"]} == {sams["id"], sues["id"]}
    listed = team.call("sam", "incident.list")["incidents"]
    assert [i["id"] for i in listed] == [sams["id"]] and "description" not in listed[0]  # read it with get
    assert team.call("sam", "incident.get", incident=sams["id"])["incident"]["description"] == sams["description"]
    before = state(central)
    refused("C9", team.call, "sue", "incident.get", incident=sams["id"])
    for op_name in ("incident.list", "incident.get", "incident.create"):
        with pytest.raises(Refused) as e:
            team.call("ivy", op_name, incident=sams["id"]) if op_name == "incident.get" else team.call("ivy", op_name)
        assert e.value.code == "forbidden"
    assert state(central) == before
    views = entries(central, "incident.view")
    assert [(v["actor"], v["target"]) for v in views] == [(team.ids["sam"], sams["id"])]


def test_C9_staff_see_an_incident_they_hold_a_grant_for(central, team):
    sams = file_incident(team, "sam")
    approve(team, request_review(team, sams))              # sam's own request and grant: not sue's to see
    request_review(team, sams)
    use = team.call("sue", "imminent.invoke", reason="man threatening staff with a bat", cameras=[CAM])["request"]
    assert sams["id"] not in {i["id"] for i in team.call("sue", "incident.list")["incidents"]}
    team.call("director", "imminent.link_incident", request=use["id"], incident=sams["id"])
    assert sams["id"] in {i["id"] for i in team.call("sue", "incident.list")["incidents"]}
    seen = team.call("sue", "incident.get", incident=sams["id"])
    assert [g["id"] for g in seen["grants"]] == [use["grant"]]
    assert [r["id"] for r in seen["requests"]] == [use["id"]]  # her own use, now linked


# --------------------------------------------------------------------------- requests (C9, C17)


def test_C9_review_needs_an_incident_with_allowed_grounds(central, team):
    incident = file_incident(team, "sam")
    occurred = parse_iso(incident["occurred_at"])
    add_camera(central, "new-cam", status="pending_placement")
    before = state(central)
    with pytest.raises(NotFound):
        request_review(team, incident, incident="inc-999999")
    with pytest.raises(BadRequest, match="path separators"):
        request_review(team, incident, incident="../inc-000001")
    with pytest.raises(NotFound, match="no camera"):
        request_review(team, incident, cameras=["nowhere"])
    refused("C6", request_review, team, incident, cameras=["new-cam"])
    refused("C9", request_review, team, incident, who="sue")  # not her incident
    refused("C9", request_review, team, incident, end=iso(central.now() + timedelta(minutes=5)))
    refused("C9", request_review, team, incident, start=iso(occurred - timedelta(hours=13)))
    refused("C9", request_review, team, incident, start=iso(occurred - timedelta(hours=25)),
            end=iso(occurred - timedelta(hours=24, minutes=30)))
    with pytest.raises(BadRequest, match="after start"):
        request_review(team, incident, start=incident["occurred_at"], end=incident["occurred_at"])
    with pytest.raises(BadRequest, match='"Reason" must be at least'):
        request_review(team, incident, reason="look")
    with pytest.raises(Refused) as e:
        team.call("ivy", "request.create", **review_args(incident))
    assert e.value.code == "forbidden"
    assert state(central) == before

    request = request_review(team, incident)
    assert request["status"] == "pending" and request["requested_by"] == team.ids["sam"]
    [entry] = entries(central, "request.create")
    assert entry["refs"] == {"incident": incident["id"], "request": request["id"]}
    assert entry["why"] == request["reason"] and entry["details"]["kind"] == "review"


def test_C17_monitor_is_future_live_monitoring_of_at_most_8_hours(central, team):
    incident = file_incident(team, "sam")
    now = central.now()
    before = state(central)
    refused("C17", request_review, team, incident, kind="monitor",
            start=iso(now + timedelta(hours=25)), end=iso(now + timedelta(hours=26)))
    refused("C17", request_review, team, incident, kind="monitor",
            start=iso(now + timedelta(hours=1)), end=iso(now + timedelta(hours=9, minutes=1)))
    refused("C17", request_review, team, incident, kind="monitor",
            start=iso(now - timedelta(hours=1)), end=iso(now + timedelta(hours=1)))
    assert state(central) == before
    request = request_review(team, incident, kind="monitor", start=iso(now), end=iso(now + timedelta(hours=8)))
    assert request["kind"] == "monitor"
    assert [r["id"] for r in team.call("sam", "request.list")["requests"]] == [request["id"]]
    assert team.call("sue", "request.list")["requests"] == []


def test_C17_request_then_director_decision_then_grant_used_by_requester_and_director_only(central, team):
    incident = file_incident(team, "sam")
    request = request_review(team, incident)
    assert team.call("director", "request.list", status="pending")["requests"][0]["id"] == request["id"]
    result = approve(team, request, expires_hours=48)
    grant = result["grant"]
    assert result["request"]["status"] == "approved" and result["request"]["grant"] == grant["id"]
    assert grant["holders"] == [team.ids["sam"]] and grant["granted_by"] == team.ids["director"]
    assert grant["kind"] == "review" and grant["incident"] == incident["id"] and grant["revoked_at"] is None
    assert (grant["cameras"], grant["start"], grant["end"]) == (request["cameras"], request["start"], request["end"])
    assert parse_iso(grant["expires_at"]) - parse_iso(grant["granted_at"]) == timedelta(hours=48)

    start, end = parse_iso(grant["start"]), parse_iso(grant["end"])
    inside = start + timedelta(minutes=10)
    for name in ("sam", "director"):
        assert incidents.check_grant(central, caller(team, name), grant["id"], CAM, inside, end)["id"] == grant["id"]
    for name in ("sue", "ivy"):
        refused("C17", incidents.check_grant, central, caller(team, name), grant["id"], CAM, inside)
    refused("C17", incidents.check_grant, central, None, grant["id"], CAM)
    refused("C9", incidents.check_grant, central, caller(team, "sam"), grant["id"], CAM2, inside)
    refused("C9", incidents.check_grant, central, caller(team, "sam"), grant["id"], CAM, start - timedelta(seconds=1))
    refused("C9", incidents.check_grant, central, caller(team, "sam"), grant["id"], CAM, inside, end + timedelta(seconds=1))
    refused("C9", incidents.check_grant, central, caller(team, "sam"), "grt-999999", CAM)
    refused("C9", incidents.check_grant, central, caller(team, "sam"), "../grt-000001", CAM)
    refused("C17", incidents.check_grant, central, caller(team, "sam"), grant["id"], CAM, live=True)

    # The approval holds the reviewed footage from retention (C12) and is fully audited.
    [hold] = central.records.all("holds")
    assert hold["id"] == result["hold"] and hold["kind"] == "incident" and hold["released_at"] is None
    assert (hold["cameras"], hold["start"], hold["end"]) == (grant["cameras"], grant["start"], grant["end"])
    assert hold["refs"] == {"incident": incident["id"], "request": request["id"]}
    [decided] = entries(central, "request.decide")
    assert decided["actor"] == team.ids["director"] and decided["why"] == "conduct described is specific"
    assert decided["refs"] == {"incident": incident["id"], "request": request["id"], "grant": grant["id"]}
    assert decided["details"]["decision"] == "approve" and decided["details"]["narrowed"] is False
    assert entries(central, "hold.place")[0]["target"] == hold["id"]
    assert not [a for a in central.records.all("alerts")]  # a decision alerts nobody

    before = state(central)
    refused("C17", approve, team, request)  # decided once only
    refused("C17", team.call, "director", "request.decide", request=request["id"], decision="deny", reason="not needed")
    with pytest.raises(Refused) as e:
        approve(team, request_review(team, incident), who="sam")
    assert e.value.code == "forbidden"
    assert [g["id"] for g in team.call("sam", "grant.list")["grants"]] == [grant["id"]]
    assert team.call("sue", "grant.list")["grants"] == []
    assert [g["active"] for g in team.call("director", "grant.list")["grants"]] == [True]
    assert state(central)[0]["grants"] == before[0]["grants"]


def test_C17_narrower_approval_works_and_wider_is_refused(central, team):
    incident = file_incident(team, "sam")
    request = request_review(team, incident, cameras=[CAM, CAM2])
    occurred = parse_iso(incident["occurred_at"])
    before = state(central)
    add_camera(central, "exit-3")
    refused("C17", approve, team, request, cameras=[CAM, "exit-3"])
    refused("C17", approve, team, request, start=iso(occurred - timedelta(minutes=31)))
    refused("C17", approve, team, request, end=iso(occurred + timedelta(minutes=31)))
    with pytest.raises(BadRequest):
        approve(team, request, start=iso(occurred), end=iso(occurred - timedelta(minutes=5)))
    for hours in (0, 337):
        with pytest.raises(BadRequest) as e:
            approve(team, request, expires_hours=hours)
        assert e.value.field == "expires_hours"
    assert state(central) == before

    narrow_start, narrow_end = occurred - timedelta(minutes=5), occurred + timedelta(minutes=15)
    grant = approve(team, request, cameras=[CAM2], start=iso(narrow_start), end=iso(narrow_end))["grant"]
    assert (grant["cameras"], grant["start"], grant["end"]) == ([CAM2], iso(narrow_start), iso(narrow_end))
    assert entries(central, "request.decide")[0]["details"]["narrowed"] is True
    sam = caller(team, "sam")
    assert incidents.check_grant(central, sam, grant["id"], CAM2, narrow_start, narrow_end)
    refused("C9", incidents.check_grant, central, sam, grant["id"], CAM, narrow_start)  # requested, not approved
    refused("C9", incidents.check_grant, central, sam, grant["id"], CAM2, occurred - timedelta(minutes=20))


def test_C17_denial_creates_no_grant(central, team):
    incident = file_incident(team, "sam")
    request = request_review(team, incident)
    before = state(central)
    with pytest.raises(BadRequest, match="approvals only"):
        team.call("director", "request.decide", request=request["id"], decision="deny", reason="too broad",
                  cameras=[CAM])
    with pytest.raises(BadRequest, match="decision"):
        team.call("director", "request.decide", request=request["id"], decision="maybe", reason="hmm")
    with pytest.raises(NotFound):
        team.call("director", "request.decide", request="req-999999", decision="deny", reason="none")
    with pytest.raises(BadRequest, match="path separators"):
        team.call("director", "request.decide", request="req/1", decision="deny", reason="none")
    assert state(central) == before
    result = team.call("director", "request.decide", request=request["id"], decision="deny",
                       reason="the description does not show conduct on camera")
    assert result["grant"] is None and result["request"]["status"] == "denied"
    assert central.records.all("grants") == [] and central.records.all("holds") == []
    [entry] = entries(central, "request.decide")
    assert entry["details"] == {"decision": "deny"} and "grant" not in entry["refs"]


def test_C17_expired_grant_refused(central, team):
    grant = approve(team, request_review(team, file_incident(team, "sam")), expires_hours=1)["grant"]
    sam = caller(team, "sam")
    assert incidents.check_grant(central, sam, grant["id"], CAM)
    central.clock.offset += timedelta(minutes=61)
    e = refused("C17", incidents.check_grant, central, sam, grant["id"], CAM)
    assert "expired" in str(e)
    refused("C17", incidents.check_grant, central, caller(team, "director"), grant["id"], CAM)
    assert team.call("sam", "grant.list", active_only=True)["grants"] == []
    assert team.call("sam", "grant.list")["grants"][0]["active"] is False


def test_C17_revoked_grant_refused(central, team):
    grant = approve(team, request_review(team, file_incident(team, "sam")))["grant"]
    with pytest.raises(Refused) as e:
        team.call("sam", "grant.revoke", grant=grant["id"], reason="done")
    assert e.value.code == "forbidden"
    revoked = team.call("director", "grant.revoke", grant=grant["id"], reason="review finished")["grant"]
    assert revoked["revoked_at"] and revoked["revoked_by"] == team.ids["director"]
    e = refused("C17", incidents.check_grant, central, caller(team, "sam"), grant["id"], CAM)
    assert "revoked" in str(e)
    before = state(central)
    with pytest.raises(Refused, match="already revoked"):
        team.call("director", "grant.revoke", grant=grant["id"], reason="again")
    with pytest.raises(NotFound):
        team.call("director", "grant.revoke", grant="grt-999999", reason="again")
    assert state(central) == before
    [entry] = entries(central, "grant.revoke")
    assert entry["refs"]["grant"] == grant["id"] and entry["why"] == "review finished"


def test_C2_acting_director_decides_others_requests_only_inside_her_period(central, team):
    now = central.now()
    team.call("director", "director.designate_acting", user=team.ids["sue"], start=iso(now - timedelta(hours=1)),
              end=iso(now + timedelta(hours=2)), why="Director on leave")
    sams_incident = file_incident(team, "sam")
    sams = request_review(team, sams_incident)
    sues = request_review(team, file_incident(team, "sue"), who="sue")
    grant = approve(team, sams, who="sue")["grant"]
    assert grant["granted_by"] == team.ids["sue"]
    entry = entries(central, "request.decide")[-1]
    assert entry["actor"] == team.ids["sue"] and entry["details"]["acting_director"] is True
    before = state(central)
    refused("C17", approve, team, sues, who="sue")
    assert state(central) == before
    # Inside her period she may use any grant, as the Director may.
    assert incidents.check_grant(central, caller(team, "sue"), grant["id"], CAM)

    later = request_review(team, sams_incident)
    central.clock.offset += timedelta(hours=3)
    with pytest.raises(Refused) as e:
        approve(team, later, who="sue")
    assert e.value.code == "forbidden"
    refused("C17", incidents.check_grant, central, caller(team, "sue"), grant["id"], CAM)
    assert approve(team, sues)["grant"]["holders"] == [team.ids["sue"]]  # the Director decides hers


def test_C18_C19_an_acting_director_neither_judges_her_own_incident_nor_reviews_her_own_imminent_use(central, team):
    """She stands in for the Director on other people's matters: the outcome of an incident she filed and
    the review of her own break-glass use are the Director's (C18, C19)."""
    now = central.now()
    team.call("director", "director.designate_acting", user=team.ids["sue"], start=iso(now - timedelta(hours=1)),
              end=iso(now + timedelta(hours=2)), why="Director on leave")
    sues = file_incident(team, "sue")
    use = team.call("sue", "imminent.invoke", reason="man threatening staff with a bat", cameras=[CAM])["request"]
    before = state(central)
    refused("C18", team.call, "sue", "incident.record_outcome", incident=sues["id"], outcome="no_action",
            notes="nothing to do")
    refused("C19", team.call, "sue", "imminent.review", request=use["id"], finding="justified", notes="it was")
    assert state(central) == before
    sams = file_incident(team, "sam")                       # someone else's: hers to judge
    team.call("sue", "incident.record_outcome", incident=sams["id"], outcome="no_action", notes="nothing to do")
    team.call("director", "imminent.review", request=use["id"], finding="justified", notes="a real threat")


def test_C20_an_acting_director_does_not_release_the_holds_on_her_own_matters(central, team):
    """How long an incident's recordings are kept is the Director's judgement (C20): an acting director
    releases the holds on other people's matters, never the one on her own break-glass use or on her own
    incident's review (her own conduct is on that footage, as in C18 and C19)."""
    now = central.now()
    team.call("director", "director.designate_acting", user=team.ids["sue"], start=iso(now - timedelta(hours=1)),
              end=iso(now + timedelta(hours=2)), why="Director on leave")
    her_use = team.call("sue", "imminent.invoke", reason="man threatening staff with a bat", cameras=[CAM])["hold"]
    hers = file_incident(team, "sue")
    her_review = approve(team, request_review(team, hers, who="sue"))["hold"]
    placed = team.call("director", "hold.place", kind="incident", incident=hers["id"], cameras=[CAM],
                       start=hers["occurred_at"], end=iso(now), why="her incident, kept longer")["hold"]["id"]
    sams_review = approve(team, request_review(team, file_incident(team, "sam")))["hold"]
    before = state(central)
    for hold in (her_use, her_review, placed):
        refused("C20", team.call, "sue", "hold.release", hold=hold, reason="no longer needed")
    assert state(central) == before
    released = team.call("sue", "hold.release", hold=sams_review, reason="the patron was identified")["hold"]
    assert released["released_by"] == team.ids["sue"]
    team.call("director", "hold.release", hold=her_use, reason="reviewed: a real threat")


# --------------------------------------------------------------------------- outcomes (C18)


def test_C18_outcome_recorded_by_director_only(central, team):
    incident = file_incident(team, "sam", grounds="criminal_activity")
    grant = approve(team, request_review(team, incident))["grant"]
    pending = request_review(team, incident)
    before = state(central)
    for who in ("sam", "ivy"):
        with pytest.raises(Refused) as e:
            team.call(who, "incident.record_outcome", incident=incident["id"], outcome="no_action", notes="none")
        assert e.value.code == "forbidden"
    with pytest.raises(BadRequest, match="corrective_action"):
        team.call("director", "incident.record_outcome", incident=incident["id"], outcome="corrective_action",
                  notes="seen on camera")
    with pytest.raises(BadRequest, match="outcome"):
        team.call("director", "incident.record_outcome", incident=incident["id"], outcome="punished", notes="x y")
    refused("C18", team.call, "director", "incident.close", incident=incident["id"])  # no outcome yet
    assert state(central) == before

    result = team.call("director", "incident.record_outcome", incident=incident["id"], outcome="corrective_action",
                       notes="the recording shows the patron breaking the door",
                       corrective_action="patron suspended for 30 days")
    outcome = result["incident"]["outcome"]
    assert outcome["outcome"] == "corrective_action" and outcome["by"] == team.ids["director"]
    assert outcome["corrective_action"] == "patron suspended for 30 days"
    [entry] = entries(central, "incident.record_outcome")
    assert entry["refs"] == {"incident": incident["id"]} and entry["details"]["outcome"] == "corrective_action"
    refused("C18", team.call, "director", "incident.record_outcome", incident=incident["id"],
            outcome="no_action", notes="changed my mind")

    closed = team.call("director", "incident.close", incident=incident["id"], notes="resolved")
    assert closed["incident"]["status"] == "closed" and closed["grants_revoked"] == [grant["id"]]
    assert closed["requests_cancelled"] == [pending["id"]]
    assert central.records.get("requests", pending["id"])["status"] == "cancelled"
    refused("C17", incidents.check_grant, central, caller(team, "sam"), grant["id"], CAM)
    refused("C9", request_review, team, incident)
    with pytest.raises(Refused, match="already closed"):
        team.call("director", "incident.close", incident=incident["id"])
    [entry] = entries(central, "incident.close")
    assert entry["details"]["grants_revoked"] == [grant["id"]] and entry["why"] == "resolved"


def test_C18_law_enforcement_referral_points_to_the_release_path(central, team):
    incident = file_incident(team, "sam", grounds="criminal_activity")
    result = team.call("director", "incident.record_outcome", incident=incident["id"],
                       outcome="law_enforcement_referral", notes="theft of a laptop, police report filed")
    assert "release.create" in result["next"] and "instrument" in result["next"]


# --------------------------------------------------------------------------- imminent danger (C19)


def test_C19_imminent_danger_grants_at_once_holds_and_alerts(central, team):
    before = state(central)
    with pytest.raises(BadRequest, match="reason"):
        team.call("sam", "imminent.invoke", reason="help", cameras=[CAM])
    with pytest.raises(BadRequest) as e:
        team.call("sam", "imminent.invoke", reason="a fight is starting in the lobby", cameras=[CAM], minutes_back=31)
    assert e.value.field == "minutes_back"
    with pytest.raises(NotFound):
        team.call("sam", "imminent.invoke", reason="a fight is starting in the lobby", cameras=["nowhere"])
    with pytest.raises(Refused) as e:
        team.call("ivy", "imminent.invoke", reason="a fight is starting in the lobby", cameras=[CAM])
    assert e.value.code == "forbidden"
    assert state(central) == before

    now = central.now()
    result = team.call("sam", "imminent.invoke", reason="a fight is starting in the lobby", cameras=[CAM],
                       minutes_back=10)
    grant, use = result["grant"], result["request"]
    assert grant["kind"] == "imminent_danger" and grant["granted_by"] is None and grant["holders"] == [team.ids["sam"]]
    start, end = parse_iso(grant["start"]), parse_iso(grant["end"])
    assert abs(start - (now - timedelta(minutes=10))) < timedelta(seconds=5)
    assert end - start == timedelta(minutes=70) and grant["expires_at"] == grant["end"]
    assert use["kind"] == "imminent_danger" and use["grant"] == grant["id"] and use["incident"] is None

    [hold] = central.records.all("holds")
    assert hold["kind"] == "imminent_danger" and hold["placed_by"] == "system"
    assert (hold["cameras"], hold["start"], hold["end"]) == ([CAM], grant["start"], grant["end"])
    assert hold["refs"] == {"request": use["id"]}
    [alert] = central.records.all("alerts")
    assert alert["kind"] == "imminent_danger" and alert["id"] == result["alert"] and alert["request"] == use["id"]
    [entry] = entries(central, "imminent.invoke")
    assert entry["actor"] == team.ids["sam"] and entry["refs"] == {"request": use["id"], "grant": grant["id"]}
    assert entry["why"] == "a fight is starting in the lobby"
    assert entries(central, "hold.place")[0]["target"] == hold["id"]

    # Live view and recent footage through it, the archive still sealed (footage checks the seal).
    assert central.custody.is_sealed
    sam = caller(team, "sam")
    assert incidents.check_grant(central, sam, grant["id"], CAM, live=True)
    assert incidents.check_grant(central, sam, grant["id"], CAM, start + timedelta(minutes=1), now)
    refused("C17", incidents.check_grant, central, caller(team, "sue"), grant["id"], CAM, live=True)
    refused("C9", incidents.check_grant, central, sam, grant["id"], CAM, start - timedelta(minutes=1))
    refused("C19", approve, team, use)  # self-granted: nothing to decide
    central.clock.offset += timedelta(minutes=61)
    refused("C17", incidents.check_grant, central, sam, grant["id"], CAM, live=True)


def test_C19_incident_owed_within_24_hours_and_director_reviews(central, team):
    use = team.call("sam", "imminent.invoke", reason="man threatening staff with a bat", cameras=[CAM])["request"]
    central.clock.offset += timedelta(hours=23)
    assert incidents.alert_overdue_incidents(central) == []
    central.clock.offset += timedelta(hours=2)
    assert incidents.alert_overdue_incidents(central) == [use["id"]]
    assert incidents.alert_overdue_incidents(central) == []  # once only
    assert [a["kind"] for a in central.records.all("alerts")] == ["imminent_danger", "imminent_no_incident"]
    assert entries(central, "imminent.incident_overdue")[0]["refs"]["request"] == use["id"]

    sues = file_incident(team, "sue")
    before = state(central)
    refused("C19", team.call, "sue", "imminent.link_incident", request=use["id"], incident=sues["id"])
    refused("C19", team.call, "sam", "imminent.link_incident", request=use["id"], incident=sues["id"])
    # Someone else's request is refused before anything about it is said (the rule table's scope).
    refused("C19", team.call, "sam", "imminent.link_incident", request=request_review(team, sues, who="sue")["id"],
            incident=sues["id"])
    before = state(central)
    with pytest.raises(NotFound):
        team.call("sam", "imminent.link_incident", request=use["id"], incident="inc-999999")
    assert state(central) == before

    sams = file_incident(team, "sam", grounds="criminal_activity", hours_ago=1)
    with pytest.raises(BadRequest, match="not an imminent-danger use"):
        team.call("sam", "imminent.link_incident", request=request_review(team, sams, who="sam")["id"],
                  incident=sams["id"])
    linked = team.call("sam", "imminent.link_incident", request=use["id"], incident=sams["id"])["request"]
    assert linked["incident"] == sams["id"] and central.records.get("grants", use["grant"])["incident"] == sams["id"]
    refused("C19", team.call, "director", "imminent.link_incident", request=use["id"], incident=sues["id"])
    [entry] = entries(central, "imminent.link_incident")
    assert entry["refs"] == {"request": use["id"], "incident": sams["id"], "grant": use["grant"]}

    with pytest.raises(Refused) as e:
        team.call("sam", "imminent.review", request=use["id"], finding="justified", notes="it was")
    assert e.value.code == "forbidden"
    reviewed = team.call("director", "imminent.review", request=use["id"], finding="not_justified",
                         notes="the man was leaving; no danger shown")["request"]
    assert reviewed["review"]["finding"] == "not_justified" and reviewed["review"]["by"] == team.ids["director"]
    refused("C19", team.call, "director", "imminent.review", request=use["id"], finding="justified", notes="again")
    [entry] = entries(central, "imminent.review")
    assert entry["details"] == {"finding": "not_justified"} and entry["refs"]["incident"] == sams["id"]


def test_C19_the_report_owed_after_a_use_is_an_open_incident_not_an_old_closed_one(central, team):
    """The incident report a use owes is about this danger: an old report, its incident closed (its
    grants ended), does not pay the debt, nor does it give the closed incident a live grant again."""
    old = file_incident(team, "sam", hours_ago=48)
    team.call("director", "incident.record_outcome", incident=old["id"], outcome="no_action", notes="resolved")
    team.call("director", "incident.close", incident=old["id"])
    use = team.call("sam", "imminent.invoke", reason="man threatening staff with a bat", cameras=[CAM])["request"]
    before = state(central)
    for who in ("sam", "director"):
        refused("C19", team.call, who, "imminent.link_incident", request=use["id"], incident=old["id"])
    assert state(central) == before
    assert central.records.get("grants", use["grant"])["incident"] is None
    new = file_incident(team, "sam", hours_ago=0)
    assert team.call("sam", "imminent.link_incident", request=use["id"], incident=new["id"])["request"]["incident"] \
        == new["id"]


async def test_C19_periodic_check_alerts_the_director_while_serving(central, people):
    add_camera(central, CAM)
    use = people.call("sam", "imminent.invoke", reason="man threatening staff with a bat", cameras=[CAM])["request"]
    central.clock.offset += timedelta(hours=25)
    task = asyncio.create_task(incidents.periodic(central)[0])
    try:
        for _ in range(200):  # wait for the first round (liveness bound, not a speed check)
            if any(a["kind"] == "imminent_no_incident" for a in central.records.all("alerts")):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert [a["kind"] for a in central.records.all("alerts")] == ["imminent_danger", "imminent_no_incident"]
    assert central.records.get("requests", use["id"])["overdue_alerted_at"]


# --------------------------------------------------------------------------- roles and bad input


def test_C8_it_is_refused_every_incident_operation(central, team):
    incident = file_incident(team, "sam")
    before = state(central)
    open_to_it = {"incident.attestation_text"}
    mine = [name for name, o in OPS.items() if o.func.__module__ == "appliance.rules.incidents"]
    assert len(mine) >= 14
    for name in sorted(set(mine) - open_to_it):
        with pytest.raises(Refused) as e:
            team.call("ivy", name, incident=incident["id"])
        assert e.value.code == "forbidden", name
    assert state(central) == before
    refused = central.audit.query(action_prefix="access.refused")        # each attempt, for a breach check (C16)
    assert [(e["actor"], e["details"]["operation"], e["target"]) for e in refused] == [
        (team.ids["ivy"], name, incident["id"]) for name in sorted(set(mine) - open_to_it)]


def test_bad_and_unknown_ids_give_clear_errors_and_change_nothing(central, team):
    file_incident(team, "sam")
    before = state(central)
    for op_name, args in [("incident.get", {"incident": "../../etc/passwd"}),
                          ("incident.get", {"incident": "inc/1"}),
                          ("grant.revoke", {"grant": "..", "reason": "bad"}),
                          ("incident.close", {"incident": "", "notes": "x"}),
                          ("imminent.review", {"request": "a b", "finding": "justified", "notes": "x y z"})]:
        with pytest.raises(BadRequest):
            team.call("director", op_name, **args)
    with pytest.raises(BadRequest, match="invalid id"):
        team.call("sam", "imminent.invoke", reason="a fight is starting here", cameras=["cam/../x"])
    for op_name, args in [("incident.get", {"incident": "inc-424242"}),
                          ("incident.record_outcome", {"incident": "inc-424242", "outcome": "no_action", "notes": "x y"}),
                          ("grant.revoke", {"grant": "grt-424242", "reason": "gone"}),
                          ("imminent.review", {"request": "req-424242", "finding": "justified", "notes": "x y"})]:
        with pytest.raises(NotFound, match="424242"):
            team.call("director", op_name, **args)
    assert state(central) == before
