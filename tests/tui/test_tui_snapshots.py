"""Snapshots (pytest-textual-snapshot) at 80x24 of home, the incident form, the approvals queue and
the review screen with a still, in the `full` and `console` profiles; the suspension notices with
their still in `console`.

The central is real and serves its API on a socket, with its clock fixed at one
moment so every time, id and picture on screen is the same on each run (and the
time zone is UTC). SVG snapshots cannot show the console's 16-colour downgrade or
its missing glyphs: the tmux tests check those (tests/tui/test_tui_terminal.py).
Update after a deliberate change of the screens: pytest tests/tui/test_tui_snapshots.py --snapshot-update
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from appliance.central.daemon import Clock
from appliance.rules.registry import iso
from conftest import DIRECTOR, PEOPLE, People, ServingCentral
from test_footage import encode_testsrc2, record
from tui.app import CustodianApp

NOW = datetime(2026, 11, 2, 15, 30, tzinfo=timezone.utc)
RECORDED = NOW - timedelta(hours=1)


class FixedClock(Clock):
    def now(self) -> datetime:
        return NOW + self.offset


@pytest.fixture(scope="module")
def snapshot_world(tmp_path_factory):
    from nacl.pwhash import argon2id

    from appliance import config
    from appliance.custody import keys
    from appliance.central.daemon import Central, init_central

    patch = pytest.MonkeyPatch()
    patch.setattr(keys, "ARGON2_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    patch.setattr(keys, "ARGON2_MEMLIMIT", argon2id.MEMLIMIT_MIN)
    patch.setenv("TZ", "UTC")
    time.tzset()
    data = tmp_path_factory.mktemp("snapshots") / "central"
    init_central(data, *DIRECTOR)
    cfg = config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0, "ingest_host": "127.0.0.1"}})
    central = Central(cfg, data, clock=FixedClock())
    people = People(central)
    people.login("director")
    role, passphrase = PEOPLE["sam"]
    central.call("user.create", {"name": "sam", "role": role, "passphrase": "temporary-sam-1"},
                 people.tokens["director"])
    token = central.call("session.login", {"user": "sam", "passphrase": "temporary-sam-1"})["token"]
    central.call("user.change_passphrase", {"old": "temporary-sam-1", "new": passphrase}, token)
    people.login("sam")   # and reads the policy
    h264 = encode_testsrc2(8)
    record(central, "cam-a", h264, RECORDED)
    record(central, "cam-b", h264, RECORDED)
    incident = people.call("sam", "incident.create", grounds="conduct_violation", occurred_at=iso(RECORDED),
                           location="returns desk", description="a patron kicked the returns box until it broke",
                           attestation=True)["incident"]
    asked = people.call("sam", "request.create", incident=incident["id"], kind="review", cameras=["cam-a"],
                        start=iso(RECORDED - timedelta(seconds=5)), end=iso(RECORDED + timedelta(seconds=30)),
                        reason="see who broke the returns box")["request"]
    grant = people.call("director", "request.decide", request=asked["id"], decision="approve",
                        reason="a specific incident")["grant"]
    people.call("sam", "request.create", incident=incident["id"], kind="review", cameras=["cam-a", "cam-b"],
                start=iso(RECORDED - timedelta(minutes=10)), end=iso(RECORDED + timedelta(minutes=10)),
                reason="and who was with them in the lobby")
    people.unseal()
    people.call("director", "notice.create", incident=incident["id"], description="tall man, red cap, grey backpack",
                reason="kicked the returns box until it broke", suspended_until="2027-03-01",
                stills=[{"grant": grant["id"], "camera": "cam-a", "at": iso(RECORDED + timedelta(seconds=2))}])
    serving = ServingCentral(central)
    yield str(data / "api.sock")
    serving.stop()
    central.close()
    patch.undo()
    time.tzset()


def app(socket: str, profile: str) -> CustodianApp:
    a = CustodianApp(socket, profile=profile)
    a.watch_wait = 1
    return a


async def settle(pilot, check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                break
        except Exception:
            pass
        await pilot.pause(0.05)
    else:   # said here, not as a puzzling picture of the wrong screen
        raise AssertionError(f"waited {timeout} s; on {type(pilot.app.screen).__name__}")
    await pilot.pause(0.3)


def login_as(user: str, passphrase: str, *then):
    async def run(pilot):
        await settle(pilot, lambda: pilot.app.screen.query_one("#user"))
        for text in (user, passphrase):
            await pilot.press(*[{"-": "minus"}.get(c, c) for c in text], "enter")
        await settle(pilot, lambda: pilot.app.screen.query_one("#items").row_count > 0)
        for step in then:
            await step(pilot)
    return run


def keys(*names):
    async def press(pilot):
        await pilot.press(*names)
        await pilot.pause(0.3)
    return press


def until(check):
    async def wait(pilot):
        await settle(pilot, lambda: check(pilot.app))
    return wait


PROFILES = ("full", "console")


@pytest.mark.parametrize("profile", PROFILES)
def test_home(snap_compare, snapshot_world, profile):
    assert snap_compare(app(snapshot_world, profile), terminal_size=(80, 24),
                        run_before=login_as("sam", PEOPLE["sam"][1]))


@pytest.mark.parametrize("profile", PROFILES)
def test_incident_form(snap_compare, snapshot_world, profile):
    assert snap_compare(app(snapshot_world, profile), terminal_size=(80, 24),
                        run_before=login_as("sam", PEOPLE["sam"][1], keys("f4"),
                                            # F4 fetches before it shows: N on the home screen opens the notices
                                            until(lambda a: type(a.screen).__name__ == "IncidentsScreen"
                                                  and a.screen.is_mounted), keys("n"),
                                            until(lambda a: "attest" in str(a.screen.query_one(
                                                "#attestation-text").render()))))


@pytest.mark.parametrize("profile", PROFILES)
def test_approvals_queue(snap_compare, snapshot_world, profile):
    assert snap_compare(app(snapshot_world, profile), terminal_size=(80, 24),
                        run_before=login_as(*DIRECTOR, keys("f5"),
                                            until(lambda a: a.screen.query_one("#queue").row_count > 0)))


@pytest.mark.parametrize("profile", PROFILES)
def test_review_with_a_still(snap_compare, snapshot_world, profile):
    assert snap_compare(app(snapshot_world, profile), terminal_size=(80, 24),
                        run_before=login_as("sam", PEOPLE["sam"][1], keys("f6"),
                                            until(lambda a: a.screen.query_one("#grants").row_count > 0),
                                            keys("enter"), until(lambda a: a.screen.query_one("#picture")._lines),
                                            keys("right", "right")))


def test_notices_console(snap_compare, snapshot_world):
    assert snap_compare(app(snapshot_world, "console"), terminal_size=(80, 24),
                        run_before=login_as("sam", PEOPLE["sam"][1], keys("n"),
                                            until(lambda a: a.screen.query_one("#picture")._lines)))
