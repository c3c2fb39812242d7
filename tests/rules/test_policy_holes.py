"""Holes a security review found in the API, each reproduced and closed (regression tests)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from appliance.rules import accounts
from appliance.errors import CustodianError
from appliance.rules.registry import iso
from conftest import PEOPLE, enrol_camera_record
from test_retention import Camera


def code(fn):
    try:
        fn()
        return "ok"
    except CustodianError as e:
        return e.code


def designate(people, central, name, days=7):
    people.login(name)
    now = central.now()
    people.call("director", "director.designate_acting", user=people.ids[name],
                start=iso(now - timedelta(minutes=1)), end=iso(now + timedelta(days=days)), why="Director on leave")


def test_C2_it_cannot_reset_an_acting_director_and_take_her_place(central, people):
    people.login("sam")
    designate(people, central, "sam")
    people.unseal()
    assert code(lambda: people.call("ivy", "user.reset_passphrase", user=people.ids["sam"],
                                    passphrase="ivy-chose-this-1")) == "refused"
    # Even a temporary passphrase the Director sets makes no key slot: only her own does.
    people.call("director", "user.reset_passphrase", user=people.ids["sam"], passphrase="director-set-1")
    central.call("session.login", {"user": "sam", "passphrase": "director-set-1"})
    assert not accounts.has_slot(central, "sam")


def test_C8_temporary_passphrase_opens_nothing_until_changed_and_ends_other_sessions(central, people):
    people.login("sue")
    assert people.call("ivy", "user.reset_passphrase", user=people.ids["sue"], passphrase="ivy-set-this-1")
    enrol_camera_record(central, "entrance", "33" * 32)
    it_as_sue = central.call("session.login", {"user": "sue", "passphrase": "ivy-set-this-1"})["token"]
    assert code(lambda: central.call("live.open", {"camera": "entrance", "purpose": "watch"}, it_as_sue)) \
        == "passphrase_change_required"
    assert code(lambda: central.call("notice.list", {}, it_as_sue)) == "passphrase_change_required"
    # The real sue logs in with the temporary passphrase and chooses her own: every other session ends.
    mine = central.call("session.login", {"user": "sue", "passphrase": "ivy-set-this-1"})["token"]
    central.call("user.change_passphrase", {"old": "ivy-set-this-1", "new": "sue-own-choice-1"}, mine)
    assert code(lambda: central.call("camera.list", {}, it_as_sue)) == "not_authenticated"
    assert code(lambda: central.call("camera.list", {}, mine)) == "ok"


def test_C9_a_live_monitoring_grant_does_not_open_recordings(central, people):
    from appliance.rules.incidents import check_grant
    from appliance.errors import Refused

    enrol_camera_record(central, "entrance", "44" * 32)
    now = central.now()
    incident = people.call("sam", "incident.create", grounds="conduct_violation", occurred_at=iso(now - timedelta(hours=1)),
                           location="entrance", description="A patron kicked the returns box until it broke.",
                           attestation=True)["incident"]
    request = people.call("sam", "request.create", incident=incident["id"], kind="monitor", cameras=["entrance"],
                          start=iso(now), end=iso(now + timedelta(hours=8)), reason="watch the returns box")
    grant = people.call("director", "request.decide", request=request["request"]["id"], decision="approve",
                        reason="live only")["grant"]
    sam = central.caller_for(people.tokens["sam"])
    check_grant(central, sam, grant["id"], "entrance", live=True)
    with pytest.raises(Refused, match="not for reviewing recordings") as e:
        check_grant(central, sam, grant["id"], "entrance", now + timedelta(minutes=5), now + timedelta(minutes=5))
    assert e.value.clause == "C9"


def test_C2_acting_director_key_slot_is_removed_when_her_period_ends(central, people):
    people.unseal()
    designate(people, central, "sam", days=1)
    people.login("sam")
    assert accounts.has_slot(central, "sam")
    central.clock.offset += timedelta(days=2)
    with central.decision_lock:
        accounts.remove_expired_slots(central)   # what accounts.periodic runs every minute
    assert not accounts.has_slot(central, "sam")
    tasks = accounts.periodic(central)   # and it is scheduled while the central serves
    assert len(tasks) == 1
    tasks[0].close()


def test_C2_an_acting_director_creates_no_accounts(central, people):
    designate(people, central, "sam")
    assert code(lambda: central.call("user.create", {"name": "sam2", "role": "staff",
                                                     "passphrase": "second-account-1"}, people.tokens["sam"])) \
        == "forbidden"                                  # the Director's own: the rule table says so
    assert not central.records.search("users", name="sam2")


def test_C13_sealed_warrant_particulars_stay_out_of_the_audit_log(central, people):
    now = central.now()
    Camera(central, "entrance").record(now - timedelta(days=2))        # the footage released
    warrant = people.call("director", "instrument.record", kind="search_warrant", reference="SW-2026-0042",
                          court="District Court", issued_on=(now - timedelta(days=1)).date().isoformat(),
                          received_on=now.date().isoformat(), description="Entrance footage of 28 November",
                          cameras=[], start=iso(now - timedelta(days=2)), end=iso(now - timedelta(days=1)))
    instrument = warrant["instrument"]["id"]
    people.call("director", "counsel.record", instrument=instrument, counsel="Jane Counsel",
                consulted_on=now.date().isoformat(), summary="Comply; keep it confidential")
    people.call("director", "release.create", instrument=instrument, cameras=["entrance"],
                start=iso(now - timedelta(days=2)), end=iso(now - timedelta(days=1)),
                recipient="Officer Smith, County Sheriff", notes="Warrant SW-2026-0042: suspect J. Doe")
    log = (central.paths.audit / "audit.jsonl").read_text()
    for secret in ("SW-2026-0042", "J. Doe", "Jane Counsel", "Officer Smith"):
        assert secret not in log


def test_C22_a_new_policy_text_needs_a_new_acknowledgement(central, people, tmp_path, monkeypatch):
    people.login("sam")
    assert code(lambda: people.call("sam", "camera.list")) == "ok"
    amended = tmp_path / "policy.txt"
    amended.write_text(accounts.POLICY_FILE.read_text() + "\nAmended by the Board of Trustees.\n")
    monkeypatch.setattr(accounts, "POLICY_FILE", amended)
    accounts.policy_version.cache_clear()
    try:
        assert code(lambda: people.call("sam", "camera.list")) == "policy_ack_required"
    finally:
        monkeypatch.undo()
        accounts.policy_version.cache_clear()


def test_C8_a_disabled_account_is_not_revealed_by_a_wrong_passphrase(central, people):
    people.call("director", "user.set_disabled", user=central.records.search("users", name="sue")[0]["id"],
                disabled=True)
    wrong = code(lambda: central.call("session.login", {"user": "sue", "passphrase": "not-her-passphrase"}))
    unknown = code(lambda: central.call("session.login", {"user": "nobody", "passphrase": "not-her-passphrase"}))
    assert wrong == unknown == "wrong_passphrase"
    assert code(lambda: central.call("session.login", {"user": "sue", "passphrase": PEOPLE["sue"][1]})) == "disabled"
