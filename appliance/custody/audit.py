"""The append-only, hash-chained audit log with signed checkpoints.

Format and a verification procedure with stock tools: docs/audit-format.md.

`audit/audit.jsonl`: one canonical JSON object per line, each holding the SHA-256 of
the previous line's bytes (`prev`), so editing, deleting, inserting or reordering any
line breaks the chain after it. `audit/checkpoints/<seq>.json` + `<seq>.sig`: the
appliance's Ed25519 signature over a small document naming line `seq` and its hash,
so truncation and wholesale rewriting are caught against a checkpoint, and, since the
signing key sits on the same disk, against the heads the camera nodes keep.

Only the central daemon writes the log (an exclusive flock enforces it).
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import nacl.exceptions
import nacl.signing

from appliance.formats.canonical import CanonicalError, canonical_json, parse_canonical
from appliance.errors import AuditError
from appliance.fsutil import atomic_write, fsync_dir, remove_temp_leftovers

__all__ = [
    "AuditLog",
    "VerifyReport",
    "Problem",
    "verify_log",
    "verify_head",
    "ZERO_HASH",
    "ENTRY_KEYS",
]

log = logging.getLogger(__name__)

LOG_NAME = "audit.jsonl"
CHECKPOINT_DIR = "checkpoints"
ZERO_HASH = "0" * 64
ENTRY_KEYS = ("action", "actor", "details", "prev", "refs", "role", "seq", "target", "ts", "why")
CHECKPOINT_KEYS = ("count", "line_sha256", "seq", "ts")
_ACTION_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_CHECKPOINT_NAME_RE = re.compile(r"^(0|[1-9][0-9]*)\.json$")


def _ts(dt: datetime | None = None) -> str:
    dt = dt or datetime.now(timezone.utc)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sha256(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _checkpoint_files(cp_dir: Path) -> dict[int, Path]:
    if not cp_dir.is_dir():
        return {}
    found = {}
    for p in cp_dir.iterdir():
        m = _CHECKPOINT_NAME_RE.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def _read_tail_line(fd: int, size: int) -> bytes:
    """The last newline-terminated line of a file whose last byte is a newline."""
    end = size - 1  # position of the final newline
    chunk = 4096
    while True:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start)
        nl = data.rfind(b"\n")
        if nl >= 0:
            return data[nl + 1 :]
        if start == 0:
            return data
        chunk *= 2


class AuditLog:
    """The central's audit log. One instance per process; appends are thread-safe."""

    def __init__(self, path: str | Path, signing_key: nacl.signing.SigningKey, checkpoint_every: int = 100,
                 clock: Callable[[], datetime] | None = None):
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.path = Path(path)
        self.dir = self.path.parent
        self.checkpoint_dir = self.dir / CHECKPOINT_DIR
        self.signing_key = signing_key
        self.checkpoint_every = checkpoint_every
        # The central passes its own clock, so entries and records share one notion of now.
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._lock = threading.Lock()
        self.recovered_torn: list[Path] = []  # torn tails moved aside at this open

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AuditError(f"audit log {self.path} is already open for writing elsewhere") from None
            if created:
                fsync_dir(self.dir)
            # Only now that we are the one writer: temp files left by a crash.
            remove_temp_leftovers(self.dir)
            remove_temp_leftovers(self.checkpoint_dir)
            torn = self._recover_torn_tail()
            self._load_tail()
            self._load_checkpoints()
        except BaseException:
            os.close(self._fd)
            raise
        if torn is not None:
            path, data = torn
            log.warning("audit log: torn last line (%d bytes) moved to %s", len(data), path)
            self.append(
                "system",
                "audit.torn_line_recovered",
                role="system",
                target=path.name,
                why="an interrupted write left an unfinished last line; it was moved aside, not dropped",
                details={"bytes": len(data), "sha256": _sha256(data)},
            )

    # -- opening

    def _recover_torn_tail(self) -> tuple[Path, bytes] | None:
        size = os.fstat(self._fd).st_size
        if size == 0 or os.pread(self._fd, 1, size - 1) == b"\n":
            return None
        keep = 0
        pos = size
        while pos > 0:  # find the last newline
            start = max(0, pos - 65536)
            nl = os.pread(self._fd, pos - start, start).rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        torn = os.pread(self._fd, size - keep, keep)
        aside = self.dir / f"{self.path.name}.torn-{_ts().replace(':', '').replace('-', '')}"
        atomic_write(aside, torn, mode=0o600)  # saved durably before anything is cut
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)
        self.recovered_torn.append(aside)
        return aside, torn

    def _load_tail(self) -> None:
        self._size = os.fstat(self._fd).st_size
        if self._size == 0:
            self._next_seq, self._last_hash = 0, ZERO_HASH
            return
        line = _read_tail_line(self._fd, self._size)
        try:
            entry = parse_canonical(line)
            seq = entry["seq"]
            if not isinstance(seq, int) or seq < 0:
                raise CanonicalError("bad seq")
        except (CanonicalError, KeyError, TypeError) as e:
            raise AuditError(
                f"the last line of {self.path} is not a valid audit entry ({e}); refusing to "
                "append after it: run the audit verification and investigate"
            ) from None
        self._next_seq, self._last_hash = seq + 1, _sha256(line)

    def _load_checkpoints(self) -> None:
        # A crash between writing <seq>.sig and <seq>.json leaves an orphan .sig.
        for sig in self.checkpoint_dir.glob("*.sig"):
            if not sig.with_suffix(".json").exists():
                sig.unlink()
        self._head: dict | None = None
        self._checkpointed_count = 0
        # The newest checkpoint we can vouch for (verify_log reports the others).
        for seq in sorted(_checkpoint_files(self.checkpoint_dir), reverse=True):
            try:
                head = self._read_head(seq)
                cp = verify_head(head, self.signing_key.verify_key)
            except (OSError, CanonicalError, AuditError) as e:
                log.warning("audit log: checkpoint %s unusable (%s); run the audit verification", seq, e)
                continue
            if cp["seq"] >= self._next_seq:
                raise AuditError(
                    f"{self.path} has {self._next_seq} entries but signed checkpoint {seq} "
                    f"covers {cp['count']}: the log was truncated. Restore it from a backup; "
                    "do not append to it"
                )
            if cp["seq"] == self._next_seq - 1 and cp["line_sha256"] != self._last_hash:
                raise AuditError(f"the last line of {self.path} does not match signed checkpoint {seq}")
            self._head, self._checkpointed_count = head, cp["count"]
            return

    def _read_head(self, seq: int) -> dict:
        data = (self.checkpoint_dir / f"{seq}.json").read_bytes()
        sig = (self.checkpoint_dir / f"{seq}.sig").read_bytes()
        return {"checkpoint": parse_canonical(data), "signature": base64.b64encode(sig).decode("ascii")}

    # -- writing

    def append(
        self,
        actor: str,
        action: str,
        *,
        role: str | None = None,
        target: str | None = None,
        refs: dict[str, Any] | None = None,
        why: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict:
        """Write one entry durably (write, fsync) and return it.

        actor: the person's user name, or `system`, or a camera's name. action: a
        dotted name such as `archive.unseal`. refs: ids of the incident, grant,
        instrument... the action belongs to. details: any canonical-JSON values.
        """
        if not isinstance(actor, str) or not actor:
            raise ValueError("an audit entry needs an actor")
        if not isinstance(action, str) or not _ACTION_RE.match(action):
            raise ValueError(f"action {action!r} is not a dotted name like 'archive.unseal'")
        for name, value in (("role", role), ("target", target), ("why", why)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string or None")
        with self._lock:
            if self._fd is None:
                raise AuditError("the audit log is closed")
            entry = {
                "seq": self._next_seq,
                "ts": _ts(self._clock()),
                "actor": actor,
                "role": role,
                "action": action,
                "target": target,
                "refs": dict(refs or {}),
                "why": why,
                "details": dict(details or {}),
                "prev": self._last_hash,
            }
            line = canonical_json(entry)  # raises on floats etc. before anything is written
            self._write_line(line)
            self._next_seq += 1
            self._last_hash = _sha256(line)
            if self._next_seq - self._checkpointed_count >= self.checkpoint_every:
                try:
                    self._checkpoint_locked()
                except OSError:
                    # The entry itself is durable; try the checkpoint again next append.
                    log.exception("audit log: automatic checkpoint failed")
            return entry

    def _write_line(self, line: bytes) -> None:
        data = line + b"\n"
        start = self._size
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
            os.fsync(self._fd)
        except BaseException:
            # Never leave half a line for the next entry to follow (disk full...).
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                log.exception("audit log: could not cut a failed write back")
            raise
        self._size = start + len(data)

    def checkpoint(self) -> dict:
        """Sign the current end of the log; returns the head ({"checkpoint", "signature"})."""
        with self._lock:
            if self._next_seq == 0:
                raise AuditError("nothing to checkpoint: the audit log is empty")
            return self._checkpoint_locked()

    def _checkpoint_locked(self) -> dict:
        seq = self._next_seq - 1
        if self._head is not None and self._head["checkpoint"]["seq"] == seq:
            return self._head
        cp = {"seq": seq, "line_sha256": self._last_hash, "ts": _ts(self._clock()), "count": seq + 1}
        data = canonical_json(cp)
        sig = self.signing_key.sign(data).signature
        # Signature first: a crash between the two leaves an orphan .sig (removed at
        # open), never an unsigned checkpoint.
        atomic_write(self.checkpoint_dir / f"{seq}.sig", sig, mode=0o644)
        atomic_write(self.checkpoint_dir / f"{seq}.json", data, mode=0o644)
        self._head = {"checkpoint": cp, "signature": base64.b64encode(sig).decode("ascii")}
        self._checkpointed_count = cp["count"]
        return self._head

    def head(self) -> dict | None:
        """The latest signed checkpoint, as camera nodes keep it:
        {"checkpoint": {seq, line_sha256, ts, count}, "signature": base64}. Call
        `checkpoint()` first for one that covers the very latest entry."""
        with self._lock:
            return None if self._head is None else {"checkpoint": dict(self._head["checkpoint"]),
                                                     "signature": self._head["signature"]}

    def deletion_receipt(
        self, segment_path: str | Path, digest: str, rule: str, details: dict[str, Any] | None = None
    ) -> dict:
        """Record that retention deleted a segment (what, its digest, under which rule)."""
        return self.append(
            "system",
            "retention.delete",
            role="system",
            target=str(segment_path),
            why=rule,
            details={**(details or {}), "digest": digest, "rule": rule},
        )

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def close(self, *, checkpoint: bool = True) -> None:
        """Close; by default first sign a checkpoint covering the last entries."""
        with self._lock:
            if self._fd is None:
                return
            try:
                if checkpoint and self._next_seq > self._checkpointed_count:
                    self._checkpoint_locked()
            finally:
                os.close(self._fd)  # releases the flock
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading

    def query(
        self,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        actor: str | None = None,
        action_prefix: str | None = None,
    ) -> list[dict]:
        """Entries with since <= ts < until, by actor, whose action starts with
        `action_prefix` ("archive" matches "archive.view", not "archives.x"; end the
        prefix with a dot or give a full action as you like). Times: datetimes (naive
        = UTC) or strings in the log's form or a prefix of it ("2026-11-29")."""
        with self._lock:
            size = self._size  # entries appended while we read are not included
        lo = _ts(since) if isinstance(since, datetime) else since
        hi = _ts(until) if isinstance(until, datetime) else until
        results = []
        with open(self.path, "rb") as f:
            data = f.read(size)
        for n, line in enumerate(data.splitlines(), start=1):
            try:
                entry = parse_canonical(line)
            except CanonicalError as e:
                raise AuditError(f"{self.path} line {n} is not a valid entry ({e}): run the verification") from None
            if lo is not None and entry["ts"] < lo:
                continue
            if hi is not None and entry["ts"] >= hi:
                continue
            if actor is not None and entry["actor"] != actor:
                continue
            if action_prefix is not None and not _action_matches(entry["action"], action_prefix):
                continue
            results.append(entry)
        return results


def _action_matches(action: str, prefix: str) -> bool:
    if prefix.endswith("."):
        return action.startswith(prefix)
    return action == prefix or action.startswith(prefix + ".")


# --- verification ---------------------------------------------------------------------


@dataclass
class Problem:
    line: int | None  # 1-based line number in audit.jsonl (line n holds seq n-1), if any
    kind: str  # unterminated | malformed | seq | chain | checkpoint | signature | truncated | rewritten | head
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message}"


@dataclass
class VerifyReport:
    ok: bool = True
    problems: list[Problem] = field(default_factory=list)
    lines: int = 0
    checkpoints: int = 0
    heads: int = 0
    latest_checkpoint: int | None = None

    def add(self, line: int | None, kind: str, message: str) -> None:
        self.problems.append(Problem(line, kind, message))
        self.ok = False

    def __str__(self) -> str:
        head = (f"audit log {'OK' if self.ok else 'FAILED'}: {self.lines} lines, "
                f"{self.checkpoints} signed checkpoints, {self.heads} node heads")
        return "\n".join([head] + [f"  {p}" for p in self.problems])


def verify_head(head: dict, verify_key: nacl.signing.VerifyKey) -> dict:
    """Check a head's signature; return its checkpoint dict. Raises AuditError.

    A camera node calls this before keeping a head the central hands it."""
    try:
        cp = head["checkpoint"]
        data = canonical_json(cp)
        verify_key.verify(data, base64.b64decode(head["signature"], validate=True))
        if (set(cp) != set(CHECKPOINT_KEYS) or type(cp["seq"]) is not int or cp["seq"] < 0
                or cp["count"] != cp["seq"] + 1 or not _HEX64_RE.match(cp["line_sha256"])):
            raise ValueError("malformed checkpoint")
    except (KeyError, TypeError, ValueError, nacl.exceptions.BadSignatureError) as e:
        raise AuditError(f"not a valid signed audit head: {e}") from None
    return cp


def verify_log(
    audit_dir: str | Path, verify_key: nacl.signing.VerifyKey, node_heads: Iterable[dict] = ()
) -> VerifyReport:
    """Check the whole log: the chain, every signed checkpoint, every node-held head."""
    audit_dir = Path(audit_dir)
    report = VerifyReport()
    path = audit_dir / LOG_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
        report.add(None, "missing", f"{path} does not exist")

    # 1. The chain.
    if data and not data.endswith(b"\n"):
        report.add(data.count(b"\n") + 1, "unterminated", "the last line has no newline (a torn write or truncation)")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    report.lines = len(lines)
    prev = ZERO_HASH
    for i, line in enumerate(lines):
        n = i + 1
        try:
            entry = parse_canonical(line)
            if not isinstance(entry, dict) or tuple(sorted(entry)) != ENTRY_KEYS:
                raise CanonicalError("not an audit entry (wrong fields)")
        except CanonicalError as e:
            report.add(n, "malformed", f"not a valid entry: {e}")
        else:
            if entry["seq"] != i:
                report.add(n, "seq", f"seq is {entry['seq']!r}, expected {i} (a line was removed, inserted or moved)")
            if entry["prev"] != prev:
                what = "the start of the log" if i == 0 else f"line {n - 1}"
                report.add(n, "chain", f"prev does not match the hash of {what} (altered, removed, inserted or moved lines)")
        prev = _sha256(line)

    # 2. Signed checkpoints.
    def check_against_log(cp: dict, label: str) -> None:
        seq = cp["seq"]
        if seq >= len(lines):
            report.add(None, "truncated",
                       f"{label} covers {seq + 1} lines but the log has {len(lines)}: the log was truncated")
        elif _sha256(lines[seq]) != cp["line_sha256"]:
            report.add(seq + 1, "rewritten", f"the line does not match {label}: the log was rewritten")

    files = _checkpoint_files(audit_dir / CHECKPOINT_DIR)
    report.checkpoints = len(files)
    signed: dict[int, bytes] = {}
    for seq, p in files.items():
        label = f"checkpoint {p.name}"
        body = p.read_bytes()
        try:
            sig = p.with_suffix(".sig").read_bytes()
            verify_key.verify(body, sig)
        except FileNotFoundError:
            report.add(None, "signature", f"{label} has no signature file")
            continue
        except (nacl.exceptions.BadSignatureError, ValueError):
            report.add(None, "signature", f"{label}: the signature does not verify")
            continue
        try:
            cp = parse_canonical(body)
            if set(cp) != set(CHECKPOINT_KEYS) or cp["seq"] != seq or cp["count"] != seq + 1:
                raise CanonicalError("fields do not match its name")
        except (CanonicalError, TypeError) as e:
            report.add(None, "checkpoint", f"{label} is malformed: {e}")
            continue
        signed[seq] = body
        check_against_log(cp, label)
    if signed:
        report.latest_checkpoint = max(signed)

    # 3. Heads the camera nodes hold (they survive a rewrite of the central's disk).
    for k, head in enumerate(node_heads):
        report.heads += 1
        try:
            cp = verify_head(head, verify_key)
        except AuditError as e:
            report.add(None, "head", f"node head #{k + 1}: {e}")
            continue
        label = f"node head #{k + 1} (seq {cp['seq']})"
        check_against_log(cp, label)
        body = canonical_json(cp)
        if cp["seq"] not in signed:
            report.add(None, "head", f"{label}: its checkpoint file is missing from the central")
        elif signed[cp["seq"]] != body:
            report.add(None, "head", f"{label}: the central's checkpoint file differs from it")
    return report
