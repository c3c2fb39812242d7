"""Shared fixtures: a real central (real TinyDB, keys, audit log) and its people.

`central` is the daemon's core object; tests call operations through
`central.call(op, args, token)`, exactly the path the Unix-socket API takes.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
from clause_guard import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401  (no clause test skips)

ROOT = Path(__file__).resolve().parent.parent
DIRECTOR = ("director", "director-passphrase-1")
PEOPLE = {"sam": ("staff", "sam-passphrase-1"), "sue": ("staff", "sue-passphrase-1"),
          "ivy": ("it", "ivy-passphrase-1")}


class People:
    """Log in as anyone and call operations as them."""

    def __init__(self, central):
        self.central = central
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}

    def login(self, name: str, passphrase: str | None = None, ack: bool = True) -> str:
        if passphrase is None:
            passphrase = DIRECTOR[1] if name == DIRECTOR[0] else PEOPLE[name][1]
        result = self.central.call("session.login", {"user": name, "passphrase": passphrase})
        token = result["token"]
        self.ids[name] = result["user"]["id"]
        if ack and result["must_acknowledge_policy"]:
            version = self.central.call("policy.text", {}, token)["version"]
            self.central.call("policy.acknowledge", {"version": version}, token)
        self.tokens[name] = token
        return token

    def call(self, name: str, op: str, **args):
        if name not in self.tokens:
            self.login(name)
        return self.central.call(op, args, self.tokens[name])

    def unseal(self):
        return self.call("director", "archive.unseal", passphrase=DIRECTOR[1])


def _cheap_kdf(monkeypatch) -> None:
    from nacl.pwhash import argon2id

    from appliance.custody import keys

    # Real Argon2id, at libsodium's lowest cost: these tests are about the rules, not the KDF
    # (tests/custody/test_keys.py covers the production limits).
    monkeypatch.setattr(keys, "ARGON2_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(keys, "ARGON2_MEMLIMIT", argon2id.MEMLIMIT_MIN)


def new_central(data: Path):
    from appliance import config
    from appliance.central.daemon import Central, init_central

    recovery = init_central(data, *DIRECTOR)
    cfg = config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0}})
    c = Central(cfg, data)
    c.recovery_code = recovery
    return c


@pytest.fixture
def central(tmp_path, monkeypatch):
    _cheap_kdf(monkeypatch)
    c = new_central(tmp_path / "central")
    yield c
    c.close()


def add_people(central) -> People:
    """The Director creates each account with a temporary passphrase; each person then
    logs in once and chooses their own (the system requires it before anything else)."""
    p = People(central)
    p.login("director")
    for name, (role, passphrase) in PEOPLE.items():
        temporary = f"temporary-{name}-1"
        central.call("user.create", {"name": name, "role": role, "passphrase": temporary}, p.tokens["director"])
        token = central.call("session.login", {"user": name, "passphrase": temporary})["token"]
        central.call("user.change_passphrase", {"old": temporary, "new": passphrase}, token)
        central.call("session.logout", {}, token)
    return p


@pytest.fixture
def people(central):
    return add_people(central)


@contextlib.contextmanager
def serving_central_at(data: Path):
    """A central initialised in `data`, serving ingest and its API on real sockets, with its
    people: for a module-scoped fixture (one central for a module's tests)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _cheap_kdf(monkeypatch)
        c = new_central(data)
        c.cfg.central.ingest_host = "127.0.0.1"
        people = add_people(c)
        s = ServingCentral(c)
        s.people = people
        try:
            yield s
        finally:
            s.stop()
            c.close()


@pytest.fixture
def fake_picamera2_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tests" / "fake_picamera2"))
    yield
    for mod in [m for m in sys.modules if m == "picamera2" or m.startswith("picamera2.")]:
        del sys.modules[mod]


class ServingCentral:
    """A central serving ingest (TCP, 127.0.0.1) and the API (Unix socket) from its own thread."""

    def __init__(self, central):
        import asyncio
        import threading

        self.central = central
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(20), "the central did not start"
        self.url = f"http://127.0.0.1:{central.ingest_port}"

    def _run(self):
        import asyncio

        asyncio.set_event_loop(self._loop)

        async def main():
            ready = asyncio.Event()
            self._task = asyncio.create_task(self.central.serve(ready))
            await ready.wait()
            self._ready.set()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

        self._loop.run_until_complete(main())

    def stop(self):
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(20)


@pytest.fixture
def serving(central):
    central.cfg.central.ingest_host = "127.0.0.1"
    s = ServingCentral(central)
    yield s
    s.stop()


def enrol_camera_record(central, name: str, verify_key_hex: str, status: str = "approved") -> None:
    """Put a camera straight into the records (for ingest-level tests that are not about enrolment)."""
    central.records.insert("cameras", {"key": verify_key_hex, "category": "entrance", "location": "test",
                                       "status": status, "masks": [], "snapshot_at": None}, id=name)
    central.reload_cameras()
