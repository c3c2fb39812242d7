"""The authorization matrix: every API operation, for every role, in the states that matter.

EXPECTED is the clause table written out by hand (docs/policy-clauses.md: the roles, C1-C22). The
registry must match it exactly, and every operation is then called as every kind of
caller: a role outside the table is refused as `forbidden`, one inside it is never.
Every refusal met on the way must read well on the UI's one error line (`readable`).
"""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from appliance.rules import catalog as policy  # noqa: F401  (registers every operation)
from appliance.errors import CustodianError
from appliance.rules.registry import OPS, iso
from conftest import enrol_camera_record

S, D, I = "staff", "director", "it"
EXPECTED = {
    # accounts, the seal (C2 C8 C22)
    "session.login": "public", "session.logout": {S, D, I}, "session.whoami": {S, D, I},
    "policy.text": {S, D, I}, "policy.acknowledge": {S, D, I}, "user.change_passphrase": {S, D, I},
    "user.list": {D, I}, "user.create": {D}, "user.reset_passphrase": {D, I}, "user.unlock": {D, I},
    "user.set_disabled": {D}, "director.designate_acting": {D}, "director.revoke_acting": {D},
    "archive.status": {S, D, I}, "archive.unseal": {D}, "archive.seal": {D},
    # cameras, signage, live view (C1 C5 C6 C8): IT operates cameras, never sees images
    "camera.enroll": {D, I}, "camera.invite": {D, I}, "camera.list": {S, D, I}, "camera.snapshot": {D},
    "camera.approve_placement": {D}, "camera.reject_placement": {D}, "camera.set_masks": {D},
    "camera.retire": {D}, "signage.add": {D, I}, "signage.remove": {D, I}, "signage.list": {S, D, I},
    "signage.text": {S, D, I}, "live.open": {S, D}, "live.frame": {S, D}, "live.close": {S, D},
    "live.list": {S, D},
    # incidents, requests, decisions, grants, imminent danger (C7 C9 C17 C18 C19)
    "incident.attestation_text": {S, D, I}, "incident.create": {S, D}, "incident.list": {S, D},
    "incident.get": {S, D}, "incident.record_outcome": {D}, "incident.close": {D},
    "request.create": {S, D}, "request.list": {S, D}, "request.decide": {D},
    "grant.list": {S, D}, "grant.revoke": {D},
    "imminent.invoke": {S, D}, "imminent.link_incident": {S, D}, "imminent.review": {D},
    # footage (C9): staff and the Director under a grant; IT never
    "footage.segments": {S, D}, "footage.still": {S, D}, "footage.clip": {S, D},
    # legal (C3 C13 C14): the Director alone
    "instrument.record": {D}, "instrument.list": {D}, "instrument.get": {D}, "instrument.mark_filed": {D},
    "counsel.record": {D}, "release.create": {D}, "release.list": {D}, "export.list": {D},
    "release.build": {D}, "release.build_status": {D},
    "export.mark_retrieved": {D},
    # retention and holds (C12 C20)
    "hold.place": {D}, "hold.list": {D}, "hold.release": {D}, "retention.get": {D, I}, "retention.set": {D},
    "retention.status": {D, I}, "retention.sweep_now": {D, I},
    # breaches (C15 C16): anyone reports; the Director handles
    "breach.report": {S, D, I}, "breach.list": {S, D, I}, "breach.get": {S, D, I}, "breach.step": {D},
    "breach.access_query": {D}, "breach.copies": {D}, "breach.notification": {D}, "breach.complaint": {D},
    "breach.close": {D},
    # suspension notices (C21), reports (C7)
    "notice.create": {D}, "notice.list": {S, D}, "notice.withdraw": {D},
    "report.oversight": {D}, "report.transparency": {S, D, I}, "audit.query": {D},
    # alerts and what needs attention (C1 C15 C19): everyone sees the alerts meant for them
    "alert.list": {S, D, I}, "alert.acknowledge": {S, D, I}, "attention.summary": {S, D, I},
    "session.watch": {S, D, I},
    # the review screen's timeline (C9): under a grant, like every footage operation
    "footage.timeline": {S, D},
}


