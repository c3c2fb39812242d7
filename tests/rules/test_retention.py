"""Retention (C11, C12, C20): the schedule, holds, the sweeper with deletion receipts,
disk-full behaviour, and storage that stays in the library.

Segments here are real: written by SegmentWriter with a node key enrolled in the
cameras table, verified and committed to the central's archive tree.
"""
from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import nacl.signing
import pytest

from appliance.rules import retention
from appliance.formats import segment as seg
from appliance.errors import ConfigError
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.registry import OPS, iso
from conftest import ServingCentral, enrol_camera_record
from hw.backend import Frame

SEGMENT_US = 60_000_000


class Camera:
    """An enrolled camera whose segments go straight into the central's archive."""

    def __init__(self, central, name: str, enrolled: bool = False):
        """`enrolled`: the camera's record exists already (a test's own); it takes this camera's key."""
        self.central, self.name = central, name
        self.key = nacl.signing.SigningKey.generate()
        if enrolled:
            central.records.update("cameras", name, {"key": self.key.verify_key.encode().hex()})
            central.reload_cameras()
        else:
            enrol_camera_record(central, name, self.key.verify_key.encode().hex())
        self.seq, self.prev = 0, None

    def write(self, path: Path, start: datetime | None = None) -> seg.SegmentInfo:
        """A segment starting at `start` and, like a node's, closed a minute later by its clock."""
        if start is None:
            return self._write(path, None)
        start_us = int(start.timestamp() * 1_000_000)
        real_clock = seg.wall_us
        seg.wall_us = lambda: start_us + SEGMENT_US   # the node's wall clock when it closed the segment
        try:
            return self._write(path, start_us)
        finally:
            seg.wall_us = real_clock

    def _write(self, path: Path, start_us: int | None) -> seg.SegmentInfo:
        w = seg.SegmentWriter(path, params=seg.StreamParams(self.name, 64, 48, 10), seq=self.seq,
                              prev_digest=self.prev, archive_key=self.central.keys.archive_public_key(),
                              signing_key=self.key, chunk_bytes=4096, start_us=start_us)
        for i in range(4):
            w.write_frame(Frame(b"\x00\x00\x00\x01\x65" + os.urandom(700), i == 0, i * 100_000))
        return w.close()

    def record(self, start: datetime | None = None) -> Path:
        """Store one segment starting at `start` (default: the real now); returns its path."""
        tmp = self.central.archive.incoming_path(self.name, self.seq)
        self.write(tmp, start)
        info = seg.verify_file(tmp, lambda camera, header: self.key.verify_key)
        assert self.central.archive.commit(tmp, info) == "stored"
        self.prev, self.seq = info.digest, self.seq + 1
        return self.central.archive.path_for(info.header)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def receipts(central) -> dict[str, dict]:
    """Deletion receipts in the audit log, by segment (path inside the archive)."""
    return {e["target"]: e for e in central.audit.query(action_prefix="retention.delete")}


def rel(central, path: Path) -> str:
    return path.relative_to(central.paths.archive).as_posix()


def stored(central, camera: str) -> list[int]:
    return [s.seq for s in central.archive.segments(camera)]


# --------------------------------------------------------------------------- the schedule (C12)


def test_C12_sweeper_deletes_old_unheld_footage_with_receipts(central):
    now = central.now()
    cam = Camera(central, "cam-a")
    old = [cam.record(now - timedelta(days=40, minutes=-i)) for i in range(3)]
    cam.record(now - timedelta(days=29))              # starts inside the schedule
    fresh = cam.record(now - timedelta(minutes=10))
    digests = {rel(central, p): sha256(p) for p in old}

    report = retention.sweep(central)

    assert report["deleted"] == {"retention_schedule": 3, "disk_full": 0}
    assert not any(p.exists() for p in old) and fresh.exists()
    assert stored(central, "cam-a") == [3, 4]
    found = receipts(central)
    assert set(found) == set(digests)
    for name, entry in found.items():   # every deletion names the segment, its digest and the rule
        assert entry["details"]["digest"] == digests[name]
        assert entry["details"]["rule"] == entry["why"] == "retention_schedule"
        assert entry["details"]["camera"] == "cam-a" and entry["details"]["retention_days"] == 30
    assert central.last_sweep is report


