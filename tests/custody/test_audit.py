"""The audit log: chain, signed checkpoints, tamper detection, crash recovery, stock-tool verification."""
from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nacl.signing
import pytest

from appliance.custody import audit as audit_mod
from appliance.custody.audit import ZERO_HASH, AuditLog, verify_head, verify_log
from appliance.formats.canonical import CanonicalError, canonical_json, parse_canonical
from appliance.errors import AuditError
from appliance.custody.keys import KeyStore, ed25519_public_pem

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def key():
    return nacl.signing.SigningKey.generate()


def _fill(log: AuditLog, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(
            "jdoe" if i % 3 else "director",
            "archive.view" if i % 2 else "grant.approve",
            role="staff" if i % 3 else "director",
            target="entrance",
            refs={"incident": "inc-000001", "grant": "grt-000002"},
            why="identify the person who damaged the returns box",
            details={"i": i, "note": "caf\u00e9 \u2603 \"quoted\" back\\slash"},
        )


def _make(tmp_path, key, n=250, every=100) -> Path:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl", key, checkpoint_every=every)
    _fill(log, n)
    log.close()
    return tmp_path / "audit"


def _lines(audit_dir: Path) -> list[bytes]:
    return (audit_dir / "audit.jsonl").read_bytes().splitlines()


def _write_lines(audit_dir: Path, lines: list[bytes]) -> None:
    (audit_dir / "audit.jsonl").write_bytes(b"".join(l + b"\n" for l in lines))


def _kinds(report) -> set[str]:
    return {p.kind for p in report.problems}


# --- canonical JSON -----------------------------------------------------------------


def test_canonical_json():
    assert canonical_json({"b": 1, "a": [True, None, "\u00e9"]}) == b'{"a":[true,null,"\\u00e9"],"b":1}'
    for bad in (1.0, float("nan"), float("inf"), {"x": [0.5]}, {1: "a"}, b"bytes", object()):
        with pytest.raises(CanonicalError):
            canonical_json(bad)
    assert parse_canonical(b'{"a":1,"b":"x"}') == {"a": 1, "b": "x"}
    for bad in (b'{"b":1,"a":2}', b'{"a": 1}', b'{"a":1.5}', b'{"a":NaN}', b'{"a":1,"a":1}',
                b'{"a":"\xc3\xa9"}', b"not json"):
        with pytest.raises(CanonicalError):
            parse_canonical(bad)


# --- writing ---------------------------------------------------------------------------


def test_entries_are_canonical_and_chained(tmp_path, key):
    audit_dir = _make(tmp_path, key, n=5)
    lines = _lines(audit_dir)
    prev = ZERO_HASH
    for i, line in enumerate(lines):
        entry = parse_canonical(line)
        assert sorted(entry) == ["action", "actor", "details", "prev", "refs", "role", "seq", "target", "ts", "why"]
        assert entry["seq"] == i and entry["prev"] == prev
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["ts"])
        prev = hashlib.sha256(line).hexdigest()
    assert oct((audit_dir / "audit.jsonl").stat().st_mode & 0o777) == "0o600"
    report = verify_log(audit_dir, key.verify_key)
    assert report.ok, str(report)
    assert report.lines == 5


def test_bad_entries_are_refused_before_writing(tmp_path, key):
    with AuditLog(tmp_path / "audit.jsonl", key) as log:
        for action in ("login", "Archive.View", "archive.", ""):
            with pytest.raises(ValueError):
                log.append("jdoe", action)
        with pytest.raises(ValueError):
            log.append("", "archive.view")
        with pytest.raises(CanonicalError):
            log.append("jdoe", "archive.view", details={"seconds": 1.5})
        assert log.next_seq == 0
        log.append("jdoe", "archive.view")
    assert len(_lines(tmp_path)) == 1


def test_automatic_checkpoints_and_head(tmp_path, key):
    audit_dir = _make(tmp_path, key, n=250, every=100)
    names = sorted(p.name for p in (audit_dir / "checkpoints").iterdir())
    # every 100 entries, plus one at close for the tail
    assert names == ["199.json", "199.sig", "249.json", "249.sig", "99.json", "99.sig"]
    body = (audit_dir / "checkpoints" / "99.json").read_bytes()
    cp = parse_canonical(body)
    assert cp["seq"] == 99 and cp["count"] == 100
    assert cp["line_sha256"] == hashlib.sha256(_lines(audit_dir)[99]).hexdigest()
    key.verify_key.verify(body, (audit_dir / "checkpoints" / "99.sig").read_bytes())

    log = AuditLog(audit_dir / "audit.jsonl", key, checkpoint_every=100)
    head = log.head()
    assert head["checkpoint"]["seq"] == 249  # picked up from disk
    log.append("jdoe", "archive.view")
    fresh = log.checkpoint()
    assert fresh["checkpoint"]["seq"] == 250 and log.head() == fresh
    assert verify_head(fresh, key.verify_key) == fresh["checkpoint"]
    log.close()