# The Director herself, never an acting director (C2; C13 for a sealed warrant's filing).
HERSELF = {"user.create", "director.designate_acting", "director.revoke_acting", "instrument.mark_filed"}

# Below the Director, only one's own records (table, and the argument naming one where the
# operation takes one): staff see the incidents they filed or hold a grant for (C9), their
# own requests and the grants they hold (C17), their own live views (C8); anyone, the
# breach reports they made (C15).
OWN = {
    "incident.list": ("incidents", None), "incident.get": ("incidents", "incident"),
    "request.create": ("incidents", "incident"), "request.list": ("requests", None),
    "imminent.link_incident": ("requests", "request"), "grant.list": ("grants", None),
    "breach.list": ("breaches", None), "breach.get": ("breaches", "breach"),
    "live.list": ("live_views", None), "live.close": ("live_views", "view"),
}

# Callable before the policy is acknowledged (C22), and with a temporary passphrase set by
# someone else (C8): reading and acknowledging the policy, choosing one's own passphrase,
# leaving. Written by hand: the registry's before_ack flags must match, not define, it.
BEFORE_ACK = {"session.logout", "session.whoami", "policy.text", "policy.acknowledge", "user.change_passphrase"}
WITH_TEMPORARY_PASSPHRASE = {"session.logout", "session.whoami", "policy.text", "policy.acknowledge",
                             "user.change_passphrase"}

# Roles as people say them, and the shape of a `forbidden` refusal.
SAID = {S: "staff", D: "the Director", I: "IT staff"}
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
ROLE_CODE = re.compile(r"(?<!acting )(?<![\w.])director\b(?!\.)|\b(?:are|for|as|role) it\b|\bit only\b|, it\b")
POINT_ENDS = re.compile(r": |; | \(|\. ")
ERROR_LINE = 76          # an 80-column UI's error line, less its margin


def point_of(message: str) -> str:
    """What the message says before it explains: up to the first ': ', '; ', ' (' or '. '."""
    return POINT_ENDS.split(message, 1)[0]


def readable(message: str) -> list[str]:
    """What is wrong with a refusal's message for a person reading it (empty: nothing)."""
    problems = []
    if ISO_TIME.search(message):
        problems.append("a raw ISO timestamp")
    if ROLE_CODE.search(message):
        problems.append("a role by its code, not as people say it")
    if not point_of(message).strip() or len(point_of(message)) > ERROR_LINE:
        problems.append(f"its point is not within the first {ERROR_LINE} characters")
    return problems


def code_of(central, op, args, token):
    try:
        central.call(op, args, token)
        return "ok"
    except CustodianError as e:
        problems = readable(str(e))
        assert not problems, f"{op} refused with {str(e)!r}: {', '.join(problems)}"
        return e.code


def test_the_readability_check_catches_what_it_should():
    assert readable("too many failed logins: locked until 2026-11-30T13:12:07.123456Z") == ["a raw ISO timestamp"]
    assert readable("archive.unseal is for director only; you are it") == ["a role by its code, not as people say it"]
    assert readable("x" * 77 + ": why") and not readable("x" * 76 + ": why")
    assert not readable("only the Director may use archive.unseal; you are IT staff")
    assert not readable("this staff member is or will be acting director: only the Director may reset it")


def test_registry_matches_the_clause_table():
    actual = {name: ("public" if o.public else set(o.roles)) for name, o in OPS.items()}
    assert actual == EXPECTED
    assert {name for name, o in OPS.items() if not o.rule.acting} == HERSELF
    assert {name: (o.rule.scope.table, o.rule.scope_arg) for name, o in OPS.items() if o.rule.scope} == OWN


def test_no_board_role_anywhere():
    assert all("board" not in o.roles for o in OPS.values())