def test_C12_every_deletion_has_exactly_one_receipt(central):
    """A receipt exists for every segment gone from the archive, and only one, however many sweeps run."""
    now = central.now()
    cam = Camera(central, "cam-a")
    paths = [cam.record(now - timedelta(days=50, minutes=-i)) for i in range(4)] + [cam.record(now)]
    retention.sweep(central)
    retention.sweep(central)
    gone = {rel(central, p) for p in paths if not p.exists()}
    assert gone and gone == set(receipts(central))
    assert len(central.audit.query(action_prefix="retention.delete")) == len(gone)  # one receipt each


def test_C12_last_segment_of_a_retired_camera_expires_on_schedule(central):
    """The newest segment covers up to now, but one that ended long ago (its signed trailer
    says when) still expires, so a retired camera's last minute is not kept forever."""
    cam = Camera(central, "cam-old")
    last = cam.record()                                   # recorded now, by the real clock
    central.clock.offset += timedelta(days=31)            # ...and a month passes
    retention.sweep(central)
    assert not last.exists() and rel(central, last) in receipts(central)


def test_C12_held_footage_survives(central, people):
    now = central.now()
    a, b = Camera(central, "cam-a"), Camera(central, "cam-b")
    a_paths = [a.record(now - timedelta(days=40, minutes=-10 * i)) for i in range(4)] + [a.record(now)]
    b_paths = [b.record(now - timedelta(days=40, minutes=-10 * i)) for i in range(2)] + [b.record(now)]
    # A litigation hold on cam-a's second segment only, and an all-cameras hold on cam-b's first.
    lit = people.call("director", "hold.place", kind="litigation", cameras=["cam-a"],
                      start=iso(now - timedelta(days=40, minutes=-12)), end=iso(now - timedelta(days=40, minutes=-15)),
                      why="notice of claim from a patron's attorney")["hold"]
    every = people.call("director", "hold.place", kind="litigation", cameras=[],
                        start=iso(now - timedelta(days=40, seconds=-5)), end=iso(now - timedelta(days=40, minutes=-1)),
                        why="insurer asked to keep the morning of the flood")["hold"]

    report = retention.sweep(central)

    # cam-a: seq 0 is covered by the all-cameras hold, seq 1 by the litigation hold.
    assert stored(central, "cam-a") == [0, 1, 4] and stored(central, "cam-b") == [0, 2]
    assert report["kept_for_holds"] == 3
    assert set(receipts(central)) == {rel(central, p) for p in (a_paths[2], a_paths[3], b_paths[1])}

    people.call("director", "hold.release", hold=lit["id"], reason="claim settled")
    people.call("director", "hold.release", hold=every["id"], reason="insurer closed the file")
    retention.sweep(central)
    assert stored(central, "cam-a") == [4] and stored(central, "cam-b") == [2]
    assert {rel(central, a_paths[0]), rel(central, a_paths[1]), rel(central, b_paths[0])} <= set(receipts(central))


def test_C12_automatic_holds_of_other_modules_are_honoured(central):
    """An imminent-danger hold written straight to the holds table (the shared format) is respected."""
    now = central.now()
    cam = Camera(central, "cam-a")
    old = cam.record(now - timedelta(days=45))
    cam.record(now)
    central.records.insert("holds", {
        "kind": "imminent_danger", "cameras": ["cam-a"], "start": iso(now - timedelta(days=45, minutes=1)),
        "end": iso(now - timedelta(days=44)), "refs": {"request": "req-000001"}, "why": "break-glass",
        "placed_by": "system", "placed_at": iso(now), "released_at": None, "released_by": None,
        "release_reason": None})
    retention.sweep(central)
    assert old.exists() and not receipts(central)


