"""Retention: the schedule, holds, the sweeper, disk-full behaviour, local storage
(C11, C12, C20). Reference: docs/api/retention.md; for the Director and IT:
docs/retention.md.

C12: recordings are kept according to the library's retention schedule "unless
required as part of an ongoing investigation or litigation". The schedule is a
number of days; a hold (incident, litigation, legal instrument, imminent danger)
keeps the footage it covers until the Director releases it (C20: "as long as
considered necessary by the Library Director").

The sweeper deletes a segment once everything it covers is older than the schedule
and no active hold covers it. A segment covers [its start, the next segment's start);
the newest one covers up to now. Before each deletion it writes a deletion receipt
(the segment, the SHA-256 of its file, the rule) to the audit log. When the disk is
nearly full it deletes the oldest unheld footage even inside the schedule; it never
deletes held footage, and if only held footage is left it refuses ingest (the nodes
keep spooling) and alerts the Director.

C11: footage is stored on hardware in the library: the central refuses a data
directory on a network filesystem, and there is no upload or sync path off the
appliance.
"""
from __future__ import annotations

import functools
import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from appliance.background import every
from appliance.custody.archive import StoredSegment
from appliance.errors import ConfigError, SegmentError
from appliance.fsutil import sha256_file
from appliance.rules.warrants import instrument_hidden_from, is_sealed
from appliance.errors import BadRequest, NotFound, Refused
from appliance.rules.auditing import audit_action
from appliance.rules.registry import DIRECTOR, DIRECTOR_OR_IT, iso, op, parse_iso
from appliance.formats.segment import read_public
from appliance.wording import when

log = logging.getLogger("custodian.retention")

SETTINGS_ID = "retention"              # the schedule's record in the settings table
MIN_DAYS, MAX_DAYS = 1, 3650
SWEEP_SECONDS = 600                     # the background sweep runs every 10 minutes
SWEEP_BATCH = 20                        # segments decided per hold of the decision lock
RULE_SCHEDULE = "retention_schedule"
RULE_DISK_FULL = "disk_full"
REFUSAL_PREFIX = "disk full"            # marks an ingest refusal as this module's
PLACEABLE_KINDS = ("incident", "litigation", "instrument")  # imminent_danger holds are automatic
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "fuse.sshfs", "fuse.rclone", "davfs",
    "fuse.davfs2", "9p", "ceph", "fuse.ceph", "glusterfs", "fuse.glusterfs", "fuse.s3fs",
    "fuse.gcsfuse", "afs", "lustre",
})


# --------------------------------------------------------------------------- the schedule


def retention_days(central) -> int:
    """The schedule in force: the Director's setting, else the configured default."""
    doc = central.records.get("settings", SETTINGS_ID)
    return doc["retention_days"] if doc else central.cfg.central.retention_days


# --------------------------------------------------------------------------- holds


def place_hold(central, *, kind: str, cameras: list[str], start: str, end: str, refs: dict,
               why: str, placed_by: str) -> dict:
    """Store a hold in the shared format (the caller writes the audit entry)."""
    hold = {"kind": kind, "cameras": list(cameras), "start": start, "end": end,
            "refs": {k: v for k, v in refs.items() if v}, "why": why, "placed_by": placed_by,
            "placed_at": iso(central.now()), "released_at": None, "released_by": None,
            "release_reason": None}
    hold["id"] = central.records.insert("holds", hold)
    return hold


def active_holds(central) -> list[dict]:
    return central.records.search("holds", lambda h: h.get("released_at") is None)


def hold_covers(hold: dict, camera: str, start: datetime, end: datetime) -> bool:
    """Whether a hold covers footage of `camera` in [start, end] (an empty camera list is every camera)."""
    if hold["cameras"] and camera not in hold["cameras"]:
        return False
    return parse_iso(hold["start"]) <= end and start <= parse_iso(hold["end"])


def _held(holds: list[dict], stored: StoredSegment, end: datetime) -> bool:
    return any(hold_covers(h, stored.camera, stored.start, end) for h in holds)


