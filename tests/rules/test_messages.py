"""Messages a person reads: local times to the minute, roles as people say them, fields as
the form names them, every error code documented, the policy text clean."""
from __future__ import annotations

import ast
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from appliance.errors import HTTP_STATUS, CustodianError, WrongPassphrase
from appliance.errors import BadRequest, Refused
from appliance.rules.registry import iso
from appliance.wording import when

ROOT = Path(__file__).resolve().parents[2]
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


@pytest.fixture
def local_zone(monkeypatch):
    """Run with the central in a given local time zone (POSIX TZ rules: no zoneinfo files needed)."""
    def use(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()
    yield use
    monkeypatch.undo()
    time.tzset()


def test_a_time_reads_in_the_local_zone_to_the_minute_as_the_screens_write_it(local_zone):
    local_zone("EST+5EDT,M3.2.0,M11.1.0")
    assert when("2031-11-30T18:12:34.567890Z") == "30 Nov 2031 13:12"           # no zone: local, as on screen
    assert when(datetime(2031, 7, 1, 12, 0, 59, tzinfo=timezone.utc)) == "01 Jul 2031 08:00"
    assert when(datetime(2031, 7, 1, 12, 0)) == "01 Jul 2031 08:00"               # naive means UTC
    now = datetime.now(timezone.utc)
    est = now - timedelta(hours=5 if time.localtime().tm_isdst == 0 else 4)
    assert when(now) == est.strftime("%H:%M")                                   # today: the clock alone


def fail_logins(central, name: str) -> None:
    for _ in range(5):
        with pytest.raises(WrongPassphrase):
            central.call("session.login", {"user": name, "passphrase": "not the passphrase"})


@pytest.mark.parametrize("who, unlocks", [
    ("sam", "IT staff or the Director can unlock it sooner"),
    ("ivy", "the Director can unlock it sooner"),
    ("director", "nobody can unlock the Director's account sooner"),
])
def test_C8_the_lockout_says_until_when_in_local_time_and_who_can_unlock_it(central, people, local_zone, who,
                                                                             unlocks):
    local_zone("XYZ+5")                                   # five hours behind UTC, all year
    fail_logins(central, who)
    with pytest.raises(Refused) as e:
        central.call("session.login", {"user": who, "passphrase": "whatever-it-is"})
    until = datetime.fromisoformat(central.records.search("users", name=who)[0]["locked_until"].replace("Z", "+00:00"))
    local, today = until - timedelta(hours=5), (datetime.now(timezone.utc) - timedelta(hours=5)).date()
    shown = f"{local:%H:%M}" if local.date() == today else f"{local:%d %b %H:%M}"   # as the screens write it
    assert str(e.value) == f"too many failed logins: locked until {shown}; {unlocks}"
    assert e.value.code == "locked"


def test_a_wrong_unseal_passphrase_does_not_mention_a_user_name(central, people):
    with pytest.raises(WrongPassphrase) as e:
        people.call("director", "archive.unseal", passphrase="not-her-passphrase")
    assert "user" not in str(e.value) and "passphrase" in str(e.value)
    assert central.custody.is_sealed


def test_a_missing_field_is_named_as_the_form_calls_it(central, people):
    with pytest.raises(BadRequest) as e:
        people.call("sam", "breach.report", noticed_at=iso(central.now()))
    assert str(e.value) == '"What happened" is required' and e.value.field == "what"
    with pytest.raises(BadRequest) as e:
        people.call("sam", "breach.report", what="A printout of a still was left at the desk",
                    noticed_at=iso(central.now() + timedelta(days=2)))
    assert e.value.field == "noticed_at" and not ISO_TIME.search(str(e.value))


def test_a_breach_alert_shows_local_time_and_the_role_as_people_say_it(central, people, local_zone):
    local_zone("XYZ+5")
    people.call("ivy", "breach.report", what="A USB stick with exports went missing from the office",
                noticed_at=iso(central.now()))
    alert = central.records.all("alerts")[-1]["message"]
    assert re.match(r"ivy \(IT staff\) reported a possible privacy breach at \d\d:\d\d: ", alert)   # today
    assert not ISO_TIME.search(alert) and "UTC" not in alert and "XYZ" not in alert


def test_a_refusal_writes_its_time_in_local_time_as_the_screens_do(central, people, local_zone):
    local_zone("XYZ+5")                                   # five hours behind UTC, all year
    future = central.now().replace(microsecond=0) + timedelta(days=2)
    with pytest.raises(BadRequest) as e:
        people.call("sam", "breach.report", what="A printout of a still was left at the desk", noticed_at=iso(future))
    local = future - timedelta(hours=5)
    day = f"{local:%d %b}" + (f" {local.year}" if local.year != (central.now() - timedelta(hours=5)).year else "")
    assert f"({day} {local:%H:%M}) is in the future" in str(e.value)
    assert "UTC" not in str(e.value) and "XYZ" not in str(e.value)


def test_the_policy_text_has_no_conversion_debris(central, people):
    text = people.call("sam", "policy.text")["text"]
    assert "[image" not in text and not re.search(r"\[\s*\w*:\s*\]", text)
    assert "While it is recognized that video surveillance will not prevent all incidents" in text


# --------------------------------------------------------------------------- every code documented


def codes_sent() -> dict[str, str]:
    """Every error code the core, the API and the client can put in an answer: code -> where."""
    found = {}
    for path in sorted((ROOT / "appliance").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and [getattr(t, "id", None) for t in stmt.targets] == ["code"]
                            and isinstance(stmt.value, ast.Constant)):
                        found[stmt.value.value] = path.name
            elif isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        found[kw.value.value] = path.name
                if (getattr(node.func, "id", None) == "ApiError" and node.args
                        and isinstance(node.args[0], ast.Constant)):
                    found[node.args[0].value] = path.name
            elif isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values):
                    if isinstance(k, ast.Constant) and k.value == "code" and isinstance(v, ast.Constant):
                        found[v.value] = path.name
    return found