@pytest.fixture
def callers(central, people):
    """Tokens for: staff, director, it, an acting director in period, one whose period is over."""
    people.login("sam")
    people.login("ivy")
    people.login("sue")
    now = central.now()
    people.call("director", "director.designate_acting", user=people.ids["sue"], start=iso(now - timedelta(hours=1)),
                end=iso(now + timedelta(days=1)), why="Director on leave")
    central.call("user.create", {"name": "ann", "role": "staff", "passphrase": "ann-temporary-1"},
                 people.tokens["director"])
    first = central.call("session.login", {"user": "ann", "passphrase": "ann-temporary-1"})["token"]
    central.call("user.change_passphrase", {"old": "ann-temporary-1", "new": "ann-passphrase-1"}, first)
    people.login("ann", "ann-passphrase-1")
    people.call("director", "director.designate_acting", user=people.ids["ann"],
                start=iso(now - timedelta(days=10)), end=iso(now - timedelta(days=1)), why="last month")
    return {"staff": people.tokens["sam"], "director": people.tokens["director"], "it": people.tokens["ivy"],
            "acting": people.tokens["sue"], "acting_over": people.tokens["ann"]}


ROLE_OF = {"staff": {S}, "director": {D}, "it": {I}, "acting": {S, D}, "acting_over": {S}}


def said(roles) -> str:
    names = [SAID[r] for r in (S, D, I) if r in roles]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def test_every_operation_for_every_caller(central, callers):
    mismatches = []
    for name in sorted(EXPECTED):
        if EXPECTED[name] == "public" or name == "session.logout":
            continue
        for who, token in callers.items():
            allowed = bool(EXPECTED[name] & ROLE_OF[who]) and not (who == "acting" and name in HERSELF
                                                                   and S not in EXPECTED[name])
            code = code_of(central, name, {}, token)
            if (code == "forbidden") == allowed:
                mismatches.append((name, who, code))
    assert not mismatches


def test_a_forbidden_operation_says_who_may_use_it_as_people_say_it(central, callers):
    for name in ("archive.unseal", "camera.enroll", "footage.still"):
        for who, role in (("staff", S), ("it", I), ("director", D)):
            if role in EXPECTED[name]:
                continue
            with pytest.raises(CustodianError) as e:
                central.call(name, {}, callers[who])
            assert str(e.value) == f"only {said(EXPECTED[name])} may use {name}; you are {SAID[role]}"


def test_C8_C2_a_refusal_by_role_names_its_clause(central, callers):
    """Staff refused the Director's custody (C2; a sealed warrant's filing, C13); IT refused what
    staff and the Director do (C8). Written out by hand, not read from the rule table."""
    for name, who, clause in (("archive.unseal", "staff", "C2"), ("archive.unseal", "it", "C2"),
                              ("instrument.mark_filed", "staff", "C13"), ("incident.list", "it", "C8"),
                              ("footage.still", "it", "C8"), ("camera.enroll", "staff", "C8")):
        with pytest.raises(CustodianError) as e:
            central.call(name, {}, callers[who])
        assert (e.value.code, e.value.clause) == ("forbidden", clause), (name, who)


def test_no_session_is_refused_everywhere_but_login(central):
    for name, roles in EXPECTED.items():
        if roles != "public":
            assert code_of(central, name, {}, None) == "not_authenticated", name


def assert_only_open(central, token, open_ops: set[str], refusal: str) -> None:
    """Every operation but `open_ops` refuses this session with `refusal`; those do not."""
    for name, roles in EXPECTED.items():
        if roles == "public" or name == "session.logout":
            continue
        code = code_of(central, name, {}, token)
        assert (code == refusal) == (name not in open_ops), (name, code)


def test_C22_unacknowledged_policy_blocks_everything_but_reading_it(central, people):
    assert_only_open(central, people.login("sam", ack=False), BEFORE_ACK, "policy_ack_required")
    assert {name for name, o in OPS.items() if o.before_ack} == BEFORE_ACK


def test_C8_a_temporary_passphrase_opens_only_choosing_ones_own(central, people):
    central.call("user.create", {"name": "tia", "role": "staff", "passphrase": "tia-temporary-1"},
                 people.tokens["director"])
    token = central.call("session.login", {"user": "tia", "passphrase": "tia-temporary-1"})["token"]
    assert_only_open(central, token, WITH_TEMPORARY_PASSPHRASE, "passphrase_change_required")