def test_concurrent_appends_from_threads_keep_the_chain(tmp_path, key):
    log = AuditLog(tmp_path / "audit" / "audit.jsonl", key, checkpoint_every=25)
    errors = []

    def worker(t):
        try:
            for i in range(40):
                log.append(f"user{t}", "archive.view", details={"t": t, "i": i})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert not errors
    report = verify_log(tmp_path / "audit", key.verify_key)
    assert report.ok, str(report)
    assert report.lines == 320 and report.checkpoints >= 12
    seen = {(e["details"]["t"], e["details"]["i"]) for e in map(parse_canonical, _lines(tmp_path / "audit"))}
    assert len(seen) == 320


def test_second_writer_is_refused(tmp_path, key):
    with AuditLog(tmp_path / "audit.jsonl", key):
        with pytest.raises(AuditError, match="already open"):
            AuditLog(tmp_path / "audit.jsonl", key)


def test_failed_write_is_cut_back(tmp_path, key, monkeypatch):
    log = AuditLog(tmp_path / "audit.jsonl", key)
    log.append("jdoe", "archive.view")
    real_write = os.write

    def half_then_enospc(fd, data):
        if fd == log._fd:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(audit_mod.os, "write", half_then_enospc)
    with pytest.raises(OSError):
        log.append("jdoe", "archive.export")
    monkeypatch.undo()
    log.append("jdoe", "archive.view")
    log.close()
    report = verify_log(tmp_path, key.verify_key)
    assert report.ok and report.lines == 2, str(report)


# --- crash recovery -----------------------------------------------------------------


def test_torn_last_line_is_moved_aside_and_reported(tmp_path, key):
    audit_dir = _make(tmp_path, key, n=10)
    torn = b'{"action":"archive.export","actor":"jdoe","details":{"clip'
    with open(audit_dir / "audit.jsonl", "ab") as f:
        f.write(torn)
    report = verify_log(audit_dir, key.verify_key)
    assert not report.ok and "unterminated" in _kinds(report)

    log = AuditLog(audit_dir / "audit.jsonl", key)
    assert len(log.recovered_torn) == 1
    aside = log.recovered_torn[0]
    assert aside.name.startswith("audit.jsonl.torn-") and aside.read_bytes() == torn
    log.close()
    entries = [parse_canonical(l) for l in _lines(audit_dir)]
    assert len(entries) == 11
    last = entries[-1]
    assert last["action"] == "audit.torn_line_recovered" and last["target"] == aside.name
    assert last["details"] == {"bytes": len(torn), "sha256": hashlib.sha256(torn).hexdigest()}
    assert verify_log(audit_dir, key.verify_key).ok


def test_garbage_last_line_refuses_to_open(tmp_path, key):
    audit_dir = _make(tmp_path, key, n=3, every=100)
    with open(audit_dir / "audit.jsonl", "ab") as f:
        f.write(b"rubbish\n")
    with pytest.raises(AuditError, match="not a valid audit entry"):
        AuditLog(audit_dir / "audit.jsonl", key)


# --- tampering ---------------------------------------------------------------------------


def _edit_line(line: bytes, **changes) -> bytes:
    entry = parse_canonical(line)
    entry.update(changes)
    return canonical_json(entry)


def test_edited_line_is_detected(tmp_path, key):
    audit_dir = _make(tmp_path, key)
    lines = _lines(audit_dir)
    lines[41] = _edit_line(lines[41], actor="someone_else")  # line 42
    _write_lines(audit_dir, lines)
    report = verify_log(audit_dir, key.verify_key)
    assert not report.ok
    assert [(p.line, p.kind) for p in report.problems] == [(43, "chain")]


def test_edited_checkpointed_line_is_detected(tmp_path, key):
    audit_dir = _make(tmp_path, key)
    lines = _lines(audit_dir)
    lines[99] = _edit_line(lines[99], why="nothing to see")  # the line checkpoint 99 names
    _write_lines(audit_dir, lines)
    report = verify_log(audit_dir, key.verify_key)
    assert {(p.line, p.kind) for p in report.problems} == {(101, "chain"), (100, "rewritten")}


def test_non_json_edit_is_detected(tmp_path, key):
    audit_dir = _make(tmp_path, key)
    data = (audit_dir / "audit.jsonl").read_bytes()
    (audit_dir / "audit.jsonl").write_bytes(data.replace(b'"seq":7,', b'"seq": 7,', 1))
    report = verify_log(audit_dir, key.verify_key)
    assert (8, "malformed") in {(p.line, p.kind) for p in report.problems}
    assert (9, "chain") in {(p.line, p.kind) for p in report.problems}