def hold_hidden_from(central, caller, hold: dict) -> bool:
    """A hold placed for a sealed search warrant shows nothing but its existence (C13)."""
    instrument = hold.get("refs", {}).get("instrument")
    return bool(instrument) and instrument_hidden_from(central, caller, instrument)


def _under_sealed_warrant(central, hold: dict) -> bool:
    """Whether a hold keeps a sealed warrant's footage: its audit entries then say only that (C13),
    since the audit log is readable by an acting director."""
    instrument = hold.get("refs", {}).get("instrument")
    record = instrument and central.records.get("instruments", instrument)
    return bool(record) and is_sealed(record)


def _logged_refs(hold: dict, sealed: bool) -> dict:
    """A hold's refs as its audit entries name them: not the incident of a sealed warrant (C13)."""
    return {k: v for k, v in hold["refs"].items() if not (sealed and k == "incident")}


def hold_view(central, caller, hold: dict) -> dict:
    active = hold["released_at"] is None
    if hold_hidden_from(central, caller, hold):
        return {"id": hold["id"], "kind": hold["kind"], "active": active, "sealed": True,
                "placed_at": hold["placed_at"]}
    return hold | {"active": active}


def window_view(central, caller, hold: dict) -> dict:
    """What IT may see of a hold in the status: its window, never its reasons."""
    if hold_hidden_from(central, caller, hold):
        return {"id": hold["id"], "kind": hold["kind"], "sealed": True}
    return {k: hold[k] for k in ("id", "kind", "cameras", "start", "end", "placed_at")}


# --------------------------------------------------------------------------- shared checks


def check_window(start: datetime, end: datetime, what: str = "the window") -> None:
    if end <= start:
        raise BadRequest(f"{what} must end after it starts ({when(start)} is not before {when(end)})")


def check_cameras(central, cameras: list[str]) -> None:
    """Every named camera must be known: enrolled (even if retired) or present in the archive."""
    known = {c["id"] for c in central.records.all("cameras")} | set(central.archive.cameras())
    unknown = [c for c in cameras if c not in known]
    if unknown:
        raise NotFound(f"no camera named {', '.join(unknown)}")


# --------------------------------------------------------------------------- what each segment covers


def _recorded_end(central, stored: StoredSegment, nominal_end: datetime) -> datetime:
    """The end the segment's signed trailer states, within [start, nominal_end].

    Read only for a segment that straddles the cutoff, so that the last segment of a
    retired camera (or one before a long outage) still expires on schedule.
    """
    cache = central.recorded_ends
    if stored.path not in cache:
        try:
            end_us = read_public(stored.path).trailer["end_us"]
            cache[stored.path] = datetime.fromtimestamp(end_us / 1_000_000, tz=stored.start.tzinfo)
        except (OSError, SegmentError, KeyError, ValueError, OverflowError):
            return nominal_end  # unreadable: keep the conservative span
    return min(max(cache[stored.path], stored.start), nominal_end)


def segment_spans(central, camera: str, now: datetime, cutoff: datetime | None = None
                  ) -> list[tuple[StoredSegment, datetime]]:
    """Each stored segment of a camera with the end of what it covers.

    With a cutoff, a segment that starts before it but nominally covers past it is
    measured by its own recorded end instead.
    """
    segments = list(central.archive.segments(camera))
    spans = []
    for i, stored in enumerate(segments):
        end = segments[i + 1].start if i + 1 < len(segments) else now
        end = max(end, stored.start)
        if cutoff is not None and stored.start < cutoff < end:
            end = _recorded_end(central, stored, end)
        spans.append((stored, end))
    return spans


def expired_segments(central, now: datetime, cutoff: datetime) -> list[tuple[StoredSegment, datetime]]:
    """Segments everything of which is older than the cutoff, oldest first."""
    found = [(s, end) for camera in central.archive.cameras()
             for s, end in segment_spans(central, camera, now, cutoff) if end <= cutoff]
    return sorted(found, key=lambda item: item[0].start)


def _oldest_first(central, now: datetime) -> list[tuple[StoredSegment, datetime]]:
    found = [item for camera in central.archive.cameras() for item in segment_spans(central, camera, now)]
    return sorted(found, key=lambda item: item[0].start)


