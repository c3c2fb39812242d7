"""Reports: monitoring oversight per staff member (C7), the transparency summary with
unfiled search warrants withheld (C13), and audit queries, through the API."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from appliance.custody import keys
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.registry import iso, parse_iso
from test_incidents import CAM, add_camera, approve, file_incident, request_review
from test_retention import Camera


@pytest.fixture(autouse=True)
def light_argon2(monkeypatch):
    """Real Argon2id at libsodium's minimum cost (see test_incidents)."""
    from nacl.pwhash import argon2id

    monkeypatch.setattr(keys, "ARGON2_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(keys, "ARGON2_MEMLIMIT", argon2id.MEMLIMIT_MIN)


@pytest.fixture
def history(central, people):
    """Sam: an incident, an approved review, a denied monitor request, an unjustified
    imminent-danger use, a live view and a footage view. Sue: one refused footage attempt."""
    for name in ("sam", "sue", "ivy"):
        people.login(name)
    add_camera(central, CAM)
    incident = file_incident(people, "sam")
    review = request_review(people, incident)
    grant = approve(people, review)["grant"]
    now = central.now()
    monitor = request_review(people, incident, kind="monitor", start=iso(now + timedelta(hours=1)),
                             end=iso(now + timedelta(hours=2)))
    people.call("director", "request.decide", request=monitor["id"], decision="deny", reason="not specific enough")
    use = people.call("sam", "imminent.invoke", reason="shouting match near the desk", cameras=[CAM])["request"]
    people.call("director", "imminent.review", request=use["id"], finding="not_justified", notes="no danger shown")
    people.unseal()
    people.call("sam", "footage.segments", grant=grant["id"], camera=CAM)  # a view (no segments stored)
    with pytest.raises(Refused):
        people.call("sue", "footage.segments", grant=grant["id"], camera=CAM)  # refused: not her grant
    people.call("sam", "live.open", camera=CAM, purpose="watching the desk argument", grant=use["grant"])
    return {"incident": incident, "review": review, "grant": grant, "monitor": monitor, "use": use}


def test_C7_oversight_report_per_staff_member(central, people, history):
    report = people.call("director", "report.oversight")
    by_name = {p["name"]: p for p in report["staff"]}
    assert set(by_name) == {"sam", "sue"}  # staff only: not the Director, not IT
    sam, sue = by_name["sam"], by_name["sue"]
    assert sam["counts"] == {"incidents": 1, "requests": 2, "approved": 1, "denied": 1, "pending": 0,
                             "imminent_danger_uses": 1, "imminent_not_justified": 1,
                             "imminent_without_incident": 1, "live_views": 1, "footage_views": 1,
                             "footage_refused": 0}
    assert sue["counts"]["footage_refused"] == 1 and sue["footage"][0]["action"] == "footage.refused"
    assert {(r["kind"], r["status"]) for r in sam["requests"]} == {("review", "approved"), ("monitor", "denied")}
    assert sam["imminent_danger"][0]["review"] == "not_justified"
    assert sam["footage"][0]["refs"]["grant"] == history["grant"]["id"]
    assert sam["live_views"][0]["grant"] == history["use"]["grant"]
    assert sum(sue["counts"].values()) == 1

    only_sue = people.call("director", "report.oversight", user=people.ids["sue"])["staff"]
    assert [p["name"] for p in only_sue] == ["sue"]
    logged = central.audit.query(action_prefix="report.oversight")
    assert [(e["actor"], e["details"]["user"]) for e in logged] == [(people.ids["director"], None),
                                                                    (people.ids["director"], people.ids["sue"])]
    before = central.audit.next_seq
    for who in ("sam", "ivy"):
        with pytest.raises(Refused) as e:
            people.call(who, "report.oversight")
        assert e.value.code == "forbidden"
    with pytest.raises(NotFound):
        people.call("director", "report.oversight", user="usr-999999")
    with pytest.raises(BadRequest):
        people.call("director", "report.oversight", user="../usr-000001")
    with pytest.raises(BadRequest, match="until"):
        people.call("director", "report.oversight", since="2026-01-02T00:00:00Z", until="2026-01-01T00:00:00Z")
    # Nothing written but the two refusals by role, for a breach check (C16).
    assert [(e["actor"], e["action"], e["details"]["operation"]) for e in central.audit.query()[before:]] == [
        (people.ids[who], "access.refused", "report.oversight") for who in ("sam", "ivy")]


def test_C7_oversight_window_excludes_older_activity(central, people, history):
    later = central.now() + timedelta(days=2)
    central.clock.offset += timedelta(days=2)
    report = people.call("director", "report.oversight", since=iso(later - timedelta(hours=1)))
    sam = next(p for p in report["staff"] if p["name"] == "sam")
    assert sam["counts"]["incidents"] == 0 and sam["counts"]["requests"] == 0


def _instrument(people, kind, **over):
    now = people.central.now()
    args = {"kind": kind, "reference": f"{kind}-ref-7", "court": "Lucas County District Court",
            "issued_on": now.date().isoformat(), "received_on": now.date().isoformat(),
            "description": "footage of the parking lot", "cameras": [CAM],
            "start": iso(now - timedelta(hours=3)), "end": iso(now - timedelta(hours=1))} | over
    return people.call("director", "instrument.record", **args)["instrument"]


def test_C13_transparency_counts_only_with_unfiled_warrants_withheld(central, people, history):
    today = central.now().date()
    _instrument(people, "search_warrant")
    filed = _instrument(people, "search_warrant")
    people.call("director", "instrument.mark_filed", instrument=filed["id"], filed_on=today.isoformat())
    subpoena = _instrument(people, "subpoena")
    Camera(central, CAM, enrolled=True).record(parse_iso(subpoena["start"]))     # the footage released
    people.call("director", "counsel.record", instrument=subpoena["id"], counsel="A. Counsel",
                consulted_on=today.isoformat(), summary="comply with the subpoena")
    people.call("director", "release.create", instrument=subpoena["id"], cameras=[CAM],
                start=subpoena["start"], end=subpoena["end"], recipient="County Sheriff, Det. Roe")

    week = {"since": (today - timedelta(days=7)).isoformat(), "until": today.isoformat()}
    report = people.call("ivy", "report.transparency", **week)  # any role
    assert report["incidents"] == {"total": 1, "by_grounds": {"criminal_activity": 0, "litigation": 0,
                                                              "conduct_violation": 1}}
    assert report["requests"] == {"review": 1, "monitor": 1}
    assert (report["approvals"], report["denials"], report["imminent_danger_uses"], report["releases"]) == (1, 1, 1, 1)
    assert report["instruments"] == {"withheld": 1, "search_warrant": 1, "subpoena": 1}
    text = json.dumps(report)
    for secret in ("ref-7", "County", "inc-", "usr-", "ins-", "Roe", "shouting"):
        assert secret not in text  # counts only: no ids, names, references or reasons
    assert people.call("sam", "report.transparency", **week) == report
    assert central.audit.query(action_prefix="report.transparency")[0]["actor"] == people.ids["ivy"]

    old = people.call("director", "report.transparency", since="2020-01-01", until="2020-12-31")
    assert old["incidents"]["total"] == 0 and old["instruments"] == {"withheld": 0} and old["releases"] == 0
    before = central.audit.next_seq
    for bad in ({"since": "2026-02-30", "until": "2026-03-01"}, {"since": "1999-01-01", "until": "2000-01-01"},
                {"since": today.isoformat(), "until": (today - timedelta(days=1)).isoformat()}):
        with pytest.raises(BadRequest):
            people.call("director", "report.transparency", **bad)
    assert central.audit.next_seq == before


def test_C13_a_release_under_a_sealed_warrant_is_not_counted_until_it_is_filed(central, people):
    """Counted, a release under an unfiled warrant would tell every staff member and IT that the
    library complied with a warrant (and on which days): it joins the count once the warrant is filed."""
    add_camera(central, CAM)
    warrant = _instrument(people, "search_warrant")
    Camera(central, CAM, enrolled=True).record(parse_iso(warrant["start"]))      # the footage released
    today = central.now().date().isoformat()
    people.call("director", "counsel.record", instrument=warrant["id"], counsel="A. Counsel", consulted_on=today,
                summary="comply, quietly")
    people.call("director", "release.create", instrument=warrant["id"], cameras=[CAM], start=warrant["start"],
                end=warrant["end"], recipient="State police")
    day = {"since": today, "until": today}
    assert people.call("sam", "report.transparency", **day)["releases"] == 0
    people.call("director", "instrument.mark_filed", instrument=warrant["id"], filed_on=today)
    assert people.call("sam", "report.transparency", **day)["releases"] == 1


def test_audit_query_for_the_director_only_with_filters(central, people, history):
    sam = people.ids["sam"]
    found = people.call("director", "audit.query", action_prefix="request.", actor=sam)
    assert [e["action"] for e in found["entries"]] == ["request.create", "request.create"]
    assert found["total"] == 2 and found["truncated"] is False
    limited = people.call("director", "audit.query", action_prefix="request", limit=1)
    assert limited["total"] == 4 and limited["truncated"] and limited["entries"][0]["action"] == "request.decide"
    future = people.call("director", "audit.query", since=iso(central.now() + timedelta(days=1)))
    assert future["entries"] == []
    logged = central.audit.query(action_prefix="audit.query")
    assert len(logged) == 3 and logged[0]["details"]["action_prefix"] == "request."

    before = central.audit.next_seq
    for who in ("sam", "ivy"):
        with pytest.raises(Refused) as e:
            people.call(who, "audit.query")
        assert e.value.code == "forbidden"
    for bad in ({"action_prefix": "../x"}, {"actor": "a/b"}, {"limit": 0}, {"since": "not a time"},
                {"since": iso(central.now()), "until": iso(central.now() - timedelta(hours=1))}):
        with pytest.raises(BadRequest):
            people.call("director", "audit.query", **bad)
    # Nothing written but the two refusals by role, for a breach check (C16).
    assert [(e["actor"], e["action"], e["details"]["operation"]) for e in central.audit.query()[before:]] == [
        (people.ids[who], "access.refused", "audit.query") for who in ("sam", "ivy")]
