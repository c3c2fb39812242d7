"""Every operation that names a person takes the login name as well as the account id."""
from __future__ import annotations

import inspect
import re
from datetime import timedelta

import pytest

from appliance.rules import catalog as policy  # noqa: F401  (registers every operation)
from appliance.errors import BadRequest, NotFound
from appliance.rules.registry import OPS, iso
from conftest import PEOPLE

# Written out by hand: each operation that names a person, and the argument that does.
PERSON_ARGUMENTS = {
    "user.reset_passphrase": "user", "user.unlock": "user", "user.set_disabled": "user",
    "director.designate_acting": "user", "director.revoke_acting": "user",
    "report.oversight": "user", "audit.query": "actor",
}


def lock(central, name):
    for _ in range(5):
        with pytest.raises(Exception):
            central.call("session.login", {"user": name, "passphrase": "not the passphrase"})
    assert central.records.search("users", name=name)[0]["locked_until"]


@pytest.fixture(params=["login name", "account id"])
def ref(request, people):
    """How a test names a person: `ref("sam")` is "sam" or "usr-00000N"."""
    people.login("sam")
    people.login("sue")
    return (lambda name: name) if request.param == "login name" else (lambda name: people.ids[name])


def test_user_unlock(central, people, ref):
    lock(central, "sam")
    people.call("ivy", "user.unlock", user=ref("sam"))
    assert central.call("session.login", {"user": "sam", "passphrase": PEOPLE["sam"][1]})["token"]


def test_user_reset_passphrase(central, people, ref):
    people.call("ivy", "user.reset_passphrase", user=ref("sam"), passphrase="temporary-again-1")
    assert central.call("session.login", {"user": "sam", "passphrase": "temporary-again-1"})["must_change_passphrase"]


def test_user_set_disabled(central, people, ref):
    people.call("director", "user.set_disabled", user=ref("sam"), disabled=True)
    assert central.records.get("users", people.ids["sam"])["disabled"] is True
    people.call("director", "user.set_disabled", user=ref("sam"), disabled=False)
    assert central.records.get("users", people.ids["sam"])["disabled"] is False


def test_director_designate_and_revoke_acting(central, people, ref):
    now = central.now()
    people.call("director", "director.designate_acting", user=ref("sue"), start=iso(now - timedelta(hours=1)),
                end=iso(now + timedelta(days=1)), why="Director on leave")
    periods = central.records.get("users", people.ids["sue"])["acting_periods"]
    assert len(periods) == 1 and not periods[0]["revoked"]
    people.call("director", "director.revoke_acting", user=ref("sue"))
    assert central.records.get("users", people.ids["sue"])["acting_periods"][0]["revoked"]


def test_report_oversight(central, people, ref):
    report = people.call("director", "report.oversight", user=ref("sam"))
    assert [p["name"] for p in report["staff"]] == ["sam"]


def test_audit_query_by_actor(central, people, ref):
    entries = people.call("director", "audit.query", actor=ref("sam"))["entries"]
    assert entries and {e["actor"] for e in entries} == {people.ids["sam"]}
    # Not a person: the actor is taken as written (the system, a camera).
    assert {e["actor"] for e in people.call("director", "audit.query", actor="system")["entries"]} == {"system"}


def test_every_operation_that_names_a_person_resolves_it_in_one_place():
    # No operation reads a person by id alone: each goes through accounts.person_arg / find_user,
    # and the operations that do are the ones above (each has its test in this module).
    person = re.compile(r'args\.\w+\("(user|actor|staff|person|holder|requester|reporter)"')
    readers = {name for name, o in OPS.items() if person.search(inspect.getsource(o.func))}
    resolving = {name for name, o in OPS.items() if re.search(r"person_arg\(|find_user\(", inspect.getsource(o.func))}
    assert resolving == set(PERSON_ARGUMENTS)
    assert readers - resolving == {"session.login"}     # the login form takes a login name, never an id


def test_an_unknown_person_is_named_in_the_refusal(people):
    with pytest.raises(NotFound, match="no account 'nobody'"):
        people.call("ivy", "user.unlock", user="nobody")
    with pytest.raises(BadRequest):
        people.call("ivy", "user.unlock", user="../usr-000001")


def test_a_login_name_cannot_look_like_an_account_id(central, people):
    with pytest.raises(BadRequest, match="looks like an account id"):
        central.call("user.create", {"name": "usr-000002", "role": "staff", "passphrase": "temporary-pass-1"},
                     people.tokens["director"])
