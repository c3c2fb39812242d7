"""Breach cases (C15, C16): anyone reports, the Director is told at once and works the case."""
from __future__ import annotations

import json
import shlex
from datetime import timedelta

import pytest

from appliance.rules.breaches import STEPS
from appliance.errors import BadRequest, NotAuthenticated, NotFound, Refused
from appliance.rules.registry import iso
from test_footage import record, recording_start, review_grant
from test_node_control import approved_camera, server  # noqa: F401  (server: the served ingest app fixture)
from test_retention import Camera

WHAT = "a printout of a camera still was left on the public photocopier"


def report(people, who: str, **args):
    return people.call(who, "breach.report", what=WHAT, noticed_at=iso(people.central.now()), **args)


def test_C15_any_role_reports_breach_and_director_alerted(central, people, tmp_path):
    pager = tmp_path / "pager.jsonl"
    central.cfg.central.notify_command = f"sh -c {shlex.quote(f'cat >> {pager}; echo >> {pager}')}"

    cases = {who: report(people, who)["breach"]["id"] for who in ("sam", "ivy", "director")}

    # Each report raised an alert for the Director at once, and it went out on the pager command.
    alerts = central.records.search("alerts", kind="breach")
    assert sorted(a["breach"] for a in alerts) == sorted(cases.values())
    central.notifier.deliver_due()
    sent = [json.loads(line) for line in pager.read_text().splitlines() if line.strip()]
    assert sorted(a["breach"] for a in sent) == sorted(cases.values())
    assert all(WHAT not in a["message"] for a in sent)   # the details stay on the appliance
    reports = central.audit.query(action_prefix="breach.report")
    assert sorted((e["actor"], e["target"]) for e in reports) == sorted(
        (people.ids[who], case) for who, case in cases.items())

    # Reporters see their own report (not the working record); the Director sees every case.
    mine = people.call("ivy", "breach.list")["breaches"]
    assert [b["id"] for b in mine] == [cases["ivy"]] and "steps" not in mine[0]
    with pytest.raises(NotFound):
        people.call("sam", "breach.get", breach=cases["ivy"])
    assert len(people.call("director", "breach.list")["breaches"]) == 3
    # The Director reading a whole case is audited, naming the case.
    people.call("director", "breach.get", breach=cases["ivy"])
    [viewed] = central.audit.query(action_prefix="breach.view")
    assert (viewed["actor"], viewed["target"], viewed["refs"]) == (people.ids["director"], cases["ivy"],
                                                                   {"breach": cases["ivy"]})

    # Bad reports are refused and leave nothing behind.
    for args in (dict(what="oops", noticed_at=iso(central.now())),
                 dict(what=WHAT, noticed_at=iso(central.now() + timedelta(days=1))),
                 dict(what=WHAT, noticed_at=iso(central.now()), suspected_window_start=iso(central.now()),
                      suspected_window_end=iso(central.now() - timedelta(hours=1)))):
        with pytest.raises(BadRequest):
            people.call("sue", "breach.report", **args)
    assert len(central.records.all("breaches")) == 3 and len(central.records.all("alerts")) == 3


def _release(people, central, start, end) -> str:
    """A copy leaves the appliance the only way it can: a release under a court order, after counsel."""
    today = central.now().date().isoformat()
    instrument = people.call("director", "instrument.record", kind="court_order", reference="CV-2026-12",
                             court="Lucas County District Court", issued_on=today, received_on=today,
                             description="order for entrance footage", cameras=["cam-a"], start=iso(start),
                             end=iso(end))["instrument"]
    people.call("director", "counsel.record", instrument=instrument["id"], counsel="A. Lawyer",
                consulted_on=today, summary="comply, entrance camera only")
    return people.call("director", "release.create", instrument=instrument["id"], cameras=["cam-a"],
                       start=iso(start), end=iso(end), recipient="Chariton Police Department")["export"]["id"]


