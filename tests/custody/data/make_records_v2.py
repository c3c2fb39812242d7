"""How tests/custody/data/records-v2.json was made: a records file written by the Custodian
of commit 4b89c5e (schema version 2), for the migration tests (tests/custody/test_records.py).

A central with its people, an approved camera, two live views (then called live sessions:
one closed, one open), and one document each in the `sessions` and `approvals` tables
that version allowed but never used. Run it from the root of a checkout of that commit:

    python tests/custody/data/make_records_v2.py tests/custody/data/records-v2.json

It does not run against later code (the live view's API fields have other names).
"""
import shutil
import sys
import tempfile
from pathlib import Path

from nacl.pwhash import argon2id

sys.path.insert(0, "tests")
import conftest  # noqa: E402
from appliance.custody import keys  # noqa: E402

keys.ARGON2_OPSLIMIT, keys.ARGON2_MEMLIMIT = argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN   # test passphrases only
out = Path(sys.argv[1])
data = Path(tempfile.mkdtemp(prefix="records-v2-")) / "central"
try:
    central = conftest.new_central(data)
    people = conftest.add_people(central)
    conftest.enrol_camera_record(central, "entrance", "33" * 32)
    first = people.call("sam", "live.open", camera="entrance", purpose="the returns box at closing",
                        minutes=5)["session"]
    people.call("sam", "live.close", session=first["id"], reason="done")
    people.call("director", "live.open", camera="entrance", purpose="a patron reported a fall", minutes=10)
    central.records.insert("sessions", {"user_id": "usr-000002", "note": "never used by any release"})
    central.records.insert("approvals", {"request": "req-000001", "note": "never used by any release"})
    central.close()
    shutil.copy(data / "records" / "records.json", out)
finally:
    shutil.rmtree(data.parent, ignore_errors=True)     # the central's keys and audit log go
