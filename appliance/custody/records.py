"""The records database: the human-scale records people write (docs/records.md).

TinyDB, opened only by the central daemon. Three things are added around it:

1. `AtomicJSONStorage` replaces TinyDB's stock `JSONStorage`. The stock storage
   rewrites the file in place (seek(0), write, truncate): a crash or power cut during
   that write leaves a half-old, half-new file that no longer parses (FIELD-NOTES:
   1 kill in 20 at 100k documents). Ours writes a temp file in the same directory,
   fsyncs it, renames it over the old one and fsyncs the directory
   (`fsutil.atomic_write`), so the file on disk is always one whole version.
2. A versioned schema: the `meta` table holds `schema_version`; `MIGRATIONS` run in
   order, once each, each one atomically with its own record; a database newer than
   this code refuses to open.
3. One lock around every access (the daemon serves asyncio plus worker threads;
   TinyDB itself is not thread-safe) and an exclusive `flock` on `<file>.lock`, so a
   second process (TinyDB is unsafe with two writers) gets a clear refusal.

Documents are plain dicts keyed by string ids that are safe in file names
(`inc-000123`); every document carries its own `id` field.
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path
from typing import Any

from tinydb import TinyDB, where
from tinydb.queries import QueryLike
from tinydb.storages import MemoryStorage, Storage
from tinydb.table import Document, Table

from appliance.errors import RecordNotFound, RecordsCorrupt, RecordsLocked, RecordsTooNew
from appliance.fsutil import atomic_write, remove_temp_leftovers

__all__ = [
    "TABLES",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AtomicJSONStorage",
    "Records",
    "RecordTable",
    "open_records",
    "valid_id",
]

# Table name -> prefix of the ids generated for it. A name not listed here is refused,
# so a typo ("incident") cannot silently create a new, empty table. Add a table here.
TABLES: dict[str, str] = {
    "users": "usr",
    "cameras": "cam",
    "incidents": "inc",
    "requests": "req",
    "grants": "grt",
    "holds": "hld",
    "instruments": "ins",
    "exports": "exp",
    "breaches": "brc",
    "notices": "ntc",
    "signage": "sgn",
    "gaps": "gap",
    "alerts": "alr",
    "settings": "set",
    "outbox": "out",
    "counsel": "cns",      # legal.py: counsel consultations per instrument (C13, C14)
    "releases": "rel",     # legal.py: releases to law enforcement, each registered in exports (C3)
    "live_views": "liv",   # live.py: live views, each one person watching one camera for a while (C8)
    "invites": "inv",      # enrolment.py: pairing codes for cameras flashed by IT (hashes only)
}
META = "meta"  # internal: schema version, migration records, id counters

# Ids appear in file names and URLs: one path component, never "." or "..".
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def valid_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value)) and ".." not in value


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- storage -----------------------------------------------------------------------


class AtomicJSONStorage(Storage):
    """TinyDB storage that replaces the whole file atomically and durably on each write.

    Replaces `tinydb.storages.JSONStorage`, which writes in place and can leave an
    unparsable file after a crash. Reading an absent file gives an empty database;
    reading a file that exists but does not parse raises `RecordsCorrupt` (it is never
    treated as empty, which would overwrite it at the next write). Opening removes
    temp files a crash left in the directory: keep the database in a directory of
    its own.
    """

    def __init__(self, path: str | Path, **_ignored: Any):
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.removed_leftovers = remove_temp_leftovers(self.path.parent)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
            for name, table in data.items():   # tables of documents, each an object: else TinyDB fails later
                if not isinstance(table, dict) or not all(isinstance(doc, dict) for doc in table.values()):
                    raise ValueError(f"table {name!r} is not an object of records")
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError included
            raise RecordsCorrupt(
                f"records database {self.path} is unreadable ({e}); it has not been "
                "modified: restore it from a backup"
            ) from None
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        atomic_write(self.path, body.encode("utf-8"), mode=0o600)


class _StrIdTable(Table):
    # Our ids are strings chosen by us (Document(doc, doc_id=...)); TinyDB's own
    # integer counter is never used.
    document_id_class = str


class _DB(TinyDB):
    table_class = _StrIdTable


# --- schema and migrations -----------------------------------------------------------
#
# Each migration is a function of an in-memory TinyDB holding the whole database. It
# runs once; its changes and its record in `meta` are written together in one atomic
# write, so a crash leaves either the old version or the new one.


def _m1_baseline(db: TinyDB) -> None:
    """v1: product tables keyed by string ids; `meta` holds the schema version."""
    # Nothing to transform: TinyDB creates a table when it first holds a document.


def _m2_ids_in_documents(db: TinyDB) -> None:
    """v2: every document carries its `id`; `meta` holds per-table id counters.

    A counter only goes up, so a removed record's id is never handed out again
    (ids are quoted in the audit log and in file names).
    """
    meta = db.table(META)
    for name in db.tables():
        if name == META:
            continue
        table = db.table(name)
        highest = 0
        for doc in table.all():
            table.update({"id": doc.doc_id}, doc_ids=[doc.doc_id])
            m = re.match(r"^[a-z]+-(\d+)$", doc.doc_id)
            if m:
                highest = max(highest, int(m.group(1)))
        if highest:
            meta.upsert(Document({"value": highest + 1}, doc_id=f"next_id.{name}"))


def _m3_drop_unused_tables(db: TinyDB) -> None:
    """v3: the `sessions` and `approvals` tables go, with their id counters.

    Nothing ever used them: logins live in the central's memory, and a request's
    decision is in the request and its grant. The backup made before migrating keeps
    whatever a development build may have left in them.
    """
    meta = db.table(META)
    for name in ("sessions", "approvals"):
        db.drop_table(name)
        if meta.contains(doc_id=f"next_id.{name}"):
            meta.remove(doc_ids=[f"next_id.{name}"])


def _m4_live_views(db: TinyDB) -> None:
    """v4: `live_sessions` becomes `live_views` ("session" means a login only); its
    documents, ids (`liv-...`) and id counter stay as they were."""
    _rename_table(db, "live_sessions", "live_views")


def _rename_table(db: TinyDB, old: str, new: str) -> None:
    if old in db.tables():
        documents = db.table(old).all()
        target = db.table(new)
        for doc in documents:
            target.insert(Document(dict(doc), doc_id=doc.doc_id))
        db.drop_table(old)
    meta = db.table(META)
    counter = meta.get(doc_id=f"next_id.{old}")
    if counter is not None:
        meta.upsert(Document({"value": counter["value"]}, doc_id=f"next_id.{new}"))
        meta.remove(doc_ids=[f"next_id.{old}"])


MIGRATIONS: list[Callable[[TinyDB], None]] = [_m1_baseline, _m2_ids_in_documents, _m3_drop_unused_tables,
                                              _m4_live_views]
SCHEMA_VERSION = len(MIGRATIONS)


def _stored_version(data: dict) -> int:
    version = data.get(META, {}).get("schema_version", {}).get("value", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise RecordsCorrupt(f"records database: bad schema_version {version!r}")
    return version


# --- the records layer -----------------------------------------------------------------


class RecordTable:
    """One table of a `Records`, so callers can write `records.table("incidents").get(id)`."""

    def __init__(self, records: Records, name: str):
        self.records, self.name = records, name

    def insert(self, doc: Mapping[str, Any], *, id: str | None = None) -> str:
        return self.records.insert(self.name, doc, id=id)

    def get(self, id: str) -> dict | None:
        return self.records.get(self.name, id)

    def update(self, id: str, fields: Mapping[str, Any] | Callable[[dict], None]) -> dict:
        return self.records.update(self.name, id, fields)

    def search(self, cond: QueryLike | Callable[[dict], bool] | None = None, **equals: Any) -> list[dict]:
        return self.records.search(self.name, cond, **equals)

    def all(self) -> list[dict]:
        return self.records.all(self.name)

    def remove(self, id: str) -> bool:
        return self.records.remove(self.name, id)


class Records:
    """Thread-safe access to the records database. Use `open_records(path)`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(
            self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600
        )
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RecordsLocked(
                f"records database {self.path} is already open (by another process, or "
                "another Records object): only the central daemon may open it, once"
            ) from None
        try:
            self._db = _DB(self.path, storage=AtomicJSONStorage)
            self._storage: AtomicJSONStorage = self._db.storage
            self._migrate()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # -- lifecycle

    def close(self) -> None:
        with self._lock:
            if self._lock_fd is not None:
                self._db.close()
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def __enter__(self) -> Records:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return _stored_version(self._storage.read() or {})

    def migrations_applied(self) -> list[dict]:
        """The record each migration left: version, name, applied_at."""
        with self._lock:
            meta = self._db.table(META)
            return sorted(
                (_plain(d) for d in meta.all() if d.doc_id.startswith("migration.")),
                key=lambda d: d["version"],
            )

    def _migrate(self) -> None:
        data = self._storage.read() or {}
        version = _stored_version(data)
        if version > SCHEMA_VERSION:
            raise RecordsTooNew(
                f"records database {self.path} is schema version {version}, but this "
                f"Custodian understands versions up to {SCHEMA_VERSION}: run the newer "
                "Custodian that wrote it (never downgrade the appliance software)"
            )
        if version < SCHEMA_VERSION and self.path.exists():
            # The file as it was before any migration, for the operator.
            atomic_write(
                self.path.with_name(f"{self.path.name}.v{version}-backup"),
                self.path.read_bytes(),
                mode=0o600,
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            migration = MIGRATIONS[number - 1]
            mem = _DB(storage=MemoryStorage)
            mem.storage.write(data)
            migration(mem)
            meta = mem.table(META)
            meta.upsert(Document({"value": number}, doc_id="schema_version"))
            meta.upsert(
                Document(
                    {"version": number, "name": migration.__name__, "applied_at": _now()},
                    doc_id=f"migration.{number:04d}",
                )
            )
            data = mem.storage.read()
            self._storage.write(data)  # the change and its record, in one atomic write

    # -- helpers

    def _table(self, name: str) -> Table:
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
        return self._db.table(name)

    def table(self, name: str) -> RecordTable:
        self._table(name)  # validate the name now
        return RecordTable(self, name)

    # -- operations

    def insert(self, table: str, doc: Mapping[str, Any], *, id: str | None = None) -> str:
        """Store `doc` and return its id: generated (`inc-000042`) unless given."""
        if not isinstance(doc, Mapping):
            raise TypeError("a record is a mapping")
        if "id" in doc:
            raise ValueError("pass the id as id=..., not inside the document")
        json.dumps(doc)  # refuse what cannot be stored before touching anything
        if id is not None and not valid_id(id):
            raise ValueError(f"unsafe record id {id!r}")
        with self._lock:
            t = self._table(table)
            if id is None:
                id = self._next_id(table, t)
            elif t.contains(doc_id=id):
                raise ValueError(f"{table}: id {id!r} already exists")
            record = copy.deepcopy(dict(doc))
            record["id"] = id
            t.insert(Document(record, doc_id=id))
            return id

    def _next_id(self, name: str, t: Table) -> str:
        meta = self._db.table(META)
        counter = meta.get(doc_id=f"next_id.{name}")
        n = counter["value"] if counter else 1
        while t.contains(doc_id=f"{TABLES[name]}-{n:06d}"):
            n += 1
        # Bump the counter first: a crash before the insert wastes a number, never reuses one.
        meta.upsert(Document({"value": n + 1}, doc_id=f"next_id.{name}"))
        return f"{TABLES[name]}-{n:06d}"

    def get(self, table: str, id: str) -> dict | None:
        with self._lock:
            doc = self._table(table).get(doc_id=id)
            return _plain(doc) if doc is not None else None

    def update(
        self, table: str, id: str, fields: Mapping[str, Any] | Callable[[dict], None]
    ) -> dict:
        """Change fields of one record (a mapping, or a function that edits the dict
        in place under the lock) and return the record as stored."""
        if isinstance(fields, Mapping):
            if "id" in fields and fields["id"] != id:
                raise ValueError("a record's id cannot change")
            json.dumps(fields)
            fields = copy.deepcopy(dict(fields))
        elif not callable(fields):
            raise TypeError("fields must be a mapping or a function")
        with self._lock:
            t = self._table(table)
            if not t.contains(doc_id=id):
                raise RecordNotFound(f"no record {id!r} in {table}")
            if callable(fields):
                edit = fields

                def checked_edit(doc: dict) -> None:
                    # Runs on TinyDB's fresh copy of the table: raising here writes nothing.
                    edit(doc)
                    if doc.get("id") != id:
                        raise ValueError("a record's id cannot change")
                    json.dumps(doc)

                t.update(checked_edit, doc_ids=[id])
            else:
                t.update(fields, doc_ids=[id])
            return _plain(t.get(doc_id=id))

    def search(
        self,
        table: str,
        cond: QueryLike | Callable[[dict], bool] | None = None,
        **equals: Any,
    ) -> list[dict]:
        """Records matching a TinyDB query or a predicate, and/or field=value pairs."""
        with self._lock:
            t = self._table(table)
            queries = [where(k) == v for k, v in equals.items()]
            if cond is not None and hasattr(cond, "is_cacheable"):  # a TinyDB Query
                queries.append(cond)
                cond = None
            docs = t.search(reduce(lambda a, b: a & b, queries)) if queries else t.all()
            return [_plain(d) for d in docs if cond is None or cond(d)]

    def all(self, table: str) -> list[dict]:
        return self.search(table)

    def remove(self, table: str, id: str) -> bool:
        """Delete one record; its id is never reused. Returns whether it existed."""
        with self._lock:
            t = self._table(table)
            if not t.contains(doc_id=id):
                return False
            t.remove(doc_ids=[id])
            return True


def _plain(doc: Mapping) -> dict:
    return copy.deepcopy(dict(doc))


def open_records(path: str | Path) -> Records:
    """Open (creating if absent, migrating if older) the records database at `path`.

    Raises RecordsLocked if another process has it open, RecordsTooNew if it was
    written by a newer Custodian, RecordsCorrupt if it does not parse.
    """
    return Records(path)