def test_C16_refusals_by_role_or_scope_reach_the_access_query(central, people):
    """An attempt the rule table refuses (a role, or a record that is not hers) is audited
    once, as `access.refused`, where a breach investigation's access query finds it."""
    window_start = central.now() - timedelta(seconds=1)
    incident = people.call("sam", "incident.create", grounds="conduct_violation", occurred_at=iso(central.now()),
                           location="entrance", description="a patron kicked the returns box until it broke",
                           attestation=True)["incident"]["id"]
    ivys_report = report(people, "ivy")["breach"]["id"]
    people.login("sue")
    before = len(central.audit.query())

    with pytest.raises(Refused) as by_role:             # IT never views footage (C8)
        people.call("ivy", "footage.still", grant="grt-000001", camera="cam-a", at=iso(central.now()))
    assert (by_role.value.code, by_role.value.clause) == ("forbidden", "C8")
    with pytest.raises(Refused) as by_scope:            # another's incident (C9)
        people.call("sue", "incident.get", incident=incident)
    assert by_scope.value.clause == "C9"
    with pytest.raises(NotFound):                       # another's breach report: not even its existence
        people.call("sam", "breach.get", breach=ivys_report)
    # No caller, or a session that is not one: nobody to name, and nothing typed is written.
    for token in (None, "not-a-session"):
        with pytest.raises(NotAuthenticated):
            central.call("footage.still", {"grant": "grt-000001", "camera": "cam-a"}, token)
    # A record that does not exist is not someone else's: nothing to audit.
    with pytest.raises(NotFound):
        people.call("sue", "incident.get", incident="inc-999999")

    refusals = central.audit.query()[before:]
    assert [(e["actor"], e["action"], e["role"], e["target"], e["details"]) for e in refusals] == [
        (people.ids["ivy"], "access.refused", "it", "cam-a",
         {"operation": "footage.still", "code": "forbidden", "clause": "C8"}),
        (people.ids["sue"], "access.refused", "staff", incident,
         {"operation": "incident.get", "code": "refused", "clause": "C9"}),
        (people.ids["sam"], "access.refused", "staff", ivys_report, {"operation": "breach.get", "code": "not_found"}),
    ]
    assert refusals[0]["why"] == str(by_role.value) and refusals[1]["why"] == str(by_scope.value)

    case = report(people, "director", suspected_window_start=iso(window_start),
                  suspected_window_end=iso(central.now()))["breach"]["id"]
    found = people.call("director", "breach.access_query", breach=case)
    assert [e["seq"] for e in found["entries"] if e["action"] == "access.refused"] == [e["seq"] for e in refusals]
    assert found["refused"] == 3


def test_C16_breach_steps_and_access_query(central, people, h264_footage):
    start = h264_footage
    window_start = central.now() - timedelta(seconds=1)
    grant, incident = review_grant(people, "cam-a", start - timedelta(seconds=1), start + timedelta(seconds=4))
    people.unseal()
    people.call("sam", "footage.still", grant=grant["id"], camera="cam-a", at=iso(start + timedelta(seconds=1)))
    with pytest.raises(Refused):
        people.call("sue", "footage.still", grant=grant["id"], camera="cam-a", at=iso(start))
    export = _release(people, central, start, start + timedelta(seconds=4))
    case = report(people, "sue", suspected_window_start=iso(window_start),
                  suspected_window_end=iso(central.now()))["breach"]["id"]

    # The case cannot close until each step is done or marked not applicable.
    with pytest.raises(Refused) as refused:
        people.call("director", "breach.close", breach=case, summary="nothing to see")
    assert refused.value.clause == "C16" and all(step in str(refused.value) for step in STEPS)
    with pytest.raises(Refused, match="access_query"):
        people.call("director", "breach.step", breach=case, step="check_unauthorised_access", notes="looked")

    # Who touched footage, keys, accounts or records in the suspected window.
    found = people.call("director", "breach.access_query", breach=case)
    actions = {(e["actor"], e["action"]) for e in found["entries"]}
    assert (people.ids["sam"], "footage.still") in actions
    assert (people.ids["sue"], "footage.refused") in actions
    assert (people.ids["director"], "archive.unseal") in actions
    assert (people.ids["director"], "release.create") in actions
    assert not any(a.startswith(("incident.", "request.", "breach.")) for _, a in actions)
    assert found["refused"] == 1
    assert {"actor": people.ids["sam"], "name": "sam"} in [
        {k: v for k, v in row.items() if k != "entries"} for row in found["by_actor"]]

    # The copies made in the window, from the export register, until each is retrieved.
    copies = people.call("director", "breach.copies", breach=case)
    assert [c["id"] for c in copies["copies"]] == [export] and copies["outstanding"] == [export]
    assert copies["copies"][0]["recipient"] == "Chariton Police Department"
    people.call("director", "export.mark_retrieved", export=export, note="collected back from the police")
    assert people.call("director", "breach.copies", breach=case)["outstanding"] == []

    # Notification and complaint steps need their records first.
    with pytest.raises(Refused, match="notification"):
        people.call("director", "breach.step", breach=case, step="notify_individuals", notes="done")
    people.call("director", "breach.notification", breach=case, who="the patron in the still",
                how="letter", when=iso(central.now()))
    added = people.call("director", "breach.complaint", breach=case, complainant="the patron in the still",
                        received_at=iso(central.now()), concern="my picture was on the copier")
    with pytest.raises(Refused, match="resolution"):
        people.call("director", "breach.step", breach=case, step="resolve_complaints", notes="done")
    people.call("director", "breach.complaint", breach=case, complaint=added["complaint"],
                resolution="apologised in person; explained the new printing rule")

    with pytest.raises(Refused):                     # only the Director works the case
        people.call("sue", "breach.step", breach=case, step="contain", notes="I shredded it")
    for step in STEPS:
        people.call("director", "breach.step", breach=case, step=step, notes=f"{step}: see the case file")
    closed = people.call("director", "breach.close", breach=case, summary="printer jobs now need a PIN")["breach"]
    assert closed["status"] == "closed" and all(closed["steps"][s]["status"] == "done" for s in STEPS)

    steps = central.audit.query(action_prefix="breach.step")
    assert [e["details"]["step"] for e in steps] == list(STEPS)
    assert all(e["refs"] == {"breach": case} and e["actor"] == people.ids["director"] for e in steps)
    for action in ("breach.access_query", "breach.copies", "breach.notification", "breach.complaint",
                   "breach.close"):
        assert central.audit.query(action_prefix=action), action
    with pytest.raises(Refused, match="closed"):
        people.call("director", "breach.step", breach=case, step="contain", notes="again")


