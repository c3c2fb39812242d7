"""The accounts module's 16 operations at the API layer (appliance/rules/accounts.py).

Each operation's main path and its refusals, as docs/api/accounts.md and the policy say
them: C2 (the Director, not the Board, is custodian; an acting director only inside her
dated period), C8 (only Library Staff, by their own login, with lockout), C22 (every
access attributable to one person; the policy acknowledged at first login). Every
expectation here is written by hand.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from appliance.errors import CustodianError
from appliance.rules import accounts
from appliance.rules.registry import iso
from conftest import DIRECTOR, PEOPLE

SAM_PASSPHRASE = PEOPLE["sam"][1]


def refusal(fn) -> tuple[str, str | None]:
    """(code, clause) of the refusal `fn` meets; ("ok", None) if it is allowed."""
    try:
        fn()
        return "ok", None
    except CustodianError as e:
        return e.code, getattr(e, "clause", None)


def code(fn) -> str:
    return refusal(fn)[0]


def entries(central, action: str) -> list[dict]:
    return [e for e in central.audit.query(action_prefix=action) if e["action"] == action]


def login(central, name: str, passphrase: str) -> dict:
    return central.call("session.login", {"user": name, "passphrase": passphrase})


def create(people, who: str, **args) -> dict:
    """user.create as `who` (People.call's own first argument is called `name`)."""
    if who not in people.tokens:
        people.login(who)
    return people.central.call("user.create", args, people.tokens[who])


def designate(people, central, name: str, start=timedelta(minutes=-1), end=timedelta(days=7)) -> dict:
    people.login(name)
    now = central.now()
    return people.call("director", "director.designate_acting", user=name, start=iso(now + start),
                       end=iso(now + end), why="the Director is on leave")


# --------------------------------------------------------------------------- session.login, logout, whoami


def test_C8_a_login_opens_a_session_that_knows_its_person(central, people):
    answer = login(central, "sam", SAM_PASSPHRASE)
    assert answer["user"]["name"] == "sam" and answer["user"]["role"] == "staff"
    assert answer["must_change_passphrase"] is False         # she chose her own when the fixture made her
    assert answer["must_acknowledge_policy"] is True         # but has not read the policy yet
    assert "pass_hash" not in answer["user"]
    me = central.call("session.whoami", {}, answer["token"])
    assert me["user"]["name"] == "sam" and me["user"]["acting_director"] is False
    assert me["sealed"] is True                              # a fresh central: sealed until the Director unseals
    assert me["pending_ack"] is True
    assert 14 * 60 < me["idle_left"] <= 15 * 60              # a session ends after 15 minutes idle
    login_entry = entries(central, "session.login")[-1]
    assert (login_entry["actor"], login_entry["role"]) == (answer["user"]["id"], "staff")


def test_C8_unknown_user_and_wrong_passphrase_get_one_answer_and_both_are_audited(central, people):
    people.login("sam")
    with pytest.raises(CustodianError) as unknown:
        login(central, "sam-passphrase-1", "whatever-it-is-1")      # a passphrase in the name field
    with pytest.raises(CustodianError) as wrong:
        login(central, "sam", "not-sams-passphrase")
    assert unknown.value.code == wrong.value.code == "wrong_passphrase"
    assert str(unknown.value) == str(wrong.value)            # no hint which accounts exist
    assert "sam-passphrase-1" not in (central.paths.audit / "audit.jsonl").read_text()
    failed = entries(central, "session.login_failed")
    assert [(e["actor"], e["role"], e["details"]) for e in failed] == [
        ("-", None, {"reason": "unknown user"}),              # not the text typed: it may be a passphrase
        (people.ids["sam"], None, {"reason": "wrong passphrase"})]   # no role: nobody proved who she is


def test_C8_five_wrong_passphrases_lock_an_account_for_15_minutes(central, people):
    people.login("sam")
    for _ in range(5):
        assert code(lambda: login(central, "sam", "not-sams-passphrase")) == "wrong_passphrase"
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "locked"     # the right passphrase too
    assert entries(central, "user.locked")[-1]["actor"] == people.ids["sam"]
    central.clock.offset += timedelta(minutes=14)
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "locked"
    central.clock.offset += timedelta(minutes=2)
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "ok"


def test_C8_the_director_is_alerted_when_her_account_locks(central, people):
    for _ in range(5):
        code(lambda: login(central, "director", "not-her-passphrase"))
    alerts = people.call("director", "alert.list")["alerts"]    # her session from before the lockout
    assert [a["kind"] for a in alerts] == ["lockout"] and "director" in alerts[0]["message"]


def test_C8_a_disabled_account_cannot_log_in(central, people):
    people.login("sam")
    people.call("director", "user.set_disabled", user="sam", disabled=True)
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "disabled"


def test_C8_guessing_a_disabled_accounts_passphrase_locks_it_like_any_other(central, people):
    """A disabled account answers its right passphrase with 'disabled' and a wrong one with
    'wrong_passphrase': without a lockout, anyone at the console could try passphrases without end
    and learn the right one (a former colleague's, reused elsewhere, or good again once re-enabled)."""
    people.login("sam")
    people.call("director", "user.set_disabled", user="sam", disabled=True)
    for _ in range(5):
        assert code(lambda: login(central, "sam", "a-guess-at-sams")) == "wrong_passphrase"
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "locked"     # no answer tells it is right
    assert entries(central, "user.locked")[-1]["actor"] == people.ids["sam"]


def test_C22_logout_ends_the_session_and_is_audited(central, people):
    token = people.login("sam")
    assert central.call("session.logout", {}, token) == {}
    assert code(lambda: central.call("session.whoami", {}, token)) == "not_authenticated"
    assert entries(central, "session.logout")[-1]["actor"] == people.ids["sam"]


def test_C8_no_session_no_whoami(central):
    assert code(lambda: central.call("session.whoami", {}, None)) == "not_authenticated"
    assert code(lambda: central.call("session.whoami", {}, "made-up-token")) == "not_authenticated"


# --------------------------------------------------------------------------- policy.text, policy.acknowledge (C22)


def test_C22_the_policy_is_read_and_acknowledged_before_anything_else(central, people):
    create(people, "director", name="tom", role="staff", passphrase="temporary-tom-1")
    first = login(central, "tom", "temporary-tom-1")
    token = first["token"]
    central.call("user.change_passphrase", {"old": "temporary-tom-1", "new": "tom-passphrase-1"}, token)
    assert first["must_acknowledge_policy"] is True
    assert refusal(lambda: central.call("camera.list", {}, token)) == ("policy_ack_required", "C22")
    policy = central.call("policy.text", {}, token)
    assert "The Library Director (NOT the Board of Trustees) is the legal custodian" in policy["text"]
    assert code(lambda: central.call("policy.acknowledge", {"version": "an-old-version"}, token)) == "bad_request"
    assert code(lambda: central.call("camera.list", {}, token)) == "policy_ack_required"
    assert central.call("policy.acknowledge", {"version": policy["version"]}, token) == {"acknowledged": True}
    assert code(lambda: central.call("camera.list", {}, token)) == "ok"
    ack = entries(central, "policy.acknowledge")[-1]
    assert ack["actor"] == first["user"]["id"] and ack["details"] == {"version": policy["version"]}
    assert login(central, "tom", "tom-passphrase-1")["must_acknowledge_policy"] is False


# --------------------------------------------------------------------------- user.list, user.create


def test_C8_the_director_and_it_list_accounts_without_passphrase_hashes(central, people):
    for who in ("director", "ivy"):
        users = people.call(who, "user.list")["users"]
        assert sorted(u["name"] for u in users) == ["director", "ivy", "sam", "sue"]
        assert not any("pass_hash" in u for u in users)
    assert code(lambda: people.call("sam", "user.list")) == "forbidden"


def test_C2_the_director_creates_an_account_that_must_choose_its_own_passphrase(central, people):
    created = create(people, "director", name="tom", role="it", passphrase="temporary-tom-1")["user"]
    assert (created["name"], created["role"], created["must_change_passphrase"]) == ("tom", "it", True)
    entry = entries(central, "user.create")[-1]
    assert (entry["actor"], entry["role"], entry["target"]) == (people.ids["director"], "director", created["id"])
    assert entry["details"] == {"name": "tom", "role": "it"}
    token = login(central, "tom", "temporary-tom-1")["token"]
    assert refusal(lambda: central.call("user.list", {}, token)) == ("passphrase_change_required", "C8")


@pytest.mark.parametrize("args, expected", [
    ({"name": "tom", "role": "director", "passphrase": "temporary-tom-1"}, "bad_request"),   # one Director only (C2)
    ({"name": "sam", "role": "staff", "passphrase": "temporary-sam-2"}, "refused"),  # one person, one account (C22)
    ({"name": "tom", "role": "staff", "passphrase": "short"}, "weak_passphrase"),
    ({"name": "Tom Smith", "role": "staff", "passphrase": "temporary-tom-1"}, "bad_request"),
    ({"name": "usr-000009", "role": "staff", "passphrase": "temporary-tom-1"}, "bad_request"),  # looks like an id
])
def test_C2_C22_user_create_refuses_a_second_director_a_second_account_and_bad_input(central, people, args,
                                                                                     expected):
    assert code(lambda: create(people, "director", **args)) == expected
    assert sorted(u["name"] for u in people.call("director", "user.list")["users"]) == ["director", "ivy", "sam",
                                                                                        "sue"]


def test_C2_only_the_director_herself_creates_accounts(central, people):
    designate(people, central, "sam")
    assert refusal(lambda: create(people, "sam", name="tom", role="staff",
                                  passphrase="temporary-tom-1")) == ("forbidden", "C2")   # the rule table: hers alone
    assert code(lambda: create(people, "ivy", name="tom", role="staff", passphrase="temporary-tom-1")) == "forbidden"


# --------------------------------------------------------------------------- user.reset_passphrase, user.unlock


def test_C8_it_resets_a_staff_passphrase_which_ends_her_sessions(central, people):
    sams_token = people.login("sam")
    result = people.call("ivy", "user.reset_passphrase", user="sam", passphrase="ivy-set-this-1")
    assert result["user"]["must_change_passphrase"] is True
    assert code(lambda: central.call("session.whoami", {}, sams_token)) == "not_authenticated"
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "wrong_passphrase"
    token = login(central, "sam", "ivy-set-this-1")["token"]
    assert code(lambda: central.call("camera.list", {}, token)) == "passphrase_change_required"
    entry = entries(central, "user.reset_passphrase")[-1]
    assert (entry["actor"], entry["role"], entry["target"]) == (people.ids["ivy"], "it", people.ids["sam"])


def test_C2_nobody_resets_the_directors_account(central, people):
    people.login("sam")
    designate(people, central, "sue")
    for who in ("ivy", "sue"):
        assert refusal(lambda: people.call(who, "user.reset_passphrase", user="director",
                                           passphrase="someone-else-1")) == ("refused", "C2")
    assert code(lambda: people.call("director", "user.reset_passphrase", user="director",
                                    passphrase="my-own-choice-1")) == "refused"     # she uses change_passphrase


def test_C2_it_manages_staff_accounts_only_and_not_a_future_acting_director(central, people):
    create(people, "director", name="tom", role="it", passphrase="temporary-tom-1")
    assert code(lambda: people.call("ivy", "user.reset_passphrase", user="tom",
                                    passphrase="ivy-set-this-1")) == "refused"
    designate(people, central, "sam", start=timedelta(days=3), end=timedelta(days=10))     # not yet begun
    assert refusal(lambda: people.call("ivy", "user.reset_passphrase", user="sam",
                                       passphrase="ivy-set-this-1")) == ("refused", "C2")
    assert code(lambda: people.call("sam", "user.reset_passphrase", user="sue",
                                    passphrase="sam-set-this-1")) == "forbidden"        # not acting yet
    assert code(lambda: people.call("director", "user.reset_passphrase", user="sam",
                                    passphrase="director-set-1")) == "ok"


def test_C2_an_acting_director_cannot_take_over_another_acting_directors_account(central, people):
    """Sue is acting director this week; Sam is designated for next month. Had she set Sam's passphrase,
    she would log in as him then and act as Director after her own period, a period only the Director
    gives. Like IT, she manages plain staff accounts only: a designated acting director's is the Director's."""
    designate(people, central, "sue")
    designate(people, central, "sam", start=timedelta(days=30), end=timedelta(days=37))
    for op, args in (("user.reset_passphrase", {"passphrase": "sue-set-this-1"}), ("user.unlock", {}),
                     ("user.set_disabled", {"disabled": True})):
        assert refusal(lambda: people.call("sue", op, user="sam", **args)) == ("refused", "C2"), op
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "ok"               # nothing changed
    assert entries(central, "user.reset_passphrase") == [] and entries(central, "user.disable") == []
    create(people, "director", name="tom", role="staff", passphrase="temporary-tom-1")
    assert code(lambda: people.call("sue", "user.reset_passphrase", user="tom",
                                    passphrase="sue-set-this-1")) == "ok"               # a plain staff account


def test_C8_a_locked_account_is_unlocked_by_it_at_once(central, people):
    people.login("sam")
    for _ in range(5):
        code(lambda: login(central, "sam", "not-sams-passphrase"))
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "locked"
    assert people.call("ivy", "user.unlock", user="sam") == {}
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "ok"
    assert entries(central, "user.unlock")[-1]["target"] == people.ids["sam"]
    assert refusal(lambda: people.call("ivy", "user.unlock", user="director")) == ("refused", "C2")
    assert code(lambda: people.call("sue", "user.unlock", user="sam")) == "forbidden"


# --------------------------------------------------------------------------- user.set_disabled


def test_C8_the_director_disables_and_re_enables_an_account(central, people):
    token = people.login("sue")
    assert people.call("director", "user.set_disabled", user="sue", disabled=True) == {}
    assert code(lambda: central.call("session.whoami", {}, token)) == "not_authenticated"
    assert code(lambda: login(central, "sue", PEOPLE["sue"][1])) == "disabled"
    people.call("director", "user.set_disabled", user="sue", disabled=False)
    assert code(lambda: login(central, "sue", PEOPLE["sue"][1])) == "ok"
    assert [e["action"] for e in central.audit.query(action_prefix="user.") if e["target"] == people.ids["sue"]
            and e["action"] in ("user.disable", "user.enable")] == ["user.disable", "user.enable"]


def test_C8_user_set_disabled_refusals(central, people):
    people.login("sam")
    assert code(lambda: people.call("ivy", "user.set_disabled", user="sam", disabled=True)) == "forbidden"
    assert code(lambda: people.call("director", "user.set_disabled", user="director", disabled=True)) == "refused"
    assert code(lambda: people.call("director", "user.set_disabled", user="sam", disabled="yes")) == "bad_request"
    assert code(lambda: people.call("director", "user.set_disabled", user="nobody", disabled=True)) == "not_found"


def test_C2_disabling_an_acting_director_takes_her_key_slot(central, people):
    people.unseal()
    designate(people, central, "sam")
    people.login("sam")
    assert "sam" in central.keys.passphrase_users()
    people.call("director", "user.set_disabled", user="sam", disabled=True)
    assert "sam" not in central.keys.passphrase_users()
    assert entries(central, "keys.slot_removed")[-1]["target"] == people.ids["sam"]


# --------------------------------------------------------------------------- user.change_passphrase


def test_C8_a_person_changes_her_own_passphrase(central, people):
    keep = people.login("sam")
    other = login(central, "sam", SAM_PASSPHRASE)["token"]
    assert people.call("sam", "user.change_passphrase", old=SAM_PASSPHRASE, new="sams-new-choice-1") == {}
    assert code(lambda: central.call("session.whoami", {}, keep)) == "ok"          # this session goes on
    assert code(lambda: central.call("session.whoami", {}, other)) == "not_authenticated"  # the others end
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "wrong_passphrase"
    assert code(lambda: login(central, "sam", "sams-new-choice-1")) == "ok"
    assert entries(central, "user.change_passphrase")[-1]["actor"] == people.ids["sam"]


def test_C8_user_change_passphrase_refusals(central, people):
    people.login("sam")
    assert code(lambda: people.call("sam", "user.change_passphrase", old="not-sams-passphrase",
                                    new="sams-new-choice-1")) == "wrong_passphrase"
    assert entries(central, "user.change_passphrase_failed")[-1]["actor"] == people.ids["sam"]
    assert code(lambda: people.call("sam", "user.change_passphrase", old=SAM_PASSPHRASE, new="short")) \
        == "weak_passphrase"
    assert code(lambda: people.call("sam", "user.change_passphrase", old=SAM_PASSPHRASE, new=SAM_PASSPHRASE)) \
        == "bad_request"
    assert code(lambda: login(central, "sam", SAM_PASSPHRASE)) == "ok"             # nothing changed


def test_C2_the_directors_new_passphrase_opens_the_archive_and_the_old_one_no_longer_does(central, people):
    people.call("director", "user.change_passphrase", old=DIRECTOR[1], new="directors-new-choice-1")
    assert code(lambda: people.call("director", "archive.unseal", passphrase=DIRECTOR[1])) == "wrong_passphrase"
    assert people.call("director", "archive.unseal", passphrase="directors-new-choice-1") == {"sealed": False}


# --------------------------------------------------------------------------- director.designate_acting, revoke_acting


def test_C2_an_acting_director_acts_as_director_only_inside_her_period(central, people):
    period = designate(people, central, "sam", start=timedelta(hours=1), end=timedelta(days=2))["period"]
    assert period["why"] == "the Director is on leave" and period["revoked"] is None
    token = login(central, "sam", SAM_PASSPHRASE)["token"]
    assert code(lambda: central.call("hold.list", {}, token)) == "forbidden"        # not yet
    central.clock.offset += timedelta(hours=2)
    token = login(central, "sam", SAM_PASSPHRASE)["token"]
    assert central.call("session.whoami", {}, token)["user"]["acting_director"] is True
    assert code(lambda: central.call("hold.list", {}, token)) == "ok"
    central.clock.offset += timedelta(days=2)
    assert code(lambda: central.call("hold.list", {}, token)) == "forbidden"        # over
    entry = entries(central, "director.designate_acting")[-1]
    assert (entry["actor"], entry["target"], entry["why"]) == (people.ids["director"], people.ids["sam"],
                                                               "the Director is on leave")


@pytest.mark.parametrize("who, days, expected", [
    ("ivy", 7, ("refused", "C2")),          # an acting director is a staff member
    ("director", 7, ("refused", "C2")),     # not the Director herself
    ("sue", 400, ("bad_request", None)),    # at most a year
    ("sue", -1, ("bad_request", None)),     # it ends after it starts
])
def test_C2_designation_refusals(central, people, who, days, expected):
    now = central.now()
    assert refusal(lambda: people.call("director", "director.designate_acting", user=who, start=iso(now),
                                       end=iso(now + timedelta(days=days)), why="on leave")) == expected
    assert central.audit.query(action_prefix="director.designate_acting") == []


def test_C2_only_the_director_herself_designates_or_revokes(central, people):
    designate(people, central, "sam")
    people.login("sue")
    now = central.now()
    assert refusal(lambda: people.call("sam", "director.designate_acting", user="sue", start=iso(now),
                                       end=iso(now + timedelta(days=1)), why="me too")) == ("forbidden", "C2")
    assert refusal(lambda: people.call("sam", "director.revoke_acting", user="sam")) == ("forbidden", "C2")
    assert code(lambda: people.call("ivy", "director.revoke_acting", user="sam")) == "forbidden"


def test_C2_revoking_ends_her_period_her_sessions_and_her_key_slot(central, people):
    people.unseal()
    designate(people, central, "sam")
    token = people.login("sam")
    assert "sam" in central.keys.passphrase_users()
    assert people.call("director", "director.revoke_acting", user="sam") == {}
    assert "sam" not in central.keys.passphrase_users()
    assert code(lambda: central.call("session.whoami", {}, token)) == "not_authenticated"
    token = login(central, "sam", SAM_PASSPHRASE)["token"]
    assert code(lambda: central.call("hold.list", {}, token)) == "forbidden"
    entry = entries(central, "director.revoke_acting")[-1]
    assert (entry["actor"], entry["target"]) == (people.ids["director"], people.ids["sam"])


def test_C2_an_ended_period_loses_its_key_slot_even_after_a_failed_round(central, people, monkeypatch, caplog):
    """The background removal of ended acting directors' key slots survives a round that
    fails (here the records file is unreadable for a while) and removes the slot next round."""
    people.unseal()
    designate(people, central, "sam", end=timedelta(days=1))
    people.login("sam")
    assert "sam" in central.keys.passphrase_users()
    central.clock.offset += timedelta(days=2)
    monkeypatch.setattr(accounts, "SLOT_CHECK_SECONDS", 0.05)
    records_file = central.records.path
    good = records_file.read_bytes()
    records_file.write_bytes(b"{half a file")              # what a bad disk block would leave

    async def run() -> bool:
        task = asyncio.create_task(accounts.periodic(central)[0])
        try:
            for _ in range(400):
                if task.done() or any(r.exc_info and r.exc_info[0].__name__ == "RecordsCorrupt"
                                      for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
            assert "sam" in central.keys.passphrase_users()     # the failed round removed nothing
            records_file.write_bytes(good)
            for _ in range(400):
                if task.done() or "sam" not in central.keys.passphrase_users():
                    break
                await asyncio.sleep(0.05)
            return not task.done()
        finally:
            task.cancel()

    with caplog.at_level(logging.ERROR):
        still_running = asyncio.run(run())
    assert still_running, "the loop ended at the failed round"
    assert "sam" not in central.keys.passphrase_users()
    assert entries(central, "keys.slot_removed")[-1]["details"] == {"reason": "acting period over"}


def test_C22_every_action_of_an_acting_director_is_marked_as_hers_in_that_capacity(central, people):
    people.unseal()
    designate(people, central, "sam")
    first = central.audit.next_seq
    token = login(central, "sam", SAM_PASSPHRASE)["token"]

    def call(op, **args):
        return refusal(lambda: central.call(op, args, token))[0]

    call("policy.acknowledge", version=central.call("policy.text", {}, token)["version"])
    call("user.unlock", user="sue")
    call("user.reset_passphrase", user="sue", passphrase="sam-set-this-1")
    call("user.set_disabled", user="sue", disabled=True)
    call("user.set_disabled", user="sue", disabled=False)
    call("archive.seal")
    assert call("archive.unseal", passphrase="not-sams-passphrase") == "wrong_passphrase"
    assert call("archive.unseal", passphrase=SAM_PASSPHRASE) == "ok"     # her own key slot (C2)
    call("user.change_passphrase", old=SAM_PASSPHRASE, new="sams-new-choice-1")
    call("session.logout")
    mine = [e for e in central.audit.query() if e["seq"] >= first and e["actor"] == people.ids["sam"]]
    assert [e["action"] for e in mine] == [
        "keys.slot_added", "session.login", "policy.acknowledge", "user.unlock", "user.reset_passphrase",
        "user.disable", "user.enable", "archive.seal", "archive.unseal_failed", "archive.unseal",
        "keys.slot_rewrapped", "user.change_passphrase", "session.logout"]
    assert [e["action"] for e in mine if e["details"].get("acting_director") is not True] == []


# --------------------------------------------------------------------------- archive.status, unseal, seal (C2)


def test_C2_the_director_unseals_with_her_passphrase_or_the_recovery_code_and_seals_again(central, people):
    assert people.call("sam", "archive.status") == {"sealed": True}
    assert people.call("director", "archive.unseal", passphrase=DIRECTOR[1]) == {"sealed": False}
    assert people.call("ivy", "archive.status") == {"sealed": False}
    assert people.call("director", "archive.seal") == {"sealed": True}
    assert people.call("sam", "archive.status") == {"sealed": True}
    assert people.call("director", "archive.unseal", recovery_code=central.recovery_code) == {"sealed": False}
    unseals = entries(central, "archive.unseal")
    assert [(e["actor"], e["role"], e["details"]) for e in unseals] == [
        (people.ids["director"], "director", {"method": "passphrase", "acting_director": False}),
        (people.ids["director"], "director", {"method": "recovery", "acting_director": False})]
    assert [e["actor"] for e in entries(central, "archive.seal")] == [people.ids["director"]]


def test_C2_only_the_director_unseals_and_every_failed_attempt_is_audited(central, people):
    for who in ("sam", "ivy"):
        assert code(lambda: people.call(who, "archive.unseal", passphrase=PEOPLE[who][1])) == "forbidden"
        assert code(lambda: people.call(who, "archive.seal")) == "forbidden"
    assert code(lambda: people.call("director", "archive.unseal")) == "bad_request"
    assert code(lambda: people.call("director", "archive.unseal", passphrase=DIRECTOR[1],
                                    recovery_code=central.recovery_code)) == "bad_request"
    assert code(lambda: people.call("director", "archive.unseal", passphrase="not-her-passphrase")) \
        == "wrong_passphrase"
    assert code(lambda: people.call("director", "archive.unseal", recovery_code="ABCD-EFGH-JKLM-NPQR")) \
        == "wrong_recovery_code"
    assert people.call("director", "archive.status") == {"sealed": True}
    assert [e["details"] for e in entries(central, "archive.unseal_failed")] == [{"method": "passphrase"},
                                                                                 {"method": "recovery"}]