# --------------------------------------------------------------------------- deleting



def _delete(central, stored: StoredSegment, end: datetime, rule: str, details: dict) -> int:
    """Write the deletion receipt, then delete. Returns the bytes freed."""
    size = stored.path.stat().st_size
    digest = sha256_file(stored.path)
    name = stored.path.relative_to(central.archive.root).as_posix()
    central.audit.deletion_receipt(name, digest, rule, details={
        "camera": stored.camera, "seq": stored.seq, "start": iso(stored.start), "covers_until": iso(end),
        "bytes": size, **details})
    central.archive.remove(stored)
    return size


def _delete_unheld(central, items, rule: str, details: dict, report: dict, stop=None) -> None:
    """Delete each unheld segment of `items`, deciding in batches under the decision lock
    so that a hold placed meanwhile is always seen before its footage is touched."""
    items = list(items)
    for i in range(0, len(items), SWEEP_BATCH):
        with central.decision_lock:
            holds = active_holds(central)
            for stored, end in items[i:i + SWEEP_BATCH]:
                if stop is not None and stop():
                    return
                if _held(holds, stored, end):
                    report["kept_for_holds"] += 1
                    continue
                try:
                    report["deleted_bytes"] += _delete(central, stored, end, rule, details)
                except OSError as e:
                    report["errors"].append(f"{stored.path.name}: {e}")
                    log.error("retention could not delete %s: %s", stored.path, e)
                    continue
                report["deleted"][rule] += 1


