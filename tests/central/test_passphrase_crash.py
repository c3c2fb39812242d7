"""A central killed (SIGKILL) in the middle of the Director's passphrase change.

`user.change_passphrase` writes two files: her archive key slot, re-wrapped under the new
passphrase (keys/slots.json), then her login record (records.json). A real central process
is killed between the two, as a power cut would leave it: her slot opens with the new
passphrase while her login still takes the old one. Started again, the central must let
her finish: she logs in with the old passphrase and changes it again, and from then on the
new one logs her in and unseals the archive, the old one neither, and the change is in the
audit log (a key change is an action on the keys, C22).
"""
from __future__ import annotations

import pytest

from appliance.custody.audit import verify_log
from appliance.errors import WrongPassphrase
from conftest import DIRECTOR, _cheap_kdf, new_central
from crash_points import central_again, kill_central_at

pytestmark = pytest.mark.slow

NEW = "the-new-director-passphrase-2"

CHANGE = """
old, new = sys.argv[2], sys.argv[3]
token = central.call("session.login", {"user": "director", "passphrase": old})["token"]
central.call("user.change_passphrase", {"old": old, "new": new}, token)
"""


def test_a_central_killed_between_the_key_slot_and_the_login_lets_the_director_finish_her_change(tmp_path,
                                                                                                 monkeypatch):
    _cheap_kdf(monkeypatch)
    data = tmp_path / "central"
    new_central(data).close()
    name, old = DIRECTOR
    kill_central_at(data, "die_after(central.keys, 'change_passphrase')", CHANGE, old, NEW)

    central = central_again(data)
    try:
        token = central.call("session.login", {"user": name, "passphrase": old})["token"]
        # Finishing with another new passphrase than the one her slot took would part them again: refused.
        with pytest.raises(WrongPassphrase):
            central.call("user.change_passphrase", {"old": old, "new": "yet-another-passphrase-3"}, token)
        central.call("user.change_passphrase", {"old": old, "new": NEW}, token)
        with pytest.raises(WrongPassphrase):
            central.call("session.login", {"user": name, "passphrase": old})
        token = central.call("session.login", {"user": name, "passphrase": NEW})["token"]
        central.call("policy.acknowledge", {"version": central.call("policy.text", {}, token)["version"]}, token)
        with pytest.raises(WrongPassphrase):
            central.call("archive.unseal", {"passphrase": old}, token)
        assert central.call("archive.unseal", {"passphrase": NEW}, token) == {"sealed": False}
        actions = [e["action"] for e in central.audit.query(action_prefix="keys.slot_rewrapped")
                   + central.audit.query(action_prefix="user.change_passphrase")]
        assert actions == ["keys.slot_rewrapped", "user.change_passphrase"]
        report = verify_log(central.paths.audit, central.keys.verify_key())
        assert report.ok, str(report)
    finally:
        central.close()