def test_C8_locked_account_cannot_log_in_even_with_the_right_passphrase(central, people):
    for _ in range(5):
        assert code_of(central, "session.login", {"user": "sam", "passphrase": "wrong-one-here"}, None) \
            == "wrong_passphrase"
    assert code_of(central, "session.login", {"user": "sam", "passphrase": "sam-passphrase-1"}, None) == "locked"
    people.call("ivy", "user.unlock", user=central.records.search("users", name="sam")[0]["id"])
    assert code_of(central, "session.login", {"user": "sam", "passphrase": "sam-passphrase-1"}, None) == "ok"


# --------------------------------------------------------------------------- footage states


@pytest.fixture
def footage_case(central, people):
    enrol_camera_record(central, "entrance", "22" * 32)
    now = central.now()
    incident = people.call("sam", "incident.create", grounds="criminal_activity", occurred_at=iso(now - timedelta(hours=2)),
                           location="Entrance", description="A patron broke the display case by the doors.",
                           attestation=True)["incident"]
    request = people.call("sam", "request.create", incident=incident["id"], kind="review", cameras=["entrance"],
                          start=iso(now - timedelta(hours=3)), end=iso(now - timedelta(hours=1)),
                          reason="Identify who broke the case")["request"]
    return {"incident": incident, "request": request}


def footage_codes(central, people, grant_id):
    codes = {}
    for who in ("sam", "sue", "director", "ivy"):
        people.login(who) if who not in people.tokens else None
        codes[who] = code_of(central, "footage.segments", {"grant": grant_id, "camera": "entrance"},
                             people.tokens[who])
    return codes


def test_C9_C17_footage_in_every_grant_state(central, people, footage_case):
    # pending: no grant exists yet, so no footage for anyone
    assert set(footage_codes(central, people, "grt-999999").values()) <= {"refused", "forbidden"}
    decided = people.call("director", "request.decide", request=footage_case["request"]["id"], decision="approve",
                          reason="Specific incident, narrow window")
    grant = decided["grant"]["id"]
    # approved but sealed: the requester and the Director get "sealed"; others are refused
    assert footage_codes(central, people, grant) == {"sam": "sealed", "sue": "refused", "director": "sealed",
                                                     "ivy": "forbidden"}
    people.unseal()
    before = len(central.audit.query(action_prefix="footage.segments"))
    assert footage_codes(central, people, grant) == {"sam": "ok", "sue": "refused", "director": "ok",
                                                     "ivy": "forbidden"}
    touches = central.audit.query(action_prefix="footage.segments")[before:]
    assert sorted(e["actor"] for e in touches) == sorted([people.ids["sam"], people.ids["director"]])
    assert all(e["refs"]["grant"] == grant for e in touches)
    # expired
    central.clock.offset += timedelta(days=4)
    assert footage_codes(central, people, grant)["sam"] == "refused"


def test_C9_C15_below_the_director_only_ones_own_records(central, people):
    """The ownership rules of the table, held by hand: sue's incident and breach report are not
    sam's to read or build on; the Director reaches both; listings show each their own."""
    from test_incidents import CAM, add_camera, file_incident, review_args

    add_camera(central, CAM)
    for who in ("sam", "sue"):
        people.login(who)
    sues = file_incident(people, "sue")
    sams = file_incident(people, "sam")
    breach = people.call("sue", "breach.report", what="A printout of a still was left at the desk.",
                         noticed_at=iso(central.now()))["breach"]
    sam = people.tokens["sam"]
    assert code_of(central, "incident.get", {"incident": sues["id"]}, sam) == "refused"
    assert code_of(central, "request.create", review_args(sues), sam) == "refused"
    assert code_of(central, "breach.get", {"breach": breach["id"]}, sam) == "not_found"   # not even its existence
    assert code_of(central, "incident.get", {"incident": sues["id"]}, people.tokens["director"]) == "ok"
    assert code_of(central, "breach.get", {"breach": breach["id"]}, people.tokens["director"]) == "ok"
    assert [i["id"] for i in people.call("sam", "incident.list")["incidents"]] == [sams["id"]]
    assert people.call("sam", "breach.list")["breaches"] == []
    assert {i["id"] for i in people.call("director", "incident.list")["incidents"]} == {sues["id"], sams["id"]}
    assert [b["id"] for b in people.call("sue", "breach.list")["breaches"]] == [breach["id"]]