def test_deleted_line_is_detected(tmp_path, key):
    audit_dir = _make(tmp_path, key)
    lines = _lines(audit_dir)
    del lines[10]
    _write_lines(audit_dir, lines)
    report = verify_log(audit_dir, key.verify_key)
    assert (11, "seq") in {(p.line, p.kind) for p in report.problems}
    assert (11, "chain") in {(p.line, p.kind) for p in report.problems}


def test_reordered_lines_are_detected(tmp_path, key):
    audit_dir = _make(tmp_path, key)
    lines = _lines(audit_dir)
    lines[20], lines[21] = lines[21], lines[20]
    _write_lines(audit_dir, lines)
    report = verify_log(audit_dir, key.verify_key)
    found = {(p.line, p.kind) for p in report.problems}
    assert {(21, "seq"), (22, "seq"), (21, "chain"), (22, "chain"), (23, "chain")} <= found


def test_truncation_below_a_checkpoint_is_detected_and_refused(tmp_path, key):
    audit_dir = _make(tmp_path, key)
    _write_lines(audit_dir, _lines(audit_dir)[:230])  # checkpoint 249 names line 250
    report = verify_log(audit_dir, key.verify_key)
    assert not report.ok and "truncated" in _kinds(report)
    with pytest.raises(AuditError, match="truncated"):
        AuditLog(audit_dir / "audit.jsonl", key)


def test_truncation_hidden_by_deleting_checkpoints_is_caught_by_node_heads(tmp_path, key):
    audit_dir = tmp_path / "audit"
    log = AuditLog(audit_dir / "audit.jsonl", key, checkpoint_every=100)
    _fill(log, 150)
    node_head = log.checkpoint()  # handed to a camera node, which keeps it
    _fill(log, 50, start=150)
    log.close()
    _write_lines(audit_dir, _lines(audit_dir)[:120])
    for p in (audit_dir / "checkpoints").iterdir():
        if int(p.stem) >= 120:
            p.unlink()
    assert verify_log(audit_dir, key.verify_key).ok  # the central's own files now agree...
    report = verify_log(audit_dir, key.verify_key, node_heads=[node_head])
    assert not report.ok  # ...but the node remembers line 150
    assert {"truncated", "head"} <= _kinds(report)


def test_rewrite_with_resigned_checkpoints_is_caught_by_node_heads(tmp_path, key):
    """Someone with the central's disk (and so its signing key) rewrites history."""
    audit_dir = tmp_path / "audit"
    log = AuditLog(audit_dir / "audit.jsonl", key, checkpoint_every=50)
    _fill(log, 120)
    node_head = log.checkpoint()
    log.close()
    # rebuild the log from line 30 on, with a consistent chain and fresh signatures
    kept = _lines(audit_dir)[:30]
    shutil.rmtree(audit_dir)
    audit_dir.mkdir()
    _write_lines(audit_dir, kept)
    forged = AuditLog(audit_dir / "audit.jsonl", key, checkpoint_every=50)
    for i in range(30, 121):
        forged.append("director", "archive.view", details={"i": i})
    forged.close()
    assert verify_log(audit_dir, key.verify_key).ok  # internally consistent
    report = verify_log(audit_dir, key.verify_key, node_heads=[node_head])
    assert not report.ok and "rewritten" in _kinds(report)


def test_forged_or_missing_checkpoint_signature(tmp_path, key):
    audit_dir = _make(tmp_path, key)
    cp = audit_dir / "checkpoints" / "199.json"
    entry = parse_canonical(cp.read_bytes())
    entry["line_sha256"] = "0" * 64
    cp.write_bytes(canonical_json(entry))
    (audit_dir / "checkpoints" / "99.sig").unlink()
    report = verify_log(audit_dir, key.verify_key)
    messages = [str(p) for p in report.problems]
    assert any("199.json: the signature does not verify" in m for m in messages)
    assert any("99.json has no signature" in m for m in messages)
    # a head signed by another key is not accepted either
    other = nacl.signing.SigningKey.generate()
    fake = {"checkpoint": entry, "signature": base64.b64encode(other.sign(canonical_json(entry)).signature).decode()}
    with pytest.raises(AuditError):
        verify_head(fake, key.verify_key)
    assert "head" in _kinds(verify_log(audit_dir, key.verify_key, node_heads=[fake]))


# --- queries and receipts ---------------------------------------------------------------