# --------------------------------------------------------------------------- disk full (C12)


async def test_C12_disk_full_deletes_oldest_unheld_then_refuses_ingest(central, people, tmp_path, monkeypatch):
    from aiohttp.test_utils import TestClient, TestServer

    from appliance.central.ingest import make_ingest_app

    now = central.now()
    cam = Camera(central, "cam-a")
    paths = [cam.record(now - timedelta(hours=5 - i)) for i in range(5)]   # all inside the schedule
    people.call("director", "hold.place", kind="litigation", cameras=["cam-a"],
                start=iso(now - timedelta(hours=4, minutes=-10)), end=iso(now - timedelta(hours=4, minutes=-20)),
                why="preservation letter")                                   # holds segment 1
    reserve = 1_000_000
    central.cfg.central.disk_reserve_bytes = reserve
    size = {i: p.stat().st_size for i, p in enumerate(paths)}

    def used() -> int:
        return sum(s.path.stat().st_size for c in central.archive.cameras() for s in central.archive.segments(c))

    # A disk that needs exactly segments 0 and 2 gone (1 is held) to get back to the reserve.
    capacity = reserve + sum(size.values()) - size[0] - size[2]
    report = retention.sweep(central, free_bytes=lambda path: capacity - used())
    assert report["deleted"]["disk_full"] == 2 and stored(central, "cam-a") == [1, 3, 4]
    assert {e["why"] for e in receipts(central).values()} == {"disk_full"}
    assert set(receipts(central)) == {rel(central, paths[0]), rel(central, paths[2])}
    assert central.records.search("alerts", kind="disk_full")
    assert central.ingest_refusal() is None

    # Now even deleting every unheld segment is not enough: held footage stays, ingest stops.
    capacity = reserve + size[1] - 1
    report = retention.sweep(central, free_bytes=lambda path: capacity - used())
    assert stored(central, "cam-a") == [1] and paths[1].exists()
    assert report["ingest_refused"] and central.ingest_refusal()
    assert central.audit.query(action_prefix="retention.ingest_refused")
    alerts = central.records.search("alerts", kind="disk_full")
    assert any("held footage" in a["message"] for a in alerts)
    body_path = tmp_path / "next.cseg"
    cam.write(body_path)
    with monkeypatch.context() as simulated:   # ingest measures the same full disk as the sweeps above
        simulated.setattr(retention, "_measure_free", lambda path: capacity - used())
        async with TestClient(TestServer(make_ingest_app(central))) as client:
            answer = await client.put(f"/v1/segments/cam-a/{cam.seq}", data=body_path.read_bytes())
            assert answer.status == 507 and "held footage" in (await answer.json())["error"]

    # A second sweep while still full does not alert again; space coming back resumes ingest.
    count = len(central.records.search("alerts", kind="disk_full"))
    retention.sweep(central, free_bytes=lambda path: capacity - used())
    assert len(central.records.search("alerts", kind="disk_full")) == count
    retention.sweep(central, free_bytes=lambda path: 10 * reserve)
    assert central.ingest_refusal() is None and central.audit.query(action_prefix="retention.ingest_resumed")
    assert paths[1].exists()


# --------------------------------------------------------------------------- holds (C12, C20)