def free_bytes(path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _measure_free(path) -> int:
    return free_bytes(path)  # looked up at call time, so the module function can be replaced


def sweep(central, *, now: datetime | None = None, free_bytes=None) -> dict:
    """One retention pass: the schedule, then disk-full relief. Returns a report.

    `free_bytes(path) -> int` measures free space (injectable for tests)."""
    now = now or central.now()
    measure = free_bytes or _measure_free
    days = retention_days(central)
    cutoff = now - timedelta(days=days)
    report = {"at": iso(now), "retention_days": days, "cutoff": iso(cutoff),
              "deleted": {RULE_SCHEDULE: 0, RULE_DISK_FULL: 0}, "deleted_bytes": 0,
              "kept_for_holds": 0, "errors": []}
    _delete_unheld(central, expired_segments(central, now, cutoff), RULE_SCHEDULE,
                   {"retention_days": days, "cutoff": iso(cutoff)}, report)
    _relieve_disk(central, now, measure, report)
    central.last_sweep = report
    return report


def _relieve_disk(central, now: datetime, measure, report: dict) -> None:
    reserve = central.cfg.central.disk_reserve_bytes
    root = central.archive.root
    free = measure(root)
    if free < reserve:
        before = report["deleted"][RULE_DISK_FULL]
        reserve_reached = lambda: measure(root) >= reserve  # noqa: E731
        _delete_unheld(central, _oldest_first(central, now), RULE_DISK_FULL,
                       {"free_bytes": free, "reserve_bytes": reserve}, report, stop=reserve_reached)
        deleted = report["deleted"][RULE_DISK_FULL] - before
        free = measure(root)
        if deleted:
            central.alert("disk_full", f"the archive disk was nearly full: deleted the {deleted} oldest unheld "
                                       f"segment(s) inside the retention schedule", deleted=deleted,
                          free_bytes=free, reserve_bytes=reserve)
    report["free_bytes"], report["reserve_bytes"] = free, reserve
    if free < reserve:
        _refuse_ingest(central, free, reserve)
    else:
        _resume_ingest(central, free)
    report["ingest_refused"] = central.ingest_refusal()


def _refuse_ingest(central, free: int, reserve: int) -> None:
    current = central.ingest_refusal()
    if current and current.startswith(REFUSAL_PREFIX):
        return  # already refusing: the Director was told when it began
    reason = (f"{REFUSAL_PREFIX}: only held footage is left on the archive disk ({free} bytes free, "
              f"{reserve} reserved); cameras keep spooling until the Director releases holds or adds space")
    central.set_ingest_refusal(reason)
    central.audit.append("system", "retention.ingest_refused", role="system", why=reason,
                         details={"free_bytes": free, "reserve_bytes": reserve})
    central.alert("disk_full", "recording has stopped reaching the archive: the disk holds only held footage. "
                               "Release holds that are no longer needed or add storage; the cameras are "
                               "spooling meanwhile", free_bytes=free, reserve_bytes=reserve)


def _resume_ingest(central, free: int) -> None:
    current = central.ingest_refusal()
    if not (current and current.startswith(REFUSAL_PREFIX)):
        return
    central.set_ingest_refusal(None)
    central.audit.append("system", "retention.ingest_resumed", role="system", details={"free_bytes": free})
    central.alert("disk_full", "the archive disk has space again: recording reaches the archive again",
                  free_bytes=free)


def periodic(central):
    """The background sweep: at start, then every SWEEP_SECONDS, in a worker thread (it takes the
    decision lock in batches itself). The Director hears of a failing sweep once per run of failures."""
    return [every(SWEEP_SECONDS, functools.partial(sweep, central), name="retention sweep",
                  on_failure=lambda e: central.alert("retention", f"the retention sweep failed: {e}"))]


# --------------------------------------------------------------------------- local storage (C11)


def _unescape_mount(field: str) -> str:
    """/proc/mounts writes a space as \\040, a tab as \\011, a backslash as \\134."""
    return (field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            .replace("\\134", "\\"))


MOUNTS_FILE = "/proc/mounts"   # the kernel's mount table (a test points it at a table naming a network mount)


def storage_is_local(path, mounts_file=None) -> tuple[bool, str]:
    """Whether `path` lives on a local filesystem; returns (local, filesystem type).

    The mount that holds a path is the longest mount point that contains it (the
    last one listed, when one is mounted over another)."""
    mounts_file = mounts_file or MOUNTS_FILE
    target = Path(path).absolute()
    while not target.exists() and target != target.parent:
        target = target.parent
    target = target.resolve()
    best, fstype = None, "unknown"
    for line in Path(mounts_file).read_text().splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = Path(_unescape_mount(fields[1]))
        if (mount == target or mount in target.parents) and (best is None or len(mount.parts) >= len(best.parts)):
            best, fstype = mount, fields[2]
    return best is not None and fstype not in NETWORK_FILESYSTEMS, fstype


def check_local_storage(central, mounts_file=None) -> None:
    """Refuse to start with the data or the archive on a network filesystem (C11)."""
    for path in (central.paths.data, central.paths.archive):
        try:
            local, fstype = storage_is_local(path, mounts_file)
        except OSError as e:
            raise ConfigError(f"cannot tell which filesystem holds {path} ({e}); the footage must be "
                              "stored on hardware in the library (C11)") from None
        if not local:
            raise ConfigError(f"{path} is on a {fstype} filesystem, not a disk in the library: footage must be "
                              "stored on hardware in the library (policy C11). Put the central's data "
                              "directory on a local disk (USB or SD card) and start again")


# --------------------------------------------------------------------------- operations: holds


def _get_hold(central, hold_id: str) -> dict:
    hold = central.records.get("holds", hold_id)
    if hold is None:
        raise NotFound(f"no hold {hold_id}")
    return hold


def _require_exists(central, table: str, record_id: str, what: str) -> dict:
    doc = central.records.get(table, record_id)
    if doc is None:
        raise NotFound(f"no {what} {record_id}")
    return doc


# --------------------------------------------------------------------------- releases keep their holds (C12)

RECENT_DAYS = 30                  # a release built this recently keeps its instrument's hold


def held_by_release(central, hold: dict) -> list[str]:
    """Why an instrument's hold must stay: releases under it not yet built, or built in the last 30 days."""
    instrument = hold.get("refs", {}).get("instrument")
    if not instrument:
        return []
    reasons = []
    recent = central.now() - timedelta(days=RECENT_DAYS)
    for release in central.records.search("releases", instrument=instrument):
        package = release.get("package") or {}
        if package.get("status") != "built":
            reasons.append(f"release {release['id']} has not been built")
        elif parse_iso(package["built_at"]) > recent:
            reasons.append(f"release {release['id']} was built on {package['built_at'][:10]}, less than "
                           f"{RECENT_DAYS} days ago (the recipient may come back)")
    return reasons


@op("hold.place", DIRECTOR,
    labels={"kind": "Kind", "cameras": "Cameras", "start": "From", "end": "To", "incident": "Incident",
            "instrument": "Instrument", "why": "Why"})
def place(central, caller, args):
    """Place a hold: the footage it covers outlives the schedule until the Director releases it (C12, C20)."""
    kind = args.str("kind", choices=PLACEABLE_KINDS)
    cameras = args.ids("cameras", required=False)
    start = args.time("start")
    end = args.time("end")
    incident = args.id("incident", required=False)
    instrument = args.id("instrument", required=False)
    why = args.str("why", min_len=3, max_len=2000)
    args.done()
    check_window(start, end, "the hold")
    check_cameras(central, cameras)
    if kind == "incident" and not incident:
        raise BadRequest("an incident hold names its incident")
    if kind == "instrument" and not instrument:
        raise BadRequest("an instrument hold names its legal instrument")
    if incident:
        _require_exists(central, "incidents", incident, "incident")
    if instrument:
        _require_exists(central, "instruments", instrument, "legal instrument")
        if instrument_hidden_from(central, caller, instrument):
            raise Refused("that search warrant is sealed until filed: only the Director acts on it", clause="C13")
    hold = place_hold(central, kind=kind, cameras=cameras, start=iso(start), end=iso(end),
                      refs={"incident": incident, "instrument": instrument}, why=why, placed_by=caller.user_id)
    sealed = _under_sealed_warrant(central, hold)
    audit_action(central, caller, "hold.place", target=hold["id"], refs=_logged_refs(hold, sealed),
                 why="hold under a sealed warrant" if sealed else why,
                 details={"kind": kind, "sealed": True} if sealed else
                 {"kind": kind, "cameras": cameras, "start": hold["start"], "end": hold["end"]})
    return {"hold": hold_view(central, caller, hold)}


@op("hold.list", DIRECTOR,
    labels={"active_only": "Active only"})
def list_holds(central, caller, args):
    """Every hold, newest first; `active_only` leaves out released ones."""
    active_only = args.bool("active_only")
    args.done()
    holds = active_holds(central) if active_only else central.records.all("holds")
    holds.sort(key=lambda h: h["placed_at"], reverse=True)
    return {"holds": [hold_view(central, caller, h) for h in holds]}


def _her_own_matter(central, caller, hold: dict) -> bool:
    """Whether a hold keeps the footage of an incident the caller filed or a request (an imminent-danger
    use included) she made: how long that is kept is not hers to judge (C20, as C18 and C19)."""
    refs = hold.get("refs") or {}
    incident = refs.get("incident") and central.records.get("incidents", refs["incident"])
    request = refs.get("request") and central.records.get("requests", refs["request"])
    return caller.user_id in ((incident or {}).get("filed_by"), (request or {}).get("requested_by"))


@op("hold.release", DIRECTOR,
    labels={"reason": "Why release it", "override_reason": "Why it is no longer needed"})
def release(central, caller, args):
    """Release a hold, with the reason; its footage then follows the schedule again (C20)."""
    hold = _get_hold(central, args.id("hold"))
    reason = args.str("reason", min_len=3, max_len=2000)
    override = args.str("override_reason", required=False, min_len=10, max_len=2000)
    args.done()
    if hold["released_at"] is not None:
        raise Refused(f"hold {hold['id']} was already released at {when(hold['released_at'])}")
    if hold_hidden_from(central, caller, hold):
        raise Refused("that hold keeps a sealed search warrant's footage: only the Director releases it",
                      clause="C13")
    if caller.acting_director and _her_own_matter(central, caller, hold):
        raise Refused("that hold keeps footage of your own incident or imminent-danger use: an acting director "
                      "decides other people's matters; the Director releases it", clause="C20")
    kept_for = held_by_release(central, hold)
    if kept_for and not override:
        raise Refused(f"hold {hold['id']} keeps footage released under its instrument: {'; '.join(kept_for)}. "
                      "Release it anyway only by saying why it is no longer needed", clause="C12")
    now = iso(central.now())
    hold = central.records.update("holds", hold["id"], {"released_at": now, "released_by": caller.user_id,
                                                         "release_reason": reason})
    sealed = _under_sealed_warrant(central, hold)
    audit_action(central, caller, "hold.release", target=hold["id"], refs=_logged_refs(hold, sealed),
                 why="release of a hold under a sealed warrant" if sealed else reason,
                 details={"kind": hold["kind"], "sealed": True} if sealed else {"kind": hold["kind"]} | (
                     {"override_reason": override, "kept_for": kept_for} if kept_for else {}))
    return {"hold": hold_view(central, caller, hold)}


# --------------------------------------------------------------------------- operations: schedule and status


@op("retention.get", DIRECTOR_OR_IT)
def get_schedule(central, caller, args):
    """The retention schedule in days, and who set it."""
    args.done()
    doc = central.records.get("settings", SETTINGS_ID) or {}
    return {"retention_days": retention_days(central), "default_days": central.cfg.central.retention_days,
            "set_by": doc.get("set_by"), "set_at": doc.get("set_at"), "why": doc.get("why"),
            "disk_reserve_bytes": central.cfg.central.disk_reserve_bytes}


@op("retention.set", DIRECTOR,
    labels={"days": "Days kept", "why": "Why"})
def set_schedule(central, caller, args):
    """Set the retention schedule in days (1..3650), with the reason (e.g. the approved schedule's reference)."""
    days = args.int("days", lo=MIN_DAYS, hi=MAX_DAYS)
    why = args.str("why", min_len=3, max_len=1000)
    args.done()
    before = retention_days(central)
    doc = {"retention_days": days, "set_by": caller.user_id, "set_at": iso(central.now()), "why": why}
    if central.records.get("settings", SETTINGS_ID) is None:
        central.records.insert("settings", doc, id=SETTINGS_ID)
    else:
        central.records.update("settings", SETTINGS_ID, doc)
    audit_action(central, caller, "retention.set", target=SETTINGS_ID, why=why,
                 details={"from_days": before, "to_days": days})
    expired, held = _plan(central, central.now())
    return {"retention_days": days, "due_for_deletion": len(expired) - held, "older_but_held": held}


def _plan(central, now: datetime) -> tuple[list, int]:
    """Segments older than the schedule, and how many of them a hold keeps."""
    expired = expired_segments(central, now, now - timedelta(days=retention_days(central)))
    holds = active_holds(central)
    return expired, sum(_held(holds, s, end) for s, end in expired)


@op("retention.status", DIRECTOR_OR_IT)
def status(central, caller, args):
    """Archive size, free space, the oldest segment, what is held (windows only, never footage)."""
    args.done()
    now = central.now()
    count, size, oldest = 0, 0, None
    for camera in central.archive.cameras():
        for stored in central.archive.segments(camera):
            count += 1
            try:
                size += stored.path.stat().st_size
            except OSError:
                continue
            if oldest is None or stored.start < oldest.start:
                oldest = stored
    expired, held = _plan(central, now)
    return {
        "retention_days": retention_days(central),
        "segments": count, "archive_bytes": size,
        "free_bytes": free_bytes(central.archive.root),
        "reserve_bytes": central.cfg.central.disk_reserve_bytes,
        "oldest_segment": oldest and {"camera": oldest.camera, "seq": oldest.seq, "start": iso(oldest.start)},
        "due_for_deletion": len(expired) - held, "older_but_held": held,
        "holds": [window_view(central, caller, h) for h in active_holds(central)],
        "ingest_refused": central.ingest_refusal(),
        "last_sweep": central.last_sweep,
    }


@op("retention.sweep_now", DIRECTOR_OR_IT)
def sweep_now(central, caller, args):
    """Run the retention sweep now and return its report."""
    args.done()
    report = sweep(central)
    audit_action(central, caller, "retention.sweep_now",
                 details={"deleted": report["deleted"], "deleted_bytes": report["deleted_bytes"],
                          "kept_for_holds": report["kept_for_holds"]})
    return {"report": report}