def _case_with_two_copies(people, central) -> tuple[str, str, str]:
    """Two releases in the export register, then a breach case whose window holds both."""
    now = central.now()
    Camera(central, "cam-a").record(now - timedelta(days=2))        # the footage both releases hand over
    first = _release(people, central, now - timedelta(days=2), now - timedelta(days=1))
    second = _release(people, central, now - timedelta(days=2), now - timedelta(days=1))
    case = report(people, "sam", suspected_window_start=iso(now - timedelta(minutes=1)),
                  suspected_window_end=iso(now + timedelta(minutes=1)))["breach"]["id"]
    assert people.call("director", "breach.copies", breach=case)["outstanding"] == [first, second]
    return case, first, second


def test_C16_copies_are_retrieved_before_that_step_is_done(central, people):
    """'retrieve copies of recorded information': the step is done when the copies the register lists
    in the window are back, not once someone has looked at the list."""
    case, first, second = _case_with_two_copies(people, central)
    people.call("director", "export.mark_retrieved", export=first, note="the sheriff handed it back")
    with pytest.raises(Refused, match=second) as refused:
        people.call("director", "breach.step", breach=case, step="retrieve_copies", notes="got them back")
    assert refused.value.clause == "C16"
    assert people.call("director", "breach.get", breach=case)["breach"]["steps"]["retrieve_copies"] is None
    people.call("director", "export.mark_retrieved", export=second, note="collected from the detective")
    people.call("director", "breach.step", breach=case, step="retrieve_copies", notes="both copies are back")


def test_C16_a_retrieval_names_the_breach_case_it_answers(central, people):
    """The audit log says why a copy was retrieved: the open case whose copy check listed it."""
    case, first, second = _case_with_two_copies(people, central)
    people.call("director", "export.mark_retrieved", export=first, note="the sheriff handed it back")
    people.call("director", "export.mark_retrieved", export=second, note="collected from the detective")
    entries = central.audit.query(action_prefix="export.mark_retrieved")
    assert [(e["target"], e["refs"].get("breach")) for e in entries] == [(first, case), (second, case)]


def test_C16_steps_may_be_marked_not_applicable_with_a_reason(central, people):
    case = report(people, "sam")["breach"]["id"]
    with pytest.raises(BadRequest):              # a reason is required
        people.call("director", "breach.step", breach=case, step="contain", not_applicable=True)
    with pytest.raises(BadRequest):              # no window on the case and none given
        people.call("director", "breach.access_query", breach=case)
    for step in STEPS:
        people.call("director", "breach.step", breach=case, step=step, not_applicable=True,
                    notes="the printout held no footage: a test page")
    closed = people.call("director", "breach.close", breach=case, summary="false alarm")["breach"]
    assert {closed["steps"][s]["status"] for s in STEPS} == {"not_applicable"}


@pytest.fixture
def h264_footage(central):
    from test_footage import encode_testsrc2

    start = recording_start(central)
    record(central, "cam-a", encode_testsrc2(), start)
    return start


def test_C16_a_camera_snapshot_someone_viewed_is_in_the_access_query(tmp_path, central, people, server):
    """A camera's snapshot is a picture of whoever stands in its view: a breach's access check (C16)
    must find who looked at one in its window, as it finds footage and live views."""
    window_start = central.now() - timedelta(seconds=1)
    approved_camera(tmp_path, central, people, server)
    people.call("director", "camera.snapshot", camera="cam-a")
    case = report(people, "sue", suspected_window_start=iso(window_start),
                  suspected_window_end=iso(central.now()))["breach"]["id"]
    found = people.call("director", "breach.access_query", breach=case)
    assert (people.ids["director"], "camera.snapshot_view", "cam-a") in {
        (e["actor"], e["action"], e["target"]) for e in found["entries"]}