def test_query_for_a_breach_window(tmp_path, key):
    with AuditLog(tmp_path / "audit.jsonl", key) as log:
        a = log.append("jdoe", "archive.view", refs={"incident": "inc-000001"})
        log.append("jdoe", "live.view")
        b = log.append("mallory", "archive.export", target="usb")
        log.append("mallory", "archives.listing")
        log.deletion_receipt("archive/entrance/2026/11/01/000001-20261101T000000Z.cseg", "ab" * 32, "retention-30d")
        assert [e["seq"] for e in log.query(action_prefix="archive")] == [0, 2]
        assert [e["seq"] for e in log.query(action_prefix="archive.")] == [0, 2]
        assert [e["seq"] for e in log.query(actor="mallory")] == [2, 3]
        assert [e["seq"] for e in log.query(since=b["ts"])] == [2, 3, 4]
        assert [e["seq"] for e in log.query(until=b["ts"])] == [0, 1]
        assert [e["seq"] for e in log.query(since=a["ts"][:10])] == [0, 1, 2, 3, 4]
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        assert log.query(since=later) == []
        assert len(log.query(since=later - timedelta(days=1), until=later)) == 5
        receipt = log.query(action_prefix="retention.delete")[0]
        assert receipt["actor"] == "system" and receipt["why"] == "retention-30d"
        assert receipt["target"].endswith(".cseg") and receipt["details"]["digest"] == "ab" * 32


# --- third-party verification ------------------------------------------------------------


def test_checkpoint_verifies_with_openssl(tmp_path, key):
    audit_dir = _make(tmp_path, key, n=100)
    pem = tmp_path / "signing.pub.pem"
    pem.write_text(ed25519_public_pem(bytes(key.verify_key)))
    out = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin",
         "-in", str(audit_dir / "checkpoints" / "99.json"), "-sigfile", str(audit_dir / "checkpoints" / "99.sig")],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0 and "Signature Verified Successfully" in out.stdout, out.stdout + out.stderr
    # and a one-byte change to the checkpoint fails
    bad = tmp_path / "bad.json"
    bad.write_bytes((audit_dir / "checkpoints" / "99.json").read_bytes().replace(b'"count":100', b'"count":101'))
    out = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pem), "-rawin",
         "-in", str(bad), "-sigfile", str(audit_dir / "checkpoints" / "99.sig")],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode != 0


def _doc_script() -> str:
    doc = (REPO / "docs" / "audit-format.md").read_text()
    m = re.search(r"<!-- verify-script[^>]*-->\n```sh\n(.*?)\n```", doc, re.S)
    assert m, "docs/audit-format.md lost its marked verification block"
    return m.group(1)


def _run_doc_script(data_dir: Path):
    return subprocess.run(["sh", "-c", _doc_script()], cwd=data_dir, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def real_data_dir(tmp_path_factory):
    """A data directory as the central leaves it: keys/ from KeyStore, audit/ from AuditLog."""
    data = tmp_path_factory.mktemp("central")
    KeyStore.create(data, "director", "correct horse battery")
    log = AuditLog(data / "audit" / "audit.jsonl", KeyStore(data).signing_key(), checkpoint_every=100)
    _fill(log, 230)
    log.append("director", "archive.unseal", details={"prev": "ff" * 32, "refs": {}, "seq": 3, "target": "x"})
    log.close()
    return data


def test_doc_commands_verify_a_real_log(real_data_dir, tmp_path):
    data = tmp_path / "copy"
    shutil.copytree(real_data_dir, data)
    out = _run_doc_script(data)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("Signature Verified Successfully") == 3
    assert "chain OK: 231 lines" in out.stdout
    last = hashlib.sha256(_lines(data / "audit")[-1]).hexdigest()
    assert out.stdout.strip().endswith(last)
    assert (data / "signing.pub.pem").read_text() == (data / "keys" / "signing.pub.pem").read_text()
    assert verify_log(data / "audit", KeyStore(data).verify_key()).ok


@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "truncate", "forge_checkpoint", "torn"])
def test_doc_commands_detect_tampering(real_data_dir, tmp_path, tamper):
    data = tmp_path / "copy"
    shutil.copytree(real_data_dir, data)
    audit_dir = data / "audit"
    lines = _lines(audit_dir)
    if tamper == "edit":
        assert b'"i":150,' in lines[150]
        lines[150] = lines[150].replace(b'"i":150,', b'"i":151,')
    elif tamper == "delete":
        del lines[60]
    elif tamper == "reorder":
        lines[5], lines[6] = lines[6], lines[5]
    elif tamper == "truncate":
        lines = lines[:210]
    if tamper == "forge_checkpoint":
        cp = audit_dir / "checkpoints" / "99.json"
        cp.write_bytes(cp.read_bytes().replace(b'"count":100', b'"count":99'))
    elif tamper == "torn":
        with open(audit_dir / "audit.jsonl", "ab") as f:
            f.write(b'{"action":"archive.ex')
    else:
        _write_lines(audit_dir, lines)
    out = _run_doc_script(data)
    assert out.returncode != 0, f"{tamper} went unnoticed:\n{out.stdout}"
    assert not verify_log(audit_dir, KeyStore(data).verify_key()).ok