def test_C20_only_director_releases_holds(central, people):
    Camera(central, "cam-a")
    now = central.now()
    args = dict(kind="litigation", cameras=["cam-a"], start=iso(now - timedelta(hours=2)), end=iso(now),
                why="lawsuit filed")
    for who in ("sam", "ivy"):
        with pytest.raises(Refused) as e:
            people.call(who, "hold.place", **args)
        assert e.value.code == "forbidden"
    hold = people.call("director", "hold.place", **args)["hold"]
    assert central.audit.query(action_prefix="hold.place")[-1]["target"] == hold["id"]
    for who in ("sam", "ivy"):
        for name, extra in (("hold.release", {"hold": hold["id"], "reason": "done"}), ("hold.list", {})):
            with pytest.raises(Refused) as e:
                people.call(who, name, **extra)
            assert e.value.code == "forbidden"
    assert central.records.get("holds", hold["id"])["released_at"] is None
    with pytest.raises(BadRequest):
        people.call("director", "hold.release", hold=hold["id"])              # a reason is required
    with pytest.raises(NotFound):
        people.call("director", "hold.release", hold="hld-999999", reason="typo")

    released = people.call("director", "hold.release", hold=hold["id"], reason="case dismissed")["hold"]
    assert released["released_by"] == people.ids["director"] and released["release_reason"] == "case dismissed"
    entry = central.audit.query(action_prefix="hold.release")[-1]
    assert entry["target"] == hold["id"] and entry["why"] == "case dismissed"
    assert entry["actor"] == people.ids["director"]
    with pytest.raises(Refused):
        people.call("director", "hold.release", hold=hold["id"], reason="again")
    listed = people.call("director", "hold.list")["holds"]
    assert [h["active"] for h in listed] == [False]
    assert people.call("director", "hold.list", active_only=True)["holds"] == []


def test_C13_a_hold_the_director_places_for_a_sealed_warrant_keeps_its_scope_out_of_the_audit_log(central,
                                                                                                   people):
    """The audit log is readable by an acting director (audit.query); a sealed warrant's particulars are
    not. A hold the Director places or releases under one shows there only that it exists."""
    Camera(central, "cam-a"), Camera(central, "cam-b")
    now, today = central.now(), central.now().date().isoformat()
    warrant = people.call("director", "instrument.record", kind="search_warrant", reference="SW-2026-0077",
                          court="District Court", issued_on=today, received_on=today,
                          description="the reading room", cameras=["cam-a"], start=iso(now - timedelta(days=3)),
                          end=iso(now - timedelta(days=2)))["instrument"]
    hold = people.call("director", "hold.place", kind="instrument", instrument=warrant["id"], cameras=["cam-b"],
                       start="2026-01-05T10:00:00Z", end="2026-01-05T11:00:00Z",
                       why="SW-2026-0077 also names the side door")["hold"]
    people.call("director", "hold.release", hold=hold["id"], reason="SW-2026-0077: the side door is not needed")
    people.login("sue")
    people.call("director", "director.designate_acting", user="sue", start=iso(now - timedelta(minutes=1)),
                end=iso(now + timedelta(days=1)), why="Director on leave")
    entries = people.call("sue", "audit.query", action_prefix="hold.")["entries"]
    placed = [e for e in entries if e["target"] == hold["id"]]
    assert [e["action"] for e in placed] == ["hold.place", "hold.release"]
    assert all(e["refs"] == {"instrument": warrant["id"]} for e in placed)
    for secret in ("cam-b", "2026-01-05", "SW-2026-0077", "side door"):
        assert secret not in str(placed), secret
    [kept] = [h for h in people.call("director", "hold.list")["holds"] if h["id"] == hold["id"]]
    assert kept["why"] == "SW-2026-0077 also names the side door" and kept["cameras"] == ["cam-b"]  # hers to see


def test_C12_hold_format_is_the_shared_one(central, people):
    Camera(central, "cam-a")
    central.records.insert("incidents", {"grounds": "criminal_activity", "summary": "window broken"},
                           id="inc-000001")
    now = central.now()
    hold = people.call("director", "hold.place", kind="incident", incident="inc-000001", cameras=[],
                       start=iso(now - timedelta(hours=1)), end=iso(now), why="broken window")["hold"]
    stored_hold = central.records.get("holds", hold["id"])
    assert set(stored_hold) == {"id", "kind", "cameras", "start", "end", "refs", "why", "placed_by",
                                "placed_at", "released_at", "released_by", "release_reason"}
    assert stored_hold["refs"] == {"incident": "inc-000001"} and stored_hold["cameras"] == []
    assert stored_hold["placed_by"] == people.ids["director"]
    assert central.audit.query(action_prefix="hold.place")[-1]["refs"] == {"incident": "inc-000001"}


