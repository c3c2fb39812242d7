"""Legal instruments, counsel and releases to law enforcement (C3, C4, C12, C13, C14, C16)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.registry import iso
from test_retention import Camera

EXPORT_FIELDS = {"id", "kind", "instrument", "incident", "cameras", "start", "end", "recipient", "created_by",
                 "created_at", "label", "retrieved_at", "retrieved_note"}


@pytest.fixture
def court(central, people):
    """Two cameras, an incident, and a helper to record instruments as the Director."""
    now = central.now()
    a, b = Camera(central, "cam-a"), Camera(central, "cam-b")
    central.records.insert("incidents", {"grounds": "criminal_activity", "summary": "laptop stolen"},
                           id="inc-000001")

    class Court:
        cameras = {"cam-a": a, "cam-b": b}
        start = now - timedelta(days=3)
        end = now - timedelta(days=2)

        def record(self, who="director", **over):
            args = dict(kind="subpoena", reference="SUB-2026-0117", court="Lucas County District Court",
                        issued_on=(now - timedelta(days=2)).date().isoformat(),
                        received_on=(now - timedelta(days=1)).date().isoformat(),
                        description="All recordings of the main entrance on the afternoon of the theft",
                        cameras=["cam-a"], start=iso(self.start), end=iso(self.end), incident="inc-000001")
            args.update(over)
            return people.call(who, "instrument.record", **args)

        def counsel(self, instrument_id, who="director"):
            return people.call(who, "counsel.record", instrument=instrument_id, counsel="J. Ortiz, library attorney",
                               consulted_on=now.date().isoformat(),
                               summary="Valid on its face; release only the named camera and hours.")

        def release(self, instrument_id, who="director", **over):
            args = dict(instrument=instrument_id, cameras=["cam-a"], start=iso(self.start + timedelta(hours=1)),
                        end=iso(self.start + timedelta(hours=2)),
                        recipient="Chariton Police Department, Det. R. Lane", notes="hand-delivered on USB")
            args.update(over)
            return people.call(who, "release.create", **args)

    for camera in (a, b):                  # footage for the releases below (an empty window is refused)
        camera.record(Court.start + timedelta(hours=1, minutes=30))
    return Court()


def acting(central, people, name="sue"):
    """Designate a staff member acting director for today."""
    people.login(name)
    now = central.now()
    people.call("director", "director.designate_acting", user=people.ids[name], start=iso(now - timedelta(hours=1)),
                end=iso(now + timedelta(days=1)), why="Director on leave")


# --------------------------------------------------------------------------- C3: no release without an instrument


def test_C3_release_requires_instrument(central, people, court):
    window = dict(cameras=["cam-a"], start=iso(court.start), end=iso(court.end), recipient="Sheriff's office, Sgt. Kim")
    with pytest.raises(Refused) as e:
        people.call("director", "release.create", **window)
    assert e.value.clause == "C3" and "instrument" in str(e.value)
    with pytest.raises(Refused) as e:
        people.call("director", "release.create", instrument="ins-000099", **window)
    assert e.value.clause == "C3"
    for who in ("sam", "ivy"):                       # staff and IT never release
        with pytest.raises(Refused) as e:
            people.call(who, "release.create", instrument="ins-000099", **window)
        assert e.value.code == "forbidden"
    assert central.records.all("exports") == [] and central.records.all("releases") == []
    assert not central.audit.query(action_prefix="release")


def test_C3_release_stays_inside_the_instruments_scope(central, people, court):
    ins = court.record()["instrument"]
    court.counsel(ins["id"])
    before = central.audit.next_seq
    for over in ({"cameras": ["cam-b"]},                                             # camera not named
                 {"start": iso(court.start - timedelta(minutes=1))},                 # before the scope
                 {"end": iso(court.end + timedelta(seconds=1))}):                    # after it
        with pytest.raises(Refused) as e:
            court.release(ins["id"], **over)
        assert e.value.clause == "C3" and "scope" in str(e.value)
    with pytest.raises(NotFound):
        court.release(ins["id"], cameras=["cam-zz"])
    with pytest.raises(BadRequest):
        court.release(ins["id"], end=iso(court.start))                               # empty window
    assert central.records.all("exports") == [] and central.audit.next_seq == before


# --------------------------------------------------------------------------- C14 / C13: counsel first


@pytest.mark.parametrize("kind", ["subpoena", "court_order"])
def test_C14_release_blocked_until_counsel_consulted(central, people, court, kind):
    ins = court.record(kind=kind)["instrument"]
    with pytest.raises(Refused) as e:
        court.release(ins["id"])
    assert e.value.clause == "C14" and "counsel" in str(e.value)
    assert central.records.all("exports") == []

    consultation = court.counsel(ins["id"])["counsel"]
    assert central.audit.query(action_prefix="counsel.record")[-1]["refs"] == {
        "instrument": ins["id"], "incident": "inc-000001"}
    done = court.release(ins["id"])
    release, export = done["release"], done["export"]

    [registered] = central.records.all("exports")                     # the export register (C4, C16)
    assert set(registered) == EXPORT_FIELDS
    assert registered["kind"] == "release" and registered["label"].startswith("CONFIDENTIAL")
    assert registered["instrument"] == ins["id"] and registered["incident"] == "inc-000001"
    assert registered["created_by"] == people.ids["director"] and registered["retrieved_at"] is None
    assert release["export"] == export["id"] == registered["id"] and release["counsel"] == [consultation["id"]]
    entry = central.audit.query(action_prefix="release.create")[-1]
    assert entry["refs"] == {"instrument": ins["id"], "incident": "inc-000001", "export": export["id"]}
    assert entry["actor"] == people.ids["director"] and entry["details"]["recipient"].startswith("Chariton")
    assert people.call("director", "release.list")["releases"][0]["id"] == release["id"]


def test_C14_counsel_about_another_instrument_does_not_open_a_release(central, people, court):
    consulted = court.record(reference="SUB-2026-0117")["instrument"]
    other = court.record(reference="SUB-2026-0200", kind="court_order")["instrument"]
    court.counsel(consulted["id"])
    with pytest.raises(Refused) as e:
        court.release(other["id"])            # counsel was consulted about the first, not this one
    assert e.value.clause == "C14" and "counsel" in str(e.value)
    assert central.records.all("exports") == [] and central.records.all("releases") == []
    about_other = court.counsel(other["id"])["counsel"]
    assert court.release(other["id"])["release"]["counsel"] == [about_other["id"]]


def test_C13_warrant_release_blocked_until_counsel_consulted(central, people, court):
    ins = court.record(kind="search_warrant", reference="SW-88")["instrument"]
    with pytest.raises(Refused) as e:
        court.release(ins["id"])
    assert e.value.clause == "C13"
    court.counsel(ins["id"])
    assert court.release(ins["id"])["export"]["kind"] == "release"


def test_a_release_of_a_window_with_no_footage_is_refused_at_once(central, people, court):
    """Accepted, it would fail only at release.build with nothing to package: refused when it is asked for."""
    cam_c = Camera(central, "cam-c")                    # enrolled, nothing stored yet
    ins = court.record(cameras=[])["instrument"]
    court.counsel(ins["id"])
    before = central.audit.next_seq
    early = dict(start=iso(court.start), end=iso(court.start + timedelta(hours=1)))   # before cam-a's first segment
    for cameras, named in ((["cam-c"], "cam-c"), (["cam-a", "cam-c"], "cam-a, cam-c")):
        with pytest.raises(BadRequest) as refused:
            court.release(ins["id"], cameras=cameras, **early)
        assert str(refused.value).startswith(f"no footage is stored for {named} from "), str(refused.value)
    assert central.records.all("releases") == [] and central.records.all("exports") == []
    assert central.audit.next_seq == before
    cam_c.record(court.start + timedelta(minutes=10))   # one camera with footage in the window is enough
    release = court.release(ins["id"], cameras=["cam-a", "cam-c"], **early)["release"]
    assert release["segments_at_approval"] == 1


def test_release_record_holds_what_a_package_builder_needs(central, people, court):
    cam = court.cameras["cam-a"]
    for minutes in (55, 65, 75, 125):                   # two inside the window, one straddling its start
        cam.record(court.start + timedelta(minutes=minutes))
    cam.record(central.now())
    ins = court.record()["instrument"]
    court.counsel(ins["id"])
    release = court.release(ins["id"])["release"]
    assert release["segments_at_approval"] == 4         # those three and the fixture's own at 90 minutes
    assert release["package"]["status"] == "not_built"
    for field in ("instrument", "cameras", "start", "end", "recipient", "counsel", "created_by", "created_at",
                  "label", "export"):
        assert release[field], field


# --------------------------------------------------------------------------- C12: an instrument holds its scope


def test_C12_recording_an_instrument_holds_its_scope(central, people, court):
    result = court.record(cameras=[])
    ins, hold = result["instrument"], central.records.get("holds", result["hold"])
    assert hold["kind"] == "instrument" and hold["cameras"] == [] and hold["released_at"] is None
    assert (hold["start"], hold["end"]) == (ins["start"], ins["end"])
    assert hold["refs"] == {"instrument": ins["id"], "incident": "inc-000001"}
    assert ins["hold"] == hold["id"]
    assert central.audit.query(action_prefix="instrument.record")[-1]["target"] == ins["id"]
    assert central.audit.query(action_prefix="hold.place")[-1]["refs"]["instrument"] == ins["id"]


# --------------------------------------------------------------------------- C13: sealed warrants


def test_C13_warrant_details_director_only_until_filed(central, people, court):
    secret = "SW-2026-0042 (Judge Hale)"
    ins = court.record(kind="search_warrant", reference=secret, description="Entrance, 14:00-15:00")["instrument"]
    court.counsel(ins["id"])
    assert people.call("director", "instrument.get", instrument=ins["id"])["instrument"]["reference"] == secret

    for who in ("sam", "ivy"):                         # staff and IT see no instruments at all
        for name, extra in (("instrument.list", {}), ("instrument.get", {"instrument": ins["id"]})):
            with pytest.raises(Refused) as e:
                people.call(who, name, **extra)
            assert e.value.code == "forbidden"

    acting(central, people)                            # an acting director sees only that it exists
    [seen] = people.call("sue", "instrument.list")["instruments"]
    assert seen["sealed"] and "reference" not in seen and "description" not in seen
    got = people.call("sue", "instrument.get", instrument=ins["id"])
    assert set(got) == {"instrument"} and secret not in repr(got)
    [hold] = people.call("sue", "hold.list")["holds"]
    assert hold["sealed"] and "start" not in hold and "why" not in hold
    [window] = people.call("ivy", "retention.status")["holds"]
    assert window["sealed"] and "cameras" not in window
    refusals = [("counsel.record", dict(instrument=ins["id"], counsel="A. Lawyer", consulted_on=central.now().date().isoformat(),
                                        summary="advice")),
                ("release.create", dict(instrument=ins["id"], cameras=["cam-a"], start=iso(court.start),
                                        end=iso(court.end), recipient="State police")),
                ("hold.release", dict(hold=hold["id"], reason="no longer needed")),
                ("instrument.mark_filed", dict(instrument=ins["id"], filed_on=central.now().date().isoformat()))]
    for name, args in refusals:
        with pytest.raises(Refused) as e:
            people.call("sue", name, **args)
        assert e.value.clause == "C13", name
    court.release(ins["id"])                           # the Director herself may release under it
    [export] = people.call("sue", "export.list")["exports"]
    assert export["sealed"] and "recipient" not in export
    assert secret not in central.paths.audit.joinpath("audit.jsonl").read_text()   # the audit log is readable by her

    filed = people.call("director", "instrument.mark_filed", instrument=ins["id"],
                        filed_on=central.now().date().isoformat(), note="return filed by the sheriff")["instrument"]
    assert not filed["sealed"] and filed["filed_by"] == people.ids["director"]
    assert central.audit.query(action_prefix="instrument.mark_filed")[-1]["refs"]["instrument"] == ins["id"]
    assert people.call("sue", "instrument.get", instrument=ins["id"])["instrument"]["reference"] == secret
    assert people.call("sue", "export.list")["exports"][0]["recipient"].startswith("Chariton")
    with pytest.raises(Refused):
        people.call("director", "instrument.mark_filed", instrument=ins["id"], filed_on=central.now().date().isoformat())


def test_C13_the_incident_a_sealed_warrant_concerns_stays_out_of_the_audit_log(central, people, court):
    """The API shows an acting director only that a sealed warrant exists, not the incident it concerns;
    the audit log she reads (audit.query) may say no more. Once filed, entries name the incident again."""
    ins = court.record(kind="search_warrant", reference="SW-2026-0099")["instrument"]   # for inc-000001
    court.counsel(ins["id"])
    export = court.release(ins["id"])["export"]
    people.call("director", "hold.place", kind="instrument", instrument=ins["id"], incident="inc-000001",
                cameras=["cam-a"], start=iso(court.start), end=iso(court.end), why="keep the entrance too")
    people.call("director", "export.mark_retrieved", export=export["id"], note="the copy came back")
    acting(central, people)
    assert set(people.call("sue", "instrument.get", instrument=ins["id"])["instrument"]) == {
        "id", "kind", "recorded_at", "sealed", "note"}
    entries = people.call("sue", "audit.query")["entries"]
    under = [e for e in entries if e["refs"].get("instrument") == ins["id"]]
    assert {e["action"] for e in under} == {"instrument.record", "hold.place", "counsel.record", "release.create",
                                            "export.mark_retrieved", "instrument.view"}
    assert "inc-000001" not in str(entries)

    people.call("director", "instrument.mark_filed", instrument=ins["id"], filed_on=central.now().date().isoformat())
    filed = court.release(ins["id"])
    entry = central.audit.query(action_prefix="release.create")[-1]
    assert entry["target"] == filed["release"]["id"] and entry["refs"]["incident"] == "inc-000001"


def test_C13_reading_an_instrument_is_audited_and_a_sealed_warrants_entry_names_no_more(central, people, court):
    """instrument.get is audited as incident.get is; under a sealed warrant the entry names the
    instrument and nothing the acting director reading the log may not know (C13)."""
    secret = "SW-2026-0123 (Judge Hale)"
    order = court.record(kind="court_order", reference="CO-2026-0007")["instrument"]["id"]
    warrant = court.record(kind="search_warrant", reference=secret)["instrument"]["id"]
    people.call("director", "instrument.get", instrument=order)
    people.call("director", "instrument.get", instrument=warrant)
    acting(central, people)
    people.call("sue", "instrument.get", instrument=warrant)
    with pytest.raises(NotFound):
        people.call("director", "instrument.get", instrument="ins-999999")

    views = central.audit.query(action_prefix="instrument.view")
    director, sue = people.ids["director"], people.ids["sue"]
    assert [(e["actor"], e["role"], e["target"], e["refs"], e["details"]) for e in views] == [
        (director, "director", order, {"instrument": order, "incident": "inc-000001"}, {"kind": "court_order"}),
        (director, "director", warrant, {"instrument": warrant}, {"kind": "search_warrant", "sealed": True}),
        (sue, "staff", warrant, {"instrument": warrant},
         {"kind": "search_warrant", "sealed": True, "acting_director": True}),
    ]
    assert secret not in str(people.call("sue", "audit.query", action_prefix="instrument.")["entries"])

    people.call("director", "instrument.mark_filed", instrument=warrant, filed_on=central.now().date().isoformat())
    people.call("sue", "instrument.get", instrument=warrant)      # filed: the entry names its incident again
    assert central.audit.query(action_prefix="instrument.view")[-1]["refs"] == {
        "instrument": warrant, "incident": "inc-000001"}


def test_C13_a_copy_retrieved_under_a_sealed_warrant_keeps_from_whom_out_of_the_audit_log(central, people, court):
    """export.mark_retrieved's note says how and from whom: under a sealed warrant, the recipient the
    API hides from an acting director. Its audit entry says only that a copy came back."""
    ins = court.record(kind="search_warrant", reference="SW-2026-0100")["instrument"]
    court.counsel(ins["id"])
    export = court.release(ins["id"])["export"]
    people.call("director", "export.mark_retrieved", export=export["id"], note="Det. R. Lane brought the USB back")
    acting(central, people)
    [entry] = people.call("sue", "audit.query", action_prefix="export.mark_retrieved")["entries"]
    assert entry["target"] == export["id"] and "Lane" not in str(entry)
    assert people.call("director", "export.list")["exports"][0]["retrieved_note"].startswith("Det. R. Lane")


def test_C13_an_acting_director_places_no_hold_marks_no_copy_and_reads_no_copy_under_a_sealed_warrant(
        central, people, court):
    """Beyond the instrument itself: a hold naming it, its copy in the export register (marking it
    retrieved, reading it in a breach case's copy check) are the Director's alone until it is filed."""
    ins = court.record(kind="search_warrant", reference="SW-2026-0111")["instrument"]
    court.counsel(ins["id"])
    export = court.release(ins["id"])["export"]
    acting(central, people)
    case = people.call("sam", "breach.report", what="a USB stick went missing from the desk drawer",
                       noticed_at=iso(central.now()), suspected_window_start=iso(central.now() - timedelta(hours=1)),
                       suspected_window_end=iso(central.now()))["breach"]["id"]
    before = (central.records.all("holds"), central.records.get("exports", export["id"]))
    for name, args in (("hold.place", dict(kind="instrument", instrument=ins["id"], cameras=["cam-a"],
                                           start=iso(court.start), end=iso(court.end), why="keep it")),
                       ("export.mark_retrieved", dict(export=export["id"], note="back from the sheriff"))):
        with pytest.raises(Refused) as e:
            people.call("sue", name, **args)
        assert e.value.clause == "C13", name
    assert (central.records.all("holds"), central.records.get("exports", export["id"])) == before
    [copy] = people.call("sue", "breach.copies", breach=case)["copies"]
    assert copy["sealed"] and "recipient" not in copy and "cameras" not in copy
    assert people.call("director", "breach.copies", breach=case)["copies"][0]["recipient"].startswith("Chariton")


def test_C13_only_warrants_are_sealed(central, people, court):
    ins = court.record(kind="court_order")["instrument"]
    assert ins["sealed"] is False
    with pytest.raises(BadRequest):
        people.call("director", "instrument.mark_filed", instrument=ins["id"], filed_on=central.now().date().isoformat())
    acting(central, people)
    assert people.call("sue", "instrument.get", instrument=ins["id"])["instrument"]["reference"] == "SUB-2026-0117"


# --------------------------------------------------------------------------- C16: the export register


def test_C16_export_register_marks_retrieved_copies(central, people, court):
    ins = court.record()["instrument"]
    court.counsel(ins["id"])
    export = court.release(ins["id"])["export"]
    for who in ("sam", "ivy"):
        with pytest.raises(Refused):
            people.call(who, "export.list")
        with pytest.raises(Refused):
            people.call(who, "export.mark_retrieved", export=export["id"], note="got it back")
    with pytest.raises(BadRequest):
        people.call("director", "export.mark_retrieved", export=export["id"])            # the note is required
    with pytest.raises(NotFound):
        people.call("director", "export.mark_retrieved", export="exp-000404", note="no such copy")
    assert [e["id"] for e in people.call("director", "export.list", open_only=True)["exports"]] == [export["id"]]

    marked = people.call("director", "export.mark_retrieved", export=export["id"],
                         note="USB stick returned by the detective after the breach report")["export"]
    assert marked["retrieved_at"] and marked["retrieved_note"].startswith("USB stick")
    entry = central.audit.query(action_prefix="export.mark_retrieved")[-1]
    assert entry["target"] == export["id"] and entry["refs"]["instrument"] == ins["id"]
    assert people.call("director", "export.list", open_only=True)["exports"] == []
    with pytest.raises(Refused):
        people.call("director", "export.mark_retrieved", export=export["id"], note="twice")


# --------------------------------------------------------------------------- clear errors, nothing changed


def test_bad_instrument_input_gets_clear_errors_and_changes_nothing(central, people, court):
    today = central.now().date()
    cases = [
        ({"kind": "letter"}, BadRequest),
        ({"issued_on": "2026-13-01"}, BadRequest),
        ({"received_on": "yesterday"}, BadRequest),
        ({"issued_on": "1899-01-01"}, BadRequest),
        ({"issued_on": today.isoformat(), "received_on": (today - timedelta(days=3)).isoformat()}, BadRequest),
        ({"received_on": (today + timedelta(days=2)).isoformat()}, BadRequest),
        ({"end": iso(court.start - timedelta(hours=1))}, BadRequest),
        ({"start": "2026-02-30T00:00:00Z"}, BadRequest),
        ({"cameras": ["cam-a/../../etc"]}, BadRequest),
        ({"cameras": ["cam-q"]}, NotFound),
        ({"incident": "../inc-1"}, BadRequest),
        ({"incident": "inc-000404"}, NotFound),
        ({"reference": ""}, BadRequest),
        ({"description": None}, BadRequest),
        ({"extra": 1}, BadRequest),
    ]
    people.login("sam"), people.login("ivy")
    before = central.audit.next_seq
    for over, error in cases:
        with pytest.raises(error) as e:
            court.record(**over)
        assert str(e.value), over
    for who in ("sam", "ivy"):
        with pytest.raises(Refused):
            court.record(who=who)
    assert central.records.all("instruments") == [] and central.records.all("holds") == []
    # Nothing written but the two refusals by role, for a breach check (C16).
    assert [(e["actor"], e["action"], e["details"]["operation"]) for e in central.audit.query()[before:]] == [
        (people.ids[who], "access.refused", "instrument.record") for who in ("sam", "ivy")]

    ins = court.record()["instrument"]
    before = central.audit.next_seq
    for over, error in (({"consulted_on": (today - timedelta(days=30)).isoformat()}, BadRequest),  # before receipt
                        ({"consulted_on": (today + timedelta(days=1)).isoformat()}, BadRequest),
                        ({"instrument": "ins-000404"}, NotFound),
                        ({"instrument": "ins/1"}, BadRequest),
                        ({"counsel": ""}, BadRequest)):
        args = dict(instrument=ins["id"], counsel="J. Ortiz", consulted_on=today.isoformat(), summary="fine")
        args.update(over)
        with pytest.raises(error):
            people.call("director", "counsel.record", **args)
    with pytest.raises(BadRequest):
        court.release("../ins-000001")
    assert central.records.all("counsel") == [] and central.audit.next_seq == before