def documented() -> dict[str, str]:
    text = (ROOT / "docs" / "api.md").read_text()
    table = text.split("| code | HTTP | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for code in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[code] = cells[1]
    return rows


def test_every_error_code_the_api_sends_is_in_the_docs_table():
    sent, docs = codes_sent(), documented()
    assert {"passphrase_change_required", "weak_passphrase", "unavailable", "locked", "forbidden"} <= set(sent)
    assert sorted(set(sent) - set(docs)) == []
    assert sorted(set(docs) - set(sent)) == []                       # nothing documented that is never sent
    for code in sent:                                                 # and with the status actually sent
        if code in ("unavailable", "enrolment_refused"):
            assert docs[code] == "none"                               # the client's or the node's own, no HTTP
        elif code != "internal":
            assert docs[code] == str(HTTP_STATUS[code]), code
    assert docs["internal"] == "500"


def test_a_custodian_error_without_a_code_of_its_own_is_documented_too():
    assert CustodianError.code in documented()


def test_people_are_told_the_passphrase_rule_in_words(central, people):
    with pytest.raises(CustodianError) as e:
        central.call("user.create", {"name": "tom", "role": "staff", "passphrase": "short"}, people.tokens["director"])
    assert e.value.code == "weak_passphrase" and "10 characters" in str(e.value)
    assert not central.records.search("users", name="tom")


API_NAMES = re.compile(r"\b(?:[a-z]{3,}\.[a-z_]{3,}|[a-z]+_[a-z_]+)\b")   # counsel.record, override_reason, taken_by


def test_refusals_a_form_shows_name_fields_as_it_does_and_no_operation(central, people, tmp_path):
    from conftest import enrol_camera_record
    from test_retention import Camera

    enrol_camera_record(central, "cam-a", "ab" * 32)
    now, today = central.now(), central.now().date().isoformat()

    def refused(op: str, **args) -> str:
        with pytest.raises((BadRequest, Refused)) as e:
            people.call("director", op, **args)
        assert not API_NAMES.search(str(e.value)), f"{op}: {e.value}"
        return str(e.value)

    assert '"Cameras" must name at least one' in refused(
        "request.create", incident="inc-000001", kind="review", cameras=[], start=iso(now), end=iso(now),
        reason="to see")
    order = people.call("director", "instrument.record", kind="subpoena", reference="CR-1", court="District court",
                        issued_on=today, received_on=today, description="entrance footage", cameras=["cam-a"],
                        start=iso(now - timedelta(hours=1)), end=iso(now))
    scope = {"cameras": ["cam-a"], "start": iso(now - timedelta(hours=1)), "end": iso(now)}
    assert "consult legal counsel" in refused("release.create", instrument=order["instrument"]["id"],
                                              recipient="Chariton PD", **scope)
    assert refused("release.create", recipient="Chariton PD", **scope).startswith("a release to law enforcement")
    assert refused("counsel.record", instrument=order["instrument"]["id"], counsel="M. Ortiz",
                   consulted_on="2020-01-01", summary="fine").startswith('"Consulted on"')
    people.call("director", "counsel.record", instrument=order["instrument"]["id"], counsel="M. Ortiz",
                consulted_on=today, summary="fine")
    assert refused("release.create", instrument=order["instrument"]["id"], recipient="Chariton PD",
                   **scope).startswith("no footage is stored for cam-a from ")
    Camera(central, "cam-a", enrolled=True).record(now - timedelta(minutes=30))
    release = people.call("director", "release.create", instrument=order["instrument"]["id"],
                          recipient="Chariton PD", **scope)["release"]
    people.unseal()
    assert refused("release.build", release=release["id"], to="usb", medium="USB stick 4411",
                   taken_by="Det. Lane").startswith('"Destination"')
    assert "saying why it is no longer needed" in refused("hold.release", hold=order["hold"], reason="done")
    with pytest.raises(Refused) as e:
        people.call("ivy", "user.reset_passphrase", user="ivy", passphrase="temporary-pass-1")
    assert not API_NAMES.search(str(e.value)) and "your own" in str(e.value)