BAD_HOLDS = [
    ({"start": "2026-02-30T10:00:00Z"}, BadRequest),           # no such day
    ({"end": "1999-01-01T00:00:00Z"}, BadRequest),             # out of range
    ({"start": "NOW", "end": "LATER"}, BadRequest),
    ({"end": "START"}, BadRequest),                            # end before start (filled in below)
    ({"cameras": ["../cam-a"]}, BadRequest),                   # path separator
    ({"cameras": "cam-a"}, BadRequest),                        # not a list
    ({"cameras": ["cam-zz"]}, NotFound),                       # unknown camera
    ({"kind": "incident"}, BadRequest),                        # an incident hold names its incident
    ({"kind": "incident", "incident": "inc-424242"}, NotFound),
    ({"kind": "instrument", "instrument": "ins/1"}, BadRequest),
    ({"kind": "instrument", "instrument": "ins-000404"}, NotFound),
    ({"kind": "imminent_danger"}, BadRequest),                 # automatic only
    ({"why": ""}, BadRequest),
    ({"colour": "red"}, BadRequest),                           # unknown argument
]


def test_C12_bad_hold_requests_get_clear_errors_and_change_nothing(central, people):
    Camera(central, "cam-a")
    now = central.now()
    for bad, error in BAD_HOLDS:
        args = dict(kind="litigation", cameras=["cam-a"], start=iso(now - timedelta(hours=2)),
                    end=iso(now - timedelta(hours=1)), why="lawsuit")
        args.update(bad)
        if args["end"] == "START":
            args["end"] = iso(now - timedelta(hours=3))
        before = central.audit.next_seq
        with pytest.raises(error) as e:
            people.call("director", "hold.place", **args)
        assert str(e.value), bad
        assert central.records.all("holds") == [] and central.audit.next_seq == before, bad


# --------------------------------------------------------------------------- schedule and status


def test_C12_retention_schedule_is_the_directors_and_audited(central, people):
    assert people.call("ivy", "retention.get")["retention_days"] == central.cfg.central.retention_days
    for who in ("ivy", "sam"):
        with pytest.raises(Refused):
            people.call(who, "retention.set", days=7, why="shorter")
    for days in (0, 3651, "7", 7.5, True):
        with pytest.raises(BadRequest):
            people.call("director", "retention.set", days=days, why="board schedule 2026")
    with pytest.raises(BadRequest):
        people.call("director", "retention.set", days=7)                      # the reason is required
    assert central.records.get("settings", "retention") is None

    now = central.now()
    cam = Camera(central, "cam-a")
    week_old = cam.record(now - timedelta(days=10))
    cam.record(now)
    assert retention.sweep(central)["deleted"]["retention_schedule"] == 0   # 30 days by default
    result = people.call("director", "retention.set", days=7, why="board-approved schedule of 2026-03-01")
    assert result == {"retention_days": 7, "due_for_deletion": 1, "older_but_held": 0}
    entry = central.audit.query(action_prefix="retention.set")[-1]
    assert entry["details"] == {"from_days": 30, "to_days": 7} and entry["actor"] == people.ids["director"]
    got = people.call("ivy", "retention.get")
    assert got["retention_days"] == 7 and got["set_by"] == people.ids["director"]
    retention.sweep(central)
    assert not week_old.exists()


