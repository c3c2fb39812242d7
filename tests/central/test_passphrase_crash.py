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

import signal
import subprocess
import sys

import pytest

from appliance.custody.audit import verify_log
from appliance.errors import WrongPassphrase
from conftest import DIRECTOR, _cheap_kdf, new_central
from test_enrolment_crash import new_central_again

pytestmark = pytest.mark.slow

NEW = "the-new-director-passphrase-2"

CENTRAL_TO_KILL = """
import os, signal, sys
from pathlib import Path
from appliance import config
from appliance.central.daemon import Central
from appliance.custody import keys
keys.ARGON2_OPSLIMIT, keys.ARGON2_MEMLIMIT = keys.argon2id.OPSLIMIT_MIN, keys.argon2id.MEMLIMIT_MIN
data, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
central = Central(config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0}}), data)
token = central.call("session.login", {"user": "director", "passphrase": old})["token"]
real = central.keys.change_passphrase
def rewrap_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
central.keys.change_passphrase = rewrap_then_die
central.call("user.change_passphrase", {"old": old, "new": new}, token)
sys.exit("the central was not killed: the change went another way")
"""


def test_a_central_killed_between_the_key_slot_and_the_login_lets_the_director_finish_her_change(tmp_path,
                                                                                                 monkeypatch):
    _cheap_kdf(monkeypatch)
    data = tmp_path / "central"
    new_central(data).close()
    name, old = DIRECTOR
    killed = subprocess.run([sys.executable, "-c", CENTRAL_TO_KILL, str(data), old, NEW],
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    central = new_central_again(data)
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
