"""The central daemon: sole owner of the archive, the records, the keys and the audit log.

One process, one writer: TinyDB, the audit log and the archive index are only
ever opened here. It serves two things on one event loop:
  - segment ingest on the LAN (appliance.central.ingest), and
  - the local API on a Unix socket (appliance.central.api) for the TUI and the CLI.

Every API operation goes through `Central.call`, which resolves the session,
checks the caller's role (appliance.rules.registry), and runs the operation under the
decision lock so that two terminals cannot race a decision.
"""
from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import logging
import os
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nacl.signing

from appliance.background import every
from appliance.rules import registry as ops_mod
from appliance.custody.archive import Archive
from appliance.custody.audit import AuditLog
from appliance.config import Config
from appliance.datalock import CENTRAL_LOCK, lock_data_dir
from appliance.errors import ConfigError, CustodianError, DiskFull, NotAuthenticated, NotFound, SegmentError
from appliance.custody.keys import ArchiveCustody, KeyStore
from appliance.central.enrolment import PeerGuard
from appliance.central.node_channel import NodeHub, seal_for_node
from appliance.rules.auditing import audit_access_refused
from appliance.rules.export import Build
from appliance.custody.records import open_records

log = logging.getLogger("custodian.central")

SESSION_IDLE = timedelta(minutes=15)
KEEP_FREE = 8 * 1024**2             # free bytes ingest leaves for records and audit, beyond two records files
ACT_MARGIN = 1024**2                # an action needs a records file's size free, and this (audit, checkpoint)
CHECKPOINT_SECONDS = 300            # a signed checkpoint this often when the audit log grew