def test_C12_status_shows_windows_not_footage_and_sweep_now(central, people):
    now = central.now()
    cam = Camera(central, "cam-a")
    first = cam.record(now - timedelta(days=2))
    cam.record(now)
    people.call("director", "hold.place", kind="litigation", cameras=["cam-a"],
                start=iso(now - timedelta(days=3)), end=iso(now - timedelta(days=1)),
                why="patron's attorney: slip and fall on 12 March")
    with pytest.raises(Refused):
        people.call("sam", "retention.status")
    status = people.call("ivy", "retention.status")
    assert status["segments"] == 2 and status["archive_bytes"] > 0 and status["free_bytes"] > 0
    assert status["oldest_segment"] == {"camera": "cam-a", "seq": 0,
                                        "start": iso(seg_start(first))}
    [held] = status["holds"]
    assert held["cameras"] == ["cam-a"] and "why" not in held and "refs" not in held   # IT sees no reasons
    with pytest.raises(Refused):
        people.call("sam", "retention.sweep_now")
    report = people.call("ivy", "retention.sweep_now")["report"]
    assert report["deleted"] == {"retention_schedule": 0, "disk_full": 0}
    assert central.audit.query(action_prefix="retention.sweep_now")[-1]["actor"] == people.ids["ivy"]
    assert people.call("director", "retention.status")["last_sweep"]["at"] == report["at"]


def seg_start(path: Path) -> datetime:
    stamp = path.name.split("-")[1].removesuffix(".cseg")
    return datetime.strptime(stamp + "+0000", "%Y%m%dT%H%M%SZ%z")


# --------------------------------------------------------------------------- storage stays in the library (C11)


def test_C11_network_filesystem_refused(central, tmp_path):
    data = central.paths.data
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nnas:/export {data.parent} nfs4 rw,vers=4.2 0 0\n")
    assert retention.storage_is_local(data, mounts) == (False, "nfs4")
    with pytest.raises(ConfigError) as e:
        retention.check_local_storage(central, mounts)
    assert "nfs4" in str(e.value) and "C11" in str(e.value)

    for fstype in ("cifs", "fuse.sshfs", "fuse.rclone", "9p", "glusterfs"):
        mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nremote {data} {fstype} rw 0 0\n")
        with pytest.raises(ConfigError):
            retention.check_local_storage(central, mounts)

    # A local disk mounted inside a network mount holds the data: that is fine.
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nnas:/x {data.parent} nfs rw 0 0\n/dev/sdb1 {data} ext4 rw 0 0\n")
    assert retention.storage_is_local(data / "archive" / "not-yet-made", mounts) == (True, "ext4")
    retention.check_local_storage(central, mounts)

    # Mount points with spaces are escaped in /proc/mounts.
    spaced = tmp_path / "my disk"
    spaced.mkdir()
    escaped = str(spaced).replace(" ", "\\040")
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\n//nas/share {escaped} smb3 rw 0 0\n")
    assert retention.storage_is_local(spaced / "archive", mounts) == (False, "smb3")
    with pytest.raises(ConfigError):
        retention.check_local_storage(central, tmp_path / "no-such-mounts-file")


def test_C11_real_data_directory_is_local(central):
    """The test machine's own /proc/mounts: the tmp data directory is on a local filesystem."""
    local, fstype = retention.storage_is_local(central.paths.archive)
    assert local and fstype not in retention.NETWORK_FILESYSTEMS
    retention.check_local_storage(central)


def test_C11_no_operation_uploads_or_syncs_off_the_appliance():
    words = ("upload", "sync", "remote", "cloud", "offsite", "off_site", "replicate", "mirror", "rsync",
             "s3", "ftp", "webdav", "push")
    suspicious = [name for name in OPS for part in name.replace("_", ".").split(".") for w in words
                  if part.startswith(w) or part.endswith(w)]
    assert OPS and not suspicious


def _listening_tcp_ports() -> set[int]:
    """TCP ports this process listens on (sockets found through /proc/self/fd)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:   # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_C11_the_only_tcp_listener_is_segment_ingest(central):
    central.cfg.central.ingest_host = "127.0.0.1"
    before = _listening_tcp_ports()
    server = ServingCentral(central)
    try:
        opened = _listening_tcp_ports() - before
        assert opened == {central.ingest_port}
        assert (central.paths.data / "api.sock").is_socket()   # the API: a Unix socket, not a port
        deadline = time.monotonic() + 30                          # the periodic sweep ran at start
        while central.last_sweep is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert central.last_sweep is not None
    finally:
        server.stop()
