"""The terminal UI driven by Pilot at 80x24 against a real central serving its API on a Unix socket.

One central per module (real records, keys, audit log, and real encrypted segments
of ffmpeg's testsrc2 for the review screen). Each test starts its own app and logs
in like a person, typing into the real widgets; what the screen did is checked in the
central's records and audit log, never in the screen's own state alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest

from appliance.rules.registry import iso
from conftest import DIRECTOR, PEOPLE, People, ServingCentral
from test_footage import encode_testsrc2, record
from tui.app import CustodianApp
from tui.format import local
from tui.profiles import PROFILES
from tui.screens.approvals import ApprovalsScreen
from tui.screens.dialogs import Confirm
from tui.screens.home import HomeScreen
from tui.screens.incidents import IncidentDetailScreen, IncidentFormScreen, IncidentsScreen, RequestFormScreen
from tui.screens.login import LoginScreen
from tui.screens.live import LiveScreen, LiveViewScreen
from tui.screens.review import GrantsScreen, ReviewScreen
from tui.screens.seal import SealScreen
from tui.screens.session import PassphraseScreen, PolicyScreen
from tui.widgets.picture import Picture
from tui.widgets.timeline import Timeline


@dataclass
class World:
    central: object
    people: People
    serving: ServingCentral
    recorded_at: datetime

    @property
    def socket(self) -> str:
        return str(self.central.paths.data / "api.sock")


def make_world(tmp_path_factory, name: str):
    """A central with the Director, sam and sue (their own passphrases, the policy read), two
    cameras recorded for 8 s an hour ago as real signed, encrypted segments, serving its API."""
    from nacl.pwhash import argon2id

    from appliance import config
    from appliance.custody import keys
    from appliance.central.daemon import Central, init_central

    patch = pytest.MonkeyPatch()
    patch.setattr(keys, "ARGON2_OPSLIMIT", argon2id.OPSLIMIT_MIN)
    patch.setattr(keys, "ARGON2_MEMLIMIT", argon2id.MEMLIMIT_MIN)
    data = tmp_path_factory.mktemp(name) / "central"
    init_central(data, *DIRECTOR)
    cfg = config.load(overrides={"central": {"data_dir": str(data), "ingest_port": 0, "ingest_host": "127.0.0.1"}})
    central = Central(cfg, data)
    people = People(central)
    people.login("director")
    for person in ("sam", "sue"):
        role, passphrase = PEOPLE[person]
        temporary = f"temporary-{person}-1"
        central.call("user.create", {"name": person, "role": role, "passphrase": temporary}, people.tokens["director"])
        token = central.call("session.login", {"user": person, "passphrase": temporary})["token"]
        central.call("user.change_passphrase", {"old": temporary, "new": passphrase}, token)
        people.login(person)          # and acknowledges the policy
    start = (central.now() - timedelta(hours=1)).replace(microsecond=0)
    h264 = encode_testsrc2(8)
    record(central, "cam-a", h264, start)
    record(central, "cam-b", h264, start)
    return World(central, people, ServingCentral(central), start), patch


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w, patch = make_world(tmp_path_factory, "tui")
    yield w
    w.serving.stop()
    w.central.close()
    patch.undo()


# --------------------------------------------------------------------------- driving the app like a person


async def until(pilot, check, timeout=15.0, what="the screen to change"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:   # widgets not mounted yet
            pass
        await pilot.pause(0.05)
    raise AssertionError(f"waited {timeout} s for {what}; on {type(pilot.app.screen).__name__}: "
                         f"{message(pilot.app)!r}")


async def on(pilot, kind, timeout=15.0):
    await until(pilot, lambda: isinstance(pilot.app.screen, kind), timeout, kind.__name__)
    return pilot.app.screen


async def type_text(pilot, text: str):
    names = {"-": "minus", " ": "space", ":": "colon", ",": "comma", ".": "full_stop", "'": "apostrophe"}
    for ch in text:
        await pilot.press(names.get(ch, ch))


def message(app) -> str:
    try:
        return str(app.screen.query_one("#message").render())
    except Exception:
        return ""


def status(app) -> str:
    try:
        return str(app.screen.query_one("#status").render())
    except Exception:
        return ""


async def log_in(pilot, user: str, passphrase: str):
    await on(pilot, LoginScreen)
    await type_text(pilot, user)
    await pilot.press("enter")
    await type_text(pilot, passphrase)
    await pilot.press("enter")
    return await on(pilot, HomeScreen)


def local_text(t: datetime) -> str:
    return t.astimezone().strftime("%Y-%m-%d %H:%M")


def app_for(world, **kwargs) -> CustodianApp:
    app = CustodianApp(world.socket, profile=kwargs.pop("profile", "full"), **kwargs)
    app.watch_wait = 2   # the long poll comes back quickly so the app exits promptly
    return app


# --------------------------------------------------------------------------- the main paths


async def test_staff_files_an_incident_and_requests_review(world):
    central = world.central
    before = {r["id"] for r in central.records.all("requests")}
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        await pilot.press("f4")
        await on(pilot, IncidentsScreen)
        await pilot.press("n")
        form = await on(pilot, IncidentFormScreen)
        await until(pilot, lambda: "I attest" in str(form.query_one("#attestation-text").render()),
                    what="the attestation text from the API")
        await pilot.press("end")                         # conduct violation
        await pilot.press("tab")
        occurred = world.recorded_at + timedelta(seconds=3)
        await type_text(pilot, local_text(occurred))
        await pilot.press("tab")
        await type_text(pilot, "returns desk")
        await pilot.press("tab")
        await type_text(pilot, "too short")
        await until(pilot, lambda: "What happened" in message(app), what="the API's words about the description")
        await type_text(pilot, ": a patron kicked the returns box until it broke")
        await pilot.press("tab")
        await pilot.press("space")                       # the attestation (C7)
        await until(pilot, lambda: "Ready" in message(app), what="the API to accept the form")
        await pilot.press("f5")
        detail = await on(pilot, IncidentDetailScreen)
        incident = central.records.get("incidents", detail.incident_id)
        assert incident["grounds"] == "conduct_violation" and incident["location"] == "returns desk"
        assert incident["filed_by"] == world.people.ids["sam"]
        await pilot.press("q")
        await on(pilot, RequestFormScreen)
        await pilot.press("home")                        # review recordings
        await pilot.press("tab")
        await type_text(pilot, "cam-a")
        await pilot.press("tab")
        await type_text(pilot, local_text(world.recorded_at - timedelta(minutes=1)))
        await pilot.press("tab")
        await type_text(pilot, local_text(world.recorded_at + timedelta(minutes=2)))
        await pilot.press("tab")
        await type_text(pilot, "see who broke the returns box")
        await until(pilot, lambda: "Ready" in message(app), what="the API to accept the request")
        await pilot.press("f5")
        confirm = await on(pilot, Confirm)
        assert "cam-a" in str(confirm.query_one("#confirm-text").render())
        await pilot.press("y")
        await until(pilot, lambda: "waits for the Director" in message(app), what="the request sent")
    [request] = [r for r in central.records.all("requests") if r["id"] not in before]
    assert (request["incident"], request["kind"], request["cameras"], request["status"]) == \
        (incident["id"], "review", ["cam-a"], "pending")
    assert central.audit.query(action_prefix="request.create")[-1]["refs"]["request"] == request["id"]


def pending_request(world, cameras=("cam-a", "cam-b")) -> dict:
    people, start = world.people, world.recorded_at
    incident = people.call("sam", "incident.create", grounds="criminal_activity", occurred_at=iso(start),
                           location="car park", description="a car window was smashed in the car park",
                           attestation=True)["incident"]
    return people.call("sam", "request.create", incident=incident["id"], kind="review", cameras=list(cameras),
                       start=iso(start - timedelta(minutes=10)), end=iso(start + timedelta(minutes=10)),
                       reason="see who smashed the window")["request"]


async def test_director_approves_narrower(world):
    request = pending_request(world)
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f5")
        queue = await on(pilot, ApprovalsScreen)
        await until(pilot, lambda: any(r["id"] == request["id"] for r in queue.requests), what="the queue")
        queue.query_one("#queue").move_cursor(row=[r["id"] for r in queue.requests].index(request["id"]))
        await pilot.press("n")
        await until(pilot, lambda: pilot.app.screen.query_one("#cameras"))
        field = pilot.app.screen.query_one("#cameras")
        field.value = ""
        await type_text(pilot, "cam-a")                  # fewer cameras
        await pilot.press("tab", "tab")
        end = pilot.app.screen.query_one("#end")
        end.value = ""
        await type_text(pilot, (world.recorded_at + timedelta(minutes=1)).astimezone().strftime("%Y-%m-%d %H:%M:%S"))
        await pilot.press("tab")
        pilot.app.screen.query_one("#hours").value = ""
        await type_text(pilot, "24")
        await pilot.press("enter")
        await type_text(pilot, "narrow: only the car park camera")
        await pilot.press("enter")
        confirm = await on(pilot, Confirm)
        text = str(confirm.query_one("#confirm-text").render())
        assert "cam-a" in text and "cam-b" not in text and "24 h" in text     # exactly what will be granted
        await pilot.press("y")
        await until(pilot, lambda: "grant" in message(app), what="the decision")
    decided = world.central.records.get("requests", request["id"])
    grant = world.central.records.get("grants", decided["grant"])
    assert decided["status"] == "approved"
    assert grant["cameras"] == ["cam-a"] and grant["end"] == iso(world.recorded_at + timedelta(minutes=1))
    assert world.central.audit.query(action_prefix="request.decide")[-1]["details"]["narrowed"] is True


def grant_for_sam(world, seconds_before=5, seconds_after=30) -> dict:
    people, start = world.people, world.recorded_at
    incident = people.call("sam", "incident.create", grounds="conduct_violation", occurred_at=iso(start),
                           location="entrance", description="a patron threw a chair at the entrance doors",
                           attestation=True)["incident"]
    request = people.call("sam", "request.create", incident=incident["id"], kind="review", cameras=["cam-a"],
                          start=iso(start - timedelta(seconds=seconds_before)),
                          end=iso(start + timedelta(seconds=seconds_after)), reason="see who threw the chair")["request"]
    return people.call("director", "request.decide", request=request["id"], decision="approve",
                       reason="a specific incident")["grant"]


async def test_staff_reviews_moves_the_timeline_and_sees_a_still(world):
    grant = grant_for_sam(world)
    world.people.unseal()
    stills = len(world.central.audit.query(action_prefix="footage.still"))
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        await pilot.press("f6")
        grants = await on(pilot, GrantsScreen)
        await until(pilot, lambda: grants.grants, what="the grants list")
        grants.query_one("#grants").move_cursor(row=[g["id"] for g in grants.grants].index(grant["id"]))
        await pilot.press("enter")
        review = await on(pilot, ReviewScreen)
        timeline = review.query_one(Timeline)
        await until(pilot, lambda: timeline.cursor is not None, what="the timeline")
        first = timeline.cursor
        assert first == world.recorded_at            # the cursor starts where the recording starts
        await until(pilot, lambda: review.query_one(Picture)._lines, what="the first still")
        await pilot.press("right", "right", "pagedown", "pageup")
        assert timeline.cursor == first + timedelta(seconds=2)
        await pilot.press("minus", "plus")
        await pilot.press("enter")
        picture = review.query_one(Picture)
        await until(pilot, lambda: len(world.central.audit.query(action_prefix="footage.still")) >= stills + 2
                    and picture._lines, what="the still at the cursor")
        assert len(picture._lines) >= 10                 # drawn as half blocks, many rows
    entry = world.central.audit.query(action_prefix="footage.still")[-1]
    assert entry["refs"]["grant"] == grant["id"] and entry["actor"] == world.people.ids["sam"]
    asked = datetime.fromisoformat(entry["details"]["at"].replace("Z", "+00:00"))
    assert asked > world.recorded_at                 # the moment the cursor was moved to


async def test_imminent_danger_from_a_non_home_screen(world):
    central = world.central
    before = len(central.records.search("requests", kind="imminent_danger"))
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        await pilot.press("f4")
        await on(pilot, IncidentsScreen)
        await pilot.press("f9")
        await until(pilot, lambda: pilot.app.screen.query_one("#reason"), what="the danger form")
        await type_text(pilot, "a man with a knife at the desk")
        pilot.app.screen.query_one("#cameras").value = "cam-a"
        await pilot.press("enter")
        confirm = await on(pilot, Confirm)
        assert "Director is alerted" in str(confirm.query_one("#confirm-text").render())
        await pilot.press("y")
        review = await on(pilot, ReviewScreen)
        assert review.danger_use
        await until(pilot, lambda: review.query_one(Timeline).cursor is not None or "Refused" in message(app)
                    or "sealed" in message(app).lower(), what="the recent footage")
        await pilot.press("escape")                      # afterwards: the incident report it owes (C19)
        form = await on(pilot, IncidentFormScreen)
        assert form.link_use == review.danger_use
    uses = central.records.search("requests", kind="imminent_danger")
    assert len(uses) == before + 1 and uses[-1]["requested_by"] == world.people.ids["sam"]
    assert central.records.search("alerts", kind="imminent_danger")


async def test_staff_without_a_grant_is_refused_with_the_clause_on_screen(world):
    grant = grant_for_sam(world)
    world.people.unseal()
    app = app_for(world, profile="console")
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        app.push_screen(ReviewScreen(grant["id"]))
        review = await on(pilot, ReviewScreen)
        await until(pilot, lambda: review.query_one(Timeline).cursor is not None, what="the timeline")
        world.people.call("director", "grant.revoke", grant=grant["id"], reason="the matter was settled")
        await pilot.press("enter")
        await until(pilot, lambda: "Refused (C17)" in message(app), what="the refusal with its clause")
        assert "revoked" in message(app)
    assert world.central.audit.query(action_prefix="footage.refused")[-1]["refs"]["grant"] == grant["id"]


# --------------------------------------------------------------------------- the session


async def test_background_refresh_does_not_extend_the_session_a_key_press_does(world):
    fast = replace(PROFILES["full"], refresh_seconds=0.2)
    app = app_for(world, profile=fast)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        token = app.api.token
        session = world.central.sessions[token]
        await pilot.pause(0.5)
        assert "idle" not in status(app)
        session["last_seen"] -= 13 * 60                  # thirteen idle minutes
        seen = session["last_seen"]
        await pilot.pause(1.5)                           # several home refreshes and watches
        assert session["last_seen"] == seen, "a screen refreshing itself kept the session alive"
        await until(pilot, lambda: "idle: ends in 2 min" in status(app), what="the time left shown before it ends")
        app.last_touch = 0                               # the last key press was long ago
        await pilot.press("down")                        # a person's key press
        await until(pilot, lambda: session["last_seen"] > seen, what="the key press to reach the central")
        await until(pilot, lambda: "idle" not in status(app), what="the warning gone after the key press")


async def test_an_ended_session_returns_to_the_login_with_the_reason(world):
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        await pilot.press("f4")
        await on(pilot, IncidentsScreen)
        world.central.sessions[app.api.token]["last_seen"] -= 16 * 60
        await pilot.press("r")
        login = await on(pilot, LoginScreen)
        assert "15 minutes" in message(app) or "timed out" in message(app)
        assert len(app.screen_stack) == 2 and login.query_one("#user").value == ""


async def test_the_director_sees_a_new_alert_at_once_on_any_screen(world):
    app = app_for(world)
    app.watch_wait = 20
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f4")
        await on(pilot, IncidentsScreen)
        await until(pilot, lambda: app.latest_alert is not None, what="the watch")
        await pilot.pause(0.3)
        world.people.call("sue", "breach.report", what="a still was shown to a visitor at the desk",
                          noticed_at=iso(world.central.now()))
        await until(pilot, lambda: "NEW ALERT" in status(app), timeout=5, what="the alert at once")
        assert isinstance(app.screen, IncidentsScreen)
        app.watch_wait = 1


async def test_demo_login_shows_the_accounts_and_escape_asks_before_quitting(world):
    accounts = [("director", "director", "demo-director-pass"), ("staff", "sam", "demo-staff-pass")]
    app = app_for(world, demo_accounts=accounts)
    async with app.run_test(size=(80, 24)) as pilot:
        login = await on(pilot, LoginScreen)
        shown = str(login.query_one("#demo-accounts").render())
        assert "demo-staff-pass" in shown and "sam" in shown
        await pilot.press("escape")
        confirm = await on(pilot, Confirm)
        assert "stops the demo" in str(confirm.query_one("#confirm-text").render())
        await pilot.press("n")
        await on(pilot, LoginScreen)
        assert app.is_running
    plain = app_for(world)
    async with plain.run_test(size=(80, 24)) as pilot:
        login = await on(pilot, LoginScreen)
        assert not login.query("#demo-accounts")


async def test_a_stopped_central_recovers(world):
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        world.serving.stop()
        await until(pilot, lambda: "not answering" in status(app), what="the central's absence shown")
        world.central.sessions.clear()                    # a restart forgets every session
        world.people.tokens.clear()                       # (the tests' own sessions too: log in again)
        world.serving = ServingCentral(world.central)
        login = await on(pilot, LoginScreen, timeout=20)
        assert "restarted" in message(app)
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        del login


async def test_a_temporary_passphrase_is_changed_first_then_the_policy(world):
    central, people = world.central, world.people
    central.call("user.create", {"name": "ann", "role": "staff", "passphrase": "temporary-ann-1"},
                 people.tokens.get("director") or people.login("director"))
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await on(pilot, LoginScreen)
        await type_text(pilot, "ann")
        await pilot.press("enter")
        await type_text(pilot, "temporary-ann-1")
        await pilot.press("enter")
        await on(pilot, PassphraseScreen)
        for text in ("temporary-ann-1", "ann-own-passphrase-1", "ann-own-passphrase-1"):
            await type_text(pilot, text)
            await pilot.press("enter")
        await on(pilot, PolicyScreen)
        await pilot.press("a")
        await on(pilot, HomeScreen)
    ann = central.records.search("users", name="ann")[0]
    assert ann["must_change_passphrase"] is False and ann["policy_ack"]
    assert central.audit.query(action_prefix="user.change_passphrase")[-1]["actor"] == ann["id"]


async def test_the_director_unseals_and_everyone_sees_the_seal_in_the_status_line(world):
    world.people.call("director", "archive.seal")
    staff = app_for(world)
    staff.watch_wait = 20
    async with staff.run_test(size=(80, 24)) as staff_pilot:
        await log_in(staff_pilot, "sue", PEOPLE["sue"][1])
        await until(staff_pilot, lambda: "archive SEALED" in status(staff), what="the seal shown")
        director = app_for(world)
        async with director.run_test(size=(80, 24)) as pilot:
            await log_in(pilot, *DIRECTOR)
            await pilot.press("f8")
            await on(pilot, SealScreen)
            await pilot.press("u")
            await type_text(pilot, DIRECTOR[1])
            await pilot.press("enter")
            await until(pilot, lambda: "archive unsealed" in status(director), what="unsealed")
        await until(staff_pilot, lambda: "archive unsealed" in status(staff), timeout=5,
                    what="the seal change on another terminal at once")
        staff.watch_wait = 1
    assert world.central.custody.is_sealed is False
    assert world.central.audit.query(action_prefix="archive.unseal")[-1]["actor"] == world.people.ids["director"]


async def test_the_command_palette_reads_the_action_registry(world):
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", what="the palette")
        await type_text(pilot, "Incident reports")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await on(pilot, IncidentsScreen)


async def test_live_view_opens_with_its_purpose_and_closes_with_one_key(world):
    central = world.central
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sue", PEOPLE["sue"][1])
        await pilot.press("f7")
        await on(pilot, LiveScreen)
        await pilot.press("o")
        await until(pilot, lambda: pilot.app.screen.query_one("#answer"), what="the camera question")
        pilot.app.screen.query_one("#answer").value = "cam-a"
        await pilot.press("enter")
        await until(pilot, lambda: "Purpose" in str(pilot.app.screen.query_one("Label.dialog-title").render())
                    or "Purpose" in str(pilot.app.screen.query("Label")[1].render()), what="the purpose question")
        await type_text(pilot, "watch the entrance at closing")
        await pilot.press("enter")
        screen = await on(pilot, LiveViewScreen)
        view = central.records.get("live_views", screen.view["id"])
        assert view["purpose"] == "watch the entrance at closing" and view["closed_at"] is None
        await pilot.press("c")
        await on(pilot, LiveScreen)
    assert central.records.get("live_views", view["id"])["closed_at"] is not None
    assert central.audit.query(action_prefix="live.close")[-1]["refs"]["live_session"] == view["id"]


async def test_the_flipbook_plays_in_place_pauses_and_steps_with_each_frames_time(world):
    grant = grant_for_sam(world)
    world.people.unseal()
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, "sam", PEOPLE["sam"][1])
        app.push_screen(ReviewScreen(grant["id"]))
        review = await on(pilot, ReviewScreen)
        await until(pilot, lambda: review.query_one(Timeline).cursor is not None, what="the timeline")
        await pilot.press("p")
        info = review.query_one("#frame-info")
        await until(pilot, lambda: "frame 2/" in str(info.render()), what="the flipbook playing")
        await pilot.press("p")                           # pause
        paused = review.frame
        await pilot.pause(1.2)
        assert review.frame == paused
        await pilot.press("s")                           # one frame on
        assert review.frame == paused + 1
        shown = str(info.render())
        assert f"frame {paused + 2}/" in shown
        assert local(review.clip["frames"][paused + 1]["frame_at"], seconds=True) in shown   # each frame's time
    entry = world.central.audit.query(action_prefix="footage.clip")[-1]
    assert entry["refs"]["grant"] == grant["id"] and entry["actor"] == world.people.ids["sam"]


async def test_the_director_reviews_an_imminent_danger_use_from_the_queue(world):
    use = world.people.call("sam", "imminent.invoke", reason="a fight broke out in the lobby",
                            cameras=["cam-a"])["request"]
    app = app_for(world)
    async with app.run_test(size=(80, 24)) as pilot:
        await log_in(pilot, *DIRECTOR)
        await pilot.press("f5")
        queue = await on(pilot, ApprovalsScreen)
        await until(pilot, lambda: any(r["id"] == use["id"] for r in queue.requests), what="the use in the queue")
        queue.query_one("#queue").move_cursor(row=[r["id"] for r in queue.requests].index(use["id"]))
        await pilot.press("j")
        await type_text(pilot, "staff were in danger")
        await pilot.press("enter")
        confirm = await on(pilot, Confirm)
        assert "justified" in str(confirm.query_one("#confirm-text").render())
        await pilot.press("y")
        await until(pilot, lambda: "reviewed" in message(app), what="the review recorded")
    review = world.central.records.get("requests", use["id"])["review"]
    assert review["finding"] == "justified" and review["by"] == world.people.ids["director"]
