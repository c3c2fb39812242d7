"""The records database: crash safety under kill -9, schema migrations, locking, ids."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from tinydb import where

from appliance.errors import RecordNotFound, RecordsCorrupt, RecordsLocked, RecordsTooNew
from appliance.fsutil import TEMP_PREFIX
from appliance.custody.records import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    AtomicJSONStorage,
    open_records,
    valid_id,
)

REPO = Path(__file__).resolve().parents[2]

# A writer that acknowledges an id (prints it) only after insert() has returned.
WRITER = textwrap.dedent(
    """
    import sys
    from appliance.custody.records import open_records
    records = open_records(sys.argv[1])
    pad = "x" * 300
    n = 0
    while True:
        rid = records.insert("incidents", {"round": int(sys.argv[2]), "n": n, "pad": pad})
        print(rid, n, flush=True)
        n += 1
    """
)


def test_kill_9_mid_burst_never_loses_an_acknowledged_write(tmp_path):
    db_path = tmp_path / "records" / "records.json"
    rng = random.Random()
    acknowledged: dict[str, tuple[int, int]] = {}
    leftovers_seen = 0
    for round_no in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db_path), str(round_no)],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        try:
            first = proc.stdout.readline()  # the writer is now in its burst of writes
            assert first, "writer died before its first write"
            time.sleep(rng.uniform(0.0, 0.4))
            proc.kill()  # SIGKILL, at whatever point the writer has reached
        finally:
            proc.wait()
        out = first + proc.stdout.read()
        proc.stdout.close()
        for line in out.decode().splitlines(keepends=True):
            if line.endswith("\n"):  # a fully acknowledged id
                rid, n = line.split()
                acknowledged[rid] = (round_no, int(n))

        leftovers_seen += any(p.name.startswith(TEMP_PREFIX) for p in db_path.parent.iterdir())
        records = open_records(db_path)  # always loads
        try:
            stored = {d["id"]: d for d in records.all("incidents")}
            for rid, (r, n) in acknowledged.items():
                assert rid in stored, f"round {round_no}: acknowledged {rid} lost"
                assert (stored[rid]["round"], stored[rid]["n"]) == (r, n)
            assert all(valid_id(rid) for rid in stored)
        finally:
            records.close()
        # Opening removed whatever temp file the killed writer left behind.
        assert not any(p.name.startswith(TEMP_PREFIX) for p in db_path.parent.iterdir())
    assert len(acknowledged) > 20
    print(f"{len(acknowledged)} acknowledged writes survived 20 kills; "
          f"{leftovers_seen} kills left a temp file behind")


def test_storage_is_the_atomic_one_and_tolerates_an_absent_file(tmp_path):
    records = open_records(tmp_path / "r" / "records.json")
    with records:
        assert isinstance(records._db.storage, AtomicJSONStorage)
    assert AtomicJSONStorage(tmp_path / "absent" / "x.json").read() is None


def test_leftover_temp_files_are_removed_on_open(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / f"{TEMP_PREFIX}abc").write_text('{"half": ')
    with open_records(d / "records.json"):
        pass
    assert not list(d.glob(f"{TEMP_PREFIX}*"))


def test_unparsable_file_refuses_and_is_left_untouched(tmp_path):
    path = tmp_path / "records.json"
    path.write_text('{"incidents": {"inc-000001": {"id": "inc-0')
    before = path.read_bytes()
    with pytest.raises(RecordsCorrupt, match="restore it from a backup"):
        open_records(path)
    assert path.read_bytes() == before


V1_FILE = {
    "meta": {
        "schema_version": {"value": 1},
        "migration.0001": {"version": 1, "name": "_m1_baseline", "applied_at": "2026-01-01T00:00:00.000000Z"},
    },
    "incidents": {
        "inc-000003": {"what": "broken window"},
        "inc-000007": {"what": "shouting"},
    },
    "users": {"usr-000001": {"name": "director", "role": "director"}},
}


def test_v1_file_migrates_to_current(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps(V1_FILE))
    original = path.read_bytes()
    with open_records(path) as records:
        assert records.schema_version == SCHEMA_VERSION == len(MIGRATIONS) == 4
        assert records.get("incidents", "inc-000007") == {"id": "inc-000007", "what": "shouting"}
        assert records.get("users", "usr-000001")["id"] == "usr-000001"
        # counters start past the highest existing id: no reuse
        assert records.insert("incidents", {"what": "new"}) == "inc-000008"
        applied = records.migrations_applied()
        assert [m["version"] for m in applied] == [1, 2, 3, 4]
        assert applied[0]["applied_at"] == "2026-01-01T00:00:00.000000Z"  # v1 record kept
        second_applied_at = applied[1]["applied_at"]
    # the pre-migration file is kept for the operator
    assert (tmp_path / "records.json.v1-backup").read_bytes() == original
    # each migration runs once: reopening changes nothing
    with open_records(path) as records:
        assert records.migrations_applied()[1]["applied_at"] == second_applied_at
        assert len(records.all("incidents")) == 3


def test_a_v2_file_written_by_the_old_code_loses_its_unused_tables_and_keeps_its_live_views(tmp_path):
    # tests/custody/data/records-v2.json was written by a real central of commit 4b89c5e
    # (schema version 2) running tests/custody/data/make_records_v2.py.
    fixture = REPO / "tests" / "custody" / "data" / "records-v2.json"
    old = json.loads(fixture.read_text())
    assert old["meta"]["schema_version"] == {"value": 2} and {"sessions", "approvals", "live_sessions"} <= set(old)
    path = tmp_path / "records.json"
    path.write_bytes(fixture.read_bytes())
    with open_records(path) as records:
        assert records.schema_version == 4
        assert {v["id"]: v for v in records.all("live_views")} == old["live_sessions"]
        assert records.all("users") == list(old["users"].values())
        assert records.all("cameras") == list(old["cameras"].values())
        assert records.insert("live_views", {"camera": "entrance"}) == "liv-000003"    # the counter came along
        for gone in ("sessions", "approvals", "live_sessions"):
            with pytest.raises(ValueError, match="unknown table"):
                records.all(gone)
        applied = records.migrations_applied()
        assert [(m["version"], m["name"]) for m in applied] == [
            (1, "_m1_baseline"), (2, "_m2_ids_in_documents"), (3, "_m3_drop_unused_tables"), (4, "_m4_live_views")]
        assert applied[1] == old["meta"]["migration.0002"]
    stored = json.loads(path.read_text())
    assert {"sessions", "approvals", "live_sessions"}.isdisjoint(stored)
    assert sorted(k for k in stored["meta"] if k.startswith("next_id.")) == [
        "next_id.live_views", "next_id.users"]
    assert (tmp_path / "records.json.v2-backup").read_bytes() == fixture.read_bytes()   # for the operator


def test_database_newer_than_the_code_refuses_to_open(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps({"meta": {"schema_version": {"value": SCHEMA_VERSION + 1}}}))
    before = path.read_bytes()
    with pytest.raises(RecordsTooNew, match=f"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"):
        open_records(path)
    assert path.read_bytes() == before
    with open_records(tmp_path / "other.json"):  # and the refusal released the lock
        pass
    with pytest.raises(RecordsTooNew):
        open_records(path)


def test_second_process_is_refused(tmp_path):
    path = tmp_path / "records.json"
    with open_records(path):
        code = (
            "import sys\nfrom appliance.custody.records import open_records\n"
            "from appliance.errors import RecordsLocked\n"
            "try:\n    open_records(sys.argv[1])\nexcept RecordsLocked as e:\n"
            "    print(e.code)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "records_locked", out.stderr
        with pytest.raises(RecordsLocked):
            open_records(path)
    with open_records(path):  # closed: free again
        pass


def test_crud_and_ids(tmp_path):
    with open_records(tmp_path / "records.json") as records:
        a = records.insert("incidents", {"what": "theft", "camera": "cam-1"})
        b = records.table("incidents").insert({"what": "vandalism", "camera": "cam-2"})
        assert (a, b) == ("inc-000001", "inc-000002")
        assert records.insert("grants", {"incident": a}) == "grt-000001"
        assert records.insert("cameras", {"name": "Entrance"}, id="entrance-1") == "entrance-1"
        with pytest.raises(ValueError, match="already exists"):
            records.insert("cameras", {}, id="entrance-1")
        for bad in ("../etc", "a/b", "..", "", ".hidden", "x" * 65, "a\\b"):
            with pytest.raises(ValueError, match="unsafe"):
                records.insert("cameras", {}, id=bad)
        with pytest.raises(ValueError, match="unknown table"):
            records.insert("incident", {})
        with pytest.raises(ValueError):
            records.insert("incidents", {"id": "sneaky"})
        with pytest.raises(TypeError):
            records.insert("incidents", {"when": object()})

        assert records.search("incidents", camera="cam-2")[0]["id"] == b
        assert [d["id"] for d in records.search("incidents", where("what") == "theft")] == [a]
        assert [d["id"] for d in records.search("incidents", lambda d: d["what"] > "u")] == [b]
        got = records.get("incidents", a)
        got["what"] = "changed by caller"  # callers get copies
        assert records.get("incidents", a)["what"] == "theft"

        assert records.update("incidents", a, {"status": "closed"})["status"] == "closed"
        bumped = records.update("incidents", a, lambda d: d.update(views=d.get("views", 0) + 1))
        assert bumped["views"] == 1
        with pytest.raises(ValueError):
            records.update("incidents", a, {"id": "other"})
        with pytest.raises(RecordNotFound):
            records.update("incidents", "inc-999999", {"x": 1})
        assert records.get("incidents", "inc-999999") is None

        assert records.remove("incidents", b) is True
        assert records.remove("incidents", b) is False
        assert records.insert("incidents", {}) == "inc-000003"  # a removed id is not reused
        assert set(TABLES) >= {
            "users", "cameras", "incidents", "requests", "grants", "holds", "instruments", "exports",
            "breaches", "notices", "signage", "gaps", "alerts", "settings", "outbox", "live_views",
        }
        assert not {"sessions", "approvals", "live_sessions"} & set(TABLES)
        for name in TABLES:
            assert valid_id(records.insert(name, {}))
    assert oct((tmp_path / "records.json").stat().st_mode & 0o777) == "0o600"


def test_threads_share_one_records_object(tmp_path):
    with open_records(tmp_path / "records.json") as records:
        ids: list[str] = []
        errors: list[BaseException] = []

        def work():
            try:
                for i in range(15):
                    rid = records.insert("alerts", {"i": i})
                    records.update("alerts", rid, lambda d: d.update(seen=True))
                    ids.append(rid)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert len(set(ids)) == 90
        stored = records.all("alerts")
        assert {d["id"] for d in stored} == set(ids)
        assert all(d["seen"] for d in stored)
    # and the file on disk is one whole, parseable version
    json.loads((tmp_path / "records.json").read_text())
    assert os.path.exists(tmp_path / "records.json.lock")


# --------------------------------------------------------------------------- kill -9 mid-migration

MIGRATOR = textwrap.dedent(
    """
    import sys
    from appliance.custody.records import open_records
    print("opening", flush=True)
    with open_records(sys.argv[1]) as records:
        print("migrated", records.schema_version, flush=True)
    """
)


def _big_v1(path: Path, documents: int) -> dict:
    """A version-1 file (ids only as keys, no counters) holding the tables every migration touches."""
    pad = "y" * 2000
    data = {"meta": {"schema_version": {"value": 1}},
            "incidents": {f"inc-{n:06d}": {"n": n, "pad": pad} for n in range(documents)},
            "live_sessions": {f"liv-{n:06d}": {"camera": "entrance", "n": n} for n in range(documents // 4)},
            "sessions": {"ses-000001": {"user": "usr-000001"}}, "approvals": {"apr-000001": {"note": "x"}}}
    path.write_text(json.dumps(data))
    return data


@pytest.mark.slow
def test_kill_9_mid_migration_leaves_a_file_the_next_start_reads_at_one_version(tmp_path):
    """Each migration is one atomic write: a kill at any moment leaves the file at one version,
    never half migrated, and the next open carries on from there."""
    path = tmp_path / "records" / "records.json"
    path.parent.mkdir()
    # How long one migration takes on this machine (it varies tenfold with load).
    _big_v1(path, 1200)
    proc = subprocess.Popen([sys.executable, "-c", MIGRATOR, str(path)], stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout.readline() == b"opening\n"
    t0 = time.monotonic()
    assert proc.stdout.readline() == b"migrated %d\n" % SCHEMA_VERSION
    one = (time.monotonic() - t0) / (SCHEMA_VERSION - 1)
    proc.wait()
    proc.stdout.close()
    seen_versions = []
    for round_no in range(10):
        original = _big_v1(path, 1200)
        for leftover in path.parent.iterdir():
            if leftover != path:
                leftover.unlink()
        proc = subprocess.Popen([sys.executable, "-c", MIGRATOR, str(path)], stdout=subprocess.PIPE, cwd=REPO)
        assert proc.stdout.readline() == b"opening\n"
        # The kill lands after `writes` whole files were written (each atomic write is a new file),
        # then part of the way into the next: every phase is hit however loaded the machine is.
        writes, fraction = round_no % SCHEMA_VERSION, (round_no * 0.37) % 1
        seen, inode = 0, path.stat().st_ino
        while seen < writes and proc.poll() is None:
            if (now := path.stat().st_ino) != inode:
                seen, inode = seen + 1, now
        time.sleep(one * fraction)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        on_disk = json.loads(path.read_text())          # one whole version, whatever the moment
        version = on_disk["meta"]["schema_version"]["value"]
        seen_versions.append(version)
        applied = sorted(k for k in on_disk["meta"] if k.startswith("migration."))
        assert applied == [f"migration.{n:04d}" for n in range(2, version + 1)], (version, applied)
        if version >= 2:
            assert all(doc["id"] == key for key, doc in on_disk["incidents"].items())
        assert ("live_sessions" in on_disk) == (version < 4) and ("sessions" in on_disk) == (version < 3)
        with open_records(path) as records:             # the next start: carries on to the current version
            assert records.schema_version == SCHEMA_VERSION
            assert len(records.all("incidents")) == len(original["incidents"])
            assert len(records.all("live_views")) == len(original["live_sessions"])
            assert records.insert("incidents", {"after": round_no}) == "inc-001200"
    print(f"versions found after the kills: {seen_versions}")
    assert len(set(seen_versions)) >= 2        # the kills did land at different moments of the migration


# --------------------------------------------------------------------------- a damaged file


from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
                     max_leaves=12)
_TABLE_NAMES = st.sampled_from(["meta", "users", "incidents", "live_sessions", "cameras"]) | st.text(max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    _JSON,
    st.dictionaries(_TABLE_NAMES, _JSON, max_size=4),
    st.dictionaries(_TABLE_NAMES, st.dictionaries(st.text(max_size=8), _JSON, max_size=3), max_size=4),
    st.fixed_dictionaries({"meta": st.fixed_dictionaries({"schema_version": _JSON | st.fixed_dictionaries(
        {"value": st.integers(-1, 6) | _JSON})})}, optional={"users": _JSON, "incidents": _JSON})))
@example(data={"meta": []})
@example(data={"meta": {"schema_version": 4}})
@example(data={"meta": {"schema_version": {"value": 4}}, "users": {"usr-000001": 5}})
@example(data={"meta": {"schema_version": {"value": 4}}, "users": []})
def test_any_parseable_records_file_opens_or_is_refused_untouched(tmp_path_factory, data):
    """A file that parses but is not a records database (hand-edited, restored from the wrong
    place, damaged) is refused as RecordsCorrupt and left as it was; one that opens can be read."""
    path = tmp_path_factory.mktemp("records") / "records.json"
    raw = json.dumps(data).encode()
    path.write_bytes(raw)
    try:
        records = open_records(path)
    except (RecordsCorrupt, RecordsTooNew) as e:
        assert str(e) and path.read_bytes() == raw
        return
    with records:
        for table in TABLES:
            assert all(isinstance(doc, dict) for doc in records.all(table))
        records.insert("incidents", {"ok": True})
