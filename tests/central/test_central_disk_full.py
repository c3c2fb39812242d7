"""A central whose data disk is full: on a real 24 MiB tmpfs (we are root in CI; skipped where
mounting is not allowed), with a real central serving ingest and its API.

What must hold: an upload that does not fit is refused with a clear answer the node retries
(507), nothing half-written stays in the archive, no traceback is logged; an operation whose
audit entry cannot be written fails with a clear error and its entry is not half a line; once
there is room again, everything goes on and the audit log verifies.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from appliance.custody.audit import verify_log
from appliance.errors import CustodianError
from appliance.rules.retention import sweep
from conftest import enrol_camera_record, serving_central_at
from test_ingest import Node, health, put

SIZE_MB = 24


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    mount = tmp_path_factory.mktemp("central-disk")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture(scope="module")
def serving(disk):
    with serving_central_at(disk / "central") as s:
        s.central.cfg.central.disk_reserve_bytes = 1 << 20     # the retention reserve, for a 24 MiB disk
        sweep(s.central)                                       # ... which lifts the start-up sweep's refusal
        assert s.central.ingest_refusal() is None
        yield s


def fill(disk: Path, leave: int) -> list[Path]:
    """Take all but `leave` bytes of the disk (in pages: tmpfs counts pages)."""
    fillers, n = [], 0
    while True:
        st = os.statvfs(disk)
        room = st.f_bavail * st.f_frsize - leave
        if room < 4096:
            return fillers
        filler = disk / f"filler-{n}"
        n += 1
        try:
            with open(filler, "wb") as f:
                f.write(b"\0" * min(room, 8 << 20))
        except OSError:
            pass
        fillers.append(filler)


def free(fillers: list[Path]) -> None:
    for f in fillers:
        f.unlink(missing_ok=True)


def test_an_upload_that_does_not_fit_is_a_507_the_node_retries_and_nothing_is_half_stored(serving, disk, tmp_path,
                                                                                         caplog):
    central = serving.central
    node = Node(central, tmp_path, name="cam-full")
    enrol_camera_record(central, node.name, node.key.verify_key.encode().hex())
    first = node.make(frames=20)
    status, answer = put(serving.url, node.name, 0, first)
    assert status == 201, (status, answer)
    big = node.make(frames=400)                                  # ~370 kB
    fillers = fill(disk, 64 * 1024)
    try:
        status, answer = put(serving.url, node.name, 1, big)
        assert status == 507 and "full" in answer["error"], (status, answer)
        assert list(central.archive.incoming.iterdir()) == []    # nothing half-written left behind
        assert central.archive.head(node.name) == 0
        assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
        assert health(serving.url) == 200
    finally:
        free(fillers)
    for _retry in range(50):                                     # the node's retries, with room again
        status, answer = put(serving.url, node.name, 1, big)
        if status != 507:
            break
        time.sleep(0.2)
    assert status == 201 and answer["status"] == "stored", (status, answer)
    assert _retry <= 5          # ingest resumed at once, not at the next 10-minute sweep


def test_an_action_whose_audit_entry_cannot_be_written_fails_clearly_and_the_log_stays_whole(serving, disk):
    central, people = serving.central, serving.people
    people.login("sam")
    fillers = fill(disk, 0)
    try:
        entries_before = central.audit.next_seq
        with pytest.raises(CustodianError) as refused:
            people.call("sam", "incident.create", grounds="criminal_activity", occurred_at="2026-01-01T10:00:00Z",
                        location="Main entrance", attestation=True,
                        description="A laptop was taken from the study carrels near the entrance.")
        assert "disk" in str(refused.value) and "full" in str(refused.value), refused.value
        assert central.audit.next_seq == entries_before
    finally:
        free(fillers)
    made = people.call("sam", "incident.create", grounds="criminal_activity", occurred_at="2026-01-01T10:00:00Z",
                       location="Main entrance", attestation=True,
                       description="A laptop was taken from the study carrels near the entrance.")
    assert made["incident"]["id"]
    report = verify_log(central.paths.audit, central.keys.verify_key())
    assert report.ok, str(report)
