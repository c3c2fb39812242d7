"""A central killed (SIGKILL) in the middle of an imminent-danger use (`imminent.invoke`, C19).

The use writes its record, its grant, its audit entry, its hold and the Director's alert.
A real central process is killed right after the grant, then (second case) right after the
audit entry: the staff member holds a grant, but the Director has not been told and the
footage is not held. Started again, the central finishes the use at once (its background
check runs at start): the Director is alerted, the footage held, the use audited once.
"""
from __future__ import annotations

import pytest

from appliance.custody.audit import verify_log
from appliance.rules import incidents
from conftest import _cheap_kdf, add_people, new_central
from crash_points import after_audit_entry, after_record, central_again, kill_central_at
from test_incidents import CAM, add_camera

pytestmark = pytest.mark.slow

DIE_AFTER = {"its grant": after_record("grants"), "its audit entry": after_audit_entry("imminent.invoke")}
INVOKE = """
token = central.call("session.login", {"user": sys.argv[2], "passphrase": sys.argv[3]})["token"]
central.call("imminent.invoke", {"reason": "a man is threatening staff at the desk", "cameras": [sys.argv[4]]}, token)
"""


@pytest.mark.parametrize("step", list(DIE_AFTER))
def test_a_central_killed_mid_imminent_danger_alerts_the_director_and_holds_the_footage_at_start(
        tmp_path, monkeypatch, step):
    _cheap_kdf(monkeypatch)
    data = tmp_path / "central"
    central = new_central(data)
    people = add_people(central)
    add_camera(central, CAM)
    people.login("sam")                                  # the policy acknowledged, as before any use
    central.close()

    kill_central_at(data, DIE_AFTER[step], INVOKE, "sam", "sam-passphrase-1", CAM)

    central = central_again(data)
    try:
        [use] = central.records.search("requests", kind="imminent_danger")
        [grant] = central.records.search("grants", request=use["id"])
        assert not central.records.search("alerts", kind="imminent_danger")      # what the kill left
        incidents.imminent_checks(central)                                      # the check the central runs at start
        use = central.records.get("requests", use["id"])
        [alert] = central.records.search("alerts", kind="imminent_danger")
        assert alert["request"] == use["id"] and alert["user"] == people.ids["sam"] and use["alert"] == alert["id"]
        hold = central.records.get("holds", use["hold"])
        assert (hold["kind"], hold["cameras"], hold["start"], hold["end"]) == (
            "imminent_danger", [CAM], grant["start"], grant["end"])
        assert use["grant"] == grant["id"]
        [entry] = central.audit.query(action_prefix="imminent.invoke")
        assert entry["actor"] == people.ids["sam"] and entry["target"] == use["id"]
        assert entry["refs"] == {"request": use["id"], "grant": grant["id"]}
        incidents.imminent_checks(central)                                      # again: nothing more
        assert len(central.records.search("alerts", kind="imminent_danger")) == 1
        assert len(central.records.search("holds", kind="imminent_danger")) == 1
        report = verify_log(central.paths.audit, central.keys.verify_key())
        assert report.ok, str(report)
    finally:
        central.close()