class Clock:
    """Wall clock with an offset the tests can move (grant expiry, acting periods)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


class CentralPaths:
    def __init__(self, data_dir: Path):
        self.data = Path(data_dir)
        self.keys = self.data / "keys"
        self.records = self.data / "records" / "records.json"
        self.audit = self.data / "audit"
        self.archive = self.data / "archive"
        self.lock = self.data / CENTRAL_LOCK


class Central:
    """The custodian: policy, records, keys, audit, archive. Call `call()` for everything."""

    def __init__(self, cfg: Config, data_dir: Path | None = None, clock: Clock | None = None):
        self.cfg = cfg
        self.paths = CentralPaths(Path(data_dir or cfg.central.data_dir))
        if not (self.paths.keys).exists():
            raise ConfigError(f"{self.paths.data} is not initialised: run 'custodian central init --data DIR'")
        # One owner: a second central on this directory refuses here, naming the first.
        self._dir_lock = lock_data_dir(self.paths.data, self.paths.lock.name, "central")
        from appliance.rules.retention import check_local_storage

        check_local_storage(self)   # C11: footage stays on hardware in the library
        self.clock = clock or Clock()
        self.keys = KeyStore(self.paths.data)
        self.custody = ArchiveCustody(self.keys)
        self.records = open_records(self.paths.records)
        self.audit = AuditLog(self.paths.audit / "audit.jsonl", self.keys.signing_key(), clock=self.now)
        self.archive = Archive(self.paths.archive, on_gap=self._gap_found)
        self.max_segment_bytes = cfg.central.max_segment_bytes
        self.sessions: dict[str, dict] = {}
        self.decision_lock = threading.RLock()
        self._camera_keys: dict[str, nacl.signing.VerifyKey] = {}
        self._refusal: str | None = None
        self._rejections: dict[tuple, tuple[float, float, int]] = {}
        self._sweeping = threading.Lock()                   # held while a sweep for a full disk runs
        # What the node channel and the rules keep in RAM, each typed:
        self.nodes = NodeHub(self)                          # what the nodes last sent (rules.ports.NodeLink)
        self.enrolment_guard = PeerGuard()                  # refused enrolment attempts, per address
        self.package_builds: dict[str, Build] = {}          # evidence packages being built (rules/export.py)
        self.recorded_ends: dict[Path, datetime] = {}       # segments' signed end times, read once (rules/retention.py)
        self.last_sweep: dict | None = None                 # the retention sweeper's last report
        self._watchers: set = set()
        self.stopping = False
        self.reload_cameras()
        from appliance.rules import catalog as policy  # noqa: F401  (registers every operation)
        from appliance.central.notify import Notifier
        self.notifier = Notifier(self)

    # ------------------------------------------------------------------ time and ids

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        self.custody.seal()
        self.audit.close(checkpoint=True)
        self.records.close()
        self._dir_lock.release()

    # ------------------------------------------------------------------ ingest host

    def reload_cameras(self) -> None:
        keys = {}
        for cam in self.records.all("cameras"):
            if cam.get("status") != "retired":
                keys[cam["id"]] = nacl.signing.VerifyKey(bytes.fromhex(cam["key"]))
        self._camera_keys = keys

    def camera_key(self, camera: str) -> nacl.signing.VerifyKey | None:
        return self._camera_keys.get(camera)

    def ingest_refusal(self) -> str | None:
        return self._refusal

    def no_room_for(self, length: int) -> str | None:
        """Refuse an upload that would leave less free than the records and audit need (a disk
        that fills between two sweeps): the node keeps it and retries; a sweep starts now."""
        from appliance.rules.retention import REFUSAL_PREFIX

        free = self.free_bytes()
        if self._refusal and self._refusal.startswith(REFUSAL_PREFIX) and free >= self.cfg.central.disk_reserve_bytes:
            self.sweep_soon()   # room again (holds released, space added): resume now, not at the next sweep
        if free - length >= self.room_to_keep():
            return None
        self.sweep_soon()
        return ("the central's disk is too full for this segment: upload refused, try again later "
                "(the retention sweep is freeing unheld footage)")

    def set_ingest_refusal(self, reason: str | None) -> None:
        self._refusal = reason

    def segment_stored(self, info, status: str) -> dict:
        cam = self.records.get("cameras", info.camera)
        if cam is not None:
            self.records.update("cameras", info.camera, {
                "last_segment_seq": info.seq, "last_segment_at": ops_mod.iso(self.now()),
                "last_segment_start_us": info.header["start_us"]})
        # The node deletes its copy only on this receipt: sealed so that nobody else on the
        # LAN can acknowledge (and so erase) footage that was never stored.
        receipt = {"camera": info.camera, "seq": info.seq, "digest": info.digest, "status": status,
                   "audit_head": self.audit.head()}
        return {"receipt": base64.b64encode(seal_for_node(self, info.header["node_key"], receipt)).decode()}

    def ingest_rejected(self, camera: str, seq: str, error: SegmentError, peer: str) -> None:
        log.warning("ingest refused %s/%s from %s: %s (%s)", camera, seq, peer, error, error.kind)
        if error.kind not in ("signature", "chain", "conflict", "replay", "digest"):
            return
        # A forged or replayed segment is a security event, not just a bad request. A flood of
        # them is one event: at most one audit entry a minute and one alert an hour per
        # camera, peer and kind, each saying how many were folded into it.
        key = (camera, peer, error.kind)
        now = time.monotonic()
        last_entry, last_alert, folded = self._rejections.get(key, (-1e9, -1e9, 0))
        if now - last_entry < 60:
            self._rejections[key] = (last_entry, last_alert, folded + 1)
            return
        self.audit.append("system", "ingest.rejected", target=f"{camera}/{seq}",
                          details={"kind": error.kind, "error": str(error), "peer": peer,
                                   "similar_refusals_since_last_entry": folded})
        if now - last_alert >= 3600:
            self.alert("integrity", f"segment {camera}/{seq} refused: {error}", camera=camera)
            last_alert = now
        self._rejections[key] = (now, last_alert, 0)

    def _gap_found(self, gap: dict) -> None:
        """Record a gap once (the archive calls this before storing, so a crash can only repeat it)."""
        what = f"{gap['camera']}/{gap['from_seq']}/{gap['to_seq']}/{gap['kind']}"
        gap_id = "gap-" + hashlib.sha256(what.encode()).hexdigest()[:24]
        if self.records.get("gaps", gap_id) is not None:
            return
        gap = dict(gap, detected_at=ops_mod.iso(self.now()))
        self.records.insert("gaps", gap, id=gap_id)
        self.audit.append("system", "archive.gap", target=gap["camera"], details=gap)
        self.alert("gap", gap["detail"], camera=gap["camera"])

    # ------------------------------------------------------------------ alerts

    def alert(self, kind: str, message: str, **details) -> dict:
        """Record an alert for the Director and hand it to the notifier at once."""
        entry = {"kind": kind, "message": message, "at": ops_mod.iso(self.now()),
                 "acknowledged": False, **details}
        entry["id"] = self.records.insert("alerts", entry)
        notifier = getattr(self, "notifier", None)
        if notifier is not None:
            notifier.notify(entry)
        self.wake_watchers()
        return entry

    def add_watcher(self, wake) -> None:
        """`wake()` is called (from any thread) when something a screen shows at once changed."""
        self._watchers.add(wake)

    def remove_watcher(self, wake) -> None:
        self._watchers.discard(wake)

    def wake_watchers(self) -> None:
        """Wake every waiting `session.watch` (a new alert, the archive sealed or unsealed)."""
        for wake in list(self._watchers):
            wake()

    # ------------------------------------------------------------------ sessions and dispatch

    def new_session(self, user: dict) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        self.sessions[token] = {"user_id": user["id"], "created": now, "last_seen": now}
        return token

    def caller_for(self, token: str | None, background: bool = False) -> ops_mod.Caller | None:
        """The session's caller. Only a person's action extends a session: a `background`
        call (a screen refreshing itself) is checked against the idle limit but leaves
        `last_seen` as it was, so an untouched terminal still times out after 15 minutes."""
        if not token:
            return None
        session = self.sessions.get(token)
        if session is None:
            raise NotAuthenticated("your session has ended: log in again")
        if time.monotonic() - session["last_seen"] > SESSION_IDLE.total_seconds():
            del self.sessions[token]
            raise NotAuthenticated("your session timed out after 15 minutes idle: log in again")
        user = self.records.get("users", session["user_id"])
        if user is None or user.get("disabled"):
            del self.sessions[token]
            raise NotAuthenticated("this account is disabled")
        if not background:
            session["last_seen"] = time.monotonic()
        from appliance.rules.accounts import acting_director_now, policy_version
        return ops_mod.Caller(user_id=user["id"], name=user["name"], role=user["role"], session=token,
                              acting_director=acting_director_now(self, user),
                              pending_ack=(user.get("policy_ack") or {}).get("version") != policy_version(),
                              must_change=bool(user.get("must_change_passphrase")))

    def idle_left(self, token: str | None) -> float | None:
        """Seconds until this session ends for idleness (None: no such session)."""
        session = self.sessions.get(token or "")
        if session is None:
            return None
        return max(0.0, SESSION_IDLE.total_seconds() - (time.monotonic() - session["last_seen"]))

    def call(self, name: str, args: dict | None = None, token: str | None = None,
             background: bool = False) -> dict:
        """Run one API operation as the session's user. Raises CustodianError subclasses.

        `background`: the call is a screen refreshing itself, not a person's action
        (it does not extend the session; see `caller_for`)."""
        operation = ops_mod.OPS.get(name)
        if operation is None:
            raise NotFound(f"no operation named {name!r}")
        try:
            with self.decision_lock:
                # Before anything is written: an action whose records fit but whose audit entry
                # does not would take effect unaudited.
                self.check_room_to_act()
                caller = self.caller_for(token, background)
                try:
                    ops_mod.authorize(operation, caller)
                    if caller is not None:
                        operation.rule.check_scope(self, caller, args)    # the record it names is the caller's
                except CustodianError as refusal:
                    if refusal.by_rule_table:
                        audit_access_refused(self, caller, operation, args, refusal)
                    raise
                if not operation.concurrent:
                    return operation.func(self, caller, ops_mod.Args(args, operation.labels))
            return operation.func(self, caller, ops_mod.Args(args, operation.labels))
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise self.disk_full(f"{name}: {e.strerror}") from None
            raise

    # ------------------------------------------------------------------ a full data disk

    def room_to_keep(self) -> int:
        """Free bytes an action needs: a whole new records file (it is rewritten each time), an
        audit entry and a checkpoint, with a margin. Ingest leaves this much free for them."""
        try:
            records = self.paths.records.stat().st_size
        except OSError:
            records = 0
        return 2 * records + KEEP_FREE

    def free_bytes(self) -> int:
        """Free bytes on the data disk, measured as the retention sweep measures them."""
        from appliance.rules import retention

        return retention._measure_free(self.paths.data)

    def check_room_to_act(self) -> None:
        """Refuse an action before it writes anything when its records and audit entry cannot fit."""
        try:
            needed = self.paths.records.stat().st_size + ACT_MARGIN
        except FileNotFoundError:
            needed = ACT_MARGIN
        if self.free_bytes() < needed:
            raise self.disk_full("no room for the records and the audit entry")

    def disk_full(self, what: str) -> DiskFull:
        """The error for a full data disk; starts a retention sweep, which frees unheld footage."""
        self.sweep_soon()
        return DiskFull(f"the central's data disk is full ({what}): nothing was changed. The retention sweep "
                        "is freeing unheld footage; if only held footage is left, release holds no longer needed "
                        "or give the archive a larger disk")

    def sweep_soon(self) -> None:
        """Run a retention sweep now, in its own thread, unless one is running (a full disk can't wait 10 min)."""
        if not self._sweeping.acquire(blocking=False):
            return

        def run() -> None:
            from appliance.rules.retention import sweep
            try:
                sweep(self)
            except Exception:   # noqa: BLE001  (the periodic sweep tries again; this one is a head start)
                log.exception("retention sweep for a full disk failed")
            finally:
                self._sweeping.release()
        threading.Thread(target=run, name="sweep-disk-full", daemon=True).start()

    # ------------------------------------------------------------------ serving

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        from aiohttp import web

        from appliance.central.api import make_api_app, socket_path
        from appliance.central.ingest import make_ingest_app

        ingest_runner = web.AppRunner(make_ingest_app(self), access_log=None)
        api_runner = web.AppRunner(make_api_app(self), access_log=None)
        await ingest_runner.setup()
        await api_runner.setup()
        await web.TCPSite(ingest_runner, self.cfg.central.ingest_host, self.cfg.central.ingest_port).start()
        self.ingest_port = ingest_runner.addresses[0][1]   # the real port when configured as 0
        sock = socket_path(self)
        sock.unlink(missing_ok=True)
        await web.UnixSite(api_runner, str(sock)).start()
        os.chmod(sock, 0o660)
        _group_socket(sock)
        self.stopping = False
        background = [asyncio.create_task(t) for t in self.background_tasks()]
        # At the level shown without -v: whoever starts it sees that it is up, and the port when it is 0.
        log.warning("central serving ingest on %s:%d and the API on %s", self.cfg.central.ingest_host,
                 self.ingest_port, sock)
        self.audit.append("system", "central.start", details={"pid": os.getpid()})
        if ready is not None:
            ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopping = True
            self.wake_watchers()   # long polls answer now instead of holding the shutdown
            for task in background:
                task.cancel()
            await ingest_runner.cleanup()
            await api_runner.cleanup()
            self.custody.seal()
            self.audit.append("system", "central.stop", details={"sealed": True})

    def background_tasks(self):
        """Periodic work: retention sweeps, camera-offline checks, notification retries, checkpoints."""
        from appliance.rules.catalog import periodic_tasks
        return periodic_tasks(self) + [every(CHECKPOINT_SECONDS, self._checkpoint_if_grown, name="audit checkpoints",
                                             wait_first=True)]

    def _checkpoint_if_grown(self) -> None:
        """Sign a checkpoint when the log grew since the last one, so the heads nodes hold stay fresh."""
        head = self.audit.head()
        if head is None or head["checkpoint"]["seq"] < self.audit.next_seq - 1:
            self.audit.checkpoint()


def _group_socket(sock: Path) -> None:
    """Give the socket to group `custodian` when it exists (the TUI's users are in it)."""
    import grp

    try:
        os.chown(sock, -1, grp.getgrnam("custodian").gr_gid)
    except (KeyError, PermissionError):
        pass


def run_central(cfg: Config, data_dir: Path | None = None) -> int:
    import signal

    central = Central(cfg, data_dir)

    async def main() -> None:
        task = asyncio.create_task(central.serve())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):   # SIGHUP: its terminal closed
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(main())
    finally:
        central.close()
    return 0


def init_central(data_dir: Path, director_name: str, director_passphrase: str) -> str:
    """`custodian central init`: keys, records, the Director's account. Returns the recovery code."""
    paths = CentralPaths(data_dir)
    if paths.keys.exists():
        raise ConfigError(f"{paths.data} is already initialised")
    paths.data.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.data, 0o750)
    from appliance.rules.accounts import create_user_record, validate_passphrase

    validate_passphrase(director_passphrase)
    recovery = KeyStore.create(paths.data, director_name, director_passphrase)
    records = open_records(paths.records)
    keys = KeyStore(paths.data)
    audit = AuditLog(paths.audit / "audit.jsonl", keys.signing_key())
    user = create_user_record(records, director_name, "director", director_passphrase, now=datetime.now(timezone.utc))
    audit.append("system", "central.init", details={"director": user["id"]})
    audit.append("system", "user.create", target=user["id"], details={"role": "director"})
    audit.close(checkpoint=True)
    records.close()
    return recovery
